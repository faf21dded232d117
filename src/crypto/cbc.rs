//! CBC per sector, with the `plain`, `plain64` and `essiv:HASH` IV generators of dm-crypt.
//! Used by old LUKS1 volumes (`aes-cbc-essiv:sha256`).

use super::{Alg, AnyBlock, IvGen};
use crate::error::Result;
use crate::secret::Secret;

pub(super) struct Cbc {
    block: AnyBlock,
    /// For ESSIV: the same cipher keyed with HASH(volume key), which encrypts the plain64 IV
    /// (as dm-crypt and QEMU do: the ESSIV cipher is the data cipher).
    essiv: Option<AnyBlock>,
}

impl Cbc {
    pub(super) fn new(alg: Alg, key: &[u8], iv: IvGen) -> Result<Self> {
        let essiv = match iv {
            IvGen::Essiv(hash) => {
                let mut salt = Secret::zeroed(hash.len());
                hash.hash_into(&[key], salt.as_mut_bytes());
                Some(AnyBlock::new(alg, salt.as_bytes())?)
            }
            _ => None,
        };
        Ok(Cbc {
            block: AnyBlock::new(alg, key)?,
            essiv,
        })
    }

    fn iv(&self, iv: &[u8; 16]) -> [u8; 16] {
        let mut iv = *iv;
        if let Some(e) = &self.essiv {
            e.encrypt_blocks(&mut iv);
        }
        iv
    }

    pub(super) fn encrypt_sector(&self, sector: &mut [u8], iv: &[u8; 16]) {
        let mut prev = self.iv(iv);
        for block in sector.chunks_exact_mut(16) {
            for (b, p) in block.iter_mut().zip(prev.iter()) {
                *b ^= p;
            }
            self.block.encrypt_blocks(block);
            prev.copy_from_slice(block);
        }
    }

    pub(super) fn decrypt_sector(&self, sector: &mut [u8], iv: &[u8; 16]) {
        // CBC decryption is parallel: decrypt all blocks at once, then XOR each with the
        // ciphertext block before it (kept from before decryption).
        let iv = self.iv(iv);
        let mut prev_block = iv;
        let mut saved = [0u8; 16];
        let ciphertext: Vec<u8> = sector.to_vec();
        self.block.decrypt_blocks(sector);
        for (i, block) in sector.chunks_exact_mut(16).enumerate() {
            saved.copy_from_slice(&ciphertext[i * 16..i * 16 + 16]);
            for (b, p) in block.iter_mut().zip(prev_block.iter()) {
                *b ^= p;
            }
            prev_block = saved;
        }
    }
}
