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
