//! The header management commands (`format`, `add-key`, `remove-key`, `change-key`,
//! `kill-slot`): read keys and consent, then change the header file through
//! [`crate::luks::update`] (locked, crash-safe). The LUKS work itself is in [`crate::luks`];
//! this module only orders the steps and talks to the user, as cryptsetup does.

use crate::error::{Error, Result};
use crate::luks::format::{FormatOptions, KdfOptions};
use crate::luks::update::{self, Locked};
use crate::luks::{Header, Unlocked};
use crate::passphrase::{self, KeySource};
use crate::secret::{Passphrase, VolumeKey};
use std::path::{Path, PathBuf};

fn are_you_sure(warning: &str) -> String {
    format!("WARNING!\n========\n{warning}\n\nAre you sure? (Type 'yes' in capital letters): ")
}

/// `luksfuse format`.
pub struct Format {
    pub header: PathBuf,
    pub options: FormatOptions,
    pub key: KeySource,
    pub volume_key_file: Option<PathBuf>,
    pub batch_mode: bool,
    pub force: bool,
}

/// Writes a new header file. An existing non-empty file is replaced only with `--force`,
/// `-q` or a `YES` typed on a terminal, and never while it is locked (mounted).
pub fn format(c: &Format) -> Result<()> {
    let path = &c.header;
    let plan = c.options.check().map_err(|e| e.in_file(path))?;
    let existing = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(Error::usage("is a directory").in_file(path)),
        Ok(m) => Some(m),
        Err(_) => None,
    };
    let locked = match existing {
        Some(m) if m.len() > 0 => {
            let locked = Locked::open(path)?;
            let is_luks = Header::parse(locked.image()).is_ok();
            let consent = c.force
                || c.batch_mode
                || passphrase::confirm(&are_you_sure(&format!(
                    "This will overwrite data on {} irrevocably.",
                    path.display()
                )));
            if !consent {
                let what = if is_luks {
                    "holds a LUKS header"
                } else {
                    "exists and is not empty"
                };
                return Err(Error::usage(format!(
                    "{what}; refusing to overwrite it without confirmation"
                ))
                .in_file(path)
                .with_hint("type YES on a terminal, or pass --force (or -q)"));
            }
            Some(locked)
        }
        _ => None,
    };
    let vk = match &c.volume_key_file {
        Some(f) => Some(read_volume_key(f, plan.key_bytes)?),
        None => None,
    };
    let pass = c
        .key
        .read_prompt(&format!("Enter passphrase for {}: ", path.display()), true)?;
    let (image, _vk) = progress("Benchmarking the KDF and writing the header", || {
        crate::luks::format::build(&plan, vk, pass.as_bytes())
    })
    .map_err(|e| e.in_file(path))?;
    drop(pass);
    match locked {
        Some(l) => {
            // Everything the old file held is gone: wipe it all.
            let old = 0..l.image().len() as u64;
            l.commit(&image, std::slice::from_ref(&old))
        }
        None => update::replace(path, &image, None),
    }
}

fn read_volume_key(path: &Path, len: usize) -> Result<VolumeKey> {
    let src = KeySource {
        key_file: Some(path.to_owned()),
        offset: 0,
        size: None,
    };
    let k = src.read("")?;
    if k.as_bytes().len() != len {
        return Err(Error::usage(format!(
            "volume key file holds {} bytes, expected {len}",
            k.as_bytes().len()
        ))
        .in_file(path));
    }
    Ok(VolumeKey(crate::secret::Secret::from_slice(k.as_bytes())))
}

/// A locked header file and its parsed header.
fn open_locked(path: &Path) -> Result<(Locked, Header)> {
    let locked = Locked::open(path)?;
    let header = Header::parse(locked.image()).map_err(|e| e.in_file(path))?;
    Ok((locked, header))
}

fn unlock(
    path: &Path,
    locked: &Locked,
    header: &Header,
    pass: &Passphrase,
    slot: Option<u32>,
) -> Result<Unlocked> {
    let u = header
        .unlock(locked.image(), pass.as_bytes(), slot)
        .map_err(|e| e.in_file(path))?;
    log::info!("key slot {} unlocked", u.slot);
    Ok(u)
}

/// Writes `image` after checking that it parses and that `pass` opens `slot` with the same
/// volume key (a last check before the old header is replaced).
fn commit_checked(
    locked: Locked,
    image: &[u8],
    wipe: &[std::ops::Range<u64>],
    check: Option<(&[u8], u32, &VolumeKey)>,
) -> Result<()> {
    let path = locked.path().to_owned();
    let h = Header::parse(&image).map_err(|e| e.context("updated header").in_file(&path))?;
    if let Some((pass, slot, vk)) = check {
        match h.open_keyslot(&image, slot, pass) {
            Ok(Some(k)) if k.0.ct_eq(vk.as_bytes()) => {}
            _ => {
                return Err(Error::format(format!(
                "updated header does not open with the new key in keyslot {slot}; nothing written"
            ))
                .in_file(&path))
            }
        }
    }
    locked.commit(image, wipe)
}

/// `luksfuse add-key`.
pub struct AddKey {
    pub header: PathBuf,
    pub key: KeySource,
    pub new_key: KeySource,
    pub slot: Option<u32>,
    pub kdf: KdfOptions,
    pub volume_key_file: Option<PathBuf>,
}

pub fn add_key(c: &AddKey) -> Result<()> {
    let path = &c.header;
    let (locked, header) = open_locked(path)?;
    let slot = match c.slot {
        Some(s) if s > header.max_slot() => {
            return Err(Error::usage(format!(
                "keyslot {s} out of range 0..={}",
                header.max_slot()
            ))
            .in_file(path))
        }
        Some(s) if header.slot_active(s) => {
            return Err(
                Error::usage(format!("Key slot {s} is full, please select another one."))
                    .in_file(path),
            )
        }
        Some(s) => s,
        None => header.free_slot().map_err(|e| e.in_file(path))?,
    };
    let choice = header.kdf_choice(&c.kdf)?;
    let vk = match &c.volume_key_file {
        Some(f) => {
            let vk = read_volume_key(f, header.segment().key_size)?;
            if !header.verify_key(vk.as_bytes())? {
                return Err(Error::no_key("Volume key does not match the volume.").in_file(f));
            }
            vk
        }
        None => {
            let old = c
                .key
                .read_prompt("Enter any existing passphrase: ", false)?;
            unlock(path, &locked, &header, &old, None)?.key
        }
    };
    let new = c
        .new_key
        .read_prompt("Enter new passphrase for key slot: ", true)?;
    let kdf = progress("Benchmarking the KDF for the new keyslot", || {
        choice.make(vk.len())
    })?;
    let mut image = locked.image().to_vec();
    header
        .seal_keyslot(&mut image, slot, vk.as_bytes(), new.as_bytes(), &kdf)
        .map_err(|e| e.in_file(path))?;
    commit_checked(locked, &image, &[], Some((new.as_bytes(), slot, &vk)))?;
    log::info!("Key slot {slot} created.");
    Ok(())
}

/// `luksfuse change-key`.
pub struct ChangeKey {
    pub header: PathBuf,
    pub key: KeySource,
    pub new_key: KeySource,
    pub slot: Option<u32>,
    pub kdf: KdfOptions,
}

/// Replaces the passphrase of the keyslot the old one opens, in the same keyslot. The whole
/// new file is written before the old one is replaced, so a crash leaves one or the other.
pub fn change_key(c: &ChangeKey) -> Result<()> {
    let path = &c.header;
    let (locked, header) = open_locked(path)?;
    let choice = header.kdf_choice(&c.kdf)?;
    let old = c
        .key
        .read_prompt("Enter passphrase to be changed: ", false)?;
    let u = unlock(path, &locked, &header, &old, c.slot)?;
    drop(old);
    let new = c.new_key.read_prompt("Enter new passphrase: ", true)?;
    let kdf = progress("Benchmarking the KDF for the new keyslot", || {
        choice.make(u.key.len())
    })?;
    let old_area = header.keyslot_area(u.slot).map_err(|e| e.in_file(path))?;
    let mut image = locked.image().to_vec();
    header
        .seal_keyslot(&mut image, u.slot, u.key.as_bytes(), new.as_bytes(), &kdf)
        .map_err(|e| e.in_file(path))?;
    commit_checked(
        locked,
        &image,
        &[old_area],
        Some((new.as_bytes(), u.slot, &u.key)),
    )?;
    log::info!("Key slot {} changed.", u.slot);
    Ok(())
}

/// Consent to remove the last keyslot: given up front (`--force`, or `-q` as in cryptsetup),
/// or `YES` on a terminal. Unlike cryptsetup, a run without a terminal does not count as yes.
fn last_slot_consent(path: &Path, slot: u32, confirmed: bool) -> Result<()> {
    if confirmed
        || passphrase::confirm(&are_you_sure(
            "This is the last keyslot. Device will become unusable after purging this key.",
        ))
    {
        return Ok(());
    }
    Err(Error::usage(format!(
        "keyslot {slot} is the last one; removing it makes the volume unusable"
    ))
    .in_file(path)
    .with_hint("pass -q or --force (or type YES on a terminal) if that is what you want"))
}

/// `luksfuse remove-key`.
pub struct RemoveKey {
    pub header: PathBuf,
    pub key: KeySource,
    pub slot: Option<u32>,
    /// Removing the last keyslot was confirmed up front.
    pub confirmed: bool,
}

/// Removes the keyslot that the given key opens.
pub fn remove_key(c: &RemoveKey) -> Result<()> {
    let path = &c.header;
    let (locked, header) = open_locked(path)?;
    let pass = c
        .key
        .read_prompt("Enter passphrase to be deleted: ", false)?;
    let u = unlock(path, &locked, &header, &pass, c.slot)?;
    drop(pass);
    remove_slot(locked, &header, u.slot, c.confirmed)
}

fn remove_slot(locked: Locked, header: &Header, slot: u32, confirmed: bool) -> Result<()> {
    let path = locked.path().to_owned();
    if header.active_slots() == [slot] {
        last_slot_consent(&path, slot, confirmed)?;
    }
    let mut image = locked.image().to_vec();
    let area = header
        .wipe_keyslot(&mut image, slot)
        .map_err(|e| e.in_file(&path))?;
    commit_checked(locked, &image, &[area], None)?;
    log::info!("Key slot {slot} removed.");
    Ok(())
}

/// `luksfuse kill-slot`.
pub struct KillSlot {
    pub header: PathBuf,
    pub slot: u32,
    pub key: KeySource,
    /// `-q` or `--force`: confirmed up front, so neither a key of another keyslot (unless a
    /// key file is given) nor a `YES` for the last keyslot is asked for.
    pub confirmed: bool,
}

/// Removes keyslot `slot`. A key that opens another keyslot proves the right to do so;
/// without one, `-q` (or `--force`) stands for it. The last keyslot needs `-q`, `--force` or
/// a `YES` on a terminal.
pub fn kill_slot(c: &KillSlot) -> Result<()> {
    let path = &c.header;
    let (locked, header) = open_locked(path)?;
    if !header.slot_active(c.slot) {
        return Err(Error::usage(format!("Keyslot {} is not active.", c.slot)).in_file(path));
    }
    let others: Vec<u32> = header
        .active_slots()
        .into_iter()
        .filter(|s| *s != c.slot)
        .collect();
    let need_key = c.key.is_file() || !c.confirmed;
    if need_key && !others.is_empty() {
        let pass = c
            .key
            .read_prompt("Enter any remaining passphrase: ", false)?;
        let mut opened = false;
        for s in &others {
            if let Ok(Some(_)) = header.open_keyslot(locked.image(), *s, pass.as_bytes()) {
                log::info!("key slot {s} unlocked");
                opened = true;
                break;
            }
        }
        if !opened {
            return Err(Error::no_key(format!(
                "No key available with this passphrase (in a keyslot other than {}).",
                c.slot
            ))
            .in_file(path));
        }
    }
    remove_slot(locked, &header, c.slot, c.confirmed)
}

/// Runs a long step (KDF calibration takes about `--iter-time`), saying so on a terminal:
/// "WHAT ... done (1.9 s)". Quiet when stderr is not a terminal.
fn progress<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let tty = crate::sys::is_terminal(&std::io::stderr());
    if tty {
        eprint!("{what} ... ");
    }
    let start = std::time::Instant::now();
    let r = f();
    if tty {
        eprintln!("done ({:.1} s)", start.elapsed().as_secs_f64());
    }
    r
}
