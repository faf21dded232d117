//! The LUKS2 JSON metadata as written: typed serde structs for the objects luksfuse makes and
//! changes (keyslots, digests, segments, config, tokens).
//!
//! Reading goes through [`super::metadata::validate`], which checks a `serde_json::Value`
//! field by field with precise messages; these structs are for writing. Every struct keeps
//! the fields it does not name in `other` (`#[serde(flatten)]`), so that what cryptsetup or a
//! newer version wrote (token contents, flags, requirements, unknown keys) survives a change.
//! The text is written with object keys sorted, as `serde_json::Value` orders them.

use crate::crypto::hash::HashAlg;
use crate::error::{Error, Result};
use crate::luks::kdf::Kdf;
use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The whole JSON area.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonMetadata {
    pub keyslots: BTreeMap<String, JsonKeyslot>,
    pub tokens: BTreeMap<String, JsonToken>,
    pub segments: BTreeMap<String, JsonSegment>,
    pub digests: BTreeMap<String, JsonDigest>,
    pub config: JsonConfig,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A keyslot of type `luks2`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonKeyslot {
    #[serde(rename = "type")]
    pub kind: String,
    pub key_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    pub af: JsonAf,
    pub area: JsonArea,
    pub kdf: JsonKdf,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The anti-forensic splitter of a keyslot (type `luks1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonAf {
    #[serde(rename = "type")]
    pub kind: String,
    pub stripes: u32,
    pub hash: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A keyslot's key material area (type `raw`); offsets and sizes are decimal strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonArea {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: String,
    pub size: String,
    pub encryption: String,
    pub key_size: usize,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A keyslot's KDF: `pbkdf2` (hash, iterations) or `argon2i`/`argon2id` (time, memory,
/// cpus).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonKdf {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    pub salt: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A data segment (type `crypt`); offsets and sizes are decimal strings, size may be
/// `dynamic`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonSegment {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: String,
    pub size: String,
    pub iv_tweak: String,
    pub encryption: String,
    pub sector_size: u32,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A digest (type `pbkdf2`) and the keyslots and segments it is assigned to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonDigest {
    #[serde(rename = "type")]
    pub kind: String,
    pub keyslots: Vec<String>,
    pub segments: Vec<String>,
    pub hash: String,
    pub iterations: u32,
    pub salt: String,
    pub digest: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A token: luksfuse only ever removes keyslots from its list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonToken {
    #[serde(rename = "type")]
    pub kind: String,
    pub keyslots: Vec<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `config`; flags and requirements stay in `other`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonConfig {
    pub json_size: String,
    pub keyslots_size: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn b64(b: &[u8]) -> String {
    Base64::encode_string(b)
}

impl JsonMetadata {
    /// The typed form of metadata that [`super::metadata::validate`] accepted.
    pub fn from_value(json: &Value) -> Result<Self> {
        serde_json::from_value(json.clone())
            .map_err(|e| Error::format(format!("LUKS2 metadata cannot be rewritten: {e}")))
    }

    /// The JSON text, object keys sorted.
    pub fn to_text(&self) -> Result<Vec<u8>> {
        let value = serde_json::to_value(self)
            .map_err(|e| Error::format(format!("LUKS2 metadata does not serialize: {e}")))?;
        serde_json::to_vec(&value)
            .map_err(|e| Error::format(format!("LUKS2 metadata does not serialize: {e}")))
    }

    /// Removes keyslot `slot` and every reference to it (digests, tokens).
    pub fn remove_keyslot(&mut self, slot: u32) {
        let id = slot.to_string();
        self.keyslots.remove(&id);
        for d in self.digests.values_mut() {
            d.keyslots.retain(|k| *k != id);
        }
        for t in self.tokens.values_mut() {
            t.keyslots.retain(|k| *k != id);
        }
    }
}

impl JsonKdf {
    /// A KDF as cryptsetup writes it.
    pub fn new(kdf: &Kdf) -> Self {
        let mut j = JsonKdf {
            kind: kdf.name().to_owned(),
            hash: None,
            iterations: None,
            time: None,
            memory: None,
            cpus: None,
            salt: String::new(),
            other: Map::new(),
        };
        match kdf {
            Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } => {
                j.hash = Some(hash.name().to_owned());
                j.iterations = Some(*iterations);
                j.salt = b64(salt);
            }
            Kdf::Argon2 {
                time,
                memory_kib,
                lanes,
                salt,
                ..
            } => {
                j.time = Some(*time);
                j.memory = Some(*memory_kib);
                j.cpus = Some(*lanes);
                j.salt = b64(salt);
            }
        }
        j
    }
}

/// A new keyslot's JSON, as cryptsetup writes it.
pub struct NewKeyslot<'a> {
    pub key_size: usize,
    pub priority: Option<u32>,
    pub stripes: u32,
    pub af_hash: HashAlg,
    pub offset: u64,
    pub size: u64,
    pub encryption: &'a str,
    pub kdf: &'a Kdf,
}

impl From<NewKeyslot<'_>> for JsonKeyslot {
    fn from(k: NewKeyslot<'_>) -> Self {
        JsonKeyslot {
            kind: "luks2".into(),
            key_size: k.key_size,
            priority: k.priority,
            af: JsonAf {
                kind: "luks1".into(),
                stripes: k.stripes,
                hash: k.af_hash.name().into(),
                other: Map::new(),
            },
            area: JsonArea {
                kind: "raw".into(),
                offset: k.offset.to_string(),
                size: k.size.to_string(),
                encryption: k.encryption.into(),
                key_size: k.key_size,
                other: Map::new(),
            },
            kdf: JsonKdf::new(k.kdf),
            other: Map::new(),
        }
    }
}

/// A new `pbkdf2` digest of the volume key, assigned to segment 0 and no keyslot yet.
pub fn new_digest(hash: HashAlg, iterations: u32, salt: &[u8], digest: &[u8]) -> JsonDigest {
    JsonDigest {
        kind: "pbkdf2".into(),
        keyslots: vec![],
        segments: vec!["0".into()],
        hash: hash.name().into(),
        iterations,
        salt: b64(salt),
        digest: b64(digest),
        other: Map::new(),
    }
}

/// A new `crypt` segment from byte `offset` to the end of the device.
pub fn new_segment(offset: u64, encryption: &str, sector_size: u32) -> JsonSegment {
    JsonSegment {
        kind: "crypt".into(),
        offset: offset.to_string(),
        size: "dynamic".into(),
        iv_tweak: "0".into(),
        encryption: encryption.into(),
        sector_size,
        other: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let j = serde_json::json!({
            "keyslots": {"0": {"type": "luks2", "key_size": 64, "priority": 2, "x": [1],
                "af": {"type": "luks1", "stripes": 4000, "hash": "sha256"},
                "area": {"type": "raw", "offset": "32768", "size": "258048",
                         "encryption": "aes-xts-plain64", "key_size": 64},
                "kdf": {"type": "argon2id", "time": 4, "memory": 1048576, "cpus": 4,
                        "salt": "AAAA"}}},
            "tokens": {"0": {"type": "luks2-keyring", "keyslots": ["0"], "key_description": "k"}},
            "segments": {"0": {"type": "crypt", "offset": "0", "size": "dynamic",
                "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": 512,
                "flags": ["f"]}},
            "digests": {"0": {"type": "pbkdf2", "keyslots": ["0"], "segments": ["0"],
                "hash": "sha256", "iterations": 1000, "salt": "AAAA", "digest": "AAAA"}},
            "config": {"json_size": "12288", "keyslots_size": "16744448",
                       "flags": ["allow-discards"], "requirements": {"mandatory": []}},
            "future": {"y": true},
        });
        let m = JsonMetadata::from_value(&j).unwrap();
        let back: Value = serde_json::from_slice(&m.to_text().unwrap()).unwrap();
        assert_eq!(back, j);
        let mut m = m;
        m.remove_keyslot(0);
        let back: Value = serde_json::from_slice(&m.to_text().unwrap()).unwrap();
        assert_eq!(back["keyslots"], serde_json::json!({}));
        assert_eq!(back["tokens"]["0"]["keyslots"], serde_json::json!([]));
        assert_eq!(back["digests"]["0"]["keyslots"], serde_json::json!([]));
    }
}
