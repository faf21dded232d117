//! Inputs the fuzzers in `fuzz/` found to crash luksfuse, minimized, each with the outcome it
//! must now give. Every one was a panic or an unbounded allocation before its fix; an error
//! return is the right answer to a hostile file. See fuzz/README.md for the runs.

use luksfuse::image::qcow2::{self, Qcow2Options};
use std::io::Write;

/// The bytes of a hex dump written 16 bytes to a line.
fn unhex(lines: &[&str]) -> Vec<u8> {
    let s: String = lines.concat();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Opens `bytes` as a qcow2 image, read-only, as the `qcow2_open` fuzz target does.
fn open_qcow2(bytes: &[u8]) -> luksfuse::Result<qcow2::Qcow2Image> {
    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(bytes).expect("write");
    qcow2::open_file(file, "fuzz.qcow2".as_ref(), &Qcow2Options::default())
}

/// qcow2_open, 130 bytes: a v3 image with 4 KiB clusters whose header extensions (from byte
/// 112) are an unknown extension of 0 bytes, then a feature name table (0x6803f857) of 1 byte.
/// imago 0.2.6 cuts the table into 48-byte entries and indexes `entry[2..]` of the 1-byte
/// remainder: a panic. The table must be whole entries; we refuse it before imago reads it.
#[test]
fn qcow2_feature_name_table_with_a_partial_entry_is_refused_not_a_panic() {
    let img = unhex(&[
        "514649fb000000030000000000000000",
        "000000000000000c0000000000105b00",
        "00000000000000ffffffff0000003000",
        "00000000000010000000000000000000",
        "00090000000000000000000000000000",
        "00000000000000000000000000000000",
        "00000004000000700000ffffff000000",
        "ff000000000000006803f85700000001",
        "0000",
    ]);
    let e = open_qcow2(&img).err().expect("must be refused");
    assert!(e.message().contains("feature name table"), "{e}");
}
