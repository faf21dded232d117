//! Payload images: the bytes that hold the encrypted data, behind one trait.
//!
//! An image is storage only (bytes at offsets, like imago's storage layer); it knows nothing of
//! LUKS. `raw.rs` is a plain file or block device; `qcow2.rs` the guest data of a qcow2 image
//! (as QEMU's `luks` driver stores it over a `qcow2` node). Offsets are *guest* offsets: for
//! qcow2 they are translated through the image's L1/L2 tables, never host offsets in the file.

pub mod qcow2;
pub mod raw;

use std::io;
use std::sync::RwLock;

pub use raw::{Access, RawImage};

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// The format of a payload image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// Opens a payload with QEMU-compatible locks, as `format` or, if `None`, as its magic says
/// (`QFI\xfb` is qcow2, anything else raw). `allow_backing` lets a qcow2 image read its
/// backing chain (refused by default: an image can name any host file). `embedded_luks`
/// accepts a qcow2 image with QEMU's own LUKS encryption (whose header is the one in use).
pub fn open(
    path: &Path,
    access: Access,
    format: Option<Format>,
    allow_backing: bool,
    embedded_luks: bool,
) -> Result<(Arc<dyn Image>, Format)> {
    let format = match format {
        Some(f) => f,
        None => {
            if qcow2::is_qcow2(path).map_err(|e| Error::io(path, "cannot open payload", &e))? {
                Format::Qcow2
            } else {
                Format::Raw
            }
        }
    };
    let image: Arc<dyn Image> = match format {
        Format::Raw => Arc::new(RawImage::open(path, access)?),
        Format::Qcow2 => {
            let (file, _) = raw::open_locked(path, access)?;
            let opts = qcow2::Qcow2Options {
                writable: access == Access::ReadWrite,
                allow_backing,
                embedded_luks,
                ..Default::default()
            };
            Arc::new(qcow2::open_file(file, path, &opts)?)
        }
    };
    Ok((image, format))
}

/// What an image holds at some offset (see [`Image::extent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Nothing stored: reads as zeros.
    Hole,
    /// Stored data, starting at byte `host` of the file; `in_place` when a write there stays
    /// there (no copy-on-write to a new place).
    Stored { host: u64, in_place: bool },
}

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
    /// `Some(cluster size)` for an image that encrypts its own clusters (a qcow2 image with
    /// QEMU's own LUKS encryption): its holes read as *plaintext* zeros, and the IV of each
    /// sector counts from the *host* offset where it is stored. The volume then asks
    /// [`Image::extent`] before each access and [`Image::allocate`] before filling a hole.
    fn plaintext_holes(&self) -> Option<u64> {
        None
    }
    /// What lies at byte `off` and for how many bytes (1..=`max`, `max > 0`) that stays so.
    /// Only asked when [`Image::plaintext_holes`] is `Some`.
    fn extent(&self, _off: u64, max: u64) -> io::Result<(Extent, u64)> {
        Ok((
            Extent::Stored {
                host: 0,
                in_place: true,
            },
            max,
        ))
    }
    /// Maps `len` bytes at `off` (whole clusters) to freshly allocated storage whose old
    /// contents may be discarded, and returns where they start in the file. Only asked when
    /// [`Image::plaintext_holes`] is `Some`.
    fn allocate(&self, _off: u64, _len: u64) -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this image does not allocate",
        ))
    }
    /// The unit in which [`Image::discard`] frees storage (a power of two), or `None` when the
    /// image cannot discard. A raw file: 512 bytes (the kernel zeroes partial file-system
    /// blocks itself); a qcow2 image: its cluster size.
    fn discard_granularity(&self) -> Option<u64> {
        None
    }
    /// Drops the storage of `len` bytes at `off`, both multiples of
    /// [`Image::discard_granularity`]: they then read as zeros *as stored* (ciphertext zeros;
    /// plaintext zeros for an image with [`Image::plaintext_holes`]), and the file's allocated
    /// space shrinks. The caller excludes every other access that may hold a mapping of the
    /// range (see the qcow2 image's notes) for images with plaintext holes.
    fn discard(&self, _off: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
    /// Whether byte `off` has storage (is not a hole that reads as zeros): `true` unless the
    /// image knows better.
    fn allocated(&self, _off: u64) -> io::Result<bool> {
        Ok(true)
    }
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
        let off = usize::try_from(off).expect("inside the in-memory image");
        buf.copy_from_slice(&bytes[off..off + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut bytes = self.bytes.write().unwrap_or_else(|e| e.into_inner());
        check_range(off, buf.len(), bytes.len() as u64)?;
        let off = usize::try_from(off).expect("inside the in-memory image");
        bytes[off..off + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn writable(&self) -> bool {
        true
    }
    fn discard_granularity(&self) -> Option<u64> {
        Some(512)
    }
    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        self.write_at(&zeros, off)
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
