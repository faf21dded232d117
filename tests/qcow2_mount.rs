//! qcow2 payloads through `luksfuse mount`: QEMU's luks driver with a `header` child over a
//! qcow2 node is the oracle for LUKS1, `cryptsetup reencrypt --decrypt` of the exported guest
//! data for LUKS2; `qemu-img check` judges the image after our writes and after kill -9.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A LUKS1 detached header plus a qcow2 payload (named `p.qcow2`) with `qemu-img create` args.
fn luks1_qcow2(create: &[&str]) -> Fixture {
    let mut f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let q = f.path("p.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .args(create)
            .arg(&q)
            .arg("32M"),
    );
    f.payload = q;
    f
}

fn qemu_secret(f: &Fixture) -> String {
    format!("secret,id=s,file={}", s(&f.keyfile))
}

fn qemu_opts(f: &Fixture) -> String {
    format!(
        "driver=luks,key-secret=s,file.driver=qcow2,file.file.filename={},header.filename={}",
        s(&f.payload),
        s(&f.header)
    )
}

/// The plaintext guest disk as QEMU's luks-over-qcow2 stack reads it.
fn qemu_plaintext(f: &Fixture) -> Vec<u8> {
    let out = f.path("qemu-plain.raw");
    run_ok(Command::new("qemu-img").args([
        "convert",
        "--object",
        &qemu_secret(f),
        "--image-opts",
        &qemu_opts(f),
        "-O",
        "raw",
        s(&out),
    ]));
    std::fs::read(&out).unwrap()
}

fn qemu_io(f: &Fixture, cmds: &[&str]) {
    let mut c = Command::new("qemu-io");
    c.args(["--object", &qemu_secret(f), "--image-opts", &qemu_opts(f)]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    run_ok(&mut c);
}

/// `qemu-img check`: exit 0 (clean) or 3 (leaked clusters only) is acceptable; returns stdout.
fn qemu_img_check(image: &Path) -> String {
    let out = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(image)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "qemu-img check failed ({:?}):\n{text}",
        out.status
    );
    text
}

#[test]
fn qemu_written_qcow2_reads_the_same_through_the_mount_including_unallocated() {
    for create in [
        &[][..],
        &["-o", "compat=0.10"][..],
        &["-o", "cluster_size=4096"][..],
    ] {
        let f = luks1_qcow2(create);
        qemu_io(
            &f,
            &[
                "write -P 0x5a 1M 64k",
                "write -P 0x11 5000000 3000",
                "write -P 0x77 30M 2M",
            ],
        );
        let expected = qemu_plaintext(&f);
        let m = Mounted::new(&f, &[], "p");
        let got = std::fs::read(m.mnt.join("p")).unwrap();
        m.unmount();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "{create:?}: mount differs from QEMU");
    }
}

#[test]
fn writes_through_the_mount_keep_qcow2_consistent_and_qemu_reads_them() {
    // Small clusters: many L2 tables, so writes cross L2-table boundaries.
    let f = luks1_qcow2(&["-o", "cluster_size=4096"]);
    // Allocated, zero and (below) compressed clusters as QEMU leaves them.
    qemu_io(&f, &["write -P 0x5a 0 256k", "write -P 0x33 8M 1M"]);
    run_ok(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -z 8M 512k", s(&f.payload)]));
    let mut model = qemu_plaintext(&f);
    let m = Mounted::new(&f, &[], "p");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(m.mnt.join("p"))
        .unwrap();
    assert!(
        std::fs::read(m.mnt.join("p")).unwrap() == model,
        "mount reads QEMU's data"
    );
    let mut rng = Rng(7);
    let mut writes = vec![
        (0u64, 512u64),
        (1, 3),
        (4095, 2),
        (8 << 20, 4096),
        ((8 << 20) + 100, 200_000),
        ((2 << 20) - 7, 10_000),
    ];
    for _ in 0..60 {
        let off = rng.below(32 << 20);
        let cap = if rng.below(3) == 0 { 3 << 20 } else { 9000 };
        let len = 1 + rng.below(((32u64 << 20) - off).min(cap));
        writes.push((off, len));
    }
    for (i, (off, len)) in writes.iter().enumerate() {
        let data = noise(*len as usize, i as u64);
        file.write_all_at(&data, *off).unwrap();
        model[*off as usize..(*off + *len) as usize].copy_from_slice(&data);
    }
    file.sync_all().unwrap();
    drop(file);
    m.unmount();
    qemu_img_check(&f.payload);
    assert!(
        qemu_plaintext(&f) == model,
        "QEMU reads what the mount wrote"
    );
}

#[test]
fn overwriting_compressed_clusters_through_the_mount() {
    // A qcow2 image whose ciphertext clusters are compressed (qemu-img convert -c).
    let f = luks1_qcow2(&[]);
    qemu_io(&f, &["write -P 0x21 0 4M"]);
    let compressed = f.path("c.qcow2");
    run_ok(Command::new("qemu-img").args([
        "convert",
        "-c",
        "-O",
        "qcow2",
        s(&f.payload),
        s(&compressed),
    ]));
    std::fs::rename(&compressed, &f.payload).unwrap();
    let mut model = qemu_plaintext(&f);
    let m = Mounted::new(&f, &[], "p");
    assert!(
        std::fs::read(m.mnt.join("p")).unwrap() == model,
        "compressed clusters read"
    );
    let file = std::fs::File::options()
        .write(true)
        .open(m.mnt.join("p"))
        .unwrap();
    for (i, (off, len)) in [(100u64, 10u64), (65536 + 17, 70_000), (3 << 20, 4096)]
        .into_iter()
        .enumerate()
    {
        let data = noise(len as usize, 100 + i as u64);
        file.write_all_at(&data, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
    }
    drop(file);
    m.unmount();
    qemu_img_check(&f.payload);
    assert!(qemu_plaintext(&f) == model);
}

#[test]
fn luks2_header_over_qcow2_matches_cryptsetup() {
    // QEMU cannot open LUKS2; cryptsetup cannot read qcow2. Export the guest data with
    // qemu-img and let cryptsetup decrypt it.
    let mut args = vec!["--type", "luks2", "--sector-size", "4096"];
    args.extend(fast_kdf("argon2id"));
    let mut f = luks_format(&args);
    let q = f.path("p.qcow2");
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s(&q), "16M"]));
    f.payload = q;
    let plain = noise(16 << 20, 5);
    let m = Mounted::new(&f, &[], "p");
    std::fs::File::options()
        .write(true)
        .open(m.mnt.join("p"))
        .unwrap()
        .write_all_at(&plain, 0)
        .unwrap();
    m.unmount();
    qemu_img_check(&f.payload);
    let guest = f.path("guest.raw");
    run_ok(Command::new("qemu-img").args([
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        s(&f.payload),
        s(&guest),
    ]));
    run_ok(Command::new("cryptsetup").args([
        "reencrypt",
        "--decrypt",
        "--force-offline-reencrypt",
        "-q",
        "--header",
        s(&f.header),
        "--key-file",
        s(&f.keyfile),
        s(&guest),
    ]));
    assert!(
        std::fs::read(&guest).unwrap() == plain,
        "cryptsetup decrypts what the mount wrote"
    );
}

#[test]
fn backing_files_are_refused_unless_allowed() {
    let f = luks1_qcow2(&[]);
    let base = f.payload.clone();
    let top = f.path("top.qcow2");
    run_ok(Command::new("qemu-img").args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "qcow2",
        s(&top),
    ]));
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let r = luksfuse(
        &["mount", "-d", s(&f.keyfile), s(&f.header), s(&top), s(&mnt)],
        b"",
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("backing"), "{}", r.stderr);
    // The library says which setting would allow it; the CLI names its option.
    assert!(
        r.stderr.contains(
            "hint: allow it with --allow-backing, or flatten: qemu-img convert -O qcow2 IMAGE NEW.qcow2"
        ),
        "{}",
        r.stderr
    );
    assert!(!is_mounted(&mnt));
    let r = luksfuse(
        &[
            "mount",
            "--allow-backing",
            "-d",
            s(&f.keyfile),
            s(&f.header),
            s(&top),
            s(&mnt),
        ],
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(mnt.join("top").exists());
    run_ok(Command::new("fusermount3").arg("-u").arg(&mnt));
}

/// kill -9 of the daemon in the middle of a write stream into a fresh qcow2 image, 20 times:
/// the image must stay consistent (leaks allowed) and every fsynced write must read back.
#[test]
fn kill_9_during_writes_leaves_a_consistent_image_and_keeps_fsynced_writes() {
    let f = luks1_qcow2(&["-o", "cluster_size=4096"]);
    let fresh = std::fs::read(&f.payload).unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut rng = Rng(99);
    for round in 0..20u64 {
        std::fs::write(&f.payload, &fresh).unwrap();
        let _g = MountGuard(mnt.clone());
        let mut child = mount_foreground(&f, &f.payload, &mnt, Stdio::null());
        let file_path: PathBuf = mnt.join("p");
        let kill_after = Duration::from_millis(20 + rng.below(400));
        let writer_path = file_path.clone();
        let writer = std::thread::spawn(move || {
            // Scattered writes, each fsynced; returns those that completed, and the range of
            // the one in flight when the daemon died (it may have landed in part or whole).
            let mut done = Vec::new();
            let mut in_flight = None;
            let Ok(file) = std::fs::File::options().write(true).open(&writer_path) else {
                return (done, in_flight);
            };
            let mut r = Rng(round * 1000 + 1);
            for i in 0..10_000u64 {
                let off = r.below(32 << 20) & !511;
                let len = (1 + r.below(16)) * 512;
                let len = len.min((32 << 20) - off);
                let data = noise(len as usize, round * 100_000 + i);
                if file.write_all_at(&data, off).is_err() || file.sync_data().is_err() {
                    in_flight = Some(off..off + len);
                    break;
                }
                done.push((off, data));
            }
            (done, in_flight)
        });
        std::thread::sleep(kill_after);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (done, in_flight) = writer.join().unwrap();
        let _ = Command::new("fusermount3").arg("-uz").arg(&mnt).status();
        qemu_img_check(&f.payload);
        // Later writes may overwrite earlier ones: replay them in order into a model of the
        // touched ranges and compare those ranges.
        let m = Mounted::new(&f, &["-r"], "p");
        let file = std::fs::File::open(m.mnt.join("p")).unwrap();
        let mut model: std::collections::BTreeMap<u64, u8> = std::collections::BTreeMap::new();
        for (off, data) in &done {
            for (i, b) in data.iter().enumerate() {
                model.insert(off + i as u64, *b);
            }
        }
        let mut bad = 0;
        for (k, (off, data)) in done.iter().enumerate() {
            let mut got = vec![0u8; data.len()];
            file.read_exact_at(&mut got, *off).unwrap();
            let lost = got
                .iter()
                .enumerate()
                .filter(|(i, b)| {
                    let at = off + *i as u64;
                    model[&at] != **b && !in_flight.as_ref().is_some_and(|r| r.contains(&at))
                })
                .count();
            if lost > 0 {
                eprintln!(
                    "round {round}: write {k} of {} at {off}+{}: {lost} bytes differ",
                    done.len(),
                    data.len()
                );
            }
            bad += lost;
        }
        drop(file);
        m.unmount();
        assert_eq!(
            bad,
            0,
            "round {round}: {} fsynced writes, {bad} bytes lost",
            done.len()
        );
    }
}
