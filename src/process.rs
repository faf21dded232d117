//! Process-wide set-up for a program built on this library (the `luksfuse` binary, the
//! examples): the few things of the crate-private system-call and logging layers that such a
//! program needs, as a deliberate API.
#![warn(missing_docs)]

use std::io;
use std::os::fd::AsRawFd;

/// Makes this process non-dumpable: no core dumps, and other processes of the same user cannot
/// ptrace it or read its memory through /proc/PID/mem (root still can). Call it first thing,
/// before any key is in memory.
pub fn set_non_dumpable() -> io::Result<()> {
    crate::sys::set_non_dumpable()
}

/// Whether `fd` refers to a terminal.
pub fn is_terminal(fd: &impl AsRawFd) -> bool {
    crate::sys::is_terminal(fd)
}

/// Terminal echo off until dropped (for reading a passphrase from a terminal).
pub use crate::sys::NoEcho;

/// The real user and group id of the process (who a mount's files belong to).
pub fn uid_gid() -> (u32, u32) {
    crate::sys::uid_gid()
}

/// Installs luksfuse's logger and sets `log`'s maximum level to `level`. Messages go to stderr
/// as `luksfuse: message`, or to syslog once a mount has gone into the background.
///
/// Call it once, at start-up: the logger cannot be replaced, so a later call fails (the level
/// is set all the same).
pub fn init_logging(level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
    let installed = log::set_boxed_logger(Box::new(crate::syslog::Logger { level }));
    log::set_max_level(level);
    installed
}

/// Catches SIGINT, SIGTERM and SIGHUP from now on: the first sets the returned flag (a long
/// job polls it and stops at a safe point); a second one ends the process at once with
/// status 130 when `second_exits`, else sets the flag again.
pub fn stop_flag_on_signals(
    second_exits: bool,
) -> io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let mut pipe = crate::sys::termination_signal_pipe()?;
    let set = flag.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            while pipe.read_exact(&mut b).is_ok() {
                if set.swap(true, Ordering::SeqCst) && second_exits {
                    std::process::exit(130);
                }
            }
        })?;
    Ok(flag)
}
