//! CBC per sector (any block size: 8 for CAST5, 16 for the rest): the sector's IV block is
//! the chaining value of its first block. Used by old LUKS1 volumes (`aes-cbc-essiv:sha256`).

use super::block::AnyBlock;
use super::CHUNK;
use zeroize::Zeroize;

pub(super) struct Cbc {
    block: AnyBlock,
    /// Sectors encrypted side by side: as many as the cipher's backend takes blocks at once,
    /// and at least 16, so that even a one-block-at-a-time backend has independent blocks for
    /// the CPU to overlap (a CBC chain alone waits for each block's latency).
    lanes: usize,
}

impl Cbc {
    pub(super) fn new(block: AnyBlock) -> Self {
        let lanes = block.par_blocks().clamp(16, MAX_LANES);
        Cbc { block, lanes }
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
            self.encrypt_sectors(buf, sector_size, iv);
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

impl Cbc {
    /// Encryption is serial within a sector (each block needs the ciphertext before it), but
    /// sectors are independent: as many sectors as the cipher's backend takes blocks at once
    /// go through it together, block `j` of each in one multi-block call, so that the
    /// crates' parallel paths (64 VAES blocks in flight, eight AES-NI blocks, two Twofish
    /// blocks) work on CBC too. A lone sector is chained alone.
    fn encrypt_sectors(&self, buf: &mut [u8], ss: usize, iv: impl Fn(usize) -> [u8; 16]) {
        let bs = self.block.block_size();
        let n = buf.len() / ss;
        // Lane `l` holds the chaining value of sector `first + l`: its IV, then each
        // ciphertext block in turn.
        let mut lanes = [0u8; MAX_LANES * 16];
        let mut first = 0;
        while first < n {
            let k = (n - first).min(self.lanes);
            if k == 1 {
                self.block
                    .cbc_encrypt(&mut buf[first * ss..(first + 1) * ss], &iv(first)[..bs]);
                first += 1;
                continue;
            }
            let chain = &mut lanes[..k * bs];
            for (l, c) in chain.chunks_exact_mut(bs).enumerate() {
                c.copy_from_slice(&iv(first + l)[..bs]);
            }
            let group = &mut buf[first * ss..(first + k) * ss];
            for off in (0..ss).step_by(bs) {
                for (c, sector) in chain.chunks_exact_mut(bs).zip(group.chunks_exact(ss)) {
                    xor(c, &sector[off..off + bs]);
                }
                self.block.encrypt_blocks(chain);
                for (c, sector) in chain.chunks_exact(bs).zip(group.chunks_exact_mut(ss)) {
                    sector[off..off + bs].copy_from_slice(c);
                }
            }
            first += k;
        }
        // Plaintext XOR chaining values passed through here.
        lanes.zeroize();
    }
}

/// The most sectors CBC-encrypted side by side (AES's VAES-512 backend takes 64 blocks).
const MAX_LANES: usize = 64;

#[inline(always)]
pub(super) fn xor(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}
