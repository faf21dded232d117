//! `luksfuse umount`, library side: take a luksfuse mount off and wait until the daemon that
//! served it has flushed, `fdatasync`ed its payloads, released its locks and exited, as
//! `cryptsetup close` returns only when all is done.
//!
//! Entry point: [`run`]. The daemon is found by its status record ([`crate::status`]): the
//! record names its pid, and the process must be alive, in our mount namespace, and have
//! started before the record was written (a pid reused since is not waited for). Its start
//! time is kept, so a pid that exits and is reused during the wait counts as exited.
//!
//! "Exited" is the signal that everything is done: the daemon syncs every payload after the
//! kernel ends its FUSE session and before it returns from serving (`mount::Prepared::serve`),
//! and the kernel closes a process's files (releasing its OFD locks and `flock`s) before it
//! becomes a zombie. A zombie counts as exited.
//!
//! A mount that is in use is not taken off (exit 5, naming what holds it: processes with
//! files, working directories or mappings in it, mounts inside it or with a file in it as
//! their source, loop devices backed by a file in it), unless `lazy`.

use crate::error::{Error, Kind, Result};
use crate::status::{self, MountEntry};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What `luksfuse umount` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmountConfig {
    pub mountpoint: PathBuf,
    /// Detach now even if in use (`umount -l`); the daemon exits when the last user closes.
    pub lazy: bool,
    /// How long to wait for the daemon to exit after the unmount.
    pub timeout: Duration,
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted, and daemon `pid` has exited.
    Served { pid: u32 },
    /// A stale mount (its daemon gone, "Transport endpoint is not connected") was cleared.
    Stale,
    /// Unmounted, but no live daemon was found for it (no status record readable by us).
    NoDaemon,
}

/// How long an unmount that fails with `EBUSY` is retried while no holder can be found: the
/// kernel answers a `close` at once but lets FUSE's RELEASE finish in the background, and the
/// file counts as open until it has. Holders that may let go by themselves have their own
/// [`Holder::patience`].
const BUSY_GRACE: Duration = Duration::from_secs(5);
/// The patience with a process holding a file: it may be exiting (fuse2fs, after its
/// `fusermount3 -u`, closes `/dev/fuse` first and the file system's image last).
const PROCESS_PATIENCE: Duration = Duration::from_secs(1);
/// How often the daemon's state is looked at while waiting.
const POLL: Duration = Duration::from_millis(2);
/// At most this many holders are named in the busy error.
const MAX_HOLDERS: usize = 8;

/// Unmounts the luksfuse mount at `cfg.mountpoint` and waits for its daemon (see the module
/// documentation). Errors: `Device` (exit 4) when it is not a mountpoint or not a luksfuse
/// mount, or the unmount fails otherwise; `Busy` (exit 5) when it is in use (naming the
/// holders) or the daemon is still running after `cfg.timeout`.
pub fn run(cfg: &UnmountConfig) -> Result<Unmounted> {
    let given = &cfg.mountpoint;
    let abs = absolute(given)?;
    let entry = mount_at(&abs).ok_or_else(|| Error::format("not a mountpoint").in_file(given))?;
    if entry.fstype != "fuse.luksfuse" {
        return Err(
            Error::format(format!("not a luksfuse mount (a {} mount)", entry.fstype))
                .in_file(given)
                .with_hint(if entry.fstype.starts_with("fuse") {
                    "unmount it with fusermount3 -u"
                } else {
                    "unmount it with umount"
                }),
        );
    }
    // (Only looked at without a daemon: opening the directory of a live mount would leave a
    // RELEASEDIR in flight, and the unmount find the mount busy for a moment.)
    let daemon = find_daemon(&abs);
    let stale = daemon.is_none() && is_stale(&abs);
    let start = Instant::now();
    loop {
        match crate::fuse::unmount(&abs, cfg.lazy) {
            Ok(()) => break,
            Err(e) if is_busy(&e) => {
                // Retried for a moment while nothing holds it but what may let go by itself.
                let held = holders(&abs);
                let patience = held
                    .iter()
                    .map(|h| h.patience)
                    .min()
                    .unwrap_or(BUSY_GRACE)
                    .min(cfg.timeout);
                if start.elapsed() >= patience {
                    return Err(busy_error(given, &held));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(Error::new(Kind::Device, format!("cannot unmount: {e}")).in_file(given))
            }
        }
    }
    log::info!("unmounted {}", abs.display());
    let Some(daemon) = daemon else {
        if stale {
            return Ok(Unmounted::Stale);
        }
        log::warn!(
            "{}: no status record of its daemon is readable here: not waiting for it to exit",
            abs.display()
        );
        return Ok(Unmounted::NoDaemon);
    };
    let deadline = start + cfg.timeout;
    while !daemon.exited() {
        if Instant::now() >= deadline {
            return Err(Error::busy(format!(
                "unmounted, but its daemon (pid {}) is still running after {} s",
                daemon.pid,
                cfg.timeout.as_secs_f64()
            ))
            .in_file(given)
            .with_hint(if cfg.lazy {
                "a lazily detached mount stays served until its last user closes it"
            } else {
                "it may still be syncing a large payload: wait for the pid to exit"
            }));
        }
        std::thread::sleep(POLL);
    }
    Ok(Unmounted::Served { pid: daemon.pid })
}

/// The absolute path of `path` without following a last component that cannot be looked at
/// (a stale FUSE mount gives `ENOTCONN`): its parent resolved, the name joined.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    match path.canonicalize() {
        Ok(p) => Ok(p),
        Err(e) => {
            let fallback = match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => {
                    let parent = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                    parent.canonicalize().ok().map(|p| p.join(name))
                }
                _ => None,
            };
            match fallback {
                Some(p) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(p),
                _ if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(Error::format("not a mountpoint (no such directory)").in_file(path))
                }
                Some(p) => Ok(p),
                None => Err(Error::io(path, "cannot use mountpoint", &e)),
            }
        }
    }
}

/// The topmost mount on exactly `abs`, if any.
pub fn mount_at(abs: &Path) -> Option<MountEntry> {
    status::mount_table()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == abs)
}

/// Whether the FUSE mount at `abs` has lost its daemon ("Transport endpoint is not
/// connected"). Opening the directory asks the daemon (a `stat` may be answered from the
/// kernel's attribute cache for a while after the daemon died).
pub fn is_stale(abs: &Path) -> bool {
    let notconn = |e: std::io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
    std::fs::metadata(abs).err().is_some_and(notconn)
        || std::fs::read_dir(abs).err().is_some_and(notconn)
}

fn is_busy(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY) || e.kind() == std::io::ErrorKind::ResourceBusy
}

fn busy_error(given: &Path, held: &[Holder]) -> Error {
    let held: Vec<&str> = held.iter().map(|h| h.what.as_str()).collect();
    let msg = if held.is_empty() && crate::sys::euid() != 0 {
        "mount is busy (by nothing this user may look at: another user's process?)".to_owned()
    } else if held.is_empty() {
        "mount is busy".to_owned()
    } else {
        let mut m = format!(
            "mount is busy: {}",
            held[..held.len().min(MAX_HOLDERS)].join("; ")
        );
        if held.len() > MAX_HOLDERS {
            m += &format!("; and {} more", held.len() - MAX_HOLDERS);
        }
        m
    };
    Error::busy(msg).in_file(given).with_hint(
        "close what holds it (fusermount3 -u or umount what is stacked on it, losetup -d a \
         loop device), then run this again; or detach it lazily with -l",
    )
}

/// The daemon serving a mount: its pid and start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Daemon {
    pid: u32,
    start: u64,
}

impl Daemon {
    /// Gone, a zombie (its files are closed), or its pid now names another process.
    fn exited(&self) -> bool {
        match proc_stat(self.pid) {
            None => true,
            Some((state, start)) => matches!(state, 'Z' | 'X' | 'x') || start != self.start,
        }
    }
}

/// (state, start time in clock ticks after boot) of process `pid`, from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// The state (field 3) and start time (field 22) of a `/proc/PID/stat` line; the command
/// name in parentheses may hold spaces and parentheses, so fields count from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The boot time of the system in seconds since the epoch (`btime` in `/proc/stat`).
fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The directories where daemons of this user (or, for root, of anyone) leave records: ours
/// first, then the usual places for others (a user's `XDG_RUNTIME_DIR` may differ between
/// sessions).
fn record_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![status::dir()];
    let (uid, _) = crate::sys::uid_gid();
    let mut more = Vec::new();
    if uid == 0 {
        more.push(PathBuf::from("/run/luksfuse"));
        let globbed = |base: &str, f: &dyn Fn(&str) -> Option<PathBuf>| -> Vec<PathBuf> {
            std::fs::read_dir(base)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| f(&e.file_name().to_string_lossy()))
                        .collect()
                })
                .unwrap_or_default()
        };
        more.extend(globbed("/run/user", &|n| {
            Some(Path::new("/run/user").join(n).join("luksfuse"))
        }));
        more.extend(globbed("/tmp", &|n| {
            n.starts_with("luksfuse-")
                .then(|| Path::new("/tmp").join(n))
        }));
    } else {
        more.push(PathBuf::from(format!("/run/user/{uid}/luksfuse")));
        more.push(PathBuf::from(format!("/tmp/luksfuse-{uid}")));
    }
    for d in more {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// The live daemon whose record names mountpoint `abs`: alive, in our mount namespace, and
/// started no later than its record was written.
fn find_daemon(abs: &Path) -> Option<Daemon> {
    find_daemon_in(&record_dirs(), abs)
}

/// [`find_daemon`] in the records of `dirs`.
fn find_daemon_in(dirs: &[PathBuf], abs: &Path) -> Option<Daemon> {
    let ticks = crate::sys::clock_ticks();
    let boot = boot_time();
    let our_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    for dir in dirs {
        for (st, written) in status::records(dir) {
            if st.mountpoint != abs {
                continue;
            }
            let Some((state, start)) = proc_stat(st.pid) else {
                continue;
            };
            if matches!(state, 'Z' | 'X' | 'x') {
                continue;
            }
            // Another namespace's mount at the same path (unreadable: assume ours).
            let ns = std::fs::read_link(format!("/proc/{}/ns/mnt", st.pid)).ok();
            if let (Some(a), Some(b)) = (&our_ns, &ns) {
                if a != b {
                    continue;
                }
            }
            // A pid reused by a process started after the record was written is not it
            // (both clocks have a resolution of a second or coarser: allow 2 s).
            if let Some(boot) = boot {
                let started = boot + start / ticks;
                let written = written
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if started > written + 2 {
                    continue;
                }
            }
            return Some(Daemon { pid: st.pid, start });
        }
    }
    None
}

/// Whether `p` is `abs` or lies below it.
fn under(p: &Path, abs: &Path) -> bool {
    p.starts_with(abs)
}

/// Something that keeps a mount in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// What it is, one phrase: `fuse2fs (pid 42) has /mnt/x/disk open`, `/mnt/fs
    /// (fuse.ext4) is mounted from /mnt/x/disk`, `/dev/loop0 is backed by /mnt/x/disk`.
    pub what: String,
    /// How long an unmount is retried while this holds it: a FUSE server whose own mount is
    /// gone is flushing (as fuse2fs does after `fusermount3 -u`) and a loop device set to
    /// clear itself does so once closed: a few seconds; another process may be exiting: a
    /// moment; a mount or a loop device stays: not at all.
    pub patience: Duration,
}

/// Everything we can see that keeps the mount at `abs` in use.
pub fn holders(abs: &Path) -> Vec<Holder> {
    let procs = process_holders(abs);
    let loops = loop_devices(abs);
    let mut mounts = Vec::new();
    for m in status::mount_table() {
        if m.mountpoint != abs && under(&m.mountpoint, abs) {
            mounts.push(format!(
                "{} ({}) is mounted inside it",
                m.mountpoint.display(),
                m.fstype
            ));
            continue;
        }
        let on = if m.source.is_absolute() {
            let lo = loops.iter().find(|l| l.dev == m.source);
            match lo {
                Some(l) => Some(format!(
                    "{} (backed by {})",
                    l.dev.display(),
                    l.backing.display()
                )),
                None => under(&m.source, abs).then(|| m.source.display().to_string()),
            }
        } else {
            // fuse2fs and others name the source as given on their command line, often
            // relative: match it against the files the holders have open.
            let tail = normal_components(&m.source);
            procs
                .iter()
                .flat_map(|p| &p.paths)
                .find(|f| !tail.as_os_str().is_empty() && f.ends_with(&tail))
                .map(|f| f.display().to_string())
        };
        if let Some(on) = on {
            mounts.push(format!(
                "{} ({}) is mounted from {on}",
                m.mountpoint.display(),
                m.fstype
            ));
        }
    }
    let stacked = !mounts.is_empty();
    let mut out: Vec<Holder> = procs
        .into_iter()
        .map(|p| Holder {
            patience: if stacked {
                Duration::ZERO
            } else if p.fuse_server {
                BUSY_GRACE
            } else {
                PROCESS_PATIENCE
            },
            what: p.what,
        })
        .collect();
    out.extend(mounts.into_iter().map(|what| Holder {
        what,
        patience: Duration::ZERO,
    }));
    out.extend(loops.into_iter().map(|l| Holder {
        what: format!("{} is backed by {}", l.dev.display(), l.backing.display()),
        patience: if l.autoclear {
            BUSY_GRACE
        } else {
            Duration::ZERO
        },
    }));
    out
}

/// The normal components of `p` (no leading `./` or `../`).
fn normal_components(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

/// A process holding something under the mountpoint.
struct ProcHolder {
    what: String,
    /// The files under the mountpoint it has open.
    paths: Vec<PathBuf>,
    /// It has `/dev/fuse` open: a FUSE server (of a mount stacked on ours, perhaps).
    fuse_server: bool,
}

/// Processes with a file open, mapped, or as working or root directory under `abs` (those
/// whose `/proc` entries we may read: all for root, a user's own otherwise).
fn process_holders(abs: &Path) -> Vec<ProcHolder> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let mut what: Vec<String> = Vec::new();
        let mut paths = Vec::new();
        let mut fuse_server = false;
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                fuse_server |= target == Path::new("/dev/fuse");
                if under(&target, abs) && !paths.contains(&target) {
                    what.push(format!("has {} open", target.display()));
                    paths.push(target);
                }
            }
        }
        for (link, how) in [("cwd", "works in"), ("root", "has its root in")] {
            if let Ok(target) = std::fs::read_link(dir.join(link)) {
                if under(&target, abs) {
                    what.push(format!("{how} {}", target.display()));
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            for line in maps.lines() {
                // The path is the sixth field and may hold spaces: from the first '/'.
                if let Some(i) = line.find('/') {
                    let w = format!("has {} mapped", &line[i..]);
                    if under(Path::new(&line[i..]), abs) && !what.contains(&w) {
                        what.push(w);
                    }
                }
            }
        }
        if !what.is_empty() {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            out.push(ProcHolder {
                what: format!("{} (pid {pid}) {}", comm.trim(), what.join(", ")),
                paths,
                fuse_server,
            });
        }
    }
    out
}

/// A loop device whose backing file lies under the mountpoint.
struct LoopDevice {
    dev: PathBuf,
    backing: PathBuf,
    /// Set to detach itself when last closed (`losetup -d` of a device still open, or a
    /// mount's own loop device).
    autoclear: bool,
}

/// Loop devices whose backing file lies under `abs`, by name.
fn loop_devices(abs: &Path) -> Vec<LoopDevice> {
    let Ok(devs) = std::fs::read_dir("/sys/block") else {
        return vec![];
    };
    let mut out: Vec<LoopDevice> = devs
        .flatten()
        .filter_map(|d| {
            let name = d.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                return None;
            }
            let sys = d.path().join("loop");
            let backing = std::fs::read_to_string(sys.join("backing_file")).ok()?;
            let backing = PathBuf::from(backing.trim_end_matches('\n'));
            let autoclear =
                std::fs::read_to_string(sys.join("autoclear")).is_ok_and(|a| a.trim() == "1");
            under(&backing, abs).then(|| LoopDevice {
                dev: Path::new("/dev").join(name),
                backing,
                autoclear,
            })
        })
        .collect();
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 \
                    987654 1000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("1 (x) Z 0"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_reads_as_alive_with_its_start_time() {
        let (state, start) = proc_stat(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        let me = Daemon {
            pid: std::process::id(),
            start,
        };
        assert!(!me.exited());
        assert!(
            Daemon {
                start: start + 1,
                ..me
            }
            .exited(),
            "a reused pid"
        );
        assert!(
            Daemon {
                pid: u32::MAX - 7,
                ..me
            }
            .exited(),
            "no such process"
        );
    }

    #[test]
    fn not_a_luksfuse_mount_is_refused_before_anything_is_done() {
        let d = tempfile::tempdir().unwrap();
        let cfg = |p: &Path| UnmountConfig {
            mountpoint: p.to_path_buf(),
            lazy: false,
            timeout: Duration::from_secs(1),
        };
        for p in [d.path(), Path::new("/proc"), &d.path().join("missing")] {
            let e = run(&cfg(p)).unwrap_err();
            assert_eq!(e.exit_code(), 4, "{p:?}: {e}");
        }
        let e = run(&cfg(Path::new("/proc"))).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a luksfuse mount (a proc mount)"),
            "{e}"
        );
    }

    #[test]
    fn a_record_names_its_daemon_only_if_the_process_started_before_it_was_written() {
        let d = tempfile::tempdir().unwrap();
        let st = status::MountStatus {
            pid: std::process::id(),
            mountpoint: "/nowhere/mnt".into(),
            header: "/h.img".into(),
            cipher: "aes-xts-plain64".into(),
            sector_size: 512,
            readonly: false,
            payloads: vec![],
            discards: false,
            bytes_read: 0,
            bytes_written: 0,
            bytes_discarded: 0,
        };
        let record = st.publish(d.path()).unwrap();
        let dirs = [d.path().to_path_buf()];
        let (_, start) = proc_stat(st.pid).unwrap();
        let found = find_daemon_in(&dirs, Path::new("/nowhere/mnt"));
        assert_eq!(found, Some(Daemon { pid: st.pid, start }));
        assert_eq!(find_daemon_in(&dirs, Path::new("/nowhere/other")), None);
        // Written long before this process started: the pid was reused since.
        let old = SystemTime::now() - Duration::from_secs(24 * 3600);
        std::fs::File::options()
            .write(true)
            .open(&record)
            .and_then(|f| f.set_modified(old))
            .unwrap();
        assert_eq!(find_daemon_in(&dirs, Path::new("/nowhere/mnt")), None);
    }

    #[test]
    fn paths_under_a_mountpoint() {
        assert!(under(Path::new("/mnt/x/p"), Path::new("/mnt/x")));
        assert!(under(Path::new("/mnt/x"), Path::new("/mnt/x")));
        assert!(!under(Path::new("/mnt/xy/p"), Path::new("/mnt/x")));
    }
}
