//! Throughput of every cipher × mode through the sector-cipher interface, beside the cipher
//! crate's raw multi-block speed and `openssl speed` where OpenSSL has the cipher. Single
//! thread.
//!
//!     cargo run --release --example cipher_bench [REPS [FILTER]]  (or: make bench-ciphers)
//!
//! FILTER keeps the specs containing it (`make bench-ciphers CIPHERS=cbc`).
//!
//! For each spec of [`SPECS`] and sector size (512, 4096 bytes), `SectorCipher`'s
//! encrypt_sectors/decrypt_sectors run over a 1 MiB buffer, and the same block cipher's raw
//! multi-block encrypt/decrypt (no chaining, no IVs) over the same buffer; `ratio` is
//! sector/raw (the goal: 0.8 or more). `openssl speed -evp NAME -bytes S` times one sector
//! per EVP call (encrypt and, with `-decrypt`, decrypt). Everything is repeated REPS times
//! (default 3), interleaved, and the medians are printed, so that each ratio compares
//! figures measured under the same load. A spec the library cannot parse yet prints "not
//! supported (yet)".

mod common;

use common::median;
use luksfuse::crypto::bench::{rate, raw_blocks_rate};
use luksfuse::crypto::{CipherSpec, SectorCipher};
use luksfuse::units::{Iv, SectorSize};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const BUF: usize = 1 << 20;
const SECTORS: [usize; 2] = [512, 4096];
/// Time spent per measurement of ours (OpenSSL's is `-seconds 1`).
const SLICE: Duration = Duration::from_millis(250);

/// (spec, volume key bits, bits of the one block-cipher key inside it, `openssl speed -evp`
/// name when OpenSSL has the same cipher and mode). XTS keys are two cipher keys, LRW keys a
/// cipher key and a 128-bit tweak key.
#[rustfmt::skip]
const SPECS: &[(&str, usize, usize, Option<&str>)] = &[
    ("aes-xts-plain64", 256, 128, Some("aes-128-xts")),
    ("aes-xts-plain64", 512, 256, Some("aes-256-xts")),
    ("aes-cbc-essiv:sha256", 256, 256, Some("aes-256-cbc")),
    ("aes-ctr-plain64", 256, 256, Some("aes-256-ctr")),
    ("aes-lrw-benbi", 384, 256, None),
    ("serpent-xts-plain64", 512, 256, None),
    ("serpent-cbc-essiv:sha256", 256, 256, None),
    ("serpent-ctr-plain64", 256, 256, None),
    ("serpent-lrw-benbi", 384, 256, None),
    ("twofish-xts-plain64", 512, 256, None),
    ("twofish-cbc-essiv:sha256", 256, 256, None),
    ("twofish-ctr-plain64", 256, 256, None),
    ("twofish-lrw-benbi", 384, 256, None),
    ("camellia-xts-plain64", 512, 256, None),
    ("camellia-cbc-essiv:sha256", 256, 256, Some("camellia-256-cbc")),
    ("camellia-ctr-plain64", 256, 256, Some("camellia-256-ctr")),
    ("cast6-xts-plain64", 512, 256, None),
    ("cast6-cbc-essiv:sha256", 256, 256, None),
    ("sm4-xts-plain64", 256, 128, None),
    ("sm4-cbc-plain64", 128, 128, Some("sm4-cbc")),
    ("sm4-ctr-plain64", 128, 128, Some("sm4-ctr")),
    ("cast5-cbc-plain64", 128, 128, Some("cast5-cbc")),
];

/// MB/s of `openssl speed` for `name` on `sector`-byte calls, or `None` when openssl is
/// missing, lacks the cipher or prints something unexpected. The legacy provider is loaded
/// too (CAST5 lives there in OpenSSL 3).
fn openssl(name: &str, sector: usize, encrypt: bool) -> Option<f64> {
    let mut cmd = Command::new("openssl");
    cmd.args(["speed", "-provider", "legacy", "-provider", "default"]);
    cmd.args(["-seconds", "1", "-evp", name, "-bytes"])
        .arg(sector.to_string());
    if !encrypt {
        cmd.arg("-decrypt");
    }
    common::openssl_speed(&mut cmd, name)
}

/// What one measurement is of: the spec's row, the sector size (0 for raw), encrypt or not.
#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum What {
    Sector(usize, usize, bool),
    Raw(usize, bool),
    OpenSsl(usize, usize, bool),
}

/// MB/s with as many decimals as make two or three significant digits (slow ciphers).
fn mbs(v: f64) -> String {
    match v {
        v if v < 10.0 => format!("{v:.2}"),
        v if v < 100.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

fn key(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i * 13 + 1).to_le_bytes()[0]).collect()
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("REPS is a number"))
        .unwrap_or(3);
    // Only the specs containing FILTER, when given (`make bench-ciphers CIPHERS=cbc`).
    let filter = std::env::args().nth(2).unwrap_or_default();
    // The specs this build supports, keyed; the others are reported as such.
    let mut ciphers: Vec<Option<(CipherSpec, SectorCipher)>> = Vec::new();
    for &(spec, bits, _, _) in SPECS {
        if !spec.contains(&filter) {
            ciphers.push(None);
            continue;
        }
        let c = CipherSpec::parse(spec)
            .ok()
            .and_then(|s| Some((s, SectorCipher::new(&s, &key(bits / 8)).ok()?)));
        ciphers.push(c);
    }
    let mut buf: Vec<u8> = (0..BUF).map(|i| (i * 7 % 251).to_le_bytes()[0]).collect();
    let mut samples = BTreeMap::<What, Vec<f64>>::new();
    for rep in 0..reps {
        eprintln!("repetition {}/{reps}", rep + 1);
        for (row, &(_, _, raw_bits, ssl)) in SPECS.iter().enumerate() {
            let Some((spec, c)) = &ciphers[row] else {
                continue;
            };
            for enc in [true, false] {
                for &sector in &SECTORS {
                    let size = SectorSize::new(sector as u64).unwrap();
                    let step = size.ivs_per_sector();
                    let r = rate(BUF, SLICE, || {
                        if enc {
                            c.encrypt_sectors(&mut buf, size, Iv(1), step)
                        } else {
                            c.decrypt_sectors(&mut buf, size, Iv(1), step)
                        }
                    });
                    samples
                        .entry(What::Sector(row, sector, enc))
                        .or_default()
                        .push(r);
                }
                let raw = raw_blocks_rate(spec.alg, &key(raw_bits / 8), enc, &mut buf, SLICE)
                    .expect("the raw key size of a supported spec");
                samples.entry(What::Raw(row, enc)).or_default().push(raw);
                for &sector in &SECTORS {
                    if let Some(o) = ssl.and_then(|n| openssl(n, sector, enc)) {
                        samples
                            .entry(What::OpenSsl(row, sector, enc))
                            .or_default()
                            .push(o);
                    }
                }
            }
        }
    }
    let medians: BTreeMap<What, f64> = samples
        .into_iter()
        .map(|(w, mut v)| (w, median(&mut v)))
        .collect();
    let med = |w: What| medians.get(&w).copied();
    println!(
        "Single thread, 1 MiB buffers, median of {reps} runs, MB/s (10^6 B/s); ratio = sector/raw"
    );
    println!(
        "{:<26} {:>4} {:>6} | {:>7} {:>7} {:>5} | {:>7} {:>7} {:>5} | {:>7} {:>7}",
        "spec",
        "bits",
        "sector",
        "enc",
        "raw",
        "ratio",
        "dec",
        "raw",
        "ratio",
        "ssl enc",
        "ssl dec"
    );
    for (row, &(spec, bits, _, ssl)) in SPECS.iter().enumerate() {
        if !spec.contains(&filter) {
            continue;
        }
        if ciphers[row].is_none() {
            println!("{spec:<26} {bits:>4}        | not supported (yet)");
            continue;
        }
        for &sector in &SECTORS {
            let mut cells = Vec::new();
            for enc in [true, false] {
                let s = med(What::Sector(row, sector, enc)).expect("measured");
                let r = med(What::Raw(row, enc)).expect("measured");
                cells.push(format!("{:>7} {:>7} {:>5.2}", mbs(s), mbs(r), s / r));
            }
            let o = |enc| match (ssl, med(What::OpenSsl(row, sector, enc))) {
                (Some(_), Some(o)) => mbs(o),
                (Some(_), None) => "n/a".to_string(),
                (None, _) => "-".to_string(),
            };
            println!(
                "{spec:<26} {bits:>4} {sector:>6} | {} | {} | {:>7} {:>7}",
                cells[0],
                cells[1],
                o(true),
                o(false)
            );
        }
    }
}
