//! Typed accessors of the raw JSON metadata for [`super::metadata`]: each one names what it
//! looked at in its error, and each refusal says whether the copy is damaged or unsupported.

use super::metadata::{Reject, MAX_ID};
use crate::crypto::hash::HashAlg;
use crate::crypto::CipherSpec;
use crate::error::Error;
use base64ct::{Base64, Encoding};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub(super) type R<T> = std::result::Result<T, Reject>;

pub(super) fn bad(msg: impl Into<String>) -> Reject {
    Reject::Damaged(Error::format(msg))
}

pub(super) fn unsupported(msg: impl Into<String>) -> Reject {
    Reject::Unsupported(Error::format(msg))
}

pub(super) fn object<'a>(v: &'a Value, what: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} is not a JSON object")))
}

pub(super) fn field<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> R<&'a Value> {
    obj.get(key)
        .ok_or_else(|| bad(format!("{what}: missing '{key}'")))
}

pub(super) fn string<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> R<&'a str> {
    field(obj, key, what)?
        .as_str()
        .ok_or_else(|| bad(format!("{what}: '{key}' is not a string")))
}

/// A string field that must not be empty, as cryptsetup's `json_contains_string` requires
/// (segment and keyslot area ciphers, KDF and AF hashes, salts).
pub(super) fn nonempty_string<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> R<&'a str> {
    let v = string(obj, key, what)?;
    if v.is_empty() {
        return Err(bad(format!("{what}: '{key}' is empty")));
    }
    Ok(v)
}

/// A JSON integer in `min..=max`.
pub(super) fn int(obj: &Map<String, Value>, key: &str, what: &str, min: u64, max: u64) -> R<u64> {
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

/// A JSON integer in `min..=max`, as a `u32`.
pub(super) fn int_u32(
    obj: &Map<String, Value>,
    key: &str,
    what: &str,
    min: u32,
    max: u32,
) -> R<u32> {
    let n = int(obj, key, what, min.into(), max.into())?;
    u32::try_from(n).map_err(|_| bad(format!("{what}: '{key}' = {n} out of range")))
}

/// A u64 written as a decimal string (`"16384"`), as LUKS2 writes offsets and sizes.
pub(super) fn dec_u64(s: &str, what: &str) -> R<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{what}: '{s}' is not a decimal number")));
    }
    s.parse::<u64>()
        .map_err(|_| bad(format!("{what}: {s} does not fit in 64 bits")))
}

pub(super) fn u64_field(obj: &Map<String, Value>, key: &str, what: &str) -> R<u64> {
    dec_u64(string(obj, key, what)?, &format!("{what} '{key}'"))
}

/// An object key naming a keyslot, segment, digest or token: a decimal number `0..=MAX_ID`
/// without leading zeros.
pub(super) fn id(s: &str, what: &str) -> R<u32> {
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
pub(super) fn id_list(obj: &Map<String, Value>, key: &str, what: &str) -> R<Vec<u32>> {
    let arr = field(obj, key, what)?
        .as_array()
        .ok_or_else(|| bad(format!("{what}: '{key}' is not an array")))?;
    let mut out = Vec::with_capacity(arr.len().min(32));
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

pub(super) fn string_list(obj: &Map<String, Value>, key: &str, what: &str) -> R<Vec<String>> {
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

pub(super) fn base64(obj: &Map<String, Value>, key: &str, what: &str) -> R<Vec<u8>> {
    Base64::decode_vec(string(obj, key, what)?)
        .map_err(|_| bad(format!("{what}: '{key}' is not valid base64")))
}

pub(super) fn hash(obj: &Map<String, Value>, key: &str, what: &str) -> R<HashAlg> {
    let name = string(obj, key, what)?;
    HashAlg::from_name(name).map_err(|_| unsupported(format!("{what}: unsupported hash '{name}'")))
}

pub(super) fn cipher(spec: &str, what: &str) -> R<CipherSpec> {
    CipherSpec::parse(spec).map_err(|e| Reject::Unsupported(e.context(what)))
}

/// Entries of a section keyed by id, in id order.
pub(super) fn numbered<'a>(
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
}
