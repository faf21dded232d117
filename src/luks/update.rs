//! Crash-safe header updates: lock the header file, build the complete new file in memory,
//! write it to a temporary file beside the old one, `fsync`, rename it over the old one and
//! `fsync` the directory. After a crash the path holds either the old or the new header, never
//! a mix. Permissions and owner of the old file are kept.
//!
//! Locking: an update holds an exclusive `flock(2)` on the header file and refuses (exit 5)
//! when another process holds any `flock` on it (`luksfuse mount` holds a shared one for the
//! life of the mount) or when QEMU has it open (QEMU's byte-range "consistent read" lock).
//! Key material that an update removes is also overwritten in the old file once it has been
//! replaced (on file systems that overwrite in place this erases it from the disk).

use crate::error::{Error, Result};
use crate::sys::{self, FlockKind};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Largest header file we rewrite (LUKS2 allows 2 × 4 MiB of metadata plus the keyslots
/// area; cryptsetup's default file is 16 MiB). A bigger file is probably a whole volume.
pub const MAX_HEADER_FILE: u64 = 128 << 20;

/// QEMU's "consistent read" permission lock byte (block/file-posix.c, `RAW_LOCK_PERM_BASE`).
const QEMU_LOCK_CONSISTENT_READ: u64 = 100;

fn busy(path: &Path, by: &str) -> Error {
    Error::busy(format!("header is in use ({by}); refusing to change it"))
        .in_file(path)
        .with_hint("unmount it (fusermount3 -u MOUNTPOINT) or stop the VM first")
}

/// Takes a lock on an open header file, refusing (exit 5) if another process holds one.
pub fn lock(file: &File, path: &Path, kind: FlockKind) -> Result<()> {
    match sys::flock_try(file.as_fd(), kind) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(busy(
            path,
            match kind {
                FlockKind::Shared => "being changed by another process",
                FlockKind::Exclusive => "locked by another process, e.g. a luksfuse mount",
            },
        )),
        Err(e) => Err(Error::io(path, "cannot lock header", &e)),
    }
}

/// Opens `path` for a `luksfuse mount` and takes a shared lock on it, to be held for the life
/// of the mount (keep the returned file open; the lock survives `fork`).
pub fn lock_shared(path: &Path) -> Result<File> {
    let file = File::open(path).map_err(|e| Error::io(path, "cannot open header", &e))?;
    lock(&file, path, FlockKind::Shared)?;
    Ok(file)
}

/// A header file locked for an update, with its whole content read; or, for an image that
/// holds its header and its data (`attached`), the header's bytes only.
pub struct Locked {
    path: PathBuf,
    file: File,
    meta: std::fs::Metadata,
    image: Vec<u8>,
    attached: bool,
    /// Where the header starts in the file: 0, or the offset of a header embedded in a qcow2
    /// image (QEMU's own encryption), changed in place like an attached one.
    base: u64,
}

impl Locked {
    /// Opens `path`, locks it exclusively and reads it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_as(path, None)
    }

    /// Like [`Self::open`]; `attached_end`, when given, says the file is an image holding a
    /// header of that many bytes before its data even if the header in place does not parse
    /// (a damaged header about to be restored from a backup that says so).
    pub fn open_as(path: &Path, attached_end: Option<u64>) -> Result<Self> {
        let (file, meta) = Self::lock_file(path)?;
        // An image holding its header and data is changed in place, its header bytes only.
        let end = attached_header_end(&file, path, meta.len())
            .or(attached_end.filter(|&e| e < meta.len()));
        if let Some(end) = end {
            return Self::in_place(path, file, meta, 0, end);
        }
        if meta.len() > MAX_HEADER_FILE {
            return Err(Error::usage(format!(
                "file of {} bytes is too large for a detached header (at most {MAX_HEADER_FILE})",
                meta.len()
            ))
            .in_file(path));
        }
        // At most MAX_HEADER_FILE bytes (checked above); the capacity is only a hint.
        let mut image = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        (&file)
            .read_to_end(&mut image)
            .map_err(|e| Error::io(path, "cannot read header", &e))?;
        Ok(Self::made(path, file, meta, image, None))
    }

    /// A locked file and the header bytes read from it: the whole file, or (`base` given)
    /// the header's bytes at `base` of a file that also holds data.
    fn made(
        path: &Path,
        file: File,
        meta: std::fs::Metadata,
        image: Vec<u8>,
        base: Option<u64>,
    ) -> Self {
        Locked {
            path: path.to_owned(),
            file,
            meta,
            image,
            attached: base.is_some(),
            base: base.unwrap_or(0),
        }
    }

    /// Like [`Self::open`] for a header embedded in a larger file: the `length` bytes at
    /// `offset` (a qcow2 image with QEMU's own LUKS encryption names them), changed in place.
    pub fn open_embedded(path: &Path, offset: u64, length: u64) -> Result<Self> {
        let (file, meta) = Self::lock_file(path)?;
        match offset.checked_add(length) {
            // Sector-aligned: the in-place order relies on 512-byte sector writes.
            Some(end)
                if end <= meta.len() && length <= MAX_HEADER_FILE && offset.is_multiple_of(512) => {
            }
            _ => {
                return Err(Error::format(format!(
                    "embedded header at {offset} of {length} bytes lies outside the file"
                ))
                .in_file(path))
            }
        }
        Self::in_place(path, file, meta, offset, length)
    }

    /// The `len` header bytes at `base` of a locked file that also holds data.
    fn in_place(
        path: &Path,
        file: File,
        meta: std::fs::Metadata,
        base: u64,
        len: u64,
    ) -> Result<Self> {
        let mut image = vec![0u8; usize::try_from(len).expect("bounded by the caller")];
        file.read_exact_at(&mut image, base)
            .map_err(|e| Error::io(path, "cannot read header", &e))?;
        Ok(Self::made(path, file, meta, image, Some(base)))
    }

    /// Opens `path` read-write (read-only if that is all we may), checks it is a regular file
    /// and takes the exclusive lock; refuses while QEMU has it open.
    fn lock_file(path: &Path) -> Result<(File, std::fs::Metadata)> {
        // Read-write so that removed key material can be wiped in place after the rename.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .or_else(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => File::open(path),
                _ => Err(e),
            })
            .map_err(|e| {
                let err = Error::io(path, "cannot open header", &e);
                if e.kind() == io::ErrorKind::NotFound {
                    Error::usage(err.to_string())
                } else {
                    err
                }
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(path, "cannot stat header", &e))?;
        if !meta.is_file() {
            return Err(Error::usage(
                "not a regular file: luksfuse changes detached header files only",
            )
            .in_file(path));
        }
        lock(&file, path, FlockKind::Exclusive)?;
        if sys::ofd_write_lock_conflicts(file.as_fd(), QEMU_LOCK_CONSISTENT_READ).unwrap_or(false) {
            return Err(busy(path, "open in QEMU"));
        }
        // Another update may have replaced the file between our open and our lock.
        let now = std::fs::metadata(path).map_err(|e| Error::io(path, "cannot stat", &e))?;
        if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
            return Err(busy(path, "replaced by another process just now"));
        }
        Ok((file, meta))
    }

    /// Whether the file is an image holding its header before its data: [`Self::image`] is
    /// the header's bytes only and [`Self::commit`] writes in place (see `super::in_place`).
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// The whole file as read (a `Vec` so that it can serve as a [`super::ReadAt`]).
    pub fn image(&self) -> &Vec<u8> {
        &self.image
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `new` (crash-safely), then overwrites the byte ranges `wipe` of
    /// the old file with random bytes. The lock is released when this returns.
    ///
    /// Copies that earlier, interrupted updates of this header left behind (see [`replace`])
    /// are wiped and removed first: they hold key material, and while we hold the lock no
    /// other update of this header can be writing one.
    pub fn commit(self, new: &[u8], wipe: &[Range<u64>]) -> Result<()> {
        if self.attached {
            // The key material removed is wiped in `new` itself (phase 3 of the plan).
            return super::in_place::commit(&self.file, self.base, &self.image, new)
                .map_err(|e| e.in_file(&self.path));
        }
        remove_stale_copies(&self.path);
        replace(&self.path, new, Some(&self.meta))?;
        if !wipe.is_empty() {
            if let Err(e) = wipe_ranges(&self.file, wipe) {
                log::warn!(
                    "{}: cannot overwrite the removed key material in the old file: {e}",
                    self.path.display()
                );
            }
        }
        Ok(())
    }
}

/// Where the header of `file` (of `len` bytes) ends, when the file is an image holding its
/// header and then its data (the data offset past the header's bytes, and data after it);
/// `None` for a detached header file or anything that does not parse.
fn attached_header_end(file: &File, path: &Path, len: u64) -> Option<u64> {
    let src = super::HeaderFile::from_file(file.try_clone().ok()?, path).ok()?;
    super::Header::parse(&src).ok()?.attached_end(len)
}

fn wipe_ranges(file: &File, ranges: &[Range<u64>]) -> io::Result<()> {
    let size = file.metadata()?.len();
    for r in ranges {
        let end = r.end.min(size);
        if r.start >= end {
            continue;
        }
        let mut at = r.start;
        let chunk = |left: u64| usize::try_from(left.min(1 << 20)).expect("at most 1 MiB");
        let mut buf = vec![0u8; chunk(end - at)];
        while at < end {
            let n = chunk(end - at).min(buf.len());
            crate::secret::fill_random(&mut buf[..n])
                .map_err(|e| io::Error::other(e.to_string()))?;
            file.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
    }
    file.sync_data()
}

/// The name of a temporary copy of header `name`: `.NAME.luksfuse-XXXXXXXXXXXX.tmp`.
fn temp_name(name: &OsStr, suffix: &str) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".luksfuse-{suffix}.tmp"));
    s
}

/// Whether `file` is a temporary copy of header `name` (exactly [`temp_name`]'s pattern).
fn is_temp_copy_of(file: &OsStr, name: &OsStr) -> bool {
    let (file, name) = (file.as_bytes(), name.as_bytes());
    let Some(rest) = file
        .strip_prefix(b".")
        .and_then(|r| r.strip_prefix(name))
        .and_then(|r| r.strip_prefix(b".luksfuse-"))
        .and_then(|r| r.strip_suffix(b".tmp"))
    else {
        return false;
    };
    rest.len() == 12 && rest.iter().all(u8::is_ascii_hexdigit)
}

/// Wipes and removes the temporary copies of `path` in its directory that interrupted
/// updates left behind. Best effort: what cannot be removed is reported and left.
fn remove_stale_copies(path: &Path) {
    let (dir, Some(name)) = (dir_of(path), path.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !is_temp_copy_of(&entry.file_name(), name) {
            continue;
        }
        let stale = entry.path();
        // Regular files only, never through a symlink.
        let wiped = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&stale)
            .and_then(|f| {
                let meta = f.metadata()?;
                if !meta.is_file() || meta.len() > MAX_HEADER_FILE {
                    return Err(io::Error::other("not a header-sized regular file"));
                }
                wipe_ranges(&f, std::slice::from_ref(&(0..meta.len())))
            })
            .and_then(|()| std::fs::remove_file(&stale));
        match wiped {
            Ok(()) => log::warn!(
                "removed {}, a copy of the header left by an interrupted update",
                stale.display()
            ),
            Err(e) => log::warn!(
                "{}: a copy of the header left by an interrupted update, not removed: {e}",
                stale.display()
            ),
        }
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Writes `data` to `path` crash-safely: a temporary file in the same directory (mode 0600,
/// or the old file's mode and owner), `fsync`, rename over `path`, `fsync` of the directory.
pub fn replace(path: &Path, data: &[u8], old: Option<&std::fs::Metadata>) -> Result<()> {
    let dir = dir_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| Error::usage("not a file name").in_file(path))?;
    let mut suffix = [0u8; 6];
    crate::secret::fill_random(&mut suffix)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(temp_name(name, &suffix));
    let result = write_synced(&tmp, data, old).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot replace header", &e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // The rename is durable once the directory is synced.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&dir, "cannot sync directory", &e))
}

fn write_synced(tmp: &Path, data: &[u8], old: Option<&std::fs::Metadata>) -> Result<()> {
    let err = |what: &str, e: &io::Error| Error::io(tmp, what, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| err("cannot create temporary file", &e))?;
    if let Some(m) = old {
        let mine = f.metadata().map_err(|e| err("cannot stat", &e))?;
        if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
            if let Err(e) = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())) {
                log::warn!("{}: cannot keep the owner: {e}", tmp.display());
            }
        }
        f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| err("cannot set permissions", &e))?;
    }
    f.write_all(data).map_err(|e| err("cannot write", &e))?;
    f.sync_all().map_err(|e| err("cannot sync", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_mode_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.img");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let l = Locked::open(&p).unwrap();
        assert_eq!(l.image(), b"old");
        l.commit(b"new!", &[0..2, 3..4]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new!");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporary_names_are_recognised_exactly() {
        let name = OsStr::from_bytes(b"h\xffeader.img");
        assert!(is_temp_copy_of(&temp_name(name, "00aaBB99ccdd"), name));
        for other in [
            &b".h\xffeader.img.luksfuse-00aabb99ccd.tmp"[..],
            b".h\xffeader.img.luksfuse-00aabb99ccdg.tmp",
            b".h\xffeader.img.luksfuse-00aabb99ccdd.tmp~",
            b"h\xffeader.img.luksfuse-00aabb99ccdd.tmp",
            b".header.img.luksfuse-00aabb99ccdd.tmp",
        ] {
            assert!(!is_temp_copy_of(OsStr::from_bytes(other), name));
        }
    }

    #[test]
    fn a_shared_lock_makes_updates_busy() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.img");
        std::fs::write(&p, b"x").unwrap();
        let held = lock_shared(&p).unwrap();
        assert_eq!(Locked::open(&p).err().unwrap().exit_code(), 5);
        crate::testing::close(held);
        let l = Locked::open(&p).unwrap();
        assert_eq!(lock_shared(&p).unwrap_err().exit_code(), 5);
        drop(l);
    }
}
