//! XTS (IEEE 1619) over whole sectors, batched: the tweaks of a sector are computed first,
//! then all its blocks go through the cipher in one multi-block call (AES-NI pipelines them,
//! Serpent and the others use their parallel paths). 16-byte block ciphers only.

use super::block::AnyBlock;
use super::{Alg, CHUNK};
use crate::error::Result;

pub(super) struct Xts {
    data: AnyBlock,
    tweak: AnyBlock,
}

/// Multiplies the tweak by x in GF(2^128) (little-endian convention of IEEE 1619).
#[inline(always)]
fn mul_x(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

impl Xts {
    pub(super) fn new(alg: Alg, key: &[u8]) -> Result<Self> {
        let (k1, k2) = key.split_at(key.len() / 2);
        Ok(Xts {
            data: AnyBlock::new(alg, k1)?,
            tweak: AnyBlock::new(alg, k2)?,
        })
    }

    /// En- or decrypts whole sectors of `buf`; sector `i` has IV block `iv(i)`. Work is done
    /// in chunks of up to [`CHUNK`] bytes spanning several sectors, so that small (512-byte)
    /// sectors still get long multi-block AES calls: first all the sectors' tweaks in one
    /// call, then one XOR pass, one AES pass over the whole chunk, and a second XOR pass.
    pub(super) fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
        encrypt: bool,
    ) {
        let per_chunk = (CHUNK / sector_size).clamp(1, CHUNK / 512);
        let mut tweaks = [0u8; 16 * (CHUNK / 512)];
        for (c, chunk) in buf.chunks_mut(per_chunk * sector_size).enumerate() {
            let n = chunk.len() / sector_size;
            let tweaks = &mut tweaks[..16 * n];
            for (i, t) in tweaks.chunks_exact_mut(16).enumerate() {
                t.copy_from_slice(&iv(c * per_chunk + i));
            }
            self.tweak.encrypt_blocks(tweaks);
            xor_tweaks(chunk, sector_size, tweaks);
            if encrypt {
                self.data.encrypt_blocks(chunk);
            } else {
                self.data.decrypt_blocks(chunk);
            }
            xor_tweaks(chunk, sector_size, tweaks);
        }
    }
}

/// XORs every block of every sector of `chunk` with its XTS tweak: the sector's encrypted IV
/// (from `tweaks`) times x^j for block j.
fn xor_tweaks(chunk: &mut [u8], sector_size: usize, tweaks: &[u8]) {
    for (sector, t0) in chunk
        .chunks_exact_mut(sector_size)
        .zip(tweaks.chunks_exact(16))
    {
        let mut t = u128::from_le_bytes(t0.try_into().expect("16 bytes"));
        for block in sector.chunks_exact_mut(16) {
            xor_block(block, t);
            t = mul_x(t);
        }
    }
}

#[inline(always)]
fn xor_block(block: &mut [u8], t: u128) {
    let b: &mut [u8; 16] = block.try_into().expect("16-byte block");
    *b = (u128::from_le_bytes(*b) ^ t).to_le_bytes();
}
