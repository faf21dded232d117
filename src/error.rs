//! One error type for the whole tool, and the one table of exit codes.
//!
//! An [`Error`] is a value a caller can match on, never a string to inspect:
//! * its [`Kind`] says what a caller (or a script, through the exit code) can act on; the exit
//!   code, the errno and the meaning of each kind are defined here, next to the variants, and
//!   `--help`, the man page and the README's exit table are made from [`EXIT_CODES`];
//! * its [`Reason`] names the few situations code must tell apart (no structure at all at a
//!   place vs a damaged one, a truncated file, a wrong passphrase, an unsupported feature);
//! * its context says where: the file, the keyslot, the LUKS2 header copy, the byte offset.
//!
//! The message is for people only: one line saying what is wrong. No code decides anything
//! from it. Errors are `Serialize`/`Deserialize`, so the mount daemon hands its error to the
//! parent process as a structured value (see `mount`).
//!
//! Exit codes follow cryptsetup's (see `cryptsetup(8)`, RETURN CODES). They are part of the
//! interface: never renumber, never reuse a retired number.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::Path;

/// What went wrong, at the granularity a caller (or a script) can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

impl Kind {
    /// Every kind, in exit-code order.
    pub const ALL: [Kind; 5] = [
        Kind::Usage,
        Kind::NoKey,
        Kind::NoMem,
        Kind::Device,
        Kind::Busy,
    ];

    /// The process exit code for this kind (cryptsetup's numbers).
    pub const fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 1,
            Kind::NoKey => 2,
            Kind::NoMem => 3,
            Kind::Device => 4,
            Kind::Busy => 5,
        }
    }

    /// What the exit code means, as `--help`, the man page and the README say it.
    pub const fn meaning(self) -> &'static str {
        match self {
            Kind::Usage => "wrong parameters or usage",
            Kind::NoKey => "no key available with this passphrase (or key file)",
            Kind::NoMem => "out of memory (or a KDF memory cost over the limit)",
            Kind::Device => "wrong, damaged or unsupported header or payload file; I/O error",
            Kind::Busy => "device busy: file locked by another process, mountpoint in use",
        }
    }

    /// The errno for this kind, where an error must be reported as one.
    pub const fn errno(self) -> i32 {
        match self {
            Kind::Usage => libc::EINVAL,
            Kind::NoKey => libc::EACCES,
            Kind::NoMem => libc::ENOMEM,
            Kind::Device => libc::EIO,
            Kind::Busy => libc::EBUSY,
        }
    }
}

/// The exit code of success, and its meaning.
pub const SUCCESS: (i32, &str) = (0, "success");

/// The exit code table: `(code, meaning)`, success first, then every [`Kind`] in order.
/// `--help`, the man page and the README print exactly this.
pub const EXIT_CODES: &[(i32, &str)] = &[
    SUCCESS,
    (Kind::Usage.exit_code(), Kind::Usage.meaning()),
    (Kind::NoKey.exit_code(), Kind::NoKey.meaning()),
    (Kind::NoMem.exit_code(), Kind::NoMem.meaning()),
    (Kind::Device.exit_code(), Kind::Device.meaning()),
    (Kind::Busy.exit_code(), Kind::Busy.meaning()),
];

/// The exit-code table as text lines (`  0  success`), for `--help` and the man page.
pub fn exit_code_table() -> String {
    EXIT_CODES
        .iter()
        .map(|(code, meaning)| format!("  {code}  {meaning}\n"))
        .collect()
}

/// The situations code tells apart. Most errors are [`Reason::Other`]: their kind and message
/// say all there is to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// Nothing more specific.
    Other,
    /// No structure of the expected kind at this place at all (its magic is absent), as
    /// opposed to one that is there but damaged.
    NoMagic,
    /// The file ends before bytes `..end`; it has `size` bytes.
    Truncated { end: u64, size: u64 },
    /// The passphrase or key opened none of the keyslots tried.
    WrongKey,
    /// The keyslot asked for is not active.
    InactiveKeyslot,
    /// The keyslot cannot be used by luksfuse (its type, KDF or cipher); the others can.
    UnusableKeyslot,
    /// The keyslot opened, but it is unbound: not assigned to the data segment.
    UnboundKeyslot,
    /// Well-formed, but uses something luksfuse does not implement (a cipher, a KDF, a
    /// feature flag).
    Unsupported,
    /// A system call failed with this OS error number.
    Os(i32),
    /// A value the caller chose for this setting is wrong; the message says what is wrong
    /// with it and [`Error::display_with`] names the setting as a front end calls it.
    BadSetting(Setting),
    /// Refused unless the caller turns this setting on.
    NeedsSetting(Setting),
    /// A LUKS2 header copy is damaged and the file also carries another signature (a file
    /// system, swap, LVM): the surviving copy is not used, as cryptsetup refuses it.
    AmbiguousSignature,
}

/// The settings a caller gives the library that errors refer to. The library names them in
/// its own words ([`Setting::describe`]); a front end names them by its options (the CLI's
/// `--iter-time`, the mount helper's `-o iter-time=`), so no library text names a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Setting {
    /// The name of the served file (one payload only).
    FileName,
    /// Following a qcow2 payload's backing file.
    AllowBacking,
    /// The KDF's target unlock time.
    IterTime,
    /// Argon2's parallel lanes.
    PbkdfParallel,
    /// Argon2's memory cost.
    PbkdfMemory,
}

impl Setting {
    /// The setting in the library's words.
    pub const fn describe(self) -> &'static str {
        match self {
            Setting::FileName => "a file name",
            Setting::AllowBacking => "following backing files",
            Setting::IterTime => "the KDF iteration time",
            Setting::PbkdfParallel => "the Argon2 parallel cost",
            Setting::PbkdfMemory => "the Argon2 memory cost",
        }
    }
}

/// Which of the two copies of a LUKS2 header an error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderCopy {
    Primary,
    Secondary,
}

impl fmt::Display for HeaderCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderCopy::Primary => "primary",
            HeaderCopy::Secondary => "secondary",
        })
    }
}

/// A one-line error: its kind and reason, where it happened (file, keyslot, header copy,
/// offset), what is wrong, and an optional hint.
///
/// Displayed as `file: keyslot N: message` (the parts that are known); the header copy and
/// the offset are for callers and the debug log (messages that need them say them already).
/// The hint is printed separately by the CLI.
///
/// The fields live behind one `Box`, so that a `Result<T>` stays small on hot paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Inner {
    kind: Kind,
    reason: Reason,
    msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyslot: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    copy: Option<HeaderCopy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` saying `msg`.
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            reason: Reason::Other,
            msg: msg.into(),
            file: None,
            keyslot: None,
            copy: None,
            offset: None,
            hint: None,
        }))
    }
    /// Wrong parameters or usage.
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::new(Kind::Usage, msg)
    }
    /// No key opened (see also [`Error::wrong_key`]).
    pub fn no_key(msg: impl Into<String>) -> Self {
        Self::new(Kind::NoKey, msg)
    }
    /// Out of memory, or over a memory limit.
    pub fn no_mem(msg: impl Into<String>) -> Self {
        Self::new(Kind::NoMem, msg)
    }
    /// A bad or unsupported on-disk structure.
    pub fn format(msg: impl Into<String>) -> Self {
        Self::new(Kind::Device, msg)
    }
    /// Busy: locked, or in use.
    pub fn busy(msg: impl Into<String>) -> Self {
        Self::new(Kind::Busy, msg)
    }
    /// No structure of the expected kind at this place (its magic is absent).
    pub fn no_magic(msg: impl Into<String>) -> Self {
        Self::format(msg).because(Reason::NoMagic)
    }
    /// The file has `size` bytes but bytes up to `end` are needed.
    pub fn truncated(msg: impl Into<String>, end: u64, size: u64) -> Self {
        Self::format(msg).because(Reason::Truncated { end, size })
    }
    /// Something well-formed that luksfuse does not implement.
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::format(msg).because(Reason::Unsupported)
    }
    /// The passphrase or key opened none of the keyslots tried.
    pub fn wrong_key(msg: impl Into<String>) -> Self {
        Self::no_key(msg).because(Reason::WrongKey)
    }
    /// The value given for `setting` is wrong: `msg` says how, without naming the setting
    /// ("must be at least 1 ms"); see [`Error::display_with`].
    pub fn bad_setting(setting: Setting, msg: impl Into<String>) -> Self {
        Self::usage(msg).because(Reason::BadSetting(setting))
    }
    /// An I/O error on `path`; `what` says what we were doing ("cannot open", "cannot read").
    pub fn io(path: &Path, what: &str, err: &io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::OutOfMemory => Kind::NoMem,
            io::ErrorKind::WouldBlock | io::ErrorKind::ResourceBusy => Kind::Busy,
            _ => Kind::Device,
        };
        let mut e = Self::new(kind, format!("{what}: {err}"));
        if let Some(n) = err.raw_os_error() {
            e.0.reason = Reason::Os(n);
        }
        e.0.file = Some(path.display().to_string());
        e
    }

    /// Sets the reason.
    pub fn because(mut self, reason: Reason) -> Self {
        self.0.reason = reason;
        self
    }
    /// Names the file this error concerns, unless one is named already.
    pub fn in_file(mut self, path: &Path) -> Self {
        if self.0.file.is_none() {
            self.0.file = Some(path.display().to_string());
        }
        self
    }
    /// Names the keyslot this error concerns, unless one is named already.
    pub fn in_keyslot(mut self, slot: u32) -> Self {
        self.0.keyslot.get_or_insert(slot);
        self
    }
    /// Names the LUKS2 header copy this error concerns, unless one is named already.
    pub fn in_copy(mut self, copy: HeaderCopy) -> Self {
        self.0.copy.get_or_insert(copy);
        self
    }
    /// Records the byte offset this error concerns, unless one is recorded already.
    pub fn at_offset(mut self, offset: u64) -> Self {
        self.0.offset.get_or_insert(offset);
        self
    }
    /// Adds a hint (printed on a line of its own).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }
    /// Prefixes more context to the message ("LUKS1 header: …"). For a keyslot, use
    /// [`Error::in_keyslot`].
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.0.msg = format!("{ctx}: {}", self.0.msg);
        self
    }

    pub fn kind(&self) -> Kind {
        self.0.kind
    }
    pub fn reason(&self) -> Reason {
        self.0.reason
    }
    pub fn exit_code(&self) -> i32 {
        self.0.kind.exit_code()
    }
    pub fn errno(&self) -> i32 {
        match self.0.reason {
            Reason::Os(n) => n,
            _ => self.0.kind.errno(),
        }
    }
    /// The file named, if any.
    pub fn file(&self) -> Option<&str> {
        self.0.file.as_deref()
    }
    pub fn keyslot(&self) -> Option<u32> {
        self.0.keyslot
    }
    pub fn copy(&self) -> Option<HeaderCopy> {
        self.0.copy
    }
    pub fn offset(&self) -> Option<u64> {
        self.0.offset
    }
    /// The message alone (for people; see the module documentation).
    pub fn message(&self) -> &str {
        &self.0.msg
    }
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }
}

impl Error {
    /// The one line, naming a [`Reason::BadSetting`]'s setting as `name` says: a front end's
    /// option name (`--iter-time must be at least 1 ms`). `Display` uses the library's words.
    pub fn display_with(&self, name: impl Fn(Setting) -> String) -> String {
        let mut line = String::new();
        if let Some(file) = &self.0.file {
            line += &format!("{file}: ");
        }
        if let Some(slot) = self.0.keyslot {
            line += &format!("keyslot {slot}: ");
        }
        if let Reason::BadSetting(s) = self.0.reason {
            line += &name(s);
            line.push(' ');
        }
        line + &self.0.msg
    }
}

impl fmt::Display for Error {
    /// One line: `file: keyslot N: message`. The hint is printed separately by the CLI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_with(|s| s.describe().to_owned()))
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
            assert!(EXIT_CODES.contains(&(code, kind.meaning())));
        }
        assert_eq!(EXIT_CODES.len(), Kind::ALL.len() + 1);
        assert_eq!(EXIT_CODES[0], SUCCESS);
        assert!(exit_code_table().contains("  2  no key available with this passphrase"));
    }

    #[test]
    fn display_names_file_once_and_the_keyslot() {
        let e = Error::format("bad magic")
            .in_file(Path::new("h.img"))
            .in_file(Path::new("other"));
        assert_eq!(e.to_string(), "h.img: bad magic");
        assert_eq!(e.exit_code(), 4);
        let e = Error::unsupported("unsupported cipher 'x'")
            .in_keyslot(3)
            .in_keyslot(4)
            .in_file(Path::new("h.img"));
        assert_eq!(e.to_string(), "h.img: keyslot 3: unsupported cipher 'x'");
        assert_eq!((e.keyslot(), e.reason()), (Some(3), Reason::Unsupported));
    }

    #[test]
    fn a_bad_setting_is_named_by_whoever_shows_it() {
        let e = Error::bad_setting(Setting::IterTime, "must be at least 1 ms");
        assert_eq!(
            e.to_string(),
            "the KDF iteration time must be at least 1 ms"
        );
        let cli = |s: Setting| format!("--{}", serde_json::to_value(s).unwrap().as_str().unwrap());
        assert_eq!(e.display_with(cli), "--iter-time must be at least 1 ms");
        assert_eq!(
            (e.exit_code(), e.reason()),
            (1, Reason::BadSetting(Setting::IterTime))
        );
    }

    #[test]
    fn errors_survive_a_round_trip_through_json() {
        let e = Error::busy("already a mountpoint")
            .in_file(Path::new("/m"))
            .in_copy(HeaderCopy::Secondary)
            .at_offset(16384)
            .with_hint("unmount it first");
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains('\n'));
        let back: Error = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.exit_code(), 5);
        assert_eq!(back.copy(), Some(HeaderCopy::Secondary));
        assert_eq!(back.offset(), Some(16384));
    }

    #[test]
    fn io_errors_keep_their_errno() {
        let err = io::Error::from_raw_os_error(libc::ENOENT);
        let e = Error::io(Path::new("p"), "cannot open", &err);
        assert_eq!(
            (e.reason(), e.errno(), e.exit_code()),
            (Reason::Os(libc::ENOENT), libc::ENOENT, 4)
        );
        assert_eq!(Error::usage("x").errno(), libc::EINVAL);
    }
}
