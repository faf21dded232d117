//! XTS-AES (IEEE 1619) on 256-bit vectors: VAES for the rounds, VPCLMULQDQ for the tweak
//! arithmetic, AVX2 for the rest — the CPUs with VAES but no AVX-512 (AMD Zen 3, Intel's
//! client cores since Alder Lake). The same scheme as [`super::xts_avx512`] at half the
//! width: [`VECS`] vectors of two blocks each (one sector's blocks `2 * VECS * k ..`) in
//! flight per loop iteration, their tweaks advanced by x^(2 * VECS) per iteration, the tweaks
//! of up to [`BATCH`] sectors encrypted together first. One pass over the data, where the
//! portable path makes three (tweak XOR, the `aes` crate's AES pass, tweak XOR).
//!
//! The only way to get an [`XtsVaes256`] is [`XtsVaes256::new`], which checks the CPU
//! features; every `#[target_feature]` function below is reached only through such a value,
//! which is what makes the `unsafe` calls into them sound.

use super::xts_vec::{load128, Data, Keys, VecXts, Width, BATCH};
use core::arch::x86_64::*;
use zeroize::Zeroize;

/// 256-bit vectors (of two blocks each) in flight per inner-loop iteration.
const VECS: usize = 8;
/// Blocks per vector.
const LANES: usize = 2;

/// A keyed XTS-AES-128 or XTS-AES-256 cipher using VAES-256.
pub(super) type XtsVaes256 = VecXts<Vaes256>;

/// The VAES-256 width of [`VecXts`].
pub(super) struct Vaes256;

impl Width for Vaes256 {
    fn supported() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("vaes")
            && is_x86_feature_detected!("vpclmulqdq")
            && is_x86_feature_detected!("aes")
    }

    unsafe fn batch<const R: usize, const ENC: bool, D: Data>(
        keys: &Keys,
        data: &mut D,
        base: usize,
        sector_size: usize,
        ivs: &[[u8; 16]],
    ) {
        // SAFETY: the caller promises `supported()`, which checks every feature it enables.
        unsafe { crypt_batch::<R, ENC, D>(keys, data, base, sector_size, ivs) }
    }
}

#[target_feature(enable = "avx2")]
fn load256(b: &[u8]) -> __m256i {
    let b: &[u8; 32] = b.try_into().expect("32 bytes");
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn store256(b: &mut [u8], v: __m256i) {
    let b: &mut [u8; 32] = b.try_into().expect("32 bytes");
    // SAFETY: `b` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

/// Multiplies each 128-bit lane of `t` by x^K in GF(2^128) (IEEE 1619 bit order), for
/// 1 <= K <= 56, as [`super::xts_avx512`]'s `mul_xk` does on 512 bits.
#[target_feature(enable = "avx2,vpclmulqdq")]
fn mul_xk<const K: i32, const R: i32>(t: __m256i) -> __m256i {
    debug_assert!(K + R == 64);
    let carry = _mm256_srli_epi64::<R>(t);
    let shifted = _mm256_xor_si256(_mm256_slli_epi64::<K>(t), _mm256_bslli_epi128::<8>(carry));
    let poly = _mm256_set1_epi64x(0x87);
    _mm256_xor_si256(shifted, _mm256_clmulepi64_epi128::<0x01>(carry, poly))
}

/// Multiplies each 128-bit lane of `t` by x^(8 * B) in GF(2^128), for 1 <= B <= 7: a byte
/// shift of the lane, and the B bytes shifted out folded back in (x^128 = x^7 + x^2 + x + 1;
/// their product with 0x87 has fewer than 64 bits, so one carry-less multiply reduces it).
/// Four instructions where [`mul_xk`] needs six.
#[target_feature(enable = "avx2,vpclmulqdq")]
fn mul_xbytes<const B: i32, const OUT: i32>(t: __m256i) -> __m256i {
    debug_assert!(B + OUT == 16 && B < 8);
    let out = _mm256_bsrli_epi128::<OUT>(t);
    let poly = _mm256_set1_epi64x(0x87);
    _mm256_xor_si256(
        _mm256_bslli_epi128::<B>(t),
        _mm256_clmulepi64_epi128::<0x00>(out, poly),
    )
}

/// The tweaks of blocks `0..2 * VECS` of a sector whose encrypted IV is `t0`.
#[target_feature(enable = "avx2,vpclmulqdq")]
fn first_tweaks(t0: __m128i) -> [__m256i; VECS] {
    let t = _mm256_broadcastsi128_si256(t0);
    // Lane j (two 64-bit halves) becomes t * x^j; a shift by 64 gives 0.
    let left = _mm256_set_epi64x(1, 1, 0, 0);
    let right = _mm256_set_epi64x(63, 63, 64, 64);
    let carry = _mm256_srlv_epi64(t, right);
    let v0 = _mm256_xor_si256(
        _mm256_xor_si256(_mm256_sllv_epi64(t, left), _mm256_bslli_epi128::<8>(carry)),
        _mm256_clmulepi64_epi128::<0x01>(carry, _mm256_set1_epi64x(0x87)),
    );
    let v2 = mul_xk::<2, 62>(v0);
    let v4 = mul_xk::<4, 60>(v0);
    let v6 = mul_xk::<6, 58>(v0);
    [
        v0,
        v2,
        v4,
        v6,
        mul_xbytes::<1, 15>(v0),
        mul_xbytes::<1, 15>(v2),
        mul_xbytes::<1, 15>(v4),
        mul_xbytes::<1, 15>(v6),
    ]
}

/// One AES pass (all rounds) over `x`, round keys `rk[0..=R]` already broadcast (round key 0
/// already applied); `ENC` picks `aesenc` or `aesdec`. The last round's key is XORed with
/// the output tweak `t[i]`, which finishes XTS for that vector.
#[target_feature(enable = "avx2,vaes")]
fn aes_rounds<const R: usize, const ENC: bool, const N: usize>(
    x: &mut [__m256i; N],
    rk: &[__m256i; 15],
    t: &[__m256i; N],
) {
    for k in &rk[1..R] {
        for v in x.iter_mut() {
            *v = if ENC {
                _mm256_aesenc_epi128(*v, *k)
            } else {
                _mm256_aesdec_epi128(*v, *k)
            };
        }
    }
    for (v, t) in x.iter_mut().zip(t) {
        let last = _mm256_xor_si256(rk[R], *t);
        *v = if ENC {
            _mm256_aesenclast_epi128(*v, last)
        } else {
            _mm256_aesdeclast_epi128(*v, last)
        };
    }
}

/// XTS over the sectors of `data` from byte `base` (one per entry of `ivs`): encrypt the IVs
/// with the tweak key, then run each sector's blocks with their tweaks through the data key,
/// `LANES * VECS` blocks at a time.
#[target_feature(enable = "avx2,vaes,vpclmulqdq,aes")]
fn crypt_batch<const R: usize, const ENC: bool, D: Data>(
    keys: &Keys,
    data: &mut D,
    base: usize,
    sector_size: usize,
    ivs: &[[u8; 16]],
) {
    debug_assert!(ivs.len() <= BATCH && base + ivs.len() * sector_size <= data.len());
    let mut rk = [_mm256_setzero_si256(); 15];

    // Tweaks: IVs two to a vector, encrypted with K2.
    for (r, k) in rk.iter_mut().zip(&keys.tweak).take(R + 1) {
        *r = _mm256_broadcastsi128_si256(load128(k));
    }
    let mut iv_bytes = [0u8; 16 * BATCH];
    for (dst, iv) in iv_bytes.chunks_exact_mut(16).zip(ivs) {
        dst.copy_from_slice(iv);
    }
    let groups = ivs.len().div_ceil(LANES);
    let mut tv = [_mm256_setzero_si256(); BATCH / LANES];
    for (v, src) in tv.iter_mut().zip(iv_bytes.chunks_exact(32)).take(groups) {
        *v = _mm256_xor_si256(load256(src), rk[0]);
    }
    let zero = [_mm256_setzero_si256(); BATCH / LANES];
    if groups == 1 {
        let mut one = [tv[0]];
        aes_rounds::<R, true, 1>(&mut one, &rk, &[zero[0]]);
        tv[0] = one[0];
    } else {
        aes_rounds::<R, true, { BATCH / LANES }>(&mut tv, &rk, &zero);
    }
    for (v, dst) in tv.iter().zip(iv_bytes.chunks_exact_mut(32)).take(groups) {
        store256(dst, *v);
    }

    // Data: K1 round keys, for encryption or for the equivalent inverse cipher.
    let sched = if ENC { &keys.enc } else { &keys.dec };
    for (r, k) in rk.iter_mut().zip(sched).take(R + 1) {
        *r = _mm256_broadcastsi128_si256(load128(k));
    }
    let step = 32 * VECS;
    let whole = sector_size / step * step;
    for s in 0..ivs.len() {
        let t0: &[u8; 16] = iv_bytes[16 * s..16 * s + 16].try_into().expect("16 bytes");
        let mut t = first_tweaks(load128(t0));
        let start = base + s * sector_size;
        // The tweaks move on after every iteration but the last of a sector with no
        // remaining blocks (one of two iterations at 512-byte sectors).
        let tail = whole < sector_size;
        for chunk in (start..start + whole).step_by(step) {
            let more = tail || chunk + step < start + whole;
            let mut x = [_mm256_setzero_si256(); VECS];
            for i in 0..VECS {
                let v = load256(data.src(chunk + 32 * i, 32));
                x[i] = _mm256_xor_si256(_mm256_xor_si256(v, t[i]), rk[0]);
            }
            aes_rounds::<R, ENC, VECS>(&mut x, &rk, &t);
            for (i, v) in x.iter().enumerate() {
                store256(data.dst(chunk + 32 * i, 32), *v);
            }
            if more {
                for v in &mut t {
                    *v = mul_xbytes::<2, 14>(*v);
                }
            }
        }
        // Sector sizes that are not a multiple of `32 * VECS` bytes: the remaining blocks, a
        // vector at a time through a 32-byte buffer, with the tweaks already in `t`.
        for (at, t) in (start + whole..start + sector_size).step_by(32).zip(t) {
            let n = (start + sector_size - at).min(32);
            let mut tmp = [0u8; 32];
            data.read(at, &mut tmp[..n]);
            let mut x = [_mm256_xor_si256(_mm256_xor_si256(load256(&tmp), t), rk[0])];
            aes_rounds::<R, ENC, 1>(&mut x, &rk, &[t]);
            store256(&mut tmp, x[0]);
            data.write(at, &tmp[..n]);
        }
    }
    // Best effort, as in the 512-bit path: the broadcast round keys' stack copies.
    rk.zeroize();
}
