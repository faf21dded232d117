//! The LUKS2 JSON metadata (LUKS2 on-disk format specification, section 3): its raw form is a
//! `serde_json::Value`; [`validate`] turns it into typed, checked structs or says why not.
//!
//! Two kinds of refusal are kept apart, because they decide what happens with the other
//! header copy: [`Reject::Damaged`] is metadata that cryptsetup itself would call invalid (the
//! other copy is then used), [`Reject::Unsupported`] is valid metadata describing something
//! luksfuse does not do (reencryption in progress, dm-integrity, non-AES ciphers, ...).

use super::access::{bad, cipher, numbered, object, R};
use super::sections::{parse_config, parse_digest, parse_keyslot, parse_segment, parse_token};
use crate::crypto::hash::HashAlg;
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;
use crate::units::SectorSize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Highest keyslot, token, segment and digest id accepted (cryptsetup has 32 keyslots).
pub const MAX_ID: u32 = 31;
/// Keyslot and digest salts made by cryptsetup are 32 bytes (`LUKS_SALTSIZE`).
pub const KEYSLOT_SALT_LEN: usize = 32;
/// Upper bound on AF stripes (cryptsetup always writes 4000).
pub const MAX_STRIPES: u32 = 1_000_000;
/// Upper bound on a key size in bytes.
pub const MAX_KEY_SIZE: usize = 512;
/// Upper bound on the length of a digest in bytes.
pub const MAX_DIGEST_LEN: usize = 64;

/// Why a copy of the metadata is refused.
#[derive(Debug)]
pub enum Reject {
    /// Invalid metadata: the other header copy may be used instead.
    Damaged(Error),
    /// Valid metadata that luksfuse refuses to use.
    Unsupported(Error),
}

impl Reject {
    pub fn into_error(self) -> Error {
        match self {
            Reject::Damaged(e) | Reject::Unsupported(e) => e,
        }
    }
}

/// Keyslot priority (`priority`; absent means normal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Ignore,
    Normal,
    High,
}

impl Priority {
    /// As cryptsetup's luksDump prints it.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Ignore => "ignored",
            Priority::Normal => "normal",
            Priority::High => "preferred",
        }
    }
}

/// A keyslot's key material area (`area`, type `raw`).
#[derive(Debug, Clone)]
pub struct Area {
    /// Byte offset in the header file.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// Cipher protecting the material, e.g. `aes-xts-plain64`.
    pub encryption: String,
    /// Key size in bytes of that cipher (the length derived from the passphrase).
    pub key_size: usize,
}

/// A keyslot of type `luks2`.
#[derive(Debug, Clone)]
pub struct Keyslot {
    /// Volume key size in bytes.
    pub key_size: usize,
    pub priority: Priority,
    /// Anti-forensic splitter (`af`, type `luks1`).
    pub stripes: u32,
    pub af_hash: HashAlg,
    pub area: Area,
    pub kdf: Kdf,
    /// The digest this keyslot is assigned to, if any.
    pub digest: Option<u32>,
}

impl Keyslot {
    /// Bytes of AF-split key material.
    pub fn af_len(&self) -> usize {
        // Bounded at validation: key_size <= 512, stripes <= 1e6.
        self.key_size * usize::try_from(self.stripes).expect("stripes <= 1e6")
    }
    /// AF material rounded up to whole 512-byte sectors: what is read and decrypted.
    pub fn af_sectors_len(&self) -> usize {
        self.af_len().div_ceil(512) * 512
    }
}

/// A digest of type `pbkdf2`: PBKDF2 of the volume key, to recognise the right key.
#[derive(Debug, Clone)]
pub struct Digest {
    pub keyslots: Vec<u32>,
    pub segments: Vec<u32>,
    /// Always [`Kdf::Pbkdf2`].
    pub kdf: Kdf,
    pub digest: Vec<u8>,
}

impl Digest {
    /// Whether `key` is the key this digest was made of (compared in constant time).
    pub fn matches(&self, key: &[u8]) -> Result<bool> {
        let check = self.kdf.derive(key, self.digest.len())?;
        Ok(check.ct_eq(&self.digest))
    }
}

/// The data segment (type `crypt`).
#[derive(Debug, Clone)]
pub struct CryptSegment {
    pub id: u32,
    pub offset: u64,
    /// `None` for `dynamic`.
    pub size: Option<u64>,
    pub iv_tweak: u64,
    pub encryption: String,
    pub sector_size: SectorSize,
    pub flags: Vec<String>,
}

/// A token: only its type and keyslots are looked at (for the dump).
#[derive(Debug, Clone)]
pub struct Token {
    pub kind: String,
    pub keyslots: Vec<u32>,
}

/// `config`.
#[derive(Debug, Clone)]
pub struct Config {
    pub json_size: u64,
    pub keyslots_size: u64,
    pub flags: Vec<String>,
}

/// Validated metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub keyslots: BTreeMap<u32, Keyslot>,
    pub digests: BTreeMap<u32, Digest>,
    pub segment: CryptSegment,
    /// The digest of the segment, if any keyslot can unlock it.
    pub segment_digest: Option<u32>,
    pub tokens: BTreeMap<u32, Token>,
    pub config: Config,
}

/// Checks that keyslot areas lie in the keyslots area, after both header copies, and do not
/// overlap each other.
fn check_areas(keyslots: &BTreeMap<u32, Keyslot>, hdr_size: u64, keyslots_size: u64) -> R<()> {
    let start = hdr_size * 2; // hdr_size <= 4 MiB
    let end = start
        .checked_add(keyslots_size)
        .ok_or_else(|| bad("keyslots area size overflows"))?;
    let mut areas: Vec<(u64, u64, u32)> = Vec::with_capacity(keyslots.len());
    for (&n, k) in keyslots {
        let (a, b) = (k.area.offset, k.area.offset + k.area.size); // checked in parse_keyslot
        if a < start {
            return Err(bad(format!(
                "keyslot {n}: area at offset {a} overlaps the LUKS2 header copies (which end at {start})"
            )));
        }
        if b > end {
            return Err(bad(format!(
                "keyslot {n}: area ends at {b}, past the keyslots area end {end}"
            )));
        }
        areas.push((a, b, n));
    }
    areas.sort_unstable();
    for w in areas.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(bad(format!(
                "keyslot areas of keyslots {} and {} overlap",
                w[0].2, w[1].2
            )));
        }
    }
    Ok(())
}

/// Validates the JSON metadata of a header copy of `hdr_size` bytes.
pub fn validate(json: &Value, hdr_size: u64) -> R<Metadata> {
    let root = object(json, "LUKS2 metadata")?;
    // Requirements first: a header in the middle of a reencryption must be refused as such,
    // not for the unusual segments and keyslots it then has.
    let config = parse_config(root, hdr_size)?;
    let segment = parse_segment(root)?;

    let mut keyslots = BTreeMap::new();
    for (n, k) in numbered(root, "keyslots", "keyslot")? {
        keyslots.insert(n, parse_keyslot(n, k)?);
    }
    check_areas(&keyslots, hdr_size, config.keyslots_size)?;

    let mut digests = BTreeMap::new();
    for (n, d) in numbered(root, "digests", "digest")? {
        digests.insert(n, parse_digest(n, d)?);
    }
    let mut segment_digest = None;
    for (&n, d) in &digests {
        for k in &d.keyslots {
            let slot = keyslots.get_mut(k).ok_or_else(|| {
                bad(format!(
                    "digest {n} refers to keyslot {k}, which does not exist"
                ))
            })?;
            if let Some(other) = slot.digest.replace(n) {
                return Err(bad(format!(
                    "keyslot {k} is assigned to digests {other} and {n}"
                )));
            }
        }
        for s in &d.segments {
            if *s != segment.id {
                return Err(bad(format!(
                    "digest {n} refers to segment {s}, which does not exist"
                )));
            }
            if let Some(other) = segment_digest.replace(n) {
                return Err(bad(format!(
                    "segment {s} is assigned to digests {other} and {n}"
                )));
            }
        }
    }

    let mut tokens = BTreeMap::new();
    for (n, t) in numbered(root, "tokens", "token")? {
        let tok = parse_token(n, t)?;
        if let Some(k) = tok.keyslots.iter().find(|k| !keyslots.contains_key(k)) {
            return Err(bad(format!(
                "token {n} refers to keyslot {k}, which does not exist"
            )));
        }
        tokens.insert(n, tok);
    }

    // The volume key size is that of the keyslots bound to the segment; they must agree and
    // suit the segment cipher.
    let mut key_size = None;
    for (n, k) in keyslots.iter() {
        if k.digest.is_none() || k.digest != segment_digest {
            continue;
        }
        match key_size {
            None => {
                cipher(&segment.encryption, &format!("segment {}", segment.id))?
                    .check_key_size(k.key_size)
                    .map_err(|e| Reject::Unsupported(e.context(format!("keyslot {n}"))))?;
                key_size = Some(k.key_size);
            }
            Some(s) if s != k.key_size => {
                return Err(bad(format!(
                    "keyslot {n}: key size {} differs from the other keyslots' {s}",
                    k.key_size
                )));
            }
            Some(_) => {}
        }
    }

    Ok(Metadata {
        keyslots,
        digests,
        segment,
        segment_digest,
        tokens,
        config,
    })
}

impl Metadata {
    /// The volume key size in bytes (0 if no keyslot can unlock the segment).
    pub fn key_size(&self) -> usize {
        self.keyslots
            .values()
            .find(|k| k.digest.is_some() && k.digest == self.segment_digest)
            .map_or(0, |k| k.key_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_refuse_before_anything_else() {
        let j = serde_json::json!({
            "config": {"json_size": "12288", "keyslots_size": "4096",
                       "requirements": {"mandatory": ["online-reencrypt-v2"]}},
            "segments": {"0": {"type": "linear"}, "1": {"type": "crypt"}},
        });
        match validate(&j, 16384) {
            Err(Reject::Unsupported(e)) => assert!(e.message().contains("reencryption")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
