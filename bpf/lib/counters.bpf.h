/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Counting in the kernel: per-CPU counters created on first use, calls per
 * hook (--func-stats), and the records-per-second budget (--rate-limit).
 * Used by the hook programs of --basic and by --monitor.
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

#endif /* SKBTRAIL_COUNTERS_BPF_H */
