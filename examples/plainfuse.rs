//! Benchmark helper, not part of luksfuse: serves a plain image file, without any
//! cryptography, through luksfuse's own FUSE adapter and mount code (same `FOPEN_DIRECT_IO`,
//! async direct I/O, 1 MiB requests and read-ahead, one cloned `/dev/fuse` descriptor per
//! core). `make bench` compares luksfuse with it: the ceiling FUSE sets on this machine.
//!
//! Usage: plainfuse IMAGE MOUNTPOINT   (serves IMAGE as MOUNTPOINT/plain until unmounted)

use luksfuse::fuse::{MountSpec, Mounted, ServedFile, VolumeFs};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{mpsc, Arc};

/// The image file as is; its size is fixed when it is opened.
struct Plain {
    file: File,
    size: u64,
}

impl Plain {
    fn clamp(&self, len: usize, off: u64) -> usize {
        len.min(self.size.saturating_sub(off) as usize)
    }
}

impl ServedFile for Plain {
    fn size(&self) -> u64 {
        self.size
    }
    fn sector_size(&self) -> usize {
        512
    }
    fn writable(&self) -> bool {
        true
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let len = self.clamp(buf.len(), off);
        self.file.read_exact_at(&mut buf[..len], off)?;
        Ok(len)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        let len = self.clamp(buf.len(), off);
        self.file.write_all_at(&buf[..len], off)?;
        Ok(len)
    }
    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [image, mountpoint] = &args[..] else {
        eprintln!("usage: plainfuse IMAGE MOUNTPOINT");
        std::process::exit(1);
    };
    if let Err(e) = serve(Path::new(image), Path::new(mountpoint)) {
        eprintln!("plainfuse: {e}");
        std::process::exit(4);
    }
}

fn serve(image: &Path, mountpoint: &Path) -> io::Result<()> {
    let file = File::options().read(true).write(true).open(image)?;
    let size = file.metadata()?.len();
    let (uid, gid) = luksfuse::process::uid_gid();
    let fs = VolumeFs::new(
        Arc::new(Plain { file, size }),
        "plain".as_ref(),
        false,
        uid,
        gid,
    );
    let spec = MountSpec {
        fsname: image.display().to_string(),
        subtype: "plainfuse".into(),
        readonly: false,
        options: vec![],
    };
    let (tx, rx) = mpsc::channel();
    let mounted = Mounted::start(fs, mountpoint, &spec, move |r| {
        let _ = tx.send(r);
    })?;
    // Serve until someone unmounts (fusermount3 -u), then let the workers finish.
    let ended = rx.recv().unwrap_or(Ok(()));
    mounted.join();
    ended
}
