//! The block ciphers, keyed and chosen at run time ([`AnyBlock`]), with multi-block calls so
//! that the crates' parallel (pipelined or bitsliced) paths are used.

use super::twofish::Twofish;
use super::Alg;
use crate::error::{Error, Result};
use aes::{Aes128, Aes192, Aes256};
use camellia::{Camellia128, Camellia192, Camellia256};
use cast5::Cast5;
use cast6::Cast6;
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, BlockSizeUser, KeyInit};
use serpent::Serpent;
use sm4::Sm4;

impl Alg {
    /// Block size in bytes: 8 for CAST5, 16 for the others.
    pub fn block_size(self) -> usize {
        match self {
            Alg::Cast5 => 8,
            _ => 16,
        }
    }

    /// Whether `bytes` is a key length this cipher takes, as dm-crypt (the kernel's cipher
    /// drivers) and QEMU take them for a data key: AES, Serpent, Twofish and Camellia 128, 192
    /// and 256 bits; CAST5 40 to 128 bits (RFC 2144; QEMU makes cast5-128 only); CAST6 128 to
    /// 256 bits in steps of 32 (RFC 2612); SM4 128 bits.
    pub fn key_size_ok(self, bytes: usize) -> bool {
        match self {
            Alg::Aes | Alg::Serpent | Alg::Twofish | Alg::Camellia => {
                matches!(bytes, 16 | 24 | 32)
            }
            Alg::Cast5 => (5..=16).contains(&bytes),
            Alg::Cast6 => matches!(bytes, 16 | 20 | 24 | 28 | 32),
            Alg::Sm4 => bytes == 16,
        }
    }

    /// The largest key (bytes), the default of `format`.
    pub fn max_key_size(self) -> usize {
        match self {
            Alg::Cast5 | Alg::Sm4 => 16,
            _ => 32,
        }
    }
}

/// A keyed block cipher of any supported algorithm and key size, chosen at run time. Every
/// variant is boxed (key schedules are large) and zeroized on drop (the crates' `zeroize`).
pub(crate) enum AnyBlock {
    A128(Box<Aes128>),
    A192(Box<Aes192>),
    A256(Box<Aes256>),
    Serpent(Box<Serpent>),
    /// Twofish is this crate's own table-driven cipher (the `twofish` crate recomputes the
    /// key-dependent S-boxes for every block and runs at 1-2 MB/s here).
    Twofish(Twofish),
    Cast5(Box<Cast5>),
    Cast6(Box<Cast6>),
    Sm4(Box<Sm4>),
    Camellia128(Box<Camellia128>),
    Camellia192(Box<Camellia192>),
    Camellia256(Box<Camellia256>),
}

/// Calls `$body` with `$c` bound to the concrete RustCrypto cipher inside an [`AnyBlock`],
/// or `$tf` with `$t` bound to the Twofish one.
macro_rules! with_block {
    ($any:expr, $c:ident => $body:expr, $t:ident => $tf:expr) => {
        match $any {
            AnyBlock::A128($c) => $body,
            AnyBlock::A192($c) => $body,
            AnyBlock::A256($c) => $body,
            AnyBlock::Serpent($c) => $body,
            AnyBlock::Twofish($t) => $tf,
            AnyBlock::Cast5($c) => $body,
            AnyBlock::Cast6($c) => $body,
            AnyBlock::Sm4($c) => $body,
            AnyBlock::Camellia128($c) => $body,
            AnyBlock::Camellia192($c) => $body,
            AnyBlock::Camellia256($c) => $body,
        }
    };
}

fn keyed<C: KeyInit>(key: &[u8]) -> std::result::Result<Box<C>, cipher::InvalidLength> {
    C::new_from_slice(key).map(Box::new)
}

fn enc<C: BlockCipherEncrypt>(c: &C, buf: &mut [u8]) {
    let (blocks, rest) = cipher::Block::<C>::slice_as_chunks_mut(buf);
    debug_assert!(rest.is_empty());
    c.encrypt_blocks(blocks);
}

fn dec<C: BlockCipherDecrypt>(c: &C, buf: &mut [u8]) {
    let (blocks, rest) = cipher::Block::<C>::slice_as_chunks_mut(buf);
    debug_assert!(rest.is_empty());
    c.decrypt_blocks(blocks);
}

impl AnyBlock {
    /// `alg` keyed with `key`: a length [`Alg::key_size_ok`] accepts, or (for ESSIV, whose
    /// key is a digest) any other length the cipher's key schedule defines (Serpent: 16 to
    /// 32 bytes, padded as the Serpent specification and the kernel pad).
    pub(crate) fn new(alg: Alg, key: &[u8]) -> Result<Self> {
        let bad = |_| Error::format(format!("invalid {} key length {}", alg.name(), key.len()));
        Ok(match (alg, key.len()) {
            (Alg::Aes, 16) => AnyBlock::A128(keyed(key).map_err(bad)?),
            (Alg::Aes, 24) => AnyBlock::A192(keyed(key).map_err(bad)?),
            (Alg::Aes, 32) => AnyBlock::A256(keyed(key).map_err(bad)?),
            (Alg::Camellia, 16) => AnyBlock::Camellia128(keyed(key).map_err(bad)?),
            (Alg::Camellia, 24) => AnyBlock::Camellia192(keyed(key).map_err(bad)?),
            (Alg::Camellia, 32) => AnyBlock::Camellia256(keyed(key).map_err(bad)?),
            (Alg::Aes | Alg::Camellia, _) => return Err(bad(cipher::InvalidLength)),
            (Alg::Serpent, _) => AnyBlock::Serpent(keyed(key).map_err(bad)?),
            (Alg::Twofish, _) => {
                AnyBlock::Twofish(Twofish::new(key).ok_or_else(|| bad(cipher::InvalidLength))?)
            }
            (Alg::Cast5, _) => AnyBlock::Cast5(keyed(key).map_err(bad)?),
            (Alg::Cast6, _) => AnyBlock::Cast6(keyed(key).map_err(bad)?),
            (Alg::Sm4, 16) => AnyBlock::Sm4(keyed(key).map_err(bad)?),
            (Alg::Sm4, _) => return Err(bad(cipher::InvalidLength)),
        })
    }

    /// The block size in bytes (8 or 16).
    pub(crate) fn block_size(&self) -> usize {
        with_block!(self, c => block_size_of(&**c), _t => 16)
    }

    /// How many blocks the cipher's backend encrypts side by side (the crate's `ParBlocksSize`
    /// on this CPU: 64 for AES with VAES and AVX-512, 8 with AES-NI only; 2 for Twofish): fewer
    /// blocks per call run one at a time.
    pub(crate) fn par_blocks(&self) -> usize {
        with_block!(self, c => par_blocks_of(&**c), _t => super::twofish::LANES)
    }

    /// Encrypts whole blocks in place (`buf.len()` a multiple of the block size), all in one
    /// multi-block call.
    pub(crate) fn encrypt_blocks(&self, buf: &mut [u8]) {
        with_block!(self, c => enc(&**c, buf), t => t.encrypt_blocks(blocks16(buf)))
    }

    /// Decrypts whole blocks in place; the inverse of [`Self::encrypt_blocks`].
    pub(crate) fn decrypt_blocks(&self, buf: &mut [u8]) {
        with_block!(self, c => dec(&**c, buf), t => t.decrypt_blocks(blocks16(buf)))
    }

    /// CBC-encrypts `buf` (whole blocks) in place with the chaining value `iv` (one block).
    /// Serial by nature, so the cipher is chosen once and each block is one call.
    pub(crate) fn cbc_encrypt(&self, buf: &mut [u8], iv: &[u8]) {
        with_block!(self, c => cbc_enc(&**c, buf, iv), t => {
            let mut prev: [u8; 16] = iv.try_into().expect("IV of one block");
            for b in blocks16(buf) {
                for (x, p) in b.iter_mut().zip(prev) {
                    *x ^= p;
                }
                t.encrypt_blocks(std::array::from_mut(b));
                prev = *b;
            }
        })
    }
}

/// CBC encryption of one sector with the backend chosen once (one CPU-feature dispatch per
/// sector, not per block).
fn cbc_enc<C: BlockCipherEncrypt>(c: &C, buf: &mut [u8], iv: &[u8]) {
    struct Chain<'a, BS: cipher::array::ArraySize> {
        blocks: &'a mut [cipher::Array<u8, BS>],
        prev: cipher::Array<u8, BS>,
    }
    impl<BS: cipher::array::ArraySize> BlockSizeUser for Chain<'_, BS> {
        type BlockSize = BS;
    }
    impl<BS: cipher::array::ArraySize> cipher::BlockCipherEncClosure for Chain<'_, BS> {
        fn call<B: cipher::BlockCipherEncBackend<BlockSize = BS>>(self, backend: &B) {
            let mut prev = self.prev;
            for b in self.blocks {
                for (x, p) in b.iter_mut().zip(prev.iter()) {
                    *x ^= p;
                }
                backend.encrypt_block(b.into());
                prev.copy_from_slice(b);
            }
        }
    }
    let (blocks, rest) = cipher::Block::<C>::slice_as_chunks_mut(buf);
    debug_assert!(rest.is_empty());
    let prev = cipher::Block::<C>::try_from(iv).expect("IV of one block");
    c.encrypt_with_backend(Chain { blocks, prev });
}

/// `buf` (whole 16-byte blocks) as blocks.
fn blocks16(buf: &mut [u8]) -> &mut [[u8; 16]] {
    let (blocks, rest) = buf.as_chunks_mut::<16>();
    debug_assert!(rest.is_empty());
    blocks
}

/// The `ParBlocksSize` of the backend `c` picks at run time.
fn par_blocks_of<C: BlockCipherEncrypt>(c: &C) -> usize {
    struct Probe<'a, BS>(&'a mut usize, std::marker::PhantomData<BS>);
    impl<BS: cipher::array::ArraySize> BlockSizeUser for Probe<'_, BS> {
        type BlockSize = BS;
    }
    impl<BS: cipher::array::ArraySize> cipher::BlockCipherEncClosure for Probe<'_, BS> {
        fn call<B: cipher::BlockCipherEncBackend<BlockSize = BS>>(self, _: &B) {
            *self.0 = <B::ParBlocksSize as cipher::typenum::Unsigned>::USIZE;
        }
    }
    let mut n = 1;
    c.encrypt_with_backend(Probe::<C::BlockSize>(&mut n, std::marker::PhantomData));
    n
}

fn block_size_of<C: BlockSizeUser>(_: &C) -> usize {
    C::block_size()
}
