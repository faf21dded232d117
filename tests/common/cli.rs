//! Command-line behaviour as data: each case is arguments and stdin in, exit status and what
//! stdout and stderr must (or must not) contain out, in the spirit of trycmd, without its
//! snapshot files. Arguments may name paths a test made as `{name}` placeholders.
//!
//! ```ignore
//! run_cli(&[Cli { args: &["dump", "{h}"], code: 4, stderr: &["not a LUKS header"], ..CLI }],
//!         &[("h", &path)]);
//! ```

use super::proc::{luksfuse, Run};
use std::path::Path;

/// One run of the luksfuse binary and what it must give.
#[derive(Debug)]
pub struct Cli<'a> {
    pub args: &'a [&'a str],
    pub stdin: &'a [u8],
    /// The exit status.
    pub code: i32,
    /// Texts stdout contains.
    pub stdout: &'a [&'a str],
    /// Texts stdout does not contain.
    pub not_stdout: &'a [&'a str],
    /// Texts stderr contains.
    pub stderr: &'a [&'a str],
    /// How many lines stderr has (trimmed), if it matters.
    pub stderr_lines: Option<usize>,
}

/// The defaults a case overrides: no arguments, no stdin, exit 0, nothing asked of the output.
pub const CLI: Cli<'static> = Cli {
    args: &[],
    stdin: b"",
    code: 0,
    stdout: &[],
    not_stdout: &[],
    stderr: &[],
    stderr_lines: None,
};

/// Runs every case, with each `{name}` in an argument replaced by the path `vars` gives it;
/// panics listing every case that did not behave, else returns the runs (for checks that are
/// not text, such as parsing JSON).
pub fn run_cli(cases: &[Cli], vars: &[(&str, &Path)]) -> Vec<Run> {
    let mut failures = Vec::new();
    let mut runs = Vec::new();
    for case in cases {
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                vars.iter().fold(a.to_string(), |a, (name, path)| {
                    a.replace(&format!("{{{name}}}"), path.to_str().unwrap())
                })
            })
            .collect();
        let r = luksfuse(&args, case.stdin);
        let mut wrong = Vec::new();
        if r.code != case.code {
            wrong.push(format!("exit {} instead of {}", r.code, case.code));
        }
        for t in case.stdout.iter().filter(|t| !r.stdout.contains(*t)) {
            wrong.push(format!("stdout lacks {t:?}"));
        }
        for t in case.not_stdout.iter().filter(|t| r.stdout.contains(*t)) {
            wrong.push(format!("stdout has {t:?}"));
        }
        for t in case.stderr.iter().filter(|t| !r.stderr.contains(*t)) {
            wrong.push(format!("stderr lacks {t:?}"));
        }
        let lines = r.stderr.trim().lines().count();
        if case.stderr_lines.is_some_and(|n| n != lines) {
            wrong.push(format!("stderr has {lines} lines"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "luksfuse {args:?}: {}\n--- stdout:\n{}--- stderr:\n{}",
                wrong.join(", "),
                r.stdout,
                r.stderr
            ));
        }
        runs.push(r);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    runs
}
