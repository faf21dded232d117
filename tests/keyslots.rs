//! Keyslots one by one, and every header shape `cryptsetup luksDump` shows, against cryptsetup
//! 2.6.1: a keyslot luksfuse cannot use is skipped and the others unlock; unbound keyslots;
//! tokens; several, unknown and huge segments (dumped, not mounted); headers cryptsetup refuses;
//! exit codes; a payload that is not whole encryption sectors. Each header is made by
//! cryptsetup and then changed by JSON surgery (tests/common/keyslot_shapes.rs).

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

macro_rules! need_cryptsetup {
    () => {
        // `make test` installs cryptsetup: a missing peer is a failure, not a skip.
        assert!(
            have_cryptsetup(),
            "cryptsetup is not installed (run make deps)"
        );
    };
}

/// `luksfuse test-key` of `header` with key file `key` (`-S slot` if given), and `-v`.
fn test_key(header: &Path, key: &Path, slot: Option<u32>) -> Run {
    let slot = slot.map(|n| n.to_string());
    let mut args = vec!["test-key", "-v", "--key-file", s(key)];
    if let Some(n) = &slot {
        args.extend(["-S", n]);
    }
    args.push(s(header));
    luksfuse(&args, b"")
}

fn file_name(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}

/// What each unusable shape of a keyslot does to it.
const UNUSABLE: &[(&str, &str)] = &[
    // cryptsetup's own validation images name their KDF so.
    ("kdf", "unknown KDF type 'argon2'"),
    ("cipher", "unsupported cipher"),
    ("type", "keyslot type 'luks3' is not supported"),
];

fn make_unusable(what: &str, slot: u32, j: &mut Value) {
    let k = &mut j["keyslots"][slot.to_string()];
    match what {
        "kdf" => k["kdf"]["type"] = json!("argon2"),
        "cipher" => k["area"]["encryption"] = json!("nosuch-xts-plain64"),
        "type" => k["type"] = json!("luks3"),
        _ => unreachable!(),
    }
}

#[test]
fn one_unusable_keyslot_leaves_the_others() {
    need_cryptsetup!();
    let f = luks2_two_slots(false);
    let key2 = f.path("key2");
    let vk = f.volume_key();
    for &(what, reason) in UNUSABLE {
        for bad in [0u32, 1] {
            let good = 1 - bad;
            let h = shape(&f, &format!("{what}{bad}.img"), &|j| {
                make_unusable(what, bad, j)
            });
            let (bad_key, good_key) = if bad == 0 {
                (&f.keyfile, &key2)
            } else {
                (&key2, &f.keyfile)
            };
            let case = format!("{what} in keyslot {bad}");
            // The dump shows the keyslot as cryptsetup's does.
            let (code, cs_dump) = cryptsetup_dump(&h);
            assert_eq!(code, 0, "{case}: cryptsetup luksDump");
            let r = luksfuse(&["dump", s(&h)], b"");
            assert_eq!(r.code, 0, "{case}: {}", r.stderr);
            assert_eq!(
                dump_section(&r.stdout, "Keyslots:"),
                dump_section(&cs_dump, "Keyslots:"),
                "{case}"
            );
            // The good keyslot opens, and gives the volume key. cryptsetup agrees when it
            // meets the good keyslot first; it gives up at a `luks2` keyslot it cannot open
            // when that comes first (exit 1), where luksfuse goes on.
            let r = test_key(&h, good_key, None);
            assert_eq!(r.code, 0, "{case}: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("keyslot {bad} skipped")) || bad > good,
                "{case}: no note under -v: {}",
                r.stderr
            );
            let cs = cryptsetup_test_key(&h, &f.payload, good_key, None);
            if bad > good || what == "type" {
                assert_eq!(cs, 0, "{case}: cryptsetup");
            } else {
                assert_eq!(cs, 1, "{case}: cryptsetup");
            }
            let got = luksfuse_volume_key(
                &[
                    "dump",
                    "-q",
                    "--dump-volume-key",
                    "--key-file",
                    s(good_key),
                    s(&h),
                ],
                b"",
            );
            assert_eq!(got, vk, "{case}");
            // The bad keyslot's passphrase: what cryptsetup says (its exit code), and the
            // reason, naming the file. cryptsetup stops at a `luks2` keyslot it cannot open
            // (1) and passes over one of another type (so the passphrase is just wrong: 2).
            let want = if what == "type" { 2 } else { 1 };
            let r = test_key(&h, bad_key, None);
            assert_eq!(r.code, want, "{case}: {}", r.stderr);
            // cryptsetup 2.6.1 gives the verdict of the last keyslot it tried, so a foreign
            // keyslot last makes it 1 ("No usable keyslot is available."); later versions
            // prefer the wrong passphrase (2), as luksfuse does.
            let cs_want = if what == "type" && bad == 1 { 1 } else { want };
            assert_eq!(
                cryptsetup_test_key(&h, &f.payload, bad_key, None),
                cs_want,
                "{case}: cryptsetup"
            );
            if want == 1 {
                assert!(r.stderr.contains(reason), "{case}: {}", r.stderr);
            }
            // Asked for by number: exit 1 as cryptsetup, the file, keyslot and reason named.
            let r = test_key(&h, bad_key, Some(bad));
            assert_eq!(r.code, 1, "{case}: {}", r.stderr);
            assert_eq!(
                cryptsetup_test_key(&h, &f.payload, bad_key, Some(bad)),
                1,
                "{case}: cryptsetup -S"
            );
            let line = r.stderr.lines().next().unwrap_or_default();
            for part in [file_name(&h), &format!("keyslot {bad}"), reason] {
                assert!(line.contains(part), "{case}: {part:?} not in {line:?}");
            }
        }
    }
}

#[test]
fn a_damaged_keyslot_area_is_a_wrong_passphrase_for_it_only() {
    need_cryptsetup!();
    let f = luks2_two_slots(false);
    let key2 = f.path("key2");
    let mut img = f.read_header();
    let j = read_json(&img, 0);
    let off: usize = j["keyslots"]["0"]["area"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    img[off..off + 4096].copy_from_slice(&noise(4096, 7));
    let h = f.path("damaged.img");
    write_file(&h, &img);
    assert_eq!(test_key(&h, &f.keyfile, None).code, 2);
    assert_eq!(cryptsetup_test_key(&h, &f.payload, &f.keyfile, None), 2);
    assert_eq!(test_key(&h, &key2, None).code, 0);
    assert_eq!(cryptsetup_test_key(&h, &f.payload, &key2, None), 0);
}

#[test]
fn unbound_keyslot_opens_by_number_and_does_not_mount() {
    need_cryptsetup!();
    let f = luks2_two_slots(true);
    let key2 = f.path("key2");
    let h = &f.header;
    // The dump marks it, as cryptsetup's.
    let r = luksfuse(&["dump", s(h)], b"");
    assert!(r.stdout.contains("  1: luks2 (unbound)"), "{}", r.stdout);
    assert_eq!(
        dump_section(&r.stdout, "Keyslots:"),
        dump_section(&cryptsetup_dump(h).1, "Keyslots:")
    );
    // test-key -S 1: exit 0 as cryptsetup; without -S: 1 as cryptsetup 2.6.1, saying why.
    assert_eq!(test_key(h, &key2, Some(1)).code, 0);
    assert_eq!(cryptsetup_test_key(h, &f.payload, &key2, Some(1)), 0);
    let r = test_key(h, &key2, None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(cryptsetup_test_key(h, &f.payload, &key2, None), 1);
    assert!(r.stderr.contains("unbound"), "{}", r.stderr);
    // Its key, as `cryptsetup luksDump --unbound -S 1` gives it.
    let (code, cs, _) = cryptsetup_run(&[
        "luksDump",
        "-q",
        "--unbound",
        "-S",
        "1",
        "--key-file",
        s(&key2),
        s(h),
    ]);
    assert_eq!(code, 0);
    let r = luksfuse(
        &[
            "dump",
            "-q",
            "--dump-volume-key",
            "-S",
            "1",
            "--key-file",
            s(&key2),
            s(h),
        ],
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ours = parse_unbound_key(&r.stdout);
    assert_eq!(ours.len(), 64);
    assert_eq!(ours, parse_unbound_key(&cs));
    assert_ne!(ours, f.volume_key());
    // And `dump --unbound -S 1` prints exactly what cryptsetup prints; the exit codes of its
    // misuses are cryptsetup's too.
    let r = luksfuse(
        &["dump", "--unbound", "-S", "1", "--key-file", s(&key2), s(h)],
        b"",
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, cs.as_str()));
    for (args, key, code) in [
        (&["-S", "0"][..], &f.keyfile, 1),
        (&[], &key2, 1),
        (&["-S", "1"], &f.keyfile, 2),
    ] {
        let mut ours = vec!["dump", "--unbound", "--key-file", s(key)];
        ours.extend_from_slice(args);
        ours.push(s(h));
        assert_eq!(luksfuse(&ours, b"").code, code, "{ours:?}");
        let mut theirs = vec!["luksDump", "-q", "--unbound", "--key-file", s(key)];
        theirs.extend_from_slice(args);
        theirs.push(s(h));
        assert_eq!(cryptsetup_run(&theirs).0, code, "{theirs:?}");
    }
    // mount refuses, naming the file and saying why (cryptsetup's open: exit 1).
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    for slot in [&["-S", "1"][..], &[]] {
        let mut args = vec!["mount", "--key-file", s(&key2)];
        args.extend_from_slice(slot);
        args.extend([s(h), s(&f.payload), s(&mnt)]);
        let r = luksfuse(&args, b"");
        assert_eq!(r.code, 1, "{slot:?}: {}", r.stderr);
        assert!(r.stderr.contains("unbound"), "{}", r.stderr);
        assert!(r.stderr.contains("h.img"), "{}", r.stderr);
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn tokens_are_dumped_as_cryptsetup_dumps_them() {
    need_cryptsetup!();
    let mut args = vec!["--type", "luks2"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args);
    f.cryptsetup(&[
        "token",
        "add",
        "--key-description",
        "luksfuse:test",
        "--key-slot",
        "0",
    ]);
    let tok = f.path("token.json");
    write_file(&tok, br#"{"type":"some-plugin","keyslots":[],"data":"x"}"#);
    f.cryptsetup(&["token", "import", "--json-file", s(&tok)]);
    let r = luksfuse(&["dump", s(&f.header)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ours = dump_section(&r.stdout, "Tokens:");
    assert!(ours.contains("  1: some-plugin"), "{ours}");
    assert!(ours.contains("Key description: luksfuse:test"), "{ours}");
    assert_eq!(ours, dump_section(&cryptsetup_dump(&f.header).1, "Tokens:"));
    // Tokens do not stand in the way of a passphrase.
    assert_eq!(test_key(&f.header, &f.keyfile, None).code, 0);
}

/// A change of the JSON metadata.
type Edit = dyn Fn(&mut Value);

#[test]
fn segments_cryptsetup_reads_are_dumped_but_not_mounted() {
    need_cryptsetup!();
    let mut args = vec!["--type", "luks2", "--sector-size", "512"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args);
    let shapes: &[(&str, &Edit, &str)] = &[
        (
            "unknown-type.img",
            &|j| j["segments"]["0"]["type"] = json!("foo"),
            "type 'foo'",
        ),
        (
            "linear.img",
            &|j| {
                j["segments"]["0"] = json!({"type": "linear", "offset": "0", "size": "dynamic"});
                j["digests"]["0"]["segments"] = json!([]);
            },
            "type 'linear'",
        ),
        (
            "two.img",
            &|j| {
                let mut second = j["segments"]["0"].clone();
                second["offset"] = json!("8388608");
                j["segments"]["0"]["size"] = json!("8388608");
                j["segments"]["1"] = second;
                j["digests"]["0"]["segments"] = json!(["0", "1"]);
            },
            "2 segments",
        ),
        (
            // UINT64_MAX - 511, as cryptsetup's generate-luks2-uint64-max-segment-size.
            "huge.img",
            &|j| j["segments"]["0"]["size"] = json!("18446744073709551104"),
            "too small",
        ),
    ];
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    for (name, edit, reason) in shapes {
        let h = shape(&f, name, *edit);
        let (code, cs) = cryptsetup_dump(&h);
        assert_eq!(code, 0, "{name}: cryptsetup luksDump");
        let r = luksfuse(&["dump", s(&h)], b"");
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(
            dump_section(&r.stdout, "Data segments:"),
            dump_section(&cs, "Data segments:"),
            "{name}"
        );
        // The keyslots still open as cryptsetup's do (with no crypt segment, the keyslot is
        // unbound: 1); mapping is refused with the reason.
        let want = if *name == "linear.img" { 1 } else { 0 };
        assert_eq!(test_key(&h, &f.keyfile, None).code, want, "{name}");
        assert_eq!(
            cryptsetup_test_key(&h, &f.payload, &f.keyfile, None),
            want,
            "{name}: cryptsetup"
        );
        let r = luksfuse(
            &[
                "mount",
                "--key-file",
                s(&f.keyfile),
                s(&h),
                s(&f.payload),
                s(&mnt),
            ],
            b"",
        );
        assert_eq!(r.code, 4, "{name}: {}", r.stderr);
        let want_file = if *name == "huge.img" { "p.raw" } else { name };
        let line = r.stderr.lines().next().unwrap_or_default();
        assert!(
            line.contains(want_file) && line.contains(reason),
            "{name}: {line}"
        );
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn headers_cryptsetup_refuses_are_refused() {
    need_cryptsetup!();
    let f = luks2_two_slots(false);
    let hdr = f.read_header();
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "keyslot without digest",
            shape(&f, "nodigest.img", &|j| {
                j["digests"]["0"]["keyslots"] = json!(["0"])
            }),
            "keyslot 1 is not assigned to any digest",
        ),
        (
            "keyslots area into the data",
            // cryptsetup's detached header has a 16 MiB keyslots area; data at 1 MiB.
            shape(&f, "overlap.img", &|j| {
                j["segments"]["0"]["offset"] = json!("1048576")
            }),
            "reaches into the data segment",
        ),
        (
            "area type",
            shape(&f, "areatype.img", &|j| {
                j["keyslots"]["1"]["area"]["type"] = json!("weird")
            }),
            "area type 'weird'",
        ),
        (
            "file shorter than its keyslot areas",
            {
                let p = f.path("short.img");
                write_file(&p, &hdr[..600_000]);
                p
            },
            "too small",
        ),
    ];
    for (case, h, reason) in cases {
        let sum = sha256_file(&h);
        assert_eq!(cryptsetup_dump(&h).0, 1, "{case}: cryptsetup");
        for args in [
            vec!["dump", s(&h)],
            vec!["test-key", "-d", s(&f.keyfile), s(&h)],
        ] {
            let r = luksfuse(&args, b"");
            assert_eq!(r.code, 4, "{case}: {}", r.stderr);
            let line = r.stderr.lines().next().unwrap_or_default();
            assert!(
                line.contains(file_name(&h)) && line.contains(reason),
                "{case}: {line}"
            );
        }
        assert_eq!(sha256_file(&h), sum, "{case}: a byte changed");
    }
}

#[test]
fn no_active_keyslot_exits_1_as_cryptsetup() {
    need_cryptsetup!();
    for ty in ["luks1", "luks2"] {
        let mut args = vec!["--type", ty];
        args.extend(fast_kdf("pbkdf2"));
        let f = luks_format(&args);
        // -S of an inactive keyslot: 1 as well.
        assert_eq!(test_key(&f.header, &f.keyfile, Some(3)).code, 1, "{ty}");
        assert_eq!(
            cryptsetup_test_key(&f.header, &f.payload, &f.keyfile, Some(3)),
            1
        );
        f.cryptsetup(&["luksKillSlot", "0"]);
        let r = test_key(&f.header, &f.keyfile, None);
        assert_eq!(r.code, 1, "{ty}: {}", r.stderr);
        assert!(r.stderr.contains("h.img"), "{}", r.stderr);
        assert_eq!(
            cryptsetup_test_key(&f.header, &f.payload, &f.keyfile, None),
            1
        );
    }
}

#[test]
fn payload_not_whole_encryption_sectors_is_refused() {
    need_cryptsetup!();
    let mut args = vec!["--type", "luks2", "--sector-size", "4096"];
    args.extend(fast_kdf("pbkdf2"));
    let f = luks_format(&args).payload_len((16 << 20) + 512);
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let r = luksfuse(
        &[
            "mount",
            "--key-file",
            s(&f.keyfile),
            s(&f.header),
            s(&f.payload),
            s(&mnt),
        ],
        b"",
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("p.raw") && r.stderr.contains("4096-byte encryption sectors"),
        "{}",
        r.stderr
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn format_with_an_offset_sizes_the_keyslots_area_as_cryptsetup() {
    need_cryptsetup!();
    // The keyslots area must end before the data: cryptsetup's luksFormat --offset 4096 makes
    // it 2 MiB less both header copies, and refuses a header whose area reaches further.
    let mut args = vec!["--type", "luks2", "--offset", "4096"];
    args.extend(fast_kdf("pbkdf2"));
    let theirs = luks_format(&args);
    let f = Fixture::new();
    let mut ours = vec!["format", "-q", "-d", s(&f.keyfile), s(&f.header)];
    ours.extend(&args);
    let r = luksfuse(&ours, b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, dump) = cryptsetup_dump(&f.header);
    assert_eq!(code, 0, "cryptsetup refuses luksfuse's header");
    let area = |d: &str| {
        d.lines()
            .find(|l| l.starts_with("Keyslots area:"))
            .map(str::to_owned)
    };
    assert_eq!(area(&dump), area(&cryptsetup_dump(&theirs.header).1));
    assert_eq!(
        std::fs::metadata(&f.header).unwrap().len(),
        std::fs::metadata(&theirs.header).unwrap().len()
    );
    assert_eq!(
        cryptsetup_test_key(&f.header, &f.payload, &f.keyfile, None),
        0
    );
}

#[test]
fn mount_passes_over_an_unusable_preferred_keyslot() {
    need_cryptsetup!();
    let f = luks2_two_slots(false);
    let data = noise(1 << 20, 12);
    {
        let m = Mounted::new(&f, &[], "p");
        let file = std::fs::File::options()
            .write(true)
            .open(m.mnt.join("p"))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &data, 4096).unwrap();
        file.sync_all().unwrap();
        drop(file);
        m.unmount();
    }
    // Keyslot 1, tried first (priority "prefer"), names a KDF nobody has; keyslot 0 still
    // opens, in the mount too, and the data reads back.
    let mut img = f.read_header();
    rewrite_json(&mut img, &|j| {
        j["keyslots"]["1"]["kdf"]["type"] = json!("argon2");
        j["keyslots"]["1"]["priority"] = json!(2);
    });
    write_file(&f.header, &img);
    assert_eq!(cryptsetup_dump(&f.header).0, 0);
    let r = test_key(&f.header, &f.keyfile, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("keyslot 1 skipped"), "{}", r.stderr);
    let m = Mounted::new(&f, &[], "p");
    let mut got = vec![0u8; data.len()];
    let file = std::fs::File::open(m.mnt.join("p")).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut got, 4096).unwrap();
    drop(file);
    assert!(got == data, "data read back differs");
    m.unmount();
}

#[test]
fn unknown_requirement_is_read_but_neither_mapped_nor_changed() {
    need_cryptsetup!();
    let f = luks2_two_slots(false);
    let h = shape(&f, "req.img", &|j| {
        j["config"]["requirements"] = json!({"mandatory": ["future-feature"]})
    });
    // cryptsetup dumps it (with a Requirements line) and opens its keyslots...
    let (code, cs) = cryptsetup_dump(&h);
    assert_eq!(code, 0);
    let r = luksfuse(&["dump", s(&h)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let head = |d: &str| {
        d.lines()
            .filter(|l| l.starts_with("Flags:") || l.starts_with("Requirements:"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(head(&r.stdout), head(&cs));
    assert_eq!(test_key(&h, &f.keyfile, None).code, 0);
    assert_eq!(cryptsetup_test_key(&h, &f.payload, &f.keyfile, None), 0);
    // ...refuses new or changed keyslots (exit 1, "Unmet LUKS2 requirements detected.")
    // but removes them, and does not map it.
    let key2 = f.path("key2");
    let new_key = f.path("key3");
    write_file(&new_key, b"a third passphrase");
    let copy = f.path("req-cs.img");
    std::fs::copy(&h, &copy).unwrap();
    let sum = sha256_file(&h);
    let fast = fast_kdf("pbkdf2");
    let change = |tool_is_cs: bool, hdr: &Path| {
        if tool_is_cs {
            let mut a = vec!["luksChangeKey", "-q", "--key-file", s(&key2)];
            a.extend(&fast);
            a.extend(["--header", s(hdr), s(&f.payload), s(&new_key)]);
            cryptsetup_run(&a)
        } else {
            let mut a = vec!["change-key", "-d", s(&key2), "--new-key-file", s(&new_key)];
            a.extend(&fast);
            a.push(s(hdr));
            let r = luksfuse(&a, b"");
            (r.code, r.stdout, r.stderr)
        }
    };
    for (tool, hdr) in [(true, &copy), (false, &h)] {
        let (code, _, err) = change(tool, hdr);
        assert_eq!(code, 1, "cryptsetup {tool}: {err}");
        assert!(err.contains("Unmet LUKS2 requirements"), "{err}");
    }
    assert_eq!(
        sha256_file(&h),
        sum,
        "a refused change-key changed the header"
    );
    let (code, _, err) = cryptsetup_run(&[
        "luksRemoveKey",
        "-q",
        "--header",
        s(&copy),
        s(&f.payload),
        s(&key2),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = luksfuse(&["remove-key", "-q", "-d", s(&key2), s(&h)], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!luksfuse(&["dump", s(&h)], b"")
        .stdout
        .contains("  1: luks2"));
    let mnt = f.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard(mnt.clone());
    let r = luksfuse(
        &["mount", "-d", s(&f.keyfile), s(&h), s(&f.payload), s(&mnt)],
        b"",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("req.img"), "{}", r.stderr);
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_digest_of_unknown_type_makes_only_its_keyslots_unusable() {
    need_cryptsetup!();
    for (unbound, want) in [(true, 0), (false, 1)] {
        let f = luks2_two_slots(unbound);
        // The unbound key has digest 1 of its own; otherwise both keyslots share digest 0.
        let d = if unbound { "1" } else { "0" };
        let h = shape(&f, "digest.img", &|j| {
            j["digests"][d]["type"] = json!("foo")
        });
        let (code, cs) = cryptsetup_dump(&h);
        assert_eq!(code, 0);
        let r = luksfuse(&["dump", s(&h)], b"");
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            dump_section(&r.stdout, "Digests:"),
            dump_section(&cs, "Digests:")
        );
        let r = test_key(&h, &f.keyfile, None);
        assert_eq!(r.code, want, "unbound {unbound}: {}", r.stderr);
        assert_eq!(cryptsetup_test_key(&h, &f.payload, &f.keyfile, None), want);
        if want == 1 {
            assert!(r.stderr.contains("type 'foo'"), "{}", r.stderr);
        }
    }
}
