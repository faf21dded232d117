//! `luksfuse mount`, library side: open and lock the payload, check the mountpoint, build the
//! [`Volume`], mount it over FUSE and serve it, in the foreground or as a daemon.
//!
//! Entry point for the CLI: [`run`]. Everything that can be checked is checked *before*
//! forking, so most errors reach the caller directly with their exit code.

use crate::error::{Error, Kind, Result, Setting};
use crate::fuse::{Counters, MountSpec, Mounted, VolumeFs, Window};
use crate::image::{self, Access, Format};
use crate::luks::{Header, Segment};
use crate::secret::VolumeKey;
use crate::status::{MountStatus, PartitionStatus, PayloadStatus};
use crate::sys;
use crate::volume::Volume;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

/// What `luksfuse mount` was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountConfig {
    pub header: PathBuf,
    /// One or more payloads encrypted with the header's volume key, each served as a file.
    pub payloads: Vec<PathBuf>,
    /// An existing directory that is not a mountpoint yet.
    pub mountpoint: PathBuf,
    /// File name inside the mountpoint (one payload only); default: each payload's name
    /// without its extension.
    pub name: Option<String>,
    pub readonly: bool,
    /// Serve in this process until unmounted instead of daemonizing.
    pub foreground: bool,
    /// `-o` options (`allow_other`, `allow_root`, `auto_unmount`, `noatime`, …).
    pub fuse_options: Vec<String>,
    /// The payload's format; `None` detects it by magic.
    pub payload_format: Option<Format>,
    /// Let a qcow2 payload read its backing chain (refused by default).
    pub allow_backing: bool,
    /// Also serve each partition of each payload's GPT or MBR as `NAME-pN` (see
    /// [`crate::partitions`]); a payload without a table is served whole only, with a
    /// warning.
    pub partitions: bool,
    /// The header is embedded in the one payload, a qcow2 image with QEMU's own LUKS
    /// encryption (`payloads == [header]`): its guest data is encrypted as QEMU's qcow2 driver
    /// does it, from guest byte 0 with IVs counted from there, whatever payload offset the
    /// embedded header names.
    pub embedded_luks: bool,
    /// Pass `fallocate` discards (`PUNCH_HOLE`) and write-zeroes (`ZERO_RANGE`) to the payload
    /// (`--allow-discards`; see [`crate::volume::Volume::punch_hole`]); off, they fail with
    /// `EOPNOTSUPP`.
    pub allow_discards: bool,
}

/// Refuses to serve `payload` when it is the header's own file (an attached header) and the
/// data segment starts inside the header's bytes: every write through the mount would then
/// overwrite key material. A detached header (`format` with `--offset 0`) is such a file.
pub fn check_header_outside_data(
    header_path: &Path,
    payload: &Path,
    header: &Header,
) -> Result<()> {
    let same = match (std::fs::metadata(header_path), std::fs::metadata(payload)) {
        (Ok(h), Ok(p)) => h.dev() == p.dev() && h.ino() == p.ino(),
        _ => false,
    };
    let start = header.segment().offset.get();
    let end = header.metadata_end();
    if same && start < end {
        return Err(Error::format(format!(
            "the data starts at byte {start}, inside the header (its metadata ends at byte \
             {end}): this header is detached, give its payload after it"
        ))
        .in_file(payload));
    }
    Ok(())
}

/// Mounts the volume described by `segment`, decrypted with `key`, as configured, and serves it.
///
/// * Foreground: returns `Ok(())` after the file system was unmounted (`fusermount3 -u`,
///   `umount`) or a SIGTERM/SIGINT/SIGHUP unmounted it, all writes being flushed and the
///   payload `fdatasync`ed.
/// * Background (the default): forks; the child detaches (setsid, stdio on /dev/null, messages
///   to syslog through the crate-private `syslog` logger) and serves. In the parent, `run`
///   returns `Ok(())` only once the mount is live and the file is visible, or the child's
///   error (the same value: kind, reason, file, hint), so `luksfuse mount … && losetup …` is
///   safe. The child never returns: it exits 0 after unmounting, or with the error's exit
///   code.
///
/// Prints nothing itself; errors are returned (`Busy` for a locked payload or a mountpoint
/// already in use, `Device` for I/O errors or a payload too small for the segment).
pub fn run(cfg: &MountConfig, key: VolumeKey, segment: &Segment) -> Result<()> {
    let prepared = prepare(cfg, key, segment)?;
    if cfg.foreground {
        let signals = sys::termination_signal_pipe()
            .map_err(|e| Error::new(Kind::Device, format!("cannot set up signals: {e}")))?;
        return prepared.serve(Some(signals), |_| {});
    }
    daemonize(prepared)
}

/// Payloads opened, locked and checked, ready to be mounted.
pub struct Prepared {
    /// (file name, volume), in the order the payloads were given.
    files: Vec<(OsString, Arc<Volume>)>,
    /// With `--partitions`: (file name, volume, window) of each partition, after the files.
    windows: Vec<(OsString, Arc<Volume>, Window)>,
    mountpoint: PathBuf,
    spec: MountSpec,
    /// What `luksfuse status` will show (the pid is filled in by the serving process).
    status: MountStatus,
    /// The header file, with a shared `flock` held for the life of the mount so that header
    /// updates (`luksfuse add-key` …) refuse while it is mounted. Inherited by the daemon.
    _header_lock: std::fs::File,
}

/// Everything before mounting: name, mountpoint, payload locks, segment bounds, cipher.
pub fn prepare(cfg: &MountConfig, key: VolumeKey, segment: &Segment) -> Result<Prepared> {
    let names = file_names(cfg)?;
    let mountpoint = check_mountpoint(&cfg.mountpoint)?;
    let header_lock = crate::luks::update::lock_shared(&cfg.header)?;
    let access = if cfg.readonly {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    // QEMU's qcow2 driver encrypts guest byte `b` with IV `b / 512` and ignores the embedded
    // header's payload offset (which only the `luks` driver over a raw file uses).
    let embedded_segment;
    let segment = if cfg.embedded_luks {
        embedded_segment = Segment {
            offset: crate::units::Bytes(0),
            size: None,
            ..segment.clone()
        };
        &embedded_segment
    } else {
        segment
    };
    let mut files = Vec::with_capacity(names.len());
    let mut windows = Vec::new();
    let mut payloads = Vec::with_capacity(names.len());
    for (name, payload) in names.iter().zip(&cfg.payloads) {
        let (image, format) = image::open(
            payload,
            access,
            cfg.payload_format,
            cfg.allow_backing,
            cfg.embedded_luks,
        )?;
        log::info!("payload {} is {}", payload.display(), format.name());
        let volume = Volume::new(image, segment, &key).map_err(|e| e.in_file(payload))?;
        let volume = Arc::new(volume.with_label(payload.display().to_string()));
        let mut parts = Vec::new();
        if cfg.partitions {
            for (pname, w) in partition_windows(name, &volume, payload)? {
                parts.push(PartitionStatus {
                    file: pname.to_string_lossy().into_owned(),
                    offset: w.offset,
                    size: w.len,
                });
                windows.push((pname, volume.clone(), w));
            }
        }
        payloads.push(PayloadStatus {
            path: payload.canonicalize().unwrap_or(payload.clone()),
            file: name.to_string_lossy().into_owned(),
            format: format.name().into(),
            size: volume.size(),
            partitions: parts,
        });
        files.push((name.clone(), volume));
    }
    drop(key);
    for (pname, _, _) in &windows {
        if names.contains(pname) || windows.iter().filter(|(n, _, _)| n == pname).count() > 1 {
            return Err(Error::usage(format!(
                "two files would both be served as '{}'; rename a payload (--name)",
                pname.to_string_lossy()
            )));
        }
    }
    let header = cfg.header.canonicalize().unwrap_or(cfg.header.clone());
    let status = MountStatus {
        pid: 0,
        mountpoint: mountpoint.clone(),
        header: header.clone(),
        cipher: segment.cipher.as_str().to_owned(),
        sector_size: segment.sector_size.get(),
        readonly: cfg.readonly,
        payloads,
        discards: cfg.allow_discards && !cfg.readonly,
        bytes_read: 0,
        bytes_written: 0,
        bytes_discarded: 0,
    };
    Ok(Prepared {
        files,
        windows,
        status,
        mountpoint,
        spec: MountSpec {
            fsname: header.display().to_string(),
            subtype: "luksfuse".into(),
            readonly: cfg.readonly,
            options: cfg.fuse_options.clone(),
        },
        _header_lock: header_lock,
    })
}

/// The partitions of the disk `volume` (payload `payload`, served as `name`) as windows named
/// `NAME-pN`. A disk without a table gives none, with a warning; a damaged or hostile table
/// is an error naming the payload.
fn partition_windows(
    name: &OsString,
    volume: &Volume,
    payload: &Path,
) -> Result<Vec<(OsString, Window)>> {
    let table = crate::partitions::read(|buf, off| volume.read_at(buf, off), volume.size())
        .map_err(|e| e.in_file(payload))?;
    let Some(table) = table else {
        log::warn!(
            "{}: no partition table on the decrypted disk; serving the disk only",
            payload.display()
        );
        return Ok(vec![]);
    };
    if table.used_backup {
        log::warn!(
            "{}: the primary GPT is damaged; partitions are from the backup GPT",
            payload.display()
        );
    }
    log::info!(
        "{}: {} table, {} partitions",
        payload.display(),
        table.kind.name(),
        table.partitions.len()
    );
    Ok(table
        .partitions
        .iter()
        .map(|p| {
            let mut n = name.clone();
            n.push(format!("-p{}", p.number));
            let w = Window {
                offset: p.offset,
                len: p.len,
            };
            (n, w)
        })
        .collect())
}

/// The file names: `--name` for a single payload, else each payload's file name without its
/// extension. Names must be distinct.
fn file_names(cfg: &MountConfig) -> Result<Vec<OsString>> {
    if cfg.payloads.is_empty() {
        return Err(Error::usage("no payload given"));
    }
    if cfg.name.is_some() && cfg.payloads.len() > 1 {
        return Err(Error::bad_setting(
            Setting::FileName,
            "works with one payload only",
        ));
    }
    let mut names: Vec<OsString> = Vec::with_capacity(cfg.payloads.len());
    for payload in &cfg.payloads {
        let name: OsString = match &cfg.name {
            Some(n) => n.into(),
            None => payload
                .file_stem()
                .map(|s| s.to_owned())
                .unwrap_or_else(|| "volume".into()),
        };
        let s = name.to_string_lossy();
        if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
            return Err(Error::usage(format!("invalid file name '{s}'")));
        }
        if names.contains(&name) {
            return Err(Error::usage(format!(
                "two payloads would both be served as '{s}'; rename one"
            ))
            .in_file(payload));
        }
        names.push(name);
    }
    Ok(names)
}

/// The mountpoint must exist, be a directory and not be a mountpoint already.
fn check_mountpoint(path: &Path) -> Result<PathBuf> {
    // A mountpoint that does not exist is a wrong parameter (1), like a directory that isn't.
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::usage("mountpoint does not exist (create the directory first)").in_file(path)
        }
        _ if e.raw_os_error() == Some(libc::ENOTCONN) => stale_mount(path),
        _ => Error::io(path, "cannot use mountpoint", &e),
    })?;
    if !meta.is_dir() {
        return Err(Error::usage("mountpoint is not a directory").in_file(path));
    }
    let abs = path
        .canonicalize()
        .map_err(|e| Error::io(path, "cannot use mountpoint", &e))?;
    let parent_dev = abs
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.dev());
    if parent_dev.is_some_and(|d| d != meta.dev()) || in_mountinfo(&abs) {
        if crate::unmount::is_stale(&abs) {
            return Err(stale_mount(path));
        }
        let err = Error::busy("already a mountpoint").in_file(path);
        let ours = crate::unmount::mount_at(&abs).is_some_and(|m| m.fstype == "fuse.luksfuse");
        return Err(if ours {
            err.with_hint(format!(
                "a luksfuse mount is there: luksfuse umount {} first",
                path.display()
            ))
        } else {
            err
        });
    }
    Ok(abs)
}

/// The error for a mountpoint whose FUSE daemon is gone ("Transport endpoint is not
/// connected"), saying how to clear it.
fn stale_mount(path: &Path) -> Error {
    let fstype = crate::unmount::absolute(path)
        .ok()
        .and_then(|abs| crate::unmount::mount_at(&abs))
        .map(|m| m.fstype);
    let shown = path.display();
    match fstype.as_deref() {
        Some("fuse.luksfuse") => Error::busy(
            "a stale luksfuse mount is still there (its daemon was killed: \
             \"Transport endpoint is not connected\")",
        )
        .in_file(path)
        .with_hint(format!("clear it with: luksfuse umount {shown}")),
        other => Error::busy(format!(
            "a stale {} mount is still there (its daemon is gone: \
             \"Transport endpoint is not connected\")",
            other.unwrap_or("FUSE")
        ))
        .in_file(path)
        .with_hint(format!(
            "clear it with: fusermount3 -u {shown} (or umount as root)"
        )),
    }
}

/// Whether `abs` is listed as a mount point in `/proc/self/mountinfo`.
fn in_mountinfo(abs: &Path) -> bool {
    crate::status::mounts().iter().any(|(mp, _)| mp == abs)
}

enum Event {
    Ended(io::Result<()>),
    Signal(u8),
}

impl Prepared {
    /// The (first) decrypted volume (for callers that want to inspect it).
    pub fn volume(&self) -> &Arc<Volume> {
        &self.files[0].1
    }

    /// Path of the (first) served file once mounted.
    pub fn file_path(&self) -> PathBuf {
        self.mountpoint.join(&self.files[0].0)
    }

    /// Mounts, calls `ready` once the file is visible, serves until unmounted (or, with
    /// `signals`, until a termination signal unmounts it), then flushes and syncs the payload.
    pub fn serve(self, signals: Option<std::fs::File>, ready: impl FnOnce(&Path)) -> Result<()> {
        let (uid, gid) = sys::uid_gid();
        let all: Vec<(OsString, Arc<Volume>, Window)> = self
            .files
            .iter()
            .map(|(n, v)| {
                let w = Window {
                    offset: 0,
                    len: v.size(),
                };
                (n.clone(), v.clone(), w)
            })
            .chain(self.windows.iter().cloned())
            .collect();
        let fs = VolumeFs::with_windows(all.clone(), self.spec.readonly, uid, gid)
            .with_discards(self.status.discards);
        let counters = fs.counters();
        let (tx, rx) = mpsc::channel();
        let ended = tx.clone();
        let mut mounted = Mounted::start(fs, &self.mountpoint, &self.spec, move |r| {
            let _ = ended.send(Event::Ended(r));
        })
        .map_err(|e| {
            let kind = if e.raw_os_error() == Some(libc::EBUSY) {
                Kind::Busy
            } else {
                Kind::Device
            };
            Error::new(kind, format!("cannot mount: {e}")).in_file(&self.mountpoint)
        })?;
        for (name, _, window) in &all {
            let file = self.mountpoint.join(name);
            match std::fs::metadata(&file) {
                Ok(m) if m.is_file() && m.len() == window.len => {}
                Ok(_) => log::warn!("{}: unexpected attributes after mounting", file.display()),
                Err(e) => {
                    let _ = mounted.unmount();
                    mounted.join();
                    return Err(Error::io(&file, "mounted file is not visible", &e));
                }
            }
            log::info!("serving {} ({} bytes)", file.display(), window.len);
        }
        let file = self.file_path();
        let status_dir = crate::status::dir();
        let mut status = self.status.clone();
        status.pid = std::process::id();
        if let Err(e) = status.publish(&status_dir) {
            log::warn!("{e} (luksfuse status will not list this mount)");
        }
        let reporter = StatusReporter::start(status.clone(), status_dir.clone(), counters);
        ready(&file);
        if let Some(mut pipe) = signals {
            std::thread::Builder::new()
                .name("luksfuse-signals".into())
                .spawn(move || {
                    let mut b = [0u8; 1];
                    while let Ok(1) = pipe.read(&mut b) {
                        if tx.send(Event::Signal(b[0])).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::new(Kind::Device, format!("cannot start thread: {e}")))?;
        }
        let result = loop {
            match rx.recv() {
                Ok(Event::Ended(r)) => break r,
                Ok(Event::Signal(sig)) => {
                    log::info!("signal {sig}: unmounting {}", self.mountpoint.display());
                    if let Err(e) = mounted.unmount() {
                        log::warn!("unmount failed ({e}); detaching lazily, serving until closed");
                        if let Err(e) = sys::umount_detach(&self.mountpoint) {
                            log::error!("cannot detach {}: {e}", self.mountpoint.display());
                        }
                    }
                }
                Err(_) => break Ok(()),
            }
        };
        mounted.join();
        // Stopped first, so that it cannot write the record again after it is withdrawn.
        reporter.stop();
        crate::status::withdraw(&status_dir, status.pid);
        let flushed = self.files.iter().try_for_each(|(_, v)| v.flush());
        result.map_err(|e| Error::new(Kind::Device, format!("serving failed: {e}")))?;
        flushed.map_err(|e| Error::new(Kind::Device, format!("cannot sync payload: {e}")))?;
        log::info!("unmounted {}", self.mountpoint.display());
        Ok(())
    }
}

/// How the counters reach `luksfuse status`: a thread of the serving process rewrites the
/// mount's record (atomically, see [`MountStatus::publish`]) once a second while they change,
/// so a record is at most [`STATUS_PERIOD`] behind. The I/O path pays only its relaxed
/// additions; an idle mount writes nothing.
struct StatusReporter {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the status record is brought up to date while the counters move.
pub const STATUS_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

impl StatusReporter {
    fn start(mut status: MountStatus, dir: PathBuf, counters: Arc<Counters>) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("luksfuse-status".into())
            .spawn(move || {
                let mut warned = false;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(STATUS_PERIOD)
                {
                    let now = (counters.read(), counters.written(), counters.discarded());
                    if now
                        == (
                            status.bytes_read,
                            status.bytes_written,
                            status.bytes_discarded,
                        )
                    {
                        continue;
                    }
                    (
                        status.bytes_read,
                        status.bytes_written,
                        status.bytes_discarded,
                    ) = now;
                    match status.publish(&dir) {
                        Err(e) if !warned => {
                            log::warn!("{e} (the status counters will not be brought up to date)");
                            warned = true;
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| log::warn!("cannot start the status thread ({e}); counters stay 0"))
            .ok();
        StatusReporter { stop, thread }
    }

    fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forks: the child serves, the parent waits for its "ready" or error line.
fn daemonize(prepared: Prepared) -> Result<()> {
    let (mut parent_end, child_end) = UnixStream::pair()
        .map_err(|e| Error::new(Kind::Device, format!("cannot create pipe: {e}")))?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    match sys::fork().map_err(|e| Error::new(Kind::NoMem, format!("cannot fork: {e}")))? {
        sys::Forked::Parent { .. } => {
            drop(child_end);
            let _ = parent_end.set_read_timeout(None);
            let mut line = String::new();
            let _ = BufReader::new(&mut parent_end).read_line(&mut line);
            parse_status(&line)
        }
        sys::Forked::Child => {
            drop(parent_end);
            std::process::exit(daemon_child(prepared, child_end));
        }
    }
}

/// The daemon's life: detach, serve, report; returns the exit code.
fn daemon_child(prepared: Prepared, mut status: UnixStream) -> i32 {
    let detach = sys::setsid()
        .and_then(|()| std::env::set_current_dir("/"))
        .and_then(|()| sys::stdio_to_dev_null());
    crate::syslog::to_syslog();
    let mut reported = false;
    let result = detach
        .map_err(|e| Error::new(Kind::Device, format!("cannot daemonize: {e}")))
        .and_then(|()| {
            let signals = sys::termination_signal_pipe()
                .map_err(|e| Error::new(Kind::Device, format!("cannot set up signals: {e}")))?;
            prepared.serve(Some(signals), |_| {
                reported = status.write_all(b"OK\n").is_ok();
            })
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !reported {
                let _ = status.write_all(error_line(&e).as_bytes());
            }
            crate::syslog::send(log::Level::Error, &e.to_string());
            e.exit_code()
        }
    }
}

/// The child's status line for an error: `ERR ` and the error as one line of JSON, so that
/// the parent gets the same value (kind, reason, file, keyslot, hint), not a text to re-read.
fn error_line(e: &Error) -> String {
    match serde_json::to_string(e) {
        Ok(json) => format!("ERR {json}\n"),
        // Not reachable for this type; still say something the parent can report.
        Err(_) => "ERR\n".to_owned(),
    }
}

/// Parses the child's status line: `OK`, or `ERR <error as JSON>`.
fn parse_status(line: &str) -> Result<()> {
    let line = line.trim_end();
    if line == "OK" {
        return Ok(());
    }
    match line.strip_prefix("ERR ").map(serde_json::from_str::<Error>) {
        Some(Ok(e)) => Err(e),
        _ => Err(Error::new(
            Kind::Device,
            "the mount process exited before the mount was ready",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(payload: &str, name: Option<&str>) -> MountConfig {
        MountConfig {
            header: "h.img".into(),
            payloads: vec![payload.into()],
            mountpoint: "/mnt".into(),
            name: name.map(|s| s.to_string()),
            readonly: false,
            foreground: true,
            ..Default::default()
        }
    }

    fn first_name(cfg: &MountConfig) -> Result<OsString> {
        file_names(cfg).map(|mut n| n.remove(0))
    }

    #[test]
    fn several_payloads_need_distinct_names() {
        let mut c = cfg("/x/a.raw", None);
        c.payloads.push("/y/b.qcow2".into());
        assert_eq!(file_names(&c).unwrap(), ["a", "b"]);
        c.payloads.push("/z/a.qcow2".into());
        let e = file_names(&c).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("'a'"), "{e}");
        let mut c = cfg("/x/a.raw", Some("vol"));
        c.payloads.push("/y/b.raw".into());
        assert_eq!(file_names(&c).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn the_file_name_defaults_to_the_payload_stem() {
        assert_eq!(
            first_name(&cfg("/x/payload.qcow2", None)).unwrap(),
            "payload"
        );
        assert_eq!(first_name(&cfg("/x/disk", None)).unwrap(), "disk");
        assert_eq!(first_name(&cfg("/x/a.b.raw", None)).unwrap(), "a.b");
        assert_eq!(first_name(&cfg("/x/p.raw", Some("vol"))).unwrap(), "vol");
        for bad in ["", ".", "..", "a/b"] {
            assert!(first_name(&cfg("/x/p.raw", Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines_carry_the_error_itself() {
        assert!(parse_status("OK\n").is_ok());
        let sent = Error::busy("already a mountpoint")
            .in_file(Path::new("/m"))
            .with_hint("unmount it first");
        let line = error_line(&sent);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let e = parse_status(&line).unwrap_err();
        assert_eq!(e, sent);
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (5, "/m: already a mountpoint".into())
        );
        assert_eq!(e.hint(), Some("unmount it first"));
        assert_eq!(parse_status("").unwrap_err().exit_code(), 4);
        assert_eq!(parse_status("ERR 5 old text").unwrap_err().exit_code(), 4);
    }

    #[test]
    fn mountpoint_checks() {
        assert_eq!(
            check_mountpoint(Path::new("/proc"))
                .unwrap_err()
                .exit_code(),
            5
        );
        assert_eq!(check_mountpoint(Path::new("/")).unwrap_err().exit_code(), 5);
        assert_eq!(
            check_mountpoint(Path::new("/nonexistent/x"))
                .unwrap_err()
                .exit_code(),
            1
        );
        let d = tempfile::tempdir().unwrap();
        assert!(check_mountpoint(d.path()).is_ok());
        let f = d.path().join("f");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(check_mountpoint(&f).unwrap_err().exit_code(), 1);
    }
}
