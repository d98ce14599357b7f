/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The few BPF definitions the tcptrack program needs, written for Rescope so that
 * building the object needs only clang: integer types, map and section
 * annotations, the helpers it calls (by their stable UAPI numbers) and the kernel
 * structures it reads, declared with only the fields it uses. Every structure
 * carries preserve_access_index, so each field access becomes a CO-RE relocation
 * that the loader resolves against the running kernel's BTF.
 */
#ifndef TCPTRACK_BPF_H
#define TCPTRACK_BPF_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))

/* BTF-defined maps: the loader reads these from the .maps section's BTF. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* From include/uapi/linux/bpf.h. */
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_RINGBUF 27

/* Helper functions, called by number (enum bpf_func_id). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;

/* Reads one field of a kernel structure into dst, at the running kernel's offset. */
#define CORE_READ_INTO(dst, field_ref)                                          \
	bpf_probe_read_kernel(&(dst), sizeof(dst),                              \
			      __builtin_preserve_access_index(&(field_ref)))

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/* Kernel structures, only the fields read. Names must match the kernel's. */
struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	possible_net_t skc_net;
	int skc_bound_dev_if;
};

struct sock {
	struct sock_common __sk_common;
};

/* The tracepoint's context, as the kernel's BTF describes it. */
struct trace_event_raw_inet_sock_set_state {
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

#pragma clang attribute pop

#define IPPROTO_TCP 6
#define TCP_SYN_RECV 3
#define TCP_LISTEN 10

#endif
