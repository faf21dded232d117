//! `luksDump` of a LUKS2 header, as cryptsetup prints it, and its JSON form.

use super::hex_lines;
use crate::luks::kdf::Kdf;
use crate::luks::luks2::Luks2;
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
