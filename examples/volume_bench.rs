//! Throughput of the volume layer alone (no FUSE): 1 MiB requests through `Volume::write_at`
//! and `Volume::read_at` over a raw payload file, to compare changes to the volume's I/O
//! paths. Not part of the tests.
//!
//!     cargo run --release --example volume_bench -- [FILE] [MIB] [REPS]
//!
//! FILE (default `/dev/shm/luksfuse-volume-bench`, tmpfs, so that the file system costs
//! little) is created with MIB MiB (default 256) and removed at the end. Each repetition
//! (default 5) measures, for 512- and 4096-byte sectors of aes-xts-plain64 with a 512-bit
//! key: one thread writing the whole volume sequentially, two threads writing alternate
//! requests (neighbouring requests at the same time, the worst case for per-region locks),
//! and one thread reading it all. Prints MB/s (10^6 bytes) of each run by the clock and per
//! CPU second of the threads doing the I/O (from `/proc/thread-self/schedstat`: on a shared
//! machine, less sensitive to the load of others), then the median, minimum and maximum of
//! each measurement.

// Only `median` is used here (`openssl_speed` serves the cipher benches).
#[allow(dead_code)]
mod common;

use common::median;
use luksfuse::crypto::CipherName;
use luksfuse::image::{Access, Image, RawImage};
use luksfuse::luks::Segment;
use luksfuse::secret::{Secret, VolumeKey};
use luksfuse::units::{Bytes, SectorSize, Sectors512};
use luksfuse::volume::Volume;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const REQUEST: usize = 1 << 20;

fn volume(path: &std::path::Path, sector: u32) -> Volume {
    let image: Arc<dyn Image> = Arc::new(RawImage::open(path, Access::ReadWrite).unwrap());
    let segment = Segment {
        offset: Bytes(0),
        size: None,
        cipher: CipherName::new("aes-xts-plain64"),
        key_size: 64,
        sector_size: SectorSize::try_from(sector).unwrap(),
        iv_tweak: Sectors512(0),
    };
    let key = VolumeKey(Secret::new((0..64u8).map(|i| i * 7 + 3).collect()));
    Volume::new(image, &segment, &key).unwrap()
}

/// Nanoseconds this thread has run on a CPU (the first field of its schedstat).
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

/// MB/s of `threads` threads writing (or reading) the volume in requests, thread `t` taking
/// requests `t`, `t + threads`, ...: by the clock, and per CPU second the threads ran (less
/// sensitive to other load on the machine).
fn run(v: &Volume, threads: usize, write: bool) -> (f64, f64) {
    let requests = usize::try_from(v.size()).unwrap() / REQUEST;
    let start = Instant::now();
    let cpu: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut buf: Vec<u8> = (0..REQUEST).map(|i| (i * 7 % 251) as u8).collect();
                    let cpu = cpu_ns();
                    for r in (t..requests).step_by(threads) {
                        let off = (r * REQUEST) as u64;
                        let n = if write {
                            v.write_at(&buf, off).unwrap()
                        } else {
                            v.read_at(&mut buf, off).unwrap()
                        };
                        assert_eq!(n, REQUEST);
                    }
                    cpu_ns() - cpu
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let bytes = (requests * REQUEST) as f64;
    (
        bytes / start.elapsed().as_secs_f64() / 1e6,
        bytes / (cpu as f64 / 1e9) / 1e6,
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/dev/shm/luksfuse-volume-bench".into()),
    );
    let mib: u64 = args.next().map_or(256, |a| a.parse().expect("MIB"));
    let reps: usize = args.next().map_or(5, |a| a.parse().expect("REPS"));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(mib << 20).unwrap();
    drop(file);
    let mut samples = BTreeMap::<(u32, &str, &str), Vec<f64>>::new();
    for rep in 1..=reps {
        for sector in [512u32, 4096] {
            let v = volume(&path, sector);
            for (name, threads, write) in [
                ("write x1", 1, true),
                ("write x2", 2, true),
                ("read x1", 1, false),
            ] {
                let (wall, cpu) = run(&v, threads, write);
                println!(
                    "rep {rep} sector {sector:4} {name}: {wall:7.0} MB/s, {cpu:7.0} MB per CPU s"
                );
                samples
                    .entry((sector, name, "MB/s"))
                    .or_default()
                    .push(wall);
                samples
                    .entry((sector, name, "MB/CPU s"))
                    .or_default()
                    .push(cpu);
            }
        }
    }
    println!("median (min..max) over {reps} repetitions:");
    for ((sector, name, unit), mut v) in samples {
        let (lo, hi) = (
            v.iter().copied().fold(f64::MAX, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        );
        let m = median(&mut v);
        println!("sector {sector:4} {name} {unit:8}: {m:7.0} ({lo:.0}..{hi:.0})");
    }
    std::fs::remove_file(&path).unwrap();
}
