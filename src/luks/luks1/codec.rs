//! The LUKS1 on-disk header: the 592 packed big-endian bytes to and from [`RawHeader`], and
//! the validation that turns a [`RawHeader`] into a [`Luks1`].
//!
//! Layout (LUKS1 On-Disk Format Specification 1.2.3, section 2):
//!
//! | offset | size | field                 |
//! |-------:|-----:|-----------------------|
//! |      0 |    6 | magic `LUKS\xba\xbe`  |
//! |      6 |    2 | version (1)           |
//! |      8 |   32 | cipher_name           |
//! |     40 |   32 | cipher_mode           |
//! |     72 |   32 | hash_spec             |
//! |    104 |    4 | payload_offset (sectors) |
//! |    108 |    4 | key_bytes             |
//! |    112 |   20 | mk_digest             |
//! |    132 |   32 | mk_digest_salt        |
//! |    164 |    4 | mk_digest_iter        |
//! |    168 |   40 | uuid                  |
//! |    208 | 8×48 | keyslots: active, iterations, salt\[32\], key_material_offset (sectors), stripes |

use super::{data_segment, Luks1, Slot};
use crate::crypto::hash::HashAlg;
use crate::crypto::CipherSpec;
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;

pub const HEADER_SIZE: usize = 592;
pub const KEYSLOTS: usize = 8;
pub const SLOT_ENABLED: u32 = 0x00AC_71F3;
pub const SLOT_DISABLED: u32 = 0x0000_DEAD;
/// The stripe count every LUKS1 implementation writes and cryptsetup requires.
pub const STRIPES: u32 = 4000;
/// Sectors (of key material offsets and the payload offset) are 512 bytes.
pub const SECTOR: u64 = 512;
/// Largest volume key we accept (bytes); AES-XTS-256 needs 64.
const MAX_KEY_BYTES: u32 = 128;
/// Where the keyslot table starts, and the size of one entry.
const SLOTS_AT: usize = 208;
const SLOT_LEN: usize = 48;

/// The raw on-disk header, fields decoded but not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    pub version: u16,
    pub cipher_name: [u8; 32],
    pub cipher_mode: [u8; 32],
    pub hash_spec: [u8; 32],
    pub payload_offset: u32,
    pub key_bytes: u32,
    pub mk_digest: [u8; 20],
    pub mk_digest_salt: [u8; 32],
    pub mk_digest_iter: u32,
    pub uuid: [u8; 40],
    pub slots: [RawSlot; KEYSLOTS],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawSlot {
    pub active: u32,
    pub iterations: u32,
    pub salt: [u8; 32],
    pub key_material_offset: u32,
    pub stripes: u32,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(arr(b, off))
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b[off..off + N].try_into().expect("N bytes")
}

impl RawHeader {
    /// Decodes the 592 bytes. Never fails: validation is [`Luks1::from_raw`]'s job.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Self {
        let mut slots = [RawSlot::default(); KEYSLOTS];
        for (i, s) in slots.iter_mut().enumerate() {
            let o = SLOTS_AT + SLOT_LEN * i;
            *s = RawSlot {
                active: be32(b, o),
                iterations: be32(b, o + 4),
                salt: arr(b, o + 8),
                key_material_offset: be32(b, o + 40),
                stripes: be32(b, o + 44),
            };
        }
        RawHeader {
            version: u16::from_be_bytes([b[6], b[7]]),
            cipher_name: arr(b, 8),
            cipher_mode: arr(b, 40),
            hash_spec: arr(b, 72),
            payload_offset: be32(b, 104),
            key_bytes: be32(b, 108),
            mk_digest: arr(b, 112),
            mk_digest_salt: arr(b, 132),
            mk_digest_iter: be32(b, 164),
            uuid: arr(b, 168),
            slots,
        }
    }

    /// Encodes the header back into its 592 bytes (for header updates).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[..6].copy_from_slice(crate::luks::MAGIC);
        b[6..8].copy_from_slice(&self.version.to_be_bytes());
        b[8..40].copy_from_slice(&self.cipher_name);
        b[40..72].copy_from_slice(&self.cipher_mode);
        b[72..104].copy_from_slice(&self.hash_spec);
        b[104..108].copy_from_slice(&self.payload_offset.to_be_bytes());
        b[108..112].copy_from_slice(&self.key_bytes.to_be_bytes());
        b[112..132].copy_from_slice(&self.mk_digest);
        b[132..164].copy_from_slice(&self.mk_digest_salt);
        b[164..168].copy_from_slice(&self.mk_digest_iter.to_be_bytes());
        b[168..208].copy_from_slice(&self.uuid);
        for (i, s) in self.slots.iter().enumerate() {
            let o = SLOTS_AT + SLOT_LEN * i;
            b[o..o + 4].copy_from_slice(&s.active.to_be_bytes());
            b[o + 4..o + 8].copy_from_slice(&s.iterations.to_be_bytes());
            b[o + 8..o + 40].copy_from_slice(&s.salt);
            b[o + 40..o + 44].copy_from_slice(&s.key_material_offset.to_be_bytes());
            b[o + 44..o + 48].copy_from_slice(&s.stripes.to_be_bytes());
        }
        b
    }
}

/// A string field of printable ASCII, ending at its first NUL or before its last byte, which
/// cryptsetup always takes as the terminator (it writes a NUL there before reading).
fn field_str(field: &[u8], name: &str) -> Result<String> {
    let field = &field[..field.len() - 1];
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    let s = &field[..end];
    if !s.iter().all(|c| c.is_ascii_graphic()) {
        return Err(Error::format(format!(
            "LUKS1 {name} field holds non-printable bytes"
        )));
    }
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// Copies `s` into a NUL-padded fixed-size field; it must leave room for the NUL.
pub fn put_str<const N: usize>(s: &str) -> Result<[u8; N]> {
    if s.len() >= N {
        return Err(Error::usage("cipher or UUID too long for LUKS1"));
    }
    let mut f = [0u8; N];
    f[..s.len()].copy_from_slice(s.as_bytes());
    Ok(f)
}

/// `n` bytes rounded up to whole 512-byte sectors.
pub fn round_up_sector(n: u64) -> u64 {
    n.div_ceil(SECTOR) * SECTOR
}

impl Luks1 {
    /// Validates a decoded header against a header file of `file_size` bytes: version,
    /// strings, key size, hash, keyslot states, stripes, KDF costs, material offsets within
    /// the file and not overlapping each other or the header. No key derivation happens here.
    pub fn from_raw(raw: RawHeader, file_size: u64) -> Result<Self> {
        if raw.version != 1 {
            return Err(Error::format(format!(
                "LUKS1 header has version {}",
                raw.version
            )));
        }
        let cipher_name = field_str(&raw.cipher_name, "cipher name")?;
        let cipher_mode = field_str(&raw.cipher_mode, "cipher mode")?;
        let hash_name = field_str(&raw.hash_spec, "hash spec")?;
        let uuid = field_str(&raw.uuid, "UUID")?;
        let hash = HashAlg::from_name(&hash_name)?;
        let cipher = format!("{cipher_name}-{cipher_mode}");
        if let Some(refused) = CipherSpec::refusal(&cipher) {
            return Err(refused);
        }
        if raw.key_bytes == 0 || raw.key_bytes > MAX_KEY_BYTES {
            return Err(Error::format(format!(
                "LUKS1 key size {} bytes out of range",
                raw.key_bytes
            )));
        }
        let key_size = raw.key_bytes as usize; // 1..=128
        if let Ok(spec) = CipherSpec::parse(&cipher) {
            spec.check_key_size(key_size)?;
        }
        Kdf::Pbkdf2 {
            hash,
            iterations: raw.mk_digest_iter,
            salt: vec![],
        }
        .validate()
        .map_err(|e| e.context("volume key digest"))?;
        let slots = validate_slots(&raw, hash, file_size)?;
        let segment = data_segment(&raw, cipher, key_size);
        Ok(Luks1 {
            raw,
            cipher_name,
            cipher_mode,
            hash,
            uuid,
            slots,
            segment,
        })
    }
}

/// Checks the keyslot table as cryptsetup's `LUKS_check_keyslots` and `LUKS_check_device_size`
/// do (for every keyslot, used or not): stripes, key material after the header, inside the
/// file, not overlapping each other nor the payload; plus states and the KDF costs of active
/// slots.
fn validate_slots(raw: &RawHeader, hash: HashAlg, file_size: u64) -> Result<Vec<Slot>> {
    let key_bytes = u64::from(raw.key_bytes);
    let mut slots = Vec::with_capacity(KEYSLOTS);
    // (start, end, slot) of every key material area, to check overlaps.
    let mut areas: Vec<(u64, u64, usize)> = Vec::new();
    for (i, s) in raw.slots.iter().enumerate() {
        let bad = |what: String| Error::format(format!("LUKS1 keyslot {i}: {what}"));
        let active = match s.active {
            SLOT_ENABLED => true,
            SLOT_DISABLED => false,
            v => return Err(bad(format!("invalid state 0x{v:08x}"))),
        };
        if s.stripes != STRIPES {
            return Err(bad(format!(
                "invalid stripes count {} (must be {STRIPES})",
                s.stripes
            )));
        }
        // u32 sectors × 512 and key_bytes (≤ 128) × 4000 stay far below 2^64.
        let material_offset = u64::from(s.key_material_offset) * SECTOR;
        if material_offset < HEADER_SIZE as u64 {
            return Err(bad("key material overlaps the header".into()));
        }
        let len = round_up_sector(key_bytes * u64::from(s.stripes));
        let end = material_offset + len;
        if active {
            Kdf::Pbkdf2 {
                hash,
                iterations: s.iterations,
                salt: vec![],
            }
            .validate()
            .map_err(|e| e.context(format!("LUKS1 keyslot {i}")))?;
        }
        // As cryptsetup (LUKS_check_device_size), every keyslot area, used or not, must lie
        // within the file: the header owns them all.
        if end > file_size {
            return Err(bad(format!(
                "key material ends at byte {end}, past the end of the file ({file_size} bytes)"
            )));
        }
        areas.push((material_offset, end, i));
        slots.push(Slot {
            active,
            iterations: s.iterations,
            salt: s.salt,
            material_offset,
            stripes: s.stripes,
        });
    }
    areas.sort();
    for w in areas.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::format(format!(
                "LUKS1 keyslots {} and {} overlap",
                w[0].2, w[1].2
            )));
        }
    }
    let payload = u64::from(raw.payload_offset) * SECTOR;
    if payload != 0 {
        // With the payload in the same file, key material must end before the data.
        if let Some(&(_, end, i)) = areas.iter().find(|a| a.1 > payload) {
            return Err(Error::format(format!(
                "LUKS1 keyslot {i} ends at byte {end}, past the payload offset {payload}"
            )));
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::format::FormatOptions;
    use crate::testing;

    fn image() -> Vec<u8> {
        let options = FormatOptions {
            key_bits: Some(256),
            ..testing::fast_options(1)
        };
        testing::header_image(options, None, b"pw").0
    }

    fn head(image: &[u8]) -> [u8; HEADER_SIZE] {
        image[..HEADER_SIZE].try_into().unwrap()
    }

    #[test]
    fn bytes_struct_bytes_round_trip() {
        let img = image();
        let raw = RawHeader::decode(&head(&img));
        assert_eq!(raw.encode(), head(&img));
        let h = Luks1::from_raw(raw.clone(), img.len() as u64).unwrap();
        assert_eq!(h.raw(), &raw);
        assert_eq!(h.active_slots(), vec![0]);
        assert_eq!(h.hash(), HashAlg::Sha256);
        assert_eq!(h.segment().cipher.as_str(), "aes-xts-plain64");
    }

    #[test]
    fn bad_state_overlap_and_truncation_are_refused() {
        let img = image();
        let mut raw = RawHeader::decode(&head(&img));
        raw.slots[3].active = 1;
        let e = Luks1::from_raw(raw, img.len() as u64).unwrap_err();
        assert_eq!(e.message(), "LUKS1 keyslot 3: invalid state 0x00000001");

        let mut raw = RawHeader::decode(&head(&img));
        raw.slots[2].key_material_offset = raw.slots[1].key_material_offset;
        let e = Luks1::from_raw(raw, img.len() as u64).unwrap_err();
        assert_eq!(e.message(), "LUKS1 keyslots 1 and 2 overlap");

        let raw = RawHeader::decode(&head(&img));
        let e = Luks1::from_raw(raw, 4096).unwrap_err();
        assert!(e.message().contains("past the end of the file"), "{e}");

        // An unused keyslot's material must fit in the file too (LUKS_check_device_size).
        let raw = RawHeader::decode(&head(&img));
        let last = raw
            .slots
            .iter()
            .map(|s| s.key_material_offset)
            .max()
            .unwrap();
        let end = u64::from(last) * SECTOR + round_up_sector(32 * u64::from(STRIPES));
        assert_ne!(raw.slots[7].active, SLOT_ENABLED);
        assert!(Luks1::from_raw(raw.clone(), end).is_ok());
        let e = Luks1::from_raw(raw, end - 1).unwrap_err();
        assert!(e.message().starts_with("LUKS1 keyslot 7: "), "{e}");

        // As cryptsetup, the last byte of a string field ends it, NUL or not.
        let mut raw = RawHeader::decode(&head(&img));
        raw.uuid = [b'x'; 40];
        let h = Luks1::from_raw(raw, img.len() as u64).unwrap();
        assert_eq!(h.uuid(), "x".repeat(39));
    }
}
