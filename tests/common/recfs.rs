//! recfs: a test-only FUSE file system that keeps its files in memory, records every
//! operation that changes what a crash could leave behind (writes, size changes, holes,
//! creates, renames, unlinks, fsyncs, directory syncs), and fails chosen operations on request.
//!
//! Why a file system and not `ptrace` or LD_PRELOAD: luksfuse's own code paths run unchanged
//! (the same `pwrite`, `fdatasync`, `rename` and directory `fsync` it issues on any file
//! system, from its daemon threads, through the kernel), the record is exactly what reached
//! the file system in the order the kernel delivered it, and the same place can inject
//! `EIO`/`ENOSPC` into one request without touching the program under test. Files are opened
//! with `FOPEN_DIRECT_IO` and attributes are never cached, so every write arrives as its own
//! request (split only at `max_write`, as on a real device queue) and nothing is answered from
//! the kernel's page cache.
//!
//! Use: `RecFs::mount(dir)` serves an empty flat directory (no subdirectories) until the value
//! is dropped; files put there by any process are recorded. [`RecFs::image`] gives the current
//! contents as an [`Image`] and [`RecFs::take_log`] the operations since the last take; an
//! [`Image`] replays [`Op`]s, which is what a crash-state builder needs.
//! Include it with `#[path = "common/recfs.rs"] mod recfs;` in the tests that use it.
#![allow(dead_code)]

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    WriteFlags,
};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const ROOT: u64 = 1;

/// One recorded operation. Inode numbers name files: a file keeps its number across renames,
/// and the directory maps names to numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new empty file `ino` named `name` (creat, mknod, open with O_CREAT).
    Create { ino: u64, name: OsString },
    /// `data` written at `off` of file `ino`.
    Write { ino: u64, off: u64, data: Vec<u8> },
    /// File `ino` truncated or extended to `len` bytes.
    SetLen { ino: u64, len: u64 },
    /// `len` bytes at `off` of file `ino` made to read as zeros (punch hole, zero range);
    /// `extend` when the file grew to `off + len` (zero range without KEEP_SIZE).
    Zero {
        ino: u64,
        off: u64,
        len: u64,
        extend: bool,
    },
    /// `fsync` (`datasync`: `fdatasync`) of file `ino`: completed successfully.
    Fsync { ino: u64, datasync: bool },
    /// Name `from` now names what `to` named before it (`to` replaced, if it existed).
    Rename { from: OsString, to: OsString },
    /// Name `name` removed (the file lives on while open, then is gone).
    Unlink { name: OsString },
    /// `fsync` of the directory: completed successfully.
    FsyncDir,
    /// A point the test marked ([`RecFs::mark`]), e.g. "the client's fsync returned here".
    Mark(String),
}

/// Which requests a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    Read,
    Write,
    Fsync,
}

/// A fault to inject: the `skip`+1-th and the following `count`-1 matching requests on file
/// `name` (any file when `None`), optionally only those touching byte range `range`, fail with
/// `errno`. A failing write changes nothing; a failing fsync is not recorded.
#[derive(Clone, Debug)]
pub struct Fault {
    pub op: FaultOp,
    pub name: Option<OsString>,
    pub range: Option<std::ops::Range<u64>>,
    pub skip: usize,
    pub count: usize,
    pub errno: i32,
}

impl Fault {
    /// The next `op` request on `name` fails with `errno`, once.
    pub fn once(op: FaultOp, name: &str, errno: i32) -> Fault {
        Fault {
            op,
            name: Some(name.into()),
            range: None,
            skip: 0,
            count: 1,
            errno,
        }
    }
}

/// A directory of files: what is on "disk" at some point of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub names: BTreeMap<OsString, u64>,
    pub inodes: BTreeMap<u64, Vec<u8>>,
}

impl Image {
    /// Applies one operation (fsyncs change nothing here: they are ordering points).
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { ino, name } => {
                // Numbers are never reused: data a crash state applied before the name (a
                // synced write, an unsynced create) stays.
                self.inodes.entry(*ino).or_default();
                self.names.insert(name.clone(), *ino);
            }
            Op::Write { ino, off, data } => {
                let f = self.inodes.entry(*ino).or_default();
                let off = usize::try_from(*off).unwrap();
                if f.len() < off + data.len() {
                    f.resize(off + data.len(), 0);
                }
                f[off..off + data.len()].copy_from_slice(data);
            }
            Op::SetLen { ino, len } => {
                let len = usize::try_from(*len).unwrap();
                self.inodes.entry(*ino).or_default().resize(len, 0);
            }
            Op::Zero {
                ino,
                off,
                len,
                extend,
            } => {
                let f = self.inodes.entry(*ino).or_default();
                let (off, len) = (
                    usize::try_from(*off).unwrap(),
                    usize::try_from(*len).unwrap(),
                );
                let end = if *extend {
                    f.resize(f.len().max(off + len), 0);
                    off + len
                } else {
                    (off + len).min(f.len())
                };
                if off < end {
                    f[off..end].fill(0);
                }
            }
            Op::Rename { from, to } => {
                if let Some(ino) = self.names.remove(from) {
                    self.names.insert(to.clone(), ino);
                }
                self.collect();
            }
            Op::Unlink { name } => {
                self.names.remove(name);
                self.collect();
            }
            Op::Fsync { .. } | Op::FsyncDir | Op::Mark(_) => {}
        }
    }

    /// Forgets inodes no name refers to. (An unlinked file still open would live on until its
    /// close; after a crash it is gone, which is what a crash state needs.)
    fn collect(&mut self) {
        let live: std::collections::BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }

    /// The bytes of file `name`, if it exists.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let ino = self.names.get(OsStr::new(name))?;
        self.inodes.get(ino).map(Vec::as_slice)
    }

    /// Writes every file into directory `dir` (which should be empty).
    pub fn write_to(&self, dir: &Path) {
        for (name, ino) in &self.names {
            std::fs::write(dir.join(name), &self.inodes[ino]).unwrap();
        }
    }
}

struct Node {
    data: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

#[derive(Default)]
struct Inner {
    names: BTreeMap<OsString, u64>,
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    log: Vec<Op>,
    faults: Vec<Fault>,
    /// Faults that fired: (op, file name, offset, errno).
    fired: Vec<(FaultOp, OsString, u64, i32)>,
}

impl Inner {
    fn name_of(&self, ino: u64) -> OsString {
        self.names
            .iter()
            .find(|(_, i)| **i == ino)
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }

    /// The errno of a fault that hits this request, if any (and counts it).
    fn fault(&mut self, op: FaultOp, ino: u64, off: u64, len: u64) -> Option<i32> {
        let name = self.name_of(ino);
        let i = self.faults.iter().position(|f| {
            f.op == op
                && f.name.as_ref().is_none_or(|n| *n == name)
                && f.range
                    .as_ref()
                    .is_none_or(|r| off < r.end && r.start < off.saturating_add(len.max(1)))
        })?;
        let f = &mut self.faults[i];
        if f.skip > 0 {
            f.skip -= 1;
            return None;
        }
        let errno = f.errno;
        f.count -= 1;
        if f.count == 0 {
            self.faults.remove(i);
        }
        self.fired.push((op, name, off, errno));
        Some(errno)
    }
}

/// The file system served; cheap to clone (shared state).
#[derive(Clone, Default)]
struct Fs(Arc<Mutex<Inner>>);

/// A mounted recfs; unmounted on drop.
pub struct RecFs {
    fs: Fs,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl RecFs {
    /// Mounts an empty recfs on the existing directory `mountpoint`.
    pub fn mount(mountpoint: &Path) -> RecFs {
        let fs = Fs::default();
        fs.0.lock().unwrap().next_ino = ROOT + 1;
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            fuser::MountOption::FSName("recfs".into()),
            fuser::MountOption::Subtype("recfs".into()),
        ];
        cfg.acl = fuser::SessionACL::All;
        let session = fuser::spawn_mount(fs.clone(), mountpoint, &cfg).expect("mount recfs");
        RecFs {
            fs,
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    /// What the files hold now.
    pub fn image(&self) -> Image {
        let g = self.fs.0.lock().unwrap();
        Image {
            names: g.names.clone(),
            inodes: g.nodes.iter().map(|(i, n)| (*i, n.data.clone())).collect(),
        }
    }

    /// The operations recorded since the last call (or the mount).
    pub fn take_log(&self) -> Vec<Op> {
        std::mem::take(&mut self.fs.0.lock().unwrap().log)
    }

    /// Appends a marker to the log (an event of the test, between the operations around it).
    pub fn mark(&self, what: &str) {
        self.fs
            .0
            .lock()
            .unwrap()
            .log
            .push(Op::Mark(what.to_string()));
    }

    /// Adds a fault to inject.
    pub fn inject(&self, f: Fault) {
        self.fs.0.lock().unwrap().faults.push(f);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.fs.0.lock().unwrap().faults.clear();
    }

    /// The faults that fired so far: (op, file name, offset, errno).
    pub fn fired(&self) -> Vec<(FaultOp, OsString, u64, i32)> {
        self.fs.0.lock().unwrap().fired.clone()
    }
}

impl Drop for RecFs {
    fn drop(&mut self) {
        // Lazy, so that a test failing with files still open does not hang here.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
        drop(self.session.take());
    }
}

const TTL: Duration = Duration::ZERO;

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl Fs {
    fn attr(g: &Inner, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size, uid, gid, t) = if ino == ROOT {
            (FileType::Directory, 0o777, 0, 0, 0, SystemTime::UNIX_EPOCH)
        } else {
            let n = g.nodes.get(&ino)?;
            (
                FileType::RegularFile,
                (n.mode & 0o7777) as u16,
                n.data.len() as u64,
                n.uid,
                n.gid,
                n.mtime,
            )
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink: if ino == ROOT { 2 } else { 1 },
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn new_file(&self, req: &Request, name: &OsStr, mode: u32) -> Result<FileAttr, Errno> {
        let mut g = self.0.lock().unwrap();
        if g.names.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = g.next_ino;
        g.next_ino += 1;
        g.nodes.insert(
            ino,
            Node {
                data: Vec::new(),
                mode,
                uid: req.uid(),
                gid: req.gid(),
                mtime: SystemTime::now(),
            },
        );
        g.names.insert(name.to_os_string(), ino);
        g.log.push(Op::Create {
            ino,
            name: name.to_os_string(),
        });
        Ok(Self::attr(&g, ino).unwrap())
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_write(1 << 20) {
            let _ = config.set_max_write(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let g = self.0.lock().unwrap();
        match g.names.get(name) {
            Some(ino) if parent.0 == ROOT => {
                reply.entry(&TTL, &Self::attr(&g, *ino).unwrap(), Generation(0))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Self::attr(&self.0.lock().unwrap(), ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
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
        let mut g = self.0.lock().unwrap();
        if ino.0 != ROOT {
            let Some(n) = g.nodes.get_mut(&ino.0) else {
                return reply.error(Errno::ENOENT);
            };
            if let Some(m) = mode {
                n.mode = m;
            }
            if let Some(u) = uid {
                n.uid = u;
            }
            if let Some(gr) = gid {
                n.gid = gr;
            }
            if let Some(len) = size {
                n.data.resize(usize::try_from(len).unwrap(), 0);
                g.log.push(Op::SetLen { ino: ino.0, len });
            }
        }
        match Self::attr(&g, ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if parent.0 != ROOT || mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.new_file(req, name, mode) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if parent.0 != ROOT {
            return reply.error(Errno::EPERM);
        }
        match self.new_file(req, name, mode) {
            Ok(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut g = self.0.lock().unwrap();
        if !g.nodes.contains_key(&ino.0) {
            return reply.error(Errno::ENOENT);
        }
        if flags.0 & libc::O_TRUNC != 0 {
            g.nodes.get_mut(&ino.0).unwrap().data.clear();
            g.log.push(Op::SetLen { ino: ino.0, len: 0 });
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
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
        let mut g = self.0.lock().unwrap();
        if let Some(e) = g.fault(FaultOp::Read, ino.0, offset, size as u64) {
            return reply.error(err(e));
        }
        let Some(n) = g.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(n.data.len());
        let end = start.saturating_add(size as usize).min(n.data.len());
        reply.data(&n.data[start..end]);
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
        let mut g = self.0.lock().unwrap();
        if let Some(e) = g.fault(FaultOp::Write, ino.0, offset, data.len() as u64) {
            return reply.error(err(e));
        }
        let Some(n) = g.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let off = usize::try_from(offset).unwrap();
        if n.data.len() < off + data.len() {
            n.data.resize(off + data.len(), 0);
        }
        n.data[off..off + data.len()].copy_from_slice(data);
        n.mtime = SystemTime::now();
        g.log.push(Op::Write {
            ino: ino.0,
            off: offset,
            data: data.to_vec(),
        });
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut g = self.0.lock().unwrap();
        if let Some(e) = g.fault(FaultOp::Fsync, ino.0, 0, 0) {
            return reply.error(err(e));
        }
        g.log.push(Op::Fsync {
            ino: ino.0,
            datasync,
        });
        reply.ok();
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
        let mut g = self.0.lock().unwrap();
        let Some(n) = g.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let op = mode & !libc::FALLOC_FL_KEEP_SIZE;
        let end = usize::try_from(offset + length).unwrap();
        let off = usize::try_from(offset).unwrap();
        let grows = !keep && end > n.data.len();
        match op {
            0 => {
                // Plain allocation: only the size may change.
                if grows {
                    n.data.resize(end, 0);
                    g.log.push(Op::SetLen {
                        ino: ino.0,
                        len: end as u64,
                    });
                }
            }
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE => {
                if grows {
                    n.data.resize(end, 0);
                }
                let stop = end.min(n.data.len());
                if off < stop {
                    n.data[off..stop].fill(0);
                }
                g.log.push(Op::Zero {
                    ino: ino.0,
                    off: offset,
                    len: length,
                    extend: grows,
                });
            }
            _ => return reply.error(Errno::EOPNOTSUPP),
        }
        reply.ok();
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

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if parent.0 != ROOT || newparent.0 != ROOT || flags.bits() != 0 {
            return reply.error(Errno::EINVAL);
        }
        let mut g = self.0.lock().unwrap();
        let Some(ino) = g.names.remove(name) else {
            return reply.error(Errno::ENOENT);
        };
        // A replaced file keeps its node: a process may still hold it open.
        g.names.insert(newname.to_os_string(), ino);
        g.log.push(Op::Rename {
            from: name.to_os_string(),
            to: newname.to_os_string(),
        });
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut g = self.0.lock().unwrap();
        if parent.0 != ROOT {
            return reply.error(Errno::ENOENT);
        }
        // An open file keeps its node (the kernel still sends its I/O); it is never listed.
        if g.names.remove(name).is_none() {
            return reply.error(Errno::ENOENT);
        }
        g.log.push(Op::Unlink {
            name: name.to_os_string(),
        });
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.0.lock().unwrap().log.push(Op::FsyncDir);
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
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let g = self.0.lock().unwrap();
        let mut entries = vec![
            (ROOT, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        entries.extend(
            g.names
                .iter()
                .map(|(n, i)| (*i, FileType::RegularFile, n.clone())),
        );
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 20, 1 << 19, 1 << 19, 1 << 10, 1 << 9, 4096, 255, 4096);
    }
}
