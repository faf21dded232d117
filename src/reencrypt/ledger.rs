//! The header's record of a reencryption ([`Reencryption`], kept as cryptsetup keeps it) as
//! the mover's [`Ledger`], and the [`Converter`] its two layouts call for.

use super::{Converter, Direction, Layout, Ledger, Recovery};
use crate::crypto::{CipherSpec, SectorCipher};
use crate::error::{Error, Result};
use crate::luks::luks2::reencrypt::{self as meta, Mode, Reencryption, Resilience};
use crate::secret::VolumeKey;
use crate::units::SectorSize;
use std::ops::Range;

impl Ledger for Reencryption {
    fn direction(&self) -> Direction {
        match self.state().mode {
            Mode::Encrypt => Direction::Forward,
            Mode::Decrypt => Direction::Backward,
        }
    }
    fn converted(&self) -> Range<u64> {
        self.state().converted.clone()
    }
    fn hot(&self) -> Option<Range<u64>> {
        self.state().hot.clone()
    }
    fn hotzone_limits(&self) -> (u64, u64) {
        // Hotzones of whole checksum blocks, the last one included (the payload size must be
        // a multiple): every byte of a hotzone is then covered by a checksum.
        let unit = self.state().alignment();
        (self.max_hotzone() / unit * unit, unit)
    }
    fn recovery(&self) -> Result<Recovery> {
        Ok(match self.state().resilience {
            Resilience::Checksum { hash, block } => Recovery::Checksums {
                hash,
                block: usize::try_from(block).expect("u32 fits usize"),
                sums: self.recovery_data()?.as_bytes().to_vec(),
            },
            Resilience::Journal => Recovery::Journal(self.recovery_data()?),
            Resilience::None => Recovery::Unprotected,
        })
    }
    fn checksum(&self) -> Option<(crate::crypto::hash::HashAlg, usize)> {
        match self.state().resilience {
            Resilience::Checksum { hash, block } => {
                Some((hash, usize::try_from(block).expect("u32 fits usize")))
            }
            _ => None,
        }
    }
    fn protect(&mut self, hot: Range<u64>, old: &[u8], sums: Option<&[u8]>) -> Result<()> {
        Reencryption::protect(self, hot, old, sums)
    }
    fn advance(&mut self) -> Result<()> {
        Reencryption::advance(self)
    }
    fn checkpoint(&mut self) -> Result<()> {
        let c = self.state().converted.clone();
        Reencryption::checkpoint(self, c)
    }
}

fn layout(l: &meta::Layout, key: Option<&VolumeKey>) -> Result<Layout> {
    let Some(enc) = &l.encryption else {
        return Ok(Layout::plain());
    };
    let key = key.ok_or_else(|| Error::format("no volume key for the encrypted side"))?;
    let spec = CipherSpec::parse(enc)?;
    let sector = SectorSize::new(u64::from(l.sector_size))
        .map_err(|_| Error::format(format!("sector size {} is not valid", l.sector_size)))?;
    Ok(Layout::encrypted(
        SectorCipher::new(&spec, key.as_bytes())?,
        sector,
        0,
    ))
}

/// The conversion `r` records: from its old layout (with the old key) to its new one.
pub fn converter(r: &Reencryption) -> Result<Converter> {
    let s = r.state();
    Ok(Converter {
        old: layout(&s.old, r.old_key())?,
        new: layout(&s.new, r.new_key())?,
    })
}
