//! LUKS2: the two header copies, their JSON metadata, and opening a keyslot.
//!
//! See the LUKS2 on-disk format specification. A LUKS2 header is two copies of (binary header +
//! JSON area), the primary at offset 0 and the secondary at offset `hdr_size`, followed by the
//! keyslots area. [`binary`] reads, checksums and writes one copy's binary header,
//! [`metadata`] validates its JSON into typed structs, [`json`] is the JSON as written, and
//! [`writer`] makes new headers and changes keyslots. This module chooses the copy to trust
//! (as cryptsetup does) and opens keyslots through the shared [`crate::luks::keyslot`]
//! pipeline (the key is checked against the segment's digest object).

mod access;
pub mod binary;
pub mod json;
pub mod metadata;
pub mod reencrypt;
mod sections;
pub mod writer;

pub use self::writer::{new_image, Identity, AREA_ALIGN, NEW_FILE_SIZE, NEW_HDR_SIZE, STRIPES};

use self::binary::{BinaryHeader, Copy, NoCopy};
use self::metadata::{CryptSegment, Metadata, Priority, ReencryptSlot, Reject};
use super::keyslot::{self, Keyslot};
use super::{ReadAt, Segment};
use crate::crypto::{CipherName, CipherSpec};
use crate::error::{Error, Reason, Result};
use crate::secret::VolumeKey;
use crate::units::{Bytes, Sectors512};
use serde_json::Value;

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

/// Reads the copy at `offset`: absent (no magic there), damaged, or a candidate.
fn read_candidate(src: &dyn ReadAt, offset: u64, copy: Copy) -> Result<Candidate, NoCopy> {
    let (bin, area) = binary::read_copy(src, offset, copy)?;
    let text = binary::json_text(&area).map_err(NoCopy::Damaged)?;
    let json: Value = serde_json::from_str(text).map_err(|e| {
        NoCopy::Damaged(Error::format(format!("JSON metadata does not parse: {e}")))
    })?;
    let meta = match metadata::validate(&json, bin.hdr_size) {
        Ok(m) => Ok(m),
        Err(Reject::Damaged(e)) => return Err(NoCopy::Damaged(e.in_copy(copy))),
        Err(Reject::Unsupported(e)) => Err(e.because(Reason::Unsupported).in_copy(copy)),
    };
    Ok(Candidate { bin, json, meta })
}

/// Finds the secondary copy: after the primary if that is sound, else at every offset where
/// one may be (as cryptsetup does when the primary is unreadable).
fn read_secondary(src: &dyn ReadAt, primary: &Result<Candidate, NoCopy>) -> Result<Candidate> {
    if let Ok(p) = primary {
        return read_candidate(src, p.bin.hdr_size, Copy::Secondary).map_err(NoCopy::into_error);
    }
    let mut first_err = None;
    for off in binary::HDR_SIZES {
        match read_candidate(src, off, Copy::Secondary) {
            Ok(c) => return Ok(c),
            Err(NoCopy::Absent(e)) => log::debug!("no secondary LUKS2 header at offset {off}: {e}"),
            Err(NoCopy::Damaged(e)) => {
                log::debug!("no secondary LUKS2 header at offset {off}: {e}");
                // Report the most telling failure: one past a recognisable magic.
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Error::format("no secondary header found")))
}

/// Of two sound copies, the one cryptsetup uses: the higher sequence id, the primary on a tie.
fn newer(p: Candidate, s: Candidate) -> Candidate {
    if s.bin.seqid > p.bin.seqid {
        log::warn!(
            "secondary LUKS2 header is newer (seqid {} > {}); using it",
            s.bin.seqid,
            p.bin.seqid
        );
        return s;
    }
    if p.bin.seqid > s.bin.seqid {
        log::warn!(
            "secondary LUKS2 header is older (seqid {} < {}); using the primary",
            s.bin.seqid,
            p.bin.seqid
        );
    }
    p
}

/// The data segment as the rest of luksfuse sees it.
fn data_segment(s: &CryptSegment, key_size: usize) -> Segment {
    Segment {
        offset: Bytes(s.offset),
        size: s.size.map(Bytes),
        cipher: CipherName::new(s.encryption.clone()),
        key_size,
        sector_size: s.sector_size,
        iv_tweak: Sectors512(s.iv_tweak),
    }
}

impl Luks2 {
    /// Reads both header copies and keeps the one cryptsetup would: the valid copy with the
    /// higher sequence id, or the only valid one.
    pub fn parse(src: &dyn ReadAt) -> Result<Self> {
        let primary = read_candidate(src, 0, Copy::Primary);
        let secondary = read_secondary(src, &primary);
        if primary.is_ok() != secondary.is_ok() {
            // One copy is damaged: cryptsetup will not fall back if something else is there.
            super::signature::refuse_ambiguous(src)?;
        }
        let chosen = match (primary, secondary) {
            (Ok(p), Ok(s)) => newer(p, s),
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
        // As cryptsetup (device_check_size): the file holds both copies and the keyslots area.
        let need = 2 * chosen.bin.hdr_size + meta.config.keyslots_size; // both bounded
        if src.size() < need {
            return Err(Error::truncated(
                format!(
                    "header file is too small: {} bytes, its two header copies and keyslots \
                     area need {need}",
                    src.size()
                ),
                need,
                src.size(),
            ));
        }
        let segment = data_segment(&meta.segment, meta.key_size());
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
    pub fn bound(&self, slot: u32) -> bool {
        self.meta
            .keyslots
            .get(&slot)
            .is_some_and(|k| k.digest.is_some() && k.digest == self.meta.segment_digest)
    }

    /// Why luksfuse cannot open keyslot `slot` (an unknown type or KDF, a cipher it lacks, ...),
    /// if it exists and cannot.
    pub fn unusable(&self, slot: u32) -> Option<&Error> {
        self.meta.keyslots.get(&slot).and_then(|k| k.unusable())
    }

    /// The type of keyslot `slot` (`luks2`, or one luksfuse does not know), if it exists.
    pub fn keyslot_kind(&self, slot: u32) -> Option<&str> {
        self.meta.keyslots.get(&slot).map(|k| k.kind.as_str())
    }

    /// Keyslots with priority high, then normal, each in slot order (priority "ignore" is
    /// used only when asked for by number), that `keep` accepts.
    fn by_priority(&self, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let of = |p: Priority| {
            self.meta
                .keyslots
                .iter()
                .filter(move |(_, k)| k.priority == p)
                .map(|(n, _)| *n)
        };
        of(Priority::High)
            .chain(of(Priority::Normal))
            .filter(|n| keep(*n))
            .collect()
    }

    /// Keyslots bound to the segment in the order they are tried: high priority first, then
    /// normal, each in slot order; priority "ignore" is left out. Unusable ones are listed
    /// too (the caller notes them and goes on).
    pub fn slots_to_try(&self) -> Vec<u32> {
        self.by_priority(|n| self.bound(n))
    }

    /// Usable keyslots not bound to the segment (unbound keys), in the same order.
    pub fn unbound_slots(&self) -> Vec<u32> {
        self.by_priority(|n| !self.bound(n) && self.unusable(n).is_none())
    }

    /// Whether keyslot `slot` exists (is active), whatever its priority.
    pub fn slot_active(&self, slot: u32) -> bool {
        self.meta.keyslots.contains_key(&slot)
    }

    /// Active keyslots in slot order, whatever their priority.
    pub fn active_slots(&self) -> Vec<u32> {
        self.meta.keyslots.keys().copied().collect()
    }

    /// Byte range of keyslot `slot`'s area in the header file.
    pub fn keyslot_area(&self, slot: u32) -> Result<std::ops::Range<u64>> {
        let k = self
            .meta
            .keyslots
            .get(&slot)
            .ok_or_else(|| Error::usage(format!("keyslot {slot} is not active")))?;
        Ok(k.area.offset..k.area.offset + k.area.size) // checked by validation
    }

    /// Tries `passphrase` on keyslot `slot`, bound or not: `Ok(None)` when it is the wrong
    /// passphrase. The key is checked against the keyslot's own digest.
    pub fn open_keyslot(
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
        let open = ks.opener.as_ref().map_err(Clone::clone)?;
        let digest = ks
            .digest
            .and_then(|d| self.meta.digests.get(&d))
            .ok_or_else(|| Error::format("keyslot is not assigned to a digest"))?;
        let pipeline = Keyslot {
            offset: ks.area.offset,
            key_size: ks.key_size,
            stripes: open.stripes,
            af_hash: open.af_hash,
            cipher: CipherSpec::parse(&ks.area.encryption)?,
            cipher_key_size: ks.area.key_size,
            kdf: &open.kdf,
        };
        keyslot::open(src, &pipeline, passphrase, |k| digest.matches(k))
    }

    /// An error if the header has mandatory requirements: it may then be read and keyslots
    /// removed, but it is neither mapped nor given new keyslots (cryptsetup: "Unmet LUKS2
    /// requirements detected.", exit 1). A reencryption in progress is refused with how to
    /// resume it ([`Self::reencryption_refusal`]).
    pub fn requirements_met(&self) -> Result<()> {
        if let Some(e) = self.reencryption_refusal() {
            return Err(e);
        }
        let other = self
            .meta
            .config
            .requirements
            .iter()
            .find(|r| sections::reencrypt_version(r).is_none());
        match other {
            None => Ok(()),
            Some(r) => Err(Error::usage(format!(
                "Unmet LUKS2 requirements detected: unknown mandatory requirement '{r}'"
            ))
            .because(Reason::Unsupported)),
        }
    }

    /// Whether the header records a reencryption (encryption, decryption or key change) in
    /// progress: it has an online reencryption requirement.
    pub fn in_reencryption(&self) -> bool {
        self.meta.config.reencrypt.is_some()
    }

    /// The `reencrypt` keyslot's record and id, during a reencryption.
    pub fn reencrypt_keyslot(&self) -> Option<(u32, &ReencryptSlot)> {
        let n = self.meta.reencrypt_slot?;
        let k = self.meta.keyslots.get(&n)?.reencrypt.as_ref()?;
        Some((n, k))
    }

    /// During a reencryption, the one-line error for anything that would map the data or
    /// change keys (exit 4, unsupported), saying how to go on: resume an encryption or
    /// decryption with luksfuse or cryptsetup; a key change or a data shift (which luksfuse
    /// does not do) with cryptsetup; metadata of cryptsetup before 2.4.3 after `cryptsetup
    /// repair`. `None` when no reencryption is recorded.
    pub fn reencryption_refusal(&self) -> Option<Error> {
        let version = self.meta.config.reencrypt?;
        let cs_resume = "'cryptsetup reencrypt --resume-only --header HEADER PAYLOAD'";
        let mode = self.reencrypt_keyslot().map(|(_, k)| k.mode.as_str());
        let msg = match (version, mode) {
            (1, _) => format!(
                "LUKS2 reencryption in progress, recorded by cryptsetup before 2.4.3 (requirement \
                 'online-reencrypt'): run 'cryptsetup repair --header HEADER PAYLOAD', then \
                 resume it with {cs_resume}"
            ),
            (2, Some(m @ ("encrypt" | "decrypt"))) => format!(
                "LUKS2 {m}ion in progress: resume it with 'luksfuse {m} --resume --header \
                 HEADER PAYLOAD' or {cs_resume}"
            ),
            (2, _) => format!(
                "LUKS2 reencryption (volume key change) in progress, which luksfuse does not \
                 do: resume it with {cs_resume}"
            ),
            (v, _) => format!(
                "LUKS2 reencryption with data shift in progress (requirement \
                 'online-reencrypt-v{v}'), which luksfuse does not do: resume it with \
                 'cryptsetup reencrypt --resume-only PAYLOAD'"
            ),
        };
        Some(Error::unsupported(msg))
    }

    /// Whether luksfuse can map the data segment, as cryptsetup activates it: one segment,
    /// of type `crypt`, without dm-integrity, with a cipher luksfuse has for the volume key
    /// size. cryptsetup dumps (and unlocks keyslots of) the others, and so does luksfuse.
    pub fn mappable(&self) -> Result<()> {
        self.requirements_met()?;
        let segs = &self.meta.segments;
        if segs.len() > 1 {
            return Err(Error::unsupported(format!(
                "the LUKS2 header has {} segments; luksfuse maps only a header with one \
                 (several are left by an interrupted reencryption)",
                segs.len()
            )));
        }
        let s = &segs[&0]; // validation: segment 0 exists
        if s.kind != "crypt" {
            return Err(Error::unsupported(format!(
                "segment 0 is of type '{}'; only 'crypt' segments can be mapped",
                s.kind
            )));
        }
        if let Some(i) = &s.integrity {
            return Err(Error::unsupported(format!(
                "segment 0 uses dm-integrity ('{i}'), which luksfuse does not support"
            )));
        }
        CipherSpec::parse(&self.meta.segment.encryption)
            .and_then(|c| c.check_key_size(self.meta.key_size()))
            .map_err(|e| e.context("segment 0").because(Reason::Unsupported))
    }

    /// Whether `key` is the volume key (checked against the segment's digest).
    pub fn verify_key(&self, key: &[u8]) -> Result<bool> {
        self.meta
            .segment_digest
            .and_then(|d| self.meta.digests.get(&d))
            .ok_or_else(|| Error::format("no digest is assigned to the data segment"))?
            .matches(key)
    }
}
