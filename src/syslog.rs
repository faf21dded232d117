//! Logging that follows the process into the background: to stderr while there is a terminal,
//! to syslog (`/dev/log`, RFC 3164 framing) once [`to_syslog`] was called by a daemonized mount.
//! Crate-private: programs install it with [`crate::process::init_logging`].

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

static SYSLOG: AtomicBool = AtomicBool::new(false);

/// From now on, [`Logger`] and [`send`] write to syslog instead of stderr.
pub fn to_syslog() {
    SYSLOG.store(true, Ordering::SeqCst);
}

/// Whether messages go to syslog.
pub fn active() -> bool {
    SYSLOG.load(Ordering::SeqCst)
}

/// Sends one message to syslog (facility daemon); silently does nothing without `/dev/log`.
pub fn send(level: log::Level, msg: &str) {
    let severity = match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    };
    let line = format!(
        "<{}>luksfuse[{}]: {msg}",
        3 * 8 + severity,
        std::process::id()
    );
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(line.as_bytes(), "/dev/log");
    }
}

/// A `log` logger: `luksfuse: message` on stderr, or syslog after [`to_syslog`].
pub struct Logger {
    /// The most verbose level written.
    pub level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if active() {
            send(r.level(), &r.args().to_string());
        } else {
            let _ = writeln!(std::io::stderr(), "luksfuse: {}", r.args());
        }
    }
    fn flush(&self) {}
}
