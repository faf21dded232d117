//! Unlocking headers made by cryptsetup: the volume key luksfuse derives must equal the one
//! `cryptsetup luksDump --dump-volume-key` prints, for every format, KDF, hash and cipher.

mod common;
use common::*;
use std::ffi::OsStr;
use std::process::Command;

fn assert_same_key_as_cryptsetup(f: &Fixture) {
    let theirs = cryptsetup_volume_key(
        &f.header,
        &[OsStr::new("--key-file"), f.keyfile.as_os_str()],
    );
    let ours = luksfuse_volume_key(
        &[
            OsStr::new("dump"),
            OsStr::new("--dump-volume-key"),
            OsStr::new("-d"),
            f.keyfile.as_os_str(),
            f.header.as_os_str(),
        ],
        b"",
    );
    assert_eq!(
        ours,
        theirs,
        "volume key differs for {}",
        f.header.display()
    );
}

#[test]
fn luks1_hashes_and_ciphers_give_cryptsetups_volume_key() {
    for hash in ["sha1", "sha256", "sha512"] {
        for (cipher, bits) in [
            ("aes-xts-plain64", "512"),
            ("aes-xts-plain64", "256"),
            ("aes-cbc-essiv:sha256", "256"),
        ] {
            let f = luks_format(&[
                "--type",
                "luks1",
                "--hash",
                hash,
                "--cipher",
                cipher,
                "--key-size",
                bits,
                "--pbkdf-force-iterations",
                "1000",
            ]);
            assert_same_key_as_cryptsetup(&f);
        }
    }
}

#[test]
fn luks2_kdfs_and_sector_sizes_give_cryptsetups_volume_key() {
    for (kdf, hash) in [
        ("pbkdf2", "sha256"),
        ("pbkdf2", "sha512"),
        ("argon2i", "sha256"),
        ("argon2id", "sha256"),
    ] {
        for sector in ["512", "4096"] {
            let mut args = vec!["--type", "luks2", "--hash", hash, "--sector-size", sector];
            args.extend(fast_kdf(kdf));
            let f = luks_format(&args);
            assert_same_key_as_cryptsetup(&f);
        }
    }
}

/// Adds `new_pass` to `slot` with cryptsetup (fast PBKDF2).
fn add_key(f: &Fixture, slot: &str, new_pass: &[u8], kdf: &[&str]) {
    let newkey = f.path(&format!("newkey{slot}"));
    write_file(&newkey, new_pass);
    run_ok(
        Command::new("cryptsetup")
            .args(["luksAddKey", "-q", "--key-file"])
            .arg(&f.keyfile)
            .args(["--key-slot", slot])
            .args(kdf)
            .arg(&f.header)
            .arg(&newkey),
    );
}

#[test]
fn key_in_slot_5_only_is_found_and_named_slot_works() {
    for ty in ["luks1", "luks2"] {
        let mut args = vec!["--type", ty, "--key-slot", "5"];
        args.extend(fast_kdf("pbkdf2"));
        let f = luks_format(&args);
        assert_same_key_as_cryptsetup(&f);
        let h = f.header.to_str().unwrap();
        let k = f.keyfile.to_str().unwrap();
        assert_eq!(luksfuse(&["test-key", "-d", k, "-S", "5", h], b"").code, 0);
        let r = luksfuse(&["test-key", "-d", k, "-S", "0", h], b"");
        assert_ne!(r.code, 0, "slot 0 is empty");
        assert!(r.stderr.contains("not active"), "{}", r.stderr);
    }
}

#[test]
fn two_passphrases_in_two_slots_both_open_the_same_key() {
    for ty in ["luks1", "luks2"] {
        let mut args = vec!["--type", ty];
        args.extend(fast_kdf("pbkdf2"));
        let f = luks_format(&args);
        add_key(&f, "3", b"second passphrase", &fast_kdf("pbkdf2"));
        let h = f.header.to_str().unwrap();
        let first = luksfuse_volume_key(
            &["dump", "--dump-volume-key", h],
            b"correct horse battery staple\n",
        );
        let second = luksfuse_volume_key(&["dump", "--dump-volume-key", h], b"second passphrase\n");
        assert_eq!(first, second);
        let r = luksfuse(&["test-key", "-S", "3", h], b"second passphrase\n");
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The first passphrase does not open slot 3.
        assert_eq!(luksfuse(&["test-key", "-S", "3", h], PASS).code, 2);
    }
}

#[test]
fn key_file_with_offset_and_size_matches_cryptsetup() {
    for ty in ["luks1", "luks2"] {
        let f = pbkdf2_format(ty);
        // A binary key, taken from the middle of a larger file (with NUL and newline bytes).
        let big: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 256) as u8).collect();
        let bigfile = f.path("big.key");
        write_file(&bigfile, &big);
        let newkey = f.path("slice.key");
        write_file(&newkey, &big[1000..1000 + 300]);
        run_ok(
            Command::new("cryptsetup")
                .args(["luksAddKey", "-q", "--key-file"])
                .arg(&f.keyfile)
                .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
                .arg(&f.header)
                .arg(&newkey),
        );
        let h = f.header.to_str().unwrap();
        let b = bigfile.to_str().unwrap();
        let theirs = cryptsetup_volume_key(
            &f.header,
            &[
                OsStr::new("--key-file"),
                bigfile.as_os_str(),
                OsStr::new("--keyfile-offset"),
                OsStr::new("1000"),
                OsStr::new("--keyfile-size"),
                OsStr::new("300"),
            ],
        );
        let ours = luksfuse_volume_key(
            &[
                "dump",
                "--dump-volume-key",
                "-d",
                b,
                "--keyfile-offset",
                "1000",
                "-l",
                "300",
                h,
            ],
            b"",
        );
        assert_eq!(ours, theirs);
        // One byte off: no key.
        let r = luksfuse(
            &[
                "test-key",
                "-d",
                b,
                "--keyfile-offset",
                "1001",
                "-l",
                "300",
                h,
            ],
            b"",
        );
        assert_eq!(r.code, 2);
        // The key file from stdin with `-d -`.
        let r = luksfuse(
            &[
                "test-key",
                "-d",
                "-",
                "--keyfile-offset",
                "1000",
                "-l",
                "300",
                h,
            ],
            &big,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

#[test]
fn wrong_passphrase_exits_2_with_cryptsetups_message() {
    for ty in ["luks1", "luks2"] {
        let f = pbkdf2_format(ty);
        let h = f.header.to_str().unwrap();
        let r = luksfuse(&["test-key", h], b"wrong\n");
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("No key available with this passphrase"),
            "{}",
            r.stderr
        );
        // The right one, as a line on stdin (newline stripped, as cryptsetup does).
        let r = luksfuse(&["test-key", h], b"correct horse battery staple\n");
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

#[test]
fn luks1_header_from_qemu_unlocks() {
    // QEMU's own LUKS1 writer (non-detached image; the header is at its start).
    let dir = tmpdir();
    let img = dir.path().join("q.luks");
    let pass = dir.path().join("pass");
    write_file(&pass, b"abc123");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "--object"])
            .arg(format!("secret,id=sec0,file={}", pass.display()))
            .args(["-f", "luks", "-o", "key-secret=sec0,iter-time=10"])
            .arg(&img)
            .arg("4M"),
    );
    let theirs = cryptsetup_volume_key(&img, &[OsStr::new("--key-file"), pass.as_os_str()]);
    let ours = luksfuse_volume_key(
        &[
            OsStr::new("dump"),
            OsStr::new("--dump-volume-key"),
            OsStr::new("-d"),
            pass.as_os_str(),
            img.as_os_str(),
        ],
        b"",
    );
    assert_eq!(ours, theirs);
}

/// `dump --dump-volume-key -q` prints what `cryptsetup luksDump --dump-volume-key -q` prints:
/// the same lines on stdout, nothing on stderr (no warning block: cryptsetup shows it only
/// with its question, on a terminal without `-q`). Likewise with stdin not a terminal.
#[test]
fn volume_key_dump_prints_cryptsetups_lines_only() {
    for ty in ["luks1", "luks2"] {
        let f = pbkdf2_format(ty);
        let (h, k) = (s(&f.header), s(&f.keyfile));
        for quiet in [true, false] {
            let mut theirs = vec!["luksDump", "--dump-volume-key", "--key-file", k, h];
            let mut ours = vec!["dump", "--dump-volume-key", "-d", k, h];
            if quiet {
                theirs.insert(1, "-q");
                ours.insert(1, "-q");
            }
            let c = run_ok(Command::new("cryptsetup").args(&theirs));
            let l = luksfuse(&ours, b"");
            assert_eq!(l.code, 0, "{}", l.stderr);
            assert_eq!(
                l.stdout,
                String::from_utf8_lossy(&c.stdout),
                "{ty} -q {quiet}"
            );
            assert_eq!(
                l.stderr,
                String::from_utf8_lossy(&c.stderr),
                "{ty} -q {quiet}"
            );
            assert!(l.stderr.is_empty(), "{ty}: {}", l.stderr);
        }
    }
}

/// A cryptsetup header of type `ty` with a fast PBKDF2 keyslot (forced iterations on
/// argon2id would mean 1000 passes over 1 GiB).
fn pbkdf2_format(ty: &str) -> Fixture {
    let fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    luks_format(&[&["--type", ty][..], &fast].concat())
}
