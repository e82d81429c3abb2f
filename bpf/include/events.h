/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ONE definition of everything the kernel side and the TypeScript side
 * exchange: ring-buffer records and the read-only configuration.
 *
 * Rules: fixed-width fields, explicit padding, no bitfields, every record
 * starts with struct event_header. build.ts generates src/layout.generated.ts
 * from the BTF of the compiled object; a test fails if that file drifts.
 * Bump EVENT_VERSION whenever a record changes shape.
 */
#ifndef SKBTRAIL_EVENTS_H
#define SKBTRAIL_EVENTS_H

enum event_version {
	EVENT_VERSION = 2, /* 2: event_header.flags and the capture tail (--pcap) */
};

enum event_kind {
	EVENT_DROP = 1, /* skb:kfree_skb seen by the drop monitor */
	EVENT_HOOK = 2, /* a traced function or tracepoint saw a packet */
	EVENT_NF = 3,   /* a netfilter hook: struct nf_event */
	EVENT_MONITOR = 4, /* something abnormal seen by --monitor: struct monitor_event */
	EVENT_SOCK = 5,    /* --sock: a socket tracepoint fired or a socket function was called: struct sock_event */
	EVENT_LATENCY = 6, /* --latency: a packet's path took at least --min-latency: struct latency_event */
};

/* Bits of event_header.flags. */
enum event_flags {
	EVENT_F_CAPTURE = 1, /* struct capture and the packet's bytes follow the kind's struct */
};

/* --pcap: where the captured bytes of a packet start. */
enum capture_link {
	CAPTURE_NONE = 0,     /* no header to start from (early transmit path): nothing captured */
	CAPTURE_ETHERNET = 1, /* the MAC header of an Ethernet or loopback device (LINKTYPE_ETHERNET) */
	CAPTURE_RAW = 2,      /* the network header: IPv4 or IPv6 (LINKTYPE_RAW) */
};

enum capture_limits {
	CAPTURE_MAX = 4096, /* bytes: the largest --snaplen (a record's size is a __u16) */
};

/* Which stage of a traced call a hook event reports. */
enum hook_phase {
	PHASE_ENTRY = 0,
	PHASE_RETURN = 1, /* fexit / kretprobe: retval is valid */
};

/* Bits of hook_event.flags. */
enum hook_flags {
	HOOK_FREE = 1,    /* the skb's life ends here (consume/kfree) */
	HOOK_CLONE = 2,   /* skb2 is a clone that joins the packet's context */
	HOOK_DROP = 4,    /* reason and location describe a drop */
	HOOK_JOINED = 8,  /* the skb is a clone, first seen here, joined to its packet by its shared data */
};

/* Bits of the hook_flags map: per-hook settings made by TypeScript. */
enum hook_setting {
	SETTING_STACK = 1, /* record the kernel stack */
	SETTING_MATCH = 2, /* --trace-matcher: a packet may be matched (start its context or measurement) here */
	SETTING_END = 4,   /* --latency --trace-free: a packet's measurement ends here */
	SETTING_RETURN = 8, /* without --ret: this function's return is traced (a --diag rule reads it) */
};

/*
 * --latency-summary: the lat_hist map. Slot i < LAT_BUCKETS counts packets
 * whose latency in µs is in [2^i, 2^(i+1)) (slot 0: under 2 µs; the last
 * one: everything above); then the sum of the latencies in µs.
 */
enum latency_slots {
	LAT_BUCKETS = 32,
	LAT_SUM_US = 32,
	LAT_SLOTS = 33,
};

/*
 * --sock --rtt: the sock_rtt map, the same log2 buckets over RTT samples
 * (µs) kept by the thresholds; then their count and their sum in µs.
 */
enum rtt_log2_slots {
	RTT_LOG2_BUCKETS = 32,
	RTT_LOG2_COUNT = 32,
	RTT_LOG2_SUM_US = 33,
	RTT_LOG2_SLOTS = 34,
};

/*
 * The tracepoints skbtrail has a program for. TypeScript maps each id to
 * "category:event" (src/tracepoints.ts); function hooks carry the traced
 * function's address instead.
 */
enum tracepoint_id {
	TP_NONE = 0,
	TP_KFREE_SKB = 1,
	TP_CONSUME_SKB = 2,
	TP_NETIF_RECEIVE_SKB = 3,
	TP_NETIF_RX = 4,
	TP_NET_DEV_QUEUE = 5,
	TP_NET_DEV_START_XMIT = 6,
	TP_NET_DEV_XMIT = 7,
	TP_NAPI_GRO_RECEIVE_ENTRY = 8,
	TP_QDISC_ENQUEUE = 9,
	TP_QDISC_DEQUEUE = 10,
	TP_TCP_RETRANSMIT_SKB = 11,
	TP_TCP_SEND_RESET = 12,
	TP_TCP_BAD_CSUM = 13,
	TP_UDP_FAIL_QUEUE_RCV_SKB = 14,
	TP_SOCK_RCVQUEUE_FULL = 15,
	TP_ICMP_SEND = 16,
	TP_SKB_COPY_DATAGRAM_IOVEC = 17,
	TP_TCP_PROBE = 18,
	TP_KMEM_CACHE_FREE = 19, /* a tracked skb's memory went back to the slab */
	TP_TCP_RECEIVE_RESET = 20,
	TP_TCP_CONG_STATE_SET = 21,
	TP_TCP_RETRANSMIT_TIMER = 22, /* the function, where the kernel has no tcp_cong_state_set */
	TP_NFT_DO_CHAIN = 23,         /* the function, for --func-stats of monitor's netfilter hook */
	TP_INET_SOCK_SET_STATE = 24,
	TP_TCP_RETRANSMIT_SYNACK = 25,
	TP_TCP_DESTROY_SOCK = 26,
	TP_SOCK_EXCEED_BUF_LIMIT = 27,
	TP_INET_SK_ERROR_REPORT = 28,
	TP_MAX = 29,
};

/* Set in packet.parsed: which layers the parser decoded. */
enum packet_layers {
	PKT_L2 = 1,
	PKT_L3 = 2,
	PKT_L4 = 4,
};

/* Indexes of the per-CPU counters in the "stats" map. */
enum stat_index {
	STAT_EVENTS = 0,   /* records submitted */
	STAT_LOST = 1,     /* ring buffer full: record not written */
	STAT_FILTERED = 2, /* seen but rejected by a filter */
	STAT_RATE_LIMITED = 3, /* --rate-limit: not written, the second's budget was spent */
	STAT_MAP_FULL = 4,  /* --monitor: a counting map was full; counted here instead */
	STAT_MAX = 5,
};

/*
 * --monitor: what a monitor record or counter is about. Counters are kept in
 * the kernel (per-CPU maps below), records are written only for what is
 * printed: the first of its kind, or the first after a quiet window.
 */
enum monitor_what {
	MON_DROP = 1,           /* skb:kfree_skb */
	MON_RESET_SENT = 2,     /* tcp:tcp_send_reset */
	MON_RESET_RECEIVED = 3, /* tcp:tcp_receive_reset */
	MON_RTO = 4,            /* a retransmission timeout: TCP enters the loss state */
	MON_RCVQ_FULL = 5,      /* sock:sock_rcvqueue_full, udp:udp_fail_queue_rcv_skb */
	MON_RTT = 6,            /* tcp:tcp_probe: RTT over --tcp-rtt / --tcp-srtt */
	MON_RETRANSMIT = 7,     /* tcp:tcp_retransmit_skb (counted only) */
};

/*
 * Upper bounds (µs) of the buckets of the RTT histogram (the mon_rtt map):
 * bucket i counts samples <= RTT_LE_i; then one bucket for larger ones, then
 * the sum of all samples in µs.
 */
enum rtt_bucket_bound {
	RTT_LE_0 = 100,
	RTT_LE_1 = 250,
	RTT_LE_2 = 500,
	RTT_LE_3 = 1000,
	RTT_LE_4 = 2500,
	RTT_LE_5 = 5000,
	RTT_LE_6 = 10000,
	RTT_LE_7 = 25000,
	RTT_LE_8 = 50000,
	RTT_LE_9 = 100000,
	RTT_LE_10 = 250000,
	RTT_LE_11 = 500000,
	RTT_LE_12 = 1000000,
	RTT_LE_13 = 2500000,
};

enum rtt_hist_index {
	RTT_BOUNDS = 14,     /* number of RTT_LE_* bounds */
	RTT_INF = 14,        /* index of the bucket above the last bound */
	RTT_SUM_US = 15,     /* index of the sum of the samples */
	RTT_SLOTS = 16,
};

struct event_header {
	__u16 kind;    /* enum event_kind */
	__u16 size;    /* size of the whole record in bytes, capture tail included */
	__u8 version;  /* EVENT_VERSION */
	__u8 flags;    /* enum event_flags */
	__u8 pad[2];
	__u32 cpu;
	__u32 pad2;
	__u64 time_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
};

/* The packet as parsed from the skb's headers; numbers in host order. */
struct packet {
	__u8 saddr[16];    /* IPv4 in the first 4 bytes; ARP: sender IP */
	__u8 daddr[16];    /* ARP: target IP */
	__u16 l3_proto;    /* ethertype: 0x0800 IPv4, 0x86dd IPv6, 0x0806 ARP */
	__u8 l4_proto;     /* IPPROTO_* */
	__u8 tcp_flags;    /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 */
	__u16 sport;
	__u16 dport;
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u16 ip_len;      /* IPv4 total length; IPv6 payload length + 40 */
	__u16 icmp_id;
	__u16 icmp_seq;
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 arp_op;
	__u16 vlan_id;     /* 0: untagged */
	__u8 ttl;          /* IPv4 TTL / IPv6 hop limit */
	__u8 parsed;       /* enum packet_layers */
	__u8 sk_family;    /* no network layer: the family (AF_*) of the skb's socket, 0 without one */
	__u8 sk_type;      /* and its type (SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_RAW 3, SOCK_SEQPACKET 5) */
};

/*
 * skb_meta.ct, from skb->_nfct: a packet with no connection at a netfilter
 * drop is what nftables calls "ct state invalid" (conntrack found it invalid,
 * or never looked at it).
 */
enum ct_seen {
	CT_UNKNOWN = 0,   /* the kernel keeps no conntrack in skbs (no CONFIG_NF_CONNTRACK) */
	CT_NONE = 1,      /* no connection: nftables' "invalid" */
	CT_UNTRACKED = 2, /* notrack: nftables' "untracked" */
	CT_TRACKED = 3,   /* a connection: new, established or related */
};

/* Facts about the skb and the context it was seen in. */
struct skb_meta {
	__u64 skb;         /* kernel address of the sk_buff */
	__u32 len;         /* skb->len */
	__u32 mark;
	__u32 ifindex;
	__u32 netns;       /* inode of the network namespace */
	__u32 pid;         /* thread group of the current task */
	__u8 ct;           /* enum ct_seen: what connection tracking made of the packet */
	__u8 pad[3];
	char ifname[16];
	char comm[16];
};

struct drop_event {
	struct event_header hdr;
	struct skb_meta meta;
	struct packet pkt;
	__u64 location;    /* return address of the freeing call site */
	__u32 reason;      /* enum skb_drop_reason value of the running kernel */
	__s32 stack_id;    /* id in the "stacks" map, or -1 */
};

/* A traced function or tracepoint saw a packet (lifecycle and basic modes). */
struct hook_event {
	struct event_header hdr;
	struct skb_meta meta;
	struct packet pkt;
	__u64 ctx_id;      /* the packet context the skb belongs to; 0: --pkt-fixed */
	__u64 func;        /* address of the traced function; 0 for tracepoints */
	__s64 retval;      /* PHASE_RETURN: the function's return value */
	__u64 skb2;        /* HOOK_CLONE: the new skb */
	__u64 location;    /* HOOK_DROP/HOOK_FREE: where the skb was freed */
	__u32 tracepoint;  /* enum tracepoint_id */
	__u32 reason;      /* HOOK_DROP: enum skb_drop_reason value */
	__s32 info[2];     /* tracepoint arguments, see bpf/tracepoints.bpf.h */
	__s32 stack_id;    /* id in the "stacks" map, or -1 */
	__u8 phase;        /* enum hook_phase */
	__u8 flags;        /* enum hook_flags */
	__u8 pad[2];
};

/*
 * --latency: one packet whose path, from the first hook of the matcher set
 * to its end (its free, or a --trace-free hook), took at least
 * --min-latency. The packet and meta are as seen at the first hook. Hooks
 * are named as in the hook_flags map: a function's address or an enum
 * tracepoint_id. Also the value of the kernel's per-skb map (lat_start)
 * while the packet is on its way.
 */
struct latency_event {
	struct event_header hdr;
	struct skb_meta meta;
	struct packet pkt;
	__u64 first_hook;
	__u64 last_hook;   /* the last hook before the end */
	__u64 end_hook;    /* the hook that ended the measurement */
	__u64 first_ns;
	__u64 last_ns;
	__u64 end_ns;
	__u64 latency_ns;  /* first to last, or to the end with --latency-free */
	__u64 location;    /* ended by a drop: where */
	__u32 reason;      /* ended by a drop: enum skb_drop_reason value */
	__u32 hooks;       /* hooks seen from the first to the end, both included */
	__u8 end_flags;    /* enum hook_flags of the end (HOOK_FREE, HOOK_DROP) */
	__u8 pad[3];
	__u32 flow;        /* kernel side: flow_hash() of the addresses last seen (a reused skb shows their reverse) */
};

/* Netfilter details of nf_hook_slow / nft_do_chain / ipt_do_table. */
struct nf_info {
	__u8 family;       /* NFPROTO_*: 2 ipv4, 10 ipv6, 3 arp, 7 bridge, 1 inet */
	__u8 hook;         /* NF_INET_*: 0 PRE_ROUTING … 4 POST_ROUTING */
	__u8 table_family; /* NFPROTO_* of the nftables table (inet tables serve ipv4 and ipv6) */
	__u8 hook_count;   /* nf_hook_slow with --hooks: functions registered on the hook */
	__u8 hook_start;   /* index of the first one this call runs */
	__u8 pad[3];
	char table[64];    /* nftables/iptables table name ("" for nf_hook_slow) */
	char chain[64];    /* nftables chain name */
	__u64 hook_funcs[8];
};

struct nf_event {
	struct hook_event hook;
	struct nf_info nf;
};

/*
 * --pcap: the tail of a record whose header has EVENT_F_CAPTURE, right after
 * the struct of its kind (drop_event, hook_event or nf_event), followed by
 * `len` bytes of the packet copied from the skb's linear data.
 */
struct capture {
	__u32 wire_len;    /* the packet's length from where the capture starts */
	__u16 len;         /* bytes that follow: at most the snaplen and the linear data */
	__u8 link;         /* enum capture_link */
	__u8 pad;
};

/*
 * --monitor's record: the hook event (tracepoint, packet, meta, reason,
 * location, info), the netfilter details of a netfilter drop where function
 * hooks name the table and chain, and the socket's view. For events with a
 * socket and no skb (resets received, timeouts, RTT) the packet fields hold
 * the connection: local address and port as source, remote as destination.
 */
struct monitor_event {
	struct nf_event nf;
	__u64 nf_caller;   /* netfilter drop without function hooks: the caller of nf_hook_slow */
	__u32 srtt_us;     /* MON_RTT, MON_RTO: smoothed RTT */
	__u32 rtt_us;      /* MON_RTT: the last RTT sample */
	__u8 what;         /* enum monitor_what */
	__u8 sk_state;     /* TCP state of the socket (0: no socket) */
	__u8 from_sock;    /* the packet fields describe the socket, not an skb */
	__u8 has_nf;       /* nf holds the table and chain that dropped it */
	__u32 pad;
};

/*
 * --sock: one socket tracepoint. The packet fields hold the connection
 * (local address and port as source, remote as destination, the socket's
 * protocol); the tcp_sock fields are read only when `tcp` is set, at the
 * moment of the event.
 */
struct sock_event {
	struct event_header hdr;
	struct packet pkt;
	__u64 sk;          /* the socket's kernel address: the connection's identity while it lives */
	__u32 netns;
	__u32 pid;
	__u32 tracepoint;  /* enum tracepoint_id */
	__s32 arg;         /* reset reason (tcp_send_reset; -1: none given), error (inet_sk_error_report),
	                      new CA state (tcp_cong_state_set), kind (sock_exceed_buf_limit),
	                      rc (udp_fail_queue_rcv_skb: -ENOMEM buffer full, -ENOBUFS memory limit) */
	__u32 srtt_us;     /* smoothed RTT */
	__u32 rtt_us;      /* the last RTT sample (tcp_probe: of the data this segment acknowledges) */
	__u32 min_rtt_us;
	__u32 snd_cwnd;
	__u32 packets_out;
	__u32 retrans_out;
	__u32 total_retrans;
	__u32 segs_out;
	__u32 segs_in;
	__s32 wmem_queued;
	__s32 rmem_alloc;
	__s32 rcvbuf;
	__s32 sndbuf;
	__s32 timer_jiffies; /* until the pending timer fires, in jiffies (negative: overdue) */
	__u64 bytes_acked;
	__u64 bytes_received;
	__u64 func;        /* tracepoint TP_NONE: a socket function was called (--sock's function hooks), its address */
	__u32 ack_backlog; /* a listener: connections waiting in its accept queue... */
	__u32 max_ack_backlog; /* ...and the queue's size (listen()'s backlog) */
	__u8 state;        /* TCP state (inet_sock_set_state: the new one) */
	__u8 old_state;    /* inet_sock_set_state: the state it left */
	__u8 ca_state;     /* enum tcp_ca_state */
	__u8 tcp;          /* a full TCP socket: the tcp_sock fields are valid */
	__u8 no_socket;    /* tcp_send_reset without a socket: the connection is the packet's, reversed */
	__u8 timeouts;     /* retransmission timeouts in a row, unanswered (icsk_retransmits) */
	__u8 timer;        /* enum sock_timer: the TCP timer pending, if any */
	__u8 sk_err;       /* the socket's pending error (errno): ETIMEDOUT at the CLOSE of a connection the kernel gave up on */
	char comm[16];
};

/* sock_event.timer: the kernel's ICSK_TIME_* values, and the socket timer. */
enum sock_timer {
	SOCK_TIMER_NONE = 0,
	SOCK_TIMER_RETRANS = 1,     /* retransmission (also SYN and SYN-ACK) */
	SOCK_TIMER_PROBE0 = 3,      /* zero-window probe */
	SOCK_TIMER_LOSS_PROBE = 5,  /* tail loss probe */
	SOCK_TIMER_REO_TIMEOUT = 6, /* RACK reordering */
	SOCK_TIMER_KEEPALIVE = 16,  /* sk_timer of a socket the application holds */
	SOCK_TIMER_FIN_WAIT2 = 17,  /* sk_timer of a closed (orphaned) socket: its FIN_WAIT2 timeout */
};

/* mon_drops: drops by reason, location, protocol, interface, namespace. */
struct drop_count_key {
	__u64 location;
	__u32 reason;
	__u32 netns;
	__u16 l3_proto;
	__u8 l4_proto;
	__u8 pad[5];
	char ifname[16];
};

/*
 * mon_nf: netfilter drops. With function hooks (nft_do_chain) family, hook,
 * table and chain; with tracepoints only the caller of nf_hook_slow found in
 * the drop's stack (TypeScript names the hook from it) and the packet's family.
 */
struct nf_count_key {
	__u64 caller;
	__u8 family;       /* NFPROTO_* */
	__u8 hook;
	__u8 has_hook;     /* family and hook come from the hook state */
	__u8 pad[5];
	char table[64];
	char chain[64];
};

/* mon_counts: the other counters, e.g. (MON_RESET_SENT, reset reason). */
struct mon_count_key {
	__u32 what;        /* enum monitor_what */
	__u32 value;       /* reset reason, TCP state, IP protocol, or 0 */
};

/* mon_print: one line's aggregation key (a packet's kind, cause and destination). */
struct print_key {
	__u64 location;
	__u32 reason;
	__u32 netns;
	__u16 l3_proto;
	__u8 l4_proto;
	__u8 what;
	__u16 dport;
	__u16 pad;
	__u8 daddr[16];
};

struct print_state {
	__u64 count;       /* occurrences on this CPU */
	__u64 last_ns;     /* the latest of them */
};

/* An IPv4/IPv6 address filter; mask comes from the prefix length (CIDR). */
struct addr_filter {
	__u8 addr[16];
	__u8 mask[16];
	__u8 family;       /* 0: off, 4 or 6 */
	__u8 pad[3];
};

/*
 * Read-only configuration (.rodata): written by TypeScript before load, so
 * the verifier removes the code of every filter that is off.
 */
struct skbtrail_config {
	struct addr_filter saddr;
	struct addr_filter daddr;
	struct addr_filter addr;      /* source or destination */
	__u16 sport;
	__u16 dport;
	__u16 port;                   /* source or destination */
	__u16 l3_proto;               /* 0: any */
	__u8 l4_proto;
	__u8 has_l4_proto;
	__u8 tcp_flags;               /* all of these flags must be set */
	__u8 drop_stack;              /* record kernel stacks of drops */
	__u32 netns;                  /* 0: any */
	__u32 pid;                    /* 0: any */
	__u32 pkt_len_min;
	__u32 pkt_len_max;            /* 0: no length filter */
	__u32 mark;
	__u32 mark_mask;              /* 0: no mark filter */
	char ifname[16];              /* "": any interface */
	__u64 reasons[4];             /* bitmap of drop reasons to keep */
	__u8 has_reasons;
	__u8 pkt_fixed;               /* no following by skb address: filter at every hook */
	__u8 trace_ret;               /* --ret: record return values */
	__u8 hook_settings;           /* the hook_flags map has entries: look hooks up */
	__u8 nf_hooks;                /* --hooks: record the functions on each netfilter hook */
	__u8 func_stats;              /* --func-stats: count calls per hook, write no records */
	__u8 has_filters;             /* some packet filter is set */
	__u8 rtt_hist;                /* --monitor (--metrics), --sock --rtt: count RTT samples in the kernel's histogram */
	__u8 rtt_events;              /* --monitor: record RTT samples over the thresholds; --sock: write tcp_probe records */
	__u8 ca_loss;                 /* enum tcp_ca_state's TCP_CA_Loss */
	__u16 snaplen;                /* --pcap: bytes of each packet to capture; 0: none (no capture code) */
	__u32 wakeup_bytes;           /* wake the reader when this much is pending */
	__u32 rate_limit;             /* --rate-limit: records per second; 0: no limit */
	__u32 pad4;
	__u64 printed_reasons[4];     /* --monitor: bitmap of drop reasons printed (the rest is counted) */
	__u64 aggregate_ns;           /* --monitor: a key quiet this long is printed again */
	__u64 nf_hook_slow[2];        /* [start, end) of nf_hook_slow: find its caller in a drop's stack */
	__u32 nf_drop_reason;         /* this kernel's NETFILTER_DROP (0: none) */
	__u32 rtt_min_us;             /* --tcp-rtt: RTT samples at or above (µs) */
	__u32 srtt_min_us;            /* --tcp-srtt, --filter-srtt: smoothed RTT at or above */
	__u32 minrtt_min_us;          /* --sock --filter-minrtt: the connection's minimum RTT at or above */
	__u32 nft_hooked;             /* --monitor: nft_do_chain is hooked (function hooks; nf_tables loaded) */
	__u32 func_by_ip;             /* no attach cookies (before 5.15): kprobes name their function by IP */
	__u64 latency_min_ns;         /* --latency: packets at or above this are reported (or counted) */
	__u8 latency;                 /* --latency mode: measure paths in the kernel, write only slow ones */
	__u8 latency_free;            /* --latency-free: the end hook's time counts */
	__u8 latency_summary;         /* --latency-summary: count into lat_hist, write no records */
	__u8 latency_custom_end;      /* --trace-free: hooks with SETTING_END end; frees only forget */
	__u8 no_clone;                /* --trace-noclone: clones do not join their packet */
	__u8 has_matcher;             /* --trace-matcher (lifecycles): only hooks with SETTING_MATCH start a packet */
	__u8 pad5[2];
};

#endif /* SKBTRAIL_EVENTS_H */
