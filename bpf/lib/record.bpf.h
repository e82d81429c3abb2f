/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every record starts with: the common header, and the facts about the
 * skb and the context it was seen in (struct skb_meta).
 */
#ifndef SKBTRAIL_RECORD_BPF_H
#define SKBTRAIL_RECORD_BPF_H

static __always_inline void fill_header(struct event_header *hdr, __u16 kind, __u16 size)
{
	hdr->kind = kind;
	hdr->size = size;
	hdr->version = EVENT_VERSION;
	hdr->flags = 0;
	hdr->pad[0] = 0;
	hdr->pad[1] = 0;
	hdr->pad2 = 0;
	hdr->cpu = bpf_get_smp_processor_id();
	hdr->time_ns = bpf_ktime_get_ns();
}

/* The low bits of skb->_nfct (NFCT_INFOMASK) hold enum ip_conntrack_info,
 * the rest the connection: a pointer, so aligned to more than 8 bytes. */
#define NFCT_INFOMASK 7UL

static __always_inline __u8 conntrack_seen(struct sk_buff *skb, bool btf)
{
	unsigned long nfct;

	if (!bpf_core_field_exists(skb->_nfct))
		return CT_UNKNOWN;
	nfct = KREAD(btf, skb, _nfct);
	/* notrack sets the info IP_CT_UNTRACKED with no connection. */
	return !nfct ? CT_NONE : (nfct & ~NFCT_INFOMASK) ? CT_TRACKED : CT_UNTRACKED;
}

/*
 * Before 5.19 an offloaded VLAN tag's presence is a bit of its own
 * (vlan_present), outside read_skb_start's window: read here, for packets
 * that passed the header filters only (the VLAN id is shown, never filtered
 * on), so a rejected packet pays nothing for it.
 */
static __always_inline void read_vlan_present(struct sk_buff *skb, struct packet *pkt)
{
	if (bpf_core_field_exists(struct sk_buff, vlan_all) || !bpf_core_field_exists(struct sk_buff, vlan_present))
		return;
	if (BPF_CORE_READ_BITFIELD_PROBED(skb, vlan_present))
		pkt->vlan_id = BPF_CORE_READ(skb, vlan_tci) & 0xfff;
}

/*
 * The facts a record carries besides the headers: `pkt` (already parsed)
 * gains the pre-5.19 VLAN tag. `btf`: skb is BTF-typed (see KREAD).
 */
static __always_inline void fill_meta_from(struct sk_buff *skb, struct packet *pkt, struct skb_meta *meta, bool btf)
{
	struct net_device *dev = KREAD(btf, skb, dev);
	struct net *net = 0;

	meta->skb = (__u64)skb;
	meta->len = KREAD(btf, skb, len);
	meta->mark = KREAD(btf, skb, mark);
	meta->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(meta->comm, sizeof(meta->comm));
	if (dev) {
		meta->ifindex = KREAD(btf, dev, ifindex);
		if (btf)
			__builtin_memcpy(meta->ifname, dev->name, sizeof(meta->ifname));
		else
			bpf_probe_read_kernel_str(meta->ifname, sizeof(meta->ifname), dev->name);
		net = KREAD(btf, dev, nd_net.net);
	} else {
		struct sock *sk = KREAD(btf, skb, sk);

		if (sk)
			net = KREAD(btf, sk, __sk_common.skc_net.net);
	}
	if (net)
		meta->netns = KREAD(btf, net, ns.inum);
	meta->ct = conntrack_seen(skb, btf);
	read_vlan_present(skb, pkt);
}

static __noinline void fill_meta(struct sk_buff *skb, struct packet *pkt, struct skb_meta *meta)
{
	fill_meta_from(skb, pkt, meta, false);
}

/* The same through a cast skb (SKB_CAST): loads instead of the eight or so
 * helper calls, at every hook of every packet that is recorded. */
static __noinline void fill_btf_meta(struct sk_buff *skb, struct packet *pkt, struct skb_meta *meta)
{
	fill_meta_from(skb, pkt, meta, true);
}

#endif /* SKBTRAIL_RECORD_BPF_H */
