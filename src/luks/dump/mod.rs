//! Dumps of a header: `luksDump`-style text and JSON for both versions (`dump` and `dump_json`
//! methods of [`Luks1`](super::luks1::Luks1) and [`Luks2`](super::luks2::Luks2), never
//! secrets), and the text of
//! `luksDump --dump-volume-key`, which is a secret.

mod luks1;
mod luks2;

use super::Header;
use crate::secret::{Secret, VolumeKey};
use std::fmt::Write as _;
use std::path::Path;

/// Formats bytes as cryptsetup does in dumps: hex pairs separated by spaces, 16 per line,
/// continuation lines starting with `indent`.
pub fn hex_lines(bytes: &[u8], indent: &str) -> String {
    let mut s = String::new();
    push_hex_lines(&mut s, bytes, indent);
    s
}

fn push_hex_lines(s: &mut String, bytes: &[u8], indent: &str) {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        if i > 0 {
            s.push('\n');
            s.push_str(indent);
        }
        for b in chunk {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x} ");
        }
    }
}

/// The text `cryptsetup luksDump --dump-volume-key` prints for `header` of the file `path`
/// once `key` has been unlocked: cipher, payload offset (512-byte sectors), UUID and the volume
/// key in hex. It is as secret as the key, so it comes in a [`Secret`] (UTF-8 text).
pub fn volume_key_text(header: &Header, path: &Path, key: &VolumeKey) -> Secret {
    let seg = header.segment();
    let cipher = seg.cipher.as_str();
    let (name, mode) = cipher.split_once('-').unwrap_or((cipher, ""));
    let head = format!(
        "LUKS header information for {}\nCipher name:   \t{name}\nCipher mode:   \t{mode}\n\
         Payload offset:\t{}\nUUID:          \t{}\nMK bits:       \t{}\nMK dump:\t",
        path.display(),
        seg.offset.sectors512_floor(),
        header.uuid(),
        key.len() * 8,
    );
    // One allocation big enough for the whole text, so that no copy of the key is left behind
    // by a reallocation: 3 bytes per key byte, 3 more per line break.
    let mut s = String::with_capacity(head.len() + key.len() * 6 + 2);
    s.push_str(&head);
    push_hex_lines(&mut s, key.as_bytes(), "\t\t");
    s.push('\n');
    Secret::new(s.into_bytes())
}

/// The text `cryptsetup luksDump --unbound -S N` prints for the unbound keyslot `slot` of
/// `header` (file `path`) once it gave `key`: UUID, keyslot, key size and the key in hex. It is
/// as secret as the key, so it comes in a [`Secret`] (UTF-8 text).
pub fn unbound_key_text(header: &Header, path: &Path, slot: u32, key: &VolumeKey) -> Secret {
    let head = format!(
        "LUKS header information for {}\nUUID:    \t{}\nKeyslot: \t{slot}\nKey bits:\t{}\n\
         Unbound Key:\t",
        path.display(),
        header.uuid(),
        key.len() * 8,
    );
    // One allocation, as in volume_key_text.
    let mut s = String::with_capacity(head.len() + key.len() * 6 + 2);
    s.push_str(&head);
    push_hex_lines(&mut s, key.as_bytes(), "\t\t");
    s.push('\n');
    Secret::new(s.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::format::FormatOptions;
    use crate::testing;

    #[test]
    fn hex_lines_break_every_16_bytes() {
        let b: Vec<u8> = (0..20).collect();
        assert_eq!(
            hex_lines(&b, "\t"),
            "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \n\t10 11 12 13 "
        );
    }

    #[test]
    fn volume_key_text_is_cryptsetups() {
        let options = FormatOptions {
            key_bits: Some(256),
            offset_sectors: 4096,
            uuid: Some("0a1b2c3d-0000-4000-8000-00000000abcd".into()),
            ..testing::fast_options(1)
        };
        let key: Vec<u8> = (0..32).collect();
        let vk = VolumeKey(Secret::from_slice(&key));
        let (image, _) = testing::header_image(options, Some(vk), b"pw");
        let h = Header::parse(&image).unwrap();
        let vk = VolumeKey(Secret::from_slice(&key));
        let text = volume_key_text(&h, Path::new("/tmp/h.img"), &vk);
        assert_eq!(
            std::str::from_utf8(text.as_bytes()).unwrap(),
            "LUKS header information for /tmp/h.img\n\
             Cipher name:   \taes\n\
             Cipher mode:   \txts-plain64\n\
             Payload offset:\t4096\n\
             UUID:          \t0a1b2c3d-0000-4000-8000-00000000abcd\n\
             MK bits:       \t256\n\
             MK dump:\t00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \n\
             \t\t10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f \n"
        );
    }
}
