//! LUKS1: the 592-byte big-endian header and its 8 keyslots.
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
//! |    208 | 8×48 | keyslots: active, iterations, salt[32], key_material_offset (sectors), stripes |

use super::hash::HashAlg;
use super::kdf::Kdf;
use super::{af, hex_lines, ReadAt, Segment};
use crate::crypto::{CipherName, CipherSpec};
use crate::error::{Error, Result};
use crate::secret::VolumeKey;
use crate::units::{Bytes, SectorSize, Sectors512};
use serde_json::json;

pub const HEADER_SIZE: usize = 592;
pub const KEYSLOTS: usize = 8;
pub const SLOT_ENABLED: u32 = 0x00AC_71F3;
pub const SLOT_DISABLED: u32 = 0x0000_DEAD;
/// The stripe count every LUKS1 implementation writes and cryptsetup requires.
pub const STRIPES: u32 = 4000;
const SECTOR: u64 = 512;
/// Largest volume key we accept (bytes); AES-XTS-256 needs 64.
const MAX_KEY_BYTES: u32 = 128;

/// The raw on-disk header, fields decoded but not yet validated.
#[derive(Debug, Clone)]
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

#[derive(Debug, Clone, Copy, Default)]
pub struct RawSlot {
    pub active: u32,
    pub iterations: u32,
    pub salt: [u8; 32],
    pub key_material_offset: u32,
    pub stripes: u32,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b[off..off + N].try_into().expect("N bytes")
}

impl RawHeader {
    /// Decodes the 592 bytes. Never fails: validation is [`Luks1::from_raw`]'s job.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Self {
        let mut slots = [RawSlot::default(); KEYSLOTS];
        for (i, s) in slots.iter_mut().enumerate() {
            let o = 208 + 48 * i;
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
        b[..6].copy_from_slice(super::MAGIC);
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
            let o = 208 + 48 * i;
            b[o..o + 4].copy_from_slice(&s.active.to_be_bytes());
            b[o + 4..o + 8].copy_from_slice(&s.iterations.to_be_bytes());
            b[o + 8..o + 40].copy_from_slice(&s.salt);
            b[o + 40..o + 44].copy_from_slice(&s.key_material_offset.to_be_bytes());
            b[o + 44..o + 48].copy_from_slice(&s.stripes.to_be_bytes());
        }
        b
    }
}

/// A NUL-terminated printable-ASCII string field.
fn field_str(field: &[u8], name: &str) -> Result<String> {
    let end = field
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| Error::format(format!("LUKS1 {name} field is not NUL-terminated")))?;
    let s = &field[..end];
    if !s.iter().all(|c| c.is_ascii_graphic()) {
        return Err(Error::format(format!(
            "LUKS1 {name} field holds non-printable bytes"
        )));
    }
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// A validated keyslot.
#[derive(Debug, Clone)]
pub struct Slot {
    pub active: bool,
    pub iterations: u32,
    pub salt: [u8; 32],
    /// Byte offset of the key material in the header file.
    pub material_offset: u64,
    pub stripes: u32,
}

/// A validated LUKS1 header.
#[derive(Debug, Clone)]
pub struct Luks1 {
    raw: RawHeader,
    cipher_name: String,
    cipher_mode: String,
    hash: HashAlg,
    uuid: String,
    slots: Vec<Slot>,
    segment: Segment,
}

impl Luks1 {
    /// Reads and validates the header from `src`: magic, version, strings, key size, hash,
    /// keyslot states, stripes, KDF costs, material offsets within the file and not overlapping
    /// each other or the header. No key derivation happens here.
    pub fn parse(src: &dyn ReadAt) -> Result<Self> {
        let mut b = [0u8; HEADER_SIZE];
        src.read_exact_at(&mut b, 0)
            .map_err(|e| e.context("LUKS1 header"))?;
        if &b[..6] != super::MAGIC {
            return Err(Error::format("not a LUKS header (bad magic)"));
        }
        Self::from_raw(RawHeader::decode(&b), src.size())
    }

    /// Validates a decoded header against a header file of `file_size` bytes.
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
        if cipher_name.eq_ignore_ascii_case("cipher_null") || cipher_mode.contains("ecb") {
            return Err(Error::format(format!(
                "cipher '{cipher}' gives no confidentiality (refused)"
            )));
        }
        if raw.key_bytes == 0 || raw.key_bytes > MAX_KEY_BYTES {
            return Err(Error::format(format!(
                "LUKS1 key size {} bytes out of range",
                raw.key_bytes
            )));
        }
        if let Ok(spec) = CipherSpec::parse(&cipher) {
            spec.check_key_size(raw.key_bytes as usize)?;
        }
        Kdf::Pbkdf2 {
            hash,
            iterations: raw.mk_digest_iter,
            salt: vec![],
        }
        .validate()
        .map_err(|e| e.context("volume key digest"))?;

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
                if end > file_size {
                    return Err(bad(format!(
                        "key material ends at byte {end}, past the end of the file ({file_size})"
                    )));
                }
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
        let segment = Segment {
            offset: Bytes(payload),
            size: None,
            cipher: CipherName::new(cipher),
            key_size: raw.key_bytes as usize,
            sector_size: SectorSize::MIN,
            iv_tweak: Sectors512(0),
        };
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

    pub fn raw(&self) -> &RawHeader {
        &self.raw
    }
    pub fn uuid(&self) -> &str {
        &self.uuid
    }
    pub fn hash(&self) -> HashAlg {
        self.hash
    }
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Active keyslots in slot order (LUKS1 has no priorities).
    pub fn active_slots(&self) -> Vec<u32> {
        (0..KEYSLOTS as u32)
            .filter(|&i| self.slots[i as usize].active)
            .collect()
    }

    /// Derives the slot key, decrypts and merges the key material, and checks the digest.
    pub fn unlock_slot(
        &self,
        src: &dyn ReadAt,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        let s = self
            .slots
            .get(slot as usize)
            .filter(|s| s.active)
            .ok_or_else(|| Error::no_key(format!("Keyslot {slot} is not active.")))?;
        let key_len = self.segment.key_size;
        let derived = Kdf::Pbkdf2 {
            hash: self.hash,
            iterations: s.iterations,
            salt: s.salt.to_vec(),
        }
        .derive(passphrase, key_len)?;
        let af_len = key_len * s.stripes as usize; // bounded: 128 × 4000
        let mut material = crate::secret::Secret::zeroed(round_up_sector(af_len as u64) as usize);
        src.read_exact_at(material.as_mut_bytes(), s.material_offset)?;
        super::decrypt_keyslot_area(
            self.segment.cipher.as_str(),
            derived.as_bytes(),
            material.as_mut_bytes(),
        )?;
        let key = af::merge(
            &material.as_bytes()[..af_len],
            key_len,
            s.stripes,
            self.hash,
        )?;
        if self.check_key(key.as_bytes()) {
            Ok(Some(VolumeKey(key)))
        } else {
            Ok(None)
        }
    }

    /// Whether `key` is this volume's key (PBKDF2 digest, compared in constant time).
    pub fn check_key(&self, key: &[u8]) -> bool {
        let mut digest = crate::secret::Secret::zeroed(20);
        self.hash.pbkdf2(
            key,
            &self.raw.mk_digest_salt,
            self.raw.mk_digest_iter,
            digest.as_mut_bytes(),
        );
        digest.ct_eq(&self.raw.mk_digest)
    }

    /// The text `cryptsetup luksDump` prints for this header.
    pub fn dump(&self) -> String {
        let mut s = String::from("LUKS header information\n\n");
        s += "Version:       \t1\n";
        s += &format!("Cipher name:   \t{}\n", self.cipher_name);
        s += &format!("Cipher mode:   \t{}\n", self.cipher_mode);
        s += &format!("Hash spec:     \t{}\n", self.hash.name());
        s += &format!("Payload offset:\t{}\n", self.raw.payload_offset);
        s += &format!("MK bits:       \t{}\n", self.raw.key_bytes * 8);
        let digest: String = self
            .raw
            .mk_digest
            .iter()
            .map(|b| format!("{b:02x} "))
            .collect();
        s += &format!("MK digest:     \t{digest}\n");
        s += &format!(
            "MK salt:       \t{}\n",
            hex_lines(&self.raw.mk_digest_salt, "               \t")
        );
        s += &format!("MK iterations: \t{}\n", self.raw.mk_digest_iter);
        s += &format!("UUID:          \t{}\n\n", self.uuid);
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.active {
                s += &format!("Key Slot {i}: DISABLED\n");
                continue;
            }
            s += &format!("Key Slot {i}: ENABLED\n");
            s += &format!("\tIterations:         \t{}\n", slot.iterations);
            s += &format!(
                "\tSalt:               \t{}\n",
                hex_lines(&slot.salt, "\t                      \t")
            );
            s += &format!(
                "\tKey material offset:\t{}\n",
                slot.material_offset / SECTOR
            );
            s += &format!("\tAF stripes:            \t{}\n", slot.stripes);
        }
        s
    }

    pub fn dump_json(&self) -> serde_json::Value {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let slots: serde_json::Map<String, serde_json::Value> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .map(|(i, s)| {
                (
                    i.to_string(),
                    json!({
                        "iterations": s.iterations,
                        "salt": hex(&s.salt),
                        "key_material_offset": s.material_offset,
                        "stripes": s.stripes,
                    }),
                )
            })
            .collect();
        json!({
            "version": 1,
            "uuid": self.uuid,
            "cipher": self.segment.cipher.as_str(),
            "hash": self.hash.name(),
            "payload_offset": self.segment.offset.get(),
            "key_size": self.segment.key_size,
            "sector_size": 512,
            "mk_digest": hex(&self.raw.mk_digest),
            "mk_digest_salt": hex(&self.raw.mk_digest_salt),
            "mk_digest_iterations": self.raw.mk_digest_iter,
            "keyslots": slots,
        })
    }
}

// ---- Writing: new headers and keyslot updates (as cryptsetup lays them out) ----

/// Key material areas start 4096-byte aligned, as cryptsetup aligns them
/// (`LUKS_ALIGN_KEYSLOTS`); the first one right after the (aligned) 592-byte header.
pub const AREA_ALIGN: u64 = 4096;

/// Sectors of one keyslot's key material area for a key of `key_bytes`, 4096-byte aligned.
fn area_sectors(key_bytes: u32) -> u64 {
    (u64::from(key_bytes) * u64::from(STRIPES)).div_ceil(AREA_ALIGN) * AREA_ALIGN / SECTOR
}

/// cryptsetup's layout of a LUKS1 header for a key of `key_bytes`: the key material offset of
/// each keyslot (in sectors) and the size of the whole header in bytes (where the payload would
/// start in a non-detached volume).
pub fn layout(key_bytes: u32) -> ([u32; KEYSLOTS], u64) {
    let first = AREA_ALIGN / SECTOR;
    let step = area_sectors(key_bytes);
    let mut offsets = [0u32; KEYSLOTS];
    for (i, o) in offsets.iter_mut().enumerate() {
        *o = (first + i as u64 * step) as u32; // at most 8 + 8 × 1000 sectors
    }
    (offsets, (first + KEYSLOTS as u64 * step) * SECTOR)
}

/// Copies `s` into a NUL-padded fixed-size field (the caller keeps it short enough).
fn put_str<const N: usize>(s: &str) -> [u8; N] {
    let mut f = [0u8; N];
    f[..s.len()].copy_from_slice(s.as_bytes());
    f
}

/// A new LUKS1 header image without any active keyslot: the 592-byte header (zeros up to the
/// first key material area) followed by 8 key material areas filled with random bytes.
/// The volume key digest gets `digest_iterations` PBKDF2 iterations of `hash`.
pub fn new_image(
    cipher: &str,
    hash: HashAlg,
    volume_key: &[u8],
    payload_offset: u32,
    uuid: &str,
    digest_iterations: u32,
) -> Result<Vec<u8>> {
    let spec = CipherSpec::parse(cipher)?;
    spec.check_key_size(volume_key.len())?;
    let (name, mode) = cipher
        .split_once('-')
        .ok_or_else(|| Error::usage(format!("invalid cipher '{cipher}'")))?;
    if name.len() >= 32 || mode.len() >= 32 || uuid.len() >= 40 {
        return Err(Error::usage("cipher or UUID too long for LUKS1"));
    }
    let key_bytes = volume_key.len() as u32;
    let (offsets, size) = layout(key_bytes);
    let mut image = vec![0u8; size as usize];
    crate::secret::fill_random(&mut image[AREA_ALIGN as usize..])?;
    let mut mk_digest_salt = [0u8; 32];
    crate::secret::fill_random(&mut mk_digest_salt)?;
    let mut mk_digest = [0u8; 20];
    hash.pbkdf2(
        volume_key,
        &mk_digest_salt,
        digest_iterations,
        &mut mk_digest,
    );
    let mut slots = [RawSlot::default(); KEYSLOTS];
    for (s, off) in slots.iter_mut().zip(offsets) {
        *s = RawSlot {
            active: SLOT_DISABLED,
            iterations: 0,
            salt: [0; 32],
            key_material_offset: off,
            stripes: STRIPES,
        };
    }
    let raw = RawHeader {
        version: 1,
        cipher_name: put_str(name),
        cipher_mode: put_str(mode),
        hash_spec: put_str(hash.name()),
        payload_offset,
        key_bytes,
        mk_digest,
        mk_digest_salt,
        mk_digest_iter: digest_iterations,
        uuid: put_str(uuid),
        slots,
    };
    image[..HEADER_SIZE].copy_from_slice(&raw.encode());
    Ok(image)
}

impl Luks1 {
    /// Byte range of keyslot `slot`'s key material (whole sectors).
    pub fn material_range(&self, slot: u32) -> Result<std::ops::Range<u64>> {
        let s = self
            .slots
            .get(slot as usize)
            .ok_or_else(|| Error::usage(format!("keyslot {slot} out of range 0..=7")))?;
        let len = round_up_sector(self.segment.key_size as u64 * u64::from(s.stripes));
        Ok(s.material_offset..s.material_offset + len)
    }

    /// Stores `volume_key` in keyslot `slot` of `image` (the whole header file) under the key
    /// `kdf` derives from `passphrase`; `kdf` must be PBKDF2 with the header's hash. Whatever
    /// the slot held before is overwritten.
    pub fn store_slot(
        &self,
        image: &mut [u8],
        slot: u32,
        volume_key: &[u8],
        passphrase: &[u8],
        kdf: &Kdf,
    ) -> Result<()> {
        let (iterations, salt) = match kdf {
            Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } if *hash == self.hash && salt.len() == 32 => (*iterations, salt),
            _ => {
                return Err(Error::usage(format!(
                    "LUKS1 keyslots use PBKDF2 with the header's hash ({})",
                    self.hash.name()
                )))
            }
        };
        if !self.check_key(volume_key) {
            return Err(Error::usage("not this volume's key"));
        }
        let range = self.material_range(slot)?;
        if range.end > image.len() as u64 {
            return Err(Error::format(format!(
                "keyslot {slot}: key material area ends past the end of the header file"
            )));
        }
        let derived = kdf.derive(passphrase, volume_key.len())?;
        let material = super::seal_key_material(
            self.segment.cipher.as_str(),
            derived.as_bytes(),
            volume_key,
            STRIPES,
            self.hash,
        )?;
        drop(derived);
        image[range.start as usize..range.end as usize].copy_from_slice(material.as_bytes());
        let mut raw = self.raw.clone();
        let s = &mut raw.slots[slot as usize];
        s.active = SLOT_ENABLED;
        s.iterations = iterations;
        s.salt.copy_from_slice(salt);
        s.stripes = STRIPES;
        image[..HEADER_SIZE].copy_from_slice(&raw.encode());
        Ok(())
    }

    /// Disables keyslot `slot` in `image` as cryptsetup does (state 0x0000DEAD, iterations and
    /// salt zeroed) and overwrites its key material with random bytes. Returns the byte range
    /// of the material, for wiping other copies of the file.
    pub fn wipe_slot(&self, image: &mut [u8], slot: u32) -> Result<std::ops::Range<u64>> {
        let range = self.material_range(slot)?;
        let end = range.end.min(image.len() as u64);
        if range.start < end {
            crate::secret::fill_random(&mut image[range.start as usize..end as usize])?;
        }
        let mut raw = self.raw.clone();
        let s = &mut raw.slots[slot as usize];
        s.active = SLOT_DISABLED;
        s.iterations = 0;
        s.salt = [0; 32];
        image[..HEADER_SIZE].copy_from_slice(&raw.encode());
        Ok(range)
    }
}

fn round_up_sector(n: u64) -> u64 {
    n.div_ceil(SECTOR) * SECTOR
}
