//! LUKS1: the 592-byte big-endian header and its 8 keyslots. [`codec`] reads, writes and
//! validates the header bytes, [`writer`] makes new headers and changes keyslots; this module
//! holds the validated header and opens keyslots through the shared [`crate::luks::keyslot`]
//! pipeline (the key is checked against the header's `mk_digest`).

pub mod codec;
pub mod writer;

use self::codec::round_up_sector;
pub use self::codec::{
    RawHeader, RawSlot, HEADER_SIZE, KEYSLOTS, SLOT_DISABLED, SLOT_ENABLED, STRIPES,
};
pub use self::writer::new_image;
use super::kdf::Kdf;
use super::keyslot::{self, Keyslot};
use super::{ReadAt, Segment};
use crate::crypto::hash::HashAlg;
use crate::crypto::CipherName;
use crate::error::{Error, Result};
use crate::secret::{Secret, VolumeKey};
use crate::units::{Bytes, SectorSize, Sectors512};
use std::ops::Range;

/// Highest keyslot number.
pub const MAX_SLOT: u32 = 7;

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

/// The data segment a LUKS1 header describes: the rest of the payload from `payload_offset`,
/// 512-byte sectors, no IV tweak.
fn data_segment(raw: &RawHeader, cipher: String, key_size: usize) -> Segment {
    Segment {
        offset: Bytes::from_sectors512_u32(raw.payload_offset),
        size: None,
        cipher: CipherName::new(cipher),
        key_size,
        sector_size: SectorSize::MIN,
        iv_tweak: Sectors512(0),
    }
}

impl Luks1 {
    /// Reads and validates the header from `src` (see [`Luks1::from_raw`]).
    pub fn parse(src: &dyn ReadAt) -> Result<Self> {
        let mut b = [0u8; HEADER_SIZE];
        src.read_exact_at(&mut b, 0)
            .map_err(|e| e.context("LUKS1 header"))?;
        if &b[..6] != super::MAGIC {
            return Err(Error::format("not a LUKS header (bad magic)"));
        }
        Self::from_raw(RawHeader::decode(&b), src.size())
    }

    pub fn raw(&self) -> &RawHeader {
        &self.raw
    }
    pub fn uuid(&self) -> &str {
        &self.uuid
    }
    pub fn cipher_name(&self) -> &str {
        &self.cipher_name
    }
    pub fn cipher_mode(&self) -> &str {
        &self.cipher_mode
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
        (0..=MAX_SLOT).filter(|&i| self.slot_active(i)).collect()
    }

    /// Whether `slot` exists and is active.
    pub fn slot_active(&self, slot: u32) -> bool {
        self.slot(slot).is_some_and(|s| s.active)
    }

    fn slot(&self, slot: u32) -> Option<&Slot> {
        self.slots.get(usize::try_from(slot).ok()?)
    }

    /// Byte range of keyslot `slot`'s key material (whole sectors).
    pub fn keyslot_area(&self, slot: u32) -> Result<Range<u64>> {
        let s = self
            .slot(slot)
            .ok_or_else(|| Error::usage(format!("keyslot {slot} out of range 0..=7")))?;
        let len = round_up_sector(u64::from(self.raw.key_bytes) * u64::from(s.stripes));
        Ok(s.material_offset..s.material_offset + len)
    }

    /// What the keyslot pipeline needs to know of `s`, with `kdf` its PBKDF2.
    fn pipeline<'a>(&'a self, s: &Slot, kdf: &'a Kdf) -> Result<Keyslot<'a>> {
        Ok(Keyslot {
            offset: s.material_offset,
            key_size: self.segment.key_size,
            stripes: s.stripes,
            af_hash: self.hash,
            cipher: self.segment.cipher.spec()?,
            cipher_key_size: self.segment.key_size,
            kdf,
        })
    }

    /// Tries `passphrase` on keyslot `slot`: `Ok(None)` when it is the wrong passphrase.
    pub fn open_keyslot(
        &self,
        src: &dyn ReadAt,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        let s = self
            .slot(slot)
            .filter(|s| s.active)
            .ok_or_else(|| Error::no_key(format!("Keyslot {slot} is not active.")))?;
        let kdf = Kdf::Pbkdf2 {
            hash: self.hash,
            iterations: s.iterations,
            salt: s.salt.to_vec(),
        };
        keyslot::open(src, &self.pipeline(s, &kdf)?, passphrase, |k| {
            self.verify_key(k)
        })
    }

    /// Whether `key` is this volume's key (PBKDF2 `mk_digest`, compared in constant time).
    pub fn verify_key(&self, key: &[u8]) -> Result<bool> {
        let mut digest = Secret::zeroed(self.raw.mk_digest.len());
        self.hash.pbkdf2(
            key,
            &self.raw.mk_digest_salt,
            self.raw.mk_digest_iter,
            digest.as_mut_bytes(),
        );
        Ok(digest.ct_eq(&self.raw.mk_digest))
    }
}
