//! LUKS headers: detection, parsing and validation of LUKS1 and LUKS2, and unlocking a keyslot.
//!
//! Everything here treats the header file as hostile: sizes and offsets are checked before use,
//! KDF costs before any derivation, and nothing here knows of FUSE, argv or the terminal.

pub mod af;
pub mod format;
pub mod kdf;
pub mod keys;
pub mod luks1;
pub mod luks2;
pub mod update;

/// The hash module moved to `crypto` (so that `crypto` needs nothing of `luks`); this
/// re-export keeps `luks::hash` paths working until they are updated.
pub use crate::crypto::hash;

use crate::crypto::CipherName;
use crate::error::{Error, Result};
use crate::secret::VolumeKey;
use crate::units::{Bytes, Iv, IvStep, SectorSize, Sectors512};
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
        self.len() as u64
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
    Error::format(format!(
        "file truncated: needs bytes {off}..{} but has {size}",
        off.saturating_add(len as u64)
    ))
}

/// A header file opened read-only.
pub struct HeaderFile {
    file: File,
    size: u64,
}

impl HeaderFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, "cannot open header", &e))?;
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
        Ok(HeaderFile { file, size })
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
        self.file
            .read_exact_at(buf, off)
            .map_err(|e| Error::format(format!("cannot read header at offset {off}: {e}")))
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
}

/// A parsed and validated LUKS header of either version.
#[derive(Debug)]
pub enum Header {
    Luks1(Box<luks1::Luks1>),
    Luks2(luks2::Luks2),
}

impl Header {
    /// Detects the version by magic and parses the header from `src`.
    pub fn parse(src: &dyn ReadAt) -> Result<Header> {
        let mut start = [0u8; 8];
        src.read_exact_at(&mut start, 0)
            .map_err(|_| Error::format("not a LUKS header (file too short)"))?;
        let version = u16::from_be_bytes([start[6], start[7]]);
        if &start[..6] != MAGIC {
            // A LUKS2 header whose primary copy is damaged may still have a secondary.
            if let Ok(h) = luks2::Luks2::parse(src) {
                return Ok(Header::Luks2(h));
            }
            return Err(Error::format("not a LUKS header (bad magic)"));
        }
        match version {
            1 => Ok(Header::Luks1(Box::new(luks1::Luks1::parse(src)?))),
            2 => Ok(Header::Luks2(luks2::Luks2::parse(src)?)),
            v => Err(Error::format(format!("unsupported LUKS version {v}"))),
        }
    }

    pub fn version(&self) -> u16 {
        match self {
            Header::Luks1(_) => 1,
            Header::Luks2(_) => 2,
        }
    }

    pub fn uuid(&self) -> &str {
        match self {
            Header::Luks1(h) => h.uuid(),
            Header::Luks2(h) => h.uuid(),
        }
    }

    /// The (single) data segment.
    pub fn segment(&self) -> &Segment {
        match self {
            Header::Luks1(h) => h.segment(),
            Header::Luks2(h) => h.segment(),
        }
    }

    /// Active keyslots in the order they are tried: LUKS2 priority (high before normal; slots
    /// with priority "ignore" only when asked for by number), then slot number.
    pub fn slots_to_try(&self) -> Vec<u32> {
        match self {
            Header::Luks1(h) => h.active_slots(),
            Header::Luks2(h) => h.slots_to_try(),
        }
    }

    /// Whether `slot` exists and is active.
    pub fn slot_active(&self, slot: u32) -> bool {
        match self {
            Header::Luks1(h) => h.active_slots().contains(&slot),
            Header::Luks2(h) => h.slot_active(slot),
        }
    }

    /// Tries one keyslot: `Ok(None)` when the passphrase is wrong for it.
    pub fn unlock_slot(
        &self,
        src: &dyn ReadAt,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        match self {
            Header::Luks1(h) => h.unlock_slot(src, slot, passphrase),
            Header::Luks2(h) => h.unlock_slot(src, slot, passphrase),
        }
    }

    /// Tries `slot` or, if `None`, every active slot in order, as cryptsetup does.
    pub fn unlock(
        &self,
        src: &dyn ReadAt,
        passphrase: &[u8],
        slot: Option<u32>,
    ) -> Result<Unlocked> {
        let slots = match slot {
            Some(s) if !self.slot_active(s) => {
                return Err(Error::no_key(format!("Keyslot {s} is not active.")));
            }
            Some(s) => vec![s],
            None => self.slots_to_try(),
        };
        if slots.is_empty() {
            return Err(Error::no_key("No usable keyslot is available."));
        }
        for s in &slots {
            log::debug!("trying keyslot {s}");
            match self.unlock_slot(src, *s, passphrase) {
                Ok(Some(key)) => return Ok(Unlocked { key, slot: *s }),
                Ok(None) => continue,
                Err(e) => return Err(e.context(format!("keyslot {s}"))),
            }
        }
        let tried: Vec<String> = slots.iter().map(|s| s.to_string()).collect();
        Err(Error::no_key("No key available with this passphrase.")
            .with_hint(format!("tried keyslot(s) {}", tried.join(", "))))
    }

    /// A human-readable dump like `cryptsetup luksDump` (never secrets).
    pub fn dump(&self) -> String {
        match self {
            Header::Luks1(h) => h.dump(),
            Header::Luks2(h) => h.dump(),
        }
    }

    /// A machine-readable dump (never secrets).
    pub fn dump_json(&self) -> serde_json::Value {
        match self {
            Header::Luks1(h) => h.dump_json(),
            Header::Luks2(h) => h.dump_json(),
        }
    }
}

/// Formats bytes as cryptsetup does in dumps: hex pairs separated by spaces, 16 per line,
/// continuation lines starting with `indent`.
pub fn hex_lines(bytes: &[u8], indent: &str) -> String {
    let mut s = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        if i > 0 {
            s.push('\n');
            s.push_str(indent);
        }
        for b in chunk {
            s.push_str(&format!("{b:02x} "));
        }
    }
    s
}

/// Decrypts a keyslot's key material with the key derived from the passphrase, using the
/// keyslot's cipher with 512-byte sectors and IVs counted from 0 (as cryptsetup does).
pub(crate) fn decrypt_keyslot_area(
    cipher: &str,
    derived_key: &[u8],
    material: &mut [u8],
) -> Result<()> {
    let spec = crate::crypto::CipherSpec::parse(cipher)?;
    let c = crate::crypto::SectorCipher::new(&spec, derived_key)?;
    if !material.len().is_multiple_of(512) {
        return Err(Error::format(
            "keyslot area is not a whole number of sectors",
        ));
    }
    c.decrypt_sectors(material, SectorSize::MIN, Iv(0), IvStep::ONE);
    Ok(())
}

/// Makes the key material of a keyslot: splits `volume_key` into `stripes` with the AF
/// splitter (random stripes from the OS CSPRNG), pads it with random bytes to whole 512-byte
/// sectors, and encrypts it with `cipher` under `derived_key` (IVs counted from 0, as
/// [`decrypt_keyslot_area`] expects).
pub(crate) fn seal_key_material(
    cipher: &str,
    derived_key: &[u8],
    volume_key: &[u8],
    stripes: u32,
    af_hash: hash::HashAlg,
) -> Result<crate::secret::Secret> {
    let af_len = af::split_len(volume_key.len(), stripes)
        .ok_or_else(|| Error::usage("key material too large"))?;
    let random = crate::secret::Secret::random(af_len - volume_key.len())?;
    let split = af::split(volume_key, stripes, af_hash, random.as_bytes())?;
    drop(random);
    let mut material = crate::secret::Secret::random(af_len.div_ceil(512) * 512)?;
    material.as_mut_bytes()[..af_len].copy_from_slice(split.as_bytes());
    drop(split);
    let spec = crate::crypto::CipherSpec::parse(cipher)?;
    let c = crate::crypto::SectorCipher::new(&spec, derived_key)?;
    c.encrypt_sectors(material.as_mut_bytes(), SectorSize::MIN, Iv(0), IvStep::ONE);
    Ok(material)
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
