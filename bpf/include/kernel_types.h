/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types skbtrail reads, declared by hand instead of a
 * generated vmlinux.h so the build never depends on the build machine's
 * kernel. Every struct is preserve_access_index: libbpf relocates each
 * field by name against the running kernel's BTF (CO-RE), so only the
 * names and types matter here, never the order or offsets.
 */
#ifndef SKBTRAIL_KERNEL_TYPES_H
#define SKBTRAIL_KERNEL_TYPES_H

/* This file plays vmlinux.h's part: bpf_tracing.h then uses the kernel's
 * struct pt_regs register names (di, si…). */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u16 __sum16;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* enum bpf_map_type / flags used by the maps we declare */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
	BPF_RB_AVAIL_DATA = 0,
	BPF_F_FAST_STACK_CMP = 1 << 9,
};
#define BPF_F_CURRENT_CPU 0xffffffffULL

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	int ifindex;
	unsigned short type; /* ARPHRD_* */
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct in6_addr {
	__u8 s6_addr[16];
};

/* The kernel nests the addresses and ports in anonymous unions: CO-RE finds
 * them there by name. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	unsigned long skc_flags; /* sk_flags: bits of enum sock_flags */
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

/* Only whether it is pending (entry.pprev set: timer_pending()) and when it expires, in jiffies. */
struct timer_list {
	struct {
		void *next;
		void **pprev;
	} entry;
	unsigned long expires;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol; /* a bitfield before 5.6: read with BPF_CORE_READ_BITFIELD_PROBED */
	__u16 sk_type;     /* likewise */
	int sk_rcvbuf;
	int sk_sndbuf;
	int sk_wmem_queued;
	int sk_err;
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
	struct {
		atomic_t rmem_alloc;
	} sk_backlog;
	struct timer_list sk_timer; /* TCP: keepalive, or an orphan's FIN_WAIT2 timeout */
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	/* Its expiry is the pending timer's (icsk_timeout before 6.15 held the same value). */
	struct timer_list icsk_retransmit_timer;
	__u8 icsk_ca_state : 5;
	__u8 icsk_retransmits;
	__u8 icsk_pending; /* ICSK_TIME_*: which timer icsk_retransmit_timer is now */
} __attribute__((preserve_access_index));

struct tcp_rack {
	__u32 rtt_us; /* RTT of the most recently (s)acked packet */
} __attribute__((preserve_access_index));

struct minmax_sample {
	__u32 t;
	__u32 v;
};

struct minmax {
	struct minmax_sample s[3];
};

struct tcp_sock {
	__u32 srtt_us; /* smoothed RTT << 3, in µs */
	__u32 snd_una;
	struct tcp_rack rack;
	struct minmax rtt_min; /* s[0].v: the windowed minimum RTT, µs */
	__u32 snd_cwnd;
	__u32 packets_out;
	__u32 retrans_out;
	__u32 total_retrans;
	__u32 segs_in;
	__u32 segs_out;
	__u64 bytes_acked;
	__u64 bytes_received;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__u32 mark;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	__u32 vlan_all; /* 5.19+: non-zero when a VLAN tag was taken out of the frame */
	__u16 vlan_tci;
	__u8 vlan_present : 1; /* before 6.1: a tag was taken out of the frame into vlan_tci */
	unsigned long _nfct; /* CONFIG_NF_CONNTRACK: the connection | enum ip_conntrack_info */
	__u8 cloned : 1;     /* the data (head) is shared with another skb: read with BPF_CORE_READ_BITFIELD_PROBED */
	unsigned char *head;
	unsigned char *data;
	unsigned int tail; /* sk_buff_data_t: an offset from head on 64-bit kernels */
} __attribute__((preserve_access_index));

/* An fclone pair (TCP's transmit skbs): the clone lives in skb2, and the slab
 * frees the pair at skb1's address. */
struct sk_buff_fclones {
	struct sk_buff skb1;
	struct sk_buff skb2;
} __attribute__((preserve_access_index));

/* Netfilter: the hook state, and nftables' view of a packet, chain, table. */
struct nf_hook_state {
	__u8 hook;
	__u8 pf;
} __attribute__((preserve_access_index));

struct nf_hook_entry {
	void *hook;
	void *priv;
} __attribute__((preserve_access_index));

struct nf_hook_entries {
	__u16 num_hook_entries;
	struct nf_hook_entry hooks[];
} __attribute__((preserve_access_index));

struct nft_pktinfo {
	struct sk_buff *skb;
	const struct nf_hook_state *state;
} __attribute__((preserve_access_index));

struct nft_table {
	char *name;
	__u16 family : 6;
} __attribute__((preserve_access_index));

struct nft_chain {
	struct nft_table *table;
	char *name;
} __attribute__((preserve_access_index));

/* x86-64 kprobe context (UAPI layout, not relocated). */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* A kernel function (kfunc, 6.2+): obj as a read-only pointer to the kernel
 * type btf_id, read with plain loads. Weak: an object that declares it
 * still opens where the kernel lacks it (the programs calling it are then
 * not loaded: probe_kprobe_multi_cast, probe_tp_btf_cast). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __attribute__((section(".ksyms"), weak));

#endif /* SKBTRAIL_KERNEL_TYPES_H */
