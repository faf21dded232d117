//! The sections of the LUKS2 JSON metadata, each parsed and checked on its own: `config`,
//! the data segment, keyslots (with their KDF), digests and tokens. Cross-references between
//! them are [`super::metadata::validate`]'s job.

use super::access::{
    bad, base64, cipher, dec_u64, field, hash, id_list, int, int_u32, int_usize, numbered, object,
    string, string_list, u64_field, unsupported, R,
};
use super::metadata::{
    Area, Config, CryptSegment, Digest, Keyslot, Priority, Reject, Token, KEYSLOT_SALT_LEN,
    MAX_DIGEST_LEN, MAX_KEY_SIZE, MAX_STRIPES,
};
use crate::luks::kdf::{Argon2Variant, Kdf};
use crate::units::{Bytes, SectorSize};
use serde_json::{Map, Value};

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

pub(super) fn parse_segment(root: &Map<String, Value>) -> R<CryptSegment> {
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
    let sector_size = int_u32(s, "sector_size", &what, 512, 4096)?;
    let sector_size = SectorSize::try_from(sector_size).map_err(|_| {
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

pub(super) fn parse_keyslot(n: u32, k: &Map<String, Value>) -> R<Keyslot> {
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
    let key_size = int_usize(k, "key_size", &what, 1, MAX_KEY_SIZE)?;
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
    let stripes = int_u32(af, "stripes", &af_what, 1, MAX_STRIPES)?;
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
        key_size: int_usize(a, "key_size", &area_what, 1, MAX_KEY_SIZE)?,
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
    let need = u64::try_from(slot.af_sectors_len()).unwrap_or(u64::MAX);
    if slot.area.size < need {
        return Err(bad(format!(
            "{area_what}: {} bytes, too small for {need} bytes of key material",
            slot.area.size
        )));
    }
    Ok(slot)
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

pub(super) fn parse_token(n: u32, t: &Map<String, Value>) -> R<Token> {
    let what = format!("token {n}");
    Ok(Token {
        kind: string(t, "type", &what)?.to_owned(),
        keyslots: id_list(t, "keyslots", &what)?,
    })
}
