//! `luksfuse umount`: it returns only once the daemon has synced and exited, so QEMU can open
//! the payload read-write and a new mount can take the mountpoint at once; a busy mount is
//! refused (exit 5) naming what holds it (a process, a fuse2fs mount, a loop device); what is
//! no luksfuse mount is refused (exit 4); a stale mount (daemon killed) is reported by `mount`
//! and cleared by `umount`.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A LUKS1 detached header (QEMU reads LUKS1 only) with a fast KDF over a `len`-byte payload.
fn luks1(len: u64) -> Fixture {
    let mut args = vec!["--type", "luks1"];
    args.extend(fast_kdf("pbkdf2"));
    Fixture::new().payload_len(len).luks_format(&args)
}

fn umount(args: &[&str]) -> Run {
    let mut all = vec!["umount"];
    all.extend_from_slice(args);
    luksfuse(&all, b"")
}

/// The one live daemon serving `mnt`.
fn daemon(mnt: &Path) -> u32 {
    let pids = daemons_for(mnt);
    assert_eq!(pids.len(), 1, "daemons of {}: {pids:?}", mnt.display());
    pids[0]
}

/// QEMU's view of the fixture's payload with its detached header: the `luks` driver with a
/// `header` child over the raw file, or over a qcow2 node.
fn image_opts(f: &Fixture, qcow2: bool) -> String {
    let file = if qcow2 {
        "file.driver=qcow2,file.file.filename"
    } else {
        "file.filename"
    };
    format!(
        "driver=luks,key-secret=s,{file}={},header.filename={}",
        s(&f.payload),
        s(&f.header)
    )
}

/// qemu-io on the payload, read-write, running `cmds`; panics if it fails or a pattern does
/// not match.
fn qemu_io(f: &Fixture, qcow2: bool, cmds: &[String]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args([
        "--object",
        &qemu_secret(f),
        "--image-opts",
        &image_opts(f, qcow2),
    ]);
    for c in cmds {
        cmd.arg("-c").arg(c);
    }
    let out = run_ok(&mut cmd);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !said.contains("Pattern verification failed") && !said.contains("failed"),
        "qemu-io {cmds:?}: {said}"
    );
}

const BLOCK: u64 = 4096;

#[test]
fn umount_then_at_once_qemu_opens_read_write_and_a_new_mount_succeeds_50_times() {
    rounds(&luks1(1 << 20), false, 50);
}

/// The same with a qcow2 payload, whose metadata the daemon must have flushed too:
/// `qemu-img check` finds the image clean right after each unmount.
#[test]
fn with_a_qcow2_payload_qemu_img_check_is_clean_at_once_after_each_umount() {
    let mut f = luks1(1 << 20);
    f.payload = f.path("p.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o", "cluster_size=4096"])
            .arg(&f.payload)
            .arg("1M"),
    );
    rounds(&f, true, 20);
}

/// `n` rounds of: mount, check what QEMU wrote in the round before, write, `luksfuse umount`,
/// and at once (the daemon gone, the mount gone) QEMU reads it and writes (read-write, so
/// it takes the write lock). Then a last mount reads every round's data.
fn rounds(f: &Fixture, qcow2: bool, n: u64) {
    let mnt = f.path("mnt");
    let name = f.payload.file_stem().unwrap().to_str().unwrap();
    for i in 0..n {
        let m = Mounted::new(f, &[], name);
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(m.mnt.join(name))
            .unwrap();
        if i > 0 {
            // What QEMU wrote in the round before, right after the unmount.
            let mut back = vec![0u8; BLOCK as usize];
            file.read_exact_at(&mut back, (i - 1) * 2 * BLOCK + BLOCK)
                .unwrap();
            assert!(
                back.iter().all(|&b| b == 0x80 + (i - 1) as u8),
                "round {i}: the mount reads what QEMU wrote"
            );
        }
        file.write_all_at(&vec![1 + i as u8; BLOCK as usize], i * 2 * BLOCK)
            .unwrap();
        drop(file);
        let pid = daemon(&mnt);
        let r = umount(&[s(&mnt)]);
        assert_eq!(r.code, 0, "round {i}: {}", r.stderr);
        assert!(r.stderr.is_empty(), "round {i}: {}", r.stderr);
        // No waiting: when umount returns, the daemon is gone and the mount with it.
        assert!(exited(pid), "round {i}: daemon {pid} still running");
        assert!(!is_mounted(&mnt), "round {i}: still mounted");
        if qcow2 {
            let check = Command::new("qemu-img")
                .args(["check", "-q", "-f", "qcow2"])
                .arg(&f.payload)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "round {i}: qemu-img check: {}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        qemu_io(
            f,
            qcow2,
            &[
                format!("read -P {} {} {BLOCK}", 1 + i, i * 2 * BLOCK),
                format!("write -P {} {} {BLOCK}", 0x80 + i, i * 2 * BLOCK + BLOCK),
            ],
        );
    }
    // The last round's QEMU write, through a last mount.
    let m = Mounted::new(f, &[], name);
    let data = std::fs::read(m.mnt.join(name)).unwrap();
    for i in 0..n {
        let at = (i * 2 * BLOCK) as usize;
        let b = BLOCK as usize;
        assert!(data[at..at + b].iter().all(|&x| x == 1 + i as u8), "{i}");
        assert!(data[at + b..at + 2 * b]
            .iter()
            .all(|&x| x == 0x80 + i as u8));
    }
    drop(data);
    assert_eq!(umount(&[s(&m.mnt)]).code, 0);
}

#[test]
fn fuse2fs_on_the_served_file_makes_it_busy_until_it_is_unmounted() {
    let f = luks1(8 << 20);
    let m = Mounted::new(&f, &[], "p");
    let served = m.mnt.join("p");
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&served));
    let fs = f.path("fs");
    std::fs::create_dir(&fs).unwrap();
    run_ok(Command::new("fuse2fs").arg(&served).arg(&fs));
    let _fs_guard = MountGuard(fs.clone());
    write_file(&fs.join("hello"), b"world");
    let pid = daemon(&m.mnt);

    let r = umount(&[s(&m.mnt)]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("mount is busy")
            && r.stderr.contains("fuse2fs (pid ")
            && r.stderr.contains(&format!("{} (fuse.", s(&fs))),
        "{}",
        r.stderr
    );
    assert!(is_mounted(&m.mnt) && !exited(pid), "a busy mount stays");
    // fuse2fs's own mount is no luksfuse mount.
    let r = umount(&[s(&fs)]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("not a luksfuse mount"), "{}", r.stderr);

    // Right after fusermount3 -u (fuse2fs is still flushing and exiting).
    run_ok(Command::new("fusermount3").arg("-u").arg(&fs));
    let r = umount(&[s(&m.mnt)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(exited(pid) && !is_mounted(&m.mnt));
    // What fuse2fs wrote is all there.
    let m = Mounted::new(&f, &[], "p");
    run_ok(Command::new("e2fsck").arg("-fn").arg(m.mnt.join("p")));
    let out = run_ok(
        Command::new("debugfs")
            .args(["-R", "cat /hello"])
            .arg(m.mnt.join("p")),
    );
    assert_eq!(out.stdout, b"world");
    assert_eq!(umount(&[s(&m.mnt)]).code, 0);
}

#[test]
fn a_loop_device_on_the_served_file_makes_it_busy_until_it_is_detached() {
    let f = luks1(1 << 20);
    let m = Mounted::new(&f, &[], "p");
    let served = m.mnt.join("p");
    let out = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(&served));
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let guard = LoopGuard(dev.clone());
    let pid = daemon(&m.mnt);
    let r = umount(&[s(&m.mnt)]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{dev} is backed by {}", s(&served))),
        "{}",
        r.stderr
    );
    assert!(is_mounted(&m.mnt) && !exited(pid));
    run_ok(Command::new("losetup").arg("-d").arg(&dev));
    std::mem::forget(guard);
    let r = umount(&[s(&m.mnt)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(exited(pid) && !is_mounted(&m.mnt));
}

#[test]
fn an_open_file_makes_it_busy_and_a_lazy_unmount_waits_for_it_until_the_timeout() {
    let f = luks1(1 << 20);
    let m = Mounted::new(&f, &[], "p");
    let pid = daemon(&m.mnt);
    // A process with the file open and one working inside the mountpoint.
    let mut sleeper = forking(|| {
        Command::new("sh")
            .args(["-c", "exec sleep 600 < p"])
            .current_dir(&m.mnt)
            .spawn()
    })
    .unwrap();
    let t = Instant::now();
    while !std::fs::read_link(format!("/proc/{}/fd/0", sleeper.id()))
        .is_ok_and(|p| p == m.mnt.join("p"))
    {
        assert!(t.elapsed() < SETTLE, "sleep did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = umount(&[s(&m.mnt)]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    let who = format!(
        "sleep (pid {}) has {} open",
        sleeper.id(),
        s(&m.mnt.join("p"))
    );
    assert!(r.stderr.contains(&who), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("works in {}", s(&m.mnt))),
        "{}",
        r.stderr
    );
    assert!(is_mounted(&m.mnt) && !exited(pid));

    // -l detaches at once, but the daemon serves the open file until it is closed.
    let r = umount(&["-l", "--timeout", "0.3", s(&m.mnt)]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("its daemon (pid {pid}) is still running")),
        "{}",
        r.stderr
    );
    assert!(!is_mounted(&m.mnt) && !exited(pid));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(
        wait_daemon_gone(&m.mnt, SETTLE).is_some(),
        "the daemon exits when the last user closes"
    );
}

#[test]
fn what_is_not_a_luksfuse_mount_is_refused_with_exit_4() {
    let d = tmpdir();
    for (path, says) in [
        (d.path().to_path_buf(), "not a mountpoint"),
        (d.path().join("missing"), "not a mountpoint"),
        (
            "/proc".into(),
            "not a luksfuse mount (a proc mount)\nhint: unmount it with umount",
        ),
    ] {
        let r = umount(&[s(&path)]);
        assert_eq!(r.code, 4, "{}: {}", path.display(), r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    // `close` is the same command.
    let r = luksfuse(&["close", s(d.path())], b"");
    assert_eq!(r.code, 4, "{}", r.stderr);
}

#[test]
fn a_stale_mount_is_reported_by_mount_and_cleared_by_umount() {
    let f = luks1(1 << 20);
    let m = Mounted::new(&f, &[], "p");
    let pid = daemon(&m.mnt);
    run_ok(Command::new("kill").args(["-9", &pid.to_string()]));
    let t = Instant::now();
    while !exited(pid) {
        assert!(t.elapsed() < SETTLE, "kill -9 did not take");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mount = |f: &Fixture| {
        luksfuse(
            &[
                "mount",
                "-d",
                s(&f.keyfile),
                s(&f.header),
                s(&f.payload),
                s(&m.mnt),
            ],
            b"",
        )
    };
    let r = mount(&f);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("a stale luksfuse mount is still there")
            && r.stderr.contains("Transport endpoint is not connected")
            && r.stderr.contains(&format!(
                "hint: clear it with: luksfuse umount {}",
                s(&m.mnt)
            )),
        "{}",
        r.stderr
    );
    let r = umount(&[s(&m.mnt)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("cleared a stale mount"), "{}", r.stderr);
    assert!(!is_mounted(&m.mnt));
    let r = mount(&f);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A live mount there: mount says what to run.
    let r = mount(&f);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "already a mountpoint\nhint: a luksfuse mount is there: luksfuse umount {} first",
            s(&m.mnt)
        )),
        "{}",
        r.stderr
    );
    assert_eq!(umount(&[s(&m.mnt)]).code, 0);
}
