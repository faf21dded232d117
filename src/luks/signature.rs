//! Foreign signatures at the start of a header file: what `blkid` would report there besides
//! LUKS itself.
//!
//! cryptsetup refuses to fall back to the other LUKS2 header copy when one is damaged and the
//! device carries another signature (`LUKS2_disk_hdr_read` with blkid's superblock and
//! partition probes, LUKS filtered out): "Device contains ambiguous signatures, cannot
//! auto-recover LUKS2". Something else was written over the header (`pvcreate`, `mkswap`,
//! `mkfs`, a partition table), and using the surviving copy would let the two users of the
//! device destroy each other's data. This probe looks for the common signatures by their
//! magic numbers, at the places their public format descriptions give:
//!
//! | signature | where | what |
//! |---|---|---|
//! | LVM2 physical volume | sector 0..3 | `LABELONE`, type `LVM2 001` at +24 |
//! | Linux swap | page size − 10 (4 KiB … 64 KiB pages) | `SWAPSPACE2` / `SWAP-SPACE` |
//! | ext2/3/4 | 1024 + 56 | superblock magic `0xEF53` (little-endian) |
//! | XFS | 0 | `XFSB` |
//! | Btrfs | 65536 + 64 | `_BHRfS_M` |
//! | FAT (vfat) | 54 / 82, 510 | `FAT1x` / `FAT32` file system type, `0x55 0xAA` |
//! | NTFS | 3 | OEM id `NTFS    ` |
//! | ISO 9660 | 32769 | `CD001` (first volume descriptor) |
//! | GPT | 512 (and 4096) | `EFI PART` |
//! | MBR (dos) | 446..512 | `0x55 0xAA`, four entries with boot flag 0x00/0x80, one used |

use crate::error::{Error, Reason, Result};
use crate::luks::ReadAt;

/// How many bytes from the start of the file the probe needs (the Btrfs superblock magic is
/// the farthest).
pub const PROBE_LEN: u64 = 65536 + 4096;

/// The first foreign signature found in `head` (the first bytes of the file), by name.
pub fn find(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    for sector in 0..4 {
        let o = sector * 512;
        if at(o, b"LABELONE") && at(o + 24, b"LVM2 001") {
            return Some("LVM2 physical volume (LVM2_member)");
        }
    }
    for page in [4096usize, 8192, 16384, 32768, 65536] {
        if at(page - 10, b"SWAPSPACE2") || at(page - 10, b"SWAP-SPACE") {
            return Some("Linux swap");
        }
    }
    if at(1024 + 56, &[0x53, 0xEF]) {
        return Some("ext2/ext3/ext4 file system");
    }
    if at(0, b"XFSB") {
        return Some("XFS file system");
    }
    if at(65536 + 64, b"_BHRfS_M") {
        return Some("Btrfs file system");
    }
    let boot_sig = at(510, &[0x55, 0xAA]);
    if boot_sig && (at(54, b"FAT12") || at(54, b"FAT16") || at(82, b"FAT32")) {
        return Some("FAT file system (vfat)");
    }
    if at(3, b"NTFS    ") {
        return Some("NTFS file system");
    }
    if at(32769, b"CD001") {
        return Some("ISO 9660 file system");
    }
    if at(512, b"EFI PART") || at(4096, b"EFI PART") {
        return Some("GPT partition table");
    }
    if boot_sig {
        let entries = head.get(446..510)?;
        let flags_ok = entries.chunks(16).all(|e| e[0] == 0 || e[0] == 0x80);
        let used = entries.chunks(16).any(|e| e[4] != 0);
        if flags_ok && used {
            return Some("MBR (dos) partition table");
        }
    }
    None
}

/// Reads the start of `src` (up to [`PROBE_LEN`] bytes) and looks for a foreign signature.
pub fn probe(src: &dyn ReadAt) -> Result<Option<&'static str>> {
    let len = src.size().min(PROBE_LEN);
    let mut head = vec![0u8; usize::try_from(len).unwrap_or(0)]; // at most PROBE_LEN
    src.read_exact_at(&mut head, 0)?;
    Ok(find(&head))
}

/// Refuses a LUKS2 header file one of whose copies is damaged when it also holds a foreign
/// signature, as cryptsetup does ("Device contains ambiguous signatures, cannot auto-recover
/// LUKS2"): the surviving copy is not trusted.
pub fn refuse_ambiguous(src: &dyn ReadAt) -> Result<()> {
    match probe(src)? {
        None => Ok(()),
        Some(sig) => Err(Error::format(format!(
            "ambiguous signatures: a LUKS2 header copy is damaged and the file also holds \
             another signature ({sig}), so the other copy is not used"
        ))
        .because(Reason::AmbiguousSignature)
        .with_hint(
            "something was written over the header; restore it from a header backup, or run \
             \"cryptsetup repair\" if the LUKS2 header is what should be there",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(parts: &[(usize, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; PROBE_LEN as usize];
        for (off, bytes) in parts {
            b[*off..off + bytes.len()].copy_from_slice(bytes);
        }
        b
    }

    #[test]
    fn each_signature_is_found_at_its_place_and_nothing_in_zeros() {
        assert_eq!(find(&with(&[])), None);
        assert_eq!(probe(&with(&[])).unwrap(), None);
        for (parts, name) in [
            (&[(512, &b"LABELONE"[..]), (536, b"LVM2 001")][..], "LVM2"),
            (&[(4086, &b"SWAPSPACE2"[..])][..], "swap"),
            (&[(16374, &b"SWAP-SPACE"[..])][..], "swap"),
            (&[(1080, &[0x53u8, 0xEF][..])][..], "ext"),
            (&[(0, &b"XFSB"[..])][..], "XFS"),
            (&[(65600, &b"_BHRfS_M"[..])][..], "Btrfs"),
            (&[(82, &b"FAT32"[..]), (510, &[0x55, 0xAA])][..], "FAT"),
            (&[(3, &b"NTFS    "[..])][..], "NTFS"),
            (&[(32769, &b"CD001"[..])][..], "ISO"),
            (&[(512, &b"EFI PART"[..])][..], "GPT"),
            (&[(450, &[0x83u8][..]), (510, &[0x55, 0xAA])][..], "MBR"),
        ] {
            let found = find(&with(parts)).unwrap_or("nothing");
            assert!(found.contains(name), "{name}: found {found}");
        }
        // A LUKS header is not foreign, and a boot signature without entries is no MBR.
        assert_eq!(find(&with(&[(0, b"LUKS\xba\xbe")])), None);
        assert_eq!(find(&with(&[(510, &[0x55, 0xAA])])), None);
        assert_eq!(
            find(&with(&[
                (446, &[0x12]),
                (450, &[0x83]),
                (510, &[0x55, 0xAA])
            ])),
            None
        );
        // A short file is probed as far as it goes.
        assert_eq!(probe(&b"XFSB".to_vec()).unwrap(), Some("XFS file system"));
    }
}
