//! qcow2 images with QEMU's own LUKS encryption (`qemu-img create -f qcow2 -o
//! encrypt.format=luks`), mounted alone (`luksfuse mount IMAGE MOUNTPOINT`): QEMU's qcow2
//! driver is the oracle both ways, `qemu-img check` judges the image after our writes, and
//! cryptsetup reads the embedded header bytes as a detached header.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// `qemu-img create -f qcow2` of `vm.qcow2` (12 MiB) with QEMU's LUKS encryption keyed by the
/// fixture's key file, a fast KDF and the extra `-o` options `opts` ("" for none).
fn encrypted_qcow2(opts: &str) -> Fixture {
    let mut f = Fixture::new();
    let image = f.path("vm.qcow2");
    let mut o = String::from("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10");
    if !opts.is_empty() {
        o = format!("{o},{opts}");
    }
    qemu_create(&f, "qcow2", &image, &o, "12M");
    f.payload = image;
    f
}

/// QEMU's view of the encrypted image: its qcow2 driver with the secret `s`.
fn image_opts(f: &Fixture) -> String {
    format!(
        "driver=qcow2,encrypt.key-secret=s,file.filename={}",
        s(&f.payload)
    )
}

/// `luksfuse mount -d KEY IMAGE MNT`, the two-argument form.
fn mount_alone(f: &Fixture) -> Mounted {
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let args = ["mount", "-d", s(&f.keyfile), s(&f.payload), s(&mnt)];
    Mounted::with_args(mnt.clone(), &args, "vm")
}

/// `qemu-img check` must find nothing at all (exit 0, no leaks).
fn check_clean(f: &Fixture) {
    let out = run_ok(Command::new("qemu-img").args([
        "check",
        "--object",
        &qemu_secret(f),
        "--image-opts",
        &image_opts(f),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No errors were found"),
        "qemu-img check: {text}"
    );
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Where the "full disk encryption header pointer" extension is in the image file and what it
/// says: (extension byte offset, header offset, header length).
fn crypto_extension(image: &Path) -> (usize, u64, u64) {
    let b = std::fs::read(image).unwrap();
    let mut at = be32(&b, 100) as usize;
    loop {
        let (kind, len) = (be32(&b, at), be32(&b, at + 4));
        assert_ne!(kind, 0, "no crypto header extension");
        if kind == 0x0537_be77 {
            return (at, be64(&b, at + 8), be64(&b, at + 16));
        }
        at += 8 + (len as usize).next_multiple_of(8);
    }
}

fn header_bytes(image: &Path) -> Vec<u8> {
    let (_, off, len) = crypto_extension(image);
    let mut b = vec![0u8; len as usize];
    std::fs::File::open(image)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

/// Plaintext with holes: noise except for zeros over 4..10 MiB (QEMU's `convert -n` makes
/// zero clusters or leaves them unallocated).
fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut p = noise(len, seed);
    p[4 << 20..10 << 20].fill(0);
    p
}

/// QEMU writes, the mount reads exactly what QEMU reads; the mount writes (unaligned, into
/// allocated clusters, into holes, across cluster boundaries), QEMU reads exactly that; the
/// image stays clean and its embedded header untouched.
fn round_trip(opts: &str, seed: u64) {
    let f = encrypted_qcow2(opts);
    let io = image_opts(&f);
    let header_before = header_bytes(&f.payload);
    qemu_write_plain(&f, &io, &plaintext(12 << 20, seed));
    let mut model = qemu_read_plain(&f, &io);
    assert_eq!(model.len(), 12 << 20);
    // QEMU read back the noise it wrote (the zero range may read otherwise when preallocated).
    let written = plaintext(12 << 20, seed);
    assert!(
        model[..4 << 20] == written[..4 << 20],
        "{opts}: QEMU's own read"
    );

    let m = mount_alone(&f);
    let file = m.mnt.join("vm");
    assert!(
        std::fs::read(&file).unwrap() == model,
        "{opts}: the mount reads what QEMU reads"
    );
    unaligned_writes_through(&file, &mut model, seed + 10);
    let w = std::fs::File::options().write(true).open(&file).unwrap();
    for (i, (off, len)) in [
        (5u64 << 20 | 3, 1000u64),        // inside the zero range: a hole
        ((8 << 20) - 100, 300),           // a hole, across a 2 MiB boundary
        ((6 << 20) + 511, 3 * 65536 + 2), // several holes of the small cluster sizes
        ((4 << 20) - 5, 10),              // data and hole in one write
        (11 << 20, 512),                  // an aligned sector
    ]
    .into_iter()
    .enumerate()
    {
        let data = noise(len as usize, seed + 20 + i as u64);
        w.write_all_at(&data, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
    }
    w.sync_all().unwrap();
    drop(w);
    assert!(
        std::fs::read(&file).unwrap() == model,
        "{opts}: the mount reads its own writes"
    );
    m.unmount();

    check_clean(&f);
    assert!(
        qemu_read_plain(&f, &io) == model,
        "{opts}: QEMU reads what the mount wrote"
    );
    assert!(
        header_bytes(&f.payload) == header_before,
        "{opts}: the embedded header is unchanged"
    );
}

#[test]
fn clusters_of_512_bytes() {
    round_trip("cluster_size=512", 1);
}

#[test]
fn clusters_of_64k() {
    round_trip("cluster_size=65536", 2);
}

#[test]
fn clusters_of_2m() {
    round_trip("cluster_size=2097152", 3);
}

#[test]
fn clusters_of_512_bytes_preallocated() {
    round_trip("cluster_size=512,preallocation=metadata", 4);
}

#[test]
fn clusters_of_64k_preallocated() {
    round_trip("cluster_size=65536,preallocation=metadata", 5);
}

#[test]
fn clusters_of_2m_preallocated() {
    round_trip("cluster_size=2097152,preallocation=metadata", 6);
}

/// A fresh image read through the mount equals QEMU's read (all holes: zeros), and a read-only
/// mount changes no byte of the file.
#[test]
fn fresh_image_read_only() {
    let f = encrypted_qcow2("");
    let before = std::fs::read(&f.payload).unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = Mounted::with_args(
        mnt.clone(),
        &["mount", "-r", "-d", s(&f.keyfile), s(&f.payload), s(&mnt)],
        "vm",
    );
    let got = std::fs::read(m.mnt.join("vm")).unwrap();
    assert!(got == qemu_read_plain(&f, &image_opts(&f)));
    assert!(got.iter().all(|&b| b == 0));
    m.unmount();
    assert!(std::fs::read(&f.payload).unwrap() == before);
}

/// dump shows the embedded header as cryptsetup shows the same bytes; test-key opens it; a
/// wrong key is exit 2 for test-key and mount, nothing mounted.
#[test]
fn dump_test_key_and_wrong_key() {
    let f = encrypted_qcow2("");
    let detached = f.path("extracted.img");
    write_file(&detached, &header_bytes(&f.payload));
    let ours = luksfuse(&["dump", s(&f.payload)], b"");
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    let theirs = run_ok(Command::new("cryptsetup").args(["luksDump", s(&detached)]));
    let uuid = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("UUID:"))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        uuid(&ours.stdout),
        uuid(&String::from_utf8_lossy(&theirs.stdout))
    );
    assert!(
        ours.stdout.contains("Version:       \t1"),
        "{}",
        ours.stdout
    );

    let ok = luksfuse(&["test-key", "-d", s(&f.keyfile), s(&f.payload)], b"");
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let wrong = f.path("wrong");
    write_file(&wrong, b"not the passphrase");
    let bad = luksfuse(&["test-key", "-d", s(&wrong), s(&f.payload)], b"");
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let r = luksfuse(&["mount", "-d", s(&wrong), s(&f.payload), s(&mnt)], b"");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!is_mounted(&mnt));
}

/// The legacy AES method: refused with one line naming the file, exit 4, for every command.
#[test]
fn aes_method_is_refused() {
    let f = Fixture::new();
    let image = f.path("aes.qcow2");
    qemu_create(
        &f,
        "qcow2",
        &image,
        "encrypt.format=aes,encrypt.key-secret=s",
        "1M",
    );
    let before = std::fs::read(&image).unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    for args in [
        vec!["mount", "-d", s(&f.keyfile), s(&image), s(&mnt)],
        vec!["dump", s(&image)],
        vec!["test-key", "-d", s(&f.keyfile), s(&image)],
    ] {
        let r = luksfuse(&args, b"");
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        let first = r.stderr.lines().next().unwrap();
        assert!(
            first.contains("aes.qcow2") && first.contains("legacy AES"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(!is_mounted(&mnt));
    assert!(std::fs::read(&image).unwrap() == before);
}

/// An encrypted image given as the payload of a detached header is refused with the hint to
/// mount it alone; an unencrypted qcow2 image mounted alone is refused too.
#[test]
fn wrong_forms_are_refused() {
    let f = encrypted_qcow2("");
    let other = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let r = luksfuse(
        &[
            "mount",
            "-d",
            s(&other.keyfile),
            s(&other.header),
            s(&f.payload),
            s(&mnt),
        ],
        b"",
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("mount IMAGE MOUNTPOINT"), "{}", r.stderr);

    let plain = f.path("plain.qcow2");
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s(&plain), "1M"]));
    let r = luksfuse(&["mount", "-d", s(&f.keyfile), s(&plain), s(&mnt)], b"");
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("not a LUKS header"), "{}", r.stderr);
    assert!(!is_mounted(&mnt));
    // Key commands say the same of it (that it is a qcow2 image without QEMU's encryption,
    // not only that its first bytes are no LUKS magic), and change no byte.
    let before = std::fs::read(&plain).unwrap();
    let r = luksfuse(&["kill-slot", "-q", "0", s(&plain)], b"");
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("qcow2 image without QEMU's own encryption is not a LUKS header"),
        "{}",
        r.stderr
    );
    assert!(std::fs::read(&plain).unwrap() == before);
}

/// A hostile header pointer (past the end of the file, unaligned, into cluster 0, wrong
/// length) is refused, exit 4, one line naming the file, no byte changed.
#[test]
fn bad_header_pointers_are_refused() {
    let f = encrypted_qcow2("");
    let (at, off, _) = crypto_extension(&f.payload);
    let size = std::fs::metadata(&f.payload).unwrap().len();
    let pristine = std::fs::read(&f.payload).unwrap();
    // (what, where in the file, the bytes written there)
    let cases: [(&str, usize, Vec<u8>); 6] = [
        ("past the end", at + 16, size.to_be_bytes().to_vec()),
        ("unaligned", at + 8, (off + 512).to_be_bytes().to_vec()),
        ("cluster 0", at + 8, 0u64.to_be_bytes().to_vec()),
        (
            "offset overflow",
            at + 8,
            (u64::MAX - 65535).to_be_bytes().to_vec(),
        ),
        ("empty", at + 16, 0u64.to_be_bytes().to_vec()),
        ("extension length", at + 4, 8u32.to_be_bytes().to_vec()),
    ];
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    for (what, at, bytes) in &cases {
        let mut b = pristine.clone();
        b[*at..*at + bytes.len()].copy_from_slice(bytes);
        write_file(&f.payload, &b);
        for args in [
            vec!["mount", "-d", s(&f.keyfile), s(&f.payload), s(&mnt)],
            vec!["dump", s(&f.payload)],
        ] {
            let r = luksfuse(&args, b"");
            assert_eq!(r.code, 4, "{what} {args:?}: {}", r.stderr);
            let first = r.stderr.lines().next().unwrap();
            assert!(first.contains("vm.qcow2"), "{what}: {}", r.stderr);
            assert!(
                first.contains("encryption header pointer"),
                "{what}: {}",
                r.stderr
            );
        }
        assert!(!is_mounted(&mnt), "{what}");
        assert!(
            std::fs::read(&f.payload).unwrap() == b,
            "{what}: file changed"
        );
    }
}

/// A hostile L2 entry that maps a guest cluster onto the embedded header: writes there fail
/// (EIO) and the header keeps every byte; the rest of the disk stays writable.
#[test]
fn guest_writes_never_reach_the_header() {
    let f = encrypted_qcow2("cluster_size=65536");
    let io = image_opts(&f);
    qemu_write_plain(&f, &io, &noise(1 << 20, 9));
    let (_, hdr_off, _) = crypto_extension(&f.payload);
    // Point guest cluster 3's L2 entry at the header's first cluster (keeping the flags).
    let mut b = std::fs::read(&f.payload).unwrap();
    let l1 = be64(&b, 40) as usize;
    let l2 = (be64(&b, l1) & 0x00ff_ffff_ffff_fe00) as usize;
    let entry = be64(&b, l2 + 3 * 8);
    assert_ne!(entry & 0x00ff_ffff_ffff_fe00, 0, "cluster 3 is allocated");
    let hostile = (entry & !0x00ff_ffff_ffff_fe00) | hdr_off;
    b[l2 + 24..l2 + 32].copy_from_slice(&hostile.to_be_bytes());
    write_file(&f.payload, &b);
    let header_before = header_bytes(&f.payload);

    let m = mount_alone(&f);
    let w = std::fs::File::options()
        .write(true)
        .open(m.mnt.join("vm"))
        .unwrap();
    let err = w
        .write_all_at(&[7u8; 4096], 3 * 65536 + 100)
        .and_then(|_| w.sync_all());
    assert!(err.is_err(), "a write onto the header went through");
    w.write_all_at(&[7u8; 4096], 5 * 65536).unwrap();
    w.sync_all().unwrap();
    drop(w);
    m.unmount();
    assert!(header_bytes(&f.payload) == header_before);
    let ok = luksfuse(&["test-key", "-d", s(&f.keyfile), s(&f.payload)], b"");
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

/// mount(8)'s helper with the image alone as its source (`mount -t fuse.luksfuse vm.qcow2 DIR
/// -o key-file=...`, no `header=`): the guest view QEMU reads, and a write QEMU then reads.
#[test]
fn the_mount_helper_opens_the_image_alone() {
    let f = encrypted_qcow2("");
    let io = image_opts(&f);
    let mut model = noise(2 << 20, 41);
    model.resize(12 << 20, 0);
    qemu_write_plain(&f, &io, &model[..2 << 20]);
    let m = Mounted::via_helper(&f, &f.payload, &format!("key-file={}", s(&f.keyfile)));
    let served = m.mnt.join("vm");
    assert!(
        std::fs::read(&served).unwrap() == model,
        "the mount reads QEMU's data"
    );
    std::fs::File::options()
        .write(true)
        .open(&served)
        .and_then(|v| v.write_all_at(&[0xa5; 5000], (3 << 20) + 7))
        .unwrap();
    model[(3 << 20) + 7..(3 << 20) + 5007].fill(0xa5);
    m.unmount();
    assert!(
        qemu_read_plain(&f, &io) == model,
        "QEMU reads the helper mount's write"
    );
    check_clean(&f);
}

/// `qemu-io` on the image with the key in `key`: whether QEMU opens it and reads the
/// 0x5a pattern over its first MiB.
fn qemu_reads_pattern(f: &Fixture, key: &Path) -> bool {
    let out = Command::new("qemu-io")
        .args([
            "--object",
            &format!("secret,id=s,file={}", s(key)),
            "--image-opts",
            &image_opts(f),
            "-c",
            "read -P 0x5a 0 1M",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !text.contains("failed") && text.contains("read 1048576/1048576")
}

/// Key management on the embedded header works as on any header, in place and crash-safe
/// (the plan of `luks::in_place`, offset to the header's clusters): QEMU opens the image with
/// exactly the keys we leave, cryptsetup agrees on the header bytes, the guest data and the
/// qcow2 metadata are untouched (`qemu-img check` clean), and a header backup restores a
/// header killed to its last keyslot.
#[test]
fn key_management_works_on_the_embedded_header() {
    let f = encrypted_qcow2("");
    run_ok(Command::new("qemu-io").args([
        "--object",
        &qemu_secret(&f),
        "--image-opts",
        &image_opts(&f),
        "-c",
        "write -P 0x5a 0 1M",
    ]));
    let (_, off, len) = crypto_extension(&f.payload);
    let outside = |image: &Path| {
        let mut b = std::fs::read(image).unwrap();
        b.drain(off as usize..(off + len) as usize);
        b
    };
    let before = outside(&f.payload);
    let (second, third, wrong) = (f.path("second"), f.path("third"), f.path("wrong"));
    write_file(&second, b"another passphrase");
    write_file(&third, b"and a third one");
    write_file(&wrong, b"never added");
    assert!(qemu_reads_pattern(&f, &f.keyfile));
    assert!(!qemu_reads_pattern(&f, &wrong), "QEMU opens with any key");

    let ok = |args: &[&str]| {
        let r = luksfuse(args, b"");
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    };
    let (img, key) = (s(&f.payload), s(&f.keyfile));
    ok(&[
        "add-key",
        "-d",
        key,
        "--iter-time",
        "10",
        "--new-key-file",
        s(&second),
        img,
    ]);
    assert!(qemu_reads_pattern(&f, &f.keyfile) && qemu_reads_pattern(&f, &second));
    ok(&["remove-key", "-d", key, img]);
    assert!(
        !qemu_reads_pattern(&f, &f.keyfile),
        "removed key still opens"
    );
    assert!(qemu_reads_pattern(&f, &second));
    ok(&[
        "change-key",
        "-d",
        s(&second),
        "--iter-time",
        "10",
        "--new-key-file",
        s(&third),
        img,
    ]);
    assert!(!qemu_reads_pattern(&f, &second), "changed key still opens");
    assert!(qemu_reads_pattern(&f, &third));
    // cryptsetup reads the same header bytes as a detached header.
    let detached = f.path("extracted.img");
    write_file(&detached, &header_bytes(&f.payload));
    let open = |k: &Path| {
        Command::new("cryptsetup")
            .args([
                "open",
                "--test-passphrase",
                "--key-file",
                s(k),
                s(&detached),
            ])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(open(&third), Some(0));
    assert_eq!(open(&second), Some(2));

    // Backup, kill the last keyslot, restore: the image opens again.
    let backup = f.path("backup.img");
    ok(&["header-backup", img, "--header-backup-file", s(&backup)]);
    assert!(std::fs::read(&backup).unwrap() == header_bytes(&f.payload));
    let slot = luksfuse(&["dump", img], b"")
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Key Slot ")?
                .strip_suffix(": ENABLED")
                .map(str::to_owned)
        })
        .unwrap();
    ok(&["kill-slot", "-q", &slot, img]);
    assert!(
        !qemu_reads_pattern(&f, &third),
        "killed keyslot still opens"
    );
    ok(&[
        "header-restore",
        "-q",
        img,
        "--header-backup-file",
        s(&backup),
    ]);
    assert!(qemu_reads_pattern(&f, &third));

    assert!(
        outside(&f.payload) == before,
        "bytes outside the header changed"
    );
    // The fixture's key file now holds the one key left, for `qemu-img check`.
    std::fs::copy(&third, &f.keyfile).unwrap();
    check_clean(&f);
}

/// Writers in several threads into the same holes (each its own bytes of every cluster): no
/// write is lost to another's fill of the cluster, and QEMU reads all of them.
#[test]
fn concurrent_writes_into_holes_lose_nothing() {
    let f = encrypted_qcow2("cluster_size=65536");
    let m = mount_alone(&f);
    let file = m.mnt.join("vm");
    let threads = 4usize;
    let clusters = 64u64;
    std::thread::scope(|sc| {
        for t in 0..threads {
            let file = &file;
            sc.spawn(move || {
                let w = std::fs::File::options().write(true).open(file).unwrap();
                for c in 0..clusters {
                    let data = noise(1000, 100 + t as u64 * 1000 + c);
                    w.write_all_at(&data, c * 65536 + 7 + t as u64 * 1000)
                        .unwrap();
                }
            });
        }
    });
    m.unmount();
    check_clean(&f);
    let got = qemu_read_plain(&f, &image_opts(&f));
    let mut want = vec![0u8; 12 << 20];
    for t in 0..threads {
        for c in 0..clusters {
            let at = (c * 65536 + 7 + t as u64 * 1000) as usize;
            want[at..at + 1000].copy_from_slice(&noise(1000, 100 + t as u64 * 1000 + c));
        }
    }
    assert!(got == want, "a write was lost");
}

/// After an internal snapshot QEMU's writes move clusters (copy-on-write, re-encrypted for
/// their new host offset): a read-only mount reads exactly what QEMU reads; a writable mount
/// is refused (snapshots), exit 4, nothing changed.
#[test]
fn snapshot_moved_clusters_read_only() {
    let f = encrypted_qcow2("cluster_size=65536");
    let io = image_opts(&f);
    qemu_write_plain(&f, &io, &noise(2 << 20, 31));
    run_ok(Command::new("qemu-img").args([
        "snapshot",
        "--object",
        &qemu_secret(&f),
        "--image-opts",
        &io,
        "-c",
        "s1",
    ]));
    run_ok(Command::new("qemu-io").args([
        "--object",
        &qemu_secret(&f),
        "--image-opts",
        &io,
        "-c",
        "write -P 0x5c 66048 1024",
        "-c",
        "write -P 0xc5 1048576 131072",
    ]));
    let want = qemu_read_plain(&f, &io);
    assert_eq!(want[66048], 0x5c);
    let before = std::fs::read(&f.payload).unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    {
        let _guard = MountGuard(mnt.clone());
        let r = luksfuse(&["mount", "-d", s(&f.keyfile), s(&f.payload), s(&mnt)], b"");
        assert_eq!(r.code, 4, "{}", r.stderr);
        assert!(r.stderr.contains("snapshot"), "{}", r.stderr);
    }
    let m = Mounted::with_args(
        mnt.clone(),
        &["mount", "-r", "-d", s(&f.keyfile), s(&f.payload), s(&mnt)],
        "vm",
    );
    assert!(std::fs::read(m.mnt.join("vm")).unwrap() == want);
    m.unmount();
    assert!(std::fs::read(&f.payload).unwrap() == before);
}
