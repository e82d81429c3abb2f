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

struct tracked_skb {
	__u64 ctx_id;
	__u32 flow;   /* hash of the addresses and ports last seen, see flow_hash() */
	__u32 pad;
};

/* skb address → its packet context. LRU: a flood cannot exhaust it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tracked_skb);
} tracked SEC(".maps");

/* Set once anything was tracked: until then (a filter that matched
 * nothing yet) no hook looks the skb up, and slab frees cost nothing. */
volatile __u32 tracked_any;

static __always_inline void track(__u64 *skb, struct tracked_skb *entry)
{
	bpf_map_update_elem(&tracked, skb, entry, BPF_ANY);
	if (!tracked_any)
		tracked_any = 1;
}

/*
 * A clone shares its original's data (skb->head), and tracepoints never see
 * skb_clone: where functions cannot be traced, a clone first seen at a later
 * hook (a packet socket's copy read by tcpdump) is found by its data. The
 * packet's identity guards against another packet that got the same memory
 * once the first one was freed.
 */
struct tracked_head {
	__u64 ctx_id;
	__u32 ident;  /* see packet_ident() */
	__u32 pad;
};

/* skb->head of a followed packet's first skb → its packet context. LRU: bounded. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tracked_head);
} tracked_heads SEC(".maps");

/* FNV-1a of (source, destination) or, reversed, (destination, source). A
 * subprogram: inlined twice, clang kept the 32 address bytes of the first
 * hash in 256 bytes of stack for the second, and a hook program's frame
 * plus parse_skb()'s passed the verifier's 512-byte limit. */
static __noinline __u32 flow_hash(const struct packet *pkt, bool reversed)
{
	const __u8 *a = reversed ? pkt->daddr : pkt->saddr;
	const __u8 *b = reversed ? pkt->saddr : pkt->daddr;
	__u32 pa = reversed ? pkt->dport : pkt->sport;
	__u32 pb = reversed ? pkt->sport : pkt->dport;
	__u32 h = 2166136261u;

#pragma unroll
	for (int i = 0; i < 16; i++)
		h = (h ^ a[i]) * 16777619u;
#pragma unroll
	for (int i = 0; i < 16; i++)
		h = (h ^ b[i]) * 16777619u;
	return ((h ^ pa) * 16777619u ^ pb) * 16777619u;
}

/* What a clone shares with its original and the next packet in the same
 * memory does not: the flow, and the sequence number, length and ICMP id. */
static __always_inline __u32 packet_ident(const struct packet *pkt, __u32 flow)
{
	return flow ^ pkt->tcp_seq ^ ((__u32)pkt->ip_len << 16) ^ ((__u32)pkt->icmp_id << 16 | pkt->icmp_seq);
}

/*
 * The packet context of a clone seen for the first time, found by its data;
 * 0 if none. Cheapest test first: most skbs are not clones, and most clones'
 * data belongs to no followed packet. `flow` is set when one is found.
 */
static __noinline __u64 clone_context(struct sk_buff *skb, const struct packet *pkt, __u32 *flow)
{
	struct tracked_head *th;
	__u64 head;

	if (!BPF_CORE_READ_BITFIELD_PROBED(skb, cloned))
		return 0;
	head = (__u64)BPF_CORE_READ(skb, head);
	th = bpf_map_lookup_elem(&tracked_heads, &head);
	if (!th)
		return 0;
	*flow = flow_hash(pkt, false);
	return th->ident == packet_ident(pkt, *flow) ? th->ctx_id : 0;
}

/* The largest record: an nf_event with a capture tail (--pcap). A
 * hook_event's tail starts where an nf_event's nf part would. */
struct scratch_record {
	struct nf_event e;
	__u8 tail[sizeof(struct capture) + CAPTURE_MAX];
};

/* Events are built here, then copied to the ring only if kept. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_record);
} scratch SEC(".maps");

/* Per-hook settings (enum hook_setting) by function address or tracepoint id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} hook_flags SEC(".maps");

/*
 * How a hook program reads its skb, a constant of each program:
 * SKB_HELPER  a number to the verifier (kprobe, raw_tp): helper calls;
 * SKB_BTF     BTF-typed (tp_btf, fentry): the skb's fields are plain loads
 *             (KREAD), the packet's headers and its metadata helper calls;
 * SKB_CAST    skb cast read-only (cast_skb): its fields, the objects it
 *             points to (fill_btf_meta) and the packet's headers (through
 *             bpf_rdonly_cast too) are all plain loads (6.2+: the _cast
 *             programs, loaded where the probes say the kernel takes them).
 */
#define SKB_HELPER 0
#define SKB_BTF 1
#define SKB_CAST 2

/*
 * An SKB_CAST program's skb: a read-only BTF-typed pointer (bpf_rdonly_cast,
 * 6.2+, kernel_types.h). A kprobe's argument becomes readable with plain
 * loads; through a tp_btf argument, which the verifier of 6.2+ treats as
 * trusted, each load of a pointer (skb->dev, dev->nd_net.net…) costs it
 * about a millisecond of verifying natively (bench/README.md §16).
 */
static __always_inline void *cast_skb(void *skb)
{
	return bpf_rdonly_cast(skb, bpf_core_type_id_kernel(struct sk_buff));
}

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
	__u64 ctx_hint;    /* a return's context, recorded at its entry: the call may have freed the skb */
	__u8 skb_read;     /* how the program reads skb: SKB_HELPER, SKB_BTF or SKB_CAST */
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

/* The per-CPU event being built (its nf part is filled by netfilter hooks). */
static __always_inline struct nf_event *scratch_event(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

/* --func-stats: the call is counted for its hook (when it passes the
 * filters, if any are set) and nothing is written. */
static __always_inline __u64 func_stats_hit(struct sk_buff *skb, __u64 key)
{
	struct nf_event *e;

	if (CFG.has_filters) {
		e = scratch_event();
		if (!e)
			return 0;
		__builtin_memset(&e->hook.pkt, 0, sizeof(e->hook.pkt));
		parse_skb(skb, &e->hook.pkt, false);
		__builtin_memset(&e->hook.meta, 0, sizeof(e->hook.meta));
		if (!headers_match(&e->hook.pkt)) {
			count(STAT_FILTERED);
			return 0;
		}
		fill_meta(skb, &e->hook.pkt, &e->hook.meta);
		if (!meta_matches(&e->hook.meta)) {
			count(STAT_FILTERED);
			return 0;
		}
	}
	func_stat(key);
	return 0;
}

/* --latency's path (needs scratch, hook settings and struct hit from above). */
#include "latency.bpf.h"

/*
 * Records the hit if the skb is tracked or matches the filters. With `nf`,
 * it is an nf_event: the caller filled scratch_event()->nf. Returns the
 * packet context's id when the hit was recorded (1 with --pkt-fixed), else 0.
 */
static __always_inline __u64 on_skb(void *ctx, struct sk_buff *skb, const struct hit *h, bool nf)
{
	__u64 key = (__u64)skb;
	__u64 now;
	struct nf_event *e;
	struct hook_event *he;
	struct tracked_skb *known = 0;
	struct tracked_skb entry = {};
	__u8 flags = h->flags;

	if (!TRACING || !skb)
		return 0;
#ifdef BENCH_EMPTY_HOOKS
	return 0; /* a measurement build: what the hooks cost with nothing to do (bench/README.md §16) */
#endif
	if (CFG.latency)
		return latency_hit(skb, h);
	if (CFG.func_stats)
		return func_stats_hit(skb, h->func ? h->func : h->tracepoint);
	if (!CFG.pkt_fixed && tracked_any)
		known = bpf_map_lookup_elem(&tracked, &key);
	/* A normal free of an skb never seen is no packet's story (the kernel
	 * often frees a packet after copying it); a drop always is. */
	if (!known && !CFG.pkt_fixed && (flags & HOOK_FREE) && !(flags & HOOK_DROP))
		return 0;
	/* --trace-matcher: a packet not followed yet starts only at those hooks. */
	if (!known && !h->ctx_hint && CFG.has_matcher && !(hook_settings(h) & SETTING_MATCH))
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	he = &e->hook;
	__builtin_memset(&he->pkt, 0, sizeof(he->pkt));
	/* A followed packet is parsed whole; another one only as far as the
	 * filters need to reject it. */
	if (h->skb_read == SKB_CAST)
		parse_cast_skb(skb, &he->pkt, known || (h->ctx_hint && !CFG.pkt_fixed));
	else if (h->skb_read == SKB_BTF)
		parse_btf_skb(skb, &he->pkt, known || (h->ctx_hint && !CFG.pkt_fixed));
	else
		parse_skb(skb, &he->pkt, known || (h->ctx_hint && !CFG.pkt_fixed));

	if (known) {
		__u32 flow = flow_hash(&he->pkt, false);

		/* A packet never turns into its own reverse: when a tracked skb
		 * shows the reverse of its last addresses, the kernel freed it
		 * unseen (e.g. into a per-CPU cache) and reused it for a reply. */
		if ((he->pkt.parsed & PKT_L3) && known->flow != flow && known->flow == flow_hash(&he->pkt, true)) {
			known = 0;
		} else {
			entry = *known;
			/* A hook before the headers are written (__ip_queue_xmit)
			 * must not hide the last addresses from the next one. */
			if (he->pkt.parsed & PKT_L3)
				known->flow = flow;
		}
	}
	/* A clone of a followed packet, never seen before: it joins its packet
	 * (not with --trace-noclone). */
	if (!known && !h->ctx_hint && !CFG.pkt_fixed && !CFG.no_clone && tracked_any) {
		entry.ctx_id = clone_context(skb, &he->pkt, &entry.flow);
		if (entry.ctx_id)
			flags |= HOOK_JOINED;
	}
	/* Headers first: a packet nobody asked for costs no metadata reads. */
	bool untracked = !known && !(h->ctx_hint && !CFG.pkt_fixed) && !entry.ctx_id;

	if (untracked && !headers_match(&he->pkt))
		goto filtered;
	__builtin_memset(&he->meta, 0, sizeof(he->meta));
	/* SKB_BTF keeps the helper: through a trusted pointer (fentry's, 6.2+)
	 * each pointer load costs the verifier about a millisecond, and fentry
	 * verifies a copy per function (cast_skb above). */
	if (h->skb_read == SKB_CAST)
		fill_btf_meta(skb, &he->pkt, &he->meta);
	else
		fill_meta(skb, &he->pkt, &he->meta);
	now = bpf_ktime_get_ns();
	if (!known && h->ctx_hint && !CFG.pkt_fixed) {
		entry.ctx_id = h->ctx_hint;
	} else if (flags & HOOK_JOINED) {
		if (!(flags & HOOK_FREE))
			track(&key, &entry);
	} else if (!known) {
		if (!meta_matches(&he->meta))
			goto filtered;
		if (!CFG.pkt_fixed) {
			struct tracked_head th = {};
			__u64 head = (__u64)BPF_CORE_READ(skb, head);

			entry.ctx_id = new_context_id(now);
			entry.flow = flow_hash(&he->pkt, false);
			if (!(flags & HOOK_FREE))
				track(&key, &entry);
			th.ctx_id = entry.ctx_id;
			th.ident = packet_ident(&he->pkt, entry.flow);
			bpf_map_update_elem(&tracked_heads, &head, &th, BPF_ANY);
		}
	}
	if (!CFG.pkt_fixed) {
		if ((h->flags & HOOK_CLONE) && h->skb2 && !CFG.no_clone) {
			__u64 clone = h->skb2;

			track(&clone, &entry);
		}
		if (known && (flags & HOOK_FREE))
			bpf_map_delete_elem(&tracked, &key);
	}

	fill_header(&he->hdr, nf ? EVENT_NF : EVENT_HOOK, nf ? sizeof(*e) : sizeof(*he));
	he->hdr.time_ns = now;
	he->ctx_id = entry.ctx_id;
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
	he->stack_id = hook_settings(h) & SETTING_STACK ? bpf_get_stackid(ctx, &stacks, 0) : -1;
	if (!rate_allows(now)) {
		count(STAT_RATE_LIMITED);
		return CFG.pkt_fixed ? 1 : entry.ctx_id;
	}
	if (nf)
		output_with_capture(skb, e, sizeof(*e));
	else
		output_with_capture(skb, he, sizeof(*he));
	return CFG.pkt_fixed ? 1 : entry.ctx_id;
filtered:
	count(STAT_FILTERED);
	return 0;
}

/*
 * A tracked skb's memory was freed: the packet's life ended through a path
 * without an skb tracepoint (__kfree_skb as TCP calls it, NAPI's skb cache,
 * a coalesced segment…). Say so and forget the address, or the next skb allocated
 * there would join the old packet. The skb's data is already released:
 * nothing is parsed.
 */
static __always_inline int slab_freed(__u64 key)
{
	struct tracked_skb *known = bpf_map_lookup_elem(&tracked, &key);
	struct hook_event *he;

	if (!known)
		return 0;
	he = (struct hook_event *)scratch_event();
	if (!he)
		return 0;
	__builtin_memset(he, 0, sizeof(*he));
	fill_header(&he->hdr, EVENT_HOOK, sizeof(*he));
	he->meta.skb = key;
	he->ctx_id = known->ctx_id;
	he->tracepoint = TP_KMEM_CACHE_FREE;
	he->flags = HOOK_FREE;
	he->stack_id = -1;
	bpf_map_delete_elem(&tracked, &key);
	return output(he, sizeof(*he));
}

/*
 * The clone of an fclone pair (every TCP segment sent) has no slab free of
 * its own: kfree_skbmem() frees the pair at the original's address once
 * both are gone, and the next pair there reuses the clone's address. So a
 * freed object may end the clone at its skb2 offset too. Pairs are cache
 * line aligned, and skb2 is not (sizeof(struct sk_buff) is no multiple of
 * 64): an aligned object with a tracked skb at that offset is its pair,
 * never a neighbour. 0 when ptr cannot be a pair.
 */
static __always_inline __u64 fclone_of(__u64 ptr)
{
	__u64 skb2;

	if (!bpf_core_type_exists(struct sk_buff_fclones))
		return 0;
	skb2 = bpf_core_field_offset(struct sk_buff_fclones, skb2);
	if ((ptr & 63) || !(skb2 & 63))
		return 0;
	return ptr + skb2;
}

/* kmem:kmem_cache_free(call_site, ptr, cache): a slab object is freed. */
static __always_inline int on_slab_free(void *ptr)
{
	__u64 clone = fclone_of((__u64)ptr);

	if (!TRACING)
		return 0;
	if (CFG.latency) {
		latency_slab_free((__u64)ptr, TP_KMEM_CACHE_FREE);
		if (clone)
			latency_forget(clone);
		return 0;
	}
	if (!tracked_any)
		return 0;
	slab_freed((__u64)ptr);
	if (clone)
		slab_freed(clone);
	return 0;
}

/*
 * The skb's own memory freed, seen in the kernel's skb free functions
 * (kfree_skbmem and the like, through kprobe.multi; bpf/progs/functions.bpf.h):
 * there each skb, an fclone pair's clone too, has a free of its own, and only
 * skbs enter, where kmem_cache_free is every slab free on the machine.
 * `func`: the function, which names the end of a --latency measurement.
 */
static __always_inline int on_skb_memory_free(__u64 func, __u64 skb)
{
	if (!TRACING)
		return 0;
	if (CFG.latency)
		latency_slab_free(skb, func);
	else if (tracked_any)
		slab_freed(skb);
	return 0;
}

#endif /* SKBTRAIL_LIFECYCLE_BPF_H */
