//! XTS-AES (IEEE 1619) on 512-bit vectors: VAES for the rounds, VPCLMULQDQ for the tweak
//! arithmetic, AVX-512F/BW for the rest. Sixteen blocks ([`VECS`] = 4 vectors, one sector's
//! blocks `16k..16k+15`) are in flight per loop iteration, their tweaks advanced by x^16 per
//! iteration; the tweaks of up to [`BATCH`] sectors are encrypted together before their
//! sectors are processed, and each sector's first tweaks are derived while the previous sector
//! is still going through its rounds.
//!
//! The key schedule and the walk over batches are shared with the 256-bit path
//! ([`super::xts_vec`]). The only way to get an [`XtsAvx512`] is [`XtsAvx512::new`], which checks the CPU features;
//! every `#[target_feature]` function below is reached only through such a value, which is what
//! makes the `unsafe` calls into them sound.

use super::xts_vec::{load128, Data, Keys, VecXts, Width, BATCH};
use core::arch::x86_64::*;
use zeroize::Zeroize;

/// 512-bit vectors (of four blocks each) in flight per inner-loop iteration: 4 or 8. Eight
/// measured 10-25% slower here (the data, tweaks and 15 round keys no longer fit the 32
/// registers).
const VECS: usize = 4;

/// A keyed XTS-AES-128 or XTS-AES-256 cipher using VAES-512.
pub(super) type XtsAvx512 = VecXts<Avx512>;

/// The VAES-512 width of [`VecXts`].
pub(super) struct Avx512;

impl Width for Avx512 {
    fn supported() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
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

#[target_feature(enable = "avx512f")]
fn load512(b: &[u8]) -> __m512i {
    let b: &[u8; 64] = b.try_into().expect("64 bytes");
    // SAFETY: `b` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}

#[target_feature(enable = "avx512f")]
fn store512(b: &mut [u8], v: __m512i) {
    let b: &mut [u8; 64] = b.try_into().expect("64 bytes");
    // SAFETY: `b` is 64 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_si512(b.as_mut_ptr().cast(), v) }
}

/// Multiplies each 128-bit lane of `t` by x^K in GF(2^128) (IEEE 1619 bit order: lane bytes
/// little-endian, reduction polynomial x^128 + x^7 + x^2 + x + 1), for 1 <= K <= 56: shift
/// both 64-bit halves left by K, carry the low half's top bits into the high half, and fold
/// the bits shifted out of the lane back in as carry * 0x87 (a carry-less product).
#[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
fn mul_xk<const K: u32, const R: u32>(t: __m512i) -> __m512i {
    debug_assert!(K + R == 64);
    let carry = _mm512_srli_epi64::<R>(t);
    let shifted = _mm512_xor_si512(_mm512_slli_epi64::<K>(t), _mm512_bslli_epi128::<8>(carry));
    let poly = _mm512_set1_epi64(0x87);
    _mm512_xor_si512(shifted, _mm512_clmulepi64_epi128::<0x01>(carry, poly))
}

/// The tweaks of blocks 0..16 of a sector whose encrypted IV is `t0`, as four vectors.
#[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
fn first_tweaks(t0: __m128i) -> [__m512i; 4] {
    let t = _mm512_broadcast_i32x4(t0);
    // Lane j (two 64-bit halves) becomes t * x^j; a shift by 64 or more gives 0.
    let left = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
    let right = _mm512_set_epi64(61, 61, 62, 62, 63, 63, 64, 64);
    let carry = _mm512_srlv_epi64(t, right);
    let v0 = _mm512_xor_si512(
        _mm512_xor_si512(_mm512_sllv_epi64(t, left), _mm512_bslli_epi128::<8>(carry)),
        _mm512_clmulepi64_epi128::<0x01>(carry, _mm512_set1_epi64(0x87)),
    );
    [
        v0,
        mul_xk::<4, 60>(v0),
        mul_xk::<8, 56>(v0),
        mul_xk::<12, 52>(v0),
    ]
}

/// One AES pass (all rounds) over `x`, round keys `rk[0..=R]` already broadcast; `ENC` picks
/// `aesenc` or `aesdec`. `last[i]` is the last round key XORed with the output tweak.
#[target_feature(enable = "avx512f,vaes")]
fn aes_rounds<const R: usize, const ENC: bool, const N: usize>(
    x: &mut [__m512i; N],
    rk: &[__m512i; 15],
    last: &[__m512i; N],
) {
    for k in &rk[1..R] {
        for v in x.iter_mut() {
            *v = if ENC {
                _mm512_aesenc_epi128(*v, *k)
            } else {
                _mm512_aesdec_epi128(*v, *k)
            };
        }
    }
    for (v, l) in x.iter_mut().zip(last) {
        *v = if ENC {
            _mm512_aesenclast_epi128(*v, *l)
        } else {
            _mm512_aesdeclast_epi128(*v, *l)
        };
    }
}

/// XTS over the sectors of `data` from byte `base` (one per entry of `ivs`): encrypt the IVs
/// with the tweak key, then run each sector's blocks with their tweaks through the data key,
/// `4 * VECS` blocks at a time.
#[target_feature(enable = "avx512f,avx512bw,vaes,vpclmulqdq,aes")]
fn crypt_batch<const R: usize, const ENC: bool, D: Data>(
    keys: &Keys,
    data: &mut D,
    base: usize,
    sector_size: usize,
    ivs: &[[u8; 16]],
) {
    debug_assert!(ivs.len() <= BATCH && base + ivs.len() * sector_size <= data.len());
    let mut rk = [_mm512_setzero_si512(); 15];

    // Tweaks: IVs four to a vector, encrypted with K2.
    for (r, k) in rk.iter_mut().zip(&keys.tweak).take(R + 1) {
        *r = _mm512_broadcast_i32x4(load128(k));
    }
    let mut iv_bytes = [0u8; 16 * BATCH];
    for (dst, iv) in iv_bytes.chunks_exact_mut(16).zip(ivs) {
        dst.copy_from_slice(iv);
    }
    let groups = ivs.len().div_ceil(4);
    let mut tv = [_mm512_setzero_si512(); BATCH / 4];
    for (v, src) in tv.iter_mut().zip(iv_bytes.chunks_exact(64)).take(groups) {
        *v = _mm512_xor_si512(load512(src), rk[0]);
    }
    if groups == 1 {
        // A single sector (or up to four): one vector, not four.
        let mut one = [tv[0]];
        aes_rounds::<R, true, 1>(&mut one, &rk, &[rk[R]]);
        tv[0] = one[0];
    } else {
        aes_rounds::<R, true, { BATCH / 4 }>(&mut tv, &rk, &[rk[R]; BATCH / 4]);
    }
    for (v, dst) in tv.iter().zip(iv_bytes.chunks_exact_mut(64)).take(groups) {
        store512(dst, *v);
    }

    // Data: K1 round keys, for encryption or for the equivalent inverse cipher.
    let sched = if ENC { &keys.enc } else { &keys.dec };
    for (r, k) in rk.iter_mut().zip(sched).take(R + 1) {
        *r = _mm512_broadcast_i32x4(load128(k));
    }
    // The first tweaks of sector s+1 are computed before sector s is processed, so that their
    // latency (broadcast, shifts, carry-less multiply) overlaps that sector's AES rounds.
    let first_of = |s: usize| {
        let t0: &[u8; 16] = iv_bytes[16 * s..16 * s + 16].try_into().expect("16 bytes");
        let first = first_tweaks(load128(t0));
        let mut t = [_mm512_setzero_si512(); VECS];
        for i in 0..VECS {
            t[i] = if i < 4 {
                first[i]
            } else {
                mul_xk::<16, 48>(first[i - 4])
            };
        }
        t
    };
    let mut next = first_of(0);
    let whole = sector_size / (64 * VECS) * (64 * VECS);
    for s in 0..ivs.len() {
        let mut t = next;
        if s + 1 < ivs.len() {
            next = first_of(s + 1);
        }
        let start = base + s * sector_size;
        for chunk in (start..start + whole).step_by(64 * VECS) {
            let mut x = [_mm512_setzero_si512(); VECS];
            let mut last = [_mm512_setzero_si512(); VECS];
            for i in 0..VECS {
                // x ^ tweak ^ round key 0 in one ternary-logic instruction (0x96: a ^ b ^ c).
                x[i] = _mm512_ternarylogic_epi64::<0x96>(
                    load512(data.src(chunk + 64 * i, 64)),
                    t[i],
                    rk[0],
                );
                last[i] = _mm512_xor_si512(rk[R], t[i]);
            }
            aes_rounds::<R, ENC, VECS>(&mut x, &rk, &last);
            for i in 0..VECS {
                store512(data.dst(chunk + 64 * i, 64), x[i]);
                t[i] = if VECS == 4 {
                    mul_xk::<16, 48>(t[i])
                } else {
                    mul_xk::<32, 32>(t[i])
                };
            }
        }
        // Sector sizes that are not a multiple of `64 * VECS` bytes: the remaining blocks, a
        // vector at a time through a 64-byte buffer, with the tweaks already in `t`.
        for (at, t) in (start + whole..start + sector_size).step_by(64).zip(t) {
            let n = (start + sector_size - at).min(64);
            let mut tmp = [0u8; 64];
            data.read(at, &mut tmp[..n]);
            let mut x = [_mm512_ternarylogic_epi64::<0x96>(load512(&tmp), t, rk[0])];
            aes_rounds::<R, ENC, 1>(&mut x, &rk, &[_mm512_xor_si512(rk[R], t)]);
            store512(&mut tmp, x[0]);
            data.write(at, &tmp[..n]);
        }
    }
    // Best effort: the broadcast round keys' stack copies (registers and spills the compiler
    // made are out of reach, as they are for the `aes` crate).
    rk.zeroize();
}
