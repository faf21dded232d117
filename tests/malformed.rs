//! The malformed-header table: single mutations of valid LUKS1 and LUKS2 headers made by
//! cryptsetup, each with the outcome it must give. None may panic, none may make us allocate
//! more than a fixed bound (checked by a counting allocator), and none is written back.

mod common;
use common::*;
use luksfuse::luks::{Header, HeaderFile};
use sha2::{Digest, Sha256};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records the largest single allocation made by this test binary.
struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// No single allocation (or memory mapping) while parsing/unlocking a mutated header may
/// exceed this. The honest
/// fixtures need at most 32 MiB (their Argon2 memory cost) plus small buffers.
const ALLOC_BOUND: usize = 40 << 20;

#[derive(Debug)]
enum Expect {
    /// Parses and unlocks with the fixture's passphrase.
    Opens,
    /// Fails with this exit code and a message containing this text.
    Fails(i32, &'static str),
}
use Expect::*;

type Mutation = fn(&mut Vec<u8>);

fn put_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}
fn put_str(b: &mut [u8], off: usize, len: usize, s: &str) {
    b[off..off + len].fill(0);
    b[off..off + s.len()].copy_from_slice(s.as_bytes());
}
/// LUKS1 keyslot field offset: slot `i`, field byte offset `f` within the 48-byte slot.
fn slot(i: usize, f: usize) -> usize {
    208 + 48 * i + f
}

fn luks1_cases() -> Vec<(&'static str, Mutation, Expect)> {
    vec![
        ("luks1_unchanged_opens", |_| {}, Opens),
        ("luks1_bad_magic", |b| b[0] = b'X', Fails(4, "bad magic")),
        (
            "luks1_version_3",
            |b| b[7] = 3,
            Fails(4, "unsupported LUKS version 3"),
        ),
        (
            "luks1_truncated_to_100_bytes",
            |b| b.truncate(100),
            Fails(4, "truncated"),
        ),
        (
            "luks1_truncated_keyslot_material",
            |b| b.truncate(4096 * 4),
            Fails(4, "past the end of the file"),
        ),
        (
            "luks1_cipher_name_not_terminated",
            |b| b[8..40].fill(b'a'),
            Fails(4, "not NUL-terminated"),
        ),
        (
            "luks1_hash_md5",
            |b| put_str(b, 72, 32, "md5"),
            Fails(4, "unsupported hash 'md5'"),
        ),
        (
            "luks1_cipher_null",
            |b| put_str(b, 8, 32, "cipher_null"),
            Fails(4, "no confidentiality"),
        ),
        (
            "luks1_ecb_mode",
            |b| put_str(b, 40, 32, "ecb"),
            Fails(4, "no confidentiality"),
        ),
        (
            "luks1_unknown_cipher_refused_at_unlock",
            |b| put_str(b, 8, 32, "twofish"),
            Fails(4, "unsupported cipher"),
        ),
        (
            "luks1_key_bytes_zero",
            |b| put_be32(b, 108, 0),
            Fails(4, "key size"),
        ),
        (
            "luks1_key_bytes_huge",
            |b| put_be32(b, 108, 0x7fff_ffff),
            Fails(4, "key size"),
        ),
        (
            "luks1_key_bytes_invalid_for_xts",
            |b| put_be32(b, 108, 40),
            Fails(4, "not valid for aes-xts-plain64"),
        ),
        (
            "luks1_slot_state_garbage",
            |b| put_be32(b, slot(0, 0), 0x1234_5678),
            Fails(4, "invalid state"),
        ),
        (
            "luks1_stripes_zero",
            |b| put_be32(b, slot(0, 44), 0),
            Fails(4, "stripes"),
        ),
        (
            "luks1_stripes_huge",
            |b| put_be32(b, slot(0, 44), u32::MAX),
            Fails(4, "stripes"),
        ),
        (
            "luks1_material_over_header",
            |b| put_be32(b, slot(0, 40), 0),
            Fails(4, "overlaps the header"),
        ),
        (
            "luks1_material_offset_huge",
            |b| put_be32(b, slot(0, 40), u32::MAX),
            Fails(4, "past the end of the file"),
        ),
        (
            "luks1_keyslots_overlap",
            |b| {
                let off = u32::from_be_bytes(b[slot(0, 40)..slot(0, 44)].try_into().unwrap());
                put_be32(b, slot(1, 40), off + 8);
            },
            Fails(4, "overlap"),
        ),
        (
            "luks1_iterations_zero",
            |b| put_be32(b, slot(0, 4), 0),
            Fails(4, "iteration count"),
        ),
        (
            "luks1_iterations_absurd",
            |b| put_be32(b, slot(0, 4), u32::MAX),
            Fails(4, "iteration count"),
        ),
        (
            "luks1_digest_iterations_zero",
            |b| put_be32(b, 164, 0),
            Fails(4, "iteration count"),
        ),
        (
            "luks1_payload_offset_inside_keyslots",
            |b| put_be32(b, 104, 16),
            Fails(4, "past the payload offset"),
        ),
        (
            "luks1_digest_corrupt_means_no_key",
            |b| b[112] ^= 1,
            Fails(2, "No key available"),
        ),
        (
            "luks1_key_material_corrupt_means_no_key",
            |b| {
                let off = u32::from_be_bytes(b[slot(0, 40)..slot(0, 44)].try_into().unwrap())
                    as usize
                    * 512;
                b[off + 100] ^= 0x80;
            },
            Fails(2, "No key available"),
        ),
    ]
}

// ---- LUKS2 binary header layout (offsets within each 4096-byte binary header) ----
const HDR_SIZE: usize = 8;
const SEQID: usize = 16;
const CSUM: usize = 448;

fn hdr_size(b: &[u8]) -> usize {
    u64::from_be_bytes(b[HDR_SIZE..HDR_SIZE + 8].try_into().unwrap()) as usize
}

/// Recomputes the SHA-256 checksum of the header copy at `off`.
fn fix_csum(b: &mut [u8], off: usize, size: usize) {
    b[off + CSUM..off + CSUM + 64].fill(0);
    let sum = Sha256::digest(&b[off..off + size]);
    b[off + CSUM..off + CSUM + 32].copy_from_slice(&sum);
}

fn json_of(b: &[u8]) -> serde_json::Value {
    let size = hdr_size(b);
    let area = &b[4096..size];
    let end = area.iter().position(|&c| c == 0).unwrap();
    serde_json::from_slice(&area[..end]).unwrap()
}

/// Replaces the JSON metadata of both copies with `text` and recomputes both checksums.
fn set_json_text(b: &mut [u8], text: &[u8]) {
    let size = hdr_size(b);
    for off in [0, size] {
        let area = &mut b[off + 4096..off + size];
        area.fill(0);
        area[..text.len()].copy_from_slice(text);
        fix_csum(b, off, size);
    }
}

/// Edits the JSON metadata of both copies (valid checksums: only the content is hostile).
fn edit_json(b: &mut [u8], f: impl FnOnce(&mut serde_json::Value)) {
    let mut j = json_of(b);
    f(&mut j);
    set_json_text(b, serde_json::to_string(&j).unwrap().as_bytes());
}

fn luks2_cases() -> Vec<(&'static str, Mutation, Expect)> {
    vec![
        ("luks2_unchanged_opens", |_| {}, Opens),
        (
            "luks2_bad_primary_magic_uses_secondary",
            |b| b[0] = b'X',
            Opens,
        ),
        (
            "luks2_bad_primary_checksum_uses_secondary",
            |b| b[CSUM] ^= 1,
            Opens,
        ),
        (
            "luks2_damaged_primary_json_uses_secondary",
            |b| b[4096 + 10] = b'#',
            Opens,
        ),
        (
            "luks2_newer_secondary_wins",
            |b| {
                // Secondary with a higher seqid and a second (fake) label: it must be the one used.
                let size = hdr_size(b);
                let seq = u64::from_be_bytes(b[size + SEQID..size + SEQID + 8].try_into().unwrap());
                b[size + SEQID..size + SEQID + 8].copy_from_slice(&(seq + 1).to_be_bytes());
                fix_csum(b, size, size);
            },
            Opens,
        ),
        (
            "luks2_both_checksums_bad",
            |b| {
                let size = hdr_size(b);
                b[CSUM] ^= 1;
                b[size + CSUM] ^= 1;
            },
            Fails(
                4,
                "both LUKS2 header copies are damaged (primary: checksum mismatch",
            ),
        ),
        (
            "luks2_both_magics_bad",
            |b| {
                let size = hdr_size(b);
                b[0] = b'X';
                b[size] = b'X';
            },
            Fails(4, "not a LUKS header (bad magic)"),
        ),
        (
            "luks2_truncated_to_2k",
            |b| b.truncate(2048),
            Fails(4, "file too short"),
        ),
        (
            "luks2_version_3",
            |b| {
                let size = hdr_size(b);
                b[7] = 3;
                b[size + 7] = 3;
                fix_csum(b, 0, size);
                fix_csum(b, size, size);
            },
            Fails(4, "unsupported LUKS version 3"),
        ),
        (
            "luks2_json_not_json",
            |b| set_json_text(b, b"{not json"),
            Fails(4, "JSON metadata does not parse"),
        ),
        (
            "luks2_unknown_mandatory_requirement",
            |b| {
                edit_json(b, |j| {
                    j["config"]["requirements"] =
                        serde_json::json!({"mandatory": ["future-feature"]});
                })
            },
            Fails(4, "unknown mandatory LUKS2 requirement 'future-feature'"),
        ),
        (
            "luks2_reencryption_in_progress",
            |b| {
                edit_json(b, |j| {
                    j["config"]["requirements"] =
                        serde_json::json!({"mandatory": ["online-reencrypt-v2"]});
                })
            },
            Fails(4, "reencryption is in progress"),
        ),
        (
            "luks2_cipher_null_segment",
            |b| {
                edit_json(b, |j| {
                    j["segments"]["0"]["encryption"] = "cipher_null-ecb".into();
                })
            },
            Fails(
                4,
                "segment 0: cipher 'cipher_null-ecb' gives no confidentiality",
            ),
        ),
        (
            "luks2_cipher_null_keyslot",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["area"]["encryption"] = "cipher_null-ecb".into();
                })
            },
            Fails(
                4,
                "keyslot 0 area: cipher 'cipher_null-ecb' gives no confidentiality",
            ),
        ),
        (
            "luks2_integrity_segment",
            |b| {
                edit_json(b, |j| {
                    j["segments"]["0"]["integrity"] = serde_json::json!({"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"});
                })
            },
            Fails(4, "dm-integrity"),
        ),
        (
            "luks2_segment_type_linear",
            |b| {
                edit_json(b, |j| {
                    j["segments"]["0"]["type"] = "linear".into();
                })
            },
            Fails(4, "segment type 'linear' is not supported"),
        ),
        (
            "luks2_sector_size_1000",
            |b| {
                edit_json(b, |j| {
                    j["segments"]["0"]["sector_size"] = 1000.into();
                })
            },
            Fails(4, "sector size 1000 is not a power of two"),
        ),
        (
            "luks2_sector_size_8192",
            |b| {
                edit_json(b, |j| {
                    j["segments"]["0"]["sector_size"] = 8192.into();
                })
            },
            Fails(4, "'sector_size' = 8192 out of range"),
        ),
        (
            "luks2_keyslot_area_beyond_file",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["area"]["offset"] = "1099511627776".into();
                })
            },
            Fails(4, "past the keyslots area end"),
        ),
        (
            "luks2_keyslot_area_over_json",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["area"]["offset"] = "4096".into();
                })
            },
            Fails(4, "overlaps the LUKS2 header copies"),
        ),
        (
            "luks2_keyslot_area_offset_not_a_number",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["area"]["offset"] = "12a".into();
                })
            },
            Fails(4, "'12a' is not a decimal number"),
        ),
        (
            "luks2_keyslots_overlap",
            |b| {
                edit_json(b, |j| {
                    let k0 = j["keyslots"]["0"].clone();
                    j["keyslots"]["1"] = k0;
                })
            },
            Fails(4, "keyslot areas of keyslots 0 and 1 overlap"),
        ),
        (
            "luks2_argon2_memory_absurd",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["kdf"]["memory"] = 4_000_000_000u64.into();
                })
            },
            Fails(3, "Argon2 memory cost 4000000000 KiB over the limit"),
        ),
        (
            "luks2_argon2_time_absurd",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["kdf"]["time"] = 4_000_000_000u64.into();
                })
            },
            Fails(4, "Argon2 time cost 4000000000 out of range"),
        ),
        (
            "luks2_argon2_lanes_zero",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["kdf"]["cpus"] = 0.into();
                })
            },
            Fails(4, "'cpus' = 0 out of range"),
        ),
        (
            "luks2_af_stripes_zero",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["af"]["stripes"] = 0.into();
                })
            },
            Fails(4, "'stripes' = 0 out of range"),
        ),
        (
            "luks2_key_size_huge",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["key_size"] = 1_000_000_000u64.into();
                })
            },
            Fails(4, "'key_size' = 1000000000 out of range"),
        ),
        (
            "luks2_salt_not_base64",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["kdf"]["salt"] = "!!!".into();
                })
            },
            Fails(4, "'salt' is not valid base64"),
        ),
        (
            "luks2_unknown_kdf",
            |b| {
                edit_json(b, |j| {
                    j["keyslots"]["0"]["kdf"]["type"] = "scrypt".into();
                })
            },
            Fails(4, "unknown KDF type 'scrypt'"),
        ),
        (
            "luks2_digest_corrupt_means_no_key",
            |b| {
                edit_json(b, |j| {
                    j["digests"]["0"]["digest"] =
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
                })
            },
            Fails(2, "No key available"),
        ),
        (
            "luks2_invalid_primary_hdr_size_uses_secondary",
            |b| {
                b[HDR_SIZE..HDR_SIZE + 8].copy_from_slice(&12345u64.to_be_bytes());
            },
            Opens,
        ),
        (
            "luks2_invalid_hdr_size_in_both_copies",
            |b| {
                let size = hdr_size(b);
                b[HDR_SIZE..HDR_SIZE + 8].copy_from_slice(&12345u64.to_be_bytes());
                b[size + HDR_SIZE..size + HDR_SIZE + 8].copy_from_slice(&12345u64.to_be_bytes());
            },
            Fails(4, "damaged"),
        ),
    ]
}

fn run_table(fixture: &Fixture, cases: Vec<(&'static str, Mutation, Expect)>) -> Vec<String> {
    let original = std::fs::read(&fixture.header).unwrap();
    let mut failures = Vec::new();
    for (name, mutate, expect) in cases {
        let mut bytes = original.clone();
        mutate(&mut bytes);
        let path = fixture.path(&format!("{name}.img"));
        write_file(&path, &bytes);
        LARGEST.store(0, Ordering::Relaxed);
        luksfuse::testing_support::take_largest_mapping();
        let outcome = std::panic::catch_unwind(|| {
            let file = HeaderFile::open(&path)?;
            let header = Header::parse(&file)?;
            header.unlock(&file, PASS, None).map(|_| ())
        });
        // Argon2's work area is mapped directly, not taken from the allocator: count both.
        let largest = LARGEST
            .load(Ordering::Relaxed)
            .max(luksfuse::testing_support::take_largest_mapping());
        if std::env::var_os("TABLE_DEBUG").is_some() {
            if let Ok(r) = &outcome {
                eprintln!("{name}: {:?}", r.as_ref().map_err(|e| e.to_string()));
            }
        }
        let got = match outcome {
            Err(_) => {
                failures.push(format!("{name}: PANICKED"));
                continue;
            }
            Ok(r) => r,
        };
        if largest > ALLOC_BOUND {
            failures.push(format!("{name}: allocated {largest} bytes at once"));
        }
        match (&expect, &got) {
            (Opens, Ok(())) => {}
            (Fails(code, text), Err(e))
                if e.exit_code() == *code && e.to_string().contains(text) => {}
            _ => failures.push(format!(
                "{name}: expected {expect:?}, got {:?}",
                got.map_err(|e| (e.exit_code(), e.to_string()))
            )),
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: file changed");
    }
    failures
}

#[test]
fn malformed_header_table() {
    let l1 = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("argon2id"));
    let l2 = luks_format(&args);
    let c1 = luks1_cases();
    let c2 = luks2_cases();
    let total = c1.len() + c2.len();
    assert!(total >= 40, "the table has {total} cases");
    let mut failures = run_table(&l1, c1);
    failures.extend(run_table(&l2, c2));
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
