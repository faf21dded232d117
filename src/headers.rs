//! Changing a header file: writing a new header ([`NewHeader`]) and editing keyslots
//! ([`HeaderEdit`]), each under the header's lock and crash-safe (through
//! [`crate::luks::update`]). The LUKS work itself is in [`crate::luks`].
//!
//! Nothing here talks to the user: passphrases come in already read, consent is the caller's
//! to ask for before an operation that destroys something (replacing a non-empty file, see
//! [`NewHeader::replaces`]; removing the last keyslot, see [`HeaderEdit::is_last_slot`]), and
//! the long steps (KDF calibration) are reported to a [`Step`] callback.

use crate::error::{Error, Result};
use crate::luks::format::{FormatOptions, KdfOptions, Plan};
use crate::luks::kdf::KdfChoice;
use crate::luks::update::{self, Locked};
use crate::luks::{Header, Unlocked};
use crate::secret::{Passphrase, VolumeKey};
use std::path::{Path, PathBuf};

/// A long step of a header operation (it calibrates a KDF: about `iter_time` ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Calibrating the KDFs of a new header and building it.
    WriteHeader,
    /// Calibrating the KDF of a new keyslot.
    NewKeyslot,
}

/// Reported to the progress callback around each [`Task`]; `Done` follows every `Start`,
/// whether the task succeeded or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start(Task),
    Done(Task),
}

fn step<T>(progress: &mut dyn FnMut(Step), task: Task, f: impl FnOnce() -> T) -> T {
    progress(Step::Start(task));
    let r = f();
    progress(Step::Done(task));
    r
}

/// What a new header would replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldContent {
    /// A LUKS header (of either version).
    LuksHeader,
    /// Other, non-empty content.
    Data,
}

/// A new header file to write: the options are checked and an existing file is locked.
pub struct NewHeader {
    path: PathBuf,
    plan: Plan,
    old: Option<(Locked, OldContent)>,
}

impl NewHeader {
    /// Checks `options` and, if `path` exists and is not empty, locks it (it must not be in
    /// use: a mounted header is locked) and looks at what it holds.
    pub fn prepare(path: &Path, options: &FormatOptions) -> Result<Self> {
        let plan = options.check().map_err(|e| e.in_file(path))?;
        let existing = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(Error::usage("is a directory").in_file(path)),
            Ok(m) => Some(m),
            Err(_) => None,
        };
        let old = match existing {
            Some(m) if m.len() > 0 => {
                let locked = Locked::open(path)?;
                let what = match Header::parse(locked.image()) {
                    Ok(_) => OldContent::LuksHeader,
                    Err(_) => OldContent::Data,
                };
                Some((locked, what))
            }
            _ => None,
        };
        Ok(NewHeader {
            path: path.to_owned(),
            plan,
            old,
        })
    }

    /// What [`write`](Self::write) would destroy, if anything: ask before writing.
    pub fn replaces(&self) -> Option<OldContent> {
        self.old.as_ref().map(|(_, what)| *what)
    }

    /// The volume key's length in bytes.
    pub fn key_bytes(&self) -> usize {
        self.plan.key_bytes
    }

    /// Builds the header (with `volume_key`, else a random one) with one keyslot opened by
    /// `pass`, and writes it, replacing (and wiping) whatever the file held.
    pub fn write(
        self,
        volume_key: Option<VolumeKey>,
        pass: &Passphrase,
        progress: &mut dyn FnMut(Step),
    ) -> Result<()> {
        let path = &self.path;
        let (image, _vk) = step(progress, Task::WriteHeader, || {
            crate::luks::format::build(&self.plan, volume_key, pass.as_bytes())
        })
        .map_err(|e| e.in_file(path))?;
        match self.old {
            Some((l, _)) => {
                // Everything the old file held is gone: wipe it all.
                let old = 0..l.image().len() as u64;
                l.commit(&image, std::slice::from_ref(&old))
            }
            None => update::replace(path, &image, None),
        }
    }
}

/// A volume key read from a file (`bytes`) must have the volume's key length.
pub fn volume_key(bytes: &Passphrase, len: usize, file: &Path) -> Result<VolumeKey> {
    if bytes.as_bytes().len() != len {
        return Err(Error::usage(format!(
            "volume key file holds {} bytes, expected {len}",
            bytes.as_bytes().len()
        ))
        .in_file(file));
    }
    Ok(VolumeKey(crate::secret::Secret::from_slice(
        bytes.as_bytes(),
    )))
}

/// Writes the header of `path` (its bytes from 0 to the end of its keyslot areas, as
/// `cryptsetup luksHeaderBackup` stores them, whether the header is detached or holds its
/// data) to the new file `backup` (read-only for its owner, as cryptsetup makes it; made
/// durable). Refuses an existing `backup`.
pub fn header_backup(path: &Path, backup: &Path) -> Result<()> {
    let file = match embedded_header(path)? {
        Some((offset, length)) => crate::luks::HeaderFile::open_range(path, offset, length)?,
        None => crate::luks::HeaderFile::open(path)?,
    };
    let bytes = Header::parse(&file)
        .and_then(|h| h.read_metadata(&file))
        .map_err(|e| e.in_file(path))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(backup)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::usage("Requested header backup file already exists.").in_file(backup)
            }
            _ => Error::io(backup, "cannot create header backup", &e),
        })?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| Error::io(backup, "cannot write header backup", &e))
}

/// A header backup checked against the header it is to replace.
pub struct HeaderRestore {
    locked: Locked,
    backup: Vec<u8>,
    same_volume: bool,
}

impl HeaderRestore {
    /// Locks `path` and reads the backup `from` (it must parse as a LUKS header, and be a
    /// header of the same size when `path` is an image holding its data).
    pub fn prepare(path: &Path, from: &Path) -> Result<Self> {
        let backup_file = crate::luks::HeaderFile::open(from)?;
        let backup_h = Header::parse(&backup_file).map_err(|e| e.in_file(from))?;
        let backup = backup_h
            .read_metadata(&backup_file)
            .map_err(|e| e.in_file(from))?;
        let end = backup.len() as u64; // usize to u64 widens
                                       // The backup's own layout says whether `path` holds its data after the header.
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, "cannot stat header", &e))?
            .len();
        let locked = match embedded_header(path)? {
            Some((offset, length)) => Locked::open_embedded(path, offset, length)?,
            None => Locked::open_as(path, backup_h.attached_end(len))?,
        };
        if !locked.attached() && len > end {
            return Err(Error::usage(format!(
                "the file is {len} bytes, more than the backup's header ({end}): restoring it \
                 would cut the file"
            ))
            .in_file(path));
        }
        let current = Header::parse(locked.image()).ok();
        if locked.attached() && locked.image().len() != backup.len() {
            return Err(Error::usage(format!(
                "the backup's header is {} bytes, the image's {}: it belongs to another volume",
                backup.len(),
                locked.image().len()
            ))
            .in_file(from));
        }
        let same_volume = current.is_some_and(|c| c.uuid() == backup_h.uuid());
        Ok(HeaderRestore {
            locked,
            backup,
            same_volume,
        })
    }

    /// Whether the header in place has the backup's UUID (else ask before restoring).
    pub fn same_volume(&self) -> bool {
        self.same_volume
    }

    /// Writes the backup over the header: a detached header is replaced by rename; inside an
    /// image the changed bytes are written in the crash-safe order of `luks::in_place`, which
    /// refuses a backup whose key material differs where both headers use it.
    pub fn write(self) -> Result<()> {
        let HeaderRestore { locked, backup, .. } = self;
        if locked.attached() {
            return locked.commit(&backup, &[]);
        }
        // The whole detached file becomes the backup's header.
        let old = 0..locked.image().len() as u64;
        locked.commit(&backup, std::slice::from_ref(&old))
    }
}

/// A locked header file and its parsed header, for keyslot changes.
pub struct HeaderEdit {
    locked: Locked,
    header: Header,
}

impl HeaderEdit {
    /// Locks the header file (it must not be in use) and parses it.
    pub fn open(path: &Path) -> Result<Self> {
        let locked = match embedded_header(path)? {
            Some((offset, length)) => Locked::open_embedded(path, offset, length)?,
            None => Locked::open(path)?,
        };
        let header = Header::parse(locked.image()).map_err(|e| e.in_file(path))?;
        Ok(HeaderEdit { locked, header })
    }

    pub fn path(&self) -> &Path {
        self.locked.path()
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The keyslot for a new key: `wanted` if it is in range and free, else the first free one.
    pub fn new_slot(&self, wanted: Option<u32>) -> Result<u32> {
        let (path, header) = (self.path(), &self.header);
        match wanted {
            Some(s) if s > header.max_slot() => Err(Error::usage(format!(
                "keyslot {s} out of range 0..={}",
                header.max_slot()
            ))
            .in_file(path)),
            Some(s) if header.slot_active(s) => Err(Error::usage(format!(
                "Key slot {s} is full, please select another one."
            ))
            .in_file(path)),
            Some(s) => Ok(s),
            None => header.free_slot().map_err(|e| e.in_file(path)),
        }
    }

    /// The KDF a new keyslot of this header gets (LUKS1: PBKDF2 with the header's hash).
    pub fn kdf(&self, kdf: &KdfOptions) -> Result<KdfChoice> {
        self.header.kdf_choice(kdf)
    }

    /// The volume key's length in bytes.
    pub fn key_bytes(&self) -> usize {
        self.header.segment().key_size
    }

    /// Whether a volume key given instead of a passphrase matches the header's digest.
    pub fn volume_key_matches(&self, vk: &VolumeKey) -> Result<bool> {
        self.header.verify_key(vk.as_bytes())
    }

    /// Opens keyslot `slot`, or any, with `pass`.
    pub fn unlock(&self, pass: &Passphrase, slot: Option<u32>) -> Result<Unlocked> {
        let u = self
            .header
            .unlock(self.locked.image(), pass.as_bytes(), slot)
            .map_err(|e| e.in_file(self.path()))?;
        log::info!("key slot {} unlocked", u.slot);
        Ok(u)
    }

    /// The active keyslots other than `slot`.
    pub fn other_slots(&self, slot: u32) -> Vec<u32> {
        self.header
            .active_slots()
            .into_iter()
            .filter(|s| *s != slot)
            .collect()
    }

    /// Opens one of the active keyslots other than `slot` with `pass`: the proof that the
    /// caller may remove `slot`.
    pub fn unlock_other(&self, pass: &Passphrase, slot: u32) -> Result<u32> {
        for s in self.other_slots(slot) {
            if let Ok(Some(_)) = self
                .header
                .open_keyslot(self.locked.image(), s, pass.as_bytes())
            {
                log::info!("key slot {s} unlocked");
                return Ok(s);
            }
        }
        Err(Error::no_key(format!(
            "No key available with this passphrase (in a keyslot other than {slot})."
        ))
        .in_file(self.path()))
    }

    /// Whether `slot` is the only active keyslot: removing it makes the volume unusable.
    pub fn is_last_slot(&self, slot: u32) -> bool {
        self.header.active_slots() == [slot]
    }

    /// Stores `new` in the free keyslot `slot`, sealing `vk` with a KDF from `kdf`.
    pub fn add_key(
        self,
        slot: u32,
        vk: &VolumeKey,
        new: &Passphrase,
        kdf: &KdfChoice,
        progress: &mut dyn FnMut(Step),
    ) -> Result<()> {
        let kdf = step(progress, Task::NewKeyslot, || kdf.make(vk.len()))?;
        let mut image = self.locked.image().to_vec();
        self.header
            .seal_keyslot(&mut image, slot, vk.as_bytes(), new.as_bytes(), &kdf)
            .map_err(|e| e.in_file(self.path()))?;
        commit_checked(self.locked, &image, &[], Some((new.as_bytes(), slot, vk)))?;
        log::info!("Key slot {slot} created.");
        Ok(())
    }

    /// Replaces the passphrase of the keyslot `old` was opened from by `new`, in the same
    /// keyslot. The whole new file is written before the old one is replaced, so a crash
    /// leaves one or the other.
    pub fn change_key(
        self,
        old: &Unlocked,
        new: &Passphrase,
        kdf: &KdfChoice,
        progress: &mut dyn FnMut(Step),
    ) -> Result<()> {
        let path = self.path().to_owned();
        let kdf = step(progress, Task::NewKeyslot, || kdf.make(old.key.len()))?;
        if self.locked.attached() {
            return self.change_key_in_place(old, new, &kdf);
        }
        let old_area = self
            .header
            .keyslot_area(old.slot)
            .map_err(|e| e.in_file(&path))?;
        let mut image = self.locked.image().to_vec();
        self.header
            .seal_keyslot(
                &mut image,
                old.slot,
                old.key.as_bytes(),
                new.as_bytes(),
                &kdf,
            )
            .map_err(|e| e.in_file(&path))?;
        commit_checked(
            self.locked,
            &image,
            &[old_area],
            Some((new.as_bytes(), old.slot, &old.key)),
        )?;
        log::info!("Key slot {} changed.", old.slot);
        Ok(())
    }

    /// `change_key` inside an image: the old keyslot's material stays valid until the new
    /// one is written, so the new passphrase goes into a free keyslot and the old keyslot is
    /// removed in the same switch (see `luks::in_place`). LUKS1: both keyslots' descriptors
    /// must lie in the header's first sector (keyslots 0 to 5), where one sector write
    /// switches them together.
    fn change_key_in_place(
        self,
        old: &Unlocked,
        new: &Passphrase,
        kdf: &crate::luks::kdf::Kdf,
    ) -> Result<()> {
        let path = self.path().to_owned();
        let h = &self.header;
        let target = match h.version() {
            1 => (0..=5)
                .find(|&s| s != old.slot && !h.slot_active(s))
                .filter(|_| old.slot <= 5),
            _ => h.free_slot().ok(),
        }
        .ok_or_else(|| {
            Error::usage(format!(
                "no free keyslot to change keyslot {} crash-safely inside this image; \
                 use add-key, then remove-key",
                old.slot
            ))
            .in_file(&path)
        })?;
        let mut image = self.locked.image().to_vec();
        h.seal_keyslot(&mut image, target, old.key.as_bytes(), new.as_bytes(), kdf)
            .map_err(|e| e.in_file(&path))?;
        Header::parse(&image)
            .and_then(|sealed| sealed.wipe_keyslot(&mut image, old.slot))
            .map_err(|e| e.in_file(&path))?;
        commit_checked(
            self.locked,
            &image,
            &[],
            Some((new.as_bytes(), target, &old.key)),
        )?;
        log::warn!(
            "Key slot {} changed: the new passphrase is in keyslot {target}.",
            old.slot
        );
        Ok(())
    }

    /// Removes keyslot `slot` and wipes its key material; even the last one (see
    /// [`is_last_slot`](Self::is_last_slot): ask first).
    pub fn remove_slot(self, slot: u32) -> Result<()> {
        let path = self.path().to_owned();
        let mut image = self.locked.image().to_vec();
        let area = self
            .header
            .wipe_keyslot(&mut image, slot)
            .map_err(|e| e.in_file(&path))?;
        commit_checked(self.locked, &image, &[area], None)?;
        log::info!("Key slot {slot} removed.");
        Ok(())
    }
}

/// The byte range of the LUKS header embedded in `path` when it is a qcow2 image with QEMU's
/// own LUKS encryption (`Some((offset, length))`; changed in place like an attached header);
/// `None` for anything that is not a qcow2 image. An unencrypted qcow2 image is no header (an
/// error saying what to give instead); the legacy AES method and a bad header pointer are
/// errors naming the file.
pub fn embedded_header(path: &Path) -> Result<Option<(u64, u64)>> {
    use crate::image::qcow2;
    // A file we cannot read is reported by the header's own open.
    if !qcow2::is_qcow2(path).unwrap_or(false) {
        return Ok(None);
    }
    match qcow2::embedded_luks_header(path)? {
        Some(range) => Ok(Some(range)),
        None => Err(Error::format(
            "qcow2 image without QEMU's own encryption is not a LUKS header",
        )
        .in_file(path)
        .with_hint("give the detached header first: luksfuse mount HEADER IMAGE MOUNTPOINT")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn options() -> FormatOptions {
        crate::testing::fast_options(2)
    }

    fn pass(p: &[u8]) -> Passphrase {
        Passphrase(Secret::from_slice(p))
    }

    #[test]
    fn a_new_header_says_what_it_replaces() {
        let d = tempfile::tempdir().unwrap();
        let e = NewHeader::prepare(d.path(), &options()).err().unwrap();
        assert_eq!(e.exit_code(), 1);
        let h = d.path().join("h.img");
        assert_eq!(NewHeader::prepare(&h, &options()).unwrap().replaces(), None);
        std::fs::write(&h, b"").unwrap();
        assert_eq!(NewHeader::prepare(&h, &options()).unwrap().replaces(), None);
        std::fs::write(&h, b"not a header").unwrap();
        let new = NewHeader::prepare(&h, &options()).unwrap();
        assert_eq!(new.replaces(), Some(OldContent::Data));
        assert_eq!(new.key_bytes(), 64);
        let mut steps = vec![];
        new.write(None, &pass(b"one"), &mut |s| steps.push(s))
            .unwrap();
        assert_eq!(
            steps,
            [
                Step::Start(Task::WriteHeader),
                Step::Done(Task::WriteHeader)
            ]
        );
        let again = NewHeader::prepare(&h, &options()).unwrap();
        assert_eq!(again.replaces(), Some(OldContent::LuksHeader));
    }

    #[test]
    fn keyslots_are_added_and_removed_even_the_last() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().join("h.img");
        NewHeader::prepare(&h, &options())
            .unwrap()
            .write(None, &pass(b"one"), &mut |_| {})
            .unwrap();
        let edit = HeaderEdit::open(&h).unwrap();
        assert!(edit.is_last_slot(0));
        assert_eq!(edit.new_slot(Some(0)).unwrap_err().exit_code(), 1);
        let slot = edit.new_slot(None).unwrap();
        assert_eq!(slot, 1);
        assert_eq!(edit.unlock(&pass(b"two"), None).unwrap_err().exit_code(), 2);
        let u = edit.unlock(&pass(b"one"), None).unwrap();
        assert!(edit.volume_key_matches(&u.key).unwrap());
        let kdf = edit.kdf(&options().kdf).unwrap();
        let mut steps = vec![];
        edit.add_key(slot, &u.key, &pass(b"two"), &kdf, &mut |s| steps.push(s))
            .unwrap();
        assert_eq!(
            steps,
            [Step::Start(Task::NewKeyslot), Step::Done(Task::NewKeyslot)]
        );

        let edit = HeaderEdit::open(&h).unwrap();
        assert!(!edit.is_last_slot(0));
        assert_eq!(edit.other_slots(0), [1]);
        assert_eq!(edit.unlock_other(&pass(b"two"), 0).unwrap(), 1);
        assert_eq!(
            edit.unlock_other(&pass(b"one"), 0).unwrap_err().exit_code(),
            2
        );
        edit.remove_slot(0).unwrap();
        let edit = HeaderEdit::open(&h).unwrap();
        assert!(edit.is_last_slot(1));
        assert_eq!(
            edit.unlock(&pass(b"two"), None).unwrap().key.as_bytes(),
            u.key.as_bytes()
        );
    }
}
