//! The keyslot commands, like cryptsetup's: `add-key`, `change-key`, `remove-key`,
//! `kill-slot`, and `header-restore`. They read the keys and ask for consent in cryptsetup's order; the header
//! changes themselves are `luksfuse::headers::HeaderEdit`'s.

use super::format::read_volume_key;
use crate::cli::{AddKeyArgs, ChangeKeyArgs, HeaderRestoreArgs, KillSlotArgs, RemoveKeyArgs};
use crate::tty::{self, Progress};
use luksfuse::error::{Error, Result};
use luksfuse::headers::HeaderEdit;

pub fn add_key(a: &AddKeyArgs) -> Result<()> {
    let edit = HeaderEdit::open(&a.header)?;
    let slot = edit.new_slot(a.key_slot)?;
    let kdf = edit.kdf(&a.kdf.options())?;
    let vk = match &a.volume_key_file {
        Some(f) => {
            let vk = read_volume_key(f, edit.key_bytes())?;
            if !edit.volume_key_matches(&vk)? {
                return Err(Error::no_key("Volume key does not match the volume.").in_file(f));
            }
            vk
        }
        None => {
            let old = a
                .key
                .source()
                .read_prompt("Enter any existing passphrase: ", false)?;
            edit.unlock(&old, None)?.key
        }
    };
    let new = a
        .new_key
        .source()
        .read_prompt("Enter new passphrase for key slot: ", true)?;
    let mut progress = Progress::new();
    edit.add_key(slot, &vk, &new, &kdf, &mut |s| progress.step(s))
}

/// Replaces the passphrase of the keyslot the old one opens, in the same keyslot.
pub fn change_key(a: &ChangeKeyArgs) -> Result<()> {
    let edit = HeaderEdit::open(&a.header)?;
    let kdf = edit.kdf(&a.kdf.options())?;
    let old = a
        .key
        .source()
        .read_prompt("Enter passphrase to be changed: ", false)?;
    let u = edit.unlock(&old, a.key.key_slot)?;
    drop(old);
    let new = a
        .new_key
        .source()
        .read_prompt("Enter new passphrase: ", true)?;
    let mut progress = Progress::new();
    edit.change_key(&u, &new, &kdf, &mut |s| progress.step(s))
}

/// Removes the keyslot that the given key opens.
pub fn remove_key(a: &RemoveKeyArgs) -> Result<()> {
    let edit = HeaderEdit::open(&a.header)?;
    let pass = a
        .key
        .source()
        .read_prompt("Enter passphrase to be deleted: ", false)?;
    let u = edit.unlock(&pass, a.key.key_slot)?;
    drop(pass);
    remove_slot(edit, u.slot, a.batch_mode || a.force)
}

/// Removes keyslot N. A key that opens another keyslot proves the right to do so; without
/// one, `-q` (or `--force`) stands for it. The last keyslot needs `-q`, `--force` or a `YES`
/// on a terminal.
pub fn kill_slot(a: &KillSlotArgs) -> Result<()> {
    let edit = HeaderEdit::open(&a.header)?;
    let slot = a.slot;
    // -q or --force: confirmed up front, so neither a key of another keyslot (unless a key
    // file is given) nor a YES for the last keyslot is asked for.
    let confirmed = a.batch_mode || a.force;
    if !edit.header().slot_active(slot) {
        return Err(Error::usage(format!("Keyslot {slot} is not active.")).in_file(&a.header));
    }
    let key = a.key.source();
    if (key.is_file() || !confirmed) && !edit.other_slots(slot).is_empty() {
        let pass = key.read_prompt("Enter any remaining passphrase: ", false)?;
        edit.unlock_other(&pass, slot)?;
    }
    remove_slot(edit, slot, confirmed)
}

/// Consent to remove the last keyslot: given up front (`--force`, or `-q` as in cryptsetup),
/// or `YES` on a terminal. Unlike cryptsetup, a run without a terminal does not count as yes.
fn remove_slot(edit: HeaderEdit, slot: u32, confirmed: bool) -> Result<()> {
    if edit.is_last_slot(slot)
        && !confirmed
        && !tty::confirm(&tty::are_you_sure(
            "This is the last keyslot. Device will become unusable after purging this key.",
        ))
    {
        return Err(Error::usage(format!(
            "keyslot {slot} is the last one; removing it makes the volume unusable"
        ))
        .in_file(edit.path())
        .with_hint("pass -q or --force (or type YES on a terminal) if that is what you want"));
    }
    edit.remove_slot(slot)
}

/// Restores a header backup; one of another volume (another UUID, or a header that does not
/// parse) needs `-q` or a `YES` on a terminal, as cryptsetup asks.
pub fn header_restore(a: &HeaderRestoreArgs) -> Result<()> {
    let restore = luksfuse::headers::HeaderRestore::prepare(&a.header, &a.backup)?;
    if !restore.same_volume()
        && !a.batch_mode
        && !tty::confirm(&tty::are_you_sure(
            "Device does not contain the backup's LUKS header (another UUID, or none). Replacing \
             it destroys what it holds.",
        ))
    {
        return Err(
            Error::usage("the backup belongs to another volume; nothing written")
                .in_file(&a.header)
                .with_hint("pass -q (or type YES on a terminal) if that is what you want"),
        );
    }
    restore.write()
}
