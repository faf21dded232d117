//! Headers made and changed by luksfuse, checked against the real peers: cryptsetup opens and
//! dumps them with the same volume key, QEMU reads LUKS1 ones, keys move both ways, a change
//! killed at any moment leaves a header that opens, and refusals change no byte.

mod common;

use common::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Writes a key file `name` holding `content` in `dir`.
fn key(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    write_file(&p, content);
    p
}

/// `cryptsetup open --test-passphrase` on the header file itself.
fn cryptsetup_opens(header: &Path, keyfile: &Path) -> bool {
    Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(keyfile)
        .arg(header)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn luksfuse_opens(header: &Path, keyfile: &Path) -> bool {
    let r = luksfuse(
        &[
            OsStr::new("test-key"),
            "-d".as_ref(),
            keyfile.as_os_str(),
            header.as_os_str(),
        ],
        b"",
    );
    assert!(
        r.code == 0 || r.code == 2,
        "test-key: {} {}",
        r.code,
        r.stderr
    );
    r.code == 0
}

fn lf_key(header: &Path, keyfile: &Path) -> Vec<u8> {
    luksfuse_volume_key(
        &[
            OsStr::new("dump"),
            "-q".as_ref(),
            "--dump-volume-key".as_ref(),
            "-d".as_ref(),
            keyfile.as_os_str(),
            header.as_os_str(),
        ],
        b"",
    )
}

fn cs_key(header: &Path, keyfile: &Path) -> Vec<u8> {
    cryptsetup_volume_key(header, &[OsStr::new("--key-file"), keyfile.as_os_str()])
}

/// `luksfuse format -q` with `args`, key file `keyfile`; asserts success.
fn format(header: &Path, keyfile: &Path, args: &[&str]) {
    let mut all: Vec<&OsStr> = vec!["format".as_ref(), "-q".as_ref(), "-d".as_ref()];
    all.push(keyfile.as_os_str());
    all.extend(args.iter().map(OsStr::new));
    all.push(header.as_os_str());
    let r = luksfuse(&all, b"");
    assert_eq!(r.code, 0, "format {args:?}: {}", r.stderr);
}

fn lf(args: &[&OsStr]) -> Run {
    luksfuse(args, b"")
}

#[test]
fn formatted_headers_open_in_cryptsetup_with_the_same_volume_key() {
    let dir = tmpdir();
    let k = key(dir.path(), "k", PASS);
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // type, kdf, hash, key bits, sector size
        ("luks1", "pbkdf2", "sha256", "512", "512"),
        ("luks1", "pbkdf2", "sha512", "256", "512"),
        ("luks2", "pbkdf2", "sha256", "256", "512"),
        ("luks2", "pbkdf2", "sha512", "512", "4096"),
        ("luks2", "argon2i", "sha256", "256", "4096"),
        ("luks2", "argon2id", "sha256", "512", "512"),
        ("luks2", "argon2id", "sha512", "256", "4096"),
    ];
    for (i, (kind, kdf, hash, bits, sector)) in cases.iter().enumerate() {
        let h = dir.path().join(format!("h{i}.img"));
        let mut args = vec![
            "--type",
            kind,
            "-h",
            hash,
            "-s",
            bits,
            "--sector-size",
            sector,
        ];
        args.extend(fast_kdf(kdf));
        format(&h, &k, &args);
        let what = format!("{kind} {kdf} {hash} {bits} {sector}");
        assert!(cryptsetup_opens(&h, &k), "cryptsetup cannot open {what}");
        let dump = run_ok(Command::new("cryptsetup").arg("luksDump").arg(&h));
        let text = String::from_utf8_lossy(&dump.stdout);
        if *kind == "luks2" {
            assert!(
                text.contains(&format!("sector: {sector} [bytes]")),
                "{what}: {text}"
            );
            assert!(
                text.contains(&format!("PBKDF:      {kdf}")),
                "{what}: {text}"
            );
            assert_eq!(std::fs::metadata(&h).unwrap().len(), 16 << 20);
        } else {
            assert!(
                text.contains(&format!("Hash spec:     \t{hash}")),
                "{what}: {text}"
            );
            assert!(text.contains("Payload offset:\t0"), "{what}: {text}");
        }
        let vk = cs_key(&h, &k);
        assert_eq!(vk.len() * 8, bits.parse::<usize>().unwrap(), "{what}");
        assert_eq!(vk, lf_key(&h, &k), "{what}: volume keys differ");
        // A wrong key opens nothing.
        let wrong = key(dir.path(), "wrong", b"wrong");
        assert!(!cryptsetup_opens(&h, &wrong));
        assert!(!luksfuse_opens(&h, &wrong));
    }
}

#[test]
fn luks1_header_works_in_qemu_and_its_data_reads_back_through_the_mount() {
    let f = Fixture::new().payload_len(4 << 20);
    let (header, payload, keyfile) = (&f.header, &f.payload, &f.keyfile);
    let mut args = vec!["--type", "luks1"];
    args.extend(fast_kdf("pbkdf2"));
    format(header, keyfile, &args);
    let secret = format!("secret,id=s,file={}", s(keyfile));
    let opts = format!(
        "driver=luks,key-secret=s,file.filename={},header.filename={}",
        s(payload),
        s(header)
    );
    run_ok(Command::new("qemu-img").args(["info", "--object", &secret, "--image-opts", &opts]));
    run_ok(Command::new("qemu-io").args([
        "--object",
        &secret,
        "--image-opts",
        &opts,
        "-c",
        "write -P 0xa5 0 512",
        "-c",
        "write -P 0x3c 1M 64k",
        "-c",
        "read -P 0xa5 0 512",
    ]));
    let m = Mounted::new(&f, &[], "p");
    let data = std::fs::read(m.mnt.join("p")).unwrap();
    assert_eq!(data.len(), 4 << 20);
    assert!(data[..512].iter().all(|&b| b == 0xa5));
    assert!(data[1 << 20..(1 << 20) + (64 << 10)]
        .iter()
        .all(|&b| b == 0x3c));
    m.unmount();
}

#[test]
fn keys_move_between_luksfuse_and_cryptsetup_and_the_volume_key_stays() {
    for kind in ["luks1", "luks2"] {
        let dir = tmpdir();
        let h = dir.path().join("h.img");
        let k1 = key(dir.path(), "k1", b"first key");
        let k2 = key(dir.path(), "k2", b"second key");
        let k3 = key(dir.path(), "k3", b"third key");
        let k4 = key(dir.path(), "k4", b"fourth key");
        let mut args = vec!["--type", kind];
        args.extend(fast_kdf("pbkdf2"));
        format(&h, &k1, &args);
        let vk = cs_key(&h, &k1);

        // luksfuse adds, cryptsetup opens.
        let mut add: Vec<&OsStr> = vec!["add-key".as_ref(), "-d".as_ref(), k1.as_os_str()];
        add.extend(["--new-key-file".as_ref(), k2.as_os_str()]);
        add.extend(
            fast_kdf("argon2id")
                .into_iter()
                .map(OsStr::new)
                .filter(|_| kind == "luks2"),
        );
        add.extend(
            fast_kdf("pbkdf2")
                .into_iter()
                .map(OsStr::new)
                .filter(|_| kind == "luks1"),
        );
        add.push(h.as_os_str());
        let r = lf(&add);
        assert_eq!(r.code, 0, "{kind} add-key: {}", r.stderr);
        assert!(cryptsetup_opens(&h, &k2), "{kind}");
        assert_eq!(cs_key(&h, &k2), vk);

        // cryptsetup adds, luksfuse opens.
        run_ok(
            Command::new("cryptsetup")
                .args(["luksAddKey", "-q", "--pbkdf-force-iterations", "1000"])
                .args(if kind == "luks2" {
                    &["--pbkdf", "pbkdf2"][..]
                } else {
                    &[]
                })
                .arg("--key-file")
                .arg(&k1)
                .arg(&h)
                .arg(&k3),
        );
        assert!(luksfuse_opens(&h, &k3), "{kind}");
        assert_eq!(lf_key(&h, &k3), vk);

        // Removed keys open nowhere; the others still do.
        let r = lf(&[
            "remove-key".as_ref(),
            "-d".as_ref(),
            k2.as_os_str(),
            h.as_os_str(),
        ]);
        assert_eq!(r.code, 0, "{kind} remove-key: {}", r.stderr);
        assert!(
            !cryptsetup_opens(&h, &k2) && !luksfuse_opens(&h, &k2),
            "{kind}"
        );
        let r = lf(&[
            "kill-slot".as_ref(),
            "2".as_ref(),
            "-d".as_ref(),
            k1.as_os_str(),
            h.as_os_str(),
        ]);
        assert_eq!(r.code, 0, "{kind} kill-slot: {}", r.stderr);
        assert!(
            !cryptsetup_opens(&h, &k3) && !luksfuse_opens(&h, &k3),
            "{kind}"
        );

        // change-key: the new key in the same slot, the old one gone.
        let mut change: Vec<&OsStr> = vec!["change-key".as_ref(), "-d".as_ref(), k1.as_os_str()];
        change.extend(["--new-key-file".as_ref(), k4.as_os_str()]);
        change.extend(fast_kdf("pbkdf2").into_iter().map(OsStr::new));
        change.push(h.as_os_str());
        let r = lf(&change);
        assert_eq!(r.code, 0, "{kind} change-key: {}", r.stderr);
        assert!(
            !cryptsetup_opens(&h, &k1) && !luksfuse_opens(&h, &k1),
            "{kind}"
        );
        assert!(cryptsetup_opens(&h, &k4), "{kind}");
        assert_eq!(cs_key(&h, &k4), vk);
        assert_eq!(lf_key(&h, &k4), vk);
        let dump = run_ok(Command::new("cryptsetup").arg("luksDump").arg(&h));
        let text = String::from_utf8_lossy(&dump.stdout);
        let active = if kind == "luks1" {
            text.matches(": ENABLED").count()
        } else {
            text.matches(": luks2").count()
        };
        assert_eq!(active, 1, "{kind}: {text}");
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("luksfuse-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}

#[test]
fn change_key_killed_at_any_moment_leaves_the_old_or_the_new_key() {
    for kind in ["luks2", "luks1"] {
        let dir = tmpdir();
        let h = dir.path().join("h.img");
        let keys = [
            key(dir.path(), "a", b"passphrase A"),
            key(dir.path(), "b", b"passphrase B"),
        ];
        let mut args = vec!["--type", kind];
        args.extend(fast_kdf("pbkdf2"));
        format(&h, &keys[0], &args);
        let vk = lf_key(&h, &keys[0]);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut rng = Rng(seed | 1);
        // How long one uncontended change takes here (it syncs a 16 MiB file): half of the
        // runs are killed within 0–30 ms, the other half anywhere in twice that time, so that
        // both sides of the rename are hit.
        let change = |from: &Path, to: &Path| {
            Command::new(env!("CARGO_BIN_EXE_luksfuse"))
                .args([
                    "change-key",
                    "--pbkdf",
                    "pbkdf2",
                    "--pbkdf-force-iterations",
                    "1000",
                ])
                .arg("-d")
                .arg(from)
                .arg("--new-key-file")
                .arg(to)
                .arg(&h)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let start = std::time::Instant::now();
        assert!(change(&keys[0], &keys[1]).wait().unwrap().success());
        let full = start.elapsed().as_micros() as u64;
        let (mut cur, mut old_won, mut new_won) = (1usize, 0, 0);
        // Runs in a row killed before the rename: on a loaded machine a change takes far
        // longer than the one timed above, and the later half-runs then wait longer (doubling
        // every 4 such runs, up to 64 times), so that the rename is still reached.
        let mut early_streak = 0u32;
        for i in 0..50 {
            let next = 1 - cur;
            let mut child = change(&keys[cur], &keys[next]);
            let limit = if i % 2 == 0 {
                30_000
            } else {
                (2 * full) << (early_streak / 4).min(6)
            };
            std::thread::sleep(Duration::from_micros(rng.below(limit.max(1))));
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            let opens_old = luksfuse_opens(&h, &keys[cur]);
            let opens_new = luksfuse_opens(&h, &keys[next]);
            assert!(
                opens_old ^ opens_new,
                "{kind} run {i} (seed {seed}): old opens {opens_old}, new opens {opens_new}"
            );
            if i % 5 == 0 {
                let k = if opens_new { &keys[next] } else { &keys[cur] };
                assert!(
                    cryptsetup_opens(&h, k),
                    "{kind} run {i}: cryptsetup disagrees"
                );
            }
            if opens_new {
                new_won += 1;
                cur = next;
                early_streak = 0;
            } else {
                old_won += 1;
                early_streak += 1;
            }
        }
        assert_eq!(lf_key(&h, &keys[cur]), vk, "{kind}");
        assert_eq!(cs_key(&h, &keys[cur]), vk, "{kind}");
        eprintln!(
            "{kind}: one change takes {full} µs; {old_won} runs killed before the rename, {new_won} after"
        );
        assert!(
            new_won > 0,
            "{kind}: no run got as far as the rename; the test hit one side only"
        );
    }
}

#[test]
fn refusals_change_no_byte_of_the_header() {
    let dir = tmpdir();
    let k = key(dir.path(), "k", PASS);
    let h = dir.path().join("h.img");
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    format(&h, &k, &args);
    let before = sha256_file(&h);
    let ks = s(&k);
    let hs = s(&h);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // Overwriting without consent (stdin is not a terminal).
        (
            vec![
                "format",
                "-d",
                ks,
                "--pbkdf-force-iterations",
                "1000",
                "--pbkdf",
                "pbkdf2",
                hs,
            ],
            1,
            "refusing to overwrite",
        ),
        (
            vec!["format", "-q", "-d", ks, "-c", "blowfish-xts-plain64", hs],
            1,
            "not supported",
        ),
        (
            vec!["format", "-q", "-d", ks, "-c", "aes-cbc-foo", hs],
            1,
            "not supported",
        ),
        (
            vec!["format", "-q", "-d", ks, "-s", "128", hs],
            1,
            "not valid",
        ),
        (
            vec![
                "format",
                "-q",
                "-d",
                ks,
                "-c",
                "aes-cbc-essiv:sha256",
                "-s",
                "512",
                hs,
            ],
            1,
            "not valid",
        ),
        (
            vec!["format", "-q", "-d", ks, "--sector-size", "1000", hs],
            1,
            "power of two",
        ),
        (
            vec!["format", "-q", "-d", ks, "--sector-size", "8192", hs],
            1,
            "power of two",
        ),
        (
            vec!["format", "-q", "-d", ks, "--sector-size", "256", hs],
            1,
            "power of two",
        ),
        (
            vec![
                "format",
                "-q",
                "-d",
                ks,
                "--type",
                "luks1",
                "--sector-size",
                "4096",
                hs,
            ],
            1,
            "512",
        ),
        // The last keyslot needs -q, --force or YES on a terminal; unlike cryptsetup, a
        // run without a terminal is not taken as a yes.
        (vec!["remove-key", "-d", ks, hs], 1, "last"),
        (vec!["kill-slot", "0", "-d", ks, hs], 1, "last"),
        (vec!["kill-slot", "3", "-q", hs], 1, "not active"),
        (
            vec!["add-key", "-S", "0", "-d", ks, "--new-key-file", ks, hs],
            1,
            "full",
        ),
        (
            vec!["change-key", "-d", "/nonexistent", "--new-key-file", ks, hs],
            1,
            "key file",
        ),
    ];
    for (args, code, msg) in cases {
        let r = luksfuse(&args, b"");
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr
                .trim_end()
                .lines()
                .filter(|l| !l.starts_with("hint:"))
                .count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(sha256_file(&h), before, "{args:?} changed the header");
    }
    // A wrong key: exit 2, nothing changed.
    let wrong = key(dir.path(), "wrong", b"wrong");
    for args in [
        vec!["add-key", "-d", s(&wrong), "--new-key-file", ks, hs],
        vec!["remove-key", "-d", s(&wrong), hs],
        vec!["change-key", "-d", s(&wrong), "--new-key-file", ks, hs],
    ] {
        let r = luksfuse(&args, b"");
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(sha256_file(&h), before, "{args:?} changed the header");
    }
    // -q confirms up front, as in cryptsetup (luksRemoveKey -q, luksKillSlot -q); so does
    // --force. The last keyslot then goes and the header opens with nothing.
    for (i, args) in [
        vec!["remove-key", "-q", "-d", ks],
        vec!["kill-slot", "-q", "0"],
        vec!["kill-slot", "--force", "0"],
    ]
    .into_iter()
    .enumerate()
    {
        let copy = dir.path().join(format!("copy{i}.img"));
        std::fs::copy(&h, &copy).unwrap();
        let mut args = args;
        args.push(s(&copy));
        let r = luksfuse(&args, b"");
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(!cryptsetup_opens(&copy, &k), "{args:?}");
    }
}

#[test]
fn add_key_while_mounted_is_refused_as_busy() {
    let f = Fixture::new().payload_len(1 << 20);
    let k2 = key(f.dir.path(), "k2", b"another");
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    format(&f.header, &f.keyfile, &args);
    let before = sha256_file(&f.header);
    let add = [
        "add-key",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "-d",
        s(&f.keyfile),
        "--new-key-file",
        s(&k2),
        s(&f.header),
    ];
    {
        let m = Mounted::new(&f, &[], "p");
        let r = luksfuse(&add, b"");
        assert_eq!(r.code, 5, "{}", r.stderr);
        assert!(r.stderr.contains("in use"), "{}", r.stderr);
        assert!(r.stderr.contains(s(&f.header)), "{}", r.stderr);
        assert_eq!(sha256_file(&f.header), before);
        // Formatting over it is refused the same way.
        let r = luksfuse(
            &["format", "--force", "-d", s(&f.keyfile), s(&f.header)],
            b"",
        );
        assert_eq!(r.code, 5, "{}", r.stderr);
        assert_eq!(sha256_file(&f.header), before);
        m.unmount();
    }
    let r = luksfuse(&add, b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(cryptsetup_opens(&f.header, &k2));
}

#[test]
fn changing_a_header_open_in_qemu_is_refused_as_busy() {
    let f = Fixture::new().payload_len(1 << 20);
    let (header, payload, keyfile) = (&f.header, &f.payload, &f.keyfile);
    let mut args = vec!["--type", "luks1"];
    args.extend(fast_kdf("pbkdf2"));
    format(header, keyfile, &args);
    let before = sha256_file(header);
    let mut qemu = Command::new("qemu-io")
        .arg("--object")
        .arg(format!("secret,id=s,file={}", s(keyfile)))
        .arg("--image-opts")
        .arg(format!(
            "driver=luks,key-secret=s,file.filename={},header.filename={}",
            s(payload),
            s(header)
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_qemu_locks(header);
    let r = luksfuse(&["kill-slot", "0", "--force", s(header)], b"");
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("QEMU"), "{}", r.stderr);
    assert_eq!(sha256_file(header), before);
}

/// A `change-key` killed before its rename leaves `.h.img.luksfuse-XXXXXXXXXXXX.tmp`, a copy of
/// the header with key material. The next change of that header wipes and removes it; a
/// refused change touches nothing, and look-alike names stay.
#[test]
fn the_next_change_removes_copies_left_by_killed_updates() {
    let dir = tmpdir();
    let keyfile = key(dir.path(), "key", PASS);
    let k2 = key(dir.path(), "k2", b"another");
    let wrong = key(dir.path(), "wrong", b"wrong");
    let header = dir.path().join("h.img");
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    format(&header, &keyfile, &args);
    let stale = dir.path().join(".h.img.luksfuse-0123456789ab.tmp");
    std::fs::copy(&header, &stale).unwrap();
    // Not copies of this header: another header's, a different pattern, a symlink.
    let others = [
        ".h2.img.luksfuse-0123456789ab.tmp",
        ".h.img.luksfuse-0123456789a.tmp",
        ".h.img.luksfuse-0123456789ax.tmp",
        "h.img.luksfuse-0123456789ab.tmp",
    ];
    for o in others {
        write_file(&dir.path().join(o), b"keep me");
    }
    let link = dir.path().join(".h.img.luksfuse-ba9876543210.tmp");
    std::os::unix::fs::symlink(&keyfile, &link).unwrap();
    let add = |old: &Path| {
        luksfuse(
            &[
                "add-key",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "-d",
                s(old),
                "--new-key-file",
                s(&k2),
                s(&header),
            ],
            b"",
        )
    };

    let r = add(&wrong);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        sha256_file(&stale),
        sha256_file(&header),
        "a refused change touched the copy"
    );

    let r = add(&keyfile);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!stale.exists(), "the stale copy is still there");
    assert!(r.stderr.contains("interrupted update"), "{}", r.stderr);
    assert!(cryptsetup_opens(&header, &k2));
    for o in others {
        assert_eq!(
            std::fs::read(dir.path().join(o)).unwrap(),
            b"keep me",
            "{o}"
        );
    }
    assert!(link.symlink_metadata().is_ok(), "the symlink was removed");
    assert_eq!(
        std::fs::read(&keyfile).unwrap(),
        PASS,
        "followed the symlink"
    );
}
