//! `luksfuse encrypt` / `luksfuse decrypt`: in-place conversion of raw and qcow2 payloads
//! holding ext4, checked against cryptsetup (raw: `reencrypt --decrypt`, `--resume-only`),
//! QEMU (qcow2 through its `luks` driver with a LUKS1 `header` child, `qemu-img check`) and
//! e2fsck; and runs killed with SIGKILL at random moments, each resumed by luksfuse or by
//! cryptsetup, that must end with the original plaintext.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Fast KDF and small hotzones (many steps, many crash points) for every run.
const FAST: &[&str] = &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

fn encrypt_args<'a>(f: &'a Fixture, payload: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["encrypt", "-q", "-d", s(&f.keyfile)];
    a.extend_from_slice(FAST);
    a.extend_from_slice(extra);
    a.extend_from_slice(&["--header", s(&f.header), s(payload)]);
    a
}

fn decrypt_args<'a>(f: &'a Fixture, payload: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["decrypt", "-q", "-d", s(&f.keyfile)];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["--header", s(&f.header), s(payload)]);
    a
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(r.code, 0, "{what} failed: {}", r.stderr);
    r
}

/// A raw ext4 image of `mib` MiB holding a few files of noise (mkfs.ext4 -d, no root), and
/// the directory it was made from.
fn ext4_image(f: &Fixture, name: &str, mib: u64, extra: &[&str]) -> (PathBuf, PathBuf) {
    let src = f.path(&format!("{name}.d"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_file(&src.join("a.bin"), &noise(3 << 20, 1));
    write_file(&src.join("sub/b.bin"), &noise(700_001, 2));
    write_file(&src.join("c.txt"), b"hello from before the encryption\n");
    let img = f.path(name);
    let size = format!("{mib}M");
    let mut args = vec!["-q", "-F", "-t", "ext4", "-d", s(&src)];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[s(&img), &size]);
    run_ok(Command::new("mkfs.ext4").args(&args));
    (img, src)
}

fn e2fsck_clean(file: &Path) {
    let out = run_ok(Command::new("e2fsck").args(["-fn", s(file)]));
    assert!(out.status.success());
}

/// Each file of `src` as ext4 in `image` holds it (debugfs, read-only, no mount).
fn files_match(image: &Path, src: &Path) {
    for rel in ["a.bin", "sub/b.bin", "c.txt"] {
        let out = run_ok(Command::new("debugfs").args(["-R", &format!("cat /{rel}"), s(image)]));
        assert!(
            out.stdout == std::fs::read(src.join(rel)).unwrap(),
            "{rel} differs in {}",
            image.display()
        );
    }
}

#[test]
fn raw_ext4_encrypted_in_place_reads_back_through_the_mount_and_cryptsetup() {
    let mut f = Fixture::new();
    let (img, src) = ext4_image(&f, "disk.raw", 24, &[]);
    f.payload = img.clone();
    let orig = sha256_file(&img);
    let r = ok(
        luksfuse(&encrypt_args(&f, &img, &["--hotzone-size", "3M"]), b""),
        "encrypt",
    );
    assert!(r.stderr.contains("finished"), "summary: {}", r.stderr);
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        24 << 20,
        "size kept"
    );
    assert_ne!(sha256_file(&img), orig, "the payload is encrypted");
    // cryptsetup sees a plain detached LUKS2 header, with no reencryption left in it.
    let dump = f.cryptsetup(&["luksDump"]);
    assert!(!dump.contains("reencrypt"), "{dump}");
    {
        let m = Mounted::new(&f, &[], served_name(&f.payload));
        let served = m.mnt.join(served_name(&f.payload));
        assert_eq!(
            sha256_file(&served),
            orig,
            "the mount serves the original bytes"
        );
        e2fsck_clean(&served);
        files_match(&served, &src);
        m.unmount();
    }
    // cryptsetup decrypts a copy to the original bytes.
    let copy = f.path("copy.raw");
    std::fs::copy(&img, &copy).unwrap();
    let hcopy = f.path("copy.hdr");
    std::fs::copy(&f.header, &hcopy).unwrap();
    run_ok(Command::new("cryptsetup").args([
        "reencrypt",
        "-q",
        "--decrypt",
        "--force-offline-reencrypt",
        "--key-file",
        s(&f.keyfile),
        "--header",
        s(&hcopy),
        s(&copy),
    ]));
    assert_eq!(
        sha256_file(&copy),
        orig,
        "cryptsetup decrypts to the original"
    );
    // And luksfuse decrypt restores it in place.
    ok(
        luksfuse(&decrypt_args(&f, &img, &["--hotzone-size", "5M"]), b""),
        "decrypt",
    );
    assert_eq!(
        sha256_file(&img),
        orig,
        "luksfuse decrypt restores the original"
    );
}

/// The image options QEMU opens a qcow2 payload with through a detached LUKS1 header.
fn qemu_luks_over_qcow2(header: &Path, qcow2: &Path) -> String {
    format!(
        "driver=luks,key-secret=s,header.driver=file,header.filename={},\
         file.driver=qcow2,file.file.driver=file,file.file.filename={}",
        header.display(),
        qcow2.display()
    )
}

/// Bytes of `qcow2` that hold data (qemu-img map).
fn allocated(qcow2: &Path) -> u64 {
    let out = run_ok(Command::new("qemu-img").args(["map", "--output=json", s(qcow2)]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| e["length"].as_u64().unwrap())
        .sum()
}

fn qemu_img_check(qcow2: &Path) {
    let out = run_ok(Command::new("qemu-img").args(["check", s(qcow2)]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No errors"), "qemu-img check: {text}");
}

fn qcow2_of(f: &Fixture, raw: &Path, name: &str, cluster: &str) -> PathBuf {
    let q = f.path(name);
    run_ok(Command::new("qemu-img").args([
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        &format!("cluster_size={cluster}"),
        s(raw),
        s(&q),
    ]));
    q
}

#[test]
fn qcow2_ext4_encrypted_in_place_for_qemus_luks_driver_and_back() {
    let mut f = Fixture::new();
    let (raw, src) = ext4_image(&f, "disk.raw", 24, &[]);
    let orig = sha256_file(&raw);
    let q = qcow2_of(&f, &raw, "vm.qcow2", "65536");
    f.payload = q.clone();
    let before = allocated(&q);
    assert!(before < 24 << 20, "partly allocated ({before} bytes)");
    ok(
        luksfuse(
            &encrypt_args(&f, &q, &["--type", "luks1", "--hotzone-size", "2M"]),
            b"",
        ),
        "encrypt",
    );
    let dump = f.cryptsetup(&["luksDump"]);
    assert!(dump.contains("Version:       \t1"), "{dump}");
    qemu_img_check(&q);
    // QEMU reads the original plaintext through its luks driver over the qcow2 node.
    let plain = qemu_read_plain(&f, &qemu_luks_over_qcow2(&f.header, &q));
    assert!(sha2_of(&plain) == orig, "QEMU reads the original bytes");
    {
        let m = Mounted::new(&f, &[], served_name(&f.payload));
        let served = m.mnt.join(served_name(&f.payload));
        e2fsck_clean(&served);
        files_match(&served, &src);
        m.unmount();
    }
    ok(luksfuse(&decrypt_args(&f, &q, &[]), b""), "decrypt");
    qemu_img_check(&q);
    let out = f.path("back.raw");
    run_ok(Command::new("qemu-img").args(["convert", "-O", "raw", s(&q), s(&out)]));
    assert_eq!(
        sha256_file(&out),
        orig,
        "decrypt restores the guest's bytes"
    );
}

fn sha2_of(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// With --keep-unallocated the image uses no more space, and ext4 (whose never-written
/// inode tables are flagged as such: lazy_itable_init) stays clean with every file intact.
#[test]
fn keep_unallocated_leaves_holes_and_the_file_system_intact() {
    let mut f = Fixture::new();
    let (raw, src) = ext4_image(&f, "disk.raw", 32, &["-E", "lazy_itable_init=1"]);
    let orig = sha256_file(&raw);
    let q = qcow2_of(&f, &raw, "vm.qcow2", "4096");
    f.payload = q.clone();
    let before = allocated(&q);
    let r = ok(
        luksfuse(&encrypt_args(&f, &q, &["--keep-unallocated"]), b""),
        "encrypt",
    );
    assert!(r.stderr.contains("left unallocated"), "{}", r.stderr);
    assert_eq!(allocated(&q), before, "no cluster allocated");
    qemu_img_check(&q);
    {
        let m = Mounted::new(&f, &[], served_name(&f.payload));
        let served = m.mnt.join(served_name(&f.payload));
        e2fsck_clean(&served);
        files_match(&served, &src);
        m.unmount();
    }
    ok(
        luksfuse(&decrypt_args(&f, &q, &["--keep-unallocated"]), b""),
        "decrypt",
    );
    assert_eq!(allocated(&q), before);
    let out = f.path("back.raw");
    run_ok(Command::new("qemu-img").args(["convert", "-O", "raw", s(&q), s(&out)]));
    assert_eq!(sha256_file(&out), orig, "holes read as zeros again");
}

#[test]
fn refusals_leave_every_byte_alone() {
    let mut f = Fixture::new();
    let p = f.path("p.bin");
    write_file(&p, &noise(4 << 20, 9));
    f.payload = p.clone();
    let orig = sha256_file(&p);
    // Resume with nothing to resume.
    let r = luksfuse(&encrypt_args(&f, &p, &["--resume"]), b"");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!f.header.exists());
    // A header that exists and is not an encryption in progress.
    write_file(&f.header, b"not a header");
    let r = luksfuse(&encrypt_args(&f, &p, &[]), b"");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("not an encryption in progress"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&f.header).unwrap(), b"not a header");
    assert_eq!(sha256_file(&p), orig);
    std::fs::remove_file(&f.header).unwrap();
    // Stopped by SIGINT at a step boundary: mount refuses the header and says how to resume,
    // a wrong key cannot resume (exit 2), the right one finishes.
    let stopped = interrupted_run(&f, &p);
    let m = luksfuse(
        &[
            "mount",
            "-d",
            s(&f.keyfile),
            s(&f.header),
            s(&p),
            s(&f.path("m")),
        ],
        b"",
    );
    assert_ne!(m.code, 0);
    assert!(
        m.stderr.contains("--resume"),
        "mount says how to resume: {}",
        m.stderr
    );
    let wrong = f.path("wrong");
    write_file(&wrong, b"wrong passphrase");
    let mut args = encrypt_args(&f, &p, &[]);
    let i = args.iter().position(|a| *a == s(&f.keyfile)).unwrap();
    args[i] = s(&wrong);
    let sha_mid = sha256_file(&p);
    assert_eq!(luksfuse(&args, b"").code, 2, "wrong key");
    assert_eq!(sha256_file(&p), sha_mid, "a wrong key changes nothing");
    ok(
        luksfuse(&encrypt_args(&f, &p, &["--resume"]), b""),
        "resume",
    );
    check_plain(&f, &orig);
    assert!(stopped, "the run was stopped by SIGINT before it finished");
}

/// Starts an encryption with 256 KiB steps and sends SIGINT once it has started converting;
/// returns whether it stopped early (exit 1, "interrupted").
fn interrupted_run(f: &Fixture, p: &Path) -> bool {
    let args = encrypt_args(f, p, &["--hotzone-size", "256K", "--resilience", "journal"]);
    let child = forking(|| {
        Command::new(env!("CARGO_BIN_EXE_luksfuse"))
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .spawn()
    })
    .unwrap();
    // Wait for the header (the run has begun), then interrupt.
    let t = Instant::now();
    while !f.header.exists() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    out.status.code() == Some(1) && err.contains("interrupted")
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// The name the mount gives payload `p`: its file name without the extension.
fn served_name(p: &Path) -> &str {
    p.file_stem().unwrap().to_str().unwrap()
}

/// The mount of `f` serves `orig`.
fn check_plain(f: &Fixture, orig: &[u8]) {
    let name = served_name(&f.payload);
    let m = Mounted::new(f, &[], name);
    let got = sha256_file(&m.mnt.join(name));
    m.unmount();
    assert!(got == orig, "the mount serves the original plaintext");
}

/// Where to kill a run: after it has written its header `writes` more times (a hotzone
/// commits twice), `then` later. Counted in progress, not time, so that a loaded machine
/// moves no kill past the end of the run.
#[derive(Clone, Copy, Debug)]
struct KillPoint {
    writes: u32,
    then: Duration,
}

/// `n` kill points from a seed, spread over the first `writes` header writes.
fn kill_points(n: usize, writes: u32, seed: u64) -> Vec<KillPoint> {
    noise(n * 8, seed)
        .chunks(8)
        .map(|c| {
            let x = u64::from_le_bytes(c.try_into().unwrap());
            KillPoint {
                writes: (x % u64::from(writes)) as u32,
                then: Duration::from_micros((x >> 32) % 3000),
            }
        })
        .collect()
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Runs `args` and kills it with SIGKILL at `at` (counting the header writes it makes: the
/// first one creates or starts the run), or lets it finish first.
fn run_killed(args: &[&str], header: &Path, at: KillPoint) {
    let mut last = mtime(header);
    let mut child = forking(|| {
        Command::new(env!("CARGO_BIN_EXE_luksfuse"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    })
    .unwrap();
    let t = Instant::now();
    let mut seen = 0;
    while seen <= at.writes && t.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        let now = mtime(header);
        if now != last {
            seen += 1;
            last = now;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    std::thread::sleep(at.then);
    let _ = child.kill();
    let _ = child.wait();
}

/// Resumes with cryptsetup: repair (a step interrupted inside), then --resume-only.
fn cryptsetup_resume(f: &Fixture, p: &Path) {
    let key = s(&f.keyfile);
    let h = s(&f.header);
    let _ = Command::new("cryptsetup")
        .args(["repair", "-q", "--key-file", key, "--header", h, s(p)])
        .output();
    run_ok(Command::new("cryptsetup").args([
        "reencrypt",
        "-q",
        "--resume-only",
        "--force-offline-reencrypt",
        "--key-file",
        key,
        "--header",
        h,
        s(p),
    ]));
}

/// Whether the header holds an in-place conversion in progress (cryptsetup's view).
fn in_progress(f: &Fixture) -> bool {
    cryptsetup_dump(&f.header).1.contains("online-reencrypt")
}

/// Whether the header still has a keyslot (a decryption has not begun or not finished).
fn has_keyslot(f: &Fixture) -> bool {
    cryptsetup_dump(&f.header).1.contains("0: luks2")
}

/// 30 runs killed at random moments: 20 encryptions, 10 decryptions, raw payloads, each
/// resumed in turn by luksfuse and by cryptsetup. Every one must end with the original.
#[test]
fn runs_killed_at_random_moments_resume_to_the_original() {
    let mut f = Fixture::new();
    let p = f.path("p.bin");
    let orig_bytes = noise(24 << 20, 77);
    f.payload = p.clone();
    let orig = sha2_of(&orig_bytes);
    // 24 hotzones of 1 MiB: 48 header writes after the first.
    let mut resumed = [0usize; 2];
    for (i, at) in kill_points(30, 48, 5).into_iter().enumerate() {
        let decrypting = i % 3 == 2;
        let res = if i % 4 < 2 { "checksum" } else { "journal" };
        write_file(&p, &orig_bytes);
        let _ = std::fs::remove_file(&f.header);
        if decrypting {
            // Start from a finished encryption; the kill falls inside the decryption.
            ok(
                luksfuse(&encrypt_args(&f, &p, &["--hotzone-size", "4M"]), b""),
                "encrypt",
            );
            run_killed(
                &decrypt_args(&f, &p, &["--hotzone-size", "1M", "--resilience", res]),
                &f.header,
                at,
            );
        } else {
            run_killed(
                &encrypt_args(&f, &p, &["--hotzone-size", "1M", "--resilience", res]),
                &f.header,
                at,
            );
        }
        let header_made = std::fs::metadata(&f.header).is_ok_and(|m| m.len() > 0);
        let busy = header_made && in_progress(&f);
        // Not started yet: no header (encryption), or one that still has its keyslot and
        // no reencryption in it (decryption).
        let not_started = !header_made || (decrypting && !busy && has_keyslot(&f));
        if busy && i % 2 == 1 {
            cryptsetup_resume(&f, &p);
            resumed[1] += 1;
        } else if busy || not_started {
            let args = if decrypting {
                decrypt_args(&f, &p, &[])
            } else {
                encrypt_args(&f, &p, &[])
            };
            ok(luksfuse(&args, b""), "resume");
            resumed[0] += usize::from(busy);
        }
        if decrypting {
            assert!(
                sha256_file(&p) == orig,
                "run {i}: decrypted back to the original"
            );
        } else {
            check_plain(&f, &orig);
        }
    }
    eprintln!("30 runs killed: resumed by luksfuse, by cryptsetup: {resumed:?}");
    // Most kills land inside a run (the kill points spread over its header writes).
    assert!(
        resumed[0] >= 8 && resumed[1] >= 8,
        "runs resumed by luksfuse, by cryptsetup: {resumed:?}"
    );
}

/// Killed encryptions and decryptions of a qcow2 payload, resumed by luksfuse: the guest
/// data is the original and `qemu-img check` stays clean.
#[test]
fn killed_qcow2_runs_resume_to_the_original() {
    let mut f = Fixture::new();
    let raw = f.path("disk.raw");
    let mut data = noise(16 << 20, 3);
    data[4 << 20..9 << 20].fill(0); // unallocated in the qcow2 image
    write_file(&raw, &data);
    let orig = sha2_of(&data);
    let q0 = qcow2_of(&f, &raw, "vm0.qcow2", "65536");
    let q = f.path("vm.qcow2");
    f.payload = q.clone();
    for (i, at) in kill_points(6, 32, 11).into_iter().enumerate() {
        std::fs::copy(&q0, &q).unwrap();
        let _ = std::fs::remove_file(&f.header);
        let decrypting = i % 2 == 1;
        if decrypting {
            ok(luksfuse(&encrypt_args(&f, &q, &[]), b""), "encrypt");
            run_killed(
                &decrypt_args(&f, &q, &["--hotzone-size", "1M"]),
                &f.header,
                at,
            );
        } else {
            run_killed(
                &encrypt_args(&f, &q, &["--hotzone-size", "1M"]),
                &f.header,
                at,
            );
        }
        let header_made = std::fs::metadata(&f.header).is_ok_and(|m| m.len() > 0);
        let busy = header_made && in_progress(&f);
        if decrypting && (busy || has_keyslot(&f)) {
            ok(luksfuse(&decrypt_args(&f, &q, &[]), b""), "resume decrypt");
        } else if !decrypting && (busy || !header_made) {
            ok(luksfuse(&encrypt_args(&f, &q, &[]), b""), "resume encrypt");
        }
        if decrypting {
            let out = f.path("back.raw");
            run_ok(Command::new("qemu-img").args(["convert", "-O", "raw", s(&q), s(&out)]));
            assert_eq!(sha256_file(&out), orig, "run {i}");
        } else {
            check_plain(&f, &orig);
        }
        qemu_img_check(&q);
    }
}

/// On a terminal the run shows a progress bar with throughput and time left; on a pipe only
/// the summary line.
#[test]
fn progress_bar_on_a_terminal_only() {
    let mut f = Fixture::new();
    let p = f.path("p.bin");
    write_file(&p, &noise(8 << 20, 4));
    f.payload = p.clone();
    let args = encrypt_args(&f, &p, &["--hotzone-size", "1M"]);
    let piped = ok(luksfuse(&args, b""), "encrypt on a pipe");
    assert!(
        piped.stderr.starts_with("Encrypting finished:"),
        "{}",
        piped.stderr
    );
    assert!(
        !piped.stderr.contains("left"),
        "no bar on a pipe: {}",
        piped.stderr
    );
    ok(luksfuse(&decrypt_args(&f, &p, &[]), b""), "decrypt");
    // Again: nothing left to decrypt, said so, and nothing touched.
    let (header, payload) = (f.read_header(), sha256_file(&p));
    let again = luksfuse(&decrypt_args(&f, &p, &[]), b"");
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing to decrypt"),
        "{}",
        again.stderr
    );
    assert_eq!((f.read_header(), sha256_file(&p)), (header, payload));
    std::fs::remove_file(&f.header).unwrap();
    // script(1) gives the run a terminal; its output is the terminal's.
    let line = std::iter::once(env!("CARGO_BIN_EXE_luksfuse"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = run_ok(Command::new("script").args(["-qefc", &line, "/dev/null"]));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("Encrypting ["), "a bar on a terminal: {tty:?}");
    assert!(
        tty.contains("left") && tty.contains("/s"),
        "rate and time left: {tty:?}"
    );
    assert!(tty.contains("Encrypting finished:"), "{tty:?}");
    check_plain(&f, &sha2_of(&noise(8 << 20, 4)));
}
