//! Every cipher × mode × IV generator × hash of QEMU's LUKS interoperability test
//! (qemu-iotests 149, its `configs` list), and those QEMU cannot make, against a real peer and
//! through a real mount, both directions. Which peer checks a row is its [`Oracle`]:
//!
//! - [`Oracle::Qemu`]: QEMU (nettle) makes the LUKS1 volume (`qemu-img create -f luks`) and
//!   writes noise through its `luks` driver; the mount must read exactly that; unaligned
//!   writes through the mount must read back in QEMU. The keyslot is QEMU's, so the keyslot
//!   pipeline is checked in the same cipher. Then a LUKS2 header that luksfuse formats with
//!   the same volume key and payload offset must read the same plaintext (QEMU writes LUKS1
//!   only; the sector and IV rules of LUKS2 are checked against cryptsetup below).
//!   [`Oracle::QemuSlot3`] is 149's `pwslot3`: the same with the passphrase in keyslot 3 only
//!   (149's `pwallslots` row tests keyslot choice, not ciphers, and is left to the keyslot
//!   tests).
//! - [`Oracle::QemuReadsOurs`]: 192-bit keys, where QEMU 10.0.2 aborts making the keyslot
//!   (its AF material is not a whole number of sectors) but opens one, and the rows beyond
//!   149: luksfuse formats the LUKS1 header, QEMU unlocks it (our keyslot in that cipher and
//!   hash) and the data goes both ways as above.
//! - [`Oracle::Cryptsetup`]: what cryptsetup's userspace backend (OpenSSL) has and QEMU has
//!   not (plain64be, benbi, null, Camellia): LUKS2 data through `cryptsetup reencrypt
//!   --encrypt` read by the mount, unaligned writes through the mount, `reencrypt --decrypt`
//!   gives the model; and LUKS1 keyslots in that cipher both ways (cryptsetup's read by
//!   `test-key`, ours by `cryptsetup open --test-passphrase`).
//!
//! No peer here has CAST6 (149 lists it; QEMU blacklists it, OpenSSL lacks it), SM4 or LRW:
//! those are checked by known answers in src/crypto (RFC 2612, GB/T 32907, the kernel's
//! LRW-AES vectors) and the `xts-mode` crate.
//!
//! QEMU 10.0.2 cannot make a detached header, so a QEMU image holds both: luksfuse is given
//! the image as header and as payload; the data starts at the header's payload offset.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Oracle {
    Qemu,
    QemuSlot3,
    QemuReadsOurs,
    Cryptsetup,
}
use Oracle::*;

/// (iotest 149 config name, or `+` for a row beyond its list; the cipher as the header
/// spells it; key bits; the header's hash; the oracle).
type Row = (&'static str, &'static str, u32, &'static str, Oracle);

#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("aes-256-xts-plain64-sha1", "aes-xts-plain64", 512, "sha1", Qemu),
    ("twofish-256-xts-plain64-sha1", "twofish-xts-plain64", 512, "sha1", Qemu),
    ("serpent-256-xts-plain64-sha1", "serpent-xts-plain64", 512, "sha1", Qemu),
    ("cast5-128-cbc-plain64-sha1", "cast5-cbc-plain64", 128, "sha1", Qemu),
    ("aes-256-cbc-plain-sha1", "aes-cbc-plain", 256, "sha1", Qemu),
    ("aes-256-cbc-plain64-sha1", "aes-cbc-plain64", 256, "sha1", Qemu),
    ("aes-256-cbc-essiv-sha256-sha1", "aes-cbc-essiv:sha256", 256, "sha1", Qemu),
    ("aes-256-xts-essiv-sha256-sha1", "aes-xts-essiv:sha256", 512, "sha1", Qemu),
    // QEMU writes the IV hash it is given after plain64 too; dm-crypt ignores it.
    ("aes-128-xts-plain64-sha256-sha1", "aes-xts-plain64:sha256", 256, "sha1", Qemu),
    ("aes-192-xts-plain64-sha256-sha1", "aes-xts-plain64", 384, "sha1", QemuReadsOurs),
    ("twofish-128-xts-plain64-sha1", "twofish-xts-plain64", 256, "sha1", Qemu),
    ("twofish-192-xts-plain64-sha1", "twofish-xts-plain64", 384, "sha1", QemuReadsOurs),
    ("serpent-128-xts-plain64-sha1", "serpent-xts-plain64", 256, "sha1", Qemu),
    ("serpent-192-xts-plain64-sha1", "serpent-xts-plain64", 384, "sha1", QemuReadsOurs),
    ("aes-256-xts-plain64-sha256", "aes-xts-plain64", 512, "sha256", Qemu),
    ("aes-256-xts-plain64-sha512", "aes-xts-plain64", 512, "sha512", Qemu),
    ("aes-256-xts-plain64-ripemd160", "aes-xts-plain64", 512, "ripemd160", Qemu),
    // The passphrase in keyslot 3 only (`qemu-img amend` adds it and disables slot 0).
    ("aes-256-xts-plain-sha1-pwslot3", "aes-xts-plain", 512, "sha1", QemuSlot3),
    // Beyond 149: CTR (QEMU's nettle counter), ESSIV with the other ciphers, CAST5 in CTR.
    // One QEMU-made; the others QEMU opens (a QEMU volume costs a second of CPU or more).
    ("+", "aes-ctr-plain64", 256, "sha256", Qemu),
    ("+", "serpent-ctr-plain", 256, "sha256", QemuReadsOurs),
    ("+", "cast5-ctr-plain64", 128, "sha1", QemuReadsOurs),
    ("+", "twofish-cbc-essiv:sha256", 256, "sha1", QemuReadsOurs),
    ("+", "serpent-cbc-essiv:sha256", 128, "sha512", QemuReadsOurs),
    ("+", "twofish-ctr-essiv:sha256", 256, "sha256", QemuReadsOurs),
    ("+", "cast5-cbc-plain", 128, "sha256", QemuReadsOurs),
    ("+", "aes-xts-plain64", 384, "ripemd160", QemuReadsOurs),
    // What QEMU has not, against cryptsetup.
    ("+", "aes-xts-plain64be", 512, "sha256", Cryptsetup),
    ("+", "aes-cbc-benbi", 256, "sha256", Cryptsetup),
    // 4096-byte sectors: benbi's block count from the IV number of a large sector.
    ("+4096", "aes-cbc-benbi", 256, "sha256", Cryptsetup),
    ("+", "aes-cbc-null", 256, "sha256", Cryptsetup),
    ("+", "aes-ctr-benbi", 192, "sha256", Cryptsetup),
    ("+", "camellia-cbc-plain64", 256, "sha256", Cryptsetup),
    ("+", "camellia-ctr-essiv:sha256", 128, "sha256", Cryptsetup),
];

/// Payload bytes per row: enough for several chunks of the cipher's batches.
const LEN: usize = 1 << 20;

/// Rows run on this many threads: `qemu-img create` spends about a second of CPU per PBKDF2
/// benchmark (two per volume, whatever `iter-time` says), so rows overlap.
const THREADS: usize = 3;

#[test]
fn every_cipher_mode_iv_and_hash_through_the_mount_both_ways() {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(name, spec, bits, hash, oracle)) = ROWS.get(i) else {
                    break;
                };
                let what = format!("{spec} {bits} {hash} ({name}, {oracle:?})");
                let seed = 149 + i as u64;
                match oracle {
                    Qemu => qemu_row(spec, bits, hash, seed, &what, false),
                    QemuSlot3 => qemu_row(spec, bits, hash, seed, &what, true),
                    QemuReadsOurs => qemu_reads_ours_row(spec, bits, hash, seed, &what),
                    Cryptsetup => {
                        let sector = if name == "+4096" { "4096" } else { "512" };
                        cryptsetup_row(spec, bits, hash, sector, seed, &what)
                    }
                }
            });
        }
    });
}

/// `qemu-img create -f luks` options for `spec` with `bits`-bit keys.
fn qemu_options(spec: &str, bits: u32, hash: &str) -> String {
    let mut parts = spec.splitn(3, '-');
    let (alg, mode, iv) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let cipher_bits = if mode == "xts" { bits / 2 } else { bits };
    let (ivgen, ivhash) = match iv.split_once(':') {
        Some((g, h)) => (g, Some(h)),
        None => (iv, None),
    };
    let mut o = format!(
        "key-secret=s,cipher-alg={alg}-{cipher_bits},cipher-mode={mode},ivgen-alg={ivgen},hash-alg={hash},iter-time=10"
    );
    if let Some(h) = ivhash {
        o += &format!(",ivgen-hash-alg={h}");
    }
    o
}

fn qemu_row(spec: &str, bits: u32, hash: &str, seed: u64, what: &str, slot3: bool) {
    let mut f = Fixture::attached("qemu.luks");
    qemu_create_luks(
        &f,
        &f.header,
        &qemu_options(spec, bits, hash),
        &LEN.to_string(),
    );
    let image_opts = format!("driver=luks,key-secret=s,file.filename={}", s(&f.header));
    if slot3 {
        let key3 = f.path("key3");
        write_file(&key3, b"slot3");
        let secret3 = format!("secret,id=s3,file={}", s(&key3));
        let amend = |opts: &str| {
            run_ok(Command::new("qemu-img").args([
                "amend",
                "--object",
                &qemu_secret(&f),
                "--object",
                &secret3,
                "--image-opts",
                &image_opts,
                "-o",
                opts,
                "--force",
            ]))
        };
        amend("state=active,new-secret=s3,keyslot=3,iter-time=10");
        amend("state=inactive,keyslot=0");
        // From here on, the key file (QEMU's secret `s` and luksfuse's `-d`) is slot 3's.
        std::fs::rename(&key3, &f.keyfile).unwrap();
    }
    let dump = luksfuse(&["dump", s(&f.header)], b"");
    assert_eq!(dump.code, 0, "{what}: {}", dump.stderr);
    if slot3 {
        assert!(
            dump.stdout.contains("Key Slot 0: DISABLED\n"),
            "{what}: {}",
            dump.stdout
        );
        assert!(
            dump.stdout.contains("Key Slot 3: ENABLED\n"),
            "{what}: {}",
            dump.stdout
        );
    }
    let (cipher, mode) = spec.split_once('-').unwrap();
    for line in [
        format!("Cipher name:   \t{cipher}\n"),
        format!("Cipher mode:   \t{mode}\n"),
        format!("Hash spec:     \t{hash}\n"),
        format!("MK bits:       \t{bits}\n"),
    ] {
        assert!(
            dump.stdout.contains(&line),
            "{what}: {line:?} in\n{}",
            dump.stdout
        );
    }
    let model = qemu_round_trip(&f, &["--name", "p"], &image_opts, LEN, seed, what);
    luks2_with_the_same_key_reads_it(&mut f, spec, &model, what);
}

fn qemu_reads_ours_row(spec: &str, bits: u32, hash: &str, seed: u64, what: &str) {
    let mut f = Fixture::new().payload_len(LEN as u64);
    let bits_arg = bits.to_string();
    let mut args = vec![
        "format", "-q", "--type", "luks1", "-c", spec, "-s", &bits_arg, "-h", hash, "-d",
    ];
    args.extend([s(&f.keyfile), s(&f.header)]);
    args.extend(fast_kdf("pbkdf2"));
    let r = luksfuse(&args, b"");
    assert_eq!(r.code, 0, "{what}: {}", r.stderr);
    let image_opts = format!(
        "driver=luks,key-secret=s,file.filename={},header.filename={}",
        s(&f.payload),
        s(&f.header)
    );
    let model = qemu_round_trip(&f, &[], &image_opts, LEN, seed, what);
    luks2_with_the_same_key_reads_it(&mut f, spec, &model, what);
}

/// The LUKS2 oracle for non-AES data (QEMU writes LUKS1 only): a LUKS2 header that luksfuse
/// formats with the LUKS1 volume's key and payload offset must read the same plaintext.
fn luks2_with_the_same_key_reads_it(f: &mut Fixture, spec: &str, model: &[u8], what: &str) {
    let dump = luksfuse(&["dump", s(&f.header)], b"").stdout;
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
    assert_eq!(r.code, 0, "{what}: {}", r.stderr);
    f.header = luks2;
    let m = Mounted::new(f, &["--name", "p"], "p");
    assert!(
        std::fs::read(m.mnt.join("p")).unwrap() == model,
        "{what}: a LUKS2 header with the same volume key reads what QEMU wrote"
    );
    m.unmount();
}

fn cryptsetup_row(spec: &str, bits: u32, hash: &str, sector: &str, seed: u64, what: &str) {
    // LUKS2 data: cryptsetup encrypts, the mount reads and writes, cryptsetup decrypts.
    let f = Fixture::new();
    let mut model = noise(LEN, seed);
    write_file(&f.payload, &model);
    let bits_arg = bits.to_string();
    let mut args = vec![
        "reencrypt",
        "--encrypt",
        "--type",
        "luks2",
        "-c",
        spec,
        "-s",
        &bits_arg,
        "--hash",
        hash,
        "--sector-size",
        sector,
        "--key-file",
        s(&f.keyfile),
    ];
    args.extend(fast_kdf("pbkdf2"));
    f.cryptsetup(&args);
    assert!(
        std::fs::read(&f.payload).unwrap() != model,
        "{what}: not encrypted"
    );
    let seg = segment_from_cryptsetup(&f.header);
    assert_eq!(seg.sector_size.get().to_string(), sector, "{what}");
    let m = Mounted::new(&f, &[], "p");
    let file = m.mnt.join("p");
    assert!(
        std::fs::read(&file).unwrap() == model,
        "{what}: the mount reads what cryptsetup encrypted"
    );
    unaligned_writes_through(&file, &mut model, seed);
    m.unmount();
    f.cryptsetup(&[
        "reencrypt",
        "--decrypt",
        "--force-offline-reencrypt",
        "--key-file",
        s(&f.keyfile),
    ]);
    assert!(
        std::fs::read(&f.payload).unwrap() == model,
        "{what}: cryptsetup decrypts what the mount wrote"
    );

    // LUKS1 keyslots, whose material is encrypted in the volume's cipher and IV generator.
    let theirs = Fixture::new();
    let mut args = vec![
        "luksFormat",
        "--type",
        "luks1",
        "-c",
        spec,
        "-s",
        &bits_arg,
        "--hash",
        hash,
    ];
    args.extend([
        "--key-file",
        s(&theirs.keyfile),
        "--pbkdf-force-iterations",
        "1000",
    ]);
    theirs.cryptsetup(&args);
    let r = luksfuse(
        &["test-key", "-d", s(&theirs.keyfile), s(&theirs.header)],
        b"",
    );
    assert_eq!(
        r.code, 0,
        "{what}: luksfuse opens cryptsetup's LUKS1 keyslot: {}",
        r.stderr
    );
    let ours = Fixture::new();
    let mut args = vec![
        "format", "-q", "--type", "luks1", "-c", spec, "-s", &bits_arg, "-h", hash, "-d",
    ];
    args.extend([s(&ours.keyfile), s(&ours.header)]);
    args.extend(fast_kdf("pbkdf2"));
    let r = luksfuse(&args, b"");
    assert_eq!(r.code, 0, "{what}: {}", r.stderr);
    ours.cryptsetup(&["open", "--test-passphrase", "--key-file", s(&ours.keyfile)]);
}

/// Sector numbers past 2^32, where `plain` (32-bit) and `plain64` differ: a sparse QEMU
/// volume of 2 TiB + 1 MiB for each. QEMU writes the same block at payload sector 0 and at
/// sector 2^32; the mount must read it there, and what the mount writes there at an unaligned
/// offset QEMU must read. With `plain` the two sectors' ciphertexts are equal (the IV wrapped
/// to 0), with `plain64` they differ.
#[test]
fn plain_and_plain64_past_sector_2_pow_32_with_qemu() {
    const TIB2: u64 = 512 << 32;
    for iv in ["plain", "plain64"] {
        let what = format!("aes-xts-{iv}");
        let f = Fixture::attached("big.luks");
        let opts = format!("key-secret=s,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg={iv},hash-alg=sha256,iter-time=10");
        let size = (TIB2 + (1 << 20)).to_string();
        qemu_create_luks(&f, &f.header, &opts, &size);
        let image_opts = format!("driver=luks,key-secret=s,file.filename={}", s(&f.header));
        let qemu_io = |cmd: &str| {
            run_ok(Command::new("qemu-io").args([
                "--object",
                &qemu_secret(&f),
                "--image-opts",
                &image_opts,
                "-c",
                cmd,
            ]))
        };
        qemu_io("write -P 0xa7 0 4096");
        qemu_io(&format!("write -P 0xa7 {TIB2} 65536"));

        let m = Mounted::new(&f, &["--name", "p"], "p");
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(m.mnt.join("p"))
            .unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            TIB2 + (1 << 20),
            "{what}: size"
        );
        let mut got = vec![0u8; 65536];
        file.read_exact_at(&mut got, TIB2).unwrap();
        assert!(
            got.iter().all(|&b| b == 0xa7),
            "{what}: the mount reads QEMU's data past 2 TiB"
        );
        file.write_all_at(&[0x3c; 30000], TIB2 + 100_007).unwrap();
        file.sync_all().unwrap();
        drop(file);
        m.unmount();
        let out = qemu_io(&format!("read -P 0x3c {} 30000", TIB2 + 100_007));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("Pattern verification failed"),
            "{what}: QEMU reads the mount's data: {text}"
        );
        let out = qemu_io(&format!("read -P 0xa7 {TIB2} 65536"));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed"));

        // The raw ciphertext of payload sector 0 and of payload sector 2^32.
        let dump = luksfuse(&["dump", s(&f.header)], b"").stdout;
        let offset: u64 = dump
            .lines()
            .find_map(|l| l.strip_prefix("Payload offset:\t"))
            .unwrap()
            .parse()
            .unwrap();
        let raw = std::fs::File::open(&f.header).unwrap();
        let (mut low, mut high) = (vec![0u8; 512], vec![0u8; 512]);
        raw.read_exact_at(&mut low, offset * 512).unwrap();
        raw.read_exact_at(&mut high, offset * 512 + TIB2).unwrap();
        assert_ne!(low, vec![0xa7; 512], "{what}: encrypted");
        assert_eq!(
            low == high,
            iv == "plain",
            "{what}: sector 2^32 has the IV of sector 0"
        );
    }
}
