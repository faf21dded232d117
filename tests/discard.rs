//! Discards through a mount (`--allow-discards`, `-o discard`, the LUKS2 persistent flag): ext4
//! on a loop device over the served file, `fstrim` after deleting a large file. The payload's
//! own allocation is the measure (st_blocks of a raw payload; `qemu-img check`'s allocated
//! clusters of a qcow2 one), e2fsck and QEMU judge what is left. Without the option nothing
//! may change: the payload's sha256 stays the same.

mod common;
use common::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const MIB: u64 = 1 << 20;
/// The payload size: ext4 with room for the 200 MiB file.
const PAYLOAD: u64 = 320 * MIB;
const BIG: u64 = 200 * MIB;

/// The small file that must survive the trim, as written.
fn keep() -> Vec<u8> {
    noise(4 << 20, 77)
}

/// Allocated bytes of a (raw) file, from st_blocks.
fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// Allocated clusters × cluster size of a qcow2 image, as `qemu-img check` counts them (`-U`:
/// the image is mounted; the caller has just made its metadata durable with syncfs).
fn qcow2_allocated(image: &Path) -> u64 {
    let out = run_ok(
        Command::new("qemu-img")
            .args(["check", "-U", "--output=json", "-f", "qcow2"])
            .arg(image),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clusters = v["allocated-clusters"]
        .as_u64()
        .expect("allocated-clusters");
    assert_eq!(v["check-errors"].as_u64(), Some(0), "{v}");
    clusters * 65536
}

fn sync_fs(p: &Path) {
    run_ok(Command::new("sync").arg("-f").arg(p));
}

/// What [`ext4_trim`] saw: the payload's allocation after writing and after `fstrim`, and
/// whether `fstrim` succeeded.
struct Trim {
    written: u64,
    trimmed: u64,
    fstrim_ok: bool,
}

impl Trim {
    /// `fstrim` succeeded and `what` (the payload's allocation) shrank by at least 100 MiB.
    fn assert_shrank(&self, what: &str) {
        assert!(self.fstrim_ok, "fstrim succeeds");
        assert!(
            self.written >= self.trimmed + 100 * MIB,
            "{what} shrink by >= 100 MiB: {} -> {}",
            self.written,
            self.trimmed
        );
    }
}

/// ext4 (made without discards) on a new loop device over `file`, mounted in the fixture's
/// `ext4` directory, holding `keep`: the device, its guard, the mountpoint and its guard.
fn ext4_on_loop(f: &Fixture, file: &Path) -> (String, LoopGuard, PathBuf, UmountGuard) {
    let out = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(file));
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let lo = LoopGuard(dev.clone());
    run_ok(Command::new("mkfs.ext4").args(["-q", "-E", "nodiscard", &dev]));
    let e = f.path("ext4");
    std::fs::create_dir_all(&e).unwrap();
    run_ok(Command::new("mount").arg(&dev).arg(&e));
    let ext4 = UmountGuard(e.clone());
    std::fs::write(e.join("keep"), keep()).unwrap();
    (dev, lo, e, ext4)
}

/// ext4 (made without discards) on a loop device over the served `file`: writes `keep` and a
/// 200 MiB file, measures `alloc`, deletes the big file, runs `fstrim`, measures again;
/// detaches everything and runs `e2fsck -fn` on the served file.
fn ext4_trim(f: &Fixture, file: &Path, alloc: &dyn Fn() -> u64) -> Trim {
    let (_dev, lo, e, ext4) = ext4_on_loop(f, file);
    let mut big = std::fs::File::create(e.join("big")).unwrap();
    for i in 0..BIG / MIB {
        big.write_all(&noise(MIB as usize, i + 1000)).unwrap();
    }
    big.sync_all().unwrap();
    drop(big);
    sync_fs(&e);
    let written = alloc();
    std::fs::remove_file(e.join("big")).unwrap();
    sync_fs(&e);
    let trim = forking(|| Command::new("fstrim").arg(&e).output()).unwrap();
    sync_fs(&e);
    let trimmed = alloc();
    run_ok(Command::new("umount").arg(&e));
    drop(ext4);
    drop(lo);
    fsck_clean(f, file);
    Trim {
        written,
        trimmed,
        fstrim_ok: trim.status.success(),
    }
}

/// `e2fsck -fn` finds nothing, and the file `keep` reads back as written (debugfs dumps it
/// into the fixture's directory).
fn fsck_clean(f: &Fixture, fs_image: &Path) {
    run_ok(Command::new("e2fsck").args(["-fn"]).arg(fs_image));
    let out = f.path("keep.out");
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump /keep {}", s(&out)))
            .arg(fs_image),
    );
    assert!(
        std::fs::read(&out).unwrap() == keep(),
        "the kept file is intact"
    );
    std::fs::remove_file(out).unwrap();
}

/// `luksfuse status --json` of the mount at `mnt`, once `ready` holds (the daemon rewrites its
/// record once a second while the counters move).
fn status_when(mnt: &Path, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let r = luksfuse(&["status", "--json", s(mnt)], b"");
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let m = v[0].clone();
        if ready(&m) {
            return m;
        }
        assert!(start.elapsed() < SETTLE, "status never showed it: {m}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn luks2_raw() -> Fixture {
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    Fixture::new().payload_len(PAYLOAD).luks_format(&args)
}

#[test]
fn fstrim_gives_a_raw_payloads_blocks_back_with_allow_discards() {
    let f = luks2_raw();
    let m = Mounted::new(&f, &["--allow-discards"], "p");
    let served = m.mnt.join("p");
    let t = ext4_trim(&f, &served, &|| allocated(&f.payload));
    t.assert_shrank("st_blocks");
    let st = status_when(&m.mnt, |m| {
        m["bytes_written"].as_u64() >= Some(BIG) && m["bytes_discarded"].as_u64() >= Some(BIG)
    });
    assert_eq!(st["discards"], true, "{st}");
    assert!(st["bytes_read"].as_u64() > Some(0), "{st}");
    let text = luksfuse(&["status", s(&m.mnt)], b"").stdout;
    assert!(text.contains("discards: on"), "{text}");
    m.unmount();
    // What is left reads the same through a fresh read-only mount.
    let m = Mounted::new(&f, &["-r"], "p");
    fsck_clean(&f, &m.mnt.join("p"));
    m.unmount();
}

#[test]
fn without_the_option_discards_fail_and_change_nothing() {
    let f = luks2_raw();
    let m = Mounted::new(&f, &[], "p");
    let served = m.mnt.join("p");
    // The file system first, then the payload is the reference.
    let (dev, lo, e, ext4) = ext4_on_loop(&f, &served);
    std::fs::write(e.join("big"), noise(32 << 20, 5)).unwrap();
    sync_fs(&e);
    std::fs::remove_file(e.join("big")).unwrap();
    sync_fs(&e);
    let before_trim = allocated(&f.payload);
    // (The kernel's ext4 takes the EOPNOTSUPP the loop device gets as "nothing trimmed", so
    // fstrim itself may well succeed: what counts is that nothing is deallocated.)
    let _ = forking(|| Command::new("fstrim").arg(&e).output()).unwrap();
    sync_fs(&e);
    assert!(
        allocated(&f.payload) >= before_trim,
        "fstrim deallocated nothing"
    );
    run_ok(Command::new("umount").arg(&e));
    drop(ext4);
    // From here on, nothing writes: the payload as it is now is the reference.
    let (sum, blocks) = (sha256_file(&f.payload), allocated(&f.payload));
    let out = forking(|| Command::new("blkdiscard").arg(&dev).output()).unwrap();
    assert!(
        !out.status.success(),
        "blkdiscard of the whole loop device fails"
    );
    drop(lo);
    // Straight at the served file too: both fallocate modes are refused.
    for mode in ["--punch-hole", "--zero-range"] {
        let out = forking(|| {
            Command::new("fallocate")
                .args([mode, "-o", "1048576", "-l", "8388608"])
                .arg(&served)
                .output()
        })
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode} refused");
        // util-linux words EOPNOTSUPP as "… mode is unsupported".
        assert!(
            err.contains("unsupported") || err.contains("not supported"),
            "{mode}: EOPNOTSUPP: {err}"
        );
    }
    let st = status_when(&m.mnt, |m| m["bytes_written"].as_u64() > Some(32 << 20));
    assert_eq!(st["discards"], false, "{st}");
    assert_eq!(st["bytes_discarded"], 0, "{st}");
    m.unmount();
    assert!(
        sha256_file(&f.payload) == sum,
        "no byte of the payload changed"
    );
    assert_eq!(allocated(&f.payload), blocks, "nothing was deallocated");
}

#[test]
fn fstrim_frees_a_qcow2_payloads_clusters_and_qemu_reads_the_rest() {
    // QEMU's luks driver reads LUKS1 headers (its LUKS2 support is not in this QEMU).
    let mut f =
        Fixture::new().luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let q = f.path("p.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o", "cluster_size=65536"])
            .arg(&q)
            .arg(PAYLOAD.to_string()),
    );
    f.payload = q.clone();
    let m = Mounted::new(&f, &["-o", "discard"], "p");
    let t = ext4_trim(&f, &m.mnt.join("p"), &|| qcow2_allocated(&q));
    t.assert_shrank("allocated clusters");
    let ours = sha256_file(&m.mnt.join("p"));
    m.unmount();
    let check = run_ok(
        Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&q),
    );
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("No errors were found"),
        "qemu-img check: {text}"
    );
    // QEMU's view: its luks driver over its qcow2 driver, with the detached header.
    let opts = format!(
        "driver=luks,key-secret=s,file.driver=qcow2,file.file.filename={},header.filename={}",
        s(&q),
        s(&f.header)
    );
    let plain = qemu_read_plain(&f, &opts);
    let fs = f.path("qemu-view.raw");
    write_file(&fs, &plain);
    // Discarded clusters included: QEMU's qcow2 layer reads them as zeros, its luks layer
    // decrypts those, and so does the mount.
    assert!(
        sha256_file(&fs) == ours,
        "QEMU reads the whole disk as the mount does"
    );
    fsck_clean(&f, &fs);
}

#[test]
fn the_luks2_persistent_allow_discards_flag_turns_discards_on() {
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    let f = Fixture::new().payload_len(16 * MIB).luks_format(&args);
    let mut h = f.read_header();
    rewrite_json(&mut h, &|j| {
        j["config"]["flags"] = serde_json::json!(["allow-discards"])
    });
    write_file(&f.header, &h);
    // cryptsetup reads it as its persistent flag.
    let dump = f.cryptsetup(&["luksDump"]);
    assert!(
        dump.lines()
            .any(|l| l.starts_with("Flags:") && l.contains("allow-discards")),
        "{dump}"
    );
    let m = Mounted::new(&f, &[], "p");
    let served = m.mnt.join("p");
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&served)
        .unwrap();
    w.write_all(&noise(8 << 20, 3)).unwrap();
    w.sync_all().unwrap();
    drop(w);
    let before = allocated(&f.payload);
    run_ok(
        Command::new("fallocate")
            .args(["--punch-hole", "-o", "1048576", "-l", "4194304"])
            .arg(&served),
    );
    run_ok(Command::new("sync").arg(&served));
    assert!(
        allocated(&f.payload) + 4 * MIB <= before,
        "4 MiB were punched out of the payload"
    );
    let st = status_when(&m.mnt, |m| m["bytes_discarded"].as_u64() == Some(4 * MIB));
    assert_eq!(st["discards"], true, "{st}");
    m.unmount();
}

#[test]
fn qcow2_with_its_own_encryption_drops_whole_clusters_and_reads_zeros_as_qemu_does() {
    let mut f = Fixture::new();
    let image = f.path("vm.qcow2");
    qemu_create(
        &f,
        "qcow2",
        &image,
        "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,cluster_size=65536",
        "16M",
    );
    f.payload = image.clone();
    f.header = image.clone();
    let mut model = noise(16 << 20, 9);
    let opts = format!(
        "driver=qcow2,encrypt.key-secret=s,file.filename={}",
        s(&image)
    );
    let clusters = || {
        let out = run_ok(Command::new("qemu-img").args([
            "check",
            "--output=json",
            "--object",
            &qemu_secret(&f),
            "--image-opts",
            &opts,
        ]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["check-errors"].as_u64(), Some(0), "{v}");
        assert!(v.get("leaks").is_none(), "{v}");
        v["allocated-clusters"].as_u64().unwrap()
    };
    let m = Mounted::attached(&f, &["--allow-discards"], "vm");
    let served = m.mnt.join("vm");
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&served)
        .unwrap();
    w.write_all(&model).unwrap();
    w.sync_all().unwrap();
    drop(w);
    m.unmount();
    let full = clusters();
    let m = Mounted::attached(&f, &["--allow-discards"], "vm");
    // Unaligned both ways: whole clusters in between are dropped, the ends zeroed.
    let (p_off, p_len) = (MIB + 1000, 4 * MIB);
    let (z_off, z_len) = (6 * MIB + 512, 64 * 1024 + 10);
    for (mode, off, len) in [
        ("--punch-hole", p_off, p_len),
        ("--zero-range", z_off, z_len),
    ] {
        run_ok(
            Command::new("fallocate")
                .args([mode, "-o", &off.to_string(), "-l", &len.to_string()])
                .arg(&served),
        );
        model[off as usize..(off + len) as usize].fill(0);
    }
    assert!(
        std::fs::read(&served).unwrap() == model,
        "the mount reads zeros there"
    );
    m.unmount();
    let left = clusters();
    // 1 MiB + 64 KiB .. 5 MiB: 63 whole clusters.
    assert!(left + 63 <= full, "clusters freed: {full} -> {left}");
    let qemu = qemu_read_plain(&f, &opts);
    assert!(
        qemu == model,
        "QEMU reads zeros in the ranges and the data elsewhere"
    );
}
