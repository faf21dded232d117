//! LUKS headers: detection, parsing and validation of LUKS1 and LUKS2, unlocking and changing
//! keyslots, dumps. Shaped like cryptsetup's `lib/`:
//!
//! * [`header`]: [`Header`], either version, and the only place that dispatches on it;
//! * [`keyslot`]: the keyslot open/seal pipeline both versions share (KDF, key material area,
//!   AF, digest check by the version);
//! * [`luks1`], [`luks2`]: each version's on-disk codec and validation, and its writer;
//! * [`dump`]: `luksDump`-style text and JSON, and the volume key dump;
//! * [`format`](mod@format) (new headers), [`update`] (locked, crash-safe file replacement), [`kdf`],
//!   [`af`].
//!
//! Everything here treats the header file as hostile: sizes and offsets are checked before use,
//! KDF costs before any derivation, and nothing here knows of FUSE, argv or the terminal.

pub mod af;
pub mod dump;
pub mod format;
pub mod header;
pub(crate) mod in_place;
pub mod kdf;
pub mod keyslot;
pub mod luks1;
pub mod luks2;
pub mod signature;
pub mod update;

pub use self::dump::hex_lines;
pub use self::header::Header;

use crate::crypto::CipherName;
use crate::error::{Error, Reason, Result};
use crate::secret::VolumeKey;
use crate::units::{Bytes, SectorSize, Sectors512};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The LUKS magic, common to LUKS1 and LUKS2 (the LUKS2 secondary header uses `SKUL\xba\xbe`).
pub const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// Random-access bytes of a header file. Implemented for files and byte slices (tests, fuzzing).
pub trait ReadAt {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from offset `off`; a read past the end is an error ("truncated").
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<()>;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64 // usize fits in u64
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        let start = usize::try_from(off).ok();
        let end = start.and_then(|s| s.checked_add(buf.len()));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.len() => {
                buf.copy_from_slice(&self[s..e]);
                Ok(())
            }
            _ => Err(truncated(off, buf.len(), self.len() as u64)),
        }
    }
}

/// `[u8]` is unsized and cannot be a `&dyn ReadAt`; a `Vec<u8>` can.
impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.as_slice().read_exact_at(buf, off)
    }
}

/// A borrowed slice, for callers holding `&[u8]` (a `&dyn ReadAt` needs a sized type).
impl ReadAt for &[u8] {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        (**self).read_exact_at(buf, off)
    }
}

fn truncated(off: u64, len: usize, size: u64) -> Error {
    let end = off.saturating_add(len as u64);
    Error::truncated(
        format!("file truncated: needs bytes {off}..{end} but has {size}"),
        end,
        size,
    )
    .at_offset(off)
}

/// A header file opened read-only.
pub struct HeaderFile {
    file: File,
    /// Where the header starts in the file (0, or an embedded header's offset).
    base: u64,
    size: u64,
}

impl HeaderFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, "cannot open header", &e))?;
        Self::from_file(file, path)
    }

    /// A header file already open (as `path`).
    pub fn from_file(file: File, path: &Path) -> Result<Self> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(path, "cannot stat header", &e))?;
        let size = if meta.file_type().is_file() {
            meta.len()
        } else {
            // A block device: its size is where seeking to the end lands.
            use std::io::{Seek, SeekFrom};
            (&file)
                .seek(SeekFrom::End(0))
                .map_err(|e| Error::io(path, "cannot size header", &e))?
        };
        Ok(HeaderFile {
            file,
            base: 0,
            size,
        })
    }

    /// A header embedded in a larger file: the `length` bytes at `offset` (a qcow2 image with
    /// QEMU's own LUKS encryption keeps its header there). Offsets into the header count from
    /// `offset`; the range must lie inside the file.
    pub fn open_range(path: &Path, offset: u64, length: u64) -> Result<Self> {
        let whole = HeaderFile::open(path)?;
        match offset.checked_add(length) {
            Some(end) if end <= whole.size => Ok(HeaderFile {
                file: whole.file,
                base: offset,
                size: length,
            }),
            _ => Err(Error::format(format!(
                "embedded header bytes {offset}+{length} pass the end of the file ({} bytes)",
                whole.size
            ))
            .in_file(path)),
        }
    }
}

impl ReadAt for HeaderFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(truncated(off, buf.len(), self.size));
        }
        // No overflow: `off + len <= size` and `base + size` fits (checked at open).
        self.file.read_exact_at(buf, self.base + off).map_err(|e| {
            let msg = format!("cannot read header at offset {off}: {e}");
            match e.raw_os_error() {
                // An I/O error of the device, not a malformed header: say so (and keep it).
                Some(n) => Error::new(crate::error::Kind::Device, msg).because(Reason::Os(n)),
                None => Error::format(msg),
            }
        })
    }
}

/// The encrypted data area of the payload, as the header describes it (parsed and checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where the encrypted data starts in the payload (a multiple of 512).
    pub offset: Bytes,
    /// Length, or `None` for "the rest of the payload" (LUKS2 `dynamic`, LUKS1 always).
    pub size: Option<Bytes>,
    /// dm-crypt cipher specification as written, e.g. `aes-xts-plain64`, and its parsed form.
    pub cipher: CipherName,
    /// Volume key length in bytes.
    pub key_size: usize,
    /// Encryption sector size (512 for LUKS1; 512..=4096 for LUKS2).
    pub sector_size: SectorSize,
    /// Added to the 512-byte sector number to form the IV (LUKS2 `iv_tweak`; 0 for LUKS1).
    pub iv_tweak: Sectors512,
}

/// A successfully unlocked volume key and the keyslot that opened it.
#[derive(Debug)]
pub struct Unlocked {
    pub key: VolumeKey,
    pub slot: u32,
    /// Whether the keyslot is bound to the data segment (LUKS2 unbound keyslots hold a key of
    /// their own, not the volume key; they open only when asked for by number).
    pub bound: bool,
}

/// A new random UUID (version 4), formatted as cryptsetup writes them.
pub fn new_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    crate::secret::fill_random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Whether `s` is a UUID in the 8-4-4-4-12 hex form.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}
