//! LUKS2 reencryption metadata: in-place encryption and decryption of a payload with a
//! detached header, recorded in the header exactly as cryptsetup 2.6.1 records `cryptsetup
//! reencrypt --encrypt/--decrypt --header H` (see `docs/cryptsetup-reencrypt.md`), so that
//! either tool resumes what the other started. This module is the header side only: the data
//! mover (reading, converting and writing hotzones of the payload) is the caller's.
//!
//! # The model
//!
//! A payload of `size` bytes goes from the *old* layout to the *new* one ([`Layout`]: plaintext
//! for the linear side, a cipher and sector size for the encrypted side). Encryption goes
//! forward (`converted` grows from `0..0` to `0..size`), decryption backward (from
//! `size..size` to `0..size`). The header holds the requirement `online-reencrypt-v2`, a
//! `reencrypt` keyslot whose area is the *resilience area*, the two layouts as the
//! `backup-previous` and `backup-final` segments, and the progress as one or two regular
//! segments (three while a hotzone is *hot*: its segment is flagged `in-reencryption`). A
//! verification digest (PBKDF2 of the keys, the keyslot's parameters and the backup
//! segments) binds the reencryption keyslot; [`Reencryption::resume`] checks it.
//!
//! # One hotzone, as cryptsetup does it
//!
//! 1. The caller reads the hotzone's old bytes (raw, not decrypted) and calls
//!    [`Reencryption::protect`]: the checksums of those bytes (one hash per checksum block) or
//!    the bytes themselves (journal) go to the resilience area (fsync), then the *hot*
//!    segments to both header copies (primary, fsync, secondary, fsync). From here on a crash
//!    leaves a header that says which hotzone may be half written, and how to recover it.
//! 2. The caller converts the bytes, writes them to the payload and `fdatasync`s it.
//! 3. [`Reencryption::advance`] writes the *post* segments: the hotzone is converted.
//!
//! With resilience `none` neither step writes anything (as cryptsetup: a crash then leaves the
//! progress of the last [`Reencryption::checkpoint`], and resuming converts again what was
//! converted since — so callers checkpoint on SIGINT and at the end). [`Reencryption::finish`]
//! writes the end state once everything is converted.
//!
//! After a crash inside a hotzone, [`State::hot`] is that hotzone: the caller recovers it
//! from [`Reencryption::recovery_data`] (checksum: every block whose hash still equals the
//! stored one holds the old bytes and must be converted, the others are already new —
//! [`Reencryption::stale_blocks`] lists them; journal: the old bytes of the whole hotzone, to
//! convert and write again), then calls
//! [`Reencryption::advance`], as cryptsetup's `reencrypt_recover_segment` does.
//!
//! # Locks
//!
//! As cryptsetup: the whole run holds `flock(LOCK_EX|LOCK_NB)` on
//! `/run/cryptsetup/LN_LUKS2-reencryption-<UUID>` (so two runs, of either tool, exclude each
//! other), and each header write holds `flock(LOCK_EX)` on the header file and first checks
//! that the sequence id on disk is still the one last read or written (refusing, exit 5, when
//! another process wrote). Between writes the run holds a shared `flock` on the header file,
//! luksfuse's convention for "in use" (a luksfuse key change then refuses, exit 5; readers
//! such as `cryptsetup luksDump` still read it). Starting refuses (exit 5) when another
//! process holds any `flock` on the header (a luksfuse mount holds a shared one) or QEMU has
//! it open; `init_decrypt` holds the header exclusively until it is in reencryption.
//!
//! # Tuning the verification digest
//!
//! The digest's PBKDF2 iterations are benchmarked for 125 ms as cryptsetup does, unless
//! [`Params::digest_iterations`] says otherwise (tests use 1000, cryptsetup's minimum).

use super::binary::{self, Copy, Identity};
use super::metadata::{self, Reject};
use super::Luks2;
use crate::crypto::hash::HashAlg;
use crate::crypto::CipherName;
use crate::error::{Error, Result};
use crate::luks::format::{self, FormatOptions};
use crate::luks::kdf::{self, Kdf};
use crate::luks::{Header, HeaderFile, Segment};
use crate::secret::{Passphrase, Secret, VolumeKey};
use crate::sys::{self, FlockKind};
use crate::units::{Bytes, SectorSize, Sectors512};
use base64ct::{Base64, Encoding};
use serde_json::{json, Map, Value};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The requirement luksfuse writes and resumes (`LUKS2_REENCRYPT_REQ_VERSION` 2).
pub const REQUIREMENT: &str = "online-reencrypt-v2";
/// The largest hotzone cryptsetup uses (`LUKS2_REENCRYPT_MAX_HOTZONE_LENGTH`, 1 GiB).
pub const MAX_HOTZONE: u64 = 1 << 30;
/// Where cryptsetup keeps its lock files (`DEFAULT_LUKS2_LOCK_PATH`).
pub const LOCK_DIR: &str = "/run/cryptsetup";
/// cryptsetup's default checksum block for a file payload (its block size).
pub const DEFAULT_CHECKSUM_BLOCK: u32 = 4096;
/// The largest string cryptsetup serializes into the verification data (`MAX_STR`).
const MAX_STR: usize = 64;
/// QEMU's "consistent read" permission lock byte (as in `crate::luks::update`).
const QEMU_LOCK_CONSISTENT_READ: u64 = 100;

/// Which way the payload is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext to encrypted, forward (from offset 0 up).
    Encrypt,
    /// Encrypted to plaintext, backward (from the end down).
    Decrypt,
}

impl Mode {
    /// The keyslot's `mode`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Encrypt => "encrypt",
            Mode::Decrypt => "decrypt",
        }
    }

    /// The keyslot's `direction` (cryptsetup's default for each mode with a detached header).
    pub fn direction(self) -> &'static str {
        match self {
            Mode::Encrypt => "forward",
            Mode::Decrypt => "backward",
        }
    }
}

/// How a hotzone is protected against a crash while it is written (the area type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resilience {
    /// The hash of every `block` bytes of the hotzone's old bytes (cryptsetup's default,
    /// sha256 over 4096-byte blocks).
    Checksum { hash: HashAlg, block: u32 },
    /// The hotzone's old bytes themselves (for an encryption: plaintext in the header file).
    Journal,
    /// Nothing: a crash loses the progress since the last checkpoint.
    None,
}

impl Resilience {
    /// cryptsetup's default.
    pub const DEFAULT: Resilience = Resilience::Checksum {
        hash: HashAlg::Sha256,
        block: DEFAULT_CHECKSUM_BLOCK,
    };

    /// The area `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Resilience::Checksum { .. } => "checksum",
            Resilience::Journal => "journal",
            Resilience::None => "none",
        }
    }
}

/// One side of the conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The cipher (dm-crypt spec, e.g. `aes-xts-plain64`); `None` for plaintext (a `linear`
    /// segment).
    pub encryption: Option<String>,
    /// The encryption sector size (512 for plaintext).
    pub sector_size: u32,
}

impl Layout {
    /// The segment to give [`crate::volume::Volume`] for this layout over the whole payload
    /// (offset 0, IVs from the byte offset / 512 as cryptsetup numbers them), for a key of
    /// `key_size` bytes; `None` for plaintext.
    pub fn segment(&self, key_size: usize) -> Option<Segment> {
        let enc = self.encryption.as_ref()?;
        Some(Segment {
            offset: Bytes(0),
            size: None,
            cipher: CipherName::new(enc.clone()),
            key_size,
            sector_size: SectorSize::try_from(self.sector_size).ok()?,
            iv_tweak: Sectors512(0),
        })
    }
}

/// Where a reencryption stands, as the header records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub mode: Mode,
    pub resilience: Resilience,
    /// The resilience area: byte range in the header file.
    pub area: Range<u64>,
    pub old: Layout,
    pub new: Layout,
    /// The payload size in bytes (as the caller gave it).
    pub size: u64,
    /// Bytes already in the new layout: forward (encrypt) `0..d`, backward (decrypt)
    /// `d..size`.
    pub converted: Range<u64>,
    /// The hotzone whose data may be half written (the `in-reencryption` segment): after a
    /// crash inside it (cryptsetup's CRASH state), or between [`Reencryption::protect`] and
    /// [`Reencryption::advance`].
    pub hot: Option<Range<u64>>,
}

impl State {
    /// Whether every byte is in the new layout.
    pub fn done(&self) -> bool {
        self.hot.is_none() && self.converted == (0..self.size)
    }

    /// What hotzone boundaries must be multiples of (but the payload's end): the larger
    /// sector size of the two layouts.
    pub fn sector_alignment(&self) -> u64 {
        u64::from(self.old.sector_size.max(self.new.sector_size).max(512))
    }

    /// What hotzone lengths are multiples of (but the last): the larger sector size of the
    /// two layouts and the checksum block, as cryptsetup's `reencrypt_get_alignment` (a
    /// partial checksum block at a hotzone's end is not checksummed, as in cryptsetup).
    pub fn alignment(&self) -> u64 {
        let block = match self.resilience {
            Resilience::Checksum { block, .. } => block,
            _ => 512,
        };
        u64::from(self.old.sector_size.max(self.new.sector_size).max(block))
    }

    /// The next hotzone of at most `len` bytes (aligned down, at least one alignment unit),
    /// or `None` when everything is converted.
    pub fn next_hotzone(&self, len: u64) -> Option<Range<u64>> {
        let len = (len / self.alignment()).max(1) * self.alignment();
        match self.mode {
            Mode::Encrypt if self.converted.end < self.size => {
                let s = self.converted.end;
                Some(s..s.saturating_add(len).min(self.size))
            }
            Mode::Decrypt if self.converted.start > 0 => {
                let e = self.converted.start;
                Some(e.saturating_sub(len)..e)
            }
            _ => None,
        }
    }
}

/// What starting a reencryption takes besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub resilience: Resilience,
    /// PBKDF2 iterations of the verification digest; `None`: benchmarked for 125 ms, as
    /// cryptsetup (`init_encrypt` uses 1000 when the format options force the KDF's
    /// iterations, as `luksfuse format` does for the volume key digest).
    pub digest_iterations: Option<u32>,
}

impl Params {
    pub fn new(resilience: Resilience) -> Self {
        Params {
            resilience,
            digest_iterations: None,
        }
    }
}

/// A reencryption in progress: the locked header file, its parsed header, the keys and the
/// state. Dropping it releases the locks; the header stays as last written.
pub struct Reencryption {
    path: PathBuf,
    file: File,
    _run_lock: File,
    header: Luks2,
    old_key: Option<VolumeKey>,
    new_key: Option<VolumeKey>,
    state: State,
}

impl std::fmt::Debug for Reencryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reencryption")
            .field("path", &self.path)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Reencryption {
    /// A new detached header file `header` (which must not exist unless `force`) in the
    /// init state of an encryption, as `cryptsetup reencrypt --encrypt --init-only --header
    /// H`: keyslot 0 holds a new volume key under `key`, made with the format options `opts`
    /// (cipher, key size, sector size, KDF, UUID, label; the data offset must be 0), the
    /// payload of `payload_size` bytes is all plaintext. Nothing is written to the payload
    /// (locking it against other writers is the caller's). An existing header replaced
    /// (`force`) must not be in use by another process.
    pub fn init_encrypt(
        header: &Path,
        opts: &FormatOptions,
        key: &Passphrase,
        params: &Params,
        payload_size: u64,
        force: bool,
    ) -> Result<Self> {
        let plan = opts.check()?;
        if plan.version != 2 {
            return Err(Error::usage("in-place encryption needs a LUKS2 header"));
        }
        if plan.offset != 0 {
            return Err(Error::usage(
                "in-place encryption with a detached header keeps the data at offset 0",
            ));
        }
        check_payload_size(payload_size, plan.sector_size.get())?;
        let exists = std::fs::symlink_metadata(header).is_ok();
        if exists && !force {
            return Err(
                Error::usage("header file exists; refusing to overwrite it").in_file(header)
            );
        }
        // A header being replaced may be in use (a mount of this payload through it): held
        // exclusively until the new one is in place.
        let _old = match exists {
            true => Some(open_header(header, true)?),
            false => None,
        };
        let run_lock = run_lock(&plan.uuid)?;
        let (mut image, vk) = format::build(&plan, None, key.as_bytes())?;
        let iterations = params.digest_iterations.or(plan
            .kdf
            .forced_iterations
            .map(|_| kdf::MIN_PBKDF2_ITERATIONS));
        let h = Luks2::parse(&image).map_err(|e| e.context("new header"))?;
        let mut j = h.json().clone();
        let seg0 = j["segments"]["0"].clone();
        let final_seg = with_flag(seg0, "backup-final");
        j["segments"] = json!({
            "0": linear(0, None, false),
            "1": with_flag(linear(0, None, false), "backup-previous"),
            "2": final_seg,
        });
        j["digests"]["0"]["segments"] = json!(["2"]);
        let new_key = vk;
        add_reencryption(
            &h,
            &mut j,
            Mode::Encrypt,
            params,
            plan.kdf.hash,
            iterations,
            None,
            Some(&new_key),
        )?;
        let seqid = h.seqid() + 1; // a new header: small
        let text = metadata_text(&j, h.hdr_size())?;
        for copy in [Copy::Primary, Copy::Secondary] {
            let bytes = binary::encode_copy(copy, h.hdr_size(), seqid, &identity(&h), &text)?;
            let at = copy_offset(copy, h.hdr_size());
            image[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
        }
        let check = Luks2::parse(&image).map_err(|e| e.context("new header"))?;
        let state = State::of(&check, payload_size)?;
        if state.converted != (0..0) || state.hot.is_some() {
            return Err(Error::format("new header does not read back as written"));
        }
        crate::luks::update::replace(header, &image, None)?;
        let file = open_header(header, false)?;
        drop(image);
        Ok(Reencryption {
            path: header.to_owned(),
            file,
            _run_lock: run_lock,
            header: check,
            old_key: None,
            new_key: Some(new_key),
            state,
        })
    }

    /// An existing clean detached LUKS2 header (one `crypt` segment at offset 0 to the end of
    /// the payload) to the init state of a decryption, as `cryptsetup reencrypt --decrypt
    /// --init-only --header H`: `key` must open one of its keyslots.
    pub fn init_decrypt(
        header: &Path,
        key: &Passphrase,
        params: &Params,
        payload_size: u64,
    ) -> Result<Self> {
        // Exclusive until the header records the decryption: no mount may start meanwhile.
        let file = open_header(header, true)?;
        let h = parse_file(&file, header)?;
        if h.in_reencryption() {
            return Err(
                Error::usage("a reencryption is in progress already; resume it instead")
                    .in_file(header),
            );
        }
        let segs = &h.metadata().segments;
        if segs.len() == 1 && segs.get(&0).is_some_and(|s| s.kind == "linear") {
            return Err(Error::usage(
                "nothing to decrypt: the header maps its data as plaintext (a decryption \
                 finished here)",
            )
            .in_file(header));
        }
        h.mappable().map_err(|e| e.in_file(header))?;
        let seg = &h.metadata().segments[&0];
        if seg.offset != 0 || seg.size.is_some() || seg.iv_tweak != 0 {
            return Err(Error::unsupported(
                "luksfuse decrypts in place only a detached header's data: one segment at \
                 offset 0 to the end of the payload, IV tweak 0",
            )
            .in_file(header));
        }
        check_payload_size(payload_size, h.segment().sector_size.get())?;
        let run_lock = run_lock(h.uuid())?;
        let src = HeaderFile::from_file(clone(&file, header)?, header)?;
        let unlocked = Header::Luks2(h)
            .unlock(&src, key.as_bytes(), None)
            .map_err(|e| e.in_file(header))?;
        let h = parse_file(&file, header)?;
        let digest = h
            .metadata()
            .segment_digest
            .ok_or_else(|| Error::format("no digest is assigned to the data segment"))?;
        let hash = match h.metadata().digests.get(&digest).map(|d| &d.kdf) {
            Some(Kdf::Pbkdf2 { hash, .. }) => *hash,
            _ => HashAlg::Sha256,
        };
        let mut j = h.json().clone();
        let seg0 = j["segments"]["0"].clone();
        j["segments"] = json!({
            "0": seg0.clone(),
            "1": with_flag(seg0, "backup-previous"),
            "2": with_flag(linear(0, None, false), "backup-final"),
        });
        j["digests"][digest.to_string()]["segments"] = json!(["0", "1"]);
        add_reencryption(
            &h,
            &mut j,
            Mode::Decrypt,
            params,
            hash,
            params.digest_iterations,
            Some(&unlocked.key),
            None,
        )?;
        let mut r = Reencryption {
            path: header.to_owned(),
            file,
            _run_lock: run_lock,
            state: State {
                mode: Mode::Decrypt,
                resilience: params.resilience,
                area: 0..0,
                old: Layout {
                    encryption: None,
                    sector_size: 512,
                },
                new: Layout {
                    encryption: None,
                    sector_size: 512,
                },
                size: payload_size,
                converted: payload_size..payload_size,
                hot: None,
            },
            header: h,
            old_key: Some(unlocked.key),
            new_key: None,
        };
        r.commit(&j, None)?;
        r.state = State::of(&r.header, payload_size)?;
        Ok(r)
    }

    /// An existing header in reencryption, made by luksfuse or by cryptsetup: unlocks it with
    /// `key`, checks the verification digest (refusing "Reencryption metadata is invalid."
    /// otherwise, exit 4) and takes the locks. A header in the CRASH state (a hotzone in
    /// reencryption) is returned as such: [`State::hot`].
    pub fn resume(header: &Path, key: &Passphrase, payload_size: u64) -> Result<Self> {
        let file = open_header(header, false)?;
        let h = parse_file(&file, header)?;
        if !h.in_reencryption() {
            return Err(
                Error::usage("no reencryption is in progress in this header").in_file(header),
            );
        }
        let state = State::of(&h, payload_size).map_err(|e| e.in_file(header))?;
        let run_lock = run_lock(h.uuid())?;
        let src = HeaderFile::from_file(clone(&file, header)?, header)?;
        let h = Header::Luks2(h);
        let unlocked = h
            .unlock(&src, key.as_bytes(), None)
            .map_err(|e| e.in_file(header))?;
        let Header::Luks2(h) = h else {
            unreachable!("made as LUKS2 above")
        };
        let (old_key, new_key) = match state.mode {
            Mode::Encrypt => (None, Some(unlocked.key)),
            Mode::Decrypt => (Some(unlocked.key), None),
        };
        verify_digest(&h, old_key.as_ref(), new_key.as_ref()).map_err(|e| e.in_file(header))?;
        Ok(Reencryption {
            path: header.to_owned(),
            file,
            _run_lock: run_lock,
            header: h,
            old_key,
            new_key,
            state,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The header as last read or written.
    pub fn header(&self) -> &Luks2 {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of the old layout (decryption), if it is encrypted.
    pub fn old_key(&self) -> Option<&VolumeKey> {
        self.old_key.as_ref()
    }

    /// The key of the new layout (encryption), if it is encrypted.
    pub fn new_key(&self) -> Option<&VolumeKey> {
        self.new_key.as_ref()
    }

    /// The largest hotzone the resilience area allows, aligned down to
    /// [`State::alignment`]: checksum `area / hash length * block`, journal the area size,
    /// none [`MAX_HOTZONE`]; never more than [`MAX_HOTZONE`].
    pub fn max_hotzone(&self) -> u64 {
        let area = self.state.area.end - self.state.area.start;
        let limit = match self.state.resilience {
            Resilience::Checksum { hash, block } => {
                (area / hash.len() as u64).saturating_mul(u64::from(block))
            }
            Resilience::Journal => area,
            Resilience::None => MAX_HOTZONE,
        };
        let a = self.state.alignment();
        limit.min(MAX_HOTZONE) / a * a
    }

    /// The recovery data of the hot zone ([`State::hot`]): the stored checksums (one hash per
    /// whole checksum block of the hotzone) or the journal (the hotzone's old bytes, which for
    /// an encryption are plaintext: kept in a zeroizing buffer).
    pub fn recovery_data(&self) -> Result<Secret> {
        let hot = self
            .state
            .hot
            .clone()
            .ok_or_else(|| Error::usage("no hotzone is in reencryption"))?;
        let len = match self.state.resilience {
            Resilience::Checksum { hash, block } => {
                (hot.end - hot.start) / u64::from(block) * hash.len() as u64
            }
            Resilience::Journal => hot.end - hot.start,
            Resilience::None => {
                return Err(Error::unsupported(
                    "resilience 'none' keeps no recovery data: the hotzone cannot be recovered",
                ))
            }
        };
        if len > self.state.area.end - self.state.area.start {
            return Err(Error::format(
                "the hotzone in reencryption is larger than its resilience area",
            )
            .in_file(&self.path));
        }
        let mut buf = Secret::zeroed(usize::try_from(len).expect("bounded by the area"));
        self.file
            .read_exact_at(buf.as_mut_bytes(), self.state.area.start)
            .map_err(|e| Error::io(&self.path, "cannot read the resilience area", &e))?;
        Ok(buf)
    }

    /// Checksum resilience, after a crash inside the hot zone: the byte ranges (in the
    /// payload) of the checksum blocks that still hold the old bytes and must be converted,
    /// given `current`, the hot zone's bytes as they are on the payload now (raw). A block
    /// whose hash is the stored one is old; any other is taken as already converted, as
    /// cryptsetup's `reencrypt_recover_segment` does.
    pub fn stale_blocks(&self, current: &[u8]) -> Result<Vec<Range<u64>>> {
        let hot = self
            .state
            .hot
            .clone()
            .ok_or_else(|| Error::usage("no hotzone is in reencryption"))?;
        let Resilience::Checksum { hash, block } = self.state.resilience else {
            return Err(Error::usage(
                "only checksum resilience recovers block by block; a journal holds the whole \
                 hotzone's old bytes",
            ));
        };
        if current.len() as u64 != hot.end - hot.start {
            return Err(Error::usage(format!(
                "{} bytes given for a hotzone of {}",
                current.len(),
                hot.end - hot.start
            )));
        }
        let stored = self.recovery_data()?;
        let (b, n) = (usize::try_from(block).expect("u32 fits"), hash.len());
        let mut h = vec![0u8; n];
        let mut out = Vec::new();
        for (i, chunk) in current.chunks_exact(b).enumerate() {
            hash.hash_into(&[chunk], &mut h);
            if stored.as_bytes()[i * n..(i + 1) * n] == h[..] {
                let at = hot.start + i as u64 * u64::from(block);
                out.push(at..at + u64::from(block));
            }
        }
        Ok(out)
    }

    /// The commit point before the hotzone `hot`'s data is overwritten: writes the checksums
    /// of `old_bytes` (the hotzone's bytes as they are on the payload now) or `old_bytes`
    /// themselves (journal) to the resilience area (fsync), then the hot segments to both
    /// header copies (seqid + 1; primary, fsync, secondary, fsync), cryptsetup's order.
    /// Resilience none: writes nothing. `hot` must be the next hotzone: it starts where the
    /// converted part ends (encrypt) or ends where it starts (decrypt), its bounds are multiples of
    /// [`State::sector_alignment`] (or the payload's end) and it is at most
    /// [`Self::max_hotzone`] long. `sums`, when given, are the checksums of `old_bytes`
    /// already computed ([`HashAlg::hash_blocks`]; the data mover hashes the next hotzone
    /// while it writes this one).
    pub fn protect(
        &mut self,
        hot: Range<u64>,
        old_bytes: &[u8],
        sums: Option<&[u8]>,
    ) -> Result<()> {
        if let Some(h) = &self.state.hot {
            return Err(Error::usage(format!(
                "hotzone {h:?} is still in reencryption: advance first"
            )));
        }
        let s = &self.state;
        let next = match s.mode {
            Mode::Encrypt => hot.start == s.converted.end,
            Mode::Decrypt => hot.end == s.converted.start,
        };
        let a = s.sector_alignment();
        if !next
            || hot.start >= hot.end
            || hot.end > s.size
            || !hot.start.is_multiple_of(a)
            || (!hot.end.is_multiple_of(a) && hot.end != s.size)
        {
            return Err(Error::usage(format!(
                "hotzone {hot:?} is not the next one after {:?} ({} bytes aligned to {a})",
                s.converted, s.size
            )));
        }
        let len = hot.end - hot.start;
        if len > self.max_hotzone() {
            return Err(Error::usage(format!(
                "hotzone of {len} bytes is larger than the resilience area allows ({})",
                self.max_hotzone()
            )));
        }
        if old_bytes.len() as u64 != len {
            return Err(Error::usage(format!(
                "{} old bytes given for a hotzone of {len}",
                old_bytes.len()
            )));
        }
        let checksums: Option<Secret> = match s.resilience {
            Resilience::Checksum { hash, block } => {
                let block = usize::try_from(block).expect("u32 fits");
                let whole = old_bytes.len() / block * block;
                let want = whole / block * hash.len();
                Some(match sums {
                    Some(given) if given.len() == want => Secret::from_slice(given),
                    Some(given) => {
                        return Err(Error::usage(format!(
                            "{} bytes of checksums given for {want}",
                            given.len()
                        )))
                    }
                    None => {
                        let mut out = Secret::zeroed(want);
                        hash.hash_blocks(block, &old_bytes[..whole], out.as_mut_bytes());
                        out
                    }
                })
            }
            _ => None,
        };
        let area_data: Option<&[u8]> = match s.resilience {
            Resilience::Checksum { .. } => checksums.as_ref().map(Secret::as_bytes),
            Resilience::Journal => Some(old_bytes),
            Resilience::None => None,
        };
        let mut next = self.state.clone();
        next.hot = Some(hot);
        if let Some(data) = area_data {
            let j = self.json_for(&next)?;
            self.commit(&j, Some((self.state.area.start, data)))?;
        }
        self.state = next;
        Ok(())
    }

    /// After the caller wrote (and `fdatasync`ed) the hot zone's new bytes, or recovered it
    /// after a crash: the post segments, the hotzone counted as converted. Resilience none:
    /// in memory only.
    pub fn advance(&mut self) -> Result<()> {
        let hot = self
            .state
            .hot
            .clone()
            .ok_or_else(|| Error::usage("no hotzone is in reencryption"))?;
        let mut next = self.state.clone();
        next.hot = None;
        next.converted = match next.mode {
            Mode::Encrypt => 0..hot.end,
            Mode::Decrypt => hot.start..next.size,
        };
        if next.resilience != Resilience::None {
            let j = self.json_for(&next)?;
            self.commit(&j, None)?;
        }
        self.state = next;
        Ok(())
    }

    /// Records `converted` as the progress without a hotzone (after SIGINT, or every so
    /// often with resilience none): it must extend the current progress (encrypt `0..d`,
    /// decrypt `d..size`), and no hotzone may be in reencryption.
    pub fn checkpoint(&mut self, converted: Range<u64>) -> Result<()> {
        if self.state.hot.is_some() {
            return Err(Error::usage("a hotzone is in reencryption: advance first"));
        }
        let s = &self.state;
        let a = s.sector_alignment();
        let ok = match s.mode {
            Mode::Encrypt => {
                converted.start == 0 && converted.end >= s.converted.end && converted.end <= s.size
            }
            Mode::Decrypt => converted.end == s.size && converted.start <= s.converted.start,
        } && (converted.start.is_multiple_of(a) || converted.start == s.size)
            && (converted.end.is_multiple_of(a) || converted.end == s.size);
        if !ok {
            return Err(Error::usage(format!(
                "progress {converted:?} does not extend {:?}",
                s.converted
            )));
        }
        let mut next = self.state.clone();
        next.converted = converted;
        let j = self.json_for(&next)?;
        self.commit(&j, None)?;
        self.state = next;
        Ok(())
    }

    /// The end state, exactly as cryptsetup's teardown leaves it, once everything is
    /// converted. Encrypt: one `crypt` segment, the reencryption keyslot removed and its area
    /// overwritten with random bytes, the verification digest and the requirement removed.
    /// Decrypt: one `linear` segment and no keyslots (their areas overwritten), digests,
    /// tokens or requirement. The header file stays.
    pub fn finish(mut self) -> Result<()> {
        if !self.state.done() {
            return Err(Error::usage(format!(
                "the reencryption is not done: {:?} of {} bytes converted",
                self.state.converted, self.state.size
            )));
        }
        let h = &self.header;
        let mut j = h.json().clone();
        let (rslot, _) = h
            .reencrypt_keyslot()
            .ok_or_else(|| Error::format("no reencryption keyslot"))?;
        let mut wipe = vec![h.keyslot_area(rslot)?];
        let rdigest = h.metadata().keyslots[&rslot].digest;
        match self.state.mode {
            Mode::Encrypt => {
                let fin = backup(h, "backup-final")?;
                let fin = strip_flags(j["segments"][fin.to_string()].clone());
                j["segments"] = json!({ "0": fin });
                obj(&mut j, "keyslots")?.remove(&rslot.to_string());
                let digests = obj(&mut j, "digests")?;
                if let Some(d) = rdigest {
                    digests.remove(&d.to_string());
                }
                let key_digest = h
                    .metadata()
                    .segment_digest
                    .ok_or_else(|| Error::format("no digest for the volume key"))?;
                j["digests"][key_digest.to_string()]["segments"] = json!(["0"]);
            }
            Mode::Decrypt => {
                j["segments"] = json!({ "0": linear(0, None, false) });
                for n in h.active_slots() {
                    if n != rslot {
                        wipe.push(h.keyslot_area(n)?);
                    }
                }
                j["keyslots"] = json!({});
                j["digests"] = json!({});
                j["tokens"] = json!({});
            }
        }
        remove_requirement(&mut j)?;
        self.commit(&j, None)?;
        for r in &wipe {
            wipe_range(&self.file, r)
                .map_err(|e| Error::io(&self.path, "cannot wipe keyslot area", &e))?;
        }
        Ok(())
    }

    /// The header's JSON for state `s` (from the current one: keyslots, digests and backups
    /// stay, the regular segments are made from the progress).
    fn json_for(&self, s: &State) -> Result<Value> {
        let h = &self.header;
        let mut j = h.json().clone();
        let prev_id = backup(h, "backup-previous")?;
        let fin_id = backup(h, "backup-final")?;
        let prev = j["segments"][prev_id.to_string()].clone();
        let fin = j["segments"][fin_id.to_string()].clone();
        let mut segs: Vec<Value> = Vec::new();
        // (start, end or None for dynamic, layout is new?, hot?)
        let mut parts: Vec<(u64, Option<u64>, bool, bool)> = Vec::new();
        let size = s.size;
        match (s.mode, &s.hot) {
            (Mode::Encrypt, None) => {
                let d = s.converted.end;
                if d > 0 {
                    parts.push((0, (d < size).then_some(d), true, false));
                }
                if d < size || d == 0 {
                    parts.push((d, None, false, false));
                }
            }
            (Mode::Encrypt, Some(hz)) => {
                if hz.start > 0 {
                    parts.push((0, Some(hz.start), true, false));
                }
                parts.push((hz.start, Some(hz.end), true, true));
                if hz.end < size {
                    parts.push((hz.end, None, false, false));
                }
            }
            (Mode::Decrypt, None) => {
                let d = s.converted.start;
                if d > 0 {
                    parts.push((0, (d < size).then_some(d), false, false));
                }
                if d < size || d == 0 {
                    parts.push((d, None, true, false));
                }
            }
            (Mode::Decrypt, Some(hz)) => {
                if hz.start > 0 {
                    parts.push((0, Some(hz.start), false, false));
                }
                parts.push((hz.start, Some(hz.end), true, true));
                if hz.end < size {
                    parts.push((hz.end, None, true, false));
                }
            }
        }
        for (start, end, new, hot) in parts {
            let base = if new { &fin } else { &prev };
            segs.push(segment_like(base, start, end.map(|e| e - start), hot)?);
        }
        let key_digest = h
            .metadata()
            .segment_digest
            .ok_or_else(|| Error::format("no digest for the volume key"))?;
        let mut map = Map::new();
        let mut bound = Vec::new();
        let n_regular = segs.len();
        for (i, seg) in segs.into_iter().chain([prev, fin]).enumerate() {
            let backup = i >= n_regular;
            if seg["type"] == "crypt" {
                bound.push((backup, i.to_string()));
            }
            map.insert(i.to_string(), seg);
        }
        // cryptsetup lists the backup first (["4", "0", "1"]).
        bound.sort_by_key(|(backup, _)| !*backup);
        j["segments"] = Value::Object(map);
        j["digests"][key_digest.to_string()]["segments"] =
            Value::Array(bound.into_iter().map(|(_, id)| Value::from(id)).collect());
        Ok(j)
    }

    /// Writes `j` in place: under an exclusive `flock` on the header, after checking that the
    /// sequence id on disk is the one last seen, first `area` (offset, bytes) if given and
    /// fsync, then the primary copy with the next sequence id, fsync, the secondary, fsync.
    /// The metadata is validated first; nothing is written if it is not valid.
    fn commit(&mut self, j: &Value, area: Option<(u64, &[u8])>) -> Result<()> {
        let hdr_size = self.header.hdr_size();
        let text = metadata_text(j, hdr_size)?;
        let seqid = self
            .header
            .seqid()
            .checked_add(1)
            .ok_or_else(|| Error::format("LUKS2 sequence id overflows"))?;
        let id = identity(&self.header);
        let copies = [Copy::Primary, Copy::Secondary]
            .into_iter()
            .map(|c| {
                Ok((
                    copy_offset(c, hdr_size),
                    binary::encode_copy(c, hdr_size, seqid, &id, &text)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let io = |what: &str, e: &io::Error| Error::io(&self.path, what, e);
        sys::flock_wait(self.file.as_fd(), FlockKind::Exclusive)
            .map_err(|e| io("cannot lock header", &e))?;
        let written = (|| {
            let on_disk = parse_file(&self.file, &self.path)?;
            if on_disk.seqid() != self.header.seqid() {
                return Err(Error::busy(format!(
                    "header was changed by another process (sequence id {}, expected {}); \
                     refusing to write",
                    on_disk.seqid(),
                    self.header.seqid()
                ))
                .in_file(&self.path));
            }
            if let Some((off, bytes)) = area {
                self.file
                    .write_all_at(bytes, off)
                    .map_err(|e| io("cannot write the resilience area", &e))?;
                // Durable before the metadata that points recovery at it: else a power cut
                // can keep the new "hot" segments with the previous hotzone's journal or
                // checksums, and resuming "recovers" the hotzone from them (found by the
                // crash replayer, tests/crash_replay.rs).
                self.file
                    .sync_all()
                    .map_err(|e| io("cannot sync the resilience area", &e))?;
            }
            for (off, bytes) in &copies {
                self.file
                    .write_all_at(bytes, *off)
                    .map_err(|e| io("cannot write header", &e))?;
                self.file
                    .sync_all()
                    .map_err(|e| io("cannot sync header", &e))?;
            }
            parse_file(&self.file, &self.path)
        })();
        let relock = sys::flock_wait(self.file.as_fd(), FlockKind::Shared);
        let parsed = written?;
        relock.map_err(|e| io("cannot lock header", &e))?;
        if parsed.seqid() != seqid {
            return Err(Error::format("header does not read back as written").in_file(&self.path));
        }
        self.header = parsed;
        Ok(())
    }
}

impl State {
    /// The state a header in reencryption records for a payload of `size` bytes, checked:
    /// luksfuse resumes `online-reencrypt-v2` encryption forward and decryption backward with
    /// checksum, journal or none resilience; anything else is refused (see
    /// [`Luks2::reencryption_refusal`]).
    pub fn of(h: &Luks2, size: u64) -> Result<State> {
        let refuse = || {
            h.reencryption_refusal()
                .unwrap_or_else(|| Error::usage("no reencryption is in progress"))
        };
        if h.metadata().config.reencrypt != Some(2) {
            return Err(refuse());
        }
        let (slot, rk) = h.reencrypt_keyslot().ok_or_else(refuse)?;
        let mode = match (rk.mode.as_str(), rk.direction.as_str()) {
            ("encrypt", "forward") => Mode::Encrypt,
            ("decrypt", "backward") => Mode::Decrypt,
            (m, d) => {
                return Err(Error::unsupported(format!(
                    "reencryption mode '{m}' direction '{d}': luksfuse resumes encryption \
                     forward and decryption backward only; resume it with 'cryptsetup \
                     reencrypt --resume-only --header HEADER PAYLOAD'"
                )))
            }
        };
        let resilience = match (rk.resilience.as_str(), &rk.hash, rk.block) {
            ("checksum", Some(name), Some(block)) => Resilience::Checksum {
                hash: HashAlg::from_name(name).map_err(|_| {
                    Error::unsupported(format!(
                        "reencryption checksum hash '{name}' is not supported"
                    ))
                })?,
                block,
            },
            ("journal", _, _) => Resilience::Journal,
            ("none", _, _) => Resilience::None,
            (other, _, _) => {
                return Err(Error::unsupported(format!(
                    "reencryption resilience '{other}' is not supported by luksfuse (data \
                     shift is for headers inside the device)"
                )))
            }
        };
        let area = h.keyslot_area(slot)?;
        let m = h.metadata();
        let seg = |flag: &str| -> Result<&metadata::SegmentEntry> {
            let id = backup(h, flag)?;
            Ok(&m.segments[&id])
        };
        if m.segments
            .values()
            .any(|s| s.flags.iter().any(|f| f == "backup-moved-segment"))
        {
            return Err(Error::unsupported(
                "reencryption with a moved segment (data shift) is not supported by luksfuse",
            ));
        }
        let (prev, fin) = (seg("backup-previous")?, seg("backup-final")?);
        for (s, what) in [(prev, "backup-previous"), (fin, "backup-final")] {
            if s.offset != 0 || s.size.is_some() || s.iv_tweak != 0 {
                return Err(Error::unsupported(format!(
                    "the {what} segment is not the whole payload from offset 0 with IV tweak 0 \
                     (a detached header's data)"
                )));
            }
            if s.kind != "crypt" && s.kind != "linear" {
                return Err(Error::unsupported(format!(
                    "the {what} segment is of type '{}'",
                    s.kind
                )));
            }
        }
        let (plain, enc) = match mode {
            Mode::Encrypt => (prev, fin),
            Mode::Decrypt => (fin, prev),
        };
        if plain.kind != "linear" || enc.kind != "crypt" {
            return Err(Error::format(format!(
                "reencryption segments do not match an {}ion (backup-previous '{}', \
                 backup-final '{}')",
                mode.name(),
                prev.kind,
                fin.kind
            )));
        }
        let layout = |s: &metadata::SegmentEntry| Layout {
            encryption: s.encryption.clone().filter(|_| s.kind == "crypt"),
            sector_size: s
                .sector_size
                .filter(|_| s.kind == "crypt")
                .and_then(|z| u32::try_from(z).ok())
                .unwrap_or(512),
        };
        let (old, new) = (layout(prev), layout(fin));
        check_payload_size(size, old.sector_size.max(new.sector_size))?;
        // The regular segments, in order, each old, new or hot, must tile 0..size.
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        enum Part {
            Old,
            New,
            Hot,
        }
        let mut parts: Vec<(Part, Range<u64>)> = Vec::new();
        let mut at = 0u64;
        let regular: Vec<&metadata::SegmentEntry> = m
            .segments
            .values()
            .take_while(|s| !s.flags.iter().any(|f| f.starts_with("backup-")))
            .collect();
        let damaged =
            |why: String| Error::format(format!("reencryption progress cannot be read: {why}"));
        for (i, s) in regular.iter().enumerate() {
            let part = if s.flags.iter().any(|f| f == "in-reencryption") {
                Part::Hot
            } else if s.kind == fin.kind {
                Part::New
            } else {
                Part::Old
            };
            if s.offset != at {
                return Err(damaged(format!(
                    "segment {i} starts at {} instead of {at}",
                    s.offset
                )));
            }
            let end = match s.size {
                None => size,
                Some(n) => s
                    .offset
                    .checked_add(n)
                    .filter(|e| *e <= size)
                    .ok_or_else(|| {
                        damaged(format!(
                            "segment {i} ends past the end of the {size}-byte payload"
                        ))
                    })?,
            };
            if end <= s.offset && !(s.size.is_none() && s.offset == size) {
                return Err(damaged(format!(
                    "segment {i} is empty for a {size}-byte payload"
                )));
            }
            if part == Part::Hot && s.size.is_none() {
                return Err(damaged(format!(
                    "segment {i} in reencryption has no fixed size"
                )));
            }
            parts.push((part, s.offset..end));
            at = end;
        }
        if at != size {
            return Err(damaged(format!(
                "the segments end at {at}, but the payload has {size} bytes"
            )));
        }
        let kinds: Vec<Part> = parts.iter().map(|(p, _)| *p).collect();
        let order: &[Part] = match mode {
            Mode::Encrypt => &[Part::New, Part::Hot, Part::Old],
            Mode::Decrypt => &[Part::Old, Part::Hot, Part::New],
        };
        let mut pos = 0;
        for k in &kinds {
            match order[pos..].iter().position(|o| o == k) {
                Some(p) => pos += p + 1,
                None => {
                    return Err(damaged(format!(
                        "segments {kinds:?} are not a state of an {}ion",
                        mode.name()
                    )))
                }
            }
        }
        let find = |p: Part| parts.iter().find(|(k, _)| *k == p).map(|(_, r)| r.clone());
        let hot = find(Part::Hot);
        let converted = match (mode, &hot) {
            (Mode::Encrypt, Some(h)) => 0..h.start,
            (Mode::Decrypt, Some(h)) => h.end..size,
            (Mode::Encrypt, None) => 0..find(Part::New).map_or(0, |r| r.end),
            (Mode::Decrypt, None) => find(Part::New).map_or(size, |r| r.start)..size,
        };
        Ok(State {
            mode,
            resilience,
            area,
            old,
            new,
            size,
            converted,
            hot,
        })
    }
}

/// The payload must be a whole number of sectors of the encrypted layout.
fn check_payload_size(size: u64, sector: u32) -> Result<()> {
    if size == 0 || !size.is_multiple_of(u64::from(sector.max(512))) {
        return Err(Error::usage(format!(
            "payload of {size} bytes is not a non-zero multiple of the {sector}-byte sector size"
        )));
    }
    Ok(())
}

fn identity(h: &Luks2) -> Identity<'_> {
    Identity {
        uuid: h.uuid(),
        label: h.label(),
        subsystem: h.subsystem(),
    }
}

fn copy_offset(copy: Copy, hdr_size: u64) -> u64 {
    match copy {
        Copy::Primary => 0,
        Copy::Secondary => hdr_size,
    }
}

fn obj<'a>(j: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>> {
    j.get_mut(key)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::format(format!("LUKS2 metadata has no '{key}' object")))
}

/// The JSON text of `j`, which must be valid metadata for a header of `hdr_size` bytes.
fn metadata_text(j: &Value, hdr_size: u64) -> Result<Vec<u8>> {
    metadata::validate(j, hdr_size).map_err(|e| match e {
        Reject::Damaged(e) | Reject::Unsupported(e) => Error::format(format!(
            "new reencryption metadata would be invalid: {}",
            e.message()
        )),
    })?;
    serde_json::to_vec(j)
        .map_err(|e| Error::format(format!("LUKS2 metadata does not serialize: {e}")))
}

/// A `linear` segment (`size` `None`: dynamic).
fn linear(offset: u64, size: Option<u64>, hot: bool) -> Value {
    let mut s = json!({
        "type": "linear",
        "offset": offset.to_string(),
        "size": size.map_or_else(|| "dynamic".to_owned(), |n| n.to_string()),
    });
    if hot {
        s["flags"] = json!(["in-reencryption"]);
    }
    s
}

/// `seg` with `flag` as its only flag.
fn with_flag(mut seg: Value, flag: &str) -> Value {
    seg["flags"] = json!([flag]);
    seg
}

fn strip_flags(mut seg: Value) -> Value {
    if let Some(o) = seg.as_object_mut() {
        o.remove("flags");
    }
    seg
}

/// A regular segment of the layout of backup segment `base` from `offset`, `len` bytes long
/// (`None`: dynamic); a `crypt` one gets the IV tweak of its offset (in 512-byte units, as
/// cryptsetup's `reencrypt_make_segment_*`).
fn segment_like(base: &Value, offset: u64, len: Option<u64>, hot: bool) -> Result<Value> {
    if base["type"] == "linear" {
        return Ok(linear(offset, len, hot));
    }
    let mut s = strip_flags(base.clone());
    let tweak: u64 = base["iv_tweak"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| Error::format("backup segment has no IV tweak"))?;
    s["offset"] = json!(offset.to_string());
    s["size"] = json!(len.map_or_else(|| "dynamic".to_owned(), |n| n.to_string()));
    s["iv_tweak"] = json!((tweak + offset / 512).to_string());
    if hot {
        s["flags"] = json!(["in-reencryption"]);
    }
    Ok(s)
}

/// The id of the backup segment flagged `flag`.
fn backup(h: &Luks2, flag: &str) -> Result<u32> {
    h.metadata()
        .segments
        .iter()
        .find(|(_, s)| s.flags.iter().any(|f| f == flag))
        .map(|(n, _)| *n)
        .ok_or_else(|| Error::format(format!("no '{flag}' segment")))
}

/// The lowest id not used in section `key` of `j`.
fn free_id(j: &Value, key: &str) -> Result<u32> {
    let used = j[key]
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    (0..=metadata::MAX_ID)
        .find(|n| !used.contains(&n.to_string()))
        .ok_or_else(|| Error::usage(format!("no free {key} id left")))
}

/// The largest free gap of the keyslots area (cryptsetup's `LUKS2_find_area_max_gap`).
fn max_gap(h: &Luks2) -> Result<Range<u64>> {
    let start = 2 * h.hdr_size();
    let end = start + h.keyslots_size();
    let mut used: Vec<Range<u64>> = h
        .active_slots()
        .into_iter()
        .filter_map(|n| h.keyslot_area(n).ok())
        .collect();
    used.sort_by_key(|r| r.start);
    used.push(end..end);
    let (mut at, mut best) = (start, 0..0);
    for r in used {
        if r.start > at && r.start - at > best.end - best.start {
            best = at..r.start;
        }
        at = at.max(r.end);
    }
    if best.is_empty() {
        return Err(Error::usage(
            "no room left in the keyslots area for a reencryption keyslot",
        ));
    }
    Ok(best)
}

/// Adds the reencryption keyslot (in the largest free gap), its verification digest and the
/// requirement to `j`, the metadata of header `h` with the backup segments already in place.
#[allow(clippy::too_many_arguments)]
fn add_reencryption(
    h: &Luks2,
    j: &mut Value,
    mode: Mode,
    params: &Params,
    hash: HashAlg,
    iterations: Option<u32>,
    old: Option<&VolumeKey>,
    new: Option<&VolumeKey>,
) -> Result<()> {
    let area = max_gap(h)?;
    let slot = free_id(j, "keyslots")?;
    let mut a = json!({
        "type": params.resilience.name(),
        "offset": area.start.to_string(),
        "size": (area.end - area.start).to_string(),
    });
    if let Resilience::Checksum { hash, block } = params.resilience {
        if block < 512 || !block.is_power_of_two() {
            return Err(Error::usage(format!(
                "checksum block size {block} is not a power of two of at least 512"
            )));
        }
        // cryptsetup: the alignment, at least each layout's sector size.
        let ss = h.segment().sector_size.get();
        a["hash"] = json!(hash.name());
        a["sector_size"] = json!(block.max(ss));
    }
    obj(j, "keyslots")?.insert(
        slot.to_string(),
        json!({
            "type": "reencrypt",
            "key_size": 1,
            "mode": mode.name(),
            "direction": mode.direction(),
            "priority": 0,
            "area": a,
        }),
    );
    let config = obj(j, "config")?;
    let req = config
        .entry("requirements")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Error::format("config requirements is not an object"))?;
    let list = req
        .entry("mandatory")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| Error::format("mandatory requirements is not an array"))?;
    list.push(json!(REQUIREMENT));
    let data = verification_data(j, 2, old, new)?;
    let iterations = iterations
        .unwrap_or_else(|| kdf::pbkdf2_iterations(hash, kdf::DIGEST_ITERATION_MS, hash.len()));
    let mut salt = vec![0u8; kdf::SALT_LEN];
    crate::secret::fill_random(&mut salt)?;
    let mut digest = vec![0u8; hash.len()];
    hash.pbkdf2(data.as_bytes(), &salt, iterations, &mut digest);
    let id = free_id(j, "digests")?;
    obj(j, "digests")?.insert(
        id.to_string(),
        json!({
            "type": "pbkdf2",
            "keyslots": [slot.to_string()],
            "segments": [],
            "hash": hash.name(),
            "iterations": iterations,
            "salt": Base64::encode_string(&salt),
            "digest": Base64::encode_string(&digest),
        }),
    );
    Ok(())
}

/// Removes the reencryption requirement from `j` (and the requirements object when nothing
/// is left in it, as cryptsetup does).
fn remove_requirement(j: &mut Value) -> Result<()> {
    let config = obj(j, "config")?;
    let empty = match config
        .get_mut("requirements")
        .and_then(Value::as_object_mut)
    {
        None => return Ok(()),
        Some(req) => {
            if let Some(list) = req.get_mut("mandatory").and_then(Value::as_array_mut) {
                list.retain(|r| {
                    r.as_str()
                        .and_then(super::sections::reencrypt_version)
                        .is_none()
                });
                if list.is_empty() {
                    req.remove("mandatory");
                }
            }
            req.is_empty()
        }
    };
    if empty {
        config.remove("requirements");
    }
    Ok(())
}

/// The verification data of cryptsetup's `reencrypt_assembly_verification_data` (docs §3),
/// read from the JSON `j` as strictly as cryptsetup reads it: `v` and the version digit, the
/// old key (if the backup-previous segment has a digest), the new key (if backup-final has
/// another), the reencryption keyslot's mode, direction, area type, offset and size (and hash
/// and block size for checksum, shift for datashift types), then the backup-previous,
/// backup-final and backup-moved-segment (if any) segments.
pub fn verification_data(
    j: &Value,
    version: u32,
    old: Option<&VolumeKey>,
    new: Option<&VolumeKey>,
) -> Result<Secret> {
    let invalid = || Error::format("Reencryption metadata is invalid.");
    let version = u8::try_from(version)
        .ok()
        .filter(|v| *v < 0xff - 0x2f)
        .ok_or_else(invalid)?;
    let segs = j["segments"].as_object().ok_or_else(invalid)?;
    let by_flag = |flag: &str| {
        segs.values().find(|s| {
            s["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == flag))
        })
    };
    let digest_of = |flag: &str| -> Option<String> {
        let (id, _) = segs.iter().find(|(_, s)| {
            s["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == flag))
        })?;
        j["digests"].as_object()?.iter().find_map(|(d, v)| {
            v["segments"]
                .as_array()?
                .iter()
                .any(|s| s == id.as_str())
                .then(|| d.clone())
        })
    };
    let (d_old, d_new) = (digest_of("backup-previous"), digest_of("backup-final"));
    let mut keys: Vec<&[u8]> = Vec::new();
    if d_old.is_some() {
        keys.push(old.ok_or_else(invalid)?.as_bytes());
    }
    if d_new.is_some() && d_new != d_old {
        keys.push(new.ok_or_else(invalid)?.as_bytes());
    }
    if keys.is_empty() {
        return Err(invalid());
    }
    // The metadata part holds no secret; the whole is assembled once, in a zeroizing buffer.
    let mut out = Vec::new();
    let s = |v: &Value, key: &str, out: &mut Vec<u8>| -> Result<()> {
        let t = v.get(key).and_then(Value::as_str).ok_or_else(invalid)?;
        if t.len() > MAX_STR {
            return Err(invalid());
        }
        out.extend_from_slice(t.as_bytes());
        Ok(())
    };
    let u64s = |v: &Value, key: &str, dynamic: bool, out: &mut Vec<u8>| -> Result<()> {
        let t = v.get(key).and_then(Value::as_str).ok_or_else(invalid)?;
        if dynamic && t == "dynamic" {
            out.extend_from_slice(b"dynamic");
            return Ok(());
        }
        let n: u64 = t.parse().map_err(|_| invalid())?;
        out.extend_from_slice(&n.to_be_bytes());
        Ok(())
    };
    let u32s = |v: &Value, key: &str, out: &mut Vec<u8>| -> Result<()> {
        let n = v
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(invalid)?;
        out.extend_from_slice(&n.to_be_bytes());
        Ok(())
    };
    let (_, k) = j["keyslots"]
        .as_object()
        .ok_or_else(invalid)?
        .iter()
        .filter_map(|(n, k)| Some((n.parse::<u32>().ok()?, k)))
        .filter(|(_, k)| k["type"] == "reencrypt")
        .min_by_key(|(n, _)| *n)
        .ok_or_else(invalid)?;
    let a = &k["area"];
    s(k, "mode", &mut out)?;
    s(k, "direction", &mut out)?;
    s(a, "type", &mut out)?;
    u64s(a, "offset", false, &mut out)?;
    u64s(a, "size", false, &mut out)?;
    match a["type"].as_str() {
        Some("checksum") => {
            s(a, "hash", &mut out)?;
            u32s(a, "sector_size", &mut out)?;
        }
        Some("datashift" | "datashift-journal") => u64s(a, "shift_size", false, &mut out)?,
        Some("datashift-checksum") => {
            s(a, "hash", &mut out)?;
            u32s(a, "sector_size", &mut out)?;
            u64s(a, "shift_size", false, &mut out)?;
        }
        _ => {}
    }
    for flag in ["backup-previous", "backup-final", "backup-moved-segment"] {
        let Some(seg) = by_flag(flag) else {
            if flag == "backup-moved-segment" {
                continue;
            }
            return Err(invalid());
        };
        s(seg, "type", &mut out)?;
        u64s(seg, "offset", false, &mut out)?;
        u64s(seg, "size", true, &mut out)?;
        match seg["type"].as_str() {
            Some("crypt") => {
                u64s(seg, "iv_tweak", false, &mut out)?;
                s(seg, "encryption", &mut out)?;
                u32s(seg, "sector_size", &mut out)?;
            }
            Some("linear") => {}
            _ => return Err(invalid()),
        }
    }
    let key_len: usize = keys.iter().map(|k| k.len()).sum();
    let mut all = Secret::zeroed(2 + key_len + out.len());
    let buf = all.as_mut_bytes();
    buf[0] = 0x76;
    buf[1] = 0x30 + version;
    let mut at = 2;
    for part in keys.iter().copied().chain([&out[..]]) {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Ok(all)
}

/// Checks the verification digest of header `h` (the digest of its reencryption keyslot)
/// against the keys; "Reencryption metadata is invalid." (exit 4) if it does not match.
pub fn verify_digest(h: &Luks2, old: Option<&VolumeKey>, new: Option<&VolumeKey>) -> Result<()> {
    let invalid = || Error::format("Reencryption metadata is invalid.");
    let version = h.metadata().config.reencrypt.ok_or_else(invalid)?;
    let (slot, _) = h.reencrypt_keyslot().ok_or_else(invalid)?;
    let digest = h.metadata().keyslots[&slot]
        .digest
        .and_then(|d| h.metadata().digests.get(&d))
        .ok_or_else(invalid)?;
    let data = verification_data(h.json(), version, old, new)?;
    if !digest.matches(data.as_bytes())? {
        return Err(invalid().with_hint(
            "its verification digest does not match (it was changed, or not made with this key)",
        ));
    }
    Ok(())
}

/// Opens the header file for the run: read-write, a regular file, locked by no other process
/// (a luksfuse mount holds a shared `flock` for its life) nor open in QEMU. Holds an exclusive
/// `flock` on it when `exclusive` (until the first [`Reencryption::commit`]), else a shared
/// one.
fn open_header(path: &Path, exclusive: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, "cannot open header", &e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat header", &e))?;
    if !meta.is_file() {
        return Err(Error::usage(
            "not a regular file: luksfuse reencrypts with detached header files only",
        )
        .in_file(path));
    }
    crate::luks::update::lock(&file, path, FlockKind::Exclusive)?;
    if !exclusive {
        sys::flock_wait(file.as_fd(), FlockKind::Shared)
            .map_err(|e| Error::io(path, "cannot lock header", &e))?;
    }
    if sys::ofd_write_lock_conflicts(file.as_fd(), QEMU_LOCK_CONSISTENT_READ).unwrap_or(false) {
        return Err(
            Error::busy("header is in use (open in QEMU); refusing to change it").in_file(path),
        );
    }
    Ok(file)
}

fn clone(file: &File, path: &Path) -> Result<File> {
    file.try_clone()
        .map_err(|e| Error::io(path, "cannot duplicate descriptor", &e))
}

/// Parses the LUKS2 header in `file` (a LUKS1 header is refused).
fn parse_file(file: &File, path: &Path) -> Result<Luks2> {
    let src = HeaderFile::from_file(clone(file, path)?, path)?;
    match Header::parse(&src).map_err(|e| e.in_file(path))? {
        Header::Luks2(h) => Ok(h),
        Header::Luks1(_) => Err(Error::unsupported(
            "a LUKS1 header: luksfuse encrypts and decrypts in place with LUKS2 headers only",
        )
        .in_file(path)),
    }
}

/// cryptsetup's reencryption lock: `flock(LOCK_EX|LOCK_NB)` on
/// `/run/cryptsetup/LN_LUKS2-reencryption-<uuid>` (the directory made 0700 and the file 0777,
/// less the umask, if missing), held for the life of the returned file.
fn run_lock(uuid: &str) -> Result<File> {
    let dir = Path::new(LOCK_DIR);
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(dir) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(Error::io(dir, "cannot make the lock directory", &e));
        }
    }
    let path = dir.join(format!("LN_LUKS2-reencryption-{uuid}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o777)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io(&path, "cannot open the reencryption lock", &e))?;
    match sys::flock_try(file.as_fd(), FlockKind::Exclusive) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Error::busy(
            "another reencryption of this header is running (luksfuse or cryptsetup)",
        )
        .in_file(&path)),
        Err(e) => Err(Error::io(&path, "cannot lock", &e)),
    }
}

/// Overwrites `r` of `file` with random bytes and syncs it.
fn wipe_range(file: &File, r: &Range<u64>) -> io::Result<()> {
    let mut at = r.start;
    let mut buf = vec![0u8; 1 << 20];
    while at < r.end {
        let n = usize::try_from((r.end - at).min(1 << 20)).expect("at most 1 MiB");
        crate::secret::fill_random(&mut buf[..n]).map_err(|e| io::Error::other(e.to_string()))?;
        file.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}
