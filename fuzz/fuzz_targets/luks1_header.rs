//! `Luks1::parse` on arbitrary bytes as the header file, then everything a parsed header
//! offers without a passphrase (the dumps print every field).
#![no_main]

use libfuzzer_sys::fuzz_target;
use luksfuse::luks::luks1::Luks1;

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    if let Ok(h) = Luks1::parse(&src) {
        let _ = h.active_slots();
        let _ = h.dump();
        let _ = h.dump_json();
    }
});
