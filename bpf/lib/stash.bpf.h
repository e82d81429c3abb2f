/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per call of a traced function, what its entry program saw (the skb, one
 * more argument, the packet context), for the return program of the same
 * call: the call may have freed the skb or changed what it points to.
 *
 * A call is keyed per thread by what both sides can see. fentry/fexit and
 * kprobes with attach cookies (5.15+) know the function: the key is its
 * address. Kernels without cookies (5.10) give a kretprobe no clue to its
 * function, so the key is the entry's stack pointer: the return leaves it
 * one return address (8 bytes on x86-64) higher. Either way the value
 * carries the function.
 *
 * A tail call (ip_rcv ending in `jmp ip_rcv_finish`) enters the next
 * function at the same stack pointer, and their returns then come one after
 * the other, the last entered first: by stack pointer, a call is a LIFO of
 * frames. Every entry with a return probe pushes one, recorded or not, so
 * each return pops its own.
 */
#ifndef SKBTRAIL_STASH_BPF_H
#define SKBTRAIL_STASH_BPF_H

struct stash_key {
	__u64 tid;
	__u64 call;
};

struct stash_value {
	__u64 func;
	__u64 skb;
	__u64 arg; /* e.g. nft_do_chain's chain */
	__u64 ctx; /* the entry's packet context (0: not recorded) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stash_key);
	__type(value, struct stash_value);
} stash SEC(".maps");

/* The function a kprobe at its entry fires for. Without attach cookies the
 * instruction pointer is one byte past the function's address on x86 (the
 * int3 the kprobe replaced, or ftrace's emulation of it). CFG.func_by_ip
 * is read-only: the verifier drops the branch this kernel cannot run (the
 * cookie helper does not exist before 5.15). */
static __always_inline __u64 kprobe_func(struct pt_regs *ctx)
{
	return CFG.func_by_ip ? PT_REGS_IP(ctx) - 1 : bpf_get_attach_cookie(ctx);
}

/* The stash key of the call a kprobe is entering... */
static __always_inline __u64 kprobe_call(struct pt_regs *ctx, __u64 func)
{
	return CFG.func_by_ip ? PT_REGS_SP(ctx) : func;
}

/* ...and of the call a kretprobe returns from. */
static __always_inline __u64 kretprobe_call(struct pt_regs *ctx)
{
	return CFG.func_by_ip ? PT_REGS_SP(ctx) - 8 : bpf_get_attach_cookie(ctx);
}

#define CALL_FRAMES 8 /* tail calls in a row at one stack pointer (ip_rcv's chain has 4) */

struct call_frames {
	__u32 n;
	__u32 pad;
	struct stash_value v[CALL_FRAMES];
};

/* Kernels without attach cookies: (thread, stack pointer) → its frames. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stash_key);
	__type(value, struct call_frames);
} call_frames SEC(".maps");

/* A new key's value is built here: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct call_frames);
} call_frames_new SEC(".maps");

static __always_inline void frames_push(const struct stash_key *k, const struct stash_value *v)
{
	struct call_frames *f = bpf_map_lookup_elem(&call_frames, k);
	__u32 zero = 0;

	if (f) {
		__u32 n = f->n;

		if (n < CALL_FRAMES) {
			f->v[n & (CALL_FRAMES - 1)] = *v;
			f->n = n + 1;
		}
		return;
	}
	f = bpf_map_lookup_elem(&call_frames_new, &zero);
	if (!f)
		return;
	f->n = 1;
	f->v[0] = *v;
	bpf_map_update_elem(&call_frames, k, f, BPF_ANY);
}

static __always_inline bool frames_pop(const struct stash_key *k, struct stash_value *out)
{
	struct call_frames *f = bpf_map_lookup_elem(&call_frames, k);
	__u32 n;

	if (!f || !f->n)
		return false;
	n = f->n - 1;
	*out = f->v[n & (CALL_FRAMES - 1)];
	f->n = n;
	if (!n)
		bpf_map_delete_elem(&call_frames, k);
	return true;
}

/* Whether an entry that recorded nothing still stashes: where returns pop frames. */
#define STASH_UNRECORDED CFG.func_by_ip

static __always_inline void stash_put(__u64 call, __u64 func, void *skb, void *arg, __u64 ctx_id)
{
	struct stash_key k = { .tid = bpf_get_current_pid_tgid(), .call = call };
	struct stash_value v = { .func = func, .skb = (__u64)skb, .arg = (__u64)arg, .ctx = ctx_id };

	if (CFG.func_by_ip)
		frames_push(&k, &v);
	else
		bpf_map_update_elem(&stash, &k, &v, BPF_ANY);
}

static __always_inline bool stash_take(__u64 call, struct stash_value *out)
{
	struct stash_key k = { .tid = bpf_get_current_pid_tgid(), .call = call };
	struct stash_value *v;

	if (CFG.func_by_ip)
		return frames_pop(&k, out);
	v = bpf_map_lookup_elem(&stash, &k);
	if (!v)
		return false;
	*out = *v;
	bpf_map_delete_elem(&stash, &k);
	return true;
}

#endif /* SKBTRAIL_STASH_BPF_H */
