/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ring buffer every record goes through, and the per-CPU counters.
 * Shared by skbtrail.bpf.c and the benchmark's producer. The including file
 * defines CFG (struct skbtrail_config) before including this.
 */
#ifndef SKBTRAIL_RINGBUF_BPF_H
#define SKBTRAIL_RINGBUF_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized from TypeScript before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);

	if (value)
		*value += 1;
}

/*
 * Submit without waking the reader until enough bytes are pending: a
 * wakeup per record costs far more than decoding it. Wake it once, when the
 * backlog crosses the threshold (a record moves it by less than the window):
 * asking on every record past the threshold, while the reader drains, made
 * the traced traffic pay for a wakeup per packet (bench/README.md,
 * "Wakeups"). The reader also polls every 50 ms, so a lone event still
 * shows up promptly and a missed wakeup costs at most one poll.
 */
#define WAKEUP_WINDOW 1024 /* bytes: more than any record */

static __always_inline __u64 wakeup_flags(void)
{
	__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (pending >= CFG.wakeup_bytes && pending < CFG.wakeup_bytes + WAKEUP_WINDOW)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Submits a record reserved in the ring. */
static __always_inline void submit(void *record)
{
	bpf_ringbuf_submit(record, wakeup_flags());
	count(STAT_EVENTS);
}

/* Copies a record built elsewhere (per-CPU scratch) into the ring. */
static __always_inline int output(void *record, __u64 size)
{
	if (bpf_ringbuf_output(&events, record, size, wakeup_flags())) {
		count(STAT_LOST);
		return 0;
	}
	count(STAT_EVENTS);
	return 0;
}

#endif /* SKBTRAIL_RINGBUF_BPF_H */
