//! Talking to the user: reading passphrases as cryptsetup does (key file, `-` for all of
//! stdin, else the terminal without echo, else one line of stdin), `YES` confirmations and
//! progress. The library never does any of this.

use luksfuse::error::{Error, Result};
use luksfuse::headers::{Step, Task};
use luksfuse::passphrase::{self, KeyFileError, MAX_KEYFILE};
use luksfuse::secret::{Passphrase, Secret};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// cryptsetup's maximum interactive passphrase length.
pub const MAX_PASSPHRASE: usize = 512;

/// Where a key comes from: cryptsetup's key file options.
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
    /// Reads the passphrase of an existing keyslot; `what` names the header in the prompt.
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
            Some(p) if p.as_os_str() == "-" => passphrase::read_key(
                &mut raw_stdin()?,
                Path::new("(stdin)"),
                self.offset,
                self.size,
            )
            .map_err(key_file_error),
            Some(p) => read_key_file(p, self.offset, self.size),
            None => {
                if luksfuse::process::is_terminal(&io::stdin()) {
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

/// Reads key file `path` (or a volume key file), naming the options in its errors.
pub fn read_key_file(path: &Path, offset: u64, size: Option<u64>) -> Result<Passphrase> {
    passphrase::read_key_file(path, offset, size).map_err(key_file_error)
}

/// The library's key file error, told in terms of the command line's options.
fn key_file_error(e: KeyFileError) -> Error {
    match e {
        KeyFileError::Io(e) => e,
        KeyFileError::ShorterThanOffset { file, offset } => Error::usage(format!(
            "{}: key file is shorter than --keyfile-offset {offset}",
            file.display()
        )),
        KeyFileError::SizeOverMax { size } => Error::usage(format!(
            "--keyfile-size {size} is over the maximum of {MAX_KEYFILE} bytes"
        )),
        KeyFileError::TooLarge { file } => Error::usage(format!(
            "{}: key file is larger than {MAX_KEYFILE} bytes; use --keyfile-size",
            file.display()
        )),
        e @ KeyFileError::ShortRead { .. } => Error::from(e),
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
    let guard = luksfuse::process::NoEcho::new(&tty).ok();
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

/// cryptsetup's warning and question before something irrevocable.
pub fn are_you_sure(warning: &str) -> String {
    format!("WARNING!\n========\n{warning}\n\nAre you sure? (Type 'yes' in capital letters): ")
}

/// Asks a yes/no question on a terminal (stdin) as cryptsetup does: only `YES` is yes.
/// Without a terminal the answer is no.
pub fn confirm(question: &str) -> bool {
    if !luksfuse::process::is_terminal(&io::stdin()) {
        return false;
    }
    eprint!("{question}");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    let _ = io::stdin().read_line(&mut answer);
    answer.trim_end() == "YES"
}

/// Says what a long step (KDF calibration takes about `--iter-time`) is doing, on a terminal:
/// "WHAT ... done (1.9 s)". Quiet when stderr is not a terminal.
pub struct Progress {
    tty: bool,
    start: std::time::Instant,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            tty: luksfuse::process::is_terminal(&io::stderr()),
            start: std::time::Instant::now(),
        }
    }

    /// The callback the library's header operations report to.
    pub fn step(&mut self, step: Step) {
        match step {
            Step::Start(task) => {
                self.start = std::time::Instant::now();
                if self.tty {
                    eprint!("{} ... ", describe(task));
                }
            }
            Step::Done(_) => {
                if self.tty {
                    eprintln!("done ({:.1} s)", self.start.elapsed().as_secs_f64());
                }
            }
        }
    }
}

fn describe(task: Task) -> &'static str {
    match task {
        Task::WriteHeader => "Benchmarking the KDF and writing the header",
        Task::NewKeyslot => "Benchmarking the KDF for the new keyslot",
    }
}

/// A progress bar of bytes with throughput and time left, on a terminal only (stderr);
/// nothing at all on a pipe or file.
pub struct ByteProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl ByteProgress {
    pub fn new(verb: &str) -> Self {
        if !luksfuse::process::is_terminal(&io::stderr()) {
            return ByteProgress { bar: None };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        let style = indicatif::ProgressStyle::with_template(&format!(
            "{verb} [{{bar:20}}] {{binary_bytes}}/{{binary_total_bytes}} \
             {{binary_bytes_per_sec}}, {{eta}} left"
        ))
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        ByteProgress { bar: Some(bar) }
    }

    /// `done` of `total` bytes.
    pub fn set(&self, done: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(done);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_line_stops_at_newline() {
        let p = read_line(&mut &b"secret pass\nrest"[..]).unwrap();
        assert_eq!(p.as_bytes(), b"secret pass");
        let p = read_line(&mut &b"no newline"[..]).unwrap();
        assert_eq!(p.as_bytes(), b"no newline");
    }

    #[test]
    fn key_file_errors_name_the_options() {
        let e = key_file_error(KeyFileError::SizeOverMax {
            size: MAX_KEYFILE + 1,
        });
        assert_eq!(
            e.to_string(),
            format!(
                "--keyfile-size {} is over the maximum of {MAX_KEYFILE} bytes",
                MAX_KEYFILE + 1
            )
        );
        assert_eq!(e.exit_code(), 1);
        let e = key_file_error(KeyFileError::ShorterThanOffset {
            file: "k".into(),
            offset: 9,
        });
        assert_eq!(
            e.to_string(),
            "k: key file is shorter than --keyfile-offset 9"
        );
    }
}
