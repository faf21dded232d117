//! The sections of the LUKS2 JSON metadata, each parsed and checked on its own: `config`,
//! the segments, keyslots (with their KDF), digests and tokens. Cross-references between
//! them are [`super::metadata::validate`]'s job.

use super::access::{
    bad, base64, cipher, dec_u64, field, hash, id_list, int, int_u32, nonempty_string, numbered,
    object, string, string_list, u64_field, unsupported, R,
};
use super::metadata::{
    Area, Config, CryptSegment, Digest, ForeignDigest, Keyslot, Opener, Priority, ReencryptSlot,
    Reject, SegmentEntry, Token, KEYSLOT_SALT_LEN, MAX_DIGEST_LEN, MAX_KEY_SIZE, MAX_STRIPES,
};
use crate::error::Error;
use crate::luks::kdf::{Argon2Variant, Kdf};
use crate::units::{Bytes, SectorSize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest keyslots area cryptsetup accepts (`LUKS2_MAX_KEYSLOTS_SIZE`, 128 MiB).
pub const MAX_KEYSLOTS_SIZE: u64 = 128 << 20;

pub(super) fn parse_config(root: &Map<String, Value>, hdr_size: u64) -> R<Config> {
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
    if keyslots_size > MAX_KEYSLOTS_SIZE {
        return Err(bad(format!(
            "keyslots area size {keyslots_size} is over the maximum {MAX_KEYSLOTS_SIZE}"
        )));
    }
    if keyslots_size % 4096 != 0 {
        return Err(bad(format!(
            "keyslots area size {keyslots_size} is not a multiple of 4096"
        )));
    }
    let flags = string_list(c, "flags", what)?;
    let mut requirements = Vec::new();
    if let Some(req) = c.get("requirements") {
        let req = object(req, "config requirements")?;
        requirements = string_list(req, "mandatory", "config requirements")?;
        // Any requirement but reencryption: as cryptsetup, the header is read (dump,
        // keyslots) but neither mapped nor given keyslots (Luks2::mappable,
        // Header::seal_keyslot). Reencryption: see Luks2::reencryption.
    }
    let mut reencrypt = None;
    for r in &requirements {
        if let Some(version) = reencrypt_version(r) {
            // As cryptsetup's hdr_validate_requirements.
            if reencrypt.replace(version).is_some() {
                return Err(bad(
                    "config requirements: more than one online reencryption requirement",
                ));
            }
        }
    }
    Ok(Config {
        json_size,
        keyslots_size,
        flags,
        requirements,
        reencrypt,
    })
}

/// The version of an online reencryption requirement (cryptsetup's
/// `reencrypt_candidate_flag`): 1 for `online-reencrypt` (cryptsetup before 2.4.3), N for
/// `online-reencrypt-vN`; `None` for any other requirement.
pub(super) fn reencrypt_version(flag: &str) -> Option<u32> {
    if flag == "online-reencrypt" {
        return Some(1);
    }
    let digits = flag.strip_prefix("online-reencrypt-v")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A version too large for u32 is still a reencryption requirement (one luksfuse lacks).
    Some(digits.parse().unwrap_or(u32::MAX))
}

/// One segment, checked as cryptsetup's `hdr_validate_segments` checks it: every segment has
/// a type, a 512-aligned offset and a size (`dynamic`, or 512-aligned and not 0); a `crypt`
/// segment also has its cipher, IV tweak and sector size, and a size that is a whole number of
/// sectors. Whether luksfuse can map it is asked later ([`super::Luks2::mappable`]).
fn parse_segment(sid: u32, s: &Map<String, Value>) -> R<SegmentEntry> {
    let what = format!("segment {sid}");
    let kind = string(s, "type", &what)?.to_owned();
    let offset = u64_field(s, "offset", &what)?;
    let size = match string(s, "size", &what)? {
        "dynamic" => None,
        n => match dec_u64(n, &format!("{what} 'size'"))? {
            0 => return Err(bad(format!("{what}: size 0"))),
            n => Some(n),
        },
    };
    if offset % 512 != 0 {
        return Err(bad(format!(
            "{what}: offset {offset} is not a multiple of 512"
        )));
    }
    if size.is_some_and(|n| n % 512 != 0) {
        return Err(bad(format!(
            "{what}: size {} is not a multiple of 512",
            size.unwrap_or(0)
        )));
    }
    let flags = string_list(s, "flags", &what)?;
    let mut entry = SegmentEntry {
        kind,
        offset,
        size,
        encryption: None,
        sector_size: None,
        iv_tweak: 0,
        integrity: None,
        flags,
    };
    if entry.kind != "crypt" {
        // Shown by the dump as cryptsetup shows them, if they are there.
        entry.encryption = s
            .get("encryption")
            .and_then(Value::as_str)
            .map(str::to_owned);
        entry.sector_size = s.get("sector_size").and_then(Value::as_u64);
        return Ok(entry);
    }
    entry.iv_tweak = u64_field(s, "iv_tweak", &what)?;
    entry.encryption = Some(nonempty_string(s, "encryption", &what)?.to_owned());
    let sector_size = int_u32(s, "sector_size", &what, 512, 4096)?;
    let sector_size = SectorSize::try_from(sector_size).map_err(|_| {
        bad(format!(
            "{what}: sector size {sector_size} is not a power of two"
        ))
    })?;
    entry.sector_size = Some(sector_size.as_u64());
    if let Some(i) = s.get("integrity") {
        let i = object(i, &format!("{what} integrity"))?;
        entry.integrity = Some(string(i, "type", &format!("{what} integrity"))?.to_owned());
    }
    if let Some(n) = size {
        if !Bytes(n).is_multiple_of(sector_size) {
            return Err(bad(format!(
                "{what}: size {n} is not a multiple of the sector size {sector_size}"
            )));
        }
    }
    Ok(entry)
}

/// Whether a segment is a backup (cryptsetup's `json_segment_is_backup`: a flag starting with
/// `backup-`), which describes a layout of the whole device during a reencryption rather than
/// a part of it.
pub(super) fn is_backup(s: &SegmentEntry) -> bool {
    s.flags.iter().any(|f| f.starts_with("backup-"))
}

/// All segments, as cryptsetup's `hdr_validate_segments` checks them: ids without gaps from 0,
/// at least one regular segment and the backup segments (see [`is_backup`]) after all of them;
/// among the regular ones only the last `dynamic` and none overlapping (as
/// `validate_segment_intervals`; offsets + sizes past 2^64 count as reaching the end). With an
/// online reencryption requirement (`reencrypt`), also `validate_reencrypt_segments`.
pub(super) fn parse_segments(
    root: &Map<String, Value>,
    reencrypt: bool,
) -> R<BTreeMap<u32, SegmentEntry>> {
    let mut out = BTreeMap::new();
    for (n, s) in numbered(root, "segments", "segment")? {
        out.insert(n, parse_segment(n, s)?);
    }
    if out.is_empty() {
        return Err(bad("LUKS2 header has no data segment"));
    }
    if let Some((i, _)) = out.keys().enumerate().find(|(i, n)| **n as usize != *i) {
        return Err(bad(format!("segment ids have a gap at {i}")));
    }
    let first_backup = out
        .iter()
        .find(|(_, s)| is_backup(s))
        .map_or(out.len(), |(n, _)| *n as usize);
    if let Some((n, _)) = out
        .iter()
        .find(|(n, s)| **n as usize > first_backup && !is_backup(s))
    {
        return Err(bad(format!(
            "segment {n} is a regular segment after backup segment {first_backup}"
        )));
    }
    if first_backup == 0 {
        return Err(bad(
            "LUKS2 header has no regular data segment (only backups)",
        ));
    }
    let regular: Vec<(u32, &SegmentEntry)> = out
        .iter()
        .take(first_backup)
        .map(|(n, s)| (*n, s))
        .collect();
    let last = first_backup - 1;
    let end = |e: &SegmentEntry| e.size.map_or(u64::MAX, |n| e.offset.saturating_add(n));
    for &(i, a) in &regular {
        if a.size.is_none() && i as usize != last {
            return Err(bad(format!(
                "segment {i}: only the last segment may have size 'dynamic'"
            )));
        }
        for &(j, b) in &regular {
            if i != j && a.offset >= b.offset && a.offset < end(b) {
                return Err(bad(format!("segments {i} and {j} overlap")));
            }
        }
    }
    if reencrypt {
        check_reencrypt_segments(&out, first_backup)?;
    }
    Ok(out)
}

/// cryptsetup's `json_segment_cmp`: the same type and, for `crypt`, the same sector size and
/// cipher.
fn same_layout(a: &SegmentEntry, b: &SegmentEntry) -> bool {
    a.kind == b.kind
        && (a.kind != "crypt" || (a.sector_size == b.sector_size && a.encryption == b.encryption))
}

/// cryptsetup's `validate_reencrypt_segments`: both the `backup-final` and `backup-previous`
/// segments exist, every regular segment has the layout of one of them, and the segment in
/// reencryption that of `backup-final`.
fn check_reencrypt_segments(segs: &BTreeMap<u32, SegmentEntry>, first_backup: usize) -> R<()> {
    let with = |flag: &str| {
        segs.values()
            .skip(first_backup)
            .find(|s| s.flags.iter().any(|f| f == flag))
    };
    let (Some(fin), Some(prev)) = (with("backup-final"), with("backup-previous")) else {
        return Err(bad(
            "reencryption in progress but the 'backup-final' or 'backup-previous' segment is missing",
        ));
    };
    for (n, s) in segs.iter().take(first_backup) {
        if s.flags.iter().any(|f| f == "in-reencryption") {
            if !same_layout(s, fin) {
                return Err(bad(format!(
                    "segment {n} is in reencryption but does not match the 'backup-final' segment"
                )));
            }
        } else if !same_layout(s, fin) && !same_layout(s, prev) {
            return Err(bad(format!(
                "segment {n} matches neither the 'backup-final' nor the 'backup-previous' segment"
            )));
        }
    }
    Ok(())
}

/// Segment `id` as luksfuse would map it (see [`CryptSegment`]).
pub(super) fn default_segment(segments: &BTreeMap<u32, SegmentEntry>, id: u32) -> CryptSegment {
    let s = &segments[&id]; // the caller names a segment that exists
    CryptSegment {
        id,
        offset: s.offset,
        size: s.size,
        iv_tweak: s.iv_tweak,
        encryption: s.encryption.clone().unwrap_or_else(|| "null".to_owned()),
        sector_size: s
            .sector_size
            .and_then(|z| u32::try_from(z).ok())
            .and_then(|z| SectorSize::try_from(z).ok())
            .unwrap_or(SectorSize::MIN),
        flags: s.flags.clone(),
    }
}

pub(super) fn parse_kdf(k: &Map<String, Value>, what: &str) -> R<Kdf> {
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
            iterations: int_u32(k, "iterations", &what, 1, u32::MAX)?,
            salt: salt_of(k)?,
        },
        "argon2i" | "argon2id" => Kdf::Argon2 {
            variant: if kind == "argon2i" {
                Argon2Variant::Argon2i
            } else {
                Argon2Variant::Argon2id
            },
            time: int_u32(k, "time", &what, 1, u32::MAX)?,
            memory_kib: int_u32(k, "memory", &what, 1, u32::MAX)?,
            lanes: int_u32(k, "cpus", &what, 1, u32::MAX)?,
            salt: salt_of(k)?,
        },
        other => return Err(unsupported(format!("{what}: unknown KDF type '{other}'"))),
    };
    // Costs are checked here, long before any derivation.
    kdf.validate()
        .map_err(|e| Reject::Unsupported(e.context(&what)))?;
    Ok(kdf)
}

/// The field `key` of `obj`, which must be there and be a string or integer as `json_type`
/// says (cryptsetup's `json_contains`; a string must not be empty, as `json_contains_string`);
/// its value is read later.
fn require(obj: &Map<String, Value>, key: &str, what: &str, integer: bool) -> R<()> {
    let v = field(obj, key, what)?;
    if (integer && !v.is_i64() && !v.is_u64()) || (!integer && v.as_str().is_none_or(str::is_empty))
    {
        return Err(bad(format!(
            "{what}: '{key}' is not a {}",
            if integer {
                "number"
            } else {
                "non-empty string"
            }
        )));
    }
    Ok(())
}

/// Checks what cryptsetup's `luks2_keyslot_validate` requires of a `luks2` keyslot for the
/// header to be valid at all: its `kdf`, `af` (type `luks1`) and `area` (type `raw`) objects
/// with their fields.
fn check_luks2_shape(k: &Map<String, Value>, what: &str) -> R<()> {
    let kdf_what = format!("{what} kdf");
    let kdf = object(field(k, "kdf", what)?, &kdf_what)?;
    let af_what = format!("{what} af");
    let af = object(field(k, "af", what)?, &af_what)?;
    let area_what = format!("{what} area");
    let area = object(field(k, "area", what)?, &area_what)?;
    let fields: &[(&str, bool)] = match string(kdf, "type", &kdf_what)? {
        "pbkdf2" => &[("hash", false), ("iterations", true), ("salt", false)],
        "argon2i" | "argon2id" => &[
            ("time", true),
            ("memory", true),
            ("cpus", true),
            ("salt", false),
        ],
        _ => &[],
    };
    // Fields another KDF left behind (cryptsetup's `LUKS2_keyslots_repair` deletes them when
    // it reads the header, before validating it) are ignored here.
    for (key, integer) in fields {
        require(kdf, key, &kdf_what, *integer)?;
    }
    let af_kind = string(af, "type", &af_what)?;
    if af_kind != "luks1" {
        return Err(bad(format!(
            "{af_what}: AF type '{af_kind}' is not 'luks1'"
        )));
    }
    require(af, "hash", &af_what, false)?;
    require(af, "stripes", &af_what, true)?;
    let area_kind = string(area, "type", &area_what)?;
    if area_kind != "raw" {
        return Err(bad(format!(
            "{area_what}: area type '{area_kind}' is not 'raw'"
        )));
    }
    require(area, "encryption", &area_what, false)?;
    require(area, "key_size", &area_what, true)
}

/// How to open a `luks2` keyslot of the right shape, or why luksfuse cannot: its key size,
/// AF, cipher, KDF and area size are checked here (an unusable keyslot is not a damaged
/// header).
fn open_params(k: &Map<String, Value>, slot_key_size: u64, area: &Area, what: &str) -> R<Opener> {
    let key_size = usize::try_from(slot_key_size)
        .ok()
        .filter(|n| (1..=MAX_KEY_SIZE).contains(n))
        .ok_or_else(|| unsupported(format!("key size {slot_key_size} is not supported")))?;
    let af_what = format!("{what} af");
    let af = object(field(k, "af", what)?, &af_what)?;
    let stripes = int_u32(af, "stripes", &af_what, 1, MAX_STRIPES)?;
    let af_hash = hash(af, "hash", &af_what)?;
    if !(1..=MAX_KEY_SIZE).contains(&area.key_size) {
        return Err(unsupported(format!(
            "{what} area: key size {} is not supported",
            area.key_size
        )));
    }
    cipher(&area.encryption, &format!("{what} area"))?
        .check_key_size(area.key_size)
        .map_err(|e| Reject::Unsupported(e.context(format!("{what} area"))))?;
    let kdf = parse_kdf(object(field(k, "kdf", what)?, what)?, what)?;
    // Bounded: key_size <= 512, stripes <= 1e6.
    let need = (key_size as u64 * u64::from(stripes)).div_ceil(512) * 512;
    if area.size < need {
        return Err(bad(format!(
            "{what} area: {} bytes, too small for {need} bytes of key material",
            area.size
        )));
    }
    Ok(Opener {
        stripes,
        af_hash,
        kdf,
    })
}

pub(super) fn parse_keyslot(n: u32, k: &Map<String, Value>) -> R<Keyslot> {
    let what = format!("keyslot {n}");
    let kind = string(k, "type", &what)?.to_owned();
    let key_size = int(k, "key_size", &what, 0, u32::MAX.into())?;
    let priority = match k.get("priority") {
        None => Priority::Normal,
        Some(_) => match int(k, "priority", &what, 0, 2)? {
            0 => Priority::Ignore,
            1 => Priority::Normal,
            _ => Priority::High,
        },
    };
    // Every keyslot, whatever its type, has an area with a type, an offset and a size
    // (cryptsetup's hdr_validate_areas).
    let area_what = format!("{what} area");
    let a = object(field(k, "area", &what)?, &area_what)?;
    string(a, "type", &area_what)?;
    if kind == "luks2" {
        check_luks2_shape(k, &what)?;
    }
    let reencrypt = match kind.as_str() {
        "reencrypt" => Some(parse_reencrypt_keyslot(k, key_size, &what)?),
        _ => None,
    };
    let area = Area {
        offset: u64_field(a, "offset", &area_what)?,
        size: u64_field(a, "size", &area_what)?,
        encryption: a
            .get("encryption")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        key_size: a
            .get("key_size")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0),
    };
    if area.size == 0 {
        return Err(bad(format!("{area_what}: size 0")));
    }
    if area.offset.checked_add(area.size).is_none() {
        return Err(bad(format!("{area_what}: offset + size overflows")));
    }
    let opener = if kind == "luks2" {
        open_params(k, key_size, &area, "keyslot").map_err(Reject::into_error)
    } else if reencrypt.is_some() {
        Err(Error::unsupported(
            "a reencryption keyslot holds no key (it records a reencryption in progress)",
        ))
    } else {
        Err(Error::unsupported(format!(
            "keyslot type '{kind}' is not supported"
        )))
    };
    Ok(Keyslot {
        kind,
        key_size: usize::try_from(key_size).unwrap_or(usize::MAX),
        priority,
        area,
        opener,
        digest: None,
        reencrypt,
    })
}

/// Checks a `reencrypt` keyslot as cryptsetup's `reenc_keyslot_validate` does and keeps what
/// it says (its area's offset and size are checked with every keyslot's).
fn parse_reencrypt_keyslot(k: &Map<String, Value>, key_size: u64, what: &str) -> R<ReencryptSlot> {
    // "Useless but mandatory": exactly 1.
    if key_size != 1 {
        return Err(bad(format!(
            "{what}: reencryption keyslot key size {key_size}, must be 1"
        )));
    }
    let mode = nonempty_string(k, "mode", what)?;
    if !["reencrypt", "encrypt", "decrypt"].contains(&mode) {
        return Err(bad(format!("{what}: unknown reencryption mode '{mode}'")));
    }
    let direction = nonempty_string(k, "direction", what)?;
    if !["forward", "backward"].contains(&direction) {
        return Err(bad(format!(
            "{what}: unknown reencryption direction '{direction}'"
        )));
    }
    let area_what = format!("{what} area");
    let a = object(field(k, "area", what)?, &area_what)?;
    let resilience = string(a, "type", &area_what)?.to_owned();
    let (mut hash, mut block, mut shift) = (None, None, None);
    if resilience == "checksum" || resilience == "datashift-checksum" {
        hash = Some(nonempty_string(a, "hash", &area_what)?.to_owned());
        let b = int_u32(a, "sector_size", &area_what, 512, u32::MAX)?;
        if !b.is_power_of_two() {
            return Err(bad(format!(
                "{area_what}: checksum block size {b} is not a power of two"
            )));
        }
        block = Some(b);
    } else if resilience.starts_with("datashift") {
        let n = u64_field(a, "shift_size", &area_what)?;
        if n == 0 || n % 512 != 0 {
            return Err(bad(format!(
                "{area_what}: shift size {n} is not a non-zero multiple of 512"
            )));
        }
        shift = Some(n);
    }
    Ok(ReencryptSlot {
        mode: mode.to_owned(),
        direction: direction.to_owned(),
        resilience,
        hash,
        block,
        shift,
    })
}

pub(super) fn parse_digest(n: u32, d: &Map<String, Value>) -> R<Digest> {
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
        iterations: int_u32(d, "iterations", &what, 1, u32::MAX)?,
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

/// A digest of a type other than `pbkdf2`, which luksfuse cannot check: its type and what it
/// refers to (cryptsetup's hdr_validate_digests requires no more of it), or `None` for a
/// `pbkdf2` digest ([`parse_digest`]).
pub(super) fn parse_foreign_digest(n: u32, d: &Map<String, Value>) -> R<Option<ForeignDigest>> {
    let what = format!("digest {n}");
    let kind = string(d, "type", &what)?;
    if kind == "pbkdf2" {
        return Ok(None);
    }
    Ok(Some(ForeignDigest {
        kind: kind.to_owned(),
        keyslots: id_list(d, "keyslots", &what)?,
        segments: id_list(d, "segments", &what)?,
    }))
}

pub(super) fn parse_token(n: u32, t: &Map<String, Value>) -> R<Token> {
    let what = format!("token {n}");
    Ok(Token {
        kind: string(t, "type", &what)?.to_owned(),
        keyslots: id_list(t, "keyslots", &what)?,
    })
}
