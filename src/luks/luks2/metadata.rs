//! The LUKS2 JSON metadata (LUKS2 on-disk format specification, section 3): its raw form is a
//! `serde_json::Value`; [`validate`] turns it into typed, checked structs or says why not.
//!
//! Two kinds of refusal are kept apart, because they decide what happens with the other
//! header copy: [`Reject::Damaged`] is metadata that cryptsetup itself would call invalid (the
//! other copy is then used), [`Reject::Unsupported`] is valid metadata describing something
//! luksfuse does not do at all (a reencryption in progress, unknown requirements). What only
//! some keyslots or the mapping need is not a refusal of the header: a keyslot luksfuse cannot
//! open keeps the reason ([`Keyslot::opener`]), and segments it cannot map are refused by
//! [`super::Luks2::mappable`].

use super::access::{bad, numbered, object, R};
use super::sections::{
    default_segment, is_backup, parse_config, parse_digest, parse_foreign_digest, parse_keyslot,
    parse_segments, parse_token,
};
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

/// A keyslot's key material area (`area`; luksfuse opens type `raw` only).
#[derive(Debug, Clone)]
pub struct Area {
    /// Byte offset in the header file.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// Cipher protecting the material, e.g. `aes-xts-plain64` (empty if the keyslot type
    /// has none).
    pub encryption: String,
    /// Key size in bytes of that cipher (the length derived from the passphrase; 0 if the
    /// keyslot type has none).
    pub key_size: usize,
}

/// What opening a usable keyslot takes besides its area.
#[derive(Debug, Clone)]
pub struct Opener {
    /// Anti-forensic splitter (`af`, type `luks1`).
    pub stripes: u32,
    pub af_hash: HashAlg,
    pub kdf: Kdf,
}

/// A keyslot. cryptsetup keeps a keyslot it cannot open (another type, an unknown KDF, a
/// cipher it lacks) in a valid header and opens the volume through the others; so does
/// luksfuse: such a keyslot is kept with the reason in [`Keyslot::opener`].
#[derive(Debug, Clone)]
pub struct Keyslot {
    /// `luks2`, or a type luksfuse does not know.
    pub kind: String,
    /// Volume key size in bytes.
    pub key_size: usize,
    pub priority: Priority,
    pub area: Area,
    /// How to open it, or why luksfuse cannot.
    pub opener: Result<Opener>,
    /// The digest this keyslot is assigned to, if any.
    pub digest: Option<u32>,
    /// What a `reencrypt` keyslot records (validated); `None` for every other type.
    pub reencrypt: Option<ReencryptSlot>,
}

/// A `reencrypt` keyslot as cryptsetup's `reenc_keyslot_validate` accepts it: it holds no key;
/// its area is the resilience area (checksums or journal of the hotzone being converted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptSlot {
    /// `encrypt`, `decrypt` or `reencrypt`.
    pub mode: String,
    /// `forward` or `backward`.
    pub direction: String,
    /// The area type: `checksum`, `journal`, `none`, `datashift`, `datashift-checksum`,
    /// `datashift-journal` (or another, which cryptsetup's validation lets pass).
    pub resilience: String,
    /// Checksum types: the hash name, as written (it may be one luksfuse lacks).
    pub hash: Option<String>,
    /// Checksum types: the size of each checksummed block (a power of two, at least 512).
    pub block: Option<u32>,
    /// Datashift types: the data shift in bytes.
    pub shift: Option<u64>,
}

impl Keyslot {
    /// Why luksfuse cannot open this keyslot, if it cannot.
    pub fn unusable(&self) -> Option<&Error> {
        self.opener.as_ref().err()
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

/// A digest of a type luksfuse does not know: only what it refers to.
#[derive(Debug, Clone)]
pub struct ForeignDigest {
    pub kind: String,
    pub keyslots: Vec<u32>,
    pub segments: Vec<u32>,
}

/// The default data segment (segment 0), as luksfuse would map it. Its fields are those of
/// a `crypt` segment; for a segment of another type they are cryptsetup's defaults (cipher
/// `null`, 512-byte sectors, no IV tweak) and [`SegmentEntry::kind`] says what it is.
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

/// Any segment, as the header lists them (for the dump, and to decide whether the header can
/// be mapped).
#[derive(Debug, Clone)]
pub struct SegmentEntry {
    /// `crypt`, `linear`, or a type luksfuse does not know.
    pub kind: String,
    pub offset: u64,
    /// `None` for `dynamic`.
    pub size: Option<u64>,
    /// The cipher (`crypt` segments; any other has it only if it says so).
    pub encryption: Option<String>,
    /// The encryption sector size in bytes (checked for `crypt` segments only).
    pub sector_size: Option<u64>,
    pub iv_tweak: u64,
    /// The dm-integrity type, if the segment has one.
    pub integrity: Option<String>,
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
    /// Mandatory requirements (`requirements.mandatory`), as written: with any of them the
    /// header may be read but neither mapped nor given new keyslots.
    pub requirements: Vec<String>,
    /// The version of the online reencryption requirement among them, if any: 1 for
    /// `online-reencrypt`, N for `online-reencrypt-vN`.
    pub reencrypt: Option<u32>,
}

/// Validated metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub keyslots: BTreeMap<u32, Keyslot>,
    pub digests: BTreeMap<u32, Digest>,
    /// Digests of types luksfuse does not know (their keyslots are unusable).
    pub foreign_digests: BTreeMap<u32, ForeignDigest>,
    /// The segment of the volume key: segment 0, the one cryptsetup activates; during a
    /// reencryption the backup segment of the encrypted layout (`backup-final`, or
    /// `backup-previous` when decrypting).
    pub segment: CryptSegment,
    /// Every segment, by id (segment 0 among them).
    pub segments: BTreeMap<u32, SegmentEntry>,
    /// The digest of the segment, if any keyslot can unlock it.
    pub segment_digest: Option<u32>,
    /// The `reencrypt` keyslot, if any (there is one exactly when a reencryption requirement
    /// is there).
    pub reencrypt_slot: Option<u32>,
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

/// As cryptsetup's `hdr_validate_config`: the keyslots area lies between the two header copies
/// and the first segment, unless that starts at 0 (a detached header).
fn check_keyslots_size(
    segments: &BTreeMap<u32, SegmentEntry>,
    hdr_size: u64,
    keyslots_size: u64,
) -> R<()> {
    let first = segments.values().map(|s| s.offset).min().unwrap_or(0);
    if first != 0
        && first
            .checked_sub(keyslots_size)
            .is_none_or(|gap| gap < 2 * hdr_size)
    {
        return Err(bad(format!(
            "keyslots area ({keyslots_size} bytes after the two {hdr_size}-byte header copies) \
             reaches into the data segment at offset {first}"
        )));
    }
    Ok(())
}

/// Validates the JSON metadata of a header copy of `hdr_size` bytes.
pub fn validate(json: &Value, hdr_size: u64) -> R<Metadata> {
    let root = object(json, "LUKS2 metadata")?;
    // Requirements first: a header in the middle of a reencryption must be refused as such,
    // not for the unusual segments and keyslots it then has.
    let config = parse_config(root, hdr_size)?;
    let segments = parse_segments(root, config.reencrypt.is_some())?;
    let segment = default_segment(&segments, key_segment(&segments));
    check_keyslots_size(&segments, hdr_size, config.keyslots_size)?;

    let mut keyslots = BTreeMap::new();
    for (n, k) in numbered(root, "keyslots", "keyslot")? {
        keyslots.insert(n, parse_keyslot(n, k)?);
    }
    check_areas(&keyslots, hdr_size, config.keyslots_size)?;
    // As cryptsetup's LUKS2_keyslots_validate.
    let reencrypt_slots: Vec<u32> = keyslots
        .iter()
        .filter(|(_, k)| k.reencrypt.is_some())
        .map(|(n, _)| *n)
        .collect();
    match (config.reencrypt, &reencrypt_slots[..]) {
        (Some(_), []) => {
            return Err(bad(
                "reencryption requirement set but there is no reencryption keyslot",
            ))
        }
        (None, [n, ..]) => {
            return Err(bad(format!(
                "keyslot {n} is a reencryption keyslot but the reencryption requirement is missing"
            )))
        }
        (_, [a, b, ..]) => {
            return Err(bad(format!(
                "keyslots {a} and {b} are both reencryption keyslots"
            )))
        }
        _ => {}
    }
    let reencrypt_slot = reencrypt_slots.first().copied();

    let mut digests = BTreeMap::new();
    let mut foreign_digests = BTreeMap::new();
    for (n, d) in numbered(root, "digests", "digest")? {
        match parse_foreign_digest(n, d)? {
            Some(f) => foreign_digests.insert(n, f).map(|_| ()),
            None => digests.insert(n, parse_digest(n, d)?).map(|_| ()),
        };
    }
    let refs: Vec<(u32, &[u32], &[u32])> = digests
        .iter()
        .map(|(n, d)| (*n, &d.keyslots[..], &d.segments[..]))
        .chain(
            foreign_digests
                .iter()
                .map(|(n, d)| (*n, &d.keyslots[..], &d.segments[..])),
        )
        .collect();
    let mut segment_digest = None;
    for &(n, d_keyslots, d_segments) in &refs {
        for k in d_keyslots {
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
        for s in d_segments {
            if !segments.contains_key(s) {
                return Err(bad(format!(
                    "digest {n} refers to segment {s}, which does not exist"
                )));
            }
            if *s != segment.id {
                continue;
            }
            if let Some(other) = segment_digest.replace(n) {
                return Err(bad(format!(
                    "segment {s} is assigned to digests {other} and {n}"
                )));
            }
        }
    }
    // As cryptsetup: a `luks2` keyslot belongs to exactly one digest, a `crypt` segment has
    // one.
    if let Some((n, _)) = keyslots
        .iter()
        .find(|(_, k)| k.kind == "luks2" && k.digest.is_none())
    {
        return Err(bad(format!("keyslot {n} is not assigned to any digest")));
    }
    for (n, s) in &segments {
        if s.kind == "crypt" && !refs.iter().any(|(_, _, segs)| segs.contains(n)) {
            return Err(bad(format!("segment {n} is not assigned to any digest")));
        }
    }
    // A keyslot whose digest luksfuse cannot check cannot be opened (cryptsetup: "Keyslot open
    // failed.").
    for (n, d) in &foreign_digests {
        for k in &d.keyslots {
            if let Some(slot) = keyslots.get_mut(k).filter(|s| s.opener.is_ok()) {
                slot.opener = Err(Error::unsupported(format!(
                    "its digest {n} is of type '{}', which luksfuse does not know",
                    d.kind
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

    // The volume key size is that of the keyslots bound to the segment; they must agree
    // (whether it suits the segment cipher is asked when mapping).
    let mut key_size = None;
    for (n, k) in keyslots.iter() {
        if k.digest.is_none() || k.digest != segment_digest || k.kind != "luks2" {
            continue;
        }
        match key_size {
            None => key_size = Some(k.key_size),
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
        foreign_digests,
        segment,
        segments,
        segment_digest,
        reencrypt_slot,
        tokens,
        config,
    })
}

/// The id of the segment whose digest recognises the volume key: segment 0, but during a
/// reencryption the backup segment of the encrypted layout (`backup-final`, else
/// `backup-previous`; cryptsetup's `LUKS2_get_default_segment` picks `backup-final`, which
/// for a decryption is linear and has no key).
fn key_segment(segments: &BTreeMap<u32, SegmentEntry>) -> u32 {
    let with = |flag: &str| {
        segments
            .iter()
            .find(|(_, s)| s.kind == "crypt" && s.flags.iter().any(|f| f == flag))
            .map(|(n, _)| *n)
    };
    with("backup-final")
        .or_else(|| with("backup-previous"))
        .unwrap_or(0)
}

impl Metadata {
    /// Whether keyslot `slot`'s digest is assigned to a regular (not backup) segment: what
    /// cryptsetup's luksDump shows as bound (`LUKS2_keyslot_for_segment(CRYPT_ONE_SEGMENT)`).
    pub fn binds_regular_segment(&self, slot: u32) -> bool {
        let Some(d) = self.keyslots.get(&slot).and_then(|k| k.digest) else {
            return false;
        };
        let segs: &[u32] = match (self.digests.get(&d), self.foreign_digests.get(&d)) {
            (Some(d), _) => &d.segments,
            (None, Some(f)) => &f.segments,
            (None, None) => &[],
        };
        segs.iter()
            .any(|s| self.segments.get(s).is_some_and(|s| !is_backup(s)))
    }

    /// The volume key size in bytes (0 if no keyslot can unlock the segment).
    pub fn key_size(&self) -> usize {
        self.keyslots
            .values()
            .find(|k| k.kind == "luks2" && k.digest.is_some() && k.digest == self.segment_digest)
            .map_or(0, |k| k.key_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    /// The JSON and header size of a fresh header.
    fn fresh() -> (Value, u64) {
        let (image, _) = testing::header_image(testing::fast_options(2), None, b"pw");
        let h = crate::luks::Header::parse(&image).unwrap();
        let l = h.as_luks2().unwrap();
        (l.json().clone(), l.hdr_size())
    }

    #[test]
    fn unusable_keyslots_are_kept_and_bad_shapes_refused() {
        let (base, hdr) = fresh();
        let unusable = |edit: &dyn Fn(&mut Value)| {
            let mut j = base.clone();
            edit(&mut j);
            let m = validate(&j, hdr).map_err(Reject::into_error).unwrap();
            m.keyslots[&0].unusable().map(|e| e.message().to_owned())
        };
        assert_eq!(unusable(&|_| {}), None);
        let why = unusable(&|j| j["keyslots"]["0"]["kdf"]["type"] = json!("argon2"));
        assert!(why.unwrap().contains("'argon2'"));
        let why = unusable(&|j| j["keyslots"]["0"]["type"] = json!("other"));
        assert!(why.unwrap().contains("'other'"));
        let why = unusable(&|j| j["keyslots"]["0"]["af"]["hash"] = json!("nosuch"));
        assert!(why.unwrap().contains("nosuch"));
        let damaged = |edit: &dyn Fn(&mut Value)| {
            let mut j = base.clone();
            edit(&mut j);
            matches!(validate(&j, hdr), Err(Reject::Damaged(_)))
        };
        assert!(damaged(&|j| j["keyslots"]["0"]["af"]["type"] = json!("x")));
        assert!(damaged(&|j| j["keyslots"]["0"]["area"]["type"] = json!("x")));
        // Fields another KDF left behind: cryptsetup repairs them away on read; ignored.
        assert!(!damaged(&|j| j["keyslots"]["0"]["kdf"]["extra"] = json!(1)));
        assert_eq!(
            unusable(&|j| j["keyslots"]["0"]["kdf"]["extra"] = json!(1)),
            None
        );
        // Empty strings where cryptsetup's json_contains_string wants text.
        assert!(damaged(
            &|j| j["keyslots"]["0"]["area"]["encryption"] = json!("")
        ));
        assert!(damaged(&|j| j["segments"]["0"]["encryption"] = json!("")));
        assert!(damaged(&|j| j["digests"]["0"]["keyslots"] = json!([])));
        // The keyslots area must end before the data (unless that starts at 0).
        let ks: u64 = base["config"]["keyslots_size"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let at =
            |off: u64| move |j: &mut Value| j["segments"]["0"]["offset"] = json!(off.to_string());
        assert!(damaged(&at(2 * hdr + ks - 4096)));
        assert!(!damaged(&at(2 * hdr + ks)));
        assert!(!damaged(&at(0)));
    }

    /// A fresh header's JSON turned by hand into cryptsetup's encrypt init state (docs §1).
    fn encrypt_init() -> (Value, u64) {
        let (mut j, hdr) = fresh();
        let crypt = j["segments"]["0"].clone();
        let mut fin = crypt.clone();
        fin["flags"] = json!(["backup-final"]);
        j["segments"] = json!({
            "0": {"type": "linear", "offset": "0", "size": "dynamic"},
            "1": {"type": "linear", "offset": "0", "size": "dynamic", "flags": ["backup-previous"]},
            "2": fin,
        });
        j["digests"]["0"]["segments"] = json!(["2"]);
        let mut d = j["digests"]["0"].clone();
        d["keyslots"] = json!(["1"]);
        d["segments"] = json!([]);
        j["digests"]["1"] = d;
        j["keyslots"]["1"] = json!({
            "type": "reencrypt", "key_size": 1, "mode": "encrypt", "direction": "forward",
            "priority": 0,
            "area": {"type": "checksum", "offset": "290816", "size": "16486400",
                     "hash": "sha256", "sector_size": 4096},
        });
        j["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]});
        (j, hdr)
    }

    #[test]
    fn reencryption_metadata_is_validated_as_cryptsetup_does() {
        let (base, hdr) = encrypt_init();
        let m = validate(&base, hdr).map_err(Reject::into_error).unwrap();
        assert_eq!(m.config.reencrypt, Some(2));
        assert_eq!(m.reencrypt_slot, Some(1));
        // The volume key is the backup-final segment's: keyslot 0 opens it.
        assert_eq!((m.segment.id, m.segment_digest), (2, Some(0)));
        assert!(m.keyslots[&1].unusable().is_some());
        assert!(!m.binds_regular_segment(0) && !m.binds_regular_segment(1));
        let refused = |edit: &dyn Fn(&mut Value), says: &str| {
            let mut j = base.clone();
            edit(&mut j);
            match validate(&j, hdr) {
                Err(Reject::Damaged(e)) => assert!(e.message().contains(says), "{says}: {e}"),
                other => panic!("{says}: unexpected {other:?}"),
            }
        };
        refused(
            &|j| j["keyslots"]["1"]["key_size"] = json!(64),
            "key size 64, must be 1",
        );
        refused(
            &|j| j["keyslots"]["1"]["mode"] = json!("shuffle"),
            "unknown reencryption mode 'shuffle'",
        );
        refused(
            &|j| j["keyslots"]["1"]["direction"] = json!("sideways"),
            "unknown reencryption direction",
        );
        refused(
            &|j| j["keyslots"]["1"]["area"]["sector_size"] = json!(1000),
            "not a power of two",
        );
        refused(
            &|j| j["keyslots"]["1"]["area"]["sector_size"] = json!(256),
            "out of range",
        );
        refused(
            &|j| j["keyslots"]["1"]["area"]["size"] = json!("16486401"),
            "past the keyslots area end",
        );
        refused(
            &|j| j["keyslots"]["1"]["area"]["offset"] = json!("32768"),
            "overlap",
        );
        refused(
            &|j| {
                let s = j["segments"]["0"].take();
                j["segments"]["0"] = j["segments"]["1"].take();
                j["segments"]["1"] = s;
            },
            "regular segment after backup segment",
        );
        refused(
            &|j| j["segments"]["2"]["flags"] = json!(["backup-moved-segment"]),
            "'backup-final' or 'backup-previous' segment is missing",
        );
        refused(
            &|j| j["segments"]["0"]["flags"] = json!(["backup-previous"]),
            "no regular data segment",
        );
        refused(
            &|j| {
                j["segments"]["0"] = j["segments"]["2"].clone();
                j["segments"]["0"]["flags"] = json!(["in-reencryption"]);
                j["segments"]["0"]["encryption"] = json!("twofish-xts-plain64");
                j["digests"]["0"]["segments"] = json!(["2", "0"]);
            },
            "does not match the 'backup-final' segment",
        );
        refused(
            &|j| {
                j["keyslots"].as_object_mut().unwrap().remove("1");
            },
            "there is no reencryption keyslot",
        );
        refused(
            &|j| j["config"]["requirements"] = json!({"mandatory": []}),
            "requirement is missing",
        );
        refused(
            &|j| {
                j["config"]["requirements"] =
                    json!({"mandatory": ["online-reencrypt-v2", "online-reencrypt"]})
            },
            "more than one online reencryption requirement",
        );
        // Without the reencryption keyslot's digest entry, the keyslot is still valid (as
        // cryptsetup: only luks2 keyslots need one), and resuming fails on the digest.
        let mut j = base.clone();
        j["digests"].as_object_mut().unwrap().remove("1");
        assert!(validate(&j, hdr).is_ok());
    }
}
