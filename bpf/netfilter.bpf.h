/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Netfilter hooks with their details: nf_hook_slow (family and hook of the
 * hook being run, verdict at return) and nft_do_chain (the nftables table
 * and chain, full names, and the chain's verdict). Each as kprobe/kretprobe
 * and fentry/fexit; TypeScript picks what the kernel supports.
 */
#ifndef SKBTRAIL_NETFILTER_BPF_H
#define SKBTRAIL_NETFILTER_BPF_H

static __always_inline void nf_from_state(struct nf_info *nf, const struct nf_hook_state *state)
{
	nf->family = BPF_CORE_READ(state, pf);
	nf->hook = BPF_CORE_READ(state, hook);
}

static __always_inline void nf_from_chain(struct nf_info *nf, struct nft_chain *chain)
{
	struct nft_table *table = BPF_CORE_READ(chain, table);

	bpf_probe_read_kernel_str(nf->chain, sizeof(nf->chain), BPF_CORE_READ(chain, name));
	bpf_probe_read_kernel_str(nf->table, sizeof(nf->table), BPF_CORE_READ(table, name));
	nf->table_family = BPF_CORE_READ_BITFIELD_PROBED(table, family);
}

static __always_inline int nf_hit(void *ctx, __u64 func, struct sk_buff *skb, __u8 phase, __s64 ret,
				  const struct nf_hook_state *state, struct nft_chain *chain)
{
	struct hit h = { .func = func, .phase = phase, .retval = ret };
	struct nf_event *e = scratch_event();

	if (!e)
		return 0;
	__builtin_memset(&e->nf, 0, sizeof(e->nf));
	if (state)
		nf_from_state(&e->nf, state);
	if (chain)
		nf_from_chain(&e->nf, chain);
	return on_skb(ctx, skb, &h, true);
}

/* int nf_hook_slow(struct sk_buff *skb, struct nf_hook_state *state, …) */
SEC("kprobe/nf_hook_slow")
int kprobe_nf_hook_slow(struct pt_regs *ctx)
{
	__u64 func = bpf_get_attach_cookie(ctx);
	struct sk_buff *skb = (void *)PT_REGS_PARM1(ctx);
	struct nf_hook_state *state = (void *)PT_REGS_PARM2(ctx);

	stash_put(func, skb, state);
	return nf_hit(ctx, func, skb, PHASE_ENTRY, 0, state, 0);
}

SEC("kretprobe/nf_hook_slow")
int kretprobe_nf_hook_slow(struct pt_regs *ctx)
{
	__u64 func = bpf_get_attach_cookie(ctx);
	struct stash_value v;

	if (!stash_take(func, &v))
		return 0;
	return nf_hit(ctx, func, (void *)v.skb, PHASE_RETURN, (int)PT_REGS_RC(ctx), (void *)v.arg, 0);
}

SEC("fentry/nf_hook_slow")
int fentry_nf_hook_slow(__u64 *ctx)
{
	return nf_hit(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], PHASE_ENTRY, 0, (void *)ctx[1], 0);
}

SEC("fexit/nf_hook_slow")
int fexit_nf_hook_slow(__u64 *ctx)
{
	return nf_hit(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], PHASE_RETURN, (int)fexit_ret(ctx), (void *)ctx[1], 0);
}

/* unsigned int nft_do_chain(struct nft_pktinfo *pkt, void *priv): priv is the chain */
static __always_inline int nft_hit(void *ctx, __u64 func, struct nft_pktinfo *pkt, void *chain, __u8 phase, __s64 ret)
{
	return nf_hit(ctx, func, BPF_CORE_READ(pkt, skb), phase, ret, BPF_CORE_READ(pkt, state), chain);
}

SEC("kprobe/nft_do_chain")
int kprobe_nft_do_chain(struct pt_regs *ctx)
{
	__u64 func = bpf_get_attach_cookie(ctx);
	struct nft_pktinfo *pkt = (void *)PT_REGS_PARM1(ctx);
	void *chain = (void *)PT_REGS_PARM2(ctx);

	/* The pktinfo lives on the caller's stack: still valid at return. */
	stash_put(func, pkt, chain);
	return nft_hit(ctx, func, pkt, chain, PHASE_ENTRY, 0);
}

SEC("kretprobe/nft_do_chain")
int kretprobe_nft_do_chain(struct pt_regs *ctx)
{
	__u64 func = bpf_get_attach_cookie(ctx);
	struct stash_value v;

	if (!stash_take(func, &v))
		return 0;
	return nft_hit(ctx, func, (void *)v.skb, (void *)v.arg, PHASE_RETURN, (__u32)PT_REGS_RC(ctx));
}

SEC("fentry/nft_do_chain")
int fentry_nft_do_chain(__u64 *ctx)
{
	return nft_hit(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], (void *)ctx[1], PHASE_ENTRY, 0);
}

SEC("fexit/nft_do_chain")
int fexit_nft_do_chain(__u64 *ctx)
{
	return nft_hit(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], (void *)ctx[1], PHASE_RETURN, (__u32)fexit_ret(ctx));
}

#endif /* SKBTRAIL_NETFILTER_BPF_H */
