//! `Header::parse` (either version) then unlocking with a fixed passphrase: every slot in the
//! order `unlock` tries them, then each active slot it leaves out (LUKS2 priority "ignore",
//! unbound keyslots) by number. KDF costs are capped in fuzz builds (`kdf::fuzz_caps`), so the
//! derived keys differ from cryptsetup's and an unlock never succeeds; everything up to the
//! digest comparison (key material reads, keyslot decryption, AF merge) runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use luksfuse::luks::Header;

/// The passphrase `seed.sh` formats its headers with.
const PASSPHRASE: &[u8] = b"fuzz";

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    let Ok(h) = Header::parse(&src) else {
        return;
    };
    let _ = h.segment();
    let _ = h.unlock(&src, PASSPHRASE, None);
    let tried = h.slots_to_try();
    for slot in (0..32).filter(|s| h.slot_active(*s) && !tried.contains(s)) {
        let _ = h.unlock(&src, PASSPHRASE, Some(slot));
    }
});
