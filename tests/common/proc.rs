//! Starting processes: the fork guard, running a command, running the luksfuse binary, and
//! finding processes by their command line.

use std::io::Write;
use std::process::{Command, Output, Stdio};

// ---- Forks and locks ----
//
// A child holds a copy of every descriptor of the test process, close-on-exec ones included,
// from its fork until its exec. Tests run in parallel threads, so a lock that a test releases
// by closing a file it opened in-process (a RawImage, a Volume, an in-process mount) may live
// on for a moment in a child another test is just starting; a peer (QEMU) started right
// after would then find the file locked. So processes are started under a shared guard, and
// a test that relies on such a release calls `settle_forks` (or `close`) after it, which
// waits until every child being started has exec'd.

static FORKS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs `start` (which starts a process) under the shared guard.
pub fn forking<T>(start: impl FnOnce() -> T) -> T {
    let _g = FORKS.read().unwrap_or_else(|e| e.into_inner());
    start()
}

/// Returns once no child started before this call can still hold a copy of a descriptor
/// closed before it.
pub fn settle_forks() {
    drop(FORKS.write().unwrap_or_else(|e| e.into_inner()));
}

/// Drops `x`, closing its files, and settles forks: their locks are released on return.
pub fn close<T>(x: T) {
    drop(x);
    settle_forks();
}

/// Runs a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = forking(|| cmd.output()).unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The result of running the luksfuse binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `luksfuse args`, feeding `stdin`.
pub fn luksfuse<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &[u8]) -> Run {
    let mut child = forking(|| {
        Command::new(env!("CARGO_BIN_EXE_luksfuse"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    })
    .expect("spawn luksfuse");
    let mut input = child.stdin.take().expect("stdin");
    // The child may exit before reading: ignore a broken pipe.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().expect("wait luksfuse");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Live (not zombie) processes whose program (first word of the command line) ends with
/// `program` and whose command line contains every one of `args` as a whole word.
pub fn pids_with_args(program: &str, args: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let words: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let matches = words
            .first()
            .is_some_and(|a| a.ends_with(program.as_bytes()))
            && args.iter().all(|a| words.contains(&a.as_bytes()));
        if matches && !exited(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Gone, or a zombie nobody reaps (PID 1 of a container may not).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}
