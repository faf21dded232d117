//! qcow2 payload images: read and write the guest data of a qcow2 (v2 or v3) file.
//!
//! # Design
//!
//! Cluster mapping, allocation, copy-on-write of compressed clusters, zero clusters and
//! backing chains are done by the `imago` crate (pinned at 0.2.6; the only crate that wrote
//! images `qemu-img check` accepts in our comparison). What this module adds:
//!
//! * **Validation before imago sees the file** ([`Header`]): magic and version, no qcow2-native
//!   encryption unless asked for (below) and never the legacy AES method, no external data file, no unknown or unhandled incompatible feature, neither
//!   the dirty nor the corrupt bit (both mean "run `qemu-img check -r all` first"), an L1 table
//!   that covers the virtual size, no internal snapshots when writable, and a feature name
//!   table of whole entries (imago 0.2.6 panics on a partial one; found by fuzzing). A
//!   backing file is refused unless [`Qcow2Options::allow_backing`] is set, because an image
//!   can name any host file as its backing file.
//!
//! * **Crash safety: the publish guard** ([`guard`]). imago keeps refcount blocks in a
//!   write-back cache, but writes some *pointers* straight to the file: a new L2 table's L1
//!   entry, a new refcount block's reftable entry, and the L1/reftable pointers in the header.
//!   When it allocates a new L2 table, the L1 entry reaches the file while the refcount
//!   increment of the L2 cluster is still only in the cache; a crash in that window leaves
//!   `refcount=0 reference=1`, which `qemu-img check` reports as corruption and which lets
//!   QEMU hand the same cluster out twice. The same holds for a refcount block allocated from a
//!   hole in an existing one (its reftable entry goes out first).
//!
//!   imago's caches are private, so the fix lives in the storage layer under it: every write
//!   passes through [`guard::GuardedFile`], which knows where the L1 table, the refcount table
//!   and the header are. Before it lets a write through that *publishes* a pointer to cluster
//!   C, it reads C's refcount from the file; if it is still 0 it writes 1 there itself (the
//!   value imago already holds in its cache), remembers that entry, and `fdatasync`s, so the
//!   refcount and the new table's contents are durable before the pointer. Until the next full
//!   flush, any later write that covers a remembered refcount entry (a stale write-back of that
//!   refcount block) has the entry forced non-zero again; a lock makes publishing exclusive
//!   with respect to other writes, so no write-back can slip between the check and the patch.
//!   The result is the invariant QEMU keeps: nothing on disk points to a cluster whose refcount
//!   on disk is 0. A crash can at worst leak clusters (`qemu-img check` exit code 3).
//!
//!   Alternatives considered: flushing imago's refcount cache before the pointer write needs
//!   imago internals (or re-entering imago's `flush()` from inside its own allocation path,
//!   which deadlocks when the allocator lock is held); pre-allocating all L2 tables and
//!   refcount blocks at open makes images grow by up to 1/512 of their size and still leaves
//!   refcount-table growth; our own qcow2 writer is thousands of lines to get right. The guard
//!   is about 500 lines (with comments) that depend only on the on-disk format, not on imago's
//!   internals, and can be removed once imago orders these writes itself.
//!
//!   Verified (see `qcow2/tests.rs`): aborting the writer right after imago's L1 update
//!   leaves `refcount=0 reference=1` without the guard in every run, and a clean image with
//!   it. Random `kill -9` alone did not hit the window (0 of 40 unguarded runs): it lasts
//!   microseconds between the L1 write and the end of the same request, while each request's
//!   `fdatasync` takes milliseconds; a power loss, which drops unsynced writes out of order,
//!   is what makes it likely in practice.
//!
//! * **QEMU's own LUKS encryption** (crypt_method 2, `-o encrypt.format=luks`, with
//!   [`Qcow2Options::embedded_luks`]): the LUKS header lives in host clusters named by the
//!   0x0537be77 header extension ([`embedded_luks_header`], bounds-checked). imago 0.2.6 does
//!   not look at crypt_method and keeps unknown extensions when it rewrites the header, so it
//!   opens such an image as is; the guest data it maps is ciphertext. The image then reports
//!   [`Image::plaintext_holes`], [`Image::extent`] (imago's mapping: host offset, in place or
//!   not) and [`Image::allocate`] (imago's `ensure_data_mapping` with overwrite), which the
//!   volume needs because QEMU numbers these IVs by the *host* offset and reads holes as
//!   plaintext zeros. [`guard::GuardedFile`] refuses every write, zero write and discard into
//!   the header's clusters, so a hostile L2 entry cannot turn a guest write into a header
//!   write. Backing files are refused for such images.
//!
//! * **Locking**: [`open_file`] takes an already opened [`std::fs::File`]; `image::open` opens
//!   and locks it with the same QEMU-compatible OFD locks as a raw payload first. ([`open`]
//!   itself takes no locks; it serves tests and tools.)

#[allow(unsafe_code)]
pub mod guard;

use super::Image;
use crate::error::{Error, Reason, Result, Setting};
use guard::{GuardedFile, Layout};
use imago::qcow2::Qcow2;
use imago::FormatAccess;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// The qcow2 magic, `QFI\xfb`.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Whether the file at `path` starts with the qcow2 magic.
pub fn is_qcow2(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path)?;
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(magic == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// How to open a qcow2 image.
#[derive(Debug, Clone, Default)]
pub struct Qcow2Options {
    /// Open for writing (otherwise every write fails with `PermissionDenied`).
    pub writable: bool,
    /// Follow the backing file named in the header (read-only; relative names are resolved
    /// against the image's directory). Off by default: an image can name any host file.
    pub allow_backing: bool,
    /// Accept an image carrying QEMU's own LUKS encryption (`encrypt.format=luks`, crypt_method
    /// 2): its guest data is then ciphertext whose holes read as plaintext zeros (see
    /// [`Image::plaintext_holes`]), and no write may reach the embedded LUKS header.
    pub embedded_luks: bool,
    /// Testing only: let pointer writes through without the publish guard, to show the
    /// crash window the guard closes.
    #[doc(hidden)]
    pub unguarded_for_tests: bool,
}

/// Incompatible feature bits (qcow2 spec, header bytes 72..80).
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

/// Header extension types (qcow2 spec, "Header extensions").
const EXT_END: u32 = 0;
const EXT_FEATURE_NAME_TABLE: u32 = 0x6803_f857;
/// "Full disk encryption header pointer": u64 offset, u64 length of the embedded LUKS header.
const EXT_CRYPTO_HEADER: u32 = 0x0537_be77;

/// `crypt_method` values (qcow2 spec, header bytes 32..36).
pub const CRYPT_NONE: u32 = 0;
pub const CRYPT_AES: u32 = 1;
pub const CRYPT_LUKS: u32 = 2;
/// The largest embedded LUKS header we read (QEMU's LUKS1 headers are about 2 MiB; a LUKS2
/// header with its keyslot area stays far below this).
const MAX_CRYPTO_HEADER: u64 = 64 << 20;
/// A feature name table entry: type (1 byte), bit number (1), name (46).
const FEATURE_NAME_ENTRY: u32 = 48;

/// The header fields we validate (qcow2 spec, "Header"; all big-endian).
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    /// v3 only (0 for v2).
    pub incompatible_features: u64,
    /// v3 only (4, i.e. 16-bit refcounts, for v2).
    pub refcount_order: u32,
    /// v3 only (72 for v2): where the header extensions start.
    pub header_length: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

impl Header {
    /// Parses the first 104 bytes of an image (fewer suffice for v2).
    pub fn parse(b: &[u8; 104]) -> Result<Header> {
        if b[..4] != MAGIC {
            return Err(Error::format("not a qcow2 image (bad magic)"));
        }
        let version = be32(b, 4);
        if version != 2 && version != 3 {
            return Err(
                Error::format(format!("unsupported qcow2 version {version}"))
                    .with_hint("convert it with: qemu-img convert -O qcow2 IMAGE NEW.qcow2"),
            );
        }
        let (incompatible_features, refcount_order, header_length) = if version == 3 {
            (be64(b, 72), be32(b, 96), be32(b, 100))
        } else {
            (0, 4, 72)
        };
        Ok(Header {
            version,
            backing_file_offset: be64(b, 8),
            backing_file_size: be32(b, 16),
            cluster_bits: be32(b, 20),
            size: be64(b, 24),
            crypt_method: be32(b, 32),
            l1_size: be32(b, 36),
            l1_table_offset: be64(b, 40),
            refcount_table_offset: be64(b, 48),
            refcount_table_clusters: be32(b, 56),
            nb_snapshots: be32(b, 60),
            incompatible_features,
            refcount_order,
            header_length,
        })
    }

    /// Refuses what we cannot serve correctly, each with what to run instead.
    fn validate(&self, opts: &Qcow2Options) -> Result<()> {
        let repair = "repair it with: qemu-img check -r all IMAGE";
        let convert = "convert it with: qemu-img convert -O qcow2 IMAGE NEW.qcow2";
        if self.incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(Error::format("qcow2 image is marked corrupt").with_hint(repair));
        }
        if self.incompatible_features & INCOMPAT_DIRTY != 0 {
            return Err(Error::format(
                "qcow2 image is marked dirty (lazy refcounts not written back)",
            )
            .with_hint(repair));
        }
        if self.incompatible_features & INCOMPAT_DATA_FILE != 0 {
            return Err(Error::format("qcow2 image uses an external data file").with_hint(convert));
        }
        if self.incompatible_features & INCOMPAT_COMPRESSION != 0 {
            return Err(Error::format(
                "qcow2 image uses a compression type other than zlib (zstd)",
            )
            .with_hint(convert));
        }
        if self.incompatible_features & INCOMPAT_EXTL2 != 0 {
            return Err(
                Error::format("qcow2 image uses extended L2 entries (subclusters)")
                    .with_hint(convert),
            );
        }
        let unknown = self.incompatible_features & !0x1f;
        if unknown != 0 {
            return Err(Error::format(format!(
                "qcow2 image has unknown incompatible features {unknown:#x}"
            ))
            .with_hint(convert));
        }
        match self.crypt_method {
            CRYPT_NONE => {}
            CRYPT_AES => {
                return Err(Error::format(
                    "qcow2 image uses the legacy AES encryption (encrypt.format=aes), which is \
                     insecure and which QEMU itself no longer writes; luksfuse refuses it",
                )
                .with_hint(
                    "re-encrypt it: qemu-img convert --object secret,... --image-opts \
                     driver=qcow2,encrypt.key-secret=...,file.filename=IMAGE -O qcow2 \
                     -o encrypt.format=luks,encrypt.key-secret=... NEW.qcow2",
                ));
            }
            CRYPT_LUKS if opts.embedded_luks => {}
            CRYPT_LUKS => {
                return Err(Error::format(
                    "qcow2 image carries QEMU's own LUKS encryption (encrypt.format=luks); it is its \
                     own header",
                )
                .with_hint("mount it without a separate header: luksfuse mount IMAGE MOUNTPOINT"));
            }
            other => {
                return Err(Error::format(format!(
                    "qcow2 image has unknown encryption method {other}"
                )));
            }
        }
        if !(9..=21).contains(&self.cluster_bits) {
            return Err(Error::format(format!(
                "qcow2 cluster_bits {} out of range 9..=21",
                self.cluster_bits
            )));
        }
        if self.refcount_order > 6 {
            return Err(Error::format(format!(
                "qcow2 refcount_order {} out of range 0..=6",
                self.refcount_order
            )));
        }
        // One L2 table maps cluster_size / 8 clusters. QEMU always sizes L1 to cover the disk;
        // a shorter one would make imago grow L1 during writes.
        let l2_span = 1u64 << (2 * self.cluster_bits - 3);
        if (self.l1_size as u64) < self.size.div_ceil(l2_span) {
            return Err(
                Error::format("qcow2 L1 table does not cover the virtual size").with_hint(repair),
            );
        }
        if opts.writable && self.nb_snapshots != 0 {
            return Err(Error::format(format!(
                "qcow2 image has {} internal snapshot(s); writing to it is not supported",
                self.nb_snapshots
            ))
            .with_hint(
                "open it read-only, or drop the snapshots (qemu-img snapshot -d) or convert it",
            ));
        }
        Ok(())
    }

    /// Checks the v3 header extensions in `first`, the image's first cluster (or as much of
    /// it as the file has), where imago reads them: a feature name table must consist of
    /// whole entries. QEMU writes only whole ones; imago 0.2.6 indexes past the end of a
    /// partial one (`tests/fuzz_regressions.rs`). The rest is left to imago.
    fn check_extensions(&self, first: &[u8]) -> Result<()> {
        if self.version != 3 {
            return Ok(());
        }
        let mut at = self.header_length as usize;
        while let Some(ext) = first.get(at..).and_then(|rest| rest.get(..8)) {
            let (kind, len) = (be32(ext, 0), be32(ext, 4));
            if kind == EXT_END {
                break;
            }
            if kind == EXT_FEATURE_NAME_TABLE && len % FEATURE_NAME_ENTRY != 0 {
                return Err(Error::format(format!(
                    "qcow2 feature name table of {len} bytes is not a whole number of \
                     {FEATURE_NAME_ENTRY}-byte entries"
                ))
                .with_hint("convert it with: qemu-img convert -O qcow2 IMAGE NEW.qcow2"));
            }
            let next = at as u64 + 8 + u64::from(len).next_multiple_of(8);
            at = usize::try_from(next).unwrap_or(usize::MAX);
        }
        Ok(())
    }

    /// The embedded LUKS header's byte range `(offset, length)` in the file, from the "full disk
    /// encryption header pointer" extension in `first` (the first cluster): `None` unless
    /// crypt_method is LUKS. Checked as QEMU checks it, and more: exactly one extension of 16
    /// bytes, a cluster-aligned offset past the first cluster, a non-empty length of at most
    /// 64 MiB, inside the file of `file_size` bytes.
    fn crypto_header(&self, first: &[u8], file_size: u64) -> Result<Option<(u64, u64)>> {
        if self.crypt_method != CRYPT_LUKS {
            return Ok(None);
        }
        let bad = |what: String| {
            Error::format(format!("qcow2 encryption header pointer {what}"))
                .with_hint("check it with: qemu-img check IMAGE")
        };
        if self.version != 3 {
            return Err(bad(
                "is missing (a v2 image cannot carry LUKS encryption)".into()
            ));
        }
        let mut found = None;
        let mut at = self.header_length as usize;
        while let Some(ext) = first.get(at..).and_then(|rest| rest.get(..8)) {
            let (kind, len) = (be32(ext, 0), be32(ext, 4));
            if kind == EXT_END {
                break;
            }
            if kind == EXT_CRYPTO_HEADER {
                if found.is_some() {
                    return Err(bad("appears twice".into()));
                }
                let body = first
                    .get(at + 8..)
                    .and_then(|rest| rest.get(..16))
                    .filter(|_| len == 16)
                    .ok_or_else(|| bad(format!("has {len} bytes, not 16")))?;
                found = Some((be64(body, 0), be64(body, 8)));
            }
            let next = at as u64 + 8 + u64::from(len).next_multiple_of(8);
            at = usize::try_from(next).unwrap_or(usize::MAX);
        }
        let (offset, length) = found.ok_or_else(|| bad("is missing".into()))?;
        let cluster = 1u64 << self.cluster_bits;
        if offset % cluster != 0 || offset < cluster {
            return Err(bad(format!(
                "offset {offset} is not a cluster boundary past the image header"
            )));
        }
        if length == 0 || length > MAX_CRYPTO_HEADER {
            return Err(bad(format!(
                "length {length} is out of range 1..={MAX_CRYPTO_HEADER}"
            )));
        }
        match offset.checked_add(length) {
            Some(end) if end <= file_size => Ok(Some((offset, length))),
            _ => Err(bad(format!(
                "range {offset}+{length} passes the end of the file ({file_size} bytes)"
            ))),
        }
    }

    fn layout(&self) -> Layout {
        Layout {
            cluster_bits: self.cluster_bits,
            refcount_order: self.refcount_order,
            l1_offset: self.l1_table_offset,
            l1_entries: self.l1_size as u64,
            rt_offset: self.refcount_table_offset,
            rt_clusters: self.refcount_table_clusters as u64,
        }
    }
}

/// Where the LUKS header embedded in the qcow2 image at `path` lies: `Some((offset, length))`
/// in the file for QEMU's own LUKS encryption (crypt_method 2), `None` for an unencrypted
/// image; the legacy AES method and a bad pointer are errors naming the file.
pub fn embedded_luks_header(path: &Path) -> Result<Option<(u64, u64)>> {
    let file = File::open(path).map_err(|e| Error::io(path, "cannot open", &e))?;
    let mut raw = [0u8; 104];
    read_prefix(&file, &mut raw).map_err(|e| Error::io(path, "cannot read", &e))?;
    let header = Header::parse(&raw).map_err(|e| e.in_file(path))?;
    if header.crypt_method == CRYPT_NONE {
        return Ok(None);
    }
    let opts = Qcow2Options {
        embedded_luks: true,
        ..Default::default()
    };
    header.validate(&opts).map_err(|e| e.in_file(path))?;
    let first =
        read_first_cluster(&file, &header).map_err(|e| Error::io(path, "cannot read", &e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat", &e))?
        .len();
    header
        .crypto_header(&first, size)
        .map_err(|e| e.in_file(path))
}

/// The image's first cluster, or as much of it as the file has (`cluster_bits` validated).
fn read_first_cluster(file: &File, header: &Header) -> io::Result<Vec<u8>> {
    // cluster_bits <= 21 (validated): at most 2 MiB.
    let mut first = vec![0u8; 1 << header.cluster_bits];
    let got = read_prefix(file, &mut first)?;
    first.truncate(got);
    Ok(first)
}

/// A qcow2 image opened through imago, with the publish guard under it.
///
/// Reads, writes and mapping look-ups share `access`; a discard takes it exclusively, because
/// imago's discard invalidates the data mappings a concurrent request may hold (imago's safe
/// `discard_to_zero` wants `&mut`; the lock is how we give it that with many FUSE threads).
pub struct Qcow2Image {
    access: RwLock<FormatAccess<GuardedFile>>,
    /// The embedded LUKS header's host bytes (whole clusters), which no discard may free.
    protect: Option<(u64, u64)>,
    /// The guard of the top image (`None` when read-only).
    guard: Option<Arc<guard::Guard>>,
    writable: bool,
    /// qcow2 version (2 or 3).
    version: u32,
    /// The cluster size in bytes.
    cluster: u64,
    /// The cluster size, when the image carries QEMU's own LUKS encryption (its holes then
    /// read as plaintext zeros).
    holes: Option<u64>,
}

/// Opens the qcow2 image at `path`.
///
/// TODO(locking): once `crate::sys` has QEMU-compatible OFD locks, take them on the file here
/// (or let callers use [`open_file`] with a file they have locked).
pub fn open(path: &Path, opts: &Qcow2Options) -> Result<Qcow2Image> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(opts.writable)
        .open(path)
        .map_err(|e| Error::io(path, "cannot open", &e))?;
    open_file(file, path, opts)
}

/// Opens a qcow2 image from a file the caller opened (and possibly locked) already.
/// `file` must be opened read-write when `opts.writable`; `path` names it in errors and
/// anchors relative backing file names.
pub fn open_file(file: File, path: &Path, opts: &Qcow2Options) -> Result<Qcow2Image> {
    let mut raw = [0u8; 104];
    read_prefix(&file, &mut raw).map_err(|e| Error::io(path, "cannot read", &e))?;
    let header = Header::parse(&raw).map_err(|e| e.in_file(path))?;
    header.validate(opts).map_err(|e| e.in_file(path))?;
    let first =
        read_first_cluster(&file, &header).map_err(|e| Error::io(path, "cannot read", &e))?;
    header
        .check_extensions(&first)
        .map_err(|e| e.in_file(path))?;
    let file_size = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat", &e))?
        .len();
    let crypto = header
        .crypto_header(&first, file_size)
        .map_err(|e| e.in_file(path))?;
    if crypto.is_some() && header.backing_file_offset != 0 {
        return Err(Error::format(
            "qcow2 image with QEMU's own encryption has a backing file; not supported",
        )
        .in_file(path)
        .with_hint("flatten: qemu-img convert --object ... --image-opts ... -O qcow2 NEW.qcow2"));
    }

    let backing = if header.backing_file_offset != 0 {
        let mut name = vec![0u8; header.backing_file_size.min(1023) as usize];
        file.read_exact_at(&mut name, header.backing_file_offset)
            .map_err(|e| Error::io(path, "cannot read backing file name", &e))?;
        Some(String::from_utf8_lossy(&name).into_owned())
    } else {
        None
    };
    if let (Some(name), false) = (&backing, opts.allow_backing) {
        return Err(Error::format(format!(
            "qcow2 image has a backing file ({name}); refusing to follow it"
        ))
        .because(Reason::NeedsSetting(Setting::AllowBacking))
        .in_file(path)
        .with_hint("flatten: qemu-img convert -O qcow2 IMAGE NEW.qcow2"));
    }

    let guard = opts.writable.then(|| {
        Arc::new(guard::Guard::new(
            header.layout(),
            !opts.unguarded_for_tests,
        ))
    });
    // The embedded LUKS header's clusters, rounded out to whole clusters: no write reaches them.
    let protect = crypto.map(|(offset, length)| {
        let cluster = 1u64 << header.cluster_bits;
        (offset, (offset + length).next_multiple_of(cluster))
    });
    let storage = GuardedFile::new(file, path, opts.writable, guard.clone(), protect)
        .map_err(|e| Error::io(path, "cannot open", &e))?;

    let fail = |what: &str, e: io::Error| {
        Error::format(format!("{what}: {e}"))
            .in_file(path)
            .with_hint("check it with: qemu-img check IMAGE")
    };
    let mut qcow2 = Qcow2::<GuardedFile>::open_image(storage, opts.writable)
        .map_err(|e| fail("cannot open qcow2 image", e))?;
    if backing.is_some() {
        // Only the backing image is implicit here: external data files are refused above.
        qcow2
            .open_implicit_dependencies()
            .map_err(|e| fail("cannot open backing image", e))?;
    } else {
        qcow2.set_backing(None);
        qcow2.set_data_file(None);
    }
    Ok(Qcow2Image {
        access: RwLock::new(FormatAccess::new(qcow2)),
        protect,
        guard,
        writable: opts.writable,
        version: header.version,
        cluster: 1u64 << header.cluster_bits,
        holes: crypto.map(|_| 1u64 << header.cluster_bits),
    })
}

/// Reads as much of `buf` as the file has (a v2 header may be shorter than 104 bytes) and
/// says how much that was.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

impl Qcow2Image {
    fn access(&self) -> RwLockReadGuard<'_, FormatAccess<GuardedFile>> {
        self.access.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses a discard of guest bytes `off..off + len` that imago would answer by freeing a
    /// host cluster of the embedded LUKS header (a hostile L2 entry can map a guest cluster
    /// there; freeing it would let the next allocation overwrite key material).
    fn check_discard_protected(
        &self,
        access: &FormatAccess<GuardedFile>,
        off: u64,
        len: u64,
    ) -> io::Result<()> {
        use imago::format::access::Mapping;
        let Some((a, b)) = self.protect else {
            return Ok(());
        };
        let end = off.saturating_add(len);
        let mut at = off;
        while at < end {
            let (mapping, n) = access.get_mapping(at, end - at)?;
            if let Mapping::Raw { offset, .. } = mapping {
                if offset < b && a < offset.saturating_add(n) {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "qcow2: refusing to discard guest byte {at}, which is stored in the \
                             embedded LUKS header (host bytes {a}..{b})"
                        ),
                    ));
                }
            }
            if n == 0 {
                break;
            }
            at = at.saturating_add(n);
        }
        Ok(())
    }
}

impl Image for Qcow2Image {
    fn size(&self) -> u64 {
        self.access().size()
    }

    fn writable(&self) -> bool {
        self.writable
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        super::check_range(off, buf.len(), self.size())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.access().read(buf, off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "qcow2 image opened read-only",
            ));
        }
        super::check_range(off, buf.len(), self.size())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.access().write(buf, off)
    }

    fn plaintext_holes(&self) -> Option<u64> {
        self.holes
    }

    fn extent(&self, off: u64, max: u64) -> io::Result<(super::Extent, u64)> {
        use imago::format::access::Mapping;
        let access = self.access();
        let (mapping, len) = access.get_mapping(off, max)?;
        let extent = match mapping {
            Mapping::Raw {
                offset, writable, ..
            } => super::Extent::Stored {
                host: offset,
                in_place: writable,
            },
            Mapping::Zero { .. } | Mapping::Eof { .. } => super::Extent::Hole,
            // QEMU does not compress encrypted images; we do not guess what one would mean.
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("qcow2: compressed cluster at guest byte {off} in an encrypted image"),
                ))
            }
        };
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("qcow2: no mapping at guest byte {off}"),
            ));
        }
        Ok((extent, len.min(max)))
    }

    fn allocate(&self, off: u64, len: u64) -> io::Result<u64> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "qcow2 image opened read-only",
            ));
        }
        let (_, host, mapped) = self.access().ensure_data_mapping(off, len, true)?;
        if mapped < len {
            return Err(io::Error::other(format!(
                "qcow2: mapped only {mapped} of {len} bytes at guest byte {off}"
            )));
        }
        Ok(host)
    }

    fn discard_granularity(&self) -> Option<u64> {
        // imago discards to zero clusters, which qcow2 v2 does not have.
        (self.writable && self.version >= 3).then_some(self.cluster)
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "qcow2 image opened read-only",
            ));
        }
        super::check_range(off, usize::try_from(len).unwrap_or(usize::MAX), self.size())?;
        if !off.is_multiple_of(self.cluster) || !len.is_multiple_of(self.cluster) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("qcow2: discard of {len} bytes at {off} is not whole clusters"),
            ));
        }
        let mut access = self.access.write().unwrap_or_else(|e| e.into_inner());
        self.check_discard_protected(&access, off, len)?;
        // Zero clusters, their host clusters freed (imago orders the L2 update before the
        // refcount decrement on disk: a crash can leak, never leave a dangling reference).
        access.discard_to_zero(off, len)
    }

    fn allocated(&self, off: u64) -> io::Result<bool> {
        use imago::format::access::Mapping;
        let access = self.access();
        let (mapping, _) = access.get_mapping(off, 1)?;
        Ok(!matches!(
            mapping,
            Mapping::Zero { .. } | Mapping::Eof { .. }
        ))
    }

    fn flush(&self) -> io::Result<()> {
        // Refcount patches made before this point are covered by imago's own write-back
        // once its flush returns; later ones stay enforced.
        let settled = self.guard.as_ref().map(|g| g.patches_len());
        let access = self.access();
        access.flush()?;
        access.sync()?;
        if let (Some(g), Some(n)) = (&self.guard, settled) {
            g.forget_patches(n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

// FUSE serves requests from several threads.
const _: fn() = || {
    fn is_image<T: Image>() {}
    is_image::<Qcow2Image>();
};
