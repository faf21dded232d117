//! The sector ciphers LUKS uses for payloads and keyslot areas: AES in XTS or CBC mode, with
//! dm-crypt's IV generators (`plain`, `plain64`, `essiv:HASH`). Only this module touches the
//! cipher crates. Every sector is encrypted independently; the IV of a sector is a number the
//! caller computes (dm-crypt and QEMU count it in 512-byte units from the segment start).

use crate::error::{Error, Result};
use crate::luks::hash::HashAlg;
use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use std::fmt;

mod cbc;
mod xts;

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
    pub mode: Mode,
    pub iv: IvGen,
}

impl CipherSpec {
    /// Parses `cipher-mode-iv`. Only AES is supported; `cipher_null`, ECB and anything unknown
    /// is refused with a message naming it (never guessed).
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
        if cipher != Some("aes") {
            return Err(unsupported());
        }
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
        Ok(CipherSpec { mode, iv })
    }

    /// Checks that `bytes` is a valid key length for this spec.
    pub fn check_key_size(&self, bytes: usize) -> Result<()> {
        let ok = match self.mode {
            Mode::Xts => matches!(bytes, 32 | 48 | 64),
            Mode::Cbc => matches!(bytes, 16 | 24 | 32),
        };
        if ok {
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
        match self.iv {
            IvGen::Plain => write!(f, "aes-{mode}-plain"),
            IvGen::Plain64 => write!(f, "aes-{mode}-plain64"),
            IvGen::Essiv(h) => write!(f, "aes-{mode}-essiv:{}", h.name()),
        }
    }
}

/// AES of any key size, chosen at run time.
pub(crate) enum AnyAes {
    A128(Box<Aes128>),
    A192(Box<Aes192>),
    A256(Box<Aes256>),
}

/// Calls `$body` with `$c` bound to the concrete AES type inside an [`AnyAes`].
#[allow(unused_macros)]
macro_rules! with_aes {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            $crate::crypto::AnyAes::A128($c) => $body,
            $crate::crypto::AnyAes::A192($c) => $body,
            $crate::crypto::AnyAes::A256($c) => $body,
        }
    };
}

impl AnyAes {
    pub(crate) fn new(key: &[u8]) -> Result<Self> {
        let bad = |_| Error::format("invalid AES key length");
        Ok(match key.len() {
            16 => AnyAes::A128(Box::new(Aes128::new_from_slice(key).map_err(bad)?)),
            24 => AnyAes::A192(Box::new(Aes192::new_from_slice(key).map_err(bad)?)),
            32 => AnyAes::A256(Box::new(Aes256::new_from_slice(key).map_err(bad)?)),
            n => return Err(Error::format(format!("invalid AES key length {n}"))),
        })
    }

    /// Encrypts whole 16-byte blocks in place (`buf.len()` a multiple of 16), several at once.
    pub(crate) fn encrypt_blocks(&self, buf: &mut [u8]) {
        let (blocks, rest) = aes::Block::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        with_aes!(self, c => c.encrypt_blocks(blocks))
    }

    pub(crate) fn decrypt_blocks(&self, buf: &mut [u8]) {
        let (blocks, rest) = aes::Block::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        with_aes!(self, c => c.decrypt_blocks(blocks))
    }
}

/// The IV block (16 bytes) of `sector` for the `plain`/`plain64` generators.
fn plain_iv(iv: IvGen, sector: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    match iv {
        IvGen::Plain => b[..4].copy_from_slice(&(sector as u32).to_le_bytes()),
        _ => b[..8].copy_from_slice(&sector.to_le_bytes()),
    }
    b
}

enum Engine {
    Xts(xts::Xts),
    Cbc(cbc::Cbc),
}

/// A keyed sector cipher. Shareable between threads (`&self` methods, no interior state).
pub struct SectorCipher {
    spec: CipherSpec,
    engine: Engine,
}

impl SectorCipher {
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<Self> {
        spec.check_key_size(key.len())?;
        let engine = match spec.mode {
            Mode::Xts => Engine::Xts(xts::Xts::new(key)?),
            Mode::Cbc => Engine::Cbc(cbc::Cbc::new(key, spec.iv)?),
        };
        Ok(SectorCipher {
            spec: *spec,
            engine,
        })
    }

    pub fn spec(&self) -> &CipherSpec {
        &self.spec
    }

    /// Encrypts whole sectors in place. `buf.len()` must be a multiple of `sector_size` (itself a
    /// multiple of 16); sector `i` of `buf` uses IV number `first_iv + i * iv_step`.
    pub fn encrypt_sectors(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.each_sector(buf, sector_size, first_iv, iv_step, true)
    }

    /// Decrypts whole sectors in place; the inverse of [`Self::encrypt_sectors`].
    pub fn decrypt_sectors(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.each_sector(buf, sector_size, first_iv, iv_step, false)
    }

    fn each_sector(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        iv_step: u64,
        encrypt: bool,
    ) {
        assert!(sector_size >= 16 && sector_size % 16 == 0 && buf.len() % sector_size == 0);
        let ivgen = self.spec.iv;
        let iv_of = |i: usize| {
            plain_iv(
                ivgen,
                first_iv.wrapping_add((i as u64).wrapping_mul(iv_step)),
            )
        };
        match &self.engine {
            Engine::Xts(x) => x.crypt_sectors(buf, sector_size, iv_of, encrypt),
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
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_luks_ciphers_and_refuses_the_rest() {
        for s in [
            "aes-xts-plain64",
            "aes-xts-plain",
            "aes-cbc-essiv:sha256",
            "aes-cbc-plain64",
            "aes-cbc-plain",
        ] {
            assert_eq!(CipherSpec::parse(s).unwrap().to_string(), s);
        }
        for s in [
            "cipher_null-ecb",
            "aes-ecb",
            "serpent-xts-plain64",
            "aes-xts-essiv:sha256",
            "aes-xts-random",
            "aes",
            "",
        ] {
            assert!(CipherSpec::parse(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn key_sizes() {
        let x = CipherSpec::parse("aes-xts-plain64").unwrap();
        assert!(x.check_key_size(64).is_ok() && x.check_key_size(32).is_ok());
        assert!(x.check_key_size(16).is_err());
        let c = CipherSpec::parse("aes-cbc-essiv:sha256").unwrap();
        assert!(c.check_key_size(32).is_ok() && c.check_key_size(64).is_err());
    }

    #[test]
    fn xts_matches_the_xts_mode_crate_for_many_sectors() {
        use xts_mode::{get_tweak_default, Xts128};
        for (keylen, sector_size) in [(64usize, 512usize), (32, 4096), (64, 4096), (32, 512)] {
            let key: Vec<u8> = (0..keylen).map(|i| (i * 13 + 1) as u8).collect();
            let plain: Vec<u8> = (0..sector_size * 5).map(|i| (i * 31 % 251) as u8).collect();
            let spec = CipherSpec::parse("aes-xts-plain64").unwrap();
            let ours = SectorCipher::new(&spec, &key).unwrap();
            let mut a = plain.clone();
            ours.encrypt_sectors(&mut a, sector_size, 1 << 33, 8);
            let mut b = plain.clone();
            let half = keylen / 2;
            let first = 1u128 << 33;
            if keylen == 64 {
                let x = Xts128::new(
                    Aes256::new_from_slice(&key[..half]).unwrap(),
                    Aes256::new_from_slice(&key[half..]).unwrap(),
                );
                for (i, s) in b.chunks_mut(sector_size).enumerate() {
                    x.encrypt_sector(s, get_tweak_default(first + 8 * i as u128));
                }
            } else {
                let x = Xts128::new(
                    Aes128::new_from_slice(&key[..half]).unwrap(),
                    Aes128::new_from_slice(&key[half..]).unwrap(),
                );
                for (i, s) in b.chunks_mut(sector_size).enumerate() {
                    x.encrypt_sector(s, get_tweak_default(first + 8 * i as u128));
                }
            }
            assert_eq!(a, b, "keylen {keylen} sector {sector_size}");
            ours.decrypt_sectors(&mut a, sector_size, 1 << 33, 8);
            assert_eq!(a, plain);
        }
    }

    #[test]
    fn xts_plain_truncates_the_sector_number_to_32_bits() {
        let key = [7u8; 64];
        let p = SectorCipher::new(&CipherSpec::parse("aes-xts-plain").unwrap(), &key).unwrap();
        let p64 = SectorCipher::new(&CipherSpec::parse("aes-xts-plain64").unwrap(), &key).unwrap();
        let mut a = vec![0u8; 512];
        let mut b = vec![0u8; 512];
        p.encrypt_sectors(&mut a, 512, (1 << 32) + 5, 1);
        p64.encrypt_sectors(&mut b, 512, 5, 1);
        assert_eq!(a, b);
    }

    #[test]
    fn cbc_round_trips_and_chains() {
        for spec in ["aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-cbc-plain"] {
            let spec = CipherSpec::parse(spec).unwrap();
            let c = SectorCipher::new(&spec, &[3u8; 32]).unwrap();
            let plain = vec![0u8; 1024];
            let mut buf = plain.clone();
            c.encrypt_sectors(&mut buf, 512, 9, 1);
            // Equal plaintext blocks give different ciphertext blocks (chaining works).
            assert_ne!(buf[0..16], buf[16..32]);
            // Two sectors with equal plaintext differ (the IV is per sector).
            assert_ne!(buf[..512], buf[512..]);
            c.decrypt_sectors(&mut buf, 512, 9, 1);
            assert_eq!(buf, plain);
        }
    }

    #[test]
    fn cbc_plain64_known_answer() {
        // AES-128-CBC, key 000102..0f, IV = LE64(0): NIST SP 800-38A F.2.1 uses IV 000102..0f,
        // so instead check against single-block AES-ECB (FIPS-197 C.1) with a zero IV.
        let key: Vec<u8> = (0..16).collect();
        let c = SectorCipher::new(&CipherSpec::parse("aes-cbc-plain64").unwrap(), &key).unwrap();
        let mut buf: Vec<u8> = (0..16).map(|i| (i * 0x11) as u8).collect();
        buf.resize(512, 0);
        c.encrypt_sectors(&mut buf, 512, 0, 1);
        let hex: String = buf[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "69c4e0d86a7b0430d8cdb78070b4c55a");
    }
}
