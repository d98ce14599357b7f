//! The BPF maps' values as plain Rust data, and the latency histogram's buckets.
//!
//! The layouts are those of `bpf/http_stats.h`; the map reader hands the raw bytes
//! here, so decoding is tested without a kernel. The loader checks each map's key
//! and value sizes against these, so a layout that drifted fails at load time.

use std::collections::HashMap;

/// `LATENCY_MIN_SHIFT`: bucket 0 starts at 2^10 ns (about 1 µs).
pub const LATENCY_MIN_SHIFT: u32 = 10;
/// `LATENCY_SUB_BITS`: 2^2 = 4 buckets per power of two.
pub const LATENCY_SUB_BITS: u32 = 2;
/// `LATENCY_BUCKETS`.
pub const LATENCY_BUCKETS: usize = 96;

/// Size of `struct proc_stats`: five `u64` counters and the `u32` buckets.
pub const PROC_STATS_SIZE: usize = 5 * 8 + LATENCY_BUCKETS * 4;

/// The raw value of the `proc_stats` map.
pub type RawProcStats = [u8; PROC_STATS_SIZE];

/// One process's counters since the program was loaded (or since its map entry was
/// created again after an eviction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCounters {
    /// Request lines read from sockets.
    pub requests: u64,
    /// Final (non-1xx) status lines written to sockets.
    pub responses: u64,
    /// Responses matched with the read of their request.
    pub latency_count: u64,
    pub latency_sum_ns: u64,
    /// Responses written on a socket with no request seen before them.
    pub unmatched: u64,
    pub latency: Histogram,
}

impl ProcCounters {
    /// Decodes a `struct proc_stats` (native byte order: the kernel wrote it).
    pub fn decode(raw: &RawProcStats) -> Self {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(b)
        };
        let mut latency = Histogram::default();
        for (i, slot) in latency.buckets.iter_mut().enumerate() {
            let at = 40 + i * 4;
            let mut b = [0u8; 4];
            b.copy_from_slice(&raw[at..at + 4]);
            *slot = u64::from(u32::from_ne_bytes(b));
        }
        ProcCounters {
            requests: word(0),
            responses: word(1),
            latency_count: word(2),
            latency_sum_ns: word(3),
            unmatched: word(4),
            latency,
        }
    }

    /// Encodes like the kernel does; for tests of the decoder and of the reports.
    pub fn encode(&self) -> RawProcStats {
        let mut raw = [0u8; PROC_STATS_SIZE];
        let words = [
            self.requests,
            self.responses,
            self.latency_count,
            self.latency_sum_ns,
            self.unmatched,
        ];
        for (i, w) in words.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        for (i, b) in self.latency.buckets.iter().enumerate() {
            // The kernel's buckets are u32 and wrap; so does the encoding.
            let v = *b as u32;
            raw[40 + i * 4..44 + i * 4].copy_from_slice(&v.to_ne_bytes());
        }
        raw
    }
}

/// Request latencies in log-linear buckets, as the BPF program counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; LATENCY_BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; LATENCY_BUCKETS],
        }
    }
}

impl Histogram {
    /// The bucket the BPF program puts `ns` in (the same arithmetic, for tests and
    /// to build histograms by hand).
    pub fn bucket_of(ns: u64) -> usize {
        if ns < 1 << LATENCY_MIN_SHIFT {
            return 0;
        }
        let octave = 63 - ns.leading_zeros();
        let sub = (ns >> (octave - LATENCY_SUB_BITS)) & ((1 << LATENCY_SUB_BITS) - 1);
        let bucket = (((octave - LATENCY_MIN_SHIFT) << LATENCY_SUB_BITS) as u64 + sub) as usize;
        bucket.min(LATENCY_BUCKETS - 1)
    }

    /// The range of nanoseconds bucket `b` counts, `[low, high)`. Bucket 0 also
    /// counts everything shorter and the last bucket everything longer.
    pub fn bucket_range(b: usize) -> (f64, f64) {
        let octave = LATENCY_MIN_SHIFT + (b as u32 >> LATENCY_SUB_BITS);
        let sub = (b as u32 & ((1 << LATENCY_SUB_BITS) - 1)) as f64;
        let width = 2f64.powi((octave - LATENCY_SUB_BITS) as i32);
        let low = 2f64.powi(octave as i32) + sub * width;
        (low, low + width)
    }

    pub fn record(&mut self, ns: u64) {
        self.buckets[Self::bucket_of(ns)] += 1;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The counts added since `earlier`. Each bucket is a wrapping `u32` in the
    /// kernel, so the difference is taken modulo 2^32.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = Histogram::default();
        for (i, slot) in out.buckets.iter_mut().enumerate() {
            *slot = u64::from((self.buckets[i] as u32).wrapping_sub(earlier.buckets[i] as u32));
        }
        out
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// The `q` quantile (0 < q ≤ 1) in nanoseconds, interpolated linearly inside its
    /// bucket; `None` with no samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (b, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (below + n) as f64 >= rank {
                let (low, high) = Self::bucket_range(b);
                let into = (rank - below as f64) / n as f64;
                return Some(low + (high - low) * into);
            }
            below += n;
        }
        let (_, high) = Self::bucket_range(LATENCY_BUCKETS - 1);
        Some(high)
    }
}

/// All counters read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// By tgid.
    pub processes: HashMap<u32, ProcCounters>,
    /// By (tgid, status code): status lines written, 1xx included.
    pub statuses: HashMap<(u32, u16), u64>,
}

impl Snapshot {
    /// Adds a `status_counts` entry (key `{tgid, code}` as two `u32`).
    pub fn add_status(&mut self, key: [u32; 2], count: u64) {
        let [tgid, code] = key;
        if let Ok(code) = u16::try_from(code) {
            self.statuses.insert((tgid, code), count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stats_round_trip_through_the_kernels_layout() {
        let mut c = ProcCounters {
            requests: 7,
            responses: 6,
            latency_count: 5,
            latency_sum_ns: 123_456,
            unmatched: 1,
            ..Default::default()
        };
        c.latency.buckets[0] = 2;
        c.latency.buckets[95] = 3;
        let raw = c.encode();
        assert_eq!(raw.len(), 424, "struct proc_stats is 424 bytes");
        assert_eq!(ProcCounters::decode(&raw), c);
        assert_eq!(&raw[0..8], &7u64.to_ne_bytes());
        assert_eq!(&raw[40..44], &2u32.to_ne_bytes());
        assert_eq!(&raw[420..424], &3u32.to_ne_bytes());
    }

    #[test]
    fn buckets_are_four_per_power_of_two_from_one_microsecond() {
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(1023), 0);
        assert_eq!(Histogram::bucket_of(1024), 0);
        assert_eq!(Histogram::bucket_of(1280), 1);
        assert_eq!(Histogram::bucket_of(2047), 3);
        assert_eq!(Histogram::bucket_of(2048), 4);
        assert_eq!(Histogram::bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
        for ns in [1024u64, 1500, 4096, 1_000_000, 3_000_000_000] {
            let (low, high) = Histogram::bucket_range(Histogram::bucket_of(ns));
            assert!(
                low <= ns as f64 && (ns as f64) < high,
                "{ns} in [{low}, {high})"
            );
        }
        // Adjacent buckets tile the axis.
        for b in 0..LATENCY_BUCKETS - 1 {
            assert_eq!(
                Histogram::bucket_range(b).1,
                Histogram::bucket_range(b + 1).0
            );
        }
    }

    #[test]
    fn quantiles_fall_in_the_bucket_of_the_true_value() {
        let mut h = Histogram::default();
        // 98 fast requests near 200 µs, 2 slow ones near 50 ms.
        for i in 0..98u64 {
            h.record(200_000 + i * 100);
        }
        h.record(50_000_000);
        h.record(51_000_000);
        let p50 = h.quantile(0.5).expect("samples");
        let p99 = h.quantile(0.99).expect("samples");
        // A bucket is at most 25% wide.
        assert!((150_000.0..260_000.0).contains(&p50), "p50 {p50}");
        assert!((40_000_000.0..70_000_000.0).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn histogram_differences_wrap_like_the_kernels_u32() {
        let mut before = Histogram::default();
        before.buckets[3] = u64::from(u32::MAX);
        before.buckets[4] = 10;
        let mut after = before.clone();
        after.buckets[3] = 1; // wrapped: two more
        after.buckets[4] = 12;
        let d = after.since(&before);
        assert_eq!((d.buckets[3], d.buckets[4]), (2, 2));
        assert_eq!(before.since(&before).count(), 0);
    }

    #[test]
    fn status_keys_outside_u16_are_ignored() {
        let mut s = Snapshot::default();
        s.add_status([42, 404], 3);
        s.add_status([42, 70_000], 1);
        assert_eq!(s.statuses.len(), 1);
        assert_eq!(s.statuses[&(42, 404)], 3);
    }
}
