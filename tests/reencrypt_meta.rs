//! LUKS2 reencryption metadata (issue 15) against cryptsetup 2.6.1: the states cryptsetup
//! writes while it encrypts or decrypts with a detached header (init, hot after a SIGKILL
//! inside a hotzone, post after `repair`) parse into the expected state and resume; headers
//! luksfuse starts (and hotzones it protects by hand) are finished by cryptsetup; `luksfuse
//! dump` prints every state as `cryptsetup luksDump` does; damaged reencryption metadata is
//! refused by both.

mod common;

use common::*;
use luksfuse::crypto::hash::HashAlg;
use luksfuse::image::{Access, Image, RawImage};
use luksfuse::luks::format::{FormatOptions, KdfOptions};
use luksfuse::luks::luks2::reencrypt::{
    verification_data, Mode, Params, Reencryption, Resilience, State,
};
use luksfuse::luks::{Header, HeaderFile};
use luksfuse::secret::{Passphrase, Secret, VolumeKey};
use luksfuse::volume::Volume;
use serde_json::json;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 16 * MIB;

macro_rules! need_cryptsetup {
    () => {
        // `make test` installs cryptsetup: a missing peer is a failure, not a skip.
        assert!(
            have_cryptsetup(),
            "cryptsetup is not installed (run make deps)"
        );
    };
}

fn pass() -> Passphrase {
    Passphrase(Secret::from_slice(PASS))
}

fn fast() -> Params {
    Params {
        digest_iterations: Some(1000),
        ..Params::new(Resilience::DEFAULT)
    }
}

fn fast_format() -> FormatOptions {
    FormatOptions {
        kdf: KdfOptions {
            pbkdf: Some("pbkdf2".into()),
            force_iterations: Some(1000),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A fixture whose payload holds `SIZE` bytes of noise; returns them too.
fn fixture(seed: u64) -> (Fixture, Vec<u8>) {
    let f = Fixture::new();
    let data = noise(SIZE as usize, seed);
    write_file(&f.payload, &data);
    (f, data)
}

/// `cryptsetup args` (no `-q --header` added), its exit status and output.
fn cryptsetup(args: &[&str]) -> (bool, String) {
    let out = forking(|| Command::new("cryptsetup").args(args).output()).unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `cryptsetup reencrypt --resume-only` of the fixture, optionally killed (SIGKILL through
/// strace) at its `kill_at`th `write(2)`.
fn cs_resume(f: &Fixture, hotzone: &str, kill_at: Option<u32>) {
    let mut cmd = match kill_at {
        Some(n) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-o", "/dev/null", "-e", "trace=write", "-e"])
                .arg(format!("inject=write:signal=SIGKILL:when={n}"))
                .arg("cryptsetup");
            c
        }
        None => Command::new("cryptsetup"),
    };
    cmd.args([
        "reencrypt",
        "--resume-only",
        "--force-offline-reencrypt",
        "--batch-mode",
    ])
    .args(["--hotzone-size", hotzone, "--key-file", s(&f.keyfile)])
    .arg("--header")
    .arg(&f.header)
    .arg(&f.payload);
    let out = forking(|| cmd.output()).unwrap();
    match kill_at {
        None => assert!(
            out.status.success(),
            "cryptsetup resume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Some(_) => assert!(!out.status.success(), "cryptsetup was not killed"),
    }
}

fn cs_repair(f: &Fixture) {
    f.cryptsetup(&["repair", "--key-file", s(&f.keyfile)]);
}

/// The header as luksfuse parses it.
fn parse(path: &Path) -> Header {
    Header::parse(&HeaderFile::open(path).unwrap()).unwrap()
}

/// `luksfuse dump` equals `cryptsetup luksDump` on `header`.
fn dumps_agree(header: &Path, what: &str) {
    let ours = luksfuse(&["dump", s(header)], b"");
    assert_eq!(ours.code, 0, "{what}: luksfuse dump: {}", ours.stderr);
    let (ok, theirs) = cryptsetup(&["luksDump", s(header)]);
    assert!(ok, "{what}: cryptsetup luksDump: {theirs}");
    assert_eq!(ours.stdout, theirs, "{what}: dumps differ");
}

/// Mapping the header is refused (exit 4) with how to resume, by the library and by `luksfuse
/// mount`.
fn mount_refused(f: &Fixture, mode: &str) {
    let e = parse(&f.header).mappable().unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    let want = format!("'luksfuse {mode} --resume --header HEADER PAYLOAD'");
    assert!(e.message().contains(&want), "{e}");
    assert!(
        e.message().contains("cryptsetup reencrypt --resume-only"),
        "{e}"
    );
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let r = luksfuse(
        &[
            "mount",
            "-d",
            s(&f.keyfile),
            s(&f.header),
            s(&f.payload),
            s(&mnt),
        ],
        b"",
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains(&want), "{}", r.stderr);
}

/// Reads `range` of `file` raw.
fn read_raw(file: &Path, range: &Range<u64>) -> Vec<u8> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut buf, range.start)
        .unwrap();
    buf
}

/// The whole payload decrypted with `key` and the layout `seg_of` gives.
fn volume(payload: &Path, state: &State, key: &VolumeKey, access: Access) -> Volume {
    let layout = match state.mode {
        Mode::Encrypt => &state.new,
        Mode::Decrypt => &state.old,
    };
    let seg = layout.segment(key.len()).unwrap();
    let img: Arc<dyn Image> = Arc::new(RawImage::open(payload, access).unwrap());
    Volume::new(img, &seg, key).unwrap()
}

fn plaintext(payload: &Path, state: &State, key: &VolumeKey) -> Vec<u8> {
    let v = volume(payload, state, key, Access::ReadOnly);
    let mut buf = vec![0u8; v.size() as usize];
    assert_eq!(v.read_at(&mut buf, 0).unwrap(), buf.len());
    buf
}

/// The hashes cryptsetup's checksum resilience stores for `old` bytes.
fn checksums(old: &[u8], hash: HashAlg, block: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for b in old.chunks_exact(block) {
        let mut h = vec![0u8; hash.len()];
        hash.hash_into(&[b], &mut h);
        out.extend(h);
    }
    out
}

/// One hotzone by hand, as the data mover does it: raw old bytes, `protect`, the converted
/// bytes written (only the first `write` bytes of them when given: a crash), `advance`.
fn hotzone(r: &mut Reencryption, payload: &Path, hot: Range<u64>, write: Option<usize>) {
    let old = read_raw(payload, &hot);
    r.protect(hot.clone(), &old, None).unwrap();
    let state = r.state().clone();
    let n = write.unwrap_or(old.len());
    match state.mode {
        Mode::Encrypt => {
            let v = volume(payload, &state, r.new_key().unwrap(), Access::ReadWrite);
            assert_eq!(v.write_at(&old[..n], hot.start).unwrap(), n);
            v.flush().unwrap();
            close(v);
        }
        Mode::Decrypt => {
            let v = volume(payload, &state, r.old_key().unwrap(), Access::ReadOnly);
            let mut plain = vec![0u8; old.len()];
            assert_eq!(v.read_at(&mut plain, hot.start).unwrap(), plain.len());
            close(v);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(payload)
                .unwrap();
            f.write_all_at(&plain[..n], hot.start).unwrap();
            f.sync_data().unwrap();
        }
    }
    if write.is_none() {
        r.advance().unwrap();
    }
}

/// A detached header made by cryptsetup, its data encrypted from `plain` through Volume.
fn encrypted_fixture(seed: u64, sector: &str) -> (Fixture, Vec<u8>) {
    let (f, plain) = fixture(seed);
    let f = f.luks_format(&[
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--sector-size",
        sector,
    ]);
    let key = VolumeKey(Secret::new(f.volume_key()));
    let h = parse(&f.header);
    let img: Arc<dyn Image> = Arc::new(RawImage::open(&f.payload, Access::ReadWrite).unwrap());
    let v = Volume::new(img, h.segment(), &key).unwrap();
    assert_eq!(v.write_at(&plain, 0).unwrap(), plain.len());
    v.flush().unwrap();
    close(v);
    (f, plain)
}

#[test]
fn cryptsetup_encrypt_states_parse_resume_and_dump_alike() {
    need_cryptsetup!();
    for (resilience, kill_at) in [("checksum", 28), ("journal", 22)] {
        let (f, plain) = fixture(1);
        f.cryptsetup(&[
            "reencrypt",
            "--encrypt",
            "--init-only",
            "--key-file",
            s(&f.keyfile),
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--resilience",
            resilience,
        ]);
        // Init.
        dumps_agree(&f.header, "encrypt init");
        mount_refused(&f, "encrypt");
        let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
        let st = r.state().clone();
        assert_eq!(
            (st.mode, st.converted.clone(), st.hot.clone()),
            (Mode::Encrypt, 0..0, None)
        );
        assert_eq!(st.old.encryption, None);
        assert_eq!(st.new.encryption.as_deref(), Some("aes-xts-plain64"));
        assert_eq!(st.area, 290816..16777216);
        match (resilience, st.resilience) {
            ("checksum", Resilience::Checksum { hash, block }) => {
                assert_eq!((hash, block), (HashAlg::Sha256, 4096))
            }
            ("journal", Resilience::Journal) => {}
            (_, other) => panic!("{resilience}: {other:?}"),
        }
        // The verification data has the length docs/cryptsetup-reencrypt.md §3 measured.
        let h = parse(&f.header);
        let data = verification_data(h.as_luks2().unwrap().json(), 2, None, r.new_key()).unwrap();
        assert_eq!(data.len(), if resilience == "checksum" { 182 } else { 171 });
        close(r);
        // Hot: killed on the data write of the second 1 MiB hotzone.
        cs_resume(&f, "1M", Some(kill_at));
        dumps_agree(&f.header, "encrypt hot");
        mount_refused(&f, "encrypt");
        let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
        let st = r.state().clone();
        assert_eq!(st.converted, 0..MIB, "{resilience}");
        assert_eq!(st.hot, Some(MIB..2 * MIB), "{resilience}");
        let rec = r.recovery_data().unwrap();
        let old = &plain[MIB as usize..2 * MIB as usize];
        match st.resilience {
            Resilience::Checksum { hash, block } => {
                assert_eq!(rec.as_bytes(), checksums(old, hash, block as usize))
            }
            _ => assert_eq!(rec.as_bytes(), old, "the journal holds the old plaintext"),
        }
        close(r);
        // Post, after cryptsetup's recovery.
        cs_repair(&f);
        dumps_agree(&f.header, "encrypt post");
        let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
        assert_eq!(
            (r.state().converted.clone(), r.state().hot.clone()),
            (0..2 * MIB, None)
        );
        let key = VolumeKey(Secret::from_slice(r.new_key().unwrap().as_bytes()));
        let st = r.state().clone();
        close(r);
        // The encrypted part decrypts to the plaintext, the rest is still plaintext.
        let dec = plaintext(&f.payload, &st, &key);
        assert_eq!(&dec[..2 * MIB as usize], &plain[..2 * MIB as usize]);
        assert_eq!(
            read_raw(&f.payload, &(2 * MIB..SIZE)),
            &plain[2 * MIB as usize..]
        );
        // cryptsetup finishes; the end state parses and maps.
        cs_resume(&f, "4M", None);
        dumps_agree(&f.header, "encrypt end");
        let h = parse(&f.header);
        h.mappable().unwrap();
        assert_eq!(plaintext(&f.payload, &st, &key), plain);
    }
}

#[test]
fn cryptsetup_decrypt_states_parse_and_resume() {
    need_cryptsetup!();
    let (f, plain) = encrypted_fixture(2, "4096");
    f.cryptsetup(&[
        "reencrypt",
        "--decrypt",
        "--init-only",
        "--force-offline-reencrypt",
        "--key-file",
        s(&f.keyfile),
    ]);
    dumps_agree(&f.header, "decrypt init");
    mount_refused(&f, "decrypt");
    let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
    let st = r.state().clone();
    assert_eq!(
        (st.mode, st.converted.clone(), st.hot.clone()),
        (Mode::Decrypt, SIZE..SIZE, None)
    );
    assert_eq!(
        (st.old.sector_size, st.new.encryption.clone()),
        (4096, None)
    );
    let h = parse(&f.header);
    let data = verification_data(h.as_luks2().unwrap().json(), 2, r.old_key(), None).unwrap();
    assert_eq!(data.len(), 183);
    close(r);
    cs_resume(&f, "1M", Some(28));
    dumps_agree(&f.header, "decrypt hot");
    let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
    let st = r.state().clone();
    assert_eq!(st.converted, SIZE - MIB..SIZE);
    assert_eq!(st.hot, Some(SIZE - 2 * MIB..SIZE - MIB));
    // The checksums are of the old ciphertext, which the kill left in place.
    let old = read_raw(&f.payload, st.hot.as_ref().unwrap());
    assert_eq!(
        r.recovery_data().unwrap().as_bytes(),
        checksums(&old, HashAlg::Sha256, 4096)
    );
    close(r);
    cs_repair(&f);
    dumps_agree(&f.header, "decrypt post");
    let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
    assert_eq!(r.state().converted, SIZE - 2 * MIB..SIZE);
    assert_eq!(
        read_raw(&f.payload, &(SIZE - 2 * MIB..SIZE)),
        &plain[(SIZE - 2 * MIB) as usize..]
    );
    close(r);
    cs_resume(&f, "4M", None);
    dumps_agree(&f.header, "decrypt end");
    assert_eq!(std::fs::read(&f.payload).unwrap(), plain);
}

#[test]
fn tampered_reencryption_metadata_is_refused_by_both() {
    need_cryptsetup!();
    let (f, _) = fixture(3);
    f.cryptsetup(&[
        "reencrypt",
        "--encrypt",
        "--init-only",
        "--key-file",
        s(&f.keyfile),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ]);
    let mut img = f.read_header();
    // Still valid metadata (the area moves within the keyslots area), but not what the
    // verification digest binds.
    rewrite_json(&mut img, &|j| {
        j["keyslots"]["1"]["area"]["offset"] = json!("294912");
        j["keyslots"]["1"]["area"]["size"] = json!("16482304");
    });
    write_file(&f.header, &img);
    dumps_agree(&f.header, "tampered");
    let e = Reencryption::resume(&f.header, &pass(), SIZE).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(
        e.message().contains("Reencryption metadata is invalid."),
        "{e}"
    );
    let (ok, out) = cryptsetup(&[
        "reencrypt",
        "--resume-only",
        "--force-offline-reencrypt",
        "--batch-mode",
        "--key-file",
        s(&f.keyfile),
        "--header",
        s(&f.header),
        s(&f.payload),
    ]);
    assert!(
        !ok && out.contains("Reencryption metadata is invalid"),
        "{out}"
    );
    assert_eq!(std::fs::read(&f.header).unwrap(), img, "nothing written");
}

#[test]
fn luksfuse_init_encrypt_is_finished_by_cryptsetup() {
    need_cryptsetup!();
    for resilience in [Resilience::DEFAULT, Resilience::Journal, Resilience::None] {
        let (f, plain) = fixture(4);
        let params = Params {
            resilience,
            ..fast()
        };
        let r =
            Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &params, SIZE, false)
                .unwrap();
        let st = r.state().clone();
        assert_eq!((st.converted.clone(), st.hot.clone()), (0..0, None));
        // The resilience area is all of the keyslots area after keyslot 0, as cryptsetup's.
        assert_eq!(st.area, 290816..16777216);
        let want = match resilience {
            Resilience::Journal => 16486400, // the area
            _ => 1 << 30,                    // cryptsetup's largest hotzone
        };
        assert_eq!(r.max_hotzone(), want, "{resilience:?}");
        assert_eq!(st.next_hotzone(3 * MIB + 100), Some(0..3 * MIB));
        let key = VolumeKey(Secret::from_slice(r.new_key().unwrap().as_bytes()));
        close(r);
        assert_eq!(
            std::fs::read(&f.payload).unwrap(),
            plain,
            "init writes no data"
        );
        dumps_agree(&f.header, "luksfuse encrypt init");
        assert_eq!(f.volume_key(), key.as_bytes());
        // Exists: refused unless forced.
        let e =
            Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &params, SIZE, false)
                .unwrap_err();
        assert_eq!(e.exit_code(), 1, "{e}");
        // Forced over a header in use (a mount holds a shared lock): refused too.
        let mounted = luksfuse::luks::update::lock_shared(&f.header).unwrap();
        let e = Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &params, SIZE, true)
            .unwrap_err();
        assert_eq!(e.exit_code(), 5, "{e}");
        close(mounted);
        cs_resume(&f, "4M", None);
        assert_eq!(plaintext(&f.payload, &st, &key), plain, "{resilience:?}");
        let h = parse(&f.header);
        h.mappable().unwrap();
        // Forced over a header nobody uses: a new one.
        let r = Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &params, SIZE, true)
            .unwrap();
        assert_ne!(r.header().uuid(), h.uuid());
        close(r);
        assert!(parse(&f.header).as_luks2().unwrap().in_reencryption());
    }
}

#[test]
fn luksfuse_init_decrypt_is_finished_by_cryptsetup() {
    need_cryptsetup!();
    let (f, plain) = encrypted_fixture(5, "512");
    let r = Reencryption::init_decrypt(&f.header, &pass(), &fast(), SIZE).unwrap();
    assert_eq!(r.state().converted, SIZE..SIZE);
    assert_eq!(r.state().mode, Mode::Decrypt);
    close(r);
    dumps_agree(&f.header, "luksfuse decrypt init");
    mount_refused(&f, "decrypt");
    cs_resume(&f, "4M", None);
    assert_eq!(std::fs::read(&f.payload).unwrap(), plain);
    let h = parse(&f.header);
    assert!(h.active_slots().is_empty());
    assert_eq!(h.as_luks2().unwrap().metadata().segments[&0].kind, "linear");
}

#[test]
fn hotzones_protected_by_luksfuse_are_recovered_by_cryptsetup() {
    need_cryptsetup!();
    // Encrypt: three hotzones, then a crash with half of the fourth written.
    for resilience in [Resilience::DEFAULT, Resilience::Journal] {
        let (f, plain) = fixture(6);
        let params = Params {
            resilience,
            ..fast()
        };
        let mut r =
            Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &params, SIZE, false)
                .unwrap();
        for i in 0..3 {
            hotzone(&mut r, &f.payload, i * MIB..(i + 1) * MIB, None);
        }
        assert_eq!(r.state().converted, 0..3 * MIB);
        hotzone(&mut r, &f.payload, 3 * MIB..4 * MIB, Some(MIB as usize / 2));
        let st = r.state().clone();
        let key = VolumeKey(Secret::from_slice(r.new_key().unwrap().as_bytes()));
        close(r);
        dumps_agree(&f.header, "luksfuse encrypt hot");
        // luksfuse reads back what it wrote.
        let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
        assert_eq!(r.state().hot, Some(3 * MIB..4 * MIB), "{resilience:?}");
        assert_eq!(r.state().converted, 0..3 * MIB);
        if resilience == Resilience::Journal {
            let old = &plain[3 * MIB as usize..4 * MIB as usize];
            assert_eq!(r.recovery_data().unwrap().as_bytes(), old);
        }
        close(r);
        cs_repair(&f);
        cs_resume(&f, "4M", None);
        assert_eq!(plaintext(&f.payload, &st, &key), plain, "{resilience:?}");
    }

    // Decrypt, backward: two hotzones, then a crash with a quarter of the third written.
    let (f, plain) = encrypted_fixture(7, "4096");
    let mut r = Reencryption::init_decrypt(&f.header, &pass(), &fast(), SIZE).unwrap();
    for i in 1..3 {
        hotzone(
            &mut r,
            &f.payload,
            SIZE - i * MIB..SIZE - (i - 1) * MIB,
            None,
        );
    }
    assert_eq!(r.state().converted, SIZE - 2 * MIB..SIZE);
    hotzone(
        &mut r,
        &f.payload,
        SIZE - 3 * MIB..SIZE - 2 * MIB,
        Some(MIB as usize / 4),
    );
    close(r);
    dumps_agree(&f.header, "luksfuse decrypt hot");
    cs_repair(&f);
    cs_resume(&f, "4M", None);
    assert_eq!(std::fs::read(&f.payload).unwrap(), plain);
}

/// Recovers the hot zone of `r` from its checksums, as cryptsetup's `reencrypt_recover_segment`
/// does: blocks whose hash is the stored one still hold the old bytes and are converted.
fn recover(r: &mut Reencryption, payload: &Path) {
    let st = r.state().clone();
    let hot = st.hot.clone().unwrap();
    let Resilience::Checksum { hash, block } = st.resilience else {
        panic!("checksum only")
    };
    let stored = r.recovery_data().unwrap();
    let now = read_raw(payload, &hot);
    let mut stale = Vec::new();
    for (i, b) in now.chunks_exact(block as usize).enumerate() {
        if checksums(b, hash, block as usize)
            == stored.as_bytes()[i * hash.len()..(i + 1) * hash.len()]
        {
            let at = hot.start + (i as u64) * u64::from(block);
            stale.push(at..at + u64::from(block));
        }
    }
    assert!(
        !stale.is_empty() && stale.len() < now.len() / block as usize,
        "{} blocks to recover",
        stale.len()
    );
    assert_eq!(r.stale_blocks(&now).unwrap(), stale);
    let v = volume(payload, &st, r.new_key().unwrap(), Access::ReadWrite);
    for b in &stale {
        let off = (b.start - hot.start) as usize;
        let len = (b.end - b.start) as usize;
        assert_eq!(v.write_at(&now[off..off + len], b.start).unwrap(), len);
    }
    v.flush().unwrap();
    close(v);
    r.advance().unwrap();
}

#[test]
fn luksfuse_resumes_what_cryptsetup_left_and_finishes_like_it() {
    need_cryptsetup!();
    let (f, plain) = fixture(8);
    f.cryptsetup(&[
        "reencrypt",
        "--encrypt",
        "--init-only",
        "--key-file",
        s(&f.keyfile),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ]);
    cs_resume(&f, "1M", Some(28));
    let mut r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
    assert_eq!(r.state().hot, Some(MIB..2 * MIB));
    // Half of the hotzone's blocks made new by hand: recovery converts only the others.
    let st = r.state().clone();
    {
        let v = volume(&f.payload, &st, r.new_key().unwrap(), Access::ReadWrite);
        let half = MIB as usize / 2;
        let m = MIB as usize;
        assert_eq!(v.write_at(&plain[m..m + half], MIB).unwrap(), half);
        v.flush().unwrap();
        close(v);
    }
    recover(&mut r, &f.payload);
    assert_eq!(r.state().converted, 0..2 * MIB);
    while let Some(hot) = r.state().next_hotzone(3 * MIB) {
        hotzone(&mut r, &f.payload, hot, None);
    }
    let key = VolumeKey(Secret::from_slice(r.new_key().unwrap().as_bytes()));
    r.finish().unwrap();
    dumps_agree(&f.header, "luksfuse encrypt end");
    let h = parse(&f.header);
    h.mappable().unwrap();
    let j = h.as_luks2().unwrap().json();
    assert_eq!(j["config"].get("requirements"), None, "{j}");
    assert_eq!(j["keyslots"].as_object().unwrap().len(), 1);
    assert_eq!(j["digests"]["0"]["segments"], json!(["0"]));
    assert_eq!(f.volume_key(), key.as_bytes());
    assert_eq!(plaintext(&f.payload, &st, &key), plain);
    // cryptsetup unlocks the result.
    f.cryptsetup(&["open", "--test-passphrase", "--key-file", s(&f.keyfile)]);
}

#[test]
fn luksfuse_decrypts_start_to_finish_like_cryptsetup() {
    need_cryptsetup!();
    let (f, plain) = encrypted_fixture(9, "4096");
    let mut r = Reencryption::init_decrypt(&f.header, &pass(), &fast(), SIZE).unwrap();
    while let Some(hot) = r.state().next_hotzone(5 * MIB) {
        hotzone(&mut r, &f.payload, hot, None);
    }
    r.finish().unwrap();
    dumps_agree(&f.header, "luksfuse decrypt end");
    assert_eq!(std::fs::read(&f.payload).unwrap(), plain);
    let j = parse(&f.header).as_luks2().unwrap().json().clone();
    assert_eq!(
        (
            j["keyslots"].clone(),
            j["digests"].clone(),
            j["tokens"].clone()
        ),
        (json!({}), json!({}), json!({}))
    );
    assert_eq!(
        j["segments"],
        json!({"0": {"type": "linear", "offset": "0", "size": "dynamic"}})
    );
    assert_eq!(j["config"].get("requirements"), None);
}

#[test]
fn a_second_run_and_a_stale_sequence_id_are_refused() {
    need_cryptsetup!();
    let (f, _) = fixture(10);
    let mut r =
        Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &fast(), SIZE, false)
            .unwrap();
    // The reencryption lock: neither luksfuse nor cryptsetup starts a second run.
    let e = Reencryption::resume(&f.header, &pass(), SIZE).unwrap_err();
    assert_eq!(e.exit_code(), 5, "{e}");
    // Someone else wrote the header: the next write is refused.
    let mut img = f.read_header();
    let hs = hdr_size(&img);
    let seq = parse(&f.header).as_luks2().unwrap().seqid();
    set_seqid(&mut img, 0, seq + 5);
    set_seqid(&mut img, hs, seq + 5);
    write_file(&f.header, &img);
    let old = read_raw(&f.payload, &(0..MIB));
    let e = r.protect(0..MIB, &old, None).unwrap_err();
    assert_eq!(e.exit_code(), 5, "{e}");
    assert_eq!(f.read_header(), img, "nothing written");
    close(r);
    // A mounted header (a luksfuse mount holds a shared lock) is not decrypted under it.
    let (f, _) = encrypted_fixture(15, "512");
    let mounted = luksfuse::luks::update::lock_shared(&f.header).unwrap();
    let e = Reencryption::init_decrypt(&f.header, &pass(), &fast(), SIZE).unwrap_err();
    assert_eq!(e.exit_code(), 5, "{e}");
    close(mounted);
    let r = Reencryption::init_decrypt(&f.header, &pass(), &fast(), SIZE).unwrap();
    // Between writes the run holds a shared lock: a key change is refused, readers read.
    assert_eq!(
        luksfuse::luks::update::Locked::open(&f.header)
            .err()
            .unwrap()
            .exit_code(),
        5
    );
    dumps_agree(&f.header, "during a run");
    close(r);
}

#[test]
fn damaged_reencryption_metadata_is_refused_like_cryptsetup() {
    need_cryptsetup!();
    let (f, _) = fixture(11);
    f.cryptsetup(&[
        "reencrypt",
        "--encrypt",
        "--init-only",
        "--key-file",
        s(&f.keyfile),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ]);
    let base = f.read_header();
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "key size",
            |j| j["keyslots"]["1"]["key_size"] = json!(2),
            "reencryption keyslot key size 2, must be 1",
        ),
        (
            "mode",
            |j| j["keyslots"]["1"]["mode"] = json!("scramble"),
            "unknown reencryption mode 'scramble'",
        ),
        (
            "backup before a regular segment",
            |j| {
                let prev = j["segments"]["1"].take();
                j["segments"]["1"] = j["segments"]["0"].take();
                j["segments"]["0"] = prev;
            },
            "regular segment after backup segment",
        ),
        (
            "no backup-final",
            |j| j["segments"]["2"]["flags"] = json!(["backup-moved-segment"]),
            "'backup-final' or 'backup-previous' segment is missing",
        ),
        (
            "area past the keyslots area",
            |j| j["keyslots"]["1"]["area"]["size"] = json!("16490496"),
            "past the keyslots area end",
        ),
    ];
    for (what, edit, says) in cases {
        let mut img = base.clone();
        rewrite_json(&mut img, edit);
        write_file(&f.header, &img);
        let r = luksfuse(&["dump", s(&f.header)], b"");
        assert_eq!(r.code, 4, "{what}: {}", r.stderr);
        let lines: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| !l.starts_with("hint:"))
            .collect();
        assert_eq!(lines.len(), 1, "{what}: {}", r.stderr);
        assert!(
            lines[0].starts_with(&format!("luksfuse: {}: ", s(&f.header))),
            "{what}: {}",
            r.stderr
        );
        assert!(lines[0].contains(says), "{what}: {}", r.stderr);
        let (ok, out) = cryptsetup(&["luksDump", s(&f.header)]);
        assert!(!ok, "{what}: cryptsetup accepts it: {out}");
        assert_eq!(
            std::fs::read(&f.header).unwrap(),
            img,
            "{what}: file changed"
        );
    }
}

#[test]
fn key_commands_refuse_a_header_in_reencryption() {
    need_cryptsetup!();
    let (f, _) = fixture(12);
    let r = Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &fast(), SIZE, false)
        .unwrap();
    close(r);
    let before = f.read_header();
    let newkey = f.path("newkey");
    write_file(&newkey, b"another");
    for args in [
        vec![
            "add-key",
            "-d",
            s(&f.keyfile),
            "--new-key-file",
            s(&newkey),
            s(&f.header),
        ],
        vec!["remove-key", "-d", s(&f.keyfile), s(&f.header)],
        vec!["kill-slot", "-q", "0", s(&f.header)],
    ] {
        let r = luksfuse(&args, b"");
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("encryption in progress"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(f.read_header(), before);
}

#[test]
fn none_resilience_records_progress_only_at_checkpoints() {
    need_cryptsetup!();
    let (f, plain) = fixture(13);
    let params = Params {
        resilience: Resilience::None,
        ..fast()
    };
    let mut r =
        Reencryption::init_encrypt(&f.header, &fast_format(), &pass(), &params, SIZE, false)
            .unwrap();
    let before = f.read_header();
    for i in 0..3 {
        hotzone(&mut r, &f.payload, i * 2 * MIB..(i + 1) * 2 * MIB, None);
    }
    // As cryptsetup: nothing is written per hotzone.
    assert_eq!(f.read_header(), before);
    assert_eq!(r.state().converted, 0..6 * MIB);
    // Going back is refused; the checkpoint records the progress.
    assert_eq!(r.checkpoint(0..4 * MIB).unwrap_err().exit_code(), 1);
    r.checkpoint(0..6 * MIB).unwrap();
    let st = r.state().clone();
    let key = VolumeKey(Secret::from_slice(r.new_key().unwrap().as_bytes()));
    close(r);
    dumps_agree(&f.header, "luksfuse encrypt checkpoint");
    let r = Reencryption::resume(&f.header, &pass(), SIZE).unwrap();
    assert_eq!(
        (r.state().converted.clone(), r.state().hot.clone()),
        (0..6 * MIB, None)
    );
    close(r);
    cs_resume(&f, "4M", None);
    assert_eq!(plaintext(&f.payload, &st, &key), plain);
}

#[test]
fn older_and_data_shift_reencryption_is_left_to_cryptsetup() {
    need_cryptsetup!();
    let (f, _) = fixture(14);
    f.cryptsetup(&[
        "reencrypt",
        "--encrypt",
        "--init-only",
        "--key-file",
        s(&f.keyfile),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ]);
    let base = f.read_header();
    for (req, says) in [
        (
            "online-reencrypt",
            "run 'cryptsetup repair --header HEADER PAYLOAD'",
        ),
        ("online-reencrypt-v3", "data shift"),
    ] {
        let mut img = base.clone();
        rewrite_json(&mut img, &|j| {
            j["config"]["requirements"]["mandatory"] = json!([req]);
        });
        write_file(&f.header, &img);
        // Valid metadata for both tools: dumped alike, but neither resumed nor mapped.
        dumps_agree(&f.header, req);
        let e = Reencryption::resume(&f.header, &pass(), SIZE).unwrap_err();
        assert_eq!(e.exit_code(), 4, "{req}: {e}");
        assert!(e.message().contains(says), "{req}: {e}");
        let e = parse(&f.header).mappable().unwrap_err();
        assert!(e.message().contains(says), "{req}: {e}");
        assert_eq!(f.read_header(), img, "{req}: file changed");
    }
}

#[test]
fn progress_that_does_not_fit_is_refused_without_a_write() {
    need_cryptsetup!();
    let (f, _) = fixture(16);
    f.cryptsetup(&[
        "reencrypt",
        "--encrypt",
        "--init-only",
        "--key-file",
        s(&f.keyfile),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ]);
    cs_resume(&f, "1M", Some(28));
    cs_repair(&f);
    let base = f.read_header();
    // The payload is smaller than what the header says is encrypted already.
    let e = Reencryption::resume(&f.header, &pass(), MIB).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(
        e.message()
            .contains("past the end of the 1048576-byte payload"),
        "{e}"
    );
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(Edit, &str)] = &[
        // Valid for cryptsetup's validation (no overlap), but a gap in the progress.
        (
            |j| j["segments"]["1"]["offset"] = json!("3145728"),
            "segment 1 starts at 3145728 instead of 2097152",
        ),
        // A key change: cryptsetup's to finish.
        (
            |j| j["keyslots"]["1"]["mode"] = json!("reencrypt"),
            "luksfuse resumes encryption forward and decryption backward only",
        ),
        (
            |j| j["keyslots"]["1"]["direction"] = json!("backward"),
            "direction 'backward'",
        ),
        // Damaged (cryptsetup's reenc_keyslot_validate wants the shift), then unsupported.
        (
            |j| j["keyslots"]["1"]["area"]["type"] = json!("datashift"),
            "missing 'shift_size'",
        ),
        (
            |j| {
                j["keyslots"]["1"]["area"]["type"] = json!("datashift");
                j["keyslots"]["1"]["area"]["shift_size"] = json!("4096");
            },
            "resilience 'datashift' is not supported",
        ),
    ];
    for (edit, says) in cases {
        let mut img = base.clone();
        rewrite_json(&mut img, edit);
        write_file(&f.header, &img);
        let e = Reencryption::resume(&f.header, &pass(), SIZE).unwrap_err();
        assert_eq!(e.exit_code(), 4, "{says}: {e}");
        assert!(e.message().contains(says), "{says}: {e}");
        assert_eq!(f.read_header(), img, "{says}: file changed");
    }
}
