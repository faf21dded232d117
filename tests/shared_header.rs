//! One detached header shared by several payloads (the open TODO of QEMU's detached-header
//! document): mounted together as several files, and from two processes at once; each payload
//! keeps its own write lock, so QEMU cannot write one we serve. QEMU is the oracle for data.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// QEMU's image options for `payload` (raw or qcow2) under the fixture's header.
fn opts(f: &Fixture, payload: &Path) -> String {
    let driver = if payload.extension().is_some_and(|e| e == "qcow2") {
        "qcow2"
    } else {
        "raw"
    };
    format!(
        "driver=luks,key-secret=s,file.driver={driver},file.file.filename={},header.filename={}",
        s(payload),
        s(&f.header)
    )
}

#[test]
fn one_header_several_payloads_together_and_from_two_processes() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let p1 = f.payload.clone(); // p.raw, 16 MiB
    let p2 = f.path("second.raw");
    std::fs::File::create(&p2)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let p3 = f.path("third.qcow2");
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s(&p3), "16M"]));
    let (d1, d3) = (noise(16 << 20, 1), noise(16 << 20, 3));
    qemu_write_plain(&f, &opts(&f, &p1), &d1);
    qemu_write_plain(&f, &opts(&f, &p3), &d3);

    // Two payloads in one mount: two files.
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let r = luksfuse(
        &[
            "mount",
            "-d",
            s(&f.keyfile),
            s(&f.header),
            s(&p1),
            s(&p3),
            s(&mnt),
        ],
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["p", "third"]);
    assert!(std::fs::read(mnt.join("p")).unwrap() == d1, "first payload");
    assert!(
        std::fs::read(mnt.join("third")).unwrap() == d3,
        "second payload (qcow2)"
    );

    // Meanwhile QEMU may not write a payload we serve.
    let out = Command::new("qemu-io")
        .args([
            "--object",
            &qemu_secret(&f),
            "--image-opts",
            &opts(&f, &p1),
            "-c",
            "write 0 512",
        ])
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && err.contains("Failed to get \"write\" lock"),
        "{err}"
    );

    // A second process serves the third payload under the same header at the same time.
    let mnt2 = f.path("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let _g2 = MountGuard(mnt2.clone());
    let r = luksfuse(
        &["mount", "-d", s(&f.keyfile), s(&f.header), s(&p2), s(&mnt2)],
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d2 = noise(16 << 20, 2);
    let file = std::fs::File::options()
        .write(true)
        .open(mnt2.join("second"))
        .unwrap();
    file.write_all_at(&d2, 0).unwrap();
    drop(file);
    // And no second mount may serve a payload the first one serves.
    let mnt3 = f.path("mnt3");
    std::fs::create_dir(&mnt3).unwrap();
    let _g3 = MountGuard(mnt3.clone());
    let r = luksfuse(
        &["mount", "-d", s(&f.keyfile), s(&f.header), s(&p1), s(&mnt3)],
        b"",
    );
    assert_eq!(r.code, 5, "{}", r.stderr);

    for m in [&mnt, &mnt2] {
        run_ok(Command::new("fusermount3").arg("-uz").arg(m));
    }
    // QEMU can take its locks only once both daemons have exited.
    for m in [&mnt, &mnt2] {
        assert!(
            wait_daemon_gone(m, SETTLE).is_some(),
            "daemon still running"
        );
    }
    assert!(
        qemu_read_plain(&f, &opts(&f, &p2)) == d2,
        "QEMU reads what the second process wrote"
    );
    assert!(qemu_read_plain(&f, &opts(&f, &p1)) == d1);
}

#[test]
fn payloads_with_the_same_name_are_refused() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let other = f.path("p.qcow2");
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s(&other), "16M"]));
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let r = luksfuse(
        &[
            "mount",
            "-d",
            s(&f.keyfile),
            s(&f.header),
            s(&f.payload),
            s(&other),
            s(&mnt),
        ],
        b"",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("both be served as 'p'"), "{}", r.stderr);
    assert!(!is_mounted(&mnt));
}
