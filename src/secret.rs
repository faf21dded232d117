//! Secret bytes: passphrases, derived keys, volume keys.
//!
//! They live in RAM locked against swapping (best effort, see `mlock(2)`), zeroize
//! on drop, print as `[redacted]`, have no `Clone`, and compare in constant time.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Secrets up to this size are locked in RAM; larger buffers (a key file read in whole, up
/// to 8 MiB) would exhaust an ordinary user's RLIMIT_MEMLOCK and are only wiped.
const MLOCK_MAX: usize = 64 * 1024;

/// A heap buffer of secret bytes, locked in RAM and wiped when dropped. Its length never
/// changes, so the heap block never moves.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of `bytes`; they are wiped when the secret is dropped.
    pub fn new(mut bytes: Vec<u8>) -> Self {
        bytes.shrink_to_fit();
        if bytes.len() <= MLOCK_MAX {
            let _ = crate::sys::mlock(&bytes);
        }
        Secret(bytes)
    }
    /// A zero-filled secret of `len` bytes, to be filled in place (avoids copies).
    pub fn zeroed(len: usize) -> Self {
        Self::new(vec![0u8; len])
    }
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
    /// `len` bytes from the operating system's CSPRNG (volume keys, salts, AF stripes).
    pub fn random(len: usize) -> crate::error::Result<Self> {
        let mut s = Self::zeroed(len);
        fill_random(s.as_mut_bytes())?;
        Ok(s)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Constant-time equality of contents (lengths are not secret).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.len() == other.len() && bool::from(self.0.as_slice().ct_eq(other))
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
        if self.0.len() <= MLOCK_MAX {
            crate::sys::munlock(&self.0);
        }
    }
}

/// Fills `buf` from the operating system's CSPRNG (`getrandom(2)`).
pub fn fill_random(buf: &mut [u8]) -> crate::error::Result<()> {
    getrandom::fill(buf).map_err(|e| {
        crate::error::Error::new(
            crate::error::Kind::Device,
            format!("cannot get random bytes from the system: {e}"),
        )
    })
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

/// A passphrase or key-file content, exactly as given (binary allowed).
#[derive(Debug)]
pub struct Passphrase(pub Secret);

/// The volume (master) key that encrypts the payload.
#[derive(Debug)]
pub struct VolumeKey(pub Secret);

impl Passphrase {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl VolumeKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        let shown = format!("{s:?} {:?}", VolumeKey(Secret::from_slice(b"hunter2")));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("104")); // 'h' as a number
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        let s = Secret::from_slice(b"abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
    }
}
