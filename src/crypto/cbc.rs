//! CBC per sector (any block size: 8 for CAST5, 16 for the rest): the sector's IV block is
//! the chaining value of its first block. Used by old LUKS1 volumes (`aes-cbc-essiv:sha256`).

use super::block::AnyBlock;
use super::CHUNK;

pub(super) struct Cbc {
    block: AnyBlock,
}

impl Cbc {
    pub(super) fn new(block: AnyBlock) -> Self {
        Cbc { block }
    }

    /// En- or decrypts whole sectors of `buf`; sector `i` has IV block `iv(i)`.
    pub(super) fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
        encrypt: bool,
    ) {
        let bs = self.block.block_size();
        if encrypt {
            // Encryption is serial: each block needs the ciphertext of the one before.
            for (i, sector) in buf.chunks_exact_mut(sector_size).enumerate() {
                self.block.cbc_encrypt(sector, &iv(i)[..bs]);
            }
            return;
        }
        // Decryption is parallel: decrypt a chunk of several sectors in one call, then XOR
        // each block with the ciphertext before it (kept from before decryption; contiguous,
        // so one XOR per sector) and a sector's first block with the sector's IV.
        let per_chunk = (CHUNK / sector_size).max(1);
        let mut saved = vec![0u8; per_chunk * sector_size];
        for (c, chunk) in buf.chunks_mut(per_chunk * sector_size).enumerate() {
            let saved = &mut saved[..chunk.len()];
            saved.copy_from_slice(chunk);
            self.block.decrypt_blocks(chunk);
            for (s, (sector, old)) in chunk
                .chunks_exact_mut(sector_size)
                .zip(saved.chunks_exact(sector_size))
                .enumerate()
            {
                let (first, rest) = sector.split_at_mut(bs);
                xor(first, &iv(c * per_chunk + s)[..bs]);
                xor(rest, &old[..sector_size - bs]);
            }
        }
    }
}

#[inline(always)]
pub(super) fn xor(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}
