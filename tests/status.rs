//! `luksfuse status`: two concurrent mounts listed with their header, payloads, format,
//! cipher, sector size, mode and daemon pid; gone once unmounted; no key needed.

mod common;
use common::*;
use std::process::Command;

#[test]
fn status_shows_two_concurrent_mounts() {
    let a = luks_format(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    let mut args = vec!["--type", "luks2", "--sector-size", "4096"];
    args.extend(fast_kdf("pbkdf2"));
    let mut b = luks_format(&args);
    let q = b.path("disk.qcow2");
    run_ok(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s(&q), "8M"]));
    b.payload = q;
    let ma = Mounted::new(&a, &[], "p");
    let mb = Mounted::new(&b, &["-r"], "disk");
    let r = luksfuse(&["status", "--json"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let find = |mnt: &std::path::Path| {
        let want = mnt.canonicalize().unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountpoint"] == s(&want))
            .cloned()
            .unwrap_or_else(|| panic!("{} not listed: {}", want.display(), r.stdout))
    };
    let (sa, sb) = (find(&ma.mnt), find(&mb.mnt));
    assert_eq!(sa["header"], s(&a.header.canonicalize().unwrap()));
    assert_eq!(sa["payloads"][0]["format"], "raw");
    assert_eq!(sa["payloads"][0]["file"], "p");
    assert_eq!(sa["cipher"], "aes-xts-plain64");
    assert_eq!(sa["sector_size"], 512);
    assert_eq!(sa["readonly"], false);
    assert_eq!(sb["payloads"][0]["format"], "qcow2");
    assert_eq!(sb["payloads"][0]["size"], 8 << 20);
    assert_eq!(sb["sector_size"], 4096);
    assert_eq!(sb["readonly"], true);
    for (st, mnt) in [(&sa, &ma.mnt), (&sb, &mb.mnt)] {
        assert_eq!(daemons_for(mnt), vec![st["pid"].as_u64().unwrap() as u32]);
    }
    // The text form names both, and one mount can be asked for alone. Other mounts on the
    // machine may be listed too: look only at the blocks of ours.
    let t = luksfuse(&["status"], b"");
    assert!(
        block(&t.stdout, &ma.mnt).contains(s(&a.header.canonicalize().unwrap()))
            && block(&t.stdout, &mb.mnt).contains("read-only"),
        "{}",
        t.stdout
    );
    let one = luksfuse(&["status", s(&mb.mnt)], b"");
    assert_eq!(one.code, 0);
    assert!(
        one.stdout.contains("disk.qcow2") && !one.stdout.contains("p.raw"),
        "{}",
        one.stdout
    );
    ma.unmount();
    let r = luksfuse(&["status", s(&ma.mnt)], b"");
    assert_eq!(r.code, 4, "an unmounted mountpoint: {}", r.stdout);
    mb.unmount();
}

/// The block of `status`'s text that describes the mount at `mnt`: its mountpoint line and
/// the indented lines after it (empty if it is not listed).
fn block(text: &str, mnt: &std::path::Path) -> String {
    let mnt = mnt.canonicalize().unwrap();
    let mut lines = text.lines().skip_while(|l| *l != s(&mnt));
    let first = lines.next().unwrap_or_default();
    let rest = lines.take_while(|l| l.starts_with(' '));
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
}
