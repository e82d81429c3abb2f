/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Packet parsing and filtering, shared by every program.
 *
 * The skb's header offsets tell where each layer starts. On the receive
 * path before __netif_receive_skb_core (e.g. napi_gro_receive) only the MAC
 * header is set; on the transmit path before the IP layer (e.g.
 * __tcp_transmit_skb) no header is set yet. So: start from the network
 * header when it is set and lies after the MAC header, otherwise from the
 * MAC header, and compute L4 from the IP header itself instead of trusting
 * transport_header (which is stale on early receive hooks).
 */
#ifndef SKBTRAIL_PACKET_BPF_H
#define SKBTRAIL_PACKET_BPF_H

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_HLEN 14

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_NONE 59
#define IPPROTO_DSTOPTS 60

/* Offsets are u16; ~0 means "not set" (kernels >= 3.x). */
#define HDR_UNSET 0xffff

#include "wire.bpf.h"

static __always_inline bool l3_matches(const struct packet *pkt);

/* `cast`: the headers are read through bpf_rdonly_cast (HDR_AT, wire.bpf.h). */
static __always_inline void parse_l4(struct packet *pkt, void *l4, __u8 proto, bool cast)
{
	pkt->l4_proto = proto;
	switch (proto) {
	case IPPROTO_TCP: {
		struct tcphdr___wire copy;
		const struct tcphdr___wire *th = HDR_AT(cast, &copy, l4);

		if (!th)
			return;
		pkt->sport = bpf_ntohs(RD(th, source));
		pkt->dport = bpf_ntohs(RD(th, dest));
		pkt->tcp_seq = bpf_ntohl(RD(th, seq));
		pkt->tcp_ack = bpf_ntohl(RD(th, ack_seq));
		pkt->tcp_flags = RD(th, flags);
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr___wire copy;
		const struct udphdr___wire *uh = HDR_AT(cast, &copy, l4);

		if (!uh)
			return;
		pkt->sport = bpf_ntohs(RD(uh, source));
		pkt->dport = bpf_ntohs(RD(uh, dest));
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct icmphdr___wire copy;
		const struct icmphdr___wire *ih = HDR_AT(cast, &copy, l4);

		if (!ih)
			return;
		pkt->icmp_type = RD(ih, type);
		pkt->icmp_code = RD(ih, code);
		pkt->icmp_id = bpf_ntohs(RD(ih, id));
		pkt->icmp_seq = bpf_ntohs(RD(ih, seq));
		break;
	}
	default:
		return;
	}
	pkt->parsed |= PKT_L4;
}

/*
 * `whole`: parse every layer whatever the filters say (a packet already
 * followed). Otherwise the transport header is not even read when the
 * network layer already fails a filter: most packets a narrow filter
 * rejects stop there.
 */
static __always_inline void parse_ipv4(struct packet *pkt, void *l3, bool whole, bool cast)
{
	struct iphdr___wire copy;
	const struct iphdr___wire *ih = HDR_AT(cast, &copy, l3);
	__u8 ver_ihl, protocol;
	__be32 addr;
	__u32 ihl;

	if (!ih)
		return;
	ver_ihl = RD(ih, ver_ihl);
	if ((ver_ihl >> 4) != 4)
		return;
	pkt->l3_proto = ETH_P_IP;
	pkt->parsed |= PKT_L3;
	addr = RD(ih, saddr);
	__builtin_memcpy(pkt->saddr, &addr, 4);
	addr = RD(ih, daddr);
	__builtin_memcpy(pkt->daddr, &addr, 4);
	pkt->ip_len = bpf_ntohs(RD(ih, tot_len));
	pkt->ttl = RD(ih, ttl);
	protocol = RD(ih, protocol);
	pkt->l4_proto = protocol;
	/* Only the first fragment carries the L4 header. */
	if (bpf_ntohs(RD(ih, frag_off)) & 0x1fff)
		return;
	ihl = (ver_ihl & 0xf) * 4;
	if (ihl < sizeof(copy) || (!whole && !l3_matches(pkt)))
		return;
	parse_l4(pkt, l3 + ihl, protocol, cast);
}

#define IPV6_MAX_EXT_HEADERS 6

static __always_inline void parse_ipv6(struct packet *pkt, void *l3, bool whole, bool cast)
{
	struct ipv6hdr___wire copy;
	const struct ipv6hdr___wire *ih = HDR_AT(cast, &copy, l3);
	struct wire_ipv6_opt opt;
	void *next;
	__u8 proto;

	if (!ih || (RD(ih, ver_tc) >> 4) != 6)
		return;
	pkt->l3_proto = ETH_P_IPV6;
	pkt->parsed |= PKT_L3;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__be32 word = RD(ih, saddr[i]);

		__builtin_memcpy(pkt->saddr + 4 * i, &word, 4);
		word = RD(ih, daddr[i]);
		__builtin_memcpy(pkt->daddr + 4 * i, &word, 4);
	}
	pkt->ip_len = bpf_ntohs(RD(ih, payload_len)) + sizeof(copy);
	pkt->ttl = RD(ih, hop_limit);
	proto = RD(ih, nexthdr);
	next = l3 + sizeof(copy);

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		switch (proto) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (bpf_probe_read_kernel(&opt, sizeof(opt), next))
				return;
			proto = opt.nexthdr;
			next += (opt.hdrlen + 1) * 8;
			break;
		case IPPROTO_AH:
			if (bpf_probe_read_kernel(&opt, sizeof(opt), next))
				return;
			proto = opt.nexthdr;
			next += (opt.hdrlen + 2) * 4;
			break;
		case IPPROTO_FRAGMENT: {
			__be16 frag_off;

			if (bpf_probe_read_kernel(&opt, sizeof(opt), next) ||
			    bpf_probe_read_kernel(&frag_off, sizeof(frag_off), next + 2))
				return;
			/* Later fragments carry no L4 header. */
			if (bpf_ntohs(frag_off) & 0xfff8) {
				pkt->l4_proto = opt.nexthdr;
				return;
			}
			proto = opt.nexthdr;
			next += 8;
			break;
		}
		default:
			pkt->l4_proto = proto;
			if (whole || l3_matches(pkt))
				parse_l4(pkt, next, proto, cast);
			return;
		}
	}
	pkt->l4_proto = proto;
}

static __always_inline void parse_arp(struct packet *pkt, void *l3)
{
	struct wire_arphdr ah;

	if (bpf_probe_read_kernel(&ah, sizeof(ah), l3))
		return;
	pkt->l3_proto = ETH_P_ARP;
	pkt->arp_op = bpf_ntohs(ah.op);
	/* Only Ethernet/IPv4 ARP has addresses where we read them. */
	if (bpf_ntohs(ah.pro) == ETH_P_IP && ah.hln == 6 && ah.pln == 4) {
		__builtin_memcpy(pkt->saddr, ah.sip, 4);
		__builtin_memcpy(pkt->daddr, ah.tip, 4);
	}
	pkt->parsed |= PKT_L3;
}

/* Network layer at l3, behind up to two in-band VLAN tags (QinQ). */
static __always_inline void parse_l3(struct packet *pkt, void *l3, __u16 proto, bool whole, bool cast)
{
	struct wire_vlan vlan;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (bpf_probe_read_kernel(&vlan, sizeof(vlan), l3))
			return;
		pkt->vlan_id = bpf_ntohs(vlan.tci) & 0xfff;
		proto = bpf_ntohs(vlan.proto);
		l3 += sizeof(vlan);
	}
	if (proto == ETH_P_IP)
		parse_ipv4(pkt, l3, whole, cast);
	else if (proto == ETH_P_IPV6)
		parse_ipv6(pkt, l3, whole, cast);
	else if (proto == ETH_P_ARP)
		parse_arp(pkt, l3);
	else
		pkt->l3_proto = proto;
}

/*
 * An skb with no network layer (a unix or netlink socket's message, a
 * packet not built yet): name the socket it belongs to, so the user sees
 * "unix stream socket" rather than "unknown". The type is a bitfield
 * before 5.6, like sk_protocol.
 */
static __always_inline void parse_owner(struct sk_buff *skb, struct packet *pkt)
{
	struct sock *sk = BPF_CORE_READ(skb, sk);

	if (!sk)
		return;
	pkt->sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
	pkt->sk_type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);
}

/*
 * A field of a kernel object. `btf`: the pointer is BTF-typed (a tp_btf or
 * fentry argument, a kprobe's cast by bpf_rdonly_cast, and what is read
 * through them), so a plain load reads it; the verifier makes such loads
 * fault-safe, and each costs a load instead of a bpf_probe_read_kernel call
 * (20-40 ns natively: bench/README.md §3, §16). Otherwise (kprobe, raw_tp)
 * the helper. `btf` is a constant of the calling program: the other branch
 * is compiled out.
 */
#define KREAD(btf, p, field) ((btf) ? (p)->field : BPF_CORE_READ(p, field))

/*
 * The skb fields the parse starts from. Every hook of every packet reads
 * them. A BTF-typed skb's are plain loads; otherwise each read is a helper
 * call (about a microsecond under emulation, where one read instead of five
 * made a traced flood 1.4-1.6x faster on 6.1: bench/README.md §9), so they
 * come in one read where the kernel lays them out as it has since 3.x:
 * protocol and the three header offsets side by side,
 * then tail and end, then head, 16 bytes after protocol (5.10, 6.18) or 20
 * (6.1, 6.12: padding); vlan_all (5.19+) 24 bytes before protocol (older
 * kernels: fill_meta reads the tag). The offsets are the running kernel's
 * (CO-RE), so the branch is decided when the program loads; another layout
 * is read field by field.
 */
struct skb_start {
	__be16 protocol;
	__u16 network_header;
	__u16 mac_header;
	__u16 vlan_tci;
	__u32 vlan_all;  /* non-zero: the receive path or VLAN offload took a tag out of the frame into the skb */
	unsigned char *head;
};

#define SKB_VLAN_LEAD 24

/* w: the window's bytes from protocol on; head: where head lies after protocol. */
static __always_inline void take_skb_start(struct skb_start *s, const __u8 *w, __u32 head)
{
	__builtin_memcpy(&s->protocol, w, 2);
	__builtin_memcpy(&s->network_header, w + 4, 2);
	__builtin_memcpy(&s->mac_header, w + 6, 2);
	if (head == 16)
		__builtin_memcpy(&s->head, w + 16, 8);
	else
		__builtin_memcpy(&s->head, w + 20, 8);
}

static __always_inline void read_skb_start(struct sk_buff *skb, struct skb_start *s, bool btf)
{
	__u32 proto = bpf_core_field_offset(struct sk_buff, protocol);
	__u32 head = bpf_core_field_offset(struct sk_buff, head) - proto;
	bool vlan = bpf_core_field_exists(struct sk_buff, vlan_all);
	__u8 window[SKB_VLAN_LEAD + 28];

	__builtin_memset(s, 0, sizeof(*s));
	if (btf) {
		s->protocol = skb->protocol;
		s->network_header = skb->network_header;
		s->mac_header = skb->mac_header;
		s->head = skb->head;
		if (vlan) {
			s->vlan_all = skb->vlan_all;
			s->vlan_tci = skb->vlan_tci;
		}
		return;
	}
	if (bpf_core_field_offset(struct sk_buff, network_header) == proto + 4 &&
	    bpf_core_field_offset(struct sk_buff, mac_header) == proto + 6 && (head == 16 || head == 20)) {
		if (!vlan) {
			if (!bpf_probe_read_kernel(window, 28, (void *)skb + proto))
				take_skb_start(s, window, head);
			return;
		}
		if (bpf_core_field_offset(struct sk_buff, vlan_all) == proto - SKB_VLAN_LEAD &&
		    bpf_core_field_offset(struct sk_buff, vlan_tci) == proto - SKB_VLAN_LEAD + 2) {
			if (!bpf_probe_read_kernel(window, sizeof(window), (void *)skb + proto - SKB_VLAN_LEAD)) {
				__builtin_memcpy(&s->vlan_all, window, 4);
				__builtin_memcpy(&s->vlan_tci, window + 2, 2);
				take_skb_start(s, window + SKB_VLAN_LEAD, head);
			}
			return;
		}
	}
	s->protocol = BPF_CORE_READ(skb, protocol);
	s->network_header = BPF_CORE_READ(skb, network_header);
	s->mac_header = BPF_CORE_READ(skb, mac_header);
	s->head = BPF_CORE_READ(skb, head);
	if (vlan) {
		s->vlan_all = BPF_CORE_READ(skb, vlan_all);
		s->vlan_tci = BPF_CORE_READ(skb, vlan_tci);
	}
}

static __always_inline void parse_skb_from(struct sk_buff *skb, struct packet *pkt, bool whole, bool btf, bool cast)
{
	struct skb_start start;
	unsigned char *l3 = 0;

	read_skb_start(skb, &start, btf);
	unsigned char *head = start.head;
	__u16 mac = start.mac_header;
	__u16 net = start.network_header;
	__u16 proto = bpf_ntohs(start.protocol);

	if (start.vlan_all)
		pkt->vlan_id = start.vlan_tci & 0xfff;
	if (net != HDR_UNSET && (mac == HDR_UNSET || net > mac)) {
		/* skb->protocol is not set yet on the early transmit path:
		 * take the IP version from the header itself, if the header
		 * was ever placed: alloc_skb leaves the offset at 0, where a
		 * unix socket's message starts with the user's bytes (one
		 * that begins with 0x45 is no IPv4 packet). */
		if (!proto && net) {
			__u8 ver;

			if (bpf_probe_read_kernel(&ver, 1, head + net))
				return;
			proto = (ver >> 4) == 4 ? ETH_P_IP : (ver >> 4) == 6 ? ETH_P_IPV6 : 0;
		}
		l3 = head + net;
	} else if (mac != HDR_UNSET) {
		/* Before the network header is set: from the Ethernet header. */
		struct ethhdr___wire copy;
		const struct ethhdr___wire *eth = HDR_AT(cast, &copy, head + mac);

		proto = 0;
		if (eth) {
			pkt->parsed |= PKT_L2;
			proto = bpf_ntohs(RD(eth, proto));
			l3 = head + mac + ETH_HLEN;
		}
	} else {
		proto = 0;
	}
	if (proto)
		parse_l3(pkt, l3, proto, whole, cast);
	if (!(pkt->parsed & PKT_L3))
		parse_owner(skb, pkt);
}

/*
 * A subprogram, not inlined, like fill_meta() and clone_context(): every
 * hook program calls it, and the size of a program is what its load costs.
 * The kernel removes the code a run's configuration makes dead (modes and
 * filters off) range by range, each removal moving the rest of the program,
 * and with the parse inlined at each of its call sites a hook program was
 * 18,800 instructions for the 3,900 the verifier walks: 19-20 ms of
 * verification each natively (×30 or so under emulation), 7.7 ms now
 * (bench/README.md §15). One parse_l3() call site for the same reason.
 */
static __noinline void parse_skb(struct sk_buff *skb, struct packet *pkt, bool whole)
{
	parse_skb_from(skb, pkt, whole, false, false);
}

/* The same where skb is BTF-typed (KREAD): its fields are loads, not
 * helper calls, at every hook a packet passes (bench/README.md §16). */
static __noinline void parse_btf_skb(struct sk_buff *skb, struct packet *pkt, bool whole)
{
	parse_skb_from(skb, pkt, whole, true, false);
}

/* The same, and the packet's headers read through bpf_rdonly_cast (6.2+):
 * only the programs loaded where the probes say the kernel takes it call
 * this (SKB_CAST, lifecycle.bpf.h). */
static __noinline void parse_cast_skb(struct sk_buff *skb, struct packet *pkt, bool whole)
{
	parse_skb_from(skb, pkt, whole, true, true);
}

/* ---- filters ------------------------------------------------------------ */

static __always_inline bool addr_matches(const volatile struct addr_filter *f, const __u8 *addr,
					 __u16 l3_proto)
{
	if ((f->family == 4 && l3_proto != ETH_P_IP && l3_proto != ETH_P_ARP) ||
	    (f->family == 6 && l3_proto != ETH_P_IPV6))
		return false;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if ((addr[i] ^ f->addr[i]) & f->mask[i])
			return false;
	}
	return true;
}

static __always_inline bool ifname_matches(const char *name)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (CFG.ifname[i] != name[i])
			return false;
		if (!name[i])
			break;
	}
	return true;
}

/* Does the packet pass every filter the user set? Filters that are off are
 * constant-folded away by the verifier (CFG is read-only). */
/* The filters on the packet's headers: checked before the skb's metadata is
 * even read, so a packet the user does not want costs one parse per hook. */
/* The filters on the network layer: protocols, addresses, length. */
static __always_inline bool l3_matches(const struct packet *pkt)
{
	if (CFG.l3_proto && pkt->l3_proto != CFG.l3_proto)
		return false;
	if (CFG.has_l4_proto && (!(pkt->parsed & PKT_L3) || pkt->l4_proto != CFG.l4_proto))
		return false;
	if (CFG.saddr.family && !addr_matches(&CFG.saddr, pkt->saddr, pkt->l3_proto))
		return false;
	if (CFG.daddr.family && !addr_matches(&CFG.daddr, pkt->daddr, pkt->l3_proto))
		return false;
	if (CFG.addr.family && !addr_matches(&CFG.addr, pkt->saddr, pkt->l3_proto) &&
	    !addr_matches(&CFG.addr, pkt->daddr, pkt->l3_proto))
		return false;
	if (CFG.pkt_len_max && (!(pkt->parsed & PKT_L3) || pkt->l3_proto == ETH_P_ARP ||
				pkt->ip_len < CFG.pkt_len_min || pkt->ip_len > CFG.pkt_len_max))
		return false;
	return true;
}

static __always_inline bool headers_match(const struct packet *pkt)
{
	if (!l3_matches(pkt))
		return false;
	if ((CFG.sport || CFG.dport || CFG.port) && !(pkt->parsed & PKT_L4))
		return false;
	if (CFG.sport && pkt->sport != CFG.sport)
		return false;
	if (CFG.dport && pkt->dport != CFG.dport)
		return false;
	if (CFG.port && pkt->sport != CFG.port && pkt->dport != CFG.port)
		return false;
	if (CFG.tcp_flags &&
	    (pkt->l4_proto != IPPROTO_TCP || (pkt->tcp_flags & CFG.tcp_flags) != CFG.tcp_flags))
		return false;
	return true;
}

/* The filters on where the packet is: namespace, process, mark, interface. */
static __always_inline bool meta_matches(const struct skb_meta *meta)
{
	if (CFG.netns && meta->netns != CFG.netns)
		return false;
	if (CFG.pid && meta->pid != CFG.pid)
		return false;
	if (CFG.mark_mask && (meta->mark & CFG.mark_mask) != CFG.mark)
		return false;
	if (CFG.ifname[0] && !ifname_matches(meta->ifname))
		return false;
	return true;
}

static __always_inline bool packet_matches(const struct packet *pkt, const struct skb_meta *meta)
{
	return headers_match(pkt) && meta_matches(meta);
}

#endif /* SKBTRAIL_PACKET_BPF_H */
