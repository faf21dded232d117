//! Payload locks against real QEMU (`qemu-io`): whoever opens the payload for writing first
//! keeps the other out.

mod common;

use common::*;
use luksfuse::image::{Access, RawImage};
use luksfuse::Kind;
use std::io::Write;
use std::process::{Child, Command, Stdio};

/// A `qemu-io` kept running (reading commands from a pipe) with the payload open; killed on
/// drop even if the test fails.
struct QemuIo(Child);

impl QemuIo {
    fn open(args: &[&str], payload: &std::path::Path) -> QemuIo {
        let child = forking(|| {
            Command::new("qemu-io")
                .args(args)
                .arg(payload)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("qemu-io");
        let q = QemuIo(child);
        wait_qemu_locks(payload);
        q
    }
}

impl Drop for QemuIo {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.write_all(b"quit\n");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn payload() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tmpdir();
    let p = dir.path().join("payload.raw");
    std::fs::File::create(&p).unwrap().set_len(1 << 20).unwrap();
    (dir, p)
}

/// Runs `qemu-io ARGS PAYLOAD` to completion.
fn qemu_io_run(args: &[&str], payload: &std::path::Path) -> std::process::Output {
    forking(|| Command::new("qemu-io").args(args).arg(payload).output()).unwrap()
}

#[test]
fn qemu_cannot_write_while_we_hold_the_payload_read_write() {
    let (_dir, p) = payload();
    let _img = RawImage::open(&p, Access::ReadWrite).unwrap();
    let out = qemu_io_run(&["-f", "raw", "-c", "write 0 512"], &p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    // A read-only QEMU holds only consistent-read, which we share: it may read alongside us.
    let out = qemu_io_run(&["-r", "-f", "raw", "-c", "read 0 512"], &p);
    assert!(out.status.success(), "qemu-io -r may read alongside us");
}

#[test]
fn qemu_cannot_write_while_we_hold_the_payload_read_only() {
    let (_dir, p) = payload();
    let _img = RawImage::open(&p, Access::ReadOnly).unwrap();
    let out = qemu_io_run(&["-f", "raw", "-c", "write 0 512"], &p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
}

#[test]
fn we_are_busy_while_qemu_has_the_payload_open_for_writing() {
    let (_dir, p) = payload();
    let q = QemuIo::open(&["-f", "raw"], &p);
    for access in [Access::ReadWrite, Access::ReadOnly] {
        let e = RawImage::open(&p, access).err().expect("must be busy");
        assert_eq!(e.kind(), Kind::Busy, "{e}");
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("payload.raw"), "{e}");
        // The hint names the process that holds the payload.
        let hint = e.hint().unwrap_or_default();
        assert!(hint.contains("qemu-io (pid "), "{hint}");
    }
    drop(q);
    // Our refused opens above closed their descriptors; a fork elsewhere may hold copies.
    settle_forks();
    RawImage::open(&p, Access::ReadWrite).unwrap();
}

#[test]
fn a_read_only_qemu_io_shares_everything_so_we_may_open_alongside() {
    let (_dir, p) = payload();
    let _q = QemuIo::open(&["-r", "-f", "raw"], &p);
    RawImage::open(&p, Access::ReadOnly).unwrap();
    // qemu-io -r shares everything, so a writer may open too (QEMU's own choice).
    RawImage::open(&p, Access::ReadWrite).unwrap();
}
