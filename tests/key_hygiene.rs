//! Key hygiene of a running daemon: after the mount is live, neither the passphrase nor the
//! whole volume key may be found anywhere in the daemon's memory (the cipher state holds the
//! expanded AES keys, which is what "in use" means; the key as unlocked must be gone).

mod common;
use common::*;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};

/// Whether `needle` occurs in any readable mapping of process `pid`.
fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (range, perms) = (parts.next().unwrap(), parts.next().unwrap());
        if !perms.starts_with('r') || line.contains("[vvar]") || line.contains("[vsyscall]") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

#[test]
fn daemon_memory_holds_neither_passphrase_nor_volume_key() {
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("argon2id"));
    let f = luks_format(&args);
    // A second, unique passphrase given on stdin (the first one is in the key file).
    let pass = b"Zq8-unique-passphrase-7f3a91c2e4";
    let newkey = f.path("new");
    write_file(&newkey, pass);
    run_ok(
        std::process::Command::new("cryptsetup")
            .args([
                "luksAddKey",
                "-q",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
            ])
            .arg(&f.keyfile)
            .arg(&f.header)
            .arg(&newkey),
    );
    let vk = cryptsetup_volume_key(
        &f.header,
        &[OsStr::new("--key-file"), f.keyfile.as_os_str()],
    );
    std::fs::remove_file(&newkey).unwrap();
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let mut line = pass.to_vec();
    line.push(b'\n');
    let r = luksfuse(&["mount", s(&f.header), s(&f.payload), s(&mnt)], &line);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Touch the data path once so the cipher is in use.
    assert_eq!(std::fs::read(mnt.join("p")).unwrap().len(), 16 << 20);
    let pids = daemons_for(&mnt);
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = pids[0];
    assert!(
        !memory_contains(pid, pass),
        "the passphrase is in the daemon's memory"
    );
    assert!(
        !memory_contains(pid, &vk),
        "the volume key is in the daemon's memory"
    );
    // Sanity: the search does find what is there (the mountpoint path is in argv).
    assert!(
        memory_contains(pid, s(&mnt).as_bytes()),
        "memory search finds nothing at all"
    );
    run_ok(
        std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt),
    );
}
