/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A socket's connection seen as a packet, so the packet filters (-s/-d/
 * --addr, ports, -p, --netns, --pid) apply to sockets unchanged: local
 * address and port as source, remote as destination. Used by --monitor's
 * and --sock's socket events.
 */
#ifndef SKBTRAIL_SOCK_BPF_H
#define SKBTRAIL_SOCK_BPF_H

#define AF_INET 2
#define AF_INET6 10
#define TCP_FLAG_ACK 0x10

/*
 * Fills `pkt` with the connection of `sk` (a struct sock, or the struct
 * sock_common a request socket starts with) and `meta` with its namespace,
 * and applies the filters. False: a filter rejected it, or it is not IPv4
 * or IPv6.
 */
static __always_inline bool sock_connection(struct packet *pkt, struct skb_meta *meta, const struct sock *sk, __u8 proto)
{
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	struct net *net;

	__builtin_memset(pkt, 0, sizeof(*pkt));
	__builtin_memset(meta, 0, sizeof(*meta));
	if (family == AF_INET) {
		__be32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 b = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(pkt->saddr, &a, 4);
		__builtin_memcpy(pkt->daddr, &b, 4);
		pkt->l3_proto = ETH_P_IP;
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&pkt->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&pkt->daddr, sk, __sk_common.skc_v6_daddr);
		pkt->l3_proto = ETH_P_IPV6;
	} else {
		return false;
	}
	pkt->l4_proto = proto;
	pkt->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	pkt->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	pkt->parsed = PKT_L3 | PKT_L4;
	/* The namespace even when a filter rejects the socket: --sock may keep it anyway (sock_kept). */
	net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	if (net)
		meta->netns = BPF_CORE_READ(net, ns.inum);
	if (CFG.pid)
		meta->pid = bpf_get_current_pid_tgid() >> 32;
	return headers_match(pkt) && meta_matches(meta);
}

/*
 * tcp:tcp_probe runs for every segment an established connection
 * receives, before its ACK is processed: only a segment that acknowledges
 * new data brings an RTT sample. Parses `skb` into `pkt` to tell.
 */
static __always_inline bool acks_new_data(const struct tcp_sock *tp, struct sk_buff *skb, struct packet *pkt)
{
	__builtin_memset(pkt, 0, sizeof(*pkt));
	parse_skb(skb, pkt, false);
	return (pkt->parsed & PKT_L4) && (pkt->tcp_flags & TCP_FLAG_ACK) && (__s32)(pkt->tcp_ack - BPF_CORE_READ(tp, snd_una)) > 0;
}

#endif /* SKBTRAIL_SOCK_BPF_H */
