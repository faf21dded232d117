//! Writing LUKS1: new headers and keyslot changes, laid out as cryptsetup lays them out.

use super::codec::{put_str, RawHeader, RawSlot, SECTOR};
use super::{Luks1, HEADER_SIZE, KEYSLOTS, MAX_SLOT, SLOT_DISABLED, SLOT_ENABLED, STRIPES};
use crate::crypto::hash::HashAlg;
use crate::crypto::CipherSpec;
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;
use crate::luks::keyslot;
use std::ops::Range;

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
pub fn layout(key_bytes: u32) -> Result<([u32; KEYSLOTS], u64)> {
    let too_big = || Error::usage(format!("key of {key_bytes} bytes too large for LUKS1"));
    let first = AREA_ALIGN / SECTOR;
    let step = area_sectors(key_bytes);
    let mut offsets = [0u32; KEYSLOTS];
    let mut at = first;
    for o in offsets.iter_mut() {
        *o = u32::try_from(at).map_err(|_| too_big())?;
        at = at.checked_add(step).ok_or_else(too_big)?;
    }
    Ok((offsets, at.checked_mul(SECTOR).ok_or_else(too_big)?))
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
    let (cipher_name, cipher_mode, uuid) = (put_str(name)?, put_str(mode)?, put_str(uuid)?);
    let key_bytes = u32::try_from(volume_key.len())
        .map_err(|_| Error::usage("volume key too large for LUKS1"))?;
    let (offsets, size) = layout(key_bytes)?;
    let size = usize::try_from(size).map_err(|_| Error::no_mem("LUKS1 header too large"))?;
    let mut image = vec![0u8; size];
    let first_area = usize::try_from(AREA_ALIGN).expect("4096");
    crate::secret::fill_random(&mut image[first_area..])?;
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
        cipher_name,
        cipher_mode,
        hash_spec: put_str(hash.name())?,
        payload_offset,
        key_bytes,
        mk_digest,
        mk_digest_salt,
        mk_digest_iter: digest_iterations,
        uuid,
        slots,
    };
    image[..HEADER_SIZE].copy_from_slice(&raw.encode());
    Ok(image)
}

impl Luks1 {
    /// Stores `volume_key` in keyslot `slot` of `image` (the whole header file) under the key
    /// `kdf` derives from `passphrase`; `kdf` must be PBKDF2 with the header's hash. Whatever
    /// the slot held before is overwritten.
    pub fn seal_keyslot(
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
        if !self.verify_key(volume_key)? {
            return Err(Error::usage("not this volume's key"));
        }
        let range = self.keyslot_area(slot)?;
        let at = keyslot::within(image, &range).ok_or_else(|| {
            Error::format(format!(
                "keyslot {slot}: key material area ends past the end of the header file"
            ))
        })?;
        let s = self.slot(slot).expect("keyslot_area checked the slot");
        let material = keyslot::seal(&self.pipeline(s, kdf)?, volume_key, passphrase)?;
        image[at].copy_from_slice(material.as_bytes());
        drop(material);
        let mut raw = self.raw.clone();
        let s = &mut raw.slots[slot_index(slot)?];
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
    pub fn wipe_keyslot(&self, image: &mut [u8], slot: u32) -> Result<Range<u64>> {
        let range = self.keyslot_area(slot)?;
        keyslot::wipe_area(image, &range)?;
        let mut raw = self.raw.clone();
        let s = &mut raw.slots[slot_index(slot)?];
        s.active = SLOT_DISABLED;
        s.iterations = 0;
        s.salt = [0; 32];
        image[..HEADER_SIZE].copy_from_slice(&raw.encode());
        Ok(range)
    }
}

fn slot_index(slot: u32) -> Result<usize> {
    usize::try_from(slot)
        .ok()
        .filter(|_| slot <= MAX_SLOT)
        .ok_or_else(|| Error::usage(format!("keyslot {slot} out of range 0..=7")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_cryptsetups() {
        // cryptsetup 2.6, aes-xts-plain64 with a 512-bit key: keyslots 8 + n × 512 sectors.
        let (offsets, size) = layout(64).unwrap();
        assert_eq!(offsets, [8, 512, 1016, 1520, 2024, 2528, 3032, 3536]);
        assert_eq!(size, 4040 * 512);
    }
}
