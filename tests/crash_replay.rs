//! Issue 16's crash replayer for payload data: every power-cut state of a recorded run
//! (tests/common/recfs.rs records what luksfuse sends to its files, tests/common/crash.rs
//! builds the states), checked with the real peers.
//!
//! - raw payloads (detached LUKS2 header, 4096- and 512-byte sectors) written through a
//!   mount: every write a client fsync acknowledged reads back through a fresh mount of the
//!   state, and a sector no pending write touched holds exactly the durable plaintext (a torn
//!   write damages only the sectors it touches);
//! - qcow2 payloads (detached LUKS1 header, 64 KiB and 4 KiB clusters, partly allocated):
//!   `qemu-img check` finds no corruption, acknowledged writes read back through luksfuse, and
//!   QEMU (its `luks` driver over the qcow2 with the header child) reads the same plaintext;
//! - in-place encryption and decryption: running the same command again in any state ends
//!   with the original plaintext;
//! - the qcow2 publish guard: the same workload driven through the library finds imago's
//!   `refcount=0 reference=1` window with the guard off, and nothing with it on.
//!
//! Each scenario has a small default budget (`make test`); `CRASHTEST=1` multiplies it by 10,
//! `CRASH_STATES=N` sets the number of states per scenario (`make crashtest`).

mod common;
#[path = "common/crash.rs"]
mod crash;
#[path = "common/recfs.rs"]
mod recfs;
use common::*;
use crash::{Budget, CrashState, Recording, Report};
use recfs::{Op, RecFs};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

// ---- shared --------------------------------------------------------------------------------

/// The budget of a scenario: `total` states by default, ten times that with `CRASHTEST=1`,
/// `CRASH_STATES` exactly when set.
fn budget(per_cut: usize, total: usize, seed: u64) -> Budget {
    let total = match std::env::var("CRASH_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => n,
        None if std::env::var_os("CRASHTEST").is_some() => total * 10,
        None => total,
    };
    let per_cut = if std::env::var_os("CRASHTEST").is_some() {
        per_cut * 4
    } else {
        per_cut
    };
    Budget {
        per_cut,
        total,
        sector: 512,
        seed,
    }
}

/// A directory for one crash state's files: on tmpfs when there is one (states are many and
/// short-lived), else the usual temporary directory.
fn state_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new()
        .prefix("luksfuse-crash-")
        .tempdir_in(shm);
    b.unwrap_or_else(|_| tmpdir())
}

/// A fixture whose files live on the recfs (the key file stays in the real `base`).
fn on_recfs(base: &Fixture, rec: &RecFs, header: &str, payload: &str) -> Fixture {
    Fixture {
        dir: tmpdir(),
        header: rec.path(header),
        payload: rec.path(payload),
        keyfile: base.keyfile.clone(),
    }
}

/// The state's files written to a fresh directory, as a fixture (header and payload named
/// as on the recfs; the key file of `base`).
fn materialise(st: &CrashState, base: &Fixture, header: &str, payload: &str) -> Fixture {
    let dir = state_dir();
    st.image.write_to(dir.path());
    Fixture {
        header: dir.path().join(header),
        payload: dir.path().join(payload),
        keyfile: base.keyfile.clone(),
        dir,
    }
}

/// Copies files from a real directory into the recfs (the recording starts after this).
fn copy_in(rec: &RecFs, files: &[(&Path, &str)]) {
    for (from, to) in files {
        std::fs::copy(from, rec.path(to)).unwrap();
    }
}

/// The plaintext a daemonized mount of `f` serves as file `name`, or why it could not.
fn read_through_mount(f: &Fixture, name: &str) -> Result<Vec<u8>, String> {
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let r = luksfuse(
        &[
            "mount",
            "-r",
            "-d",
            s(&f.keyfile),
            s(&f.header),
            s(&f.payload),
            s(&mnt),
        ],
        b"",
    );
    let _g = MountGuard(mnt.clone());
    if r.code != 0 {
        return Err(format!("mount failed ({}): {}", r.code, r.stderr.trim()));
    }
    let got = std::fs::read(mnt.join(name)).map_err(|e| format!("read through the mount: {e}"));
    let u = luksfuse(&["umount", "--timeout", "20", s(&mnt)], b"");
    assert_eq!(u.code, 0, "umount: {}", u.stderr);
    got
}

/// A client write: plaintext `data` at byte `off` of the served file.
#[derive(Clone, Debug)]
struct Write {
    off: u64,
    data: Vec<u8>,
}

/// Groups of writes; a client fsync (and a mark "fsync N") follows every group but the last.
fn write_plan(size: u64, groups: usize, seed: u64) -> Vec<Vec<Write>> {
    let mut rng = Rng(seed | 1);
    let lens = [100u64, 512, 1000, 4096, 3 * 4096, 70_000, 1 << 20];
    let mut recent: Vec<(u64, u64)> = Vec::new();
    (0..groups)
        .map(|g| {
            (0..3 + rng.below(2))
                .map(|i| {
                    let len = lens[rng.below(lens.len() as u64) as usize].min(size / 2);
                    let mut off = match rng.below(3) {
                        // Aligned.
                        0 => rng.below(size / 4096) * 4096,
                        // Overlapping an earlier write, unaligned.
                        1 if !recent.is_empty() => {
                            let (o, l) = recent[rng.below(recent.len() as u64) as usize];
                            o + rng.below(l)
                        }
                        _ => rng.below(size),
                    };
                    off = off.min(size - len);
                    recent.push((off, len));
                    Write {
                        off,
                        data: noise(len as usize, seed ^ ((g * 16 + i as usize) as u64 + 1)),
                    }
                })
                .collect()
        })
        .collect()
}

/// The number of "fsync N" marks a state was seen with: how many groups were acknowledged.
fn acknowledged(st: &CrashState) -> usize {
    st.marks.iter().filter(|m| m.starts_with("fsync ")).count()
}

/// Checks the plaintext `got` of a state against the plan: `durable` is the plaintext with
/// the first `acked` groups applied; the writes of the later groups are pending. Sectors (of
/// `sector` bytes) no pending write touches must equal `durable`; a touched one must hold,
/// byte by byte, the durable byte or that of a pending write covering it, unless the state
/// tore a write inside an encryption sector (`may_tear`): then it may be noise.
fn check_plaintext(
    got: &[u8],
    durable: &[u8],
    pending: &[&Write],
    sector: usize,
    may_tear: bool,
) -> Result<usize, String> {
    if got.len() != durable.len() {
        return Err(format!("size {} instead of {}", got.len(), durable.len()));
    }
    let mut torn = 0;
    for (i, (g, d)) in got.chunks(sector).zip(durable.chunks(sector)).enumerate() {
        let start = (i * sector) as u64;
        let end = start + g.len() as u64;
        let touching: Vec<&&Write> = pending
            .iter()
            .filter(|w| w.off < end && start < w.off + w.data.len() as u64)
            .collect();
        if touching.is_empty() {
            if g != d {
                let at = g.iter().zip(d).position(|(a, b)| a != b).unwrap();
                return Err(format!(
                    "sector {i} (byte {}) differs from the durable plaintext and no pending \
                     write touches it",
                    start + at as u64
                ));
            }
            continue;
        }
        let plausible = g.iter().zip(d).enumerate().all(|(j, (&gb, &db))| {
            let at = start + j as u64;
            gb == db
                || touching.iter().any(|w| {
                    (w.off..w.off + w.data.len() as u64).contains(&at)
                        && w.data[(at - w.off) as usize] == gb
                })
        });
        if !plausible {
            if !may_tear {
                return Err(format!(
                    "sector {i} holds neither the durable nor any pending write's bytes, and no \
                     write was torn inside a sector"
                ));
            }
            torn += 1;
        }
    }
    Ok(torn)
}

/// The model of a plan: the plaintext after the first `k` groups, for every `k`.
fn models(p0: &[u8], plan: &[Vec<Write>]) -> Vec<Vec<u8>> {
    let mut out = vec![p0.to_vec()];
    for g in plan {
        let mut m = out.last().unwrap().clone();
        for w in g {
            m[w.off as usize..w.off as usize + w.data.len()].copy_from_slice(&w.data);
        }
        out.push(m);
    }
    out
}

/// Runs the plan through the served file `file`, with a client fsync and a mark after each
/// group but the last.
fn run_plan(rec: &RecFs, file: &Path, plan: &[Vec<Write>]) {
    let f = std::fs::File::options().write(true).open(file).unwrap();
    for (g, group) in plan.iter().enumerate() {
        for w in group {
            f.write_all_at(&w.data, w.off).unwrap();
        }
        if g + 1 < plan.len() {
            f.sync_all().unwrap();
            rec.mark(&format!("fsync {}", g + 1));
        }
    }
    close(f);
}

/// Prints the operations before `cut` back to the second flush before it (CRASH_DEBUG=1).
fn dump_ops(ops: &[Op], cut: usize) {
    let mut from = cut;
    let mut flushes = 0;
    while from > 0 && flushes < 3 {
        from -= 1;
        if matches!(ops[from], Op::Fsync { .. } | Op::FsyncDir) {
            flushes += 1;
        }
    }
    for (i, op) in ops.iter().enumerate().take(cut + 2).skip(from) {
        let what = match op {
            Op::Write { ino, off, data } => format!("write ino {ino} at {off} len {}", data.len()),
            other => format!("{other:?}"),
        };
        eprintln!("  {}{i}: {what}", if i == cut { "CUT " } else { "" });
    }
}

/// Asserts no violations and at least `min_states` states (the recording varies from run to run
/// with the daemon's threads and imago's flushes, and so does the number of distinct states: the
/// minimum is a floor against a vacuous pass, well below what a run gives).
fn assert_report(r: &Report, min_states: usize) {
    r.print();
    assert!(
        r.violations.is_empty(),
        "{}: {} violations, first: {}",
        r.scenario,
        r.violations.len(),
        r.violations[0]
    );
    assert!(
        r.states >= min_states,
        "{}: only {} states checked (at least {min_states} expected)",
        r.scenario,
        r.states
    );
}

// ---- 1. raw payloads -----------------------------------------------------------------------

fn raw_scenario(sector: usize, seed: u64) {
    let t = Instant::now();
    let base = Fixture::new().payload_len(4 << 20);
    let mut args = vec!["--type", "luks2", "--sector-size"];
    let sector_arg = sector.to_string();
    args.push(&sector_arg);
    args.extend(fast_kdf("pbkdf2"));
    let base = base.luks_format(&args);
    let rec_dir = base.path("rec");
    std::fs::create_dir(&rec_dir).unwrap();
    let rec = RecFs::mount(&rec_dir);
    copy_in(&rec, &[(&base.header, "h.img"), (&base.payload, "p.raw")]);
    let f = on_recfs(&base, &rec, "h.img", "p.raw");

    let m = Mounted::new(&f, &[], "p");
    let p0 = std::fs::read(m.mnt.join("p")).unwrap();
    let plan = write_plan(p0.len() as u64, 4, seed);
    rec.take_log();
    let recording_base = rec.image();
    run_plan(&rec, &m.mnt.join("p"), &plan);
    m.unmount();
    let ops = rec.take_log();
    let recording = Recording {
        base: recording_base,
        ops,
    };
    let model = models(&p0, &plan);
    let states = crash::states(&recording, budget(12, 60, seed));
    let scenario = format!("raw, {sector}-byte sectors");
    let mut report = Report::new(&scenario);
    let mut torn_sectors = 0;
    for st in &states {
        let k = acknowledged(st);
        let pending: Vec<&Write> = plan[k..].iter().flatten().collect();
        let sf = materialise(st, &base, "h.img", "p.raw");
        let result = read_through_mount(&sf, "p").and_then(|got| {
            let may_tear = st.what.contains("torn") && sector > 512;
            if std::env::var_os("CRASH_DEBUG").is_some() && st.what.contains("torn") {
                let diff = got
                    .chunks(sector)
                    .zip(model[k].chunks(sector))
                    .filter(|(a, b)| a != b)
                    .count();
                eprintln!(
                    "  {}: {diff} sectors differ from the durable model",
                    st.what
                );
            }
            check_plaintext(&got, &model[k], &pending, sector, may_tear)
        });
        report.states += 1;
        match result {
            Ok(n) => torn_sectors += n,
            Err(e) => report
                .violations
                .push(format!("{} ({k} groups acknowledged): {e}", st.what)),
        }
    }
    let torn_states = states.iter().filter(|s| s.what.contains("torn")).count();
    eprintln!(
        "{scenario}: {} ops recorded, {torn_states} states with a torn write, {torn_sectors} \
         torn sectors seen, {:.1} s",
        recording.ops.len(),
        t.elapsed().as_secs_f64()
    );
    assert_report(&report, 30);
}

#[test]
fn raw_4096_byte_sectors_keep_acknowledged_writes_and_tear_only_touched_sectors() {
    raw_scenario(4096, 11);
}

#[test]
fn raw_512_byte_sectors_keep_acknowledged_writes_and_tear_only_touched_sectors() {
    raw_scenario(512, 12);
}

// ---- 2. qcow2 payloads ---------------------------------------------------------------------

/// QEMU's plaintext of the LUKS1-over-qcow2 stack of `f` (its `luks` driver with the detached
/// header as the `header` child).
fn qemu_plain(f: &Fixture) -> Result<Vec<u8>, String> {
    let out = f.path("qemu.raw");
    let opts = format!(
        "driver=luks,key-secret=s,file.driver=qcow2,file.file.filename={},header.filename={}",
        s(&f.payload),
        s(&f.header)
    );
    let o = forking(|| {
        Command::new("qemu-img")
            .args([
                "convert",
                "--object",
                &qemu_secret(f),
                "--image-opts",
                &opts,
            ])
            .args(["-O", "raw", s(&out)])
            .output()
    })
    .unwrap();
    if !o.status.success() {
        return Err(format!(
            "QEMU cannot read the image: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(std::fs::read(&out).unwrap())
}

/// `qemu-img check`: Ok for exit 0 (clean) or 3 (leaks only), else the report.
fn qemu_check(path: &Path) -> Result<(), String> {
    let o = forking(|| {
        Command::new("qemu-img")
            .args(["check", "-f", "qcow2", s(path)])
            .output()
    })
    .unwrap();
    match o.status.code() {
        Some(0) | Some(3) => Ok(()),
        c => Err(format!(
            "qemu-img check exit {c:?}: {}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

fn qcow2_scenario(cluster: u32, seed: u64) {
    let t = Instant::now();
    let mut base = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let q = base.path("p.qcow2");
    let size: u64 = 4 << 20;
    run_ok(Command::new("qemu-img").args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("cluster_size={cluster},lazy_refcounts=off"),
        s(&q),
        &size.to_string(),
    ]));
    base.payload = q;
    // Partly allocated by QEMU itself, through its luks driver.
    let opts = format!(
        "driver=luks,key-secret=s,file.driver=qcow2,file.file.filename={},header.filename={}",
        s(&base.payload),
        s(&base.header)
    );
    run_ok(Command::new("qemu-io").args([
        "--object",
        &qemu_secret(&base),
        "--image-opts",
        &opts,
        "-c",
        "write -P 0x11 0 256k",
        "-c",
        "write -P 0x22 1M 64k",
        "-c",
        "write -P 0x33 3M 8k",
    ]));
    let rec_dir = base.path("rec");
    std::fs::create_dir(&rec_dir).unwrap();
    let rec = RecFs::mount(&rec_dir);
    copy_in(&rec, &[(&base.header, "h.img"), (&base.payload, "p.qcow2")]);
    let f = on_recfs(&base, &rec, "h.img", "p.qcow2");

    let m = Mounted::new(&f, &[], "p");
    let p0 = std::fs::read(m.mnt.join("p")).unwrap();
    let plan = write_plan(size, 4, seed);
    rec.take_log();
    let recording_base = rec.image();
    run_plan(&rec, &m.mnt.join("p"), &plan);
    m.unmount();
    let recording = Recording {
        base: recording_base,
        ops: rec.take_log(),
    };
    let model = models(&p0, &plan);
    let states = crash::states(&recording, budget(8, 48, seed));
    let scenario = format!("qcow2, {cluster}-byte clusters");
    let mut report = Report::new(&scenario);
    for st in &states {
        let k = acknowledged(st);
        let pending: Vec<&Write> = plan[k..].iter().flatten().collect();
        let sf = materialise(st, &base, "h.img", "p.qcow2");
        let result = qemu_check(&sf.payload).and_then(|()| {
            let got = read_through_mount(&sf, "p")?;
            check_plaintext(&got, &model[k], &pending, 512, false)?;
            let qemu = qemu_plain(&sf)?;
            if qemu != got {
                return Err("QEMU reads other plaintext than luksfuse".into());
            }
            Ok(())
        });
        report.states += 1;
        if let Err(e) = result {
            report
                .violations
                .push(format!("{} ({k} groups acknowledged): {e}", st.what));
        }
    }
    eprintln!(
        "{scenario}: {} ops recorded, {:.1} s",
        recording.ops.len(),
        t.elapsed().as_secs_f64()
    );
    assert_report(&report, 12);
}

#[test]
fn qcow2_64k_clusters_stay_consistent_and_keep_acknowledged_writes() {
    qcow2_scenario(65536, 21);
}

#[test]
fn qcow2_4k_clusters_stay_consistent_and_keep_acknowledged_writes() {
    qcow2_scenario(4096, 22);
}

// ---- 3. in-place encryption and decryption -------------------------------------------------

const FAST: &[&str] = &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

/// `luksfuse encrypt|decrypt` of `payload` under `header` with the scenario's options.
fn reencrypt_args(verb: &str, f: &Fixture, resilience: &str) -> Vec<String> {
    let mut a: Vec<String> = [verb, "-q", "-d", s(&f.keyfile)]
        .iter()
        .map(|x| x.to_string())
        .collect();
    if verb == "encrypt" {
        a.extend(FAST.iter().map(|x| x.to_string()));
    }
    for x in [
        "--hotzone-size",
        "64K",
        "--resilience",
        resilience,
        "--header",
        s(&f.header),
        s(&f.payload),
    ] {
        a.push(x.to_string());
    }
    a
}

fn sha(b: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).to_vec()
}

fn reencrypt_scenario(verb: &str, resilience: &str, seed: u64) {
    let t = Instant::now();
    let base = Fixture::new();
    let orig = noise(1 << 20, seed);
    let orig_sha = sha(&orig);
    let plain = base.path("plain.raw");
    write_file(&plain, &orig);
    let rec_dir = base.path("rec");
    std::fs::create_dir(&rec_dir).unwrap();
    let rec = RecFs::mount(&rec_dir);
    copy_in(&rec, &[(&plain, "p.raw")]);
    let f = on_recfs(&base, &rec, "h.img", "p.raw");
    if verb == "decrypt" {
        // Start from a finished encryption (not recorded).
        let r = luksfuse(&reencrypt_args("encrypt", &f, resilience), b"");
        assert_eq!(r.code, 0, "encrypt: {}", r.stderr);
    }
    rec.take_log();
    let recording_base = rec.image();
    let r = luksfuse(&reencrypt_args(verb, &f, resilience), b"");
    assert_eq!(r.code, 0, "{verb}: {}", r.stderr);
    rec.mark("exited 0");
    let recording = Recording {
        base: recording_base,
        ops: rec.take_log(),
    };
    let mut b = budget(4, 40, seed);
    if resilience == "checksum" {
        // The checksum resilience, like cryptsetup's, relies on each 4096-byte checksum
        // block being written whole (README, "In-place encryption"): the simulated device
        // tears at that unit here. The journal makes no such assumption and is torn at 512.
        b.sector = luksfuse::luks::luks2::reencrypt::DEFAULT_CHECKSUM_BLOCK as usize;
    }
    let states = crash::states(&recording, b);
    let scenario = format!(
        "{verb} in place, resilience {resilience}, torn at {} bytes",
        b.sector
    );
    let mut report = Report::new(&scenario);
    let mut resumed = 0;
    for st in &states {
        let sf = materialise(st, &base, "h.img", "p.raw");
        let r = luksfuse(&reencrypt_args(verb, &sf, resilience), b"");
        // A finished run (after its last header write) has nothing to resume.
        let finished = r.code != 0 && r.stderr.contains("not an encryption in progress");
        resumed += usize::from(r.code == 0);
        // Decryption: whatever the command says (a finished one refuses a header without a
        // crypt segment), the payload must be the original.
        let result = if r.code != 0 && !finished && verb == "encrypt" {
            Err(format!(
                "{verb} again failed ({}): {}",
                r.code,
                r.stderr.trim()
            ))
        } else if verb == "encrypt" {
            read_through_mount(&sf, "p").and_then(|got| match sha(&got) == orig_sha {
                true => Ok(()),
                false => Err("the mount does not serve the original plaintext".into()),
            })
        } else {
            match sha(&std::fs::read(&sf.payload).unwrap()) == orig_sha {
                true => Ok(()),
                false => Err(format!(
                    "the payload is not the original plaintext ({verb} again: exit {}, {})",
                    r.code,
                    r.stderr.trim()
                )),
            }
        };
        report.states += 1;
        if let Err(e) = result {
            if std::env::var_os("CRASH_DEBUG").is_some() {
                dump_ops(&recording.ops, st.cut);
            }
            report.violations.push(format!("{}: {e}", st.what));
        }
    }
    eprintln!(
        "{scenario}: {} ops recorded, {resumed} states resumed or restarted, {:.1} s",
        recording.ops.len(),
        t.elapsed().as_secs_f64()
    );
    assert_report(&report, 12);
}

#[test]
fn encrypt_in_place_with_checksums_resumes_to_the_original_from_every_state() {
    reencrypt_scenario("encrypt", "checksum", 31);
}

#[test]
fn encrypt_in_place_with_a_journal_resumes_to_the_original_from_every_state() {
    reencrypt_scenario("encrypt", "journal", 32);
}

#[test]
fn decrypt_in_place_resumes_to_the_original_from_every_state() {
    reencrypt_scenario("decrypt", "checksum", 33);
}

// ---- 4. the qcow2 guard, on and off --------------------------------------------------------

/// Allocating writes through the qcow2 layer (the library, no luksfuse mount: the guard's
/// switch is not reachable from the binary) on a recfs file, each followed by a flush, then
/// every crash state through `qemu-img check`. Returns the report and the number (from 1, in
/// the order the states are built) of the first state with `refcount=0 reference=1`.
fn qcow2_guard_run(guarded: bool) -> (Report, Option<usize>) {
    use luksfuse::image::qcow2::{open, Qcow2Options};
    use luksfuse::image::Image as _;
    let base = Fixture::new();
    let q = base.path("g.qcow2");
    // 512-byte clusters: an L2 table maps 32 KiB, so most writes allocate one (and publish its
    // L1 entry), many a refcount block too.
    run_ok(Command::new("qemu-img").args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512,lazy_refcounts=off",
        s(&q),
        "8M",
    ]));
    let rec_dir = base.path("rec");
    std::fs::create_dir(&rec_dir).unwrap();
    let rec = RecFs::mount(&rec_dir);
    copy_in(&rec, &[(&q, "g.qcow2")]);
    rec.take_log();
    let recording_base = rec.image();
    {
        let img = open(
            &rec.path("g.qcow2"),
            &Qcow2Options {
                writable: true,
                unguarded_for_tests: !guarded,
                ..Default::default()
            },
        )
        .unwrap();
        let mut rng = Rng(41);
        for i in 0..24u64 {
            let len = 512 + rng.below(4000) as usize;
            let off = rng.below((8 << 20) - len as u64);
            img.write_at(&vec![i as u8 + 1; len], off).unwrap();
            img.flush().unwrap();
            rec.mark(&format!("flush {i}"));
        }
    }
    settle_forks();
    let recording = Recording {
        base: recording_base,
        ops: rec.take_log(),
    };
    let states = crash::states(&recording, budget(4, 60, 42));
    let mut report = Report::new(&format!(
        "qcow2 guard {}",
        if guarded { "on" } else { "off" }
    ));
    let mut first = None;
    for (i, st) in states.iter().enumerate() {
        let dir = state_dir();
        st.image.write_to(dir.path());
        report.states += 1;
        if let Err(e) = qemu_check(&dir.path().join("g.qcow2")) {
            if e.contains("refcount=0 reference=1") {
                first.get_or_insert(i + 1);
            }
            report.violations.push(format!("{}: {e}", st.what));
        }
    }
    (report, first)
}

#[test]
fn the_replayer_finds_the_refcount_window_without_the_qcow2_guard_and_none_with_it() {
    let (off, first) = qcow2_guard_run(false);
    off.print();
    eprintln!(
        "qcow2 guard off: the first state with refcount=0 reference=1 is number {first:?} of {}",
        off.states
    );
    assert!(
        off.violations
            .iter()
            .any(|v| v.contains("refcount=0 reference=1")),
        "without the guard the replayer must find refcount=0 reference=1; found: {:?}",
        off.violations.first()
    );
    let (on, _) = qcow2_guard_run(true);
    assert_report(&on, 30);
}
