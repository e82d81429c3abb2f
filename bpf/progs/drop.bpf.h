/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The drop monitor (--drop): every skb the kernel frees as dropped
 * (skb:kfree_skb), with the reason, the location and the packet, as one
 * struct drop_event.
 */
#ifndef SKBTRAIL_DROP_BPF_H
#define SKBTRAIL_DROP_BPF_H

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

static __always_inline int on_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location,
					__u32 reason, bool btf)
{
	struct drop_event *e;

	if (!TRACING)
		return 0;
	if (!reason_selected(reason)) {
		count(STAT_FILTERED);
		return 0;
	}
	/* --pcap: built in per-CPU scratch, then copied with the packet's
	 * bytes after it; otherwise written in place in the ring. */
	if (CFG.snaplen) {
		e = (struct drop_event *)scratch_event();
		if (!e)
			return 0;
	} else {
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count(STAT_LOST);
			return 0;
		}
	}
	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	if (btf)
		parse_btf_skb(skb, &e->pkt, false);
	else
		parse_skb(skb, &e->pkt, false);
	if (!headers_match(&e->pkt))
		goto filtered;
	__builtin_memset(&e->meta, 0, sizeof(e->meta));
	fill_meta_from(skb, &e->pkt, &e->meta, btf);
	if (!meta_matches(&e->meta))
		goto filtered;
	fill_header(&e->hdr, EVENT_DROP, sizeof(*e));
	e->location = location;
	e->reason = reason;
	e->stack_id = CFG.drop_stack ? bpf_get_stackid(ctx, &stacks, 0) : -1;
	if (CFG.snaplen)
		return output_with_capture(skb, e, sizeof(*e));
	submit(e);
	return 0;
filtered:
	if (!CFG.snaplen)
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
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2], true);
}

SEC("raw_tp/kfree_skb")
int drop_reason_raw(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2], false);
}

SEC("tp_btf/kfree_skb")
int drop_noreason_btf(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], 0, true);
}

SEC("raw_tp/kfree_skb")
int drop_noreason_raw(__u64 *ctx)
{
	return on_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], 0, false);
}

#endif /* SKBTRAIL_DROP_BPF_H */
