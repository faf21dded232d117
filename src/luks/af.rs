//! The anti-forensic information splitter (AF) of LUKS: a key is stored as `stripes` blocks
//! so that destroying any one block destroys the key. See the LUKS1 on-disk format
//! specification, section 2.4, and cryptsetup's `lib/luks1/af.c`.

use crate::crypto::hash::HashAlg;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The diffusion function: each digest-sized chunk `i` of `block` is replaced by
/// `H(be32(i) || chunk)`, the last chunk truncated.
fn diffuse(hash: HashAlg, block: &mut [u8]) {
    let dlen = hash.len();
    let mut out = Secret::zeroed(dlen);
    for (i, chunk) in (0u32..).zip(block.chunks_mut(dlen)) {
        let iv = i.to_be_bytes();
        hash.hash_into(&[&iv, chunk], &mut out.as_mut_bytes()[..chunk.len()]);
        chunk.copy_from_slice(&out.as_bytes()[..chunk.len()]);
    }
}

/// Size in bytes of the split material for a key of `key_len` bytes in `stripes` stripes.
pub fn split_len(key_len: usize, stripes: u32) -> Option<usize> {
    key_len.checked_mul(stripes as usize)
}

/// Recovers the key of `key_len` bytes from `material` (`key_len * stripes` bytes).
pub fn merge(material: &[u8], key_len: usize, stripes: u32, hash: HashAlg) -> Result<Secret> {
    if stripes == 0 || key_len == 0 || split_len(key_len, stripes) != Some(material.len()) {
        return Err(Error::format(format!(
            "AF material of {} bytes does not hold {stripes} stripes of {key_len} bytes",
            material.len()
        )));
    }
    let mut buf = Secret::zeroed(key_len);
    let blocks: Vec<&[u8]> = material.chunks(key_len).collect();
    let (last, rest) = blocks.split_last().expect("stripes >= 1");
    for block in rest {
        for (b, m) in buf.as_mut_bytes().iter_mut().zip(block.iter()) {
            *b ^= m;
        }
        diffuse(hash, buf.as_mut_bytes());
    }
    for (b, m) in buf.as_mut_bytes().iter_mut().zip(last.iter()) {
        *b ^= m;
    }
    Ok(buf)
}

/// Splits `key` into `stripes` blocks; `random` fills the first `stripes - 1` blocks and must be
/// `key.len() * (stripes - 1)` bytes from a CSPRNG. Returns the material ([`merge`] inverts it).
pub fn split(key: &[u8], stripes: u32, hash: HashAlg, random: &[u8]) -> Result<Secret> {
    let total = split_len(key.len(), stripes)
        .filter(|_| stripes > 0 && !key.is_empty())
        .ok_or_else(|| Error::usage("invalid AF stripes or key length"))?;
    if random.len() != total - key.len() {
        return Err(Error::usage("AF split: wrong amount of random data"));
    }
    let mut out = Secret::zeroed(total);
    let mut buf = Secret::zeroed(key.len());
    let material = out.as_mut_bytes();
    material[..random.len()].copy_from_slice(random);
    for block in material[..random.len()].chunks(key.len()) {
        for (b, m) in buf.as_mut_bytes().iter_mut().zip(block.iter()) {
            *b ^= m;
        }
        diffuse(hash, buf.as_mut_bytes());
    }
    let last = &mut material[random.len()..];
    for ((l, b), k) in last.iter_mut().zip(buf.as_bytes()).zip(key) {
        *l = b ^ k;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_then_merge_returns_the_key() {
        let key: Vec<u8> = (0..64u8).collect();
        let random: Vec<u8> = (0..64 * 3).map(|i| (i * 7 + 3) as u8).collect();
        for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
            let m = split(&key, 4, hash, &random).unwrap();
            let k = merge(m.as_bytes(), 64, 4, hash).unwrap();
            assert_eq!(k.as_bytes(), &key[..]);
        }
    }

    #[test]
    fn one_stripe_is_the_key_itself() {
        let k = merge(b"0123456789abcdef", 16, 1, HashAlg::Sha256).unwrap();
        assert_eq!(k.as_bytes(), b"0123456789abcdef");
    }

    #[test]
    fn a_changed_stripe_changes_the_key() {
        let key = [0x42u8; 32];
        let random = vec![9u8; 32 * 9];
        let mut m = split(&key, 10, HashAlg::Sha256, &random).unwrap();
        m.as_mut_bytes()[40] ^= 1;
        assert_ne!(
            merge(m.as_bytes(), 32, 10, HashAlg::Sha256)
                .unwrap()
                .as_bytes(),
            &key
        );
    }

    #[test]
    fn wrong_material_length_is_an_error() {
        assert!(merge(&[0u8; 100], 32, 4, HashAlg::Sha256).is_err());
        assert!(merge(&[], 0, 0, HashAlg::Sha256).is_err());
    }
}
