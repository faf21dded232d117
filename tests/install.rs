//! `make install`/`uninstall` into a DESTDIR, the man page and the systemd unit as their tools
//! see them, and `mount -t fuse.luksfuse` / `umount` for real (in a private mount namespace,
//! with the installed binary bound over /usr/local/bin, so the host is not touched).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn make(args: &[&str]) {
    run_ok(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args),
    );
}

#[test]
fn make_install_puts_every_file_in_place_and_uninstall_removes_them() {
    let d = tmpdir();
    let dest = d.path().join("root");
    let (destdir, bin, assets) = (
        format!("DESTDIR={}", s(&dest)),
        format!("BIN={}", env!("CARGO_BIN_EXE_luksfuse")),
        format!("ASSETS={}", s(&d.path().join("assets"))),
    );
    make(&["install-files", &destdir, &bin, &assets]);
    let files = [
        "usr/local/bin/luksfuse",
        "sbin/mount.fuse.luksfuse",
        "sbin/mount.luksfuse",
        "usr/local/share/man/man1/luksfuse.1",
        "usr/local/share/man/man1/luksfuse-mount.1",
        "usr/local/share/man/man1/luksfuse-dump.1",
        "usr/local/share/man/man1/luksfuse-status.1",
        "usr/local/share/man/man1/luksfuse-umount.1",
        "usr/local/share/bash-completion/completions/luksfuse",
        "usr/local/share/zsh/site-functions/_luksfuse",
        "usr/local/share/fish/vendor_completions.d/luksfuse.fish",
        "usr/local/lib/systemd/system/luksfuse@.service",
        "usr/local/share/doc/luksfuse/example.conf",
    ];
    for f in files {
        assert!(dest.join(f).symlink_metadata().is_ok(), "{f} not installed");
    }
    // The installed binary has no debug info (the test build it came from has).
    let sections = |f: &Path| {
        let out = run_ok(Command::new("readelf").args(["-S", "-W"]).arg(f));
        String::from_utf8_lossy(&out.stdout).contains(".debug_info")
    };
    assert!(sections(Path::new(env!("CARGO_BIN_EXE_luksfuse"))));
    assert!(
        !sections(&dest.join("usr/local/bin/luksfuse")),
        "installed binary keeps its debug info"
    );
    assert_eq!(
        std::fs::read_link(dest.join("sbin/mount.fuse.luksfuse")).unwrap(),
        Path::new("/usr/local/bin/luksfuse")
    );
    // man renders the page, with the exit codes.
    let man = run_ok(
        Command::new("man")
            .arg("-l")
            .arg(dest.join("usr/local/share/man/man1/luksfuse.1"))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0"),
    );
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        text.contains("no key available with this passphrase"),
        "{text}"
    );
    assert!(text.contains("luksfuse-mount"), "{text}");
    // The unit passes systemd-analyze verify (as an instance; its man page found in DESTDIR).
    let unit = d.path().join("luksfuse@demo.service");
    std::fs::copy(
        dest.join("usr/local/lib/systemd/system/luksfuse@.service"),
        &unit,
    )
    .unwrap();
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("/usr/local/bin/luksfuse mount") && !unit_text.contains("@BINDIR@"));
    assert!(unit_text.contains("exec /usr/local/bin/luksfuse umount "));
    run_ok(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .env("MANPATH", dest.join("usr/local/share/man")),
    );
    // Bash completion knows the commands.
    let bash =
        std::fs::read_to_string(dest.join("usr/local/share/bash-completion/completions/luksfuse"))
            .unwrap();
    assert!(bash.contains("mount") && bash.contains("umount") && bash.contains("--key-file"));

    make(&["uninstall", &destdir]);
    for f in files {
        assert!(
            dest.join(f).symlink_metadata().is_err(),
            "{f} left after uninstall"
        );
    }
}

#[test]
fn mount_t_fuse_luksfuse_with_fstab_options_mounts_and_umount_unmounts() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let bindir = f.path("bin");
    std::fs::create_dir(&bindir).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_luksfuse"), bindir.join("luksfuse")).unwrap();
    let (mnt, mnt2) = (f.path("mnt"), f.path("mnt2"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&mnt2).unwrap();
    let second = f.path("disk.raw");
    std::fs::File::create(&second)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let helper = f.path("mount.fuse.luksfuse");
    std::os::unix::fs::symlink("/usr/local/bin/luksfuse", &helper).unwrap();
    let opts = format!(
        "header={},key-file={},ro,nofail,x-systemd.automount",
        s(&f.header),
        s(&f.keyfile)
    );
    // Everything below runs in a private mount namespace.
    let script = format!(
        r#"set -e
mount --bind {bin} /usr/local/bin
mount -t fuse.luksfuse {payload} {mnt} -o {opts}
grep " {mnt} fuse.luksfuse ro," /proc/self/mounts
test "$(stat -c %s {mnt}/p)" = 16777216
test "$(stat -c %a {mnt}/p)" = 400
{helper} {second} {mnt2} -o header={header},key-file={key},name=disk
dd if=/dev/zero of={mnt2}/disk bs=512 count=1 conv=notrunc status=none
umount {mnt}
umount {mnt2}
if grep -q -e " {mnt} " -e " {mnt2} " /proc/self/mounts; then exit 9; fi
echo DONE"#,
        bin = s(&bindir),
        payload = s(&f.payload),
        mnt = s(&mnt),
        mnt2 = s(&mnt2),
        helper = s(&helper),
        second = s(&second),
        header = s(&f.header),
        key = s(&f.keyfile),
    );
    let out = run_ok(Command::new("unshare").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DONE"));
    // umount(8) of a FUSE file system does not wait for its daemon: the kernel ends the
    // connection and the daemon flushes, closes and exits on its own, a moment later.
    for m in [&mnt, &mnt2] {
        assert!(
            wait_daemon_gone(m, SETTLE).is_some(),
            "daemon for {} still running {SETTLE:?} after umount",
            m.display()
        );
    }
}
