//! Issue 16's crash replayer for header changes: each key change (format --force, add-key,
//! change-key, remove-key, kill-slot, header-restore) is run by the real luksfuse binary on a
//! header kept on recfs (tests/common/recfs.rs), and every crash state the recording allows
//! (tests/common/crash.rs: lost, reordered and torn unsynced writes, unsynced renames) is
//! checked with luksfuse `test-key` and `cryptsetup open --test-passphrase`, which must agree:
//! the header opens with exactly the old key set or exactly the new one, never neither and
//! never a mix; once the command has exited 0, only the new one; inside an image (header and
//! data in one file) the data after the header is byte for byte what it was.
//!
//! Detached headers (LUKS1 and LUKS2: replaced by rename, src/luks/update.rs) and attached
//! images (LUKS1 and LUKS2: changed in place in three synced phases, src/luks/in_place.rs).
//! The tools only read the header file, so each distinct header content is checked once
//! (materialised in a fresh directory) and the verdict reused for every state holding it.
//!
//! Budget: small by default (the whole file in about a minute); `CRASHTEST=1` raises it,
//! `CRASH_STATES=N` sets the number of states per scenario.

mod common;
#[path = "common/crash.rs"]
mod crash;
#[path = "common/recfs.rs"]
mod recfs;
use common::*;
use recfs::RecFs;
use sha2::Digest as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const FAST: [&str; 4] = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

/// The passphrases of the scenarios, one key file each: `{a}`, `{b}`, `{c}`.
const KEYS: [(&str, &[u8]); 3] = [
    ("a", b"the first passphrase"),
    ("b", b"a second passphrase"),
    ("c", b"a third passphrase"),
];

/// Where the header lives and which version it is.
#[derive(Clone, Copy, Debug)]
struct Layout {
    attached: bool,
    version: &'static str,
}

/// Bytes of data after an attached image's header (its data area starts at 2 MiB).
const DATA_LEN: usize = 256 << 10;
const DATA_OFFSET_SECTORS: &str = "4096";

/// One header change: the key changes made before the recording (`setup`, on an ordinary
/// directory) and the command recorded; `{h}` is the header (the image when attached), `{a}`
/// `{b}` `{c}` the key files, `{bak}` a backup file. `old`/`new`: which keys open before and
/// after (by index in [`KEYS`]).
struct Scenario {
    name: &'static str,
    setup: &'static [&'static [&'static str]],
    run: &'static [&'static str],
    /// Whether the command succeeds (an attached image cannot be formatted over: refused, and
    /// then nothing may change).
    ok: bool,
    old: &'static [usize],
    new: &'static [usize],
}

const ADD_B: &[&str] = &[
    "add-key",
    "-d",
    "{a}",
    "--new-key-file",
    "{b}",
    "FAST",
    "{h}",
];

fn scenarios(l: Layout) -> Vec<Scenario> {
    let format: &'static [&'static str] = if l.attached {
        // The new header's layout as the old one's, the data after it: still refused.
        &[
            "format", "--force", "--type", "TYPE", "-d", "{c}", "FAST", "--offset", "4096", "{h}",
        ]
    } else {
        &[
            "format", "--force", "--type", "TYPE", "-d", "{c}", "FAST", "{h}",
        ]
    };
    let mut all = vec![
        Scenario {
            name: "format --force",
            setup: &[],
            run: format,
            ok: !l.attached,
            old: &[0],
            new: if l.attached { &[0] } else { &[2] },
        },
        Scenario {
            name: "add-key",
            setup: &[],
            run: ADD_B,
            ok: true,
            old: &[0],
            new: &[0, 1],
        },
        Scenario {
            name: "change-key",
            setup: &[ADD_B],
            run: &[
                "change-key",
                "-d",
                "{b}",
                "--new-key-file",
                "{c}",
                "FAST",
                "{h}",
            ],
            ok: true,
            old: &[0, 1],
            new: &[0, 2],
        },
        Scenario {
            name: "remove-key",
            setup: &[ADD_B],
            run: &["remove-key", "-d", "{b}", "{h}"],
            ok: true,
            old: &[0, 1],
            new: &[0],
        },
        Scenario {
            name: "kill-slot",
            setup: &[ADD_B],
            run: &["kill-slot", "-d", "{b}", "0", "{h}"],
            ok: true,
            old: &[0, 1],
            new: &[1],
        },
        Scenario {
            name: "header-restore",
            setup: &[
                &["header-backup", "--header-backup-file", "{bak}", "{h}"],
                ADD_B,
            ],
            run: &[
                "header-restore",
                "-q",
                "--header-backup-file",
                "{bak}",
                "{h}",
            ],
            ok: true,
            old: &[0, 1],
            new: &[0],
        },
    ];
    if l.version == "luks1" {
        // Keyslot 6's descriptor spans both sectors of the LUKS1 header: in place, the sector
        // that switches it on must land last.
        all.push(Scenario {
            name: "add-key -S 6",
            setup: &[],
            run: &[
                "add-key",
                "-S",
                "6",
                "-d",
                "{a}",
                "--new-key-file",
                "{b}",
                "FAST",
                "{h}",
            ],
            ok: true,
            old: &[0],
            new: &[0, 1],
        });
    }
    all
}

fn budget() -> crash::Budget {
    let long = std::env::var_os("CRASHTEST").is_some_and(|v| v != "0");
    let mut b = crash::Budget {
        per_cut: if long { 64 } else { 10 },
        total: if long { 2000 } else { 60 },
        ..crash::Budget::default()
    };
    if let Some(n) = std::env::var("CRASH_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        b.total = n;
        b.per_cut = b.per_cut.max(n / 8).max(2);
    }
    b
}

/// A scenario's files: key files, a payload for cryptsetup's detached opens, a backup place.
struct Place {
    dir: tempfile::TempDir,
    layout: Layout,
}

impl Place {
    fn new(layout: Layout) -> Place {
        let dir = tmpdir();
        for (name, pass) in KEYS {
            write_file(&dir.path().join(name), pass);
        }
        let p = Place { dir, layout };
        std::fs::File::create(p.path("p.raw"))
            .and_then(|f| f.set_len(1 << 20))
            .unwrap();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self, i: usize) -> PathBuf {
        self.path(KEYS[i].0)
    }

    /// The header file's name.
    fn name(&self) -> &'static str {
        if self.layout.attached {
            "disk.img"
        } else {
            "h.img"
        }
    }

    /// The arguments with placeholders filled, the header at `header`.
    fn args(&self, args: &[&str], header: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for a in args {
            match *a {
                "FAST" => out.extend(FAST.iter().map(|s| s.to_string())),
                "TYPE" => out.push(self.layout.version.to_string()),
                "{h}" => out.push(s(header).to_string()),
                "{bak}" => out.push(s(&self.path("backup.img")).to_string()),
                "{a}" => out.push(s(&self.key(0)).to_string()),
                "{b}" => out.push(s(&self.key(1)).to_string()),
                "{c}" => out.push(s(&self.key(2)).to_string()),
                other => out.push(other.to_string()),
            }
        }
        out
    }

    /// The header made by cryptsetup with key `a` in keyslot 0 (attached: noise data after
    /// it), then `setup` applied by luksfuse; returns its bytes.
    fn make_header(&self, setup: &[&[&str]]) -> Vec<u8> {
        let (h, p, a) = (self.path(self.name()), self.path("p.raw"), self.key(0));
        let mut args = vec!["luksFormat", "-q", "--type", self.layout.version];
        args.extend(["--key-file", s(&a)]);
        args.extend(FAST);
        if self.layout.attached {
            write_file(&h, &noise((2 << 20) + DATA_LEN, 16));
            args.extend(["--offset", DATA_OFFSET_SECTORS, s(&h)]);
        } else {
            if self.layout.version == "luks2" {
                // A 2 MiB keyslots area (room for 8 keyslots of 512-bit keys), not 16 MiB.
                args.extend(["--luks2-metadata-size", "16384"]);
                args.extend(["--luks2-keyslots-size", "2097152"]);
            }
            args.extend(["--header", s(&h), s(&p)]);
        }
        run_ok(Command::new("cryptsetup").args(&args));
        for step in setup {
            let r = luksfuse(&self.args(step, &h), b"");
            assert_eq!(r.code, 0, "setup {step:?}: {}", r.stderr);
        }
        std::fs::read(&h).unwrap()
    }

    /// Which of the keys `which` open the header `h` (luksfuse and cryptsetup must agree; the
    /// others are `false`), or what is wrong.
    fn opens(&self, h: &Path, which: &[bool]) -> Result<Vec<bool>, String> {
        let payload = if self.layout.attached {
            h.to_path_buf()
        } else {
            self.path("p.raw")
        };
        let mut out = Vec::new();
        for i in 0..KEYS.len() {
            if !which[i] {
                out.push(false);
                continue;
            }
            let key = self.key(i);
            let ours = luksfuse(&["test-key", "-d", s(&key), s(h)], b"").code;
            let theirs = cryptsetup_test_key(h, &payload, &key, None);
            if (ours == 0) != (theirs == 0) {
                return Err(format!(
                    "key {}: luksfuse test-key exit {ours}, cryptsetup exit {theirs}",
                    KEYS[i].0
                ));
            }
            out.push(ours == 0);
        }
        Ok(out)
    }

    /// The header `h` as a state: the keys of `which` that open it and the keyslots
    /// cryptsetup's luksDump shows active (a keyslot active with half its material opens with
    /// nothing: a mix of the old and the new header even if the keys open as one of them).
    fn state(&self, h: &Path, which: &[bool]) -> Result<KeySet, String> {
        let opens = self.opens(h, which)?;
        let (code, dump) = cryptsetup_dump(h);
        if code != 0 {
            return Ok(KeySet { opens, slots: None });
        }
        let slots = dump
            .lines()
            .filter_map(|l| {
                // LUKS1: "Key Slot 3: ENABLED"; LUKS2 (under "Keyslots:"): "  3: luks2".
                let n = match l.strip_prefix("Key Slot ") {
                    Some(rest) => rest.strip_suffix(": ENABLED")?,
                    None => l.strip_prefix("  ")?.strip_suffix(": luks2")?,
                };
                n.parse().ok()
            })
            .collect();
        Ok(KeySet {
            opens,
            slots: Some(slots),
        })
    }
}

/// What a header state is: the keys that open it, the active keyslots (`None`: cryptsetup
/// cannot read it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeySet {
    opens: Vec<bool>,
    slots: Option<Vec<u32>>,
}

impl std::fmt::Display for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.slots {
            Some(s) => write!(f, "{} in keyslots {s:?}", names(&self.opens)),
            None => write!(f, "{} (no header cryptsetup reads)", names(&self.opens)),
        }
    }
}

fn set(keys: &[usize]) -> Vec<bool> {
    (0..KEYS.len()).map(|i| keys.contains(&i)).collect()
}

fn names(opens: &[bool]) -> String {
    let v: Vec<&str> = (0..KEYS.len())
        .filter(|&i| opens[i])
        .map(|i| KEYS[i].0)
        .collect();
    format!("{{{}}}", v.join(","))
}

/// Records `sc` on `layout` and checks every crash state; returns the report.
fn replay(layout: Layout, sc: &Scenario) -> crash::Report {
    let what = format!(
        "{} {} {}",
        if layout.attached {
            "attached"
        } else {
            "detached"
        },
        layout.version,
        sc.name
    );
    let place = Place::new(layout);
    let before = place.make_header(sc.setup);
    let (old_keys, new_keys) = (set(sc.old), set(sc.new));
    // Every key of either set is tried in every state.
    let tried: Vec<bool> = old_keys
        .iter()
        .zip(&new_keys)
        .map(|(o, n)| *o || *n)
        .collect();
    let old = place
        .state(&place.path(place.name()), &tried)
        .unwrap_or_else(|e| panic!("{what}: before: {e}"));
    assert_eq!(old.opens, old_keys, "{what}: the old key set");

    let mnt = place.path("rec");
    std::fs::create_dir(&mnt).unwrap();
    let rec = RecFs::mount(&mnt);
    let h = rec.path(place.name());
    write_file(&h, &before);
    rec.take_log();
    let base = rec.image();
    let r = luksfuse(&place.args(sc.run, &h), b"");
    assert_eq!(r.code == 0, sc.ok, "{what}: exit {}: {}", r.code, r.stderr);
    if r.code == 0 {
        rec.mark("done");
    }
    let recording = crash::Recording {
        base,
        ops: rec.take_log(),
    };
    if !sc.ok {
        assert!(
            recording
                .ops
                .iter()
                .all(|o| matches!(o, recfs::Op::Mark(_))),
            "{what}: refused, yet it wrote: {:?}",
            recording.ops
        );
    }
    // The final files: the new key set (checked off recfs, as every state is).
    let after = rec.image();
    drop(rec);
    let states = crash::states(&recording, budget());

    let mut report = crash::Report::new(&what);
    let mut verdicts: HashMap<Vec<u8>, Result<KeySet, String>> = HashMap::new();
    let check_dir = place.path("states");
    std::fs::create_dir(&check_dir).unwrap();
    let mut fresh = 0;
    let mut verdict = |image: &recfs::Image| -> Result<KeySet, String> {
        let Some(file) = image.file(place.name()) else {
            return Err("the header file is gone".into());
        };
        let key = sha2::Sha256::digest(file).to_vec();
        verdicts
            .entry(key)
            .or_insert_with(|| {
                fresh += 1;
                let dir = check_dir.join(fresh.to_string());
                std::fs::create_dir(&dir).unwrap();
                image.write_to(&dir);
                let v = place.state(&dir.join(place.name()), &tried);
                std::fs::remove_dir_all(&dir).unwrap();
                v
            })
            .clone()
    };
    let new = verdict(&after).unwrap_or_else(|e| panic!("{what}: after: {e}"));
    assert_eq!(new.opens, new_keys, "{what}: the new key set at the end");
    let header_len = if layout.attached { 2 << 20 } else { 0 };
    for st in &states {
        report.states += 1;
        let done = st.marks.iter().any(|m| m == "done");
        let mut wrong = Vec::new();
        if layout.attached {
            match st.image.file(place.name()) {
                Some(f) if f.len() == before.len() && f[header_len..] == before[header_len..] => {}
                Some(_) => wrong.push("the data after the header changed".to_string()),
                None => {}
            }
        }
        match verdict(&st.image) {
            Err(e) => wrong.push(e),
            Ok(o) if done && o != new => wrong.push(format!(
                "opens with {o} after the command exited 0 (new: {new})"
            )),
            Ok(o) if o != old && o != new => {
                wrong.push(format!("opens with {o} (old: {old}, new: {new})"))
            }
            Ok(_) => {}
        }
        if !wrong.is_empty() {
            report.violations.push(format!(
                "{} ({}): {}",
                st.what,
                st.marks.join(","),
                wrong.join("; ")
            ));
        }
    }
    eprintln!(
        "{what}: {} operations recorded, {} distinct headers checked",
        recording.ops.len(),
        fresh
    );
    report
}

/// Every scenario on `layout`: reports printed, then no violations and enough states.
fn replay_all(layout: Layout) {
    let all = scenarios(layout);
    let reports: Vec<crash::Report> = all.iter().map(|sc| replay(layout, sc)).collect();
    // A change crosses the flushes of its commit (detached: the copy's sync and the directory
    // sync; attached: one per phase): states before, between and after. A refused command
    // writes nothing: the one state is the file as it was.
    let mins = all.iter().map(|sc| if sc.ok { 4 } else { 1 });
    for r in &reports {
        r.print();
    }
    for (r, min) in reports.iter().zip(mins) {
        assert!(
            r.violations.is_empty(),
            "{}: {:?}",
            r.scenario,
            r.violations
        );
        assert!(r.states >= min, "{}: only {} states", r.scenario, r.states);
    }
}

#[test]
fn detached_luks2_header_changes_open_with_the_old_or_the_new_keys_after_any_crash() {
    replay_all(Layout {
        attached: false,
        version: "luks2",
    });
}

#[test]
fn detached_luks1_header_changes_open_with_the_old_or_the_new_keys_after_any_crash() {
    replay_all(Layout {
        attached: false,
        version: "luks1",
    });
}

#[test]
fn attached_luks2_header_changes_open_with_the_old_or_the_new_keys_after_any_crash() {
    replay_all(Layout {
        attached: true,
        version: "luks2",
    });
}

#[test]
fn attached_luks1_header_changes_open_with_the_old_or_the_new_keys_after_any_crash() {
    replay_all(Layout {
        attached: true,
        version: "luks1",
    });
}
