//! `luksfuse test-key`: exit 0 if the key opens a keyslot.

use super::{open_header, unlock};
use crate::cli::KeyOpts;
use luksfuse::error::Result;
use std::path::Path;

pub fn run(key: &KeyOpts, path: &Path) -> Result<()> {
    let (file, header) = open_header(path)?;
    unlock(path, &file, &header, key).map(|_| ())
}
