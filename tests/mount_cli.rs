//! `luksfuse mount` as a user runs it: the daemon, the whole loop-device/ext4 story, errors that
//! leave nothing mounted and no byte changed, prompt exit on unmount or SIGTERM, and a random
//! multi-threaded workload checked against a model.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn whole_story_loop_ext4_files_then_readonly_remount() {
    let mut args = vec!["--type", "luks2", "--sector-size", "4096"];
    args.extend(fast_kdf("argon2id"));
    let f = luks_format(&args);
    std::fs::File::options()
        .write(true)
        .open(&f.payload)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let m = Mounted::new(&f, &[], "p");
    let file = m.mnt.join("p");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let line = mount_line(&m.mnt).unwrap();
    assert!(line.starts_with(&format!("{} ", s(&f.header))), "{line}");
    assert!(line.contains(" fuse.luksfuse "), "{line}");

    // losetup → mkfs.ext4 → mount → copy files → unmount everything.
    let fsdir = f.path("fs");
    std::fs::create_dir(&fsdir).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            let len = 1000 + i * 300_000;
            (
                format!("file{i}"),
                (0..len).map(|j| (j * 7 + i) as u8).collect(),
            )
        })
        .collect();
    {
        let dev = String::from_utf8(
            run_ok(Command::new("losetup").args(["-f", "--show"]).arg(&file)).stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let _loop = LoopGuard(dev.clone());
        run_ok(Command::new("mkfs.ext4").args(["-q", &dev]));
        run_ok(Command::new("mount").arg(&dev).arg(&fsdir));
        // Dropped before the loop guard: a failed assertion must not leave ext4 mounted on a
        // loop device over a FUSE file (the loop device and the daemon would stay busy).
        let _fs = UmountGuard(fsdir.clone());
        for (name, data) in &files {
            write_file(&fsdir.join(name), data);
        }
        run_ok(Command::new("umount").arg(&fsdir));
    }
    m.unmount();
    drop(m);

    // Remount read-only: same files, e2fsck clean, writes refused.
    let m = Mounted::new(&f, &["--readonly"], "p");
    let file = m.mnt.join("p");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o400);
    let err = std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    {
        let dev = String::from_utf8(
            run_ok(
                Command::new("losetup")
                    .args(["-f", "--show", "-r"])
                    .arg(&file),
            )
            .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let _loop = LoopGuard(dev.clone());
        let fsck = Command::new("e2fsck").args(["-fn", &dev]).output().unwrap();
        assert!(
            fsck.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        run_ok(
            Command::new("mount")
                .args(["-o", "ro"])
                .arg(&dev)
                .arg(&fsdir),
        );
        let _fs = UmountGuard(fsdir.clone());
        let same = files
            .iter()
            .all(|(name, data)| std::fs::read(fsdir.join(name)).unwrap() == *data);
        run_ok(Command::new("umount").arg(&fsdir));
        assert!(same, "files differ after remount");
    }
    m.unmount();
}

#[test]
fn errors_leave_nothing_mounted_and_no_byte_changed() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let before = (sha256_file(&f.header), sha256_file(&f.payload));
    let (h, p, m) = (s(&f.header), s(&f.payload), s(&mnt));

    // Wrong passphrase: 2.
    let r = luksfuse(&["mount", h, p, m], b"wrong\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    // Not a LUKS header (the payload given as header): 4.
    let r = luksfuse(&["mount", "-d", s(&f.keyfile), p, p, m], b"");
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains(p), "{}", r.stderr);
    // Missing payload: 4, naming it.
    let missing = f.path("missing.raw");
    let r = luksfuse(&["mount", "-d", s(&f.keyfile), h, s(&missing), m], b"");
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("missing.raw"), "{}", r.stderr);
    // Missing mountpoint: 1.
    let r = luksfuse(
        &["mount", "-d", s(&f.keyfile), h, p, s(&f.path("nodir"))],
        b"",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    // Payload smaller than one sector past the data offset: 4.
    let tiny = f.path("tiny.raw");
    write_file(&tiny, &[0u8; 100]);
    let r = luksfuse(&["mount", "-d", s(&f.keyfile), h, s(&tiny), m], b"");
    assert_eq!(r.code, 4, "{}", r.stderr);

    assert!(!is_mounted(&mnt), "something got mounted");
    assert!(daemons_for(&mnt).is_empty(), "a daemon was left running");
    assert_eq!(
        (sha256_file(&f.header), sha256_file(&f.payload)),
        before,
        "a file changed"
    );

    // Mountpoint busy (already mounted): 5, and the first mount keeps working.
    let first = Mounted::new(&f, &[], "p");
    let r = luksfuse(&["mount", "-d", s(&f.keyfile), h, p, m], b"");
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(first.mnt.join("p").exists());
    first.unmount();
}

#[test]
fn sigterm_in_foreground_flushes_and_exits_0_promptly() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let mut child = mount_foreground(&f, &f.payload, &mnt, Stdio::inherit());
    let file = std::fs::File::options()
        .write(true)
        .open(mnt.join("p"))
        .unwrap();
    file.write_all_at(b"written before SIGTERM", 12345).unwrap();
    drop(file);
    // SAFETY-free: kill(1) sends the signal.
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < SETTLE,
            "still running {SETTLE:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&mnt));

    // The write reached the payload: read it back through a new mount.
    let m = Mounted::new(&f, &["-r"], "p");
    let mut buf = vec![0u8; 22];
    std::fs::File::open(m.mnt.join("p"))
        .unwrap()
        .read_exact_at(&mut buf, 12345)
        .unwrap();
    assert_eq!(&buf, b"written before SIGTERM");
    m.unmount();
}

#[test]
fn random_multithreaded_workload_matches_a_model() {
    let mut args = vec!["--type", "luks2", "--sector-size", "4096"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args);
    let size = 16u64 << 20; // the fixture's payload
    let m = Mounted::new(&f, &[], "p");
    let file = std::sync::Arc::new(
        std::fs::File::options()
            .read(true)
            .write(true)
            .open(m.mnt.join("p"))
            .unwrap(),
    );
    // Start from a known state: the model is what we write first.
    let mut model = vec![0u8; size as usize];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for b in model.iter_mut() {
        *b = rng.next() as u8;
    }
    file.write_all_at(&model, 0).unwrap();
    // Each thread owns a disjoint 4 MiB region (so the model is well defined) and reads and
    // writes at any offset and length within it.
    let threads = 4;
    let model = std::sync::Arc::new(std::sync::Mutex::new(model));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let file = file.clone();
            let model = model.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0xdead_beef + t);
                let region = 4u64 << 20;
                let mut mismatches = 0;
                for _ in 0..150 {
                    // A span (1 B .. 4 MiB, often short) inside the 4 MiB region this thread owns.
                    let r = rng.below(size / region / threads) * threads + t;
                    let start = r * region + rng.below(region);
                    let max = region - (start - r * region);
                    let cap = if rng.below(4) == 0 { 4096 } else { region };
                    let len = 1 + rng.below(max.min(cap));
                    if rng.below(2) == 0 {
                        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        file.write_all_at(&data, start).unwrap();
                        model.lock().unwrap()[start as usize..(start + len) as usize]
                            .copy_from_slice(&data);
                    } else {
                        let mut buf = vec![0u8; len as usize];
                        file.read_exact_at(&mut buf, start).unwrap();
                        if buf[..] != model.lock().unwrap()[start as usize..(start + len) as usize]
                        {
                            mismatches += 1;
                        }
                    }
                }
                mismatches
            })
        })
        .collect();
    let mismatches: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(mismatches, 0, "reads that differed from the model");
    // Large unaligned reads of up to 4 MiB across everything, after all writers are done.
    let model = model.lock().unwrap();
    let mut rng = Rng(42);
    for _ in 0..20 {
        let start = rng.below(size - 1);
        let len = 1 + rng.below((4u64 << 20).min(size - start));
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, start).unwrap();
        assert!(
            buf[..] == model[start as usize..(start + len) as usize],
            "read at {start}+{len}"
        );
    }
    drop(file);
    m.unmount();
    // And the payload decrypts to the model independently (a fresh mount, read whole).
    let m = Mounted::new(&f, &["-r"], "p");
    assert!(
        std::fs::read(m.mnt.join("p")).unwrap() == *model,
        "remount differs from model"
    );
    m.unmount();
}

#[test]
fn luks1_qemu_data_through_the_mount_both_ways() {
    for (cipher, bits) in [
        ("aes-xts-plain64", "512"),
        ("aes-xts-plain64", "256"),
        ("aes-xts-plain", "512"),
        ("aes-cbc-essiv:sha256", "256"),
    ] {
        let f = luks_format(&[
            "--type",
            "luks1",
            "--pbkdf-force-iterations",
            "1000",
            "-c",
            cipher,
            "-s",
            bits,
        ]);
        let opts = format!(
            "driver=luks,key-secret=s,file.filename={},header.filename={}",
            s(&f.payload),
            s(&f.header)
        );
        qemu_round_trip(&f, &[], &opts, 16 << 20, 77, &format!("{cipher} {bits}"));
    }
}

#[test]
fn luks2_cryptsetup_reencrypted_data_through_the_mount_both_ways() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--pbkdf",
                "argon2id",
                "--pbkdf-force-iterations",
                "4",
                "--pbkdf-memory",
                "32768",
                "--sector-size",
                "4096",
            ],
            "argon2id 4096",
        ),
        (
            &[
                "--pbkdf",
                "argon2i",
                "--pbkdf-force-iterations",
                "4",
                "--pbkdf-memory",
                "32768",
                "--sector-size",
                "512",
            ],
            "argon2i 512",
        ),
        (
            &[
                "--pbkdf",
                "pbkdf2",
                "--hash",
                "sha512",
                "--pbkdf-force-iterations",
                "1000",
                "-s",
                "256",
                "--sector-size",
                "4096",
            ],
            "pbkdf2-sha512 AES-128 4096",
        ),
        (
            &[
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--sector-size",
                "2048",
            ],
            "2048-byte sectors",
        ),
    ];
    for (args, what) in cases {
        let f = Fixture::new();
        let mut model = noise(4 << 20, 99);
        write_file(&f.payload, &model);
        run_ok(
            Command::new("cryptsetup")
                .args(["reencrypt", "--encrypt", "-q", "--type", "luks2"])
                .args(args)
                .args([
                    "--header",
                    s(&f.header),
                    "--key-file",
                    s(&f.keyfile),
                    s(&f.payload),
                ]),
        );
        assert!(
            std::fs::read(&f.payload).unwrap() != model,
            "{what}: not encrypted"
        );
        let m = Mounted::new(&f, &[], "p");
        assert!(
            std::fs::read(m.mnt.join("p")).unwrap() == model,
            "{what}: mount reads cryptsetup's plaintext"
        );
        unaligned_writes_through(&m.mnt.join("p"), &mut model, 9);
        m.unmount();
        run_ok(
            Command::new("cryptsetup")
                .args(["reencrypt", "--decrypt", "--force-offline-reencrypt", "-q"])
                .args([
                    "--header",
                    s(&f.header),
                    "--key-file",
                    s(&f.keyfile),
                    s(&f.payload),
                ]),
        );
        assert!(
            std::fs::read(&f.payload).unwrap() == model,
            "{what}: cryptsetup decrypts what the mount wrote"
        );
    }
}
