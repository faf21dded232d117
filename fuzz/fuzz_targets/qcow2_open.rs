//! `qcow2::open_file` read-only on arbitrary bytes as the image file (our header checks, then
//! imago's), and if it opens, reads at the start, across a cluster boundary and at the end.
//! The file is an unnamed temporary file on tmpfs (`/dev/shm`), so nothing is left behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use luksfuse::image::qcow2::{self, Qcow2Options};
use luksfuse::image::Image;
use std::io::Write;
use std::path::Path;

fn tmpfile() -> std::fs::File {
    tempfile::tempfile_in("/dev/shm")
        .or_else(|_| tempfile::tempfile())
        .expect("temporary file")
}

fuzz_target!(|data: &[u8]| {
    let mut file = tmpfile();
    file.write_all(data).expect("write the temporary file");
    let opts = Qcow2Options::default();
    let Ok(img) = qcow2::open_file(file, Path::new("fuzz.qcow2"), &opts) else {
        return;
    };
    let size = img.size();
    let mut buf = vec![0u8; 8192];
    for (off, len) in [
        (0, 4096),
        (65536 - 512, 1024),
        (size / 2, 8192),
        (size.saturating_sub(4096), 4096),
        (size, 1),
    ] {
        let len = len.min(buf.len());
        let _ = img.read_at(&mut buf[..len], off);
    }
});
