//! Faults injected under a mounted volume through recfs (tests/common/recfs.rs): `EIO` and
//! `ENOSPC` on chosen writes, reads and fsyncs of a raw or qcow2 payload, and on the header
//! where luksfuse reads it. Each time the daemon answers that one request with the error, logs
//! the file, the byte and the sector, and keeps serving; it never reports success for data
//! that did not reach the file (recfs holds what did); after a failed sync, every later sync
//! of the mount fails too ("fsyncgate"); and a qcow2 image stays consistent for
//! `qemu-img check`, whatever write of its cluster allocation failed.

mod common;
#[path = "common/recfs.rs"]
mod recfs;
use common::*;
use recfs::{Fault, FaultOp, RecFs};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A LUKS1 detached header (in a real directory), with a recfs mounted beside it for payloads.
struct Bench {
    f: Fixture,
    rec: RecFs,
    /// qcow2 payloads carry QEMU's own LUKS encryption (`encrypt.format=luks`) and are
    /// mounted alone, instead of with the detached header.
    embedded: bool,
}

impl Bench {
    fn new() -> Bench {
        let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
        let dir = f.path("rec");
        std::fs::create_dir(&dir).unwrap();
        let rec = RecFs::mount(&dir);
        Bench {
            f,
            rec,
            embedded: false,
        }
    }

    /// A bench whose qcow2 payloads hold their own LUKS header (see [`Bench::embedded`]).
    fn embedded() -> Bench {
        Bench {
            embedded: true,
            ..Bench::new()
        }
    }

    /// A sparse raw payload `name` of `len` bytes on recfs.
    fn raw(&self, name: &str, len: u64) -> PathBuf {
        let p = self.rec.path(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    }

    /// A qcow2 payload `name` on recfs, made by `qemu-img create` with `opts` in a real
    /// directory and copied: once per bench and `opts`, as QEMU takes seconds to make a LUKS
    /// header (every payload of a bench then shares its volume key; the tests need no other).
    fn qcow2(&self, name: &str, opts: &str, size: &str) -> PathBuf {
        let made = self.f.path(&format!("made-{opts}-{size}.qcow2"));
        if !made.exists() {
            if self.embedded {
                let opts =
                    format!("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,{opts}");
                qemu_create(&self.f, "qcow2", &made, &opts, size);
            } else {
                run_ok(
                    Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2", "-o", opts])
                        .arg(&made)
                        .arg(size),
                );
            }
        }
        let p = self.rec.path(name);
        std::fs::copy(&made, &p).unwrap();
        p
    }

    /// Mounts `payload` in the foreground (its log on a pipe) at a fresh mountpoint `mnt`.
    fn mount(&self, payload: &Path, mnt: &str) -> Daemon {
        let mnt = self.f.path(mnt);
        std::fs::create_dir_all(&mnt).unwrap();
        let guard = MountGuard(mnt.clone());
        let child = if self.embedded && payload.extension().is_some_and(|e| e == "qcow2") {
            let name = payload.file_stem().unwrap();
            let child = forking(|| {
                Command::new(env!("CARGO_BIN_EXE_luksfuse"))
                    .args(["mount", "-f", "-d", s(&self.f.keyfile), s(payload), s(&mnt)])
                    .stdin(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .unwrap();
            let t = std::time::Instant::now();
            while !mnt.join(name).exists() {
                assert!(t.elapsed().as_secs() < 10, "mount did not appear");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            child
        } else {
            mount_foreground(&self.f, payload, &mnt, Stdio::piped())
        };
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(mnt.join(payload.file_stem().unwrap()))
            .unwrap();
        Daemon {
            child: Some(child),
            file: Some(file),
            mnt,
            _guard: guard,
        }
    }
}

/// A running daemon and the served file, open.
struct Daemon {
    child: Option<Child>,
    file: Option<std::fs::File>,
    mnt: PathBuf,
    _guard: MountGuard,
}

impl Daemon {
    fn file(&self) -> &std::fs::File {
        self.file.as_ref().unwrap()
    }

    /// Closes the file, stops the daemon (SIGTERM: it flushes, syncs and exits) and returns
    /// its exit status and log.
    fn stop(mut self) -> (ExitStatus, String) {
        drop(self.file.take());
        let child = self.child.take().unwrap();
        run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let out = child.wait_with_output().unwrap();
        assert!(!is_mounted(&self.mnt));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!log.contains("panicked"), "{log}");
        (out.status, log)
    }
}

fn errno_of(r: std::io::Result<()>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// `qemu-img check` of a qcow2 file: `Ok` when clean or only leaking (exit 0 or 3). An
/// image with its own encryption is opened with the key (QEMU wants it even to check).
fn qemu_img_check(b: &Bench, image: &Path) -> Result<String, String> {
    let mut c = Command::new("qemu-img");
    c.arg("check");
    if b.embedded {
        c.args([
            "--object",
            &qemu_secret(&b.f),
            "--image-opts",
            &format!(
                "driver=qcow2,encrypt.key-secret=s,file.filename={}",
                s(image)
            ),
        ]);
    } else {
        c.args(["-f", "qcow2"]).arg(image);
    }
    let out = c.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) | Some(3) => Ok(text),
        _ => Err(format!("exit {:?}: {text}", out.status)),
    }
}

/// The guest plaintext of a qcow2 payload as QEMU reads it (luks driver over qcow2, with the
/// detached header).
fn qemu_plaintext(b: &Bench, image: &Path) -> Vec<u8> {
    let f = &b.f;
    let out = f.path("qemu-plain.raw");
    let opts = if b.embedded {
        format!(
            "driver=qcow2,encrypt.key-secret=s,file.filename={}",
            s(image)
        )
    } else {
        format!(
            "driver=luks,key-secret=s,file.driver=qcow2,file.file.filename={},header.filename={}",
            s(image),
            s(&f.header)
        )
    };
    let _ = std::fs::remove_file(&out);
    run_ok(Command::new("qemu-img").args([
        "convert",
        "--object",
        &format!("secret,id=s,file={}", s(&f.keyfile)),
        "--image-opts",
        &opts,
        "-O",
        "raw",
        s(&out),
    ]));
    std::fs::read(&out).unwrap()
}

#[test]
fn raw_write_faults_fail_that_write_only_log_it_and_leave_the_file_unchanged() {
    let b = Bench::new();
    let payload = b.raw("p.raw", 4 << 20);
    let d = b.mount(&payload, "mnt");
    let f = d.file();
    let before: Vec<u8> = b.rec.image().file("p.raw").unwrap().to_vec();
    for (i, errno) in [libc::EIO, libc::ENOSPC].into_iter().enumerate() {
        // Whole sectors at 1 MiB + i * 64 KiB fail; the writes beside them work.
        let at = (1 << 20) + i as u64 * 65536;
        b.rec.inject(Fault {
            range: Some(at..at + 4096),
            ..Fault::once(FaultOp::Write, "p.raw", errno)
        });
        let mut old = vec![0; 4096];
        f.read_exact_at(&mut old, at).unwrap();
        f.write_all_at(&[0x11; 4096], at - 4096).unwrap();
        assert_eq!(errno_of(f.write_all_at(&[0x22; 4096], at)), Some(errno));
        f.write_all_at(&[0x33; 4096], at + 4096).unwrap();
        assert_eq!(b.rec.fired().len(), 2 * i + 1);
        // A partial sector (read-modify-write) whose write fails.
        b.rec.inject(Fault {
            range: Some(at..at + 512),
            ..Fault::once(FaultOp::Write, "p.raw", errno)
        });
        assert_eq!(errno_of(f.write_all_at(b"partial", at + 100)), Some(errno));
        assert_eq!(b.rec.fired().len(), 2 * i + 2);
        // The failed range kept what the file had: nothing reached it.
        let now = b.rec.image();
        let now = now.file("p.raw").unwrap();
        assert!(now[at as usize..][..4096] == before[at as usize..][..4096]);
        assert!(now[at as usize - 4096..][..4096] != before[at as usize - 4096..][..4096]);
        // Still serving, and the written neighbours read back around what was there.
        let mut back = vec![0; 3 * 4096];
        f.read_exact_at(&mut back, at - 4096).unwrap();
        assert_eq!(back[..4096], [0x11; 4096]);
        assert_eq!(back[8192..], [0x33; 4096]);
        assert!(back[4096..8192] == old[..]);
    }
    // The failed writes were reported; a sync of what did reach the file still works.
    f.sync_all().unwrap();
    let (status, log) = d.stop();
    assert!(status.success(), "{status:?}: {log}");
    for (at, sector) in [(1u64 << 20, 2048), ((1 << 20) + 65536, 2176)] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("write of 4096 bytes at byte {at} ")))
            .unwrap_or_else(|| panic!("no log line for the write at {at}: {log}"));
        assert!(line.contains(s(&payload)), "{line}");
        assert!(line.contains(&format!("(sector {sector})")), "{line}");
    }
    assert!(log.contains("No space left on device"), "{log}");
}

#[test]
fn raw_read_fault_fails_that_read_only() {
    let b = Bench::new();
    let payload = b.raw("p.raw", 4 << 20);
    let d = b.mount(&payload, "mnt");
    let f = d.file();
    let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
    f.write_all_at(&data, 1 << 20).unwrap();
    let at = (1u64 << 20) + 4096;
    b.rec.inject(Fault {
        range: Some(at..at + 512),
        ..Fault::once(FaultOp::Read, "p.raw", libc::EIO)
    });
    let mut buf = vec![0; 4096];
    let e = f.read_exact_at(&mut buf, at).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(b.rec.fired().len(), 1);
    // The same read again, and everything around it, works.
    let mut back = vec![0; data.len()];
    f.read_exact_at(&mut back, 1 << 20).unwrap();
    assert!(back == data);
    // A partial write needs the read of its sector: that fails too, and changes nothing.
    b.rec.inject(Fault {
        range: Some(at..at + 512),
        ..Fault::once(FaultOp::Read, "p.raw", libc::EIO)
    });
    let e = f.write_all_at(b"xyz", at + 10).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    f.read_exact_at(&mut back, 1 << 20).unwrap();
    assert!(back == data);
    let (status, log) = d.stop();
    assert!(status.success(), "{status:?}: {log}");
    let line = log
        .lines()
        .find(|l| l.contains(&format!("read of 4096 bytes at byte {at} ")))
        .unwrap_or_else(|| panic!("no log line for the read: {log}"));
    assert!(
        line.contains(s(&payload)) && line.contains("(sector 2056)"),
        "{line}"
    );
}

/// fsyncgate: once the payload's sync failed, the kernel may have dropped the pages it could
/// not write, and a second `fdatasync` would succeed; the daemon must keep failing.
#[test]
fn after_a_failed_payload_sync_every_later_sync_fails_until_remount() {
    let b = Bench::new();
    for (errno, name) in [(libc::EIO, "p"), (libc::ENOSPC, "q")] {
        let file = format!("{name}.raw");
        let payload = b.raw(&file, 4 << 20);
        let d = b.mount(&payload, &format!("mnt-{name}"));
        let f = d.file();
        f.write_all_at(&[1; 8192], 0).unwrap();
        f.sync_all().unwrap();
        f.write_all_at(&[2; 8192], 0).unwrap();
        b.rec.inject(Fault::once(FaultOp::Fsync, &file, errno));
        assert_eq!(errno_of(f.sync_all()), Some(errno));
        assert_eq!(b.rec.fired().last().unwrap().0, FaultOp::Fsync);
        // No fault any more, yet the data of before may be gone: no success.
        assert_eq!(errno_of(f.sync_all()), Some(libc::EIO));
        assert_eq!(errno_of(f.sync_data()), Some(libc::EIO));
        // Reads and writes go on; syncs keep failing, rewritten data or not.
        f.write_all_at(&[3; 8192], 0).unwrap();
        let mut back = vec![0; 8192];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, [3; 8192]);
        assert_eq!(errno_of(f.sync_all()), Some(libc::EIO));
        // Nor does the daemon claim success when it syncs on its way out.
        let (status, log) = d.stop();
        assert!(!status.success(), "exit 0 after a failed sync: {log}");
        assert!(log.contains("cannot sync payload"), "{log}");
        let failed = log
            .lines()
            .find(|l| l.contains("sync (fdatasync) failed"))
            .unwrap_or_else(|| panic!("the failed sync is not logged: {log}"));
        assert!(failed.contains(s(&payload)), "{failed}");
        assert!(
            log.contains("an earlier sync of this payload failed"),
            "{log}"
        );
        // A new mount starts afresh.
        let d = b.mount(&payload, &format!("mnt-{name}"));
        d.file().write_all_at(&[4; 512], 0).unwrap();
        d.file().sync_all().unwrap();
        let (status, log) = d.stop();
        assert!(status.success(), "{status:?}: {log}");
    }
}

/// One write of a run: where, what, and whether a later sync acknowledged it (a failed write,
/// or one no sync followed, may or may not have reached the file).
struct Written {
    at: u64,
    data: Vec<u8>,
    synced: bool,
}

/// Writes that allocate qcow2 clusters (4 KiB clusters: new L2 tables every 2 MiB, a new
/// refcount block past 8 MiB), with the `k`-th write (or sync) of the payload file and the
/// `count - 1` after it failing (until the run's last write). Returns the image file copied
/// out, the writes in order, and whether the fault fired.
fn qcow2_run(
    b: &Bench,
    name: &str,
    (op, k, count): (FaultOp, usize, usize),
    errno: i32,
) -> (PathBuf, Vec<Written>, bool) {
    let file = format!("{name}.qcow2");
    let payload = b.qcow2(&file, "cluster_size=4096", "16M");
    let d = b.mount(&payload, &format!("mnt-{name}"));
    let f = d.file();
    let fired_before = b.rec.fired().len();
    b.rec.inject(Fault {
        skip: k,
        count,
        ..Fault::once(op, &file, errno)
    });
    let mut writes: Vec<Written> = Vec::new();
    // Writes since the last successful sync that returned success (indices into `writes`).
    let mut pending = Vec::new();
    let mut sync_failed = false;
    let mut write_failed = false;
    let mut sync = |writes: &mut Vec<Written>, pending: &mut Vec<usize>, f: &std::fs::File| match f
        .sync_all()
    {
        Ok(()) => {
            assert!(!sync_failed, "a sync succeeded after a failed one");
            pending.drain(..).for_each(|i| writes[i].synced = true);
        }
        Err(_) => sync_failed = true,
    };
    let offsets = [
        0u64,
        4096,
        3 << 20,
        9 << 20,
        (9 << 20) + 8192,
        13 << 20,
        100,
    ];
    for (i, &at) in offsets.iter().enumerate() {
        let data = vec![i as u8 + 1; 8192];
        match f.write_all_at(&data, at) {
            Ok(()) => pending.push(writes.len()),
            Err(e) => {
                assert!(
                    matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENOSPC)),
                    "{e}"
                );
                write_failed = true;
            }
        }
        writes.push(Written {
            at,
            data,
            synced: false,
        });
        if i % 2 == 1 {
            sync(&mut writes, &mut pending, f);
        }
    }
    let fired = b.rec.fired().len() > fired_before;
    b.rec.clear_faults();
    // Later writes work (or fail cleanly), also where an allocation failed, and a sync is
    // honest about the past.
    let again = offsets.iter().map(|&at| (at + 512, 4096));
    for (i, (at, len)) in std::iter::once((5 << 20, 12288)).chain(again).enumerate() {
        let data = vec![0xe0 + i as u8; len];
        if f.write_all_at(&data, at).is_ok() {
            pending.push(writes.len());
        }
        writes.push(Written {
            at,
            data,
            synced: false,
        });
    }
    sync(&mut writes, &mut pending, f);
    let sync_failed = sync_failed;
    let (status, log) = d.stop();
    assert_eq!(status.success(), !sync_failed, "{log}");
    // Every failed write is logged with the payload's name (and byte, sector).
    let named = log.lines().filter(|l| l.contains(s(&payload))).count();
    assert!(
        !write_failed || named > 0,
        "a failed write is not logged: {log}"
    );
    // The image as recfs holds it, copied out to a real file.
    let out = b.f.path(&format!("{name}.copy.qcow2"));
    std::fs::write(&out, b.rec.image().file(&file).unwrap()).unwrap();
    (out, writes, fired)
}

/// Checks a run's image: consistent for `qemu-img check`, and QEMU reads every synced write
/// where no later write (which may or may not have landed) covered it.
fn qcow2_verify(b: &Bench, image: &Path, writes: &[Written], what: &str) -> usize {
    if let Err(e) = qemu_img_check(b, image) {
        panic!("{what}: qemu-img check: {e}");
    }
    let plain = qemu_plaintext(b, image);
    let mut model: Vec<Option<u8>> = vec![None; plain.len()];
    for w in writes {
        for (j, &x) in w.data.iter().enumerate() {
            model[w.at as usize + j] = w.synced.then_some(x);
        }
    }
    let bad = model
        .iter()
        .enumerate()
        .find(|(i, m)| m.is_some_and(|m| plain[*i] != m));
    assert!(bad.is_none(), "{what}: synced byte {bad:?} lost");
    model.iter().filter(|m| m.is_some()).count()
}

#[test]
fn qcow2_write_faults_in_cluster_allocation_keep_the_image_consistent() {
    let b = Bench::new();
    let (mut hit, mut checked) = (0, 0);
    // Every write of the run in turn, until the fault lands past the end of the run.
    for k in 0..40 {
        let (img, writes, fired) =
            qcow2_run(&b, &format!("w{k}"), (FaultOp::Write, k, 1), libc::EIO);
        checked += qcow2_verify(&b, &img, &writes, &format!("write fault #{k}"));
        if !fired {
            break;
        }
        hit += 1;
    }
    eprintln!(
        "qcow2 write faults: {hit} runs with a failed write, {checked} synced bytes read back"
    );
    assert!(hit >= 10, "only {hit} writes per run");
}

#[test]
fn qcow2_sync_faults_keep_the_image_consistent_and_later_syncs_failing() {
    let b = Bench::new();
    let (mut hit, mut checked) = (0, 0);
    for k in 0..20 {
        let (img, writes, fired) =
            qcow2_run(&b, &format!("s{k}"), (FaultOp::Fsync, k, 1), libc::EIO);
        checked += qcow2_verify(&b, &img, &writes, &format!("sync fault #{k}"));
        if !fired {
            break;
        }
        hit += 1;
    }
    eprintln!("qcow2 sync faults: {hit} runs with a failed sync, {checked} synced bytes read back");
    assert!(hit >= 4, "only {hit} syncs per run");
}

/// The device stays bad from the `k`-th write on: later writes and syncs fail cleanly (a
/// failed pointer write cannot be redone; the failed syncs stay failed for the mount), the
/// daemon says so at exit, the image stays consistent and what was synced before reads back.
#[test]
fn qcow2_lasting_write_faults_fail_later_writes_and_syncs_cleanly() {
    let b = Bench::new();
    let (mut hit, mut checked) = (0, 0);
    for k in (1..40).step_by(3) {
        let (img, writes, fired) = qcow2_run(
            &b,
            &format!("l{k}"),
            (FaultOp::Write, k, usize::MAX),
            libc::ENOSPC,
        );
        checked += qcow2_verify(&b, &img, &writes, &format!("lasting write fault from #{k}"));
        if !fired {
            break;
        }
        hit += 1;
    }
    eprintln!("qcow2 lasting write faults: {hit} runs, {checked} synced bytes read back");
    assert!(hit >= 5, "only {hit} runs with a fault");
}

/// The same with QEMU's own LUKS encryption inside the qcow2 image: a write into a hole
/// allocates and fills a whole cluster (encrypted for its host offset), through
/// `Image::allocate`; each write and sync of the file failing in turn.
#[test]
fn qcow2_embedded_luks_write_and_sync_faults_keep_the_image_consistent() {
    let b = Bench::embedded();
    let mut runs = 0;
    // Every other write (each run costs QEMU's LUKS unlocks), every sync.
    for (op, n, step) in [(FaultOp::Write, 40, 2), (FaultOp::Fsync, 20, 1)] {
        for k in (0..n).step_by(step) {
            let name = format!("e{op:?}{k}");
            let (img, writes, fired) = qcow2_run(&b, &name, (op, k, 1), libc::EIO);
            qcow2_verify(&b, &img, &writes, &format!("embedded {op:?} fault #{k}"));
            if !fired {
                break;
            }
            runs += 1;
        }
    }
    eprintln!("qcow2 embedded LUKS faults: {runs} runs with a failed write or sync");
    assert!(runs >= 12, "only {runs} runs");
}

#[test]
fn qcow2_enospc_while_allocating_fails_the_write_and_the_image_stays_consistent() {
    let b = Bench::new();
    // Every write at or past the file's current end fails: the file system is full.
    let file = "n.qcow2";
    let payload = b.qcow2(file, "cluster_size=4096", "16M");
    let end = std::fs::metadata(&payload).unwrap().len();
    let d = b.mount(&payload, "mnt-n");
    let f = d.file();
    b.rec.inject(Fault {
        range: Some(end..u64::MAX),
        count: usize::MAX,
        ..Fault::once(FaultOp::Write, file, libc::ENOSPC)
    });
    let e = f.write_all_at(&[7; 8192], 3 << 20).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert!(!b.rec.fired().is_empty());
    // Still serving: reads work, and so do writes once there is room again.
    let mut buf = vec![0; 8192];
    f.read_exact_at(&mut buf, 3 << 20).unwrap();
    b.rec.clear_faults();
    f.write_all_at(&[8; 8192], 3 << 20).unwrap();
    f.sync_all().unwrap();
    f.read_exact_at(&mut buf, 3 << 20).unwrap();
    assert_eq!(buf, [8; 8192]);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains(s(&payload)), "{log}");
    let out = b.f.path("n.copy.qcow2");
    std::fs::write(&out, b.rec.image().file(file).unwrap()).unwrap();
    let w = Written {
        at: 3 << 20,
        data: vec![8; 8192],
        synced: true,
    };
    qcow2_verify(&b, &out, &[w], "ENOSPC");
}

#[test]
fn header_read_faults_fail_the_mount_naming_the_header_and_nothing_is_mounted() {
    let b = Bench::new();
    // The header itself on recfs.
    let header = b.rec.path("h.img");
    std::fs::copy(&b.f.header, &header).unwrap();
    let payload = b.raw("p.raw", 4 << 20);
    let mnt = b.f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let args = [
        "mount",
        "-d",
        s(&b.f.keyfile),
        s(&header),
        s(&payload),
        s(&mnt),
    ];
    // The LUKS1 header proper, then keyslot 0's key material (sector 8 on).
    for (what, range) in [("header", 0..592), ("key material", 4096..4096 + 512)] {
        // Every read there fails (a bad sector, not a passing hiccup).
        b.rec.inject(Fault {
            range: Some(range),
            count: usize::MAX,
            ..Fault::once(FaultOp::Read, "h.img", libc::EIO)
        });
        let fired = b.rec.fired().len();
        let r = luksfuse(&args, b"");
        b.rec.clear_faults();
        assert!(b.rec.fired().len() > fired, "{what}: no read failed");
        assert_eq!(r.code, 4, "{what}: {}", r.stderr);
        assert!(r.stderr.contains(s(&header)), "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("Input/output error"),
            "{what}: {}",
            r.stderr
        );
        assert!(!is_mounted(&mnt), "{what}");
    }
    let r = luksfuse(&args, b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = luksfuse(&["umount", s(&mnt)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A header change (`add-key`) whose new file cannot be written or synced fails, and the
/// header keeps exactly its old key set (luksfuse and cryptsetup agree); no temporary file is
/// left behind. Then the same change goes through.
#[test]
fn header_update_with_a_failed_write_or_sync_fails_and_keeps_the_old_header() {
    let b = Bench::new();
    let header = b.rec.path("h.img");
    std::fs::copy(&b.f.header, &header).unwrap();
    let old = std::fs::read(&header).unwrap();
    let new_key = b.f.path("new.key");
    std::fs::write(&new_key, b"the new key").unwrap();
    let mut add = vec![
        "add-key",
        "-d",
        s(&b.f.keyfile),
        "--new-key-file",
        s(&new_key),
    ];
    add.extend(fast_kdf("pbkdf2"));
    add.push(s(&header));
    let opens = |key: &Path| luksfuse(&["test-key", "-d", s(key), s(&header)], b"").code == 0;
    let cryptsetup_opens = |key: &Path| {
        Command::new("cryptsetup")
            .args([
                "open",
                "--test-passphrase",
                "--key-file",
                s(key),
                s(&header),
            ])
            .status()
            .unwrap()
            .success()
    };
    for (op, errno) in [
        (FaultOp::Write, libc::EIO),
        (FaultOp::Write, libc::ENOSPC),
        (FaultOp::Fsync, libc::EIO),
    ] {
        let what = format!("{op:?} {errno}");
        let fired = b.rec.fired().len();
        // Any file: the new header goes to a temporary file of a random name.
        b.rec.inject(Fault {
            name: None,
            ..Fault::once(op, "", errno)
        });
        let r = luksfuse(&add, b"");
        b.rec.clear_faults();
        assert!(b.rec.fired().len() > fired, "{what}: nothing failed");
        assert_eq!(r.code, 4, "{what}: {}", r.stderr);
        assert!(r.stderr.contains("h.img"), "{what}: {}", r.stderr);
        assert!(
            std::fs::read(&header).unwrap() == old,
            "{what}: header changed"
        );
        let names: Vec<_> = std::fs::read_dir(b.rec.path("")).unwrap().collect();
        assert_eq!(names.len(), 1, "{what}: left {names:?}");
        assert!(opens(&b.f.keyfile) && !opens(&new_key), "{what}");
        assert!(
            cryptsetup_opens(&b.f.keyfile) && !cryptsetup_opens(&new_key),
            "{what}"
        );
    }
    let r = luksfuse(&add, b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(opens(&b.f.keyfile) && opens(&new_key));
    assert!(cryptsetup_opens(&new_key));
}

/// Read faults of a qcow2 payload, at each read of the file in turn (L1/L2 table loads, data):
/// that read fails with EIO, and reading again gives the data (nothing wrong was cached).
#[test]
fn qcow2_read_faults_fail_that_read_only_and_nothing_wrong_is_cached() {
    let b = Bench::new();
    let file = "r.qcow2";
    let payload = b.qcow2(file, "cluster_size=4096", "16M");
    let data: Vec<(u64, Vec<u8>)> = [0u64, 3 << 20, 9 << 20, 13 << 20]
        .iter()
        .enumerate()
        .map(|(i, &at)| (at, vec![i as u8 + 1; 8192]))
        .collect();
    let d = b.mount(&payload, "mnt-r");
    for (at, bytes) in &data {
        d.file().write_all_at(bytes, *at).unwrap();
    }
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let mut hit = 0;
    for k in 0..30 {
        // A fresh mount: imago has no tables cached yet.
        let d = b.mount(&payload, "mnt-r");
        let fired = b.rec.fired().len();
        b.rec.inject(Fault {
            skip: k,
            ..Fault::once(FaultOp::Read, file, libc::EIO)
        });
        let mut failed = 0;
        for (at, bytes) in &data {
            let mut back = vec![0; bytes.len()];
            match d.file().read_exact_at(&mut back, *at) {
                Ok(()) => assert!(back == *bytes, "fault #{k}: wrong data at {at}"),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EIO), "fault #{k}: {e}");
                    failed += 1;
                    d.file().read_exact_at(&mut back, *at).unwrap();
                    assert!(back == *bytes, "fault #{k}: wrong data at {at} after EIO");
                }
            }
        }
        b.rec.clear_faults();
        let (status, log) = d.stop();
        assert!(status.success(), "{log}");
        if b.rec.fired().len() == fired {
            break;
        }
        assert_eq!(failed, 1, "fault #{k}: {failed} reads failed");
        assert!(log.contains("Input/output error"), "{log}");
        hit += 1;
    }
    eprintln!("qcow2 read faults: {hit} runs with a failed read");
    assert!(hit >= 4, "only {hit} reads per run");
}
