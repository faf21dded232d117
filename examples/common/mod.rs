//! What the benchmark examples share: reading `openssl speed`'s figure and the median of
//! repeated runs.

use std::process::Command;

/// MB/s that `cmd` (an `openssl speed -evp NAME ...` command line) reports for `name`, or
/// `None` when openssl is missing, lacks the cipher or prints something unexpected.
pub fn openssl_speed(cmd: &mut Command, name: &str) -> Option<f64> {
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "AES-256-XTS    8510027.69k": thousands of bytes per second.
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(name))?;
    let k: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k / 1000.0)
}

/// The median of `v` (sorted in place; not empty).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
