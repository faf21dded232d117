//! What the two vector XTS-AES paths share ([`super::xts_avx512`] on 512-bit vectors,
//! [`super::xts_vaes256`] on 256-bit ones): the expanded keys (AES-NI key schedule), the walk
//! over a buffer in batches of [`BATCH`] sectors, and where the blocks come from and go to.
//! Each path is a [`Width`]: its CPU check and its `crypt_batch` for one batch; [`VecXts`]
//! is the keyed cipher over either.

use core::arch::x86_64::*;
use std::marker::PhantomData;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Sectors whose tweaks (the encrypted IVs) are computed in one pass.
pub(super) const BATCH: usize = 16;

/// AES round keys, 15 slots (AES-128 uses the first 11).
pub(super) type Schedule = [[u8; 16]; 15];

/// The expanded keys, wiped when dropped (boxed so that they are never copied around).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(super) struct Keys {
    /// Encryption round keys of the data key (K1).
    pub(super) enc: Schedule,
    /// Round keys of the data key for the equivalent inverse cipher (`aesdec`): the encryption
    /// keys in reverse order, all but the first and last through InvMixColumns.
    pub(super) dec: Schedule,
    /// Encryption round keys of the tweak key (K2).
    pub(super) tweak: Schedule,
}

/// One vector width's XTS: what the CPU needs for it, and one batch of sectors.
pub(super) trait Width {
    /// Whether this CPU has every feature `batch` enables.
    fn supported() -> bool;
    /// XTS over the sectors of `data` from byte `base`, one per entry of `ivs` (at most
    /// [`BATCH`]), with `R` AES rounds, encrypting when `ENC`.
    ///
    /// # Safety
    /// [`Width::supported`] returned true.
    unsafe fn batch<const R: usize, const ENC: bool, D: Data>(
        keys: &Keys,
        data: &mut D,
        base: usize,
        sector_size: usize,
        ivs: &[[u8; 16]],
    );
}

/// A keyed XTS-AES-128 or XTS-AES-256 cipher on the vectors of `W`. The only way to get one
/// is [`VecXts::new`], which checks the CPU features: that is what makes the `unsafe` calls
/// into `W::batch` sound.
pub(super) struct VecXts<W: Width> {
    /// AES rounds: 10 (XTS-AES-128, 256-bit key) or 14 (XTS-AES-256, 512-bit key).
    rounds: usize,
    keys: Box<Keys>,
    width: PhantomData<W>,
}

impl<W: Width> VecXts<W> {
    /// Whether this CPU has everything the vector path uses.
    pub(super) fn supported() -> bool {
        W::supported()
    }

    /// Expands an XTS key (K1 ‖ K2, 32 or 64 bytes). `None` when the CPU lacks a feature (see
    /// [`Self::supported`]) or the key has another length (XTS-AES-192 stays portable).
    pub(super) fn new(key: &[u8]) -> Option<Self> {
        let rounds = match key.len() {
            32 => 10,
            64 => 14,
            _ => return None,
        };
        if !W::supported() {
            return None;
        }
        let (k1, k2) = key.split_at(key.len() / 2);
        let mut keys = Box::new(Keys {
            enc: [[0; 16]; 15],
            dec: [[0; 16]; 15],
            tweak: [[0; 16]; 15],
        });
        // SAFETY: every width needs AES-NI, and `supported()` just confirmed it; AES-NI is the
        // only feature these functions enable.
        unsafe {
            expand_key(k1, &mut keys.enc);
            expand_key(k2, &mut keys.tweak);
            inverse_schedule(&keys.enc, &mut keys.dec, rounds);
        }
        Some(VecXts {
            rounds,
            keys,
            width: PhantomData,
        })
    }

    /// En- or decrypts whole sectors of `buf` in place; sector `i` has IV block `iv(i)`.
    /// `sector_size` is a non-zero multiple of 16 and divides `buf.len()`.
    pub(super) fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
        encrypt: bool,
    ) {
        self.crypt(InPlace(buf), sector_size, iv, encrypt)
    }

    /// Encrypts whole sectors of `src` into `dst` (of the same length), as
    /// [`Self::crypt_sectors`] would in place: the write path encrypts the caller's data into
    /// its scratch in one pass instead of copying it there first.
    pub(super) fn encrypt_sectors_to(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
    ) {
        assert_eq!(src.len(), dst.len());
        self.crypt(Apart { src, dst }, sector_size, iv, true)
    }

    /// Walks `data` in batches of up to [`BATCH`] sectors, each through `W::batch`.
    fn crypt<D: Data>(
        &self,
        mut data: D,
        sector_size: usize,
        iv: impl Fn(usize) -> [u8; 16],
        encrypt: bool,
    ) {
        let len = data.len();
        assert!(
            sector_size >= 16 && sector_size.is_multiple_of(16) && len.is_multiple_of(sector_size)
        );
        let (k, d) = (&*self.keys, &mut data);
        let mut ivs = [[0u8; 16]; BATCH];
        let per_batch = BATCH * sector_size;
        for (b, at) in (0..len).step_by(per_batch).enumerate() {
            let n = (len - at).min(per_batch) / sector_size;
            for (i, slot) in ivs[..n].iter_mut().enumerate() {
                *slot = iv(b * BATCH + i);
            }
            let ivs = &ivs[..n];
            // SAFETY: `self` exists, so `new` found every feature `W::batch` enables.
            unsafe {
                match (self.rounds, encrypt) {
                    (10, true) => W::batch::<10, true, D>(k, d, at, sector_size, ivs),
                    (10, false) => W::batch::<10, false, D>(k, d, at, sector_size, ivs),
                    (14, true) => W::batch::<14, true, D>(k, d, at, sector_size, ivs),
                    (14, false) => W::batch::<14, false, D>(k, d, at, sector_size, ivs),
                    _ => unreachable!("rounds are 10 or 14"),
                }
            }
        }
    }
}

/// Where the blocks come from and go to: the same buffer ([`InPlace`]) or two ([`Apart`]).
/// Offsets are bytes from the start; every access is bounds-checked.
pub(super) trait Data {
    fn len(&self) -> usize;
    /// The `n` source bytes at `at`.
    fn src(&self, at: usize, n: usize) -> &[u8];
    /// The `n` destination bytes at `at`.
    fn dst(&mut self, at: usize, n: usize) -> &mut [u8];
    /// Copies the `out.len()` source bytes at `at` into `out`.
    fn read(&self, at: usize, out: &mut [u8]) {
        out.copy_from_slice(self.src(at, out.len()));
    }
    /// Writes `bytes` at `at`.
    fn write(&mut self, at: usize, bytes: &[u8]) {
        self.dst(at, bytes.len()).copy_from_slice(bytes);
    }
}

pub(super) struct InPlace<'a>(pub(super) &'a mut [u8]);

pub(super) struct Apart<'a> {
    pub(super) src: &'a [u8],
    pub(super) dst: &'a mut [u8],
}

impl Data for InPlace<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn src(&self, at: usize, n: usize) -> &[u8] {
        &self.0[at..at + n]
    }
    #[inline(always)]
    fn dst(&mut self, at: usize, n: usize) -> &mut [u8] {
        &mut self.0[at..at + n]
    }
}

impl Data for Apart<'_> {
    fn len(&self) -> usize {
        self.src.len()
    }
    #[inline(always)]
    fn src(&self, at: usize, n: usize) -> &[u8] {
        &self.src[at..at + n]
    }
    #[inline(always)]
    fn dst(&mut self, at: usize, n: usize) -> &mut [u8] {
        &mut self.dst[at..at + n]
    }
}

// ---- Key schedule (AES-NI, once per key). ----

#[target_feature(enable = "aes")]
pub(super) fn load128(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[target_feature(enable = "aes")]
pub(super) fn store128(b: &mut [u8; 16], v: __m128i) {
    // SAFETY: `b` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}

/// `k` XORed with itself shifted by 1, 2 and 3 words: the running XOR of the previous round
/// key's words that FIPS-197 key expansion needs.
#[target_feature(enable = "aes")]
fn fold(k: __m128i) -> __m128i {
    let mut t = _mm_slli_si128::<4>(k);
    let mut k = _mm_xor_si128(k, t);
    t = _mm_slli_si128::<4>(t);
    k = _mm_xor_si128(k, t);
    t = _mm_slli_si128::<4>(t);
    _mm_xor_si128(k, t)
}

/// FIPS-197 key expansion of a 16- or 32-byte AES key into `out[0..=10]` or `out[0..=14]`.
#[target_feature(enable = "aes")]
fn expand_key(key: &[u8], out: &mut Schedule) {
    // Next key from `prev` (the round key two or one steps back) and the assist word of `last`.
    macro_rules! next {
        ($prev:expr, $last:expr, $rcon:literal, $lane:literal) => {
            _mm_xor_si128(
                fold($prev),
                _mm_shuffle_epi32::<$lane>(_mm_aeskeygenassist_si128::<$rcon>($last)),
            )
        };
    }
    if key.len() == 16 {
        let mut k = load128(key.try_into().expect("16 bytes"));
        store128(&mut out[0], k);
        macro_rules! round {
            ($($i:literal $rcon:literal),*) => {$(
                k = next!(k, k, $rcon, 0xff);
                store128(&mut out[$i], k);
            )*};
        }
        round!(1 0x01, 2 0x02, 3 0x04, 4 0x08, 5 0x10, 6 0x20, 7 0x40, 8 0x80, 9 0x1b, 10 0x36);
    } else {
        let mut a = load128(key[..16].try_into().expect("16 bytes"));
        let mut b = load128(key[16..32].try_into().expect("16 bytes"));
        store128(&mut out[0], a);
        store128(&mut out[1], b);
        macro_rules! round {
            ($($i:literal $rcon:literal),*) => {$(
                a = next!(a, b, $rcon, 0xff);
                store128(&mut out[$i], a);
                b = next!(b, a, 0x00, 0xaa);
                store128(&mut out[$i + 1], b);
            )*};
        }
        round!(2 0x01, 4 0x02, 6 0x04, 8 0x08, 10 0x10, 12 0x20);
        store128(&mut out[14], next!(a, b, 0x40, 0xff));
    }
}

/// Round keys for `aesdec`: `enc` reversed, the inner ones through InvMixColumns.
#[target_feature(enable = "aes")]
fn inverse_schedule(enc: &Schedule, dec: &mut Schedule, rounds: usize) {
    dec[0] = enc[rounds];
    for i in 1..rounds {
        store128(&mut dec[i], _mm_aesimc_si128(load128(&enc[rounds - i])));
    }
    dec[rounds] = enc[0];
}
