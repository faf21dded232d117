//! Tests against real peers: images made by `qemu-img`/`qemu-io`, results judged by
//! `qemu-img check` and `qemu-img convert -O raw`. Skipped (with a note) without qemu-img.
//!
//! They live here rather than in `tests/` because the crash test re-executes this test binary
//! as the writer child and uses the test-only fault injection in `guard::crash_point`.

use super::*;
use crate::testing::{self, Rng};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A test size or offset as a buffer index (they are small).
fn us(n: u64) -> usize {
    usize::try_from(n).unwrap()
}

fn have_qemu() -> bool {
    let ok = testing::output(Command::new("qemu-img").arg("--version"))
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("qemu-img not found: skipping");
    }
    ok
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = testing::output(Command::new(cmd).args(args)).expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `qemu-img create -f qcow2 [-o opts] path size`.
fn create(path: &Path, size: u64, opts: &str) {
    let size = size.to_string();
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([p(path), &size]);
    run("qemu-img", &args);
}

fn qemu_io(path: &Path, cmds: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(p(path));
    run("qemu-io", &args);
}

/// The guest data as QEMU sees it.
fn qemu_raw(path: &Path) -> Vec<u8> {
    let raw = path.with_extension("raw");
    run(
        "qemu-img",
        &["convert", "-f", "qcow2", "-O", "raw", p(path), p(&raw)],
    );
    let data = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    data
}

/// `qemu-img check` exit code: 0 clean, 3 leaks only, 2 corruption, 1 check failed.
fn qemu_check(path: &Path) -> (i32, String) {
    let out =
        testing::output(Command::new("qemu-img").args(["check", "-f", "qcow2", p(path)])).unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn rw() -> Qcow2Options {
    Qcow2Options {
        writable: true,
        ..Default::default()
    }
}

/// Reads the whole image in odd-sized pieces.
fn read_all(img: &dyn Image) -> Vec<u8> {
    let mut out = vec![0u8; us(img.size())];
    let mut off = 0usize;
    let mut step = 777_777usize;
    while off < out.len() {
        let n = step.min(out.len() - off);
        img.read_at(&mut out[off..off + n], off as u64).unwrap();
        off += n;
        step = step * 3 % 1_000_003 + 1;
    }
    out
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i:#x}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}

fn populated(dir: &Path, name: &str, opts: &str) -> PathBuf {
    let path = dir.join(name);
    create(&path, 64 * MIB, opts);
    qemu_io(
        &path,
        &[
            "write -P 0xab 1M 300k",
            "write -z 4M 64k",
            "write -P 0x11 4M 8k",
            "write -P 0x22 33M 5M",
            "write -z 34M 1M",
            "write -P 0x33 63M 1M",
        ],
    );
    path
}

#[test]
fn is_qcow2_by_magic() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::write(&raw, b"QFI").unwrap();
    assert!(!is_qcow2(&raw).unwrap());
    std::fs::write(&raw, b"QFI\xfb\0\0\0\x03").unwrap();
    assert!(is_qcow2(&raw).unwrap());
}

#[test]
fn reads_equal_qemu_convert_v3_v2_small_clusters() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, opts) in [
        ("v3.qcow2", ""),
        ("v2.qcow2", "compat=0.10"),
        ("c4k.qcow2", "cluster_size=4096"),
        ("v2c4k.qcow2", "compat=0.10,cluster_size=4096"),
    ] {
        let path = populated(dir.path(), name, opts);
        let img = open(&path, &Qcow2Options::default()).unwrap();
        assert_eq!(img.size(), 64 * MIB);
        assert_same(name, &read_all(&img), &qemu_raw(&path));
        let mut past = [0u8; 2];
        assert!(img.read_at(&mut past, 64 * MIB - 1).is_err());
        assert!(
            img.write_at(&past, 0).is_err(),
            "read-only must refuse writes"
        );
    }
}

/// Random writes (aligned, unaligned, into unallocated space, over zero and compressed
/// clusters, across L2 tables) from several threads, against an in-memory model.
fn random_writes_against_model(path: &Path, seed: u64, count: usize, threads: u64) {
    let mut model = qemu_raw(path);
    let img = open(path, &rw()).unwrap();
    let size = img.size();
    let mut rng = Rng(seed);
    // Each thread owns a quarter (etc.) of the disk, so the model stays deterministic.
    let span = size / threads;
    let plans: Vec<Vec<(u64, Vec<u8>)>> = (0..threads)
        .map(|t| {
            (0..count)
                .map(|i| {
                    let len = match rng.below(4) {
                        0 => 512 * (1 + rng.below(16)),
                        1 => 1 + rng.below(9000),
                        2 => 4096 * (1 + rng.below(80)),
                        _ => 1 + rng.below(300_000),
                    }
                    .min(span);
                    let off = t * span + rng.below(span - len + 1);
                    let off = if rng.below(2) == 0 { off & !511 } else { off };
                    let byte = (seed + i as u64 * 7 + t).to_le_bytes()[0] | 1;
                    (off, vec![byte; us(len)])
                })
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for plan in &plans {
            let img = &img;
            s.spawn(move || {
                for (i, (off, data)) in plan.iter().enumerate() {
                    img.write_at(data, *off).unwrap();
                    if i % 7 == 0 {
                        img.flush().unwrap();
                    }
                }
            });
        }
    });
    for plan in &plans {
        for (off, data) in plan {
            model[us(*off)..us(*off) + data.len()].copy_from_slice(data);
        }
    }
    assert_same("read back before close", &read_all(&img), &model);
    img.flush().unwrap();
    testing::close(img);
    let (code, text) = qemu_check(path);
    assert_eq!(code, 0, "qemu-img check: {text}");
    assert_same("qemu-img convert after writes", &qemu_raw(path), &model);
}

#[test]
fn random_writes_pass_qemu_check_and_equal_model() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, opts)) in [
        ("v3.qcow2", ""),
        ("v2.qcow2", "compat=0.10"),
        ("c4k.qcow2", "cluster_size=4096"),
        ("v2c4k.qcow2", "compat=0.10,cluster_size=4096"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = populated(dir.path(), name, opts);
        random_writes_against_model(&path, 0x5eed + i as u64, 60, 3);
    }
}

/// A raw file with patterns, compressed by `qemu-img convert -c`.
fn compressed_image(dir: &Path, cluster_size: u32) -> PathBuf {
    let raw = dir.join(format!("src{cluster_size}.raw"));
    let mut data = vec![0u8; us(16 * MIB)];
    for (i, chunk) in data.chunks_mut(4096).enumerate() {
        match i % 5 {
            0 => chunk.fill(0),
            1 => chunk.fill(i.to_le_bytes()[0]),
            _ => chunk
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (j * 31 + i).to_le_bytes()[0]),
        }
    }
    std::fs::write(&raw, &data).unwrap();
    let path = dir.join(format!("c{cluster_size}.qcow2"));
    let opts = format!("cluster_size={cluster_size}");
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            &opts,
            p(&raw),
            p(&path),
        ],
    );
    path
}

#[test]
fn compressed_clusters_read_and_overwrite() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for cs in [65536, 4096] {
        let path = compressed_image(dir.path(), cs);
        let mut model = qemu_raw(&path);
        let img = open(&path, &Qcow2Options::default()).unwrap();
        assert_same("compressed read", &read_all(&img), &model);
        testing::close(img);
        let img = open(&path, &rw()).unwrap();
        for (off, len) in [
            (100u64, 10usize),
            (65536 + 4000, 200),
            (3 * MIB - 7, 70_000),
        ] {
            let data = vec![0xc5u8; len];
            img.write_at(&data, off).unwrap();
            model[us(off)..us(off) + len].copy_from_slice(&data);
        }
        img.flush().unwrap();
        testing::close(img);
        let (code, text) = qemu_check(&path);
        assert_eq!(code, 0, "qemu-img check: {text}");
        assert_same("compressed overwrite", &qemu_raw(&path), &model);
        random_writes_against_model(&path, cs as u64, 40, 2);
    }
}

#[test]
fn backing_file_refused_by_default_readable_when_allowed() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = populated(dir.path(), "base.qcow2", "");
    let top = dir.path().join("top.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            p(&top),
        ],
    );
    qemu_io(&top, &["write -P 0x77 1M 4k"]);
    let err = open(&top, &Qcow2Options::default()).err().unwrap();
    assert_eq!(err.exit_code(), 4);
    assert!(
        err.to_string().contains("backing file (base.qcow2)"),
        "{err}"
    );
    let allow = Qcow2Options {
        allow_backing: true,
        ..Default::default()
    };
    let img = open(&top, &allow).unwrap();
    assert_same("backing chain", &read_all(&img), &qemu_raw(&top));
    testing::close(img);
    // Writable with a backing chain: the backing image stays untouched.
    let before = std::fs::read(&base).unwrap();
    let img = open(
        &top,
        &Qcow2Options {
            writable: true,
            allow_backing: true,
            ..Default::default()
        },
    )
    .unwrap();
    img.write_at(&[9u8; 1000], MIB + 100).unwrap();
    img.flush().unwrap();
    testing::close(img);
    assert_eq!(std::fs::read(&base).unwrap(), before);
    assert_eq!(qemu_check(&top).0, 0);
}

#[test]
fn dirty_corrupt_and_unknown_features_refused_with_what_to_run() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (bit, words) in [
        (0u8, "dirty"),
        (1, "corrupt"),
        (2, "external data file"),
        (5, "unknown"),
    ] {
        let path = dir.path().join(format!("f{bit}.qcow2"));
        create(&path, MIB, "");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[79] |= 1 << bit; // incompatible_features, big-endian u64 at 72
        std::fs::write(&path, &bytes).unwrap();
        for writable in [false, true] {
            let opts = Qcow2Options {
                writable,
                ..Default::default()
            };
            let err = open(&path, &opts).err().unwrap();
            assert_eq!(err.exit_code(), 4);
            assert!(err.message().contains(words), "{err}");
            let hint = err.hint().unwrap();
            if bit < 2 {
                assert!(hint.contains("qemu-img check -r all"), "{hint}");
            } else {
                assert!(hint.contains("qemu-img convert"), "{hint}");
            }
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "refusal must not write"
        );
    }
}

// ---- crash safety ------------------------------------------------------------------------

const CHILD_ENV: &str = "LUKSFUSE_QCOW2_CRASH_CHILD";

/// The writes the crash child makes, in order. With 512-byte clusters an L2 table maps only
/// 32 KiB and a refcount block counts 128 KiB of file, so most writes allocate an L2 table,
/// many a refcount block, and the refcount table grows (past 8 MiB of file).
fn crash_plan(seed: u64) -> Vec<(u64, usize, u8)> {
    let mut rng = Rng(seed);
    (0..400)
        .map(|i| {
            let len = 1 + us(rng.below(40_000));
            let off = rng.below(64 * MIB - len as u64);
            (off, len, (i % 251) as u8 + 1)
        })
        .collect()
}

/// Not a test of its own: the writer child of the crash tests (does nothing unless
/// `LUKSFUSE_QCOW2_CRASH_CHILD=<image>:<seed>:<guarded>` is set).
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.rsplitn(3, ':');
    let guarded = parts.next().unwrap() == "1";
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let path = PathBuf::from(parts.next().unwrap());
    let img = open(
        &path,
        &Qcow2Options {
            writable: true,
            unguarded_for_tests: !guarded,
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = std::io::stdout().lock();
    for (i, (off, len, byte)) in crash_plan(seed).into_iter().enumerate() {
        img.write_at(&vec![byte; len], off).unwrap();
        img.flush().unwrap();
        writeln!(out, "flushed {i}").unwrap();
        out.flush().unwrap();
    }
    std::process::exit(0);
}

use std::io::Write as _;

/// Runs the writer child on a fresh image; kills it after `kill_after` (or lets fault
/// injection abort it); returns how many writes it reported flushed and the image.
fn crash_run(
    dir: &Path,
    run_no: usize,
    guarded: bool,
    kill_after: Option<Duration>,
    abort_after_l1: Option<u32>,
) -> (usize, PathBuf) {
    let path = dir.join(format!("crash{run_no}.qcow2"));
    create(&path, 64 * MIB, "cluster_size=512");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "image::qcow2::tests::crash_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(
        CHILD_ENV,
        format!("{}:{run_no}:{}", p(&path), guarded as u8),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(n) = abort_after_l1 {
        cmd.env("LUKSFUSE_QCOW2_ABORT_AFTER_L1", n.to_string());
    }
    let mut child = testing::spawn(&mut cmd).unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            // The harness prints "test … ... " without a newline before our first line.
            .filter_map(|l| l.rsplit_once("flushed ")?.1.trim().parse::<usize>().ok())
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)
    });
    if let Some(d) = kill_after {
        std::thread::sleep(d);
        let _ = child.kill(); // SIGKILL
    }
    child.wait().unwrap();
    (reader.join().unwrap(), path)
}

/// After a crash: no corruption (leaks are fine), and every flushed write reads back; the
/// one write in flight may have landed in part.
fn verify_after_crash(path: &Path, seed: u64, flushed: usize) -> Result<(), String> {
    let (code, text) = qemu_check(path);
    if code != 0 && code != 3 {
        return Err(format!("qemu-img check exit {code}: {text}"));
    }
    let plan = crash_plan(seed);
    let mut model = vec![0u8; us(64 * MIB)];
    for &(off, len, byte) in &plan[..flushed] {
        model[us(off)..us(off) + len].fill(byte);
    }
    let got = qemu_raw(path);
    let in_flight = plan.get(flushed).copied();
    for (i, (&g, &w)) in got.iter().zip(&model).enumerate() {
        let maybe =
            in_flight.is_some_and(|(off, len, b)| (us(off)..us(off) + len).contains(&i) && g == b);
        if g != w && !maybe {
            return Err(format!(
                "byte {i:#x}: {g:#04x}, want {w:#04x} after {flushed} flushed writes"
            ));
        }
    }
    Ok(())
}

/// `runs` kill -9 runs at random moments; returns the failures and the writes flushed.
fn kill9_runs(dir: &Path, runs: usize, guarded: bool) -> (Vec<String>, usize) {
    let mut rng = Rng(0xc0ffee);
    let (mut failures, mut total) = (Vec::new(), 0);
    for run_no in 0..runs {
        let delay = Duration::from_millis(20 + rng.below(1500));
        let (flushed, path) = crash_run(dir, run_no, guarded, Some(delay), None);
        total += flushed;
        if let Err(e) = verify_after_crash(&path, run_no as u64, flushed) {
            failures.push(format!("run {run_no} (kill after {delay:?}): {e}"));
        }
        std::fs::remove_file(&path).unwrap();
    }
    (failures, total)
}

#[test]
fn crash_kill9_at_random_moments_leaves_consistent_image() {
    if !have_qemu() || std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (failures, total) = kill9_runs(dir.path(), 20, true);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(total > 0, "the child never got a write flushed");
}

/// The same without the guard, to see how often a random kill hits imago's window
/// (`cargo test --lib crash_kill9_unguarded -- --ignored --nocapture`).
#[test]
#[ignore = "demonstration: reports how often unguarded imago corrupts on kill -9"]
fn crash_kill9_unguarded() {
    if !have_qemu() || std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (failures, total) = kill9_runs(dir.path(), 40, false);
    eprintln!(
        "{} of 40 unguarded runs failed ({total} writes flushed)",
        failures.len()
    );
    for f in &failures {
        eprintln!("  {}", f.lines().next().unwrap_or(""));
    }
}

/// Aborts the writer right after imago writes an L1 entry for a new L2 table: without the
/// guard that is `refcount=0 reference=1`; with it the image is clean (or leaks).
#[test]
fn crash_right_after_l1_update_is_safe_only_with_guard() {
    if !have_qemu() || std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut unguarded_corrupt = 0;
    for (k, n) in [1u32, 2, 5, 9].into_iter().enumerate() {
        let (flushed, path) = crash_run(dir.path(), 100 + k, true, None, Some(n));
        if let Err(e) = verify_after_crash(&path, 100 + k as u64, flushed) {
            panic!("guarded, abort after L1 write {n}: {e}");
        }
        let (flushed, path) = crash_run(dir.path(), 200 + k, false, None, Some(n));
        let (code, text) = qemu_check(&path);
        eprintln!("unguarded, abort after L1 write {n}: {flushed} flushed, check exit {code}");
        if code == 2 {
            assert!(text.contains("refcount=0 reference=1"), "{text}");
            unguarded_corrupt += 1;
        }
    }
    assert!(
        unguarded_corrupt > 0,
        "expected imago's unguarded L1 update to leave refcount=0 reference=1"
    );
}
