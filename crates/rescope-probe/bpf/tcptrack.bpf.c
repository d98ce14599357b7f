// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Rescope tcptrack: tells the probe which TCP sockets changed state, so that it
 * updates its table of a network namespace's sockets from the changes instead of
 * dumping the whole table again every tick.
 *
 * One program on the sock:inet_sock_set_state tracepoint, which the kernel fires
 * for every TCP state change of every socket in every namespace. Each change is
 * sent as one fixed-size event through a ring buffer that the probe drains once
 * per tick (it does not poll the buffer's file descriptor, so no event wakes it).
 * When the buffer is full the event is dropped and counted in `lost`: the probe
 * then dumps everything again, as it does without this program.
 */
#include "tcptrack_bpf.h"
#include "tcptrack.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TCPTRACK_RING_BYTES);
} events SEC(".maps");

/* Events dropped because the ring buffer was full; index 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int tcptrack_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u16 protocol = 0;
	int oldstate = 0, newstate = 0;

	CORE_READ_INTO(protocol, ctx->protocol);
	if (protocol != IPPROTO_TCP)
		return 0;
	CORE_READ_INTO(oldstate, ctx->oldstate);
	CORE_READ_INTO(newstate, ctx->newstate);
	/*
	 * A connection request becoming a socket: the new socket is a copy of the
	 * listener and still carries the listener's addresses. Its next change
	 * (to ESTABLISHED) has its own.
	 */
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)
		return 0;

	struct tcptrack_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&lost, &zero);
		if (count)
			__sync_fetch_and_add(count, 1);
		return 0;
	}
	const void *skaddr = 0;
	CORE_READ_INTO(skaddr, ctx->skaddr);
	struct sock *sk = (struct sock *)skaddr;
	struct net *net = 0;
	__u32 netns = 0;
	int dev = 0;
	CORE_READ_INTO(net, sk->__sk_common.skc_net.net);
	if (net)
		CORE_READ_INTO(netns, net->ns.inum);
	CORE_READ_INTO(dev, sk->__sk_common.skc_bound_dev_if);

	e->skaddr = (__u64)skaddr;
	e->netns = netns;
	e->bound_dev_if = dev;
	e->oldstate = (__u8)oldstate;
	e->newstate = (__u8)newstate;
	CORE_READ_INTO(e->family, ctx->family);
	CORE_READ_INTO(e->sport, ctx->sport);
	CORE_READ_INTO(e->dport, ctx->dport);
	CORE_READ_INTO(e->saddr, ctx->saddr_v6);
	CORE_READ_INTO(e->daddr, ctx->daddr_v6);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
