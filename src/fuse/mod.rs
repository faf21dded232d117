//! The FUSE adapter: one directory holding regular files, each a decrypted [`Volume`] (one
//! per payload; several payloads can share one detached header) or a [`Window`] of one (a
//! partition of a decrypted disk).
//!
//! Only this module and its children import `fuser`. It has two parts:
//! * here, the adapter: [`VolumeFs`] implements [`fuser::Filesystem`]. Every callback is a thin
//!   mapping: call the [`ServedFile`], reply with the data on `Ok` or the errno on `Err`.
//!   Nothing here panics; I/O errors are logged by the volume and answered with their errno
//!   (`EIO` when there is none);
//! * `session`: putting that file system on a mountpoint and taking it off again
//!   ([`MountSpec`], [`Mounted`]): `mount(2)` directly when we may, else the setuid
//!   fusermount3 and its descriptor-passing protocol (`fusermount`), including the watchdog
//!   it leaves running for `auto_unmount`.
//!
//! Reads are served from the worker thread's reusable buffer (`crate::buffers`); writes hand
//! the kernel's buffer straight to the volume.
#![warn(missing_docs)]

mod fusermount;
mod session;

pub use session::{MountSpec, Mounted};

/// Unmounts the FUSE mount at `mountpoint` from outside its serving process: `umount2(2)`
/// when we may (root), else the setuid fusermount3, as a user's `fusermount3 -u` does. With
/// `lazy` the mount is detached now and goes away when its last user closes it; without,
/// it fails with `EBUSY` (kind `ResourceBusy`) while it is in use.
pub fn unmount(mountpoint: &std::path::Path, lazy: bool) -> io::Result<()> {
    if crate::sys::euid() == 0 {
        let r = if lazy {
            crate::sys::umount_detach(mountpoint)
        } else {
            crate::sys::umount(mountpoint)
        };
        match r {
            // Root without CAP_SYS_ADMIN (a container): fusermount3 may still do it.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => return other,
        }
    }
    fusermount::unmount_with(mountpoint, lazy)
}

use crate::buffers;
use crate::volume::Volume;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};
use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Largest read or write request we ask the kernel for (`max_write`, `max_readahead`).
pub const MAX_REQUEST: u32 = 1 << 20;
/// Largest read answered in one reply (16 × [`MAX_REQUEST`]), and so the cap on a worker's read
/// buffer: a longer read is answered short rather than growing the buffer without bound.
const MAX_READ: usize = MAX_REQUEST as usize * 16;
const TTL: Duration = Duration::from_secs(1);
const ROOT: INodeNo = INodeNo::ROOT;
/// Inode of the first file; file `i` is `FIRST_FILE + i`.
const FIRST_FILE: u64 = 2;

/// What the adapter serves as one file: a fixed-size byte range to read, write and flush.
///
/// luksfuse serves only [`Volume`]s. The trait exists so that the benchmark can serve a
/// plaintext file through this very adapter, with the same mount settings, and so measure
/// the ceiling that FUSE itself sets (`examples/plainfuse.rs`); there is no cipherless
/// `Volume`.
pub trait ServedFile: Send + Sync + 'static {
    /// Size in bytes; it never changes while mounted.
    fn size(&self) -> u64;
    /// Reported as the block size.
    fn sector_size(&self) -> usize;
    /// Whether writes are accepted; a mount with any read-only file is read-only as a whole.
    fn writable(&self) -> bool;
    /// Reads up to `buf.len()` bytes at `off`; fewer only at the end.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `off`; fewer only at the end.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize>;
    /// Makes everything written so far durable.
    fn flush(&self) -> io::Result<()>;
    /// Discards `len` bytes at `off` (see [`Volume::punch_hole`]); `EOPNOTSUPP` by default.
    fn punch_hole(&self, _off: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
    /// Makes `len` bytes at `off` read as zeros (see [`Volume::zero_range`]); `EOPNOTSUPP` by
    /// default.
    fn zero_range(&self, _off: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
}

/// What a mount has served since it started: bytes read and written through its files, and
/// bytes discarded or zeroed by `fallocate`. Updated with relaxed atomic additions, one per
/// request (they are statistics: no ordering with the data is promised).
#[derive(Debug, Default)]
pub struct Counters {
    read: AtomicU64,
    written: AtomicU64,
    discarded: AtomicU64,
}

impl Counters {
    /// Bytes read since the mount started.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
    /// Bytes written since the mount started.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Bytes discarded (`PUNCH_HOLE`) or zeroed (`ZERO_RANGE`) since the mount started.
    pub fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }
}

impl ServedFile for Volume {
    fn size(&self) -> u64 {
        Volume::size(self)
    }
    fn sector_size(&self) -> usize {
        Volume::sector_size(self)
    }
    fn writable(&self) -> bool {
        Volume::writable(self)
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        Volume::read_at(self, buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        Volume::write_at(self, buf, off)
    }
    fn flush(&self) -> io::Result<()> {
        Volume::flush(self)
    }
    fn punch_hole(&self, off: u64, len: u64) -> io::Result<()> {
        Volume::punch_hole(self, off, len)
    }
    fn zero_range(&self, off: u64, len: u64) -> io::Result<()> {
        Volume::zero_range(self, off, len)
    }
}

/// A byte range of a served file, itself served as a file: reads and writes at `0..len` of
/// the window go to `offset..offset + len` of the file, and never outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Where the window starts in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// One file in the mountpoint: a window of a volume (the whole of it for a payload's file).
struct Entry<F> {
    name: OsString,
    file: Arc<F>,
    window: Window,
}

impl<F: ServedFile> Entry<F> {
    fn size(&self) -> u64 {
        self.window.len
    }

    /// The part of a `len`-byte request at `off` that lies in the window, as the length to
    /// pass on and the offset in the file.
    fn clamp(&self, len: usize, off: u64) -> (usize, u64) {
        let left = self.window.len.saturating_sub(off);
        let n = usize::try_from(left).map_or(len, |l| len.min(l));
        // off < len <= file size when n > 0, so the sum fits.
        (n, self.window.offset.saturating_add(off))
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let (n, at) = self.clamp(buf.len(), off);
        if n == 0 {
            return Ok(0);
        }
        self.file.read_at(&mut buf[..n], at)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        let (n, at) = self.clamp(buf.len(), off);
        if n == 0 {
            return Ok(0);
        }
        self.file.write_at(&buf[..n], at)
    }

    /// The part of `len` bytes at `off` inside the window, as (offset in the file, length).
    fn clamp_range(&self, off: u64, len: u64) -> (u64, u64) {
        let n = len.min(self.window.len.saturating_sub(off));
        (self.window.offset.saturating_add(off), n)
    }
}

/// The file system: a root directory with one file per volume or window.
pub struct VolumeFs<F: ServedFile = Volume> {
    files: Vec<Entry<F>>,
    readonly: bool,
    uid: u32,
    gid: u32,
    /// Reported as atime/mtime/ctime: when we mounted.
    time: SystemTime,
    /// Whether `fallocate` may discard or zero ranges (`--allow-discards`).
    discards: bool,
    counters: Arc<Counters>,
}

impl<F: ServedFile> VolumeFs<F> {
    /// One volume as file `name` inside the mountpoint; `uid`/`gid` own it.
    pub fn new(volume: Arc<F>, name: &OsStr, readonly: bool, uid: u32, gid: u32) -> Self {
        Self::with_files(vec![(name.to_owned(), volume)], readonly, uid, gid)
    }

    /// Several volumes, each as a file with its (distinct) name.
    pub fn with_files(files: Vec<(OsString, Arc<F>)>, readonly: bool, uid: u32, gid: u32) -> Self {
        let files = files
            .into_iter()
            .map(|(name, v)| {
                let len = v.size();
                (name, v, Window { offset: 0, len })
            })
            .collect();
        Self::with_windows(files, readonly, uid, gid)
    }

    /// Several windows of volumes, each as a file with its (distinct) name. A window that
    /// does not fit in its volume is cut to what does.
    pub fn with_windows(
        files: Vec<(OsString, Arc<F>, Window)>,
        readonly: bool,
        uid: u32,
        gid: u32,
    ) -> Self {
        let files: Vec<Entry<F>> = files
            .into_iter()
            .map(|(name, file, w)| {
                let offset = w.offset.min(file.size());
                let len = w.len.min(file.size() - offset);
                Entry {
                    name,
                    file,
                    window: Window { offset, len },
                }
            })
            .collect();
        VolumeFs {
            readonly: readonly || files.iter().any(|e| !e.file.writable()),
            files,
            uid,
            gid,
            time: SystemTime::now(),
            discards: false,
            counters: Arc::default(),
        }
    }

    /// Answers `fallocate` discards (`PUNCH_HOLE`) and write-zeroes (`ZERO_RANGE`) when `on`;
    /// otherwise (the default) they fail with `EOPNOTSUPP` and change nothing.
    pub fn with_discards(mut self, on: bool) -> Self {
        self.discards = on;
        self
    }

    /// The counters of this file system, shared with whoever reports them.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The file served as inode `ino`, if it is a file.
    fn volume(&self, ino: INodeNo) -> Option<&Entry<F>> {
        let i = ino.0.checked_sub(FIRST_FILE)?;
        self.files.get(usize::try_from(i).ok()?)
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let (kind, perm, size, nlink, blksize) = match self.volume(ino) {
            Some(v) => {
                let perm = if self.readonly { 0o400 } else { 0o600 };
                (
                    FileType::RegularFile,
                    perm,
                    v.size(),
                    1,
                    v.file.sector_size() as u32,
                )
            }
            None => (FileType::Directory, 0o755, 0, 2, 4096),
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            crtime: self.time,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize,
            flags: 0,
        }
    }
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

impl<F: ServedFile> Filesystem for VolumeFs<F> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_REQUEST) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_REQUEST) {
            let _ = config.set_max_readahead(max);
        }
        for cap in [
            InitFlags::FUSE_ASYNC_DIO,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_BIG_WRITES,
        ] {
            if let Err(missing) = config.add_capabilities(cap) {
                log::debug!("kernel lacks FUSE capability {missing:?}");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.files.iter().position(|e| e.name == name);
        if let (true, Some(i)) = (parent == ROOT, found) {
            reply.entry(
                &TTL,
                &self.attr(INodeNo(FIRST_FILE + i as u64)),
                Generation(0),
            );
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == ROOT || self.volume(ino).is_some() {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino != ROOT && self.volume(ino).is_none() {
            return reply.error(Errno::ENOENT);
        }
        // The size is the payload's: it can neither grow nor shrink. Ownership and mode are
        // fixed too. Time updates (touch) are accepted and ignored.
        match size {
            Some(s) if self.volume(ino).is_none_or(|v| s != v.size()) => {
                return reply.error(Errno::EPERM)
            }
            _ => {}
        }
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        reply.attr(&TTL, &self.attr(ino));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino == ROOT {
            return reply.error(Errno::EISDIR);
        }
        if self.volume(ino).is_none() {
            return reply.error(Errno::ENOENT);
        }
        if self.readonly && flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        // Direct I/O: no page cache of plaintext in the kernel (the loop device or the
        // application caches), and every request reaches us at its own offset and length.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(volume) = self.volume(ino) else {
            return reply.error(Errno::EISDIR);
        };
        let want = (size as usize)
            .min(MAX_READ)
            .min(usize::try_from(volume.size().saturating_sub(offset)).unwrap_or(usize::MAX));
        buffers::with_read_buf(want, |buf| match volume.read_at(buf, offset) {
            Ok(n) => {
                self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
                reply.data(&buf[..n])
            }
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(volume) = self.volume(ino) else {
            return reply.error(Errno::EISDIR);
        };
        if self.readonly {
            return reply.error(Errno::EROFS);
        }
        if offset >= volume.size() && !data.is_empty() {
            return reply.error(Errno::EFBIG);
        }
        match volume.write_at(data, offset) {
            Ok(n) => {
                self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
                reply.written(n as u32)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2): make what was written durable, as fsync does (a qcow2 payload also has
        // metadata cached until its flush).
        match self.volume(ino).map_or(Ok(()), |v| v.file.flush()) {
            Ok(()) => reply.ok(),
            Err(e) => {
                log::error!("flush of the payload failed: {e}");
                reply.error(errno(&e))
            }
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.volume(ino).map_or(Ok(()), |v| v.file.flush()) {
            Ok(()) => reply.ok(),
            Err(e) => {
                log::error!("fdatasync of the payload failed: {e}");
                reply.error(errno(&e))
            }
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(volume) = self.volume(ino) else {
            return reply.error(Errno::EISDIR);
        };
        log::debug!("fallocate mode {mode:#x} at {offset} for {length} bytes");
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let op = mode & !libc::FALLOC_FL_KEEP_SIZE;
        // Never ENOSYS: the kernel would stop asking for the rest of the mount.
        if !self.discards || !(op == libc::FALLOC_FL_PUNCH_HOLE || op == libc::FALLOC_FL_ZERO_RANGE)
        {
            return reply.error(Errno::EOPNOTSUPP);
        }
        if self.readonly {
            return reply.error(Errno::EROFS);
        }
        // The size never changes: zeroing past the end without KEEP_SIZE would grow it.
        if !keep && offset.saturating_add(length) > volume.size() {
            return reply.error(Errno::EFBIG);
        }
        let (at, n) = volume.clamp_range(offset, length);
        if n == 0 {
            return reply.ok();
        }
        let done = if op == libc::FALLOC_FL_PUNCH_HOLE {
            volume.file.punch_hole(at, n)
        } else {
            volume.file.zero_range(at, n)
        };
        match done {
            Ok(()) => {
                self.counters.discarded.fetch_add(n, Ordering::Relaxed);
                reply.ok()
            }
            Err(e) => {
                log::warn!("fallocate mode {mode:#x} of {n} bytes at byte {at} failed: {e}");
                reply.error(errno(&e))
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries: Vec<(INodeNo, FileType, &OsStr)> = vec![
            (ROOT, FileType::Directory, OsStr::new(".")),
            (ROOT, FileType::Directory, OsStr::new("..")),
        ];
        for (i, e) in self.files.iter().enumerate() {
            entries.push((
                INodeNo(FIRST_FILE + i as u64),
                FileType::RegularFile,
                &e.name,
            ));
        }
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bsize = self
            .files
            .first()
            .map_or(4096, |e| e.file.sector_size() as u32);
        // Windows lie inside files already counted: count whole files only.
        let blocks = self
            .files
            .iter()
            .filter(|e| e.window.offset == 0 && e.window.len == e.file.size())
            .map(|e| e.size())
            .sum::<u64>()
            / bsize as u64;
        reply.statfs(blocks, 0, 0, 2, 0, bsize, 255, bsize);
    }
}
