//! A fast, randomly seeded hasher for maps keyed by node IDs.
//!
//! The app's indexes (which inputs make up each rendered node, which nodes point at
//! which) hash node IDs millions of times a second at fleet scale; SipHash, the
//! standard library's default, spends most of that time in its rounds. This hasher
//! folds each sixteen bytes into the state with one 64×64→128-bit multiply, seeded once
//! per process from the standard library's random keys, so colliding IDs cannot be
//! worked out in advance without the seed.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = HashMap<K, V, FastState>;
/// A `HashSet` with [`FastState`].
pub type FastSet<K> = HashSet<K, FastState>;

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
}

/// Builds [`FastHasher`]s with the process's seed.
#[derive(Debug, Clone, Copy)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        FastState(seed())
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, w: u64) {
        self.0 = fold(self.0 ^ w ^ K0, K1);
    }
}

/// The eight bytes at `at`, little-endian (the caller checks the length).
#[inline]
fn read8(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The four bytes at `at`, little-endian.
#[inline]
fn read4(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

impl Hasher for FastHasher {
    /// Sixteen bytes per multiply; the last (or only) sixteen are read as two words
    /// that may overlap, with the length folded in, so no byte is left out and strings
    /// that differ only in length hash apart. Node IDs are mostly 10–60 bytes: one to
    /// four multiplies each.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let mut s = self.0;
        let (a, b) = if n > 16 {
            let mut at = 0;
            while n - at > 16 {
                s = fold(read8(bytes, at) ^ s ^ K0, read8(bytes, at + 8) ^ K1);
                at += 16;
            }
            (read8(bytes, n - 16), read8(bytes, n - 8))
        } else if n >= 8 {
            (read8(bytes, 0), read8(bytes, n - 8))
        } else if n >= 4 {
            (read4(bytes, 0), read4(bytes, n - 4))
        } else if n > 0 {
            let w =
                u64::from(bytes[0]) << 16 | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]);
            (w, 0)
        } else {
            (0, 0)
        };
        self.0 = fold(a ^ s ^ K0, b ^ K1 ^ n as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i) | 0x100);
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        fold(self.0, K0 ^ K1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_hash_equal_and_near_ones_differ() {
        let s = FastState::default();
        let h = |v: &str| s.hash_one(v);
        assert_eq!(h("node-001;4242"), h("node-001;4242"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            assert!(seen.insert(h(&format!("node-001;{i}"))), "collision at {i}");
        }
        assert_ne!(h(""), h("\0"));
        assert_ne!(h("abcdefgh"), h("abcdefgh\0"));
    }

    #[test]
    fn every_byte_and_the_length_count() {
        let s = FastState::default();
        let h = |v: &[u8]| s.hash_one(v);
        let mut lengths = std::collections::HashSet::new();
        for n in 0..=70usize {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(lengths.insert(h(&vec![b'x'; n])), "length {n}");
            for at in 0..n {
                let mut v = base.clone();
                v[at] ^= 0x20;
                assert_ne!(h(&base), h(&v), "byte {at} of {n}");
            }
        }
    }
}
