//! luksfuse: unlock a LUKS1/LUKS2 detached header and serve the decrypted payload as a file.
//!
//! Layers, each using only those listed before it:
//! 1. `error` (the error type), `units` (byte offsets, sector numbers, IVs, sector sizes),
//!    `secret` (keys and passphrases in locked, zeroized memory),
//!    and the crate-private foundations: `sys` (the system calls std lacks), `syslog` (the
//!    logger that follows a daemonized mount), `buffers` (per-thread I/O buffers) and `assist`
//!    (one request's pieces shared with a helper thread);
//! 2. `crypto`: the sector ciphers (XTS, CBC) and the hashes (`crypto::hash`);
//! 3. `luks`: both header versions, KDFs, anti-forensic split, keyslot unlock, formatting and
//!    in-place header updates;
//! 4. `image`: access to the payload file (raw with QEMU-compatible locks, or qcow2);
//! 5. `volume`: the decrypted, byte-addressed view of a payload segment; `partitions`: the
//!    GPT/MBR table read through it, as windows (offset, length) of the disk; `reencrypt`:
//!    in-place encryption and decryption of a payload, hotzone by hotzone;
//! 6. `fuse`: the FUSE adapter serving volumes as files, and the mount session;
//! 7. `passphrase` (key files), `headers` (changing a header file: new header, keyslots),
//!    `status` (the records of live mounts), `mount` (open, mount, daemonize, serve) and
//!    `unmount` (take a mount off, name what holds it, wait for its daemon to exit);
//! 8. `process`: the process-wide set-up a program on top needs (non-dumpable, logger,
//!    terminal test, its ids, terminal echo); then the binary (`src/bin/luksfuse/`), the only
//!    code that talks to the user: prompts, confirmations, progress and option names.
//!
//! Errors are [`Error`] values: a [`Kind`] (exit code, errno), a [`error::Reason`] and where
//! (file, keyslot, header copy, offset); code matches on those, never on a message.
//!
//! `unsafe` is denied crate-wide; only `sys`, the vector XTS paths `crypto::xts_avx512`,
//! `crypto::xts_vaes256` and their shared `crypto::xts_vec` (intrinsics behind run-time CPU
//! detection), `image::qcow2::guard` (imago's unsafe storage trait) and `assist` (a job on the
//! caller's stack handed to the helper thread) allow it, each use with a `// SAFETY:` comment.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[allow(unsafe_code)]
pub(crate) mod assist;
pub(crate) mod buffers;
pub mod crypto;
pub mod error;
pub mod fuse;
pub mod headers;
pub mod image;
pub mod luks;
pub mod mount;
pub mod partitions;
pub mod passphrase;
pub mod process;
pub mod reencrypt;
pub mod secret;
pub mod status;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub(crate) mod syslog;
#[cfg(test)]
pub(crate) mod testing;
pub mod units;
pub mod unmount;
pub mod volume;

pub use error::{Error, Kind, Result};

/// Hooks for the integration tests, not part of the supported API.
#[doc(hidden)]
pub mod testing_support {
    /// The size in bytes of the largest KDF memory mapping (Argon2's, which bypasses the global
    /// allocator) made since the last call, which resets it. The malformed-header tests bound
    /// it.
    pub fn take_largest_mapping() -> usize {
        crate::sys::take_largest_mapping()
    }
}
