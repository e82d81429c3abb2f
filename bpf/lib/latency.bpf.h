/* SPDX-License-Identifier: GPL-2.0 */
/*
 * --latency: stack latency measured in the kernel. A packet's measurement
 * starts at the first hook of the matcher set (hook_flags SETTING_MATCH;
 * TypeScript marks every planned hook without --trace-matcher) where it
 * passes the filters, and ends at its free (skb:kfree_skb, skb:consume_skb,
 * the slab free) or, with --trace-free, at a hook marked SETTING_END. Only
 * a packet at or above --min-latency costs a ring-buffer record; with
 * --latency-summary none does: it is counted in a log2 histogram. The
 * per-skb state is an LRU map: a flood evicts old measurements, it never
 * fills up. A measured skb is parsed again at each hook only to see whether
 * the kernel reused it for another packet unseen.
 */
#ifndef SKBTRAIL_LATENCY_BPF_H
#define SKBTRAIL_LATENCY_BPF_H

/* skb address → the measurement on its way (the record it may become). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, struct latency_event);
} lat_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lat_hist SEC(".maps");

/* Per-CPU room to build a new measurement (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct latency_event);
} lat_scratch SEC(".maps");

/* Set once a measurement started: until then frees look nothing up. */
volatile __u32 lat_any;

/* The measurement of `key` ends at `now`: report or count it if slow enough, then forget it. */
static __always_inline void lat_finish(__u64 key, struct latency_event *m, const struct hit *h, __u64 hook, __u64 now)
{
	__u64 latency;

	m->hooks++;
	m->end_hook = hook;
	m->end_ns = now;
	m->end_flags = h ? h->flags : HOOK_FREE;
	if (h && (h->flags & HOOK_DROP)) {
		m->location = h->location;
		m->reason = h->reason;
	}
	latency = (CFG.latency_free ? now : m->last_ns) - m->first_ns;
	m->latency_ns = latency;
	if (latency >= CFG.latency_min_ns) {
		if (CFG.latency_summary) {
			slot_add(&lat_hist, log2_slot(latency / 1000, LAT_BUCKETS - 1), 1);
			slot_add(&lat_hist, LAT_SUM_US, latency / 1000);
		} else {
			m->hdr.time_ns = now;
			m->hdr.cpu = bpf_get_smp_processor_id();
			output(m, sizeof(*m));
		}
	}
	bpf_map_delete_elem(&lat_start, &key);
}

/* Another TCP segment of the same flow: an skb keeps its sequence number along its path. */
static __always_inline bool other_segment(const struct packet *was, const struct packet *now)
{
	return was->l4_proto == IPPROTO_TCP && (was->parsed & PKT_L4) && (now->parsed & PKT_L4) && was->tcp_seq != now->tcp_seq;
}

/* A hook saw `skb`: start, extend or end its measurement. */
static __always_inline __u64 latency_hit(struct sk_buff *skb, const struct hit *h)
{
	__u64 key = (__u64)skb;
	__u64 hook = h->func ? h->func : h->tracepoint;
	struct latency_event *m = 0;
	__u32 zero = 0;
	__u8 settings;
	bool end;
	__u64 now;

	/* A return is the same hook again, not a step of the path. */
	if (h->phase == PHASE_RETURN)
		return 0;
	settings = hook_settings(h);
	end = CFG.latency_custom_end ? (settings & SETTING_END) : (h->flags & HOOK_FREE);
	if (lat_any)
		m = bpf_map_lookup_elem(&lat_start, &key);
	now = bpf_ktime_get_ns();
	if (m) {
		/* As in on_skb(): the kernel may free an skb where no hook sees it
		 * (GRO's per-CPU skb cache) and reuse it for the reply, which shows
		 * the reverse of the addresses last seen, or for the next segment of
		 * the same flow (a TCP segment consumed through skb_attempt_defer_free:
		 * another sequence number). That measurement is stale: this is
		 * another packet. */
		struct latency_event *tmp = bpf_map_lookup_elem(&lat_scratch, &zero);
		__u32 flow;

		if (!tmp)
			return 0;
		__builtin_memset(&tmp->pkt, 0, sizeof(tmp->pkt));
		parse_skb(skb, &tmp->pkt, false);
		flow = flow_hash(&tmp->pkt, false);
		if ((tmp->pkt.parsed & PKT_L3) && ((m->flow != flow && m->flow == flow_hash(&tmp->pkt, true)) ||
						   (m->flow == flow && other_segment(&m->pkt, &tmp->pkt)))) {
			bpf_map_delete_elem(&lat_start, &key);
			m = 0;
		} else {
			m->flow = flow;
		}
	}
	if (m) {
		if (end) {
			lat_finish(key, m, h, hook, now);
		} else if (h->flags & HOOK_FREE) {
			/* --trace-free: freed before reaching an end hook: not a path the user asked for. */
			bpf_map_delete_elem(&lat_start, &key);
		} else {
			m->last_hook = hook;
			m->last_ns = now;
			m->hooks++;
		}
		return 0;
	}
	if (!(settings & SETTING_MATCH) || end || (h->flags & HOOK_FREE))
		return 0;
	m = bpf_map_lookup_elem(&lat_scratch, &zero);
	if (!m)
		return 0;
	__builtin_memset(m, 0, sizeof(*m));
	parse_skb(skb, &m->pkt, true);
	if (!headers_match(&m->pkt))
		goto filtered;
	fill_meta(skb, &m->pkt, &m->meta);
	if (!meta_matches(&m->meta))
		goto filtered;
	fill_header(&m->hdr, EVENT_LATENCY, sizeof(*m));
	m->first_hook = hook;
	m->last_hook = hook;
	m->first_ns = now;
	m->last_ns = now;
	m->hooks = 1;
	m->flow = flow_hash(&m->pkt, false);
	bpf_map_update_elem(&lat_start, &key, m, BPF_ANY);
	if (!lat_any)
		lat_any = 1;
	return 0;
filtered:
	count(STAT_FILTERED);
	return 0;
}

/* The memory of an skb being measured freed (`hook`: where, see on_skb_memory_free()): the end of its life where no skb tracepoint fired. */
static __always_inline void latency_slab_free(__u64 key, __u64 hook)
{
	struct latency_event *m;

	if (!lat_any)
		return;
	m = bpf_map_lookup_elem(&lat_start, &key);
	if (!m)
		return;
	if (CFG.latency_custom_end)
		bpf_map_delete_elem(&lat_start, &key);
	else
		lat_finish(key, m, 0, hook, bpf_ktime_get_ns());
}

/* A TCP clone ended with its fclone pair (see fclone_of()): no record, as
 * its pair goes later than the packet did (once acknowledged); forgotten,
 * so the next skb at its address is timed from its own first hook. */
static __always_inline void latency_forget(__u64 key)
{
	if (lat_any)
		bpf_map_delete_elem(&lat_start, &key);
}

#endif /* SKBTRAIL_LATENCY_BPF_H */
