//! Cipher specifications as dm-crypt, cryptsetup and QEMU write them: `cipher-mode-iv`
//! (`aes-xts-plain64`, `cast5-cbc-essiv:sha256`, `aes-lrw-benbi`), the kernel notation
//! `capi:mode(cipher)-iv` (`capi:xts(aes)-plain64`), and the key sizes each allows.

use super::hash::HashAlg;
use crate::error::{Error, Result};
use std::fmt;

/// The block cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Aes,
    Serpent,
    Twofish,
    /// CAST-128 (RFC 2144), 64-bit blocks: CBC and CTR only.
    Cast5,
    /// CAST-256 (RFC 2612).
    Cast6,
    Sm4,
    Camellia,
}

impl Alg {
    const ALL: [Alg; 7] = [
        Alg::Aes,
        Alg::Serpent,
        Alg::Twofish,
        Alg::Cast5,
        Alg::Cast6,
        Alg::Sm4,
        Alg::Camellia,
    ];

    /// The name dm-crypt, cryptsetup and QEMU use.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Aes => "aes",
            Alg::Serpent => "serpent",
            Alg::Twofish => "twofish",
            Alg::Cast5 => "cast5",
            Alg::Cast6 => "cast6",
            Alg::Sm4 => "sm4",
            Alg::Camellia => "camellia",
        }
    }

    fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Block cipher mode, as the kernel's templates (`xts()`, `cbc()`, `ctr()`, `lrw()`) and
/// QEMU define them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// IEEE 1619 XTS; key = data key || tweak key. 16-byte blocks only.
    Xts,
    Cbc,
    /// The IV block is the first counter, incremented as one big-endian number per block.
    Ctr,
    /// LRW (IEEE P1619 draft); key = cipher key || 16-byte tweak key. 16-byte blocks only.
    Lrw,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Xts => "xts",
            Mode::Cbc => "cbc",
            Mode::Ctr => "ctr",
            Mode::Lrw => "lrw",
        }
    }

    fn from_name(name: &str) -> Option<Mode> {
        [Mode::Xts, Mode::Cbc, Mode::Ctr, Mode::Lrw]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// IV generator, as dm-crypt names them. The IV block is as long as the cipher's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvGen {
    /// 32-bit little-endian sector number, then zeros.
    Plain,
    /// 64-bit little-endian sector number, then zeros.
    Plain64,
    /// Zeros, then the 64-bit big-endian sector number (the block's last 8 bytes).
    Plain64Be,
    /// Zeros, then the big-endian 64-bit count of cipher blocks before the sector, plus one
    /// (`(sector << (9 - log2(block size))) + 1`).
    Benbi,
    /// All zeros.
    Null,
    /// The plain64 IV encrypted with the same cipher keyed with HASH(whole volume key).
    Essiv(EssivHash),
}

/// The hash of an ESSIV generator: a [`HashAlg`], or one of the kernel's truncated Whirlpool
/// digests (`wp256`, `wp384`: the first 32 or 48 bytes of Whirlpool, crypto/wp512.c), which
/// cryptsetup's LUKS1 test images use (`aes-xts-essiv:wp256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EssivHash {
    pub hash: HashAlg,
    /// Digest bytes used (the ESSIV key length).
    pub len: usize,
    /// The kernel name when truncated (`wp256`), else `None` (the hash's own name).
    truncated: Option<&'static str>,
}

impl EssivHash {
    fn from_name(name: &str) -> Option<EssivHash> {
        if let Ok(hash) = HashAlg::from_name(name) {
            return Some(EssivHash {
                hash,
                len: hash.len(),
                truncated: None,
            });
        }
        let (kernel, len) = match name {
            "wp256" => ("wp256", 32),
            "wp384" => ("wp384", 48),
            "wp512" => ("wp512", 64),
            _ => return None,
        };
        let hash = HashAlg::from_name("whirlpool").ok()?;
        Some(EssivHash {
            hash,
            len,
            truncated: Some(kernel),
        })
    }

    /// The name as dm-crypt spells it.
    pub fn name(&self) -> &'static str {
        self.truncated.unwrap_or(self.hash.name())
    }
}

impl IvGen {
    fn parse(text: &str) -> Option<IvGen> {
        let (name, opts) = match text.split_once(':') {
            Some((n, o)) => (n, Some(o)),
            None => (text, None),
        };
        if name == "essiv" {
            return EssivHash::from_name(opts?).map(IvGen::Essiv);
        }
        // dm-crypt ignores the options of the other generators (QEMU writes `plain64:sha256`
        // when given a hash for them); an empty option is still a malformed name.
        if opts.is_some_and(|o| o.is_empty()) {
            return None;
        }
        Some(match name {
            "plain" => IvGen::Plain,
            "plain64" => IvGen::Plain64,
            "plain64be" => IvGen::Plain64Be,
            "benbi" => IvGen::Benbi,
            "null" => IvGen::Null,
            _ => return None,
        })
    }
}

impl fmt::Display for IvGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IvGen::Plain => "plain",
            IvGen::Plain64 => "plain64",
            IvGen::Plain64Be => "plain64be",
            IvGen::Benbi => "benbi",
            IvGen::Null => "null",
            IvGen::Essiv(h) => return write!(f, "essiv:{}", h.name()),
        })
    }
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
    /// Parses `cipher-mode-iv` or `capi:mode(cipher)-iv` (case-insensitive). `cipher_null`
    /// and ECB are refused with the reason ([`Self::refusal`]); anything else unknown is
    /// refused as unsupported, never guessed.
    pub fn parse(spec: &str) -> Result<Self> {
        if let Some(e) = Self::refusal(spec) {
            return Err(e);
        }
        let unsupported = |why: &str| Error::format(format!("unsupported cipher '{spec}'{why}"));
        let (alg, mode, iv) = split(&spec.to_ascii_lowercase()).ok_or_else(|| unsupported(""))?;
        let alg = Alg::from_name(&alg).ok_or_else(|| unsupported(""))?;
        let mode = Mode::from_name(&mode).ok_or_else(|| unsupported(""))?;
        let iv = IvGen::parse(&iv).ok_or_else(|| unsupported(""))?;
        if matches!(mode, Mode::Xts | Mode::Lrw) && alg.block_size() != 16 {
            return Err(unsupported(&format!(
                " ({} needs a 16-byte block cipher; {} has 8-byte blocks)",
                mode.name(),
                alg.name()
            )));
        }
        Ok(CipherSpec { alg, mode, iv })
    }

    /// The refusal of a cipher that encrypts nothing (`cipher_null`) or ECB (no IV: equal
    /// blocks give equal ciphertext), whatever the rest of `spec` says; `None` otherwise.
    pub fn refusal(spec: &str) -> Option<Error> {
        let lower = spec.to_ascii_lowercase();
        let why = if lower.contains("cipher_null") {
            "it encrypts nothing"
        } else if lower.contains("ecb") && !is_capi_ecb_inside(&lower) {
            "ECB leaks patterns of the plaintext"
        } else {
            return None;
        };
        Some(Error::format(format!(
            "cipher '{spec}' is refused: {why}, and such headers are the vehicle of the 2025 \
             malleable-header attacks on LUKS"
        )))
    }

    /// Whether `bytes` is a valid key length for this spec: XTS two cipher keys, LRW a
    /// cipher key and a 16-byte tweak key, CBC and CTR one cipher key ([`Alg::key_size_ok`]).
    pub fn key_size_ok(&self, bytes: usize) -> bool {
        match self.mode {
            Mode::Xts => bytes.is_multiple_of(2) && self.alg.key_size_ok(bytes / 2),
            Mode::Lrw => bytes > 16 && self.alg.key_size_ok(bytes - 16),
            Mode::Cbc | Mode::Ctr => self.alg.key_size_ok(bytes),
        }
    }

    /// The key length `format` uses when none is asked for: the largest this spec takes.
    pub fn default_key_size(&self) -> usize {
        let k = self.alg.max_key_size();
        match self.mode {
            Mode::Xts => 2 * k,
            Mode::Lrw => k + 16,
            Mode::Cbc | Mode::Ctr => k,
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

/// `capi:xts(ecb(aes))` names XTS over the raw cipher (the kernel's full spelling), not ECB.
fn is_capi_ecb_inside(lower: &str) -> bool {
    lower
        .strip_prefix("capi:")
        .and_then(|r| r.split_once('('))
        .is_some_and(|(mode, inner)| mode != "ecb" && inner.starts_with("ecb("))
}

/// Splits a lower-case spec into (cipher, mode, iv).
fn split(lower: &str) -> Option<(String, String, String)> {
    if let Some(capi) = lower.strip_prefix("capi:") {
        // mode(cipher)-iv, or mode(ecb(cipher))-iv.
        let (mode, rest) = capi.split_once('(')?;
        let close = rest.rfind(')')?;
        let (inner, iv) = (&rest[..close], rest[close + 1..].strip_prefix('-')?);
        let inner = match inner.strip_prefix("ecb(") {
            Some(i) => i.strip_suffix(')')?,
            None => inner,
        };
        if inner.contains(['(', ')']) {
            return None;
        }
        return Some((inner.into(), mode.into(), iv.into()));
    }
    let mut parts = lower.splitn(3, '-');
    let (c, m, i) = (parts.next()?, parts.next()?, parts.next()?);
    Some((c.into(), m.into(), i.into()))
}

impl fmt::Display for CipherSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.alg.name(), self.mode.name(), self.iv)
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
