//! I/O faults under a mounted volume: the payload's file system runs full, or the payload is
//! truncated while mounted. The reader or writer gets the error (ENOSPC, EIO), the daemon logs
//! it and keeps serving the rest, and never panics.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

/// Unmounts a tmpfs on drop.
struct TmpfsGuard(std::path::PathBuf);
impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn stop(child: std::process::Child, mnt: &std::path::Path) -> String {
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "daemon exit {:?}", out.status);
    assert!(!is_mounted(mnt));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn full_payload_filesystem_gives_enospc_and_the_rest_keeps_working() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let small = f.path("small");
    std::fs::create_dir(&small).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&small),
    );
    let _t = TmpfsGuard(small.clone());
    // A sparse 16 MiB payload on a 2 MiB file system.
    let payload = small.join("p.raw");
    std::fs::File::create(&payload)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let child = mount_foreground(&f, &payload, &mnt, Stdio::piped());
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(mnt.join("p"))
        .unwrap();
    file.write_all_at(&[0x42; 4096], 0).unwrap();
    let err = file
        .write_all_at(&vec![0x17; 8 << 20], 1 << 20)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // Still serving: the first block reads back.
    let mut buf = [0u8; 4096];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0x42; 4096]);
    drop(file);
    let log = stop(child, &mnt);
    assert!(
        log.contains("write") && log.contains("failed"),
        "nothing logged: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn payload_truncated_while_mounted_gives_eio_there_and_data_elsewhere() {
    let f = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let child = mount_foreground(&f, &f.payload, &mnt, Stdio::piped());
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(mnt.join("p"))
        .unwrap();
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    file.write_all_at(&data, 0).unwrap();
    // Someone truncates the payload under us (QEMU's locks do not stop a plain truncate).
    std::fs::File::options()
        .write(true)
        .open(&f.payload)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let err = file.read_exact_at(&mut buf, 8 << 20).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let mut back = vec![0u8; data.len()];
    file.read_exact_at(&mut back, 0).unwrap();
    assert!(back == data, "data before the cut still reads");
    drop(file);
    let log = stop(child, &mnt);
    assert!(
        log.contains("read") && log.contains("failed"),
        "nothing logged: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
