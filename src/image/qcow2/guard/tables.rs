//! The qcow2 pointer tables as the guard sees them: where they are ([`Layout`], from the
//! header) and which clusters a write into them makes referenced ([`referenced`]). Plain
//! reads and arithmetic, no `unsafe`: the guard's storage layer ([`super`]) uses them.
#![deny(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// L1 entry bits 9..=55: offset of the L2 table (qcow2 spec, "Cluster mapping").
const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Refcount table entry bits 9..=63: offset of the refcount block.
pub(super) const RT_OFFSET_MASK: u64 = !0x1ff;
/// The header bytes that hold the L1 and refcount table pointers end here.
pub(super) const HEADER_POINTERS_END: u64 = HEADER_POINTERS_LEN as u64;
/// [`HEADER_POINTERS_END`] as a buffer length.
const HEADER_POINTERS_LEN: usize = 60;

/// `n` as an index into (or length of) an in-memory buffer, where the caller has checked
/// that it lies inside one: it then fits, and a failure is a bug, not bad input.
pub(super) fn idx(n: u64) -> usize {
    usize::try_from(n).expect("an offset inside an in-memory buffer")
}

/// Where the pointer tables are (from the header; updated when the header changes).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub cluster_bits: u32,
    pub refcount_order: u32,
    pub l1_offset: u64,
    pub l1_entries: u64,
    pub rt_offset: u64,
    pub rt_clusters: u64,
}

impl Layout {
    pub(super) fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    pub(super) fn l1_range(&self) -> (u64, u64) {
        (self.l1_offset, self.l1_offset + 8 * self.l1_entries)
    }
    pub(super) fn rt_range(&self) -> (u64, u64) {
        (
            self.rt_offset,
            self.rt_offset + (self.rt_clusters << self.cluster_bits),
        )
    }
    /// Whether a write of `len` bytes at `off` may change a pointer.
    pub(super) fn is_publish(&self, off: u64, len: u64) -> bool {
        let end = off + len;
        let hits = |(a, b): (u64, u64)| off < b && a < end;
        off < HEADER_POINTERS_END || hits(self.l1_range()) || hits(self.rt_range())
    }
}

pub(super) fn read_zero_padded(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    buf[done..].fill(0);
    Ok(())
}

pub(super) fn read_be64(file: &File, off: u64) -> io::Result<u64> {
    let mut b = [0u8; 8];
    read_zero_padded(file, &mut b, off)?;
    Ok(u64::from_be_bytes(b))
}

/// Reads the pointer fields of the header from the file.
pub(super) fn read_layout(file: &File, old: Layout) -> io::Result<Layout> {
    let mut h = [0u8; HEADER_POINTERS_LEN];
    read_zero_padded(file, &mut h, 0)?;
    Ok(header_layout(&h, old))
}

fn header_layout(h: &[u8], old: Layout) -> Layout {
    let be32 = |at: usize| u32::from_be_bytes(h[at..at + 4].try_into().unwrap()) as u64;
    let be64 = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().unwrap());
    Layout {
        l1_entries: be32(36),
        l1_offset: be64(40),
        rt_offset: be64(48),
        rt_clusters: be32(56),
        ..old
    }
}

/// Which refcount table a lookup goes through: the one on disk, or one about to be published
/// (its location, and entries being written in this very request).
#[derive(Debug, Clone, Default)]
pub(super) struct TableView {
    pub(super) rt: Option<(u64, u64)>,
    pub(super) overlay: Vec<(u64, u64)>,
}

/// The clusters that `new` (replacing `old` at `off`) makes referenced.
pub(super) fn referenced(
    layout: &Layout,
    file: &File,
    old: &[u8],
    new: &[u8],
    off: u64,
) -> io::Result<Vec<(u64, TableView)>> {
    let mut out = Vec::new();
    let cb = layout.cluster_bits;
    // Changed 8-byte entries of a table at `table_off` with `n` entries.
    let changed = |table_off: u64, n: u64| -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for i in 0..n {
            let at = table_off + 8 * i;
            if at < off || at + 8 > off + new.len() as u64 {
                continue;
            }
            let r = idx(at - off)..idx(at - off) + 8;
            if new[r.clone()] != old[r.clone()] {
                v.push((i, u64::from_be_bytes(new[r].try_into().unwrap())));
            }
        }
        v
    };
    let first = |t: u64| off.saturating_sub(t) / 8;
    // L1 entries: new L2 tables.
    let (l1a, l1b) = layout.l1_range();
    if off < l1b && l1a < off + new.len() as u64 {
        let skip = first(l1a);
        for (_, e) in changed(l1a + 8 * skip, layout.l1_entries - skip) {
            if e & L1_OFFSET_MASK != 0 {
                out.push(((e & L1_OFFSET_MASK) >> cb, TableView::default()));
            }
        }
    }
    // Refcount table entries: new refcount blocks (which may count themselves).
    let (rta, rtb) = layout.rt_range();
    if off < rtb && rta < off + new.len() as u64 {
        let skip = first(rta);
        let entries: Vec<(u64, u64)> = changed(rta + 8 * skip, (rtb - rta) / 8 - skip)
            .into_iter()
            .map(|(i, e)| (i + skip, e & RT_OFFSET_MASK))
            .filter(|&(_, e)| e != 0)
            .collect();
        for &(_, rb) in &entries {
            let view = TableView {
                rt: None,
                overlay: entries.clone(),
            };
            out.push((rb >> cb, view));
        }
    }
    // Header: a new L1 table or a new refcount table.
    if off < HEADER_POINTERS_END {
        let mut h = [0u8; HEADER_POINTERS_LEN];
        read_zero_padded(file, &mut h, 0)?;
        let n = idx((HEADER_POINTERS_END - off).min(new.len() as u64));
        h[idx(off)..idx(off) + n].copy_from_slice(&new[..n]);
        let next = header_layout(&h, *layout);
        let clusters =
            |from: u64, bytes: u64| (from >> cb)..(from + bytes).div_ceil(layout.cluster_size());
        if (next.l1_offset, next.l1_entries) != (layout.l1_offset, layout.l1_entries) {
            for c in clusters(next.l1_offset, 8 * next.l1_entries) {
                out.push((c, TableView::default()));
            }
        }
        if (next.rt_offset, next.rt_clusters) != (layout.rt_offset, layout.rt_clusters) {
            let view = TableView {
                rt: Some((next.rt_offset, next.rt_clusters)),
                overlay: Vec::new(),
            };
            for c in clusters(next.rt_offset, next.rt_clusters << cb) {
                out.push((c, view.clone()));
            }
        }
    }
    Ok(out)
}
