//! Helpers shared by the integration tests: temporary directories, running the real peers
//! (cryptsetup, qemu-img, qemu-io) and the luksfuse binary.
#![allow(dead_code)]

use serde_json::Value;
use sha2::Digest as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASS: &[u8] = b"correct horse battery staple";

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("luksfuse-test-")
        .tempdir()
        .expect("tempdir")
}

// ---- Forks and locks ----
//
// A child holds a copy of every descriptor of the test process, close-on-exec ones included,
// from its fork until its exec. Tests run in parallel threads, so a lock that a test releases
// by closing a file it opened in-process (a RawImage, a Volume, an in-process mount) may live
// on for a moment in a child another test is just starting; a peer (QEMU) started right
// after would then find the file locked. So processes are started under a shared guard, and
// a test that relies on such a release calls `settle_forks` (or `close`) after it, which
// waits until every child being started has exec'd.

static FORKS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs `start` (which starts a process) under the shared guard.
pub fn forking<T>(start: impl FnOnce() -> T) -> T {
    let _g = FORKS.read().unwrap_or_else(|e| e.into_inner());
    start()
}

/// Returns once no child started before this call can still hold a copy of a descriptor
/// closed before it.
pub fn settle_forks() {
    drop(FORKS.write().unwrap_or_else(|e| e.into_inner()));
}

/// Drops `x`, closing its files, and settles forks: their locks are released on return.
pub fn close<T>(x: T) {
    drop(x);
    settle_forks();
}

/// Runs a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = forking(|| cmd.output()).unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A temporary directory holding a detached header `h.img`, a payload `p.raw` and a key file.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub header: PathBuf,
    pub payload: PathBuf,
    pub keyfile: PathBuf,
}

impl Fixture {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `cryptsetup luksFormat --header h.img` over a 16 MiB payload with key file PASS and `args`.
pub fn luks_format(args: &[&str]) -> Fixture {
    let dir = tmpdir();
    let header = dir.path().join("h.img");
    let payload = dir.path().join("p.raw");
    let keyfile = dir.path().join("key");
    write_file(&keyfile, PASS);
    std::fs::File::create(&payload)
        .and_then(|f| f.set_len(16 << 20))
        .expect("payload");
    run_ok(
        Command::new("cryptsetup")
            .args(["luksFormat", "-q", "--header"])
            .arg(&header)
            .arg("--key-file")
            .arg(&keyfile)
            .args(args)
            .arg(&payload),
    );
    Fixture {
        dir,
        header,
        payload,
        keyfile,
    }
}

/// SHA-256 of a whole file (to show that a refused operation changed no byte).
pub fn sha256_file(path: &Path) -> Vec<u8> {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// Fast KDF settings for cryptsetup (tests are about correctness, not strength).
pub fn fast_kdf(kdf: &str) -> Vec<&'static str> {
    match kdf {
        "pbkdf2" => vec!["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
        "argon2i" => vec![
            "--pbkdf",
            "argon2i",
            "--pbkdf-force-iterations",
            "4",
            "--pbkdf-memory",
            "32768",
        ],
        "argon2id" => vec![
            "--pbkdf",
            "argon2id",
            "--pbkdf-force-iterations",
            "4",
            "--pbkdf-memory",
            "32768",
        ],
        other => panic!("unknown kdf {other}"),
    }
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
    let mut bytes = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let rest = if let Some(r) = line.strip_prefix("MK dump:") {
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
    assert!(!bytes.is_empty(), "no MK dump in:\n{text}");
    bytes
}

/// The result of running the luksfuse binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `luksfuse args`, feeding `stdin`.
pub fn luksfuse<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &[u8]) -> Run {
    let mut child = forking(|| {
        Command::new(env!("CARGO_BIN_EXE_luksfuse"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    })
    .expect("spawn luksfuse");
    let mut input = child.stdin.take().expect("stdin");
    // The child may exit before reading: ignore a broken pipe.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().expect("wait luksfuse");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The volume key luksfuse derives, via `luksfuse dump --dump-volume-key`.
pub fn luksfuse_volume_key<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &[u8]) -> Vec<u8> {
    let r = luksfuse(args, stdin);
    assert_eq!(r.code, 0, "luksfuse failed: {}", r.stderr);
    parse_mk_dump(&r.stdout)
}

// ---- LUKS2 scratch headers and in-place JSON rewriting ----

/// Whether cryptsetup is installed; tests that need it are skipped (with a message) otherwise.
pub fn have_cryptsetup() -> bool {
    forking(|| Command::new("cryptsetup").arg("--version").output())
        .is_ok_and(|o| o.status.success())
}

/// A temporary directory with a 16 MiB payload and a passphrase file; removed when dropped.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

pub const PASSPHRASE: &[u8] = b"correct horse battery staple";

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = std::fs::File::create(dir.path().join("payload.raw")).unwrap();
        payload.set_len(16 << 20).unwrap();
        std::fs::write(dir.path().join("pass"), PASSPHRASE).unwrap();
        Scratch { dir }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn header(&self) -> PathBuf {
        self.path("h.img")
    }

    /// Runs cryptsetup with `args`, then `--header h.img` and the payload; panics on failure.
    pub fn cryptsetup(&self, args: &[&str]) -> String {
        self.cryptsetup_then(args, &[])
    }

    /// Like [`Self::cryptsetup`], with `after` following the payload (e.g. a new key file).
    pub fn cryptsetup_then(&self, args: &[&str], after: &[&str]) -> String {
        let out = forking(|| {
            Command::new("cryptsetup")
                .args(["-q", "--batch-mode"])
                .args(args)
                .arg("--header")
                .arg(self.header())
                .arg(self.path("payload.raw"))
                .args(after)
                .output()
        })
        .expect("run cryptsetup");
        assert!(
            out.status.success(),
            "cryptsetup {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cryptsetup luksFormat --type luks2` with the passphrase file and extra `args`.
    pub fn luks2_format(&self, args: &[&str]) {
        let pass = self.path("pass");
        let mut all = vec!["luksFormat", "--type", "luks2", "--key-file"];
        all.push(pass.to_str().unwrap());
        all.extend_from_slice(args);
        self.cryptsetup(&all);
    }

    /// The volume key as `cryptsetup luksDump --dump-volume-key` prints it.
    pub fn volume_key(&self) -> Vec<u8> {
        let pass = self.path("pass");
        let out = self.cryptsetup(&[
            "luksDump",
            "--dump-volume-key",
            "--key-file",
            pass.to_str().unwrap(),
        ]);
        parse_mk_dump(&out)
    }

    pub fn read_header(&self) -> Vec<u8> {
        std::fs::read(self.header()).unwrap()
    }
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

/// The LUKS2 header size (binary + JSON) of an image.
pub fn hdr_size(img: &[u8]) -> usize {
    be64(img, 8) as usize
}

/// Recomputes the sha256 checksum of the header copy at `offset` (hdr_size bytes).
pub fn fix_checksum(img: &mut [u8], offset: usize) {
    let size = be64(img, offset + 8) as usize;
    let area = &mut img[offset..offset + size];
    area[448..512].fill(0);
    let sum = sha2::Sha256::digest(&*area);
    area[448..448 + 32].copy_from_slice(&sum);
}

/// The JSON of the header copy at `offset`.
pub fn read_json(img: &[u8], offset: usize) -> Value {
    let size = hdr_size(img);
    let area = &img[offset + 4096..offset + size];
    let end = area.iter().position(|&b| b == 0).unwrap();
    serde_json::from_slice(&area[..end]).unwrap()
}

/// Rewrites the JSON of the header copy at `offset` with `f` and recomputes its checksum.
pub fn rewrite_copy_json(img: &mut [u8], offset: usize, f: &dyn Fn(&mut Value)) {
    let size = hdr_size(img);
    let mut json = read_json(img, offset);
    f(&mut json);
    let text = serde_json::to_vec(&json).unwrap();
    let area = &mut img[offset + 4096..offset + size];
    assert!(text.len() < area.len(), "rewritten JSON does not fit");
    area.fill(0);
    area[..text.len()].copy_from_slice(&text);
    fix_checksum(img, offset);
}

/// Rewrites the JSON of both LUKS2 header copies with `f`, keeping them valid checksums.
pub fn rewrite_json(img: &mut [u8], f: &dyn Fn(&mut Value)) {
    let size = hdr_size(img);
    rewrite_copy_json(img, 0, f);
    rewrite_copy_json(img, size, f);
}

/// Sets the seqid of the copy at `offset` and recomputes its checksum.
pub fn set_seqid(img: &mut [u8], offset: usize, seqid: u64) {
    img[offset + 16..offset + 24].copy_from_slice(&seqid.to_be_bytes());
    fix_checksum(img, offset);
}

/// Writes `img` into a file in `dir` named `name` and returns its path.
pub fn write(dir: &Path, name: &str, img: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, img).unwrap();
    p
}

// ---- Mounts and loop devices, cleaned up even when an assertion fails ----

/// Lazily unmounts on drop if still mounted.
pub struct MountGuard(pub PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = forking(|| Command::new("fusermount3").arg("-uz").arg(&self.0).status());
        }
    }
}

/// Lazily unmounts a (non-FUSE) mount on drop, if it is still mounted.
pub struct UmountGuard(pub PathBuf);
impl Drop for UmountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = forking(|| Command::new("umount").arg("-l").arg(&self.0).status());
        }
    }
}

/// Detaches a loop device on drop.
pub struct LoopGuard(pub String);
impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = forking(|| Command::new("losetup").arg("-d").arg(&self.0).status());
    }
}

/// The /proc/self/mounts line of the mount at `mp`, if any.
pub fn mount_line(mp: &Path) -> Option<String> {
    let mp = mp.canonicalize().ok()?;
    let mp = mp.to_str()?;
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mp))
        .map(str::to_string)
}

pub fn is_mounted(mp: &Path) -> bool {
    mount_line(mp).is_some()
}

// ---- luksfuse mounts driven through the binary ----

/// Starts `luksfuse mount -f` (foreground) for `payload`, with stderr as given, and waits
/// until the file shows in the mountpoint.
pub fn mount_foreground(
    f: &Fixture,
    payload: &Path,
    mnt: &Path,
    stderr: Stdio,
) -> std::process::Child {
    let child = forking(|| {
        Command::new(env!("CARGO_BIN_EXE_luksfuse"))
            .args([
                "mount",
                "-f",
                "-d",
                s(&f.keyfile),
                s(&f.header),
                s(payload),
                s(mnt),
            ])
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
    })
    .unwrap();
    let name = payload.file_stem().unwrap();
    let t = Instant::now();
    while !mnt.join(name).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "mount did not appear"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Live (not zombie) luksfuse processes whose command line names `mountpoint`.
pub fn daemons_for(mountpoint: &Path) -> Vec<u32> {
    let needle = s(mountpoint);
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with(b"luksfuse"))
            && args.contains(&needle.as_bytes());
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if is_ours && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// How long a test waits for something asynchronous that must happen (a daemon exiting after
/// its unmount, a signal taking effect). A liveness bound, not a timing goal: CI machines are
/// small and run the suites in parallel, and speed is measured by `make bench`.
pub const SETTLE: Duration = Duration::from_secs(15);

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

/// Waits up to `limit` for no daemon of `mountpoint` to be alive; returns how long it took.
pub fn wait_daemon_gone(mountpoint: &Path, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if daemons_for(mountpoint).is_empty() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A daemonized `luksfuse mount`, unmounted (lazily) when dropped.
pub struct Mounted {
    pub mnt: PathBuf,
    _guard: MountGuard,
}

impl Mounted {
    /// `luksfuse mount -d KEY extra... HEADER PAYLOAD MNT` (daemonized); asserts it succeeded
    /// and that the file is visible as soon as the command returns.
    pub fn new(f: &Fixture, extra: &[&str], file: &str) -> Mounted {
        let mnt = f.path("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut args = vec!["mount", "-d", s(&f.keyfile)];
        args.extend_from_slice(extra);
        args.extend([s(&f.header), s(&f.payload), s(&mnt)]);
        let r = luksfuse(&args, b"");
        let guard = MountGuard(mnt.clone());
        assert_eq!(r.code, 0, "mount failed: {}", r.stderr);
        assert!(
            mnt.join(file).exists(),
            "file not visible right after mount returned"
        );
        Mounted { mnt, _guard: guard }
    }

    pub fn unmount(&self) {
        // FUSE sends RELEASE asynchronously after close(2): a file closed just now may still
        // count as open for a moment, and the unmount then fails with EBUSY. Retry briefly.
        let start = Instant::now();
        loop {
            let out = forking(|| {
                Command::new("fusermount3")
                    .arg("-u")
                    .arg(&self.mnt)
                    .output()
            })
            .unwrap();
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("busy") && start.elapsed() < SETTLE,
                "fusermount3 -u failed: {err}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            wait_daemon_gone(&self.mnt, SETTLE).is_some(),
            "daemon still running {SETTLE:?} after fusermount3 -u"
        );
    }
}

// ---- Deterministic test data ----

/// xorshift64*: small, deterministic randomness, so that failures can be replayed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

/// The data segment as `cryptsetup luksDump` describes it (LUKS1 text, LUKS2 JSON).
pub fn segment_from_cryptsetup(header: &Path) -> luksfuse::luks::Segment {
    use luksfuse::crypto::CipherName;
    use luksfuse::units::{Bytes, SectorSize, Sectors512};
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
