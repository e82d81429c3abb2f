// SPDX-License-Identifier: GPL-2.0
/*
 * Tiny programs that tell which program and attach types the running
 * kernel accepts. TypeScript loads and attaches each one alone, then
 * closes it, before deciding which of skbtrail's real programs to load.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/kfree_skb")
int probe_tp_btf(void *ctx)
{
	return 0;
}

SEC("raw_tp/kfree_skb")
int probe_raw_tp(void *ctx)
{
	return 0;
}

/* Function hooks: attached to ip_rcv, which every kernel has. Each calls the
 * helper skbtrail's real programs of that kind rely on. */
SEC("kprobe/ip_rcv")
int probe_kprobe(void *ctx)
{
	return bpf_get_attach_cookie(ctx) != 0;
}

/* Kprobes without attach cookies (before 5.15): the programs then name the
 * traced function by its instruction pointer instead. */
SEC("kprobe/ip_rcv")
int probe_kprobe_plain(void *ctx)
{
	return 0;
}

SEC("kprobe.multi/ip_rcv")
int probe_kprobe_multi(void *ctx)
{
	return bpf_get_attach_cookie(ctx) != 0;
}

/* As parse_btf_skb() reads it: in a subprogram, with plain loads. */
static __noinline int cast_skb_read(struct sk_buff *skb)
{
	return skb->len != 0;
}

/* kprobe.multi programs that read the skb with plain loads (kmulti_cast_skb*):
 * the kfunc exists (6.2+), kprobe programs may call it, and its pointer
 * passes into a subprogram as theirs does. */
SEC("kprobe.multi/ip_rcv")
int probe_kprobe_multi_cast(struct pt_regs *ctx)
{
	struct sk_buff *skb = bpf_rdonly_cast((void *)PT_REGS_PARM1(ctx), bpf_core_type_id_kernel(struct sk_buff));

	return skb ? cast_skb_read(skb) : 0;
}

SEC("fentry/ip_rcv")
int probe_fentry(void *ctx)
{
	bpf_get_func_ip(ctx);
	return 0; /* tracing programs must return 0 before 6.5 */
}

SEC("fexit/ip_rcv")
int probe_fexit(void *ctx)
{
	__u64 ret;

	bpf_get_func_ret(ctx, &ret);
	return 0;
}

/* Trampolines without those helpers (5.5–5.16): the programs then carry the
 * function's address and return slot in their instructions. */
SEC("fentry/ip_rcv")
int probe_fentry_plain(void *ctx)
{
	return 0;
}

SEC("fexit/ip_rcv")
int probe_fexit_plain(void *ctx)
{
	return 0;
}
