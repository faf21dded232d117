//! `luksfuse`: parse the command line, set up logging, run, exit with the error's exit code.

mod cli;
mod helper;

use clap::Parser;
use cli::{Cli, Command, KdfOpts, KeyFileOpts, KeyOpts, NewKeyOpts};
use luksfuse::error::{Error, Result};
use luksfuse::headers;
use luksfuse::image::Format;
use luksfuse::luks::format::{FormatOptions, KdfOptions};
use luksfuse::luks::{hex_lines, Header, HeaderFile, Unlocked};
use luksfuse::mount::{self, MountConfig};
use luksfuse::passphrase::KeySource;
use std::io::Write;
use std::path::Path;

fn main() {
    // Nobody but root may read our memory (keys) or get a core dump of it.
    if let Err(e) = luksfuse::sys::set_non_dumpable() {
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
    let _ = log::set_boxed_logger(Box::new(luksfuse::syslog::Logger { level }));
    log::set_max_level(level);
    let code = match run(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("luksfuse: {e}");
            if let Some(h) = e.hint() {
                eprintln!("hint: {h}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
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

fn key_source(k: &KeyOpts) -> KeySource {
    key_file_source(&k.file)
}

fn key_file_source(k: &KeyFileOpts) -> KeySource {
    KeySource {
        key_file: k.key_file.clone(),
        offset: k.keyfile_offset,
        size: k.keyfile_size,
    }
}

fn new_key_source(k: &NewKeyOpts) -> KeySource {
    KeySource {
        key_file: k.new_key_file.clone(),
        offset: k.new_keyfile_offset,
        size: k.new_keyfile_size,
    }
}

fn kdf_options(k: KdfOpts) -> KdfOptions {
    KdfOptions {
        pbkdf: k.pbkdf,
        hash: k.hash,
        iter_time: k.iter_time,
        memory: k.pbkdf_memory,
        parallel: k.pbkdf_parallel,
        force_iterations: k.pbkdf_force_iterations,
    }
}

fn open_header(path: &Path) -> Result<(HeaderFile, Header)> {
    let file = HeaderFile::open(path)?;
    let header = Header::parse(&file).map_err(|e| e.in_file(path))?;
    Ok((file, header))
}

fn unlock(path: &Path, file: &HeaderFile, header: &Header, k: &KeyOpts) -> Result<Unlocked> {
    if let Some(s) = k.key_slot {
        if !header.slot_active(s) {
            return Err(Error::no_key(format!("Keyslot {s} is not active.")).in_file(path));
        }
    }
    let pass = key_source(k).read(&path.display().to_string())?;
    let u = header.unlock(file, pass.as_bytes(), k.key_slot)?;
    log::info!("key slot {} unlocked", u.slot);
    Ok(u)
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Dump {
            json,
            dump_volume_key,
            batch_mode,
            key,
            header: path,
        } => {
            let (file, header) = open_header(&path)?;
            if dump_volume_key {
                return dump_volume_key_cmd(&path, &file, &header, &key, batch_mode);
            }
            let mut out = std::io::stdout().lock();
            let text = if json {
                serde_json::to_string_pretty(&header.dump_json()).expect("JSON value") + "\n"
            } else {
                header.dump()
            };
            let _ = out.write_all(text.as_bytes());
            Ok(())
        }
        Command::Status { json, mountpoint } => status_cmd(json, mountpoint.as_deref()),
        Command::GenerateAssets { dir } => generate_assets(&dir),
        Command::TestKey { key, header: path } => {
            let (file, header) = open_header(&path)?;
            unlock(&path, &file, &header, &key).map(|_| ())
        }
        Command::Mount {
            key,
            readonly,
            foreground,
            options,
            name,
            payload_format,
            allow_backing,
            header: path,
            mut paths,
        } => {
            let mountpoint = paths.pop().expect("clap requires two paths or more");
            let payloads = paths;
            let mut fuse_options: Vec<String> = options
                .iter()
                .flat_map(|o| o.split(','))
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
            // `-o ro` / `-o rw` mean what --readonly means (as for mount(8) and fstab).
            let readonly = readonly || fuse_options.iter().any(|o| o == "ro");
            fuse_options.retain(|o| o != "ro" && o != "rw");
            let (file, header) = open_header(&path)?;
            let unlocked = unlock(&path, &file, &header, &key)?;
            let cfg = MountConfig {
                header: path,
                payloads,
                mountpoint,
                name,
                readonly,
                foreground,
                fuse_options,
                payload_format: payload_format.map(|f| match f.as_str() {
                    "qcow2" => Format::Qcow2,
                    _ => Format::Raw,
                }),
                allow_backing,
            };
            mount::run(&cfg, unlocked.key, header.segment())
        }
        Command::Format {
            kind,
            cipher,
            key_size,
            kdf,
            sector_size,
            offset,
            uuid,
            label,
            volume_key_file,
            batch_mode,
            force,
            key,
            header,
        } => headers::format(&headers::Format {
            header,
            options: FormatOptions {
                version: if kind == "luks1" { 1 } else { 2 },
                cipher,
                key_bits: key_size,
                kdf: kdf_options(kdf),
                sector_size,
                offset_sectors: offset,
                uuid,
                label,
            },
            key: key_file_source(&key),
            volume_key_file,
            batch_mode,
            force,
        }),
        Command::AddKey {
            key,
            key_slot,
            new_key,
            kdf,
            volume_key_file,
            header,
        } => headers::add_key(&headers::AddKey {
            header,
            key: key_file_source(&key),
            new_key: new_key_source(&new_key),
            slot: key_slot,
            kdf: kdf_options(kdf),
            volume_key_file,
        }),
        Command::RemoveKey {
            key,
            batch_mode,
            force,
            header,
        } => headers::remove_key(&headers::RemoveKey {
            header,
            key: key_source(&key),
            slot: key.key_slot,
            confirmed: batch_mode || force,
        }),
        Command::ChangeKey {
            key,
            new_key,
            kdf,
            header,
        } => headers::change_key(&headers::ChangeKey {
            header,
            key: key_source(&key),
            new_key: new_key_source(&new_key),
            slot: key.key_slot,
            kdf: kdf_options(kdf),
        }),
        Command::KillSlot {
            key,
            batch_mode,
            force,
            slot,
            header,
        } => headers::kill_slot(&headers::KillSlot {
            header,
            slot,
            key: key_file_source(&key),
            confirmed: batch_mode || force,
        }),
    }
}

fn dump_volume_key_cmd(
    path: &Path,
    file: &HeaderFile,
    header: &Header,
    key: &KeyOpts,
    batch_mode: bool,
) -> Result<()> {
    eprintln!(
        "\nWARNING!\n========\nThe header dump with volume key is sensitive information\n\
         that allows access to encrypted partition without a passphrase.\n\
         This dump should be stored encrypted in a safe place.\n"
    );
    if !batch_mode && luksfuse::sys::is_terminal(&std::io::stdin()) {
        eprint!("Are you sure? (Type 'yes' in capital letters): ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim_end() != "YES" {
            return Err(Error::usage("Operation aborted."));
        }
    }
    let u = unlock(path, file, header, key)?;
    let seg = header.segment();
    let cipher = seg.cipher.as_str();
    let (name, mode) = cipher.split_once('-').unwrap_or((cipher, ""));
    let mut out = std::io::stdout().lock();
    let text = format!(
        "LUKS header information for {}\nCipher name:   \t{name}\nCipher mode:   \t{mode}\n\
         Payload offset:\t{}\nUUID:          \t{}\nMK bits:       \t{}\nMK dump:\t{}\n",
        path.display(),
        seg.offset.sectors512_floor(),
        header.uuid(),
        u.key.len() * 8,
        hex_lines(u.key.as_bytes(), "\t\t"),
    );
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

fn status_cmd(json: bool, only: Option<&Path>) -> Result<()> {
    let mut mounts = luksfuse::status::list(&luksfuse::status::dir());
    if let Some(m) = only {
        let want = m.canonicalize().unwrap_or(m.to_path_buf());
        mounts.retain(|s| s.mountpoint == want);
        if mounts.is_empty() {
            return Err(Error::format("not a luksfuse mount").in_file(m));
        }
    }
    let mut out = std::io::stdout().lock();
    let text = if json {
        serde_json::to_string_pretty(&mounts).expect("JSON") + "\n"
    } else {
        let mut t = String::new();
        for s in &mounts {
            t += &format!("{}\n", s.mountpoint.display());
            t += &format!("  header:   {}\n", s.header.display());
            for p in &s.payloads {
                t += &format!(
                    "  payload:  {} ({}) -> {} ({} bytes)\n",
                    p.path.display(),
                    p.format,
                    p.file,
                    p.size
                );
            }
            t += &format!("  cipher:   {}, {}-byte sectors\n", s.cipher, s.sector_size);
            t += &format!(
                "  mode:     {}\n",
                if s.readonly {
                    "read-only"
                } else {
                    "read-write"
                }
            );
            t += &format!("  pid:      {}\n", s.pid);
        }
        if mounts.is_empty() {
            t += "no luksfuse mounts\n";
        }
        t
    };
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

/// Man pages (one per command, from the clap definitions) and shell completions.
fn generate_assets(dir: &Path) -> Result<()> {
    use clap::CommandFactory;
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
