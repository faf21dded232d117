//! Editing a LUKS2 header image in place: its two copies' JSON metadata, seqids and
//! checksums. One set of helpers for every test that damages or changes a header.
//!
//! Layout of each copy (offsets within its 4096-byte binary header): the header size (binary
//! plus JSON area) at 8, the seqid at 16, the checksum at 448 (64 bytes, SHA-256 in the first
//! 32); the JSON text follows the binary header, NUL-padded to the header size. The primary
//! copy is at 0, the secondary at the header size.

use serde_json::Value;
use sha2::Digest as _;

/// The size of each copy's binary header; its JSON area follows.
pub const BIN_HDR: usize = 4096;
/// Offset of the header size (be64) within a binary header.
pub const HDR_SIZE: usize = 8;
/// Offset of the seqid (be64) within a binary header.
pub const SEQID: usize = 16;
/// Offset of the checksum (64 bytes) within a binary header.
pub const CSUM: usize = 448;

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

/// Writes `v` big-endian at `off` (no checksum update).
pub fn put_be64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

/// The LUKS2 header size (binary + JSON) of an image, as its primary copy states it: also the
/// offset of the secondary copy.
pub fn hdr_size(img: &[u8]) -> usize {
    be64(img, HDR_SIZE) as usize
}

/// Recomputes the sha256 checksum of the header copy at `offset` (over its own header size).
pub fn fix_checksum(img: &mut [u8], offset: usize) {
    let size = be64(img, offset + HDR_SIZE) as usize;
    let area = &mut img[offset..offset + size];
    area[CSUM..CSUM + 64].fill(0);
    let sum = sha2::Sha256::digest(&*area);
    area[CSUM..CSUM + 32].copy_from_slice(&sum);
}

/// The seqid of the copy at `offset`.
pub fn seqid(img: &[u8], offset: usize) -> u64 {
    be64(img, offset + SEQID)
}

/// Sets the seqid of the copy at `offset` and recomputes its checksum.
pub fn set_seqid(img: &mut [u8], offset: usize, seqid: u64) {
    put_be64(img, offset + SEQID, seqid);
    fix_checksum(img, offset);
}

/// The JSON of the header copy at `offset`.
pub fn read_json(img: &[u8], offset: usize) -> Value {
    let size = hdr_size(img);
    let area = &img[offset + BIN_HDR..offset + size];
    let end = area.iter().position(|&b| b == 0).unwrap();
    serde_json::from_slice(&area[..end]).unwrap()
}

/// Replaces the JSON area of the copy at `offset` with `text` (NUL-padded) and recomputes
/// its checksum: the text need not be JSON.
pub fn set_copy_json_text(img: &mut [u8], offset: usize, text: &[u8]) {
    let size = hdr_size(img);
    let area = &mut img[offset + BIN_HDR..offset + size];
    assert!(text.len() < area.len(), "rewritten JSON does not fit");
    area.fill(0);
    area[..text.len()].copy_from_slice(text);
    fix_checksum(img, offset);
}

/// Replaces the JSON area of both copies with `text`, checksums recomputed.
pub fn set_json_text(img: &mut [u8], text: &[u8]) {
    let size = hdr_size(img);
    set_copy_json_text(img, 0, text);
    set_copy_json_text(img, size, text);
}

/// Rewrites the JSON of the header copy at `offset` with `f` and recomputes its checksum.
pub fn rewrite_copy_json(img: &mut [u8], offset: usize, f: &dyn Fn(&mut Value)) {
    let mut json = read_json(img, offset);
    f(&mut json);
    set_copy_json_text(img, offset, &serde_json::to_vec(&json).unwrap());
}

/// Rewrites the JSON of both LUKS2 header copies with `f`, keeping their checksums valid (only
/// the content is hostile).
pub fn rewrite_json(img: &mut [u8], f: &dyn Fn(&mut Value)) {
    let size = hdr_size(img);
    rewrite_copy_json(img, 0, f);
    rewrite_copy_json(img, size, f);
}
