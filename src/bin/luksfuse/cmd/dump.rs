//! `luksfuse dump`: the header as `cryptsetup luksDump` shows it, as JSON, or with the volume
//! key (`--dump-volume-key`, after a warning and a confirmation on a terminal), or the key of
//! an unbound keyslot (`--unbound -S N`).

use super::{open_header, unlock};
use crate::cli::DumpArgs;
use luksfuse::error::{Error, Result};
use std::io::Write;

pub fn run(a: &DumpArgs) -> Result<()> {
    let path = &a.header;
    let (file, header) = open_header(path)?;
    if a.unbound {
        // As `cryptsetup luksDump --unbound -S N` (which asks for no confirmation).
        let slot = a
            .key
            .key_slot
            .ok_or_else(|| Error::usage("Keyslot specification is required.").in_file(path))?;
        if header.slot_active(slot) && header.bound(slot) {
            return Err(
                Error::usage(format!("Keyslot {slot} does not contain unbound key.")).in_file(path),
            );
        }
        let u = unlock(path, &file, &header, &a.key)?;
        let text = luksfuse::luks::dump::unbound_key_text(&header, path, u.slot, &u.key);
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return Ok(());
    }
    if a.dump_volume_key {
        if !confirm_volume_key_dump(a.batch_mode) {
            return Err(Error::usage("Operation aborted."));
        }
        let u = unlock(path, &file, &header, &a.key)?;
        let text = if u.bound {
            luksfuse::luks::dump::volume_key_text(&header, path, &u.key)
        } else {
            luksfuse::luks::dump::unbound_key_text(&header, path, u.slot, &u.key)
        };
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return Ok(());
    }
    let text = if a.json {
        serde_json::to_string_pretty(&header.dump_json()).expect("JSON value") + "\n"
    } else {
        header.dump()
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// cryptsetup's warning and question, on a terminal and without `-q` only (as its
/// `yesDialog`: in batch mode or from a pipe it prints neither and goes on).
fn confirm_volume_key_dump(batch_mode: bool) -> bool {
    if batch_mode || !luksfuse::process::is_terminal(&std::io::stdin()) {
        return true;
    }
    eprintln!(
        "\nWARNING!\n========\nThe header dump with volume key is sensitive information\n\
         that allows access to encrypted partition without a passphrase.\n\
         This dump should be stored encrypted in a safe place.\n"
    );
    crate::tty::confirm("Are you sure? (Type 'yes' in capital letters): ")
}
