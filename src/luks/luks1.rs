//! LUKS1: the 592-byte header and its 8 keyslots. (Being written.)

use super::{ReadAt, Segment};
use crate::error::{Error, Result};
use crate::secret::VolumeKey;

#[derive(Debug)]
pub struct Luks1 {
    segment: Segment,
}

impl Luks1 {
    pub fn parse(_src: &dyn ReadAt) -> Result<Self> {
        Err(Error::format("LUKS1 is not supported yet"))
    }
    pub fn uuid(&self) -> &str {
        ""
    }
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
    pub fn active_slots(&self) -> Vec<u32> {
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
