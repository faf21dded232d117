//! The FUSE adapter: one directory holding regular files, each a decrypted [`Volume`] (one
//! per payload; several payloads can share one detached header).
//!
//! Only this module imports `fuser`. Every callback is a thin mapping: call the volume, reply
//! with the data or an errno. Nothing here panics; I/O errors are logged by the volume and
//! answered with their errno (`EIO` when there is none).

use crate::volume::Volume;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    SessionACL, WriteFlags,
};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

thread_local! {
    /// The read buffer of each FUSE worker thread.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest read or write request we ask the kernel for (`max_write`, `max_readahead`).
pub const MAX_REQUEST: u32 = 1 << 20;
const TTL: Duration = Duration::from_secs(1);
const ROOT: INodeNo = INodeNo::ROOT;
/// Inode of the first file; file `i` is `FIRST_FILE + i`.
const FIRST_FILE: u64 = 2;
/// The setuid helper that mounts and unmounts for ordinary users.
const FUSERMOUNT: &str = "fusermount3";

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
    fn writable(&self) -> bool;
    /// Reads up to `buf.len()` bytes at `off`; fewer only at the end.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `off`; fewer only at the end.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize>;
    /// Makes everything written so far durable.
    fn flush(&self) -> io::Result<()>;
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
}

/// The file system: a root directory with one file per volume.
pub struct VolumeFs<F: ServedFile = Volume> {
    files: Vec<(OsString, Arc<F>)>,
    readonly: bool,
    uid: u32,
    gid: u32,
    /// Reported as atime/mtime/ctime: when we mounted.
    time: SystemTime,
}

impl<F: ServedFile> VolumeFs<F> {
    /// One volume as file `name` inside the mountpoint; `uid`/`gid` own it.
    pub fn new(volume: Arc<F>, name: &OsStr, readonly: bool, uid: u32, gid: u32) -> Self {
        Self::with_files(vec![(name.to_owned(), volume)], readonly, uid, gid)
    }

    /// Several volumes, each as a file with its (distinct) name.
    pub fn with_files(files: Vec<(OsString, Arc<F>)>, readonly: bool, uid: u32, gid: u32) -> Self {
        VolumeFs {
            readonly: readonly || files.iter().any(|(_, v)| !v.writable()),
            files,
            uid,
            gid,
            time: SystemTime::now(),
        }
    }

    /// The volume served as inode `ino`, if it is a file.
    fn volume(&self, ino: INodeNo) -> Option<&Arc<F>> {
        let i = ino.0.checked_sub(FIRST_FILE)?;
        self.files.get(usize::try_from(i).ok()?).map(|(_, v)| v)
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
                    v.sector_size() as u32,
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
        let found = self.files.iter().position(|(n, _)| n == name);
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
        let want = (size.min(MAX_REQUEST * 16) as u64).min(volume.size().saturating_sub(offset));
        // One buffer per worker thread, reused: a fresh 1 MiB allocation per request costs an
        // mmap, 256 page faults and a munmap each time.
        READ_BUF.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < want as usize {
                b.resize(want as usize, 0);
            }
            let buf = &mut b[..want as usize];
            match volume.read_at(buf, offset) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno(&e)),
            }
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
            Ok(n) => reply.written(n as u32),
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
        match self.volume(ino).map_or(Ok(()), |v| v.flush()) {
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
        match self.volume(ino).map_or(Ok(()), |v| v.flush()) {
            Ok(()) => reply.ok(),
            Err(e) => {
                log::error!("fdatasync of the payload failed: {e}");
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
        for (i, (name, _)) in self.files.iter().enumerate() {
            entries.push((INodeNo(FIRST_FILE + i as u64), FileType::RegularFile, name));
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
            .map_or(4096, |(_, v)| v.sector_size() as u32);
        let blocks = self.files.iter().map(|(_, v)| v.size()).sum::<u64>() / bsize as u64;
        reply.statfs(blocks, 0, 0, 2, 0, bsize, 255, bsize);
    }
}

/// How to mount: the `mount` table entry and the options given by the user (`-o`).
pub struct MountSpec {
    /// Shown as the source in `mount` (we use the header path).
    pub fsname: String,
    /// Shown as `fuse.<subtype>`.
    pub subtype: String,
    pub readonly: bool,
    /// `-o` options as given: `allow_other`, `allow_root`, `auto_unmount`, kernel flags, or
    /// anything else (passed through to the kernel / fusermount as is).
    pub options: Vec<String>,
}

impl MountSpec {
    fn config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName(self.fsname.clone()),
            MountOption::Subtype(self.subtype.clone()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
            if self.readonly {
                MountOption::RO
            } else {
                MountOption::RW
            },
        ];
        for o in &self.options {
            let opt = match o.as_str() {
                "allow_other" => {
                    cfg.acl = SessionACL::All;
                    continue;
                }
                "allow_root" => {
                    cfg.acl = SessionACL::RootAndOwner;
                    continue;
                }
                "auto_unmount" => MountOption::AutoUnmount,
                "dev" => MountOption::Dev,
                "suid" => MountOption::Suid,
                "exec" => MountOption::Exec,
                "noexec" => MountOption::NoExec,
                "atime" => MountOption::Atime,
                "noatime" => MountOption::NoAtime,
                "sync" => MountOption::Sync,
                "async" => MountOption::Async,
                "dirsync" => MountOption::DirSync,
                "ro" | "rw" | "nodev" | "nosuid" | "default_permissions" => continue,
                other => MountOption::CUSTOM(other.to_string()),
            };
            cfg.mount_options.retain(|m| {
                !matches!(
                    (m, &opt),
                    (MountOption::NoDev, MountOption::Dev)
                        | (MountOption::NoSuid, MountOption::Suid)
                )
            });
            cfg.mount_options.push(opt);
        }
        cfg.n_threads = Some(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        );
        cfg.clone_fd = true;
        cfg
    }
}

/// The `mount(2)` flags and option string for mounting ourselves as `fuse.<subtype>`, or
/// `None` when an option needs fusermount3 (`auto_unmount`).
fn direct_mount_args(cfg: &Config, fd: i32, uid: u32, gid: u32) -> Option<(libc::c_ulong, String)> {
    let mut flags: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;
    let mut data = format!("fd={fd},rootmode=40000,user_id={uid},group_id={gid}");
    for o in &cfg.mount_options {
        match o {
            MountOption::FSName(_) | MountOption::Subtype(_) | MountOption::RW => {}
            MountOption::AutoUnmount => return None,
            MountOption::DefaultPermissions => data.push_str(",default_permissions"),
            MountOption::RO => flags |= libc::MS_RDONLY,
            MountOption::Dev => flags &= !libc::MS_NODEV,
            MountOption::Suid => flags &= !libc::MS_NOSUID,
            MountOption::NoDev => flags |= libc::MS_NODEV,
            MountOption::NoSuid => flags |= libc::MS_NOSUID,
            MountOption::NoExec => flags |= libc::MS_NOEXEC,
            MountOption::Exec => flags &= !libc::MS_NOEXEC,
            MountOption::NoAtime => flags |= libc::MS_NOATIME,
            MountOption::Atime => flags &= !libc::MS_NOATIME,
            MountOption::Sync => flags |= libc::MS_SYNCHRONOUS,
            MountOption::Async => flags &= !libc::MS_SYNCHRONOUS,
            MountOption::DirSync => flags |= libc::MS_DIRSYNC,
            MountOption::CUSTOM(c) => {
                data.push(',');
                data.push_str(c);
            }
        }
    }
    match cfg.acl {
        SessionACL::All => data.push_str(",allow_other"),
        // The kernel has no allow_root: allow everyone and let fuser filter, as libfuse does.
        SessionACL::RootAndOwner => data.push_str(",allow_other"),
        SessionACL::Owner => {}
    }
    Some((flags, data))
}

/// The `-o` string for fusermount3: our options (the fsname escaped as libfuse does, `\,` and
/// `\\`, so that fusermount3 reads it back whole), then the user's, then the access control.
fn fusermount_options(cfg: &Config) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace(',', "\\,");
    let mut opts: Vec<String> = cfg
        .mount_options
        .iter()
        .map(|o| match o {
            MountOption::FSName(n) => format!("fsname={}", escape(n)),
            MountOption::Subtype(t) => format!("subtype={}", escape(t)),
            MountOption::CUSTOM(c) => c.clone(),
            MountOption::AutoUnmount => "auto_unmount".into(),
            MountOption::DefaultPermissions => "default_permissions".into(),
            MountOption::RO => "ro".into(),
            MountOption::RW => "rw".into(),
            MountOption::Dev => "dev".into(),
            MountOption::NoDev => "nodev".into(),
            MountOption::Suid => "suid".into(),
            MountOption::NoSuid => "nosuid".into(),
            MountOption::Exec => "exec".into(),
            MountOption::NoExec => "noexec".into(),
            MountOption::Atime => "atime".into(),
            MountOption::NoAtime => "noatime".into(),
            MountOption::Sync => "sync".into(),
            MountOption::Async => "async".into(),
            MountOption::DirSync => "dirsync".into(),
        })
        .collect();
    match cfg.acl {
        SessionACL::All => opts.push("allow_other".into()),
        SessionACL::RootAndOwner => opts.push("allow_root".into()),
        SessionACL::Owner => {}
    }
    opts.join(",")
}

/// fusermount3 kept running by `auto_unmount`: it unmounts when `socket` closes (when we exit
/// or die), then exits.
struct Watchdog {
    socket: UnixStream,
    child: Child,
}

/// Mounts through the setuid fusermount3, as libfuse does: it opens `/dev/fuse`, mounts and
/// passes the descriptor back over a socket named in `_FUSE_COMMFD`.
fn fusermount(mountpoint: &Path, cfg: &Config) -> io::Result<(OwnedFd, Option<Watchdog>)> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = Command::new(FUSERMOUNT);
    cmd.arg("-o")
        .arg(fusermount_options(cfg))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::sys::keep_fd_across_exec(&mut cmd, theirs.as_raw_fd());
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {FUSERMOUNT}: {e}")))?;
    drop(theirs);
    let auto_unmount = cfg.mount_options.contains(&MountOption::AutoUnmount);
    let fd = match crate::sys::recv_fd(&ours) {
        Ok(Some(fd)) if auto_unmount => {
            // fusermount3 stays until `ours` closes: pass on what it says and keep it.
            if let Some(err) = child.stderr.take() {
                std::thread::spawn(move || {
                    for line in io::BufRead::lines(io::BufReader::new(err)).map_while(Result::ok) {
                        log::warn!("{FUSERMOUNT}: {line}");
                    }
                });
            }
            let watchdog = Watchdog {
                socket: ours,
                child,
            };
            return Ok((fd, Some(watchdog)));
        }
        other => other,
    };
    drop(ours);
    let out = child.wait_with_output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim().replace('\n', "; ");
    match fd? {
        Some(fd) if out.status.success() => Ok((fd, None)),
        _ if said.is_empty() => Err(io::Error::other(format!("{FUSERMOUNT} {}", out.status))),
        _ => Err(io::Error::other(said)),
    }
}

/// `fusermount3 -u -z`: detaches the mount (it goes away when its last user closes it).
fn fusermount_unmount(mountpoint: &Path) -> io::Result<()> {
    let out = Command::new(FUSERMOUNT)
        .args(["-u", "-z", "--"])
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "{FUSERMOUNT} -u: {}",
        said.trim().replace('\n', "; ")
    )))
}

enum Unmounter {
    /// Mounted by us with `mount(2)`.
    Direct(PathBuf),
    /// Mounted by fusermount3, which unmounts too.
    Fusermount {
        mountpoint: PathBuf,
        watchdog: Option<Watchdog>,
    },
}

/// A live mount being served by worker threads.
pub struct Mounted {
    unmounter: Unmounter,
    thread: JoinHandle<()>,
}

impl Mounted {
    /// Mounts `fs` on `mountpoint` (the kernel handshake is done when this returns) and starts
    /// serving it: one worker per core, each with its own cloned `/dev/fuse` descriptor.
    /// `on_end` runs on the serving thread once all workers have stopped (after an unmount).
    ///
    /// With the privilege to open `/dev/fuse` and call `mount(2)`, we mount with type
    /// `fuse.<subtype>` ourselves (fuser's own direct mount would say plain `fuse`); otherwise,
    /// and for `auto_unmount`, the setuid fusermount3 mounts for us (with the same type and
    /// source, from `fsname`/`subtype`).
    pub fn start<F: ServedFile>(
        fs: VolumeFs<F>,
        mountpoint: &Path,
        spec: &MountSpec,
        on_end: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> io::Result<Mounted> {
        let cfg = spec.config();
        let (session, unmounter) = match mount_directly(&fs, mountpoint, spec, &cfg)? {
            Some(dev) => match fuser::Session::from_fd(fs, dev, cfg.acl, cfg) {
                Ok(s) => (s, Unmounter::Direct(mountpoint.to_path_buf())),
                Err(e) => {
                    let _ = crate::sys::umount_detach(mountpoint);
                    return Err(e);
                }
            },
            None => {
                let (dev, watchdog) = fusermount(mountpoint, &cfg)?;
                match fuser::Session::from_fd(fs, dev, cfg.acl, cfg) {
                    Ok(s) => (
                        s,
                        Unmounter::Fusermount {
                            mountpoint: mountpoint.to_path_buf(),
                            watchdog,
                        },
                    ),
                    Err(e) => {
                        let _ = fusermount_unmount(mountpoint);
                        return Err(e);
                    }
                }
            }
        };
        let thread = std::thread::Builder::new()
            .name("luksfuse-serve".into())
            .spawn(move || on_end(session.run()))?;
        Ok(Mounted { unmounter, thread })
    }

    /// Unmounts (the workers then stop and `on_end` runs). When we mounted ourselves, fails
    /// with `EBUSY` while the file is open and the caller may then detach lazily; fusermount3
    /// always detaches lazily.
    pub fn unmount(&mut self) -> io::Result<()> {
        match &self.unmounter {
            Unmounter::Direct(p) => crate::sys::umount(p),
            Unmounter::Fusermount { mountpoint, .. } => fusermount_unmount(mountpoint),
        }
    }

    /// Waits for the serving thread to finish, then lets an `auto_unmount` fusermount3 go.
    pub fn join(self) {
        let _ = self.thread.join();
        if let Unmounter::Fusermount {
            watchdog: Some(Watchdog { socket, mut child }),
            ..
        } = self.unmounter
        {
            drop(socket);
            let _ = child.wait();
        }
    }
}

/// Opens `/dev/fuse` and mounts it on `mountpoint` with `mount(2)` as `fuse.<subtype>`.
/// `Ok(None)` when we may not (no access to `/dev/fuse`, `EPERM`/`EACCES` from `mount(2)`) or
/// an option needs fusermount3.
fn mount_directly<F: ServedFile>(
    fs: &VolumeFs<F>,
    mountpoint: &Path,
    spec: &MountSpec,
    cfg: &Config,
) -> io::Result<Option<OwnedFd>> {
    let dev = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(dev) => dev,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((flags, data)) = direct_mount_args(cfg, dev.as_raw_fd(), fs.uid, fs.gid) else {
        return Ok(None);
    };
    let fstype = format!("fuse.{}", spec.subtype);
    match crate::sys::mount(&spec.fsname, mountpoint, &fstype, flags, &data) {
        Ok(()) => Ok(Some(dev.into())),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusermount_options_escape_the_fsname_and_carry_user_options() {
        let spec = MountSpec {
            fsname: r"/a,b\c".into(),
            subtype: "luksfuse".into(),
            readonly: true,
            options: vec!["allow_root".into(), "noatime".into(), "dev".into()],
        };
        assert_eq!(
            fusermount_options(&spec.config()),
            r"fsname=/a\,b\\c,subtype=luksfuse,default_permissions,nosuid,ro,noatime,dev,allow_root"
        );
    }
}
