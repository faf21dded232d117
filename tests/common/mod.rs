//! Helpers shared by the integration tests: temporary directories, running the real peers
//! (cryptsetup, qemu-img, qemu-io) and the luksfuse binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASS: &[u8] = b"correct horse battery staple";

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("luksfuse-test-")
        .tempdir()
        .expect("tempdir")
}

/// Runs a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_luksfuse"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
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
