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

static __always_inline void stash_put(__u64 call, __u64 func, void *skb, void *arg, __u64 ctx_id)
{
	struct stash_key k = { .tid = bpf_get_current_pid_tgid(), .call = call };
	struct stash_value v = { .func = func, .skb = (__u64)skb, .arg = (__u64)arg, .ctx = ctx_id };

	bpf_map_update_elem(&stash, &k, &v, BPF_ANY);
}

static __always_inline bool stash_take(__u64 call, struct stash_value *out)
{
	struct stash_key k = { .tid = bpf_get_current_pid_tgid(), .call = call };
	struct stash_value *v = bpf_map_lookup_elem(&stash, &k);

	if (!v)
		return false;
	*out = *v;
	bpf_map_delete_elem(&stash, &k);
	return true;
}

#endif /* SKBTRAIL_STASH_BPF_H */
