//! Non-AES ciphers against QEMU, the oracle for them on this machine (cryptsetup's userspace
//! backend has AES only here, and there is no kernel crypto API): QEMU (nettle) makes a LUKS1
//! image with the cipher, mode, IV generator and hash of each row, writes random data through
//! its `luks` driver, and luksfuse must read exactly that through a mount; then unaligned
//! writes through the mount must read back in QEMU. The keyslot is QEMU's too, so the keyslot
//! pipeline is checked with the same cipher.
//!
//! QEMU 10.0.2 cannot make a detached header (see shared/reference), so its image holds both:
//! luksfuse is given the image as header and as payload; the data starts at the header's
//! payload offset.

mod common;

use common::*;
use std::process::Command;

/// One QEMU volume: `qemu-img create -f luks` options (cipher-alg, cipher-mode, ivgen-alg,
/// ivgen-hash-alg, hash-alg) and the cipher spec its header then names. No 192-bit keys:
/// QEMU 10.0.2 aborts making their keyslot (its AF material is not a whole number of sectors);
/// no ESSIV hash shorter than the key (QEMU: "No Twofish cipher with key size 20").
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("serpent-256", "xts", "plain64", None, "sha256", "serpent-xts-plain64"),
    ("serpent-128", "xts", "plain", None, "sha1", "serpent-xts-plain"),
    ("serpent-128", "cbc", "essiv", Some("sha256"), "sha512", "serpent-cbc-essiv:sha256"),
    ("twofish-256", "xts", "plain64", None, "sha256", "twofish-xts-plain64"),
    ("twofish-128", "cbc", "plain64", None, "sha256", "twofish-cbc-plain64"),
    ("twofish-256", "cbc", "essiv", Some("sha256"), "sha1", "twofish-cbc-essiv:sha256"),
];

#[test]
fn serpent_and_twofish_luks1_from_qemu_through_the_mount_both_ways() {
    for &(alg, mode, ivgen, ivhash, hash, spec) in ROWS {
        let mut f = Fixture::new();
        f.header = f.path("qemu.luks");
        f.payload = f.header.clone();
        let secret = qemu_secret(&f);
        let mut opts = format!(
            "key-secret=s,cipher-alg={alg},cipher-mode={mode},ivgen-alg={ivgen},hash-alg={hash},iter-time=10"
        );
        if let Some(h) = ivhash {
            opts += &format!(",ivgen-hash-alg={h}");
        }
        run_ok(Command::new("qemu-img").args([
            "create",
            "-q",
            "-f",
            "luks",
            "--object",
            &secret,
            "-o",
            &opts,
            s(&f.header),
            "4M",
        ]));
        let dump = luksfuse(&["dump", s(&f.header)], b"");
        assert_eq!(dump.code, 0, "{spec}: {}", dump.stderr);
        let (name, rest) = spec.split_once('-').unwrap();
        assert!(
            dump.stdout.contains(&format!("Cipher name:   \t{name}\n"))
                && dump.stdout.contains(&format!("Cipher mode:   \t{rest}\n")),
            "{spec}: {}",
            dump.stdout
        );
        let image_opts = format!("driver=luks,key-secret=s,file.filename={}", s(&f.header));
        let model = qemu_round_trip(&f, &["--name", "p"], &image_opts, 4 << 20, 149, spec);
        luks2_with_the_same_key_reads_it(&mut f, spec, &dump.stdout, &model);
    }
}

/// The LUKS2 oracle for non-AES data (QEMU writes LUKS1 only): a LUKS2 header that luksfuse
/// formats with the QEMU volume's key and payload offset must read the same plaintext.
fn luks2_with_the_same_key_reads_it(f: &mut Fixture, spec: &str, dump: &str, model: &[u8]) {
    let vk = luksfuse_volume_key(
        &[
            "dump",
            "--dump-volume-key",
            "-q",
            "-d",
            s(&f.keyfile),
            s(&f.header),
        ],
        b"",
    );
    let vk_file = f.path("vk");
    write_file(&vk_file, &vk);
    let offset = dump
        .lines()
        .find_map(|l| l.strip_prefix("Payload offset:\t"))
        .expect("payload offset in the dump");
    let bits = (vk.len() * 8).to_string();
    let luks2 = f.path("luks2.img");
    let mut args = vec![
        "format",
        "-q",
        "--type",
        "luks2",
        "-c",
        spec,
        "-s",
        &bits,
        "--offset",
        offset,
        "--volume-key-file",
        s(&vk_file),
        "-d",
        s(&f.keyfile),
        s(&luks2),
    ];
    args.extend(fast_kdf("pbkdf2"));
    let r = luksfuse(&args, b"");
    assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
    f.header = luks2;
    let m = Mounted::new(f, &["--name", "p"], "p");
    assert!(
        std::fs::read(m.mnt.join("p")).unwrap() == model,
        "{spec}: a LUKS2 header with the same volume key reads what QEMU wrote"
    );
    m.unmount();
}
