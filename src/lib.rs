//! luksfuse: unlock a LUKS1/LUKS2 detached header and serve the decrypted payload as a file.
//!
//! Layers, each depending only on those above it in this list:
//! `error`, `secret`, `units` → `crypto` (sector ciphers, `crypto::hash`) → `luks` (headers, KDFs,
//! unlock) → `volume` and `image` (payload access) → `fuse` (the FUSE adapter) → the binary
//! (`main.rs`, `cli`).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod crypto;
pub mod error;
pub mod fuse;
pub mod headers;
pub mod image;
pub mod luks;
pub mod mount;
pub mod passphrase;
pub mod secret;
pub mod status;
pub mod sys;
pub mod syslog;
#[cfg(test)]
pub(crate) mod testing;
pub mod units;
pub mod volume;

pub use error::{Error, Kind, Result};
