//! Validation parity with cryptsetup: every case of cryptsetup's LUKS2 validation suite
//! (`tests/luks2-validation-test` with its `tests/generators/generate-*.sh`), rebuilt here by
//! our own surgery on a header that the real `cryptsetup luksFormat` made; cryptsetup's LUKS1
//! header checks (`lib/luks1/keymanage.c`, the cases of its `tests/evil_hdr-*` images); and the
//! foreign-signature rule (a damaged copy is not recovered from the other one when blkid sees
//! another signature), with signatures written by the real tools.
//!
//! Each case runs `luksfuse dump` and `cryptsetup luksDump` on the same file and asserts that
//! both give the verdict the suite expects (loads / refused). A refused case must exit 4 (a
//! bad header, luksfuse's code; cryptsetup exits 1 for every header it cannot load) with a
//! one-line message naming the file. Every gap is collected and printed together.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// luksfuse's exit code for a header it refuses (cryptsetup's luksDump exits 1 for all).
const REFUSED: i32 = 4;
/// The data offset of the base header, as in cryptsetup's validation image.
const DATA_OFFSET: u64 = 16 << 20;
/// The size of every LUKS2 case file (sparse): room for 4 MiB copies and the keyslots.
const IMAGE_LEN: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// `luksDump` loads it ("R" in the suite).
    Loads,
    /// `luksDump` refuses it ("F").
    Refused,
    /// `token remove --token-id 0` then `luksDump` both succeed ("T"); luksfuse loads it.
    TokenRemove,
}
use Expect::*;

type Build = fn(&mut Vec<u8>);

struct Outcome {
    ok: bool,
    code: i32,
    text: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.ok { "loads" } else { "refused" };
        write!(f, "{verdict} (exit {}): {}", self.code, self.text.trim())
    }
}

fn run(cmd: &mut Command) -> Outcome {
    let out = forking(|| cmd.output()).expect("run");
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    Outcome {
        ok: out.status.success(),
        code: out.status.code().unwrap_or(-1),
        text,
    }
}

fn cryptsetup(args: &[&str], file: &Path) -> Outcome {
    run(Command::new("cryptsetup").args(args).arg(file))
}

fn luksfuse_dump(file: &Path) -> Outcome {
    let r = luksfuse(&["dump", s(file)], b"");
    Outcome {
        ok: r.code == 0,
        code: r.code,
        text: if r.code == 0 {
            r.stdout.lines().next().unwrap_or("").to_owned()
        } else {
            r.stderr
        },
    }
}

/// Writes `img` to `path`, leaving all-zero 64 KiB chunks as holes.
fn write_sparse(path: &Path, img: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(img.len() as u64).unwrap();
    for (i, chunk) in img.chunks(64 << 10).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, (i * (64 << 10)) as u64).unwrap();
        }
    }
}

/// What is wrong with luksfuse's outcome for a case expected to give `want`, if anything.
fn luksfuse_gap(want: Expect, lf: &Outcome, file: &Path) -> Option<String> {
    let loads = want != Refused;
    if lf.ok != loads {
        return Some(format!(
            "luksfuse {}",
            if loads { "refuses it" } else { "loads it" }
        ));
    }
    if !lf.ok {
        if lf.code != REFUSED {
            return Some(format!("luksfuse exits {} (want {REFUSED})", lf.code));
        }
        // The error is the last line but a hint (warnings about a damaged copy may precede).
        let error = lf.text.lines().rfind(|l| !l.starts_with("hint:"));
        let named = format!("luksfuse: {}: ", s(file));
        if !error.is_some_and(|l| l.starts_with(&named)) {
            return Some("luksfuse's error is not a line naming the file".into());
        }
    }
    None
}

/// Runs every case on its own file in `dir`: luksfuse first (it only reads), then cryptsetup
/// (which may repair the file). Returns the report of every case that does not match.
fn run_cases(dir: &Path, base: &[u8], cases: &[(&str, Expect, Build)]) -> Vec<String> {
    let mut gaps = Vec::new();
    for (name, want, build) in cases {
        let mut img = base.to_vec();
        build(&mut img);
        let file = dir.join(format!("{name}.img"));
        write_sparse(&file, &img);
        let before = sha256_file(&file);
        let lf = luksfuse_dump(&file);
        let unchanged = sha256_file(&file) == before;
        let cs = match want {
            TokenRemove => {
                let r = cryptsetup(&["token", "remove", "--token-id", "0"], &file);
                if r.ok {
                    cryptsetup(&["luksDump"], &file)
                } else {
                    r
                }
            }
            _ => cryptsetup(&["luksDump"], &file),
        };
        let mut why = Vec::new();
        if cs.ok != (*want != Refused) {
            why.push("cryptsetup disagrees with its suite (the rebuild is wrong)".to_owned());
        }
        why.extend(luksfuse_gap(*want, &lf, &file));
        if !unchanged {
            why.push("luksfuse changed the file".into());
        }
        if !why.is_empty() {
            gaps.push(format!(
                "{name}: expected {want:?}; {}\n    cryptsetup: {cs}\n    luksfuse:   {lf}",
                why.join("; ")
            ));
        }
        std::fs::remove_file(&file).unwrap();
    }
    gaps
}

fn report(what: &str, total: usize, gaps: &[String]) {
    assert!(
        gaps.is_empty(),
        "{} of {total} {what} cases differ:\n{}",
        gaps.len(),
        gaps.join("\n")
    );
}

// ---- The base LUKS2 header ----

/// A LUKS2 header by `cryptsetup luksFormat` (16 KiB copies, 2 MiB of keyslots, data at
/// 16 MiB and 512-byte sectors as in cryptsetup's validation image), with all eight keyslots used: slot 0 PBKDF2,
/// slots 1 to 7 Argon2id (the suite's "leftover parameters" cases edit Argon2 keyslots).
/// Padded with zeros to [`IMAGE_LEN`].
fn base_luks2() -> Vec<u8> {
    let f = Fixture::new().payload_len(1 << 20);
    let mut fmt = vec![
        "luksFormat",
        "--type",
        "luks2",
        "--key-size",
        "256",
        "--luks2-keyslots-size",
        "2M",
        "--offset",
        "32768",
        "--sector-size",
        "512",
        "--key-file",
        s(&f.keyfile),
    ];
    fmt.extend(fast_kdf("pbkdf2"));
    f.cryptsetup(&fmt);
    for slot in ["1", "2", "3", "4", "5", "6", "7"] {
        let mut add = vec![
            "luksAddKey",
            "--key-file",
            s(&f.keyfile),
            "--key-slot",
            slot,
        ];
        add.extend(fast_kdf("argon2id"));
        add.extend(["--pbkdf-memory", "32"]);
        f.cryptsetup_then(&add, &[s(&f.keyfile)]);
    }
    let mut img = f.read_header();
    assert_eq!(read_json(&img, 0)["segments"]["0"]["offset"], "16777216");
    assert_eq!(read_json(&img, 0)["keyslots"].as_object().unwrap().len(), 8);
    img.resize(IMAGE_LEN, 0);
    img
}

// ---- Surgery in the generators' words ----

fn hdr1(img: &[u8]) -> usize {
    hdr_size(img)
}

/// Kills the secondary copy (its magic), as the generators' `lib_mangle_json_hdr0_kill_hdr1`.
fn kill1(img: &mut [u8]) {
    let at = hdr1(img);
    kill_copy(img, at);
}

/// Edits the primary's JSON with `f` and kills the secondary.
fn json0_kill1(img: &mut [u8], f: &dyn Fn(&mut Value)) {
    rewrite_copy_json(img, 0, f);
    kill1(img);
}

/// Replaces the primary's JSON area by `text` (NUL-padded; `text` may fill the area) and kills
/// the secondary.
fn text0_kill1(img: &mut [u8], text: &[u8]) {
    edit_json_area(img, 0, &|area: &mut [u8]| {
        area.fill(0);
        area[..text.len()].copy_from_slice(text);
    });
    kill1(img);
}

fn num(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

/// The primary's JSON with a `config_key` string in `config` that makes the text `len` bytes.
fn json_of_len(img: &[u8], len: usize) -> Vec<u8> {
    let mut j = read_json(img, 0);
    j["config"]["config_key"] = json!("");
    let short = serde_json::to_vec(&j).unwrap().len();
    j["config"]["config_key"] = json!("X".repeat(len - short));
    let text = serde_json::to_vec(&j).unwrap();
    assert_eq!(text.len(), len);
    text
}

/// The JSON of the generators' `metadata-size-*` cases for header size `size`: keyslot areas
/// moved by the growth of both copies (less `shift`), json_size of the new area, the data
/// at 16 MiB, then `f`.
fn resized_json(img: &[u8], size: u64, shift: u64, f: &dyn Fn(&mut Value, u64)) -> Value {
    let mut j = read_json(img, 0);
    let diff = 2 * size - 2 * 16384 - shift;
    for ks in j["keyslots"].as_object_mut().unwrap().values_mut() {
        let off = num(&ks["area"]["offset"]) + diff;
        ks["area"]["offset"] = json!(off.to_string());
    }
    j["config"]["json_size"] = json!((size - 4096).to_string());
    j["segments"]["0"]["offset"] = json!(DATA_OFFSET.to_string());
    f(&mut j, size);
    j
}

/// Lays the header out with `size`-byte copies and kills the primary (`secondary` true) or
/// the secondary copy.
fn resized(img: &mut [u8], size: u64, secondary: bool, json: &Value) {
    relayout(img, size as usize, json);
    kill_copy(img, if secondary { 0 } else { size as usize });
}

fn no_change(_: &mut Value, _: u64) {}

macro_rules! size_cases {
    ($($name:literal, $sec:literal, $size:expr;)*) => {
        [$(($name, Loads, (|b: &mut Vec<u8>| {
            let j = resized_json(b, $size, 0, &no_change);
            resized(b, $size, $sec, &j)
        }) as Build),)*]
    };
}

/// Every case of `luks2-validation-test`, in its order, plus the issue's own extras.
fn luks2_cases() -> Vec<(&'static str, Expect, Build)> {
    let mut cases: Vec<(&'static str, Expect, Build)> = vec![
        // [1] basic auto-recovery
        ("invalid-checksum-hdr0", Loads, |b| break_checksum(b, 0)),
        ("invalid-checksum-hdr1", Loads, |b| {
            let at = hdr1(b);
            break_checksum(b, at)
        }),
        ("invalid-checksum-both-hdrs", Refused, |b| {
            let at = hdr1(b);
            break_checksum(b, 0);
            break_checksum(b, at)
        }),
        // [2] malformed JSON with a correct checksum, full JSON area, leftover KDF fields
        ("corrupted-hdr0-with-correct-chks", Loads, |b| {
            corrupt_json(b, 0)
        }),
        ("corrupted-hdr1-with-correct-chks", Loads, |b| {
            let at = hdr1(b);
            corrupt_json(b, at)
        }),
        ("correct-full-json0", Loads, |b| {
            let len = json_area(b, 0).len() - 1;
            let text = json_of_len(b, len);
            text0_kill1(b, &text)
        }),
        ("argon2-leftover-params", Loads, |b| {
            json0_kill1(b, &|j| {
                let kdf = &mut j["keyslots"]["1"]["kdf"];
                kdf["type"] = json!("pbkdf2");
                kdf["iterations"] = json!(1001);
                kdf["hash"] = json!("sha256");
            })
        }),
        ("pbkdf2-leftover-params-0", Loads, |b| {
            leftover_pbkdf2(b, "argon2i")
        }),
        ("pbkdf2-leftover-params-1", Loads, |b| {
            leftover_pbkdf2(b, "argon2id")
        }),
        // [3] JSON area restrictions (the secondary is always killed)
        ("non-null-byte-beyond-json0", Refused, |b| {
            let mut text = json_bytes(b, 0);
            text.push(b'X');
            text0_kill1(b, &text)
        }),
        ("non-null-bytes-beyond-json0", Refused, |b| {
            let mut text = json_bytes(b, 0);
            text.extend([0u8; 20]);
            text.extend(b"some text well after the terminating NUL");
            text0_kill1(b, &text)
        }),
        ("missing-trailing-null-byte-json0", Refused, |b| {
            let len = json_area(b, 0).len();
            let text = json_of_len(b, len);
            text0_kill1(b, &text)
        }),
        ("invalid-opening-char-json0", Refused, |b| {
            let text = [b" ".to_vec(), json_bytes(b, 0)].concat();
            text0_kill1(b, &text)
        }),
        ("invalid-object-type-json0", Refused, |b| {
            let text = [b"[".to_vec(), json_bytes(b, 0), b"]".to_vec()].concat();
            text0_kill1(b, &text)
        }),
        ("overlapping-areas-c0-json0", Refused, |b| {
            json0_kill1(b, &|j| {
                j["keyslots"]["7"]["area"] = j["keyslots"]["6"]["area"].clone();
            })
        }),
        ("overlapping-areas-c1-json0", Refused, |b| {
            json0_kill1(b, &|j| {
                let (off, size) = area_of(j, "6");
                set_area(j, "7", off + 1, size - 1);
            })
        }),
        ("overlapping-areas-c2-json0", Refused, |b| {
            json0_kill1(b, &|j| {
                let (off, size) = area_of(j, "6");
                let (_, size7) = area_of(j, "7");
                set_area(j, "7", off + size - 1, size7);
            })
        }),
        ("area-in-json-hdr-space-json0", Refused, |b| {
            json0_kill1(b, &|j| set_area(j, "0", 2 * 16384 - 1, 1))
        }),
        ("missing-keyslot-referenced-in-digest", Refused, |b| {
            json0_kill1(b, &|j| push(&mut j["digests"]["0"]["keyslots"], "8"))
        }),
        ("missing-segment-referenced-in-digest", Refused, |b| {
            json0_kill1(b, &|j| push(&mut j["digests"]["0"]["segments"], "1"))
        }),
        ("missing-keyslot-referenced-in-token", Refused, |b| {
            json0_kill1(b, &|j| {
                j["tokens"]["0"] = json!({"type": "dummy", "keyslots": ["0", "8"]});
            })
        }),
        ("keyslot-missing-digest", Refused, |b| {
            json0_kill1(b, &|j| {
                j["digests"]["0"]["keyslots"]
                    .as_array_mut()
                    .unwrap()
                    .remove(0);
            })
        }),
        ("keyslot-too-many-digests", Refused, |b| {
            json0_kill1(b, &|j| {
                j["digests"]["1"] = j["digests"]["0"].clone();
                j["digests"]["1"]["keyslots"] = json!(["1"]);
            })
        }),
        // [4] integer limits
        ("uint64-max-segment-size", Loads, |b| {
            segment0(b, "size", json!("18446744073709551104"))
        }),
        ("uint64-overflow-segment-size", Refused, |b| {
            segment0(b, "size", json!("18446744073709551616"))
        }),
        ("uint64-signed-segment-size", Refused, |b| {
            segment0(b, "size", json!("-512"))
        }),
        // [5] segments
        ("segment-missing-type", Refused, |b| del_segment0(b, "type")),
        ("segment-wrong-type", Refused, |b| {
            segment0(b, "type", json!(42))
        }),
        ("segment-missing-offset", Refused, |b| {
            del_segment0(b, "offset")
        }),
        ("segment-wrong-offset", Refused, |b| {
            segment0(b, "offset", json!("-42"))
        }),
        ("segment-missing-size", Refused, |b| del_segment0(b, "size")),
        ("segment-wrong-size-0", Refused, |b| {
            segment0(b, "size", json!(4096))
        }),
        ("segment-wrong-size-1", Refused, |b| {
            segment0(b, "size", json!("automatic"))
        }),
        ("segment-wrong-size-2", Refused, |b| {
            segment0(b, "size", json!("511"))
        }),
        ("segment-crypt-missing-encryption", Refused, |b| {
            del_segment0(b, "encryption")
        }),
        ("segment-crypt-wrong-encryption", Refused, |b| {
            segment0(b, "encryption", json!({}))
        }),
        ("segment-crypt-missing-ivoffset", Refused, |b| {
            del_segment0(b, "iv_tweak")
        }),
        ("segment-crypt-wrong-ivoffset", Refused, |b| {
            segment0(b, "iv_tweak", json!("dynamic"))
        }),
        ("segment-crypt-missing-sectorsize", Refused, |b| {
            del_segment0(b, "sector_size")
        }),
        ("segment-crypt-wrong-sectorsize-0", Refused, |b| {
            segment0(b, "sector_size", json!(1023))
        }),
        ("segment-crypt-wrong-sectorsize-1", Refused, |b| {
            segment0(b, "sector_size", json!("4096"))
        }),
        ("segment-crypt-wrong-sectorsize-2", Refused, |b| {
            segment0(b, "sector_size", json!(-1024))
        }),
        ("segment-unknown-type", Loads, |b| {
            json0_kill1(b, &|j| {
                let s = &j["segments"]["0"];
                j["segments"]["0"] = json!({"type": "some_type", "offset": s["offset"],
                    "size": s["size"], "a_field": 0});
            })
        }),
        ("segment-two", Loads, |b| {
            json0_kill1(b, &|j| {
                j["segments"]["0"]["size"] = json!("512");
                let off = num(&j["segments"]["0"]["offset"]) + 512;
                j["segments"]["1"] =
                    json!({"type": "some", "offset": off.to_string(), "size": "dynamic"});
            })
        }),
        ("segment-wrong-flags", Refused, |b| {
            segment0(b, "flags", json!("hello"))
        }),
        ("segment-wrong-flags-element", Refused, |b| {
            segment0(b, "flags", json!(["hello", 1]))
        }),
        ("segment-wrong-backup-key-0", Refused, |b| {
            json0_kill1(b, &|j| {
                j["segments"]["2"] = json!({"type": "linear", "offset": "512", "size": "512",
                    "flags": ["backup-x"]});
            })
        }),
        ("segment-wrong-backup-key-1", Refused, |b| {
            json0_kill1(b, &|j| {
                let off = (num(&j["segments"]["0"]["offset"]) + 512).to_string();
                for i in 1..65 {
                    j["segments"][i.to_string()] =
                        json!({"type": "linear", "offset": off, "size": "512"});
                }
                j["segments"]["268435472"] = json!({"type": "linear", "offset": "512",
                    "size": "512", "flags": ["backup-x"]});
            })
        }),
        ("segment-crypt-empty-encryption", Refused, |b| {
            segment0(b, "encryption", json!(""))
        }),
        // [6] metadata size and keyslots size (config)
        ("invalid-keyslots-size-c0", Refused, |b| {
            json0_kill1(b, &|j| {
                let ks = num(&j["segments"]["0"]["offset"]) - 2 * 16384 + 4096;
                j["config"]["keyslots_size"] = json!(ks.to_string());
            })
        }),
        ("invalid-keyslots-size-c1", Refused, |b| {
            json0_kill1(b, &|j| {
                let ks = num(&j["config"]["keyslots_size"]) - 1;
                j["config"]["keyslots_size"] = json!(ks.to_string());
            })
        }),
        ("invalid-keyslots-size-c2", Refused, |b| {
            json0_kill1(b, &|j| {
                let areas: u64 = (0..8).map(|i| area_of(j, &i.to_string()).1).sum();
                j["config"]["keyslots_size"] = json!((areas - 4096).to_string());
            })
        }),
        ("invalid-json-size-c0", Refused, |b| {
            json0_kill1(b, &|j| j["config"]["json_size"] = json!("16384"))
        }),
        ("invalid-json-size-c1", Refused, |b| {
            json0_kill1(b, &|j| j["config"]["json_size"] = json!("8192"))
        }),
        ("invalid-json-size-c2", Refused, |b| {
            let j = read_json(b, 0);
            relayout(b, 32768, &j)
        }),
    ];
    cases.extend(size_cases![
        "metadata-size-32k", false, 32 << 10;
        "metadata-size-64k", false, 64 << 10;
    ]);
    cases.extend([
        (
            "metadata-size-64k-inv-area-c0",
            Refused,
            (|b: &mut Vec<u8>| {
                let j = resized_json(b, 64 << 10, 1, &no_change);
                resized(b, 64 << 10, false, &j)
            }) as Build,
        ),
        ("metadata-size-64k-inv-area-c1", Refused, |b| {
            let j = resized_json(b, 64 << 10, 0, &|j, size| {
                let ks = num(&j["config"]["keyslots_size"]);
                let (_, size7) = area_of(j, "7");
                set_area(j, "7", ks + 2 * size - size7 + 1, size7);
            });
            resized(b, 64 << 10, false, &j)
        }),
        ("metadata-size-64k-inv-keyslots-size-c0", Refused, |b| {
            let j = resized_json(b, 64 << 10, 0, &|j, size| {
                let ks = DATA_OFFSET - 2 * size + 4096;
                j["config"]["keyslots_size"] = json!(ks.to_string());
            });
            resized(b, 64 << 10, false, &j)
        }),
    ]);
    cases.extend(size_cases![
        "metadata-size-128k", false, 128 << 10;
        "metadata-size-256k", false, 256 << 10;
        "metadata-size-512k", false, 512 << 10;
        "metadata-size-1m", false, 1 << 20;
        "metadata-size-2m", false, 2 << 20;
        "metadata-size-4m", false, 4 << 20;
        "metadata-size-16k-secondary", true, 16 << 10;
        "metadata-size-32k-secondary", true, 32 << 10;
        "metadata-size-64k-secondary", true, 64 << 10;
        "metadata-size-128k-secondary", true, 128 << 10;
        "metadata-size-256k-secondary", true, 256 << 10;
        "metadata-size-512k-secondary", true, 512 << 10;
        "metadata-size-1m-secondary", true, 1 << 20;
        "metadata-size-2m-secondary", true, 2 << 20;
        "metadata-size-4m-secondary", true, 4 << 20;
    ]);
    cases.extend([
        (
            "metadata-size-invalid",
            Refused,
            (|b: &mut Vec<u8>| bogus_size(b, false)) as Build,
        ),
        ("metadata-size-invalid-secondary", Refused, |b| {
            bogus_size(b, true)
        }),
        // [7] invalid metadata objects (both copies)
        ("invalid-tokens", Refused, |b| {
            rewrite_json(b, &|j| j["tokens"] = json!(42))
        }),
        ("invalid-top-objects", Refused, |b| {
            rewrite_json(b, &|j| {
                j["tokens"] = json!(42);
                j["digests"] = json!(42);
                j["keyslots"] = json!([]);
                j["segments"] = json!("hi");
            })
        }),
        ("keyslot-invalid-area", Refused, |b| {
            rewrite_json(b, &|j| j["keyslots"]["0"]["area"] = json!(42))
        }),
        ("keyslot-invalid-area-size", Refused, |b| {
            rewrite_json(b, &|j| {
                j["keyslots"]["0"]["area"]["size"] = json!("18446744073709551615");
            })
        }),
        ("keyslot-invalid-objects", Refused, |b| {
            rewrite_json(b, &|j| {
                j["keyslots"]["0"]["kdf"] = json!(42);
                j["keyslots"]["0"]["af"] = json!(42);
            })
        }),
        ("keyslot-invalid-af", Refused, |b| {
            rewrite_json(b, &|j| j["keyslots"]["0"]["af"]["type"] = json!(42))
        }),
        // [8] non-compact JSON (whitespace inside the object)
        ("non-compact-json-token-0", TokenRemove, |b| {
            non_compact(b, false)
        }),
        ("non-compact-json-4k-token-0", TokenRemove, |b| {
            non_compact(b, true)
        }),
        // Beyond the suite: the header file must hold both copies and the keyslots area
        // (cryptsetup's device_check_size on LUKS2_hdr_and_areas_size).
        ("extra-file-shorter-than-keyslots-area", Refused, |b| {
            let j = read_json(b, 0);
            let end = 2 * 16384 + num(&j["config"]["keyslots_size"]) as usize;
            b.truncate(end - 4096)
        }),
        ("extra-file-just-holds-keyslots-area", Loads, |b| {
            let j = read_json(b, 0);
            let end = 2 * 16384 + num(&j["config"]["keyslots_size"]) as usize;
            b.truncate(end)
        }),
    ]);
    cases
}

/// The generators' `corrupted-hdr*-with-correct-chks`: the JSON's closing brace replaced by
/// an unterminated string that fills the whole area; the checksum is right.
fn corrupt_json(b: &mut [u8], at: usize) {
    let mut text = json_bytes(b, at);
    text.pop();
    text.extend(b",\"");
    let len = json_area(b, at).len();
    while text.len() < len {
        text.extend(b"all_work_and_no_play_");
    }
    text.truncate(len);
    edit_json_area(b, at, &|area: &mut [u8]| area.copy_from_slice(&text));
}

/// The generators' `pbkdf2-leftover-params-*`: keyslot 2 (Argon2) named `kdf` with PBKDF2's
/// iterations and hash left over.
fn leftover_pbkdf2(b: &mut [u8], kdf: &str) {
    json0_kill1(b, &|j| {
        let k = &mut j["keyslots"]["2"]["kdf"];
        k["type"] = json!(kdf);
        k["iterations"] = json!(1001);
        k["hash"] = json!("sha256");
    })
}

fn area_of(j: &Value, slot: &str) -> (u64, u64) {
    let a = &j["keyslots"][slot]["area"];
    (num(&a["offset"]), num(&a["size"]))
}

fn set_area(j: &mut Value, slot: &str, offset: u64, size: u64) {
    let a = &mut j["keyslots"][slot]["area"];
    a["offset"] = json!(offset.to_string());
    a["size"] = json!(size.to_string());
}

fn push(list: &mut Value, item: &str) {
    list.as_array_mut().unwrap().push(json!(item));
}

fn segment0(b: &mut [u8], field: &str, v: Value) {
    json0_kill1(b, &|j| j["segments"]["0"][field] = v.clone())
}

fn del_segment0(b: &mut [u8], field: &str) {
    json0_kill1(b, &|j| {
        j["segments"]["0"].as_object_mut().unwrap().remove(field);
    })
}

/// The generators' `metadata-size-invalid*`: 1 MiB copies whose binary header states a bogus
/// size (2 GiB) in the copy that is not killed (checksum over the real 1 MiB).
fn bogus_size(b: &mut [u8], secondary: bool) {
    let size = 1 << 20;
    let j = resized_json(b, size as u64, 0, &no_change);
    relayout(b, size, &j);
    let at = if secondary { size } else { 0 };
    put_be64(b, at + HDR_SIZE, 2 << 30);
    fix_checksum_over(b, at, size);
    kill_copy(b, if secondary { 0 } else { size });
}

/// The generators' `non-compact-json-*`: a token 0 added, and spaces after the first
/// `"type":` (so many, with `pad`, that the text is a whole number of 4 KiB), both copies.
fn non_compact(b: &mut [u8], pad: bool) {
    rewrite_json(b, &|j| {
        j["tokens"]["0"] = json!({"type": "a", "keyslots": []})
    });
    let text = String::from_utf8(json_bytes(b, 0)).unwrap();
    let fill = if pad { 4096 - text.len() % 4096 } else { 1 };
    let text = text.replacen(
        "\"type\":\"luks2\"",
        &format!("\"type\":{}\"luks2\"", " ".repeat(fill)),
        1,
    );
    assert!(!pad || text.len() % 4096 == 0);
    set_json_text(b, text.as_bytes());
}

#[test]
fn luks2_validation_suite_verdicts_match_cryptsetup() {
    let dir = tmpdir();
    let base = base_luks2();
    // The base itself loads in both.
    let mut cases = vec![("base", Loads, (|_: &mut Vec<u8>| {}) as Build)];
    cases.extend(luks2_cases());
    let gaps = run_cases(dir.path(), &base, &cases);
    report("LUKS2 validation", cases.len(), &gaps);
}

// ---- LUKS1: cryptsetup's header checks (lib/luks1/keymanage.c) ----

/// Where keyslot `i`'s entry starts in a LUKS1 header, and its fields within.
fn slot_at(i: usize) -> usize {
    208 + 48 * i
}
const SLOT_OFFSET: usize = 40;
const SLOT_STRIPES: usize = 44;

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn set_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Keyslot `i`'s key material offset, in 512-byte sectors.
fn material(b: &[u8], i: usize) -> u32 {
    be32(b, slot_at(i) + SLOT_OFFSET)
}

fn set_material(b: &mut [u8], i: usize, sectors: u32) {
    set_be32(b, slot_at(i) + SLOT_OFFSET, sectors)
}

/// Sectors of one keyslot's key material for a 256-bit key (4000 stripes).
const MATERIAL_SECTORS: u32 = (32 * 4000u32).div_ceil(512);

/// A LUKS1 header by `cryptsetup luksFormat` (AES-CBC-ESSIV, 256-bit key, payload at sector
/// 4096), keyslot 0 used, padded with zeros to 2 MiB, the shape of cryptsetup's evil_hdr
/// images.
fn base_luks1() -> Vec<u8> {
    let f = Fixture::new().payload_len(1 << 20);
    let mut fmt = vec![
        "luksFormat",
        "--type",
        "luks1",
        "--cipher",
        "aes-cbc-essiv:sha256",
        "--key-size",
        "256",
        "--offset",
        "4096",
        "--key-file",
        s(&f.keyfile),
    ];
    fmt.extend(fast_kdf("pbkdf2"));
    f.cryptsetup(&fmt);
    let mut img = f.read_header();
    assert_eq!(be32(&img, 104), 4096, "payload offset");
    img.resize(2 << 20, 0);
    img
}

/// The checks of `LUKS_check_keyslots` and `LUKS_check_device_size` (for every keyslot, in
/// use or not), one case each, after the evil_hdr images of cryptsetup's tests.
fn luks1_cases() -> Vec<(&'static str, Expect, Build)> {
    vec![
        ("luks1-base", Loads, |_| {}),
        // Two keyslots' material overlap ("Not enough space in LUKS keyslot").
        ("evil-keyslot_overlap", Refused, |b| {
            let at = material(b, 1);
            set_material(b, 7, at)
        }),
        // Material inside the header itself ("Invalid offset 1 in keyslot 2").
        ("evil-luks_hdr_damage", Refused, |b| set_material(b, 2, 1)),
        // Material running into the payload ("Invalid keyslot size … beyond data area").
        ("evil-payload_overwrite", Refused, |b| {
            set_material(b, 3, 4096 - MATERIAL_SECTORS + 1)
        }),
        // The file cannot hold the last keyslot's material, unused as it is ("Device … is
        // too small").
        ("evil-small_luks_device", Refused, |b| {
            let end = (material(b, 7) + MATERIAL_SECTORS) as usize * 512;
            b.truncate(end - 512)
        }),
        // Stripes other than 4000 ("Invalid stripes count 44944 in keyslot 5").
        ("evil-stripes_payload_dmg", Refused, |b| {
            set_be32(b, slot_at(5) + SLOT_STRIPES, 44944)
        }),
        // Material starting at the payload ("beyond data area offset").
        ("extra-keyslot-at-payload", Refused, |b| {
            set_material(b, 6, 4096)
        }),
        // The file just holds the last keyslot: loads.
        ("extra-file-just-holds-keyslots", Loads, |b| {
            let end = (material(b, 7) + MATERIAL_SECTORS) as usize * 512;
            b.truncate(end)
        }),
        // A detached header (payload offset 0) is not checked against the payload.
        ("extra-payload-offset-0", Loads, |b| set_be32(b, 104, 0)),
        // Keyslot material past a payload offset of 1 sector.
        ("extra-payload-offset-1", Refused, |b| set_be32(b, 104, 1)),
        // String fields end at their last byte at the latest: a 40-character UUID is cut.
        ("extra-uuid-not-nul-terminated", Loads, |b| {
            b[168..208].fill(b'7')
        }),
        // Hashes: an unknown one refuses the header, upper case is read.
        ("extra-hash-unknown", Refused, |b| {
            b[72..80].copy_from_slice(b"nohash\0\0")
        }),
        ("extra-hash-upper-case", Loads, |b| {
            b[72..78].copy_from_slice(b"SHA256")
        }),
        // No key bytes, or a version other than 1.
        ("extra-key-bytes-0", Refused, |b| set_be32(b, 108, 0)),
        ("extra-version-0", Refused, |b| {
            b[6..8].copy_from_slice(&[0, 0])
        }),
    ]
}

#[test]
fn luks1_header_checks_match_cryptsetup() {
    let dir = tmpdir();
    let base = base_luks1();
    let cases = luks1_cases();
    let gaps = run_cases(dir.path(), &base, &cases);
    report("LUKS1 header", cases.len(), &gaps);
}

// ---- Foreign signatures over a damaged copy ----

/// Makes `file` (8 MiB of zeros) carry the signature of `tool`, by running the real tool.
fn write_signature(tool: &str, file: &Path) {
    let path = s(file);
    match tool {
        "pvcreate" => {
            let out = run_ok(Command::new("losetup").args(["-f", "--show", path]));
            let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            let made = forking(|| {
                Command::new("pvcreate")
                    .args(["-q", "-y", "--devices", &dev, &dev])
                    .output()
            });
            run_ok(Command::new("losetup").args(["-d", &dev]));
            let made = made.expect("pvcreate (lvm2; make deps installs it)");
            assert!(made.status.success(), "pvcreate: {made:?}");
        }
        "mkswap" => drop(run_ok(Command::new("mkswap").arg(path))),
        "mkfs.ext4" => drop(run_ok(Command::new("mkfs.ext4").args(["-q", "-F", path]))),
        "mkfs.vfat" => drop(run_ok(Command::new("mkfs.vfat").arg(path))),
        other => panic!("no tool {other}"),
    }
}

/// What `blkid -p` says the type of `file` is.
fn blkid_type(file: &Path) -> String {
    let out = forking(|| {
        Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "TYPE"])
            .arg(file)
            .output()
    })
    .expect("blkid");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_foreign_signature_over_the_primary_stops_the_fallback_as_in_cryptsetup() {
    let dir = tmpdir();
    let f = luks_format(&[&["--type", "luks2"][..], &fast_kdf("pbkdf2")].concat());
    let base = f.read_header();
    let mut gaps = Vec::new();
    // (tool, blkid's type of what it wrote, what luksfuse's message names)
    for (tool, blkid, named) in [
        ("pvcreate", "LVM2_member", "LVM2"),
        ("mkswap", "swap", "swap"),
        ("mkfs.ext4", "ext4", "ext2/ext3/ext4"),
        ("mkfs.vfat", "vfat", "FAT"),
    ] {
        let scratch = dir.path().join(format!("{tool}.fs"));
        std::fs::File::create(&scratch)
            .and_then(|f| f.set_len(8 << 20))
            .unwrap();
        write_signature(tool, &scratch);
        assert_eq!(blkid_type(&scratch), blkid, "{tool} wrote no {blkid}");
        // The tool's first 4 KiB over the primary header's binary part.
        let mut img = base.clone();
        img[..4096].copy_from_slice(&std::fs::read(&scratch).unwrap()[..4096]);
        let file = dir.path().join(format!("{tool}.img"));
        write_file(&file, &img);
        let lf = luksfuse_dump(&file);
        let unchanged = std::fs::read(&file).unwrap() == img;
        let cs = cryptsetup(&["luksDump"], &file);
        let mut why = Vec::new();
        if cs.ok || !cs.text.contains("ambiguous signatures") {
            why.push("cryptsetup does not see ambiguous signatures".to_owned());
        }
        why.extend(luksfuse_gap(Refused, &lf, &file));
        if !(lf.text.contains("ambiguous signatures") && lf.text.contains(named)) {
            why.push(format!(
                "luksfuse does not name the ambiguous {named} signature"
            ));
        }
        if !unchanged {
            why.push("luksfuse changed the file".into());
        }
        if !why.is_empty() {
            gaps.push(format!(
                "{tool}: {}\n    cryptsetup: {cs}\n    luksfuse:   {lf}",
                why.join("; ")
            ));
        }
    }
    // Without a signature (the primary just zeroed), both use the secondary copy.
    let mut img = base.clone();
    img[..4096].fill(0);
    let file = dir.path().join("zeroed.img");
    write_file(&file, &img);
    let lf = luksfuse_dump(&file);
    let cs = cryptsetup(&["luksDump"], &file);
    if !(lf.ok && cs.ok) {
        gaps.push(format!(
            "zeroed primary: both should load\n    cryptsetup: {cs}\n    luksfuse:   {lf}"
        ));
    }
    report("foreign-signature", 5, &gaps);
}
