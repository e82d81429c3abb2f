// SPDX-License-Identifier: GPL-2.0
/*
 * skbtrail's kernel side. One object, many programs; TypeScript decides
 * which ones load (bpf_program__set_autoload) from what the running kernel
 * supports, before loading, because one program that fails to load aborts
 * the whole object.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

/* In a section of its own so TypeScript finds it at offset 0 of the map
 * ".rodata.cfg" and fills it in before load. */
const volatile struct skbtrail_config CFG SEC(".rodata.cfg") = {};

/* Never read: gives every type of events.h BTF (types only used inside
 * functions get none), from which build.ts generates the TypeScript
 * layouts and constants. */
const volatile struct {
	enum event_version version;
	enum event_kind kind;
	enum hook_phase phase;
	enum packet_layers layers;
	enum stat_index stat;
	enum hook_flags hook_flags;
	enum hook_setting hook_setting;
	enum tracepoint_id tracepoint;
	struct drop_event drop;
	struct nf_event nf;
} TYPES_FOR_TYPESCRIPT;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

#include "ringbuf.bpf.h"
#include "packet.bpf.h"

static __always_inline void fill_header(struct event_header *hdr, __u16 kind, __u16 size)
{
	hdr->kind = kind;
	hdr->size = size;
	hdr->version = EVENT_VERSION;
	hdr->cpu = bpf_get_smp_processor_id();
	hdr->time_ns = bpf_ktime_get_ns();
}

static __always_inline void fill_meta(struct sk_buff *skb, struct skb_meta *meta)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct net *net = 0;

	meta->skb = (__u64)skb;
	meta->len = BPF_CORE_READ(skb, len);
	meta->mark = BPF_CORE_READ(skb, mark);
	meta->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(meta->comm, sizeof(meta->comm));
	if (dev) {
		meta->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_probe_read_kernel_str(meta->ifname, sizeof(meta->ifname), dev->name);
		net = BPF_CORE_READ(dev, nd_net.net);
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);

		if (sk)
			net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	}
	if (net)
		meta->netns = BPF_CORE_READ(net, ns.inum);
}

static __always_inline bool reason_selected(__u32 reason)
{
	if (!CFG.has_reasons)
		return true;
	__u32 word = reason >> 6;

	if (reason >= 256)
		return false;
	/* Hide the range from clang so it keeps the mask the verifier needs
	 * (it knows reason < 256 only through a copy of the register). */
	barrier_var(word);
	return CFG.reasons[word & 3] & (1ULL << (reason & 63));
}

/* ---- drop monitor: skb:kfree_skb ---------------------------------------- */

static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location,
					__u32 reason)
{
	struct drop_event *e;

	if (!reason_selected(reason)) {
		count(STAT_FILTERED);
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(STAT_LOST);
		return 0;
	}
	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	parse_skb(skb, &e->pkt);
	if (!headers_match(&e->pkt))
		goto filtered;
	__builtin_memset(&e->meta, 0, sizeof(e->meta));
	fill_meta(skb, &e->meta);
	if (!meta_matches(&e->meta))
		goto filtered;
	fill_header(&e->hdr, EVENT_DROP, sizeof(*e));
	e->location = location;
	e->reason = reason;
	e->stack_id = CFG.drop_stack ? bpf_get_stackid(ctx, &stacks, 0) : -1;
	submit(e);
	return 0;
filtered:
	bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
	count(STAT_FILTERED);
	return 0;
}

/*
 * The tracepoint's arguments: (skb, location) before 5.17, (skb, location,
 * reason) from 5.17, (skb, location, reason, rx_sk) from 6.11. Reading an
 * argument the tracepoint lacks fails verification, so there is one program
 * per shape, each as tp_btf (5.5+) and raw_tp (fallback); TypeScript loads
 * the one that fits. The body is the same: raw_tp's context is also an
 * array of u64 arguments.
 */
SEC("tp_btf/kfree_skb")
int drop_reason_btf(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2]);
}

SEC("raw_tp/kfree_skb")
int drop_reason_raw(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2]);
}

SEC("tp_btf/kfree_skb")
int drop_noreason_btf(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], 0);
}

SEC("raw_tp/kfree_skb")
int drop_noreason_raw(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], 0);
}

/* ---- packet lifecycle: tracepoints, functions, netfilter ---------------- */

#include "lifecycle.bpf.h"
#include "tracepoints.bpf.h"
#include "functions.bpf.h"
#include "netfilter.bpf.h"
