//! The partition table of a decrypted disk: GPT or MBR, read once, returned as windows
//! (number, byte offset, byte length) that the FUSE layer serves as files.
//!
//! Hand-written rather than `gptman`/`mbrman`: the two formats need about 200 lines here,
//! the crates read through `Read + Seek` (an adapter over a volume), pull in `bincode`,
//! `thiserror` and a CRC crate, and neither refuses overlapping partitions; this parser
//! bounds every read before it allocates and returns our own errors.
//!
//! Sectors are 512 bytes, as a loop device over the served file (and `sgdisk`/`sfdisk` on
//! it) sees them, whatever the encryption sector size. What the kernel does and we copy:
//! * GPT needs a protective (or hybrid) MBR, a primary header at LBA 1 whose header and
//!   entry-array CRC32s match, `my_lba` 1, 128-byte entries; if the primary is damaged the
//!   backup header at the disk's last LBA is used instead (`find_valid_gpt`). GPT partition
//!   `n` is entry `n - 1` (unused entries leave gaps in the numbering).
//! * MBR: signature `55 AA`, boot flags 0 or 0x80 (else it is a boot sector, not a table),
//!   primaries numbered 1–4 by slot, logicals in the extended partition's EBR chain numbered
//!   from 5. The extended partition itself is not served (the kernel's 1 KiB stub of it is
//!   no use to a file system).
//!
//! Where the kernel skips an entry silently, we refuse: a partition past the end of the disk
//! (or the GPT's usable range), empty, or overlapping another is an error, since serving it
//! would let writes through one partition file land in another.

use crate::error::{Error, Result};
use std::io;

/// The sector size partition tables are read in.
pub const SECTOR: u64 = 512;
/// Most GPT entries accepted (the array is at most 16384 × 128 bytes = 2 MiB); sgdisk makes
/// 128 and allows up to a few thousand.
pub const MAX_GPT_ENTRIES: u32 = 16384;
/// Most logical partitions followed along an EBR chain.
pub const MAX_LOGICAL: usize = 256;

const GPT_ENTRY_SIZE: u32 = 128;
const GPT_MIN_HEADER: u32 = 92;

/// Which kind of table the disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Gpt,
    Mbr,
}

impl TableKind {
    /// "gpt" or "mbr".
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Gpt => "gpt",
            TableKind::Mbr => "mbr",
        }
    }
}

/// One partition: a window of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its number, as the kernel numbers it (`loop0p<number>`).
    pub number: u32,
    /// Byte offset in the disk.
    pub offset: u64,
    /// Length in bytes (> 0); `offset + len` is within the disk.
    pub len: u64,
}

/// A disk's table: its kind and partitions in ascending number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub kind: TableKind,
    /// True when the GPT primary was damaged and the backup was used.
    pub used_backup: bool,
    pub partitions: Vec<Partition>,
}

/// Reads the table of a disk of `size` bytes through `read_at` (which fills the buffer from
/// a byte offset, short only at the end). `Ok(None)` when the disk holds no table.
pub fn read<R>(read_at: R, size: u64) -> Result<Option<Table>>
where
    R: Fn(&mut [u8], u64) -> io::Result<usize>,
{
    let disk = Disk {
        read_at,
        sectors: size / SECTOR,
    };
    if disk.sectors < 2 {
        return Ok(None);
    }
    let mbr = disk.sector(0)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(None);
    }
    let entries = mbr_entries(&mbr);
    if entries.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
        return Ok(None);
    }
    let table = if entries.iter().any(|e| e.kind == 0xEE) {
        gpt(&disk)?
    } else if entries.iter().all(|e| e.kind == 0) {
        return Ok(None);
    } else {
        mbr_table(&disk, &entries)?
    };
    check(&table.partitions, disk.sectors)?;
    Ok(Some(table))
}

struct Disk<R> {
    read_at: R,
    sectors: u64,
}

impl<R: Fn(&mut [u8], u64) -> io::Result<usize>> Disk<R> {
    /// `n` bytes from sector `lba`; `n` is bounded by the caller.
    fn bytes(&self, lba: u64, n: usize) -> Result<Vec<u8>> {
        let off = lba
            .checked_mul(SECTOR)
            .ok_or_else(|| Error::format("partition table: sector number overflows"))?;
        let mut buf = vec![0u8; n];
        let got = (self.read_at)(&mut buf, off).map_err(|e| {
            Error::new(
                crate::Kind::Device,
                format!("cannot read the partition table: {e}"),
            )
        })?;
        if got != n {
            return Err(Error::format(format!(
                "partition table: sector {lba} is past the end of the disk"
            )));
        }
        Ok(buf)
    }

    fn sector(&self, lba: u64) -> Result<Vec<u8>> {
        self.bytes(lba, SECTOR as usize)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

// ---- MBR ----

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    boot: u8,
    kind: u8,
    start: u32,
    count: u32,
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        MbrEntry {
            boot: e[0],
            kind: e[4],
            start: le32(e, 8),
            count: le32(e, 12),
        }
    })
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

/// A partition from an MBR entry whose start is relative to `base` (in sectors).
fn mbr_partition(number: u32, base: u64, e: &MbrEntry, sectors: u64) -> Result<Partition> {
    let start = base + u64::from(e.start); // both below 2^33: no overflow
    let end = start + u64::from(e.count);
    if e.count == 0 || end > sectors {
        return Err(Error::format(format!(
            "MBR partition {number} (sectors {start}..{end}) is {} the disk of {sectors} \
             sectors",
            if e.count == 0 {
                "empty on"
            } else {
                "past the end of"
            }
        )));
    }
    Ok(Partition {
        number,
        offset: start * SECTOR,
        len: u64::from(e.count) * SECTOR,
    })
}

fn mbr_table<R>(disk: &Disk<R>, entries: &[MbrEntry; 4]) -> Result<Table>
where
    R: Fn(&mut [u8], u64) -> io::Result<usize>,
{
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, e) in entries.iter().enumerate() {
        if e.kind == 0 {
            continue;
        }
        let p = mbr_partition(i as u32 + 1, 0, e, disk.sectors)?;
        if is_extended(e.kind) {
            if extended.is_some() {
                return Err(Error::format("MBR holds two extended partitions"));
            }
            extended = Some(p);
        } else {
            parts.push(p);
        }
    }
    if let Some(ext) = extended {
        let ext_start = ext.offset / SECTOR;
        let ext_end = ext_start + ext.len / SECTOR;
        let mut ebr = ext_start;
        let mut number = 5;
        loop {
            if parts.len() >= 4 + MAX_LOGICAL {
                return Err(Error::format(format!(
                    "MBR: more than {MAX_LOGICAL} logical partitions (a looping EBR chain?)"
                )));
            }
            let sector = disk.sector(ebr)?;
            if sector[510..512] != [0x55, 0xAA] {
                return Err(Error::format(format!(
                    "MBR: the extended boot record at sector {ebr} has no signature"
                )));
            }
            let [logical, next, ..] = mbr_entries(&sector);
            if logical.kind != 0 {
                let p = mbr_partition(number, ebr, &logical, disk.sectors)?;
                let (s, e) = (p.offset / SECTOR, (p.offset + p.len) / SECTOR);
                if s <= ebr || e > ext_end {
                    return Err(Error::format(format!(
                        "MBR logical partition {number} (sectors {s}..{e}) is outside its \
                         extended partition (sectors {ebr}..{ext_end})"
                    )));
                }
                parts.push(p);
                number += 1;
            }
            if next.kind == 0 || next.start == 0 {
                break;
            }
            let following = ext_start + u64::from(next.start);
            // Forward only: a chain cannot loop.
            if following <= ebr || following >= ext_end {
                return Err(Error::format(format!(
                    "MBR: extended boot record at sector {ebr} links to sector {following}, \
                     not forward inside the extended partition"
                )));
            }
            ebr = following;
        }
    }
    Ok(Table {
        kind: TableKind::Mbr,
        used_backup: false,
        partitions: parts,
    })
}

// ---- GPT ----

struct GptHeader {
    first_usable: u64,
    last_usable: u64,
    alternate: u64,
    entries_lba: u64,
    entries: u32,
    entries_crc: u32,
}

/// The header at `lba`, checked as the kernel's `is_gpt_valid` does; `Err(reason)` when not
/// valid (the caller decides whether that is fatal).
fn gpt_header<R>(
    disk: &Disk<R>,
    lba: u64,
) -> Result<std::result::Result<(GptHeader, Vec<u8>), String>>
where
    R: Fn(&mut [u8], u64) -> io::Result<usize>,
{
    let s = disk.sector(lba)?;
    if &s[0..8] != b"EFI PART" {
        return Ok(Err("no GPT signature".into()));
    }
    let hsize = le32(&s, 12);
    if !(GPT_MIN_HEADER..=SECTOR as u32).contains(&hsize) {
        return Ok(Err(format!("header size {hsize} out of range")));
    }
    let mut h = s[..hsize as usize].to_vec();
    let crc = le32(&h, 16);
    h[16..20].fill(0);
    if crc32(&h) != crc {
        return Ok(Err("header CRC mismatch".into()));
    }
    if le64(&s, 24) != lba {
        return Ok(Err(format!("header claims to be at LBA {}", le64(&s, 24))));
    }
    let hdr = GptHeader {
        alternate: le64(&s, 32),
        first_usable: le64(&s, 40),
        last_usable: le64(&s, 48),
        entries_lba: le64(&s, 72),
        entries: le32(&s, 80),
        entries_crc: le32(&s, 88),
    };
    let entry_size = le32(&s, 84);
    if entry_size != GPT_ENTRY_SIZE {
        return Ok(Err(format!("entry size {entry_size}, not 128")));
    }
    if hdr.entries > MAX_GPT_ENTRIES {
        return Ok(Err(format!(
            "{} entries, more than {MAX_GPT_ENTRIES}",
            hdr.entries
        )));
    }
    let last = disk.sectors - 1;
    if hdr.first_usable > hdr.last_usable || hdr.last_usable > last {
        return Ok(Err(format!(
            "usable sectors {}..={} not within the disk's {} sectors",
            hdr.first_usable, hdr.last_usable, disk.sectors
        )));
    }
    let n = hdr.entries as usize * GPT_ENTRY_SIZE as usize; // at most 2 MiB
    let array_sectors = (n as u64).div_ceil(SECTOR);
    if hdr
        .entries_lba
        .checked_add(array_sectors)
        .is_none_or(|end| end > disk.sectors)
    {
        return Ok(Err(format!(
            "entry array at LBA {} is past the end of the disk",
            hdr.entries_lba
        )));
    }
    let array = disk.bytes(hdr.entries_lba, n)?;
    if crc32(&array) != hdr.entries_crc {
        return Ok(Err("entry array CRC mismatch".into()));
    }
    Ok(Ok((hdr, array)))
}

fn gpt<R>(disk: &Disk<R>) -> Result<Table>
where
    R: Fn(&mut [u8], u64) -> io::Result<usize>,
{
    let last = disk.sectors - 1;
    let (hdr, array, used_backup) = match gpt_header(disk, 1)? {
        Ok((h, a)) => (h, a, false),
        Err(primary) => match gpt_header(disk, last)? {
            Ok((h, a)) => {
                log::warn!("primary GPT is damaged ({primary}); using the backup GPT");
                (h, a, true)
            }
            Err(backup) => {
                let e = Error::format(format!(
                    "protective MBR but no valid GPT (primary: {primary}; backup: {backup})"
                ));
                // A GPT made for 4096-byte logical sectors has its header at byte 4096.
                let at_4k = disk.sectors > 8 && disk.sector(8)?.starts_with(b"EFI PART");
                return Err(if at_4k {
                    e.with_hint(
                        "the GPT is laid out for 4096-byte sectors; only 512-byte sectors \
                         are read (serve the disk without --partitions)",
                    )
                } else {
                    e
                });
            }
        },
    };
    if !used_backup && hdr.alternate != last {
        log::warn!(
            "GPT backup header is at LBA {}, not at the last LBA {last}",
            hdr.alternate
        );
    }
    let mut parts = Vec::new();
    for (i, e) in array.chunks_exact(GPT_ENTRY_SIZE as usize).enumerate() {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let number = i as u32 + 1;
        let (first, end) = (le64(e, 32), le64(e, 40));
        if first > end || first < hdr.first_usable || end > hdr.last_usable {
            return Err(Error::format(format!(
                "GPT partition {number} (sectors {first}..={end}) is outside the usable \
                 sectors {}..={}",
                hdr.first_usable, hdr.last_usable
            )));
        }
        // end <= last_usable < sectors <= u64::MAX / 512: no overflow.
        parts.push(Partition {
            number,
            offset: first * SECTOR,
            len: (end - first + 1) * SECTOR,
        });
    }
    Ok(Table {
        kind: TableKind::Gpt,
        used_backup,
        partitions: parts,
    })
}

/// Every partition within the disk, none overlapping another.
fn check(parts: &[Partition], sectors: u64) -> Result<()> {
    let size = sectors * SECTOR;
    for p in parts {
        if p.len == 0 || p.offset.checked_add(p.len).is_none_or(|e| e > size) {
            return Err(Error::format(format!(
                "partition {} is past the end of the disk",
                p.number
            )));
        }
    }
    let mut sorted: Vec<&Partition> = parts.iter().collect();
    sorted.sort_by_key(|p| p.offset);
    for w in sorted.windows(2) {
        if w[0].offset + w[0].len > w[1].offset {
            let (a, b) = (w[0].number.min(w[1].number), w[0].number.max(w[1].number));
            return Err(Error::format(format!("partitions {a} and {b} overlap")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(disk: &[u8]) -> impl Fn(&mut [u8], u64) -> io::Result<usize> + '_ {
        move |buf, off| {
            let off = off.min(disk.len() as u64) as usize;
            let n = buf.len().min(disk.len() - off);
            buf[..n].copy_from_slice(&disk[off..off + n]);
            Ok(n)
        }
    }

    fn mbr(disk: &mut [u8], at: usize, slot: usize, kind: u8, start: u32, count: u32) {
        let e = &mut disk[at + 446 + 16 * slot..at + 446 + 16 * (slot + 1)];
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&count.to_le_bytes());
        disk[at + 510] = 0x55;
        disk[at + 511] = 0xAA;
    }

    /// A GPT disk of `sectors` sectors: protective MBR, primary at 1 with entries at 2..34,
    /// backup entries at `sectors - 33`, backup header at the last sector; `parts` are
    /// (slot, first, last) in sectors.
    fn gpt_disk(sectors: u64, parts: &[(usize, u64, u64)]) -> Vec<u8> {
        let mut d = vec![0u8; (sectors * 512) as usize];
        mbr(&mut d, 0, 0, 0xEE, 1, (sectors - 1) as u32);
        let mut array = vec![0u8; 128 * 128];
        for &(slot, first, last) in parts {
            let e = &mut array[slot * 128..(slot + 1) * 128];
            e[0] = 0xAF; // any non-zero type GUID
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        }
        let last = sectors - 1;
        for (me, alt, entries) in [(1, last, 2), (last, 1, last - 32)] {
            let at = (entries * 512) as usize;
            d[at..at + array.len()].copy_from_slice(&array);
            gpt_header_at(&mut d, me, alt, entries, 128, crc32(&array));
        }
        d
    }

    fn gpt_header_at(d: &mut [u8], me: u64, alt: u64, entries_lba: u64, n: u32, crc: u32) {
        let sectors = d.len() as u64 / 512;
        let h = &mut d[(me * 512) as usize..(me * 512 + 512) as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[16..20].fill(0);
        h[24..32].copy_from_slice(&me.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&n.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc.to_le_bytes());
        let c = crc32(&h[..92]);
        h[16..20].copy_from_slice(&c.to_le_bytes());
    }

    fn numbers(t: &Table) -> Vec<(u32, u64, u64)> {
        t.partitions
            .iter()
            .map(|p| (p.number, p.offset / 512, p.len / 512))
            .collect()
    }

    #[test]
    fn gpt_numbers_by_slot_and_falls_back_to_the_backup() {
        let mut d = gpt_disk(200, &[(0, 34, 63), (2, 64, 99)]);
        let t = read(reader(&d), d.len() as u64).unwrap().unwrap();
        assert_eq!((t.kind, t.used_backup), (TableKind::Gpt, false));
        assert_eq!(numbers(&t), [(1, 34, 30), (3, 64, 36)]);
        // A flipped byte in the primary entry array: its CRC fails, the backup serves.
        d[2 * 512 + 40] ^= 1;
        let t = read(reader(&d), d.len() as u64).unwrap().unwrap();
        assert!(t.used_backup);
        assert_eq!(numbers(&t), [(1, 34, 30), (3, 64, 36)]);
        // Both copies damaged: refused, not taken for "no table".
        d[(200 - 33) * 512 + 40] ^= 1;
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("no valid GPT"), "{e}");
        assert_eq!(e.hint(), None);
        // A header where 4096-byte sectors would put it: said in the hint.
        d[8 * 512..8 * 512 + 8].copy_from_slice(b"EFI PART");
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.hint().is_some_and(|h| h.contains("4096-byte")), "{e}");
    }

    #[test]
    fn gpt_hostile_entries_are_refused() {
        let d = gpt_disk(200, &[(0, 34, 80), (1, 80, 99)]);
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("partitions 1 and 2 overlap"), "{e}");
        let d = gpt_disk(200, &[(0, 34, 170)]);
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("outside the usable"), "{e}");
        let d = gpt_disk(200, &[(0, 60, 50)]);
        assert!(read(reader(&d), d.len() as u64).is_err());
        // An absurd entry count, with valid CRCs, in both copies: refused before reading.
        let mut d = gpt_disk(200, &[(0, 34, 63)]);
        gpt_header_at(&mut d, 1, 199, 2, u32::MAX, 0);
        gpt_header_at(&mut d, 199, 1, 167, u32::MAX, 0);
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("more than 16384"), "{e}");
        // An entry array that would run past the end of the disk.
        let mut d = gpt_disk(200, &[(0, 34, 63)]);
        gpt_header_at(&mut d, 1, 199, 190, 128, 0);
        gpt_header_at(&mut d, 199, 1, 190, 128, 0);
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }

    /// Random byte flips and random 32/64-bit values over valid GPT and MBR disks: never a
    /// panic, and whatever is accepted lies within the disk without overlaps.
    #[test]
    fn mutated_tables_give_errors_or_sound_windows() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let gpt = gpt_disk(200, &[(0, 34, 63), (2, 64, 99), (5, 100, 160)]);
        let mbr_d = mbr_with_logicals();
        let mut accepted = 0;
        for round in 0..6000 {
            let mut d = if round % 2 == 0 {
                gpt.clone()
            } else {
                mbr_d.clone()
            };
            // Mutate the sectors that hold tables: 0..3, the EBRs, the backup GPT.
            let hot = [0, 1, 2, 10, 30, 167, 199];
            for _ in 0..1 + rnd() % 4 {
                let sector = hot[(rnd() % hot.len() as u64) as usize];
                if sector * 512 >= d.len() as u64 {
                    continue;
                }
                let at = (sector * 512 + rnd() % 504) as usize;
                match rnd() % 3 {
                    0 => d[at] ^= 1 << (rnd() % 8),
                    1 => d[at..at + 4].copy_from_slice(&(rnd() as u32).to_le_bytes()),
                    _ => d[at..at + 8].copy_from_slice(&rnd().to_le_bytes()),
                }
            }
            if round % 2 == 0 && rnd() % 2 == 0 {
                // Re-seal the primary so that mutations get past the CRC checks.
                let entries = le64(&d, 512 + 72).min(190);
                let n = le32(&d, 512 + 80).min(MAX_GPT_ENTRIES);
                let end = (entries * 512) as usize + n as usize * 128;
                if end <= d.len() {
                    let crc = crc32(&d[(entries * 512) as usize..end]);
                    d[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
                }
                let hsize = (le32(&d, 512 + 12) as usize).clamp(92, 512);
                d[512 + 16..512 + 20].fill(0);
                let crc = crc32(&d[512..512 + hsize]);
                d[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
            }
            if let Ok(Some(t)) = read(reader(&d), d.len() as u64) {
                accepted += 1;
                let mut spans: Vec<_> = t.partitions.iter().map(|p| (p.offset, p.len)).collect();
                spans.sort();
                for &(off, len) in &spans {
                    assert!(len > 0 && off + len <= d.len() as u64, "round {round}");
                }
                for w in spans.windows(2) {
                    assert!(w[0].0 + w[0].1 <= w[1].0, "round {round}: overlap");
                }
            }
        }
        assert!(
            accepted > 100,
            "mutations too harsh to test anything: {accepted}"
        );
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn no_signature_or_no_entries_is_no_table() {
        let mut d = vec![0u8; 64 * 512];
        assert_eq!(read(reader(&d), d.len() as u64).unwrap(), None);
        d[510] = 0x55;
        d[511] = 0xAA;
        assert_eq!(read(reader(&d), d.len() as u64).unwrap(), None);
        // A boot flag other than 0/0x80: a boot sector, not a table.
        mbr(&mut d, 0, 0, 0x83, 2, 4);
        d[446] = 0x12;
        assert_eq!(read(reader(&d), d.len() as u64).unwrap(), None);
    }

    /// A 64-sector MBR disk: a primary at 2 (4 sectors), an extended partition at 10 (40)
    /// whose EBR at 10 holds a logical at 10+2 (5 sectors) and links to the next EBR at
    /// 10+20, which holds a logical at 30+1 (3 sectors).
    fn mbr_with_logicals() -> Vec<u8> {
        let mut d = vec![0u8; 64 * 512];
        mbr(&mut d, 0, 0, 0x83, 2, 4);
        mbr(&mut d, 0, 1, 0x05, 10, 40);
        mbr(&mut d, 10 * 512, 0, 0x83, 2, 5);
        mbr(&mut d, 10 * 512, 1, 0x05, 20, 10);
        mbr(&mut d, 30 * 512, 0, 0x83, 1, 3);
        d
    }

    #[test]
    fn mbr_primaries_and_logicals() {
        let mut d = mbr_with_logicals();
        let t = read(reader(&d), d.len() as u64).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        let got: Vec<_> = t
            .partitions
            .iter()
            .map(|p| (p.number, p.offset / 512, p.len / 512))
            .collect();
        assert_eq!(got, [(1, 2, 4), (5, 12, 5), (6, 31, 3)]);
        // A chain that links backwards is refused, not followed forever.
        mbr(&mut d, 30 * 512, 1, 0x05, 0, 10);
        mbr(&mut d, 30 * 512, 1, 0x05, 1, 10);
        assert!(read(reader(&d), d.len() as u64).is_err());
    }

    #[test]
    fn mbr_overlap_and_past_the_end_are_refused() {
        let mut d = vec![0u8; 64 * 512];
        mbr(&mut d, 0, 0, 0x83, 2, 10);
        mbr(&mut d, 0, 1, 0x83, 11, 4);
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("partitions 1 and 2 overlap"), "{e}");
        assert_eq!(e.exit_code(), 4);
        mbr(&mut d, 0, 1, 0x83, 60, 5);
        let e = read(reader(&d), d.len() as u64).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}
