//! One module per command; each `run` takes the command's clap arguments. What is shared by
//! several commands (opening a header, unlocking it, the key and KDF options) is here.

pub mod assets;
pub mod dump;
pub mod format;
pub mod keys;
pub mod mount;
pub mod reencrypt;
pub mod status;
pub mod test_key;
pub mod umount;

use crate::cli::{value_name, KdfOpts, KeyFileOpts, KeyOpts, NewKeyOpts};
use crate::tty::KeySource;
use luksfuse::error::Result;
use luksfuse::luks::format::KdfOptions;
use luksfuse::luks::{Header, HeaderFile, Unlocked};
use std::path::Path;

impl KeyFileOpts {
    pub fn source(&self) -> KeySource {
        KeySource {
            key_file: self.key_file.clone(),
            offset: self.keyfile_offset,
            size: self.keyfile_size,
        }
    }
}

impl KeyOpts {
    pub fn source(&self) -> KeySource {
        self.file.source()
    }
}

impl NewKeyOpts {
    pub fn source(&self) -> KeySource {
        KeySource {
            key_file: self.new_key_file.clone(),
            offset: self.new_keyfile_offset,
            size: self.new_keyfile_size,
        }
    }
}

impl KdfOpts {
    /// The library's KDF options (it takes cryptsetup's names).
    pub fn options(&self) -> KdfOptions {
        KdfOptions {
            pbkdf: self.pbkdf.as_ref().map(value_name),
            hash: self.hash.as_ref().map(value_name),
            iter_time: self.iter_time,
            memory: self.pbkdf_memory,
            parallel: self.pbkdf_parallel,
            force_iterations: self.pbkdf_force_iterations,
        }
    }
}

/// Reads and parses a header file (without locking it); for a qcow2 image with QEMU's own
/// LUKS encryption, the header embedded in it.
pub fn open_header(path: &Path) -> Result<(HeaderFile, Header)> {
    let file = match embedded_header(path)? {
        Some((offset, length)) => HeaderFile::open_range(path, offset, length)?,
        None => HeaderFile::open(path)?,
    };
    let header = Header::parse(&file).map_err(|e| e.in_file(path))?;
    Ok((file, header))
}

pub use luksfuse::headers::embedded_header;

/// Reads the key (`-S`: for that keyslot only) and opens a keyslot with it. An unbound
/// keyslot opens only when asked for by number; [`Unlocked::bound`] then says so, and only a
/// caller that does not need the volume key (`test-key`, the key dump) may accept it.
pub fn unlock(path: &Path, file: &HeaderFile, header: &Header, k: &KeyOpts) -> Result<Unlocked> {
    if let Some(s) = k.key_slot {
        if !header.slot_active(s) {
            return Err(luksfuse::luks::header::inactive(s).in_file(path));
        }
    }
    let pass = k.source().read(&path.display().to_string())?;
    let u = header
        .unlock(file, pass.as_bytes(), k.key_slot)
        .map_err(|e| e.in_file(path))?;
    if u.bound {
        log::info!("key slot {} unlocked", u.slot);
    } else {
        log::info!("key slot {} (unbound) unlocked", u.slot);
    }
    Ok(u)
}
