//! luksfuse mounts driven through the binary, their daemons, and guards that clean up mounts
//! and loop devices even when an assertion fails. Every look-up here is by the test's own
//! mountpoint: other mounts on the machine (a user's, another test's) are never considered.

use super::fixtures::Fixture;
use super::proc::{forking, luksfuse, pids_with_args};
use super::s;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for something asynchronous that must happen (a daemon exiting after
/// its unmount, a signal taking effect). A liveness bound, not a timing goal: CI machines are
/// small and run the suites in parallel, and speed is measured by `make bench`.
pub const SETTLE: Duration = Duration::from_secs(15);

/// Lazily unmounts on drop if still mounted.
pub struct MountGuard(pub PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = forking(|| Command::new("fusermount3").arg("-uz").arg(&self.0).status());
        }
    }
}

/// Lazily unmounts a (non-FUSE) mount on drop, if it is still mounted.
pub struct UmountGuard(pub PathBuf);
impl Drop for UmountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = forking(|| Command::new("umount").arg("-l").arg(&self.0).status());
        }
    }
}

/// Detaches a loop device on drop.
pub struct LoopGuard(pub String);
impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = forking(|| Command::new("losetup").arg("-d").arg(&self.0).status());
    }
}

/// The line of mount table `table` (a `/proc/PID/mounts` file) whose mountpoint is `mp`
/// exactly, if any.
pub fn mount_line_in(table: &Path, mp: &Path) -> Option<String> {
    let mp = mp.to_str()?;
    std::fs::read_to_string(table)
        .ok()?
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mp))
        .map(str::to_string)
}

/// The /proc/self/mounts line of the mount at `mp`, if any.
pub fn mount_line(mp: &Path) -> Option<String> {
    mount_line_in(Path::new("/proc/self/mounts"), &mp.canonicalize().ok()?)
}

pub fn is_mounted(mp: &Path) -> bool {
    mount_line(mp).is_some()
}

/// Live (not zombie) luksfuse processes whose command line names `mountpoint`.
pub fn daemons_for(mountpoint: &Path) -> Vec<u32> {
    pids_with_args("luksfuse", &[s(mountpoint)])
}

/// Waits up to `limit` for no daemon of `mountpoint` to be alive; returns how long it took.
pub fn wait_daemon_gone(mountpoint: &Path, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if daemons_for(mountpoint).is_empty() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Starts `luksfuse mount -f` (foreground) for `payload`, with stderr as given, and waits
/// until the file shows in the mountpoint.
pub fn mount_foreground(
    f: &Fixture,
    payload: &Path,
    mnt: &Path,
    stderr: Stdio,
) -> std::process::Child {
    let child = forking(|| {
        Command::new(env!("CARGO_BIN_EXE_luksfuse"))
            .args([
                "mount",
                "-f",
                "-d",
                s(&f.keyfile),
                s(&f.header),
                s(payload),
                s(mnt),
            ])
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
    })
    .unwrap();
    let name = payload.file_stem().unwrap();
    let t = Instant::now();
    while !mnt.join(name).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "mount did not appear"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// A daemonized `luksfuse mount`, unmounted (lazily) when dropped.
pub struct Mounted {
    pub mnt: PathBuf,
    _guard: MountGuard,
}

impl Mounted {
    /// `luksfuse mount -d KEY extra... HEADER PAYLOAD MNT` (daemonized); asserts it succeeded
    /// and that the file is visible as soon as the command returns.
    pub fn new(f: &Fixture, extra: &[&str], file: &str) -> Mounted {
        Self::with_paths(f, extra, &[s(&f.header), s(&f.payload)], file)
    }

    /// `luksfuse mount -d KEY extra... IMAGE MNT`: the two-argument form, `f.header` the
    /// image that holds its header.
    pub fn attached(f: &Fixture, extra: &[&str], file: &str) -> Mounted {
        Self::with_paths(f, extra, &[s(&f.header)], file)
    }

    /// `mount.fuse.luksfuse SOURCE f/mnt -o OPTS`, as mount(8) runs the helper (a symlink to
    /// the binary in the fixture's directory): the mount, unmounted when dropped, once the
    /// helper succeeded.
    pub fn via_helper(f: &Fixture, source: &Path, opts: &str) -> Mounted {
        let mnt = f.path("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let helper = f.path("mount.fuse.luksfuse");
        if helper.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_luksfuse"), &helper).unwrap();
        }
        let out = forking(|| {
            Command::new(&helper)
                .args([s(source), s(&mnt), "-o", opts])
                .output()
        })
        .unwrap();
        let m = Mounted::adopt(mnt);
        assert!(
            out.status.success(),
            "helper: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        m
    }

    /// A mount made some other way (the mount helper) at `mnt`, unmounted when dropped.
    pub fn adopt(mnt: PathBuf) -> Mounted {
        Mounted {
            _guard: MountGuard(mnt.clone()),
            mnt,
        }
    }

    fn with_paths(f: &Fixture, extra: &[&str], paths: &[&str], file: &str) -> Mounted {
        let mnt = f.path("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut args = vec!["mount", "-d", s(&f.keyfile)];
        args.extend_from_slice(extra);
        args.extend_from_slice(paths);
        args.push(s(&mnt));
        Mounted::with_args(mnt.clone(), &args, file)
    }

    /// `luksfuse ARGS` (a daemonizing mount whose last argument is `mnt`); asserts as `new`.
    pub fn with_args(mnt: PathBuf, args: &[&str], file: &str) -> Mounted {
        let r = luksfuse(args, b"");
        let guard = MountGuard(mnt.clone());
        assert_eq!(r.code, 0, "mount failed: {}", r.stderr);
        assert!(
            mnt.join(file).exists(),
            "file not visible right after mount returned"
        );
        Mounted { mnt, _guard: guard }
    }

    pub fn unmount(&self) {
        // `luksfuse umount` returns once the daemon has synced and exited (it waits out a
        // RELEASE still in flight from a file closed just now): every test that unmounts
        // checks that promise.
        let r = luksfuse(&["umount", "--timeout", "20", s(&self.mnt)], b"");
        assert_eq!(r.code, 0, "luksfuse umount failed: {}", r.stderr);
        assert!(
            !is_mounted(&self.mnt),
            "still mounted after luksfuse umount"
        );
        assert!(
            daemons_for(&self.mnt).is_empty(),
            "daemon still running after luksfuse umount returned"
        );
    }
}
