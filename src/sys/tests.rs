//! Tests of the system-call wrappers, against the real kernel.

use super::*;
use std::os::fd::AsFd;

#[test]
fn zeroed_mapping_is_zero_writable_and_fails_softly_when_too_big() {
    let mut m = ZeroedMapping::<argon2::Block>::new(300).unwrap();
    assert_eq!(m.as_mut_slice().len(), 300);
    assert!(m
        .as_mut_slice()
        .iter()
        .all(|b| b.as_ref().iter().all(|&w| w == 0)));
    m.as_mut_slice()[299].as_mut()[127] = 7;
    assert_eq!(m.as_mut_slice()[299].as_ref()[127], 7);
    assert!(take_largest_mapping() >= 300 * 1024);
    drop(m);
    for len in [0, usize::MAX / 1024, 1 << 50] {
        let e = ZeroedMapping::<argon2::Block>::new(len)
            .err()
            .expect("refused");
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "{len}");
    }
}

#[test]
fn ofd_locks_conflict_between_open_file_descriptions_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"x").unwrap();
    let a = File::options().read(true).write(true).open(&p).unwrap();
    let b = File::open(&p).unwrap();
    ofd_lock_shared(a.as_fd(), 101).unwrap();
    assert!(!ofd_write_lock_conflicts(a.as_fd(), 101).unwrap());
    assert!(ofd_write_lock_conflicts(b.as_fd(), 101).unwrap());
    assert!(!ofd_write_lock_conflicts(b.as_fd(), 102).unwrap());
    crate::testing::close(a);
    assert!(!ofd_write_lock_conflicts(b.as_fd(), 101).unwrap());
}

#[test]
fn flock_exclusive_conflicts_with_shared_of_another_description() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"x").unwrap();
    let a = File::open(&p).unwrap();
    let b = File::open(&p).unwrap();
    flock_try(a.as_fd(), FlockKind::Shared).unwrap();
    flock_try(b.as_fd(), FlockKind::Shared).unwrap();
    drop(b);
    let c = File::open(&p).unwrap();
    let e = flock_try(c.as_fd(), FlockKind::Exclusive).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    crate::testing::close(a);
    flock_try(c.as_fd(), FlockKind::Exclusive).unwrap();
}

/// Sends `fd` with one byte of data, as fusermount3 does.
fn send_fd(sock: &UnixStream, fd: RawFd) {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: zeroed msghdr is valid; it points at `iov` and `control`, which outlive the
    // sendmsg call, and CMSG_FIRSTHDR of a buffer of 32 bytes has room for one int.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        libc::CMSG_DATA(c).cast::<libc::c_int>().write_unaligned(fd);
        assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), 1);
    }
}

#[test]
fn a_descriptor_passed_over_a_socket_arrives_and_eof_is_none() {
    use std::io::{Read, Write};
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    send_fd(&theirs, a.as_raw_fd());
    drop(a);
    drop(theirs);
    let mut got = UnixStream::from(recv_fd(&ours).unwrap().expect("a descriptor"));
    assert!(recv_fd(&ours).unwrap().is_none());
    got.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
}

#[test]
fn a_kept_descriptor_is_open_in_the_child_only() {
    let (a, _b) = UnixStream::pair().unwrap();
    let probe = format!("test -e /proc/self/fd/{}", a.as_raw_fd());
    let mut plain = Command::new("sh");
    plain.args(["-c", &probe]);
    assert!(!crate::testing::status(&mut plain).unwrap().success());
    let mut kept = Command::new("sh");
    kept.args(["-c", &probe]);
    keep_fd_across_exec(&mut kept, a.as_raw_fd());
    assert!(crate::testing::status(&mut kept).unwrap().success());
}
