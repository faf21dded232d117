//! XTS throughput of each implementation against OpenSSL, single thread.
//!
//!     cargo run --release --example xts_bench [REPS]      (or: make bench-xts)
//!
//! For every implementation × key size (256/512-bit XTS keys) × sector size (512/4096 bytes),
//! encrypts and decrypts a 1 MiB buffer repeatedly and reports MB/s (10^6 bytes). The runs are
//! repeated REPS times (default 5), interleaved with `openssl speed -evp aes-N-xts -bytes S`, so
//! that each ratio compares medians measured under the same load. OpenSSL times one sector per
//! EVP call, which is what `-bytes` sets.

mod common;

use common::median;
use luksfuse::crypto::bench::rate;
use luksfuse::crypto::{CipherSpec, SectorCipher, XtsImpl};
use luksfuse::units::{Iv, SectorSize};
use std::process::Command;
use std::time::Duration;

const BUF: usize = 1 << 20;
const KEYS: [usize; 2] = [32, 64];
const SECTORS: [usize; 2] = [512, 4096];
/// Time spent per measurement, ours and OpenSSL's.
const SLICE: Duration = Duration::from_millis(400);

/// MB/s of `openssl speed` for AES-XTS with `keylen`-byte keys on `sector`-byte calls, or
/// `None` when openssl is missing or prints something unexpected.
fn openssl(keylen: usize, sector: usize) -> Option<f64> {
    let cipher = format!("aes-{}-xts", keylen * 4);
    common::openssl_speed(
        Command::new("openssl")
            .args(["speed", "-seconds", "1", "-evp", &cipher, "-bytes"])
            .arg(sector.to_string()),
        &cipher,
    )
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("REPS is a number"))
        .unwrap_or(5);
    let spec = CipherSpec::parse("aes-xts-plain64").unwrap();
    let mut impls = vec![XtsImpl::Portable];
    for imp in [XtsImpl::Vaes256, XtsImpl::Avx512] {
        if imp.available() {
            impls.push(imp);
        } else {
            println!("{}: not available on this CPU, skipped", imp.name());
        }
    }
    let mut buf: Vec<u8> = (0..BUF).map(|i| (i * 7 % 251).to_le_bytes()[0]).collect();
    // samples[(impl, key, sector, encrypt)] and ssl[(key, sector)], one entry per repetition.
    let mut samples = std::collections::BTreeMap::<(usize, usize, usize, bool), Vec<f64>>::new();
    let mut ssl = std::collections::BTreeMap::<(usize, usize), Vec<f64>>::new();
    for rep in 0..reps {
        eprintln!("repetition {}/{reps}", rep + 1);
        for &keylen in &KEYS {
            let key: Vec<u8> = (0..keylen).map(|i| (i * 13 + 1).to_le_bytes()[0]).collect();
            for &sector in &SECTORS {
                let size = SectorSize::new(sector as u64).unwrap();
                for (i, &imp) in impls.iter().enumerate() {
                    let c = SectorCipher::with_impl(&spec, &key, imp).unwrap();
                    for enc in [true, false] {
                        let r = rate(BUF, SLICE, || {
                            if enc {
                                c.encrypt_sectors(&mut buf, size, Iv(1), size.ivs_per_sector())
                            } else {
                                c.decrypt_sectors(&mut buf, size, Iv(1), size.ivs_per_sector())
                            }
                        });
                        samples.entry((i, keylen, sector, enc)).or_default().push(r);
                    }
                }
                if let Some(r) = openssl(keylen, sector) {
                    ssl.entry((keylen, sector)).or_default().push(r);
                }
            }
        }
    }
    println!("XTS, single thread, 1 MiB buffers, median of {reps} runs, MB/s (ratio to OpenSSL)");
    println!(
        "{:<9} {:>8} {:>7} {:>16} {:>16} {:>10}",
        "impl", "key bits", "sector", "encrypt", "decrypt", "openssl"
    );
    for &keylen in &KEYS {
        for &sector in &SECTORS {
            let o = ssl.get_mut(&(keylen, sector)).map(|v| median(v));
            for (i, imp) in impls.iter().enumerate() {
                let cell = |enc: bool, samples: &mut std::collections::BTreeMap<_, Vec<f64>>| {
                    let m = median(samples.get_mut(&(i, keylen, sector, enc)).unwrap());
                    match o {
                        Some(o) => format!("{m:.0} ({:.2}x)", m / o),
                        None => format!("{m:.0}"),
                    }
                };
                let e = cell(true, &mut samples);
                let d = cell(false, &mut samples);
                let o = o.map_or("n/a".to_string(), |o| format!("{o:.0}"));
                println!(
                    "{:<9} {:>8} {:>7} {:>16} {:>16} {:>10}",
                    imp.name(),
                    keylen * 8,
                    sector,
                    e,
                    d,
                    o
                );
            }
        }
    }
    if ssl.is_empty() {
        println!("openssl: not found or unparsable output, no ratios");
    }
}
