//! `luksDump` of a LUKS1 header, as cryptsetup prints it, and its JSON form.

use super::hex_lines;
use crate::luks::luks1::codec::SECTOR;
use crate::luks::luks1::Luks1;
use serde_json::json;

impl Luks1 {
    /// The text `cryptsetup luksDump` prints for this header.
    pub fn dump(&self) -> String {
        let mut s = String::from("LUKS header information\n\n");
        s += "Version:       \t1\n";
        s += &format!("Cipher name:   \t{}\n", self.cipher_name());
        s += &format!("Cipher mode:   \t{}\n", self.cipher_mode());
        s += &format!("Hash spec:     \t{}\n", self.hash().name());
        s += &format!("Payload offset:\t{}\n", self.raw().payload_offset);
        s += &format!("MK bits:       \t{}\n", u64::from(self.raw().key_bytes) * 8);
        let digest: String = self
            .raw()
            .mk_digest
            .iter()
            .map(|b| format!("{b:02x} "))
            .collect();
        s += &format!("MK digest:     \t{digest}\n");
        s += &format!(
            "MK salt:       \t{}\n",
            hex_lines(&self.raw().mk_digest_salt, "               \t")
        );
        s += &format!("MK iterations: \t{}\n", self.raw().mk_digest_iter);
        s += &format!("UUID:          \t{}\n\n", self.uuid());
        for (i, slot) in self.slots().iter().enumerate() {
            if !slot.active {
                s += &format!("Key Slot {i}: DISABLED\n");
                continue;
            }
            s += &format!("Key Slot {i}: ENABLED\n");
            s += &format!("\tIterations:         \t{}\n", slot.iterations);
            s += &format!(
                "\tSalt:               \t{}\n",
                hex_lines(&slot.salt, "\t                      \t")
            );
            s += &format!(
                "\tKey material offset:\t{}\n",
                slot.material_offset / SECTOR
            );
            s += &format!("\tAF stripes:            \t{}\n", slot.stripes);
        }
        s
    }

    pub fn dump_json(&self) -> serde_json::Value {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let slots: serde_json::Map<String, serde_json::Value> = self
            .slots()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .map(|(i, s)| {
                (
                    i.to_string(),
                    json!({
                        "iterations": s.iterations,
                        "salt": hex(&s.salt),
                        "key_material_offset": s.material_offset,
                        "stripes": s.stripes,
                    }),
                )
            })
            .collect();
        json!({
            "version": 1,
            "uuid": self.uuid(),
            "cipher": self.segment().cipher.as_str(),
            "hash": self.hash().name(),
            "payload_offset": self.segment().offset.get(),
            "key_size": self.segment().key_size,
            "sector_size": 512,
            "mk_digest": hex(&self.raw().mk_digest),
            "mk_digest_salt": hex(&self.raw().mk_digest_salt),
            "mk_digest_iterations": self.raw().mk_digest_iter,
            "keyslots": slots,
        })
    }
}
