//! Hash functions by their cryptsetup names ("sha256", "ripemd160", ...), chosen at run time
//! because the header names them. Used by the AF splitter, PBKDF2 and ESSIV.

use crate::error::{Error, Result};
use digest::Digest;

/// Fuzzing only (`--cfg fuzzing`, see `fuzz/README.md`): the PBKDF2 iteration count is capped
/// here, after validation, because every PBKDF2 run goes through [`HashAlg::pbkdf2`]. (It
/// used to live in `luks::kdf::fuzz_caps`; it sits here so that `crypto` needs nothing of
/// `luks`.)
#[cfg(fuzzing)]
pub(crate) const FUZZ_PBKDF2_ITERATIONS: u32 = 16;

/// A hash algorithm that a LUKS header may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Ripemd160,
}

impl HashAlg {
    /// Every hash luksfuse implements, in the order `--help` lists them.
    pub const ALL: [HashAlg; 6] = [
        HashAlg::Sha1,
        HashAlg::Sha224,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
        HashAlg::Ripemd160,
    ];

    /// Parses a cryptsetup/kernel hash name (case-insensitive, as cryptsetup accepts).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "sha1" => HashAlg::Sha1,
            "sha224" => HashAlg::Sha224,
            "sha256" => HashAlg::Sha256,
            "sha384" => HashAlg::Sha384,
            "sha512" => HashAlg::Sha512,
            "ripemd160" => HashAlg::Ripemd160,
            _ => return Err(Error::format(format!("unsupported hash '{name}'"))),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha224 => "sha224",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Ripemd160 => "ripemd160",
        }
    }

    /// Digest length in bytes. (Never empty, hence no `is_empty`.)
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            HashAlg::Sha1 | HashAlg::Ripemd160 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Hashes the concatenation of `parts` into `out` (`out.len()` must be at most [`Self::len`]).
    pub fn hash_into(self, parts: &[&[u8]], out: &mut [u8]) {
        fn run<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            let r = d.finalize();
            out.copy_from_slice(&r[..out.len()]);
        }
        match self {
            HashAlg::Sha1 => run::<sha1::Sha1>(parts, out),
            HashAlg::Sha224 => run::<sha2::Sha224>(parts, out),
            HashAlg::Sha256 => run::<sha2::Sha256>(parts, out),
            HashAlg::Sha384 => run::<sha2::Sha384>(parts, out),
            HashAlg::Sha512 => run::<sha2::Sha512>(parts, out),
            HashAlg::Ripemd160 => run::<ripemd::Ripemd160>(parts, out),
        }
    }

    /// PBKDF2-HMAC with this hash, filling `out`.
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        use pbkdf2::pbkdf2_hmac;
        #[cfg(fuzzing)]
        let iterations = iterations.min(FUZZ_PBKDF2_ITERATIONS);
        match self {
            HashAlg::Sha1 => pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            HashAlg::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, iterations, out),
            HashAlg::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
            HashAlg::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, out),
            HashAlg::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
            HashAlg::Ripemd160 => pbkdf2_hmac::<ripemd::Ripemd160>(password, salt, iterations, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for n in ["sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160"] {
            assert_eq!(HashAlg::from_name(n).unwrap().name(), n);
        }
        assert!(HashAlg::from_name("md5").is_err());
    }

    #[test]
    fn pbkdf2_sha256_rfc7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64)
        let mut out = [0u8; 64];
        HashAlg::Sha256.pbkdf2(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
    }

    #[test]
    fn hash_of_parts_equals_hash_of_concatenation() {
        let mut a = [0u8; 20];
        let mut b = [0u8; 20];
        HashAlg::Ripemd160.hash_into(&[b"ab", b"c"], &mut a);
        HashAlg::Ripemd160.hash_into(&[b"abc"], &mut b);
        assert_eq!(a, b);
        assert_eq!(hex(&a), "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc");
    }
}
