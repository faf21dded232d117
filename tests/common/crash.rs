//! Crash states from a recfs recording (tests/common/recfs.rs), in the manner of CrashMonkey
//! and ALICE: what a power cut could leave on the files at each flush point.
//!
//! The persistence model, per file as POSIX and Linux file systems give it:
//! - a data operation (write, size change, zeroing) of file `ino` is durable once an `fsync`
//!   or `fdatasync` of `ino` completed after it;
//! - a namespace operation (create, rename, unlink) is durable once a directory `fsync`
//!   completed after it (a rename is atomic: old or new name, never neither);
//! - everything else issued before the crash may or may not have reached the disk, in any
//!   order, and a write may be torn at the device's atomic unit (512 bytes): any subset of its
//!   512-byte pieces may be there.
//!
//! A crash is placed just before each flush completes (the flush's own operations all
//! pending) and at the end of the log. At each such cut the pending operations are chosen
//! exhaustively when there are few (every subset), else by a seeded random sample that always
//! includes "none" and "all"; some states apply their subset in a shuffled order, and some tear
//! one kept write (any of them: the last one is the usual case, but a device may have several
//! in flight; when the subsets are few, several tearings each fill the budget). A state is
//! checked once for each set of markers it can be seen with (the same files after more
//! acknowledgements must satisfy more).
//!
//! Include with `#[path = "common/recfs.rs"] mod recfs; #[path = "common/crash.rs"] mod crash;`.
#![allow(dead_code)]

use crate::common::Rng;
use crate::recfs::{Image, Op};
use std::collections::HashSet;

/// A recorded run: the files before it and the operations in the order they arrived.
#[derive(Clone, Debug)]
pub struct Recording {
    pub base: Image,
    pub ops: Vec<Op>,
}

/// How many states to build.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// States per crash point at most (all subsets when 2^pending fits, else a sample).
    pub per_cut: usize,
    /// States in all at most (cuts are thinned evenly beyond it).
    pub total: usize,
    /// Atomic unit of the simulated device for torn writes.
    pub sector: usize,
    pub seed: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            per_cut: 16,
            total: 200,
            sector: 512,
            seed: 0x5eed,
        }
    }
}

/// One crash state.
#[derive(Clone, Debug)]
pub struct CrashState {
    /// Operations `ops[..cut]` had been issued when the power went.
    pub cut: usize,
    /// The markers issued before the crash (`RecFs::mark`), in order: what the test had been
    /// told was done (e.g. a client's fsync had returned).
    pub marks: Vec<String>,
    /// What was kept of the pending operations, for the report of a violation.
    pub what: String,
    /// The files as the crash left them.
    pub image: Image,
}

fn is_flush(op: &Op) -> bool {
    matches!(op, Op::Fsync { .. } | Op::FsyncDir)
}

fn data_ino(op: &Op) -> Option<u64> {
    match op {
        Op::Write { ino, .. } | Op::SetLen { ino, .. } | Op::Zero { ino, .. } => Some(*ino),
        _ => None,
    }
}

fn is_namespace(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. } | Op::Rename { .. } | Op::Unlink { .. }
    )
}

/// Which of `ops[..cut]` are durable at a crash at `cut`.
fn durable(ops: &[Op], cut: usize) -> Vec<bool> {
    let mut out = vec![false; cut];
    let mut synced_files: HashSet<u64> = HashSet::new();
    let mut dir_synced = false;
    for j in (0..cut).rev() {
        match &ops[j] {
            Op::Fsync { ino, .. } => {
                synced_files.insert(*ino);
            }
            Op::FsyncDir => dir_synced = true,
            op => {
                out[j] = data_ino(op).is_some_and(|i| synced_files.contains(&i))
                    || (is_namespace(op) && dir_synced)
            }
        }
    }
    out
}

/// The crash points: just before each flush, and the end.
fn cuts(ops: &[Op]) -> Vec<usize> {
    let mut c: Vec<usize> = (0..ops.len()).filter(|&i| is_flush(&ops[i])).collect();
    c.push(ops.len());
    c.dedup();
    c
}

/// `w` with only the 512-byte pieces whose bit is set in `keep` (as separate writes).
fn torn(op: &Op, sector: usize, rng: &mut Rng) -> Option<(Vec<Op>, String)> {
    let Op::Write { ino, off, data } = op else {
        return None;
    };
    let n = data.len().div_ceil(sector);
    if n < 2 {
        return None;
    }
    // A random proper, non-empty subset of the pieces (half the time a prefix: the common
    // shape of a cut in the middle of a transfer).
    let keep: Vec<bool> = if rng.below(2) == 0 {
        let k = 1 + rng.below(n as u64 - 1) as usize;
        (0..n).map(|i| i < k).collect()
    } else {
        loop {
            let v: Vec<bool> = (0..n).map(|_| rng.below(2) == 1).collect();
            let c = v.iter().filter(|b| **b).count();
            if c > 0 && c < n {
                break v;
            }
        }
    };
    let mut pieces = Vec::new();
    for (i, k) in keep.iter().enumerate() {
        if *k {
            let s = i * sector;
            let e = (s + sector).min(data.len());
            pieces.push(Op::Write {
                ino: *ino,
                off: off + s as u64,
                data: data[s..e].to_vec(),
            });
        }
    }
    let kept = keep.iter().filter(|b| **b).count();
    Some((pieces, format!("torn: {kept} of {n} pieces at {off}")))
}

/// Every crash state of `rec` within `budget` (distinct images only).
pub fn states(rec: &Recording, budget: Budget) -> Vec<CrashState> {
    let mut rng = Rng(budget.seed | 1);
    let mut all_cuts = cuts(&rec.ops);
    let per = budget.per_cut.max(2);
    let max_cuts = (budget.total / per).max(1);
    if all_cuts.len() > max_cuts {
        // Thin evenly, keeping the last cut (the end of the log).
        let n = all_cuts.len();
        all_cuts = (0..max_cuts)
            .map(|i| all_cuts[(i + 1) * n / max_cuts - 1])
            .collect();
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for cut in all_cuts {
        let dur = durable(&rec.ops, cut);
        let pending: Vec<usize> = (0..cut)
            .filter(|&j| !dur[j] && (data_ino(&rec.ops[j]).is_some() || is_namespace(&rec.ops[j])))
            .collect();
        let marks: Vec<String> = rec.ops[..cut]
            .iter()
            .filter_map(|o| match o {
                Op::Mark(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        let n = pending.len();
        // The subsets to try, as bit vectors over `pending`.
        let mut subsets: Vec<Vec<bool>> = vec![vec![false; n], vec![true; n]];
        if n < 64 && (1u64 << n) as usize <= per / 2 {
            subsets = (0..1u64 << n)
                .map(|m| (0..n).map(|i| m >> i & 1 == 1).collect())
                .collect();
        } else {
            // Everything up to a point and nothing after (in-order loss), then random subsets.
            while subsets.len() < per / 2 {
                let k = rng.below(n as u64 + 1) as usize;
                subsets.push((0..n).map(|i| i < k).collect());
            }
            while subsets.len() < per {
                subsets.push((0..n).map(|_| rng.below(2) == 1).collect());
            }
        }
        // The durable part, the same in every state of this cut.
        let mut durable_image = rec.base.clone();
        for (j, op) in rec.ops[..cut].iter().enumerate() {
            if dur[j] {
                durable_image.apply(op);
            }
        }
        // Torn variants per subset: one, or more when the subsets leave room in the budget
        // (a few pending writes: their tearings are then what varies).
        let tears = (per / subsets.len()).saturating_sub(2).max(1);
        let mut made = 0;
        'subsets: for keep in &subsets {
            let chosen: Vec<Op> = pending
                .iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|(&j, _)| rec.ops[j].clone())
                .collect();
            let what = format!("cut {cut}: kept {} of {n} pending", chosen.len());
            let writes: Vec<usize> = (0..chosen.len())
                .filter(|&i| matches!(chosen[i], Op::Write { .. }))
                .collect();
            // Each subset as issued; with its writes in another order (only overlapping ones
            // care; namespace operations are journaled in order, so they keep theirs); with
            // kept writes torn (any of them may have been in flight, the last one included).
            let mut variants = vec![(chosen.clone(), what.clone())];
            if writes.len() > 1 {
                let mut v = chosen.clone();
                for i in (1..writes.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    v.swap(writes[i], writes[j]);
                }
                variants.push((v, format!("{what}, writes shuffled")));
            }
            for _ in 0..if writes.is_empty() { 0 } else { tears } {
                let w = writes[rng.below(writes.len() as u64) as usize];
                if let Some((pieces, t)) = torn(&chosen[w], budget.sector, &mut rng) {
                    let mut v = chosen.clone();
                    v.splice(w..=w, pieces);
                    variants.push((v, format!("{what}, {t}")));
                }
            }
            for (ops, what) in variants {
                // Pending operations after the durable ones: whatever the order of write-back,
                // what was durable is there.
                let mut image = durable_image.clone();
                for op in &ops {
                    image.apply(op);
                }
                if seen.insert((digest(&image), marks.len())) {
                    out.push(CrashState {
                        cut,
                        marks: marks.clone(),
                        what,
                        image,
                    });
                    made += 1;
                    if made >= per {
                        break 'subsets;
                    }
                }
            }
        }
    }
    out
}

fn digest(img: &Image) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (name, ino) in &img.names {
        h.update(name.as_encoded_bytes());
        h.update([0]);
        let d = &img.inodes[ino];
        h.update((d.len() as u64).to_le_bytes());
        h.update(d);
    }
    h.finalize().into()
}

/// A count of states checked and violations found, printed as the replayer's report.
#[derive(Default, Debug)]
pub struct Report {
    pub scenario: String,
    pub states: usize,
    pub violations: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            ..Report::default()
        }
    }

    /// Prints `crash replay: SCENARIO: N states, M violations` (and the first violations).
    pub fn print(&self) {
        eprintln!(
            "crash replay: {}: {} states checked, {} violations",
            self.scenario,
            self.states,
            self.violations.len()
        );
        for v in self.violations.iter().take(5) {
            eprintln!("  violation: {v}");
        }
    }
}
