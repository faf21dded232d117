//! The LUKS2 JSON metadata (LUKS2 on-disk format specification, section 3): its raw form is a
//! `serde_json::Value`; [`validate`] turns it into typed, checked structs or says why not.
//!
//! Two kinds of refusal are kept apart, because they decide what happens with the other
//! header copy: [`Reject::Damaged`] is metadata that cryptsetup itself would call invalid (the
//! other copy is then used), [`Reject::Unsupported`] is valid metadata describing something
//! luksfuse does not do (reencryption in progress, dm-integrity, non-AES ciphers, ...).

use crate::crypto::CipherSpec;
use crate::error::Error;
use crate::luks::hash::HashAlg;
use crate::luks::kdf::{Argon2Variant, Kdf};
use crate::units::{Bytes, SectorSize};
use base64ct::{Base64, Encoding};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Highest keyslot, token, segment and digest id accepted (cryptsetup has 32 keyslots).
pub const MAX_ID: u32 = 31;
/// Keyslot and digest salts made by cryptsetup are 32 bytes (`LUKS_SALTSIZE`).
pub const KEYSLOT_SALT_LEN: usize = 32;
/// Upper bound on AF stripes (cryptsetup always writes 4000).
pub const MAX_STRIPES: u64 = 1_000_000;
/// Upper bound on a key size in bytes.
pub const MAX_KEY_SIZE: u64 = 512;
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

type R<T> = std::result::Result<T, Reject>;

fn bad(msg: impl Into<String>) -> Reject {
    Reject::Damaged(Error::format(msg))
}

fn unsupported(msg: impl Into<String>) -> Reject {
    Reject::Unsupported(Error::format(msg))
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
        self.key_size * self.stripes as usize
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

// ---- small typed accessors; every one names what it looked at ----

fn object<'a>(v: &'a Value, what: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} is not a JSON object")))
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> R<&'a Value> {
    obj.get(key)
        .ok_or_else(|| bad(format!("{what}: missing '{key}'")))
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> R<&'a str> {
    field(obj, key, what)?
        .as_str()
        .ok_or_else(|| bad(format!("{what}: '{key}' is not a string")))
}

/// A JSON integer in `min..=max`.
fn int(obj: &Map<String, Value>, key: &str, what: &str, min: u64, max: u64) -> R<u64> {
    let n = field(obj, key, what)?
        .as_u64()
        .ok_or_else(|| bad(format!("{what}: '{key}' is not a non-negative integer")))?;
    if n < min || n > max {
        return Err(bad(format!(
            "{what}: '{key}' = {n} out of range {min}..={max}"
        )));
    }
    Ok(n)
}

/// A u64 written as a decimal string (`"16384"`), as LUKS2 writes offsets and sizes.
fn dec_u64(s: &str, what: &str) -> R<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{what}: '{s}' is not a decimal number")));
    }
    s.parse::<u64>()
        .map_err(|_| bad(format!("{what}: {s} does not fit in 64 bits")))
}

fn u64_field(obj: &Map<String, Value>, key: &str, what: &str) -> R<u64> {
    dec_u64(string(obj, key, what)?, &format!("{what} '{key}'"))
}

/// An object key naming a keyslot, segment, digest or token: a decimal number `0..=MAX_ID`
/// without leading zeros.
fn id(s: &str, what: &str) -> R<u32> {
    let ok = !s.is_empty()
        && s.len() <= 2
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    match s.parse::<u32>() {
        Ok(n) if ok && n <= MAX_ID => Ok(n),
        _ => Err(bad(format!("invalid {what} id '{s}'"))),
    }
}

/// An array of id strings (`"keyslots": ["0", "1"]`).
fn id_list(obj: &Map<String, Value>, key: &str, what: &str) -> R<Vec<u32>> {
    let arr = field(obj, key, what)?
        .as_array()
        .ok_or_else(|| bad(format!("{what}: '{key}' is not an array")))?;
    let mut out = Vec::with_capacity(arr.len().min(MAX_ID as usize + 1));
    for v in arr {
        let s = v
            .as_str()
            .ok_or_else(|| bad(format!("{what}: '{key}' holds a non-string")))?;
        let n = id(s, &format!("{what} {key}"))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn string_list(obj: &Map<String, Value>, key: &str, what: &str) -> R<Vec<String>> {
    match obj.get(key) {
        None => Ok(Vec::new()),
        Some(v) => {
            let arr = v
                .as_array()
                .ok_or_else(|| bad(format!("{what}: '{key}' is not an array")))?;
            arr.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("{what}: '{key}' holds a non-string")))
                })
                .collect()
        }
    }
}

fn base64(obj: &Map<String, Value>, key: &str, what: &str) -> R<Vec<u8>> {
    Base64::decode_vec(string(obj, key, what)?)
        .map_err(|_| bad(format!("{what}: '{key}' is not valid base64")))
}

fn hash(obj: &Map<String, Value>, key: &str, what: &str) -> R<HashAlg> {
    let name = string(obj, key, what)?;
    HashAlg::from_name(name).map_err(|_| unsupported(format!("{what}: unsupported hash '{name}'")))
}

fn cipher(spec: &str, what: &str) -> R<CipherSpec> {
    CipherSpec::parse(spec).map_err(|e| Reject::Unsupported(e.context(what)))
}

/// Entries of a section keyed by id, in id order.
fn numbered<'a>(
    root: &'a Map<String, Value>,
    section: &str,
    what: &str,
) -> R<BTreeMap<u32, &'a Map<String, Value>>> {
    let obj = object(field(root, section, "LUKS2 metadata")?, section)?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let n = id(k, what)?;
        let entry = object(v, &format!("{what} {k}"))?;
        if out.insert(n, entry).is_some() {
            return Err(bad(format!("duplicate {what} id {n}")));
        }
    }
    Ok(out)
}

// ---- the sections ----

fn parse_config(root: &Map<String, Value>, hdr_size: u64) -> R<Config> {
    let what = "config";
    let c = object(field(root, "config", "LUKS2 metadata")?, what)?;
    let json_size = u64_field(c, "json_size", what)?;
    // hdr_size is one of the allowed sizes, all above 4096.
    if json_size != hdr_size - super::binary::BIN_LEN as u64 {
        return Err(bad(format!(
            "JSON area size {json_size} does not match header size {hdr_size}"
        )));
    }
    let keyslots_size = u64_field(c, "keyslots_size", what)?;
    if keyslots_size % 4096 != 0 {
        return Err(bad(format!(
            "keyslots area size {keyslots_size} is not a multiple of 4096"
        )));
    }
    let flags = string_list(c, "flags", what)?;
    if let Some(req) = c.get("requirements") {
        let req = object(req, "config requirements")?;
        if let Some(r) = string_list(req, "mandatory", "config requirements")?.first() {
            if r.contains("reencrypt") {
                return Err(unsupported(format!(
                    "LUKS2 reencryption is in progress (requirement '{r}'); finish it with cryptsetup first"
                )));
            }
            return Err(unsupported(format!(
                "unknown mandatory LUKS2 requirement '{r}' (refused)"
            )));
        }
    }
    Ok(Config {
        json_size,
        keyslots_size,
        flags,
    })
}

fn parse_segment(root: &Map<String, Value>) -> R<CryptSegment> {
    let segments = numbered(root, "segments", "segment")?;
    let mut it = segments.iter();
    let (&sid, s) = match (it.next(), segments.len()) {
        (Some(first), 1) => first,
        (None, _) => return Err(unsupported("LUKS2 header has no data segment")),
        (_, n) => {
            return Err(unsupported(format!(
            "LUKS2 header has {n} data segments (reencryption in progress?); only one is supported"
        )))
        }
    };
    let what = format!("segment {sid}");
    let kind = string(s, "type", &what)?;
    if kind != "crypt" {
        return Err(unsupported(format!(
            "{what}: segment type '{kind}' is not supported"
        )));
    }
    if s.contains_key("integrity") {
        return Err(unsupported(format!(
            "{what}: dm-integrity (authenticated encryption) is not supported"
        )));
    }
    let offset = u64_field(s, "offset", &what)?;
    let size = match string(s, "size", &what)? {
        "dynamic" => None,
        n => Some(dec_u64(n, &format!("{what} 'size'"))?),
    };
    let iv_tweak = u64_field(s, "iv_tweak", &what)?;
    let encryption = string(s, "encryption", &what)?.to_owned();
    let sector_size = int(s, "sector_size", &what, 512, 4096)?;
    let sector_size = SectorSize::new(sector_size).map_err(|_| {
        bad(format!(
            "{what}: sector size {sector_size} is not a power of two"
        ))
    })?;
    if offset % 512 != 0 {
        return Err(bad(format!(
            "{what}: offset {offset} is not a multiple of 512"
        )));
    }
    if let Some(n) = size {
        if !Bytes(n).is_multiple_of(sector_size) {
            return Err(bad(format!(
                "{what}: size {n} is not a multiple of the sector size {sector_size}"
            )));
        }
        if offset.checked_add(n).is_none() {
            return Err(bad(format!("{what}: offset + size overflows")));
        }
    }
    let flags = string_list(s, "flags", &what)?;
    cipher(&encryption, &what)?;
    Ok(CryptSegment {
        id: sid,
        offset,
        size,
        iv_tweak,
        encryption,
        sector_size,
        flags,
    })
}

fn parse_kdf(k: &Map<String, Value>, what: &str) -> R<Kdf> {
    let what = format!("{what} kdf");
    let kind = string(k, "type", &what)?;
    let salt_of = |k: &Map<String, Value>| -> R<Vec<u8>> {
        let salt = base64(k, "salt", &what)?;
        if salt.len() != KEYSLOT_SALT_LEN {
            return Err(bad(format!(
                "{what}: salt of {} bytes, expected {KEYSLOT_SALT_LEN}",
                salt.len()
            )));
        }
        Ok(salt)
    };
    let kdf = match kind {
        "pbkdf2" => Kdf::Pbkdf2 {
            hash: hash(k, "hash", &what)?,
            iterations: int(k, "iterations", &what, 1, u32::MAX.into())? as u32,
            salt: salt_of(k)?,
        },
        "argon2i" | "argon2id" => Kdf::Argon2 {
            variant: if kind == "argon2i" {
                Argon2Variant::Argon2i
            } else {
                Argon2Variant::Argon2id
            },
            time: int(k, "time", &what, 1, u32::MAX.into())? as u32,
            memory_kib: int(k, "memory", &what, 1, u32::MAX.into())? as u32,
            lanes: int(k, "cpus", &what, 1, u32::MAX.into())? as u32,
            salt: salt_of(k)?,
        },
        other => return Err(unsupported(format!("{what}: unknown KDF type '{other}'"))),
    };
    // Costs are checked here, long before any derivation.
    kdf.validate()
        .map_err(|e| Reject::Unsupported(e.context(&what)))?;
    Ok(kdf)
}

fn parse_keyslot(n: u32, k: &Map<String, Value>) -> R<Keyslot> {
    let what = format!("keyslot {n}");
    let kind = string(k, "type", &what)?;
    if kind == "reencrypt" {
        return Err(unsupported(format!(
            "{what} is a reencryption keyslot: LUKS2 reencryption is in progress"
        )));
    }
    if kind != "luks2" {
        return Err(unsupported(format!(
            "{what}: keyslot type '{kind}' is not supported"
        )));
    }
    let key_size = int(k, "key_size", &what, 1, MAX_KEY_SIZE)? as usize;
    let priority = match k.get("priority") {
        None => Priority::Normal,
        Some(_) => match int(k, "priority", &what, 0, 2)? {
            0 => Priority::Ignore,
            1 => Priority::Normal,
            _ => Priority::High,
        },
    };

    let af_what = format!("{what} af");
    let af = object(field(k, "af", &what)?, &af_what)?;
    let af_kind = string(af, "type", &af_what)?;
    if af_kind != "luks1" {
        return Err(unsupported(format!(
            "{af_what}: AF type '{af_kind}' is not supported"
        )));
    }
    let stripes = int(af, "stripes", &af_what, 1, MAX_STRIPES)? as u32;
    let af_hash = hash(af, "hash", &af_what)?;

    let area_what = format!("{what} area");
    let a = object(field(k, "area", &what)?, &area_what)?;
    let area_kind = string(a, "type", &area_what)?;
    if area_kind != "raw" {
        return Err(unsupported(format!(
            "{area_what}: area type '{area_kind}' is not supported"
        )));
    }
    let area = Area {
        offset: u64_field(a, "offset", &area_what)?,
        size: u64_field(a, "size", &area_what)?,
        encryption: string(a, "encryption", &area_what)?.to_owned(),
        key_size: int(a, "key_size", &area_what, 1, MAX_KEY_SIZE)? as usize,
    };
    cipher(&area.encryption, &area_what)?
        .check_key_size(area.key_size)
        .map_err(|e| Reject::Unsupported(e.context(&area_what)))?;
    if area.offset.checked_add(area.size).is_none() {
        return Err(bad(format!("{area_what}: offset + size overflows")));
    }

    let kdf = parse_kdf(object(field(k, "kdf", &what)?, &what)?, &what)?;
    let slot = Keyslot {
        key_size,
        priority,
        stripes,
        af_hash,
        area,
        kdf,
        digest: None,
    };
    let need = slot.af_sectors_len() as u64;
    if slot.area.size < need {
        return Err(bad(format!(
            "{area_what}: {} bytes, too small for {need} bytes of key material",
            slot.area.size
        )));
    }
    Ok(slot)
}

fn parse_digest(n: u32, d: &Map<String, Value>) -> R<Digest> {
    let what = format!("digest {n}");
    let kind = string(d, "type", &what)?;
    if kind != "pbkdf2" {
        return Err(unsupported(format!(
            "{what}: digest type '{kind}' is not supported"
        )));
    }
    let keyslots = id_list(d, "keyslots", &what)?;
    let segments = id_list(d, "segments", &what)?;
    let salt = base64(d, "salt", &what)?;
    if salt.is_empty() {
        return Err(bad(format!("{what}: empty salt")));
    }
    let kdf = Kdf::Pbkdf2 {
        hash: hash(d, "hash", &what)?,
        iterations: int(d, "iterations", &what, 1, u32::MAX.into())? as u32,
        salt,
    };
    kdf.validate()
        .map_err(|e| Reject::Unsupported(e.context(&what)))?;
    let digest = base64(d, "digest", &what)?;
    if digest.is_empty() || digest.len() > MAX_DIGEST_LEN {
        return Err(bad(format!(
            "{what}: digest of {} bytes out of range 1..={MAX_DIGEST_LEN}",
            digest.len()
        )));
    }
    Ok(Digest {
        keyslots,
        segments,
        kdf,
        digest,
    })
}

fn parse_token(n: u32, t: &Map<String, Value>) -> R<Token> {
    let what = format!("token {n}");
    Ok(Token {
        kind: string(t, "type", &what)?.to_owned(),
        keyslots: id_list(t, "keyslots", &what)?,
    })
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
    fn decimal_strings_must_be_plain_u64() {
        assert_eq!(dec_u64("16384", "x").ok(), Some(16384));
        assert_eq!(dec_u64("18446744073709551615", "x").ok(), Some(u64::MAX));
        for bad in ["", "-1", "+1", " 1", "0x10", "1e3", "18446744073709551616"] {
            assert!(dec_u64(bad, "x").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_are_small_decimals_without_leading_zeros() {
        assert_eq!(id("0", "keyslot").ok(), Some(0));
        assert_eq!(id("31", "keyslot").ok(), Some(31));
        for bad in ["", "32", "01", "-1", "a", "1 ", "100"] {
            assert!(id(bad, "keyslot").is_err(), "{bad:?} accepted");
        }
    }

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
