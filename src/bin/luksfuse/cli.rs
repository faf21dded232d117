//! The command line: clap definitions only (also the source of `--help`, and later of the man
//! page and completions). Option names follow cryptsetup's where it has one.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use luksfuse::crypto::hash::HashAlg;
use luksfuse::error::Setting;
use std::path::PathBuf;

/// The exit code table of `--help` and the man page, from [`luksfuse::error::EXIT_CODES`].
pub fn exit_codes_help() -> String {
    let table = luksfuse::error::exit_code_table();
    format!("Exit codes (as cryptsetup):\n{}", table.trim_end())
}

/// The option that sets a library [`Setting`], for error messages (`--iter-time must be …`).
pub fn flag(setting: Setting) -> String {
    match setting {
        Setting::FileName => "--name",
        Setting::AllowBacking => "--allow-backing",
        Setting::IterTime => "--iter-time",
        Setting::PbkdfParallel => "--pbkdf-parallel",
        Setting::PbkdfMemory => "--pbkdf-memory",
        // A setting added to the library later: its own words until it gets a flag here.
        other => other.describe(),
    }
    .to_owned()
}

/// `format --type`: the LUKS version.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuksType {
    Luks2,
    Luks1,
}

impl LuksType {
    /// The version number the library takes.
    pub fn version(self) -> u16 {
        match self {
            LuksType::Luks1 => 1,
            LuksType::Luks2 => 2,
        }
    }
}

/// `--pbkdf`: the KDF of a new keyslot.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf {
    Argon2id,
    Argon2i,
    Pbkdf2,
}

/// `-h/--hash`: one of the hashes the library implements ([`HashAlg::ALL`], by their
/// cryptsetup names; any case, as cryptsetup), so a hash added there is an option here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hash(pub HashAlg);

impl ValueEnum for Hash {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::OnceLock<Vec<Hash>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| HashAlg::ALL.into_iter().map(Hash).collect())
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()))
    }
}

/// `mount --payload-format`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Raw,
    Qcow2,
}

/// The cryptsetup name of a value (the library takes names), as clap spells it.
pub fn value_name(v: &impl ValueEnum) -> String {
    v.to_possible_value()
        .expect("no skipped variants")
        .get_name()
        .to_owned()
}

#[derive(Parser, Debug)]
#[command(
    name = "luksfuse",
    version,
    about = "Use a LUKS1/LUKS2 volume with a detached header as a plaintext file, without root",
    after_help = exit_codes_help(),
    // `-h` is cryptsetup's --hash; help is `--help` only.
    disable_help_flag = true
)]
pub struct Cli {
    /// Print help.
    #[arg(long, global = true, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Show more detail about what is done.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Show debug messages (never secrets).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How to get the passphrase: cryptsetup's key file options.
#[derive(Args, Debug, Clone, Default)]
pub struct KeyFileOpts {
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
}

/// Key file options and the keyslot to try.
#[derive(Args, Debug, Clone, Default)]
pub struct KeyOpts {
    #[command(flatten)]
    pub file: KeyFileOpts,
    /// Try only keyslot N.
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
}

/// Where a new key comes from (`add-key`, `change-key`).
#[derive(Args, Debug, Clone, Default)]
pub struct NewKeyOpts {
    /// Read the new key from FILE (the whole file); without it: prompt twice on a terminal,
    /// else read one line from stdin.
    #[arg(long = "new-key-file", value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    /// Skip N bytes of the new key file.
    #[arg(long = "new-keyfile-offset", value_name = "N", default_value_t = 0)]
    pub new_keyfile_offset: u64,
    /// Read exactly N bytes of the new key file.
    #[arg(long = "new-keyfile-size", value_name = "N")]
    pub new_keyfile_size: Option<u64>,
}

/// The KDF of a new keyslot (cryptsetup's options; default: argon2id for 2 s, 1 GiB at most,
/// min(4, CPUs) threads; LUKS1: pbkdf2 with the header's hash).
#[derive(Args, Debug, Clone, Default)]
pub struct KdfOpts {
    /// PBKDF: argon2id, argon2i or pbkdf2.
    #[arg(long = "pbkdf", value_name = "argon2id|argon2i|pbkdf2")]
    pub pbkdf: Option<Pbkdf>,
    /// Hash of PBKDF2 (and, for format, of the header and the AF splitter). Default sha256.
    /// LUKS1 takes only hashes of 20 bytes or more (not md5 or blake2s-128), as cryptsetup.
    #[arg(short = 'h', long = "hash", value_name = "HASH", ignore_case = true)]
    pub hash: Option<Hash>,
    /// Time to spend on the key derivation, in milliseconds (default 2000).
    #[arg(short = 'i', long = "iter-time", value_name = "MS")]
    pub iter_time: Option<u32>,
    /// Argon2 memory cost in KiB (default 1048576, at most half the RAM).
    #[arg(long = "pbkdf-memory", value_name = "KiB")]
    pub pbkdf_memory: Option<u32>,
    /// Argon2 threads (default min(4, CPUs)).
    #[arg(long = "pbkdf-parallel", value_name = "N")]
    pub pbkdf_parallel: Option<u32>,
    /// Skip the benchmark: PBKDF2 iterations (>= 1000) or Argon2 time cost (>= 4).
    #[arg(long = "pbkdf-force-iterations", value_name = "N")]
    pub pbkdf_force_iterations: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the header's contents, like `cryptsetup luksDump` (never secrets, unless
    /// --dump-volume-key is given).
    #[command(
        after_help = "Examples:\n  luksfuse dump header.img\n  luksfuse dump --json header.img\n  luksfuse dump --dump-volume-key -d keyfile header.img"
    )]
    Dump(DumpArgs),
    /// List luksfuse mounts (header, payloads, format, cipher, sector size, mode, discards,
    /// bytes read and written, daemon pid), or show one; needs no key.
    #[command(
        after_help = "Examples:\n  luksfuse status\n  luksfuse status /mnt/x\n  luksfuse status --json\n\n\
        --json prints an array with one object per mount (fields are only ever added):\n  \
        pid, mountpoint, header, cipher, sector_size (bytes), readonly (bool),\n  \
        payloads: [{path, file (name in the mountpoint), format (raw|qcow2), size (bytes),\n  \
        partitions: [{file, offset, size}] (with --partitions only)}],\n  \
        discards (bool: fallocate discards and write-zeroes reach the payload),\n  \
        bytes_read, bytes_written, bytes_discarded (since the mount started; brought up to\n  \
        date by the daemon once a second while they change)."
    )]
    Status(StatusArgs),
    /// Check that a passphrase or key file opens a keyslot (exit 0), like
    /// `cryptsetup open --test-passphrase`.
    #[command(
        name = "test-key",
        alias = "test-passphrase",
        after_help = "Examples:\n  luksfuse test-key header.img            # asks for the passphrase\n  \
        luksfuse test-key -d keyfile -S 1 header.img && echo 'slot 1 opens'"
    )]
    TestKey(TestKeyArgs),
    /// Unlock HEADER and serve each decrypted PAYLOAD as a file in MOUNTPOINT.
    #[command(
        after_help = "Examples:\n  luksfuse mount header.img payload.raw /mnt/x\n  \
        losetup -f --show /mnt/x/payload\n  luksfuse umount /mnt/x\n  \
        luksfuse mount -r -d keyfile header.img disk.qcow2 /mnt/x\n  \
        luksfuse mount header.img vm1.qcow2 vm2.qcow2 /mnt/x   # one header, two payloads\n\n\
        In /etc/fstab (options: header=, key-file=, keyfile-offset=, keyfile-size=, key-slot=,\n\
        name=, payload-format=, allow-backing, discard, ro; others go to FUSE):\n  \
        /srv/vm/disk.qcow2 /mnt/x fuse.luksfuse header=/keys/h.img,key-file=/keys/k,ro,nofail 0 0",
        override_usage = "luksfuse mount [OPTIONS] <HEADER> <PAYLOAD>... <MOUNTPOINT>"
    )]
    Mount(MountArgs),
    /// Unmount MOUNTPOINT and wait for its daemon to sync and exit, like `cryptsetup close`.
    ///
    /// Returns (exit 0) only once the daemon serving the mount has flushed, fdatasynced the
    /// payloads, released its locks and exited, so QEMU or a new mount can open the payload
    /// at once.
    #[command(
        alias = "close",
        after_help = "Exit 4 if MOUNTPOINT is not a luksfuse mount. Exit 5 if it is in use (the processes,\n\
        mounts and loop devices holding it are named) or its daemon is still running after\n\
        --timeout. A stale mount (its daemon killed) is cleared without waiting.\n\n\
        Examples:\n  luksfuse umount /mnt/x && qemu-img check payload.qcow2\n  \
        luksfuse umount -l --timeout 120 /mnt/x"
    )]
    Umount(UmountArgs),
    /// Write the man pages and shell completions into DIR (used by `make install`).
    #[command(name = "generate-assets", hide = true)]
    GenerateAssets(GenerateAssetsArgs),
    /// Create a new detached header file, like `cryptsetup luksFormat --header`.
    #[command(after_help = "Examples:\n  luksfuse format header.img\n  \
        luksfuse format --type luks1 -d keyfile header.img\n  \
        luksfuse format --pbkdf pbkdf2 -i 1000 --sector-size 4096 header.img")]
    Format(FormatArgs),
    /// Add a key to a free keyslot, like `cryptsetup luksAddKey`.
    #[command(
        name = "add-key",
        after_help = "Examples:\n  luksfuse add-key header.img\n  \
        luksfuse add-key -d old.key --new-key-file new.key header.img"
    )]
    AddKey(AddKeyArgs),
    /// Remove the keyslot the given key opens, like `cryptsetup luksRemoveKey`.
    #[command(name = "remove-key")]
    RemoveKey(RemoveKeyArgs),
    /// Replace a key by a new one in the same keyslot, like `cryptsetup luksChangeKey`.
    #[command(name = "change-key")]
    ChangeKey(ChangeKeyArgs),
    /// Remove keyslot N, like `cryptsetup luksKillSlot`; needs a key of another keyslot or -q.
    #[command(name = "kill-slot")]
    KillSlot(KillSlotArgs),
    /// Save the header (and its keyslot areas) to a new file, like `cryptsetup
    /// luksHeaderBackup`.
    #[command(name = "header-backup")]
    HeaderBackup(HeaderBackupArgs),
    /// Write a header backup over the header, like `cryptsetup luksHeaderRestore`.
    #[command(name = "header-restore")]
    HeaderRestore(HeaderRestoreArgs),
    /// Encrypt PAYLOAD in place under a new detached header, like `cryptsetup reencrypt
    /// --encrypt --header`; resumable after any interruption.
    #[command(
        after_help = "The payload keeps its size: the data stays at offset 0 and the header goes to its own\n\
        file. Progress is recorded in the header as cryptsetup records it, so an interrupted run\n\
        (Ctrl-C, kill, power cut) is finished by running the same command again, or by\n\
        `cryptsetup reencrypt --resume-only --header HEADER PAYLOAD` (raw payloads). A header in\n\
        that state is refused by mount.\n\n\
        Examples:\n  luksfuse encrypt --header disk.hdr disk.raw\n  \
        luksfuse encrypt --type luks1 -d keyfile --header vm.hdr vm.qcow2   # for QEMU's luks driver\n  \
        luksfuse encrypt --resume --header disk.hdr disk.raw"
    )]
    Encrypt(EncryptArgs),
    /// Decrypt PAYLOAD in place, like `cryptsetup reencrypt --decrypt --header`; resumable.
    #[command(
        after_help = "The header is useless afterwards (it holds no keyslot), but keep it until the run has\n\
        finished: it records the progress.\n\n\
        Examples:\n  luksfuse decrypt --header disk.hdr disk.raw\n  \
        luksfuse decrypt -d keyfile --header vm.hdr vm.qcow2"
    )]
    Decrypt(DecryptArgs),
}

/// `--resilience`: how a hotzone is protected while it is rewritten (cryptsetup's modes).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResilienceMode {
    /// A checksum of each block of the old bytes (cryptsetup's default).
    Checksum,
    /// A copy of the old bytes in the header.
    Journal,
    /// Nothing: only an interruption by a signal (Ctrl-C, SIGTERM) can be resumed.
    None,
}

/// What `encrypt` and `decrypt` share (cryptsetup reencrypt's option names).
#[derive(Args, Debug, Clone)]
pub struct ReencryptOpts {
    /// The detached header: created by encrypt (or the run in progress in it resumed), read
    /// by decrypt.
    #[arg(long, value_name = "HEADER")]
    pub header: PathBuf,
    /// Only resume a run in progress; fail if there is none.
    #[arg(long, alias = "resume-only")]
    pub resume: bool,
    /// How hotzones are protected while they are rewritten.
    #[arg(long, value_name = "checksum|journal|none", default_value = "checksum")]
    pub resilience: ResilienceMode,
    /// Hash of the checksum resilience.
    #[arg(
        long = "resilience-hash",
        value_name = "HASH",
        default_value = "sha256",
        ignore_case = true
    )]
    pub resilience_hash: Hash,
    /// Bytes rewritten per step (units K, M, G; default 64M, at most what the resilience area
    /// can protect).
    #[arg(long = "hotzone-size", value_name = "SIZE", value_parser = parse_size)]
    pub hotzone_size: Option<u64>,
    /// Leave unallocated qcow2 clusters unallocated. They then read as noise after encryption
    /// (as zeros again after decryption): only for space nothing reads before writing it,
    /// such as a file system's free space after fstrim.
    #[arg(long = "keep-unallocated")]
    pub keep_unallocated: bool,
    /// Payload format (default: qcow2 if the file says so, else raw).
    #[arg(long = "payload-format", value_name = "raw|qcow2")]
    pub payload_format: Option<PayloadFormat>,
    /// Do not ask for confirmation.
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// The payload: a file, a block device or a qcow2 image (its guest data).
    pub payload: PathBuf,
}

/// The arguments of `encrypt`.
#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// LUKS version of the header when done: luks2 (default) or luks1 (the one QEMU reads;
    /// the run itself records its progress in LUKS2 form).
    #[arg(long = "type", value_name = "luks2|luks1", default_value = "luks2")]
    pub kind: LuksType,
    #[command(flatten)]
    pub new: NewVolumeOpts,
    #[command(flatten)]
    pub key: KeyFileOpts,
    #[command(flatten)]
    pub run: ReencryptOpts,
}

/// The arguments of `decrypt`.
#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub key: KeyOpts,
    #[command(flatten)]
    pub run: ReencryptOpts,
}

/// A size in bytes with an optional unit (K, M, G, T: powers of 1024; `KiB`, `MB`, … read the
/// same way, as cryptsetup's size options).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size"))?;
    let unit = unit.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        _ => return Err(format!("'{s}': unknown unit (K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// The arguments of `header-backup`.
#[derive(Args, Debug)]
pub struct HeaderBackupArgs {
    /// The file to create (it must not exist).
    #[arg(long = "header-backup-file", value_name = "FILE")]
    pub backup: PathBuf,
    /// The LUKS header file, or an image holding its header.
    pub header: PathBuf,
}

/// The arguments of `header-restore`.
#[derive(Args, Debug)]
pub struct HeaderRestoreArgs {
    /// The backup to restore.
    #[arg(long = "header-backup-file", value_name = "FILE")]
    pub backup: PathBuf,
    /// Do not ask for confirmation when the backup belongs to another volume (UUID).
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// The LUKS header file, or an image holding its header.
    pub header: PathBuf,
}

/// The arguments of `dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Print the header as JSON.
    #[arg(long, conflicts_with = "dump_volume_key")]
    pub json: bool,
    /// Unlock and print the volume key in hex (sensitive!).
    #[arg(long = "dump-volume-key", alias = "dump-master-key")]
    pub dump_volume_key: bool,
    /// With -S N: unlock the unbound keyslot N and print its key in hex (sensitive!).
    #[arg(long, conflicts_with_all = ["json", "dump_volume_key"])]
    pub unbound: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    #[command(flatten)]
    pub key: KeyOpts,
    /// The LUKS header file (detached header, or a whole LUKS image).
    pub header: PathBuf,
}

/// The arguments of `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show only this mount (exit 4 if it is not a luksfuse mount).
    pub mountpoint: Option<PathBuf>,
}

/// The arguments of `umount`.
#[derive(Args, Debug)]
pub struct UmountArgs {
    /// Detach lazily even while in use (as `umount -l`); the daemon exits, and the wait ends,
    /// when the last user closes it.
    #[arg(short = 'l', long)]
    pub lazy: bool,
    /// Seconds to wait for the daemon to exit after unmounting (exit 5 after that).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    /// The mountpoint of a luksfuse mount.
    pub mountpoint: PathBuf,
}

/// The arguments of `test-key`.
#[derive(Args, Debug)]
pub struct TestKeyArgs {
    #[command(flatten)]
    pub key: KeyOpts,
    /// The LUKS header file.
    pub header: PathBuf,
}

/// The arguments of `mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    #[command(flatten)]
    pub key: KeyOpts,
    /// Open the payload read-only; writes fail with EROFS.
    #[arg(short = 'r', long)]
    pub readonly: bool,
    /// Stay in the foreground and log to stderr (default: daemonize once mounted).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// FUSE mount options, comma separated (e.g. allow_other); may be repeated.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Name of the file in the mountpoint (default: the payload's name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// The payload's format (default: detected, qcow2 by its magic, else raw).
    #[arg(long = "payload-format", value_name = "raw|qcow2")]
    pub payload_format: Option<PayloadFormat>,
    /// Let a qcow2 payload read its backing files (read-only; off by default because an
    /// image can name any file on the host).
    #[arg(long = "allow-backing")]
    pub allow_backing: bool,
    /// Also serve each partition of the decrypted disk's GPT or MBR as NAME-p1, NAME-p2, …
    /// (numbered as the table numbers them); a disk without a table is served whole only.
    #[arg(long)]
    pub partitions: bool,
    /// Pass discards (fstrim, blkdiscard through a loop device: fallocate PUNCH_HOLE) and
    /// write-zeroes (ZERO_RANGE) to the payload, as cryptsetup's --allow-discards: a raw
    /// payload's whole encryption sectors become holes, a qcow2 payload's whole clusters are
    /// freed. Also `-o discard`; on by itself when a LUKS2 header carries the persistent
    /// allow-discards flag. Reveals which blocks are free (see the README's security notes).
    #[arg(long = "allow-discards")]
    pub allow_discards: bool,
    /// The LUKS header file; with only a MOUNTPOINT after it, an image holding its own
    /// header: a LUKS image (`cryptsetup luksFormat disk.img`, `qemu-img create -f luks`) or a
    /// qcow2 image with QEMU's own LUKS encryption (encrypt.format=luks).
    #[arg(value_name = "HEADER|IMAGE")]
    pub header: PathBuf,
    /// [PAYLOAD...] MOUNTPOINT: the encrypted payloads (raw files or block devices, or qcow2
    /// images) sharing the header's volume key, each served as its own file, then an
    /// existing empty directory. No payload: the header's own file is the payload.
    #[arg(value_name = "PAYLOAD|MOUNTPOINT", num_args = 1.., required = true)]
    pub paths: Vec<PathBuf>,
}

/// The arguments of `generate-assets`.
#[derive(Args, Debug)]
pub struct GenerateAssetsArgs {
    /// Output directory; `man/` and `completions/` are created in it.
    pub dir: PathBuf,
}

/// What a new header is made of (`format`, `encrypt`): cryptsetup's format options.
#[derive(Args, Debug, Clone)]
pub struct NewVolumeOpts {
    /// Cipher of the payload.
    #[arg(short = 'c', long, default_value = "aes-xts-plain64")]
    pub cipher: String,
    /// Volume key size in bits (default 512 for XTS, else 256).
    #[arg(short = 's', long = "key-size", value_name = "BITS")]
    pub key_size: Option<u32>,
    #[command(flatten)]
    pub kdf: KdfOpts,
    /// Encryption sector size in bytes: 512, 1024, 2048 or 4096 (LUKS1: 512 only).
    #[arg(long = "sector-size", value_name = "N", default_value_t = 512)]
    pub sector_size: u32,
    /// UUID of the new header (default: random).
    #[arg(long)]
    pub uuid: Option<String>,
    /// Label (LUKS2 only).
    #[arg(long)]
    pub label: Option<String>,
}

/// The arguments of `format`.
#[derive(Args, Debug)]
pub struct FormatArgs {
    /// LUKS version: luks2 (default) or luks1 (the one QEMU reads).
    #[arg(long = "type", value_name = "luks2|luks1", default_value = "luks2")]
    pub kind: LuksType,
    #[command(flatten)]
    pub new: NewVolumeOpts,
    /// Start of the encrypted data in the payload, in 512-byte sectors.
    #[arg(long, value_name = "SECTORS", default_value_t = 0)]
    pub offset: u64,
    /// Use the volume key in FILE instead of a random one (recovery).
    #[arg(
        long = "volume-key-file",
        alias = "master-key-file",
        value_name = "FILE"
    )]
    pub volume_key_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// Overwrite an existing header without asking.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub key: KeyFileOpts,
    /// The header file to create.
    pub header: PathBuf,
}

/// The arguments of `add-key`.
#[derive(Args, Debug)]
pub struct AddKeyArgs {
    #[command(flatten)]
    pub key: KeyFileOpts,
    /// The keyslot for the new key (default: the first free one).
    #[arg(short = 'S', long = "key-slot", value_name = "N")]
    pub key_slot: Option<u32>,
    #[command(flatten)]
    pub new_key: NewKeyOpts,
    #[command(flatten)]
    pub kdf: KdfOpts,
    /// Prove access with the volume key in FILE instead of an existing key.
    #[arg(
        long = "volume-key-file",
        alias = "master-key-file",
        value_name = "FILE"
    )]
    pub volume_key_file: Option<PathBuf>,
    /// The LUKS header file.
    pub header: PathBuf,
}

/// The arguments of `remove-key`.
#[derive(Args, Debug)]
pub struct RemoveKeyArgs {
    #[command(flatten)]
    pub key: KeyOpts,
    /// Do not ask for confirmation: removes even the last keyslot, as cryptsetup does.
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// Allow removing the last keyslot.
    #[arg(long)]
    pub force: bool,
    /// The LUKS header file.
    pub header: PathBuf,
}

/// The arguments of `change-key`.
#[derive(Args, Debug)]
pub struct ChangeKeyArgs {
    #[command(flatten)]
    pub key: KeyOpts,
    #[command(flatten)]
    pub new_key: NewKeyOpts,
    #[command(flatten)]
    pub kdf: KdfOpts,
    /// The LUKS header file.
    pub header: PathBuf,
}

/// The arguments of `kill-slot`.
#[derive(Args, Debug)]
pub struct KillSlotArgs {
    #[command(flatten)]
    pub key: KeyFileOpts,
    /// Do not ask for a key of another keyslot nor for confirmation (even the last keyslot).
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// Allow removing the last keyslot.
    #[arg(long)]
    pub force: bool,
    /// The keyslot to remove.
    pub slot: u32,
    /// The LUKS header file.
    pub header: PathBuf,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_setting_named_in_errors_is_an_option_of_some_command() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        let longs: Vec<String> = cli
            .get_subcommands()
            .flat_map(|c| c.get_arguments())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for s in [
            super::Setting::FileName,
            super::Setting::AllowBacking,
            super::Setting::IterTime,
            super::Setting::PbkdfParallel,
            super::Setting::PbkdfMemory,
        ] {
            assert!(longs.contains(&super::flag(s)), "{s:?}: {}", super::flag(s));
        }
    }

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_kdf_value_is_one_the_library_takes() {
        for hash in Hash::value_variants() {
            for pbkdf in Pbkdf::value_variants() {
                let opts = KdfOpts {
                    pbkdf: Some(*pbkdf),
                    hash: Some(*hash),
                    ..KdfOpts::default()
                };
                let o = opts.options();
                assert!(o.choice(2, None).is_ok(), "{o:?}");
            }
        }
    }

    #[test]
    fn values_are_spelled_as_cryptsetup_does() {
        fn names<T: ValueEnum>(v: &[T]) -> Vec<String> {
            v.iter().map(value_name).collect()
        }
        assert_eq!(names(LuksType::value_variants()), ["luks2", "luks1"]);
        assert_eq!(
            names(Pbkdf::value_variants()),
            ["argon2id", "argon2i", "pbkdf2"]
        );
        let hashes = names(Hash::value_variants());
        assert_eq!(
            hashes[..6],
            ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]
        );
        assert!(hashes.iter().any(|h| h == "whirlpool") && hashes.iter().any(|h| h == "sm3"));
        assert_eq!(names(PayloadFormat::value_variants()), ["raw", "qcow2"]);
        // Hashes in any case, as the library's parser takes them.
        let cli = Cli::try_parse_from(["luksfuse", "format", "-h", "SHA512", "h.img"]).unwrap();
        let Command::Format(f) = cli.command else {
            panic!("not format")
        };
        assert_eq!(f.new.kdf.hash, Some(Hash(HashAlg::Sha512)));
        assert_eq!(f.kind, LuksType::Luks2);
    }
}
