//! LUKS2 headers made by cryptsetup: unlocking, choosing between the two header copies,
//! the dump, and refusal of damaged or unsupported metadata. Single mutations of the metadata,
//! each with its exit code and reason, are rows of the table in `tests/malformed.rs`.

mod common;

use common::*;
use luksfuse::luks::luks2::binary::Copy;
use luksfuse::luks::Header;
use serde_json::json;

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

/// `cryptsetup luksFormat --type luks2` with `args`.
fn luks2_format(args: &[&str]) -> Fixture {
    luks_format(&[&["--type", "luks2"], args].concat())
}

/// Formats with `args`, then checks our volume key equals cryptsetup's and the segment.
fn unlock_matches_cryptsetup(args: &[&str], sector: u32) {
    let sector_arg = sector.to_string();
    let f = luks2_format(&[args, &["--sector-size", &sector_arg]].concat());
    let img = f.read_header();
    let h = Header::parse(&img).unwrap();
    assert_eq!(h.version(), 2);
    let u = h.unlock(&img, PASS, None).unwrap();
    assert_eq!(u.slot, 0);
    assert_eq!(u.key.as_bytes(), f.volume_key().as_slice());
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
fn fast_image() -> (Fixture, Vec<u8>) {
    let f = luks2_format(FAST_PBKDF2);
    let img = f.read_header();
    (f, img)
}

fn luks2(h: &Header) -> &luksfuse::luks::luks2::Luks2 {
    h.as_luks2().expect("expected LUKS2")
}

fn opens_with(img: &dyn luksfuse::luks::ReadAt, key: &[u8]) -> Header {
    let h = Header::parse(img).unwrap();
    let u = h.unlock(img, PASS, None).unwrap();
    assert_eq!(u.key.as_bytes(), key);
    h
}

#[test]
fn luks2_damaged_primary_json_uses_secondary() {
    need_cryptsetup!();
    let (f, mut img) = fast_image();
    let key = f.volume_key();
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
    let (f, mut img) = fast_image();
    img[..6].fill(0);
    let h = opens_with(&img, &f.volume_key());
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
}

#[test]
fn luks2_invalid_primary_metadata_uses_secondary() {
    need_cryptsetup!();
    let (f, mut img) = fast_image();
    rewrite_copy_json(&mut img, 0, &|j| j["config"]["json_size"] = json!("4096"));
    let h = opens_with(&img, &f.volume_key());
    assert_eq!(luks2(&h).header_copy(), Copy::Secondary);
}

#[test]
fn luks2_higher_seqid_wins() {
    need_cryptsetup!();
    let (f, mut img) = fast_image();
    let key = f.volume_key();
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
    let (_f, mut img) = fast_image();
    // A digest hash luksfuse lacks: valid metadata it refuses (a reencryption in progress
    // no longer is: it parses, and only mapping it is refused).
    rewrite_copy_json(&mut img, 0, &|j| {
        j["digests"]["0"]["hash"] = json!("nosuch")
    });
    let e = Header::parse(&img).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("unsupported hash 'nosuch'"), "{e}");
}

#[test]
fn luks2_both_copies_damaged_is_exit_4() {
    need_cryptsetup!();
    let (f, mut img) = fast_image();
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
    let p = f.path("broken.img");
    write_file(&p, &img);
    let f = luksfuse::luks::HeaderFile::open(&p).unwrap();
    assert_eq!(Header::parse(&f).unwrap_err().exit_code(), 4);
}

#[test]
fn luks2_dump_matches_cryptsetup_luksdump() {
    need_cryptsetup!();
    let f = luks2_format(
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
    std::fs::write(f.path("pass2"), b"second").unwrap();
    let (pass, pass2) = (&f.keyfile, f.path("pass2"));
    f.cryptsetup(&[
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
    f.cryptsetup(&["config", "--priority", "prefer", "--key-slot", "1"]);
    f.cryptsetup_then(
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
    let img = f.read_header();
    let h = Header::parse(&img).unwrap();
    assert_eq!(h.dump(), f.cryptsetup(&["luksDump"]));
    let j = h.dump_json();
    assert_eq!(j["label"], "my label");
    assert_eq!(j["metadata"]["keyslots"]["1"]["priority"], 2);
}

#[test]
fn luks2_priorities_order_and_unbound_keyslots() {
    need_cryptsetup!();
    let f = luks2_format(FAST_PBKDF2);
    let pass = &f.keyfile;
    for _ in 0..2 {
        f.cryptsetup(&[
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
    f.cryptsetup(&["config", "--priority", "prefer", "--key-slot", "2"]);
    f.cryptsetup(&["config", "--priority", "ignore", "--key-slot", "0"]);
    f.cryptsetup_then(
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
    let img = f.read_header();
    let key = f.volume_key();
    let h = Header::parse(&img).unwrap();
    assert_eq!(h.slots_to_try(), vec![2, 1]);
    assert!(h.slot_active(0) && h.slot_active(3) && !h.slot_active(4));
    assert_eq!(h.unlock(&img, PASS, None).unwrap().slot, 2);
    let u = h.unlock(&img, PASS, Some(0)).unwrap();
    assert_eq!((u.slot, u.key.as_bytes()), (0, key.as_slice()));
    // An unbound keyslot opens when asked for by number (as cryptsetup's -S), with its own key.
    let u = h.unlock(&img, PASS, Some(3)).unwrap();
    assert_eq!((u.slot, u.bound, u.key.len()), (3, false, 32));
    assert_ne!(u.key.as_bytes(), key.as_slice());
    // An inactive keyslot: exit 1, as cryptsetup's "No usable keyslot is available."
    assert_eq!(h.unlock(&img, PASS, Some(7)).unwrap_err().exit_code(), 1);
    assert_eq!(h.segment().key_size, 64);
}

#[test]
fn luks2_truncated_keyslot_area_is_an_error_not_a_panic() {
    need_cryptsetup!();
    let (_f, img) = fast_image();
    let short = img[..40000].to_vec();
    // Refused when read, as cryptsetup refuses it ("Device ... is too small").
    let e = Header::parse(&short).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("too small"), "{e}");
}

#[test]
fn luks2_byte_mutations_of_the_json_never_panic() {
    need_cryptsetup!();
    let (_f, mut img) = fast_image();
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
