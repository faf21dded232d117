//! Tests of the sector ciphers against the `xts-mode` crate and known answers. Tests of the
//! other ciphers, modes and IV generators are in `tests_kat.rs`.

use super::*;
use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

fn ss(n: u64) -> SectorSize {
    SectorSize::new(n).unwrap()
}

#[test]
fn parse_accepts_luks_ciphers_and_refuses_the_rest() {
    for s in [
        "aes-xts-plain64",
        "aes-xts-plain",
        "aes-cbc-essiv:sha256",
        "aes-cbc-plain64",
        "aes-cbc-plain",
        "serpent-xts-plain64",
        "serpent-cbc-essiv:sha256",
        "twofish-xts-plain",
        "twofish-cbc-plain64",
        "aes-xts-essiv:sha256",
        "aes-ctr-plain64",
        "aes-lrw-benbi",
        "aes-cbc-null",
        "aes-xts-plain64be",
        "cast5-cbc-plain64",
        "cast5-ctr-essiv:sha256",
        "cast6-xts-plain64",
        "sm4-xts-plain64",
        "camellia-cbc-plain",
        "camellia-lrw-plain64",
    ] {
        assert_eq!(CipherSpec::parse(s).unwrap().to_string(), s);
    }
    // Spellings that mean one of the above: dm-crypt ignores a hash after plain/plain64 (QEMU
    // writes `plain64:sha256`), and the kernel notation names the mode around the cipher.
    for (s, means) in [
        ("aes-xts-plain64:sha256", "aes-xts-plain64"),
        ("aes-cbc-plain:sha1", "aes-cbc-plain"),
        ("capi:xts(aes)-plain64", "aes-xts-plain64"),
        ("capi:xts(ecb(aes))-plain64", "aes-xts-plain64"),
        ("capi:cbc(aes)-essiv:sha256", "aes-cbc-essiv:sha256"),
        ("capi:ctr(serpent)-plain64", "serpent-ctr-plain64"),
        ("CAPI:LRW(AES)-BENBI", "aes-lrw-benbi"),
    ] {
        assert_eq!(CipherSpec::parse(s).unwrap().to_string(), means, "{s}");
    }
    for s in [
        "aes-xts-random",
        "aes-xts-essiv",
        "aes-xts-essiv:md4",
        "aes-xts-plain64:",
        "cast5-xts-plain64",
        "cast5-lrw-benbi",
        "blowfish-cbc-plain64",
        "aes-gcm-random",
        "capi:xts(aes)",
        "capi:authenc(hmac(sha256),xts(aes))-random",
        "aes-xts",
        "aes",
        "",
    ] {
        let e = CipherSpec::parse(s).unwrap_err();
        assert!(e.message().starts_with("unsupported cipher"), "{s}: {e}");
    }
    // ECB and cipher_null are refused with the reason, however spelled.
    for s in [
        "cipher_null-ecb",
        "aes-ecb",
        "serpent-ecb-plain64",
        "capi:ecb(aes)-plain64",
        "capi:cbc(cipher_null)-plain64",
        "CIPHER_NULL",
    ] {
        let e = CipherSpec::parse(s).unwrap_err();
        assert!(
            e.message()
                .starts_with(&format!("cipher '{s}' is refused: "))
                && e.message()
                    .ends_with("the 2025 malleable-header attacks on LUKS"),
            "{s}: {e}"
        );
        assert!(CipherSpec::refusal(s).is_some(), "{s}");
    }
    assert_eq!(
        CipherSpec::parse("cipher_null-ecb").unwrap_err().message(),
        "cipher 'cipher_null-ecb' is refused: it encrypts nothing, and such headers are the \
         vehicle of the 2025 malleable-header attacks on LUKS"
    );
    assert!(CipherSpec::refusal("capi:xts(ecb(aes))-plain64").is_none());
}

#[test]
fn cipher_names_keep_their_spelling_and_parse_once() {
    let n = CipherName::new("AES-XTS-plain64");
    assert_eq!(
        (n.as_str(), n.to_string().as_str()),
        ("AES-XTS-plain64", "AES-XTS-plain64")
    );
    assert_eq!(
        n.spec().unwrap(),
        CipherSpec::parse("aes-xts-plain64").unwrap()
    );
    let bad = CipherName::new("blowfish-xts-plain64");
    assert_eq!(bad.as_str(), "blowfish-xts-plain64");
    assert_eq!(
        bad.spec().unwrap_err().message(),
        "unsupported cipher 'blowfish-xts-plain64'"
    );
    let n = CipherName::new("aes-xts-plain64:sha256");
    assert_eq!(n.as_str(), "aes-xts-plain64:sha256");
    assert_eq!(n.spec().unwrap().iv, IvGen::Plain64);
}

#[test]
fn key_sizes() {
    let x = CipherSpec::parse("aes-xts-plain64").unwrap();
    assert!(x.check_key_size(64).is_ok() && x.check_key_size(32).is_ok());
    assert!(x.check_key_size(16).is_err());
    let c = CipherSpec::parse("aes-cbc-essiv:sha256").unwrap();
    assert!(c.check_key_size(32).is_ok() && c.check_key_size(64).is_err());
    // (spec, valid key sizes in bytes up to 80): cryptsetup's and the kernel's rules.
    for (spec, ok) in [
        ("aes-xts-plain64", &[32, 48, 64][..]),
        ("aes-cbc-plain64", &[16, 24, 32]),
        ("aes-ctr-plain64", &[16, 24, 32]),
        ("aes-lrw-benbi", &[32, 40, 48]),
        ("serpent-xts-plain64", &[32, 48, 64]),
        (
            "cast5-cbc-plain64",
            &[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        ),
        ("cast6-xts-plain64", &[32, 40, 48, 56, 64]),
        ("cast6-cbc-plain64", &[16, 20, 24, 28, 32]),
        ("sm4-xts-plain64", &[32]),
        ("sm4-ctr-plain64", &[16]),
        ("camellia-xts-plain64", &[32, 48, 64]),
        ("camellia-lrw-plain64", &[32, 40, 48]),
    ] {
        let spec = CipherSpec::parse(spec).unwrap();
        let valid: Vec<usize> = (0..=80).filter(|&n| spec.key_size_ok(n)).collect();
        assert_eq!(valid, ok, "{spec}");
        assert!(spec.key_size_ok(spec.default_key_size()), "{spec}");
        // Every valid size keys a cipher, and no invalid one does.
        for n in 0..=80 {
            assert_eq!(
                SectorCipher::new(&spec, &vec![7u8; n]).is_ok(),
                spec.key_size_ok(n),
                "{spec} with {n} bytes"
            );
        }
    }
    assert_eq!(
        CipherSpec::parse("aes-xts-plain64")
            .unwrap()
            .default_key_size(),
        64
    );
    assert_eq!(
        CipherSpec::parse("aes-cbc-plain64")
            .unwrap()
            .default_key_size(),
        32
    );
    assert_eq!(
        CipherSpec::parse("aes-lrw-benbi")
            .unwrap()
            .default_key_size(),
        48
    );
    assert_eq!(
        CipherSpec::parse("cast5-cbc-plain64")
            .unwrap()
            .default_key_size(),
        16
    );
}

#[test]
fn xts_matches_the_xts_mode_crate_for_many_sectors() {
    use xts_mode::{get_tweak_default, Xts128};
    for (keylen, sector_size) in [(64usize, 512usize), (32, 4096), (64, 4096), (32, 512)] {
        let key: Vec<u8> = (0..keylen).map(|i| (i * 13 + 1).to_le_bytes()[0]).collect();
        let plain: Vec<u8> = (0..sector_size * 5)
            .map(|i| (i * 31 % 251).to_le_bytes()[0])
            .collect();
        let spec = CipherSpec::parse("aes-xts-plain64").unwrap();
        let ours = SectorCipher::new(&spec, &key).unwrap();
        let mut a = plain.clone();
        ours.encrypt_sectors(&mut a, ss(sector_size as u64), Iv(1 << 33), IvStep(8));
        let mut b = plain.clone();
        let half = keylen / 2;
        let first = 1u128 << 33;
        if keylen == 64 {
            let x = Xts128::new(
                Aes256::new_from_slice(&key[..half]).unwrap(),
                Aes256::new_from_slice(&key[half..]).unwrap(),
            );
            for (i, s) in b.chunks_mut(sector_size).enumerate() {
                x.encrypt_sector(s, get_tweak_default(first + 8 * i as u128));
            }
        } else {
            let x = Xts128::new(
                Aes128::new_from_slice(&key[..half]).unwrap(),
                Aes128::new_from_slice(&key[half..]).unwrap(),
            );
            for (i, s) in b.chunks_mut(sector_size).enumerate() {
                x.encrypt_sector(s, get_tweak_default(first + 8 * i as u128));
            }
        }
        assert_eq!(a, b, "keylen {keylen} sector {sector_size}");
        ours.decrypt_sectors(&mut a, ss(sector_size as u64), Iv(1 << 33), IvStep(8));
        assert_eq!(a, plain);
    }
}

#[test]
fn serpent_and_twofish_xts_match_the_xts_mode_crate() {
    use xts_mode::{get_tweak_default, Xts128};
    fn reference<C>(key: &[u8], buf: &mut [u8], first: u128)
    where
        C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt<BlockSize = cipher::consts::U16>,
        C: cipher::BlockSizeUser<BlockSize = cipher::consts::U16>,
    {
        let half = key.len() / 2;
        let x = Xts128::new(
            C::new_from_slice(&key[..half]).unwrap(),
            C::new_from_slice(&key[half..]).unwrap(),
        );
        for (i, s) in buf.chunks_mut(512).enumerate() {
            x.encrypt_sector(s, get_tweak_default(first + i as u128));
        }
    }
    for keylen in [32usize, 48, 64] {
        let key: Vec<u8> = (0..keylen).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
        let plain: Vec<u8> = (0..512usize * 9)
            .map(|i| (i * 29 % 253).to_le_bytes()[0])
            .collect();
        for (name, refer) in [
            (
                "serpent",
                reference::<serpent::Serpent> as fn(&[u8], &mut [u8], u128),
            ),
            ("twofish", reference::<::twofish::Twofish>),
        ] {
            let spec = CipherSpec::parse(&format!("{name}-xts-plain64")).unwrap();
            let ours = SectorCipher::new(&spec, &key).unwrap();
            assert_eq!(ours.xts_impl(), Some(XtsImpl::Portable));
            let mut a = plain.clone();
            ours.encrypt_sectors(&mut a, ss(512), Iv(5), IvStep::ONE);
            let mut b = plain.clone();
            refer(&key, &mut b, 5);
            assert_eq!(a, b, "{name} {keylen}");
            assert_ne!(a, plain);
            ours.decrypt_sectors(&mut a, ss(512), Iv(5), IvStep::ONE);
            assert_eq!(a, plain, "{name} {keylen}");
        }
    }
    // The vector path is AES only.
    let serpent = CipherSpec::parse("serpent-xts-plain64").unwrap();
    assert!(SectorCipher::with_impl(&serpent, &[1; 64], XtsImpl::Avx512).is_err());
}

/// Reference XTS from the `xts-mode` crate over whole sectors, IV `first + i * step`
/// (plain64, wrapping like dm-crypt's 64-bit sector numbers).
fn reference_xts(key: &[u8], buf: &mut [u8], sector: usize, first: u64, step: u64, enc: bool) {
    use xts_mode::{get_tweak_default, Xts128};
    fn run<C>(key: &[u8], buf: &mut [u8], sector: usize, iv: impl Fn(usize) -> u64, enc: bool)
    where
        C: BlockCipherEncrypt + BlockCipherDecrypt + KeyInit,
        C: cipher::BlockSizeUser<BlockSize = cipher::consts::U16>,
    {
        let (k1, k2) = key.split_at(key.len() / 2);
        let x = Xts128::new(
            C::new_from_slice(k1).unwrap(),
            C::new_from_slice(k2).unwrap(),
        );
        for (i, s) in buf.chunks_mut(sector).enumerate() {
            let t = get_tweak_default(iv(i) as u128);
            if enc {
                x.encrypt_sector(s, t)
            } else {
                x.decrypt_sector(s, t)
            }
        }
    }
    let iv = |i: usize| first.wrapping_add((i as u64).wrapping_mul(step));
    match key.len() {
        32 => run::<Aes128>(key, buf, sector, iv, enc),
        48 => run::<Aes192>(key, buf, sector, iv, enc),
        64 => run::<Aes256>(key, buf, sector, iv, enc),
        n => panic!("XTS key of {n} bytes"),
    }
}

/// Checks `imp` against the `xts-mode` crate: sector sizes from one block to 4096 bytes
/// (including sizes that are not a multiple of 256 bytes), 1..=40 sectors per call (more
/// than one batch of tweaks), IVs that wrap past 2^64, encryption and decryption.
fn check_xts_impl(imp: XtsImpl, key_sizes: &[usize]) {
    let spec = CipherSpec::parse("aes-xts-plain64").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect()
    };
    for &keylen in key_sizes {
        let key = noise(keylen);
        let ours = SectorCipher::with_impl(&spec, &key, imp).unwrap();
        assert_eq!(ours.xts_impl(), Some(imp));
        for sector in [16, 48, 272, 512, 784, 1008, 1024, 4096] {
            for count in [1, 2, 3, 5, 15, 16, 17, 33, 40] {
                if sector * count > 64 * 1024 && count != 17 {
                    continue;
                }
                for (first, step) in [(u64::MAX - 3, 1), (u64::MAX - 20, 8), (1 << 33, 8)] {
                    let what = format!(
                        "{} key {keylen} sector {sector} x{count} iv {first:#x}+{step}",
                        imp.name()
                    );
                    let plain = noise(sector * count);
                    let mut a = plain.clone();
                    ours.crypt(&mut a, sector, Iv(first), IvStep(step), true);
                    let mut b = plain.clone();
                    reference_xts(&key, &mut b, sector, first, step, true);
                    assert!(a == b, "encryption differs: {what}");
                    let mut c = noise(sector * count);
                    ours.encrypt_to(&plain, &mut c, sector, Iv(first), IvStep(step));
                    assert!(c == b, "encryption into another buffer differs: {what}");
                    // Decrypt other data than we encrypted, so that decryption is checked
                    // on its own and not only as the inverse of our encryption.
                    let cipher = noise(sector * count);
                    let mut a = cipher.clone();
                    ours.crypt(&mut a, sector, Iv(first), IvStep(step), false);
                    let mut b = cipher.clone();
                    reference_xts(&key, &mut b, sector, first, step, false);
                    assert!(a == b, "decryption differs: {what}");
                }
            }
        }
    }
}

#[test]
fn xts_portable_matches_the_xts_mode_crate() {
    check_xts_impl(XtsImpl::Portable, &[32, 48, 64]);
}

/// `check_xts_impl` for a vector implementation, or a visible skip when this CPU lacks it.
fn check_vector_impl(imp: XtsImpl, test: &str, lacks: &str) {
    if !imp.available() {
        // Written past libtest's capture, so that a skip is never a silent pass.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: this CPU lacks {lacks}");
        return;
    }
    check_xts_impl(imp, &[32, 64]);
}

#[test]
fn xts_avx512_matches_the_xts_mode_crate() {
    check_vector_impl(
        XtsImpl::Avx512,
        "xts_avx512_matches_the_xts_mode_crate",
        "AVX-512/VAES",
    );
}

#[test]
fn xts_vaes256_matches_the_xts_mode_crate() {
    check_vector_impl(
        XtsImpl::Vaes256,
        "xts_vaes256_matches_the_xts_mode_crate",
        "VAES/AVX2",
    );
}

#[test]
fn xts_impl_choice() {
    let spec = CipherSpec::parse("aes-xts-plain64").unwrap();
    let cbc = CipherSpec::parse("aes-cbc-plain64").unwrap();
    // AES-192 and CBC never take the vector path; forcing it is an error, not a fallback.
    assert!(SectorCipher::with_impl(&spec, &[1; 48], XtsImpl::Avx512).is_err());
    assert!(SectorCipher::with_impl(&cbc, &[1; 32], XtsImpl::Portable).is_err());
    assert_eq!(SectorCipher::new(&cbc, &[1; 32]).unwrap().xts_impl(), None);
    let auto = SectorCipher::new(&spec, &[1; 64]).unwrap().xts_impl();
    match std::env::var(XTS_IMPL_ENV).as_deref() {
        Ok("portable") => assert_eq!(auto, Some(XtsImpl::Portable)),
        _ if XtsImpl::Avx512.available() => assert_eq!(auto, Some(XtsImpl::Avx512)),
        _ if XtsImpl::Vaes256.available() => assert_eq!(auto, Some(XtsImpl::Vaes256)),
        _ => assert_eq!(auto, Some(XtsImpl::Portable)),
    }
    for imp in [XtsImpl::Avx512, XtsImpl::Vaes256] {
        assert_eq!(
            SectorCipher::with_impl(&spec, &[1; 64], imp).is_ok(),
            imp.available()
        );
        assert!(SectorCipher::with_impl(&spec, &[1; 48], imp).is_err());
    }
}

#[test]
fn xts_plain_truncates_the_sector_number_to_32_bits() {
    let key = [7u8; 64];
    let p = SectorCipher::new(&CipherSpec::parse("aes-xts-plain").unwrap(), &key).unwrap();
    let p64 = SectorCipher::new(&CipherSpec::parse("aes-xts-plain64").unwrap(), &key).unwrap();
    let mut a = vec![0u8; 512];
    let mut b = vec![0u8; 512];
    p.encrypt_sectors(&mut a, SectorSize::MIN, Iv((1 << 32) + 5), IvStep::ONE);
    p64.encrypt_sectors(&mut b, SectorSize::MIN, Iv(5), IvStep::ONE);
    assert_eq!(a, b);
}

#[test]
fn cbc_round_trips_and_chains() {
    for spec in ["aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-cbc-plain"] {
        let spec = CipherSpec::parse(spec).unwrap();
        let c = SectorCipher::new(&spec, &[3u8; 32]).unwrap();
        let plain = vec![0u8; 1024];
        let mut buf = plain.clone();
        c.encrypt_sectors(&mut buf, SectorSize::MIN, Iv(9), IvStep::ONE);
        // Equal plaintext blocks give different ciphertext blocks (chaining works).
        assert_ne!(buf[0..16], buf[16..32]);
        // Two sectors with equal plaintext differ (the IV is per sector).
        assert_ne!(buf[..512], buf[512..]);
        c.decrypt_sectors(&mut buf, SectorSize::MIN, Iv(9), IvStep::ONE);
        assert_eq!(buf, plain);
    }
}

#[test]
fn cbc_encrypts_many_sectors_as_each_alone() {
    // Sectors go through the cipher side by side (lanes); each must come out as if it were
    // encrypted on its own, for every count around the lane width and every block size.
    for spec in [
        "aes-cbc-essiv:sha256",
        "twofish-cbc-plain64",
        "cast5-cbc-plain64",
    ] {
        let parsed = CipherSpec::parse(spec).unwrap();
        let key: Vec<u8> = (0..parsed.default_key_size() as u8).collect();
        let c = SectorCipher::new(&parsed, &key).unwrap();
        for (sector, n) in [
            (512, 1),
            (512, 2),
            (512, 7),
            (512, 8),
            (512, 9),
            (512, 64),
            (512, 65),
            (512, 130),
            (4096, 19),
        ] {
            let plain: Vec<u8> = (0..sector * n).map(|i| (i * 7 + i / 512) as u8).collect();
            let mut all = plain.clone();
            c.encrypt_sectors(&mut all, ss(sector as u64), Iv(40), IvStep::ONE);
            for (i, one) in plain.chunks(sector).enumerate() {
                let mut one = one.to_vec();
                c.encrypt_sectors(&mut one, ss(sector as u64), Iv(40 + i as u64), IvStep::ONE);
                assert!(
                    one == all[i * sector..][..sector],
                    "{spec} {sector}x{n} sector {i}"
                );
            }
            c.decrypt_sectors(&mut all, ss(sector as u64), Iv(40), IvStep::ONE);
            assert!(all == plain, "{spec} {sector}x{n} round trip");
        }
    }
}

#[test]
fn cbc_plain64_known_answer() {
    // AES-128-CBC, key 000102..0f, IV = LE64(0): NIST SP 800-38A F.2.1 uses IV 000102..0f,
    // so instead check against single-block AES-ECB (FIPS-197 C.1) with a zero IV.
    let key: Vec<u8> = (0..16).collect();
    let c = SectorCipher::new(&CipherSpec::parse("aes-cbc-plain64").unwrap(), &key).unwrap();
    let mut buf: Vec<u8> = (0..16u8).map(|i| i * 0x11).collect();
    buf.resize(512, 0);
    c.encrypt_sectors(&mut buf, SectorSize::MIN, Iv(0), IvStep::ONE);
    let hex: String = buf[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "69c4e0d86a7b0430d8cdb78070b4c55a");
}
