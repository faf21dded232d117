//! The LUKS2 binary header (LUKS2 on-disk format specification, section 2.1, "Binary header")
//! and the checksum that covers it together with the JSON area that follows it.
//!
//! | offset | size | field                                                       |
//! |-------:|-----:|-------------------------------------------------------------|
//! |      0 |    6 | magic: `LUKS\xba\xbe` (primary) or `SKUL\xba\xbe` (secondary) |
//! |      6 |    2 | version, big-endian, 2                                      |
//! |      8 |    8 | hdr_size: binary header + JSON area, in bytes               |
//! |     16 |    8 | seqid: incremented on every update                          |
//! |     24 |   48 | label, NUL-terminated                                       |
//! |     72 |   32 | csum_alg, e.g. `sha256`                                     |
//! |    104 |   64 | salt (random, unused for reading)                           |
//! |    168 |   40 | uuid, NUL-terminated                                        |
//! |    208 |   48 | subsystem, NUL-terminated                                   |
//! |    256 |    8 | hdr_offset: offset of this copy in the file                 |
//! |    264 |  184 | padding                                                     |
//! |    448 |   64 | csum: checksum of the hdr_size area with this field zeroed  |
//! |    512 | 3584 | padding                                                     |
//!
//! The secondary copy starts at offset hdr_size.

use crate::crypto::hash::HashAlg;
use crate::error::{Error, Result};
use crate::luks::ReadAt;

/// Size of the binary part of a LUKS2 header.
pub const BIN_LEN: usize = 4096;
/// Magic of the primary header copy.
pub const MAGIC_PRIMARY: &[u8; 6] = b"LUKS\xba\xbe";
/// Magic of the secondary header copy.
pub const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
/// The header sizes (binary + JSON) the format allows; also where a secondary copy may start.
pub const HDR_SIZES: [u64; 9] = [
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
];

/// Offset and length of the checksum field.
pub const CSUM_OFFSET: usize = 448;
pub const CSUM_LEN: usize = 64;

/// Which of the two header copies (the same type errors name them by).
pub use crate::error::HeaderCopy as Copy;

impl Copy {
    /// The magic this copy starts with.
    pub fn magic(self) -> &'static [u8; 6] {
        match self {
            Copy::Primary => MAGIC_PRIMARY,
            Copy::Secondary => MAGIC_SECONDARY,
        }
    }
}

/// Why there is no usable header copy at an offset: nothing that looks like one is there (the
/// magic is not), or a copy is there but damaged (or cut short).
#[derive(Debug)]
pub enum NoCopy {
    /// No header copy starts at this offset.
    Absent(Error),
    /// A header copy starts here but cannot be used.
    Damaged(Error),
}

impl NoCopy {
    pub fn into_error(self) -> Error {
        match self {
            NoCopy::Absent(e) | NoCopy::Damaged(e) => e,
        }
    }
    pub fn error(&self) -> &Error {
        match self {
            NoCopy::Absent(e) | NoCopy::Damaged(e) => e,
        }
    }
}

impl std::fmt::Display for NoCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error().fmt(f)
    }
}

/// A binary header whose magic, version, size, offset and checksum have been checked.
#[derive(Debug, Clone)]
pub struct BinaryHeader {
    pub copy: Copy,
    pub hdr_size: u64,
    pub seqid: u64,
    pub label: String,
    pub csum_alg: HashAlg,
    pub uuid: String,
    pub subsystem: String,
    pub hdr_offset: u64,
}

fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// A NUL-terminated string field (the whole field if it has no NUL).
fn c_str(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The checksum of a whole header area (`hdr_size` bytes) with its checksum field taken as
/// zeros, `alg.len()` bytes long.
pub fn checksum(alg: HashAlg, area: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; alg.len()];
    let zeros = [0u8; CSUM_LEN];
    alg.hash_into(
        &[
            &area[..CSUM_OFFSET],
            &zeros,
            &area[CSUM_OFFSET + CSUM_LEN..],
        ],
        &mut out,
    );
    out
}

/// Reads the header copy at `offset` and checks its binary part and checksum. Returns the
/// binary header and the JSON area (`hdr_size - 4096` bytes).
pub fn read_copy(
    src: &dyn ReadAt,
    offset: u64,
    copy: Copy,
) -> Result<(BinaryHeader, Vec<u8>), NoCopy> {
    let damaged = |msg: String| NoCopy::Damaged(Error::format(msg).in_copy(copy).at_offset(offset));
    let mut bin = [0u8; BIN_LEN];
    src.read_exact_at(&mut bin, offset)
        .map_err(|_| damaged(format!("no header at offset {offset} (file too short)")))?;
    if &bin[..6] != copy.magic() {
        return Err(NoCopy::Absent(
            Error::no_magic(format!("bad magic at offset {offset}"))
                .in_copy(copy)
                .at_offset(offset),
        ));
    }
    let version = u16::from_be_bytes([bin[6], bin[7]]);
    if version != 2 {
        return Err(damaged(format!(
            "version {version} at offset {offset}, expected 2"
        )));
    }
    let hdr_size = be64(&bin, 8);
    if !HDR_SIZES.contains(&hdr_size) {
        return Err(damaged(format!("invalid header size {hdr_size}")));
    }
    let hdr_offset = be64(&bin, 256);
    if hdr_offset != offset {
        return Err(damaged(format!(
            "header at offset {offset} says it is at offset {hdr_offset}"
        )));
    }
    if copy == Copy::Secondary && hdr_size != offset {
        return Err(damaged(format!(
            "secondary header at offset {offset} has header size {hdr_size}"
        )));
    }
    let csum_name = c_str(&bin[72..104]);
    let csum_alg = HashAlg::from_name(&csum_name)
        .map_err(|_| damaged(format!("unsupported checksum algorithm '{csum_name}'")))?;
    let area_len = usize::try_from(hdr_size).ok();
    let (Some(area_len), true) = (
        area_len,
        offset
            .checked_add(hdr_size)
            .is_some_and(|e| e <= src.size()),
    ) else {
        return Err(damaged(format!(
            "header at offset {offset} of {hdr_size} bytes runs past the end of the file"
        )));
    };
    // hdr_size is one of HDR_SIZES (at most 4 MiB) and lies within the file.
    let mut area = vec![0u8; area_len];
    src.read_exact_at(&mut area, offset)
        .map_err(NoCopy::Damaged)?;
    let want = checksum(csum_alg, &area);
    if area[CSUM_OFFSET..CSUM_OFFSET + want.len()] != want[..] {
        return Err(damaged(format!(
            "checksum mismatch in header at offset {offset}"
        )));
    }
    let json = area.split_off(BIN_LEN);
    let header = BinaryHeader {
        copy,
        hdr_size,
        seqid: be64(&bin, 16),
        label: c_str(&bin[24..72]),
        csum_alg,
        uuid: c_str(&bin[168..208]),
        subsystem: c_str(&bin[208..256]),
        hdr_offset,
    };
    Ok((header, json))
}

/// Copies `s` into the NUL-terminated field `area[off..off + len]`.
fn put_field(area: &mut [u8], off: usize, len: usize, s: &str) -> Result<()> {
    if s.len() >= len {
        return Err(Error::usage(format!(
            "'{s}' is too long for the LUKS2 header (at most {} bytes)",
            len - 1
        )));
    }
    area[off..off + s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// The identity fields of the binary header.
pub struct Identity<'a> {
    pub uuid: &'a str,
    pub label: &'a str,
    pub subsystem: &'a str,
}

/// One whole header copy (`hdr_size` bytes) for `offset`: the binary header with sequence id
/// `seqid` and a random salt, the JSON text padded with zeros, the sha256 checksum.
pub fn encode_copy(
    copy: Copy,
    hdr_size: u64,
    seqid: u64,
    id: &Identity<'_>,
    json: &[u8],
) -> Result<Vec<u8>> {
    let offset = match copy {
        Copy::Primary => 0,
        Copy::Secondary => hdr_size,
    };
    let len = usize::try_from(hdr_size)
        .ok()
        .filter(|_| HDR_SIZES.contains(&hdr_size))
        .ok_or_else(|| Error::format(format!("invalid header size {hdr_size}")))?;
    let json_size = len - BIN_LEN;
    if json.len() >= json_size {
        return Err(Error::usage(format!(
            "LUKS2 metadata of {} bytes does not fit in its {json_size}-byte area",
            json.len()
        )));
    }
    let mut area = vec![0u8; len];
    area[..6].copy_from_slice(copy.magic());
    area[6..8].copy_from_slice(&2u16.to_be_bytes());
    area[8..16].copy_from_slice(&hdr_size.to_be_bytes());
    area[16..24].copy_from_slice(&seqid.to_be_bytes());
    put_field(&mut area, 24, 48, id.label)?;
    put_field(&mut area, 72, 32, "sha256")?;
    crate::secret::fill_random(&mut area[104..168])?;
    put_field(&mut area, 168, 40, id.uuid)?;
    put_field(&mut area, 208, 48, id.subsystem)?;
    area[256..264].copy_from_slice(&offset.to_be_bytes());
    area[BIN_LEN..BIN_LEN + json.len()].copy_from_slice(json);
    let csum = checksum(HashAlg::Sha256, &area);
    area[CSUM_OFFSET..CSUM_OFFSET + csum.len()].copy_from_slice(&csum);
    Ok(area)
}

/// Where the JSON value that opens `area` ends (just past its closing bracket), by matching
/// brackets outside strings; `None` if the area reaches a NUL byte or its end first (then the
/// value is incomplete, which the JSON parser reports).
fn value_end(area: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in area.iter().enumerate() {
        if b == 0 {
            return None;
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The JSON text of a JSON area, as cryptsetup accepts it (`validate_json_area`): the area
/// opens with `{` (no leading whitespace), the object is followed by at least one NUL, and
/// nothing but NULs follows it up to the end of the area. Returned as UTF-8.
pub fn json_text(area: &[u8]) -> Result<&str> {
    match area.first() {
        Some(b'{') => {}
        Some(&c) => {
            return Err(Error::format(format!(
                "JSON area starts with byte 0x{c:02x}, not '{{'"
            )))
        }
        None => return Err(Error::format("JSON area is empty")),
    }
    let end = match value_end(area) {
        Some(end) if end == area.len() => {
            return Err(Error::format(
                "JSON area is not NUL-terminated (the metadata fills it completely)",
            ))
        }
        Some(end) => {
            if let Some(i) = area[end..].iter().position(|&b| b != 0) {
                return Err(Error::format(format!(
                    "JSON area holds non-NUL byte 0x{:02x} at offset {} after the metadata \
                     (which ends at offset {end})",
                    area[end + i],
                    end + i
                )));
            }
            end
        }
        // Incomplete: hand the text before the first NUL to the parser, which says why.
        None => area
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::format("JSON area is not NUL-terminated"))?,
    };
    std::str::from_utf8(&area[..end]).map_err(|_| Error::format("JSON area is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(hdr_size: u64, offset: u64, magic: &[u8; 6]) -> Vec<u8> {
        let mut h = vec![0u8; hdr_size as usize];
        h[..6].copy_from_slice(magic);
        h[6..8].copy_from_slice(&2u16.to_be_bytes());
        h[8..16].copy_from_slice(&hdr_size.to_be_bytes());
        h[16..24].copy_from_slice(&7u64.to_be_bytes());
        h[24..29].copy_from_slice(b"label");
        h[72..78].copy_from_slice(b"sha256");
        h[256..264].copy_from_slice(&offset.to_be_bytes());
        h[BIN_LEN..BIN_LEN + 2].copy_from_slice(b"{}");
        let c = checksum(HashAlg::Sha256, &h);
        h[CSUM_OFFSET..CSUM_OFFSET + 32].copy_from_slice(&c);
        h
    }

    #[test]
    fn valid_copy_is_read_and_a_flipped_bit_is_caught() {
        let mut h = header(16384, 0, MAGIC_PRIMARY);
        let (b, json) = read_copy(&h, 0, Copy::Primary).unwrap();
        assert_eq!((b.hdr_size, b.seqid, b.label.as_str()), (16384, 7, "label"));
        assert_eq!(json_text(&json).unwrap(), "{}");
        h[5000] ^= 1;
        match read_copy(&h, 0, Copy::Primary).unwrap_err() {
            NoCopy::Damaged(e) => assert!(e.message().contains("checksum"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_magic_size_offset_or_truncation_is_refused() {
        let h = header(16384, 0, MAGIC_PRIMARY);
        assert!(matches!(
            read_copy(&h, 0, Copy::Secondary),
            Err(NoCopy::Absent(_))
        ));
        assert!(read_copy(&h[..8000].to_vec(), 0, Copy::Primary).is_err());
        let h = header(16384, 4096, MAGIC_PRIMARY);
        assert!(read_copy(&h, 0, Copy::Primary).is_err());
        let mut h = header(16384, 0, MAGIC_PRIMARY);
        h[8..16].copy_from_slice(&20000u64.to_be_bytes());
        assert!(read_copy(&h, 0, Copy::Primary).is_err());
    }

    #[test]
    fn encoded_copies_read_back() {
        let id = Identity {
            uuid: "u",
            label: "l",
            subsystem: "s",
        };
        let mut image = encode_copy(Copy::Primary, 16384, 9, &id, b"{}").unwrap();
        image.extend(encode_copy(Copy::Secondary, 16384, 9, &id, b"{}").unwrap());
        for (off, copy) in [(0, Copy::Primary), (16384, Copy::Secondary)] {
            let (b, json) = read_copy(&image, off, copy).unwrap();
            assert_eq!((b.seqid, b.label.as_str(), b.uuid.as_str()), (9, "l", "u"));
            assert_eq!(b.subsystem, "s");
            assert_eq!(json_text(&json).unwrap(), "{}");
        }
        let too_big = vec![b' '; 16384 - BIN_LEN];
        assert!(encode_copy(Copy::Primary, 16384, 1, &id, &too_big).is_err());
        assert!(encode_copy(Copy::Primary, 20000, 1, &id, b"{}").is_err());
    }

    #[test]
    fn json_area_must_be_nul_terminated_utf8() {
        assert!(json_text(b"{}").is_err());
        assert!(json_text(b"{\"\xff\"}\0").is_err());
        assert_eq!(json_text(b"{}\0\0\0").unwrap(), "{}");
        assert_eq!(
            json_text(b"{\"a\":[\"}\\\"\"]}\0").unwrap(),
            "{\"a\":[\"}\\\"\"]}"
        );
        // Incomplete JSON goes to the parser up to the first NUL.
        assert_eq!(json_text(b"{not json\0\0").unwrap(), "{not json");
    }

    #[test]
    fn json_area_is_refused_as_cryptsetup_refuses_it() {
        for (area, says) in [
            (&b"{}\0\0junk"[..], "non-NUL byte 0x6a at offset 4"),
            (b"{}X\0", "non-NUL byte 0x58 at offset 2"),
            (b"{} \0", "non-NUL byte 0x20 at offset 2"),
            (b" {}\0", "starts with byte 0x20"),
            (b"[{}]\0", "starts with byte 0x5b"),
            (b"{\"a\":\"b\"}", "not NUL-terminated"),
            (b"{\"a\":\"b", "not NUL-terminated"),
        ] {
            let e = json_text(area).unwrap_err();
            assert!(e.message().contains(says), "{area:?}: {e}");
        }
    }
}
