//! What `luksfuse status` shows: each serving process leaves a small JSON record of its mount
//! (no secrets) in a runtime directory, and removes it when it stops. Records whose process is
//! gone or whose mount is no longer in the mount table are ignored (and cleaned up).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One served payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadStatus {
    pub path: PathBuf,
    /// The file name in the mountpoint.
    pub file: String,
    /// "raw" or "qcow2".
    pub format: String,
    /// Decrypted size in bytes.
    pub size: u64,
    /// With `--partitions`: the partition files served from this payload's disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
}

/// One partition of a payload's disk, served as its own file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// The file name in the mountpoint (`NAME-pN`).
    pub file: String,
    /// Byte offset in the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One luksfuse mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountStatus {
    pub pid: u32,
    pub mountpoint: PathBuf,
    pub header: PathBuf,
    pub cipher: String,
    pub sector_size: u32,
    pub readonly: bool,
    pub payloads: Vec<PayloadStatus>,
    /// Whether `fallocate` discards and write-zeroes reach the payload (`--allow-discards`,
    /// `-o discard` or the LUKS2 header's persistent `allow-discards` flag).
    #[serde(default)]
    pub discards: bool,
    /// Bytes read through the mount since it started.
    #[serde(default)]
    pub bytes_read: u64,
    /// Bytes written through the mount since it started.
    #[serde(default)]
    pub bytes_written: u64,
    /// Bytes discarded or zeroed by `fallocate` since the mount started.
    #[serde(default)]
    pub bytes_discarded: u64,
}

/// Where records live: `/run/luksfuse` for root, `$XDG_RUNTIME_DIR/luksfuse` for others
/// (falling back to `/tmp/luksfuse-UID`).
pub fn dir() -> PathBuf {
    let (uid, _) = crate::sys::uid_gid();
    if uid == 0 {
        return PathBuf::from("/run/luksfuse");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("luksfuse"),
        _ => PathBuf::from(format!("/tmp/luksfuse-{uid}")),
    }
}

fn record_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

impl MountStatus {
    /// Writes this record (atomically: temporary file, then rename) into `dir`.
    pub fn publish(&self, dir: &Path) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, "cannot create status directory", &e))?;
        let path = record_path(dir, self.pid);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).expect("status serializes");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(&path, "cannot write status", &e))?;
        Ok(path)
    }
}

/// Removes the record of process `pid` from `dir`, if any.
pub fn withdraw(dir: &Path, pid: u32) {
    let _ = std::fs::remove_file(record_path(dir, pid));
}

/// One line of `/proc/self/mountinfo`, with the kernel's octal escapes undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    /// `fuse.luksfuse`, `ext4`, …
    pub fstype: String,
    /// The mount source (a device, a file, or a name such as the header path of ours).
    pub source: PathBuf,
}

/// Every mount in this mount namespace, in the kernel's order (a mount stacked over another
/// on the same mountpoint comes after it).
pub fn mount_table() -> Vec<MountEntry> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(l: &str) -> Option<MountEntry> {
    // Field 5 is the mountpoint; after " - " come: fstype source options.
    let (pre, post) = l.split_once(" - ")?;
    let mountpoint = pre.split(' ').nth(4)?;
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let source = post.next().unwrap_or("");
    let path = |f: &str| PathBuf::from(std::ffi::OsString::from_vec(unescape_bytes(f)));
    Some(MountEntry {
        mountpoint: path(mountpoint),
        fstype: fstype.to_string(),
        source: path(source),
    })
}

/// Every mount in this mount namespace as (mountpoint, file system type), from
/// `/proc/self/mountinfo` with the kernel's octal escapes undone.
pub fn mounts() -> Vec<(PathBuf, String)> {
    mount_table()
        .into_iter()
        .map(|m| (m.mountpoint, m.fstype))
        .collect()
}

/// The mountpoints of `fuse.luksfuse` mounts in this mount namespace.
fn luksfuse_mountpoints() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|(_, fstype)| fstype == "fuse.luksfuse")
        .map(|(mountpoint, _)| mountpoint)
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, …) in mountinfo fields.
pub fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

/// [`unescape`], keeping the bytes as they are (paths need not be UTF-8).
fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Every record in `dir` as it is, with the time it was written, whether its process is
/// alive or not (for `luksfuse umount`, which checks the process itself).
pub fn records(dir: &Path) -> Vec<(MountStatus, std::time::SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let written = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
            let st = serde_json::from_slice::<MountStatus>(&std::fs::read(&p).ok()?).ok()?;
            Some((st, written))
        })
        .collect()
}

/// The live mounts recorded in `dir`, sorted by mountpoint; stale records are removed.
pub fn list(dir: &Path) -> Vec<MountStatus> {
    let mounted = luksfuse_mountpoints();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(st) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<MountStatus>(&b).ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{}", st.pid)).exists();
        if alive && mounted.contains(&st.mountpoint) {
            out.push(st);
        } else if !alive {
            let _ = std::fs::remove_file(&path);
        }
    }
    out.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b\011c\134d"), "/mnt/a b\tc\\d");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn mountinfo_lines() {
        let l = r"36 35 0:40 / /mnt/a\040b rw,nosuid - fuse.luksfuse /keys/h\040x.img rw,user_id=0";
        assert_eq!(
            parse_mountinfo_line(l).unwrap(),
            MountEntry {
                mountpoint: "/mnt/a b".into(),
                fstype: "fuse.luksfuse".into(),
                source: "/keys/h x.img".into(),
            }
        );
        assert_eq!(parse_mountinfo_line("garbage"), None);
    }

    #[test]
    fn records_round_trip_and_stale_ones_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let st = MountStatus {
            pid: u32::MAX - 7, // no such process
            mountpoint: "/nowhere".into(),
            header: "/h.img".into(),
            cipher: "aes-xts-plain64".into(),
            sector_size: 4096,
            readonly: false,
            payloads: vec![PayloadStatus {
                path: "/p.qcow2".into(),
                file: "p".into(),
                format: "qcow2".into(),
                size: 1 << 20,
                partitions: vec![PartitionStatus {
                    file: "p-p1".into(),
                    offset: 1 << 20,
                    size: 1 << 19,
                }],
            }],
            discards: true,
            bytes_read: 1,
            bytes_written: 2,
            bytes_discarded: 3,
        };
        // A record written before the counters existed still reads (they are zero).
        let mut old = serde_json::to_value(&st).unwrap();
        for f in ["discards", "bytes_read", "bytes_written", "bytes_discarded"] {
            old.as_object_mut().unwrap().remove(f);
        }
        let old: MountStatus = serde_json::from_value(old).unwrap();
        assert_eq!(
            (old.discards, old.bytes_read, old.bytes_written),
            (false, 0, 0)
        );
        let path = st.publish(d.path()).unwrap();
        let back: MountStatus = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, st);
        let raw = records(d.path());
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].0, st);
        assert!(list(d.path()).is_empty());
        assert!(!path.exists(), "the stale record was removed");
    }
}
