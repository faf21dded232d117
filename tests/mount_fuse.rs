//! A real FUSE mount through the library: the file reads and writes like the volume, carries a
//! loop device and an ext4 file system, shows in `mount` as `fuse.luksfuse`, and
//! `fusermount3 -u` ends the serving loop promptly. Mounts and loop devices are cleaned up by
//! guards even when an assertion fails.

mod common;

use common::*;
use luksfuse::mount::{self, MountConfig};
use luksfuse::secret::{Secret, VolumeKey};
use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn mounted_file_carries_ext4_on_a_loop_device_and_unmount_ends_serving() {
    let f = luks_format(&["--type", "luks1", "--iter-time", "10"]);
    let key = cryptsetup_volume_key(
        &f.header,
        &[OsStr::new("--key-file"), f.keyfile.as_os_str()],
    );
    let segment = segment_from_cryptsetup(&f.header);
    let mp = f.path("mnt");
    std::fs::create_dir(&mp).unwrap();
    let cfg = MountConfig {
        header: f.header.clone(),
        payloads: vec![f.payload.clone()],
        mountpoint: mp.clone(),
        name: None,
        readonly: false,
        foreground: true,
        ..Default::default()
    };
    let prepared = mount::prepare(&cfg, VolumeKey(Secret::new(key.clone())), &segment).unwrap();
    let size = prepared.volume().size();
    let _mount_guard = MountGuard(mp.clone());
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        prepared.serve(None, move |p| {
            let _ = ready_tx.send(p.to_path_buf());
        })
    });
    let file = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("mount did not become ready");
    assert_eq!(file, mp.canonicalize().unwrap().join("p"));

    // The mount table entry: source = header, type fuse.luksfuse.
    let line = mount_line(&mp).expect("mounted");
    assert!(line.contains(" fuse.luksfuse "), "{line}");
    assert!(
        line.starts_with(&f.header.canonicalize().unwrap().display().to_string()),
        "{line}"
    );

    // The file: one entry, owned by us, 0600, the volume's size.
    let names: Vec<_> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["p"]);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), size);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    // A second mount on the same mountpoint is refused as busy (exit 5).
    let e = mount::prepare(&cfg, VolumeKey(Secret::new(key.clone())), &segment)
        .err()
        .expect("second mount must fail");
    assert_eq!(e.exit_code(), 5, "{e}");

    // Unaligned reads and writes; past the end nothing grows.
    let fh = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    fh.write_all_at(b"hello, unaligned world", 1001).unwrap();
    let mut back = [0u8; 22];
    fh.read_exact_at(&mut back, 1001).unwrap();
    assert_eq!(&back, b"hello, unaligned world");
    assert!(fh.write_all_at(b"x", size).is_err());
    assert!(fh.set_len(size + 4096).is_err());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    fh.sync_all().unwrap();
    drop(fh);

    // losetup + mkfs.ext4 + e2fsck.
    let dev =
        String::from_utf8(run_ok(Command::new("losetup").args(["-f", "--show"]).arg(&file)).stdout)
            .unwrap()
            .trim()
            .to_string();
    let loop_guard = LoopGuard(dev.clone());
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F", &dev]));
    run_ok(Command::new("e2fsck").args(["-f", "-n", &dev]));
    drop(loop_guard);
    // losetup -d is asynchronous; wait until the file is no longer held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while forking(|| Command::new("losetup").arg("-j").arg(&file).output())
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "loop device not released");
        std::thread::sleep(Duration::from_millis(20));
    }

    // fusermount3 -u ends the serving loop.
    run_ok(Command::new("fusermount3").arg("-u").arg(&mp));
    let deadline = Instant::now() + SETTLE;
    while !server.is_finished() {
        assert!(
            Instant::now() < deadline,
            "serving did not end within {SETTLE:?} of unmount"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.join().unwrap().unwrap();
    assert!(!is_mounted(&mp));
    // The server closed the payload; QEMU's locks need every copy of it gone.
    settle_forks();

    // QEMU sees the ext4 file system we wrote through the mount (superblock magic 0xEF53).
    let plain = f.path("plain.bin");
    run_ok(
        Command::new("qemu-img")
            .args([
                "convert",
                "--object",
                &format!("secret,id=s,file={}", f.keyfile.display()),
                "-O",
                "raw",
                "--image-opts",
                &format!(
                    "driver=luks,key-secret=s,file.filename={},header.filename={}",
                    f.payload.display(),
                    f.header.display()
                ),
            ])
            .arg(&plain),
    );
    let plain = std::fs::read(&plain).unwrap();
    assert_eq!(&plain[1080..1082], &[0x53, 0xef]);
}
