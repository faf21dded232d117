//! cryptsetup's LUKS1 image set (`tests/luks1-images.tar.xz` in its source tree, run by its
//! `luks1-compat-test`), rebuilt here with the tools on this machine: twelve 8 MiB images, each
//! LUKS1 with its header attached, a 256-bit volume key, the payload at sector 4096, a 25000-byte
//! binary key file and a FAT file system with the volume id DEAD-BABE inside. cryptsetup's test
//! checks the key file opens every image (`open --test-passphrase`) and that the activated
//! device shows that UUID (blkid); this test does the same through `luksfuse test-key` and a
//! read-only mount of the image as header and payload.
//!
//! Who makes each image ([`Maker`]) is the strongest peer that can here (no device-mapper, no
//! kernel crypto API; cryptsetup's userspace backend is OpenSSL, QEMU's is nettle):
//! - [`Maker::CryptsetupQemu`]: cryptsetup formats the header (its keyslot), QEMU writes the
//!   file system through its `luks` driver, luksfuse reads both;
//! - [`Maker::Qemu`]: QEMU makes the header and writes the file system (cryptsetup has no
//!   Serpent or Twofish here);
//! - [`Maker::CryptsetupOurs`]: cryptsetup formats the header; QEMU has no whirlpool, so the
//!   file system goes in through a luksfuse mount (the data path is checked against QEMU in
//!   tests/ciphers_qemu.rs);
//! - [`Maker::Ours`]: no peer here makes it (LRW, ESSIV with the kernel's truncated whirlpool
//!   `wp256`, Serpent/Twofish with a whirlpool keyslot): luksfuse formats it and writes the file
//!   system through a mount, and a second, read-only mount must find it. The originals of these
//!   images were checked by hand (see the README's "What is supported"); their ciphers are
//!   checked by known answers in src/crypto.
//!
//! A wrong key file must give exit 2, as cryptsetup's "No key available with this passphrase".

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug)]
enum Maker {
    CryptsetupQemu,
    Qemu,
    CryptsetupOurs,
    Ours,
}
use Maker::*;

/// (cryptsetup's image name without `luks1_` and `.img`, cipher as the header spells it, hash,
/// who makes it).
#[rustfmt::skip]
const IMAGES: &[(&str, &str, &str, Maker)] = &[
    ("aes-cbc-essiv-sha256-sha1", "aes-cbc-essiv:sha256", "sha1", CryptsetupQemu),
    ("aes-lrw-plain64-sha1", "aes-lrw-plain64", "sha1", Ours),
    ("aes-xts-essiv-wp256-whirlpool", "aes-xts-essiv:wp256", "whirlpool", Ours),
    ("aes-xts-plain64-sha1", "aes-xts-plain64", "sha1", CryptsetupQemu),
    ("aes-xts-plain64-sha256", "aes-xts-plain64", "sha256", CryptsetupQemu),
    ("aes-xts-plain64-whirlpool", "aes-xts-plain64", "whirlpool", CryptsetupOurs),
    ("serpent-xts-plain64-sha1", "serpent-xts-plain64", "sha1", Qemu),
    ("serpent-xts-plain64-sha256", "serpent-xts-plain64", "sha256", Qemu),
    ("serpent-xts-plain64-whirlpool", "serpent-xts-plain64", "whirlpool", Ours),
    ("twofish-xts-plain64-sha1", "twofish-xts-plain64", "sha1", Qemu),
    ("twofish-xts-plain64-sha256", "twofish-xts-plain64", "sha256", Qemu),
    ("twofish-xts-plain64-whirlpool", "twofish-xts-plain64", "whirlpool", Ours),
];

const IMAGE_LEN: u64 = 8 << 20;
/// The payload offset of cryptsetup's images, in 512-byte sectors.
const OFFSET: u64 = 4096;

#[test]
fn cryptsetup_luks1_image_set_opens_and_shows_its_file_system() {
    let dir = tmpdir();
    // The file system every image holds: FAT with cryptsetup's volume id, as large as the
    // payload of an image whose data starts at sector 4096.
    let fat = dir.path().join("fat.img");
    let fat_kib = (IMAGE_LEN - OFFSET * 512) / 1024;
    run_ok(Command::new("mkfs.vfat").args(["-i", "DEADBABE", "-C", s(&fat), &fat_kib.to_string()]));
    assert_eq!(uuid_of(&fat), "DEAD-BABE", "mkfs.vfat made the model");
    let fat = std::fs::read(&fat).unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(name, cipher, hash, maker)) = IMAGES.get(i) else {
                    break;
                };
                one_image(name, cipher, hash, maker, &fat, 40 + i as u64);
            });
        }
    });
}

/// blkid's view (low-level probe, no cache) of the file system UUID in `file`.
fn uuid_of(file: &Path) -> String {
    let out = run_ok(Command::new("blkid").args(["-p", "-s", "UUID", "-o", "value", s(file)]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// 25000 printable bytes from `seed`.
fn key_file(seed: u64) -> Vec<u8> {
    noise(25000, seed).iter().map(|b| b'!' + b % 94).collect()
}

fn one_image(name: &str, cipher: &str, hash: &str, maker: Maker, fat: &[u8], seed: u64) {
    let what = format!("luks1_{name}.img ({maker:?})");
    let mut f = Fixture::new();
    // A key file of cryptsetup's size: the whole file is the passphrase (printable, as QEMU
    // takes a secret as UTF-8 text).
    write_file(&f.keyfile, &key_file(seed));
    f.header = f.path(&format!("luks1_{name}.img"));
    f.payload = f.header.clone();
    let image_opts = format!("driver=luks,key-secret=s,file.filename={}", s(&f.header));
    match maker {
        CryptsetupQemu | CryptsetupOurs => {
            write_file(&f.header, &[]);
            std::fs::File::options()
                .write(true)
                .open(&f.header)
                .and_then(|h| h.set_len(IMAGE_LEN))
                .unwrap();
            let mut args = vec!["luksFormat", "-q", "--type", "luks1", "-c", cipher];
            args.extend(["-s", "256", "-h", hash, "--key-file", s(&f.keyfile)]);
            args.extend(fast_kdf("pbkdf2"));
            args.push(s(&f.header));
            // Attached: not the fixture's `cryptsetup`, which adds `--header`.
            run_ok(Command::new("cryptsetup").args(&args));
        }
        Qemu => {
            let (alg, _) = cipher.split_once('-').unwrap();
            qemu_create_luks(&f, &f.header, &format!(
                    "key-secret=s,cipher-alg={alg}-128,cipher-mode=xts,ivgen-alg=plain64,hash-alg={hash},iter-time=10"
                ), &fat.len().to_string());
        }
        Ours => {
            let mut args = vec!["format", "-q", "--type", "luks1", "-c", cipher, "-s", "256"];
            args.extend(["-h", hash, "--offset", "4096", "-d", s(&f.keyfile)]);
            args.extend(fast_kdf("pbkdf2"));
            args.push(s(&f.header));
            let r = luksfuse(&args, b"");
            assert_eq!(r.code, 0, "{what}: format: {}", r.stderr);
            std::fs::File::options()
                .write(true)
                .open(&f.header)
                .and_then(|h| h.set_len(IMAGE_LEN))
                .unwrap();
        }
    }
    let dump = luksfuse(&["dump", s(&f.header)], b"");
    assert_eq!(dump.code, 0, "{what}: dump: {}", dump.stderr);
    let (alg, mode) = cipher.split_once('-').unwrap();
    for line in [
        format!("Cipher name:   \t{alg}\n"),
        format!("Cipher mode:   \t{mode}\n"),
        format!("Hash spec:     \t{hash}\n"),
        "MK bits:       \t256\n".to_string(),
    ] {
        assert!(
            dump.stdout.contains(&line),
            "{what}: {line:?} in\n{}",
            dump.stdout
        );
    }
    match maker {
        CryptsetupQemu | Qemu => qemu_write_plain(&f, &image_opts, fat),
        CryptsetupOurs | Ours => {
            let m = Mounted::new(&f, &["--name", "p"], "p");
            std::fs::File::options()
                .write(true)
                .open(m.mnt.join("p"))
                .and_then(|p| p.write_all_at(fat, 0))
                .unwrap();
            m.unmount();
        }
    }

    // cryptsetup's PASSPHRASE CHECK: the key file opens it; a wrong one gives exit 2.
    let r = luksfuse(&["test-key", "-d", s(&f.keyfile), s(&f.header)], b"");
    assert_eq!(r.code, 0, "{what}: test-key: {}", r.stderr);
    let wrong = f.path("wrong");
    write_file(&wrong, &key_file(seed + 1000));
    let r = luksfuse(&["test-key", "-d", s(&wrong), s(&f.header)], b"");
    assert_eq!(
        r.code, 2,
        "{what}: test-key with a wrong key file: {}",
        r.stderr
    );

    // Its ACTIVATION FS UUID CHECK: the served file shows the file system, byte for byte.
    let m = Mounted::new(&f, &["--readonly", "--name", "p"], "p");
    let served = m.mnt.join("p");
    assert_eq!(uuid_of(&served), "DEAD-BABE", "{what}: blkid on the mount");
    let data = std::fs::read(&served).unwrap();
    assert!(
        data.len() >= fat.len(),
        "{what}: payload of {} bytes",
        data.len()
    );
    assert!(
        data[..fat.len()] == *fat,
        "{what}: the mount reads the file system"
    );
    m.unmount();
    if let CryptsetupQemu | CryptsetupOurs = maker {
        // cryptsetup's keyslot, still cryptsetup's: the image was not written to by the reads.
        let out = Command::new("cryptsetup")
            .args([
                "open",
                "--test-passphrase",
                "--key-file",
                s(&f.keyfile),
                s(&f.header),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: cryptsetup opens it afterwards"
        );
    }
}
