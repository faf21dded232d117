//! The per-thread buffers of the I/O hot path: the FUSE adapter's read buffer and the
//! volume's write scratch.
//!
//! Policy, the same for both:
//! * one buffer of each kind per thread (FUSE worker threads serve one request at a time), in a
//!   `thread_local`, so requests never contend for them;
//! * reused from request to request: it grows to the largest request the thread has seen and
//!   never shrinks, so a steady stream of requests allocates nothing (a fresh 1 MiB allocation
//!   per request costs an mmap, 256 page faults and a munmap each time);
//! * capped by its caller's request size: reads by the adapter's largest reply (16 MiB), the
//!   write scratch by the volume's chunk of whole sectors (256 KiB);
//! * not wiped between requests: the read buffer holds plaintext the volume just decrypted and
//!   the scratch holds ciphertext, as the kernel's own buffers for the same requests do. The
//!   buffer handed out may hold bytes of an earlier request: callers write before they read.

use std::cell::RefCell;

thread_local! {
    /// Decrypted data on its way to the kernel (see [`with_read_buf`]).
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The caller's data encrypted on its way to the payload (see [`with_write_scratch`]).
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's read buffer, exactly `len` bytes long (its contents are
/// whatever an earlier request left there).
pub(crate) fn with_read_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < len {
            b.resize(len, 0);
        }
        f(&mut b[..len])
    })
}

/// Runs `f` with this thread's write scratch, exactly `len` bytes long (its contents are
/// whatever an earlier request left there): `f` encrypts the caller's data into it, leaving
/// the caller's buffer intact.
pub(crate) fn with_write_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    WRITE_SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0);
        }
        f(&mut s[..len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_sized_per_call() {
        let first = with_read_buf(8192, |b| {
            b.fill(7);
            b.as_ptr() as usize
        });
        // A smaller request reuses the same allocation, stale bytes and all.
        let (again, len, stale) = with_read_buf(100, |b| (b.as_ptr() as usize, b.len(), b[99]));
        assert_eq!((again, len, stale), (first, 100, 7));
        let w = with_write_scratch(4096, |b| {
            b.fill(9);
            b.as_ptr() as usize
        });
        let (again, len, stale) = with_write_scratch(10, |b| (b.as_ptr() as usize, b.len(), b[9]));
        assert_eq!((again, len, stale), (w, 10, 9));
        with_write_scratch(0, |b| assert!(b.is_empty()));
    }
}
