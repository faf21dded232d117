//! LUKS images that hold their header (`cryptsetup luksFormat disk.img`, `qemu-img create -f
//! luks`), served by the two-argument `luksfuse mount IMAGE MOUNTPOINT` and by the mount helper
//! without `header=`: the data the peer wrote reads back, writes through the mount read back in
//! the peer, and no byte of the header area changes.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::process::Command;

/// sha256 of the bytes `range` of `path` (`..end` or `start..`).
fn sha256_of(path: &std::path::Path, range: impl std::ops::RangeBounds<usize>) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(
        &std::fs::read(path).unwrap()[(range.start_bound().cloned(), range.end_bound().cloned())],
    )
    .to_vec()
}

/// The data offset of a LUKS image, in bytes, as luksfuse's dump names it.
fn payload_offset(image: &std::path::Path) -> u64 {
    let dump = luksfuse(&["dump", "--json", s(image)], b"");
    assert_eq!(dump.code, 0, "dump: {}", dump.stderr);
    let j: serde_json::Value = serde_json::from_str(&dump.stdout).unwrap();
    match j["version"].as_u64() {
        Some(1) => j["payload_offset"].as_u64().expect("payload_offset"),
        _ => j["metadata"]["segments"]["0"]["offset"]
            .as_str()
            .and_then(|o| o.parse().ok())
            .unwrap_or_else(|| panic!("no segment offset in {j}")),
    }
}

#[test]
fn qemu_luks1_image_through_the_two_argument_mount() {
    const LEN: usize = 4 << 20;
    let f = Fixture::attached("disk.luks");
    qemu_create_luks(
        &f,
        &f.header,
        "key-secret=s,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256,iter-time=10",
        &LEN.to_string(),
    );
    qemu_data_through_the_two_argument_mount(&f, LEN);
}

/// `cryptsetup luksFormat --type luks1 disk.img` (the header attached, data at cryptsetup's
/// 2 MiB offset), its data written by QEMU's `luks` driver: the same round trip.
#[test]
fn cryptsetup_luks1_image_through_the_two_argument_mount() {
    const LEN: usize = 4 << 20;
    let f = Fixture::attached("disk.img");
    std::fs::File::create(&f.header)
        .and_then(|h| h.set_len(LEN as u64 + (2 << 20)))
        .unwrap();
    let mut args = vec![
        "luksFormat",
        "-q",
        "--type",
        "luks1",
        "--key-file",
        s(&f.keyfile),
    ];
    args.extend(["--pbkdf-force-iterations", "1000", s(&f.header)]);
    run_ok(Command::new("cryptsetup").args(&args));
    assert_eq!(
        payload_offset(&f.header),
        2 << 20,
        "cryptsetup's LUKS1 data offset"
    );
    qemu_data_through_the_two_argument_mount(&f, LEN);
}

/// QEMU writes `len` bytes of noise into the attached image `f.header` through its `luks`
/// driver; the two-argument mount reads them, takes unaligned writes (and one at its very
/// start), and leaves the header area unchanged; QEMU then reads what the mount wrote.
fn qemu_data_through_the_two_argument_mount(f: &Fixture, len: usize) {
    let image_opts = format!("driver=luks,key-secret=s,file.filename={}", s(&f.header));
    let mut model = noise(len, 13);
    qemu_write_plain(f, &image_opts, &model);
    let offset = payload_offset(&f.header);
    assert!(offset >= 4096, "the data lies after the header");
    let header_before = sha256_of(&f.header, ..offset as usize);

    let m = Mounted::attached(f, &[], "disk");
    let served = m.mnt.join("disk");
    assert_eq!(std::fs::metadata(&served).unwrap().len(), len as u64);
    assert!(
        std::fs::read(&served).unwrap() == model,
        "the mount reads what QEMU wrote"
    );
    unaligned_writes_through(&served, &mut model, 7);
    // A write at the very start of the served file lands after the header.
    std::fs::File::options()
        .write(true)
        .open(&served)
        .and_then(|p| p.write_all_at(&[0x5a; 4096], 0))
        .unwrap();
    model[..4096].fill(0x5a);
    m.unmount();
    assert_eq!(
        sha256_of(&f.header, ..offset as usize),
        header_before,
        "the header area is unchanged"
    );
    assert!(
        qemu_read_plain(f, &image_opts) == model,
        "QEMU reads what the mount wrote"
    );
    let r = luksfuse(&["test-key", "-d", s(&f.keyfile), s(&f.header)], b"");
    assert_eq!(r.code, 0, "the key still opens it: {}", r.stderr);
}

#[test]
fn cryptsetup_luks2_image_encrypted_in_place_through_the_mount_helper() {
    // cryptsetup encrypts a plaintext file in place (userspace, no device-mapper): it shifts
    // the data by half of --reduce-device-size and puts the LUKS2 header in front.
    const LEN: u64 = 24 << 20;
    const REDUCE: u64 = 8 << 20;
    let f = Fixture::attached("disk.img");
    let plain = noise(LEN as usize, 21);
    write_file(&f.header, &plain);
    std::fs::File::options()
        .write(true)
        .open(&f.header)
        .and_then(|h| h.set_len(LEN + REDUCE))
        .unwrap();
    let mut args = vec!["reencrypt", "-q", "--encrypt", "--type", "luks2"];
    args.extend(["--reduce-device-size", "8M", "--key-file", s(&f.keyfile)]);
    args.extend(fast_kdf("pbkdf2"));
    args.push(s(&f.header));
    run_ok(Command::new("cryptsetup").args(&args));
    let offset = payload_offset(&f.header);
    assert_eq!(offset, REDUCE / 2, "cryptsetup's data offset");
    let header_before = sha256_of(&f.header, ..offset as usize);

    // mount(8)'s helper without header=: the source holds its header.
    let m = Mounted::via_helper(
        &f,
        &f.header,
        &format!("key-file={},name=disk", s(&f.keyfile)),
    );
    let mnt = m.mnt.clone();
    let served = mnt.join("disk");
    let data = std::fs::read(&served).unwrap();
    assert_eq!(data.len() as u64, LEN + REDUCE - offset);
    assert!(
        data[..LEN as usize] == plain[..],
        "the mount reads the plaintext cryptsetup encrypted"
    );
    let mut model = data;
    unaligned_writes_through(&served, &mut model, 9);
    m.unmount();
    assert_eq!(
        sha256_of(&f.header, ..offset as usize),
        header_before,
        "the header area is unchanged"
    );
    // cryptsetup decrypts only with a detached header whose data starts at 0: give it the data
    // area as a file of its own and a detached header with the image's volume key, cipher and
    // sector size (LUKS2 IVs count sectors from the segment's start, so they are the same).
    let vk = f.path("vk");
    let key = cryptsetup_volume_key(&f.header, &["--key-file".as_ref(), f.keyfile.as_os_str()]);
    write_file(&vk, &key);
    let j: serde_json::Value =
        serde_json::from_str(&luksfuse(&["dump", "--json", s(&f.header)], b"").stdout).unwrap();
    let seg = &j["metadata"]["segments"]["0"];
    let cipher = seg["encryption"].as_str().unwrap().to_owned();
    let sector = seg["sector_size"].as_u64().unwrap().to_string();
    let bits = (key.len() * 8).to_string();
    let data = f.path("data.bin");
    let mut bytes = vec![0u8; model.len()];
    std::fs::File::open(&f.header)
        .and_then(|h| h.read_exact_at(&mut bytes, offset))
        .unwrap();
    write_file(&data, &bytes);
    let detached = f.path("detached.hdr");
    let mut args = vec![
        "luksFormat",
        "-q",
        "--type",
        "luks2",
        "--header",
        s(&detached),
    ];
    args.extend(["--volume-key-file", s(&vk), "-c", &cipher, "-s", &bits]);
    args.extend(["--sector-size", &sector, "--key-file", s(&f.keyfile)]);
    args.extend(fast_kdf("pbkdf2"));
    args.push(s(&data));
    run_ok(Command::new("cryptsetup").args(&args));
    run_ok(Command::new("cryptsetup").args([
        "reencrypt",
        "-q",
        "--decrypt",
        "--force-offline-reencrypt",
        "--key-file",
        s(&f.keyfile),
        "--header",
        s(&detached),
        s(&data),
    ]));
    let back = std::fs::read(&data).unwrap();
    assert!(back == model, "cryptsetup reads what the mount wrote");
}

#[test]
fn a_detached_header_is_not_its_own_payload() {
    // `format` makes a detached header (data offset 0): served as an image, every write would
    // land on the key material. Refused, exit 4, the file unchanged.
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    let f = Fixture::new().luks_format(&args);
    let before = std::fs::read(&f.header).unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let r = luksfuse(&["mount", "-d", s(&f.keyfile), s(&f.header), s(&mnt)], b"");
    let _guard = MountGuard(mnt.clone());
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("inside the header"), "{}", r.stderr);
    assert!(!is_mounted(&mnt));
    assert!(std::fs::read(&f.header).unwrap() == before);
}

/// `cryptsetup open --test-passphrase` of the image `image` with key file `key`: its exit code.
fn cryptsetup_opens(image: &std::path::Path, key: &std::path::Path) -> i32 {
    cryptsetup_test_key(image, image, key, None)
}

#[test]
fn keys_change_inside_cryptsetup_images_and_the_data_stays() {
    for kind in ["luks1", "luks2"] {
        let what = format!("attached {kind}");
        let f = Fixture::attached("disk.img");
        write_file(&f.header, &noise(24 << 20, 5));
        let mut args = vec![
            "luksFormat",
            "-q",
            "--type",
            kind,
            "--key-file",
            s(&f.keyfile),
        ];
        args.extend(fast_kdf("pbkdf2"));
        args.push(s(&f.header));
        run_ok(Command::new("cryptsetup").args(&args));
        let offset = payload_offset(&f.header);
        let len = std::fs::metadata(&f.header).unwrap().len();
        let data = sha256_of(&f.header, offset as usize..);
        let (second, third) = (f.path("second"), f.path("third"));
        write_file(&second, b"a second passphrase");
        write_file(&third, b"a third passphrase");
        let lf = |args: &[&str]| {
            let r = luksfuse(args, b"");
            assert_eq!(r.code, 0, "{what}: {args:?}: {}", r.stderr);
        };
        let (key, img) = (s(&f.keyfile), s(&f.header));
        let fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
        lf(&[
            &["add-key", "-d", key, "--new-key-file", s(&second), img][..],
            &fast,
        ]
        .concat());
        assert_eq!(cryptsetup_opens(&f.header, &second), 0, "{what}: added");
        assert_eq!(cryptsetup_opens(&f.header, &f.keyfile), 0, "{what}: kept");
        lf(&[
            &[
                "change-key",
                "-d",
                s(&second),
                "--new-key-file",
                s(&third),
                img,
            ][..],
            &fast,
        ]
        .concat());
        assert_eq!(cryptsetup_opens(&f.header, &third), 0, "{what}: changed");
        assert_eq!(
            cryptsetup_opens(&f.header, &second),
            2,
            "{what}: old key gone"
        );
        lf(&["remove-key", "-d", s(&third), img]);
        assert_eq!(cryptsetup_opens(&f.header, &third), 2, "{what}: removed");
        assert_eq!(
            cryptsetup_opens(&f.header, &f.keyfile),
            0,
            "{what}: first key"
        );
        assert_eq!(
            std::fs::metadata(&f.header).unwrap().len(),
            len,
            "{what}: size"
        );
        assert_eq!(
            sha256_of(&f.header, offset as usize..),
            data,
            "{what}: data untouched"
        );
        // Nothing beside the image: no temporary copy was made of it.
        let others: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("luksfuse"))
            .collect();
        assert!(others.is_empty(), "{what}: {others:?}");
    }
}

#[test]
fn header_backup_is_cryptsetups_and_restore_revives_a_wiped_header() {
    for kind in ["luks1", "luks2"] {
        let what = format!("attached {kind}");
        let f = Fixture::attached("disk.img");
        write_file(&f.header, &noise(20 << 20, 8));
        let mut args = vec!["luksFormat", "-q", "--type", kind];
        args.extend(["--key-file", s(&f.keyfile)]);
        args.extend(fast_kdf("pbkdf2"));
        args.push(s(&f.header));
        run_ok(Command::new("cryptsetup").args(&args));
        let offset = payload_offset(&f.header);
        let data = sha256_of(&f.header, offset as usize..);
        let (ours, theirs) = (f.path("ours.bak"), f.path("theirs.bak"));
        let backup = |to: &std::path::Path| {
            luksfuse(
                &["header-backup", "--header-backup-file", s(to), s(&f.header)],
                b"",
            )
        };
        let restore = |extra: &[&str]| {
            let mut args = vec!["header-restore"];
            args.extend_from_slice(extra);
            args.extend(["--header-backup-file", s(&theirs), s(&f.header)]);
            luksfuse(&args, b"")
        };
        let r = backup(&ours);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        run_ok(Command::new("cryptsetup").args([
            "luksHeaderBackup",
            s(&f.header),
            "--header-backup-file",
            s(&theirs),
        ]));
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
            "{what}: the backup is cryptsetup's, byte for byte"
        );
        // A second backup to the same file is refused.
        let r = backup(&ours);
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);

        // Wipe the header (both LUKS2 copies), then restore cryptsetup's backup.
        std::fs::File::options()
            .write(true)
            .open(&f.header)
            .and_then(|h| h.write_all_at(&[0u8; 32768], 0))
            .unwrap();
        assert_ne!(cryptsetup_opens(&f.header, &f.keyfile), 0, "{what}: wiped");
        let r = restore(&[]);
        assert_eq!(
            r.code, 1,
            "{what}: no header in place needs -q: {}",
            r.stderr
        );
        let r = restore(&["-q"]);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert_eq!(
            cryptsetup_opens(&f.header, &f.keyfile),
            0,
            "{what}: restored"
        );
        assert_eq!(
            sha256_of(&f.header, offset as usize..),
            data,
            "{what}: data untouched"
        );
    }
}
