//! What the real peers say: cryptsetup's volume key and data segment for a header, luksfuse's
//! own dump of the volume key, and QEMU's locks on a file.

use super::fixtures::{unaligned_writes_through, write_file, Fixture};
use super::mounts::{Mounted, SETTLE};
use super::proc::{forking, luksfuse, run_ok};
use super::rng::noise;
use luksfuse::crypto::CipherName;
use luksfuse::units::{Bytes, SectorSize, Sectors512};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether cryptsetup is installed.
pub fn have_cryptsetup() -> bool {
    forking(|| Command::new("cryptsetup").arg("--version").output())
        .is_ok_and(|o| o.status.success())
}

/// The volume key as `cryptsetup luksDump --dump-volume-key` prints it.
pub fn cryptsetup_volume_key(header: &Path, key_args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = run_ok(
        Command::new("cryptsetup")
            .args(["luksDump", "-q", "--dump-volume-key"])
            .args(key_args)
            .arg(header),
    );
    parse_mk_dump(&String::from_utf8_lossy(&out.stdout))
}

/// Parses the hex bytes of the "MK dump:" lines of a volume key dump.
pub fn parse_mk_dump(text: &str) -> Vec<u8> {
    parse_hex_lines(text, "MK dump:")
}

/// The hex bytes after `label` at the start of a line and on the tab-indented lines after it
/// (how cryptsetup prints keys), for a dump that must hold them.
pub fn parse_hex_lines(text: &str, label: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let rest = if let Some(r) = line.strip_prefix(label) {
            inside = true;
            r
        } else if inside && line.starts_with('\t') {
            line
        } else {
            inside = false;
            continue;
        };
        for tok in rest.split_whitespace() {
            bytes.push(u8::from_str_radix(tok, 16).expect("hex byte"));
        }
    }
    assert!(!bytes.is_empty(), "no {label} in:\n{text}");
    bytes
}

/// The volume key luksfuse derives, via `luksfuse dump --dump-volume-key`.
pub fn luksfuse_volume_key<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &[u8]) -> Vec<u8> {
    let r = luksfuse(args, stdin);
    assert_eq!(r.code, 0, "luksfuse failed: {}", r.stderr);
    parse_mk_dump(&r.stdout)
}

/// The data segment as `cryptsetup luksDump` describes it (LUKS1 text, LUKS2 JSON).
pub fn segment_from_cryptsetup(header: &Path) -> luksfuse::luks::Segment {
    let text =
        String::from_utf8(run_ok(Command::new("cryptsetup").arg("luksDump").arg(header)).stdout)
            .unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    if field("Version:") == "1" {
        return luksfuse::luks::Segment {
            offset: Bytes(field("Payload offset:").parse::<u64>().unwrap() * 512),
            size: None,
            cipher: CipherName::new(format!(
                "{}-{}",
                field("Cipher name:"),
                field("Cipher mode:")
            )),
            key_size: field("MK bits:").parse::<usize>().unwrap() / 8,
            sector_size: SectorSize::MIN,
            iv_tweak: Sectors512(0),
        };
    }
    let json = run_ok(
        Command::new("cryptsetup")
            .args(["luksDump", "--dump-json-metadata"])
            .arg(header),
    )
    .stdout;
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let seg = &v["segments"]["0"];
    let num = |x: &serde_json::Value| x.as_str().unwrap().parse::<u64>().unwrap();
    let key_size = v["keyslots"].as_object().unwrap().values().next().unwrap()["key_size"]
        .as_u64()
        .unwrap() as usize;
    luksfuse::luks::Segment {
        offset: Bytes(num(&seg["offset"])),
        size: match seg["size"].as_str().unwrap() {
            "dynamic" => None,
            n => Some(Bytes(n.parse().unwrap())),
        },
        cipher: CipherName::new(seg["encryption"].as_str().unwrap()),
        key_size,
        sector_size: SectorSize::new(seg["sector_size"].as_u64().unwrap()).unwrap(),
        iv_tweak: Sectors512(num(&seg["iv_tweak"])),
    }
}

/// Waits until QEMU (qemu-io, qemu-storage-daemon) holds its locks on `file`. QEMU takes its
/// lock bytes in more than one step while it opens and sets permissions, so this waits for
/// the set of OFD locks on exactly this file (device and inode, as /proc/locks names them)
/// to be non-empty and stable for 200 ms.
pub fn wait_qemu_locks(file: &Path) {
    let meta = std::fs::metadata(file).unwrap();
    let dev = std::os::unix::fs::MetadataExt::dev(&meta);
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let id = format!(
        " {major:02x}:{minor:02x}:{} ",
        std::os::unix::fs::MetadataExt::ino(&meta)
    );
    let ours = || -> Vec<String> {
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .filter(|l| l.contains("OFDLCK") && l.contains(&id))
            .map(|l| l.split_once(':').map_or(l, |(_, rest)| rest).to_string())
            .collect()
    };
    let deadline = Instant::now() + SETTLE;
    let (mut last, mut stable) = (Vec::new(), 0);
    while stable < 5 {
        assert!(
            Instant::now() < deadline,
            "QEMU took no stable locks on {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(40));
        let now = ours();
        stable = if !now.is_empty() && now == last {
            stable + 1
        } else {
            0
        };
        last = now;
    }
}

/// `--object` for QEMU: the secret `s` from the fixture's key file.
pub fn qemu_secret(f: &Fixture) -> String {
    format!("secret,id=s,file={}", super::s(&f.keyfile))
}

/// `qemu-img create -f luks -o OPTS FILE SIZE` with the fixture's key as the secret `s`
/// (`opts` names it: `key-secret=s,...`): header and payload in one file.
pub fn qemu_create_luks(f: &Fixture, file: &Path, opts: &str, size: &str) {
    qemu_create(f, "luks", file, opts, size)
}

/// `qemu-img create -f FORMAT -o OPTS FILE SIZE` with the fixture's key as the secret `s`.
pub fn qemu_create(f: &Fixture, format: &str, file: &Path, opts: &str, size: &str) {
    run_ok(Command::new("qemu-img").args([
        "create",
        "-q",
        "-f",
        format,
        "--object",
        &qemu_secret(f),
        "-o",
        opts,
        super::s(file),
        size,
    ]));
}

/// QEMU writes `plain` from offset 0 through the image `image_opts` describes.
pub fn qemu_write_plain(f: &Fixture, image_opts: &str, plain: &[u8]) {
    let src = f.path("src.bin");
    write_file(&src, plain);
    run_ok(Command::new("qemu-img").args([
        "convert",
        "-n",
        "-f",
        "raw",
        "--object",
        &qemu_secret(f),
        super::s(&src),
        "--target-image-opts",
        image_opts,
    ]));
}

/// What QEMU reads through the image `image_opts` describes, all of it.
pub fn qemu_read_plain(f: &Fixture, image_opts: &str) -> Vec<u8> {
    let out = f.path("out.bin");
    run_ok(Command::new("qemu-img").args([
        "convert",
        "--object",
        &qemu_secret(f),
        "--image-opts",
        image_opts,
        "-O",
        "raw",
        super::s(&out),
    ]));
    std::fs::read(out).unwrap()
}

/// Data both ways between QEMU's `luks` driver (opened with `image_opts`, the key in
/// `f.keyfile`) and a luksfuse mount of `f` (file `p`, `mount_extra` options): QEMU writes
/// `len` bytes of noise from `seed`; the mount must read exactly them; unaligned writes go
/// through the mount; QEMU must then read them. Returns the plaintext as it ends up.
pub fn qemu_round_trip(
    f: &Fixture,
    mount_extra: &[&str],
    image_opts: &str,
    len: usize,
    seed: u64,
    what: &str,
) -> Vec<u8> {
    let mut model = noise(len, seed);
    qemu_write_plain(f, image_opts, &model);
    let m = Mounted::new(f, mount_extra, "p");
    assert!(
        std::fs::read(m.mnt.join("p")).unwrap() == model,
        "{what}: the mount reads what QEMU wrote"
    );
    unaligned_writes_through(&m.mnt.join("p"), &mut model, 5);
    m.unmount();
    assert!(
        qemu_read_plain(f, image_opts) == model,
        "{what}: QEMU reads what the mount wrote"
    );
    model
}
