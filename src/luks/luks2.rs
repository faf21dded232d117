//! LUKS2: the two header copies, their JSON metadata, and unlocking a keyslot.
//!
//! See the LUKS2 on-disk format specification. A LUKS2 header is two copies of (binary header +
//! JSON area), the primary at offset 0 and the secondary at offset `hdr_size`, followed by the
//! keyslots area. [`binary`] reads and checksums one copy, [`metadata`] validates its JSON;
//! this module chooses the copy to trust (as cryptsetup does), unlocks keyslots and dumps.

pub mod binary;
pub mod metadata;

use self::binary::{BinaryHeader, Copy};
use self::metadata::{Metadata, Priority, Reject};
use super::{af, hex_lines, ReadAt, Segment};
use crate::crypto::CipherName;
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;
use crate::secret::{Secret, VolumeKey};
use crate::units::{Bytes, Sectors512};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// A parsed and validated LUKS2 header (the copy chosen from the two on disk).
#[derive(Debug)]
pub struct Luks2 {
    bin: Box<BinaryHeader>,
    json: Value,
    meta: Box<Metadata>,
    segment: Segment,
}

/// A header copy that is not damaged: its metadata is either usable or valid-but-refused.
struct Candidate {
    bin: BinaryHeader,
    json: Value,
    meta: Result<Metadata>,
}

/// Reads the copy at `offset`. `Err` means the copy is damaged (or absent).
fn read_candidate(src: &dyn ReadAt, offset: u64, copy: Copy) -> Result<Candidate> {
    let (bin, area) = binary::read_copy(src, offset, copy)?;
    let text = binary::json_text(&area)?;
    let json: Value = serde_json::from_str(text)
        .map_err(|e| Error::format(format!("JSON metadata does not parse: {e}")))?;
    let meta = match metadata::validate(&json, bin.hdr_size) {
        Ok(m) => Ok(m),
        Err(Reject::Damaged(e)) => return Err(e),
        Err(Reject::Unsupported(e)) => Err(e),
    };
    Ok(Candidate { bin, json, meta })
}

/// Finds the secondary copy: after the primary if that is sound, else at every offset where
/// one may be (as cryptsetup does when the primary is unreadable).
fn read_secondary(src: &dyn ReadAt, primary: &Result<Candidate>) -> Result<Candidate> {
    if let Ok(p) = primary {
        return read_candidate(src, p.bin.hdr_size, Copy::Secondary);
    }
    let mut first_err = None;
    for off in binary::HDR_SIZES {
        match read_candidate(src, off, Copy::Secondary) {
            Ok(c) => return Ok(c),
            Err(e) => {
                log::debug!("no secondary LUKS2 header at offset {off}: {e}");
                // Report the most telling failure: one past a recognisable magic.
                if first_err.is_none() && !e.message().starts_with("bad magic") {
                    first_err = Some(e);
                }
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Error::format("no secondary header found")))
}

impl Luks2 {
    /// Reads both header copies and keeps the one cryptsetup would: the valid copy with the
    /// higher sequence id, or the only valid one.
    pub fn parse(src: &dyn ReadAt) -> Result<Self> {
        let primary = read_candidate(src, 0, Copy::Primary);
        let secondary = read_secondary(src, &primary);
        let chosen = match (primary, secondary) {
            (Ok(p), Ok(s)) => {
                if s.bin.seqid > p.bin.seqid {
                    log::warn!(
                        "secondary LUKS2 header is newer (seqid {} > {}); using it",
                        s.bin.seqid,
                        p.bin.seqid
                    );
                    s
                } else {
                    if p.bin.seqid > s.bin.seqid {
                        log::warn!(
                            "secondary LUKS2 header is older (seqid {} < {}); using the primary",
                            s.bin.seqid,
                            p.bin.seqid
                        );
                    }
                    p
                }
            }
            (Ok(p), Err(e)) => {
                log::warn!("secondary LUKS2 header is damaged ({e}); using the primary");
                p
            }
            (Err(e), Ok(s)) => {
                log::warn!(
                    "primary LUKS2 header is damaged ({e}); using the secondary at offset {}",
                    s.bin.hdr_offset
                );
                s
            }
            (Err(a), Err(b)) => {
                return Err(Error::format(format!(
                    "both LUKS2 header copies are damaged (primary: {a}; secondary: {b})"
                )));
            }
        };
        log::debug!(
            "using the {} LUKS2 header, seqid {}",
            chosen.bin.copy,
            chosen.bin.seqid
        );
        let meta = chosen.meta?;
        let s = &meta.segment;
        let segment = Segment {
            offset: Bytes(s.offset),
            size: s.size.map(Bytes),
            cipher: CipherName::new(s.encryption.clone()),
            key_size: meta.key_size(),
            sector_size: s.sector_size,
            iv_tweak: Sectors512(s.iv_tweak),
        };
        Ok(Luks2 {
            bin: Box::new(chosen.bin),
            json: chosen.json,
            meta: Box::new(meta),
            segment,
        })
    }

    pub fn uuid(&self) -> &str {
        &self.bin.uuid
    }

    pub fn label(&self) -> &str {
        &self.bin.label
    }

    pub fn subsystem(&self) -> &str {
        &self.bin.subsystem
    }

    /// The sequence id ("epoch") of the copy in use.
    pub fn seqid(&self) -> u64 {
        self.bin.seqid
    }

    /// Size of one header copy (binary header + JSON area) in bytes.
    pub fn hdr_size(&self) -> u64 {
        self.bin.hdr_size
    }

    /// Size of the keyslots area in bytes.
    pub fn keyslots_size(&self) -> u64 {
        self.meta.config.keyslots_size
    }

    /// Which copy the metadata was taken from.
    pub fn header_copy(&self) -> Copy {
        self.bin.copy
    }

    /// The binary header of the copy in use.
    pub fn binary_header(&self) -> &BinaryHeader {
        &self.bin
    }

    /// The validated metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The JSON metadata exactly as read (it holds no secrets).
    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Whether `slot` can unlock the data segment (it is assigned to the segment's digest).
    fn bound(&self, slot: u32) -> bool {
        self.meta
            .keyslots
            .get(&slot)
            .is_some_and(|k| k.digest.is_some() && k.digest == self.meta.segment_digest)
    }

    /// Keyslots bound to the segment, high priority first, then normal, each in slot order;
    /// priority "ignore" is left out (it is used only when asked for by number).
    pub fn slots_to_try(&self) -> Vec<u32> {
        let of = |p: Priority| {
            self.meta
                .keyslots
                .iter()
                .filter(move |(n, k)| k.priority == p && self.bound(**n))
                .map(|(n, _)| *n)
        };
        of(Priority::High).chain(of(Priority::Normal)).collect()
    }

    /// Whether keyslot `slot` exists (is active), whatever its priority.
    pub fn slot_active(&self, slot: u32) -> bool {
        self.meta.keyslots.contains_key(&slot)
    }

    /// Tries `passphrase` on keyslot `slot`: `Ok(None)` when it is the wrong passphrase.
    pub fn unlock_slot(
        &self,
        src: &dyn ReadAt,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        let ks = self
            .meta
            .keyslots
            .get(&slot)
            .ok_or_else(|| Error::usage(format!("keyslot {slot} is not active")))?;
        let digest =
            match ks.digest {
                Some(d) if self.bound(slot) => &self.meta.digests[&d],
                _ => return Err(Error::usage(
                    "not assigned to the data segment (unbound key); it cannot unlock the volume",
                )),
            };
        // Check the area lies in the file before allocating or deriving anything.
        let len = ks.af_sectors_len();
        let end = ks.area.offset.checked_add(len as u64);
        if end.is_none_or(|e| e > src.size()) {
            return Err(Error::format(format!(
                "key material at offset {} ({len} bytes) lies past the end of the header file ({} bytes)",
                ks.area.offset,
                src.size()
            )));
        }
        let mut material = Secret::zeroed(len);
        src.read_exact_at(material.as_mut_bytes(), ks.area.offset)?;
        let derived = ks.kdf.derive(passphrase, ks.area.key_size)?;
        super::decrypt_keyslot_area(
            &ks.area.encryption,
            derived.as_bytes(),
            material.as_mut_bytes(),
        )?;
        drop(derived);
        let vk = af::merge(
            &material.as_bytes()[..ks.af_len()],
            ks.key_size,
            ks.stripes,
            ks.af_hash,
        )?;
        drop(material);
        let check = digest.kdf.derive(vk.as_bytes(), digest.digest.len())?;
        if check.ct_eq(&digest.digest) {
            Ok(Some(VolumeKey(vk)))
        } else {
            Ok(None)
        }
    }

    /// A dump in the layout of `cryptsetup luksDump` for LUKS2.
    pub fn dump(&self) -> String {
        let m = &self.meta;
        let mut s = String::new();
        let or = |v: &str, none: &'static str| {
            if v.is_empty() {
                none.to_owned()
            } else {
                v.to_owned()
            }
        };
        let flags = |f: &[String], none: &'static str| {
            if f.is_empty() {
                none.to_owned()
            } else {
                f.iter().map(|x| format!("{x} ")).collect::<String>()
            }
        };
        let ind = "\t            ";
        // Writing to a String cannot fail.
        let _ = writeln!(s, "LUKS header information");
        let _ = writeln!(s, "Version:       \t2");
        let _ = writeln!(s, "Epoch:         \t{}", self.bin.seqid);
        let _ = writeln!(s, "Metadata area: \t{} [bytes]", self.bin.hdr_size);
        let _ = writeln!(s, "Keyslots area: \t{} [bytes]", m.config.keyslots_size);
        let _ = writeln!(s, "UUID:          \t{}", self.bin.uuid);
        let _ = writeln!(s, "Label:         \t{}", or(&self.bin.label, "(no label)"));
        let _ = writeln!(
            s,
            "Subsystem:     \t{}",
            or(&self.bin.subsystem, "(no subsystem)")
        );
        let _ = writeln!(s, "Flags:       \t{}", flags(&m.config.flags, "(no flags)"));
        let _ = writeln!(s);
        let seg = &m.segment;
        let _ = writeln!(s, "Data segments:");
        let _ = writeln!(s, "  {}: crypt", seg.id);
        let _ = writeln!(s, "\toffset: {} [bytes]", seg.offset);
        match seg.size {
            None => {
                let _ = writeln!(s, "\tlength: (whole device)");
            }
            Some(n) => {
                let _ = writeln!(s, "\tlength: {n} [bytes]");
            }
        }
        let _ = writeln!(s, "\tcipher: {}", seg.encryption);
        let _ = writeln!(s, "\tsector: {} [bytes]", seg.sector_size);
        if seg.iv_tweak != 0 {
            let _ = writeln!(s, "\tIV tweak: {}", seg.iv_tweak);
        }
        if !seg.flags.is_empty() {
            let _ = writeln!(s, "\tflags : {}", flags(&seg.flags, ""));
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Keyslots:");
        for (n, k) in &m.keyslots {
            let unbound = if self.bound(*n) { "" } else { " (unbound)" };
            let _ = writeln!(s, "  {n}: luks2{unbound}");
            let _ = writeln!(s, "\tKey:        {} bits", k.key_size * 8);
            let _ = writeln!(s, "\tPriority:   {}", k.priority.name());
            let _ = writeln!(s, "\tCipher:     {}", k.area.encryption);
            let _ = writeln!(s, "\tCipher key: {} bits", k.area.key_size * 8);
            let _ = writeln!(s, "\tPBKDF:      {}", k.kdf.name());
            match &k.kdf {
                Kdf::Pbkdf2 {
                    hash,
                    iterations,
                    salt,
                } => {
                    let _ = writeln!(s, "\tHash:       {}", hash.name());
                    let _ = writeln!(s, "\tIterations: {iterations}");
                    let _ = writeln!(s, "\tSalt:       {}", hex_lines(salt, ind));
                }
                Kdf::Argon2 {
                    time,
                    memory_kib,
                    lanes,
                    salt,
                    ..
                } => {
                    let _ = writeln!(s, "\tTime cost:  {time}");
                    let _ = writeln!(s, "\tMemory:     {memory_kib}");
                    let _ = writeln!(s, "\tThreads:    {lanes}");
                    let _ = writeln!(s, "\tSalt:       {}", hex_lines(salt, ind));
                }
            }
            let _ = writeln!(s, "\tAF stripes: {}", k.stripes);
            let _ = writeln!(s, "\tAF hash:    {}", k.af_hash.name());
            let _ = writeln!(s, "\tArea offset:{} [bytes]", k.area.offset);
            let _ = writeln!(s, "\tArea length:{} [bytes]", k.area.size);
            if let Some(d) = k.digest {
                let _ = writeln!(s, "\tDigest ID:  {d}");
            }
        }
        let _ = writeln!(s, "Tokens:");
        for (n, t) in &m.tokens {
            let _ = writeln!(s, "  {n}: {}", t.kind);
            for k in &t.keyslots {
                let _ = writeln!(s, "\tKeyslot:    {k}");
            }
        }
        let _ = writeln!(s, "Digests:");
        for (n, d) in &m.digests {
            let _ = writeln!(s, "  {n}: pbkdf2");
            if let Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } = &d.kdf
            {
                let _ = writeln!(s, "\tHash:       {}", hash.name());
                let _ = writeln!(s, "\tIterations: {iterations}");
                let _ = writeln!(s, "\tSalt:       {}", hex_lines(salt, ind));
            }
            let _ = writeln!(s, "\tDigest:     {}", hex_lines(&d.digest, ind));
        }
        s
    }

    /// The binary header fields and the JSON metadata (which holds no secrets).
    pub fn dump_json(&self) -> Value {
        json!({
            "version": 2,
            "epoch": self.bin.seqid,
            "header_copy": self.bin.copy.to_string(),
            "metadata_area": self.bin.hdr_size,
            "keyslots_area": self.meta.config.keyslots_size,
            "checksum_alg": self.bin.csum_alg.name(),
            "uuid": self.bin.uuid,
            "label": self.bin.label,
            "subsystem": self.bin.subsystem,
            "metadata": self.json,
        })
    }
}

// ---- Writing: new headers and keyslot updates ----

/// Header size (binary + JSON) of new headers, cryptsetup's default (16 KiB).
pub const NEW_HDR_SIZE: u64 = 16 << 10;
/// Total size of new detached headers, cryptsetup's default (16 MiB): both header copies and
/// the keyslots area.
pub const NEW_FILE_SIZE: u64 = 16 << 20;
/// Keyslot areas are 4096-byte aligned, as cryptsetup allocates them.
pub const AREA_ALIGN: u64 = 4096;
/// The AF stripes every LUKS2 keyslot gets.
pub const STRIPES: u32 = 4000;

fn put_field(area: &mut [u8], off: usize, len: usize, s: &str) -> Result<()> {
    if s.len() >= len {
        return Err(Error::usage(format!(
            "'{s}' is too long for the LUKS2 header (at most {} bytes)",
            len - 1
        )));
    }
    area[off..off + s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// The identity fields of the binary header.
pub struct Identity<'a> {
    pub uuid: &'a str,
    pub label: &'a str,
    pub subsystem: &'a str,
}

/// Writes both header copies (binary header, JSON padded with zeros, sha256 checksum) of
/// `hdr_size` bytes each into the start of `image`, with sequence id `seqid`.
pub fn write_copies(
    image: &mut [u8],
    hdr_size: u64,
    seqid: u64,
    id: &Identity<'_>,
    json: &Value,
) -> Result<()> {
    let text = serde_json::to_vec(json).expect("JSON value");
    let json_size = hdr_size as usize - binary::BIN_LEN;
    if text.len() >= json_size {
        return Err(Error::usage(format!(
            "LUKS2 metadata of {} bytes does not fit in its {json_size}-byte area",
            text.len()
        )));
    }
    if image.len() < 2 * hdr_size as usize {
        return Err(Error::format("header file too small for two header copies"));
    }
    for (offset, magic) in [
        (0u64, binary::MAGIC_PRIMARY),
        (hdr_size, binary::MAGIC_SECONDARY),
    ] {
        let mut area = vec![0u8; hdr_size as usize];
        area[..6].copy_from_slice(magic);
        area[6..8].copy_from_slice(&2u16.to_be_bytes());
        area[8..16].copy_from_slice(&hdr_size.to_be_bytes());
        area[16..24].copy_from_slice(&seqid.to_be_bytes());
        put_field(&mut area, 24, 48, id.label)?;
        put_field(&mut area, 72, 32, "sha256")?;
        crate::secret::fill_random(&mut area[104..168])?;
        put_field(&mut area, 168, 40, id.uuid)?;
        put_field(&mut area, 208, 48, id.subsystem)?;
        area[256..264].copy_from_slice(&offset.to_be_bytes());
        area[binary::BIN_LEN..binary::BIN_LEN + text.len()].copy_from_slice(&text);
        let csum = binary::checksum(crate::luks::hash::HashAlg::Sha256, &area);
        area[binary::CSUM_OFFSET..binary::CSUM_OFFSET + csum.len()].copy_from_slice(&csum);
        image[offset as usize..(offset + hdr_size) as usize].copy_from_slice(&area);
    }
    Ok(())
}

fn b64(b: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(b)
}

/// The JSON of a KDF, as cryptsetup writes it.
fn kdf_json(kdf: &Kdf) -> Value {
    match kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => json!({"type": "pbkdf2", "hash": hash.name(), "iterations": iterations,
                    "salt": b64(salt)}),
        Kdf::Argon2 {
            time,
            memory_kib,
            lanes,
            salt,
            ..
        } => json!({"type": kdf.name(), "time": time, "memory": memory_kib, "cpus": lanes,
                    "salt": b64(salt)}),
    }
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
    digest_hash: crate::luks::hash::HashAlg,
    digest_iterations: u32,
) -> Result<Vec<u8>> {
    let hdr_size = NEW_HDR_SIZE;
    let keyslots_size = file_size - 2 * hdr_size;
    let mut salt = vec![0u8; crate::luks::kdf::SALT_LEN];
    crate::secret::fill_random(&mut salt)?;
    let mut digest = vec![0u8; digest_hash.len()];
    digest_hash.pbkdf2(volume_key, &salt, digest_iterations, &mut digest);
    let meta = json!({
        "keyslots": {},
        "tokens": {},
        "segments": {"0": {
            "type": "crypt", "offset": offset.to_string(), "size": "dynamic",
            "iv_tweak": "0", "encryption": cipher, "sector_size": sector_size,
        }},
        "digests": {"0": {
            "type": "pbkdf2", "keyslots": [], "segments": ["0"], "hash": digest_hash.name(),
            "iterations": digest_iterations, "salt": b64(&salt), "digest": b64(&digest),
        }},
        "config": {
            "json_size": (hdr_size - binary::BIN_LEN as u64).to_string(),
            "keyslots_size": keyslots_size.to_string(),
        },
    });
    let mut image = vec![0u8; file_size as usize];
    crate::secret::fill_random(&mut image[2 * hdr_size as usize..])?;
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

    /// Whether `key` is the volume key (checked against the segment's digest).
    pub fn check_key(&self, key: &[u8]) -> Result<bool> {
        let d = self
            .meta
            .segment_digest
            .and_then(|d| self.meta.digests.get(&d))
            .ok_or_else(|| Error::format("no digest is assigned to the data segment"))?;
        let check = d.kdf.derive(key, d.digest.len())?;
        Ok(check.ct_eq(&d.digest))
    }

    /// A free, 4096-aligned place for `len` bytes of key material in the keyslots area,
    /// ignoring the area of keyslot `except` (first fit, as cryptsetup allocates).
    fn free_area(&self, len: u64, except: u32) -> Result<u64> {
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
    pub fn store_keyslot(
        &self,
        image: &mut [u8],
        slot: u32,
        volume_key: &[u8],
        passphrase: &[u8],
        kdf: &Kdf,
    ) -> Result<()> {
        if slot > metadata::MAX_ID {
            return Err(Error::usage(format!(
                "keyslot {slot} out of range 0..={}",
                metadata::MAX_ID
            )));
        }
        let digest_id = self
            .meta
            .segment_digest
            .ok_or_else(|| Error::format("no digest is assigned to the data segment"))?;
        if !self.check_key(volume_key)? {
            return Err(Error::usage("not this volume's key"));
        }
        let key_size = volume_key.len();
        let cipher = &self.meta.segment.encryption;
        let af_hash = match &self.meta.digests[&digest_id].kdf {
            Kdf::Pbkdf2 { hash, .. } => *hash,
            Kdf::Argon2 { .. } => crate::luks::hash::HashAlg::Sha256,
        };
        let len = (key_size as u64 * u64::from(STRIPES)).div_ceil(AREA_ALIGN) * AREA_ALIGN;
        let offset = match self.meta.keyslots.get(&slot) {
            Some(k) if k.area.size >= len => k.area.offset,
            _ => self.free_area(len, slot)?,
        };
        if offset + len > image.len() as u64 {
            return Err(Error::format("keyslots area lies past the end of the file"));
        }
        let derived = kdf.derive(passphrase, key_size)?;
        let material =
            super::seal_key_material(cipher, derived.as_bytes(), volume_key, STRIPES, af_hash)?;
        drop(derived);
        let area = &mut image[offset as usize..(offset + len) as usize];
        crate::secret::fill_random(area)?;
        area[..material.len()].copy_from_slice(material.as_bytes());
        drop(material);

        let mut meta = self.json.clone();
        let mut ks = json!({
            "type": "luks2",
            "key_size": key_size,
            "af": {"type": "luks1", "stripes": STRIPES, "hash": af_hash.name()},
            "area": {"type": "raw", "offset": offset.to_string(), "size": len.to_string(),
                     "encryption": cipher, "key_size": key_size},
            "kdf": kdf_json(kdf),
        });
        if let Some(p) = meta["keyslots"][slot.to_string()].get("priority") {
            ks["priority"] = p.clone();
        }
        meta["keyslots"][slot.to_string()] = ks;
        let list = &mut meta["digests"][digest_id.to_string()]["keyslots"];
        let id = Value::String(slot.to_string());
        match list.as_array_mut() {
            Some(a) if !a.contains(&id) => a.push(id),
            Some(_) => {}
            None => *list = json!([id]),
        }
        write_copies(
            image,
            self.bin.hdr_size,
            self.bin.seqid + 1,
            &self.identity(),
            &meta,
        )
    }

    /// Removes keyslot `slot` from `image`: overwrites its area with random bytes, drops it
    /// from the keyslots, the digests and the tokens, bumps the sequence id and rewrites both
    /// copies. Returns the area's byte range, for wiping other copies of the file.
    pub fn wipe_keyslot(&self, image: &mut [u8], slot: u32) -> Result<std::ops::Range<u64>> {
        let k = self
            .meta
            .keyslots
            .get(&slot)
            .ok_or_else(|| Error::usage(format!("keyslot {slot} is not active")))?;
        let range = k.area.offset..k.area.offset + k.area.size;
        let end = range.end.min(image.len() as u64);
        if range.start < end {
            crate::secret::fill_random(&mut image[range.start as usize..end as usize])?;
        }
        let id = Value::String(slot.to_string());
        let mut meta = self.json.clone();
        if let Some(m) = meta["keyslots"].as_object_mut() {
            m.remove(&slot.to_string());
        }
        for section in ["digests", "tokens"] {
            if let Some(items) = meta[section].as_object_mut() {
                for item in items.values_mut() {
                    if let Some(a) = item["keyslots"].as_array_mut() {
                        a.retain(|x| *x != id);
                    }
                }
            }
        }
        write_copies(
            image,
            self.bin.hdr_size,
            self.bin.seqid + 1,
            &self.identity(),
            &meta,
        )?;
        Ok(range)
    }
}
