/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The few BPF definitions the http-statistics program needs, written for Rescope
 * so that building the object needs only clang: integer types, map and section
 * annotations, the helper calls it makes (by their stable UAPI numbers) and the
 * kernel structures it reads, declared with only the fields it uses. Those
 * structures carry preserve_access_index, so clang records every field access as
 * a CO-RE relocation and the loader fixes the offsets from the running kernel's
 * BTF: the object does not depend on one kernel's layout.
 */
#ifndef RESCOPE_BPF_H
#define RESCOPE_BPF_H

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
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_ANY 0
#define BPF_NOEXIST 1

/* Helper functions, called by number (enum bpf_func_id). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;
static long (*bpf_task_pt_regs)(struct task_struct *task) = (void *)175;

/* Reads one field of a kernel structure into dst, at the running kernel's offset. */
#define CORE_READ_INTO(dst, field_ref)                                          \
	bpf_probe_read_kernel(&(dst), sizeof(dst),                              \
			      __builtin_preserve_access_index(&(field_ref)))

#define CO_RE __attribute__((preserve_access_index))

/* Kernel structures, only the fields read. Names must match the kernel's. */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di; /* first syscall argument */
	unsigned long si; /* second syscall argument */
} CO_RE;
#define SYSCALL_ARG1(regs) ((regs)->di)
#define SYSCALL_ARG2(regs) ((regs)->si)
#else
#error "http-statistics reads syscall arguments from x86-64 registers; build with -D__TARGET_ARCH_x86"
#endif

struct inode {
	unsigned short i_mode;
} CO_RE;

struct file {
	struct inode *f_inode;
} CO_RE;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} CO_RE;

struct files_struct {
	struct fdtable *fdt;
} CO_RE;

struct task_struct {
	struct files_struct *files;
} CO_RE;

/* File type bits of i_mode (a macro in the kernel, so not in BTF). */
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * The context of a syscalls:sys_exit_* tracepoint, as its format file gives it:
 * 8 bytes of common fields, the syscall number, then the return value at 16.
 */
struct syscall_exit_ctx {
	__u64 common;
	__s64 syscall_nr;
	__s64 ret;
};

#endif
