//! The publish guard: a storage layer under imago that never lets a pointer to a cluster reach
//! the file while that cluster's refcount on disk is still 0 (see the design notes in
//! [`super`]).
//!
//! "Pointers" are the entries of the L1 table (to L2 tables), of the refcount table (to
//! refcount blocks) and the L1/refcount table offsets in the header.
//!
//! Data clusters and L2 entries: imago writes its refcount cache back before its L2 cache when
//! allocating (and the L2 cache first when freeing), but issues both in one go, with no sync
//! between them. A power cut may keep any subset of unsynced writes, so the L2 entry of a new
//! data cluster could survive without its refcount (`refcount=0 reference=1`; found by the
//! crash replayer, tests/crash_replay.rs). So the guard also orders the two classes of writes
//! as QEMU's cache dependencies do: a write that is not to a refcount block, after unsynced
//! refcount block writes, or a refcount block write that lowers an entry, after unsynced
//! other writes, is preceded by an `fdatasync` (see [`Order`]).

use imago::io_buffers::{IoVector, IoVectorMut};
use imago::storage::drivers::CommonStorageHelper;
use imago::storage::PreallocateMode;
use imago::{Storage, StorageOpenOptions};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

mod tables;

pub use tables::Layout;
use tables::{idx, read_be64, read_layout, read_zero_padded, referenced, TableView};
use tables::{HEADER_POINTERS_END, RT_OFFSET_MASK};

/// A refcount entry we wrote ourselves, enforced non-zero in later writes until imago's own
/// write-back has certainly caught up (the next full flush).
#[derive(Debug, Clone, Copy)]
struct Patch {
    /// First byte of the entry (of the byte holding it, for entries narrower than a byte).
    byte: u64,
    /// Refcount width in bits (1..=64).
    bits: u32,
    /// Bit position inside `byte` (entries narrower than a byte; qcow2 packs them LSB first).
    shift: u32,
}

impl Patch {
    fn len(&self) -> u64 {
        (self.bits as u64 / 8).max(1)
    }
    /// Forces the entry non-zero in `buf`, which holds the file bytes from `off` on.
    fn apply(&self, buf: &mut [u8], off: u64) {
        if self.byte < off || self.byte + self.len() > off + buf.len() as u64 {
            return;
        }
        let at = idx(self.byte - off);
        if self.bits >= 8 {
            let entry = &mut buf[at..at + idx(self.len())];
            if entry.iter().all(|&b| b == 0) {
                *entry.last_mut().unwrap() = 1;
            }
        } else {
            let mask = u8::MAX >> (8 - self.bits); // the low `bits` bits (bits < 8)
            if (buf[at] >> self.shift) & mask == 0 {
                buf[at] |= 1 << self.shift;
            }
        }
    }
}

struct State {
    layout: Layout,
    patches: Vec<Patch>,
}

/// Which classes of writes have been issued since the last sync, for the ordering of
/// refcount block writes against all others (see the module notes). Each mark carries the
/// epoch it was made in; a sync clears the marks made before it started.
#[derive(Default)]
struct Order {
    /// Host cluster numbers of the refcount blocks (from the refcount table; `None` until
    /// read, and again after the refcount table changed).
    blocks: Option<std::collections::HashSet<u64>>,
    /// Epoch of the last unsynced refcount block write.
    refcounts: Option<u64>,
    /// Epoch of the last unsynced other write.
    others: Option<u64>,
    epoch: u64,
}

/// The class of a write for [`Order`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Into a refcount block; `lowers` when it decrements an entry (a cluster being freed).
    Refcounts {
        lowers: bool,
    },
    Other,
}

impl Order {
    /// Whether a write of class `c` must wait for a sync of what was written before it.
    fn needs_sync(&self, c: Class) -> bool {
        match c {
            Class::Other => self.refcounts.is_some(),
            Class::Refcounts { lowers } => lowers && self.others.is_some(),
        }
    }
    fn mark(&mut self, c: Class) {
        match c {
            Class::Other => self.others = Some(self.epoch),
            Class::Refcounts { .. } => self.refcounts = Some(self.epoch),
        }
    }
    /// Everything written so far is durable (a sync under `io` held exclusively).
    fn synced(&mut self) {
        self.refcounts = None;
        self.others = None;
    }
}

/// Shared state of the guard over one image file.
pub struct Guard {
    /// Ordinary writes hold it shared; publishing holds it exclusively, so that no write-back
    /// of a refcount block can be in flight between our check and our patch.
    io: RwLock<()>,
    state: Mutex<State>,
    /// Refcount block writes against the others (see [`Order`]).
    order: Mutex<Order>,
    /// Off only for tests that show the window the guard closes.
    enforce: bool,
    /// Pointer writes (offset, bytes) that failed, oldest first, to redo before anything else
    /// reaches the file (see [`GuardedFile::redo_failed`]).
    failed: Mutex<Vec<(u64, Vec<u8>)>>,
    /// Set for good when a write of the header's pointers failed: no write reaches the file
    /// any more (see [`GuardedFile::redo_failed`]).
    poisoned: std::sync::atomic::AtomicBool,
}

impl Guard {
    pub fn new(layout: Layout, enforce: bool) -> Self {
        Guard {
            io: RwLock::new(()),
            state: Mutex::new(State {
                layout,
                patches: Vec::new(),
            }),
            order: Mutex::new(Order::default()),
            enforce,
            failed: Mutex::new(Vec::new()),
            poisoned: false.into(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn order(&self) -> std::sync::MutexGuard<'_, Order> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The class of a write of `new` (`len` bytes; `new` is `None` for zeros) at `off`.
    fn classify(
        &self,
        file: &File,
        off: u64,
        len: u64,
        new: Option<&IoVector<'_>>,
    ) -> io::Result<Class> {
        let layout = self.state().layout;
        let mut o = self.order();
        if o.blocks.is_none() {
            o.blocks = Some(read_refcount_blocks(file, &layout)?);
        }
        let blocks = o.blocks.as_ref().expect("just read");
        let bits = layout.cluster_bits;
        let end = off.saturating_add(len);
        let first = off >> bits;
        let last = end.saturating_sub(1) >> bits;
        let hit = len > 0 && (first..=last).any(|c| blocks.contains(&c));
        drop(o);
        if !hit {
            return Ok(Class::Other);
        }
        // Does it lower an entry? Compare with what the file holds.
        let mut old = vec![0u8; idx(len)];
        read_zero_padded(file, &mut old, off)?;
        let lowers = match new {
            None => old.iter().any(|&b| b != 0),
            Some(new) => {
                let new = GuardedFile::to_vec(new);
                lowers_an_entry(&old, &new, off, layout.refcount_order)
            }
        };
        Ok(Class::Refcounts { lowers })
    }

    /// [`Guard::classify`] when the guard enforces its ordering, else `None` (not ordered).
    fn class_of(
        &self,
        file: &File,
        off: u64,
        len: u64,
        new: Option<&IoVector<'_>>,
    ) -> io::Result<Option<Class>> {
        match self.enforce {
            true => self.classify(file, off, len, new).map(Some),
            false => Ok(None),
        }
    }

    /// Runs `write` (an ordinary write of class `c`, `None` when not ordered) under `io`
    /// shared, after syncing `file` when the ordering of refcount blocks against other writes
    /// needs it.
    fn ordered<T>(
        &self,
        file: &File,
        c: Option<Class>,
        write: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let io = self.io.read().unwrap_or_else(|e| e.into_inner());
            {
                let mut o = self.order();
                if c.is_none_or(|c| !o.needs_sync(c)) {
                    if let Some(c) = c {
                        o.mark(c);
                    }
                    drop(o);
                    let r = write();
                    drop(io);
                    return r;
                }
            }
            drop(io);
            // No write is in flight while we hold `io` exclusively: the sync covers them all.
            let _all = self.io.write().unwrap_or_else(|e| e.into_inner());
            if c.is_some_and(|c| self.order().needs_sync(c)) {
                file.sync_data()?;
                self.order().synced();
            }
        }
    }

    /// Called around imago's sync: `begin` before it (returns the epoch), `end` after it.
    fn sync_begin(&self) -> u64 {
        // Waits for the writes in flight: every write marked before the new epoch has been
        // issued when the sync starts.
        let _all = self.io.write().unwrap_or_else(|e| e.into_inner());
        let mut o = self.order();
        o.epoch += 1;
        o.epoch
    }
    fn sync_end(&self, epoch: u64) {
        let mut o = self.order();
        if o.refcounts.is_some_and(|e| e < epoch) {
            o.refcounts = None;
        }
        if o.others.is_some_and(|e| e < epoch) {
            o.others = None;
        }
    }

    /// The refcount table changed: read the refcount blocks' places again on the next write.
    fn forget_blocks(&self) {
        self.order().blocks = None;
    }

    /// How many refcount patches are remembered (see [`Guard::forget_patches`]).
    pub fn patches_len(&self) -> usize {
        self.state().patches.len()
    }

    /// Forgets the first `n` patches: imago's flush that started after them has written their
    /// refcount blocks from its cache, which holds the same (or a newer) value.
    pub fn forget_patches(&self, n: usize) {
        let mut st = self.state();
        let n = n.min(st.patches.len());
        st.patches.drain(..n);
    }
}

/// The image file as imago sees it: imago's own `File` storage, with the guard in front of its
/// writes (no guard for read-only images and backing files).
pub struct GuardedFile {
    inner: imago::file::File,
    /// The guard and our own handle on the same open file description.
    guarded: Option<(Arc<Guard>, File)>,
    /// Host bytes `[start, end)` no write may touch: the clusters of an embedded LUKS header.
    protect: Option<(u64, u64)>,
}

impl GuardedFile {
    pub fn new(
        file: File,
        path: &Path,
        writable: bool,
        guard: Option<Arc<Guard>>,
        protect: Option<(u64, u64)>,
    ) -> io::Result<Self> {
        let guarded = match guard {
            Some(g) => Some((g, file.try_clone()?)),
            None => None,
        };
        let opts = StorageOpenOptions::new().write(writable).filename(path);
        let inner = imago::file::File::from_open_file(file, opts)?;
        Ok(GuardedFile {
            inner,
            guarded,
            protect,
        })
    }

    /// Refuses a write of `len` bytes at `off` that would touch the protected range (a
    /// hostile image's L2 entry can point a guest cluster into the embedded LUKS header).
    fn check_protected(&self, off: u64, len: u64) -> io::Result<()> {
        match self.protect {
            Some((a, b)) if off < b && a < off.saturating_add(len) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "qcow2: refusing a write of {len} bytes at host byte {off} into the \
                     embedded LUKS header (bytes {a}..{b})"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// [`GuardedFile::redo_failed`] for a guarded file; nothing for another.
    fn redo_any_failed(&self) -> io::Result<()> {
        match &self.guarded {
            Some((guard, file)) => self.redo_failed(guard, file),
            None => Ok(()),
        }
    }

    /// Redoes the pointer writes that failed, oldest first, before any other write reaches
    /// the file (and before a sync): an error of the first one that fails again.
    ///
    /// Why: imago enters a new L2 table into its L1 table (a refcount block into its refcount
    /// table) in memory *before* it writes the entry, and keeps it there when the write
    /// fails. Its later writes then go to a table that nothing on disk points to, and a
    /// later sync would report them durable although they are unreachable: lost (found by
    /// `tests/faults_recfs.rs`). Redoing the same write makes the file agree with imago's
    /// memory again, with the guard's ordering (the refcount first); until it succeeds every
    /// write and sync fails.
    ///
    /// A failed write of the header's pointers cannot be redone so: imago's L1 and refcount
    /// table growth has by then switched its header to the new table but not the table
    /// itself. Then no write reaches the file any more (`EIO`) until the image is reopened;
    /// what is on disk stays consistent (at worst leaking clusters).
    fn redo_failed(&self, guard: &Guard, file: &File) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if guard.poisoned.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "qcow2: an earlier write of the image header's table pointers failed; no \
                 more writes until the image is reopened",
            ));
        }
        let mut failed = guard.failed.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((off, buf)) = failed.first() {
            self.publish_once(guard, file, buf, *off)?;
            log::info!(
                "qcow2: the pointer write of {} bytes at host byte {off} that failed went \
                 through now",
                buf.len()
            );
            failed.remove(0);
        }
        Ok(())
    }

    /// [`GuardedFile::publish_once`] after the failed pointer writes are redone; a failure is
    /// remembered to be redone (see [`GuardedFile::redo_failed`]).
    fn publish(&self, guard: &Guard, file: &File, buf: &[u8], off: u64) -> io::Result<()> {
        let done = self
            .redo_failed(guard, file)
            .and_then(|()| self.publish_once(guard, file, buf, off));
        done.inspect_err(|e| {
            if off < HEADER_POINTERS_END {
                guard
                    .poisoned
                    .store(true, std::sync::atomic::Ordering::Release);
                log::error!(
                    "qcow2: a write of the header's table pointers failed ({e}); no more \
                     writes to this image until it is reopened"
                );
            } else {
                let mut failed = guard.failed.lock().unwrap_or_else(|e| e.into_inner());
                failed.push((off, buf.to_vec()));
                log::warn!(
                    "qcow2: the pointer write of {} bytes at host byte {off} failed ({e}); it \
                     is redone before any other write or sync",
                    buf.len()
                );
            }
        })
    }

    /// A write that may change a pointer: make every newly referenced cluster's refcount
    /// non-zero and durable first, then write, then re-read the layout if the header changed.
    fn publish_once(&self, guard: &Guard, file: &File, buf: &[u8], off: u64) -> io::Result<()> {
        let _io = guard.io.write().unwrap_or_else(|e| e.into_inner());
        let mut st = guard.state();
        let layout = st.layout;
        let touches_l1 = hits(layout.l1_range(), off, buf.len());
        if guard.enforce {
            let mut old = vec![0u8; buf.len()];
            read_zero_padded(file, &mut old, off)?;
            for (cluster, table) in referenced(&layout, file, &old, buf, off)? {
                ensure_refcount(&mut st, file, cluster, table)?;
            }
            // The refcounts and the contents of the newly referenced tables go first.
            file.sync_data()?;
            guard.order().synced();
        }
        // SAFETY (imago's contract for `pure_*`): we forward imago's own request unchanged.
        unsafe { self.inner.pure_writev(IoVector::from(&buf.to_vec()), off) }?;
        if off < HEADER_POINTERS_END {
            st.layout = read_layout(file, layout)?;
        }
        if off < HEADER_POINTERS_END || hits(layout.rt_range(), off, buf.len()) {
            guard.forget_blocks();
        }
        // A pointer write counts as an other write: a later refcount decrement (of the table
        // it no longer points to) must not overtake it.
        guard.order().mark(Class::Other);
        #[cfg(test)]
        if touches_l1 {
            crash_point::after_l1_write();
        }
        let _ = touches_l1;
        Ok(())
    }

    /// Copies `bufv` into a vector (only for the rare writes the guard has to look at).
    fn to_vec(bufv: &IoVector<'_>) -> Vec<u8> {
        let mut v = vec![0u8; idx(bufv.len())];
        bufv.copy_into_slice(&mut v);
        v
    }

    /// Classifies a write and sends it down the right path.
    fn guarded_write(&self, bufv: IoVector<'_>, off: u64) -> io::Result<()> {
        let Some((guard, file)) = &self.guarded else {
            // SAFETY: forwarded unchanged (see `publish`).
            return unsafe { self.inner.pure_writev(bufv, off) };
        };
        self.redo_failed(guard, file)?;
        let len = bufv.len();
        let order = guard.class_of(file, off, len, Some(&bufv))?;
        // Under `io` shared (held by `ordered` around this): no publish can come between the
        // look at the layout and patches and the write.
        let publish = guard.ordered(file, order, || {
            let (publish, patches) = {
                let st = guard.state();
                let patches: Vec<Patch> = st
                    .patches
                    .iter()
                    .filter(|p| p.byte < off + len && off < p.byte + p.len())
                    .copied()
                    .collect();
                (st.layout.is_publish(off, len), patches)
            };
            if publish {
                return Ok(Some(Self::to_vec(&bufv)));
            }
            if patches.is_empty() {
                // SAFETY: forwarded unchanged.
                unsafe { self.inner.pure_writev(bufv, off) }?;
                return Ok(None);
            }
            // A write-back of a refcount block we patched: keep our entries non-zero.
            let mut buf = Self::to_vec(&bufv);
            for p in &patches {
                p.apply(&mut buf, off);
            }
            // SAFETY: imago's request with only our refcount entries forced non-zero.
            unsafe { self.inner.pure_writev(IoVector::from(&buf), off) }?;
            Ok(None)
        })?;
        match publish {
            Some(buf) => self.publish(guard, file, &buf, off),
            None => Ok(()),
        }
    }

    /// A zero write or discard of class-checked bytes, ordered (see [`Order`]).
    fn ordered_zeroes(
        &self,
        off: u64,
        len: u64,
        op: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        match &self.guarded {
            Some((g, file)) => g.ordered(file, g.class_of(file, off, len, None)?, op),
            None => op(),
        }
    }

    /// Whether a zero write must go through the byte path (it touches what the guard watches).
    fn zeroes_need_bytes(&self, off: u64, len: u64) -> bool {
        let Some((guard, _)) = &self.guarded else {
            return false;
        };
        let st = guard.state();
        st.layout.is_publish(off, len)
            || st
                .patches
                .iter()
                .any(|p| p.byte < off + len && off < p.byte + p.len())
    }
}

/// A zero write's length as a buffer length (refused, not truncated, if it does not fit).
fn zeroes_len(length: u64) -> io::Result<usize> {
    let big = || io::Error::new(io::ErrorKind::InvalidInput, "qcow2: zero write too large");
    usize::try_from(length).map_err(|_| big())
}

fn hits((a, b): (u64, u64), off: u64, len: usize) -> bool {
    off < b && a < off + len as u64
}

/// The host cluster numbers of the refcount blocks the refcount table on disk names.
fn read_refcount_blocks(
    file: &File,
    layout: &Layout,
) -> io::Result<std::collections::HashSet<u64>> {
    let (a, b) = layout.rt_range();
    // The refcount table was bounded by imago at open (and is rewritten by imago only).
    let mut table = vec![0u8; idx(b.saturating_sub(a))];
    read_zero_padded(file, &mut table, a)?;
    Ok(table
        .chunks_exact(8)
        .map(|e| u64::from_be_bytes(e.try_into().expect("8 bytes")) & RT_OFFSET_MASK)
        .filter(|&o| o != 0)
        .map(|o| o >> layout.cluster_bits)
        .collect())
}

/// Whether `new` (replacing `old` at file offset `off`, inside refcount blocks of entries of
/// `1 << order` bits) makes any entry smaller. Entries cut by the write's ends are compared
/// by the bytes present (a write-back covers whole blocks, so this is exact in practice).
fn lowers_an_entry(old: &[u8], new: &[u8], off: u64, order: u32) -> bool {
    let bits = 1usize << order;
    if bits < 8 {
        // Several entries per byte, LSB first.
        let mask = ((1u16 << bits) - 1) as u8;
        return old.iter().zip(new).any(|(&o, &n)| {
            (0..8 / bits).any(|i| (n >> (i * bits)) & mask < (o >> (i * bits)) & mask)
        });
    }
    let w = bits / 8;
    let skew = idx(off % w as u64);
    let start = if skew == 0 { 0 } else { w - skew };
    old[start.min(old.len())..]
        .chunks(w)
        .zip(new[start.min(new.len())..].chunks(w))
        .any(|(o, n)| n < o)
}

/// Makes the on-disk refcount of `cluster` non-zero, writing 1 if it is 0.
fn ensure_refcount(st: &mut State, file: &File, cluster: u64, view: TableView) -> io::Result<()> {
    let l = st.layout;
    let bits = 1u32 << l.refcount_order;
    let rb_entries = (l.cluster_size() * 8) / bits as u64;
    let (rt_index, rb_index) = (cluster / rb_entries, cluster % rb_entries);
    let (rt_offset, rt_clusters) = view.rt.unwrap_or((l.rt_offset, l.rt_clusters));
    let rb = match view.overlay.iter().find(|(i, _)| *i == rt_index) {
        Some(&(_, rb)) => rb,
        None if rt_index < (rt_clusters << l.cluster_bits) / 8 => {
            read_be64(file, rt_offset + 8 * rt_index)? & RT_OFFSET_MASK
        }
        None => 0,
    };
    if rb == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("qcow2: no refcount block covers cluster {cluster} being referenced"),
        ));
    }
    let bit = rb_index * bits as u64;
    let patch = Patch {
        byte: rb + bit / 8,
        bits,
        shift: (bit % 8) as u32,
    };
    let mut entry = vec![0u8; idx(patch.len())];
    read_zero_padded(file, &mut entry, patch.byte)?;
    let before = entry.clone();
    patch.apply(&mut entry, patch.byte);
    if entry != before {
        file.write_all_at(&entry, patch.byte)?;
        st.patches.push(patch);
    }
    Ok(())
}

impl fmt::Debug for GuardedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedFile")
            .field("inner", &self.inner)
            .field("guarded", &self.guarded.is_some())
            .finish()
    }
}

impl fmt::Display for GuardedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl Storage for GuardedFile {
    /// Used by imago for backing files only: read-only, unguarded.
    fn open(opts: StorageOpenOptions) -> io::Result<Self> {
        Ok(GuardedFile {
            inner: imago::file::File::open(opts.write(false))?,
            guarded: None,
            protect: None,
        })
    }
    fn mem_align(&self) -> usize {
        self.inner.mem_align()
    }
    fn req_align(&self) -> usize {
        self.inner.req_align()
    }
    fn zero_align(&self) -> usize {
        self.inner.zero_align()
    }
    fn discard_align(&self) -> usize {
        self.inner.discard_align()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn resolve_relative_path<P: AsRef<Path>>(&self, relative: P) -> io::Result<PathBuf> {
        self.inner.resolve_relative_path(relative)
    }
    fn get_filename(&self) -> Option<PathBuf> {
        self.inner.get_filename()
    }
    unsafe fn pure_readv(&self, bufv: IoVectorMut<'_>, offset: u64) -> io::Result<()> {
        // SAFETY: imago's request, forwarded unchanged.
        unsafe { self.inner.pure_readv(bufv, offset) }
    }
    unsafe fn pure_writev(&self, bufv: IoVector<'_>, offset: u64) -> io::Result<()> {
        self.check_protected(offset, bufv.len())?;
        self.guarded_write(bufv, offset)
    }
    unsafe fn pure_write_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        self.check_protected(offset, length)?;
        if self.zeroes_need_bytes(offset, length) {
            let zeros = vec![0u8; zeroes_len(length)?];
            return self.guarded_write(IoVector::from(&zeros), offset);
        }
        self.redo_any_failed()?;
        // SAFETY: forwarded unchanged.
        self.ordered_zeroes(offset, length, || unsafe {
            self.inner.pure_write_zeroes(offset, length)
        })
    }
    unsafe fn pure_write_allocated_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        self.check_protected(offset, length)?;
        if self.zeroes_need_bytes(offset, length) {
            let zeros = vec![0u8; zeroes_len(length)?];
            return self.guarded_write(IoVector::from(&zeros), offset);
        }
        self.redo_any_failed()?;
        // SAFETY: forwarded unchanged.
        self.ordered_zeroes(offset, length, || unsafe {
            self.inner.pure_write_allocated_zeroes(offset, length)
        })
    }
    unsafe fn pure_discard(&self, offset: u64, length: u64) -> io::Result<()> {
        self.check_protected(offset, length)?;
        self.redo_any_failed()?;
        // SAFETY: forwarded unchanged.
        self.ordered_zeroes(offset, length, || unsafe {
            self.inner.pure_discard(offset, length)
        })
    }
    fn flush(&self) -> io::Result<()> {
        self.redo_any_failed()?;
        self.inner.flush()
    }
    fn sync(&self) -> io::Result<()> {
        // No sync may report durable what a failed pointer write left unreachable.
        self.redo_any_failed()?;
        match &self.guarded {
            Some((g, _)) if g.enforce => {
                let epoch = g.sync_begin();
                self.inner.sync()?;
                g.sync_end(epoch);
                Ok(())
            }
            _ => self.inner.sync(),
        }
    }
    fn settle_writes(&self) -> io::Result<()> {
        self.inner.settle_writes()
    }
    unsafe fn invalidate_cache(&self) -> io::Result<()> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.invalidate_cache() }
    }
    fn get_storage_helper(&self) -> &CommonStorageHelper {
        self.inner.get_storage_helper()
    }
    fn resize(&self, new_size: u64, prealloc_mode: PreallocateMode) -> io::Result<()> {
        self.inner.resize(new_size, prealloc_mode)
    }
}

/// Test-only fault injection: abort the process right after the N-th write to the L1 table
/// (`LUKSFUSE_QCOW2_ABORT_AFTER_L1=N`), i.e. inside the window the guard closes.
#[cfg(test)]
pub mod crash_point {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LEFT: AtomicI64 = AtomicI64::new(i64::MIN);

    pub fn after_l1_write() {
        if LEFT.load(Ordering::SeqCst) == i64::MIN {
            let n = std::env::var("LUKSFUSE_QCOW2_ABORT_AFTER_L1")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            let _ = LEFT.compare_exchange(i64::MIN, n, Ordering::SeqCst, Ordering::SeqCst);
        }
        if LEFT.fetch_sub(1, Ordering::SeqCst) == 1 {
            std::process::abort();
        }
    }
}
