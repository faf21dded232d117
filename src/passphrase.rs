//! Reading a key file as cryptsetup does: the whole file, or `size` bytes after skipping
//! `offset`; binary content is kept as it is. Prompting on a terminal and reading standard
//! input are the program's business, not the library's.

use crate::error::{Error, Result};
use crate::secret::{Passphrase, Secret};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// cryptsetup's default maximum key file size (8 MiB), used when no size is given.
pub const MAX_KEYFILE: u64 = 8 * 1024 * 1024;

/// Why a key file could not be read. Each variant says what was wrong in terms of the
/// numbers given ([`read_key`]'s `offset` and `size`), so that a program can name its own
/// options; `Error::from` turns it into a usage error (exit 1), or the I/O error it holds.
#[derive(Debug)]
pub enum KeyFileError {
    /// The file could not be opened or read.
    Io(Error),
    /// The file ends before `offset`.
    ShorterThanOffset { file: PathBuf, offset: u64 },
    /// The requested `size` is over [`MAX_KEYFILE`].
    SizeOverMax { size: u64 },
    /// Fewer than `want` bytes after `offset`.
    ShortRead {
        file: PathBuf,
        want: u64,
        got: usize,
        offset: u64,
    },
    /// No size was given and the file is larger than [`MAX_KEYFILE`].
    TooLarge { file: PathBuf },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io(e) => write!(f, "{e}"),
            KeyFileError::ShorterThanOffset { file, offset } => write!(
                f,
                "{}: key file is shorter than its offset {offset}",
                file.display()
            ),
            KeyFileError::SizeOverMax { size } => write!(
                f,
                "key file size {size} is over the maximum of {MAX_KEYFILE} bytes"
            ),
            KeyFileError::ShortRead {
                file,
                want,
                got,
                offset,
            } => write!(
                f,
                "{}: cannot read {want} bytes from key file (only {got} after offset {offset})",
                file.display()
            ),
            KeyFileError::TooLarge { file } => write!(
                f,
                "{}: key file is larger than {MAX_KEYFILE} bytes",
                file.display()
            ),
        }
    }
}

impl From<KeyFileError> for Error {
    fn from(e: KeyFileError) -> Error {
        match e {
            KeyFileError::Io(e) => e,
            other => Error::usage(other.to_string()),
        }
    }
}

/// Reads key file `path`: see [`read_key`]. A missing file is a wrong parameter (exit 1), as
/// in cryptsetup.
pub fn read_key_file(
    path: &Path,
    offset: u64,
    size: Option<u64>,
) -> Result<Passphrase, KeyFileError> {
    let mut f = File::open(path).map_err(|e| {
        let err = Error::io(path, "cannot open key file", &e);
        KeyFileError::Io(match e.kind() {
            io::ErrorKind::NotFound => Error::usage(err.to_string()),
            _ => err,
        })
    })?;
    read_key(&mut f, path, offset, size)
}

/// Reads a key file (`name` for messages): skip `offset` bytes, then read `size` bytes
/// exactly, or everything up to [`MAX_KEYFILE`] (more is an error).
pub fn read_key(
    r: &mut dyn Read,
    name: &Path,
    offset: u64,
    size: Option<u64>,
) -> Result<Passphrase, KeyFileError> {
    let io_err = |e: io::Error| KeyFileError::Io(Error::io(name, "cannot read key file", &e));
    let skipped = io::copy(&mut r.take(offset), &mut io::sink()).map_err(io_err)?;
    if skipped < offset {
        return Err(KeyFileError::ShorterThanOffset {
            file: name.to_owned(),
            offset,
        });
    }
    let limit = size.unwrap_or(MAX_KEYFILE);
    if limit > MAX_KEYFILE {
        return Err(KeyFileError::SizeOverMax { size: limit });
    }
    let mut key = Secret::zeroed(limit as usize + 1);
    let mut got = 0usize;
    let buf = key.as_mut_bytes();
    loop {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    if let Some(want) = size {
        if (got as u64) < want {
            return Err(KeyFileError::ShortRead {
                file: name.to_owned(),
                want,
                got,
                offset,
            });
        }
        got = want as usize;
    } else if got as u64 > MAX_KEYFILE {
        return Err(KeyFileError::TooLarge {
            file: name.to_owned(),
        });
    }
    Ok(Passphrase(Secret::from_slice(&key.as_bytes()[..got])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(data: &[u8], offset: u64, size: Option<u64>) -> Result<Vec<u8>> {
        read_key(&mut &data[..], Path::new("k"), offset, size)
            .map(|p| p.as_bytes().to_vec())
            .map_err(Error::from)
    }

    #[test]
    fn key_file_whole_offset_and_size() {
        assert_eq!(key(b"abc\n\x00\xff", 0, None).unwrap(), b"abc\n\x00\xff");
        assert_eq!(key(b"0123456789", 3, Some(4)).unwrap(), b"3456");
        assert_eq!(key(b"0123456789", 8, None).unwrap(), b"89");
    }

    #[test]
    fn key_file_too_short_is_a_usage_error() {
        assert_eq!(key(b"0123", 2, Some(4)).unwrap_err().exit_code(), 1);
        assert_eq!(key(b"0123", 9, None).unwrap_err().exit_code(), 1);
        assert_eq!(
            key(b"0123", 0, Some(MAX_KEYFILE + 1))
                .unwrap_err()
                .exit_code(),
            1
        );
    }

    #[test]
    fn key_file_messages_name_no_option() {
        let e = read_key(&mut &b"0123"[..], Path::new("k"), 9, None).unwrap_err();
        assert!(!e.to_string().contains("--"), "{e}");
        let e = read_key(&mut &b"0123"[..], Path::new("k"), 0, Some(MAX_KEYFILE + 1)).unwrap_err();
        assert!(!e.to_string().contains("--"), "{e}");
    }
}
