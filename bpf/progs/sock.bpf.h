/* SPDX-License-Identifier: GPL-2.0 */
/*
 * --sock: one record per socket tracepoint, for the sockets the filters
 * keep (the socket's addresses, ports, protocol and namespace, evaluated
 * here: lib/sock.bpf.h). Only tracepoints, so it works on kernels without
 * kprobes or fentry:
 *
 *   sock:inet_sock_set_state    state changes (sk, oldstate, newstate)
 *   tcp:tcp_probe               RTT samples: segments that acknowledge new data
 *   tcp:tcp_retransmit_skb      retransmissions
 *   tcp:tcp_retransmit_synack   SYN-ACK retransmissions (the request socket's addresses)
 *   tcp:tcp_send_reset          resets sent, with the reason from 6.10
 *   tcp:tcp_receive_reset       resets received
 *   tcp:tcp_destroy_sock        the socket is freed
 *   tcp:tcp_cong_state_set      congestion state changes (6.2+)
 *   sock:sock_rcvqueue_full     receive buffer full: a packet dropped
 *   sock:sock_exceed_buf_limit  the protocol's memory limit reached
 *   sock:inet_sk_error_report   an error reported to the application
 *   udp:udp_fail_queue_rcv_skb  a UDP socket could not queue a datagram (its
 *                               receive buffer is full: UDP does not use
 *                               sock:sock_rcvqueue_full)
 *
 * and, where the kernel has kprobes or fentry, the socket functions of the
 * tracer tree's tcp-state, tcp-congestion and tcp-retrans groups (what no
 * tracepoint shows: retransmission timers firing, zero-window and loss
 * probes, SYNs reaching a listener): one record per call, named by the
 * function's address, with the `struct sock *` argument at the position
 * TypeScript found in BTF (SOCK_FUNC_PROGRAMS below).
 *
 * The kernel keeps one bit per socket a filter kept (sock_kept, a bounded
 * LRU); the connections' summaries are made by TypeScript from the records,
 * in a bounded map (src/events/sock.ts). --rtt counts the RTT samples kept
 * in a log2 histogram here (sock_rtt); alone, it attaches only tcp_probe
 * and writes no records (CFG.rtt_events off): a busy host's samples never
 * cross the ring.
 */
#ifndef SKBTRAIL_SOCK_PROGS_BPF_H
#define SKBTRAIL_SOCK_PROGS_BPF_H

/* UAPI TCP states that are not full sockets (sk_fullsock()): their
 * tcp_sock fields must not be read. */
#define TCP_TIME_WAIT 6
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_event);
} sock_scratch SEC(".maps");

/*
 * Sockets the filters kept, so their later events pass too: the kernel
 * gives an automatically bound port back before the move to CLOSE is
 * traced (inet_put_port), and a child socket's port is the listener's
 * until then, so the filters on ports would lose the end of every
 * connection. LRU: a socket whose end was never seen makes room in time.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} sock_kept SEC(".maps");

/* --rtt: the RTT samples kept, per CPU (enum rtt_log2_slots; read by TypeScript every second). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RTT_LOG2_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} sock_rtt SEC(".maps");

static __always_inline void sock_rtt_observe(__u32 rtt_us)
{
	slot_add(&sock_rtt, log2_slot(rtt_us, RTT_LOG2_BUCKETS - 1), 1);
	slot_add(&sock_rtt, RTT_LOG2_COUNT, 1);
	slot_add(&sock_rtt, RTT_LOG2_SUM_US, rtt_us);
}

/* What the tracepoint says beyond its socket. */
struct sock_hit {
	__u64 func;        /* a function hook (tracepoint TP_NONE): its address */
	__u32 tracepoint;
	__s32 arg;
	__s32 old_state;
	__s32 new_state;   /* -1: the socket's own */
	__u8 tcp;          /* a tcp:* tracepoint: the socket is TCP (else read sk_protocol) */
};

static __always_inline struct sock_event *sock_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sock_scratch, &zero);
}

/* nettrace's timer:(kind, time left): the TCP timer pending, the retransmit family's first. */
static __always_inline void sock_timer_read(struct sock_event *e, const struct sock *sk)
{
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
	unsigned long expires;

	e->timer = BPF_CORE_READ(icsk, icsk_pending);
	if (e->timer) {
		expires = BPF_CORE_READ(icsk, icsk_retransmit_timer.expires);
	} else if (BPF_CORE_READ(sk, sk_timer.entry.pprev)) {
		/* As tcp_keepalive_timer tells: SOCK_DEAD (bit 0 of sk_flags) means close() was called.
		 * (At the change to FIN_WAIT2 it still holds the keepalive expiry: re-armed just after.) */
		e->timer = BPF_CORE_READ(sk, __sk_common.skc_flags) & 1 ? SOCK_TIMER_FIN_WAIT2 : SOCK_TIMER_KEEPALIVE;
		expires = BPF_CORE_READ(sk, sk_timer.expires);
	} else {
		return;
	}
	e->timer_jiffies = (__s32)(expires - bpf_jiffies64());
}

/* The socket's counters at this moment; `e->state` is set. */
static __always_inline void sock_read(struct sock_event *e, const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;

	if (e->state == TCP_TIME_WAIT || e->state == TCP_NEW_SYN_RECV)
		return;
	e->wmem_queued = BPF_CORE_READ(sk, sk_wmem_queued);
	e->rmem_alloc = BPF_CORE_READ(sk, sk_backlog.rmem_alloc.counter);
	e->rcvbuf = BPF_CORE_READ(sk, sk_rcvbuf);
	e->sk_err = BPF_CORE_READ(sk, sk_err);
	e->sndbuf = BPF_CORE_READ(sk, sk_sndbuf);
	if (e->state == TCP_LISTEN) {
		e->ack_backlog = BPF_CORE_READ(sk, sk_ack_backlog);
		e->max_ack_backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	}
	if (e->pkt.l4_proto != IPPROTO_TCP)
		return;
	e->tcp = 1;
	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->rtt_us = BPF_CORE_READ(tp, rack.rtt_us);
	e->min_rtt_us = BPF_CORE_READ(tp, rtt_min.s[0].v);
	e->snd_cwnd = BPF_CORE_READ(tp, snd_cwnd);
	e->packets_out = BPF_CORE_READ(tp, packets_out);
	e->retrans_out = BPF_CORE_READ(tp, retrans_out);
	e->total_retrans = BPF_CORE_READ(tp, total_retrans);
	e->segs_out = BPF_CORE_READ(tp, segs_out);
	e->segs_in = BPF_CORE_READ(tp, segs_in);
	e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	e->bytes_received = BPF_CORE_READ(tp, bytes_received);
	e->ca_state = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state);
	e->timeouts = BPF_CORE_READ(icsk, icsk_retransmits);
	sock_timer_read(e, sk);
}

/* Header, process, and the record into the ring. */
static __always_inline void sock_submit(struct sock_event *e, const struct sock_hit *h)
{
	fill_header(&e->hdr, EVENT_SOCK, sizeof(*e));
	e->tracepoint = h->tracepoint;
	e->func = h->func;
	e->arg = h->arg;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	output(e, sizeof(*e));
}

/*
 * `sk` is read whole when `full` (a struct sock), else only its struct
 * sock_common (a request socket). `skb`: tcp_probe's segment, which is
 * recorded only when it acknowledges new data (an RTT sample).
 */
static __always_inline int sock_hit(const struct sock *sk, const struct sock_hit *h, bool full, struct sk_buff *skb)
{
	struct sock_event *e;
	struct skb_meta meta;
	__u8 proto = IPPROTO_TCP, one = 1;
	__u64 key = (__u64)sk;

	if (!TRACING || !sk)
		return 0;
	e = sock_scratch_get();
	if (!e)
		return 0;
	if (skb && !acks_new_data((const struct tcp_sock *)sk, skb, &e->pkt))
		return 0;
	if (!h->tcp)
		proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	if (sock_connection(&e->pkt, &meta, sk, proto)) {
		/* TCP only: tcp_destroy_sock forgets it; another protocol's socket would stay until the LRU drops it.
		 * Not with --rtt alone (no records): only tcp_probe is attached, which sees established
		 * sockets, whose ports are known; nothing would forget the entry. */
		if (CFG.has_filters && full && proto == IPPROTO_TCP && CFG.rtt_events)
			bpf_map_update_elem(&sock_kept, &key, &one, BPF_ANY);
	} else if (!full || !bpf_map_lookup_elem(&sock_kept, &key)) {
		count(STAT_FILTERED);
		return 0;
	}
	/* tcp_probe: an RTT sample (the socket's latest), counted as its record would be. */
	if (skb) {
		__u32 rtt = BPF_CORE_READ((const struct tcp_sock *)sk, rack.rtt_us);

		if (CFG.rtt_hist && rtt)
			sock_rtt_observe(rtt);
		if (!CFG.rtt_events)
			return 0;
	}
	if (h->tracepoint == TP_TCP_DESTROY_SOCK)
		bpf_map_delete_elem(&sock_kept, &key);
	__builtin_memset((void *)e + sizeof(e->hdr) + sizeof(e->pkt), 0, sizeof(*e) - sizeof(e->hdr) - sizeof(e->pkt));
	e->sk = (__u64)sk;
	e->netns = meta.netns;
	e->state = h->new_state >= 0 ? h->new_state : BPF_CORE_READ(sk, __sk_common.skc_state);
	e->old_state = h->old_state;
	if (full)
		sock_read(e, sk);
	sock_submit(e, h);
	return 0;
}

static __always_inline int sock_tp(const struct sock *sk, __u32 tracepoint, __s32 arg, bool tcp)
{
	struct sock_hit h = { .tracepoint = tracepoint, .arg = arg, .new_state = -1, .tcp = tcp };

	return sock_hit(sk, &h, true, 0);
}

static __always_inline int sock_set_state(const struct sock *sk, int old_state, int new_state)
{
	struct sock_hit h = { .tracepoint = TP_INET_SOCK_SET_STATE, .arg = -1, .old_state = old_state, .new_state = new_state };

	return sock_hit(sk, &h, true, 0);
}

/* A change of congestion state; connections set CA_Open when they open: not a change. */
static __always_inline int sock_ca_state(const struct sock *sk, __u8 state)
{
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;

	if (!TRACING || !sk || BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state) == state)
		return 0;
	return sock_tp(sk, TP_TCP_CONG_STATE_SET, state, true);
}

/* An error for the application; none left (0): another report of one already taken. */
static __always_inline int sock_error_report(const struct sock *sk)
{
	int err = sk ? BPF_CORE_READ(sk, sk_err) : 0;

	return err ? sock_tp(sk, TP_INET_SK_ERROR_REPORT, err, false) : 0;
}

/* The socket of the SYN-ACK is the listener: the connection is the request socket's. */
static __always_inline int sock_synack(const struct sock *req)
{
	struct sock_hit h = { .tracepoint = TP_TCP_RETRANSMIT_SYNACK, .arg = -1, .new_state = -1, .tcp = 1 };

	return sock_hit(req, &h, false, 0);
}

/* RTT samples at or above the thresholds (the verifier drops the checks that are off). */
static __always_inline bool rtt_kept(const struct tcp_sock *tp)
{
	if (CFG.rtt_min_us && BPF_CORE_READ(tp, rack.rtt_us) < CFG.rtt_min_us)
		return false;
	if (CFG.srtt_min_us && BPF_CORE_READ(tp, srtt_us) >> 3 < CFG.srtt_min_us)
		return false;
	if (CFG.minrtt_min_us && BPF_CORE_READ(tp, rtt_min.s[0].v) < CFG.minrtt_min_us)
		return false;
	return true;
}

static __always_inline int sock_probe(const struct sock *sk, struct sk_buff *skb)
{
	struct sock_hit h = { .tracepoint = TP_TCP_PROBE, .arg = -1, .new_state = -1, .tcp = 1 };

	if (!skb || !sk || !rtt_kept((const struct tcp_sock *)sk))
		return 0;
	return sock_hit(sk, &h, true, skb);
}

/*
 * A reset with a socket is the socket's; without one (no listener, or a
 * segment no socket expects) it answers `skb`: the connection is that
 * packet's, reversed, so the local side is the source as for sockets.
 */
static __always_inline int sock_reset_sent(const struct sock *sk, struct sk_buff *skb, __s32 reason)
{
	struct sock_hit h = { .tracepoint = TP_TCP_SEND_RESET, .arg = reason, .new_state = -1, .tcp = 1 };
	struct sock_event *e;
	__u8 addr[16];
	__u16 port;

	if (sk)
		return sock_hit(sk, &h, BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_TIME_WAIT, 0);
	if (!TRACING || !skb)
		return 0;
	e = sock_scratch_get();
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	parse_skb(skb, &e->pkt, false);
	__builtin_memcpy(addr, e->pkt.saddr, 16);
	__builtin_memcpy(e->pkt.saddr, e->pkt.daddr, 16);
	__builtin_memcpy(e->pkt.daddr, addr, 16);
	port = e->pkt.sport;
	e->pkt.sport = e->pkt.dport;
	e->pkt.dport = port;
	if (!headers_match(&e->pkt)) {
		count(STAT_FILTERED);
		return 0;
	}
	struct skb_meta meta;

	skb_where(skb, &meta);
	if (!meta_matches(&meta)) {
		count(STAT_FILTERED);
		return 0;
	}
	e->netns = meta.netns;
	e->no_socket = 1;
	sock_submit(e, &h);
	return 0;
}

/*
 * A socket function's call: the socket's addresses, state and counters as
 * at a tracepoint. Which protocol is read from the socket (-t may name any
 * function taking a struct sock *).
 */
static __always_inline int sock_func(__u64 func, const struct sock *sk)
{
	struct sock_hit h = { .func = func, .tracepoint = TP_NONE, .arg = -1, .new_state = -1 };

	return sock_hit(sk, &h, true, 0);
}

/* One set per position of the struct sock * argument; the function's
 * address as in functions.bpf.h (attach cookie, instruction pointer,
 * bpf_get_func_ip, or written into the fentry copy: FUNC_ID_MARK). */
#define SOCK_FUNC_PROGRAMS(n, PARM)                                                            \
	SEC("kprobe.multi")                                                                    \
	int kmulti_sock##n(struct pt_regs *ctx)                                                \
	{                                                                                      \
		return sock_func(bpf_get_attach_cookie(ctx), (void *)PARM(ctx));               \
	}                                                                                      \
	SEC("kprobe")                                                                          \
	int kprobe_sock##n(struct pt_regs *ctx)                                                \
	{                                                                                      \
		return sock_func(kprobe_func(ctx), (void *)PARM(ctx));                          \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fentry_sock##n(__u64 *ctx)                                                         \
	{                                                                                      \
		sock_func(bpf_get_func_ip(ctx), (void *)ctx[n]);                               \
		return 0;                                                                      \
	}                                                                                      \
	SEC("fentry")                                                                          \
	int fentry_id_sock##n(__u64 *ctx)                                                      \
	{                                                                                      \
		__u64 func;                                                                    \
		asm volatile("%0 = " XSTR(FUNC_ID_MARK) " ll" : "=r"(func));                  \
		sock_func(func, (void *)ctx[n]);                                               \
		return 0;                                                                      \
	}

SOCK_FUNC_PROGRAMS(0, PT_REGS_PARM1)
SOCK_FUNC_PROGRAMS(1, PT_REGS_PARM2)
SOCK_FUNC_PROGRAMS(2, PT_REGS_PARM3)

TP_VARIANT(inet_sock_set_state, sock, sock_set_state((void *)ctx[0], (int)ctx[1], (int)ctx[2]))
TP_VARIANT(tcp_probe, sock, sock_probe((void *)ctx[0], (void *)ctx[1]))
TP_VARIANT(tcp_retransmit_skb, sock, sock_tp((void *)ctx[0], TP_TCP_RETRANSMIT_SKB, -1, true))
TP_VARIANT(tcp_retransmit_synack, sock, sock_synack((void *)ctx[1]))
/* (sk, skb, reason) from 6.10; (sk, skb) before */
TP_VARIANT(tcp_send_reset, sock_reason, sock_reset_sent((void *)ctx[0], (void *)ctx[1], (__s32)ctx[2]))
TP_VARIANT(tcp_send_reset, sock_noreason, sock_reset_sent((void *)ctx[0], (void *)ctx[1], -1))
TP_VARIANT(tcp_receive_reset, sock, sock_tp((void *)ctx[0], TP_TCP_RECEIVE_RESET, -1, true))
TP_VARIANT(tcp_destroy_sock, sock, sock_tp((void *)ctx[0], TP_TCP_DESTROY_SOCK, -1, true))
TP_VARIANT(tcp_cong_state_set, sock, sock_ca_state((void *)ctx[0], (__u8)ctx[1]))
TP_VARIANT(sock_rcvqueue_full, sock, sock_tp((void *)ctx[0], TP_SOCK_RCVQUEUE_FULL, -1, false))
/* (sk, prot, allocated, kind) */
TP_VARIANT(sock_exceed_buf_limit, sock, sock_tp((void *)ctx[0], TP_SOCK_EXCEED_BUF_LIMIT, (__s32)ctx[3], false))
TP_VARIANT(inet_sk_error_report, sock, sock_error_report((void *)ctx[0]))
/* (rc, sk) on older kernels, (rc, sk, skb) on newer ones: the same first two */
TP_VARIANT(udp_fail_queue_rcv_skb, sock, sock_tp((void *)ctx[1], TP_UDP_FAIL_QUEUE_RCV_SKB, (__s32)ctx[0], false))

#endif /* SKBTRAIL_SOCK_PROGS_BPF_H */
