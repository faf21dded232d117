//! `luksfuse dump`: the header as `cryptsetup luksDump` shows it, as JSON, or with the volume
//! key (`--dump-volume-key`, after a warning and a confirmation on a terminal).

use super::{open_header, unlock};
use crate::cli::{DumpArgs, KeyOpts};
use luksfuse::error::{Error, Result};
use luksfuse::luks::{hex_lines, Header, HeaderFile};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

pub fn run(a: &DumpArgs) -> Result<()> {
    let path = &a.header;
    let (file, header) = open_header(path)?;
    if a.dump_volume_key {
        if !confirm_volume_key_dump(a.batch_mode) {
            return Err(Error::usage("Operation aborted."));
        }
        let text = volume_key_dump(path, &file, &header, &a.key)?;
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

/// cryptsetup's warning, always; then, on a terminal and without `-q`, its question.
fn confirm_volume_key_dump(batch_mode: bool) -> bool {
    eprintln!(
        "\nWARNING!\n========\nThe header dump with volume key is sensitive information\n\
         that allows access to encrypted partition without a passphrase.\n\
         This dump should be stored encrypted in a safe place.\n"
    );
    batch_mode
        || !luksfuse::sys::is_terminal(&std::io::stdin())
        || crate::tty::confirm("Are you sure? (Type 'yes' in capital letters): ")
}

// ---- The volume key dump's text. ----
// To be replaced by the library's function for it (luks::dump) at merge: it unlocks (reading
// the key as for any command) and formats cryptsetup's `luksDump --dump-volume-key` lines.

/// Unlocks the header with the key and returns cryptsetup's volume key dump (zeroed on drop).
fn volume_key_dump(
    path: &Path,
    file: &HeaderFile,
    header: &Header,
    key: &KeyOpts,
) -> Result<Zeroizing<String>> {
    let u = unlock(path, file, header, key)?;
    let seg = header.segment();
    let (name, mode) = seg.cipher.split_once('-').unwrap_or((&seg.cipher, ""));
    let hex = Zeroizing::new(hex_lines(u.key.as_bytes(), "\t\t"));
    Ok(Zeroizing::new(format!(
        "LUKS header information for {}\nCipher name:   \t{name}\nCipher mode:   \t{mode}\n\
         Payload offset:\t{}\nUUID:          \t{}\nMK bits:       \t{}\nMK dump:\t{}\n",
        path.display(),
        seg.offset / 512,
        header.uuid(),
        u.key.len() * 8,
        *hex,
    )))
}
