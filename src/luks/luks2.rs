//! LUKS2: binary headers, JSON metadata, keyslots. (Being written.)

use super::{ReadAt, Segment};
use crate::error::{Error, Result};
use crate::secret::VolumeKey;

#[derive(Debug)]
pub struct Luks2 {
    segment: Segment,
}

impl Luks2 {
    pub fn parse(_src: &dyn ReadAt) -> Result<Self> {
        Err(Error::format("LUKS2 is not supported yet"))
    }
    pub fn uuid(&self) -> &str {
        ""
    }
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
    pub fn slots_to_try(&self) -> Vec<u32> {
        vec![]
    }
    pub fn slot_active(&self, _slot: u32) -> bool {
        false
    }
    pub fn unlock_slot(
        &self,
        _src: &dyn ReadAt,
        _slot: u32,
        _passphrase: &[u8],
    ) -> Result<Option<VolumeKey>> {
        Ok(None)
    }
    pub fn dump(&self) -> String {
        String::new()
    }
    pub fn dump_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
