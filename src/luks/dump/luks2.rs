//! `luksDump` of a LUKS2 header, as cryptsetup prints it, and its JSON form.

use super::hex_lines;
use crate::luks::kdf::Kdf;
use crate::luks::luks2::Luks2;
use base64ct::{Base64, Encoding};
use serde_json::{json, Value};
use std::fmt::Write as _;

impl Luks2 {
    /// A dump in the layout of `cryptsetup luksDump` for LUKS2.
    pub fn dump(&self) -> String {
        let m = self.metadata();
        let bin = self.binary_header();
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
        let _ = writeln!(s, "Epoch:         \t{}", bin.seqid);
        let _ = writeln!(s, "Metadata area: \t{} [bytes]", bin.hdr_size);
        let _ = writeln!(s, "Keyslots area: \t{} [bytes]", m.config.keyslots_size);
        let _ = writeln!(s, "UUID:          \t{}", bin.uuid);
        let _ = writeln!(s, "Label:         \t{}", or(&bin.label, "(no label)"));
        let _ = writeln!(
            s,
            "Subsystem:     \t{}",
            or(&bin.subsystem, "(no subsystem)")
        );
        let _ = writeln!(s, "Flags:       \t{}", flags(&m.config.flags, "(no flags)"));
        if !m.config.requirements.is_empty() {
            let _ = writeln!(s, "Requirements:\t{}", flags(&m.config.requirements, ""));
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Data segments:");
        for (n, seg) in &m.segments {
            let _ = writeln!(s, "  {n}: {}", seg.kind);
            let _ = writeln!(s, "\toffset: {} [bytes]", seg.offset);
            match seg.size {
                None => {
                    let _ = writeln!(s, "\tlength: (whole device)");
                }
                Some(n) => {
                    let _ = writeln!(s, "\tlength: {n} [bytes]");
                }
            }
            if let Some(c) = &seg.encryption {
                let _ = writeln!(s, "\tcipher: {c}");
            }
            if let Some(z) = seg.sector_size {
                let _ = writeln!(s, "\tsector: {z} [bytes]");
            }
            if let Some(i) = &seg.integrity {
                let _ = writeln!(s, "\tintegrity: {i}");
            }
            if !seg.flags.is_empty() {
                let _ = writeln!(s, "\tflags : {}", seg.flags.join(", "));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "Keyslots:");
        let raw = |n: &u32| self.json()["keyslots"][n.to_string()].clone();
        for (n, k) in &m.keyslots {
            let unbound = if m.binds_regular_segment(*n) {
                ""
            } else {
                " (unbound)"
            };
            let _ = writeln!(s, "  {n}: {}{unbound}", k.kind);
            let _ = writeln!(s, "\tKey:        {} bits", k.key_size.saturating_mul(8));
            let _ = writeln!(s, "\tPriority:   {}", k.priority.name());
            match k.kind.as_str() {
                "luks2" => luks2_keyslot(&mut s, &raw(n)),
                "reencrypt" => reencrypt_keyslot(&mut s, &raw(n)),
                _ => {}
            }
            if let Some(d) = k.digest {
                let _ = writeln!(s, "\tDigest ID:  {d}");
            }
        }
        let _ = writeln!(s, "Tokens:");
        for (n, t) in &m.tokens {
            let _ = writeln!(s, "  {n}: {}", t.kind);
            let desc = &self.json()["tokens"][n.to_string()]["key_description"];
            if let (true, Some(d)) = (t.kind == "luks2-keyring", desc.as_str()) {
                let _ = writeln!(s, "\tKey description: {d}");
            }
            for k in &t.keyslots {
                let _ = writeln!(s, "\tKeyslot:    {k}");
            }
        }
        let _ = writeln!(s, "Digests:");
        let ids: std::collections::BTreeSet<u32> = m
            .digests
            .keys()
            .chain(m.foreign_digests.keys())
            .copied()
            .collect();
        for n in &ids {
            let Some(d) = m.digests.get(n) else {
                let _ = writeln!(s, "  {n}: {}", m.foreign_digests[n].kind);
                continue;
            };
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
        let bin = self.binary_header();
        json!({
            "version": 2,
            "epoch": bin.seqid,
            "header_copy": bin.copy.to_string(),
            "metadata_area": bin.hdr_size,
            "keyslots_area": self.keyslots_size(),
            "checksum_alg": bin.csum_alg.name(),
            "uuid": bin.uuid,
            "label": bin.label,
            "subsystem": bin.subsystem,
            "metadata": self.json(),
        })
    }
}

/// A JSON number, or a decimal string (as LUKS2 writes sizes), as cryptsetup's
/// `crypt_jobj_get_uint64` reads it (0 if neither).
fn num(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
        .unwrap_or(0)
}

/// The part of a `luks2` keyslot cryptsetup's `luks2_keyslot_dump` prints, read from the JSON as
/// it does, so that a keyslot luksfuse cannot use (an unknown KDF, a cipher it lacks) is shown
/// as it stands: a KDF that is not PBKDF2 is shown with Argon2's fields, 0 where absent.
fn luks2_keyslot(s: &mut String, k: &Value) {
    let (kdf, af, area) = (&k["kdf"], &k["af"], &k["area"]);
    let text = |v: &Value| v.as_str().unwrap_or("(null)").to_owned();
    let ind = "\t            ";
    let _ = writeln!(s, "\tCipher:     {}", text(&area["encryption"]));
    let _ = writeln!(
        s,
        "\tCipher key: {} bits",
        num(&area["key_size"]).saturating_mul(8)
    );
    let _ = writeln!(s, "\tPBKDF:      {}", text(&kdf["type"]));
    if kdf["type"] == "pbkdf2" {
        let _ = writeln!(s, "\tHash:       {}", text(&kdf["hash"]));
        let _ = writeln!(s, "\tIterations: {}", num(&kdf["iterations"]));
    } else {
        let _ = writeln!(s, "\tTime cost:  {}", num(&kdf["time"]));
        let _ = writeln!(s, "\tMemory:     {}", num(&kdf["memory"]));
        let _ = writeln!(s, "\tThreads:    {}", num(&kdf["cpus"]));
    }
    let salt = kdf["salt"]
        .as_str()
        .and_then(|b| Base64::decode_vec(b).ok())
        .unwrap_or_default();
    let _ = writeln!(s, "\tSalt:       {}", hex_lines(&salt, ind));
    let _ = writeln!(s, "\tAF stripes: {}", num(&af["stripes"]));
    let _ = writeln!(s, "\tAF hash:    {}", text(&af["hash"]));
    let _ = writeln!(s, "\tArea offset:{} [bytes]", num(&area["offset"]));
    let _ = writeln!(s, "\tArea length:{} [bytes]", num(&area["size"]));
}

/// What cryptsetup's `reenc_keyslot_dump` prints of a `reencrypt` keyslot, read from the JSON
/// as it does.
fn reencrypt_keyslot(s: &mut String, k: &Value) {
    let area = &k["area"];
    let text = |v: &Value| v.as_str().unwrap_or("(null)").to_owned();
    let kind = text(&area["type"]);
    let _ = writeln!(s, "\tMode:       {}", text(&k["mode"]));
    let _ = writeln!(s, "\tDirection:  {}", text(&k["direction"]));
    let _ = writeln!(s, "\tResilience: {kind}");
    if kind == "checksum" {
        let _ = writeln!(s, "\tHash:       {}", text(&area["hash"]));
        let _ = writeln!(s, "\tHash data:  {} [bytes]", num(&area["sector_size"]));
    } else if kind == "datashift" {
        // cryptsetup prints no space before "[bytes]" here.
        let _ = writeln!(s, "\tShift size: {}[bytes]", num(&area["shift_size"]));
    }
    let _ = writeln!(s, "\tArea offset:{} [bytes]", num(&area["offset"]));
    let _ = writeln!(s, "\tArea length:{} [bytes]", num(&area["size"]));
}
