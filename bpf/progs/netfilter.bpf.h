/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Netfilter hooks with their details: nf_hook_slow (family and hook of the
 * hook being run, with --hooks the functions registered on it, and the
 * verdict at return) and nft_do_chain (the nftables table and chain, full
 * names, and the chain's verdict). Each as kprobe/kretprobe and
 * fentry/fexit; TypeScript picks what the kernel supports.
 */
#ifndef SKBTRAIL_NETFILTER_BPF_H
#define SKBTRAIL_NETFILTER_BPF_H

struct nf_details {
	const struct nf_hook_state *state;
	struct nft_chain *chain;
	const struct nf_hook_entries *entries; /* nf_hook_slow's hook functions */
	__u32 start;                           /* the first entry this call runs */
};

static __always_inline void nf_fill(struct nf_info *nf, const struct nf_details *d)
{
	/* Kernel pointers copied out first: a CO-RE access through d-> would be
	 * relocated against struct nf_details, which no kernel has. */
	const struct nf_hook_state *state = d->state;
	struct nft_chain *chain = d->chain;
	const struct nf_hook_entries *entries = d->entries;

	if (state) {
		nf->family = BPF_CORE_READ(state, pf);
		nf->hook = BPF_CORE_READ(state, hook);
	}
	if (chain) {
		struct nft_table *table = BPF_CORE_READ(chain, table);

		bpf_probe_read_kernel_str(nf->chain, sizeof(nf->chain), BPF_CORE_READ(chain, name));
		bpf_probe_read_kernel_str(nf->table, sizeof(nf->table), BPF_CORE_READ(table, name));
		nf->table_family = BPF_CORE_READ_BITFIELD_PROBED(table, family);
	}
	if (entries && CFG.nf_hooks) {
		__u16 count = BPF_CORE_READ(entries, num_hook_entries);
		/* struct nf_hook_entry is two pointers on every kernel */
		const void **first = (const void **)__builtin_preserve_access_index(&entries->hooks[0]);

		nf->hook_count = count;
		nf->hook_start = d->start;
#pragma unroll
		for (int i = 0; i < 8; i++)
			if (i < count)
				bpf_probe_read_kernel(&nf->hook_funcs[i], sizeof(__u64), &first[2 * i]);
	}
}

/* Returns the packet context when recorded (see on_skb). */
static __always_inline __u64 nf_hit(void *ctx, __u64 func, struct sk_buff *skb, __u8 phase, __s64 ret,
				    const struct nf_details *d, __u64 ctx_hint)
{
	struct hit h = { .func = func, .phase = phase, .retval = ret, .ctx_hint = ctx_hint };
	struct nf_event *e = scratch_event();

	if (!e)
		return 0;
	__builtin_memset(&e->nf, 0, sizeof(e->nf));
	nf_fill(&e->nf, d);
	return on_skb(ctx, skb, &h, true);
}

/* nf_hook_slow's verdict is always wanted; a drop frees the skb inside the
 * call, so the return finds its packet through the stash (see functions.bpf.h). */
static __always_inline int nf_hook_entry(void *ctx, __u64 func, __u64 call, struct sk_buff *skb, const struct nf_details *d)
{
	__u64 recorded = nf_hit(ctx, func, skb, PHASE_ENTRY, 0, d, 0);

	if (recorded || STASH_UNRECORDED)
		stash_put(call, func, skb, (void *)d->state, recorded);
	return 0;
}

static __always_inline int nf_hook_return(void *ctx, __u64 call, __s64 ret)
{
	struct stash_value v;
	struct nf_details d = {};

	if (!stash_take(call, &v) || !v.ctx)
		return 0;
	d.state = (void *)v.arg;
	nf_hit(ctx, v.func, (void *)v.skb, PHASE_RETURN, ret, &d, v.ctx);
	return 0;
}

/* int nf_hook_slow(struct sk_buff *skb, struct nf_hook_state *state,
 *                  const struct nf_hook_entries *e, unsigned int s) */
SEC("kprobe/nf_hook_slow")
int kprobe_nf_hook_slow(struct pt_regs *ctx)
{
	struct nf_details d = { (void *)PT_REGS_PARM2(ctx), 0, (void *)PT_REGS_PARM3(ctx), PT_REGS_PARM4(ctx) };
	__u64 func = kprobe_func(ctx);

	return nf_hook_entry(ctx, func, kprobe_call(ctx, func), (void *)PT_REGS_PARM1(ctx), &d);
}

SEC("kretprobe/nf_hook_slow")
int kretprobe_nf_hook_slow(struct pt_regs *ctx)
{
	return nf_hook_return(ctx, kretprobe_call(ctx), (int)PT_REGS_RC(ctx));
}

SEC("fentry/nf_hook_slow")
int fentry_nf_hook_slow(__u64 *ctx)
{
	struct nf_details d = { (void *)ctx[1], 0, (void *)ctx[2], (__u32)ctx[3] };
	__u64 func = bpf_get_func_ip(ctx);

	return nf_hook_entry(ctx, func, func, (void *)ctx[0], &d);
}

SEC("fexit/nf_hook_slow")
int fexit_nf_hook_slow(__u64 *ctx)
{
	return nf_hook_return(ctx, bpf_get_func_ip(ctx), (int)fexit_ret(ctx));
}

/* unsigned int nft_do_chain(struct nft_pktinfo *pkt, void *priv): priv is the chain */
static __always_inline __u64 nft_hit(void *ctx, __u64 func, struct nft_pktinfo *pkt, void *chain, __u8 phase, __s64 ret,
				     __u64 ctx_hint)
{
	struct nf_details d = { BPF_CORE_READ(pkt, state), chain };

	return nf_hit(ctx, func, BPF_CORE_READ(pkt, skb), phase, ret, &d, ctx_hint);
}

SEC("kprobe/nft_do_chain")
int kprobe_nft_do_chain(struct pt_regs *ctx)
{
	__u64 func = kprobe_func(ctx);
	struct nft_pktinfo *pkt = (void *)PT_REGS_PARM1(ctx);
	void *chain = (void *)PT_REGS_PARM2(ctx);
	__u64 recorded = nft_hit(ctx, func, pkt, chain, PHASE_ENTRY, 0, 0);

	/* The pktinfo lives on the caller's stack: still valid at return. Newer
	 * kernels free a dropped skb inside nft_do_chain: the context comes too. */
	if (recorded || STASH_UNRECORDED)
		stash_put(kprobe_call(ctx, func), func, pkt, chain, recorded);
	return 0;
}

SEC("kretprobe/nft_do_chain")
int kretprobe_nft_do_chain(struct pt_regs *ctx)
{
	struct stash_value v;

	if (!stash_take(kretprobe_call(ctx), &v) || !v.ctx)
		return 0;
	nft_hit(ctx, v.func, (void *)v.skb, (void *)v.arg, PHASE_RETURN, (__u32)PT_REGS_RC(ctx), v.ctx);
	return 0;
}

SEC("fentry/nft_do_chain")
int fentry_nft_do_chain(__u64 *ctx)
{
	nft_hit(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], (void *)ctx[1], PHASE_ENTRY, 0, 0);
	return 0;
}

SEC("fexit/nft_do_chain")
int fexit_nft_do_chain(__u64 *ctx)
{
	nft_hit(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], (void *)ctx[1], PHASE_RETURN, (__u32)fexit_ret(ctx), 0);
	return 0;
}

#endif /* SKBTRAIL_NETFILTER_BPF_H */
