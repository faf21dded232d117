//! In-place encryption and decryption of a payload (`luksfuse encrypt` / `luksfuse decrypt`):
//! the data mover. What is recorded in the header, and how, is the [`Ledger`]'s business
//! (`luks::luks2::reencrypt` keeps it exactly as `cryptsetup reencrypt` does); this module
//! only moves bytes, in an order that lets any crash be repaired.
//!
//! # The order of one step
//!
//! The payload is converted one *hotzone* at a time: forward from the start when encrypting,
//! backward from the end when decrypting (cryptsetup's directions). For each hotzone:
//!
//! 1. read its old bytes as stored;
//! 2. [`Ledger::protect`]: the ledger records what it needs to repair the hotzone (checksums
//!    of the old bytes, or the old bytes themselves) and marks it *hot*, durably;
//! 3. convert the bytes in memory (decrypt with the old key, encrypt with the new one) and
//!    write them back over the same range, then flush the payload (`fdatasync`);
//! 4. [`Ledger::advance`]: the hotzone joins the converted part, durably.
//!
//! A crash before step 2 completes leaves the hotzone untouched and not hot; one between 2 and
//! 4 leaves it hot, each of its blocks either old or new (or, after a power cut, torn inside
//! a block). A later run first repairs a hot hotzone ([`Recovery`]): with checksums, a block
//! whose bytes still hash to the recorded old value is converted, any other is taken as new
//! (as cryptsetup decides); with a journal, the recorded old bytes are converted and written
//! over the whole hotzone. Only then does it go on with the next hotzone.
//!
//! # Holes
//!
//! A hole of a qcow2 payload (an unallocated or zero cluster) reads as zeros *as stored*.
//! After encryption a reader through a detached header (QEMU's `luks` driver over the qcow2
//! node, or luksfuse) decrypts those zeros into noise, so by default every hole is written
//! with the encryption of zeros (allocating it): every byte then reads the same before and
//! after. With [`Options::keep_holes`] holes stay holes (no space is used) and read as noise
//! afterwards, which is safe only when nothing above reads bytes it never wrote (a file
//! system's free space; after `fstrim` every freed cluster is such a hole). Decryption with
//! `keep_holes` leaves holes too: they read as zeros again, as before encryption.

use crate::crypto::hash::HashAlg;
use crate::crypto::SectorCipher;
use crate::error::{Error, Result};
use crate::image::{Extent, Image};
use crate::units::{Iv, IvStep, SectorSize};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Which way the conversion walks the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the start (encryption).
    Forward,
    /// From the end (decryption).
    Backward,
}

/// What a previous run left to repair a hot hotzone with.
pub enum Recovery {
    /// `hash` of each `block`-byte block of the hotzone's old bytes, concatenated.
    Checksums {
        hash: HashAlg,
        block: usize,
        sums: Vec<u8>,
    },
    /// The hotzone's old bytes (plaintext when encrypting: kept in locked, wiped memory).
    Journal(crate::secret::Secret),
    /// Nothing (resilience `none`): a hot hotzone cannot be repaired.
    Unprotected,
}

/// The record of progress kept in the header.
pub trait Ledger {
    /// The direction of the run.
    fn direction(&self) -> Direction;
    /// The bytes already converted: `0..d` forward, `d..size` backward.
    fn converted(&self) -> Range<u64>;
    /// The hotzone a previous run died in, if any.
    fn hot(&self) -> Option<Range<u64>>;
    /// The longest hotzone the ledger can protect, and the unit hotzones are cut in (the
    /// checksum block, a multiple of both sector sizes).
    fn hotzone_limits(&self) -> (u64, u64);
    /// What the previous run left to repair [`Ledger::hot`] with.
    fn recovery(&self) -> Result<Recovery>;
    /// The hash and block size of the checksums [`Ledger::protect`] records, if it records
    /// checksums: the mover then computes them (on every core, while the previous hotzone
    /// is written) and passes them in.
    fn checksum(&self) -> Option<(HashAlg, usize)>;
    /// Step 2: make `hot` recoverable from its `old` bytes (whose [`checksums`] are `sums`
    /// when [`Ledger::checksum`] asks for them), durably, before they change.
    fn protect(&mut self, hot: Range<u64>, old: &[u8], sums: Option<&[u8]>) -> Result<()>;
    /// Step 4: the hot hotzone's new bytes are durable; it joins the converted part.
    fn advance(&mut self) -> Result<()>;
    /// Records the converted part when the run stops early (needed only where `protect` and
    /// `advance` record nothing, for resilience `none`).
    fn checkpoint(&mut self) -> Result<()>;
}

/// One side of the conversion: how the bytes are stored (a cipher, or plaintext).
pub struct Layout {
    cipher: Option<(SectorCipher, SectorSize, u64)>,
}

impl Layout {
    /// Plaintext (a LUKS2 `linear` segment).
    pub fn plain() -> Self {
        Layout { cipher: None }
    }
    /// Encrypted with `cipher` in sectors of `sector`, IV numbers counting 512-byte units from
    /// the payload's start plus `iv_tweak` (LUKS2's rule; see `volume`).
    pub fn encrypted(cipher: SectorCipher, sector: SectorSize, iv_tweak: u64) -> Self {
        Layout {
            cipher: Some((cipher, sector, iv_tweak)),
        }
    }
    fn sector(&self) -> u64 {
        self.cipher.as_ref().map_or(512, |c| c.1.as_u64())
    }
    fn iv(&self, off: u64, sector: SectorSize, tweak: u64) -> (Iv, IvStep) {
        (Iv((off / 512).wrapping_add(tweak)), sector.ivs_per_sector())
    }
    fn decrypt(&self, buf: &mut [u8], off: u64) {
        if let Some((c, s, t)) = &self.cipher {
            let (iv, step) = self.iv(off, *s, *t);
            c.decrypt_sectors(buf, *s, iv, step);
        }
    }
    fn encrypt(&self, buf: &mut [u8], off: u64) {
        if let Some((c, s, t)) = &self.cipher {
            let (iv, step) = self.iv(off, *s, *t);
            c.encrypt_sectors(buf, *s, iv, step);
        }
    }
}

/// Turns bytes stored in the `old` layout into the `new` one.
pub struct Converter {
    pub old: Layout,
    pub new: Layout,
}

impl Converter {
    /// The largest sector of either side: hotzones and holes are cut in multiples of it.
    pub fn unit(&self) -> u64 {
        self.old.sector().max(self.new.sector())
    }

    /// Converts `buf`, stored at payload byte `off`, in place, on every core (the pieces are
    /// whole sectors of both sides).
    pub fn convert(&self, buf: &mut [u8], off: u64) {
        let unit = usize::try_from(self.unit()).expect("sector sizes fit usize");
        parallel_chunks(buf, unit, |piece, at| {
            let at = off + at as u64;
            self.old.decrypt(piece, at);
            self.new.encrypt(piece, at);
        });
    }
}

/// Runs `f(piece, offset of piece in buf)` over `buf` cut into one piece per core, each a
/// multiple of `unit` bytes (the last may be shorter only when `buf` is).
fn parallel_chunks(buf: &mut [u8], unit: usize, f: impl Fn(&mut [u8], usize) + Sync) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below 1 MiB a thread costs more than it saves.
    let pieces = cores.min(buf.len() / (1 << 20)).max(1);
    let per = buf.len().div_ceil(pieces).div_ceil(unit) * unit;
    if pieces == 1 || per == 0 {
        f(buf, 0);
        return;
    }
    std::thread::scope(|s| {
        let f = &f;
        for (i, piece) in buf.chunks_mut(per).enumerate() {
            s.spawn(move || f(piece, i * per));
        }
    });
}

/// The checksums cryptsetup records for resilience `checksum`: `hash` of each `block` bytes of
/// `data` (whose length is a multiple of `block`), concatenated; computed on every core.
pub fn checksums(hash: HashAlg, block: usize, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; data.len() / block * hash.len()];
    hash.hash_blocks(block, data, &mut out);
    out
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hotzone length in bytes (cut down to what the ledger allows).
    pub hotzone: u64,
    /// Leave holes of the payload holes (see the module notes).
    pub keep_holes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hotzone: DEFAULT_HOTZONE,
            keep_holes: false,
        }
    }
}

/// The default hotzone: 64 MiB (a buffer of that size; larger ones were no faster here).
pub const DEFAULT_HOTZONE: u64 = 64 << 20;

/// Where a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte is converted; the header can be finished.
    Done,
    /// Stopped by the caller at a resumable point.
    Stopped,
}

/// What a run did, for its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes converted by this run (hotzones written, repaired ones included).
    pub converted: u64,
    /// Bytes of a hot hotzone repaired first.
    pub repaired: u64,
    /// Bytes left as holes.
    pub holes: u64,
}

/// Converts the rest of `image` in place as `ledger` records it, `opts.hotzone` bytes at a
/// time, until done or until `stop` is set (checked between hotzones). `progress` gets the
/// bytes converted so far and the total after each hotzone.
pub fn run(
    ledger: &mut dyn Ledger,
    image: &dyn Image,
    conv: &Converter,
    opts: &Options,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Outcome, Summary)> {
    let size = image.size();
    let (max, align) = ledger.hotzone_limits();
    let unit = conv.unit().max(align);
    if !size.is_multiple_of(unit) {
        return Err(Error::usage(format!(
            "payload size {size} is not a multiple of {unit} bytes (the sector or checksum block)"
        )));
    }
    let hotzone = opts.hotzone.min(max) / unit * unit;
    if hotzone == 0 {
        return Err(Error::usage(format!(
            "hotzone of {} bytes is below the {unit}-byte unit",
            opts.hotzone.min(max)
        )));
    }
    let mut summary = Summary::default();
    let mut buf = Vec::new();
    if let Some(hot) = ledger.hot() {
        check_within(&hot, size, unit)?;
        summary.repaired = repair(ledger, image, conv, opts, &hot, &mut buf, &mut summary)?;
        ledger.advance()?;
        summary.converted += summary.repaired;
    }
    let dir = ledger.direction();
    let zones = zones(dir, ledger.converted(), hotzone, size);
    let checksum = ledger.checksum();
    let reader_zones = zones.clone();
    std::thread::scope(|s| {
        // Two buffers circulate: a reader thread fills one with the next hotzone's old bytes
        // (and their checksums) while this thread converts and writes the other. The
        // channels' ends on this side belong to this closure, so an early return drops them
        // and the reader stops before the scope waits for it.
        let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Zone>>(1);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..2 {
            empty_tx.send(Vec::new()).expect("the receiver is here");
        }
        s.spawn(move || {
            for range in reader_zones {
                let Ok(mut buf) = empty_rx.recv() else { return };
                buf.resize(
                    usize::try_from(range.end - range.start).expect("fits memory"),
                    0,
                );
                let zone = image.read_at(&mut buf, range.start).map(|()| {
                    let sums = checksum.map(|(h, b)| checksums(h, b, &buf));
                    Zone { range, buf, sums }
                });
                if full_tx.send(zone).is_err() {
                    return;
                }
            }
        });
        for range in &zones {
            let done = ledger.converted();
            progress(done.end - done.start, size);
            if stop.load(Ordering::SeqCst) {
                ledger.checkpoint()?;
                return Ok((Outcome::Stopped, summary));
            }
            check_within(range, size, unit)?;
            let mut zone = full_rx
                .recv()
                .expect("the reader sends every zone")
                .map_err(|e| payload_err("read", range, &e))?;
            debug_assert_eq!(&zone.range, range);
            ledger.protect(range.clone(), &zone.buf, zone.sums.as_deref())?;
            summary.holes += write_converted(image, conv, opts, &mut zone.buf, range.start, None)?;
            image.flush().map_err(|e| payload_err("flush", range, &e))?;
            ledger.advance()?;
            summary.converted += range.end - range.start;
            let _ = empty_tx.send(zone.buf);
        }
        let done = ledger.converted();
        progress(done.end - done.start, size);
        Ok((Outcome::Done, summary))
    })
}

/// A hotzone read ahead: its old bytes and, when asked for, their checksums.
struct Zone {
    range: Range<u64>,
    buf: Vec<u8>,
    sums: Option<Vec<u8>>,
}

/// The hotzones still to convert, in order, from the `converted` part on.
fn zones(dir: Direction, converted: Range<u64>, hotzone: u64, size: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    match dir {
        Direction::Forward => {
            let mut at = converted.end;
            while at < size {
                let end = at.saturating_add(hotzone).min(size);
                out.push(at..end);
                at = end;
            }
        }
        Direction::Backward => {
            let mut at = converted.start;
            while at > 0 {
                let start = at.saturating_sub(hotzone);
                out.push(start..at);
                at = start;
            }
        }
    }
    out
}

fn check_within(r: &Range<u64>, size: u64, unit: u64) -> Result<()> {
    if r.start > r.end || r.end > size || !r.start.is_multiple_of(unit) {
        return Err(Error::format(format!(
            "hotzone {}..{} does not fit the payload ({size} bytes, {unit}-byte units)",
            r.start, r.end
        )));
    }
    Ok(())
}

fn payload_err(what: &str, r: &Range<u64>, e: &std::io::Error) -> Error {
    Error::new(
        crate::error::Kind::Device,
        format!("payload {what} of bytes {}..{} failed: {e}", r.start, r.end),
    )
}

/// Converts `buf` (old bytes stored at `off`) and writes it back, skipping holes when asked
/// and, with `only`, every block whose flag is false. Returns the bytes left as holes.
fn write_converted(
    image: &dyn Image,
    conv: &Converter,
    opts: &Options,
    buf: &mut [u8],
    off: u64,
    only: Option<(&[bool], usize)>,
) -> Result<u64> {
    conv.convert(buf, off);
    let len = buf.len() as u64;
    // Runs of bytes to write: the whole buffer, less holes and unselected blocks.
    let mut runs: Vec<Range<u64>> = if opts.keep_holes {
        stored_runs(image, off, len)?
    } else {
        std::iter::once(0..len).collect()
    };
    let mut holes = len - runs.iter().map(|r| r.end - r.start).sum::<u64>();
    if let Some((sel, block)) = only {
        let block = block as u64;
        runs = runs
            .into_iter()
            .flat_map(|r| split_selected(r, sel, block))
            .collect();
        holes = 0;
    }
    for r in runs {
        let (a, b) = (r.start as usize, r.end as usize);
        let at = off + r.start;
        image
            .write_at(&buf[a..b], at)
            .map_err(|e| payload_err("write", &(at..off + r.end), &e))?;
    }
    Ok(holes)
}

/// The parts of `off..off+len` that hold storage, relative to `off`.
fn stored_runs(image: &dyn Image, off: u64, len: u64) -> Result<Vec<Range<u64>>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    let mut at = 0;
    while at < len {
        let (ext, n) = image
            .extent(off + at, len - at)
            .map_err(|e| payload_err("map", &(off + at..off + len), &e))?;
        let n = n.clamp(1, len - at);
        if matches!(ext, Extent::Stored { .. }) {
            push_run(&mut runs, at..at + n);
        }
        at += n;
    }
    Ok(runs)
}

/// Appends `r` to `runs`, joining it to the last run when they touch.
fn push_run(runs: &mut Vec<Range<u64>>, r: Range<u64>) {
    match runs.last_mut() {
        Some(last) if last.end == r.start => last.end = r.end,
        _ => runs.push(r),
    }
}

/// The parts of `r` (relative bytes) whose `block`-sized blocks are selected.
fn split_selected(r: Range<u64>, sel: &[bool], block: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    let mut at = r.start;
    while at < r.end {
        let i = (at / block) as usize;
        let end = ((at / block + 1) * block).min(r.end);
        if sel.get(i).copied().unwrap_or(false) {
            push_run(&mut out, at..end);
        }
        at = end;
    }
    out
}

/// Repairs the hot hotzone `hot` from what the previous run recorded; returns its length.
fn repair(
    ledger: &mut dyn Ledger,
    image: &dyn Image,
    conv: &Converter,
    opts: &Options,
    hot: &Range<u64>,
    buf: &mut Vec<u8>,
    summary: &mut Summary,
) -> Result<u64> {
    let len = usize::try_from(hot.end - hot.start).expect("hotzone fits memory");
    match ledger.recovery()? {
        Recovery::Journal(old) => {
            let old = old.as_bytes();
            if old.len() < len {
                return Err(Error::format(format!(
                    "the reencryption journal holds {} bytes, the hotzone {len}",
                    old.len()
                )));
            }
            buf.clear();
            buf.extend_from_slice(&old[..len]);
            summary.holes += write_converted(image, conv, opts, buf, hot.start, None)?;
        }
        Recovery::Checksums { hash, block, sums } => {
            if block == 0 || !len.is_multiple_of(block) || sums.len() < len / block * hash.len() {
                return Err(Error::format(format!(
                    "the reencryption checksums ({} bytes of {block}-byte blocks) do not cover the \
                     {len}-byte hotzone",
                    sums.len()
                )));
            }
            buf.resize(len, 0);
            image
                .read_at(buf, hot.start)
                .map_err(|e| payload_err("read", hot, &e))?;
            let now = checksums(hash, block, buf);
            let n = hash.len();
            // A block still holding its old bytes (its checksum matches) needs converting.
            let old: Vec<bool> = now
                .chunks(n)
                .zip(sums.chunks(n))
                .map(|(a, b)| a == b)
                .collect();
            log::info!(
                "repairing hotzone {}..{}: {} of {} blocks still old",
                hot.start,
                hot.end,
                old.iter().filter(|o| **o).count(),
                old.len()
            );
            // A hole reads as zeros, old or new: with keep_holes it is left alone.
            write_converted(image, conv, opts, buf, hot.start, Some((&old, block)))?;
        }
        Recovery::Unprotected => {
            return Err(Error::unsupported(format!(
                "bytes {}..{} were being converted without resilience data (resilience none): \
                 they cannot be repaired",
                hot.start, hot.end
            )));
        }
    }
    image.flush().map_err(|e| payload_err("flush", hot, &e))?;
    Ok(hot.end - hot.start)
}

mod ledger;
pub use ledger::converter;

#[cfg(test)]
mod tests;
