//! CTR per sector, as the kernel's `ctr()` template (crypto/ctr.c) and QEMU (nettle's
//! `ctr_crypt`) do it: the sector's IV block is the first counter block; the counter is the
//! whole block read as one big-endian number, incremented by one per block (wrapping). The
//! keystream is the encrypted counters; encryption and decryption are the same XOR.

use super::block::AnyBlock;
use super::cbc::xor;
use super::CHUNK;
use crate::secret::Secret;

pub(super) struct Ctr {
    block: AnyBlock,
}

impl Ctr {
    pub(super) fn new(block: AnyBlock) -> Self {
        Ctr { block }
    }

    /// XORs whole sectors of `buf` with their keystream; sector `i` has IV block `iv(i)`.
    /// The counters of a chunk of several sectors are encrypted in one multi-block call.
    pub(super) fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
    ) {
        let bs = self.block.block_size();
        let per_chunk = (CHUNK / sector_size).max(1);
        // The keystream is as secret as what it decrypts (keyslot material too): zeroized.
        let mut stream = Secret::zeroed(per_chunk * sector_size);
        for (c, chunk) in buf.chunks_mut(per_chunk * sector_size).enumerate() {
            let stream = &mut stream.as_mut_bytes()[..chunk.len()];
            for (s, sector) in stream.chunks_exact_mut(sector_size).enumerate() {
                let first = iv(c * per_chunk + s);
                if bs == 16 {
                    let mut n = u128::from_be_bytes(first);
                    for b in sector.chunks_exact_mut(16) {
                        b.copy_from_slice(&n.to_be_bytes());
                        n = n.wrapping_add(1);
                    }
                } else {
                    let mut n = u64::from_be_bytes(first[..8].try_into().expect("8 bytes"));
                    for b in sector.chunks_exact_mut(8) {
                        b.copy_from_slice(&n.to_be_bytes());
                        n = n.wrapping_add(1);
                    }
                }
            }
            self.block.encrypt_blocks(stream);
            xor(chunk, stream);
        }
    }
}
