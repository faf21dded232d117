//! The malformed-header table, the one table of header mutations: single mutations of valid
//! LUKS1 and LUKS2 headers made by cryptsetup, each with the outcome it must give. None may
//! panic, none may make us allocate more than a fixed bound (checked by a counting allocator),
//! and none is written back. LUKS2 rows edit the image with the helpers of
//! `common::luks2_surgery`, most of them its JSON through `rewrite_json`.

mod common;
use common::*;
use luksfuse::luks::{Header, HeaderFile};
use serde_json::json;
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
    /// Fails (parsing or unlocking) with this exit code and a message containing this text.
    Fails(i32, &'static str),
    /// `Header::parse` itself refuses it, with this exit code and its message (without the
    /// file name) containing this text.
    Refused(i32, &'static str),
}
use Expect::*;

/// Where a case failed.
#[derive(Debug)]
enum Stage {
    Open,
    Parse,
    Unlock,
}

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
            // As cryptsetup, the field's last byte ends it: the header loads, the cipher
            // (31 'a's) is unknown.
            Fails(
                4,
                "unsupported cipher 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-xts-plain64'",
            ),
        ),
        (
            "luks1_hash_wp256",
            |b| put_str(b, 72, 32, "wp256"),
            Fails(4, "unsupported hash 'wp256'"),
        ),
        (
            "luks1_cipher_null",
            |b| put_str(b, 8, 32, "cipher_null"),
            Fails(4, "is refused: "),
        ),
        (
            "luks1_ecb_mode",
            |b| put_str(b, 40, 32, "ecb"),
            Fails(4, "is refused: "),
        ),
        (
            "luks1_unknown_cipher_refused_at_unlock",
            |b| put_str(b, 8, 32, "blowfish"),
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
                let next = seqid(b, size) + 1;
                set_seqid(b, size, next);
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
                fix_checksum(b, 0);
                fix_checksum(b, size);
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
                rewrite_json(b, &|j| {
                    j["config"]["requirements"] = json!({"mandatory": ["future-feature"]});
                })
            },
            Fails(1, "unknown mandatory requirement 'future-feature'"),
        ),
        (
            "luks2_reencryption_in_progress",
            |b| {
                rewrite_json(b, &|j| {
                    j["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]});
                })
            },
            // cryptsetup's validate_reencrypt_segments: no backup segments (both copies).
            Refused(4, "'backup-final' or 'backup-previous' segment is missing"),
        ),
        (
            "luks2_cipher_null_segment",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["encryption"] = "cipher_null-ecb".into();
                })
            },
            Fails(
                4,
                "segment 0: cipher 'cipher_null-ecb' is refused: it encrypts nothing",
            ),
        ),
        (
            "luks2_cipher_null_keyslot",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["encryption"] = "cipher_null-ecb".into();
                })
            },
            Fails(
                1,
                "cipher 'cipher_null-ecb' is refused: it encrypts nothing",
            ),
        ),
        (
            "luks2_integrity_segment",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["integrity"] = json!({"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"});
                })
            },
            Fails(4, "dm-integrity"),
        ),
        (
            "luks2_segment_type_linear",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["type"] = "linear".into();
                })
            },
            Fails(4, "segment 0 is of type 'linear'"),
        ),
        (
            "luks2_sector_size_1000",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["sector_size"] = 1000.into();
                })
            },
            Fails(4, "sector size 1000 is not a power of two"),
        ),
        (
            "luks2_sector_size_8192",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["sector_size"] = 8192.into();
                })
            },
            Refused(4, "'sector_size' = 8192 out of range"),
        ),
        (
            "luks2_keyslot_area_beyond_file",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["offset"] = "1099511627776".into();
                })
            },
            Fails(4, "past the keyslots area end"),
        ),
        (
            "luks2_keyslot_area_over_json",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["offset"] = "4096".into();
                })
            },
            Fails(4, "overlaps the LUKS2 header copies"),
        ),
        (
            "luks2_keyslot_area_offset_not_a_number",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["offset"] = "12a".into();
                })
            },
            Fails(4, "'12a' is not a decimal number"),
        ),
        (
            "luks2_keyslots_overlap",
            |b| {
                rewrite_json(b, &|j| {
                    let k0 = j["keyslots"]["0"].clone();
                    j["keyslots"]["1"] = k0;
                })
            },
            Refused(4, "keyslot areas of keyslots 0 and 1 overlap"),
        ),
        (
            "luks2_argon2_memory_absurd",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["memory"] = 4_000_000_000u64.into();
                })
            },
            Fails(3, "Argon2 memory cost 4000000000 KiB over the limit"),
        ),
        (
            "luks2_argon2_time_absurd",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["time"] = 4_000_000_000u64.into();
                })
            },
            Fails(1, "Argon2 time cost 4000000000 out of range"),
        ),
        (
            "luks2_argon2_lanes_zero",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["cpus"] = 0.into();
                })
            },
            Fails(1, "'cpus' = 0 out of range"),
        ),
        (
            "luks2_af_stripes_zero",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["af"]["stripes"] = 0.into();
                })
            },
            Fails(1, "'stripes' = 0 out of range"),
        ),
        (
            "luks2_key_size_huge",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["key_size"] = 1_000_000_000u64.into();
                })
            },
            Fails(4, "key size 8000000000 bits is not valid"),
        ),
        (
            "luks2_salt_not_base64",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["salt"] = "!!!".into();
                })
            },
            Fails(1, "'salt' is not valid base64"),
        ),
        (
            "luks2_unknown_kdf",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["type"] = "scrypt".into();
                })
            },
            Fails(1, "unknown KDF type 'scrypt'"),
        ),
        (
            "luks2_digest_corrupt_means_no_key",
            |b| {
                rewrite_json(b, &|j| {
                    j["digests"]["0"]["digest"] =
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
                })
            },
            Fails(2, "No key available"),
        ),
        (
            "luks2_invalid_primary_hdr_size_uses_secondary",
            |b| {
                put_be64(b, HDR_SIZE, 12345);
            },
            Opens,
        ),
        (
            "luks2_invalid_hdr_size_in_both_copies",
            |b| {
                let size = hdr_size(b);
                put_be64(b, HDR_SIZE, 12345);
                put_be64(b, size + HDR_SIZE, 12345);
            },
            Fails(4, "damaged"),
        ),
        (
            "luks2_json_size_mismatch",
            |b| rewrite_json(b, &|j| j["config"]["json_size"] = json!("4096")),
            Refused(4, "does not match header size"),
        ),
        (
            "luks2_keyslots_size_unaligned",
            |b| rewrite_json(b, &|j| j["config"]["keyslots_size"] = json!("4097")),
            Refused(4, "not a multiple of 4096"),
        ),
        (
            "luks2_ecb_segment",
            |b| rewrite_json(b, &|j| j["segments"]["0"]["encryption"] = json!("aes-ecb")),
            Fails(4, "is refused: "),
        ),
        (
            "luks2_unknown_cipher",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["encryption"] = json!("blowfish-xts-plain64")
                })
            },
            Fails(4, "unsupported cipher"),
        ),
        (
            "luks2_two_segments",
            |b| {
                rewrite_json(b, &|j| {
                    let s = j["segments"]["0"].clone();
                    j["segments"]["1"] = s;
                })
            },
            Refused(4, "only the last segment may have size 'dynamic'"),
        ),
        (
            "luks2_no_segment",
            |b| rewrite_json(b, &|j| j["segments"] = json!({})),
            Refused(4, "no data segment"),
        ),
        (
            "luks2_integrity",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["integrity"] = json!({"type": "hmac(sha256)"})
                })
            },
            Fails(4, "dm-integrity"),
        ),
        (
            "luks2_sector_size_1025",
            |b| rewrite_json(b, &|j| j["segments"]["0"]["sector_size"] = json!(1025)),
            Refused(4, "power of two"),
        ),
        (
            "luks2_segment_offset_overflow",
            |b| {
                rewrite_json(b, &|j| {
                    j["segments"]["0"]["offset"] = json!("18446744073709551616")
                })
            },
            Refused(4, "does not fit in 64 bits"),
        ),
        (
            "luks2_segment_offset_not_decimal",
            |b| rewrite_json(b, &|j| j["segments"]["0"]["offset"] = json!("0x10")),
            Refused(4, "not a decimal number"),
        ),
        (
            "luks2_reencrypt_keyslot",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["type"] = json!("reencrypt")),
            // cryptsetup's reenc_keyslot_validate: key_size must be 1.
            Refused(4, "reencryption keyslot key size 64, must be 1"),
        ),
        (
            "luks2_af_type",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["af"]["type"] = json!("luks2")),
            Refused(4, "AF type 'luks2'"),
        ),
        (
            "luks2_area_type",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["type"] = json!("journal")
                })
            },
            Refused(4, "area type 'journal'"),
        ),
        (
            "luks2_digest_type",
            |b| rewrite_json(b, &|j| j["digests"]["0"]["type"] = json!("argon2")),
            Fails(1, "digest 0 is of type 'argon2'"),
        ),
        (
            "luks2_stripes_absurd",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["af"]["stripes"] = json!(4_000_000_000u32)
                })
            },
            Fails(1, "out of range"),
        ),
        (
            "luks2_key_size_0",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["key_size"] = json!(0)),
            Fails(4, "key size 0 bits is not valid"),
        ),
        (
            "luks2_key_size_513",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["key_size"] = json!(513)),
            Fails(4, "key size 4104 bits is not valid"),
        ),
        (
            "luks2_key_size_negative",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["key_size"] = json!(-64)),
            Refused(4, "not a non-negative integer"),
        ),
        (
            "luks2_salt_not_base64",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["salt"] = json!("!!not base64!!")
                })
            },
            Fails(1, "not valid base64"),
        ),
        (
            "luks2_salt_too_short",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["kdf"]["salt"] = json!("AAAAAAAAAAAAAAAAAAAAAA==")
                })
            },
            Fails(1, "salt of 16 bytes"),
        ),
        (
            "luks2_digest_not_base64",
            |b| rewrite_json(b, &|j| j["digests"]["0"]["digest"] = json!("%%%")),
            Refused(4, "not valid base64"),
        ),
        (
            "luks2_area_over_the_headers",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["offset"] = json!("16384")
                })
            },
            Refused(4, "overlaps the LUKS2 header copies"),
        ),
        (
            "luks2_area_past_keyslots_area",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["offset"] = json!("16773120")
                })
            },
            Refused(4, "past the keyslots area end"),
        ),
        (
            "luks2_area_too_small",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["area"]["size"] = json!("4096")),
            Fails(1, "too small"),
        ),
        (
            "luks2_area_offset_overflow",
            |b| {
                rewrite_json(b, &|j| {
                    j["keyslots"]["0"]["area"]["offset"] = json!("18446744073709551615")
                })
            },
            Refused(4, "overflows"),
        ),
        (
            "luks2_keyslot_id_32",
            |b| {
                rewrite_json(b, &|j| {
                    let k = j["keyslots"]["0"].take();
                    j["keyslots"] = json!({"32": k});
                })
            },
            Refused(4, "invalid keyslot id '32'"),
        ),
        (
            "luks2_keyslot_id_not_decimal",
            |b| {
                rewrite_json(b, &|j| {
                    let k = j["keyslots"]["0"].take();
                    j["keyslots"] = json!({"a": k});
                })
            },
            Refused(4, "invalid keyslot id 'a'"),
        ),
        (
            "luks2_digest_names_missing_keyslot",
            |b| rewrite_json(b, &|j| j["digests"]["0"]["keyslots"] = json!(["0", "5"])),
            Refused(4, "keyslot 5, which does not exist"),
        ),
        (
            "luks2_absurd_argon2_memory",
            |b| {
                rewrite_json(
                    b,
                    &|j| j["keyslots"]["0"]["kdf"] = json!({"type": "argon2id", "time": 4, "memory": 4294967295u32, "cpus": 4, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
                )
            },
            Fails(3, "over the limit"),
        ),
        (
            "luks2_absurd_argon2_time",
            |b| {
                rewrite_json(
                    b,
                    &|j| j["keyslots"]["0"]["kdf"] = json!({"type": "argon2i", "time": 4294967295u32, "memory": 1024, "cpus": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
                )
            },
            Fails(1, "time cost"),
        ),
        (
            "luks2_absurd_pbkdf2_iterations",
            |b| {
                rewrite_json(b, &|j| {
                    // The fixture's keyslot is Argon2id: made a PBKDF2 one whole.
                    j["keyslots"]["0"]["kdf"] = json!({"type": "pbkdf2", "hash": "sha256", "iterations": 4294967295u32, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
                })
            },
            Fails(1, "iteration count"),
        ),
        (
            "luks2_unknown_hash",
            |b| rewrite_json(b, &|j| j["keyslots"]["0"]["af"]["hash"] = json!("wp256")),
            Fails(1, "unsupported hash 'wp256'"),
        ),
        (
            "luks2_missing_config",
            |b| {
                rewrite_json(b, &|j| {
                    j.as_object_mut().unwrap().remove("config");
                })
            },
            Refused(4, "missing 'config'"),
        ),
        (
            "luks2_metadata_not_an_object",
            |b| rewrite_json(b, &|j| *j = json!([1, 2])),
            // As cryptsetup's validate_json_area: the area must open with '{'.
            Refused(4, "JSON area starts with byte 0x5b, not '{'"),
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
            let file = HeaderFile::open(&path).map_err(|e| (Stage::Open, e))?;
            let header = Header::parse(&file).map_err(|e| (Stage::Parse, e))?;
            // What `mount` refuses before it asks for the key (a segment it cannot map).
            header.mappable().map_err(|e| (Stage::Unlock, e))?;
            header
                .unlock(&file, PASS, None)
                .map(|_| ())
                .map_err(|e| (Stage::Unlock, e))
        });
        // Argon2's work area is mapped directly, not taken from the allocator: count both.
        let largest = LARGEST
            .load(Ordering::Relaxed)
            .max(luksfuse::testing_support::take_largest_mapping());
        if std::env::var_os("TABLE_DEBUG").is_some() {
            if let Ok(r) = &outcome {
                eprintln!(
                    "{name}: {:?}",
                    r.as_ref().map_err(|(s, e)| (s, e.to_string()))
                );
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
            (Fails(code, text), Err((_, e)))
                if e.exit_code() == *code && e.to_string().contains(text) => {}
            (Refused(code, text), Err((Stage::Parse, e)))
                if e.exit_code() == *code && e.message().contains(text) => {}
            _ => failures.push(format!(
                "{name}: expected {expect:?}, got {:?}",
                got.map_err(|(s, e)| (s, e.exit_code(), e.to_string()))
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
