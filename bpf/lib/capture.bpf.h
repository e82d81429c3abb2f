/* SPDX-License-Identifier: GPL-2.0 */
/*
 * --pcap: the packet's bytes after a record (struct capture, then the
 * bytes). Only compiled into the verified program when CFG.snaplen is set:
 * a run without --pcap does not pay for it.
 *
 * The copy starts at the MAC header when the device is Ethernet (or
 * loopback, which has a zeroed Ethernet header) and the header is in front
 * of the network header, else at the network header (raw IPv4/IPv6), and
 * takes the skb's linear data only (skb->tail): headers are always there,
 * payload in page fragments is not.
 */
#ifndef SKBTRAIL_CAPTURE_BPF_H
#define SKBTRAIL_CAPTURE_BPF_H

#define ARPHRD_ETHER 1
#define ARPHRD_LOOPBACK 772

/* Fills `cap` and copies the bytes to `data`; returns how many were copied. */
static __always_inline __u32 capture_packet(struct sk_buff *skb, struct capture *cap, __u8 *data)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u32 mac = BPF_CORE_READ(skb, mac_header);
	__u32 net = BPF_CORE_READ(skb, network_header);
	__u32 end = BPF_CORE_READ(skb, tail);
	__u32 at = BPF_CORE_READ(skb, data) - head;
	__u32 wire = BPF_CORE_READ(skb, len) + at; /* the packet's end, from head */
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	__u16 type = dev ? BPF_CORE_READ(dev, type) : 0;
	__u32 start, len;
	__u64 n;
	__u8 link;

	cap->wire_len = 0;
	cap->len = 0;
	cap->link = CAPTURE_NONE;
	cap->pad = 0;
	if ((type == ARPHRD_ETHER || type == ARPHRD_LOOPBACK) && mac != HDR_UNSET &&
	    (net == HDR_UNSET || net >= mac + ETH_HLEN)) {
		start = mac;
		link = CAPTURE_ETHERNET;
	} else if (net != HDR_UNSET && (mac == HDR_UNSET || net >= mac)) {
		start = net;
		link = CAPTURE_RAW;
	} else {
		return 0;
	}
	if (start >= end)
		return 0;
	len = end - start;
	if (len > CFG.snaplen)
		len = CFG.snaplen;
	/* One 64-bit register, checked right where the helper takes it: clang
	 * would otherwise pass an unclamped copy the verifier cannot bound. */
	n = len;
	barrier_var(n);
	if (n > CAPTURE_MAX)
		return 0;
	if (bpf_probe_read_kernel(data, n, head + start))
		return 0;
	cap->wire_len = wire > start + n ? wire - start : n;
	cap->len = n;
	cap->link = link;
	return n;
}

/*
 * Writes the record of `size` bytes at `rec` (per-CPU scratch with room for
 * a capture tail) to the ring; with --pcap, with the packet's bytes after it.
 */
static __always_inline int output_with_capture(struct sk_buff *skb, void *rec, __u32 size)
{
	struct event_header *hdr = rec;
	__u32 n;

	if (!CFG.snaplen)
		return output(rec, size);
	n = capture_packet(skb, rec + size, rec + size + sizeof(struct capture));
	barrier_var(n);
	if (n > CAPTURE_MAX) /* never: tells the verifier */
		return 0;
	hdr->flags = EVENT_F_CAPTURE;
	hdr->size = size + sizeof(struct capture) + n;
	return output(rec, size + sizeof(struct capture) + n);
}

#endif /* SKBTRAIL_CAPTURE_BPF_H */
