//! dm-crypt's IV generators (drivers/md/dm-crypt.c, `crypt_iv_*_gen`), which QEMU's
//! (crypto/ivgen-*.c) match for the ones it has. The IV of a sector is a block of the
//! cipher's block size computed from the sector's IV number.

use super::block::AnyBlock;
use super::{Alg, IvGen};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::units::Iv;

/// An IV generator keyed for one volume key (only ESSIV has a key of its own).
pub(super) struct IvMaker {
    gen: IvGen,
    /// The cipher's block size, 8 or 16: the IV's length.
    bs: usize,
    /// For ESSIV: the data cipher keyed with HASH(volume key), which encrypts the plain64
    /// IV (dm-crypt's and QEMU's ESSIV cipher is the data cipher; the hash covers the whole
    /// key, both XTS halves too).
    essiv: Option<AnyBlock>,
}

impl IvMaker {
    pub(super) fn new(gen: IvGen, alg: Alg, key: &[u8]) -> Result<Self> {
        let essiv = match gen {
            IvGen::Essiv(h) => {
                let mut salt = Secret::zeroed(h.len);
                h.hash.hash_into(&[key], salt.as_mut_bytes());
                // As in the kernel, the digest must be a key of the cipher (sha256 for AES
                // and Serpent, not for SM4 or CAST5).
                Some(AnyBlock::new(alg, salt.as_bytes()).map_err(|_| {
                    Error::format(format!(
                        "essiv:{} gives a {}-bit key, which {} does not take",
                        h.name(),
                        h.len * 8,
                        alg.name()
                    ))
                })?)
            }
            _ => None,
        };
        Ok(IvMaker {
            gen,
            bs: alg.block_size(),
            essiv,
        })
    }

    /// The IV block of IV number `n`; bytes past the block size are zero.
    #[inline]
    pub(super) fn iv(&self, n: Iv) -> [u8; 16] {
        let n = n.get();
        let bs = self.bs;
        let mut b = [0u8; 16];
        match self.gen {
            // dm-crypt's `plain` keeps the low 32 bits of the sector number.
            IvGen::Plain => b[..4].copy_from_slice(&n.to_le_bytes()[..4]),
            IvGen::Plain64 => b[..8].copy_from_slice(&n.to_le_bytes()),
            IvGen::Plain64Be => b[bs - 8..bs].copy_from_slice(&n.to_be_bytes()),
            IvGen::Benbi => {
                // The count of cipher blocks before the sector (512-byte sectors of 2^shift
                // blocks), plus one: LRW's block index counts from 1. Wraps as in C.
                let shift = 9 - bs.trailing_zeros();
                let count = (n << shift).wrapping_add(1);
                b[bs - 8..bs].copy_from_slice(&count.to_be_bytes());
            }
            IvGen::Null => {}
            IvGen::Essiv(_) => {
                b[..8].copy_from_slice(&n.to_le_bytes());
                if let Some(e) = &self.essiv {
                    e.encrypt_blocks(&mut b[..bs]);
                }
            }
        }
        b
    }
}
