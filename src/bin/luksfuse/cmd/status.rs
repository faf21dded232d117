//! `luksfuse status`: the live mounts' records (see `luksfuse::status`), as text or JSON.

use crate::cli::StatusArgs;
use luksfuse::error::{Error, Result};
use luksfuse::status::MountStatus;
use std::io::Write;

pub fn run(a: &StatusArgs) -> Result<()> {
    let mut mounts = luksfuse::status::list(&luksfuse::status::dir());
    if let Some(m) = &a.mountpoint {
        let want = m.canonicalize().unwrap_or(m.to_path_buf());
        mounts.retain(|s| s.mountpoint == want);
        if mounts.is_empty() {
            return Err(Error::format("not a luksfuse mount").in_file(m));
        }
    }
    let text = if a.json {
        serde_json::to_string_pretty(&mounts).expect("JSON") + "\n"
    } else {
        text(&mounts)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// The text form: one block per mount, or a line saying there are none.
fn text(mounts: &[MountStatus]) -> String {
    let mut t = String::new();
    for s in mounts {
        t += &format!("{}\n", s.mountpoint.display());
        t += &format!("  header:   {}\n", s.header.display());
        for p in &s.payloads {
            t += &format!(
                "  payload:  {} ({}) -> {} ({} bytes)\n",
                p.path.display(),
                p.format,
                p.file,
                p.size
            );
            for q in &p.partitions {
                t += &format!(
                    "  partition: {} (bytes {}.., {} bytes)\n",
                    q.file, q.offset, q.size
                );
            }
        }
        t += &format!("  cipher:   {}, {}-byte sectors\n", s.cipher, s.sector_size);
        let mode = if s.readonly {
            "read-only"
        } else {
            "read-write"
        };
        t += &format!("  mode:     {mode}\n");
        let discards = if s.discards { "on" } else { "off" };
        t += &format!("  discards: {discards}\n");
        t += &format!(
            "  traffic:  {} bytes read, {} written, {} discarded\n",
            s.bytes_read, s.bytes_written, s.bytes_discarded
        );
        t += &format!("  pid:      {}\n", s.pid);
    }
    if mounts.is_empty() {
        t += "no luksfuse mounts\n";
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use luksfuse::status::PayloadStatus;

    #[test]
    fn text_form() {
        assert_eq!(text(&[]), "no luksfuse mounts\n");
        let st = MountStatus {
            pid: 4242,
            mountpoint: "/mnt/x".into(),
            header: "/h.img".into(),
            cipher: "aes-xts-plain64".into(),
            sector_size: 512,
            readonly: true,
            payloads: vec![PayloadStatus {
                path: "/p.raw".into(),
                file: "p".into(),
                format: "raw".into(),
                size: 1 << 20,
                partitions: vec![],
            }],
            discards: false,
            bytes_read: 4096,
            bytes_written: 0,
            bytes_discarded: 0,
        };
        assert_eq!(
            text(&[st]),
            "/mnt/x\n  header:   /h.img\n  payload:  /p.raw (raw) -> p (1048576 bytes)\n  \
             cipher:   aes-xts-plain64, 512-byte sectors\n  mode:     read-only\n  discards: off\n  \
             traffic:  4096 bytes read, 0 written, 0 discarded\n  pid:      4242\n"
        );
    }
}
