//! The mount session: putting a [`VolumeFs`] on a mountpoint, serving it, taking it off.
//!
//! With the privilege to open `/dev/fuse` and call `mount(2)` (root), we mount as
//! `fuse.<subtype>` ourselves; otherwise, and for `auto_unmount`, the setuid fusermount3 mounts
//! and unmounts for us (see `fusermount`). Either way fuser then runs the session on the
//! descriptor, one worker thread per core, each with its own cloned `/dev/fuse` descriptor.

use super::fusermount::{self, Watchdog};
use super::{ServedFile, VolumeFs};
use crate::sys;
use fuser::{Config, MountOption, SessionACL};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// How to mount: the `mount` table entry and the options given by the user (`-o`).
pub struct MountSpec {
    /// Shown as the source in `mount` (we use the header path).
    pub fsname: String,
    /// Shown as `fuse.<subtype>`.
    pub subtype: String,
    /// Mount read-only (`MS_RDONLY` / `ro`).
    pub readonly: bool,
    /// `-o` options as given: `allow_other`, `allow_root`, `auto_unmount`, kernel flags, or
    /// anything else (passed through to the kernel / fusermount as is).
    pub options: Vec<String>,
}

impl MountSpec {
    /// fuser's session configuration: our fixed options, then the user's (`dev`/`suid`
    /// replace our `nodev`/`nosuid`), access control and one worker per core.
    pub(super) fn config(&self) -> Config {
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
                    let _ = sys::umount_detach(mountpoint);
                    return Err(e);
                }
            },
            None => {
                let (dev, watchdog) = fusermount::mount(mountpoint, &cfg)?;
                match fuser::Session::from_fd(fs, dev, cfg.acl, cfg) {
                    Ok(s) => (
                        s,
                        Unmounter::Fusermount {
                            mountpoint: mountpoint.to_path_buf(),
                            watchdog,
                        },
                    ),
                    Err(e) => {
                        let _ = fusermount::unmount(mountpoint);
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
            Unmounter::Direct(p) => sys::umount(p),
            Unmounter::Fusermount { mountpoint, .. } => fusermount::unmount(mountpoint),
        }
    }

    /// Waits for the serving thread to finish, then lets an `auto_unmount` fusermount3 go.
    pub fn join(self) {
        let _ = self.thread.join();
        if let Unmounter::Fusermount {
            watchdog: Some(watchdog),
            ..
        } = self.unmounter
        {
            watchdog.release();
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
    match sys::mount(&spec.fsname, mountpoint, &fstype, flags, &data) {
        Ok(()) => Ok(Some(dev.into())),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => Ok(None),
        Err(e) => Err(e),
    }
}
