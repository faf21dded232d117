//! The units a LUKS volume is addressed in, as types (in the way imago keeps guest and host
//! offsets apart), so that a byte offset cannot be passed where a 512-byte sector count or
//! an IV number is expected:
//!
//! | type           | counts                                                 | e.g.                      |
//! |----------------|--------------------------------------------------------|---------------------------|
//! | [`Bytes`]      | bytes: an offset into a header/payload file, a length  | segment offset and size   |
//! | [`Sectors512`] | 512-byte sectors, whatever the encryption sector size  | LUKS1 payload offset, `iv_tweak` |
//! | [`EncSector`]  | encryption sectors of a segment (of its [`SectorSize`]) | the sector a read starts in |
//! | [`Iv`]         | IV numbers, what the IV generator turns into an IV     | `plain64`'s 64-bit counter |
//! | [`IvStep`]     | how far the IV number moves from one sector to the next | `sector_size / 512`       |
//! | [`SectorSize`] | an encryption sector size, 512..=4096, a power of two   | LUKS2 `sector_size`       |
//!
//! All are `Copy` newtypes over integers (free at run time). Conversions that can overflow are
//! checked (`Option`), none narrows silently. IV numbers alone wrap on purpose: dm-crypt's
//! sector numbers are 64-bit and wrap, and so must ours to decrypt the same data.
//! `SectorSize` is validated once, by [`SectorSize::new`]; every other place takes it as given.

use std::fmt;

/// A number of bytes: an offset into a header or payload file, or a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    /// The number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    #[inline]
    pub fn checked_add(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_add(other.0).map(Bytes)
    }

    /// `self - other`, or `None` when `other` is larger.
    #[inline]
    pub fn checked_sub(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_sub(other.0).map(Bytes)
    }

    /// `self - other`, or zero when `other` is larger.
    #[inline]
    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    /// The bytes of `n` 512-byte sectors, where `n` is a 32-bit on-disk field (LUKS1 offsets):
    /// never overflows (`u32::MAX * 512 < 2^41`).
    #[inline]
    pub fn from_sectors512_u32(n: u32) -> Bytes {
        Bytes(u64::from(n) * 512)
    }

    /// Whole 512-byte sectors in `self`, rounded down.
    #[inline]
    pub fn sectors512_floor(self) -> Sectors512 {
        Sectors512(self.0 / 512)
    }

    /// Whether `self` is a whole number of `sector`-sized sectors.
    #[inline]
    pub fn is_multiple_of(self, sector: SectorSize) -> bool {
        self.0.is_multiple_of(sector.as_u64())
    }

    /// `self` rounded down to a whole number of `sector`-sized sectors.
    #[inline]
    pub fn round_down(self, sector: SectorSize) -> Bytes {
        Bytes(self.0 & !(sector.as_u64() - 1))
    }

    /// `self` as an in-memory length or index, if it fits.
    #[inline]
    pub fn to_usize(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A number of 512-byte sectors (a count, or a position counted in them), whatever the
/// encryption sector size: LUKS1's payload and key material offsets, `cryptsetup --offset`,
/// the LUKS2 `iv_tweak`, and the unit dm-crypt counts IVs in by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sectors512(pub u64);

impl Sectors512 {
    /// The number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The same length in bytes, or `None` on overflow.
    #[inline]
    pub fn to_bytes(self) -> Option<Bytes> {
        self.0.checked_mul(512).map(Bytes)
    }

    /// `self` as a 32-bit on-disk field (LUKS1), if it fits.
    #[inline]
    pub fn to_u32(self) -> Option<u32> {
        u32::try_from(self.0).ok()
    }
}

impl From<u32> for Sectors512 {
    fn from(n: u32) -> Self {
        Sectors512(u64::from(n))
    }
}

impl fmt::Display for Sectors512 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of an encryption sector inside a segment: sector `n` holds bytes
/// `n * sector_size ..` of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EncSector(pub u64);

impl EncSector {
    /// The number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The sector that holds byte `pos` of the segment, and where in it that byte lies.
    #[inline]
    pub fn containing(pos: Bytes, sector: SectorSize) -> (EncSector, usize) {
        let skip = pos.0 & (sector.as_u64() - 1);
        (
            EncSector(pos.0 >> sector.shift()),
            usize::try_from(skip).expect("below 4096"),
        )
    }

    /// Where this sector starts, in bytes from the segment start (`None` on overflow).
    #[inline]
    pub fn to_bytes(self, sector: SectorSize) -> Option<Bytes> {
        self.0.checked_mul(sector.as_u64()).map(Bytes)
    }

    /// Where this sector starts in 512-byte sectors from the segment start. Wraps, as the
    /// IV numbers computed from it do (dm-crypt's sector numbers are 64-bit).
    #[inline]
    pub fn to_sectors512_wrapping(self, sector: SectorSize) -> Sectors512 {
        Sectors512(self.0.wrapping_mul(sector.ivs_per_sector().0))
    }
}

impl fmt::Display for EncSector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An IV number: what the IV generator turns into a sector's IV (`plain64` encodes all 64
/// bits, `plain` the low 32, `essiv` encrypts the `plain64` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Iv(pub u64);

impl Iv {
    /// The number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The IV number of the `i`-th sector of a run that starts at `self` and advances by
    /// `step`; wraps past 2^64 as dm-crypt's does.
    #[inline(always)]
    pub fn nth(self, i: u64, step: IvStep) -> Iv {
        Iv(self.0.wrapping_add(i.wrapping_mul(step.0)))
    }
}

/// How far the IV number advances from one encryption sector to the next: `sector_size / 512`
/// when IVs count 512-byte units (dm-crypt's default, LUKS), 1 when they count sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IvStep(pub u64);

impl IvStep {
    /// One IV number per sector (512-byte sectors, keyslot areas, `iv_large_sectors`).
    pub const ONE: IvStep = IvStep(1);
}

/// An encryption sector size in bytes: a power of two from 512 to 4096 (what LUKS2 and
/// dm-crypt allow). Only [`SectorSize::new`] makes one, so holding one means it is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectorSize(u32);

/// A number that is not a valid [`SectorSize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSectorSize(pub u64);

impl fmt::Display for BadSectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sector size {} is not a power of two between {} and {}",
            self.0,
            SectorSize::MIN.0,
            SectorSize::MAX.0
        )
    }
}

impl std::error::Error for BadSectorSize {}

impl SectorSize {
    /// The smallest (and LUKS1's only) sector size.
    pub const MIN: SectorSize = SectorSize(512);
    /// The largest.
    pub const MAX: SectorSize = SectorSize(4096);

    /// Checks `bytes`: a power of two in 512..=4096.
    pub fn new(bytes: u64) -> Result<SectorSize, BadSectorSize> {
        match u32::try_from(bytes) {
            Ok(b) if (Self::MIN.0..=Self::MAX.0).contains(&b) && b.is_power_of_two() => {
                Ok(SectorSize(b))
            }
            _ => Err(BadSectorSize(bytes)),
        }
    }

    /// The size in bytes.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, as an in-memory length.
    #[inline]
    pub const fn bytes(self) -> usize {
        self.0 as usize
    }

    /// The size in bytes, as a file length.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0 as u64
    }

    /// log2 of the size in bytes (9..=12).
    #[inline]
    pub const fn shift(self) -> u32 {
        self.0.trailing_zeros()
    }

    /// 512-byte units per sector (1..=8): the IV step when IVs count 512-byte units.
    #[inline]
    pub const fn ivs_per_sector(self) -> IvStep {
        IvStep((self.0 / 512) as u64)
    }
}

impl TryFrom<u32> for SectorSize {
    type Error = BadSectorSize;
    fn try_from(bytes: u32) -> Result<Self, BadSectorSize> {
        SectorSize::new(u64::from(bytes))
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_size_takes_powers_of_two_from_512_to_4096_only() {
        for ok in [512u64, 1024, 2048, 4096] {
            let s = SectorSize::new(ok).unwrap();
            assert_eq!(s.as_u64(), ok);
            assert_eq!(1u64 << s.shift(), ok);
            assert_eq!(s.ivs_per_sector(), IvStep(ok / 512));
        }
        for bad in [
            0u64,
            1,
            256,
            511,
            768,
            1000,
            1025,
            1536,
            8192,
            1 << 32 | 512,
            u64::MAX,
        ] {
            assert_eq!(SectorSize::new(bad), Err(BadSectorSize(bad)), "{bad}");
        }
        assert_eq!(
            SectorSize::new(1000).unwrap_err().to_string(),
            "sector size 1000 is not a power of two between 512 and 4096"
        );
        assert_eq!(SectorSize::try_from(2048u32).unwrap().get(), 2048);
    }

    #[test]
    fn conversions_are_checked() {
        assert_eq!(Sectors512(3).to_bytes(), Some(Bytes(1536)));
        assert_eq!(Sectors512(u64::MAX / 256).to_bytes(), None);
        assert_eq!(Sectors512(1 << 32).to_u32(), None);
        assert_eq!(
            Bytes::from_sectors512_u32(u32::MAX),
            Bytes(u64::from(u32::MAX) * 512)
        );
        assert_eq!(Bytes(1535).sectors512_floor(), Sectors512(2));
        assert_eq!(Bytes(u64::MAX).checked_add(Bytes(1)), None);
        assert_eq!(Bytes(1).checked_sub(Bytes(2)), None);
        let s = SectorSize::new(4096).unwrap();
        assert_eq!(Bytes(3 * 4096 + 5).round_down(s), Bytes(3 * 4096));
        assert!(Bytes(8192).is_multiple_of(s) && !Bytes(8192 + 512).is_multiple_of(s));
        assert_eq!(
            EncSector::containing(Bytes(3 * 4096 + 5), s),
            (EncSector(3), 5)
        );
        assert_eq!(EncSector(3).to_bytes(s), Some(Bytes(3 * 4096)));
        assert_eq!(EncSector(u64::MAX).to_bytes(s), None);
        assert_eq!(EncSector(3).to_sectors512_wrapping(s), Sectors512(24));
    }

    #[test]
    fn iv_numbers_wrap_like_dm_crypt() {
        assert_eq!(Iv(u64::MAX - 3).nth(2, IvStep(8)), Iv(12));
        assert_eq!(Iv(5).nth(3, IvStep::ONE), Iv(8));
    }
}
