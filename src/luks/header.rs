//! [`Header`]: a parsed LUKS header of either version, and the one place that dispatches on
//! the version. Everything a caller does with a header (unlock, change keyslots, dump) goes
//! through its methods, which have the same names as the per-version ones they call.

use super::format::KdfOptions;
use super::kdf::{Kdf, KdfChoice};
use super::{luks1, luks2, ReadAt, Segment, Unlocked, MAGIC};
use crate::error::{Error, Kind, Reason, Result};
use crate::secret::VolumeKey;
use std::ops::Range;

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
            .map_err(|e| match e.reason() {
                // A read that failed is not a short file.
                Reason::Os(_) => e,
                _ => Error::format("not a LUKS header (file too short)"),
            })?;
        let version = u16::from_be_bytes([start[6], start[7]]);
        if &start[..6] != MAGIC {
            // A LUKS2 header whose primary copy is damaged may still have a secondary.
            match luks2::Luks2::parse(src) {
                Ok(h) => return Ok(Header::Luks2(h)),
                Err(e) if e.reason() == Reason::AmbiguousSignature => return Err(e),
                Err(_) => {}
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

    /// The LUKS1 header, if it is one.
    pub fn as_luks1(&self) -> Option<&luks1::Luks1> {
        match self {
            Header::Luks1(h) => Some(h),
            Header::Luks2(_) => None,
        }
    }

    /// The LUKS2 header, if it is one.
    pub fn as_luks2(&self) -> Option<&luks2::Luks2> {
        match self {
            Header::Luks1(_) => None,
            Header::Luks2(h) => Some(h),
        }
    }

    pub fn uuid(&self) -> &str {
        match self {
            Header::Luks1(h) => h.uuid(),
            Header::Luks2(h) => h.uuid(),
        }
    }

    /// The LUKS2 persistent activation flags (`config.flags`, as cryptsetup's `luksDump`
    /// lists them under "Flags"); none for LUKS1.
    pub fn persistent_flags(&self) -> &[String] {
        match self.as_luks2() {
            Some(h) => &h.metadata().config.flags,
            None => &[],
        }
    }

    /// Whether the header asks for discards on every activation (LUKS2 `config.flags` holds
    /// `allow-discards`, set by `cryptsetup refresh --allow-discards --persistent`); cryptsetup
    /// adds the flags it knows to those of the command line.
    pub fn persistent_allow_discards(&self) -> bool {
        self.persistent_flags()
            .iter()
            .any(|f| f == "allow-discards")
    }

    /// The (single) data segment.
    pub fn segment(&self) -> &Segment {
        match self {
            Header::Luks1(h) => h.segment(),
            Header::Luks2(h) => h.segment(),
        }
    }

    /// Highest keyslot number of the version.
    pub fn max_slot(&self) -> u32 {
        match self {
            Header::Luks1(_) => luks1::MAX_SLOT,
            Header::Luks2(_) => luks2::metadata::MAX_ID,
        }
    }

    /// Active keyslots in the order they are tried: LUKS2 priority (high before normal; slots
    /// with priority "ignore" only when asked for by number), then slot number. LUKS2: only
    /// keyslots bound to the data segment, those luksfuse cannot use among them
    /// ([`Header::unusable`]; [`Header::unlock`] passes over them).
    pub fn slots_to_try(&self) -> Vec<u32> {
        match self {
            Header::Luks1(h) => h.active_slots(),
            Header::Luks2(h) => h.slots_to_try(),
        }
    }

    /// Whether `slot` exists and is active.
    pub fn slot_active(&self, slot: u32) -> bool {
        match self {
            Header::Luks1(h) => h.slot_active(slot),
            Header::Luks2(h) => h.slot_active(slot),
        }
    }

    /// Active keyslots (in slot order, whatever their priority).
    pub fn active_slots(&self) -> Vec<u32> {
        match self {
            Header::Luks1(h) => h.active_slots(),
            Header::Luks2(h) => h.active_slots(),
        }
    }

    /// The lowest inactive keyslot.
    pub fn free_slot(&self) -> Result<u32> {
        (0..=self.max_slot())
            .find(|s| !self.slot_active(*s))
            .ok_or_else(|| Error::usage("all keyslots are full"))
    }

    /// The byte range of keyslot `slot`'s key material.
    pub fn keyslot_area(&self, slot: u32) -> Result<Range<u64>> {
        match self {
            Header::Luks1(h) => h.keyslot_area(slot),
            Header::Luks2(h) => h.keyslot_area(slot),
        }
    }

    /// Where the header's own bytes end (binary headers, JSON areas, keyslot areas): in an
    /// image that holds its header, the data must start at or after this byte.
    pub fn metadata_end(&self) -> u64 {
        match self {
            // cryptsetup's LUKS_device_sectors: the last keyslot area's end, on 4 KiB.
            Header::Luks1(h) => (0..=self.max_slot())
                .filter_map(|s| h.keyslot_area(s).ok())
                .map(|a| a.end.div_ceil(4096) * 4096)
                .fold(4096, u64::max),
            // Both bounded by the parser (hdr_size <= 4 MiB, keyslots_size <= 128 MiB).
            Header::Luks2(h) => 2 * h.hdr_size() + h.keyslots_size(),
        }
    }

    /// Where this header ends ([`Self::metadata_end`]) when it is the start of a file of
    /// `file_len` bytes that holds the data after it (an image holding its header: the data
    /// starts past the header's bytes and there is data); `None` for a detached header.
    pub fn attached_end(&self, file_len: u64) -> Option<u64> {
        let (data, end) = (self.segment().offset.get(), self.metadata_end());
        (data > 0 && end <= data && file_len > data).then_some(end)
    }

    /// The header's bytes, from 0 to [`Self::metadata_end`], read from `src`.
    pub fn read_metadata(&self, src: &dyn ReadAt) -> Result<Vec<u8>> {
        let end = usize::try_from(self.metadata_end()).expect("bounded by the parser");
        let mut bytes = vec![0u8; end];
        src.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// Tries one keyslot bound to the data segment: `Ok(None)` when the passphrase is wrong
    /// for it; an unbound keyslot is an error (its key is not the volume key).
    pub fn open_keyslot(
        &self,
        src: &dyn ReadAt,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        if !self.bound(slot) && self.slot_active(slot) {
            return Err(Error::usage(
                "not assigned to the data segment (unbound key); it cannot unlock the volume",
            )
            .because(Reason::UnboundKeyslot)
            .in_keyslot(slot));
        }
        self.open_any_keyslot(src, slot, passphrase)
    }

    /// Tries one keyslot, bound or not (an unbound one gives its own key).
    fn open_any_keyslot(
        &self,
        src: &dyn ReadAt,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        match self {
            Header::Luks1(h) => h.open_keyslot(src, slot, passphrase),
            Header::Luks2(h) => h.open_keyslot(src, slot, passphrase),
        }
    }

    /// Whether `key` is this volume's key.
    pub fn verify_key(&self, key: &[u8]) -> Result<bool> {
        match self {
            Header::Luks1(h) => h.verify_key(key),
            Header::Luks2(h) => h.verify_key(key),
        }
    }

    /// Why luksfuse cannot open keyslot `slot` (LUKS2: an unknown keyslot type or KDF, a
    /// cipher luksfuse lacks, ...), if it exists and cannot.
    pub fn unusable(&self, slot: u32) -> Option<&Error> {
        match self {
            Header::Luks1(_) => None,
            Header::Luks2(h) => h.unusable(slot),
        }
    }

    /// Whether keyslot `slot` unlocks the data segment (LUKS2 keyslots can be unbound).
    pub fn bound(&self, slot: u32) -> bool {
        match self {
            Header::Luks1(h) => h.slot_active(slot),
            Header::Luks2(h) => h.bound(slot),
        }
    }

    /// Whether luksfuse can map the data segment (as cryptsetup activates it): LUKS2 headers
    /// may have several segments or ones of other types, which `dump` shows but `mount`
    /// refuses.
    pub fn mappable(&self) -> Result<()> {
        match self {
            Header::Luks1(_) => Ok(()),
            Header::Luks2(h) => h.mappable(),
        }
    }

    /// Tries `slot` or, if `None`, the keyslots bound to the data segment in order, as
    /// cryptsetup does. A keyslot luksfuse cannot use is skipped (noted in the log) and the
    /// others are tried; unlike cryptsetup, which gives up at the first such keyslot it meets,
    /// one before a good keyslot does not stop it. Asked for by number, an unbound keyslot is
    /// opened ([`Unlocked::bound`] is then false); without a number, a passphrase that opens
    /// only an unbound keyslot is an error that says so.
    pub fn unlock(
        &self,
        src: &dyn ReadAt,
        passphrase: &[u8],
        slot: Option<u32>,
    ) -> Result<Unlocked> {
        let unlocked = |key, slot| Unlocked {
            key,
            slot,
            bound: self.bound(slot),
        };
        if let Some(s) = slot {
            if !self.slot_active(s) {
                return Err(inactive(s));
            }
            if let Some(why) = self.unusable(s) {
                return Err(unusable(s, why));
            }
            log::debug!("trying keyslot {s}");
            return match self.open_any_keyslot(src, s, passphrase) {
                Ok(Some(key)) => Ok(unlocked(key, s)),
                Ok(None) => Err(Error::wrong_key("No key available with this passphrase.")
                    .with_hint(format!("tried keyslot {s}"))),
                Err(e) => Err(e.in_keyslot(s)),
            };
        }
        let slots = self.slots_to_try();
        let mut skipped = Vec::new();
        let mut tried = Vec::new();
        for s in &slots {
            if let Some(why) = self.unusable(*s) {
                log::info!("keyslot {s} skipped: {}", why.message());
                // cryptsetup passes over a keyslot of a type it does not know, but stops at
                // a `luks2` one it cannot open.
                if self
                    .as_luks2()
                    .is_some_and(|h| h.keyslot_kind(*s) == Some("luks2"))
                {
                    skipped.push((*s, why));
                }
                continue;
            }
            log::debug!("trying keyslot {s}");
            tried.push(s.to_string());
            match self.open_keyslot(src, *s, passphrase) {
                Ok(Some(key)) => return Ok(unlocked(key, *s)),
                Ok(None) => continue,
                Err(e) => return Err(e.in_keyslot(*s)),
            }
        }
        if let Header::Luks2(h) = self {
            for s in h.unbound_slots() {
                log::debug!("trying unbound keyslot {s}");
                if let Some(_key) = self.open_any_keyslot(src, s, passphrase).ok().flatten() {
                    return Err(Error::usage(
                        "the passphrase opens an unbound keyslot: it is not assigned to the \
                         data segment and cannot unlock the volume",
                    )
                    .because(Reason::UnboundKeyslot)
                    .in_keyslot(s));
                }
            }
        }
        if let Some((s, why)) = skipped.first() {
            // cryptsetup stops at such a keyslot ("Keyslot open failed.").
            let mut e = Error::new(
                unusable_kind(why),
                format!(
                    "No usable keyslot opens with this passphrase; keyslot {s} cannot be used: {}",
                    why.message()
                ),
            )
            .because(unusable_reason(why));
            if !tried.is_empty() {
                e = e.with_hint(format!("tried keyslot(s) {}", tried.join(", ")));
            }
            return Err(e);
        }
        if tried.is_empty() {
            // cryptsetup: exit 1.
            return Err(Error::usage("No usable keyslot is available."));
        }
        Err(Error::wrong_key("No key available with this passphrase.")
            .with_hint(format!("tried keyslot(s) {}", tried.join(", "))))
    }

    /// The KDF choice for a new keyslot of this header from the command line's options
    /// (LUKS1 keyslots are PBKDF2 of the header's hash).
    pub fn kdf_choice(&self, opts: &KdfOptions) -> Result<KdfChoice> {
        match self {
            Header::Luks1(h) => opts.choice(1, Some(h.hash())),
            Header::Luks2(_) => opts.choice(2, None),
        }
    }

    /// Stores `volume_key` in keyslot `slot` of `image` (the whole header file) under the key
    /// `kdf` derives from `passphrase`, replacing what the slot held. For LUKS2 the sequence
    /// id is bumped.
    pub fn seal_keyslot(
        &self,
        image: &mut [u8],
        slot: u32,
        volume_key: &[u8],
        passphrase: &[u8],
        kdf: &Kdf,
    ) -> Result<()> {
        if slot > self.max_slot() {
            return Err(Error::usage(format!(
                "keyslot {slot} out of range 0..={}",
                self.max_slot()
            )));
        }
        // As cryptsetup: an unknown requirement forbids new keyslots (removing them is allowed).
        if let Header::Luks2(h) = self {
            h.requirements_met()?;
        }
        match self {
            Header::Luks1(h) => h.seal_keyslot(image, slot, volume_key, passphrase, kdf),
            Header::Luks2(h) => h.seal_keyslot(image, slot, volume_key, passphrase, kdf),
        }
    }

    /// Removes keyslot `slot`: its key material is overwritten with random bytes and the slot
    /// marked inactive. Returns the byte range of the material (to wipe in the old file too).
    pub fn wipe_keyslot(&self, image: &mut [u8], slot: u32) -> Result<Range<u64>> {
        if !self.slot_active(slot) {
            return Err(Error::usage(format!("keyslot {slot} is not active")));
        }
        // Keys stay as they are until a reencryption is finished (its keyslot and the
        // keyslots of the volume key are what resuming it needs).
        if let Some(e) = self.as_luks2().and_then(luks2::Luks2::reencryption_refusal) {
            return Err(e);
        }
        match self {
            Header::Luks1(h) => h.wipe_keyslot(image, slot),
            Header::Luks2(h) => h.wipe_keyslot(image, slot),
        }
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

/// Keyslot `slot` is not active: exit 1, as cryptsetup's "No usable keyslot is available."
pub fn inactive(slot: u32) -> Error {
    Error::usage(format!("Keyslot {slot} is not active."))
        .because(Reason::InactiveKeyslot)
        .in_keyslot(slot)
}

/// The exit code of a keyslot that cannot be used because of `why`: 1, as cryptsetup's
/// "Keyslot open failed." (or "No usable keyslot is available." for another keyslot type),
/// but 3 for a KDF that wants more memory than allowed (cryptsetup's ENOMEM).
fn unusable_kind(why: &Error) -> Kind {
    match why.kind() {
        Kind::NoMem => Kind::NoMem,
        _ => Kind::Usage,
    }
}

fn unusable_reason(why: &Error) -> Reason {
    match why.kind() {
        Kind::NoMem => why.reason(),
        _ => Reason::UnusableKeyslot,
    }
}

/// Keyslot `slot` cannot be used, for the reason `why` (see [`unusable_kind`]).
fn unusable(slot: u32, why: &Error) -> Error {
    Error::new(
        unusable_kind(why),
        format!("cannot be used: {}", why.message()),
    )
    .because(unusable_reason(why))
    .in_keyslot(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::format::FormatOptions;
    use crate::testing;

    #[test]
    fn add_change_and_remove_keys_keep_the_volume_key() {
        for version in [1u16, 2] {
            let options = FormatOptions {
                key_bits: Some(256),
                ..testing::fast_options(version)
            };
            let kdf = options.clone().check().unwrap().kdf.make(32).unwrap();
            let (mut image, vk) = testing::header_image(options, None, b"one");
            let h = Header::parse(&image).unwrap();
            let slot = h.free_slot().unwrap();
            assert_eq!(slot, 1);
            h.seal_keyslot(&mut image, slot, vk.as_bytes(), b"two", &kdf)
                .unwrap();
            let h = Header::parse(&image).unwrap();
            assert_eq!(h.active_slots(), vec![0, 1]);
            assert_eq!(h.unlock(&image, b"two", None).unwrap().slot, 1);
            // Change slot 0's passphrase in place.
            h.seal_keyslot(&mut image, 0, vk.as_bytes(), b"three", &kdf)
                .unwrap();
            let h = Header::parse(&image).unwrap();
            assert!(h.unlock(&image, b"one", None).is_err());
            let u = h.unlock(&image, b"three", None).unwrap();
            assert_eq!((u.slot, u.key.as_bytes()), (0, vk.as_bytes()));
            let r = h.wipe_keyslot(&mut image, 1).unwrap();
            assert!(r.start >= 4096 && r.end <= image.len() as u64);
            let h = Header::parse(&image).unwrap();
            assert_eq!(h.active_slots(), vec![0]);
            assert_eq!(h.unlock(&image, b"two", None).unwrap_err().exit_code(), 2);
            // A wrong volume key is never stored.
            let wrong = [7u8; 32];
            assert!(h.seal_keyslot(&mut image, 2, &wrong, b"x", &kdf).is_err());
            assert!(h.verify_key(vk.as_bytes()).unwrap());
            assert!(!h.verify_key(&wrong).unwrap());
        }
    }

    #[test]
    fn unlock_errors_say_why_as_values() {
        for version in [1u16, 2] {
            let options = FormatOptions {
                key_bits: Some(256),
                ..testing::fast_options(version)
            };
            let (image, _) = testing::header_image(options, None, b"one");
            let h = Header::parse(&image).unwrap();
            let wrong = h.unlock(&image, b"two", None).unwrap_err();
            assert_eq!(
                (wrong.kind(), wrong.reason()),
                (Kind::NoKey, Reason::WrongKey)
            );
            let inactive = h.unlock(&image, b"one", Some(5)).unwrap_err();
            assert_eq!(inactive.reason(), Reason::InactiveKeyslot);
            // Key material cut off: the error names the keyslot and says the file is short.
            let start = usize::try_from(h.keyslot_area(0).unwrap().start).unwrap();
            let cut = &image[..start + 512];
            let e = h.unlock(&cut, b"one", None).unwrap_err();
            assert_eq!(e.keyslot(), Some(0), "{e}");
            assert!(matches!(e.reason(), Reason::Truncated { .. }), "{e:?}");
        }
    }
}
