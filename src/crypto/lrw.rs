//! LRW as the kernel's `lrw()` template defines it (crypto/lrw.c, after the IEEE P1619 LRW
//! draft): the key is the cipher key followed by a 16-byte tweak key K2; the IV block, read
//! as a big-endian 128-bit number I, is the index of the sector's first block, and block j
//! of the sector is `C = E(P ^ T) ^ T` with `T = (I + j) * K2` in GF(2^128) (the kernel's
//! "bbe" convention: the big-endian number's bit k is the coefficient of x^k, reduced by
//! x^128 + x^7 + x^2 + x + 1). dm-crypt pairs it with `benbi`, whose IVs count blocks from 1.

use super::block::AnyBlock;
use super::cbc::xor;
use crate::error::Result;
use crate::secret::Secret;
use zeroize::Zeroize;

/// Bytes per pass: the chunk and its tweaks stay in L1 beside the cipher's tables (16 KiB
/// chunks measured 0.65-0.72 of the raw cipher for Twofish and Serpent encryption, 4 KiB
/// 0.8-1.0; make bench-ciphers CIPHERS=-lrw-).
const LRW_CHUNK: usize = 4096;

pub(super) struct Lrw {
    block: AnyBlock,
    /// `pow[k] = K2 * x^k`: `I * K2` is the XOR of `pow[k]` over the bits k set in I.
    pow: Box<[u128; 128]>,
    /// `inc[k] = K2 * (2^(k+1) - 1)`: going from index i to i + 1 flips the trailing ones of
    /// i and the zero above them, so `T(i + 1) = T(i) ^ inc[trailing_ones(i)]`.
    inc: Box<[u128; 128]>,
}

impl Drop for Lrw {
    fn drop(&mut self) {
        self.pow.zeroize();
        self.inc.zeroize();
    }
}

/// Multiplies by x in GF(2^128), "bbe" convention (constant time).
#[inline(always)]
fn mul_x(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

impl Lrw {
    /// `key` is the cipher key followed by the 16-byte tweak key (the caller checked the
    /// length).
    pub(super) fn new(alg: super::Alg, key: &[u8]) -> Result<Self> {
        let (k1, k2) = key.split_at(key.len() - 16);
        let mut t = u128::from_be_bytes(k2.try_into().expect("16-byte tweak key"));
        let mut pow = Box::new([0u128; 128]);
        let mut inc = Box::new([0u128; 128]);
        let mut acc = 0u128;
        for k in 0..128 {
            pow[k] = t;
            acc ^= t;
            inc[k] = acc;
            t = mul_x(t);
        }
        t.zeroize();
        acc.zeroize();
        Ok(Lrw {
            block: AnyBlock::new(alg, k1)?,
            pow,
            inc,
        })
    }

    /// `i * K2`. Branches on the bits of `i` only (a block index: public), not on the key.
    fn tweak(&self, mut i: u128) -> u128 {
        let mut t = 0;
        while i != 0 {
            t ^= self.pow[i.trailing_zeros() as usize];
            i &= i - 1;
        }
        t
    }

    /// Writes the tweak of every block of a sector whose first block has index `i` into
    /// `out` (the sector's length).
    fn tweaks(&self, out: &mut [u8], mut i: u128) {
        let mut t = self.tweak(i);
        for block in out.chunks_exact_mut(16) {
            block.copy_from_slice(&t.to_be_bytes());
            t ^= self.inc[(i.trailing_ones() as usize).min(127)];
            i = i.wrapping_add(1);
        }
        t.zeroize();
    }

    /// En- or decrypts whole sectors of `buf`; sector `i` has IV block `iv(i)`: the tweaks of
    /// a chunk of sectors, one XOR pass, one multi-block cipher call, a second XOR pass.
    pub(super) fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
        encrypt: bool,
    ) {
        let per_chunk = (LRW_CHUNK / sector_size).max(1);
        // Tweaks are key material: zeroized.
        let mut tweaks = Secret::zeroed(per_chunk * sector_size);
        for (c, chunk) in buf.chunks_mut(per_chunk * sector_size).enumerate() {
            let tw = &mut tweaks.as_mut_bytes()[..chunk.len()];
            for (s, sector) in tw.chunks_exact_mut(sector_size).enumerate() {
                self.tweaks(sector, u128::from_be_bytes(iv(c * per_chunk + s)));
            }
            xor(chunk, tw);
            if encrypt {
                self.block.encrypt_blocks(chunk);
            } else {
                self.block.decrypt_blocks(chunk);
            }
            xor(chunk, tw);
        }
    }
}
