//! The one fixture builder: a temporary directory with a key file, a payload and the path of
//! a detached header, and the small file helpers tests build on.

use super::peers::parse_mk_dump;
use super::proc::forking;
use super::s;
use sha2::Digest as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The passphrase of every fixture (the content of its key file).
pub const PASS: &[u8] = b"correct horse battery staple";

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("luksfuse-test-")
        .tempdir()
        .expect("tempdir")
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A temporary directory (removed when dropped) holding a key file `key` with [`PASS`], a
/// sparse 16 MiB payload `p.raw`, and the place of a detached header `h.img`, which
/// [`Fixture::luks_format`] (cryptsetup) or the test itself writes.
///
/// ```ignore
/// let f = Fixture::new().luks_format(&["--type", "luks1"]);   // or luks_format(&[...])
/// let f = Fixture::new().payload_len(1 << 20);                 // header written by the test
/// ```
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub header: PathBuf,
    pub payload: PathBuf,
    pub keyfile: PathBuf,
}

impl Fixture {
    /// The directory with its key file and 16 MiB payload; no header yet.
    pub fn new() -> Fixture {
        let dir = tmpdir();
        let f = Fixture {
            header: dir.path().join("h.img"),
            payload: dir.path().join("p.raw"),
            keyfile: dir.path().join("key"),
            dir,
        };
        write_file(&f.keyfile, PASS);
        f.payload_len(16 << 20)
    }

    /// A fixture for an image holding its header and its data: header and payload are the
    /// file `name` of the fixture's directory (not made yet).
    pub fn attached(name: &str) -> Fixture {
        let mut f = Fixture::new();
        f.header = f.path(name);
        f.payload = f.header.clone();
        f
    }

    /// Makes the payload `len` bytes long (sparse).
    pub fn payload_len(self, len: u64) -> Fixture {
        std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.payload)
            .and_then(|f| f.set_len(len))
            .expect("payload");
        self
    }

    /// `cryptsetup luksFormat` of the header with the key file and `args`.
    pub fn luks_format(self, args: &[&str]) -> Fixture {
        let mut all = vec!["luksFormat", "--key-file", s(&self.keyfile)];
        all.extend_from_slice(args);
        self.cryptsetup(&all);
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `cryptsetup -q args --header h.img p.raw`; panics on failure; returns stdout.
    pub fn cryptsetup(&self, args: &[&str]) -> String {
        self.cryptsetup_then(args, &[])
    }

    /// Like [`Self::cryptsetup`], with `after` following the payload (e.g. a new key file).
    pub fn cryptsetup_then(&self, args: &[&str], after: &[&str]) -> String {
        let out = forking(|| {
            Command::new("cryptsetup")
                .arg("-q")
                .args(args)
                .arg("--header")
                .arg(&self.header)
                .arg(&self.payload)
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

    /// The volume key as `cryptsetup luksDump --dump-volume-key` prints it.
    pub fn volume_key(&self) -> Vec<u8> {
        let out = self.cryptsetup(&[
            "luksDump",
            "--dump-volume-key",
            "--key-file",
            s(&self.keyfile),
        ]);
        parse_mk_dump(&out)
    }

    /// The header file's bytes.
    pub fn read_header(&self) -> Vec<u8> {
        std::fs::read(&self.header).unwrap()
    }
}

/// `cryptsetup luksFormat` over a fresh 16 MiB fixture with key file PASS and `args`.
pub fn luks_format(args: &[&str]) -> Fixture {
    Fixture::new().luks_format(args)
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

/// SHA-256 of a whole file (to show that a refused operation changed no byte).
pub fn sha256_file(path: &Path) -> Vec<u8> {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// Writes at unaligned offsets through the mounted file and into the model alike.
pub fn unaligned_writes_through(file: &Path, model: &mut [u8], seed: u64) {
    let f = std::fs::File::options().write(true).open(file).unwrap();
    let size = model.len() as u64;
    for (i, (off, len)) in [
        (1u64, 3u64),
        (4091, 10),
        (3 * 4096 + 17, 5 * 4096 + 100),
        (500_001, 70_000),
        (size - 7, 7),
    ]
    .into_iter()
    .enumerate()
    {
        let data = super::rng::noise(len as usize, seed + i as u64);
        f.write_all_at(&data, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
    }
    f.sync_all().unwrap();
}
