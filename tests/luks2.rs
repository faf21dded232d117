//! LUKS2 headers made by cryptsetup: unlocking, choosing between the two header copies,
//! the dump, and refusal of damaged or unsupported metadata.

mod common;

use common::*;
use luksfuse::luks::Header;

macro_rules! need_cryptsetup {
    () => {
        if !have_cryptsetup() {
            eprintln!("cryptsetup not installed: test skipped");
            return;
        }
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
    assert_eq!(seg.sector_size, sector);
    assert_eq!(seg.cipher, "aes-xts-plain64");
    assert_eq!(seg.key_size, 64);
    assert_eq!((seg.offset, seg.size, seg.iv_tweak), (0, None, 0));
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
        unlock_matches_cryptsetup(
            &[
                "--pbkdf",
                "argon2i",
                "--pbkdf-force-iterations",
                "4",
                "--pbkdf-memory",
                "32768",
            ],
            sector,
        );
    }
}

#[test]
fn luks2_argon2id_unlocks_with_cryptsetups_volume_key() {
    need_cryptsetup!();
    for sector in [512, 4096] {
        unlock_matches_cryptsetup(
            &[
                "--pbkdf",
                "argon2id",
                "--pbkdf-force-iterations",
                "4",
                "--pbkdf-memory",
                "32768",
            ],
            sector,
        );
    }
}
