//! The few system calls the standard library does not wrap. Crate-private: programs on top of
//! the library use the wrappers in [`crate::process`].
//!
//! Every `unsafe` system call of the project lives in this module, each with a `// SAFETY:`
//! comment. The crate root denies `unsafe_code` and allows it here and in a few other places
//! only (listed in the crate docs): the vector XTS paths (intrinsics behind run-time CPU
//! detection), `image::qcow2::guard` (imago's `unsafe` storage methods) and `assist` (the
//! helper thread's job).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// Whether `fd` refers to a terminal.
pub fn is_terminal(fd: &impl AsRawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number; an invalid one yields 0.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Turns terminal echo off on `fd` until the returned guard is dropped.
pub struct NoEcho {
    fd: i32,
    saved: libc::termios,
}

impl NoEcho {
    /// Turns echo off on the terminal `fd` (fails when `fd` is not a terminal).
    pub fn new(fd: &impl AsRawFd) -> io::Result<Self> {
        let fd = fd.as_raw_fd();
        // SAFETY: termios is plain old data; tcgetattr fills it completely on success.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL);
        // SAFETY: `quiet` is a valid termios derived from the current settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NoEcho { fd, saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}

// ---- Payload locks, daemonizing, signals and unmounting (used by `image` and `mount`). ----

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A `struct flock` for one byte at `byte`, of lock type `kind` (`F_RDLCK`, `F_WRLCK`).
fn one_byte(kind: libc::c_int, byte: u64) -> io::Result<libc::flock> {
    let start = libc::off_t::try_from(byte)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock offset too large"))?;
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value; the
    // fields that matter are set below (and `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    Ok(fl)
}

/// Takes a shared (read) open-file-description lock on one byte, without waiting.
/// Fails with `EAGAIN`/`EACCES` when another open file description holds a write lock on it.
pub fn ofd_lock_shared(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    let fl = one_byte(libc::F_RDLCK, byte)?;
    // SAFETY: `fd` is a valid open descriptor for the duration of the borrow, and `fl` is a
    // valid `flock` that outlives the call; F_OFD_SETLK only reads it.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) })?;
    Ok(())
}

/// Whether a write lock on one byte would conflict with a lock held through another open file
/// description (locks held through `fd` itself never conflict).
pub fn ofd_write_lock_conflicts(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = one_byte(libc::F_WRLCK, byte)?;
    // SAFETY: as above; F_OFD_GETLK writes the conflicting lock (or F_UNLCK) into `fl`, which
    // is a valid, exclusively borrowed `flock`.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Deallocates `len` bytes at `off` of the file (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): they
/// read as zeros afterwards, the size stays. Partial file-system blocks are zeroed by the
/// kernel; a block device discards or zeroes the range.
pub fn punch_hole(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let big = || io::Error::new(io::ErrorKind::InvalidInput, "range too large for fallocate");
    let off = libc::off_t::try_from(off).map_err(|_| big())?;
    let len = libc::off_t::try_from(len).map_err(|_| big())?;
    // SAFETY: `fd` is a valid open descriptor for the duration of the borrow; fallocate takes
    // no pointers.
    cvt(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    })?;
    Ok(())
}

/// Whole-file `flock(2)` lock kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlockKind {
    /// `LOCK_SH`: many holders at once.
    Shared,
    /// `LOCK_EX`: one holder, and no shared ones.
    Exclusive,
}

/// Takes a `flock(2)` lock on the whole file without waiting. Fails with `EWOULDBLOCK` when
/// another open file description holds a conflicting lock. The lock belongs to the open file
/// description: it survives `fork` (the child's inherited descriptor keeps it) and goes away
/// when the last descriptor of it is closed.
pub fn flock_try(fd: BorrowedFd<'_>, kind: FlockKind) -> io::Result<()> {
    let op = match kind {
        FlockKind::Shared => libc::LOCK_SH,
        FlockKind::Exclusive => libc::LOCK_EX,
    };
    // SAFETY: flock only takes a descriptor number and flags; `fd` is open for the borrow.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), op | libc::LOCK_NB) })?;
    Ok(())
}

/// Takes a `flock(2)` lock on the whole file, waiting for conflicting ones to go (as
/// cryptsetup locks a header around each access). Taken through a descriptor that holds the
/// other kind, it converts that lock.
pub fn flock_wait(fd: BorrowedFd<'_>, kind: FlockKind) -> io::Result<()> {
    let op = match kind {
        FlockKind::Shared => libc::LOCK_SH,
        FlockKind::Exclusive => libc::LOCK_EX,
    };
    loop {
        // SAFETY: flock only takes a descriptor number and flags; `fd` is open for the borrow.
        match cvt(unsafe { libc::flock(fd.as_raw_fd(), op) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|_| ()),
        }
    }
}

/// The result of [`fork`].
pub enum Forked {
    /// In the parent.
    Parent {
        /// The child's process id (unused by `mount` today, which learns the child's fate
        /// through a pipe).
        #[allow(dead_code)]
        child: libc::pid_t,
    },
    /// In the child.
    Child,
}

/// Forks the process.
///
/// Call it only while the process has a single thread of ours that matters: in the child, only
/// the calling thread exists, and locks held by other threads at the time of the fork stay
/// locked forever (so the child must not touch state those threads may have been using).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the caveat about other
    // threads is documented above and honoured by the caller (`mount::run` forks before it
    // starts any thread, and the child only uses its own state and new threads).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent { child }),
    }
}

/// Starts a new session (detaches from the controlling terminal).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory of ours.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points stdin, stdout and stderr at `/dev/null`.
pub fn stdio_to_dev_null() -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for target in 0..=2 {
        // SAFETY: `null` is a valid open descriptor; dup2 onto 0..=2 only replaces the standard
        // descriptors, which std keeps using by number (writes then go to /dev/null).
        cvt(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// The write end of the pipe the termination signal handler writes to (-1 when none).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_termination_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives for the call. A full pipe or a
        // closed descriptor only makes the write fail, which is harmless here.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Installs handlers for SIGTERM, SIGINT and SIGHUP that write the signal number (one byte) to
/// a pipe, and returns the read end. Works whatever thread receives the signal.
pub fn termination_signal_pipe() -> io::Result<File> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // The read end blocks; only the handler's write end must never block.
    // SAFETY: F_SETFL with plain flags on a descriptor we own.
    cvt(unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, 0) })?;
    // The write end lives for the rest of the process (the handler may run at any time).
    let old = SIGNAL_PIPE.swap(std::os::fd::IntoRawFd::into_raw_fd(write), Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: `old` was a write end leaked by an earlier call; nothing else owns it.
        drop(unsafe { File::from_raw_fd(old) });
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: `sigaction` is a plain C struct, zero is a valid initial value; the handler
        // is an `extern "C" fn(c_int)` that only does async-signal-safe work.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_termination_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
        }
    }
    Ok(read)
}

/// Lazily unmounts `path` (`umount2(MNT_DETACH)`): it disappears from the namespace now and the
/// file system goes away when its last user closes it.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    cvt(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

/// The effective user id of the process (whether `umount(2)` may be tried directly).
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The kernel's clock ticks per second (`_SC_CLK_TCK`), the unit of a process's start time
/// in `/proc/PID/stat`; 100 if the system does not say.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the system and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The real user and group id of the process.
pub fn uid_gid() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and touch no memory of ours.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// `mount(2)`: mounts `source` of type `fstype` on `target` with `flags` and option string
/// `data` (used for FUSE mounts with the full `fuse.<subtype>` type, as libfuse does).
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
    };
    let (source, target) = (c(source.as_bytes())?, c(target.as_os_str().as_bytes())?);
    let (fstype, data) = (c(fstype.as_bytes())?, c(data.as_bytes())?);
    // SAFETY: all four pointers are valid NUL-terminated strings that outlive the call.
    cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })?;
    Ok(())
}

/// `umount2(path, 0)`: unmounts now; fails with `EBUSY` while the file system is in use.
pub fn umount(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    cvt(unsafe { libc::umount2(c.as_ptr(), 0) })?;
    Ok(())
}

// ---- Mounting through fusermount3 (used by `fuse`). ----

/// Makes `fd` survive into the program `cmd` executes: its close-on-exec flag is cleared in the
/// child only, between fork and exec, so children spawned meanwhile by other threads do not
/// inherit it. The caller keeps `fd` open until `cmd` has been spawned.
pub fn keep_fd_across_exec(cmd: &mut Command, fd: RawFd) {
    let clear_cloexec = move || {
        // SAFETY: fcntl on a descriptor number only reads or sets its flags; it is
        // async-signal-safe, as required between fork and exec.
        let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })?;
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec; it only calls fcntl (see
    // above) and builds an `io::Error` from errno, which neither allocates nor takes locks.
    unsafe { cmd.pre_exec(clear_cloexec) };
}

/// Receives one descriptor sent with `SCM_RIGHTS` over `sock` (with at least one byte of
/// data, as fusermount3 sends it), close-on-exec. `Ok(None)` when the peer closed the socket
/// without sending one. Any further descriptors in the same message are closed.
pub fn recv_fd(sock: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // Control buffer: u64s for the alignment `cmsghdr` needs, room for several descriptors.
    let mut control = [0u64; 8];
    // SAFETY: `msghdr` is a plain C struct for which all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (one valid, writable byte) and at `control` (a valid,
        // writable buffer of `msg_controllen` bytes); all of them outlive the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by a successful recvmsg; CMSG_FIRSTHDR only reads its fields.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies within `control`,
        // which the kernel filled; CMSG_DATA points at the `cmsg_len - CMSG_LEN(0)` bytes of
        // its payload, which for SCM_RIGHTS are descriptors now open in this process and owned
        // by nobody else. They are read unaligned, as the payload's alignment is not promised.
        unsafe {
            let hdr = &*cmsg;
            if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let len = hdr.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptor message truncated"));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(fds.into_iter().next())
}

/// Makes this process non-dumpable: no core dumps, and other processes of the same user cannot
/// ptrace it or read its memory through /proc/PID/mem (root still can).
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; no memory is passed.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// Locks the pages holding `buf` in RAM so they are never swapped out. Best effort: the
/// caller may ignore the error (RLIMIT_MEMLOCK can be small for ordinary users).
pub fn mlock(buf: &[u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    // SAFETY: the range is a live, readable allocation of `buf.len()` bytes; mlock only
    // changes paging of the pages that contain it.
    cvt(unsafe { libc::mlock(buf.as_ptr().cast(), buf.len()) }).map(|_| ())
}

/// Undoes [`mlock`] for `buf` (its contents must be wiped first).
pub fn munlock(buf: &[u8]) {
    if buf.is_empty() {
        return;
    }
    // SAFETY: as for mlock; munlock on a range that was not locked is harmless.
    unsafe { libc::munlock(buf.as_ptr().cast(), buf.len()) };
}

/// Types for which every byte being zero is a valid value (no padding, no niches, no
/// references), so that freshly mapped anonymous memory may be viewed as a slice of them.
///
/// # Safety
/// An all-zero bit pattern must be a valid value of the type, and the type's alignment must
/// not exceed the page size.
pub unsafe trait ZeroIsValid: Sized {}

// SAFETY: argon2::Block is a `#[repr(align(64))]` wrapper of one `[u64; 128]` field and nothing
// else (size 1024, a multiple of its alignment, so no padding): all-zero bytes are
// `Block::new()`. The size is asserted at compile time below.
unsafe impl ZeroIsValid for argon2::Block {}
const _: () = assert!(std::mem::size_of::<argon2::Block>() == 1024);

static LARGEST_MAPPING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The size in bytes of the largest [`ZeroedMapping`] made since the last call (which resets
/// it). Such mappings bypass the global allocator; the malformed-header tests bound both.
pub fn take_largest_mapping() -> usize {
    LARGEST_MAPPING.swap(0, Ordering::Relaxed)
}

/// A private anonymous mapping of `len` values of `T`, zero as the kernel hands it out: no
/// fill pass, and its pages are faulted in by whoever first writes them (for Argon2, the
/// worker threads of the first pass, in parallel). Excluded from core dumps; wiped with
/// `explicit_bzero` and unmapped on drop, since it may hold material derived from secrets.
pub struct ZeroedMapping<T: ZeroIsValid> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by this value, like a Box<[T]>.
unsafe impl<T: ZeroIsValid + Send> Send for ZeroedMapping<T> {}

impl<T: ZeroIsValid> ZeroedMapping<T> {
    /// Maps `len` zeroed values; fails with ENOMEM (not an abort) if the memory is not there.
    pub fn new(len: usize) -> io::Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| b > 0 && b <= isize::MAX as usize)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        LARGEST_MAPPING.fetch_max(bytes, Ordering::Relaxed);
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the range is the mapping just created; the advice only affects core dumps.
        // Best effort: a failure changes nothing else.
        unsafe { libc::madvise(ptr, bytes, libc::MADV_DONTDUMP) };
        let ptr = std::ptr::NonNull::new(ptr.cast::<T>()).expect("mmap returned NULL");
        Ok(ZeroedMapping { ptr, len })
    }

    /// The mapping as a slice of its `len` values.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: the mapping holds `len` values of T, page-aligned (T's alignment is at most a
        // page), zero-filled by the kernel and zero is a valid T (ZeroIsValid); `&mut self`
        // makes the borrow exclusive and ties it to the mapping's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ZeroIsValid> Drop for ZeroedMapping<T> {
    fn drop(&mut self) {
        let bytes = self.len * std::mem::size_of::<T>();
        // SAFETY: the range is our own mapping, writable and not borrowed (we hold &mut self);
        // explicit_bzero is a memset the compiler may not remove; then the mapping is
        // returned, and nothing refers to it afterwards.
        unsafe {
            libc::explicit_bzero(self.ptr.as_ptr().cast(), bytes);
            libc::munmap(self.ptr.as_ptr().cast(), bytes);
        }
    }
}

#[cfg(test)]
mod tests;
