/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The core every hook program calls: decide whether the skb belongs to a
 * packet the user cares about, and if so write a hook event.
 *
 * A packet is judged by the filters at the first hook where it matches;
 * from then on its skb address is in "tracked" with the id of its packet
 * context, so it is followed even after NAT rewrites its addresses, and a
 * clone joins the same context. The entry is removed when the skb is freed.
 * With --pkt-fixed nothing is tracked: every hook applies the filters.
 */
#ifndef SKBTRAIL_LIFECYCLE_BPF_H
#define SKBTRAIL_LIFECYCLE_BPF_H

/* skb address → packet context id. LRU: a flood cannot exhaust it; TypeScript
 * sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} tracked SEC(".maps");

/* Events are built here, then copied to the ring only if kept. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_event);
} scratch SEC(".maps");

/* Per-hook settings (enum hook_setting) by function address or tracepoint id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} hook_flags SEC(".maps");

/* What a hook program knows about the call it saw. */
struct hit {
	__u64 func;        /* traced function's address (0: tracepoint) */
	__u32 tracepoint;  /* enum tracepoint_id */
	__u8 phase;
	__u8 flags;
	__s64 retval;
	__u64 skb2;
	__u64 location;
	__u32 reason;
	__s32 info[2];
};

static __always_inline __u64 new_context_id(__u64 now)
{
	/* Unique without a shared counter: the time with the CPU in its low
	 * bits (two contexts cannot start on one CPU within 256 ns). */
	return (now & ~0xffULL) | (bpf_get_smp_processor_id() & 0xff);
}

static __always_inline __u8 hook_settings(const struct hit *h)
{
	__u64 key = h->func ? h->func : h->tracepoint;
	__u8 *settings;

	if (!CFG.hook_settings)
		return 0;
	settings = bpf_map_lookup_elem(&hook_flags, &key);
	return settings ? *settings : 0;
}

/*
 * Records the hit if the skb is tracked or matches the filters. `nf`, when
 * set, makes it an nf_event carrying netfilter details.
 */
static __always_inline int on_skb(void *ctx, struct sk_buff *skb, const struct hit *h,
				  const struct nf_info *nf)
{
	__u64 key = (__u64)skb;
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct nf_event *e;
	struct hook_event *he;
	__u64 *known = 0;
	__u64 id = 0;
	__u8 settings = hook_settings(h);
	__u8 flags = h->flags | (settings & SETTING_FREE ? HOOK_FREE : 0);

	if (!skb)
		return 0;
	if (!CFG.pkt_fixed)
		known = bpf_map_lookup_elem(&tracked, &key);
	/* A normal free of an skb never seen is no packet's story (the kernel
	 * often frees a packet after copying it); a drop always is. */
	if (!known && !CFG.pkt_fixed && (flags & HOOK_FREE) && !(flags & HOOK_DROP))
		return 0;
	e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	he = &e->hook;
	__builtin_memset(&he->meta, 0, sizeof(he->meta));
	__builtin_memset(&he->pkt, 0, sizeof(he->pkt));
	fill_meta(skb, &he->meta);
	parse_skb(skb, &he->pkt);

	if (known) {
		id = *known;
	} else {
		if (!packet_matches(&he->pkt, &he->meta)) {
			count(STAT_FILTERED);
			return 0;
		}
		if (!CFG.pkt_fixed) {
			id = new_context_id(now);
			if (!(flags & HOOK_FREE))
				bpf_map_update_elem(&tracked, &key, &id, BPF_ANY);
		}
	}
	if (!CFG.pkt_fixed) {
		if ((h->flags & HOOK_CLONE) && h->skb2)
			bpf_map_update_elem(&tracked, &h->skb2, &id, BPF_ANY);
		if (known && (flags & HOOK_FREE))
			bpf_map_delete_elem(&tracked, &key);
	}

	fill_header(&he->hdr, nf ? EVENT_NF : EVENT_HOOK, nf ? sizeof(*e) : sizeof(*he));
	he->hdr.time_ns = now;
	he->ctx_id = id;
	he->func = h->func;
	he->tracepoint = h->tracepoint;
	he->phase = h->phase;
	he->flags = flags;
	he->retval = h->retval;
	he->skb2 = h->skb2;
	he->location = h->location;
	he->reason = h->reason;
	he->info[0] = h->info[0];
	he->info[1] = h->info[1];
	he->stack_id = settings & SETTING_STACK ? bpf_get_stackid(ctx, &stacks, 0) : -1;
	if (nf) {
		e->nf = *nf;
		return output(e, sizeof(*e));
	}
	return output(he, sizeof(*he));
}

#endif /* SKBTRAIL_LIFECYCLE_BPF_H */
