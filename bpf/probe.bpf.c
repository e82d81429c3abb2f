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
#include "lib/wire.bpf.h"

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

/*
 * What parse_cast_skb() reads through bpf_rdonly_cast (wire.bpf.h), in a
 * subprogram as there: every header type and field it loads, so a kernel
 * whose verifier refuses one of those loads refuses the probe too.
 */
static __noinline int cast_headers_read(unsigned char *p)
{
	const struct ethhdr___wire *eth = HDR_AT(true, (struct ethhdr___wire *)0, p);
	const struct iphdr___wire *ip = HDR_AT(true, (struct iphdr___wire *)0, p);
	const struct ipv6hdr___wire *ip6 = HDR_AT(true, (struct ipv6hdr___wire *)0, p);
	const struct tcphdr___wire *th = HDR_AT(true, (struct tcphdr___wire *)0, p);
	const struct udphdr___wire *uh = HDR_AT(true, (struct udphdr___wire *)0, p);
	const struct icmphdr___wire *ih = HDR_AT(true, (struct icmphdr___wire *)0, p);
	__u32 sum = RD(eth, proto);

	sum += RD(ip, ver_ihl) + RD(ip, tot_len) + RD(ip, frag_off) + RD(ip, ttl) + RD(ip, protocol) +
	       RD(ip, saddr) + RD(ip, daddr);
	sum += RD(ip6, ver_tc) + RD(ip6, payload_len) + RD(ip6, nexthdr) + RD(ip6, hop_limit);
#pragma unroll
	for (int i = 0; i < 4; i++)
		sum += RD(ip6, saddr[i]) + RD(ip6, daddr[i]);
	sum += RD(th, source) + RD(th, dest) + RD(th, seq) + RD(th, ack_seq) + RD(th, flags);
	sum += RD(uh, source) + RD(uh, dest);
	sum += RD(ih, type) + RD(ih, code) + RD(ih, id) + RD(ih, seq);
	return sum != 0;
}

/* As parse_cast_skb() and fill_btf_meta() read a cast skb: in a subprogram,
 * with plain loads, through the pointers it holds too. */
static __noinline int cast_skb_read(struct sk_buff *skb)
{
	struct net_device *dev = skb->dev;

	if (dev && !dev->nd_net.net->ns.inum)
		return 0;
	return skb->len != 0 && cast_headers_read(skb->head + skb->network_header);
}

/* kprobe.multi programs that read the skb and the headers with plain loads
 * (kmulti_cast_skb*): the kfunc exists (6.2+), kprobe programs may call it,
 * and its pointer passes into a subprogram as theirs does. */
SEC("kprobe.multi/ip_rcv")
int probe_kprobe_multi_cast(struct pt_regs *ctx)
{
	struct sk_buff *skb = bpf_rdonly_cast((void *)PT_REGS_PARM1(ctx), bpf_core_type_id_kernel(struct sk_buff));

	return skb ? cast_skb_read(skb) : 0;
}

/* The tracepoints' _cast programs: a tp_btf program casting its skb
 * argument too (cast_skb in lifecycle.bpf.h). */
SEC("tp_btf/kfree_skb")
int probe_tp_btf_cast(__u64 *ctx)
{
	struct sk_buff *skb = bpf_rdonly_cast((void *)ctx[0], bpf_core_type_id_kernel(struct sk_buff));

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
