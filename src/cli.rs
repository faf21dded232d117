//! The command line: clap definitions only (also the source of `--help`, and later of the man
//! page and completions). Option names follow cryptsetup's where it has one.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES_HELP: &str = "\
Exit codes (as cryptsetup):
  0  success
  1  wrong parameters or usage
  2  no key available with this passphrase (or key file)
  3  out of memory (or a KDF memory cost over the limit)
  4  wrong, damaged or unsupported header or payload file; I/O error
  5  device busy: file locked by another process, mountpoint in use";

#[derive(Parser, Debug)]
#[command(
    name = "luksfuse",
    version,
    about = "Use a LUKS1/LUKS2 volume with a detached header as a plaintext file, without root",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Show more detail about what is done.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Show debug messages (never secrets).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How to get the passphrase: cryptsetup's key options.
#[derive(Args, Debug, Clone, Default)]
pub struct KeyOpts {
    /// Read the key from FILE (the whole file, binary allowed); `-` reads all of stdin.
    /// Without it: prompt on a terminal, else read one line from stdin.
    #[arg(short = 'd', long = "key-file", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Skip N bytes of the key file.
    #[arg(long = "keyfile-offset", value_name = "N", default_value_t = 0)]
    pub keyfile_offset: u64,
    /// Read exactly N bytes of the key file.
    #[arg(short = 'l', long = "keyfile-size", value_name = "N")]
    pub keyfile_size: Option<u64>,
    /// Try only keyslot N.
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the header's contents, like `cryptsetup luksDump` (never secrets, unless
    /// --dump-volume-key is given).
    #[command(
        after_help = "Examples:\n  luksfuse dump header.img\n  luksfuse dump --json header.img\n  luksfuse dump --dump-volume-key -d keyfile header.img"
    )]
    Dump {
        /// Print the header as JSON.
        #[arg(long, conflicts_with = "dump_volume_key")]
        json: bool,
        /// Unlock and print the volume key in hex (sensitive!).
        #[arg(long = "dump-volume-key", alias = "dump-master-key")]
        dump_volume_key: bool,
        /// Do not ask for confirmation.
        #[arg(short = 'q', long = "batch-mode")]
        batch_mode: bool,
        #[command(flatten)]
        key: KeyOpts,
        /// The LUKS header file (detached header, or a whole LUKS image).
        header: PathBuf,
    },
    /// List luksfuse mounts (header, payloads, format, cipher, sector size, mode, daemon pid),
    /// or show one; needs no key.
    #[command(
        after_help = "Examples:\n  luksfuse status\n  luksfuse status /mnt/x\n  luksfuse status --json"
    )]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show only this mount (exit 4 if it is not a luksfuse mount).
        mountpoint: Option<PathBuf>,
    },
    /// Check that a passphrase or key file opens a keyslot (exit 0), like
    /// `cryptsetup open --test-passphrase`.
    #[command(
        name = "test-key",
        alias = "test-passphrase",
        after_help = "Examples:\n  luksfuse test-key header.img            # asks for the passphrase\n  \
        luksfuse test-key -d keyfile -S 1 header.img && echo 'slot 1 opens'"
    )]
    TestKey {
        #[command(flatten)]
        key: KeyOpts,
        /// The LUKS header file.
        header: PathBuf,
    },
    /// Unlock HEADER and serve each decrypted PAYLOAD as a file in MOUNTPOINT.
    #[command(
        after_help = "Examples:\n  luksfuse mount header.img payload.raw /mnt/x\n  \
        losetup -f --show /mnt/x/payload\n  fusermount3 -u /mnt/x\n  \
        luksfuse mount -r -d keyfile header.img disk.qcow2 /mnt/x\n  \
        luksfuse mount header.img vm1.qcow2 vm2.qcow2 /mnt/x   # one header, two payloads\n\n\
        In /etc/fstab (options: header=, key-file=, keyfile-offset=, keyfile-size=, key-slot=,\n\
        name=, payload-format=, allow-backing, ro; others go to FUSE):\n  \
        /srv/vm/disk.qcow2 /mnt/x fuse.luksfuse header=/keys/h.img,key-file=/keys/k,ro,nofail 0 0",
        override_usage = "luksfuse mount [OPTIONS] <HEADER> <PAYLOAD>... <MOUNTPOINT>"
    )]
    Mount {
        #[command(flatten)]
        key: KeyOpts,
        /// Open the payload read-only; writes fail with EROFS.
        #[arg(short = 'r', long)]
        readonly: bool,
        /// Stay in the foreground and log to stderr (default: daemonize once mounted).
        #[arg(short = 'f', long)]
        foreground: bool,
        /// FUSE mount options, comma separated (e.g. allow_other); may be repeated.
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// Name of the file in the mountpoint (default: the payload's name without extension).
        #[arg(long)]
        name: Option<String>,
        /// The payload's format (default: detected, qcow2 by its magic, else raw).
        #[arg(long = "payload-format", value_name = "raw|qcow2", value_parser = ["raw", "qcow2"])]
        payload_format: Option<String>,
        /// Let a qcow2 payload read its backing files (read-only; off by default because an
        /// image can name any file on the host).
        #[arg(long = "allow-backing")]
        allow_backing: bool,
        /// The LUKS header file.
        header: PathBuf,
        /// PAYLOAD... MOUNTPOINT: one or more encrypted payloads (raw files or block devices,
        /// or qcow2 images) sharing the header's volume key, each served as its own file,
        /// then an existing empty directory.
        #[arg(value_name = "PAYLOAD|MOUNTPOINT", num_args = 2.., required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write the man pages and shell completions into DIR (used by `make install`).
    #[command(name = "generate-assets", hide = true)]
    GenerateAssets {
        /// Output directory; `man/` and `completions/` are created in it.
        dir: PathBuf,
    },
}
