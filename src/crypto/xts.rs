//! XTS-AES (IEEE 1619) over whole sectors, batched: the tweaks of a sector are computed first,
//! then all its blocks go through AES in one multi-block call (AES-NI/VAES pipelines them).

use super::AnyAes;
use crate::error::Result;

/// Blocks processed per batch: 4096-byte sectors in one go, larger ones in pieces.
const BATCH: usize = 256;

pub(super) struct Xts {
    data: AnyAes,
    tweak: AnyAes,
}

/// Multiplies the tweak by x in GF(2^128) (little-endian convention of IEEE 1619).
#[inline(always)]
fn mul_x(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

impl Xts {
    pub(super) fn new(key: &[u8]) -> Result<Self> {
        let (k1, k2) = key.split_at(key.len() / 2);
        Ok(Xts {
            data: AnyAes::new(k1)?,
            tweak: AnyAes::new(k2)?,
        })
    }

    fn crypt_sector(&self, sector: &mut [u8], iv: &[u8; 16], encrypt: bool) {
        let mut t = *iv;
        self.tweak.encrypt_blocks(&mut t);
        let mut t = u128::from_le_bytes(t);
        let mut tweaks = [0u128; BATCH];
        for chunk in sector.chunks_mut(BATCH * 16) {
            let n = chunk.len() / 16;
            for (slot, block) in tweaks[..n].iter_mut().zip(chunk.chunks_exact_mut(16)) {
                *slot = t;
                xor_block(block, t);
                t = mul_x(t);
            }
            if encrypt {
                self.data.encrypt_blocks(chunk);
            } else {
                self.data.decrypt_blocks(chunk);
            }
            for (slot, block) in tweaks[..n].iter().zip(chunk.chunks_exact_mut(16)) {
                xor_block(block, *slot);
            }
        }
    }

    pub(super) fn encrypt_sector(&self, sector: &mut [u8], iv: &[u8; 16]) {
        self.crypt_sector(sector, iv, true)
    }

    pub(super) fn decrypt_sector(&self, sector: &mut [u8], iv: &[u8; 16]) {
        self.crypt_sector(sector, iv, false)
    }
}

#[inline(always)]
fn xor_block(block: &mut [u8], t: u128) {
    let b: &mut [u8; 16] = block.try_into().expect("16-byte block");
    *b = (u128::from_le_bytes(*b) ^ t).to_le_bytes();
}
