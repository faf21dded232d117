//! Command-line behaviour as data: arguments and stdin in, exit status and output out.

mod common;
use common::*;

#[test]
fn usage_errors_exit_1_not_clap_2() {
    let r = luksfuse(&["test-key", "--no-such-option", "x"], b"");
    assert_eq!(r.code, 1, "{}", r.stderr);
    let r = luksfuse::<&str>(&[], b"");
    assert_eq!(r.code, 1);
}

#[test]
fn help_lists_the_exit_codes() {
    let r = luksfuse(&["--help"], b"");
    assert_eq!(r.code, 0);
    for line in [
        "0  success",
        "2  no key available",
        "4  wrong, damaged",
        "5  device busy",
    ] {
        assert!(r.stdout.contains(line), "missing '{line}' in --help");
    }
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
    let r = luksfuse(&["dump", "/nonexistent/h.img"], b"");
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("/nonexistent/h.img"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
}

#[test]
fn not_a_luks_file_exits_4() {
    let dir = tmpdir();
    let p = dir.path().join("zero.img");
    write_file(&p, &vec![0u8; 1 << 20]);
    let r = luksfuse(&["dump", p.to_str().unwrap()], b"");
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("not a LUKS header"), "{}", r.stderr);
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
    let r = luksfuse(&["dump", f.header.to_str().unwrap()], b"");
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Version:       \t1"));
    assert!(r.stdout.contains("12345678-1234-1234-1234-123456789abc"));
    assert!(r.stdout.contains("Key Slot 0: ENABLED"));
    let j = luksfuse(&["dump", "--json", f.header.to_str().unwrap()], b"");
    let v: serde_json::Value = serde_json::from_str(&j.stdout).expect("JSON");
    assert_eq!(v["uuid"], "12345678-1234-1234-1234-123456789abc");
    assert!(!r.stdout.contains("MK dump"));
}
