/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The packet's headers as they are on the wire, and how a program reads
 * them. Shared by the parse (packet.bpf.h) and the probes (probe.bpf.c),
 * which check that the running kernel accepts the reads the parse makes.
 *
 * A header named T___wire lays out its bytes as the kernel's struct T does:
 * CO-RE takes it as a flavour of struct T, so HDR_AT can also read it
 * through bpf_rdonly_cast as that kernel type. The others are only ever
 * copied with bpf_probe_read_kernel.
 */
#ifndef SKBTRAIL_WIRE_BPF_H
#define SKBTRAIL_WIRE_BPF_H

struct ethhdr___wire {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct iphdr___wire {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr___wire {
	__u8 ver_tc;   /* version in the high nibble */
	__u8 tc_flow[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};

struct tcphdr___wire {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff;
	__u8 flags;
	__be16 window;
};

struct udphdr___wire {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

/* Also ICMPv6's first 8 bytes. */
struct icmphdr___wire {
	__u8 type;
	__u8 code;
	__sum16 check;
	__be16 id;
	__be16 seq;
};

struct wire_vlan {
	__be16 tci;
	__be16 proto;
};

struct wire_ipv6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct wire_arphdr {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	/* Ethernet/IPv4 ARP body */
	__u8 sha[6];
	__u8 sip[4];
	__u8 tha[6];
	__u8 tip[4];
};

/*
 * The header at src, to read with RD(); NULL when it could not be read.
 * Without `cast`: copied into *copy with one bpf_probe_read_kernel call.
 * With `cast` (a constant of the program; 6.2+): src itself, made a
 * read-only pointer to the kernel's type by bpf_rdonly_cast, so each field
 * is a plain load the verifier makes fault-safe (a fault reads zeros, which
 * no caller takes for a header: IP's version is checked, ports 0 filter
 * nothing in). A helper call costs about 40 ns natively at every hook a
 * packet passes (bench/README.md §16).
 */
#define HDR_AT(cast, copy, src)                                                                    \
	((cast) ? (typeof(copy))bpf_rdonly_cast((src), bpf_core_type_id_kernel(typeof(*(copy)))) \
		: (bpf_probe_read_kernel((copy), sizeof(*(copy)), (src)) ? NULL : (copy)))

/*
 * One field, read with a load of its own size: volatile, so clang cannot
 * merge neighbouring fields into one wider load, which a kernel without
 * the later relaxation for cast pointers refuses ("access beyond the end
 * of member").
 */
#define RD(h, field) (*(volatile typeof((h)->field) *)&(h)->field)

#endif /* SKBTRAIL_WIRE_BPF_H */
