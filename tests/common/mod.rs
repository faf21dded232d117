//! Helpers shared by the integration tests, by topic:
//!
//! - [`proc`]: starting processes under the fork guard, running the luksfuse binary;
//! - [`fixtures`]: the one fixture builder (a directory with key file, payload and header);
//! - [`peers`]: what the real peers (cryptsetup, QEMU) say about a header or a file;
//! - [`keyslot_shapes`]: LUKS2 keyslot and segment shapes, and what cryptsetup says of them;
//! - [`luks2_surgery`]: editing a LUKS2 header image in place (JSON, seqid, checksums);
//! - [`mounts`]: luksfuse mounts and their daemons, and guards that clean up mounts;
//! - [`rng`]: deterministic test data;
//! - [`cli`]: command-line behaviour as data (args and stdin in, status and output out).
//!
//! Everything a test uses is re-exported here: `use common::*;`.
#![allow(dead_code, unused_imports)]

pub mod cli;
pub mod fixtures;
pub mod keyslot_shapes;
pub mod luks2_surgery;
pub mod mounts;
pub mod peers;
pub mod proc;
pub mod rng;

pub use cli::*;
pub use fixtures::*;
pub use keyslot_shapes::*;
pub use luks2_surgery::*;
pub use mounts::*;
pub use peers::*;
pub use proc::*;
pub use rng::*;

use std::path::Path;

/// A path as `&str`, for argument lists (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
