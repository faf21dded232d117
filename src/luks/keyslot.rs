//! The keyslot pipeline both LUKS versions share, as cryptsetup's `luks2_keyslot_luks2.c` and
//! `keymanage.c` run it:
//!
//! * open: derive a key from the passphrase with the keyslot's KDF → read the key material
//!   area → decrypt it (the area cipher, 512-byte sectors, IVs from 0) → AF merge → ask the
//!   version whether the candidate is the volume key (LUKS1: the `mk_digest` PBKDF2, LUKS2: the
//!   digest object).
//! * seal: the reverse: AF split with random stripes → pad to whole sectors with random bytes →
//!   encrypt with the key derived from the new passphrase.
//!
//! Each version only says where the area is and which KDF, cipher, stripes and AF hash it
//! uses ([`Keyslot`]); nothing here knows of headers or JSON.

use super::kdf::Kdf;
use super::{af, ReadAt};
use crate::crypto::hash::HashAlg;
use crate::crypto::{CipherSpec, SectorCipher};
use crate::error::{Error, Result};
use crate::secret::{Secret, VolumeKey};
use crate::units::{Iv, IvStep, SectorSize};
use std::ops::Range;

/// Keyslot areas are encrypted in 512-byte sectors whatever the data segment uses.
pub const AREA_SECTOR: usize = 512;

/// What both versions say about one keyslot: where its key material lies and how it is
/// protected. Sizes are bounded by each version's validation (key sizes ≤ 512 bytes, stripes
/// ≤ 1 000 000), so the products below cannot overflow.
#[derive(Debug, Clone, Copy)]
pub struct Keyslot<'a> {
    /// Byte offset of the key material in the header file.
    pub offset: u64,
    /// Volume key length in bytes.
    pub key_size: usize,
    /// Anti-forensic stripes.
    pub stripes: u32,
    /// Hash of the AF diffuser.
    pub af_hash: HashAlg,
    /// The cipher the key material is encrypted with, e.g. `aes-xts-plain64`, parsed.
    pub cipher: CipherSpec,
    /// Length of the key derived from the passphrase (the area cipher's key size).
    pub cipher_key_size: usize,
    /// The KDF turning the passphrase into that key.
    pub kdf: &'a Kdf,
}

impl Keyslot<'_> {
    /// Bytes of AF-split key material, or `None` if that overflows.
    pub fn af_len(&self) -> Option<usize> {
        af::split_len(self.key_size, self.stripes)
    }

    /// AF material rounded up to whole 512-byte sectors: what is read and decrypted.
    pub fn material_len(&self) -> Option<usize> {
        Some(self.af_len()?.div_ceil(AREA_SECTOR) * AREA_SECTOR)
    }
}

fn too_large() -> Error {
    Error::format("keyslot key material is too large")
}

/// Opens keyslot `ks` of `src` with `passphrase`: `Ok(None)` when the merged key is not the
/// volume key according to `verify` (a wrong passphrase).
pub fn open(
    src: &dyn ReadAt,
    ks: &Keyslot<'_>,
    passphrase: &[u8],
    verify: impl FnOnce(&[u8]) -> Result<bool>,
) -> Result<Option<VolumeKey>> {
    let af_len = ks.af_len().ok_or_else(too_large)?;
    let len = ks.material_len().ok_or_else(too_large)?;
    // Check the area lies in the file before allocating or deriving anything.
    let end = u64::try_from(len)
        .ok()
        .and_then(|l| ks.offset.checked_add(l));
    if end.is_none_or(|e| e > src.size()) {
        return Err(Error::truncated(
            format!(
                "key material at offset {} ({len} bytes) lies past the end of the header file ({} bytes)",
                ks.offset,
                src.size()
            ),
            end.unwrap_or(u64::MAX),
            src.size(),
        )
        .at_offset(ks.offset));
    }
    let mut material = Secret::zeroed(len);
    src.read_exact_at(material.as_mut_bytes(), ks.offset)?;
    let derived = ks.kdf.derive(passphrase, ks.cipher_key_size)?;
    SectorCipher::new(&ks.cipher, derived.as_bytes())?.decrypt_sectors(
        material.as_mut_bytes(),
        SectorSize::MIN,
        Iv(0),
        IvStep::ONE,
    );
    drop(derived);
    let key = af::merge(
        &material.as_bytes()[..af_len],
        ks.key_size,
        ks.stripes,
        ks.af_hash,
    )?;
    drop(material);
    if verify(key.as_bytes())? {
        Ok(Some(VolumeKey(key)))
    } else {
        Ok(None)
    }
}

/// Makes the key material of keyslot `ks` for `volume_key` under `passphrase`: AF split
/// (random stripes from the OS CSPRNG), random padding to whole 512-byte sectors, encrypted
/// with the key `ks.kdf` derives (IVs from 0, as [`open`] expects). The result is
/// [`Keyslot::material_len`] bytes long.
pub fn seal(ks: &Keyslot<'_>, volume_key: &[u8], passphrase: &[u8]) -> Result<Secret> {
    if volume_key.len() != ks.key_size {
        return Err(Error::usage(format!(
            "volume key of {} bytes, but the keyslot holds {} bytes",
            volume_key.len(),
            ks.key_size
        )));
    }
    let af_len = ks
        .af_len()
        .ok_or_else(|| Error::usage("key material too large"))?;
    let len = ks
        .material_len()
        .ok_or_else(|| Error::usage("key material too large"))?;
    let derived = ks.kdf.derive(passphrase, ks.cipher_key_size)?;
    let random = Secret::random(af_len - volume_key.len())?;
    let split = af::split(volume_key, ks.stripes, ks.af_hash, random.as_bytes())?;
    drop(random);
    let mut material = Secret::random(len)?;
    material.as_mut_bytes()[..af_len].copy_from_slice(split.as_bytes());
    drop(split);
    SectorCipher::new(&ks.cipher, derived.as_bytes())?.encrypt_sectors(
        material.as_mut_bytes(),
        SectorSize::MIN,
        Iv(0),
        IvStep::ONE,
    );
    Ok(material)
}

/// `range` of `image` (a whole header file) as indices, if it lies inside it.
pub(crate) fn within(image: &[u8], range: &Range<u64>) -> Option<Range<usize>> {
    let (a, b) = (
        usize::try_from(range.start).ok()?,
        usize::try_from(range.end).ok()?,
    );
    (a <= b && b <= image.len()).then_some(a..b)
}

/// Overwrites the key material area `range` of `image` with random bytes (the part of it
/// inside the image), as removing a keyslot does in either version.
pub(crate) fn wipe_area(image: &mut [u8], range: &Range<u64>) -> Result<()> {
    let end = range.end.min(image.len() as u64);
    if let Some(r) = within(image, &(range.start..end)) {
        crate::secret::fill_random(&mut image[r])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_material_opens_with_its_passphrase_only() {
        let kdf = Kdf::Pbkdf2 {
            hash: HashAlg::Sha256,
            iterations: 1000,
            salt: vec![3; 32],
        };
        let vk = [0x5au8; 32];
        let mut ks = Keyslot {
            offset: 0,
            key_size: 32,
            stripes: 10,
            af_hash: HashAlg::Sha256,
            cipher: CipherSpec::parse("aes-xts-plain64").unwrap(),
            cipher_key_size: 32,
            kdf: &kdf,
        };
        let m = seal(&ks, &vk, b"pw").unwrap();
        assert_eq!(m.len(), 512);
        let mut image = vec![0u8; 4096];
        image[1024..1536].copy_from_slice(m.as_bytes());
        ks.offset = 1024;
        let is_vk = |k: &[u8]| Ok(k == vk);
        let got = open(&image, &ks, b"pw", is_vk).unwrap().unwrap();
        assert_eq!(got.as_bytes(), vk);
        assert!(open(&image, &ks, b"other", is_vk).unwrap().is_none());
        ks.offset = 4096 - 256;
        assert_eq!(open(&image, &ks, b"pw", is_vk).unwrap_err().exit_code(), 4);
    }
}
