/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Map layouts shared by the BPF program and the plugin. The Rust side decodes
 * the same layouts in src/counters.rs; change both together.
 */
#ifndef HTTP_STATS_H
#define HTTP_STATS_H

/* Latency histogram: 4 buckets per power of two of nanoseconds, starting at
 * 2^LATENCY_MIN_SHIFT ns (about 1 us). Shorter times fall in bucket 0, longer
 * than the last octave (about 17 s) in the last bucket. */
#define LATENCY_MIN_SHIFT 10
#define LATENCY_SUB_BITS 2
#define LATENCY_BUCKETS 96

/* Processes tracked at once; the least recently active are evicted first. */
#define MAX_PROCESSES 8192
/* (process, status code) counters. */
#define MAX_STATUS_COUNTERS 16384
/* Requests read whose response has not been written yet, per (process, fd). */
#define MAX_PENDING 16384

/* Value of the proc_stats map, keyed by tgid. 424 bytes. */
struct proc_stats {
	__u64 requests;        /* request lines read from sockets */
	__u64 responses;       /* final (non-1xx) status lines written to sockets */
	__u64 latency_count;   /* responses matched with the read of their request */
	__u64 latency_sum_ns;
	__u64 unmatched;       /* responses with no request seen on that fd */
	__u32 latency[LATENCY_BUCKETS];
};

/* Key of the status_counts map (value: __u64 count). */
struct status_key {
	__u32 tgid;
	__u32 code;
};

/* Key of the pending map (value: __u64 ktime of the request's read). */
struct pending_key {
	__u32 tgid;
	__u32 fd;
};

#endif
