//! Support for the unit tests: deterministic random data, starting processes and closing
//! locked files.
//!
//! A child process holds a copy of every descriptor of its parent, close-on-exec ones
//! included, from its fork until its exec. The unit tests run in parallel threads of one
//! process, so a lock that one test releases by closing its file may live on for a moment in
//! a child that another test is just starting (seen: "held open by image::qcow2::t…", a
//! qcow2 test's `qemu-img` not yet exec'd). Tests therefore start processes under a shared
//! guard, and close files whose release they then rely on under the exclusive guard, which
//! waits until every child being started has exec'd.

use std::io;
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FORKS: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    FORKS.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FORKS.write().unwrap_or_else(|e| e.into_inner())
}

/// `cmd.output()`, started while no test is closing a file it relies on.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    let _g = shared();
    cmd.output()
}

/// `cmd.status()`, likewise.
pub fn status(cmd: &mut Command) -> io::Result<ExitStatus> {
    let _g = shared();
    cmd.status()
}

/// `cmd.spawn()`, likewise (it returns once the child has exec'd).
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let _g = shared();
    cmd.spawn()
}

/// Drops `x` (closing its files) when no copy of their descriptors can be alive in a child
/// that has not exec'd yet: whatever lock they held is released when this returns.
pub fn close<T>(x: T) {
    let _g = exclusive();
    drop(x);
}

/// A small deterministic generator (xorshift64*), so that failures can be replayed by seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

/// Options for a header of LUKS `version` that unlocks fast: PBKDF2 with 1000 iterations
/// (cryptsetup's minimum), everything else cryptsetup's default.
pub fn fast_options(version: u16) -> crate::luks::format::FormatOptions {
    crate::luks::format::FormatOptions {
        version,
        kdf: crate::luks::format::KdfOptions {
            pbkdf: Some("pbkdf2".into()),
            force_iterations: Some(1000),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A header made in memory from `options` (checked) with `passphrase` in keyslot 0, and its
/// volume key (`key`, or a random one).
pub fn header_image(
    options: crate::luks::format::FormatOptions,
    key: Option<crate::secret::VolumeKey>,
    passphrase: &[u8],
) -> (Vec<u8>, crate::secret::VolumeKey) {
    let plan = options.check().expect("valid test format options");
    crate::luks::format::build(&plan, key, passphrase).expect("test header")
}
