//! The data mover against an in-memory ledger and image that can "crash" at any write: every
//! crash point of a run, resumed, must give the same bytes as a run without one.

use super::*;
use crate::crypto::CipherSpec;
use crate::image::MemImage;
use std::io;
use std::sync::Mutex;

const SIZE: usize = 96 << 10;
const BLOCK: u64 = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Res {
    Checksum,
    Journal,
}

/// What a ledger keeps durably (what survives a crash).
#[derive(Clone)]
struct Durable {
    converted: Range<u64>,
    hot: Option<Range<u64>>,
    data: Vec<u8>,
}

/// A ledger in memory whose `calls` budget, once spent, makes every call fail (a crash).
struct MemLedger {
    dir: Direction,
    res: Res,
    max: u64,
    d: Durable,
    calls: Option<usize>,
}

impl MemLedger {
    fn new(dir: Direction, res: Res, max: u64) -> Self {
        let converted = match dir {
            Direction::Forward => 0..0,
            Direction::Backward => SIZE as u64..SIZE as u64,
        };
        MemLedger {
            dir,
            res,
            max,
            d: Durable {
                converted,
                hot: None,
                data: Vec::new(),
            },
            calls: None,
        }
    }
    fn spend(&mut self) -> Result<()> {
        match &mut self.calls {
            Some(0) => Err(Error::format("crash (ledger)")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Ledger for MemLedger {
    fn direction(&self) -> Direction {
        self.dir
    }
    fn converted(&self) -> Range<u64> {
        self.d.converted.clone()
    }
    fn hot(&self) -> Option<Range<u64>> {
        self.d.hot.clone()
    }
    fn hotzone_limits(&self) -> (u64, u64) {
        (self.max, BLOCK)
    }
    fn recovery(&self) -> Result<Recovery> {
        Ok(match self.res {
            Res::Checksum => Recovery::Checksums {
                hash: HashAlg::Sha256,
                block: BLOCK as usize,
                sums: self.d.data.clone(),
            },
            Res::Journal => Recovery::Journal(crate::secret::Secret::from_slice(&self.d.data)),
        })
    }
    fn checksum(&self) -> Option<(HashAlg, usize)> {
        (self.res == Res::Checksum).then_some((HashAlg::Sha256, BLOCK as usize))
    }
    fn protect(&mut self, hot: Range<u64>, old: &[u8], sums: Option<&[u8]>) -> Result<()> {
        self.spend()?;
        self.d.data = match self.res {
            Res::Checksum => {
                let sums = sums.expect("the mover computes the checksums").to_vec();
                assert!(sums == checksums(HashAlg::Sha256, BLOCK as usize, old));
                sums
            }
            Res::Journal => old.to_vec(),
        };
        self.d.hot = Some(hot);
        Ok(())
    }
    fn advance(&mut self) -> Result<()> {
        self.spend()?;
        let hot = self.d.hot.take().expect("a hot hotzone");
        let c = &mut self.d.converted;
        match self.dir {
            Direction::Forward => {
                assert_eq!(hot.start, c.end);
                c.end = hot.end;
            }
            Direction::Backward => {
                assert_eq!(hot.end, c.start);
                c.start = hot.start;
            }
        }
        Ok(())
    }
    fn checkpoint(&mut self) -> Result<()> {
        Ok(())
    }
}

/// An image whose writes stop after `budget` bytes: the write that crosses it is torn at a
/// `tear`-byte boundary and fails. A killed process tears a write(2) at page boundaries (the
/// kernel stops between pages), 4096 bytes, the checksum block; a power cut may tear at the
/// device's atomic unit, 512 bytes on many, which only the journal survives (as with
/// cryptsetup, whose checksum recovery takes a block that matches neither side as new).
struct CrashImage {
    mem: MemImage,
    budget: Mutex<Option<u64>>,
    holes: Vec<Range<u64>>,
    tear: u64,
}

impl Image for CrashImage {
    fn size(&self) -> u64 {
        self.mem.size()
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.mem.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        for h in &self.holes {
            assert!(
                off + buf.len() as u64 <= h.start || off >= h.end,
                "wrote into a kept hole"
            );
        }
        let mut b = self.budget.lock().unwrap();
        if let Some(left) = b.as_mut() {
            if (buf.len() as u64) > *left {
                let keep = (*left / self.tear * self.tear) as usize;
                self.mem.write_at(&buf[..keep], off)?;
                *left = 0;
                return Err(io::Error::other("crash (image)"));
            }
            *left -= buf.len() as u64;
        }
        self.mem.write_at(buf, off)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn writable(&self) -> bool {
        true
    }
    fn extent(&self, off: u64, max: u64) -> io::Result<(Extent, u64)> {
        for h in &self.holes {
            if h.contains(&off) {
                return Ok((Extent::Hole, (h.end - off).min(max)));
            }
        }
        let next = self
            .holes
            .iter()
            .filter(|h| h.start > off)
            .map(|h| h.start)
            .min()
            .unwrap_or(u64::MAX);
        Ok((
            Extent::Stored {
                host: off,
                in_place: true,
            },
            (next - off).min(max),
        ))
    }
}

fn xts(key_byte: u8, sector: u64) -> Layout {
    let spec = CipherSpec::parse("aes-xts-plain64").unwrap();
    let key = [key_byte; 64];
    let s = SectorSize::new(sector).unwrap();
    Layout::encrypted(SectorCipher::new(&spec, &key).unwrap(), s, 0)
}

fn plaintext() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 7 % 251) as u8).collect()
}

/// The bytes a whole conversion must give.
fn expected(conv: &Converter, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    conv.convert(&mut out, 0);
    out
}

fn converter(dir: Direction) -> Converter {
    match dir {
        Direction::Forward => Converter {
            old: Layout::plain(),
            new: xts(7, 4096),
        },
        Direction::Backward => Converter {
            old: xts(7, 512),
            new: Layout::plain(),
        },
    }
}

fn image(data: Vec<u8>, budget: Option<u64>, holes: Vec<Range<u64>>) -> CrashImage {
    CrashImage {
        mem: MemImage::new(data),
        budget: Mutex::new(budget),
        holes,
        tear: BLOCK,
    }
}

fn tearing(data: Vec<u8>, budget: u64, tear: u64) -> CrashImage {
    CrashImage {
        tear,
        ..image(data, Some(budget), vec![])
    }
}

fn go(
    ledger: &mut MemLedger,
    img: &CrashImage,
    conv: &Converter,
    keep_holes: bool,
) -> Result<Summary> {
    let opts = Options {
        hotzone: 16 << 10,
        keep_holes,
    };
    let stop = AtomicBool::new(false);
    let (outcome, summary) = run(ledger, img, conv, &opts, &stop, &mut |_, _| {})?;
    assert_eq!(outcome, Outcome::Done);
    Ok(summary)
}

#[test]
fn a_whole_run_converts_every_byte_both_ways() {
    let plain = plaintext();
    let enc = converter(Direction::Forward);
    let img = image(plain.clone(), None, vec![]);
    let mut l = MemLedger::new(Direction::Forward, Res::Checksum, 1 << 20);
    let s = go(&mut l, &img, &enc, false).unwrap();
    assert_eq!(s.converted, SIZE as u64);
    let cipher = img.mem.contents();
    assert!(cipher == expected(&enc, &plain));
    assert!(cipher != plain);
    // The ciphertext decrypts to the plaintext sector by sector, independently of the run.
    let dec = Converter {
        old: xts(7, 4096),
        new: Layout::plain(),
    };
    let img = image(cipher, None, vec![]);
    let mut l = MemLedger::new(Direction::Backward, Res::Journal, 1 << 20);
    go(&mut l, &img, &dec, false).unwrap();
    assert!(img.mem.contents() == plain);
}

/// Every crash point: after each ledger call, and inside every image write (torn at 4096 bytes
/// with checksums, 512 with a journal); each resumed with a fresh run over what was durable.
#[test]
fn every_crash_point_resumes_to_the_same_bytes() {
    for dir in [Direction::Forward, Direction::Backward] {
        for res in [Res::Checksum, Res::Journal] {
            let conv = converter(dir);
            let start = match dir {
                Direction::Forward => plaintext(),
                Direction::Backward => expected(&converter(Direction::Forward), &plaintext()),
            };
            let want = expected(&conv, &start);
            let mut crashes = 0;
            for calls in 0..16 {
                for budget in (0..=(40 << 10)).step_by(1536) {
                    let tear = if res == Res::Journal { 512 } else { BLOCK };
                    let img = tearing(start.clone(), budget, tear);
                    let mut l = MemLedger::new(dir, res, 1 << 20);
                    l.calls = Some(calls);
                    if go(&mut l, &img, &conv, false).is_ok() {
                        continue;
                    }
                    crashes += 1;
                    let img2 = image(img.mem.contents(), None, vec![]);
                    let mut l2 = MemLedger::new(dir, res, 1 << 20);
                    l2.d = l.d.clone();
                    go(&mut l2, &img2, &conv, false).unwrap();
                    assert!(
                        img2.mem.contents() == want,
                        "{dir:?} {res:?}: crash after {calls} ledger calls, {budget} bytes"
                    );
                }
            }
            assert!(crashes > 100, "{dir:?} {res:?}: only {crashes} crashes");
        }
    }
}

/// A crash inside the repair itself (a torn write of the repaired blocks) is repaired again.
#[test]
fn a_crash_during_repair_is_repaired_again() {
    let conv = converter(Direction::Forward);
    let want = expected(&conv, &plaintext());
    for res in [Res::Checksum, Res::Journal] {
        let img = image(plaintext(), Some(20 << 10), vec![]);
        let mut l = MemLedger::new(Direction::Forward, res, 1 << 20);
        assert!(go(&mut l, &img, &conv, false).is_err());
        assert!(l.d.hot.is_some());
        let img2 = image(img.mem.contents(), Some(1024), vec![]);
        let mut l2 = MemLedger::new(Direction::Forward, res, 1 << 20);
        l2.d = l.d.clone();
        assert!(go(&mut l2, &img2, &conv, false).is_err());
        let img3 = image(img2.mem.contents(), None, vec![]);
        let mut l3 = MemLedger::new(Direction::Forward, res, 1 << 20);
        l3.d = l2.d.clone();
        go(&mut l3, &img3, &conv, false).unwrap();
        assert!(img3.mem.contents() == want, "{res:?}");
    }
}

#[test]
fn kept_holes_are_never_written_and_come_back_as_zeros() {
    let mut plain = plaintext();
    let holes = vec![8192..16384, 40960..65536];
    for h in &holes {
        plain[h.start as usize..h.end as usize].fill(0);
    }
    let enc = converter(Direction::Forward);
    let img = image(plain.clone(), None, holes.clone());
    let mut l = MemLedger::new(Direction::Forward, Res::Checksum, 1 << 20);
    let s = go(&mut l, &img, &enc, true).unwrap();
    assert_eq!(s.holes, 8192 + 24576);
    let cipher = img.mem.contents();
    let full = expected(&enc, &plain);
    for (i, (a, b)) in cipher.chunks(4096).zip(full.chunks(4096)).enumerate() {
        let in_hole = holes.iter().any(|h| h.contains(&(i as u64 * 4096)));
        if in_hole {
            assert!(a.iter().all(|&x| x == 0), "block {i} of a hole was written");
        } else {
            assert!(a == b, "block {i}");
        }
    }
    let dec = Converter {
        old: xts(7, 4096),
        new: Layout::plain(),
    };
    let img = image(cipher, None, holes);
    let mut l = MemLedger::new(Direction::Backward, Res::Checksum, 1 << 20);
    go(&mut l, &img, &dec, true).unwrap();
    assert!(img.mem.contents() == plain);
}

#[test]
fn a_stop_request_ends_at_a_hotzone_boundary() {
    let conv = converter(Direction::Forward);
    let img = image(plaintext(), None, vec![]);
    let mut l = MemLedger::new(Direction::Forward, Res::Checksum, 1 << 20);
    let stop = AtomicBool::new(false);
    let opts = Options {
        hotzone: 16 << 10,
        keep_holes: false,
    };
    let mut seen = Vec::new();
    let (o, s) = run(&mut l, &img, &conv, &opts, &stop, &mut |d, _| {
        seen.push(d);
        if d >= 32 << 10 {
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert_eq!(o, Outcome::Stopped);
    assert_eq!(s.converted, 32 << 10);
    assert_eq!(l.d.converted, 0..32 << 10);
    assert_eq!(seen, [0, 16 << 10, 32 << 10]);
}

#[test]
fn checksums_match_one_hash_per_block_on_any_core_count() {
    let data = plaintext();
    let sums = checksums(HashAlg::Sha256, 4096, &data);
    assert_eq!(sums.len(), SIZE / 4096 * 32);
    for (i, b) in data.chunks(4096).enumerate() {
        let mut one = [0u8; 32];
        HashAlg::Sha256.hash_into(&[b], &mut one);
        assert_eq!(&sums[i * 32..(i + 1) * 32], &one, "block {i}");
    }
}
