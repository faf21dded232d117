//! `Luks2::parse` on arbitrary bytes as the header file: both binary header copies, their
//! checksums, the choice between them and the JSON metadata; then the dumps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use luksfuse::luks::luks2::Luks2;

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    if let Ok(h) = Luks2::parse(&src) {
        let _ = h.slots_to_try();
        let _ = h.dump();
        let _ = h.dump_json();
    }
});
