//! The few system calls the standard library does not wrap. Every `unsafe` block of the
//! project lives in this module, each with a `// SAFETY:` comment.

use std::io;
use std::os::fd::AsRawFd;

/// Whether `fd` refers to a terminal.
pub fn is_terminal(fd: &impl AsRawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number; an invalid one yields 0.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Turns terminal echo off on `fd` until the returned guard is dropped.
pub struct NoEcho {
    fd: i32,
    saved: libc::termios,
}

impl NoEcho {
    pub fn new(fd: &impl AsRawFd) -> io::Result<Self> {
        let fd = fd.as_raw_fd();
        // SAFETY: termios is plain old data; tcgetattr fills it completely on success.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL);
        // SAFETY: `quiet` is a valid termios derived from the current settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NoEcho { fd, saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}
