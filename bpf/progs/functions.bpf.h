/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Programs for kernel functions, one per position of the sk_buff argument
 * (found in BTF by TypeScript) and per attach kind:
 *   kprobe.multi  one link for many functions (5.18+, CONFIG_FPROBE)
 *   kprobe        one link per function, program shared
 *   fentry/fexit  BTF trampolines; TypeScript clones the loaded template
 *                 for each further function (same instructions)
 * A kprobe's attach cookie is the traced function's address, set by
 * TypeScript (or, before 5.15, its instruction pointer: kprobe_func);
 * fentry/fexit read it with bpf_get_func_ip(), or, before 5.17, carry it
 * in their instructions (FUNC_ID_MARK). Either way the event names the
 * function by address.
 *
 * Return values (--ret, and the functions below that need them): the
 * entry program stashes the skb and its packet context per thread and
 * function, so the return joins the packet even when the call freed the
 * skb (ip_rcv delivering it, nf_hook_slow dropping it), and is recorded
 * only if the entry was.
 */
#ifndef SKBTRAIL_FUNCTIONS_BPF_H
#define SKBTRAIL_FUNCTIONS_BPF_H

/* read: how the program reads skb (SKB_HELPER, SKB_BTF, SKB_CAST: lifecycle.bpf.h). */
static __always_inline int func_entry(void *ctx, __u64 func, __u64 call, void *skb, __u8 read)
{
	struct hit h = { .func = func, .skb_read = read };
	__u64 recorded = on_skb(ctx, skb, &h, false);

	/* Only functions with a return probe stash: on 5.10 each stash is a frame its return pops.
	 * The settings lookup last: an unrecorded call (most, under a filter) skips it where it can. */
	if ((recorded || STASH_UNRECORDED) && (CFG.trace_ret || (hook_settings(&h) & SETTING_RETURN)))
		stash_put(call, func, skb, 0, recorded);
	return 0;
}

static __always_inline int func_return(void *ctx, __u64 call, __s64 ret)
{
	struct stash_value v;
	struct hit h = { .phase = PHASE_RETURN, .retval = ret };

	if (!stash_take(call, &v) || !v.ctx)
		return 0;
	h.func = v.func;
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

/* A kprobe's entry: the function from kprobe_func, the call's stash key
 * from kprobe_call (stash.bpf.h). */
static __always_inline int kprobe_entry(struct pt_regs *ctx, void *skb)
{
	__u64 func = kprobe_func(ctx);

	return func_entry(ctx, func, kprobe_call(ctx, func), skb, SKB_HELPER);
}

/*
 * A kprobe's argument is a plain number to the verifier: every field is a
 * helper call. cast_skb() makes it a BTF-typed pointer, read with plain loads
 * like an fentry argument, and the packet's headers too (SKB_CAST). The
 * kmulti_cast programs use it; TypeScript loads them where
 * probe_kprobe_multi_cast loads.
 */
#define KPROBE_PROGRAMS(n, PARM)                                                               \
	SEC("kprobe.multi")                                                                    \
	int kmulti_skb##n(struct pt_regs *ctx)                                                 \
	{                                                                                      \
		__u64 func = bpf_get_attach_cookie(ctx);                                       \
		return func_entry(ctx, func, func, (void *)PARM(ctx), SKB_HELPER);             \
	}                                                                                      \
	SEC("kprobe.multi")                                                                    \
	int kmulti_cast_skb##n(struct pt_regs *ctx)                                            \
	{                                                                                      \
		__u64 func = bpf_get_attach_cookie(ctx);                                       \
		return func_entry(ctx, func, func, cast_skb((void *)PARM(ctx)), SKB_CAST);     \
	}                                                                                      \
	SEC("kprobe")                                                                          \
	int kprobe_skb##n(struct pt_regs *ctx)                                                 \
	{                                                                                      \
		return kprobe_entry(ctx, (void *)PARM(ctx));                                   \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fentry_skb##n(__u64 *ctx)                                                          \
	{                                                                                      \
		__u64 func = bpf_get_func_ip(ctx);                                             \
		func_entry(ctx, func, func, (void *)ctx[n], SKB_BTF);                          \
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

/*
 * fentry/fexit before bpf_get_func_ip (5.15) and bpf_get_func_ret (5.17),
 * e.g. Debian 11's 5.10: a copy of a template cannot ask which function it
 * is on, nor where its return value is. TypeScript writes both into each
 * copy (ffi/libbpf.ts cloneAndAttach): the traced function's address into
 * the 64-bit immediate marked FUNC_ID_MARK, and in fexit copies the return
 * value's slot, ctx[number of arguments], into the load right after it.
 * The template itself (loaded against its first target, slot 0) is never
 * attached. Inline assembly keeps the two instructions together and as
 * written: the compiler can neither fold the immediate nor move the load.
 */
#define FUNC_ID_MARK 0x736b62747261696c /* "skbtrail" */
#define STR(x) #x
#define XSTR(x) STR(x)

#define FENTRY_ID_PROGRAMS(n)                                                                  \
	SEC("fentry")                                                                          \
	int fentry_id_skb##n(__u64 *ctx)                                                       \
	{                                                                                      \
		__u64 func;                                                                    \
		asm volatile("%0 = " XSTR(FUNC_ID_MARK) " ll" : "=r"(func));                  \
		func_entry(ctx, func, func, (void *)ctx[n], SKB_BTF);                          \
		return 0;                                                                      \
	}                                                                                      \
	SEC("fexit")                                                                           \
	int fexit_id_skb##n(__u64 *ctx)                                                        \
	{                                                                                      \
		__u64 func, ret;                                                               \
		asm volatile("%0 = " XSTR(FUNC_ID_MARK) " ll\n\t%1 = *(u64 *)(%2 + 0)"          \
			     : "=&r"(func), "=&r"(ret) : "r"(ctx));                            \
		func_return(ctx, func, ret);                                                   \
		return 0;                                                                      \
	}

FENTRY_ID_PROGRAMS(0)
FENTRY_ID_PROGRAMS(1)
FENTRY_ID_PROGRAMS(2)
FENTRY_ID_PROGRAMS(3)
FENTRY_ID_PROGRAMS(4)

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
	__u64 func = bpf_get_attach_cookie(ctx);

	return func_entry(ctx, func, func, deref_skb((void *)PT_REGS_PARM1(ctx)), SKB_HELPER);
}

SEC("kprobe")
int kprobe_pskb0(struct pt_regs *ctx)
{
	return kprobe_entry(ctx, deref_skb((void *)PT_REGS_PARM1(ctx)));
}

SEC("kretprobe.multi")
int kmulti_return(struct pt_regs *ctx)
{
	return func_return(ctx, bpf_get_attach_cookie(ctx), PT_REGS_RC(ctx));
}

SEC("kretprobe")
int kretprobe_return_value(struct pt_regs *ctx)
{
	return func_return(ctx, kretprobe_call(ctx), PT_REGS_RC(ctx));
}

/* ---- __icmp_send: the point the tracepoint icmp:icmp_send marks (6.9+),
 * traced in its place where the kernel lacks it. Its event carries the
 * tracepoint's id and details (ICMP type and code), so diagnosis rules read
 * it the same way; it is named by the function. No return probe. ---- */

static __always_inline int icmp_sent(void *ctx, __u64 func, void *skb, __s32 type, __s32 code)
{
	struct hit h = { .func = func, .tracepoint = TP_ICMP_SEND, .info = { type, code } };

	on_skb(ctx, skb, &h, false);
	return 0;
}

/* void __icmp_send(struct sk_buff *skb_in, int type, int code, __be32 info, …) */
SEC("kprobe/__icmp_send")
int kprobe_icmp_send(struct pt_regs *ctx)
{
	return icmp_sent(ctx, kprobe_func(ctx), (void *)PT_REGS_PARM1(ctx), (__s32)PT_REGS_PARM2(ctx), (__s32)PT_REGS_PARM3(ctx));
}

SEC("fentry/__icmp_send")
int fentry_icmp_send(__u64 *ctx)
{
	icmp_sent(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], (__s32)ctx[1], (__s32)ctx[2]);
	return 0;
}

/* ---- The skb's own memory freed: kfree_skbmem (each skb freed one by one),
 * kfree_skb_partial (a coalesced skb whose head was stolen) and
 * napi_skb_cache_put (an skb recycled through NAPI's cache, which
 * kmem_cache_free never sees) end a followed skb where kprobe.multi works,
 * instead of kmem:kmem_cache_free (src/plan/plan.ts: SKB_MEMORY_FREES).
 * No line of their own. ---- */

SEC("kprobe.multi")
int kmulti_skb_memory_free(struct pt_regs *ctx)
{
	return on_skb_memory_free(bpf_get_attach_cookie(ctx), PT_REGS_PARM1(ctx));
}

/* ---- kfree_skb_partial, traced: its line ends the packet, as the skb is
 * freed in the call (TCP or GRO merged its data into another skb); with the
 * head stolen, kfree_skbmem is not called. So kmulti_skb_memory_free is not
 * attached to it too, which could run first and leave this line to open a
 * packet of its own. No return probe. ---- */

static __always_inline int partial_free(void *ctx, __u64 func, void *skb)
{
	struct hit h = { .func = func, .flags = HOOK_FREE };

	on_skb(ctx, skb, &h, false);
	return 0;
}

/* void kfree_skb_partial(struct sk_buff *skb, bool head_stolen) */
SEC("kprobe/kfree_skb_partial")
int kprobe_skb_partial_free(struct pt_regs *ctx)
{
	return partial_free(ctx, kprobe_func(ctx), (void *)PT_REGS_PARM1(ctx));
}

SEC("fentry/kfree_skb_partial")
int fentry_skb_partial_free(__u64 *ctx)
{
	partial_free(ctx, bpf_get_func_ip(ctx), (void *)ctx[0]);
	return 0;
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
	__u64 func = kprobe_func(ctx);

	if (!TRACING)
		return 0;
	stash_put(kprobe_call(ctx, func), func, (void *)PT_REGS_PARM1(ctx), 0, 0);
	return 0;
}

SEC("kretprobe/skb_clone")
int kretprobe_skb_clone(struct pt_regs *ctx)
{
	struct stash_value v;

	if (!stash_take(kretprobe_call(ctx), &v))
		return 0;
	return cloned(ctx, v.func, (void *)v.skb, PT_REGS_RC(ctx));
}

SEC("fexit/skb_clone")
int fexit_skb_clone(__u64 *ctx)
{
	cloned(ctx, bpf_get_func_ip(ctx), (void *)ctx[0], fexit_ret(ctx));
	return 0;
}

#endif /* SKBTRAIL_FUNCTIONS_BPF_H */
