//! Key derivation: PBKDF2 (LUKS1 and LUKS2) and Argon2i/Argon2id (LUKS2), with cost limits
//! checked before anything is allocated or computed.

use crate::crypto::hash::HashAlg;
use crate::error::{Error, Result, Setting};
use crate::secret::Secret;
use crate::sys::ZeroedMapping;

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
    // PBKDF2's cap is `crypto::hash::FUZZ_PBKDF2_ITERATIONS`, applied in `HashAlg::pbkdf2`.
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
                // Zero pages straight from the kernel: no fill pass (10% of an unlock), and
                // the area is wiped when `memory` drops, whatever Argon2 returned.
                let mut memory = ZeroedMapping::<argon2::Block>::new(blocks).map_err(|_| {
                    Error::no_mem(format!(
                        "cannot allocate {memory_kib} KiB for Argon2 key derivation"
                    ))
                })?;
                let r = ctx.hash_password_into_with_memory(
                    password,
                    salt,
                    out.as_mut_bytes(),
                    memory.as_mut_slice(),
                );
                r.map_err(|e| Error::format(format!("Argon2: {e}")))?;
            }
        }
        Ok(out)
    }
}

/// Which KDF a new keyslot gets (`--pbkdf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfKind {
    Pbkdf2,
    Argon2(Argon2Variant),
}

impl KdfKind {
    /// Parses cryptsetup's `--pbkdf` names.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "pbkdf2" => Ok(KdfKind::Pbkdf2),
            "argon2i" => Ok(KdfKind::Argon2(Argon2Variant::Argon2i)),
            "argon2id" => Ok(KdfKind::Argon2(Argon2Variant::Argon2id)),
            other => Err(Error::usage(format!(
                "unknown PBKDF '{other}' (use pbkdf2, argon2i or argon2id)"
            ))),
        }
    }
}

/// cryptsetup's lower bounds for forced costs (`--pbkdf-force-iterations`).
pub const MIN_PBKDF2_ITERATIONS: u32 = 1000;
pub const MIN_ARGON2_TIME: u32 = 4;
/// cryptsetup's smallest Argon2 memory cost in KiB.
pub const MIN_ARGON2_MEMORY_KIB: u32 = 32;
/// cryptsetup's default maximum Argon2 memory (1 GiB) and threads.
pub const DEFAULT_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
pub const DEFAULT_ARGON2_THREADS: u32 = 4;
/// Time spent on the volume key digest's PBKDF2 (cryptsetup's `LUKS_MKD_ITERATIONS_MS`).
pub const DIGEST_ITERATION_MS: u32 = 125;
/// Salt length of new keyslots and digests (cryptsetup's `LUKS_SALTSIZE`).
pub const SALT_LEN: usize = 32;

/// How to choose the KDF of a new keyslot: cryptsetup's `--pbkdf`, `--hash`, `--iter-time`,
/// `--pbkdf-memory`, `--pbkdf-parallel` and `--pbkdf-force-iterations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfChoice {
    pub kind: KdfKind,
    /// PBKDF2's hash.
    pub hash: HashAlg,
    /// Target time of one derivation, in milliseconds.
    pub iter_time_ms: u32,
    /// Argon2 memory in KiB (the maximum when calibrating).
    pub memory_kib: u32,
    /// Argon2 lanes.
    pub parallel: u32,
    /// Skip calibration: PBKDF2 iterations or Argon2 time cost.
    pub forced_iterations: Option<u32>,
}

impl KdfChoice {
    /// cryptsetup 2.6's defaults for LUKS2: argon2id, 2 s, up to 1 GiB (at most half the RAM),
    /// min(4, CPUs) threads; PBKDF2 with sha256.
    pub fn cryptsetup_default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        KdfChoice {
            kind: KdfKind::Argon2(Argon2Variant::Argon2id),
            hash: HashAlg::Sha256,
            iter_time_ms: 2000,
            memory_kib: DEFAULT_ARGON2_MEMORY_KIB.min(half_of_ram_kib()),
            parallel: DEFAULT_ARGON2_THREADS.min(cpus),
            forced_iterations: None,
        }
    }

    /// Checks the parameters as cryptsetup does, before any work.
    pub fn check(&self) -> Result<()> {
        if self.iter_time_ms == 0 && self.forced_iterations.is_none() {
            return Err(Error::bad_setting(
                Setting::IterTime,
                "must be at least 1 ms",
            ));
        }
        match self.kind {
            KdfKind::Pbkdf2 => {
                if let Some(n) = self.forced_iterations {
                    if n < MIN_PBKDF2_ITERATIONS {
                        return Err(Error::usage(format!(
                            "forced iteration count {n} is too low for pbkdf2 (minimum is {MIN_PBKDF2_ITERATIONS})"
                        )));
                    }
                }
            }
            KdfKind::Argon2(_) => {
                if let Some(n) = self.forced_iterations {
                    if !(MIN_ARGON2_TIME..=limits::ARGON2_MAX_TIME).contains(&n) {
                        return Err(Error::usage(format!(
                            "forced iteration count {n} out of range {MIN_ARGON2_TIME}..={} for argon2",
                            limits::ARGON2_MAX_TIME
                        )));
                    }
                }
                if self.parallel == 0 || self.parallel > limits::ARGON2_MAX_LANES {
                    return Err(Error::bad_setting(
                        Setting::PbkdfParallel,
                        format!(
                            "{} out of range 1..={}",
                            self.parallel,
                            limits::ARGON2_MAX_LANES
                        ),
                    ));
                }
                let min = MIN_ARGON2_MEMORY_KIB.max(8 * self.parallel);
                if self.memory_kib < min || self.memory_kib > limits::ARGON2_MAX_MEMORY_KIB {
                    return Err(Error::bad_setting(
                        Setting::PbkdfMemory,
                        format!(
                            "{} KiB out of range {min}..={}",
                            self.memory_kib,
                            limits::ARGON2_MAX_MEMORY_KIB
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A KDF with a fresh random salt and its cost calibrated to `iter_time_ms` on this machine
    /// (or forced), deriving `key_len` bytes.
    pub fn make(&self, key_len: usize) -> Result<Kdf> {
        self.check()?;
        let mut salt = vec![0u8; SALT_LEN];
        crate::secret::fill_random(&mut salt)?;
        let kdf = match self.kind {
            KdfKind::Pbkdf2 => Kdf::Pbkdf2 {
                hash: self.hash,
                iterations: match self.forced_iterations {
                    Some(n) => n,
                    None => pbkdf2_iterations(self.hash, self.iter_time_ms, key_len),
                },
                salt,
            },
            KdfKind::Argon2(variant) => {
                let (time, memory_kib) = match self.forced_iterations {
                    Some(t) => (t, self.memory_kib),
                    None => self.argon2_costs(variant)?,
                };
                Kdf::Argon2 {
                    variant,
                    time,
                    memory_kib,
                    lanes: self.parallel,
                    salt,
                }
            }
        };
        kdf.validate()?;
        Ok(kdf)
    }

    /// Argon2 costs for `iter_time_ms`: memory at its maximum and the time cost scaled (at
    /// least 4), or, when even 4 passes take too long, memory scaled down (as cryptsetup).
    fn argon2_costs(&self, variant: Argon2Variant) -> Result<(u32, u32)> {
        // Measure on a small memory size; Argon2's cost grows linearly in time × memory.
        let probe_mem = self.memory_kib.min(64 * 1024);
        let probe = Kdf::Argon2 {
            variant,
            time: MIN_ARGON2_TIME,
            memory_kib: probe_mem,
            lanes: self.parallel,
            salt: vec![0; SALT_LEN],
        };
        let start = std::time::Instant::now();
        probe.derive(b"benchmark", 32)?;
        let ns = start.elapsed().as_nanos().max(1) as f64;
        let ns_per_unit = ns / (f64::from(MIN_ARGON2_TIME) * f64::from(probe_mem));
        let budget = f64::from(self.iter_time_ms) * 1e6 / ns_per_unit; // time × memory units
        let time = (budget / f64::from(self.memory_kib)).floor();
        if time >= f64::from(MIN_ARGON2_TIME) {
            let time = time.min(f64::from(limits::ARGON2_MAX_TIME)) as u32;
            log::debug!("argon2: {time} passes over {} KiB", self.memory_kib);
            return Ok((time, self.memory_kib));
        }
        let min = MIN_ARGON2_MEMORY_KIB.max(8 * self.parallel);
        let memory = (budget / f64::from(MIN_ARGON2_TIME)) as u32;
        let memory = memory.clamp(min, self.memory_kib);
        log::debug!("argon2: {MIN_ARGON2_TIME} passes over {memory} KiB");
        Ok((MIN_ARGON2_TIME, memory))
    }
}

/// Half of the physical memory in KiB (cryptsetup never asks Argon2 for more).
fn half_of_ram_kib() -> u32 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(u64::from(DEFAULT_ARGON2_MEMORY_KIB) * 2);
    u32::try_from(total / 2).unwrap_or(u32::MAX)
}

/// PBKDF2 iterations that take `ms` milliseconds here for a `key_len`-byte output (at least
/// 1000), measured as cryptsetup does: double the count until a run takes 250 ms or more.
pub fn pbkdf2_iterations(hash: HashAlg, ms: u32, key_len: usize) -> u32 {
    let mut out = vec![0u8; key_len.max(1)];
    let mut n: u32 = 1000;
    loop {
        let start = std::time::Instant::now();
        hash.pbkdf2(b"benchmark passphrase", &[0u8; SALT_LEN], n, &mut out);
        let took = start.elapsed();
        if took.as_millis() >= 250 || n >= limits::PBKDF2_MAX_ITERATIONS / 2 {
            let per_ms = f64::from(n) / (took.as_secs_f64() * 1000.0).max(0.001);
            let want = per_ms * f64::from(ms);
            return want.clamp(
                f64::from(MIN_PBKDF2_ITERATIONS),
                f64::from(limits::PBKDF2_MAX_ITERATIONS),
            ) as u32;
        }
        n *= 2;
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
    fn forced_costs_are_used_and_checked() {
        let mut c = KdfChoice {
            kind: KdfKind::Pbkdf2,
            forced_iterations: Some(1000),
            ..KdfChoice::cryptsetup_default()
        };
        match c.make(64).unwrap() {
            Kdf::Pbkdf2 {
                iterations, salt, ..
            } => assert_eq!((iterations, salt.len()), (1000, 32)),
            k => panic!("{k:?}"),
        }
        c.forced_iterations = Some(999);
        assert_eq!(c.make(64).unwrap_err().exit_code(), 1);
        c.kind = KdfKind::Argon2(Argon2Variant::Argon2i);
        c.forced_iterations = Some(3);
        assert!(c.check().is_err());
        c.forced_iterations = Some(4);
        c.memory_kib = 1024;
        c.parallel = 2;
        assert_eq!(c.make(32).unwrap().name(), "argon2i");
    }

    #[test]
    fn calibrated_argon2_keeps_at_least_four_passes() {
        let c = KdfChoice {
            iter_time_ms: 50,
            memory_kib: 4096,
            parallel: 1,
            ..KdfChoice::cryptsetup_default()
        };
        match c.make(32).unwrap() {
            Kdf::Argon2 {
                time, memory_kib, ..
            } => assert!(time >= 4 && memory_kib <= 4096, "{time} {memory_kib}"),
            k => panic!("{k:?}"),
        }
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
