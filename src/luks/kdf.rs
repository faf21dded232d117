//! Key derivation: PBKDF2 (LUKS1 and LUKS2) and Argon2i/Argon2id (LUKS2), with cost limits
//! checked before anything is allocated or computed.

use super::hash::HashAlg;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Upper bounds on what a header may ask of us. A hostile header must not make us allocate or
/// compute without limit; honest headers made by cryptsetup stay far below these.
pub mod limits {
    /// PBKDF2 iterations. cryptsetup's own calibration for 2 s on a fast CPU is a few million.
    pub const PBKDF2_MAX_ITERATIONS: u32 = 1 << 30;
    /// Argon2 memory in KiB: 4 GiB, cryptsetup's maximum (`--pbkdf-memory`).
    pub const ARGON2_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Argon2 lanes: cryptsetup uses at most 4 threads; we accept up to 16 from a header.
    pub const ARGON2_MAX_LANES: u32 = 16;
    /// Argon2 passes (time cost).
    pub const ARGON2_MAX_TIME: u32 = 1 << 16;
    /// Bound on total Argon2 work, in KiB blocks processed (time × memory): 2^34 KiB·passes.
    pub const ARGON2_MAX_WORK: u64 = 1 << 34;
    /// Salt sizes we accept (bytes).
    pub const MAX_SALT: usize = 1024;
}

/// Fuzzing only: cargo-fuzz compiles with `--cfg fuzzing`, and then these caps are applied
/// after validation, right before derivation, so that a fuzz input reaching a KDF costs
/// microseconds rather than seconds (validation still sees the header's real costs). Normal
/// builds contain none of this; `fuzz/README.md` has the details.
#[cfg(fuzzing)]
pub(crate) mod fuzz_caps {
    /// PBKDF2 iterations, applied in `HashAlg::pbkdf2`, which every PBKDF2 run goes through.
    pub const PBKDF2_ITERATIONS: u32 = 16;
    /// Argon2 passes.
    pub const ARGON2_TIME: u32 = 1;
    /// Argon2 memory in KiB, or 8 KiB per lane if that is more (Argon2's minimum).
    pub const ARGON2_MEMORY_KIB: u32 = 64;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    Argon2i,
    Argon2id,
}

/// A key derivation function with its parameters, as a header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    Pbkdf2 {
        hash: HashAlg,
        iterations: u32,
        salt: Vec<u8>,
    },
    Argon2 {
        variant: Argon2Variant,
        /// Passes over memory (LUKS2 `time`).
        time: u32,
        /// Memory in KiB (LUKS2 `memory`).
        memory_kib: u32,
        /// Lanes (LUKS2 `cpus`).
        lanes: u32,
        salt: Vec<u8>,
    },
}

impl Kdf {
    /// The name as cryptsetup prints it: "pbkdf2", "argon2i", "argon2id".
    pub fn name(&self) -> &'static str {
        match self {
            Kdf::Pbkdf2 { .. } => "pbkdf2",
            Kdf::Argon2 {
                variant: Argon2Variant::Argon2i,
                ..
            } => "argon2i",
            Kdf::Argon2 {
                variant: Argon2Variant::Argon2id,
                ..
            } => "argon2id",
        }
    }

    /// Checks the parameters against [`limits`] and the algorithms' own rules.
    pub fn validate(&self) -> Result<()> {
        match self {
            Kdf::Pbkdf2 {
                iterations, salt, ..
            } => {
                if *iterations == 0 || *iterations > limits::PBKDF2_MAX_ITERATIONS {
                    return Err(Error::format(format!(
                        "PBKDF2 iteration count {iterations} out of range 1..={}",
                        limits::PBKDF2_MAX_ITERATIONS
                    )));
                }
                if salt.len() > limits::MAX_SALT {
                    return Err(Error::format("PBKDF2 salt too long"));
                }
            }
            Kdf::Argon2 {
                time,
                memory_kib,
                lanes,
                salt,
                ..
            } => {
                if *lanes == 0 || *lanes > limits::ARGON2_MAX_LANES {
                    return Err(Error::format(format!(
                        "Argon2 lanes {lanes} out of range 1..={}",
                        limits::ARGON2_MAX_LANES
                    )));
                }
                if *time == 0 || *time > limits::ARGON2_MAX_TIME {
                    return Err(Error::format(format!(
                        "Argon2 time cost {time} out of range 1..={}",
                        limits::ARGON2_MAX_TIME
                    )));
                }
                if *memory_kib > limits::ARGON2_MAX_MEMORY_KIB {
                    return Err(Error::no_mem(format!(
                        "Argon2 memory cost {memory_kib} KiB over the limit of {} KiB",
                        limits::ARGON2_MAX_MEMORY_KIB
                    )));
                }
                if u64::from(*memory_kib) < 8 * u64::from(*lanes) {
                    return Err(Error::format(format!(
                        "Argon2 memory cost {memory_kib} KiB below 8 KiB per lane"
                    )));
                }
                if u64::from(*time) * u64::from(*memory_kib) > limits::ARGON2_MAX_WORK {
                    return Err(Error::format(format!(
                        "Argon2 cost (time {time} x memory {memory_kib} KiB) over the limit"
                    )));
                }
                if salt.len() < argon2::MIN_SALT_LEN || salt.len() > limits::MAX_SALT {
                    return Err(Error::format(format!(
                        "Argon2 salt of {} bytes out of range",
                        salt.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Derives `out_len` bytes from `password`. Validates first; memory for Argon2 is reserved
    /// fallibly, so an allocation failure is an error (exit 3), not an abort.
    pub fn derive(&self, password: &[u8], out_len: usize) -> Result<Secret> {
        self.validate()?;
        let mut out = Secret::zeroed(out_len);
        match self {
            Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } => hash.pbkdf2(password, salt, *iterations, out.as_mut_bytes()),
            Kdf::Argon2 {
                variant,
                time,
                memory_kib,
                lanes,
                salt,
            } => {
                let (time, memory_kib) = (*time, *memory_kib);
                #[cfg(fuzzing)]
                let (time, memory_kib) = (
                    time.min(fuzz_caps::ARGON2_TIME),
                    memory_kib.min(fuzz_caps::ARGON2_MEMORY_KIB.max(8 * *lanes)),
                );
                let params = argon2::Params::new(memory_kib, time, *lanes, Some(out_len))
                    .map_err(|e| Error::format(format!("Argon2 parameters: {e}")))?;
                let algorithm = match variant {
                    Argon2Variant::Argon2i => argon2::Algorithm::Argon2i,
                    Argon2Variant::Argon2id => argon2::Algorithm::Argon2id,
                };
                let ctx = argon2::Argon2::new(algorithm, argon2::Version::V0x13, params);
                let blocks = ctx.params().block_count();
                let mut memory: Vec<argon2::Block> = Vec::new();
                memory.try_reserve_exact(blocks).map_err(|_| {
                    Error::no_mem(format!(
                        "cannot allocate {memory_kib} KiB for Argon2 key derivation"
                    ))
                })?;
                memory.resize(blocks, argon2::Block::default());
                let r = ctx.hash_password_into_with_memory(
                    password,
                    salt,
                    out.as_mut_bytes(),
                    &mut memory,
                );
                // The work area holds material derived from the passphrase: wipe it.
                for block in memory.iter_mut() {
                    zeroize::Zeroize::zeroize(block);
                }
                r.map_err(|e| Error::format(format!("Argon2: {e}")))?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argon(time: u32, memory_kib: u32, lanes: u32) -> Kdf {
        Kdf::Argon2 {
            variant: Argon2Variant::Argon2id,
            time,
            memory_kib,
            lanes,
            salt: vec![1; 32],
        }
    }

    #[test]
    fn absurd_costs_are_refused_before_work() {
        assert!(argon(4, u32::MAX, 4).derive(b"x", 32).is_err());
        assert_eq!(argon(4, u32::MAX, 4).validate().unwrap_err().exit_code(), 3);
        assert!(argon(u32::MAX, 1024, 1).validate().is_err());
        assert!(argon(4, 1024, 0).validate().is_err());
        assert!(argon(4, 1024, 1000).validate().is_err());
        assert!(argon(4, 8, 4).validate().is_err());
        let p = Kdf::Pbkdf2 {
            hash: HashAlg::Sha256,
            iterations: u32::MAX,
            salt: vec![0; 32],
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn argon2id_rfc9106_shape_is_deterministic_and_salted() {
        let a = argon(1, 64, 2).derive(b"pw", 32).unwrap();
        let b = argon(1, 64, 2).derive(b"pw", 32).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        let c = argon(1, 64, 1).derive(b"pw", 32).unwrap();
        assert_ne!(a.as_bytes(), c.as_bytes());
    }
}
