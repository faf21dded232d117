//! The recording test file system (tests/common/recfs.rs) itself: what it records is what
//! reached it, in order, and its images replay to what it holds. The crash-state and
//! fault-injection tests build on these properties.

mod common;
#[path = "common/crash.rs"]
mod crash;
#[path = "common/recfs.rs"]
mod recfs;
use common::*;
use recfs::{Fault, FaultOp, Image, Op, RecFs};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::Stdio;

fn recfs_in(f: &Fixture) -> RecFs {
    let dir = f.path("rec");
    std::fs::create_dir(&dir).unwrap();
    RecFs::mount(&dir)
}

#[test]
fn records_writes_syncs_and_renames_in_order_and_replays_them() {
    let f = Fixture::new();
    let rec = recfs_in(&f);
    let mut a = std::fs::File::create(rec.path("a.tmp")).unwrap();
    a.write_all(b"hello").unwrap();
    a.write_all_at(b"J", 0).unwrap();
    a.sync_data().unwrap();
    drop(a);
    std::fs::rename(rec.path("a.tmp"), rec.path("a")).unwrap();
    std::fs::File::open(rec.path(""))
        .unwrap()
        .sync_all()
        .unwrap();
    let log = rec.take_log();
    let ino = match &log[0] {
        Op::Create { ino, name } if name == "a.tmp" => *ino,
        other => panic!("first op {other:?}"),
    };
    assert_eq!(
        log[1..],
        [
            Op::Write {
                ino,
                off: 0,
                data: b"hello".to_vec()
            },
            Op::Write {
                ino,
                off: 0,
                data: b"J".to_vec()
            },
            Op::Fsync {
                ino,
                datasync: true
            },
            Op::Rename {
                from: OsString::from("a.tmp"),
                to: OsString::from("a")
            },
            Op::FsyncDir,
        ]
    );
    let mut img = Image::default();
    log.iter().for_each(|op| img.apply(op));
    assert_eq!(img.file("a"), Some(&b"Jello"[..]));
    assert_eq!(img.file("a.tmp"), None);
    assert_eq!(img, rec.image());
    assert!(rec.take_log().is_empty());
}

#[test]
fn crash_states_keep_what_was_synced_and_vary_the_rest() {
    let name = OsString::from("f");
    let w = |off: u64, byte: u8, len: usize| Op::Write {
        ino: 2,
        off,
        data: vec![byte; len],
    };
    let rec = crash::Recording {
        base: Image::default(),
        ops: vec![
            Op::Create {
                ino: 2,
                name: name.clone(),
            },
            w(0, 1, 1024),
            Op::Fsync {
                ino: 2,
                datasync: true,
            },
            Op::Mark("synced".into()),
            w(0, 2, 1024),
            w(1024, 3, 512),
        ],
    };
    let states = crash::states(&rec, crash::Budget::default());
    let mut seen = std::collections::BTreeSet::new();
    for st in &states {
        let f = st.image.file("f");
        if st.cut <= 2 {
            // Before the fsync completed: the file may not even exist (its name is not synced).
            assert!(st.marks.is_empty());
            continue;
        }
        assert_eq!(st.marks, ["synced"]);
        // The name was never synced with a directory fsync, so the file may be missing; if it
        // is there, each 512-byte piece of its first 1 KiB is the synced (1) or the new (2)
        // data, never zeros or a mix within a piece.
        if let Some(f) = f {
            for piece in f[..1024].chunks(512) {
                assert!(piece == [1; 512] || piece == [2; 512], "{}", st.what);
            }
            seen.insert(f.iter().step_by(512).copied().collect::<Vec<u8>>());
        }
    }
    // The synced data alone, the new data, a torn mix, the new tail.
    for shape in [&[1, 1][..], &[2, 2], &[2, 1], &[2, 2, 3]] {
        assert!(seen.contains(shape), "no state {shape:?} among {seen:?}");
    }
}

#[test]
fn a_luksfuse_mount_on_it_records_ciphertext_then_the_payload_sync() {
    let base = Fixture::new();
    let rec = recfs_in(&base);
    let f = Fixture {
        header: rec.path("h.img"),
        payload: rec.path("p.raw"),
        keyfile: base.keyfile.clone(),
        dir: tmpdir(),
    };
    std::fs::File::create(&f.payload)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let f = f.luks_format(&[&["--type", "luks2"][..], &fast_kdf("pbkdf2")].concat());
    let payload_ino = rec.image().names[&OsString::from("p.raw")];
    rec.take_log();
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _g = MountGuard(mnt.clone());
    let child = mount_foreground(&f, &f.payload, &mnt, Stdio::null());
    let plain = vec![0x5a; 8192];
    let file = std::fs::File::options()
        .write(true)
        .open(mnt.join("p"))
        .unwrap();
    file.write_all_at(&plain, 4096).unwrap();
    file.sync_all().unwrap();
    let log = rec.take_log();
    let writes: Vec<_> = log
        .iter()
        .filter_map(|op| match op {
            Op::Write { ino, off, data } if *ino == payload_ino => Some((*off, data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(writes, [(4096, 8192)], "{log:?}");
    let (Op::Write { data, .. }, Op::Fsync { ino, .. }) = (&log[0], log.last().unwrap()) else {
        panic!("{log:?}");
    };
    assert_ne!(data, &plain, "the payload got plaintext");
    assert_eq!(*ino, payload_ino);
    drop(file);

    // A failed write reaches the writer, and the next one works.
    rec.inject(Fault::once(FaultOp::Write, "p.raw", libc::EIO));
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(mnt.join("p"))
        .unwrap();
    let e = file.write_all_at(&[1; 4096], 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(rec.fired().len(), 1);
    file.write_all_at(&[2; 4096], 0).unwrap();
    let mut back = vec![0; 4096 * 3];
    file.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back[..4096], [2; 4096]);
    assert_eq!(back[4096..], plain[..]);
    close(file);
    let r = luksfuse(&["umount", "--timeout", "20", s(&mnt)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}
