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

/// The whole JSON area of the copy at `offset` (up to the header size the primary states).
pub fn json_area(img: &[u8], offset: usize) -> &[u8] {
    &img[offset + BIN_HDR..offset + hdr_size(img)]
}

/// The JSON text of the copy at `offset`: its area's bytes before the first NUL.
pub fn json_bytes(img: &[u8], offset: usize) -> Vec<u8> {
    let area = json_area(img, offset);
    let end = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    area[..end].to_vec()
}

/// Edits the raw JSON area of the copy at `offset` with `f` (any bytes, NULs or not) and
/// recomputes its checksum.
pub fn edit_json_area(img: &mut [u8], offset: usize, f: &dyn Fn(&mut [u8])) {
    let size = hdr_size(img);
    f(&mut img[offset + BIN_HDR..offset + size]);
    fix_checksum(img, offset);
}

/// Makes the copy at `offset` unrecognisable: its magic becomes `VACUUM` (checksum left
/// alone), so a reader finds no header copy there.
pub fn kill_copy(img: &mut [u8], offset: usize) {
    img[offset..offset + 6].copy_from_slice(b"VACUUM");
}

/// Damages the checksum of the copy at `offset` (its content stays as it was).
pub fn break_checksum(img: &mut [u8], offset: usize) {
    for b in &mut img[offset + CSUM..offset + CSUM + 32] {
        *b ^= 0x5a;
    }
}

/// Recomputes the sha256 checksum of the copy at `offset` over `len` bytes, whatever header
/// size the copy states (for copies whose stated size is itself the damage).
pub fn fix_checksum_over(img: &mut [u8], offset: usize, len: usize) {
    let area = &mut img[offset..offset + len];
    area[CSUM..CSUM + 64].fill(0);
    let sum = sha2::Sha256::digest(&*area);
    area[CSUM..CSUM + 32].copy_from_slice(&sum);
}

/// Offset of the header's own offset (be64) within a binary header.
pub const HDR_OFFSET: usize = 256;

/// Lays the two copies out again with header size `size` (one of LUKS2's sizes), both holding
/// `json` (NUL-padded to `size - 4096`), the secondary at `size`, checksums recomputed. The
/// binary headers are kept but for their size and offset fields. The image must be large
/// enough; whatever lay where the copies now are (key material) is overwritten.
pub fn relayout(img: &mut [u8], size: usize, json: &Value) {
    let old = hdr_size(img);
    let mut bin0 = img[..BIN_HDR].to_vec();
    let mut bin1 = img[old..old + BIN_HDR].to_vec();
    put_be64(&mut bin0, HDR_SIZE, size as u64);
    put_be64(&mut bin1, HDR_SIZE, size as u64);
    put_be64(&mut bin1, HDR_OFFSET, size as u64);
    let text = serde_json::to_vec(json).unwrap();
    assert!(text.len() < size - BIN_HDR, "JSON does not fit");
    for (at, bin) in [(0, bin0), (size, bin1)] {
        img[at..at + size].fill(0);
        img[at..at + BIN_HDR].copy_from_slice(&bin);
        img[at + BIN_HDR..at + BIN_HDR + text.len()].copy_from_slice(&text);
        fix_checksum(img, at);
    }
}
