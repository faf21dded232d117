//! `luksfuse generate-assets DIR`: man pages (one per command, from the clap definitions)
//! and shell completions, for `make install`.

use crate::cli::Cli;
use clap::CommandFactory;
use luksfuse::error::{Error, Result};
use std::path::Path;

pub fn run(dir: &Path) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::io(p, "cannot write", &e);
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).map_err(|e| io(&man, e))?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "luksfuse", &comp)
            .map_err(|e| io(&comp, e))?;
    }
    Ok(())
}
