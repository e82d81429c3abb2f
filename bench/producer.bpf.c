// SPDX-License-Identifier: GPL-2.0
/*
 * Synthetic producer for the ring-buffer benchmark. On every system call
 * entry (raw_tp/sys_enter) of the target process it writes a batch of
 * struct drop_event records into the product's ring ("events", from
 * bpf/lib/ringbuf.bpf.h) with the product's submit(): threshold wakeups,
 * the same per-CPU counters, reserve failures counted in stats[STAT_LOST].
 *
 * The target thread group and the batch size live in the "bench" array map,
 * set from user space (bench/ring.ts) before each run; 0 disables it.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

/* The product's configuration section: submit() reads CFG.wakeup_bytes. */
const volatile struct skbtrail_config CFG SEC(".rodata.cfg") = {};

#include "lib/ringbuf.bpf.h"

struct bench_ctl {
	__u32 tgid;  /* the process whose system calls produce records */
	__u32 batch; /* records per system call */
};

struct {
	__uint(type, 2); /* BPF_MAP_TYPE_ARRAY: kernel_types.h lists only the product's map types */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_ctl);
} bench SEC(".maps");

/* What stays the same within a batch; the callback varies the rest. */
struct batch_ctx {
	__u32 cpu;
	__u32 pid;
	__u64 seq;
	char comm[16];
};

static __u64 next_seq;

static long emit_one(__u32 i, struct batch_ctx *b)
{
	struct drop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 n = b->seq + i;

	if (!e) {
		count(STAT_LOST);
		return 0;
	}
	e->hdr.kind = EVENT_DROP;
	e->hdr.size = sizeof(*e);
	e->hdr.version = EVENT_VERSION;
	e->hdr.flags = 0;
	e->hdr.pad[0] = e->hdr.pad[1] = 0;
	e->hdr.cpu = b->cpu;
	e->hdr.pad2 = 0;
	e->hdr.time_ns = bpf_ktime_get_ns();

	e->meta.skb = 0xffff888100000000ULL + (n << 8);
	e->meta.len = 60 + (n & 511);
	e->meta.mark = 0;
	e->meta.ifindex = 1;
	e->meta.netns = 4026531840U;
	e->meta.pid = b->pid;
	e->meta.ct = 0;
	__builtin_memset(e->meta.pad, 0, sizeof(e->meta.pad));
	__builtin_memset(e->meta.ifname, 0, sizeof(e->meta.ifname));
	e->meta.ifname[0] = 'l';
	e->meta.ifname[1] = 'o';
	__builtin_memcpy(e->meta.comm, b->comm, sizeof(e->meta.comm));

	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	e->pkt.saddr[0] = 10;
	e->pkt.saddr[1] = 0;
	e->pkt.saddr[2] = (n >> 8) & 0xff;
	e->pkt.saddr[3] = n & 0xff;
	e->pkt.daddr[0] = 10;
	e->pkt.daddr[1] = 1;
	e->pkt.daddr[2] = 2;
	e->pkt.daddr[3] = 3;
	e->pkt.l3_proto = 0x0800;
	e->pkt.l4_proto = 17;
	e->pkt.sport = 1024 + (n & 0x7fff);
	e->pkt.dport = 9;
	e->pkt.ip_len = 28 + (n & 511);
	e->pkt.ttl = 64;
	e->pkt.parsed = PKT_L2 | PKT_L3 | PKT_L4;

	e->location = 0xffffffff81a00000ULL + (n & 0xfff);
	e->reason = 2; /* SKB_DROP_REASON_NO_SOCKET */
	e->stack_id = -1;
	submit(e);
	return 0;
}

SEC("raw_tp/sys_enter")
int produce(void *ctx)
{
	__u32 key = 0;
	struct bench_ctl *c = bpf_map_lookup_elem(&bench, &key);
	struct batch_ctx b;

	if (!c || !c->tgid || (bpf_get_current_pid_tgid() >> 32) != c->tgid)
		return 0;
	b.cpu = bpf_get_smp_processor_id();
	b.pid = c->tgid;
	b.seq = __sync_fetch_and_add(&next_seq, c->batch);
	bpf_get_current_comm(b.comm, sizeof(b.comm));
	bpf_loop(c->batch, emit_one, &b, 0);
	return 0;
}
