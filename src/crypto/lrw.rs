//! LRW as the kernel's `lrw()` template defines it (crypto/lrw.c, after the IEEE P1619 LRW
//! draft): the key is the cipher key followed by a 16-byte tweak key K2; the IV block, read
//! as a big-endian 128-bit number I, is the index of the sector's first block, and block j
//! of the sector is `C = E(P ^ T) ^ T` with `T = (I + j) * K2` in GF(2^128) (the kernel's
//! "bbe" convention: the big-endian number's bit k is the coefficient of x^k, reduced by
//! x^128 + x^7 + x^2 + x + 1). dm-crypt pairs it with `benbi`, whose IVs count blocks from 1.

use super::block::AnyBlock;
use super::CHUNK;
use crate::error::Result;
use zeroize::Zeroize;

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

    /// XORs every block of every sector of `chunk` with its tweak; `first[s]` is the index of
    /// sector s's first block and `t0[s]` its tweak.
    fn xor_tweaks(&self, chunk: &mut [u8], sector_size: usize, first: &[u128], t0: &[u128]) {
        for ((sector, &i0), &t) in chunk.chunks_exact_mut(sector_size).zip(first).zip(t0) {
            let (mut i, mut t) = (i0, t);
            for block in sector.chunks_exact_mut(16) {
                let b: &mut [u8; 16] = block.try_into().expect("16-byte block");
                *b = (u128::from_be_bytes(*b) ^ t).to_be_bytes();
                t ^= self.inc[(i.trailing_ones() as usize).min(127)];
                i = i.wrapping_add(1);
            }
        }
    }

    /// En- or decrypts whole sectors of `buf`; sector `i` has IV block `iv(i)`: tweaks, one
    /// multi-block cipher call over a chunk of sectors, tweaks again.
    pub(super) fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
        encrypt: bool,
    ) {
        const MAX: usize = CHUNK / 512;
        let per_chunk = (CHUNK / sector_size).clamp(1, MAX);
        let (mut first, mut t0) = ([0u128; MAX], [0u128; MAX]);
        for (c, chunk) in buf.chunks_mut(per_chunk * sector_size).enumerate() {
            let n = chunk.len() / sector_size;
            for s in 0..n {
                first[s] = u128::from_be_bytes(iv(c * per_chunk + s));
                t0[s] = self.tweak(first[s]);
            }
            self.xor_tweaks(chunk, sector_size, &first[..n], &t0[..n]);
            if encrypt {
                self.block.encrypt_blocks(chunk);
            } else {
                self.block.decrypt_blocks(chunk);
            }
            self.xor_tweaks(chunk, sector_size, &first[..n], &t0[..n]);
        }
        t0.zeroize();
    }
}
