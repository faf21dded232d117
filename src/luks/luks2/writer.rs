//! Writing LUKS2: new headers and keyslot changes. The metadata is built or changed as
//! [`JsonMetadata`] and both header copies are rewritten with the sequence id bumped.

pub use super::binary::Identity;
use super::binary::{self, Copy};
use super::json::{self, JsonConfig, JsonKeyslot, JsonMetadata, NewKeyslot};
use super::Luks2;
use crate::crypto::hash::HashAlg;
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;
use crate::luks::keyslot::{self, Keyslot};
use serde_json::Map;
use std::collections::BTreeMap;
use std::ops::Range;

/// Header size (binary + JSON) of new headers, cryptsetup's default (16 KiB).
pub const NEW_HDR_SIZE: u64 = 16 << 10;
/// Total size of new detached headers, cryptsetup's default (16 MiB): both header copies and
/// the keyslots area.
pub const NEW_FILE_SIZE: u64 = 16 << 20;
/// Keyslot areas are 4096-byte aligned, as cryptsetup allocates them.
pub const AREA_ALIGN: u64 = 4096;
/// The AF stripes every LUKS2 keyslot gets.
pub const STRIPES: u32 = 4000;

/// Writes both header copies (binary header, JSON padded with zeros, sha256 checksum) of
/// `hdr_size` bytes each into the start of `image`, with sequence id `seqid`.
pub fn write_copies(
    image: &mut [u8],
    hdr_size: u64,
    seqid: u64,
    id: &Identity<'_>,
    meta: &JsonMetadata,
) -> Result<()> {
    let text = meta.to_text()?;
    let primary = binary::encode_copy(Copy::Primary, hdr_size, seqid, id, &text)?;
    let secondary = binary::encode_copy(Copy::Secondary, hdr_size, seqid, id, &text)?;
    let len = primary.len();
    if image.len() < 2 * len {
        return Err(Error::format("header file too small for two header copies"));
    }
    image[..len].copy_from_slice(&primary);
    image[len..2 * len].copy_from_slice(&secondary);
    Ok(())
}

/// A new LUKS2 header image without keyslots: both header copies (seqid 1) and a keyslots
/// area of random bytes, `file_size` bytes in all. The one data segment is `cipher` with
/// `sector_size`, starting at byte `offset` of the payload; the volume key's digest is PBKDF2
/// of `digest_hash` with `digest_iterations`.
#[allow(clippy::too_many_arguments)]
pub fn new_image(
    file_size: u64,
    id: &Identity<'_>,
    cipher: &str,
    sector_size: u32,
    offset: u64,
    volume_key: &[u8],
    digest_hash: HashAlg,
    digest_iterations: u32,
) -> Result<Vec<u8>> {
    let hdr_size = NEW_HDR_SIZE;
    let keyslots_size = file_size
        .checked_sub(2 * hdr_size)
        .ok_or_else(|| Error::usage(format!("a header file of {file_size} bytes is too small")))?;
    let mut salt = vec![0u8; crate::luks::kdf::SALT_LEN];
    crate::secret::fill_random(&mut salt)?;
    let mut digest = vec![0u8; digest_hash.len()];
    digest_hash.pbkdf2(volume_key, &salt, digest_iterations, &mut digest);
    let meta = JsonMetadata {
        keyslots: BTreeMap::new(),
        tokens: BTreeMap::new(),
        segments: BTreeMap::from([(
            "0".to_owned(),
            json::new_segment(offset, cipher, sector_size),
        )]),
        digests: BTreeMap::from([(
            "0".to_owned(),
            json::new_digest(digest_hash, digest_iterations, &salt, &digest),
        )]),
        config: JsonConfig {
            json_size: (hdr_size - binary::BIN_LEN as u64).to_string(),
            keyslots_size: keyslots_size.to_string(),
            other: Map::new(),
        },
        other: Map::new(),
    };
    let size = usize::try_from(file_size)
        .map_err(|_| Error::no_mem(format!("a header file of {file_size} bytes")))?;
    let hdr_len = usize::try_from(hdr_size).expect("16 KiB");
    let mut image = vec![0u8; size];
    crate::secret::fill_random(&mut image[2 * hdr_len..])?;
    write_copies(&mut image, hdr_size, 1, id, &meta)?;
    Ok(image)
}

impl Luks2 {
    fn identity(&self) -> Identity<'_> {
        Identity {
            uuid: &self.bin.uuid,
            label: &self.bin.label,
            subsystem: &self.bin.subsystem,
        }
    }

    /// Rewrites both copies of `image` with `meta` and the next sequence id.
    fn rewrite(&self, image: &mut [u8], meta: &JsonMetadata) -> Result<()> {
        let seqid = self
            .bin
            .seqid
            .checked_add(1)
            .ok_or_else(|| Error::format("LUKS2 sequence id overflows"))?;
        write_copies(image, self.bin.hdr_size, seqid, &self.identity(), meta)
    }

    /// A free, 4096-aligned place for `len` bytes of key material in the keyslots area,
    /// ignoring the area of keyslot `except` (first fit, as cryptsetup allocates).
    fn free_area(&self, len: u64, except: u32) -> Result<u64> {
        // Validation keeps every area inside the keyslots area, so nothing here overflows.
        let start = 2 * self.bin.hdr_size;
        let end = start + self.meta.config.keyslots_size;
        let mut used: Vec<(u64, u64)> = self
            .meta
            .keyslots
            .iter()
            .filter(|(n, _)| **n != except)
            .map(|(_, k)| (k.area.offset, k.area.offset + k.area.size))
            .collect();
        used.sort_unstable();
        let mut at = start;
        for (a, b) in used {
            if at + len <= a {
                break;
            }
            at = at.max(b.div_ceil(AREA_ALIGN) * AREA_ALIGN);
        }
        if at + len > end {
            return Err(Error::usage("no room left in the keyslots area"));
        }
        Ok(at)
    }

    /// Stores `volume_key` in keyslot `slot` of `image` (the whole header file) under the key
    /// `kdf` derives from `passphrase`, assigns the keyslot to the segment's digest, bumps the
    /// sequence id and rewrites both header copies. A keyslot already there is replaced (its
    /// area reused, its priority kept).
    pub fn seal_keyslot(
        &self,
        image: &mut [u8],
        slot: u32,
        volume_key: &[u8],
        passphrase: &[u8],
        kdf: &Kdf,
    ) -> Result<()> {
        if slot > super::metadata::MAX_ID {
            return Err(Error::usage(format!(
                "keyslot {slot} out of range 0..={}",
                super::metadata::MAX_ID
            )));
        }
        let digest_id = self
            .meta
            .segment_digest
            .ok_or_else(|| Error::format("no digest is assigned to the data segment"))?;
        if !self.verify_key(volume_key)? {
            return Err(Error::usage("not this volume's key"));
        }
        let key_size = volume_key.len();
        let cipher = &self.meta.segment.encryption;
        let af_hash = match self.meta.digests.get(&digest_id).map(|d| &d.kdf) {
            Some(Kdf::Pbkdf2 { hash, .. }) => *hash,
            _ => HashAlg::Sha256,
        };
        let pipeline = Keyslot {
            offset: 0,
            key_size,
            stripes: STRIPES,
            af_hash,
            cipher: self.segment.cipher.spec()?,
            cipher_key_size: key_size,
            kdf,
        };
        let material_len = pipeline
            .material_len()
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| Error::usage("key material too large"))?;
        let len = material_len.div_ceil(AREA_ALIGN) * AREA_ALIGN;
        let offset = match self.meta.keyslots.get(&slot) {
            Some(k) if k.area.size >= len => k.area.offset,
            _ => self.free_area(len, slot)?,
        };
        let at = keyslot::within(image, &(offset..offset + len))
            .ok_or_else(|| Error::format("keyslots area lies past the end of the file"))?;
        let material = keyslot::seal(&pipeline, volume_key, passphrase)?;
        let area = &mut image[at];
        crate::secret::fill_random(area)?;
        area[..material.len()].copy_from_slice(material.as_bytes());
        drop(material);

        let mut meta = JsonMetadata::from_value(&self.json)?;
        let id = slot.to_string();
        let priority = meta.keyslots.get(&id).and_then(|k| k.priority);
        let ks = JsonKeyslot::from(NewKeyslot {
            key_size,
            priority,
            stripes: STRIPES,
            af_hash,
            offset,
            size: len,
            encryption: cipher,
            kdf,
        });
        meta.keyslots.insert(id.clone(), ks);
        let digest = meta
            .digests
            .get_mut(&digest_id.to_string())
            .ok_or_else(|| Error::format("no digest is assigned to the data segment"))?;
        if !digest.keyslots.contains(&id) {
            digest.keyslots.push(id);
        }
        self.rewrite(image, &meta)
    }

    /// Removes keyslot `slot` from `image`: overwrites its area with random bytes, drops it
    /// from the keyslots, the digests and the tokens, bumps the sequence id and rewrites both
    /// copies. Returns the area's byte range, for wiping other copies of the file.
    pub fn wipe_keyslot(&self, image: &mut [u8], slot: u32) -> Result<Range<u64>> {
        let range = self.keyslot_area(slot)?;
        keyslot::wipe_area(image, &range)?;
        let mut meta = JsonMetadata::from_value(&self.json)?;
        meta.remove_keyslot(slot);
        self.rewrite(image, &meta)?;
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::format::FormatOptions;
    use crate::luks::luks2::metadata::{validate, Reject};
    use crate::luks::Header;
    use crate::testing;

    fn image() -> Vec<u8> {
        let options = FormatOptions {
            key_bits: Some(256),
            label: Some("round trip".into()),
            ..testing::fast_options(2)
        };
        testing::header_image(options, None, b"pw").0
    }

    /// A header copy with its random salt and its checksum blanked.
    fn masked(copy: &[u8]) -> Vec<u8> {
        let mut b = copy.to_vec();
        b[104..168].fill(0);
        b[binary::CSUM_OFFSET..binary::CSUM_OFFSET + binary::CSUM_LEN].fill(0);
        b
    }

    #[test]
    fn a_new_header_round_trips_byte_for_byte() {
        let img = image();
        let h = Header::parse(&img).unwrap();
        let l = h.as_luks2().unwrap();
        assert_eq!((l.seqid(), l.label()), (2, "round trip"));
        for copy in [Copy::Primary, Copy::Secondary] {
            let at = match copy {
                Copy::Primary => 0,
                Copy::Secondary => NEW_HDR_SIZE,
            };
            let (bin, area) = binary::read_copy(&img, at, copy).unwrap();
            let text = binary::json_text(&area).unwrap();
            // JSON text -> typed metadata -> the same text.
            let meta = JsonMetadata::from_value(l.json()).unwrap();
            assert_eq!(meta.to_text().unwrap(), text.as_bytes());
            // Binary header -> struct -> the same bytes (but for the random salt).
            let again = binary::encode_copy(
                copy,
                bin.hdr_size,
                bin.seqid,
                &l.identity(),
                text.as_bytes(),
            )
            .unwrap();
            let at = usize::try_from(at).unwrap();
            assert_eq!(masked(&again), masked(&img[at..at + again.len()]));
        }
    }

    #[test]
    fn damaged_metadata_is_refused_as_damaged() {
        let img = image();
        let h = Header::parse(&img).unwrap();
        let json = h.as_luks2().unwrap().json();
        let mut j = json.clone();
        j["segments"]["0"]["sector_size"] = 1536.into();
        match validate(&j, NEW_HDR_SIZE) {
            Err(Reject::Damaged(e)) => assert!(e.message().contains("power of two"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
        let mut j = json.clone();
        j["keyslots"]["0"]["area"]["offset"] = "4096".into();
        match validate(&j, NEW_HDR_SIZE) {
            Err(Reject::Damaged(e)) => assert!(e.message().contains("overlaps"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
        let mut j = json.clone();
        j["digests"]["0"]["keyslots"] = serde_json::json!(["0", "7"]);
        assert!(matches!(
            validate(&j, NEW_HDR_SIZE),
            Err(Reject::Damaged(_))
        ));
    }
}
