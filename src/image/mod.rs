//! Payload images: the bytes that hold the encrypted data, behind one trait.
//!
//! An image is storage only (bytes at offsets, like imago's storage layer); it knows nothing of
//! LUKS. `raw.rs` is a plain file or block device; a qcow2 driver would sit next to it.

pub mod raw;

use std::io;
use std::sync::RwLock;

pub use raw::{Access, RawImage};

/// Random-access payload storage, shared between threads (all methods take `&self`).
pub trait Image: Send + Sync {
    /// Size in bytes (fixed while the image is open: we hold its resize lock).
    fn size(&self) -> u64;
    /// Fills all of `buf` from offset `off`; reading past the end is an error.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at offset `off`; writing past the end is an error (never grows).
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn flush(&self) -> io::Result<()>;
    /// Whether the image was opened for writing.
    fn writable(&self) -> bool;
}

/// `off + len` as a checked end offset that must not pass `size`.
pub(crate) fn check_range(off: u64, len: usize, size: u64) -> io::Result<()> {
    match off.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "bytes {off}..{} are beyond the end of the image ({size} bytes)",
                off.saturating_add(len as u64)
            ),
        )),
    }
}

/// An image held in memory, for tests and tools.
pub struct MemImage {
    bytes: RwLock<Vec<u8>>,
}

impl MemImage {
    pub fn new(bytes: Vec<u8>) -> Self {
        MemImage {
            bytes: RwLock::new(bytes),
        }
    }
    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Image for MemImage {
    fn size(&self) -> u64 {
        self.bytes.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let bytes = self.bytes.read().unwrap_or_else(|e| e.into_inner());
        check_range(off, buf.len(), bytes.len() as u64)?;
        let off = off as usize;
        buf.copy_from_slice(&bytes[off..off + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut bytes = self.bytes.write().unwrap_or_else(|e| e.into_inner());
        check_range(off, buf.len(), bytes.len() as u64)?;
        let off = off as usize;
        bytes[off..off + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn writable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_image_refuses_access_past_the_end() {
        let m = MemImage::new(vec![1; 10]);
        let mut b = [0u8; 4];
        m.read_at(&mut b, 6).unwrap();
        assert!(m.read_at(&mut b, 7).is_err());
        assert!(m.write_at(&b, 7).is_err());
        assert!(m.read_at(&mut b, u64::MAX).is_err());
        assert_eq!(m.size(), 10);
    }
}
