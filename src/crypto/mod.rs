//! The sector ciphers LUKS uses for payloads and keyslot areas: AES, Serpent or Twofish in XTS
//! or CBC mode, with dm-crypt's IV generators (`plain`, `plain64`, `essiv:HASH`). Only this
//! module touches the cipher crates. Every sector is encrypted independently; the IV of a sector is a number the
//! caller computes (dm-crypt and QEMU count it in 512-byte units from the segment start).

use crate::error::{Error, Result};
use crate::units::{Iv, IvStep, SectorSize};
use ::twofish::Twofish;
use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use hash::HashAlg;
use serpent::Serpent;
use std::fmt;

mod cbc;
pub mod hash;
pub(crate) mod twofish;
mod xts;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod xts_avx512;

/// Environment variable that overrides the choice of XTS implementation (read once per
/// process): `portable` forces the portable path, `avx512` requires the vector path.
pub const XTS_IMPL_ENV: &str = "LUKSFUSE_XTS_IMPL";

/// The block cipher (all have 16-byte blocks and take 128-, 192- and 256-bit keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Aes,
    Serpent,
    Twofish,
}

impl Alg {
    /// The name dm-crypt, cryptsetup and QEMU use.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Aes => "aes",
            Alg::Serpent => "serpent",
            Alg::Twofish => "twofish",
        }
    }

    fn from_name(name: &str) -> Option<Alg> {
        [Alg::Aes, Alg::Serpent, Alg::Twofish]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Block cipher chaining mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Xts,
    Cbc,
}

/// IV generator, as dm-crypt names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvGen {
    /// 32-bit little-endian sector number.
    Plain,
    /// 64-bit little-endian sector number.
    Plain64,
    /// The sector number encrypted with a key hashed from the volume key.
    Essiv(HashAlg),
}

/// A parsed cipher specification such as `aes-xts-plain64` (LUKS2 `encryption`, or LUKS1
/// `cipher_name` + `-` + `cipher_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSpec {
    pub alg: Alg,
    pub mode: Mode,
    pub iv: IvGen,
}

impl CipherSpec {
    /// Parses `cipher-mode-iv` (cipher: aes, serpent or twofish); `cipher_null`, ECB and
    /// anything unknown is refused with a message naming it (never guessed).
    pub fn parse(spec: &str) -> Result<Self> {
        let unsupported = || Error::format(format!("unsupported cipher '{spec}'"));
        let lower = spec.to_ascii_lowercase();
        if lower.starts_with("cipher_null") || lower.contains("ecb") {
            return Err(Error::format(format!(
                "cipher '{spec}' gives no confidentiality (refused)"
            )));
        }
        let mut parts = lower.splitn(3, '-');
        let (cipher, mode, iv) = (parts.next(), parts.next(), parts.next());
        let alg = cipher.and_then(Alg::from_name).ok_or_else(unsupported)?;
        let mode = match mode {
            Some("xts") => Mode::Xts,
            Some("cbc") => Mode::Cbc,
            _ => return Err(unsupported()),
        };
        let iv = match iv {
            Some("plain") => IvGen::Plain,
            Some("plain64") => IvGen::Plain64,
            Some(e) if e.starts_with("essiv:") && mode == Mode::Cbc => {
                IvGen::Essiv(HashAlg::from_name(&e[6..]).map_err(|_| unsupported())?)
            }
            _ => return Err(unsupported()),
        };
        Ok(CipherSpec { alg, mode, iv })
    }

    /// Whether `bytes` is a valid key length for this spec (XTS: two keys of 16, 24 or 32).
    pub fn key_size_ok(&self, bytes: usize) -> bool {
        match self.mode {
            Mode::Xts => matches!(bytes, 32 | 48 | 64),
            Mode::Cbc => matches!(bytes, 16 | 24 | 32),
        }
    }

    /// Checks that `bytes` is a valid key length for this spec.
    pub fn check_key_size(&self, bytes: usize) -> Result<()> {
        if self.key_size_ok(bytes) {
            Ok(())
        } else {
            Err(Error::format(format!(
                "key size {} bits is not valid for {self}",
                bytes * 8
            )))
        }
    }
}

impl fmt::Display for CipherSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Xts => "xts",
            Mode::Cbc => "cbc",
        };
        let alg = self.alg.name();
        match self.iv {
            IvGen::Plain => write!(f, "{alg}-{mode}-plain"),
            IvGen::Plain64 => write!(f, "{alg}-{mode}-plain64"),
            IvGen::Essiv(h) => write!(f, "{alg}-{mode}-essiv:{}", h.name()),
        }
    }
}

/// A cipher as a header names it: the text exactly as written (dumps and `status` print it
/// unchanged) and its parsed [`CipherSpec`], parsed once, when luksfuse supports it. A LUKS1
/// header naming an unsupported cipher still parses and dumps; using its cipher fails with
/// the parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherName {
    text: String,
    spec: Option<CipherSpec>,
}

impl CipherName {
    /// Parses `text` (see [`CipherSpec::parse`]), keeping it as written.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let spec = CipherSpec::parse(&text).ok();
        CipherName { text, spec }
    }

    /// The cipher as the header spells it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed spec, or why it is not supported (the error [`CipherSpec::parse`] gives).
    pub fn spec(&self) -> Result<CipherSpec> {
        match self.spec {
            Some(spec) => Ok(spec),
            // Only on failure: parse again for the error, rather than keep an `Error` around.
            None => CipherSpec::parse(&self.text),
        }
    }
}

impl fmt::Display for CipherName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A keyed 16-byte block cipher of any supported algorithm and key size, chosen at run time.
pub(crate) enum AnyBlock {
    A128(Box<Aes128>),
    A192(Box<Aes192>),
    A256(Box<Aes256>),
    Serpent(Box<Serpent>),
    Twofish(Box<Twofish>),
}

/// Calls `$body` with `$c` bound to the concrete cipher inside an [`AnyBlock`].
macro_rules! with_block {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            $crate::crypto::AnyBlock::A128($c) => $body,
            $crate::crypto::AnyBlock::A192($c) => $body,
            $crate::crypto::AnyBlock::A256($c) => $body,
            $crate::crypto::AnyBlock::Serpent($c) => $body,
            $crate::crypto::AnyBlock::Twofish($c) => $body,
        }
    };
}

impl AnyBlock {
    /// `alg` keyed with `key` (16, 24 or 32 bytes).
    pub(crate) fn new(alg: Alg, key: &[u8]) -> Result<Self> {
        let bad = |_| Error::format(format!("invalid {} key length {}", alg.name(), key.len()));
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(bad(cipher::InvalidLength));
        }
        Ok(match (alg, key.len()) {
            (Alg::Aes, 16) => AnyBlock::A128(Box::new(Aes128::new_from_slice(key).map_err(bad)?)),
            (Alg::Aes, 24) => AnyBlock::A192(Box::new(Aes192::new_from_slice(key).map_err(bad)?)),
            (Alg::Aes, _) => AnyBlock::A256(Box::new(Aes256::new_from_slice(key).map_err(bad)?)),
            (Alg::Serpent, _) => {
                AnyBlock::Serpent(Box::new(Serpent::new_from_slice(key).map_err(bad)?))
            }
            (Alg::Twofish, _) => {
                AnyBlock::Twofish(Box::new(Twofish::new_from_slice(key).map_err(bad)?))
            }
        })
    }

    /// Encrypts whole 16-byte blocks in place (`buf.len()` a multiple of 16), several at once.
    pub(crate) fn encrypt_blocks(&self, buf: &mut [u8]) {
        let (blocks, rest) = aes::Block::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        with_block!(self, c => c.encrypt_blocks(blocks))
    }

    pub(crate) fn decrypt_blocks(&self, buf: &mut [u8]) {
        let (blocks, rest) = aes::Block::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        with_block!(self, c => c.decrypt_blocks(blocks))
    }
}

/// The IV block (16 bytes) of IV number `n` for the `plain`/`plain64` generators: `plain`
/// keeps the low 32 bits of the number (as dm-crypt does), `plain64` all 64.
#[inline(always)]
fn plain_iv(iv: IvGen, n: Iv) -> [u8; 16] {
    let mut b = [0u8; 16];
    let le = n.get().to_le_bytes();
    match iv {
        IvGen::Plain => b[..4].copy_from_slice(&le[..4]),
        _ => b[..8].copy_from_slice(&le),
    }
    b
}

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
}

impl XtsImpl {
    /// Whether this CPU can run `self` (for some key size).
    pub fn available(self) -> bool {
        match self {
            XtsImpl::Portable => true,
            #[cfg(target_arch = "x86_64")]
            XtsImpl::Avx512 => xts_avx512::XtsAvx512::supported(),
            #[cfg(not(target_arch = "x86_64"))]
            XtsImpl::Avx512 => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            XtsImpl::Portable => "portable",
            XtsImpl::Avx512 => "avx512",
        }
    }

    /// The implementation [`XTS_IMPL_ENV`] asks for, if any (read and cached on first use).
    fn from_env() -> Option<XtsImpl> {
        static CHOICE: std::sync::OnceLock<Option<XtsImpl>> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var(XTS_IMPL_ENV).ok()?.as_str() {
            "portable" => Some(XtsImpl::Portable),
            "avx512" => Some(XtsImpl::Avx512),
            other => {
                log::warn!("ignoring {XTS_IMPL_ENV}={other:?} (expected portable or avx512)");
                None
            }
        })
    }
}

enum Engine {
    Xts(xts::Xts),
    #[cfg(target_arch = "x86_64")]
    XtsAvx512(xts_avx512::XtsAvx512),
    Cbc(cbc::Cbc),
}

/// A keyed sector cipher. Shareable between threads (`&self` methods, no interior state).
pub struct SectorCipher {
    spec: CipherSpec,
    engine: Engine,
}

impl SectorCipher {
    /// A cipher for `spec` keyed with `key`. For XTS, uses the vector implementation when the
    /// CPU has it and the key size suits it, else the portable one; [`XTS_IMPL_ENV`] overrides.
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<Self> {
        if let Some(imp) = XtsImpl::from_env() {
            let aes_xts = spec.mode == Mode::Xts && spec.alg == Alg::Aes;
            if aes_xts && (imp == XtsImpl::Portable || key.len() != 48) {
                return Self::with_impl(spec, key, imp);
            }
        }
        spec.check_key_size(key.len())?;
        #[cfg(target_arch = "x86_64")]
        if spec.mode == Mode::Xts && spec.alg == Alg::Aes {
            if let Some(v) = xts_avx512::XtsAvx512::new(key) {
                log::debug!("{spec}: using the avx512 XTS implementation");
                return Ok(SectorCipher {
                    spec: *spec,
                    engine: Engine::XtsAvx512(v),
                });
            }
        }
        let engine = match spec.mode {
            Mode::Xts => Engine::Xts(xts::Xts::new(spec.alg, key)?),
            Mode::Cbc => Engine::Cbc(cbc::Cbc::new(spec.alg, key, spec.iv)?),
        };
        Ok(SectorCipher {
            spec: *spec,
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
        if imp == XtsImpl::Avx512 && spec.alg != Alg::Aes {
            return Err(Error::format(format!(
                "the avx512 XTS implementation is for AES, not {}",
                spec.alg.name()
            )));
        }
        let engine = match imp {
            XtsImpl::Portable => Engine::Xts(xts::Xts::new(spec.alg, key)?),
            #[cfg(target_arch = "x86_64")]
            XtsImpl::Avx512 => {
                Engine::XtsAvx512(xts_avx512::XtsAvx512::new(key).ok_or_else(|| {
                    Error::format(format!(
                        "the avx512 XTS implementation cannot run {}-bit keys on this CPU",
                        key.len() * 8
                    ))
                })?)
            }
            #[cfg(not(target_arch = "x86_64"))]
            XtsImpl::Avx512 => {
                return Err(Error::format("the avx512 XTS implementation needs x86-64"))
            }
        };
        Ok(SectorCipher {
            spec: *spec,
            engine,
        })
    }

    /// The XTS implementation in use (`None` for CBC).
    pub fn xts_impl(&self) -> Option<XtsImpl> {
        match self.engine {
            Engine::Xts(_) => Some(XtsImpl::Portable),
            #[cfg(target_arch = "x86_64")]
            Engine::XtsAvx512(_) => Some(XtsImpl::Avx512),
            Engine::Cbc(_) => None,
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
        let ivgen = self.spec.iv;
        // `usize` to `u64` widens (no target has wider pointers).
        let iv_of = |i: usize| plain_iv(ivgen, first.nth(i as u64, step));
        match &self.engine {
            Engine::Xts(x) => x.crypt_sectors(buf, sector_size, iv_of, encrypt),
            #[cfg(target_arch = "x86_64")]
            Engine::XtsAvx512(x) => x.crypt_sectors(buf, sector_size, iv_of, encrypt),
            Engine::Cbc(c) => {
                for (i, sector) in buf.chunks_exact_mut(sector_size).enumerate() {
                    if encrypt {
                        c.encrypt_sector(sector, &iv_of(i));
                    } else {
                        c.decrypt_sector(sector, &iv_of(i));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
