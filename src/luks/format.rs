//! Making new detached headers, as `cryptsetup luksFormat --header` does, with cryptsetup 2.6's
//! defaults: LUKS2, aes-xts-plain64, 512-bit key, sha256, argon2id for 2 s (at most 1 GiB,
//! min(4, CPUs) threads), 512-byte sectors, a 16 MiB header file with 16 KiB of metadata; for
//! LUKS1 the payload at offset 0 and key material 4096-byte aligned.
//!
//! Everything is checked by [`FormatOptions::check`] before a key is derived or a file touched.

use super::kdf::{KdfChoice, KdfKind, MIN_PBKDF2_ITERATIONS};
use super::{luks1, luks2, Header};
use crate::crypto::hash::HashAlg;
use crate::crypto::CipherSpec;
use crate::error::{Error, Result};
use crate::secret::{Secret, VolumeKey};
use crate::units::{Bytes, SectorSize};

/// KDF options as given on the command line (`None`: cryptsetup's default).
#[derive(Debug, Clone, Default)]
pub struct KdfOptions {
    /// `--pbkdf`
    pub pbkdf: Option<String>,
    /// `-h/--hash` (PBKDF2's hash; for LUKS1 also the header's hash)
    pub hash: Option<String>,
    /// `-i/--iter-time` in ms
    pub iter_time: Option<u32>,
    /// `--pbkdf-memory` in KiB
    pub memory: Option<u32>,
    /// `--pbkdf-parallel`
    pub parallel: Option<u32>,
    /// `--pbkdf-force-iterations`
    pub force_iterations: Option<u32>,
}

impl KdfOptions {
    /// The KDF choice for a keyslot of a LUKS `version` header. LUKS1 keyslots are PBKDF2 of
    /// the header's hash (`luks1_hash`) only.
    pub fn choice(&self, version: u16, luks1_hash: Option<HashAlg>) -> Result<KdfChoice> {
        let mut c = KdfChoice::cryptsetup_default();
        if let Some(h) = &self.hash {
            c.hash = HashAlg::from_name(h)
                .map_err(|_| Error::usage(format!("unsupported hash '{h}'")))?;
        }
        if let Some(k) = &self.pbkdf {
            c.kind = KdfKind::from_name(k)?;
        }
        if version == 1 {
            if matches!(c.kind, KdfKind::Argon2(_)) && self.pbkdf.is_some() {
                return Err(Error::usage("LUKS1 supports only the pbkdf2 PBKDF"));
            }
            c.kind = KdfKind::Pbkdf2;
            if let Some(h) = luks1_hash {
                c.hash = h;
            }
        }
        if let Some(t) = self.iter_time {
            c.iter_time_ms = t;
        }
        if let Some(m) = self.memory {
            c.memory_kib = m;
        }
        if let Some(p) = self.parallel {
            c.parallel = p;
        }
        c.forced_iterations = self.force_iterations;
        c.check()?;
        Ok(c)
    }
}

/// What `luksfuse format` was asked for.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// 1 or 2.
    pub version: u16,
    pub cipher: String,
    /// `-s/--key-size` in bits; default 512 for XTS, 256 otherwise (as cryptsetup).
    pub key_bits: Option<u32>,
    pub kdf: KdfOptions,
    pub sector_size: u32,
    /// `--offset`: payload offset in 512-byte sectors.
    pub offset_sectors: u64,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            version: 2,
            cipher: "aes-xts-plain64".into(),
            key_bits: None,
            kdf: KdfOptions::default(),
            sector_size: 512,
            offset_sectors: 0,
            uuid: None,
            label: None,
        }
    }
}

/// Checked format parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    pub version: u16,
    pub cipher: String,
    pub key_bytes: usize,
    pub hash: HashAlg,
    pub kdf: KdfChoice,
    pub sector_size: SectorSize,
    pub offset: u64,
    pub uuid: String,
    pub label: String,
}

impl FormatOptions {
    /// Checks every parameter (exit 1 when wrong), before any work.
    pub fn check(&self) -> Result<Plan> {
        let version = match self.version {
            1 | 2 => self.version,
            v => return Err(Error::usage(format!("unknown LUKS version {v}"))),
        };
        if let Some(refused) = CipherSpec::refusal(&self.cipher) {
            return Err(Error::usage(refused.message()));
        }
        let spec = CipherSpec::parse(&self.cipher)
            .map_err(|_| Error::usage(format!("cipher '{}' is not supported", self.cipher)))?;
        let cipher = spec.to_string();
        let default_bits = u32::try_from(spec.default_key_size() * 8).expect("at most 512");
        let bits = self.key_bits.unwrap_or(default_bits);
        if !bits.is_multiple_of(8) {
            return Err(Error::usage(format!(
                "key size {bits} is not a multiple of 8 bits"
            )));
        }
        let key_bytes = bits as usize / 8;
        // A wrong key size is the user's mistake here, so a usage error (the same words as
        // crypto's refusal of one read from a header).
        if !spec.key_size_ok(key_bytes) {
            return Err(Error::usage(format!(
                "key size {bits} bits is not valid for {spec}"
            )));
        }
        let hash_name = self.kdf.hash.as_deref().unwrap_or("sha256");
        let hash = HashAlg::from_name(hash_name)
            .map_err(|_| Error::usage(format!("unsupported hash '{hash_name}'")))?;
        if version == 1 && !hash.luks1_format_ok() {
            // cryptsetup's words: its LUKS1 digest is 20 bytes of PBKDF2 output.
            return Err(Error::usage(format!(
                "Requested LUKS hash {hash_name} is not supported (LUKS1 needs 20 bytes or more)"
            )));
        }
        let kdf = self.kdf.choice(version, Some(hash))?;
        let ss = SectorSize::try_from(self.sector_size).map_err(|e| Error::usage(e.to_string()))?;
        if version == 1 && ss != SectorSize::MIN {
            return Err(Error::usage("LUKS1 supports only 512-byte sectors"));
        }
        let offset = self
            .offset_sectors
            .checked_mul(512)
            .filter(|o| Bytes(*o).is_multiple_of(ss))
            .ok_or_else(|| {
                Error::usage(format!(
                    "offset of {} sectors is not a multiple of the sector size {ss}",
                    self.offset_sectors
                ))
            })?;
        if version == 1 && self.offset_sectors > u64::from(u32::MAX) {
            return Err(Error::usage("offset too large for LUKS1"));
        }
        let uuid = match &self.uuid {
            Some(u) if super::is_uuid(u) => u.to_ascii_lowercase(),
            Some(u) => return Err(Error::usage(format!("wrong UUID format '{u}'"))),
            None => super::new_uuid()?,
        };
        let label = self.label.clone().unwrap_or_default();
        if version == 1 && !label.is_empty() {
            return Err(Error::usage("labels are supported by LUKS2 only"));
        }
        if label.len() > 47 || label.contains('\0') {
            return Err(Error::usage("label is longer than 47 bytes"));
        }
        Ok(Plan {
            version,
            cipher,
            key_bytes,
            hash,
            kdf,
            sector_size: ss,
            offset,
            uuid,
            label,
        })
    }
}

/// Builds a new header file image with `passphrase` in keyslot 0. The volume key is
/// `volume_key` (recovery, `--volume-key-file`) or random. Returns the image and the key.
pub fn build(
    plan: &Plan,
    volume_key: Option<VolumeKey>,
    passphrase: &[u8],
) -> Result<(Vec<u8>, VolumeKey)> {
    let vk = match volume_key {
        Some(k) if k.len() != plan.key_bytes => {
            return Err(Error::usage(format!(
                "volume key of {} bits, but the key size is {} bits",
                k.len() * 8,
                plan.key_bytes * 8
            )))
        }
        Some(k) => k,
        None => VolumeKey(Secret::random(plan.key_bytes)?),
    };
    let digest_iterations = if plan.kdf.forced_iterations.is_some() {
        MIN_PBKDF2_ITERATIONS
    } else {
        super::kdf::pbkdf2_iterations(plan.hash, super::kdf::DIGEST_ITERATION_MS, plan.key_bytes)
    };
    let kdf = plan.kdf.make(plan.key_bytes)?;
    let mut image = match plan.version {
        1 => luks1::new_image(
            &plan.cipher,
            plan.hash,
            vk.as_bytes(),
            u32::try_from(plan.offset / 512)
                .map_err(|_| Error::usage("offset too large for LUKS1"))?,
            &plan.uuid,
            digest_iterations,
        )?,
        _ => luks2::new_image(
            luks2_file_size(plan.offset),
            &luks2::Identity {
                uuid: &plan.uuid,
                label: &plan.label,
                subsystem: "",
            },
            &plan.cipher,
            plan.sector_size.get(),
            plan.offset,
            vk.as_bytes(),
            plan.hash,
            digest_iterations,
        )?,
    };
    let header = Header::parse(&image).map_err(|e| e.context("new header"))?;
    header.seal_keyslot(&mut image, 0, vk.as_bytes(), passphrase, &kdf)?;
    // The result must parse as what we meant to write.
    let check = Header::parse(&image).map_err(|e| e.context("new header"))?;
    if !check.slot_active(0) || check.segment().key_size != plan.key_bytes {
        return Err(Error::format("new header does not read back as written"));
    }
    Ok((image, vk))
}

/// The size of a new LUKS2 header file for data at byte `offset` of the payload: 16 MiB, or,
/// as cryptsetup makes it, no more than the space before the data (the keyslots area must end
/// before a data segment that does not start at 0; cryptsetup refuses the header otherwise).
fn luks2_file_size(offset: u64) -> u64 {
    let copies = 2 * luks2::NEW_HDR_SIZE;
    match offset {
        0 => luks2::NEW_FILE_SIZE,
        off => (copies + off.saturating_sub(copies) / 4096 * 4096).min(luks2::NEW_FILE_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::fast_options as fast;

    #[test]
    fn new_headers_unlock_with_their_passphrase_only() {
        for version in [1, 2] {
            let plan = fast(version).check().unwrap();
            let (image, vk) = build(&plan, None, b"pw").unwrap();
            let h = Header::parse(&image).unwrap();
            assert_eq!(h.version(), version);
            let u = h.unlock(&image, b"pw", None).unwrap();
            assert_eq!(u.key.as_bytes(), vk.as_bytes());
            assert_eq!(h.unlock(&image, b"other", None).unwrap_err().exit_code(), 2);
        }
    }

    #[test]
    fn wrong_parameters_are_usage_errors() {
        let bad = [
            FormatOptions {
                cipher: "blowfish-xts-plain64".into(),
                ..fast(2)
            },
            FormatOptions {
                key_bits: Some(128),
                ..fast(2)
            },
            FormatOptions {
                sector_size: 1024 + 512,
                ..fast(2)
            },
            FormatOptions {
                sector_size: 8192,
                ..fast(2)
            },
            FormatOptions {
                sector_size: 4096,
                ..fast(1)
            },
            FormatOptions {
                uuid: Some("nope".into()),
                ..fast(2)
            },
        ];
        for o in bad {
            assert_eq!(o.check().unwrap_err().exit_code(), 1, "{o:?}");
        }
        // ECB and cipher_null: a usage error that says why.
        let e = FormatOptions {
            cipher: "aes-ecb".into(),
            ..fast(2)
        }
        .check()
        .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.message().starts_with("cipher 'aes-ecb' is refused: ECB"),
            "{e}"
        );
    }
}
