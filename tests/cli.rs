//! Command-line behaviour as data: arguments and stdin in, exit status and output out.

mod common;
use common::*;

#[test]
fn usage_errors_exit_1_not_clap_2() {
    run_cli(
        &[
            Cli {
                args: &["test-key", "--no-such-option", "x"],
                code: 1,
                ..CLI
            },
            Cli { code: 1, ..CLI },
        ],
        &[],
    );
}

#[test]
fn help_lists_the_exit_codes() {
    run_cli(
        &[Cli {
            args: &["--help"],
            stdout: &[
                "0  success",
                "2  no key available",
                "4  wrong, damaged",
                "5  device busy",
            ],
            ..CLI
        }],
        &[],
    );
}

/// The `  N  meaning` lines after "Exit codes" in a text (`--help`, the man page).
fn exit_table_lines(text: &str) -> Vec<(i32, String)> {
    let start = text.find("Exit codes").expect("an exit code table");
    text[start..]
        .lines()
        .skip(1)
        .map_while(|l| {
            let (code, meaning) = l.strip_prefix("  ")?.split_once("  ")?;
            Some((code.parse().ok()?, meaning.replace("\\-", "-")))
        })
        .collect()
}

#[test]
fn help_man_page_and_readme_show_the_one_exit_code_table() {
    let want: Vec<(i32, String)> = luksfuse::error::EXIT_CODES
        .iter()
        .map(|(c, m)| (*c, m.to_string()))
        .collect();
    let help = luksfuse(&["--help"], b"");
    assert_eq!(help.code, 0);
    assert_eq!(exit_table_lines(&help.stdout), want, "--help");

    let dir = tmpdir();
    let r = luksfuse(&["generate-assets", dir.path().to_str().unwrap()], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = std::fs::read_to_string(dir.path().join("man/luksfuse.1")).expect("man page");
    assert_eq!(exit_table_lines(&man), want, "man page");

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("### Exit codes")
        .expect("README's exit code section");
    // The table right under the heading: its rows with a number in the first cell.
    let rows: Vec<(i32, String)> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let mut cells = l.trim_matches('|').split('|').map(str::trim);
            Some((cells.next()?.parse().ok()?, cells.next()?.to_string()))
        })
        .collect();
    assert_eq!(rows, want, "README.md");
}

#[test]
fn missing_header_exits_4_naming_the_file() {
    run_cli(
        &[Cli {
            args: &["dump", "/nonexistent/h.img"],
            code: 4,
            stderr: &["/nonexistent/h.img"],
            stderr_lines: Some(1),
            ..CLI
        }],
        &[],
    );
}

#[test]
fn not_a_luks_file_exits_4() {
    let dir = tmpdir();
    let p = dir.path().join("zero.img");
    write_file(&p, &vec![0u8; 1 << 20]);
    run_cli(
        &[Cli {
            args: &["dump", "{zero}"],
            code: 4,
            stderr: &["not a LUKS header"],
            ..CLI
        }],
        &[("zero", &p)],
    );
}

#[test]
fn dump_shows_header_fields_and_no_secrets() {
    let f = luks_format(&[
        "--type",
        "luks1",
        "--pbkdf-force-iterations",
        "1000",
        "--uuid",
        "12345678-1234-1234-1234-123456789abc",
    ]);
    let runs = run_cli(
        &[
            Cli {
                args: &["dump", "{header}"],
                stdout: &[
                    "Version:       \t1",
                    "12345678-1234-1234-1234-123456789abc",
                    "Key Slot 0: ENABLED",
                ],
                not_stdout: &["MK dump"],
                ..CLI
            },
            Cli {
                args: &["dump", "--json", "{header}"],
                ..CLI
            },
        ],
        &[("header", &f.header)],
    );
    let v: serde_json::Value = serde_json::from_str(&runs[1].stdout).expect("JSON");
    assert_eq!(v["uuid"], "12345678-1234-1234-1234-123456789abc");
}
