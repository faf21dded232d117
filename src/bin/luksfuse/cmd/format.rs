//! `luksfuse format`: a new header file, like `cryptsetup luksFormat --header`.

use crate::cli::FormatArgs;
use crate::tty::{self, KeySource, Progress};
use luksfuse::error::{Error, Result};
use luksfuse::headers::{self, NewHeader, OldContent};
use luksfuse::luks::format::FormatOptions;
use luksfuse::secret::VolumeKey;
use std::path::Path;

/// An existing non-empty file is replaced only with `--force`, `-q` or a `YES` typed on a
/// terminal, and never while it is locked (mounted).
pub fn run(a: &FormatArgs) -> Result<()> {
    let path = &a.header;
    let options = FormatOptions {
        version: a.kind.version(),
        cipher: a.new.cipher.clone(),
        key_bits: a.new.key_size,
        kdf: a.new.kdf.options(),
        sector_size: a.new.sector_size,
        offset_sectors: a.offset,
        uuid: a.new.uuid.clone(),
        label: a.new.label.clone(),
    };
    let new = NewHeader::prepare(path, &options)?;
    if let Some(old) = new.replaces() {
        let consent = a.force
            || a.batch_mode
            || tty::confirm(&tty::are_you_sure(&format!(
                "This will overwrite data on {} irrevocably.",
                path.display()
            )));
        if !consent {
            let what = match old {
                OldContent::LuksHeader => "holds a LUKS header",
                OldContent::Data => "exists and is not empty",
            };
            return Err(Error::usage(format!(
                "{what}; refusing to overwrite it without confirmation"
            ))
            .in_file(path)
            .with_hint("type YES on a terminal, or pass --force (or -q)"));
        }
    }
    let vk = match &a.volume_key_file {
        Some(f) => Some(read_volume_key(f, new.key_bytes())?),
        None => None,
    };
    let pass = a
        .key
        .source()
        .read_prompt(&format!("Enter passphrase for {}: ", path.display()), true)?;
    let mut progress = Progress::new();
    new.write(vk, &pass, &mut |s| progress.step(s))
}

/// `--volume-key-file`: the whole file (`-`: stdin), which must hold `len` bytes.
pub fn read_volume_key(path: &Path, len: usize) -> Result<VolumeKey> {
    let src = KeySource {
        key_file: Some(path.to_owned()),
        offset: 0,
        size: None,
    };
    headers::volume_key(&src.read("")?, len, path)
}
