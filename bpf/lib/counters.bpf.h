/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Counting in the kernel: per-CPU counters created on first use, calls per
 * hook (--func-stats), the records-per-second budget (--rate-limit), and
 * histograms in per-CPU arrays of u64 (--monitor's and --sock's RTT,
 * --latency-summary). Used by the hook programs of --basic, --monitor,
 * --sock and --latency.
 */
#ifndef SKBTRAIL_COUNTERS_BPF_H
#define SKBTRAIL_COUNTERS_BPF_H

/* --func-stats: calls per hook, keyed like hook_flags (function address or
 * tracepoint id); TypeScript creates the entries, programs only count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} func_stats SEC(".maps");

/* --rate-limit: records written in the current second (all CPUs). */
__u64 rate_window_ns;
__u64 rate_count;

static __always_inline bool rate_allows(__u64 now)
{
	if (!CFG.rate_limit)
		return true;
	if (now - rate_window_ns >= 1000000000ULL) {
		rate_window_ns = now;
		rate_count = 0;
	}
	/* The old value of an atomic add needs a newer BPF ISA than skbtrail
	 * builds for: add, then read (a race lets a few more through). */
	__sync_fetch_and_add(&rate_count, 1);
	return rate_count <= CFG.rate_limit;
}

static __always_inline void func_stat(__u64 key)
{
	__u64 *calls = bpf_map_lookup_elem(&func_stats, &key);

	if (calls)
		*calls += 1;
}

/* Adds one to a per-CPU counter, creating it; a full map counts in STAT_MAP_FULL. */
static __always_inline void count_in(void *map, const void *key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(map, key);

	if (v) {
		*v += 1;
		return;
	}
	if (!bpf_map_update_elem(map, key, &one, BPF_NOEXIST))
		return;
	/* Another CPU created it meanwhile: this CPU's slot exists now. */
	v = bpf_map_lookup_elem(map, key);
	if (v)
		*v += 1;
	else
		count(STAT_MAP_FULL);
}

/* Adds `n` to slot `slot` of a histogram: a per-CPU array of u64. */
static __always_inline void slot_add(void *map, __u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &slot);

	if (v)
		*v += n;
}

/* A log2 histogram's slot of `v`: floor(log2(v)) for v >= 2, else 0; at most `last`. */
static __always_inline __u32 log2_slot(__u64 v, __u32 last)
{
	__u32 r = 0;

	if (v < 2)
		return 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r < last ? r : last;
}

#endif /* SKBTRAIL_COUNTERS_BPF_H */
