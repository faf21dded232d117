//! Keyslot and segment shapes for `tests/keyslots.rs`: a cryptsetup-made LUKS2 header with two
//! keyslots, copies of it changed by JSON surgery (both copies, checksums kept right, see
//! [`super::luks2_surgery`]), and what cryptsetup says of a header (exit code, dump text).

use super::fixtures::{fast_kdf, luks_format, write_file, Fixture};
use super::luks2_surgery::rewrite_json;
use super::proc::forking;
use super::s;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The passphrase of the second keyslot (key file `key2`).
pub const PASS2: &[u8] = b"a second passphrase";

/// A detached LUKS2 header (cryptsetup, PBKDF2 1000 iterations) with the fixture's key in
/// keyslot 0 and [`PASS2`] (key file `key2`) in keyslot 1, bound or, if `unbound`, a 512-bit
/// unbound key (`luksAddKey --unbound`).
pub fn luks2_two_slots(unbound: bool) -> Fixture {
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args);
    let key2 = f.path("key2");
    write_file(&key2, PASS2);
    let mut add = vec!["luksAddKey", "--key-file", s(&f.keyfile), "--key-slot", "1"];
    add.extend(fast_kdf("pbkdf2"));
    if unbound {
        add.extend(["--unbound", "-s", "512"]);
    }
    f.cryptsetup_then(&add, &[s(&key2)]);
    f
}

/// The fixture's header with `edit` applied to its JSON, written to `name` in its directory.
pub fn shape(f: &Fixture, name: &str, edit: &dyn Fn(&mut Value)) -> PathBuf {
    let mut img = f.read_header();
    rewrite_json(&mut img, edit);
    let path = f.path(name);
    write_file(&path, &img);
    path
}

/// Runs cryptsetup with `args` (no `-q` added); returns its exit code, stdout and stderr.
pub fn cryptsetup_run(args: &[&str]) -> (i32, String, String) {
    let out = forking(|| Command::new("cryptsetup").args(args).output()).expect("cryptsetup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exit code of `cryptsetup open --test-passphrase` of `header` (payload `payload`) with
/// the key file `key`, for keyslot `slot` or any.
pub fn cryptsetup_test_key(header: &Path, payload: &Path, key: &Path, slot: Option<u32>) -> i32 {
    let slot = slot.map(|n| n.to_string());
    let mut args = vec!["open", "--test-passphrase", "--key-file", s(key)];
    if let Some(n) = &slot {
        args.extend(["-S", n]);
    }
    args.extend(["--header", s(header), s(payload)]);
    cryptsetup_run(&args).0
}

/// `cryptsetup luksDump` of `header`: exit code and stdout.
pub fn cryptsetup_dump(header: &Path) -> (i32, String) {
    let (code, out, _) = cryptsetup_run(&["luksDump", s(header)]);
    (code, out)
}

/// The lines of a LUKS2 dump from the heading `from` (e.g. `"Keyslots:"`) up to the next
/// heading (a line starting with a letter), the heading included.
pub fn dump_section(dump: &str, from: &str) -> String {
    let mut lines = dump.lines().skip_while(|l| *l != from);
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| !l.starts_with(|c: char| c.is_ascii_alphabetic())));
    assert!(!out.is_empty(), "no {from} in:\n{dump}");
    out.join("\n")
}

/// The key bytes of `cryptsetup luksDump --unbound -S N` text (the "Unbound Key:" lines).
pub fn parse_unbound_key(text: &str) -> Vec<u8> {
    super::peers::parse_hex_lines(text, "Unbound Key:")
}
