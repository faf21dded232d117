//! Changing a header where it cannot be replaced by rename: inside the image that holds it
//! (`cryptsetup luksFormat disk.img`), where the data follows the header in the same file.
//!
//! cryptsetup rewrites such a header in place with no ordering guarantee (its documentation
//! asks for a header backup before key changes). luksfuse keeps the guarantee it gives for
//! detached headers, that after a crash the header opens with exactly the old or exactly the
//! new key set, by writing the changed bytes in three phases, each made durable
//! (`fdatasync`) before the next:
//!
//! 1. **new key material**, into keyslot areas the old header does not use: whatever part of
//!    it lands, the old header does not look there;
//! 2. **the metadata**, one atomic switch: LUKS2 writes its secondary copy, then its primary
//!    copy (a torn copy fails its checksum and the other copy, old or new, is used; with both
//!    valid, the higher sequence id wins, and the new copies carry it); LUKS1 has one header in
//!    two 512-byte sectors, written one sector at a time (a sector write is atomic on the
//!    devices LUKS is used on): the sector that switches a removed keyslot off first, the one
//!    that switches a new keyslot on last, so no keyslot is ever active with half its fields
//!    (keyslot 6's descriptor spans both sectors);
//! 3. **wiping** the key material of removed keyslots, which the new header no longer uses.
//!
//! A change that would overwrite key material both headers use (a passphrase changed in the
//! same keyslot area) cannot be ordered this way and is refused here: callers put the new
//! key in another area first ([`crate::headers::HeaderEdit::change_key`] does).

use super::Header;
use crate::error::{Error, Result};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// The LUKS1 header's extent: 592 bytes in the first two 512-byte sectors.
const LUKS1_HEADER: u64 = 1024;
/// Offset of LUKS1 keyslot `i`'s descriptor, whose first field is its state.
fn luks1_slot_state(i: u32) -> u64 {
    208 + 48 * u64::from(i)
}

/// The byte ranges of `new` to write, phase by phase (each phase is followed by an
/// `fdatasync`), to turn `old` into `new` in place. Both are the header's bytes from offset 0
/// to its end, as parsed (`old_h`, `new_h`).
///
/// `old_h` is `None` when the header in place does not parse (a damaged header being
/// restored from a backup): no key material in it is in use, so the new header's areas are
/// written first, then its metadata.
pub(crate) fn plan(
    old: &[u8],
    new: &[u8],
    old_h: Option<&Header>,
    new_h: &Header,
) -> Result<Vec<Vec<Range<u64>>>> {
    if old.len() != new.len() || old_h.is_some_and(|h| h.version() != new_h.version()) {
        return Err(Error::format(
            "an in-place header change must keep its size and version",
        ));
    }
    let live = |h: &Header| -> Vec<Range<u64>> {
        (0..=h.max_slot())
            .filter(|&s| h.slot_active(s))
            .filter_map(|s| h.keyslot_area(s).ok())
            .collect()
    };
    let (old_live, new_live) = (old_h.map(live).unwrap_or_default(), live(new_h));
    let meta_end = match new_h.as_luks2() {
        Some(h) => 2 * h.hdr_size(),
        None => LUKS1_HEADER,
    };
    let touches = |areas: &[Range<u64>], r: &Range<u64>| {
        areas.iter().any(|a| a.start < r.end && r.start < a.end)
    };
    let (mut material, mut metadata, mut wipes) = (Vec::new(), Vec::new(), Vec::new());
    for r in changed_sectors(old, new) {
        if r.start < meta_end {
            metadata.push(r);
        } else if !touches(&old_live, &r) {
            material.push(r);
        } else if !touches(&new_live, &r) {
            wipes.push(r);
        } else {
            return Err(Error::format(format!(
                "an in-place change would overwrite key material in use at offset {}; \
                 nothing written",
                r.start
            )));
        }
    }
    let switch: Vec<Vec<Range<u64>>> = match new_h.as_luks2() {
        Some(h) => {
            let hdr = h.hdr_size();
            let (primary, secondary) = (0..hdr, hdr..2 * hdr);
            let changed =
                |c: &Range<u64>| metadata.iter().any(|r| r.start < c.end && c.start < r.end);
            let mut s = Vec::new();
            // Both copies are rewritten whole: each one is either all old or all new.
            if changed(&secondary) {
                s.push(vec![secondary]);
            }
            if changed(&primary) {
                s.push(vec![primary]);
            }
            s
        }
        None => {
            // A keyslot that goes out is switched off first (its other fields are then
            // unused); one that comes in is switched on last (its fields already in place).
            let was = |i| old_h.is_some_and(|h| h.slot_active(i));
            let states = |on: bool| -> Vec<u64> {
                (0..=new_h.max_slot())
                    .filter(|&i| was(i) != on && new_h.slot_active(i) == on)
                    .map(luks1_slot_state)
                    .collect()
            };
            let (going, coming) = (states(false), states(true));
            let has_state = |r: &Range<u64>| {
                if going.iter().any(|s| r.contains(s)) {
                    0
                } else if coming.iter().any(|s| r.contains(s)) {
                    2
                } else {
                    1
                }
            };
            let mut sectors: Vec<Range<u64>> = metadata
                .iter()
                .flat_map(|r| {
                    (r.start..r.end)
                        .step_by(512)
                        .map(|a| a..(a + 512).min(r.end))
                })
                .collect();
            sectors.sort_by_key(|r| (has_state(r), r.start));
            sectors.into_iter().map(|r| vec![r]).collect()
        }
    };
    let mut phases = Vec::new();
    if !material.is_empty() {
        phases.push(merged(material));
    }
    phases.extend(switch);
    if !wipes.is_empty() {
        phases.push(merged(wipes));
    }
    Ok(phases)
}

/// The 512-byte sectors in which `old` and `new` (of equal length) differ, in order.
fn changed_sectors(old: &[u8], new: &[u8]) -> Vec<Range<u64>> {
    old.chunks(512)
        .zip(new.chunks(512))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, _))| {
            let start = i as u64 * 512; // usize to u64 widens
            start..start + a.len() as u64
        })
        .collect()
}

/// Adjacent ranges (in order) joined, for fewer writes.
fn merged(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match runs.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => runs.push(r),
        }
    }
    runs
}

/// Writes `new` over `old` in `file` (the header starting at `base`) in the order [`plan`]
/// gives; `new` has been checked by the caller (it parses and opens with the new key).
pub(crate) fn commit(file: &File, base: u64, old: &[u8], new: &[u8]) -> Result<()> {
    let old_h = Header::parse(&old.to_vec()).ok();
    let new_h = Header::parse(&new.to_vec())?;
    for phase in plan(old, new, old_h.as_ref(), &new_h)? {
        for r in phase {
            // Ranges lie inside `new` (they come from its sectors or its header copies).
            let bytes = &new[r.start as usize..r.end as usize];
            let at = base
                .checked_add(r.start)
                .ok_or_else(|| Error::format("header offset overflows"))?;
            file.write_all_at(bytes, at)
                .map_err(|e| Error::format(format!("cannot write header at {}: {e}", r.start)))?;
        }
        file.sync_data()
            .map_err(|e| Error::format(format!("cannot sync header: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::kdf::Kdf;
    use crate::testing;

    const PASSES: [&[u8]; 3] = [b"old one", b"second", b"third"];

    /// The active keyslots of `image` and which of [`PASSES`] open it, or `None` when it does
    /// not parse. An active keyslot that nothing opens (a half-written one) makes a state
    /// that is neither the old nor the new one.
    fn key_set(image: &[u8]) -> Option<(Vec<u32>, Vec<usize>)> {
        let img = image.to_vec();
        let h = Header::parse(&img).ok()?;
        let opens = (0..PASSES.len())
            .filter(|&i| h.unlock(&img, PASSES[i], None).is_ok())
            .collect();
        Some((h.active_slots(), opens))
    }

    fn kdf() -> Kdf {
        Kdf::Pbkdf2 {
            hash: crate::crypto::hash::HashAlg::Sha256,
            iterations: 1000,
            salt: vec![7; 32],
        }
    }

    /// Every state a crash can leave while `plan` runs (each phase's writes in any prefix,
    /// the last of them torn at 512 bytes) opens with exactly the old or the new key set.
    fn check_every_crash_state(old: &[u8], new: &[u8]) {
        let (oh, nh) = (
            Header::parse(&old.to_vec()).unwrap(),
            Header::parse(&new.to_vec()).unwrap(),
        );
        let (old_set, new_set) = (key_set(old).unwrap(), key_set(new).unwrap());
        assert_ne!(old_set, new_set, "the change changes the key set");
        let phases = plan(old, new, Some(&oh), &nh).unwrap();
        let mut state = old.to_vec();
        let apply = |state: &mut Vec<u8>, r: &Range<u64>, len: u64| {
            let (a, b) = (
                r.start as usize,
                (r.start + len.min(r.end - r.start)) as usize,
            );
            state[a..b].copy_from_slice(&new[a..b]);
        };
        for phase in &phases {
            for r in phase {
                for torn in [0, 512, r.end - r.start] {
                    let mut s = state.clone();
                    apply(&mut s, r, torn);
                    let set = key_set(&s);
                    assert!(
                        set.as_ref() == Some(&old_set) || set.as_ref() == Some(&new_set),
                        "crash state {r:?} torn at {torn}: {set:?} (old {old_set:?}, new {new_set:?})"
                    );
                }
                apply(&mut state, r, r.end - r.start);
            }
        }
        assert!(state == new, "the plan writes every change");
    }

    #[test]
    fn add_and_remove_key_are_old_or_new_at_every_crash_point() {
        for version in [1, 2] {
            let (old, vk) = testing::header_image(testing::fast_options(version), None, PASSES[0]);
            let h = Header::parse(&old).unwrap();
            // Add: a new keyslot, in a free slot of each LUKS1 sector (6 spans both).
            for slot in [1, 6, 7] {
                let mut new = old.clone();
                h.seal_keyslot(&mut new, slot, vk.as_bytes(), PASSES[1], &kdf())
                    .unwrap();
                check_every_crash_state(&old, &new);
                // Remove it again, from the header that has it.
                let with = Header::parse(&new).unwrap();
                let mut without = new.clone();
                with.wipe_keyslot(&mut without, slot).unwrap();
                check_every_crash_state(&new, &without);
            }
        }
    }

    #[test]
    fn a_key_changed_into_another_keyslot_is_old_or_new_at_every_crash_point() {
        for version in [1, 2] {
            let (old, vk) = testing::header_image(testing::fast_options(version), None, PASSES[0]);
            let h = Header::parse(&old).unwrap();
            let mut new = old.clone();
            h.seal_keyslot(&mut new, 3, vk.as_bytes(), PASSES[2], &kdf())
                .unwrap();
            Header::parse(&new)
                .unwrap()
                .wipe_keyslot(&mut new, 0)
                .unwrap();
            check_every_crash_state(&old, &new);
        }
    }

    #[test]
    fn overwriting_live_key_material_is_refused() {
        let (old, vk) = testing::header_image(testing::fast_options(2), None, PASSES[0]);
        let h = Header::parse(&old).unwrap();
        let mut new = old.clone();
        // Resealing keyslot 0 reuses its area: its old material would be overwritten.
        h.seal_keyslot(&mut new, 0, vk.as_bytes(), PASSES[1], &kdf())
            .unwrap();
        let nh = Header::parse(&new).unwrap();
        let e = plan(&old, &new, Some(&h), &nh).unwrap_err();
        assert!(e.message().contains("key material in use"), "{e}");
    }
}
