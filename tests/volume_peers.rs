//! Volume against the real peers: QEMU's luks driver (LUKS1, 512-byte sectors) and
//! `cryptsetup reencrypt` (LUKS2, 512/2048/4096-byte sectors). Keys come from
//! `cryptsetup luksDump --dump-volume-key`, segments from `cryptsetup luksDump`.

mod common;

use common::*;
use luksfuse::image::{Access, Image, RawImage};
use luksfuse::secret::{Secret, VolumeKey};
use luksfuse::volume::{IvUnits, Volume};
use std::ffi::OsStr;
use std::process::Command;
use std::sync::Arc;

fn volume(f: &Fixture, access: Access) -> Volume {
    let key = cryptsetup_volume_key(
        &f.header,
        &[OsStr::new("--key-file"), f.keyfile.as_os_str()],
    );
    let seg = segment_from_cryptsetup(&f.header);
    let img: Arc<dyn Image> = Arc::new(RawImage::open(&f.payload, access).unwrap());
    Volume::new(img, &seg, &VolumeKey(Secret::new(key))).unwrap()
}

/// QEMU's `--image-opts` for the luks driver over this fixture.
fn qemu_luks_opts(f: &Fixture) -> String {
    format!(
        "driver=luks,key-secret=s,file.filename={},header.filename={}",
        f.payload.display(),
        f.header.display()
    )
}

fn qemu_secret(f: &Fixture) -> String {
    format!("secret,id=s,file={}", f.keyfile.display())
}

/// Writes at awkward offsets through `vol` and into `model` alike.
fn unaligned_writes(vol: &Volume, model: &mut [u8], seed: u64) {
    let s = vol.sector_size() as u64;
    for (i, (off, len)) in [
        (1, 3),
        (s - 5, 10),
        (3 * s + 17, 5 * s + 100),
        (12345, 1000),
        (500_001, 70_000),
        (vol.size() - 7, 7),
    ]
    .into_iter()
    .enumerate()
    {
        let data = noise(len as usize, seed + i as u64);
        assert_eq!(vol.write_at(&data, off).unwrap(), len as usize);
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
    }
    // Past the end: short, never grows.
    assert_eq!(vol.write_at(&[1, 2, 3], vol.size() - 1).unwrap(), 1);
    model[vol.size() as usize - 1] = 1;
    assert_eq!(vol.write_at(&[1], vol.size()).unwrap(), 0);
    vol.flush().unwrap();
}

fn luks1_round_trip_with_qemu(cipher: &str, bits: &str) {
    let f = luks_format(&[
        "--type",
        "luks1",
        "--iter-time",
        "10",
        "-c",
        cipher,
        "-s",
        bits,
    ]);
    // QEMU encrypts a random plaintext into the payload, plus a pattern written by qemu-io.
    let plain_path = f.path("plain.bin");
    let size = 16u64 << 20;
    let mut model = noise(size as usize, 7);
    write_file(&plain_path, &model);
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "--object", &qemu_secret(&f)])
            .arg(&plain_path)
            .args(["--target-image-opts", &qemu_luks_opts(&f)]),
    );
    run_ok(Command::new("qemu-io").args([
        "--object",
        &qemu_secret(&f),
        "--image-opts",
        &qemu_luks_opts(&f),
        "-c",
        "write -P 0x5a 4096 65536",
    ]));
    model[4096..4096 + 65536].fill(0x5a);

    let vol = volume(&f, Access::ReadWrite);
    assert_eq!(vol.size(), size);
    let mut got = vec![0u8; size as usize];
    assert_eq!(vol.read_at(&mut got, 0).unwrap(), size as usize);
    assert!(
        got == model,
        "{cipher} {bits}: Volume reads what QEMU wrote"
    );

    unaligned_writes(&vol, &mut model, 99);
    close(vol); // releases the payload locks
    let out = f.path("out.bin");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "--object", &qemu_secret(&f), "-O", "raw"])
            .args(["--image-opts", &qemu_luks_opts(&f)])
            .arg(&out),
    );
    assert!(
        std::fs::read(&out).unwrap() == model,
        "{cipher} {bits}: QEMU reads what Volume wrote"
    );
}

#[test]
fn luks1_xts_plain64_512_round_trips_with_qemu() {
    luks1_round_trip_with_qemu("aes-xts-plain64", "512");
}

#[test]
fn luks1_xts_plain64_256_round_trips_with_qemu() {
    luks1_round_trip_with_qemu("aes-xts-plain64", "256");
}

#[test]
fn luks1_xts_plain_round_trips_with_qemu() {
    luks1_round_trip_with_qemu("aes-xts-plain", "512");
}

#[test]
fn luks1_cbc_essiv_round_trips_with_qemu() {
    luks1_round_trip_with_qemu("aes-cbc-essiv:sha256", "256");
}

/// `cryptsetup reencrypt --encrypt` a random payload in place, read it through Volume, write
/// through Volume, `reencrypt --decrypt`, compare. Also proves which IV units cryptsetup uses.
fn luks2_round_trip_with_cryptsetup(sector: u32, bits: &str) {
    let f = Fixture::new();
    let size = 4usize << 20;
    let mut model = noise(size, sector as u64);
    write_file(&f.payload, &model);
    let sector_arg = sector.to_string();
    let mut args = vec![
        "reencrypt",
        "--encrypt",
        "-q",
        "--type",
        "luks2",
        "-c",
        "aes-xts-plain64",
        "-s",
        bits,
        "--sector-size",
        &sector_arg,
    ];
    args.extend(fast_kdf("pbkdf2"));
    run_ok(
        Command::new("cryptsetup")
            .args(&args)
            .arg("--header")
            .arg(&f.header)
            .arg("--key-file")
            .arg(&f.keyfile)
            .arg(&f.payload),
    );
    assert_ne!(std::fs::read(&f.payload).unwrap(), model, "not encrypted");
    let seg = segment_from_cryptsetup(&f.header);
    assert_eq!(seg.sector_size.get(), sector);

    let vol = volume(&f, Access::ReadOnly);
    assert_eq!(vol.size(), size as u64);
    let mut got = vec![0u8; size];
    vol.read_at(&mut got, 0).unwrap();
    close(vol);
    assert!(
        got == model,
        "sector {sector}: Volume reads cryptsetup's data"
    );
    if sector > 512 {
        // The other convention does not match: cryptsetup counts IVs in 512-byte units even
        // for larger sectors (dm-crypt without iv_large_sectors).
        let other = volume(&f, Access::ReadOnly).with_iv_units(IvUnits::Sector);
        let mut wrong = vec![0u8; 2 * sector as usize];
        other.read_at(&mut wrong, 0).unwrap();
        assert_eq!(wrong[..sector as usize], model[..sector as usize]);
        assert_ne!(
            wrong[sector as usize..],
            model[sector as usize..2 * sector as usize]
        );
        close(other);
    }
    let vol = volume(&f, Access::ReadWrite);
    unaligned_writes(&vol, &mut model, 1234);
    close(vol);

    run_ok(
        Command::new("cryptsetup")
            .args(["reencrypt", "--decrypt", "--force-offline-reencrypt", "-q"])
            .arg("--header")
            .arg(&f.header)
            .arg("--key-file")
            .arg(&f.keyfile)
            .arg(&f.payload),
    );
    assert!(
        std::fs::read(&f.payload).unwrap() == model,
        "sector {sector}: cryptsetup decrypts what Volume wrote"
    );
}

#[test]
fn luks2_sector_512_round_trips_with_cryptsetup() {
    luks2_round_trip_with_cryptsetup(512, "256");
}

#[test]
fn luks2_sector_2048_round_trips_with_cryptsetup() {
    luks2_round_trip_with_cryptsetup(2048, "256");
}

#[test]
fn luks2_sector_4096_round_trips_with_cryptsetup() {
    luks2_round_trip_with_cryptsetup(4096, "256");
}

#[test]
fn luks2_sector_4096_aes256_round_trips_with_cryptsetup() {
    luks2_round_trip_with_cryptsetup(4096, "512");
}
