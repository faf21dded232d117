//! The decrypted view of a payload: byte-granular `read_at`/`write_at` over an [`Image`] whose
//! data segment is encrypted sector by sector.
//!
//! Whole sectors in the middle of a request are read, decrypted (or encrypted) and written in
//! large runs straight through the caller's buffer. A partial first or last sector is
//! read-modify-written: read, decrypted, patched, encrypted and written back whole.
//!
//! A request of at least `ASSIST_MIN` bytes that is the only one in progress in the process
//! (one stream: `cp`, `dd`, a loop device) shares its steps with the helper thread of
//! [`crate::assist`]: at one request in flight the second core would otherwise sit idle
//! while this one reads, decrypts and copies. The steps are the same either way, under the
//! same locks, so nothing below depends on which thread runs one; after a failed step no
//! further step starts.
//!
//! # Concurrent requests
//!
//! Requests may run at the same time (FUSE workers serve the kernel's parallel direct I/O,
//! which also cuts a larger request into 1 MiB ones), and every interleaving is exact,
//! sector by sector:
//! * each encryption sector ends as the writes, zeroings and discards that covered it applied
//!   one after another in *some* order: bytes that only one of them covered hold exactly its
//!   bytes, and no write loses bytes of another, wherever their ranges lie (two partial
//!   writes into different bytes of one sector, a whole-sector write racing with a partial
//!   one, a discard racing with either);
//! * each sector a read returns is a state that sector had in such an order, never half of a
//!   write (a file or device gives no such promise between a concurrent `pread` and `pwrite`,
//!   and half a new ciphertext sector decrypts to a mix of old and new XTS blocks, or to
//!   garbage with CBC).
//!
//! A request as a whole is not atomic: it is these guarantees per sector (as a disk's).
//!
//! How: the volume is cut into `CHUNK`-byte chunks, each guarded by one reader-writer lock
//! of a striped table (`STRIPES` locks, chunk `i` on lock `i % STRIPES`), and every step
//! of a request (see `Volume::spans`) lies inside one chunk. Reads take their chunk's lock
//! shared for the image read (they decrypt after it); writes exclusively: a
//! read-modify-write for all of its steps, a run of whole sectors only for the image write
//! (the caller's data is encrypted into the thread's scratch before). A discard takes the
//! locks of all the chunks it drops, in ascending order; everything else holds one lock at a
//! time, so there is no deadlock. Whole-sector I/O thus costs one uncontended lock per
//! 256 KiB run, and requests into different chunks never wait for each other (unless their
//! chunks share a stripe). An image that encrypts its own clusters adds the fill lock of
//! `Holes`, always taken before a chunk's; a cluster fill holds it exclusively, so it
//! excludes every other request without chunk locks.
//!
//! # IV numbers
//!
//! The IV of encryption sector `n` (byte `b = n * sector_size` of the segment) is
//! * [`IvUnits::Bytes512`]: `b / 512 + iv_tweak` (dm-crypt's default, QEMU, LUKS1), or
//! * [`IvUnits::Sector`]: `(b / 512 + iv_tweak) >> log2(sector_size / 512)` (dm-crypt's
//!   `iv_large_sectors`, which cryptsetup sets for every LUKS2 segment with sectors > 512).
//!
//! The two differ only for sectors larger than 512 bytes. cryptsetup 2.6 does *not* set
//! `iv_large_sectors` for LUKS2: data that `cryptsetup reencrypt --encrypt --sector-size 4096`
//! wrote decrypts only with 512-byte units (`tests/volume_peers.rs` proves it for 512, 2048
//! and 4096-byte sectors, and that sector units fail from the second sector on). So
//! [`IvUnits::for_segment`] always answers `Bytes512`; `Sector` stays for experiments and a
//! possible plain dm-crypt `--iv-large-sectors` mode.

use crate::buffers;
use crate::crypto::SectorCipher;
use crate::error::{Error, Result};
use crate::image::{Extent, Image};
use crate::luks::Segment;
use crate::secret::VolumeKey;
use crate::units::{Bytes, EncSector, Iv, IvStep, SectorSize, Sectors512};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};

/// One step of a read or write (see `Volume::spans`): `n` bytes at `at` in the caller's
/// buffer, starting at byte `skip` of sector `sec`; `partial` when they cover less than
/// whole sectors.
struct Span {
    at: usize,
    sec: EncSector,
    skip: usize,
    n: usize,
    partial: bool,
}

/// Bytes of whole sectors processed per image request in the bulk path, and the unit of the
/// volume's locks: no step of a request crosses a multiple of `CHUNK`. 256 KiB: encrypted
/// data is still in the cache when the kernel copies it to the payload (qd4 1 MiB writes
/// through a qcow2-luks mount: +4-15% over 1 MiB chunks in 4 alternating runs, reads +0-4%).
const CHUNK: usize = 256 << 10;
/// Number of locks in the striped table guarding the chunks (see the module docs): chunks
/// 256 MiB apart share one.
const STRIPES: usize = 1024;
/// Reads and writes of at least this many bytes, alone in the process, share their spans
/// with the helper thread ([`crate::assist`]).
const ASSIST_MIN: usize = 2 * PIECE;
/// The steps of a shared request: at most this many bytes of whole sectors each.
const PIECE: usize = CHUNK / 2;
/// Reads and writes in progress in the process, over all volumes (see [`assisted`]).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// The largest encryption sector LUKS2 allows (the size of the partial-sector buffers).
const MAX_SECTOR: usize = SectorSize::MAX.bytes();

/// The unit in which IV numbers count (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvUnits {
    /// 512-byte units whatever the sector size (dm-crypt default, QEMU).
    Bytes512,
    /// Encryption-sector units (dm-crypt `iv_large_sectors`).
    Sector,
}

impl IvUnits {
    /// What cryptsetup uses for a LUKS `segment`: 512-byte units whatever the sector size
    /// (verified against `cryptsetup reencrypt` for 512, 2048 and 4096-byte sectors).
    pub fn for_segment(_segment: &Segment) -> Self {
        IvUnits::Bytes512
    }
}

/// A decrypted, fixed-size view of a payload's data segment.
pub struct Volume {
    image: Arc<dyn Image>,
    cipher: SectorCipher,
    /// Where the segment starts in the image.
    offset: Bytes,
    /// Usable size, a whole number of sectors; `offset + size` fits in a `u64`.
    size: Bytes,
    sector: SectorSize,
    iv_units: IvUnits,
    iv_tweak: Sectors512,
    stripes: Box<[Stripe]>,
    /// For an image whose holes read as plaintext zeros ([`Image::plaintext_holes`]).
    holes: Option<Holes>,
    /// What the logs call the payload (its path, once [`Volume::with_label`] set it).
    label: String,
    /// Set for good once a sync of the payload failed (see [`Volume::flush`]).
    sync_failed: AtomicBool,
}

/// The lock of the chunks on one stripe (see the module docs), alone in its cache line, so
/// that requests into neighbouring chunks do not bounce one line between cores.
#[repr(align(64))]
struct Stripe(RwLock<()>);

/// How a volume treats an image that encrypts its own clusters (a qcow2 image with QEMU's own
/// LUKS encryption), as QEMU's qcow2 driver does: IVs count from the host offset where a
/// sector is stored ([`host_delta`]); a hole reads as plaintext zeros (it is not decrypted);
/// a write into a hole, or into a cluster that must move, writes the whole cluster, encrypted
/// for its new place (the rest being zeros or the old contents: QEMU's copy-on-write).
struct Holes {
    /// The cluster size, a whole number of encryption sectors.
    cluster: u64,
    /// Writes that fill a hole hold it exclusively, reads and in-place writes shared: nothing
    /// sees a cluster mapped before its contents are written, and two writers into one hole do
    /// not both fill it.
    fill: RwLock<()>,
}

impl Volume {
    /// Checks `segment` against the image and the key, and keys the cipher.
    pub fn new(image: Arc<dyn Image>, segment: &Segment, key: &VolumeKey) -> Result<Self> {
        let sector = segment.sector_size;
        if key.len() != segment.key_size {
            return Err(Error::format(format!(
                "volume key is {} bytes but the segment wants {}",
                key.len(),
                segment.key_size
            )));
        }
        let cipher = SectorCipher::new(&segment.cipher.spec()?, key.as_bytes())?;
        let image_size = Bytes(image.size());
        let too_small = |need: Bytes| {
            Error::format(format!(
                "payload is too small: {image_size} bytes, the data segment needs {need}"
            ))
        };
        let min = segment
            .offset
            .checked_add(Bytes(sector.as_u64()))
            .ok_or_else(|| Error::format("data segment offset overflows"))?;
        let raw = match segment.size {
            Some(n) => {
                let end = segment
                    .offset
                    .checked_add(n)
                    .ok_or_else(|| Error::format("data segment size overflows"))?;
                if end > image_size {
                    return Err(too_small(end));
                }
                n
            }
            None => image_size.saturating_sub(segment.offset),
        };
        if raw == Bytes(0) {
            return Err(too_small(min));
        }
        // As dm-crypt under cryptsetup: whole 512-byte sectors of the payload (as a loop device
        // sees a file) must make whole encryption sectors (a fixed size was checked at parse).
        let size = raw.round_down(SectorSize::MIN);
        if !size.is_multiple_of(sector) {
            return Err(Error::format(format!(
                "payload size {image_size} bytes leaves {size} bytes after the data offset {}, \
                 not a whole number of {sector}-byte encryption sectors (cryptsetup refuses to \
                 activate it too)",
                segment.offset
            )));
        }
        if size == Bytes(0) {
            return Err(too_small(min));
        }
        let holes = match image.plaintext_holes() {
            None => None,
            Some(cluster) if cluster > 0 && cluster % sector.as_u64() == 0 => Some(Holes {
                cluster,
                fill: RwLock::new(()),
            }),
            Some(cluster) => {
                return Err(Error::format(format!(
                    "image clusters of {cluster} bytes are not a whole number of {sector}-byte \
                     encryption sectors"
                )))
            }
        };
        Ok(Volume {
            image,
            cipher,
            offset: segment.offset,
            size,
            sector,
            iv_units: IvUnits::for_segment(segment),
            iv_tweak: segment.iv_tweak,
            stripes: (0..STRIPES).map(|_| Stripe(RwLock::new(()))).collect(),
            holes,
            label: "payload".into(),
            sync_failed: AtomicBool::new(false),
        })
    }

    /// Names the payload in the log messages of its I/O errors (its path).
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Overrides the IV units (for experiments and tests against peers).
    pub fn with_iv_units(mut self, units: IvUnits) -> Self {
        self.iv_units = units;
        self
    }

    /// Size of the decrypted view in bytes (whole sectors).
    pub fn size(&self) -> u64 {
        self.size.get()
    }

    /// The encryption sector size in bytes.
    pub fn sector_size(&self) -> usize {
        self.sector.bytes()
    }

    /// Whether the underlying image accepts writes.
    pub fn writable(&self) -> bool {
        self.image.writable()
    }

    /// Makes everything written so far durable on the payload (`fdatasync`).
    ///
    /// Once a sync has failed, every later one fails too (`EIO`), for as long as the volume
    /// is open: the PostgreSQL "fsyncgate" lesson. After a failed `fdatasync` the kernel may
    /// have dropped the dirty pages it could not write and reports the error only once, so
    /// the next `fdatasync` would succeed although the data is lost; a qcow2 image's metadata
    /// cache may likewise hold what never reached the file. We do not track which ranges were
    /// rewritten since: a client that was told its data is durable must be able to rely on
    /// it, so the mount stops saying so. Reads and writes go on; remount to start afresh
    /// (after checking the data, `qemu-img check` for qcow2).
    pub fn flush(&self) -> io::Result<()> {
        // Tried even after a failure: what can still reach the file (a qcow2 image's cached
        // metadata) should, but success is no longer reported.
        let synced = self.image.flush();
        if self.sync_failed.load(AtomicOrdering::Acquire) {
            log::error!(
                "{}: sync reported as failed: an earlier sync of this payload failed, so data \
                 written before it may be lost; every sync fails until it is remounted",
                self.label
            );
            return Err(synced
                .err()
                .unwrap_or_else(|| io::Error::from_raw_os_error(libc::EIO)));
        }
        synced.inspect_err(|e| {
            self.sync_failed.store(true, AtomicOrdering::Release);
            log::error!(
                "{}: sync (fdatasync) failed: {e}; data written since the last successful \
                 sync may be lost, and every later sync of this mount fails",
                self.label
            );
        })
    }

    /// Reads up to `buf.len()` bytes at `off`; returns fewer only at the end of the volume.
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let _counted = InFlight::enter();
        let len = self.clamp(buf.len(), off);
        let Some(holes) = &self.holes else {
            self.read_stored(&mut buf[..len], off, 0)?;
            return Ok(len);
        };
        let _shared = holes.fill.read().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < len {
            let at = off + done as u64;
            let (extent, n) =
                self.logged("look-up", at, self.image.extent(at, (len - done) as u64))?;
            let n = usize::try_from(n).map_or(len - done, |n| n.clamp(1, len - done));
            let out = &mut buf[done..done + n];
            match extent {
                Extent::Stored { host, .. } => self.read_stored(out, at, host_delta(host, at))?,
                Extent::Hole => out.fill(0),
            }
            done += n;
        }
        Ok(len)
    }

    /// Writes up to `buf.len()` bytes at `off`; returns fewer only at the end of the volume
    /// (the payload never grows).
    pub fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        let _counted = InFlight::enter();
        let len = self.clamp(buf.len(), off);
        let Some(holes) = &self.holes else {
            self.write_stored(&buf[..len], off, 0)?;
            return Ok(len);
        };
        let mut done = 0;
        while done < len {
            let at = off + done as u64;
            {
                // Shared: a cluster being filled is mapped in place before its contents are
                // written; a write into it waits for the fill rather than be overwritten.
                let _shared = holes.fill.read().unwrap_or_else(|e| e.into_inner());
                if let (
                    Extent::Stored {
                        host,
                        in_place: true,
                    },
                    n,
                ) = self.logged("look-up", at, self.image.extent(at, (len - done) as u64))?
                {
                    let n = usize::try_from(n).map_or(len - done, |n| n.clamp(1, len - done));
                    self.write_stored(&buf[done..done + n], at, host_delta(host, at))?;
                    done += n;
                    continue;
                }
            }
            // A hole, or data that must move: one whole cluster at a time, under the
            // exclusive lock, looked at again under it.
            let start = at - at % holes.cluster;
            let end = start.saturating_add(holes.cluster).min(self.size.get());
            let n = usize::try_from(end - at).map_or(len - done, |n| n.min(len - done));
            let _excl = holes.fill.write().unwrap_or_else(|e| e.into_inner());
            let whole = end - start;
            let mut cluster = vec![0u8; usize::try_from(whole).expect("a cluster")];
            match self.logged("look-up", start, self.image.extent(start, whole))? {
                (
                    Extent::Stored {
                        host,
                        in_place: true,
                    },
                    _,
                ) => {
                    // `host` is where `start` is stored (the extent was looked up there).
                    self.write_stored(&buf[done..done + n], at, host_delta(host, start))?;
                    done += n;
                    continue;
                }
                (Extent::Stored { host, .. }, got) if got >= whole => {
                    self.read_stored(&mut cluster, start, host_delta(host, start))?;
                }
                (Extent::Stored { .. }, _) => {
                    return Err(io::Error::other(format!(
                        "stored cluster at byte {start} is not contiguous"
                    )))
                }
                (Extent::Hole, _) => {}
            }
            let skip = usize::try_from(at - start).expect("inside the cluster");
            cluster[skip..skip + n].copy_from_slice(&buf[done..done + n]);
            // Where the cluster will be stored decides its IVs; `start` and `end` are sector
            // multiples (clusters are, and the volume size is), so this is whole sectors.
            let host = self.logged("allocation", start, self.image.allocate(start, whole))?;
            let (sec, _) = EncSector::containing(Bytes(start), self.sector);
            self.write_sectors(&mut cluster, sec, host_delta(host, start))?;
            done += n;
        }
        Ok(len)
    }

    /// Discards `len` bytes at `off` (`fallocate(PUNCH_HOLE)`, what a loop device sends for a
    /// discard), as dm-crypt passes a discard down: the storage of the whole discard units
    /// inside the range is dropped ([`Image::discard`]: encryption sectors of a raw file,
    /// clusters of a qcow2 image), and they then read as the *decryption of zeros*, as under
    /// dm-crypt over a discarding device or QEMU's `luks` driver over a discarded qcow2
    /// range. The partial units at the ends are zeroed through the cipher (they then read as
    /// plaintext zeros) where they have storage; a hole stays a hole. An image that encrypts
    /// its own clusters reads its holes as plaintext zeros, so there the whole range reads as
    /// zeros afterwards (as [`Volume::zero_range`]). `EOPNOTSUPP` when the image cannot
    /// discard (a qcow2 v2 image).
    pub fn punch_hole(&self, off: u64, len: u64) -> io::Result<()> {
        if self.holes.is_some() {
            return self.zero_range(off, len);
        }
        let Some((unit, aligned)) = self.discard_unit() else {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        };
        let end = off.saturating_add(len).min(self.size.get());
        if off >= end {
            return Ok(());
        }
        let (a, b) = if aligned {
            inner_units(off, end, unit)
        } else {
            (end, end)
        };
        if a < b {
            {
                // No request holds, or reads half, a sector being dropped.
                let _excl = self.lock_chunks(a, b);
                self.image.discard(self.offset.get() + a, b - a)?;
            }
            self.zero_stored(off, a, unit)?;
            self.zero_stored(b, end, unit)
        } else {
            self.zero_stored(off, end, unit)
        }
    }

    /// Makes `len` bytes at `off` read as plaintext zeros (`fallocate(ZERO_RANGE)`, what a loop
    /// device sends for a write-zeroes that must not unmap): zeros are encrypted and written.
    /// An image that encrypts its own clusters drops its whole clusters instead (its holes
    /// read as plaintext zeros) and encrypts zeros into the partial ones that have storage.
    pub fn zero_range(&self, off: u64, len: u64) -> io::Result<()> {
        let end = off.saturating_add(len).min(self.size.get());
        if off >= end {
            return Ok(());
        }
        let Some(holes) = &self.holes else {
            return self.write_zeros(off, end);
        };
        // The image is a qcow2 image with its own encryption: from guest byte 0, in clusters.
        let unit = holes.cluster;
        let (a, b) = inner_units(off, end, unit);
        if a < b {
            {
                // Exclusive: no read or write holds a host offset of a cluster being dropped.
                let _excl = holes.fill.write().unwrap_or_else(|e| e.into_inner());
                self.image.discard(self.offset.get() + a, b - a)?;
            }
            self.zero_stored(off, a, unit)?;
            self.zero_stored(b, end, unit)
        } else {
            self.zero_stored(off, end, unit)
        }
    }

    /// The unit of [`Volume::punch_hole`]: the image's discard granularity, at least an
    /// encryption sector, and whether the segment starts on a unit boundary of the image (if
    /// not, no unit of the volume is one of the image, and everything is zeroed instead);
    /// `None` when the image cannot discard.
    fn discard_unit(&self) -> Option<(u64, bool)> {
        let g = self.image.discard_granularity()?.max(self.sector.as_u64());
        Some((
            g,
            g.is_power_of_two() && self.offset.get().is_multiple_of(g),
        ))
    }

    /// Encrypts zeros into `off..end` (inside the volume) where the image has storage, one
    /// discard unit at a time.
    fn zero_stored(&self, off: u64, end: u64, unit: u64) -> io::Result<()> {
        let mut at = off;
        while at < end {
            let next = (at - at % unit).saturating_add(unit).min(end);
            if self.image.allocated(self.offset.get() + at)? {
                self.write_zeros(at, next)?;
            }
            at = next;
        }
        Ok(())
    }

    /// Encrypts zeros into all of `off..end` (inside the volume).
    fn write_zeros(&self, off: u64, end: u64) -> io::Result<()> {
        let zeros = vec![0u8; CHUNK.min(usize::try_from(end - off).unwrap_or(CHUNK))];
        let mut at = off;
        while at < end {
            let n = usize::try_from(end - at).map_or(zeros.len(), |n| n.min(zeros.len()));
            self.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// `r`, with its error logged as the failed `what` of the cluster at volume byte `at`
    /// (for the image's own mapping calls, which do no I/O of ours to log).
    fn logged<T>(&self, what: &str, at: u64, r: io::Result<T>) -> io::Result<T> {
        r.inspect_err(|e| {
            let (sec, _) = EncSector::containing(Bytes(at), self.sector);
            log::warn!(
                "{}: cluster {what} at byte {at} (sector {sec}) failed: {e}",
                self.label
            );
        })
    }

    /// Reads and decrypts all of `buf` from `off` (inside the volume) as stored.
    /// `delta` (512-byte units) is added to every IV number (see [`host_delta`]).
    fn read_stored(&self, buf: &mut [u8], off: u64, delta: u64) -> io::Result<()> {
        if assisted(buf.len()) {
            let pieces = self.pieces(buf, off);
            return share(&pieces, |sp, out| self.read_span(out, sp, delta));
        }
        for sp in self.spans(off, buf.len()) {
            self.read_span(&mut buf[sp.at..sp.at + sp.n], &sp, delta)?;
        }
        Ok(())
    }

    /// One step of [`Volume::read_stored`]: `out` is the span's part of the caller's buffer.
    fn read_span(&self, out: &mut [u8], sp: &Span, delta: u64) -> io::Result<()> {
        if sp.partial {
            let mut tmp = [0u8; MAX_SECTOR];
            let tmp = &mut tmp[..self.sector.bytes()];
            self.read_sectors(tmp, sp.sec, delta)?;
            out.copy_from_slice(&tmp[sp.skip..sp.skip + sp.n]);
            Ok(())
        } else {
            self.read_sectors(out, sp.sec, delta)
        }
    }

    /// Encrypts and writes all of `buf` at `off` (inside the volume) over stored data.
    fn write_stored(&self, buf: &[u8], off: u64, delta: u64) -> io::Result<()> {
        if assisted(buf.len()) {
            let pieces: Vec<_> = self
                .spans_of(off, buf.len(), PIECE)
                .map(|sp| {
                    let data = &buf[sp.at..sp.at + sp.n];
                    Mutex::new((sp, data))
                })
                .collect();
            return share(&pieces, |sp, data| self.write_span(data, sp, delta));
        }
        for sp in self.spans(off, buf.len()) {
            self.write_span(&buf[sp.at..sp.at + sp.n], &sp, delta)?;
        }
        Ok(())
    }

    /// One step of [`Volume::write_stored`]: `data` is the span's part of the caller's data.
    fn write_span(&self, data: &[u8], sp: &Span, delta: u64) -> io::Result<()> {
        if sp.partial {
            let mut tmp = [0u8; MAX_SECTOR];
            let tmp = &mut tmp[..self.sector.bytes()];
            // Exclusive from the read to the write: no other write of the sector lands in
            // between (it would be undone), no read sees the write half done.
            let _excl = self
                .stripe(sp.sec)
                .write()
                .unwrap_or_else(|e| e.into_inner());
            self.read_raw(tmp, sp.sec)?;
            self.decrypt(tmp, sp.sec, delta);
            tmp[sp.skip..sp.skip + sp.n].copy_from_slice(data);
            self.write_sectors(tmp, sp.sec, delta)
        } else {
            // Encrypted into this thread's scratch (the caller's data must stay intact),
            // then written under the chunk's lock: not into the middle of another
            // writer's read-modify-write, nor under a reader.
            buffers::with_write_scratch(data.len(), |out| {
                let (iv, step) = self.iv(sp.sec, delta);
                self.cipher
                    .encrypt_sectors_to(data, out, self.sector, iv, step);
                let _excl = self
                    .stripe(sp.sec)
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                self.write_encrypted(out, sp.sec)
            })
        }
    }

    /// The spans of a read of `buf` at `off`, each with its part of `buf`.
    fn pieces<'b>(&self, buf: &'b mut [u8], off: u64) -> Vec<Mutex<(Span, &'b mut [u8])>> {
        let len = buf.len();
        let mut rest = buf;
        self.spans_of(off, len, PIECE)
            .map(|sp| {
                let (out, tail) = std::mem::take(&mut rest).split_at_mut(sp.n);
                rest = tail;
                Mutex::new((sp, out))
            })
            .collect()
    }

    /// Splits `len` bytes of I/O at byte `off` into the steps both paths take: a partial
    /// sector (read-modify-write) where the I/O starts or ends inside one, and runs of whole
    /// sectors in between, each inside one [`CHUNK`] (so under one lock).
    fn spans(&self, off: u64, len: usize) -> impl Iterator<Item = Span> {
        self.spans_of(off, len, CHUNK)
    }

    /// [`Volume::spans`] with runs of whole sectors cut at multiples of `unit` (a divisor of
    /// [`CHUNK`] and a multiple of every sector size): the steps of a shared request.
    fn spans_of(&self, off: u64, len: usize, unit: usize) -> impl Iterator<Item = Span> {
        let sector = self.sector;
        let s = sector.bytes();
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= len {
                return None;
            }
            // `at < len` bytes past `off`, inside the volume (see `clamp`): no overflow.
            let (sec, skip) = EncSector::containing(Bytes(off + at as u64), sector);
            let rest = len - at;
            let partial = skip != 0 || rest < s;
            let n = if partial {
                (s - skip).min(rest)
            } else {
                // To the end of the chunk (or unit) at most; units are whole sectors.
                let in_chunk = unit - us_mod(off + at as u64, unit);
                (rest / s * s).min(in_chunk)
            };
            let span = Span {
                at,
                sec,
                skip,
                n,
                partial,
            };
            at += n;
            Some(span)
        })
    }

    /// How many of `want` bytes at `off` lie inside the volume.
    fn clamp(&self, want: usize, off: u64) -> usize {
        match self.size.get().checked_sub(off) {
            None | Some(0) => 0,
            // What does not fit in a `usize` is more than `want`.
            Some(left) => usize::try_from(left).map_or(want, |left| left.min(want)),
        }
    }

    /// The lock of the chunk holding sector `sec`.
    fn stripe(&self, sec: EncSector) -> &RwLock<()> {
        let chunk = (sec.get() << self.sector.shift()) / CHUNK as u64;
        &self.stripes[us_mod(chunk, STRIPES)].0
    }

    /// Holds exclusively the locks of every chunk that bytes `a..b` (`a < b`) touch, taken in
    /// ascending order (the only place holding more than one).
    fn lock_chunks(&self, a: u64, b: u64) -> Vec<RwLockWriteGuard<'_, ()>> {
        let (first, last) = (a / CHUNK as u64, (b - 1) / CHUNK as u64);
        let mut held: Vec<usize> = if last - first >= STRIPES as u64 {
            (0..STRIPES).collect()
        } else {
            (first..=last).map(|c| us_mod(c, STRIPES)).collect()
        };
        held.sort_unstable();
        held.dedup();
        held.into_iter()
            .map(|i| self.stripes[i].0.write().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }

    /// `(first IV, IV step)` for encryption sector `sec` of the segment. IV numbers wrap at
    /// 2^64, as dm-crypt's do.
    fn iv(&self, sec: EncSector, delta: u64) -> (Iv, IvStep) {
        let in512 = sec
            .to_sectors512_wrapping(self.sector)
            .get()
            .wrapping_add(self.iv_tweak.get())
            .wrapping_add(delta);
        match self.iv_units {
            IvUnits::Bytes512 => (Iv(in512), self.sector.ivs_per_sector()),
            IvUnits::Sector => (
                Iv(in512 >> (self.sector.shift() - SectorSize::MIN.shift())),
                IvStep::ONE,
            ),
        }
    }

    /// Where encryption sector `sec` starts in the image. No overflow: `sec` lies inside the
    /// segment, and `new` checked that the segment's end fits in a `u64`.
    #[inline]
    fn image_offset(&self, sec: EncSector) -> u64 {
        self.offset.get() + (sec.get() << self.sector.shift())
    }

    /// Reads and decrypts whole sectors starting at sector `sec` (all inside one chunk) into
    /// `buf`, reading under the chunk's lock, shared.
    fn read_sectors(&self, buf: &mut [u8], sec: EncSector, delta: u64) -> io::Result<()> {
        {
            let _shared = self.stripe(sec).read().unwrap_or_else(|e| e.into_inner());
            self.read_raw(buf, sec)?;
        }
        self.decrypt(buf, sec, delta);
        Ok(())
    }

    /// Reads whole encrypted sectors starting at sector `sec` into `buf`, as stored.
    fn read_raw(&self, buf: &mut [u8], sec: EncSector) -> io::Result<()> {
        let at = self.image_offset(sec);
        self.image.read_at(buf, at).map_err(|e| {
            log::warn!(
                "{}: read of {} bytes at byte {at} (sector {sec}) failed: {e}",
                self.label,
                buf.len()
            );
            e
        })
    }

    /// Decrypts whole sectors `buf` read from sector `sec`.
    fn decrypt(&self, buf: &mut [u8], sec: EncSector, delta: u64) {
        let (iv, step) = self.iv(sec, delta);
        self.cipher.decrypt_sectors(buf, self.sector, iv, step);
    }

    /// Encrypts `buf` (whole sectors, clobbered) and writes it at sector `sec`.
    fn write_sectors(&self, buf: &mut [u8], sec: EncSector, delta: u64) -> io::Result<()> {
        let (iv, step) = self.iv(sec, delta);
        self.cipher.encrypt_sectors(buf, self.sector, iv, step);
        self.write_encrypted(buf, sec)
    }

    /// Writes the encrypted whole sectors `buf` at sector `sec`.
    fn write_encrypted(&self, buf: &[u8], sec: EncSector) -> io::Result<()> {
        let at = self.image_offset(sec);
        self.image.write_at(buf, at).map_err(|e| {
            log::warn!(
                "{}: write of {} bytes at byte {at} (sector {sec}) failed: {e}",
                self.label,
                buf.len()
            );
            e
        })
    }
}

/// One request counted in [`IN_FLIGHT`] while this lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, AtomicOrdering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

/// Whether a step of `len` bytes shares its spans with the helper thread: when it is large
/// and its request is the only one in progress. With more requests in flight every core has
/// its own already (several FUSE worker threads), and handing pieces around would only add
/// wake-ups.
fn assisted(len: usize) -> bool {
    len >= ASSIST_MIN && (IN_FLIGHT.load(AtomicOrdering::Relaxed) == 1 || assist_forced())
}

/// Whether a unit test asked for sharing whatever else is in flight.
#[cfg(test)]
fn assist_forced() -> bool {
    tests::assist_forced()
}

#[cfg(not(test))]
fn assist_forced() -> bool {
    false
}

/// Runs `step` on every piece, some on the helper thread ([`crate::assist::run`]); the first
/// error, if any. After an error no further piece is started (those already running finish),
/// as the one-thread loop stops at its first error.
fn share<T: Send>(
    pieces: &[Mutex<(Span, T)>],
    step: impl Fn(&Span, &mut T) -> io::Result<()> + Sync,
) -> io::Result<()> {
    let failed = Mutex::new(None);
    crate::assist::run(pieces.len(), &|i| {
        let mut failed_now = failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed_now.is_some() {
            return;
        }
        drop(failed_now);
        let mut piece = pieces[i].lock().unwrap_or_else(|e| e.into_inner());
        let (sp, data) = &mut *piece;
        if let Err(e) = step(sp, data) {
            failed_now = failed.lock().unwrap_or_else(|e| e.into_inner());
            failed_now.get_or_insert(e);
        }
    });
    failed
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(Ok(()), Err)
}

/// `x % m` as a `usize` (it is below `m`).
fn us_mod(x: u64, m: usize) -> usize {
    usize::try_from(x % m as u64).expect("below a usize modulus")
}

/// The whole `unit`s (a power of two) inside `off..end`: `(first, end)`, empty (`first >= end`)
/// when there are none.
fn inner_units(off: u64, end: u64, unit: u64) -> (u64, u64) {
    let first = off.checked_next_multiple_of(unit).unwrap_or(u64::MAX);
    (first, end - end % unit)
}

/// The IV offset, in 512-byte units, of data at volume byte `at` stored at file byte `host`:
/// QEMU's qcow2 driver numbers the IVs of its own LUKS encryption by the *host* offset
/// (`crypt_physical_offset`, set for every method but the legacy AES one), so sector IV =
/// `host / 512` = `at / 512 + (host - at) / 512`. Both are sector multiples (clusters are).
fn host_delta(host: u64, at: u64) -> u64 {
    (host / 512).wrapping_sub(at / 512)
}

#[cfg(test)]
mod race_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::MemImage;
    use crate::secret::Secret;
    use crate::testing::Rng;
    use std::sync::Mutex;

    pub(super) fn segment(
        offset: u64,
        size: Option<u64>,
        sector: u32,
        cipher: &str,
        key: usize,
    ) -> Segment {
        Segment {
            offset: Bytes(offset),
            size: size.map(Bytes),
            cipher: crate::crypto::CipherName::new(cipher),
            key_size: key,
            sector_size: SectorSize::try_from(sector).unwrap(),
            iv_tweak: Sectors512(0),
        }
    }

    pub(super) fn key(n: usize) -> VolumeKey {
        // The low byte of i * 7 + 3.
        VolumeKey(Secret::new(
            (0..n).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect(),
        ))
    }

    /// An image that encrypts its own clusters (as an encrypted qcow2 does): guest bytes held
    /// in memory, a cluster stored at host offset `guest + HOST`, and, once, a lie: the next
    /// [`Image::extent`] calls an allocated cluster a hole, as a writer sees it when another
    /// writer fills that cluster between its look and its lock.
    struct FillRace {
        mem: MemImage,
        allocated: Mutex<Vec<bool>>,
        hide_once: std::sync::atomic::AtomicBool,
    }

    const CLUSTER: u64 = 4096;
    const HOST: u64 = 1 << 20;

    impl Image for FillRace {
        fn size(&self) -> u64 {
            self.mem.size()
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
            self.mem.read_at(buf, off)
        }
        fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
            self.mem.write_at(buf, off)
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
        fn writable(&self) -> bool {
            true
        }
        fn plaintext_holes(&self) -> Option<u64> {
            Some(CLUSTER)
        }
        fn extent(&self, off: u64, max: u64) -> io::Result<(Extent, u64)> {
            let n = (CLUSTER - off % CLUSTER).min(max);
            let stored = self.allocated.lock().unwrap()[us(off / CLUSTER)];
            let hide = self
                .hide_once
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            Ok(if stored && !hide {
                let host = off + HOST;
                (
                    Extent::Stored {
                        host,
                        in_place: true,
                    },
                    n,
                )
            } else {
                (Extent::Hole, n)
            })
        }
        fn allocate(&self, off: u64, len: u64) -> io::Result<u64> {
            let mut a = self.allocated.lock().unwrap();
            for c in off / CLUSTER..(off + len).div_ceil(CLUSTER) {
                a[us(c)] = true;
            }
            Ok(off + HOST)
        }
    }

    #[test]
    fn a_write_that_finds_its_hole_filled_under_the_lock_uses_the_clusters_ivs() {
        let img = Arc::new(FillRace {
            mem: MemImage::new(vec![0u8; 4 * CLUSTER as usize]),
            allocated: Mutex::new(vec![false; 4]),
            hide_once: false.into(),
        });
        let v = Volume::new(
            img.clone(),
            &segment(0, None, 512, "aes-xts-plain64", 64),
            &key(64),
        )
        .unwrap();
        let mut want: Vec<u8> = (0..CLUSTER).map(|i| (i % 251) as u8).collect();
        v.write_at(&want, 0).unwrap(); // fills the hole: cluster 0 allocated
        img.hide_once
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Mid-cluster, so that the cluster's start and the write's start differ by sectors.
        v.write_at(&[0xab; 100], 1000).unwrap();
        want[1000..1100].fill(0xab);
        let mut got = vec![0u8; us(CLUSTER)];
        v.read_at(&mut got, 0).unwrap();
        assert!(got == want, "the write was encrypted for another place");
    }

    /// A test size or offset as a buffer index (they are small).
    fn us(n: u64) -> usize {
        usize::try_from(n).unwrap()
    }

    /// Decrypts the whole segment of `img` independently of Volume's own paths.
    fn decrypt_all(img: &MemImage, seg: &Segment, units: IvUnits) -> Vec<u8> {
        let spec = seg.cipher.spec().unwrap();
        let c = SectorCipher::new(&spec, key(seg.key_size).as_bytes()).unwrap();
        let ss = seg.sector_size;
        let s = ss.bytes();
        let all = img.contents();
        let mut data = all[seg.offset.to_usize().unwrap()..].to_vec();
        data.truncate(data.len() / s * s);
        for (i, chunk) in data.chunks_mut(s).enumerate() {
            let b512 = (i * s / 512) as u64;
            let (iv, step) = match units {
                IvUnits::Bytes512 => (Iv(b512), ss.ivs_per_sector()),
                IvUnits::Sector => (Iv(i as u64), IvStep::ONE),
            };
            c.decrypt_sectors(chunk, ss, iv, step);
        }
        data
    }

    thread_local! {
        /// Set by a test whose requests must share their steps with the helper even while
        /// other tests' requests are in flight (the test runner's threads).
        static ASSIST_FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    pub(super) fn assist_forced() -> bool {
        ASSIST_FORCED.with(|f| f.get())
    }

    /// An in-memory image that records which threads read and write it, and fails reads and
    /// writes that touch byte `fail_at`.
    struct Watched {
        mem: MemImage,
        threads: Mutex<std::collections::HashSet<std::thread::ThreadId>>,
        fail_at: Option<u64>,
    }

    impl Watched {
        fn touch(&self, off: u64, len: usize) -> io::Result<()> {
            self.threads
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            match self.fail_at {
                Some(f) if (off..off + len as u64).contains(&f) => {
                    Err(io::Error::from_raw_os_error(libc::EIO))
                }
                _ => Ok(()),
            }
        }
    }

    impl Image for Watched {
        fn size(&self) -> u64 {
            self.mem.size()
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
            self.touch(off, buf.len())?;
            self.mem.read_at(buf, off)
        }
        fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
            self.touch(off, buf.len())?;
            self.mem.write_at(buf, off)
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
        fn writable(&self) -> bool {
            true
        }
    }

    /// Large requests shared with the helper thread read and write exactly what one thread
    /// would: random large reads and writes (unaligned ends included) against a model, and
    /// the helper did take part.
    #[test]
    fn requests_shared_with_the_helper_match_a_model() {
        ASSIST_FORCED.with(|f| f.set(true));
        let mut rng = Rng(0x5eed);
        let sector = 512u32;
        let size = 3 * (1usize << 20) + 5 * 512;
        let mut raw = vec![0u8; size];
        rng.fill(&mut raw);
        let img = Arc::new(Watched {
            mem: MemImage::new(raw),
            threads: Mutex::new(Default::default()),
            fail_at: None,
        });
        let seg = segment(0, None, sector, "aes-xts-plain64", 64);
        let vol = Volume::new(img.clone(), &seg, &key(64)).unwrap();
        let mut model = {
            let mem = MemImage::new(img.mem.contents());
            decrypt_all(&mem, &seg, IvUnits::Bytes512)
        };
        for _ in 0..60 {
            let len = ASSIST_MIN + us(rng.below(2 << 20));
            let off = rng.below((size - len) as u64);
            let o = us(off);
            if rng.below(2) == 0 {
                let mut data = vec![0u8; len];
                rng.fill(&mut data);
                assert_eq!(vol.write_at(&data, off).unwrap(), len);
                model[o..o + len].copy_from_slice(&data);
            } else {
                let mut got = vec![0xeeu8; len];
                assert_eq!(vol.read_at(&mut got, off).unwrap(), len);
                assert!(got == model[o..o + len], "read of {len} at {off}");
            }
        }
        let mem = MemImage::new(img.mem.contents());
        assert!(decrypt_all(&mem, &seg, IvUnits::Bytes512) == model);
        assert!(
            img.threads.lock().unwrap().len() >= 2,
            "no request was shared with the helper"
        );
        ASSIST_FORCED.with(|f| f.set(false));
    }

    /// A failing step of a shared request fails the request, read or write.
    #[test]
    fn a_failed_step_of_a_shared_request_fails_it() {
        ASSIST_FORCED.with(|f| f.set(true));
        let img = Arc::new(Watched {
            mem: MemImage::new(vec![0u8; 4 << 20]),
            threads: Mutex::new(Default::default()),
            fail_at: Some(3 * CHUNK as u64 + 4096),
        });
        let seg = segment(0, None, 512, "aes-xts-plain64", 64);
        let vol = Volume::new(img, &seg, &key(64)).unwrap();
        for _ in 0..20 {
            let mut buf = vec![0u8; 4 * CHUNK];
            let e = vol.read_at(&mut buf, 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
            let e = vol.write_at(&buf, 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
        }
        ASSIST_FORCED.with(|f| f.set(false));
    }

    #[test]
    fn random_reads_and_writes_match_a_model() {
        for (sector, cipher, keylen, units) in [
            (512u32, "aes-xts-plain64", 64, IvUnits::Bytes512),
            (4096, "aes-xts-plain64", 32, IvUnits::Sector),
            (4096, "aes-xts-plain64", 32, IvUnits::Bytes512),
            (2048, "aes-cbc-essiv:sha256", 32, IvUnits::Sector),
        ] {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ sector as u64);
            let offset = 8192u64;
            // Not a whole number of sectors: the tail is not part of the volume.
            let img_len = us(offset) + 37 * sector as usize + 100;
            let mut raw = vec![0u8; img_len];
            rng.fill(&mut raw);
            let img = Arc::new(MemImage::new(raw));
            let seg = segment(offset, None, sector, cipher, keylen);
            let vol = Volume::new(img.clone(), &seg, &key(keylen))
                .unwrap()
                .with_iv_units(units);
            assert_eq!(vol.size(), 37 * sector as u64);
            let mut model = decrypt_all(&img, &seg, units);
            assert_eq!(model.len() as u64, vol.size());
            for _ in 0..400 {
                let off = rng.below(vol.size() + 600);
                let len = match rng.below(4) {
                    0 => us(rng.below(20)),
                    1 => us(rng.below(3 * u64::from(sector))),
                    _ => us(rng.below(vol.size() + 1)),
                };
                let expect = if off >= vol.size() {
                    0
                } else {
                    len.min(us(vol.size() - off))
                };
                if rng.below(2) == 0 {
                    let mut data = vec![0u8; len];
                    rng.fill(&mut data);
                    assert_eq!(vol.write_at(&data, off).unwrap(), expect);
                    let o = us(off);
                    if expect > 0 {
                        model[o..o + expect].copy_from_slice(&data[..expect]);
                    }
                } else {
                    let mut got = vec![0xeeu8; len];
                    assert_eq!(vol.read_at(&mut got, off).unwrap(), expect);
                    let o = us(off);
                    if expect > 0 {
                        assert_eq!(got[..expect], model[o..o + expect]);
                    }
                }
            }
            assert_eq!(decrypt_all(&img, &seg, units), model);
            assert_eq!(us(img.size()), img_len, "the payload never grows");
        }
    }

    #[test]
    fn spans_cover_the_request_and_stay_inside_one_chunk() {
        let img = Arc::new(MemImage::new(vec![0u8; 3 * CHUNK + 8192]));
        for sector in [512u32, 4096] {
            let seg = segment(0, None, sector, "aes-xts-plain64", 64);
            let v = Volume::new(img.clone(), &seg, &key(64)).unwrap();
            let s = sector as u64;
            let chunk = CHUNK as u64;
            let mut rng = Rng(s);
            for _ in 0..2000 {
                let off = rng.below(v.size());
                let len = us(rng.below(v.size() - off)) + 1;
                let mut next = 0;
                for sp in v.spans(off, len) {
                    assert_eq!(sp.at, next, "{off}+{len}: spans follow each other");
                    let start = off + sp.at as u64;
                    let last = start + sp.n as u64 - 1;
                    assert_eq!(sp.sec.get() * s + sp.skip as u64, start);
                    assert_eq!(start / chunk, last / chunk, "{off}+{len}: inside one chunk");
                    assert_eq!(sp.partial, sp.skip != 0 || (sp.n as u64) < s);
                    if sp.partial {
                        assert_eq!(start / s, last / s, "{off}+{len}: one sector");
                    } else {
                        assert_eq!(sp.n as u64 % s, 0, "{off}+{len}: whole sectors");
                    }
                    next += sp.n;
                }
                assert_eq!(next, len, "{off}+{len}: the whole request");
            }
        }
    }

    #[test]
    fn concurrent_writers_into_shared_sectors_lose_nothing() {
        let sector = 512u32;
        let img = Arc::new(MemImage::new(vec![0u8; 64 * 512]));
        let seg = segment(0, None, sector, "aes-xts-plain64", 64);
        let vol = Arc::new(Volume::new(img.clone(), &seg, &key(64)).unwrap());
        vol.write_at(&vec![0u8; 64 * 512], 0).unwrap();
        const THREADS: usize = 4;
        const SLOT: usize = 37; // slot i belongs to thread i % THREADS; slots straddle sectors
        let slots = us(vol.size()) / SLOT;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let vol = vol.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng(t as u64 * 7919 + 1);
                    let mut mine = vec![0u8; us(vol.size())];
                    for _ in 0..3000 {
                        let slot = us(rng.below((slots / THREADS) as u64)) * THREADS + t;
                        let start = slot * SLOT + us(rng.below(SLOT as u64));
                        let len = 1 + us(rng.below((slot * SLOT + SLOT - start) as u64));
                        let mut d = vec![0u8; len];
                        rng.fill(&mut d);
                        vol.write_at(&d, start as u64).unwrap();
                        mine[start..start + len].copy_from_slice(&d);
                    }
                    mine
                })
            })
            .collect();
        let models: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut all = vec![0u8; us(vol.size())];
        vol.read_at(&mut all, 0).unwrap();
        for (i, b) in all.iter().enumerate() {
            let slot = i / SLOT;
            let want = if slot < slots {
                models[slot % THREADS][i]
            } else {
                0
            };
            assert_eq!(*b, want, "byte {i}");
        }
    }

    /// A volume over a MemImage (which discards by zeroing its bytes, 512 at a time) filled
    /// with random plaintext; returns it, its image and the plaintext.
    fn filled(sector: u32, offset: u64, sectors: usize) -> (Volume, Arc<MemImage>, Vec<u8>) {
        let img = Arc::new(MemImage::new(vec![
            0u8;
            us(offset) + sectors * sector as usize
        ]));
        let seg = segment(offset, None, sector, "aes-xts-plain64", 64);
        let v = Volume::new(img.clone(), &seg, &key(64)).unwrap();
        let mut plain = vec![0u8; us(v.size())];
        Rng(u64::from(sector) ^ offset).fill(&mut plain);
        v.write_at(&plain, 0).unwrap();
        (v, img, plain)
    }

    #[test]
    fn a_punched_hole_drops_whole_sectors_and_zeroes_partial_ones_through_the_cipher() {
        for (sector, offset) in [(4096u32, 8192u64), (512, 4096), (2048, 0)] {
            let (v, img, mut model) = filled(sector, offset, 8);
            let s = sector as u64;
            // From inside sector 0 to inside sector 5: sectors 1..5 whole, two partial ends.
            let (off, end) = (s / 3, 5 * s + s / 2);
            v.punch_hole(off, end - off).unwrap();
            let stored = img.contents();
            let at = |b: u64| us(offset + b);
            assert!(
                stored[at(s)..at(5 * s)].iter().all(|&b| b == 0),
                "{sector}: whole sectors are dropped (zeros as stored)"
            );
            // They read as the decryption of zeros, as under dm-crypt; the ends as zeros.
            let seg = segment(offset, None, sector, "aes-xts-plain64", 64);
            let decrypted = decrypt_all(&img, &seg, IvUnits::Bytes512);
            model[us(off)..us(s)].fill(0);
            model[us(s)..us(5 * s)].copy_from_slice(&decrypted[us(s)..us(5 * s)]);
            model[us(5 * s)..us(end)].fill(0);
            assert!(
                decrypted[us(s)..us(5 * s)].iter().any(|&b| b != 0),
                "{sector}: the decryption of zeros is not zeros"
            );
            let mut got = vec![0u8; us(v.size())];
            v.read_at(&mut got, 0).unwrap();
            assert!(got == model, "{sector}: bytes outside the range are intact");
            // Inside one sector: nothing is dropped, the bytes are zeroed through the cipher.
            v.punch_hole(6 * s + 1, 10).unwrap();
            model[us(6 * s + 1)..us(6 * s + 11)].fill(0);
            v.read_at(&mut got, 0).unwrap();
            assert!(got == model, "{sector}: a partial sector is zeroed");
            // Past the end: clamped, and nothing before it changes.
            v.punch_hole(v.size() - 3, 1 << 20).unwrap();
            let n = model.len();
            model[n - 3..].fill(0);
            v.read_at(&mut got, 0).unwrap();
            assert!(got == model, "{sector}: a range past the end is clamped");
            assert_eq!(us(img.size()), stored.len(), "the payload never grows");
        }
    }

    #[test]
    fn zero_range_reads_as_plaintext_zeros() {
        let (v, _img, mut model) = filled(4096, 4096, 6);
        v.zero_range(100, 3 * 4096).unwrap();
        model[100..100 + 3 * 4096].fill(0);
        let mut got = vec![0u8; us(v.size())];
        v.read_at(&mut got, 0).unwrap();
        assert!(got == model);
    }

    #[test]
    fn a_segment_off_the_discard_unit_zeroes_instead_of_dropping() {
        // Image units of 64 KiB, the segment at byte 4096: none of the volume's units lines up
        // with one of the image's, so nothing may be dropped.
        struct Coarse(MemImage);
        impl Image for Coarse {
            fn size(&self) -> u64 {
                self.0.size()
            }
            fn read_at(&self, b: &mut [u8], o: u64) -> io::Result<()> {
                self.0.read_at(b, o)
            }
            fn write_at(&self, b: &[u8], o: u64) -> io::Result<()> {
                self.0.write_at(b, o)
            }
            fn flush(&self) -> io::Result<()> {
                Ok(())
            }
            fn writable(&self) -> bool {
                true
            }
            fn discard_granularity(&self) -> Option<u64> {
                Some(65536)
            }
            fn discard(&self, _: u64, _: u64) -> io::Result<()> {
                panic!("no unit of this volume is a unit of the image")
            }
        }
        let img = Arc::new(Coarse(MemImage::new(vec![0u8; 4 << 20])));
        let seg = segment(4096, None, 512, "aes-xts-plain64", 64);
        let v = Volume::new(img, &seg, &key(64)).unwrap();
        v.write_at(&[7u8; 1 << 20], 0).unwrap();
        v.punch_hole(0, 1 << 20).unwrap();
        let mut got = vec![1u8; 1 << 20];
        v.read_at(&mut got, 0).unwrap();
        assert!(got.iter().all(|&b| b == 0), "zeroed through the cipher");
    }

    #[test]
    fn iv_numbers_follow_the_chosen_units() {
        let img = Arc::new(MemImage::new(vec![0u8; 8 * 4096]));
        let mut seg = segment(0, Some(8 * 4096), 4096, "aes-xts-plain64", 64);
        seg.iv_tweak = Sectors512(16);
        let v = Volume::new(img, &seg, &key(64)).unwrap();
        assert_eq!(v.iv(EncSector(3), 0), (Iv(3 * 8 + 16), IvStep(8)));
        let v = v.with_iv_units(IvUnits::Sector);
        assert_eq!(v.iv(EncSector(3), 0), (Iv((3 * 8 + 16) >> 3), IvStep::ONE));
    }

    #[test]
    fn segment_checks() {
        let img: Arc<dyn Image> = Arc::new(MemImage::new(vec![0u8; 4096]));
        let k = key(64);
        let ok = segment(0, None, 512, "aes-xts-plain64", 64);
        assert_eq!(Volume::new(img.clone(), &ok, &k).unwrap().size(), 4096);
        for bad in [
            segment(4096, None, 512, "aes-xts-plain64", 64),
            segment(3700, None, 512, "aes-xts-plain64", 64),
            segment(0, Some(8192), 512, "aes-xts-plain64", 64),
            segment(0, None, 512, "aes-xts-plain64", 32),
            segment(u64::MAX, Some(2), 512, "aes-xts-plain64", 64),
        ] {
            assert!(Volume::new(img.clone(), &bad, &k).is_err(), "{bad:?}");
        }
        // A dynamic segment: whole 512-byte sectors of the payload, which must make whole
        // encryption sectors (4608 bytes are not whole 4096-byte sectors).
        let odd: Arc<dyn Image> = Arc::new(MemImage::new(vec![0u8; 4096 + 512 + 100]));
        let v = Volume::new(odd.clone(), &ok, &k).unwrap();
        assert_eq!(v.size(), 4608);
        let big = segment(0, None, 4096, "aes-xts-plain64", 64);
        let e = Volume::new(odd, &big, &k).err().unwrap();
        assert!(e.message().contains("4096-byte encryption sectors"), "{e}");
        // A segment cannot even hold a bad sector size (it used to be checked here).
        assert!(SectorSize::new(768).is_err());
    }
}
