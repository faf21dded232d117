//! Payload images: the bytes that hold the LUKS ciphertext, behind one trait.
//!
//! A payload is either a raw file or the guest data of a qcow2 image (as QEMU's `luks`
//! driver stores it over a `qcow2` node). Offsets here are *guest* offsets: for qcow2 they
//! are translated through the image's L1/L2 tables, never host offsets in the file.

pub mod qcow2;

/// Random access to the guest data of a payload image, from many threads at once.
pub trait Image: Send + Sync {
    /// Guest (virtual) size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from guest offset `off`; a range reaching past the end is an error.
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()>;
    /// Writes all of `buf` at guest offset `off`; never grows the image.
    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()>;
    /// Makes metadata and data written so far durable (fdatasync or stronger).
    fn flush(&self) -> std::io::Result<()>;
}
