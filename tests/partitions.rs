//! `luksfuse mount --partitions`: the partitions of a decrypted disk as files. The tables are
//! written by `sgdisk` (GPT) and `sfdisk` (MBR) onto the served disk file; `sfdisk --json` is
//! the oracle for where each partition lies; `mkfs.ext4`, `e2fsck`, `fuse2fs` and `debugfs`
//! use a partition file as a file system; hostile tables are written byte by byte.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

/// A LUKS2 detached header and a 64 MiB payload (a 64 MiB decrypted disk).
fn disk_fixture() -> Fixture {
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    Fixture::new().payload_len(64 * MIB).luks_format(&args)
}

/// The partitions as `sfdisk --json` reads them from `disk`: (number, start, size) in
/// 512-byte sectors, with the kind of table; extended MBR containers are left out.
fn sfdisk_parts(disk: &Path) -> (String, Vec<(u32, u64, u64)>) {
    let out = run_ok(Command::new("sfdisk").arg("--json").arg(disk));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["partitiontable"];
    assert_eq!(t["sectorsize"], 512);
    let parts = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !matches!(p["type"].as_str(), Some("5" | "f" | "85")))
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let number = node.strip_prefix(s(disk)).unwrap().parse().unwrap();
            (
                number,
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    (t["label"].as_str().unwrap().to_owned(), parts)
}

/// The file names in the mountpoint, sorted.
fn listing(mnt: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn read_range(file: &Path, off: u64, len: u64) -> Vec<u8> {
    let f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, off).unwrap();
    buf
}

fn write_range(file: &Path, off: u64, data: &[u8]) {
    let f = std::fs::File::options().write(true).open(file).unwrap();
    f.write_all_at(data, off).unwrap();
}

/// Every partition file is as long as sfdisk says and holds exactly those bytes of the disk.
fn assert_windows(mnt: &Path, parts: &[(u32, u64, u64)]) {
    let disk = std::fs::read(mnt.join("p")).unwrap();
    for &(n, start, size) in parts {
        let file = mnt.join(format!("p-p{n}"));
        let got = std::fs::read(&file).unwrap();
        let (a, b) = ((start * 512) as usize, ((start + size) * 512) as usize);
        assert_eq!(got.len(), b - a, "size of {}", file.display());
        assert!(
            got == disk[a..b],
            "{} differs from the disk",
            file.display()
        );
    }
}

/// A write through partition `n` lands at its offset in the disk, and a write that runs
/// over the end of the partition file is cut at it: the disk after it is untouched.
fn assert_writes_stay_inside(mnt: &Path, (n, start, size): (u32, u64, u64), seed: u64) {
    let file = mnt.join(format!("p-p{n}"));
    let disk = mnt.join("p");
    let data = noise(5000, seed);
    write_range(&file, 12345, &data);
    assert_eq!(read_range(&disk, start * 512 + 12345, 5000), data);
    let end = (start + size) * 512;
    let after = read_range(&disk, end, 4096);
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    assert_eq!(f.write_at(&[0xAA; 8], size * 512 - 4).unwrap(), 4);
    assert!(f.write_at(&[0xAA; 8], size * 512).is_err());
    drop(f);
    assert_eq!(read_range(&disk, end - 4, 4), [0xAA; 4]);
    assert_eq!(
        read_range(&disk, end, 4096),
        after,
        "write escaped partition {n}"
    );
}

/// `luksfuse mount -d KEY --partitions HEADER PAYLOAD mnt`: what it said, the mountpoint and
/// a guard that unmounts it when dropped.
fn mount_partitions(f: &Fixture) -> (Run, PathBuf, MountGuard) {
    let mnt = f.path("mnt");
    let r = luksfuse(
        &[
            "mount",
            "-d",
            s(&f.keyfile),
            "--partitions",
            s(&f.header),
            s(&f.payload),
            s(&mnt),
        ],
        b"",
    );
    (r, mnt.clone(), MountGuard(mnt))
}

/// [`mount_partitions`], expecting failure: its result (nothing is left mounted).
fn mount_partitions_fails(f: &Fixture) -> Run {
    let (r, mnt, _guard) = mount_partitions(f);
    assert!(
        !is_mounted(&mnt),
        "refused mount left a mount behind: {}",
        r.stderr
    );
    r
}

#[test]
fn gpt_partitions_are_windows_of_the_disk_and_hold_a_file_system() {
    let f = disk_fixture();
    let (label, parts) = {
        let m = Mounted::new(&f, &[], "p");
        let disk = m.mnt.join("p");
        write_range(&disk, 0, &noise((64 * MIB) as usize, 7));
        // Partitions 1 and 3: slot 2 stays empty, and so does the name p-p2.
        run_ok(
            Command::new("sgdisk")
                .args(["-n", "1:2048:+16M", "-n", "3:0:+20M"])
                .arg(&disk),
        );
        let oracle = sfdisk_parts(&disk);
        m.unmount();
        oracle
    };
    assert_eq!(label, "gpt");
    assert_eq!(parts.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3]);
    let m = Mounted::new(&f, &["--partitions"], "p-p1");
    assert_eq!(listing(&m.mnt), ["p", "p-p1", "p-p3"]);
    assert_windows(&m.mnt, &parts);

    // A file system made through p-p1 is where partition 1 is on the disk, and nothing
    // outside it changed.
    let disk = m.mnt.join("p");
    let before = std::fs::read(&disk).unwrap();
    let src = f.path("src");
    std::fs::create_dir(&src).unwrap();
    let text = noise(70_000, 11);
    std::fs::write(src.join("hello.bin"), &text).unwrap();
    let p1 = m.mnt.join("p-p1");
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d", s(&src)])
            .arg(&p1),
    );
    run_ok(Command::new("e2fsck").args(["-fn"]).arg(&p1));
    let after = std::fs::read(&disk).unwrap();
    let (a, b) = (
        (parts[0].1 * 512) as usize,
        ((parts[0].1 + parts[0].2) * 512) as usize,
    );
    assert!(before[..a] == after[..a] && before[b..] == after[b..]);
    let copy = f.path("p1.ext4");
    std::fs::write(&copy, &after[a..b]).unwrap();
    let cat = run_ok(
        Command::new("debugfs")
            .args(["-R", "cat /hello.bin"])
            .arg(&copy),
    );
    assert!(
        cat.stdout == text,
        "debugfs reads another file from the disk's bytes"
    );

    // fuse2fs opens the partition file as a user would, without a loop device.
    let fsmnt = f.path("ext4");
    std::fs::create_dir(&fsmnt).unwrap();
    run_ok(
        Command::new("fuse2fs")
            .arg(&p1)
            .arg(&fsmnt)
            .args(["-o", "ro"]),
    );
    let _g = MountGuard(fsmnt.clone());
    assert!(std::fs::read(fsmnt.join("hello.bin")).unwrap() == text);
    run_ok(Command::new("fusermount3").arg("-u").arg(&fsmnt));

    assert_writes_stay_inside(&m.mnt, parts[1], 13);
    let st = luksfuse(&["status", s(&m.mnt)], b"");
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("partition: p-p3"), "{}", st.stdout);
    m.unmount();
}

#[test]
fn mbr_primary_and_logical_partitions_are_windows_of_the_disk() {
    let f = disk_fixture();
    let (label, parts) = {
        let m = Mounted::new(&f, &[], "p");
        let disk = m.mnt.join("p");
        write_range(&disk, 0, &noise((64 * MIB) as usize, 3));
        let script = "label: dos\nstart=2048, size=8M, type=83\n\
                      start=18432, size=30M, type=5\n\
                      start=20480, size=6M, type=83\nstart=34816, size=6M, type=83\n";
        let mut c = Command::new("sfdisk");
        c.arg("-q").arg(&disk);
        run_with_stdin(&mut c, script.as_bytes());
        let oracle = sfdisk_parts(&disk);
        m.unmount();
        oracle
    };
    assert_eq!(label, "dos");
    assert_eq!(parts.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 5, 6]);
    let m = Mounted::new(&f, &["--partitions"], "p-p1");
    // The extended container (2) is not served.
    assert_eq!(listing(&m.mnt), ["p", "p-p1", "p-p5", "p-p6"]);
    assert_windows(&m.mnt, &parts);
    assert_writes_stay_inside(&m.mnt, parts[1], 17);
    assert_writes_stay_inside(&m.mnt, parts[0], 19);
    m.unmount();
    drop(m);
    // Read-only: the partition files are too, and still show the same bytes.
    let m = Mounted::new(&f, &["-r", "--partitions"], "p-p5");
    assert_windows(&m.mnt, &parts);
    let e = std::fs::File::options()
        .write(true)
        .open(m.mnt.join("p-p5"))
        .unwrap_err();
    // EACCES (mode 0400) or EROFS.
    assert!(matches!(e.raw_os_error(), Some(13 | 30)), "{e}");
    m.unmount();
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = forking(|| {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    })
    .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_disk_without_a_table_is_served_whole_with_a_warning() {
    let f = disk_fixture();
    {
        // A blank disk (a fresh payload decrypts to noise).
        let m = Mounted::new(&f, &[], "p");
        write_range(&m.mnt.join("p"), 0, &[0; 1 << 20]);
        m.unmount();
    }
    let (r, mnt, m) = mount_partitions(&f);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no partition table"), "{}", r.stderr);
    assert!(r.stderr.contains(s(&f.payload)), "{}", r.stderr);
    assert_eq!(listing(&mnt), ["p"]);
    run_ok(Command::new("fusermount3").arg("-u").arg(&mnt));
    drop(m);
}

/// CRC-32 as GPT uses it (the tests edit tables and must re-seal them).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Edits the GPT header at `lba` of `disk` (and its entry array), then re-seals both CRCs.
fn edit_gpt(disk: &Path, lba: u64, edit: &dyn Fn(&mut [u8], &mut Vec<u8>)) {
    let mut h = read_range(disk, lba * 512, 512);
    let entries_lba = u64::from_le_bytes(h[72..80].try_into().unwrap());
    let n = u32::from_le_bytes(h[80..84].try_into().unwrap()) as u64;
    let mut array = read_range(disk, entries_lba * 512, n * 128);
    edit(&mut h, &mut array);
    write_range(disk, entries_lba * 512, &array);
    let crc = crc32(&array);
    h[88..92].copy_from_slice(&crc.to_le_bytes());
    h[16..20].fill(0);
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    write_range(disk, lba * 512, &h);
}

/// The fixture's disk with a GPT (partitions 1 and 2) from sgdisk, then `damage` applied to
/// the served disk file (with the disk's last LBA, where the backup header is); returns
/// sfdisk's reading from before the damage.
fn gpt_then(f: &Fixture, damage: &dyn Fn(&Path, u64)) -> Vec<(u32, u64, u64)> {
    let m = Mounted::new(f, &[], "p");
    let disk = m.mnt.join("p");
    run_ok(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+8M", "-n", "2:0:+8M"])
            .arg(&disk),
    );
    let (_, parts) = sfdisk_parts(&disk);
    damage(&disk, 64 * MIB / 512 - 1);
    m.unmount();
    parts
}

fn assert_refused(f: &Fixture, what: &str) {
    let before = sha256_file(&f.payload);
    let r = mount_partitions_fails(f);
    assert_eq!(r.code, 4, "{what}: {}", r.stderr);
    let line = r.stderr.trim_end();
    assert!(!line.contains('\n'), "{what}: not one line: {line}");
    assert!(line.contains(s(&f.payload)), "{what}: {line}");
    assert!(line.contains(what), "{what}: {line}");
    assert_eq!(sha256_file(&f.payload), before, "{what}: payload changed");
}

#[test]
fn a_damaged_primary_gpt_falls_back_to_the_backup() {
    let f = disk_fixture();
    // A flipped byte in the primary entry array (partition 1's name): its CRC no longer
    // matches, so the primary is invalid and the backup, intact, is used.
    let parts = gpt_then(&f, &|disk, _| {
        let mut b = read_range(disk, 2 * 512 + 60, 1);
        b[0] ^= 0x20;
        write_range(disk, 2 * 512 + 60, &b);
    });
    let (r, mnt, _g) = mount_partitions(&f);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("backup GPT"), "{}", r.stderr);
    assert_eq!(listing(&mnt), ["p", "p-p1", "p-p2"]);
    assert_windows(&mnt, &parts);
    // sfdisk (libfdisk) agrees that the primary is damaged and reads the same partitions.
    let (label, again) = sfdisk_parts(&mnt.join("p"));
    assert_eq!((label.as_str(), again), ("gpt", parts));
    run_ok(Command::new("fusermount3").arg("-u").arg(&mnt));
}

#[test]
fn hostile_gpts_are_refused_naming_the_payload() {
    let set_u64 = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // Partition 2 starts inside partition 1, in both copies (CRCs re-sealed).
    let f = disk_fixture();
    gpt_then(&f, &|disk, last| {
        for lba in [1, last] {
            edit_gpt(disk, lba, &|_, a| set_u64(a, 128 + 32, 4096));
        }
    });
    assert_refused(&f, "partitions 1 and 2 overlap");
    // Partition 2 ends past the disk's usable sectors.
    let f = disk_fixture();
    gpt_then(&f, &|disk, last| {
        for lba in [1, last] {
            edit_gpt(disk, lba, &|_, a| set_u64(a, 128 + 40, last + 100));
        }
    });
    assert_refused(&f, "outside the usable");
    // An absurd entry count (CRC valid) in both headers: refused before anything is read.
    let f = disk_fixture();
    gpt_then(&f, &|disk, last| {
        for lba in [1, last] {
            let mut h = read_range(disk, lba * 512, 512);
            h[80..84].copy_from_slice(&0x0100_0000u32.to_le_bytes());
            h[16..20].fill(0);
            let crc = crc32(&h[..92]);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            write_range(disk, lba * 512, &h);
        }
    });
    assert_refused(&f, "more than 16384");
}

#[test]
fn hostile_mbrs_are_refused_naming_the_payload() {
    let entry = |slot: usize, kind: u8, start: u32, count: u32| {
        let mut e = [0u8; 16];
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&count.to_le_bytes());
        (446 + 16 * slot as u64, e)
    };
    let disk_sectors = (64 * MIB / 512) as u32;
    for (what, entries) in [
        (
            "partitions 1 and 2 overlap",
            vec![entry(0, 0x83, 2048, 8192), entry(1, 0x83, 8192, 8192)],
        ),
        ("past the end", vec![entry(0, 0x83, 2048, disk_sectors)]),
        (
            "outside its extended partition",
            vec![entry(0, 0x05, 2048, 8192)],
        ),
    ] {
        let f = disk_fixture();
        {
            let m = Mounted::new(&f, &[], "p");
            let disk = m.mnt.join("p");
            // The decrypted bytes of a fresh payload are noise: start from blank sectors.
            write_range(&disk, 0, &[0; 512]);
            write_range(&disk, 2048 * 512, &[0; 512]);
            for (at, e) in &entries {
                write_range(&disk, *at, e);
            }
            write_range(&disk, 510, &[0x55, 0xAA]);
            // The EBR of the extended case: a logical that runs past the container.
            let (at, e) = entry(0, 0x83, 2048, 8192);
            write_range(&disk, 2048 * 512 + at, &e);
            write_range(&disk, 2048 * 512 + 510, &[0x55, 0xAA]);
            m.unmount();
        }
        assert_refused(&f, what);
    }
}
