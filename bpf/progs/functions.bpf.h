/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Programs for kernel functions, one per position of the sk_buff argument
 * (found in BTF by TypeScript) and per attach kind:
 *   kprobe.multi  one link for many functions (5.18+, CONFIG_FPROBE)
 *   kprobe        one link per function, program shared
 *   fentry/fexit  BTF trampolines; TypeScript clones the loaded template
 *                 for each further function (same instructions)
 * A kprobe's attach cookie is the traced function's address, set by
 * TypeScript; fentry/fexit read it with bpf_get_func_ip(). Either way the
 * event names the function by address.
 *
 * Return values (--ret, and the functions below that need them): the
 * entry program stashes the skb and its packet context per thread and
 * function, so the return joins the packet even when the call freed the
 * skb (ip_rcv delivering it, nf_hook_slow dropping it), and is recorded
 * only if the entry was.
 */
#ifndef SKBTRAIL_FUNCTIONS_BPF_H
#define SKBTRAIL_FUNCTIONS_BPF_H

static __always_inline int func_entry(void *ctx, __u64 func, void *skb)
{
	struct hit h = { .func = func };
	__u64 recorded = on_skb(ctx, skb, &h, false);

	if (CFG.trace_ret && recorded)
		stash_put(func, skb, 0, recorded);
	return 0;
}

static __always_inline int func_return(void *ctx, __u64 func, __s64 ret)
{
	struct stash_value v;
	struct hit h = { .func = func, .phase = PHASE_RETURN, .retval = ret };

	if (!stash_take(func, &v))
		return 0;
	h.ctx_hint = v.ctx;
	on_skb(ctx, (void *)v.skb, &h, false);
	return 0;
}

static __always_inline __s64 fexit_ret(__u64 *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return ret;
}

#define KPROBE_PROGRAMS(n, PARM)                                                               \
	SEC("kprobe.multi")                                                                    \
	int kmulti_skb##n(struct pt_regs *ctx)                                                 \
	{                                                                                      \
		return func_entry(ctx, bpf_get_attach_cookie(ctx), (void *)PARM(ctx)); \
	}                                                                                      \
	SEC("kprobe")                                                                          \
	int kprobe_skb##n(struct pt_regs *ctx)                                                 \
	{                                                                                      \
		return func_entry(ctx, bpf_get_attach_cookie(ctx), (void *)PARM(ctx)); \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fentry_skb##n(__u64 *ctx)                                                          \
	{                                                                                      \
		func_entry(ctx, bpf_get_func_ip(ctx), (void *)ctx[n]);                  \
		return 0; /* fentry/fexit must return 0 before 6.5 */                         \
	}                                                                                      \
	SEC("fexit")                                                                           \
	int fexit_skb##n(__u64 *ctx)                                                           \
	{                                                                                      \
		func_return(ctx, bpf_get_func_ip(ctx), fexit_ret(ctx));        \
		return 0;                                                                      \
	}

KPROBE_PROGRAMS(0, PT_REGS_PARM1)
KPROBE_PROGRAMS(1, PT_REGS_PARM2)
KPROBE_PROGRAMS(2, PT_REGS_PARM3)
KPROBE_PROGRAMS(3, PT_REGS_PARM4)
KPROBE_PROGRAMS(4, PT_REGS_PARM5)

/* __netif_receive_skb_core(struct sk_buff **pskb, …) since 5.x: the skb is
 * behind the first argument. */
static __always_inline void *deref_skb(void *pskb)
{
	void *skb = 0;

	bpf_probe_read_kernel(&skb, sizeof(skb), pskb);
	return skb;
}

SEC("kprobe.multi")
int kmulti_pskb0(struct pt_regs *ctx)
{
	return func_entry(ctx, bpf_get_attach_cookie(ctx), deref_skb((void *)PT_REGS_PARM1(ctx)));
}

SEC("kprobe")
int kprobe_pskb0(struct pt_regs *ctx)
{
	return func_entry(ctx, bpf_get_attach_cookie(ctx), deref_skb((void *)PT_REGS_PARM1(ctx)));
}

SEC("kretprobe.multi")
int kmulti_return(struct pt_regs *ctx)
{
	return func_return(ctx, bpf_get_attach_cookie(ctx), PT_REGS_RC(ctx));
}

SEC("kretprobe")
int kretprobe_return_value(struct pt_regs *ctx)
{
	return func_return(ctx, bpf_get_attach_cookie(ctx), PT_REGS_RC(ctx));
}

/* ---- skb_clone: the returned skb joins the original's packet context ---- */

static __always_inline int cloned(void *ctx, __u64 func, void *skb, __u64 clone)
{
	struct hit h = { .func = func, .phase = PHASE_RETURN, .flags = HOOK_CLONE, .skb2 = clone };

	on_skb(ctx, skb, &h, false);
	return 0;
}

SEC("kprobe/skb_clone")
int kprobe_skb_clone(struct pt_regs *ctx)
{
	if (!TRACING)
		return 0;
	stash_put(bpf_get_attach_cookie(ctx), (void *)PT_REGS_PARM1(ctx), 0, 0);
	return 0;
}

SEC("kretprobe/skb_clone")
int kretprobe_skb_clone(struct pt_regs *ctx)
{
	__u64 func = bpf_get_attach_cookie(ctx);
	struct stash_value v;

	if (!stash_take(func, &v))
		return 0;
	return cloned(ctx, func, (void *)v.skb, PT_REGS_RC(ctx));
}

SEC("fexit/skb_clone")
int fexit_skb_clone(__u64 *ctx)
{
	cloned(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], fexit_ret(ctx));
	return 0;
}

#endif /* SKBTRAIL_FUNCTIONS_BPF_H */
