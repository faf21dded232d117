//! One error type for the whole tool, and the one table of exit codes.
//!
//! Exit codes follow cryptsetup's (see `cryptsetup(8)`, RETURN CODES). They are
//! part of the interface: never renumber, never reuse a retired number.

use std::fmt;
use std::io;
use std::path::Path;

/// What went wrong, at the granularity a caller (or a script) can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Wrong parameters or usage (exit 1).
    Usage,
    /// No keyslot opened with the given passphrase or key file (exit 2).
    NoKey,
    /// Out of memory, or a KDF wants more memory than allowed (exit 3).
    NoMem,
    /// Wrong, damaged or unsupported header or payload file, or an I/O error on it (exit 4).
    Device,
    /// The file or mountpoint is busy: locked or in use by another process (exit 5).
    Busy,
}

/// The exit code table: `(code, meaning)`. Printed by `--help` and in the README.
pub const EXIT_CODES: &[(i32, &str)] = &[
    (0, "success"),
    (1, "wrong parameters or usage"),
    (2, "no key available with this passphrase (or key file)"),
    (3, "out of memory (or a KDF memory cost over the limit)"),
    (
        4,
        "wrong, damaged or unsupported header or payload file; I/O error",
    ),
    (
        5,
        "device busy: file locked by another process, mountpoint in use",
    ),
];

impl Kind {
    /// The process exit code for this kind (see [`EXIT_CODES`]).
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 1,
            Kind::NoKey => 2,
            Kind::NoMem => 3,
            Kind::Device => 4,
            Kind::Busy => 5,
        }
    }
}

/// A one-line error: optionally the file it concerns, what is wrong, and an optional hint.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    file: Option<String>,
    msg: String,
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            file: None,
            msg: msg.into(),
            hint: None,
        }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::new(Kind::Usage, msg)
    }
    pub fn no_key(msg: impl Into<String>) -> Self {
        Self::new(Kind::NoKey, msg)
    }
    pub fn no_mem(msg: impl Into<String>) -> Self {
        Self::new(Kind::NoMem, msg)
    }
    /// A bad or unsupported on-disk structure.
    pub fn format(msg: impl Into<String>) -> Self {
        Self::new(Kind::Device, msg)
    }
    pub fn busy(msg: impl Into<String>) -> Self {
        Self::new(Kind::Busy, msg)
    }
    /// An I/O error on `path`; `what` says what we were doing ("cannot open", "cannot read").
    pub fn io(path: &Path, what: &str, err: &io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::OutOfMemory => Kind::NoMem,
            io::ErrorKind::WouldBlock | io::ErrorKind::ResourceBusy => Kind::Busy,
            _ => Kind::Device,
        };
        let mut e = Self::new(kind, format!("{what}: {err}"));
        e.file = Some(path.display().to_string());
        e
    }

    /// Names the file this error concerns, unless one is named already.
    pub fn in_file(mut self, path: &Path) -> Self {
        if self.file.is_none() {
            self.file = Some(path.display().to_string());
        }
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Prefixes more context to the message ("keyslot 3: …").
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    /// One line: `file: message`. The hint is printed separately by the CLI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_table_matches_kinds() {
        for (kind, code) in [
            (Kind::Usage, 1),
            (Kind::NoKey, 2),
            (Kind::NoMem, 3),
            (Kind::Device, 4),
            (Kind::Busy, 5),
        ] {
            assert_eq!(kind.exit_code(), code);
            assert!(EXIT_CODES.iter().any(|(c, _)| *c == code));
        }
    }

    #[test]
    fn display_names_file_once() {
        let e = Error::format("bad magic")
            .in_file(Path::new("h.img"))
            .in_file(Path::new("other"));
        assert_eq!(e.to_string(), "h.img: bad magic");
        assert_eq!(e.exit_code(), 4);
    }
}
