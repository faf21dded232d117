//! `luksfuse mount` by an ordinary user (uid 65534), through the setuid `fusermount3`.
//!
//! fusermount3 opens `/dev/fuse` with the *user's* file system uid, so a user needs access to
//! it (mode 0666 on ordinary systems). Where `/dev/fuse` is root-only, as in some containers,
//! the tests give the user access the ordinary way inside a private mount namespace: a 0666
//! node for the same device bound over `/dev/fuse`. Commands then run in that namespace with
//! `nsenter`. The host's `/dev/fuse` is never changed.
//!
//! Needs root (to become uid 65534 and to set up the namespace); skipped otherwise.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// A private mount namespace in which uid 65534 may open `/dev/fuse`, kept alive by a
/// `sleep`; mounts made in it are lazily unmounted, and the namespace ended, on drop.
struct UserNs {
    holder: std::process::Child,
    mountpoints: Vec<PathBuf>,
}

impl UserNs {
    fn new(dir: &Path) -> UserNs {
        let node = dir.join("fuse");
        run_ok(Command::new("mknod").arg(&node).args(["c", "10", "229"]));
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /dev/fuse && echo ready && exec sleep 600")
            .arg(&node)
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "cannot set up the mount namespace");
        UserNs {
            holder,
            mountpoints: Vec::new(),
        }
    }

    /// `program` run in the namespace as uid/gid 65534 without supplementary groups.
    fn as_nobody(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg("setpriv")
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(program);
        c
    }

    /// The namespace's mount table line for `mp`.
    fn mount_line(&self, mp: &Path) -> Option<String> {
        mount_line_in(Path::new(&format!("/proc/{}/mounts", self.holder.id())), mp)
    }
}

impl Drop for UserNs {
    fn drop(&mut self) {
        for mp in &self.mountpoints {
            if self.mount_line(mp).is_some() {
                let _ = Command::new("nsenter")
                    .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
                    .args(["fusermount3", "-uz"])
                    .arg(mp)
                    .status();
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A LUKS2 fixture owned by uid 65534 in a directory everyone may traverse, with a copy of the
/// binary (the target directory may not be traversable) and an empty mountpoint `m`.
struct UserFixture {
    f: Fixture,
    dir: PathBuf,
    exe: PathBuf,
    mp: PathBuf,
}

fn user_fixture() -> UserFixture {
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args);
    let dir = f.dir.path().canonicalize().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("lf");
    std::fs::copy(env!("CARGO_BIN_EXE_luksfuse"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mp = dir.join("m");
    std::fs::create_dir(&mp).unwrap();
    for p in [&f.header, &f.payload, &f.keyfile, &mp] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    UserFixture { f, dir, exe, mp }
}

/// A [`user_fixture`] and a namespace for it that unmounts its mountpoint on drop; `None`
/// (the test skipped, said on stderr) when not root.
fn user_session() -> Option<(UserFixture, UserNs)> {
    if not_root() {
        eprintln!("skipped: needs root to run as uid {NOBODY}");
        return None;
    }
    let u = user_fixture();
    let mut ns = UserNs::new(&u.dir);
    ns.mountpoints.push(u.mp.clone());
    Some((u, ns))
}

impl UserFixture {
    /// `luksfuse mount -d KEY HEADER PAYLOAD m` with `extra` options, on `cmd`.
    fn mount<'a>(&self, cmd: &'a mut Command, extra: &[&str]) -> &'a mut Command {
        cmd.arg("mount")
            .args(extra)
            .arg("-d")
            .arg(&self.f.keyfile)
            .arg(&self.f.header)
            .arg(&self.f.payload)
            .arg(&self.mp)
    }

    /// The pid of the daemon serving `m`.
    fn daemon(&self) -> u32 {
        let live = pids_with_args(s(&self.exe), &["mount", s(&self.mp)]);
        assert_eq!(live.len(), 1, "daemon pids: {live:?}");
        live[0]
    }
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn unprivileged_user_mounts_through_fusermount3_reads_writes_and_unmounts() {
    let Some((u, ns)) = user_session() else {
        return;
    };
    run_ok(u.mount(&mut ns.as_nobody(u.exe.to_str().unwrap()), &[]));
    let line = ns.mount_line(&u.mp).expect("mounted");
    assert!(line.contains(" fuse.luksfuse "), "{line}");
    let header = u.f.header.canonicalize().unwrap();
    assert!(
        line.starts_with(&format!("{} ", header.display())),
        "{line}"
    );
    assert!(line.contains(&format!("user_id={NOBODY}")), "{line}");

    // Without allow_other only the owner may look inside, so look as the owner.
    let file = u.mp.join("p");
    let stat = run_ok(ns.as_nobody("stat").args(["-c", "%u %a %s"]).arg(&file));
    assert_eq!(
        String::from_utf8_lossy(&stat.stdout).trim(),
        format!("{NOBODY} 600 {}", 16 << 20)
    );

    let data = b"written by nobody";
    let n = data.len().to_string();
    run_with_stdin(
        ns.as_nobody("dd")
            .arg(format!("of={}", file.display()))
            .arg(format!("bs={n}"))
            .args(["count=1", "seek=1001", "oflag=seek_bytes", "conv=notrunc"])
            .args(["iflag=fullblock", "status=none"]),
        data,
    );
    let back = run_ok(
        ns.as_nobody("dd")
            .arg(format!("if={}", file.display()))
            .arg(format!("bs={n}"))
            .args(["count=1", "skip=1001", "iflag=skip_bytes", "status=none"]),
    );
    assert_eq!(back.stdout, data);

    // The user unmounts; the daemon then exits.
    let daemon = u.daemon();
    run_ok(ns.as_nobody("fusermount3").arg("-u").arg(&u.mp));
    assert!(ns.mount_line(&u.mp).is_none());
    wait_until("daemon exit after unmount", SETTLE, || exited(daemon));

    // Mounted again by root (our own mount(2)), the bytes are there.
    let _guard = MountGuard(u.mp.clone());
    run_ok(u.mount(&mut Command::new(&u.exe), &["-r"]));
    let plain = std::fs::read(u.mp.join("p")).unwrap();
    assert_eq!(&plain[1001..1001 + data.len()], data);
    run_ok(Command::new("fusermount3").arg("-u").arg(&u.mp));
}

/// `luksfuse umount` as the user (fusermount3 -u underneath): refused while a process of the
/// user has the file open (exit 5, naming it); then it returns only once the daemon has exited,
/// so a new read-write mount of the payload takes its lock at once; a stale mount left by
/// kill -9 is reported by `mount` and cleared by `umount`.
#[test]
fn unprivileged_user_umount_names_holders_waits_for_the_daemon_and_clears_a_stale_mount() {
    let Some((u, ns)) = user_session() else {
        return;
    };
    let lf = u.exe.to_str().unwrap();
    let out = |cmd: &mut Command| {
        let o = cmd.stdin(Stdio::null()).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    run_ok(u.mount(&mut ns.as_nobody(lf), &[]));
    let file = u.mp.join("p");
    run_with_stdin(
        ns.as_nobody("dd")
            .arg(format!("of={}", file.display()))
            .args(["bs=5", "count=1", "seek=77", "conv=notrunc", "status=none"]),
        b"hello",
    );

    // A process of the user holds the file open.
    let mut holder = ns
        .as_nobody("sh")
        .arg("-c")
        .arg(format!(
            "exec 3< {}; echo ready; exec sleep 600",
            file.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let (code, err) = out(ns.as_nobody(lf).arg("umount").arg(&u.mp));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("mount is busy: sleep (pid ")
            && err.contains(&format!("has {} open", file.display())),
        "{err}"
    );
    assert!(ns.mount_line(&u.mp).is_some());
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Now it unmounts, and the daemon is gone when it returns.
    let daemon = u.daemon();
    let (code, err) = out(ns.as_nobody(lf).arg("umount").arg(&u.mp));
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(exited(daemon), "daemon {daemon} still running");
    assert!(ns.mount_line(&u.mp).is_none());
    // At once: root mounts the payload read-write (taking its write lock) and reads the bytes.
    run_ok(u.mount(&mut Command::new(&u.exe), &[]));
    let guard = MountGuard(u.mp.clone());
    let plain = std::fs::read(u.mp.join("p")).unwrap();
    assert_eq!(&plain[5 * 77..5 * 78], b"hello");
    run_ok(Command::new(&u.exe).arg("umount").arg(&u.mp));
    drop(guard);

    // A stale mount: the user's daemon killed.
    run_ok(u.mount(&mut ns.as_nobody(lf), &[]));
    let daemon = u.daemon();
    run_ok(Command::new("kill").args(["-9", &daemon.to_string()]));
    wait_until("kill -9", SETTLE, || exited(daemon));
    let (code, err) = out(u.mount(&mut ns.as_nobody(lf), &[]));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("a stale luksfuse mount is still there")
            && err.contains(&format!("luksfuse umount {}", u.mp.display())),
        "{err}"
    );
    let (code, err) = out(ns.as_nobody(lf).arg("umount").arg(&u.mp));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cleared a stale mount"), "{err}");
    assert!(ns.mount_line(&u.mp).is_none());
}

/// The whole rootless story, every step as uid 65534 through the setuid fusermount3: format a
/// header, mount, mkfs.ext4 on the served file, fuse2fs on it, write a file, unmount both,
/// remount read-only, e2fsck and fuse2fs read the file back. No root anywhere (root only
/// prepares the namespace in which the user may open /dev/fuse, as a distribution ships it).
#[test]
fn the_rootless_story_format_mount_mkfs_fuse2fs_remount_read_back() {
    if not_root() {
        eprintln!("skipped: needs root to run as uid {NOBODY}");
        return;
    }
    let u = user_fixture();
    let mut ns = UserNs::new(&u.dir);
    let story = u.dir.join("story");
    std::fs::create_dir(&story).unwrap();
    std::os::unix::fs::chown(&story, Some(NOBODY), Some(NOBODY)).unwrap();
    let (key, header, disk) = (
        story.join("key"),
        story.join("h.img"),
        story.join("disk.raw"),
    );
    let (m, fs) = (story.join("m"), story.join("fs"));
    // The user makes everything: key file, payload, directories.
    run_with_stdin(
        ns.as_nobody("sh").arg("-c").arg(format!(
            "cat > {k} && truncate -s 64M {d} && mkdir {m} {fs}",
            k = key.display(),
            d = disk.display(),
            m = m.display(),
            fs = fs.display()
        )),
        b"the user's passphrase",
    );
    ns.mountpoints.extend([fs.clone(), m.clone()]);
    let lf = u.exe.to_str().unwrap();
    run_ok(
        ns.as_nobody(lf)
            .args(["format", "-q", "--pbkdf", "pbkdf2"])
            .args([
                "--pbkdf-force-iterations",
                "1000",
                "-d",
                s(&key),
                s(&header),
            ]),
    );
    let mount = |extra: &[&str]| {
        run_ok(ns.as_nobody(lf).arg("mount").args(extra).args([
            "-d",
            s(&key),
            s(&header),
            s(&disk),
            s(&m),
        ]));
    };
    let served = m.join("disk");
    mount(&[]);
    // `-E root_owner`: the root directory belongs to the user who made the file system.
    run_ok(
        ns.as_nobody("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner"])
            .arg(&served),
    );
    run_ok(ns.as_nobody("fuse2fs").arg(&served).arg(&fs));
    let text = "written without root\n";
    run_with_stdin(
        ns.as_nobody("sh")
            .arg("-c")
            .arg(format!("cat > {}", fs.join("hello.txt").display())),
        text.as_bytes(),
    );
    // Unmount the stack from the top: fuse2fs first (it must have exited before the file it
    // served is released), then luksfuse.
    let fuse2fs = pids_with_args("fuse2fs", &[s(&fs)]);
    run_ok(ns.as_nobody("fusermount3").arg("-u").arg(&fs));
    wait_until("fuse2fs exit", SETTLE, || {
        fuse2fs.iter().all(|&p| exited(p))
    });
    let daemon = pids_with_args(lf, &["mount", s(&m)]);
    assert_eq!(daemon.len(), 1, "daemon pids: {daemon:?}");
    let unmounted = || {
        ns.as_nobody("fusermount3")
            .arg("-u")
            .arg(&m)
            .status()
            .unwrap()
            .success()
    };
    wait_until("luksfuse unmount", SETTLE, unmounted);
    wait_until("daemon exit after unmount", SETTLE, || exited(daemon[0]));
    assert!(
        !std::fs::read(&disk)
            .unwrap()
            .windows(text.len())
            .any(|w| w == text.as_bytes()),
        "the payload holds the file's text only encrypted"
    );

    // Read-only: the file system is clean and the file is there.
    mount(&["-r"]);
    run_ok(ns.as_nobody("e2fsck").args(["-fn"]).arg(&served));
    run_ok(
        ns.as_nobody("fuse2fs")
            .arg(&served)
            .arg(&fs)
            .args(["-o", "ro"]),
    );
    let back = run_ok(ns.as_nobody("cat").arg(fs.join("hello.txt")));
    assert_eq!(String::from_utf8_lossy(&back.stdout), text);
    run_ok(ns.as_nobody("fusermount3").arg("-u").arg(&fs));
}

/// fuser refuses `auto_unmount` without `allow_other`/`allow_root`; fusermount3 does not.
#[test]
fn unprivileged_mount_with_auto_unmount_and_without_allow_other() {
    let Some((u, ns)) = user_session() else {
        return;
    };
    run_ok(u.mount(
        &mut ns.as_nobody(u.exe.to_str().unwrap()),
        &["-o", "auto_unmount"],
    ));
    let line = ns.mount_line(&u.mp).expect("mounted");
    assert!(line.contains(" fuse.luksfuse "), "{line}");
    let daemon = u.daemon();
    // Our unmount path: SIGTERM makes the daemon unmount through fusermount3 and exit.
    run_ok(Command::new("kill").args(["-TERM", &daemon.to_string()]));
    wait_until("unmount and exit on SIGTERM", SETTLE, || {
        ns.mount_line(&u.mp).is_none() && exited(daemon)
    });
}

#[test]
fn unprivileged_mount_without_access_to_dev_fuse_says_so() {
    let dev_fuse_mode = std::fs::metadata("/dev/fuse").map(|m| m.permissions().mode());
    if not_root() || !dev_fuse_mode.is_ok_and(|m| m & 0o006 == 0) {
        eprintln!("skipped: needs root, and /dev/fuse closed to others");
        return;
    }
    let u = user_fixture();
    let _guard = MountGuard(u.mp.clone());
    let out = u
        .mount(
            Command::new("setpriv")
                .arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .arg("--clear-groups")
                .arg(&u.exe),
            &[],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("fusermount3") && stderr.contains("/dev/fuse"),
        "{stderr}"
    );
}

fn not_root() -> bool {
    !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
