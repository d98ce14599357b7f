/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The event the tcptrack program sends to the probe for each TCP state change.
 * The Rust side decodes the same layout in src/sys/tcptrack.rs; change both
 * together. 56 bytes, no padding.
 */
#ifndef TCPTRACK_H
#define TCPTRACK_H

/* Ring buffer size in bytes (a power of two, a multiple of the page size). */
#define TCPTRACK_RING_BYTES (1 << 20)

struct tcptrack_event {
	__u64 skaddr;       /* the socket's kernel address: ties events of one socket */
	__u32 netns;        /* inode of the socket's network namespace */
	__s32 bound_dev_if; /* interface the socket is bound to, 0 for none */
	__u8 oldstate;      /* TCP states as in include/net/tcp_states.h */
	__u8 newstate;
	__u16 family;       /* AF_INET or AF_INET6 */
	__u16 sport;        /* host byte order */
	__u16 dport;
	__u8 saddr[16];     /* IPv6, or IPv4-mapped IPv6 for AF_INET sockets */
	__u8 daddr[16];
};

#endif
