//! A raw payload: a regular file or block device read and written with positional I/O
//! (`pread`/`pwrite`, no shared seek position, so any number of threads may use it at once).
//!
//! # Locking, compatible with QEMU
//!
//! QEMU's `file` driver (`block/file-posix.c`, `raw_apply_lock_bytes` / `raw_check_lock_bytes`)
//! describes who uses an image with *shared* open-file-description byte-range locks:
//!
//! | byte        | locked by a user that …                     |
//! |-------------|---------------------------------------------|
//! | 100 + bit   | *holds* the permission `bit`                |
//! | 200 + bit   | does *not share* the permission `bit`       |
//!
//! with permission bits consistent-read = 0, write = 1, write-unchanged = 2, resize = 3. After
//! taking its bytes, a user tests (`F_OFD_GETLK` for a write lock, which conflicts with any
//! other description's read lock) byte 200 + bit for each permission it wants (does someone
//! refuse to share it?) and byte 100 + bit for each permission it refuses to share (does
//! someone hold it?). Locks through the same open file description never conflict, and all of
//! them vanish when the file is closed.
//!
//! What we take (checked with `qemu-io` 10.0 and `/proc/locks`, see `tests/locks_qemu.rs`):
//! * read-write: hold consistent-read + write; share consistent-read and write-unchanged only.
//!   QEMU then fails to open the payload for writing ('Failed to get "write" lock'), and we
//!   refuse to start while QEMU has it open for writing.
//! * read-only: hold consistent-read; share the same as above. This is what QEMU takes for a
//!   `read-only=on` guest disk (`blkconf_apply_backend_options`: a device shares neither write
//!   nor resize unless `share-rw=on`): the data under a mounted file system must not change
//!   underneath it. (`qemu-io -r` shares everything; we are stricter, like a guest.)

use super::{check_range, Image};
use crate::error::{Error, Result};
use crate::sys;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// QEMU's base offsets of the permission and shared-permission lock bytes.
const LOCK_PERM_BASE: u64 = 100;
const LOCK_SHARED_BASE: u64 = 200;

/// QEMU block-layer permissions (`BLK_PERM_*`), as bit numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Perm {
    ConsistentRead = 0,
    Write = 1,
    WriteUnchanged = 2,
    Resize = 3,
}

impl Perm {
    const ALL: [Perm; 4] = [
        Perm::ConsistentRead,
        Perm::Write,
        Perm::WriteUnchanged,
        Perm::Resize,
    ];
    /// The name QEMU prints in its lock errors.
    pub fn name(self) -> &'static str {
        match self {
            Perm::ConsistentRead => "consistent read",
            Perm::Write => "write",
            Perm::WriteUnchanged => "write unchanged",
            Perm::Resize => "resize",
        }
    }
}

/// How the payload is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl Access {
    /// The permissions we hold and the ones we do not share (see the module docs).
    pub fn lock_perms(self) -> (&'static [Perm], &'static [Perm]) {
        match self {
            Access::ReadOnly => (&[Perm::ConsistentRead], &[Perm::Write, Perm::Resize]),
            Access::ReadWrite => (
                &[Perm::ConsistentRead, Perm::Write],
                &[Perm::Write, Perm::Resize],
            ),
        }
    }
}

/// A payload file or block device, opened and locked.
pub struct RawImage {
    file: File,
    path: PathBuf,
    size: u64,
    access: Access,
}

impl RawImage {
    /// Opens `path` and takes QEMU-compatible locks; a conflict is [`Error::busy`] (exit 5).
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let (file, size) = open_locked(path, access)?;
        Ok(RawImage {
            file,
            path: path.to_path_buf(),
            size,
            access,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens a payload file (or block device) and takes QEMU-compatible locks on it; returns the
/// file and its size. Any image format is opened this way, so the locks cover qcow2 too.
pub fn open_locked(path: &Path, access: Access) -> Result<(File, u64)> {
    let file = File::options()
        .read(true)
        .write(access == Access::ReadWrite)
        .open(path)
        .map_err(|e| Error::io(path, "cannot open payload", &e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat payload", &e))?;
    let size = if meta.file_type().is_file() {
        meta.len()
    } else {
        (&file)
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, "cannot size payload", &e))?
    };
    lock(&file, path, access)?;
    Ok((file, size))
}

/// Applies our lock bytes, then checks nobody else conflicts (in QEMU's order: first the
/// permissions we want, then the ones we do not share). Locks go away with the file.
fn lock(file: &File, path: &Path, access: Access) -> Result<()> {
    let (held, unshared) = access.lock_perms();
    let fd = file.as_fd();
    let lock_err = |e: io::Error| Error::io(path, "cannot lock payload", &e);
    for p in held {
        sys::ofd_lock_shared(fd, LOCK_PERM_BASE + *p as u64).map_err(lock_err)?;
    }
    for p in unshared {
        sys::ofd_lock_shared(fd, LOCK_SHARED_BASE + *p as u64).map_err(lock_err)?;
    }
    let busy = |what: String| {
        let holders = holders(path);
        let hint = if holders.is_empty() {
            "is QEMU or another luksfuse using this payload?".to_string()
        } else {
            format!("held open by {}; stop it first", holders.join(", "))
        };
        Error::busy(what).in_file(path).with_hint(hint)
    };
    for p in held {
        if sys::ofd_write_lock_conflicts(fd, LOCK_SHARED_BASE + *p as u64).map_err(lock_err)? {
            return Err(busy(format!(
                "locked by another process, which does not share \"{}\" permission",
                p.name()
            )));
        }
    }
    for p in Perm::ALL.iter().filter(|p| unshared.contains(p)) {
        if sys::ofd_write_lock_conflicts(fd, LOCK_PERM_BASE + *p as u64).map_err(lock_err)? {
            return Err(busy(format!(
                "in use by another process with \"{}\" permission",
                p.name()
            )));
        }
    }
    Ok(())
}

/// The other processes that have `path` open, as "NAME (pid N)" (those we may inspect: all for
/// root, our own user's otherwise). OFD locks carry no pid, so /proc is the way to name them.
fn holders(path: &Path) -> Vec<String> {
    let Ok(target) = path.canonicalize() else {
        return vec![];
    };
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("{} (pid {pid})", comm.trim()));
        }
    }
    out
}

impl Image for RawImage {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        check_range(off, buf.len(), self.size)?;
        self.file.read_exact_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.access != Access::ReadWrite {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        check_range(off, buf.len(), self.size)?;
        self.file.write_all_at(buf, off)
    }
    fn flush(&self) -> io::Result<()> {
        if self.access == Access::ReadWrite {
            self.file.sync_data()?;
        }
        Ok(())
    }
    fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }
    fn discard_granularity(&self) -> Option<u64> {
        Some(512)
    }
    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        if self.access != Access::ReadWrite {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        check_range(off, usize::try_from(len).unwrap_or(usize::MAX), self.size)?;
        sys::punch_hole(self.file.as_fd(), off, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    #[test]
    fn a_second_writer_is_busy_and_readers_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("payload.raw");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let ro1 = RawImage::open(&p, Access::ReadOnly).unwrap();
        let ro2 = RawImage::open(&p, Access::ReadOnly).unwrap();
        let e = RawImage::open(&p, Access::ReadWrite).err().unwrap();
        assert_eq!(e.kind(), Kind::Busy);
        assert!(e.to_string().contains("payload.raw"), "{e}");
        crate::testing::close((ro1, ro2));
        let rw = RawImage::open(&p, Access::ReadWrite).unwrap();
        assert_eq!(
            RawImage::open(&p, Access::ReadOnly)
                .err()
                .unwrap()
                .exit_code(),
            5
        );
        assert_eq!(
            RawImage::open(&p, Access::ReadWrite)
                .err()
                .unwrap()
                .exit_code(),
            5
        );
        crate::testing::close(rw);
        RawImage::open(&p, Access::ReadWrite).unwrap();
    }

    #[test]
    fn reads_and_writes_stay_inside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        std::fs::write(&p, vec![7u8; 1000]).unwrap();
        let img = RawImage::open(&p, Access::ReadWrite).unwrap();
        img.write_at(b"abc", 997).unwrap();
        assert!(img.write_at(b"abcd", 997).is_err());
        let mut b = [0u8; 3];
        img.read_at(&mut b, 997).unwrap();
        assert_eq!(&b, b"abc");
        assert!(img.read_at(&mut b, 998).is_err());
        img.flush().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1000);
        let ro = RawImage::open(dir.path().join("p").as_path(), Access::ReadOnly);
        assert!(ro.is_err()); // rw still holds it
    }
}
