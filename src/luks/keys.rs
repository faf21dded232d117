//! Keyslot changes on a whole header file image, for either LUKS version: store a volume key
//! under a passphrase, remove a keyslot. The caller reads and writes the file (see
//! [`super::update`]); nothing here touches a file.

use super::kdf::Kdf;
use super::Header;
use crate::error::{Error, Result};
use std::ops::Range;

/// Highest keyslot number of each version.
pub fn max_slot(header: &Header) -> u32 {
    match header {
        Header::Luks1(_) => super::luks1::KEYSLOTS as u32 - 1,
        Header::Luks2(_) => super::luks2::metadata::MAX_ID,
    }
}

/// The lowest inactive keyslot.
pub fn free_slot(header: &Header) -> Result<u32> {
    (0..=max_slot(header))
        .find(|s| !header.slot_active(*s))
        .ok_or_else(|| Error::usage("all keyslots are full"))
}

/// Active keyslots (in slot order, whatever their priority).
pub fn active_slots(header: &Header) -> Vec<u32> {
    (0..=max_slot(header))
        .filter(|s| header.slot_active(*s))
        .collect()
}

/// Stores `volume_key` in keyslot `slot` under the key `kdf` derives from `passphrase`
/// (replacing what the slot held). For LUKS2 the sequence id is bumped.
pub fn store(
    image: &mut [u8],
    header: &Header,
    slot: u32,
    volume_key: &[u8],
    passphrase: &[u8],
    kdf: &Kdf,
) -> Result<()> {
    if slot > max_slot(header) {
        return Err(Error::usage(format!(
            "keyslot {slot} out of range 0..={}",
            max_slot(header)
        )));
    }
    match header {
        Header::Luks1(h) => h.store_slot(image, slot, volume_key, passphrase, kdf),
        Header::Luks2(h) => h.store_keyslot(image, slot, volume_key, passphrase, kdf),
    }
}

/// Removes keyslot `slot`: its key material is overwritten with random bytes and the slot
/// marked inactive. Returns the byte range of the material (to wipe in the old file too).
pub fn remove(image: &mut [u8], header: &Header, slot: u32) -> Result<Range<u64>> {
    if !header.slot_active(slot) {
        return Err(Error::usage(format!("keyslot {slot} is not active")));
    }
    match header {
        Header::Luks1(h) => h.wipe_slot(image, slot),
        Header::Luks2(h) => h.wipe_keyslot(image, slot),
    }
}

/// The byte range of keyslot `slot`'s key material.
pub fn material_range(header: &Header, slot: u32) -> Result<Range<u64>> {
    match header {
        Header::Luks1(h) => h.material_range(slot),
        Header::Luks2(h) => {
            let k = h
                .metadata()
                .keyslots
                .get(&slot)
                .ok_or_else(|| Error::usage(format!("keyslot {slot} is not active")))?;
            Ok(k.area.offset..k.area.offset + k.area.size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::format::{build, FormatOptions, KdfOptions};

    fn fast_kdf() -> KdfOptions {
        KdfOptions {
            pbkdf: Some("pbkdf2".into()),
            force_iterations: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn add_change_and_remove_keys_keep_the_volume_key() {
        for version in [1u16, 2] {
            let plan = FormatOptions {
                version,
                key_bits: Some(256),
                kdf: fast_kdf(),
                ..Default::default()
            }
            .check()
            .unwrap();
            let (mut image, vk) = build(&plan, None, b"one").unwrap();
            let kdf = plan.kdf.make(32).unwrap();
            let h = Header::parse(&image).unwrap();
            let slot = free_slot(&h).unwrap();
            assert_eq!(slot, 1);
            store(&mut image, &h, slot, vk.as_bytes(), b"two", &kdf).unwrap();
            let h = Header::parse(&image).unwrap();
            assert_eq!(active_slots(&h), vec![0, 1]);
            assert_eq!(h.unlock(&image, b"two", None).unwrap().slot, 1);
            // Change slot 0's passphrase in place.
            store(&mut image, &h, 0, vk.as_bytes(), b"three", &kdf).unwrap();
            let h = Header::parse(&image).unwrap();
            assert!(h.unlock(&image, b"one", None).is_err());
            let u = h.unlock(&image, b"three", None).unwrap();
            assert_eq!((u.slot, u.key.as_bytes()), (0, vk.as_bytes()));
            let r = remove(&mut image, &h, 1).unwrap();
            assert!(r.start >= 4096 && r.end <= image.len() as u64);
            let h = Header::parse(&image).unwrap();
            assert_eq!(active_slots(&h), vec![0]);
            assert_eq!(h.unlock(&image, b"two", None).unwrap_err().exit_code(), 2);
            // A wrong volume key is never stored.
            let wrong = [7u8; 32];
            assert!(store(&mut image, &h, 2, &wrong, b"x", &kdf).is_err());
        }
    }
}
