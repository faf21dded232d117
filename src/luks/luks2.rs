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
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;
use crate::secret::{Secret, VolumeKey};
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
            offset: s.offset,
            size: s.size,
            cipher: s.encryption.clone(),
            key_size: meta.key_size(),
            sector_size: s.sector_size,
            iv_tweak: s.iv_tweak,
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
