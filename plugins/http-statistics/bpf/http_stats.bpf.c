// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Rescope http-statistics: counts HTTP/1.x requests read and responses written by
 * each process, by status code, and the time between a request's read and its
 * response's write on the same socket.
 *
 * Only syscall exit tracepoints are used: read, recvfrom, readv and recvmsg
 * for requests; write, sendto, writev and sendmsg for responses (of vectored
 * I/O, the first buffer). At exit the syscall's arguments are
 * still in the task's saved user registers, so no entry program (and no
 * per-thread map between entry and exit) is needed. Every read and write on the
 * machine runs these programs, so the common case leaves early: a short
 * transfer costs one comparison, a longer one a 16-byte copy from user memory
 * and a prefix test. Only a transfer that looks like HTTP pays for the socket
 * check and the map updates.
 *
 * Counters live in LRU hash maps that the plugin reads once per interval; there
 * is no per-event ring buffer (its wakeups are expensive) and nothing is sent
 * to user space per request.
 */
#include "rescope_bpf.h"
#include "http_stats.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The plugin's own process: its HTTP on the plugin socket is not counted. */
const volatile __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_PROCESSES);
	__type(key, __u32);
	__type(value, struct proc_stats);
} proc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_STATUS_COUNTERS);
	__type(key, struct status_key);
	__type(value, __u64);
} status_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_PENDING);
	__type(key, struct pending_key);
	__type(value, __u64);
} pending SEC(".maps");

/* One zeroed value to insert new processes from (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc_stats);
} empty_stats SEC(".maps");

#define HEAD_LEN 16
/* "GET /" is the shortest request start we accept. */
#define MIN_REQUEST_LEN 5
/* "HTTP/1.1 200" */
#define MIN_RESPONSE_LEN 12

/*
 * The first 16 bytes are compared as two little-endian 64-bit words with masks,
 * not byte by byte: clang turns byte-wise tests on a stack buffer into pointer
 * arithmetic that the verifier rejects, and word compares are cheaper anyway.
 */
#define B(c, i) ((__u64)(__u8)(c) << (8 * (i)))
#define WORD4(a, b, c, d) (B(a, 0) | B(b, 1) | B(c, 2) | B(d, 3))
#define WORD8(a, b, c, d, e, f, g, h)                                           \
	(WORD4(a, b, c, d) | B(e, 4) | B(f, 5) | B(g, 6) | B(h, 7))
#define MASK(n) ((n) == 8 ? ~0ULL : ((1ULL << (8 * (n))) - 1))
#define STARTS(w, n, word) (((w) & MASK(n)) == (word))

/* A request line starts with a method and a space. */
static __always_inline int is_request(__u64 w)
{
	return STARTS(w, 4, WORD4('G', 'E', 'T', ' ')) ||
	       STARTS(w, 5, WORD8('P', 'O', 'S', 'T', ' ', 0, 0, 0)) ||
	       STARTS(w, 4, WORD4('P', 'U', 'T', ' ')) ||
	       STARTS(w, 5, WORD8('H', 'E', 'A', 'D', ' ', 0, 0, 0)) ||
	       STARTS(w, 7, WORD8('D', 'E', 'L', 'E', 'T', 'E', ' ', 0)) ||
	       STARTS(w, 6, WORD8('P', 'A', 'T', 'C', 'H', ' ', 0, 0)) ||
	       STARTS(w, 8, WORD8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' ')) ||
	       STARTS(w, 8, WORD8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' ')) ||
	       STARTS(w, 6, WORD8('T', 'R', 'A', 'C', 'E', ' ', 0, 0));
}

static __always_inline __u32 digit(__u64 w, int i)
{
	return (__u32)((w >> (8 * i)) & 0xff) - '0';
}

/* The status code of a status line "HTTP/1.x NNN", or 0 if it is not one. */
static __always_inline __u32 response_status(__u64 w0, __u64 w1)
{
	__u32 d0, d1, d2;

	if (w0 != WORD8('H', 'T', 'T', 'P', '/', '1', '.', '1') &&
	    w0 != WORD8('H', 'T', 'T', 'P', '/', '1', '.', '0'))
		return 0;
	if ((w1 & 0xff) != ' ')
		return 0;
	/* Unsigned: a byte below '0' wraps to a large value. */
	d0 = digit(w1, 1);
	d1 = digit(w1, 2);
	d2 = digit(w1, 3);
	if (d0 < 1 || d0 > 5 || d1 > 9 || d2 > 9)
		return 0;
	return d0 * 100 + d1 * 10 + d2;
}

/* Whether the current process's descriptor fd is a socket (TCP, UDP or Unix). */
static __always_inline int fd_is_socket(__u32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = 0;
	struct fdtable *fdt = 0;
	struct file **fds = 0;
	struct file *file = 0;
	struct inode *inode = 0;
	unsigned int max_fds = 0;
	unsigned short mode = 0;

	if (CORE_READ_INTO(files, task->files) || !files)
		return 0;
	if (CORE_READ_INTO(fdt, files->fdt) || !fdt)
		return 0;
	if (CORE_READ_INTO(max_fds, fdt->max_fds) || fd >= max_fds)
		return 0;
	if (CORE_READ_INTO(fds, fdt->fd) || !fds)
		return 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	if (CORE_READ_INTO(inode, file->f_inode) || !inode)
		return 0;
	if (CORE_READ_INTO(mode, inode->i_mode))
		return 0;
	return (mode & S_IFMT) == S_IFSOCK;
}

/*
 * The syscall's first two arguments (fd, buffer), from the saved user registers.
 * bpf_task_pt_regs gives a trusted BTF pointer, so the verifier lets the fields
 * be loaded directly (as CO-RE-relocated loads) without a probe-read helper.
 */
static __always_inline int syscall_fd_buf(__u32 *fd, const void **buf)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	unsigned long arg2 = SYSCALL_ARG2(regs);

	if (!arg2)
		return -1;
	*fd = (__u32)SYSCALL_ARG1(regs);
	*buf = (const void *)arg2;
	return 0;
}

/* How a syscall names the memory it transferred. */
enum buffer_kind {
	PLAIN,  /* read, write, recvfrom, sendto: a buffer */
	IOVEC,  /* readv, writev: an array of struct iovec */
	MSGHDR, /* recvmsg, sendmsg: a struct msghdr holding such an array */
};

/* struct iovec as user space lays it out on 64-bit. */
struct user_iovec {
	const void *base;
	__u64 len;
};

/* Offset of msg_iov in a 64-bit struct msghdr (after msg_name and msg_namelen). */
#define MSGHDR_IOV_OFFSET 16

/*
 * Copies the first bytes the syscall transferred (at most 16; the rest stays 0).
 * For vectored I/O only the first buffer is looked at. Returns non-zero when
 * fewer than min_len bytes of it were transferred or it cannot be read.
 */
static __always_inline int read_head(__u64 head[2], enum buffer_kind kind, const void *arg,
				     __s64 ret, __s64 min_len)
{
	const void *buf = arg;
	__s64 len = ret;
	__u32 n;

	if (kind == MSGHDR) {
		if (bpf_probe_read_user(&arg, sizeof(arg), (const char *)arg + MSGHDR_IOV_OFFSET) ||
		    !arg)
			return -1;
	}
	if (kind != PLAIN) {
		struct user_iovec iov;

		if (bpf_probe_read_user(&iov, sizeof(iov), arg))
			return -1;
		buf = iov.base;
		if ((__s64)iov.len < len)
			len = (__s64)iov.len;
	}
	if (len < min_len)
		return -1;
	n = len > HEAD_LEN ? HEAD_LEN : (__u32)len;
	return bpf_probe_read_user(head, n, buf);
}

static __always_inline struct proc_stats *stats_of(__u32 tgid)
{
	struct proc_stats *s = bpf_map_lookup_elem(&proc_stats, &tgid);
	__u32 zero = 0;
	struct proc_stats *empty;

	if (s)
		return s;
	empty = bpf_map_lookup_elem(&empty_stats, &zero);
	if (!empty)
		return 0;
	/* Another CPU may insert it first; either way it exists afterwards. */
	bpf_map_update_elem(&proc_stats, &tgid, empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(&proc_stats, &tgid);
}

static __always_inline void count_status(__u32 tgid, __u32 code)
{
	struct status_key key = { .tgid = tgid, .code = code };
	__u64 one = 1;
	__u64 *count = bpf_map_lookup_elem(&status_counts, &key);

	if (count) {
		__sync_fetch_and_add(count, 1);
		return;
	}
	if (bpf_map_update_elem(&status_counts, &key, &one, BPF_NOEXIST) == 0)
		return;
	count = bpf_map_lookup_elem(&status_counts, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

static __always_inline __u32 latency_bucket(__u64 ns)
{
	__u32 octave, sub, bucket;

	if (ns < (1ULL << LATENCY_MIN_SHIFT))
		return 0;
	octave = log2_u64(ns);
	sub = (ns >> (octave - LATENCY_SUB_BITS)) & ((1 << LATENCY_SUB_BITS) - 1);
	bucket = ((octave - LATENCY_MIN_SHIFT) << LATENCY_SUB_BITS) + sub;
	/* The verifier needs the index visibly bounded. */
	if (bucket >= LATENCY_BUCKETS)
		bucket = LATENCY_BUCKETS - 1;
	return bucket;
}

/* Exit of a receiving syscall: a request line read from a socket. */
static __always_inline int on_receive(struct syscall_exit_ctx *ctx, enum buffer_kind kind)
{
	__s64 ret = ctx->ret;
	__u32 tgid, fd = 0;
	const void *buf = 0;
	__u64 head[2] = {};
	struct proc_stats *s;
	struct pending_key key;
	__u64 now;

	if (ret < MIN_REQUEST_LEN)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == self_tgid)
		return 0;
	if (syscall_fd_buf(&fd, &buf) || read_head(head, kind, buf, ret, MIN_REQUEST_LEN))
		return 0;
	if (!is_request(head[0]) || !fd_is_socket(fd))
		return 0;
	s = stats_of(tgid);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->requests, 1);
	now = bpf_ktime_get_ns();
	key.tgid = tgid;
	key.fd = fd;
	bpf_map_update_elem(&pending, &key, &now, BPF_ANY);
	return 0;
}

/* Exit of a sending syscall: a status line written to a socket. */
static __always_inline int on_send(struct syscall_exit_ctx *ctx, enum buffer_kind kind)
{
	__s64 ret = ctx->ret;
	__u32 tgid, fd = 0, code;
	const void *buf = 0;
	__u64 head[2] = {};
	struct proc_stats *s;
	struct pending_key key;
	__u64 *started, now, took;
	__u32 bucket;

	if (ret < MIN_RESPONSE_LEN)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == self_tgid)
		return 0;
	if (syscall_fd_buf(&fd, &buf) || read_head(head, kind, buf, ret, MIN_RESPONSE_LEN))
		return 0;
	code = response_status(head[0], head[1]);
	if (!code || !fd_is_socket(fd))
		return 0;
	/* Made first, so every process with status counts has an entry here. */
	s = stats_of(tgid);
	if (!s)
		return 0;
	count_status(tgid, code);
	/* 1xx (100 Continue, 101 Switching Protocols) come before the real answer. */
	if (code < 200)
		return 0;
	__sync_fetch_and_add(&s->responses, 1);
	key.tgid = tgid;
	key.fd = fd;
	started = bpf_map_lookup_elem(&pending, &key);
	if (!started) {
		__sync_fetch_and_add(&s->unmatched, 1);
		return 0;
	}
	now = bpf_ktime_get_ns();
	took = now > *started ? now - *started : 0;
	bpf_map_delete_elem(&pending, &key);
	bucket = latency_bucket(took);
	__sync_fetch_and_add(&s->latency_count, 1);
	__sync_fetch_and_add(&s->latency_sum_ns, took);
	__sync_fetch_and_add(&s->latency[bucket], 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int http_exit_read(struct syscall_exit_ctx *ctx)
{
	return on_receive(ctx, PLAIN);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int http_exit_recvfrom(struct syscall_exit_ctx *ctx)
{
	return on_receive(ctx, PLAIN);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int http_exit_readv(struct syscall_exit_ctx *ctx)
{
	return on_receive(ctx, IOVEC);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int http_exit_recvmsg(struct syscall_exit_ctx *ctx)
{
	return on_receive(ctx, MSGHDR);
}

SEC("tracepoint/syscalls/sys_exit_write")
int http_exit_write(struct syscall_exit_ctx *ctx)
{
	return on_send(ctx, PLAIN);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int http_exit_sendto(struct syscall_exit_ctx *ctx)
{
	return on_send(ctx, PLAIN);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int http_exit_writev(struct syscall_exit_ctx *ctx)
{
	return on_send(ctx, IOVEC);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int http_exit_sendmsg(struct syscall_exit_ctx *ctx)
{
	return on_send(ctx, MSGHDR);
}
