//! LUKS2 headers made by cryptsetup: unlocking, choosing between the two header copies,
//! the dump, and refusal of damaged or unsupported metadata.

mod common;

use common::*;
use luksfuse::luks::luks2::binary::Copy;
use luksfuse::luks::Header;
use serde_json::{json, Value};

macro_rules! need_cryptsetup {
    () => {
        // `make test` installs cryptsetup: a missing peer is a failure, not a skip.
        assert!(
            have_cryptsetup(),
            "cryptsetup is not installed (run make deps)"
        );
    };
}

const FAST_PBKDF2: &[&str] = &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

/// Formats with `args`, then checks our volume key equals cryptsetup's and the segment.
fn unlock_matches_cryptsetup(args: &[&str], sector: u32) {
    let s = Scratch::new();
    let sector_arg = sector.to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--sector-size", &sector_arg]);
    s.luks2_format(&all);
    let img = s.read_header();
    let h = Header::parse(&img).unwrap();
    assert_eq!(h.version(), 2);
    let u = h.unlock(&img, PASSPHRASE, None).unwrap();
    assert_eq!(u.slot, 0);
    assert_eq!(u.key.as_bytes(), s.volume_key().as_slice());
    let seg = h.segment();
    assert_eq!(seg.sector_size.get(), sector);
    assert_eq!(seg.cipher.as_str(), "aes-xts-plain64");
    assert_eq!(seg.key_size, 64);
    assert_eq!(
        (seg.offset.get(), seg.size, seg.iv_tweak.get()),
        (0, None, 0)
    );
    let e = h.unlock(&img, b"wrong", None).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn luks2_pbkdf2_sha256_unlocks_with_cryptsetups_volume_key() {
    need_cryptsetup!();
    for sector in [512, 4096] {
        unlock_matches_cryptsetup(&[FAST_PBKDF2, &["--hash", "sha256"]].concat(), sector);
    }
}

#[test]
fn luks2_pbkdf2_sha512_unlocks_with_cryptsetups_volume_key() {
    need_cryptsetup!();
    for sector in [512, 4096] {
        unlock_matches_cryptsetup(&[FAST_PBKDF2, &["--hash", "sha512"]].concat(), sector);
    }
}

#[test]
fn luks2_argon2i_unlocks_with_cryptsetups_volume_key() {
    need_cryptsetup!();
    for sector in [512, 4096] {
        unlock_matches_cryptsetup(&fast_kdf("argon2i"), sector);
    }
}

#[test]
fn luks2_argon2id_unlocks_with_cryptsetups_volume_key() {
    need_cryptsetup!();
    for sector in [512, 4096] {
        unlock_matches_cryptsetup(&fast_kdf("argon2id"), sector);
    }
}

/// A fast pbkdf2 header and its image bytes.
fn fast_image() -> (Scratch, Vec<u8>) {
    let s = Scratch::new();
    s.luks2_format(FAST_PBKDF2);
    let img = s.read_header();
    (s, img)
}

fn luks2(h: &Header) -> &luksfuse::luks::luks2::Luks2 {
    match h {
        Header::Luks2(l) => l,
        Header::Luks1(_) => panic!("expected LUKS2"),
    }
}

fn opens_with(img: &dyn luksfuse::luks::ReadAt, key: &[u8]) -> Header {
    let h = Header::parse(img).unwrap();
    let u = h.unlock(img, PASSPHRASE, None).unwrap();
    assert_eq!(u.key.as_bytes(), key);
    h
}

#[test]
fn luks2_damaged_primary_json_uses_secondary() {
    need_cryptsetup!();
    let (s, mut img) = fast_image();
    let key = s.volume_key();
    // Garbage in the primary JSON area, checksum left stale.
    img[4096..4200].fill(b'x');
    let h = opens_with(&img, &key);
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
    // The same with a recomputed checksum: the JSON itself no longer parses.
    fix_checksum(&mut img, 0);
    let h = opens_with(&img, &key);
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
}

#[test]
fn luks2_bad_primary_magic_uses_secondary() {
    need_cryptsetup!();
    let (s, mut img) = fast_image();
    img[..6].fill(0);
    let h = opens_with(&img, &s.volume_key());
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
}

#[test]
fn luks2_invalid_primary_metadata_uses_secondary() {
    need_cryptsetup!();
    let (s, mut img) = fast_image();
    rewrite_copy_json(&mut img, 0, &|j| j["config"]["json_size"] = json!("4096"));
    let h = opens_with(&img, &s.volume_key());
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
}

#[test]
fn luks2_higher_seqid_wins() {
    need_cryptsetup!();
    let (s, mut img) = fast_image();
    let key = s.volume_key();
    let hs = hdr_size(&img);
    let seq = luks2(&Header::parse(&img).unwrap()).seqid();
    set_seqid(&mut img, hs, seq + 1);
    let h = opens_with(&img, &key);
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
    assert_eq!(luks2(&h).seqid(), seq + 1);
    set_seqid(&mut img, 0, seq + 2);
    let h = opens_with(&img, &key);
    assert_eq!(luks2(&h).header_copy(), Copy::Primary);
}

#[test]
fn luks2_unsupported_newer_primary_is_not_replaced_by_older_secondary() {
    need_cryptsetup!();
    let (_s, mut img) = fast_image();
    rewrite_copy_json(&mut img, 0, &|j| {
        j["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]})
    });
    let e = Header::parse(&img).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("reencryption is in progress"), "{e}");
}

#[test]
fn luks2_both_copies_damaged_is_exit_4() {
    need_cryptsetup!();
    let (s, mut img) = fast_image();
    let hs = hdr_size(&img);
    img[5000] ^= 1;
    img[hs + 5000] ^= 1;
    let e = Header::parse(&img).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(
        e.message().contains("both LUKS2 header copies are damaged"),
        "{e}"
    );
    // Through a file too.
    let p = write(s.dir.path(), "broken.img", &img);
    let f = luksfuse::luks::HeaderFile::open(&p).unwrap();
    assert_eq!(Header::parse(&f).unwrap_err().exit_code(), 4);
}

#[test]
fn luks2_dump_matches_cryptsetup_luksdump() {
    need_cryptsetup!();
    let s = Scratch::new();
    s.luks2_format(
        &[
            FAST_PBKDF2,
            &[
                "--hash",
                "sha512",
                "--label",
                "my label",
                "--subsystem",
                "sub",
                "--luks2-metadata-size",
                "64k",
                "--luks2-keyslots-size",
                "2m",
            ],
        ]
        .concat(),
    );
    std::fs::write(s.path("pass2"), b"second").unwrap();
    let (pass, pass2) = (s.path("pass"), s.path("pass2"));
    s.cryptsetup(&[
        "luksAddKey",
        "--key-file",
        pass.to_str().unwrap(),
        "--pbkdf",
        "argon2i",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-memory",
        "32768",
        "--new-keyfile",
        pass2.to_str().unwrap(),
    ]);
    s.cryptsetup(&["config", "--priority", "prefer", "--key-slot", "1"]);
    s.cryptsetup_then(
        &[
            "luksAddKey",
            "--unbound",
            "--key-size",
            "256",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
        ],
        &[pass2.to_str().unwrap()],
    );
    let img = s.read_header();
    let h = Header::parse(&img).unwrap();
    assert_eq!(h.dump(), s.cryptsetup(&["luksDump"]));
    let j = h.dump_json();
    assert_eq!(j["label"], "my label");
    assert_eq!(j["metadata"]["keyslots"]["1"]["priority"], 2);
}

#[test]
fn luks2_priorities_order_and_unbound_keyslots() {
    need_cryptsetup!();
    let s = Scratch::new();
    s.luks2_format(FAST_PBKDF2);
    let pass = s.path("pass");
    for _ in 0..2 {
        s.cryptsetup(&[
            "luksAddKey",
            "--key-file",
            pass.to_str().unwrap(),
            "--new-keyfile",
            pass.to_str().unwrap(),
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
        ]);
    }
    s.cryptsetup(&["config", "--priority", "prefer", "--key-slot", "2"]);
    s.cryptsetup(&["config", "--priority", "ignore", "--key-slot", "0"]);
    s.cryptsetup_then(
        &[
            "luksAddKey",
            "--unbound",
            "--key-size",
            "256",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
        ],
        &[pass.to_str().unwrap()],
    );
    let img = s.read_header();
    let key = s.volume_key();
    let h = Header::parse(&img).unwrap();
    assert_eq!(h.slots_to_try(), vec![2, 1]);
    assert!(h.slot_active(0) && h.slot_active(3) && !h.slot_active(4));
    assert_eq!(h.unlock(&img, PASSPHRASE, None).unwrap().slot, 2);
    let u = h.unlock(&img, PASSPHRASE, Some(0)).unwrap();
    assert_eq!((u.slot, u.key.as_bytes()), (0, key.as_slice()));
    let e = h.unlock(&img, PASSPHRASE, Some(3)).unwrap_err();
    assert!(e.message().contains("unbound"), "{e}");
    assert_eq!(
        h.unlock(&img, PASSPHRASE, Some(7)).unwrap_err().exit_code(),
        2
    );
    assert_eq!(h.segment().key_size, 64);
}

type Mutation = fn(&mut Value);

/// Single mutations of a valid header (applied to both copies, checksums fixed), each refused
/// with its exit code and a message naming the reason.
const MUTATIONS: &[(&str, Mutation, i32, &str)] = &[
    (
        "unknown requirement",
        |j| j["config"]["requirements"] = json!({"mandatory": ["future-feature"]}),
        4,
        "unknown mandatory LUKS2 requirement 'future-feature'",
    ),
    (
        "reencryption requirement",
        |j| j["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]}),
        4,
        "reencryption is in progress",
    ),
    (
        "json_size mismatch",
        |j| j["config"]["json_size"] = json!("4096"),
        4,
        "does not match header size",
    ),
    (
        "keyslots_size unaligned",
        |j| j["config"]["keyslots_size"] = json!("4097"),
        4,
        "not a multiple of 4096",
    ),
    (
        "cipher_null segment",
        |j| j["segments"]["0"]["encryption"] = json!("cipher_null-ecb"),
        4,
        "no confidentiality",
    ),
    (
        "ecb segment",
        |j| j["segments"]["0"]["encryption"] = json!("aes-ecb"),
        4,
        "no confidentiality",
    ),
    (
        "cipher_null keyslot",
        |j| j["keyslots"]["0"]["area"]["encryption"] = json!("cipher_null-ecb"),
        4,
        "no confidentiality",
    ),
    (
        "unknown cipher",
        |j| j["segments"]["0"]["encryption"] = json!("serpent-xts-plain64"),
        4,
        "unsupported cipher",
    ),
    (
        "linear segment",
        |j| j["segments"]["0"]["type"] = json!("linear"),
        4,
        "segment type 'linear'",
    ),
    (
        "two segments",
        |j| {
            let s = j["segments"]["0"].clone();
            j["segments"]["1"] = s;
        },
        4,
        "2 data segments",
    ),
    (
        "no segment",
        |j| j["segments"] = json!({}),
        4,
        "no data segment",
    ),
    (
        "integrity",
        |j| j["segments"]["0"]["integrity"] = json!({"type": "hmac(sha256)"}),
        4,
        "dm-integrity",
    ),
    (
        "sector size 1024+1",
        |j| j["segments"]["0"]["sector_size"] = json!(1025),
        4,
        "power of two",
    ),
    (
        "sector size 8192",
        |j| j["segments"]["0"]["sector_size"] = json!(8192),
        4,
        "out of range",
    ),
    (
        "segment offset overflow",
        |j| j["segments"]["0"]["offset"] = json!("18446744073709551616"),
        4,
        "does not fit in 64 bits",
    ),
    (
        "segment offset not decimal",
        |j| j["segments"]["0"]["offset"] = json!("0x10"),
        4,
        "not a decimal number",
    ),
    (
        "reencrypt keyslot",
        |j| j["keyslots"]["0"]["type"] = json!("reencrypt"),
        4,
        "reencryption keyslot",
    ),
    (
        "af type",
        |j| j["keyslots"]["0"]["af"]["type"] = json!("luks2"),
        4,
        "AF type 'luks2'",
    ),
    (
        "area type",
        |j| j["keyslots"]["0"]["area"]["type"] = json!("journal"),
        4,
        "area type 'journal'",
    ),
    (
        "kdf type",
        |j| j["keyslots"]["0"]["kdf"]["type"] = json!("scrypt"),
        4,
        "unknown KDF type 'scrypt'",
    ),
    (
        "digest type",
        |j| j["digests"]["0"]["type"] = json!("argon2"),
        4,
        "digest type 'argon2'",
    ),
    (
        "stripes 0",
        |j| j["keyslots"]["0"]["af"]["stripes"] = json!(0),
        4,
        "'stripes' = 0 out of range",
    ),
    (
        "stripes absurd",
        |j| j["keyslots"]["0"]["af"]["stripes"] = json!(4_000_000_000u32),
        4,
        "out of range",
    ),
    (
        "key_size 0",
        |j| j["keyslots"]["0"]["key_size"] = json!(0),
        4,
        "'key_size' = 0 out of range",
    ),
    (
        "key_size 513",
        |j| j["keyslots"]["0"]["key_size"] = json!(513),
        4,
        "'key_size' = 513 out of range",
    ),
    (
        "key_size negative",
        |j| j["keyslots"]["0"]["key_size"] = json!(-64),
        4,
        "not a non-negative integer",
    ),
    (
        "salt not base64",
        |j| j["keyslots"]["0"]["kdf"]["salt"] = json!("!!not base64!!"),
        4,
        "not valid base64",
    ),
    (
        "salt too short",
        |j| j["keyslots"]["0"]["kdf"]["salt"] = json!("AAAAAAAAAAAAAAAAAAAAAA=="),
        4,
        "salt of 16 bytes",
    ),
    (
        "digest not base64",
        |j| j["digests"]["0"]["digest"] = json!("%%%"),
        4,
        "not valid base64",
    ),
    (
        "area over the headers",
        |j| j["keyslots"]["0"]["area"]["offset"] = json!("16384"),
        4,
        "overlaps the LUKS2 header copies",
    ),
    (
        "area past keyslots area",
        |j| j["keyslots"]["0"]["area"]["offset"] = json!("16773120"),
        4,
        "past the keyslots area end",
    ),
    (
        "area too small",
        |j| j["keyslots"]["0"]["area"]["size"] = json!("4096"),
        4,
        "too small",
    ),
    (
        "area offset overflow",
        |j| j["keyslots"]["0"]["area"]["offset"] = json!("18446744073709551615"),
        4,
        "overflows",
    ),
    (
        "overlapping areas",
        |j| {
            let k = j["keyslots"]["0"].clone();
            j["keyslots"]["1"] = k;
        },
        4,
        "keyslot areas of keyslots 0 and 1 overlap",
    ),
    (
        "keyslot id 32",
        |j| {
            let k = j["keyslots"]["0"].take();
            j["keyslots"] = json!({"32": k});
        },
        4,
        "invalid keyslot id '32'",
    ),
    (
        "keyslot id not decimal",
        |j| {
            let k = j["keyslots"]["0"].take();
            j["keyslots"] = json!({"a": k});
        },
        4,
        "invalid keyslot id 'a'",
    ),
    (
        "digest names missing keyslot",
        |j| j["digests"]["0"]["keyslots"] = json!(["0", "5"]),
        4,
        "keyslot 5, which does not exist",
    ),
    (
        "absurd argon2 memory",
        |j| j["keyslots"]["0"]["kdf"] = json!({"type": "argon2id", "time": 4, "memory": 4294967295u32, "cpus": 4, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        3,
        "over the limit",
    ),
    (
        "absurd argon2 time",
        |j| j["keyslots"]["0"]["kdf"] = json!({"type": "argon2i", "time": 4294967295u32, "memory": 1024, "cpus": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        4,
        "time cost",
    ),
    (
        "absurd pbkdf2 iterations",
        |j| j["keyslots"]["0"]["kdf"]["iterations"] = json!(4294967295u32),
        4,
        "iteration count",
    ),
    (
        "unknown hash",
        |j| j["keyslots"]["0"]["af"]["hash"] = json!("md5"),
        4,
        "unsupported hash 'md5'",
    ),
    (
        "missing config",
        |j| {
            j.as_object_mut().unwrap().remove("config");
        },
        4,
        "missing 'config'",
    ),
    (
        "metadata not an object",
        |j| *j = json!([1, 2]),
        4,
        "not a JSON object",
    ),
];

#[test]
fn luks2_mutations_are_refused_with_their_reason() {
    need_cryptsetup!();
    let (_s, img) = fast_image();
    let mut failures = Vec::new();
    for (name, mutate, code, msg) in MUTATIONS {
        let mut m = img.clone();
        rewrite_json(&mut m, &|j| mutate(j));
        match Header::parse(&m) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if e.exit_code() != *code || !e.message().contains(msg) => {
                failures.push(format!(
                    "{name}: exit {} '{}', expected exit {code} '{msg}'",
                    e.exit_code(),
                    e.message()
                ))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn luks2_truncated_keyslot_area_is_an_error_not_a_panic() {
    need_cryptsetup!();
    let (_s, img) = fast_image();
    let short = img[..40000].to_vec();
    let h = Header::parse(&short).unwrap();
    let e = h.unlock(&short, PASSPHRASE, None).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(
        e.message().contains("past the end of the header file"),
        "{e}"
    );
}

#[test]
fn luks2_byte_mutations_of_the_json_never_panic() {
    need_cryptsetup!();
    let (_s, mut img) = fast_image();
    let hs = hdr_size(&img);
    img.truncate(2 * hs); // the keyslots area is not read by parsing
    let text_len = img[4096..hs].iter().position(|&b| b == 0).unwrap();
    // Every byte of the JSON text replaced by a few telling values, checksum fixed, so the
    // parser and the validator (not the checksum) see each mutation.
    for pos in 4096..4096 + text_len + 1 {
        for b in [b'0', b'9', b'"', b'{', b'-', 0x00, 0xff] {
            let mut m = img.clone();
            m[pos] = b;
            fix_checksum(&mut m, 0);
            m.copy_within(0..hs, hs);
            m[hs..hs + 6].copy_from_slice(b"SKUL\xba\xbe");
            m[hs + 256..hs + 264].copy_from_slice(&(hs as u64).to_be_bytes());
            fix_checksum(&mut m, hs);
            if let Ok(h) = Header::parse(&m) {
                let _ = h.dump();
                let _ = h.slots_to_try();
            }
        }
    }
}
