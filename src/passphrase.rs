//! Reading a passphrase as cryptsetup does: from a key file (whole file, `--keyfile-offset`,
//! `--keyfile-size`, `-` for stdin), else from the terminal without echo, else one line of stdin.

use crate::error::{Error, Result};
use crate::secret::{Passphrase, Secret};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// cryptsetup's default maximum key file size (8 MiB), used when `--keyfile-size` is not given.
pub const MAX_KEYFILE: u64 = 8 * 1024 * 1024;
/// cryptsetup's maximum interactive passphrase length.
pub const MAX_PASSPHRASE: usize = 512;

/// Where the key comes from.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    /// `-d/--key-file`; `-` means standard input (read whole, newlines kept).
    pub key_file: Option<PathBuf>,
    /// `--keyfile-offset`: bytes to skip.
    pub offset: u64,
    /// `-l/--keyfile-size`: bytes to read (exactly; less is an error).
    pub size: Option<u64>,
}

impl KeySource {
    /// Reads the passphrase. `what` names the header in the terminal prompt.
    pub fn read(&self, what: &str) -> Result<Passphrase> {
        self.read_prompt(&format!("Enter passphrase for {what}: "), false)
    }

    /// Whether the key comes from a key file (`-d`), not a prompt or a stdin line.
    pub fn is_file(&self) -> bool {
        self.key_file.is_some()
    }

    /// Reads a passphrase, prompting with `prompt` on a terminal; a new passphrase (`verify`)
    /// is asked for twice there and must match (cryptsetup's "Verify passphrase:").
    pub fn read_prompt(&self, prompt: &str, verify: bool) -> Result<Passphrase> {
        match &self.key_file {
            Some(p) if p.as_os_str() == "-" => read_key(
                &mut raw_stdin()?,
                Path::new("(stdin)"),
                self.offset,
                self.size,
            ),
            Some(p) => {
                let mut f = File::open(p).map_err(|e| {
                    let err = Error::io(p, "cannot open key file", &e);
                    // A missing key file is a wrong parameter (exit 1), as in cryptsetup.
                    match e.kind() {
                        io::ErrorKind::NotFound => Error::usage(err.to_string()),
                        _ => err,
                    }
                })?;
                read_key(&mut f, p, self.offset, self.size)
            }
            None => {
                let stdin = io::stdin();
                if crate::sys::is_terminal(&stdin) {
                    let p = read_terminal(prompt)?;
                    if verify {
                        let again = read_terminal("Verify passphrase: ")?;
                        if !again.0.ct_eq(p.as_bytes()) {
                            return Err(Error::usage("Passphrases do not match."));
                        }
                    }
                    Ok(p)
                } else {
                    read_line(&mut raw_stdin()?)
                }
            }
        }
    }
}

/// Standard input without std's buffer: `io::stdin()` reads ahead into a process-wide buffer
/// that would keep a copy of the passphrase for the life of the process (and the daemon).
fn raw_stdin() -> Result<File> {
    use std::os::fd::AsFd;
    io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Error::usage(format!("cannot read standard input: {e}")))
}

/// Reads a key file: skip `offset` bytes, then read `size` bytes exactly, or everything up to
/// [`MAX_KEYFILE`] (more is an error). Binary content is kept as it is.
pub fn read_key(
    r: &mut dyn Read,
    name: &Path,
    offset: u64,
    size: Option<u64>,
) -> Result<Passphrase> {
    let io_err = |e: io::Error| Error::io(name, "cannot read key file", &e);
    let skipped = io::copy(&mut r.take(offset), &mut io::sink()).map_err(io_err)?;
    if skipped < offset {
        return Err(Error::usage(format!(
            "{}: key file is shorter than --keyfile-offset {offset}",
            name.display()
        )));
    }
    let limit = size.unwrap_or(MAX_KEYFILE);
    if limit > MAX_KEYFILE {
        return Err(Error::usage(format!(
            "--keyfile-size {limit} is over the maximum of {MAX_KEYFILE} bytes"
        )));
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
            return Err(Error::usage(format!(
                "{}: cannot read {want} bytes from key file (only {got} after offset {offset})",
                name.display()
            )));
        }
        got = want as usize;
    } else if got as u64 > MAX_KEYFILE {
        return Err(Error::usage(format!(
            "{}: key file is larger than {MAX_KEYFILE} bytes; use --keyfile-size",
            name.display()
        )));
    }
    Ok(Passphrase(Secret::from_slice(&key.as_bytes()[..got])))
}

/// One line from a non-terminal stdin, without its newline (cryptsetup's behaviour).
pub fn read_line(r: &mut dyn Read) -> Result<Passphrase> {
    let mut line = Secret::zeroed(MAX_KEYFILE as usize);
    let buf = line.as_mut_bytes();
    let mut n = 0;
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if n == buf.len() {
                    return Err(Error::usage("passphrase on standard input is too long"));
                }
                buf[n] = byte[0];
                n += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot read passphrase from stdin: {e}"
                )))
            }
        }
    }
    Ok(Passphrase(Secret::from_slice(&buf[..n])))
}

/// Asks a yes/no question on a terminal (stdin) as cryptsetup does: only `YES` is yes.
/// Without a terminal the answer is no.
pub fn confirm(question: &str) -> bool {
    if !crate::sys::is_terminal(&io::stdin()) {
        return false;
    }
    eprint!("{question}");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    let _ = io::stdin().read_line(&mut answer);
    answer.trim_end() == "YES"
}

/// Prompts on the controlling terminal and reads a passphrase with echo off.
fn read_terminal(prompt: &str) -> Result<Passphrase> {
    let tty = File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| Error::usage(format!("cannot open the terminal: {e}")))?;
    let mut out = &tty;
    let _ = write!(out, "{prompt}");
    let _ = out.flush();
    let guard = crate::sys::NoEcho::new(&tty).ok();
    let p = read_line(&mut (&tty).take(MAX_PASSPHRASE as u64 + 1));
    drop(guard);
    let _ = writeln!(out);
    let p = p?;
    if p.as_bytes().len() > MAX_PASSPHRASE {
        return Err(Error::usage(format!(
            "passphrase is longer than {MAX_PASSPHRASE} characters"
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(data: &[u8], offset: u64, size: Option<u64>) -> Result<Vec<u8>> {
        read_key(&mut &data[..], Path::new("k"), offset, size).map(|p| p.as_bytes().to_vec())
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
    }

    #[test]
    fn stdin_line_stops_at_newline() {
        let p = read_line(&mut &b"secret pass\nrest"[..]).unwrap();
        assert_eq!(p.as_bytes(), b"secret pass");
        let p = read_line(&mut &b"no newline"[..]).unwrap();
        assert_eq!(p.as_bytes(), b"no newline");
    }
}
