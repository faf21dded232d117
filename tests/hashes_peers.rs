//! Every hash a header may name (PBKDF2, the AF splitter, the LUKS2 digest), against the peers
//! that have it on this machine:
//!
//! - cryptsetup 2.6 (OpenSSL backend) formats LUKS1 and LUKS2 with each hash it has here, also
//!   in OpenSSL's own spellings, which it writes into the header as typed; luksfuse must
//!   unlock with the passphrase and find the volume key `cryptsetup luksDump
//!   --dump-volume-key` prints;
//!   The same for ESSIV with hashes other than sha256;
//! - the reverse: luksfuse formats with each hash, and cryptsetup must accept the passphrase
//!   (`open --test-passphrase`) and print the same volume key; hashes cryptsetup's OpenSSL
//!   backend lacks (stribog, the short BLAKE2 digests: its kernel and gcrypt backends have
//!   them) are checked by luksfuse reopening its own header, their arithmetic by the
//!   known-answer tests in `src/crypto/hash.rs`;
//! - QEMU 10 (nettle) writes LUKS1 with each hash it lists (`hash-alg`, md5 included, which
//!   cryptsetup refuses even to read), and as ESSIV hash; data written through its `luks`
//!   driver must read through a luksfuse mount and back.
//!
//! KDFs are as fast as the tools allow (1000 PBKDF2 iterations, QEMU `iter-time=10`).

mod common;

use common::*;

/// Hashes cryptsetup here formats both LUKS versions with (measured: `luksFormat --hash X`),
/// as it spells them: canonical names first, then OpenSSL aliases it stores as typed.
const CRYPTSETUP_HASHES: &[&str] = &[
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sha512-224",
    "sha512-256",
    "ripemd160",
    "whirlpool",
    "sha3-224",
    "sha3-256",
    "sha3-384",
    "sha3-512",
    "blake2b-512",
    "blake2s-256",
    "sm3",
    "rmd160",
    "SHA2-256",
    "blake2b512",
    "Whirlpool",
];

/// luksfuse's `test-key` with the fixture's key file: the exit code and stderr.
fn test_key(f: &Fixture) -> Run {
    luksfuse(&["test-key", "-d", s(&f.keyfile), s(&f.header)], b"")
}

fn luksfuse_key(f: &Fixture) -> Vec<u8> {
    luksfuse_volume_key(
        &[
            "dump",
            "--dump-volume-key",
            "-q",
            "-d",
            s(&f.keyfile),
            s(&f.header),
        ],
        b"",
    )
}

#[test]
fn cryptsetup_formats_with_every_hash_it_has_and_luksfuse_unlocks() {
    for &hash in CRYPTSETUP_HASHES {
        for kind in ["luks1", "luks2"] {
            let mut args = vec!["--type", kind, "--hash", hash];
            args.extend(fast_kdf("pbkdf2"));
            let f = luks_format(&args);
            let what = format!("{kind} --hash {hash}");
            let r = test_key(&f);
            assert_eq!(r.code, 0, "{what}: test-key: {}", r.stderr);
            assert_eq!(luksfuse_key(&f), f.volume_key(), "{what}: volume key");
        }
    }
    // md5 (16 bytes): LUKS2 only; cryptsetup refuses LUKS1 digests under 20 bytes.
    let mut args = vec!["--type", "luks2", "--hash", "md5"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args);
    assert_eq!(test_key(&f).code, 0, "luks2 md5");
    assert_eq!(luksfuse_key(&f), f.volume_key(), "luks2 md5: volume key");
}

#[test]
fn cryptsetup_essiv_with_new_hashes_gives_the_same_key() {
    // ESSIV keys its IV cipher with HASH(volume key), so the hash length must be an AES key
    // size (cryptsetup here refuses essiv:sha224 and essiv:ripemd160). The keyslot area is
    // encrypted with the segment cipher: the key only comes out right if ESSIV does.
    for (hash, bits) in [
        ("sm3", "256"),
        ("sha3-256", "256"),
        ("blake2s-256", "256"),
        ("md5", "128"),
    ] {
        for kind in ["luks1", "luks2"] {
            let cipher = format!("aes-cbc-essiv:{hash}");
            let mut args = vec!["--type", kind, "-c", &cipher, "-s", bits];
            args.extend(fast_kdf("pbkdf2"));
            let f = luks_format(&args);
            let what = format!("{kind} {cipher}");
            assert_eq!(test_key(&f).code, 0, "{what}: test-key");
            assert_eq!(luksfuse_key(&f), f.volume_key(), "{what}: volume key");
        }
    }
}

#[test]
fn luksfuse_formats_with_every_hash_and_cryptsetup_agrees() {
    for kind in ["luks1", "luks2"] {
        for name in luksfuse::crypto::hash::HashAlg::ALL.map(|h| h.name()) {
            let f = Fixture::new();
            let mut args = vec!["format", "-q", "--type", kind, "--hash", name];
            args.extend(fast_kdf("pbkdf2"));
            args.extend(["-d", s(&f.keyfile), s(&f.header)]);
            let r = luksfuse(&args, b"");
            let what = format!("{kind} --hash {name}");
            if kind == "luks1" && matches!(name, "md5" | "blake2s-128") {
                // As cryptsetup: "Requested LUKS hash md5 is not supported." (exit 1).
                assert_eq!(r.code, 1, "{what}: {}", r.stderr);
                assert!(r.stderr.contains(name), "{what}: {}", r.stderr);
                assert!(!f.header.exists(), "{what}: a header was written");
                continue;
            }
            assert_eq!(r.code, 0, "{what}: {}", r.stderr);
            assert_eq!(test_key(&f).code, 0, "{what}: luksfuse reopens it");
            let cryptsetup_has = CRYPTSETUP_HASHES.contains(&name) || name == "md5";
            if !cryptsetup_has {
                continue;
            }
            f.cryptsetup(&["open", "--test-passphrase", "--key-file", s(&f.keyfile)]);
            assert_eq!(f.volume_key(), luksfuse_key(&f), "{what}: volume key");
            // The header names the hash as cryptsetup does.
            let dump = f.cryptsetup(&["luksDump"]);
            let names_it = |l: &str| l.contains("ash") && l.split_whitespace().last() == Some(name);
            assert!(dump.lines().any(names_it), "{what}: {dump}");
        }
    }
}

#[test]
fn qemu_writes_with_every_hash_it_lists_and_the_mount_reads_it() {
    // (cipher-alg, cipher-mode, ivgen-alg, ivgen-hash-alg, hash-alg) for QEMU's hashes
    // (qemu-img rejects any other hash-alg: "does not accept value 'whirlpool'") that
    // tests/ciphers_qemu.rs does not already use (sha1, sha256, sha512); each qemu-img create
    // costs about 3 s of QEMU's PBKDF2 benchmark whatever iter-time says. An ESSIV hash gives
    // the ESSIV cipher's key, so its length must be an AES key size.
    #[rustfmt::skip]
    let rows: &[(&str, &str, &str, Option<&str>, &str)] = &[
        ("aes-128", "cbc", "essiv", Some("md5"), "md5"),
        ("aes-256", "xts", "plain64", None, "sha224"),
        ("aes-128", "xts", "plain64", None, "sha384"),
        ("aes-256", "xts", "plain64", None, "ripemd160"),
        ("aes-256", "cbc", "essiv", Some("sm3"), "sm3"),
    ];
    for &(alg, mode, ivgen, ivhash, hash) in rows {
        let f = Fixture::attached("qemu.luks");
        let mut opts = format!(
            "key-secret=s,cipher-alg={alg},cipher-mode={mode},ivgen-alg={ivgen},hash-alg={hash},iter-time=10"
        );
        if let Some(h) = ivhash {
            opts += &format!(",ivgen-hash-alg={h}");
        }
        qemu_create_luks(&f, &f.header, &opts, "1M");
        let what = format!("QEMU {opts}");
        let r = test_key(&f);
        assert_eq!(r.code, 0, "{what}: test-key: {}", r.stderr);
        let image_opts = format!("driver=luks,key-secret=s,file.filename={}", s(&f.header));
        qemu_round_trip(&f, &["--name", "p"], &image_opts, 1 << 20, 12, &what);
    }
}
