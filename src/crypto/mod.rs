//! The sector ciphers LUKS uses for payloads and keyslot areas: AES, Serpent, Twofish, CAST5,
//! CAST6, SM4 or Camellia in XTS, CBC, CTR or LRW mode, with dm-crypt's IV generators
//! (`plain`, `plain64`, `plain64be`, `benbi`, `null`, `essiv:HASH`). Only this module touches
//! the cipher crates. Every sector is encrypted independently; the IV of a sector is a number
//! the caller computes (dm-crypt and QEMU count it in 512-byte units from the segment start).
//!
//! `spec` parses cipher names, `block` keys the block ciphers, `ivgen` makes IV blocks, and
//! `xts`, `cbc`, `ctr`, `lrw` are the modes, each batched over many blocks per cipher call.

use crate::error::{Error, Result};
use crate::units::{Iv, IvStep, SectorSize};

#[doc(hidden)]
pub mod bench;
mod block;
mod cbc;
mod ctr;
pub mod hash;
mod ivgen;
mod lrw;
mod spec;
pub(crate) mod twofish;
mod xts;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod xts_avx512;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod xts_vaes256;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod xts_vec;

use block::AnyBlock;
pub use spec::{Alg, CipherName, CipherSpec, EssivHash, IvGen, Mode};

/// Bytes processed per batch by the modes: several sectors per multi-block cipher call.
const CHUNK: usize = 16 * 1024;

/// Environment variable that overrides the choice of XTS implementation (read once per
/// process): `portable` forces the portable path, `vaes256` or `avx512` requires that vector
/// path.
pub const XTS_IMPL_ENV: &str = "LUKSFUSE_XTS_IMPL";

/// An implementation of XTS. [`SectorCipher::new`] picks the fastest one this CPU runs (or the
/// one named by [`XTS_IMPL_ENV`]); [`SectorCipher::with_impl`] forces one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XtsImpl {
    /// The `aes` crate's multi-block calls, with tweaks computed on `u128`s. Runs anywhere and
    /// takes every XTS key size.
    Portable,
    /// VAES + VPCLMULQDQ on 512-bit vectors (x86-64 with AVX-512F/BW); XTS-AES-128 and
    /// XTS-AES-256 only (256- and 512-bit keys).
    Avx512,
    /// VAES + VPCLMULQDQ on 256-bit vectors (x86-64 with AVX2: the CPUs with VAES but no
    /// AVX-512); the same key sizes as `Avx512`.
    Vaes256,
}

impl XtsImpl {
    /// Whether this CPU can run `self` (for some key size).
    pub fn available(self) -> bool {
        match self {
            XtsImpl::Portable => true,
            #[cfg(target_arch = "x86_64")]
            XtsImpl::Avx512 => xts_avx512::XtsAvx512::supported(),
            #[cfg(target_arch = "x86_64")]
            XtsImpl::Vaes256 => xts_vaes256::XtsVaes256::supported(),
            #[cfg(not(target_arch = "x86_64"))]
            XtsImpl::Avx512 | XtsImpl::Vaes256 => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            XtsImpl::Portable => "portable",
            XtsImpl::Avx512 => "avx512",
            XtsImpl::Vaes256 => "vaes256",
        }
    }

    /// The implementation [`XTS_IMPL_ENV`] asks for, if any (read and cached on first use).
    fn from_env() -> Option<XtsImpl> {
        static CHOICE: std::sync::OnceLock<Option<XtsImpl>> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var(XTS_IMPL_ENV).ok()?.as_str() {
            "portable" => Some(XtsImpl::Portable),
            "avx512" => Some(XtsImpl::Avx512),
            "vaes256" => Some(XtsImpl::Vaes256),
            other => {
                log::warn!(
                    "ignoring {XTS_IMPL_ENV}={other:?} (expected portable, vaes256 or avx512)"
                );
                None
            }
        })
    }
}

enum Engine {
    Xts(xts::Xts),
    #[cfg(target_arch = "x86_64")]
    XtsAvx512(xts_avx512::XtsAvx512),
    #[cfg(target_arch = "x86_64")]
    XtsVaes256(xts_vaes256::XtsVaes256),
    Cbc(cbc::Cbc),
    Ctr(ctr::Ctr),
    Lrw(lrw::Lrw),
}

/// A keyed sector cipher. Shareable between threads (`&self` methods, no interior state).
pub struct SectorCipher {
    spec: CipherSpec,
    ivs: ivgen::IvMaker,
    engine: Engine,
}

impl SectorCipher {
    /// A cipher for `spec` keyed with `key`. For AES-XTS, uses the widest vector implementation
    /// the CPU has (AVX-512, else VAES-256) when the key size suits it, else the portable one;
    /// [`XTS_IMPL_ENV`] overrides.
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<Self> {
        let aes_xts = spec.mode == Mode::Xts && spec.alg == Alg::Aes;
        if let Some(imp) = XtsImpl::from_env() {
            if aes_xts && (imp == XtsImpl::Portable || key.len() != 48) {
                return Self::with_impl(spec, key, imp);
            }
        }
        spec.check_key_size(key.len())?;
        #[cfg(target_arch = "x86_64")]
        if aes_xts {
            if let Some(v) = xts_avx512::XtsAvx512::new(key) {
                log::debug!("{spec}: using the avx512 XTS implementation");
                return Self::build(spec, key, Engine::XtsAvx512(v));
            }
            if let Some(v) = xts_vaes256::XtsVaes256::new(key) {
                log::debug!("{spec}: using the vaes256 XTS implementation");
                return Self::build(spec, key, Engine::XtsVaes256(v));
            }
        }
        let engine = match spec.mode {
            Mode::Xts => Engine::Xts(xts::Xts::new(spec.alg, key)?),
            Mode::Cbc => Engine::Cbc(cbc::Cbc::new(AnyBlock::new(spec.alg, key)?)),
            Mode::Ctr => Engine::Ctr(ctr::Ctr::new(AnyBlock::new(spec.alg, key)?)),
            Mode::Lrw => Engine::Lrw(lrw::Lrw::new(spec.alg, key)?),
        };
        Self::build(spec, key, engine)
    }

    fn build(spec: &CipherSpec, key: &[u8], engine: Engine) -> Result<Self> {
        Ok(SectorCipher {
            spec: *spec,
            ivs: ivgen::IvMaker::new(spec.iv, spec.alg, key)?,
            engine,
        })
    }

    /// Like [`Self::new`] for an XTS `spec`, with the implementation `imp` forced. Fails when
    /// `spec` is not XTS, or this CPU or this key size cannot use `imp`.
    pub fn with_impl(spec: &CipherSpec, key: &[u8], imp: XtsImpl) -> Result<Self> {
        spec.check_key_size(key.len())?;
        if spec.mode != Mode::Xts {
            return Err(Error::format(format!("{spec} is not an XTS cipher")));
        }
        if imp != XtsImpl::Portable && spec.alg != Alg::Aes {
            return Err(Error::format(format!(
                "the {} XTS implementation is for AES, not {}",
                imp.name(),
                spec.alg.name()
            )));
        }
        let engine = match imp {
            XtsImpl::Portable => Engine::Xts(xts::Xts::new(spec.alg, key)?),
            #[cfg(target_arch = "x86_64")]
            XtsImpl::Avx512 => {
                Engine::XtsAvx512(forced(xts_avx512::XtsAvx512::new(key), imp, key)?)
            }
            #[cfg(target_arch = "x86_64")]
            XtsImpl::Vaes256 => {
                Engine::XtsVaes256(forced(xts_vaes256::XtsVaes256::new(key), imp, key)?)
            }
            #[cfg(not(target_arch = "x86_64"))]
            XtsImpl::Avx512 | XtsImpl::Vaes256 => {
                return Err(Error::format(format!(
                    "the {} XTS implementation needs x86-64",
                    imp.name()
                )))
            }
        };
        Self::build(spec, key, engine)
    }

    /// The XTS implementation in use (`None` for the other modes).
    pub fn xts_impl(&self) -> Option<XtsImpl> {
        match self.engine {
            Engine::Xts(_) => Some(XtsImpl::Portable),
            #[cfg(target_arch = "x86_64")]
            Engine::XtsAvx512(_) => Some(XtsImpl::Avx512),
            #[cfg(target_arch = "x86_64")]
            Engine::XtsVaes256(_) => Some(XtsImpl::Vaes256),
            Engine::Cbc(_) | Engine::Ctr(_) | Engine::Lrw(_) => None,
        }
    }

    pub fn spec(&self) -> &CipherSpec {
        &self.spec
    }

    /// Encrypts whole sectors of `sector` bytes in place (`buf.len()` must be a multiple of
    /// it); sector `i` of `buf` uses IV number `first.nth(i, step)`.
    #[inline]
    pub fn encrypt_sectors(&self, buf: &mut [u8], sector: SectorSize, first: Iv, step: IvStep) {
        self.crypt(buf, sector.bytes(), first, step, true)
    }

    /// Encrypts whole sectors of `src` into `dst` (of the same length), exactly as
    /// [`Self::encrypt_sectors`] would in place: one pass for the vector XTS engines, a copy
    /// and then the in-place pass for the others.
    pub fn encrypt_sectors_to(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector: SectorSize,
        first: Iv,
        step: IvStep,
    ) {
        self.encrypt_to(src, dst, sector.bytes(), first, step)
    }

    /// [`Self::encrypt_sectors_to`] for sectors of `sector_size` bytes, any multiple of 16 (as
    /// [`Self::crypt`]).
    fn encrypt_to(&self, src: &[u8], dst: &mut [u8], sector_size: usize, first: Iv, step: IvStep) {
        #[cfg(target_arch = "x86_64")]
        {
            // `usize` to `u64` widens (no target has wider pointers).
            let iv_of = |i: usize| self.ivs.iv(first.nth(i as u64, step));
            match &self.engine {
                Engine::XtsAvx512(x) => return x.encrypt_sectors_to(src, dst, sector_size, iv_of),
                Engine::XtsVaes256(x) => return x.encrypt_sectors_to(src, dst, sector_size, iv_of),
                _ => {}
            }
        }
        dst.copy_from_slice(src);
        self.crypt(dst, sector_size, first, step, true)
    }

    /// Decrypts whole sectors in place; the inverse of [`Self::encrypt_sectors`].
    #[inline]
    pub fn decrypt_sectors(&self, buf: &mut [u8], sector: SectorSize, first: Iv, step: IvStep) {
        self.crypt(buf, sector.bytes(), first, step, false)
    }

    /// En- or decrypts whole sectors of `sector_size` bytes, any multiple of 16 (the
    /// implementations take any; the tests use odd sizes to reach every code path).
    fn crypt(&self, buf: &mut [u8], sector_size: usize, first: Iv, step: IvStep, encrypt: bool) {
        assert!(
            sector_size >= 16
                && sector_size.is_multiple_of(16)
                && buf.len().is_multiple_of(sector_size)
        );
        // `usize` to `u64` widens (no target has wider pointers).
        let iv_of = |i: usize| self.ivs.iv(first.nth(i as u64, step));
        match &self.engine {
            Engine::Xts(x) => x.crypt_sectors(buf, sector_size, iv_of, encrypt),
            #[cfg(target_arch = "x86_64")]
            Engine::XtsAvx512(x) => x.crypt_sectors(buf, sector_size, iv_of, encrypt),
            #[cfg(target_arch = "x86_64")]
            Engine::XtsVaes256(x) => x.crypt_sectors(buf, sector_size, iv_of, encrypt),
            Engine::Cbc(c) => c.crypt_sectors(buf, sector_size, iv_of, encrypt),
            Engine::Ctr(c) => c.crypt_sectors(buf, sector_size, iv_of),
            Engine::Lrw(l) => l.crypt_sectors(buf, sector_size, iv_of, encrypt),
        }
    }
}

/// A vector XTS cipher forced by [`SectorCipher::with_impl`]: `made`, or why this CPU or key
/// size cannot run `imp`.
#[cfg(target_arch = "x86_64")]
fn forced<T>(made: Option<T>, imp: XtsImpl, key: &[u8]) -> Result<T> {
    made.ok_or_else(|| {
        Error::format(format!(
            "the {} XTS implementation cannot run {}-bit keys on this CPU",
            imp.name(),
            key.len() * 8
        ))
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_kat;
