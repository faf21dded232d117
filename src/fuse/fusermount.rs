//! Mounting through the setuid fusermount3, as libfuse does, for callers without the
//! privilege to call `mount(2)` (and for `auto_unmount`, which only fusermount3 provides).
//!
//! The protocol: we run `fusermount3 -o OPTIONS -- MOUNTPOINT` with one end of a socket pair
//! named in `_FUSE_COMMFD`; it opens `/dev/fuse`, mounts and sends the descriptor back with
//! `SCM_RIGHTS`. Without `auto_unmount` it then exits; with it, it stays and unmounts when
//! its end of the socket closes (the [`Watchdog`]).

use crate::sys;
use fuser::{Config, MountOption, SessionACL};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The setuid helper that mounts and unmounts for ordinary users.
const FUSERMOUNT: &str = "fusermount3";

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
pub(super) struct Watchdog {
    socket: UnixStream,
    child: Child,
}

impl Watchdog {
    /// Lets fusermount3 go (it unmounts if the mount is still there) and reaps it.
    pub(super) fn release(self) {
        drop(self.socket);
        let mut child = self.child;
        let _ = child.wait();
    }
}

/// Mounts through the setuid fusermount3, as libfuse does: it opens `/dev/fuse`, mounts and
/// passes the descriptor back over a socket named in `_FUSE_COMMFD`.
pub(super) fn mount(mountpoint: &Path, cfg: &Config) -> io::Result<(OwnedFd, Option<Watchdog>)> {
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
    sys::keep_fd_across_exec(&mut cmd, theirs.as_raw_fd());
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {FUSERMOUNT}: {e}")))?;
    drop(theirs);
    let auto_unmount = cfg.mount_options.contains(&MountOption::AutoUnmount);
    let fd = match sys::recv_fd(&ours) {
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
pub(super) fn unmount(mountpoint: &Path) -> io::Result<()> {
    unmount_with(mountpoint, true)
}

/// `fusermount3 -u` (with `lazy`, `-z`). Without `-z` it fails while the mount is in use,
/// with an error of kind `ResourceBusy` (fusermount3 only says so in words).
pub(super) fn unmount_with(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let args: &[&str] = if lazy {
        &["-u", "-z", "--"]
    } else {
        &["-u", "--"]
    };
    let out = Command::new(FUSERMOUNT)
        .args(args)
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let kind = if said.contains("Device or resource busy") {
        io::ErrorKind::ResourceBusy
    } else {
        io::ErrorKind::Other
    };
    Err(io::Error::new(
        kind,
        format!("{FUSERMOUNT} -u: {}", said.trim().replace('\n', "; ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::MountSpec;

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
