//! The mount helper: `mount -t fuse.luksfuse` and fstab call `mount.fuse.luksfuse SOURCE
//! MOUNTPOINT -o OPTIONS` (this binary, through a link). The options are turned into a
//! `luksfuse mount` command line:
//!
//! | option | meaning |
//! |---|---|
//! | `header=PATH` | the detached header; without it SOURCE is a LUKS image holding its header |
//! | `key-file=PATH`, `keyfile-offset=N`, `keyfile-size=N`, `key-slot=N` | as `-d`, `--keyfile-offset`, `-l`, `-S` |
//! | `name=NAME`, `payload-format=raw\|qcow2`, `allow-backing`, `partitions` | as the long options |
//! | `discard`, `allow-discards` | `--allow-discards` |
//! | `ro` / `rw` | read-only / read-write |
//! | `nofail`, `noauto`, `auto`, `user`, `users`, `defaults`, `_netdev`, `x-*`, `comment=*` | for mount(8)/systemd, ignored here |
//! | anything else | passed on to FUSE (`-o`) |
//!
//! The passphrase is never an option: use `key-file=`, or mount from a terminal to be asked.

use std::ffi::OsString;

/// Whether the program was called as a mount helper (`mount.fuse.luksfuse`, `mount.luksfuse`).
pub fn called_as_helper(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "mount.fuse.luksfuse" || name == "mount.luksfuse"
}

/// Translates `mount.fuse.luksfuse SOURCE MOUNTPOINT [-o OPTS] [-n] [-s] [-f] [-v]` into the
/// arguments of `luksfuse mount`. Errors are usage errors (exit 1).
pub fn translate(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let mut positional = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-o") => {
                let o = it.next().ok_or("-o needs an argument")?;
                opts.extend(
                    o.to_str()
                        .ok_or("mount options must be UTF-8")?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
            Some(s) if s.starts_with("-o") && s.len() > 2 => opts.extend(
                s[2..]
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            // mount(8)'s own flags: no mtab (-n), sloppy (-s), fake (-f is not passed), verbose.
            Some("-n") | Some("-s") => {}
            Some("-v") => verbose = true,
            Some(s) if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            _ => positional.push(a.clone()),
        }
    }
    let [source, mountpoint] = <[OsString; 2]>::try_from(positional).map_err(|_| {
        "usage: mount.fuse.luksfuse PAYLOAD|IMAGE MOUNTPOINT [-o header=HEADER,...]"
    })?;
    let mut out: Vec<OsString> = vec!["mount".into()];
    let mut header = None;
    let mut fuse = Vec::new();
    for o in opts {
        let (key, value) = match o.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (o.clone(), None),
        };
        let need = |v: Option<String>| v.ok_or_else(|| format!("option '{key}' needs a value"));
        match key.as_str() {
            "header" => header = Some(need(value)?),
            "key-file" | "keyfile" => out.extend(["--key-file".into(), need(value)?.into()]),
            "keyfile-offset" => out.extend(["--keyfile-offset".into(), need(value)?.into()]),
            "keyfile-size" => out.extend(["--keyfile-size".into(), need(value)?.into()]),
            "key-slot" => out.extend(["--key-slot".into(), need(value)?.into()]),
            "name" => out.extend(["--name".into(), need(value)?.into()]),
            "payload-format" => out.extend(["--payload-format".into(), need(value)?.into()]),
            "allow-backing" => out.push("--allow-backing".into()),
            "partitions" => out.push("--partitions".into()),
            "discard" | "allow-discards" => out.push("--allow-discards".into()),
            "ro" => out.push("--readonly".into()),
            "rw" | "nofail" | "noauto" | "auto" | "user" | "users" | "defaults" | "_netdev"
            | "comment" => {}
            k if k.starts_with("x-") => {}
            _ => fuse.push(o),
        }
    }
    if verbose {
        out.push("--verbose".into());
    }
    if !fuse.is_empty() {
        out.extend(["-o".into(), fuse.join(",").into()]);
    }
    // No header=: SOURCE holds its header (`luksfuse mount IMAGE MOUNTPOINT`).
    if let Some(header) = header {
        out.push(header.into());
    }
    out.extend([source, mountpoint]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<Vec<String>, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        translate(&args).map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn an_fstab_line_becomes_a_mount_command() {
        // /srv/vm/payload.qcow2 /mnt/x fuse.luksfuse header=/keys/h.img,key-file=/keys/k,ro,nofail 0 0
        assert_eq!(
            t(&[
                "/srv/vm/payload.qcow2",
                "/mnt/x",
                "-o",
                "rw,header=/keys/h.img,key-file=/keys/k,ro,nofail,allow_other,x-systemd.automount"
            ])
            .unwrap(),
            [
                "mount",
                "--key-file",
                "/keys/k",
                "--readonly",
                "-o",
                "allow_other",
                "/keys/h.img",
                "/srv/vm/payload.qcow2",
                "/mnt/x"
            ]
        );
        assert_eq!(
            t(&[
                "p.raw",
                "/m",
                "-ohead",
                "-o",
                "header=h,keyfile-offset=3,keyfile-size=9,key-slot=2,name=disk,payload-format=raw,partitions",
                "-n",
                "-v"
            ])
            .unwrap(),
            [
                "mount",
                "--keyfile-offset",
                "3",
                "--keyfile-size",
                "9",
                "--key-slot",
                "2",
                "--name",
                "disk",
                "--payload-format",
                "raw",
                "--partitions",
                "--verbose",
                "-o",
                "head",
                "h",
                "p.raw",
                "/m"
            ]
        );
    }

    #[test]
    fn no_header_means_an_attached_one_and_missing_arguments_are_usage_errors() {
        assert_eq!(
            t(&["disk.img", "/m", "-o", "ro,key-file=k"]).unwrap(),
            ["mount", "--readonly", "--key-file", "k", "disk.img", "/m"]
        );
        assert!(t(&["p", "-o", "header=h"]).is_err());
        assert!(t(&["p", "/m", "-o", "header"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(t(&["p", "/m", "--bogus"]).is_err());
    }

    #[test]
    fn discard_options_mean_allow_discards() {
        for o in ["discard", "allow-discards"] {
            assert_eq!(
                t(&["disk.img", "/m", "-o", &format!("{o},allow_other")]).unwrap(),
                [
                    "mount",
                    "--allow-discards",
                    "-o",
                    "allow_other",
                    "disk.img",
                    "/m"
                ]
            );
        }
    }

    #[test]
    fn helper_names() {
        assert!(called_as_helper("/sbin/mount.fuse.luksfuse".as_ref()));
        assert!(called_as_helper("mount.luksfuse".as_ref()));
        assert!(!called_as_helper("/usr/bin/luksfuse".as_ref()));
    }
}
