//! Benchmark support for `examples/cipher_bench.rs` (`make bench-ciphers`); hidden from the
//! docs and not part of the API. The example sees the crate's public interface only, so the
//! raw multi-block speed of a block cipher (which it prints beside the speed of the same
//! cipher through [`SectorCipher`](super::SectorCipher)) is measured here.

use super::{Alg, AnyBlock};
use crate::error::Result;
use std::time::{Duration, Instant};

/// MB/s (10^6 bytes per second) of `f`, which processes `bytes` bytes per call: one warm-up
/// call, then calls until at least `min` has passed.
pub fn rate(bytes: usize, min: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min || n == 0 {
        f();
        n += 1;
    }
    // Counts and sizes far below 2^53: exact in f64.
    (n as f64 * bytes as f64) / start.elapsed().as_secs_f64() / 1e6
}

/// The raw speed of `alg` keyed with `key` (one cipher key, not an XTS/LRW pair), in MB/s:
/// the crate's multi-block encrypt (or decrypt) of the whole of `buf` per call, no chaining,
/// no IVs, for at least `min`. `buf.len()` must be a multiple of the block size.
pub fn raw_blocks_rate(
    alg: Alg,
    key: &[u8],
    encrypt: bool,
    buf: &mut [u8],
    min: Duration,
) -> Result<f64> {
    let c = AnyBlock::new(alg, key)?;
    let len = buf.len();
    Ok(rate(len, min, || {
        if encrypt {
            c.encrypt_blocks(buf)
        } else {
            c.decrypt_blocks(buf)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rate_runs_and_refuses_a_bad_key() {
        let mut buf = vec![0u8; 4096];
        let r = raw_blocks_rate(Alg::Aes, &[7; 16], true, &mut buf, Duration::ZERO).unwrap();
        assert!(r > 0.0);
        assert_ne!(buf, vec![0u8; 4096], "the buffer was encrypted");
        assert!(raw_blocks_rate(Alg::Aes, &[7; 15], true, &mut buf, Duration::ZERO).is_err());
    }
}
