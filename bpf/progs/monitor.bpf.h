/* SPDX-License-Identifier: GPL-2.0 */
/*
 * --monitor: only what is abnormal, counted in the kernel, written to the
 * ring only when it is to be printed.
 *
 *   skb:kfree_skb             drops, by reason, location, protocol, interface
 *                             and namespace; netfilter drops by family, hook,
 *                             table and chain
 *   tcp:tcp_send_reset        resets sent, by reason (6.10+)
 *   tcp:tcp_receive_reset     resets received, by the socket's TCP state
 *   tcp:tcp_cong_state_set    retransmission timeouts: TCP enters the loss
 *                             state (6.2+); tcp_retransmit_timer where the
 *                             kernel lacks it and has function hooks
 *   tcp:tcp_retransmit_skb    retransmissions (counted only)
 *   sock:sock_rcvqueue_full,  socket receive queues overflowing
 *   udp:udp_fail_queue_rcv_skb
 *   tcp:tcp_probe             RTT samples: a histogram, and records over
 *                             --tcp-rtt / --tcp-srtt
 *   nft_do_chain (function)   the table and chain of a netfilter drop, where
 *                             the kernel has kprobes or fentry
 *
 * Counting costs the same at any rate: a per-CPU hash lookup per event
 * (mon_drops, mon_nf, mon_counts, mon_rtt), never a record. Records go to
 * the ring only for the first event of its kind and destination on a CPU
 * (mon_print), or the first after --aggregate seconds of quiet; TypeScript
 * reads mon_print to say how many more there were, and the counting maps
 * for /metrics.
 */
#ifndef SKBTRAIL_MONITOR_BPF_H
#define SKBTRAIL_MONITOR_BPF_H

#define NFPROTO_ARP 3
#define NFPROTO_IPV4 2
#define NFPROTO_IPV6 10
#define NF_VERDICT_MASK 0xff
#define NF_DROP 0
#define MON_STACK_DEPTH 16

/* Sized by TypeScript before load (--metrics-max-series). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_count_key);
	__type(value, __u64);
} mon_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct nf_count_key);
	__type(value, __u64);
} mon_nf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct mon_count_key);
	__type(value, __u64);
} mon_counts SEC(".maps");

/* One line per key and quiet window: LRU, so a scan of many destinations
 * evicts old keys instead of failing. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct print_key);
	__type(value, struct print_state);
} mon_print SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RTT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} mon_rtt SEC(".maps");

/* nft_do_chain's chain and hook state per thread, for the drop that follows
 * in the same call (6.12+ frees inside it) or right after it (NF_DROP). */
struct nft_call {
	__u64 chain;
	__u64 state;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct nft_call);
} mon_nft SEC(".maps");

/* Per-CPU room for a record, a netfilter key and a stack. */
struct mon_scratch {
	struct monitor_event e;
	struct nf_count_key nf_key;
	__u64 stack[MON_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mon_scratch);
} mon_scratch SEC(".maps");

static __always_inline void count_what(__u32 what, __u32 value)
{
	struct mon_count_key k = { .what = what, .value = value };

	count_in(&mon_counts, &k);
}

/*
 * Whether this occurrence is printed: the first of its key on this CPU, or
 * the first after a quiet window. `*s`: the key's state (NULL: not seen yet).
 */
static __always_inline bool print_quiet(const struct print_key *k, __u64 now, struct print_state **s)
{
	*s = bpf_map_lookup_elem(&mon_print, k);
	return !*s || now - (*s)->last_ns >= CFG.aggregate_ns;
}

/*
 * Counts the occurrence, after its record (if any) went to the ring: a
 * reader that reads these counts and then finds the ring empty has read
 * every record they stand for (Repeats in src/events/monitor.ts).
 */
static __always_inline void print_counted(const struct print_key *k, struct print_state *s, __u64 now)
{
	if (s) {
		s->count += 1;
		s->last_ns = now;
		return;
	}
	struct print_state first = { .count = 1, .last_ns = now };

	bpf_map_update_elem(&mon_print, k, &first, BPF_ANY);
}

static __always_inline struct mon_scratch *mon_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mon_scratch, &zero);
}

/* What a program knows about the event, for its record. */
struct mon_hit {
	__u64 location;
	__u64 nf_caller;
	__u32 tracepoint;
	__u32 reason;
	__s32 info;
	__u32 srtt_us;
	__u32 rtt_us;
	__u8 what;
	__u8 flags;
	__u8 sk_state;
	__u8 from_sock;
	__u8 has_nf;
};

/* The print key of the event in `e` (packet and meta filled). */
static __always_inline void print_key_of(struct print_key *k, const struct monitor_event *e, const struct mon_hit *h)
{
	const struct packet *pkt = &e->nf.hook.pkt;

	__builtin_memset(k, 0, sizeof(*k));
	k->location = h->location;
	k->reason = h->reason;
	k->netns = e->nf.hook.meta.netns;
	k->l3_proto = pkt->l3_proto;
	k->l4_proto = pkt->l4_proto;
	k->what = h->what;
	k->dport = pkt->dport;
	__builtin_memcpy(k->daddr, pkt->daddr, 16);
}

/* Writes the event's record. */
static __always_inline void mon_write(struct monitor_event *e, const struct mon_hit *h, __u64 now)
{
	struct hook_event *he = &e->nf.hook;

	fill_header(&he->hdr, EVENT_MONITOR, sizeof(*e));
	he->hdr.time_ns = now;
	he->meta.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(he->meta.comm, sizeof(he->meta.comm));
	he->ctx_id = 0;
	he->func = 0;
	he->retval = 0;
	he->skb2 = 0;
	he->location = h->location;
	he->tracepoint = h->tracepoint;
	he->reason = h->reason;
	he->info[0] = h->info;
	he->info[1] = 0;
	he->stack_id = -1;
	he->phase = PHASE_ENTRY;
	he->flags = h->flags;
	if (!h->has_nf)
		__builtin_memset(&e->nf.nf, 0, sizeof(e->nf.nf));
	e->nf_caller = h->nf_caller;
	e->srtt_us = h->srtt_us;
	e->rtt_us = h->rtt_us;
	e->what = h->what;
	e->sk_state = h->sk_state;
	e->from_sock = h->from_sock;
	e->has_nf = h->has_nf;
	e->pad = 0;
	output(e, sizeof(*e));
}

/* Counts the event for printing and writes its record when it is printed. */
static __always_inline void mon_record(struct monitor_event *e, const struct mon_hit *h)
{
	struct print_state *s;
	struct print_key k;
	__u64 now = bpf_ktime_get_ns();

	if (CFG.func_stats)
		return;
	print_key_of(&k, e, h);
	if (print_quiet(&k, now, &s)) {
		if (rate_allows(now))
			mon_write(e, h, now);
		else
			count(STAT_RATE_LIMITED);
	}
	print_counted(&k, s, now);
}

/* Where the skb is: interface, namespace, mark (no process name: that is
 * read only for a record). */
static __always_inline void skb_where(struct sk_buff *skb, struct skb_meta *meta)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct net *net = 0;

	__builtin_memset(meta, 0, sizeof(*meta));
	meta->skb = (__u64)skb;
	meta->len = BPF_CORE_READ(skb, len);
	meta->mark = BPF_CORE_READ(skb, mark);
	if (CFG.pid)
		meta->pid = bpf_get_current_pid_tgid() >> 32;
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

/* Some filter looks at where the packet is (constant: CFG is read-only). */
static __always_inline bool meta_filtered(void)
{
	return CFG.netns || CFG.pid || CFG.mark_mask || CFG.ifname[0];
}

/* The packet and meta of an skb, filtered. False: a filter rejected it. */
static __always_inline bool mon_skb(struct monitor_event *e, struct sk_buff *skb)
{
	struct packet *pkt = &e->nf.hook.pkt;

	__builtin_memset(pkt, 0, sizeof(*pkt));
	parse_skb(skb, pkt, false);
	if (!headers_match(pkt))
		return false;
	skb_where(skb, &e->nf.hook.meta);
	return meta_matches(&e->nf.hook.meta);
}

/* A socket's connection as a packet (lib/sock.bpf.h): --monitor's socket events are all TCP. */
static __always_inline bool mon_sock(struct monitor_event *e, const struct sock *sk)
{
	return sock_connection(&e->nf.hook.pkt, &e->nf.hook.meta, sk, IPPROTO_TCP);
}

static __always_inline bool reason_printed(__u32 reason)
{
	__u32 word = reason >> 6;

	if (reason >= 256)
		return true;
	barrier_var(word);
	return CFG.printed_reasons[word & 3] & (1ULL << (reason & 63));
}

/* The nftables chain that is dropping the packet (function hooks), or the
 * caller of nf_hook_slow in the drop's stack. */
static __always_inline void mon_netfilter_drop(void *ctx, struct mon_scratch *s, struct mon_hit *h)
{
	struct nf_count_key *k = &s->nf_key;
	__u64 tid = bpf_get_current_pid_tgid();
	/*
	 * nft_do_chain's call, recorded only where it is hooked. Elsewhere the
	 * nftables types may have no BTF (nf_tables not loaded yet, or no module
	 * BTF before 5.11), and their CO-RE reads must be dead code for the
	 * program to load.
	 */
	struct nft_call *call = CFG.nft_hooked ? bpf_map_lookup_elem(&mon_nft, &tid) : NULL;
	__u16 l3 = s->e.nf.hook.pkt.l3_proto;

	__builtin_memset(k, 0, sizeof(*k));
	if (call) {
		struct nf_details d = { (void *)call->state, (void *)call->chain };
		struct nf_info *nf = &s->e.nf.nf;

		__builtin_memset(nf, 0, sizeof(*nf));
		nf_fill(nf, &d);
		bpf_map_delete_elem(&mon_nft, &tid);
		k->family = nf->family;
		k->hook = nf->hook;
		k->has_hook = 1;
		__builtin_memcpy(k->table, nf->table, sizeof(k->table));
		__builtin_memcpy(k->chain, nf->chain, sizeof(k->chain));
		h->has_nf = 1;
	} else {
		k->family = l3 == ETH_P_IP ? NFPROTO_IPV4 : l3 == ETH_P_IPV6 ? NFPROTO_IPV6 : l3 == ETH_P_ARP ? NFPROTO_ARP : 0;
		if (CFG.nf_hook_slow[0]) {
			long n = bpf_get_stack(ctx, s->stack, sizeof(s->stack), 0);

#pragma unroll
			for (int i = 0; i < MON_STACK_DEPTH - 1; i++) {
				if ((i + 1) * 8 >= n)
					break;
				if (s->stack[i] >= CFG.nf_hook_slow[0] && s->stack[i] < CFG.nf_hook_slow[1]) {
					k->caller = s->stack[i + 1];
					break;
				}
			}
		}
		h->nf_caller = k->caller;
	}
	count_in(&mon_nf, k);
}

static __always_inline int mon_kfree_skb(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason)
{
	struct mon_scratch *s;
	struct drop_count_key k;

	if (!TRACING)
		return 0;
	if (CFG.func_stats)
		func_stat(TP_KFREE_SKB);
	if (!reason_selected(reason)) {
		count(STAT_FILTERED);
		return 0;
	}
	s = mon_scratch_get();
	if (!s)
		return 0;
	if (!mon_skb(&s->e, skb)) {
		count(STAT_FILTERED);
		return 0;
	}
	__builtin_memset(&k, 0, sizeof(k));
	k.location = location;
	k.reason = reason;
	k.netns = s->e.nf.hook.meta.netns;
	k.l3_proto = s->e.nf.hook.pkt.l3_proto;
	k.l4_proto = s->e.nf.hook.pkt.l4_proto;
	__builtin_memcpy(k.ifname, s->e.nf.hook.meta.ifname, sizeof(k.ifname));
	count_in(&mon_drops, &k);

	struct mon_hit h = {
		.what = MON_DROP,
		.tracepoint = TP_KFREE_SKB,
		.flags = HOOK_DROP | HOOK_FREE,
		.location = location,
		.reason = reason,
	};

	/* A netfilter drop: by its reason, or before 5.17 (no reasons) by its location in nf_hook_slow. */
	if (CFG.nf_drop_reason ? reason == CFG.nf_drop_reason : location >= CFG.nf_hook_slow[0] && location < CFG.nf_hook_slow[1])
		mon_netfilter_drop(ctx, s, &h);
	if (reason_printed(reason))
		mon_record(&s->e, &h);
	return 0;
}

/* Same shapes as the drop monitor's kfree_skb programs (drop.bpf.h). */
SEC("tp_btf/kfree_skb")
int mon_drop_reason_btf(__u64 *ctx)
{
	return mon_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2]);
}

SEC("raw_tp/kfree_skb")
int mon_drop_reason_raw(__u64 *ctx)
{
	return mon_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2]);
}

SEC("tp_btf/kfree_skb")
int mon_drop_noreason_btf(__u64 *ctx)
{
	return mon_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], 0);
}

SEC("raw_tp/kfree_skb")
int mon_drop_noreason_raw(__u64 *ctx)
{
	return mon_kfree_skb(ctx, (struct sk_buff *)ctx[0], ctx[1], 0);
}

/* ---- TCP resets ---------------------------------------------------------- */

/* The packet that caused the reset, or the socket's connection when there is none. */
static __always_inline int mon_reset_sent(const struct sock *sk, struct sk_buff *skb, __u32 reason)
{
	struct mon_scratch *s;

	if (!TRACING)
		return 0;
	if (CFG.func_stats)
		func_stat(TP_TCP_SEND_RESET);
	s = mon_scratch_get();
	if (!s)
		return 0;
	struct mon_hit h = { .what = MON_RESET_SENT, .tracepoint = TP_TCP_SEND_RESET, .reason = reason, .info = (__s32)reason };

	if (skb) {
		if (!mon_skb(&s->e, skb))
			goto filtered;
	} else if (sk) {
		if (!mon_sock(&s->e, sk))
			goto filtered;
		h.from_sock = 1;
	} else {
		return 0;
	}
	if (sk)
		h.sk_state = BPF_CORE_READ(sk, __sk_common.skc_state);
	count_what(MON_RESET_SENT, reason);
	mon_record(&s->e, &h);
	return 0;
filtered:
	count(STAT_FILTERED);
	return 0;
}

/* (sk, skb, reason) from 6.10; (sk, skb) before: the reason is unknown (~0). */
TP_VARIANT(tcp_send_reset, mon_reason, mon_reset_sent((void *)ctx[0], (void *)ctx[1], (__u32)ctx[2]))
TP_VARIANT(tcp_send_reset, mon_noreason, mon_reset_sent((void *)ctx[0], (void *)ctx[1], ~0U))

static __always_inline int mon_socket_event(const struct sock *sk, __u8 what, __u32 tracepoint)
{
	struct mon_scratch *s;
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	if (!TRACING || !sk)
		return 0;
	if (CFG.func_stats)
		func_stat(tracepoint);
	s = mon_scratch_get();
	if (!s)
		return 0;
	if (!mon_sock(&s->e, sk)) {
		count(STAT_FILTERED);
		return 0;
	}
	struct mon_hit h = {
		.what = what,
		.tracepoint = tracepoint,
		.from_sock = 1,
		.sk_state = BPF_CORE_READ(sk, __sk_common.skc_state),
		.srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3,
	};

	/* Resets received are told apart by the state they hit (SYN_SENT: refused). */
	h.reason = what == MON_RESET_RECEIVED ? h.sk_state : 0;
	count_what(what, h.reason);
	mon_record(&s->e, &h);
	return 0;
}

TP_VARIANT(tcp_receive_reset, mon, mon_socket_event((void *)ctx[0], MON_RESET_RECEIVED, TP_TCP_RECEIVE_RESET))

/* ---- retransmissions and timeouts --------------------------------------- */

/* tcp_set_ca_state(sk, TCP_CA_Loss) comes from tcp_enter_loss: a retransmission
 * timeout (rarely SACK reneging or a smaller path MTU). */
static __always_inline int mon_ca_state(const struct sock *sk, __u8 state)
{
	if (state != CFG.ca_loss)
		return 0;
	return mon_socket_event(sk, MON_RTO, TP_TCP_CONG_STATE_SET);
}

TP_VARIANT(tcp_cong_state_set, mon, mon_ca_state((void *)ctx[0], (__u8)ctx[1]))

/* Where tcp_cong_state_set is missing (before 6.2): the timer function. */
SEC("kprobe/tcp_retransmit_timer")
int kprobe_mon_retransmit_timer(struct pt_regs *ctx)
{
	return mon_socket_event((void *)PT_REGS_PARM1(ctx), MON_RTO, TP_TCP_RETRANSMIT_TIMER);
}

SEC("fentry/tcp_retransmit_timer")
int fentry_mon_retransmit_timer(__u64 *ctx)
{
	mon_socket_event((void *)ctx[0], MON_RTO, TP_TCP_RETRANSMIT_TIMER);
	return 0;
}

static __always_inline int mon_retransmit(const struct sock *sk)
{
	struct mon_scratch *s;

	if (!TRACING || !sk)
		return 0;
	if (CFG.func_stats)
		func_stat(TP_TCP_RETRANSMIT_SKB);
	s = mon_scratch_get();
	if (!s)
		return 0;
	if (!mon_sock(&s->e, sk)) {
		count(STAT_FILTERED);
		return 0;
	}
	count_what(MON_RETRANSMIT, 0);
	return 0;
}

TP_VARIANT(tcp_retransmit_skb, mon, mon_retransmit((void *)ctx[0]))

/* ---- socket receive queues ----------------------------------------------- */

static __always_inline int mon_rcvqueue_full(struct sk_buff *skb, __u32 tracepoint, bool print)
{
	struct mon_scratch *s;

	if (!TRACING)
		return 0;
	if (CFG.func_stats)
		func_stat(tracepoint);
	s = mon_scratch_get();
	if (!s)
		return 0;
	if (skb && !mon_skb(&s->e, skb)) {
		count(STAT_FILTERED);
		return 0;
	}
	__u8 proto = skb ? s->e.nf.hook.pkt.l4_proto : IPPROTO_UDP;

	count_what(MON_RCVQ_FULL, proto);
	/* UDP's overflow is also a drop (SOCKET_RCVBUFF): printed once, there. */
	if (print && skb) {
		struct mon_hit h = { .what = MON_RCVQ_FULL, .tracepoint = tracepoint };

		mon_record(&s->e, &h);
	}
	return 0;
}

TP_VARIANT(sock_rcvqueue_full, mon, mon_rcvqueue_full((void *)ctx[1], TP_SOCK_RCVQUEUE_FULL, true))
/* (rc, sk, skb) from 6.8; (rc, sk) before */
TP_VARIANT(udp_fail_queue_rcv_skb, mon_skb, mon_rcvqueue_full((void *)ctx[2], TP_UDP_FAIL_QUEUE_RCV_SKB, false))
TP_VARIANT(udp_fail_queue_rcv_skb, mon_noskb, mon_rcvqueue_full(0, TP_UDP_FAIL_QUEUE_RCV_SKB, false))

/* ---- RTT ------------------------------------------------------------------ */

static __always_inline void rtt_observe(__u32 rtt_us)
{
	static const __u32 bounds[RTT_BOUNDS] = {
		RTT_LE_0, RTT_LE_1, RTT_LE_2, RTT_LE_3, RTT_LE_4, RTT_LE_5, RTT_LE_6,
		RTT_LE_7, RTT_LE_8, RTT_LE_9, RTT_LE_10, RTT_LE_11, RTT_LE_12, RTT_LE_13,
	};
	__u32 slot = RTT_INF;

#pragma unroll
	for (int i = RTT_BOUNDS - 1; i >= 0; i--)
		if (rtt_us <= bounds[i])
			slot = i;
	slot_add(&mon_rtt, slot, 1);
	slot_add(&mon_rtt, RTT_SUM_US, rtt_us);
}

/*
 * tcp:tcp_probe(sk, skb) runs for each segment an established connection
 * receives, before the ACK is processed. A segment that acknowledges new
 * data yields an RTT sample; the socket holds the previous one
 * (rack.rtt_us: the RTT of the most recently acknowledged packet), which is
 * what is observed: one sample late, never invented.
 */
static __always_inline int mon_tcp_probe(const struct sock *sk, struct sk_buff *skb)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct mon_scratch *s;
	__u32 rtt, srtt;

	if (!TRACING || !sk || !skb)
		return 0;
	if (CFG.func_stats)
		func_stat(TP_TCP_PROBE);
	s = mon_scratch_get();
	if (!s)
		return 0;
	struct packet *pkt = &s->e.nf.hook.pkt;

	/* Every segment of every connection comes here: no STAT_FILTERED, and
	 * the skb's metadata is read only for a filter that needs it. */
	if (!acks_new_data(tp, skb, pkt) || !headers_match(pkt))
		return 0;
	if (meta_filtered()) {
		struct net *net = BPF_CORE_READ(sk, __sk_common.skc_net.net);

		skb_where(skb, &s->e.nf.hook.meta);
		/* The connection's namespace is the socket's: a segment TCP
		 * receives may no longer say (its dev is gone by then). */
		s->e.nf.hook.meta.netns = net ? BPF_CORE_READ(net, ns.inum) : 0;
		if (!meta_matches(&s->e.nf.hook.meta))
			return 0;
	}
	rtt = BPF_CORE_READ(tp, rack.rtt_us);
	if (!rtt)
		return 0;
	srtt = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (CFG.rtt_hist)
		rtt_observe(rtt);
	if (!CFG.rtt_events || rtt < CFG.rtt_min_us || srtt < CFG.srtt_min_us)
		return 0;
	if (!mon_sock(&s->e, sk))
		return 0;
	struct mon_hit h = {
		.what = MON_RTT,
		.tracepoint = TP_TCP_PROBE,
		.from_sock = 1,
		.sk_state = BPF_CORE_READ(sk, __sk_common.skc_state),
		.srtt_us = srtt,
		.rtt_us = rtt,
	};

	count_what(MON_RTT, 0);
	mon_record(&s->e, &h);
	return 0;
}

TP_VARIANT(tcp_probe, mon, mon_tcp_probe((void *)ctx[0], (void *)ctx[1]))

/* ---- nft_do_chain: the table and chain of a netfilter drop ---------------- */

static __always_inline void mon_nft_entry(struct nft_pktinfo *pkt, void *chain)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct nft_call c = { (__u64)chain, (__u64)BPF_CORE_READ(pkt, state) };

	if (!TRACING)
		return;
	if (CFG.func_stats)
		func_stat(TP_NFT_DO_CHAIN);
	bpf_map_update_elem(&mon_nft, &tid, &c, BPF_ANY);
}

/* Kept when the chain drops (the free follows); forgotten otherwise. */
static __always_inline void mon_nft_return(__u32 verdict)
{
	__u64 tid = bpf_get_current_pid_tgid();

	if ((verdict & NF_VERDICT_MASK) != NF_DROP)
		bpf_map_delete_elem(&mon_nft, &tid);
}

SEC("kprobe/nft_do_chain")
int kprobe_mon_nft_do_chain(struct pt_regs *ctx)
{
	mon_nft_entry((void *)PT_REGS_PARM1(ctx), (void *)PT_REGS_PARM2(ctx));
	return 0;
}

SEC("kretprobe/nft_do_chain")
int kretprobe_mon_nft_do_chain(struct pt_regs *ctx)
{
	mon_nft_return((__u32)PT_REGS_RC(ctx));
	return 0;
}

SEC("fentry/nft_do_chain")
int fentry_mon_nft_do_chain(__u64 *ctx)
{
	mon_nft_entry((void *)ctx[0], (void *)ctx[1]);
	return 0;
}

SEC("fexit/nft_do_chain")
int fexit_mon_nft_do_chain(__u64 *ctx)
{
	mon_nft_return((__u32)fexit_ret(ctx));
	return 0;
}

#endif /* SKBTRAIL_MONITOR_BPF_H */
