//! `luksfuse`: parse the command line (or a mount helper's), set up logging, run the
//! command, exit with the error's exit code.
//!
//! `cli` holds the clap definitions, `helper` the mount helper's argv translation, `cmd` one
//! module per command, `tty` everything that talks to the user (prompts, confirmations,
//! progress); the library below never does.

mod cli;
mod cmd;
mod helper;
mod tty;

use clap::Parser;
use cli::{Cli, Command};
use luksfuse::error::{Reason, Result};

fn main() {
    // Nobody but root may read our memory (keys) or get a core dump of it.
    if let Err(e) = luksfuse::process::set_non_dumpable() {
        eprintln!("luksfuse: warning: cannot make the process non-dumpable: {e}");
    }
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.first().is_some_and(|a| helper::called_as_helper(a)) || called_by_mount_fuse(&args) {
        match helper::translate(&args[1..]) {
            Ok(mut rest) => {
                rest.insert(0, "luksfuse".into());
                args = rest;
            }
            Err(e) => {
                eprintln!("mount.fuse.luksfuse: {e}");
                std::process::exit(1);
            }
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // clap exits 2 on usage errors, which means "wrong passphrase" here: use 1.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let level = if cli.debug {
        log::LevelFilter::Debug
    } else if cli.verbose {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    };
    let _ = luksfuse::process::init_logging(level);
    let code = match run(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("luksfuse: {}", e.display_with(cli::flag));
            if let Some(h) = hint(&e) {
                eprintln!("hint: {h}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// The error's hint; for something refused unless a setting is on, first the option that
/// turns it on.
fn hint(e: &luksfuse::Error) -> Option<String> {
    match (e.reason(), e.hint()) {
        (Reason::NeedsSetting(s), Some(h)) => {
            Some(format!("allow it with {}, or {h}", cli::flag(s)))
        }
        (Reason::NeedsSetting(s), None) => Some(format!("allow it with {}", cli::flag(s))),
        (_, h) => h.map(str::to_owned),
    }
}

/// `mount -t fuse.luksfuse` (through fuse3's mount.fuse) runs `luksfuse SOURCE MOUNTPOINT -o
/// OPTIONS`, as for sshfs: a first argument that is no command, followed by `-o`.
fn called_by_mount_fuse(args: &[std::ffi::OsString]) -> bool {
    use clap::CommandFactory;
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return false;
    };
    let is_command = Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first));
    !first.starts_with('-')
        && !is_command
        && first != "help"
        && args[2..]
            .iter()
            .any(|a| a.to_str().is_some_and(|a| a.starts_with("-o")))
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Dump(a) => cmd::dump::run(&a),
        Command::Status(a) => cmd::status::run(&a),
        Command::GenerateAssets(a) => cmd::assets::run(&a.dir),
        Command::TestKey(a) => cmd::test_key::run(&a.key, &a.header),
        Command::Mount(a) => cmd::mount::run(a),
        Command::Umount(a) => cmd::umount::run(&a),
        Command::Format(a) => cmd::format::run(&a),
        Command::AddKey(a) => cmd::keys::add_key(&a),
        Command::RemoveKey(a) => cmd::keys::remove_key(&a),
        Command::ChangeKey(a) => cmd::keys::change_key(&a),
        Command::KillSlot(a) => cmd::keys::kill_slot(&a),
        Command::HeaderBackup(a) => luksfuse::headers::header_backup(&a.header, &a.backup),
        Command::HeaderRestore(a) => cmd::keys::header_restore(&a),
        Command::Encrypt(a) => cmd::reencrypt::encrypt(&a),
        Command::Decrypt(a) => cmd::reencrypt::decrypt(&a),
    }
}
