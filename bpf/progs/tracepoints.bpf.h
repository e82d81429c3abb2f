/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One program per tracepoint skbtrail knows, each as tp_btf (5.5+) and
 * raw_tp (fallback): the context of both is the array of tracepoint
 * arguments. TypeScript (src/tracepoints.ts) checks the argument list in the
 * running kernel's BTF before loading one: the positions written here are
 * the ones it expects, and a tracepoint of another shape is skipped.
 *
 * hook_event.info of each tracepoint:
 *   net:net_dev_xmit               info[0] = rc (NETDEV_TX_OK 0, …)
 *   tcp:tcp_send_reset             info[0] = enum sk_rst_reason (6.10+)
 *   udp:udp_fail_queue_rcv_skb     info[0] = rc (-ENOMEM, -ENOBUFS…)
 *   icmp:icmp_send                 info[0] = type, info[1] = code
 *   skb:skb_copy_datagram_iovec    info[0] = bytes copied to user space
 */
#ifndef SKBTRAIL_TRACEPOINTS_BPF_H
#define SKBTRAIL_TRACEPOINTS_BPF_H

/* A tracepoint's two programs, PROG_btf and PROG_raw. In each body, `read`
 * says how a hook reads its skb: a tp_btf program's pointer arguments are
 * BTF-typed (SKB_BTF, SKB_HELPER: lifecycle.bpf.h). */
#define TP_PAIR(tp, prog, ...)                                        \
	SEC("tp_btf/" #tp)                                            \
	int prog##_btf(__u64 *ctx)                                    \
	{                                                             \
		const __u8 read __attribute__((unused)) = SKB_BTF;    \
		return __VA_ARGS__;                                   \
	}                                                             \
	SEC("raw_tp/" #tp)                                            \
	int prog##_raw(__u64 *ctx)                                    \
	{                                                             \
		const __u8 read __attribute__((unused)) = SKB_HELPER; \
		return __VA_ARGS__;                                   \
	}

#define TP_PROGRAMS(name, ...) TP_PAIR(name, tp_##name, __VA_ARGS__)
#define TP_VARIANT(tp, variant, ...) TP_PAIR(tp, tp_##tp##_##variant, __VA_ARGS__)

/* A hook's tracepoint: the pair, and PROG_cast, the tp_btf program that also
 * reads the packet's headers through bpf_rdonly_cast (SKB_CAST), for
 * kernels where probe_tp_btf_cast loads (6.2+). */
#define TP_HOOK_PROGRAMS(tp, prog, ...)                            \
	TP_PAIR(tp, prog, __VA_ARGS__)                             \
	SEC("tp_btf/" #tp)                                         \
	int prog##_cast(__u64 *ctx)                                \
	{                                                          \
		const __u8 read = SKB_CAST;                        \
		return __VA_ARGS__;                                \
	}

#define TP_HOOK(name, ...) TP_HOOK_PROGRAMS(name, tp_##name, __VA_ARGS__)
#define TP_HOOK_VARIANT(tp, variant, ...) TP_HOOK_PROGRAMS(tp, tp_##tp##_##variant, __VA_ARGS__)

static __always_inline int tp_hit(__u64 *ctx, __u8 read, __u32 id, void *skb, __u8 flags, __s32 info0, __s32 info1)
{
	struct hit h = { .tracepoint = id, .flags = flags, .info = { info0, info1 }, .skb_read = read };

	on_skb(ctx, read == SKB_CAST ? cast_skb(skb) : skb, &h, false);
	return 0;
}

static __always_inline int tp_kfree_skb(__u64 *ctx, __u8 read, __u32 reason)
{
	struct hit h = {
		.skb_read = read,
		.tracepoint = TP_KFREE_SKB,
		.flags = HOOK_FREE | HOOK_DROP,
		.location = ctx[1],
		.reason = reason,
	};

	on_skb(ctx, read == SKB_CAST ? cast_skb((void *)ctx[0]) : (void *)ctx[0], &h, false);
	return 0;
}

/* (skb, location, reason[, rx_sk]) from 5.17; (skb, location) before */
TP_HOOK_VARIANT(kfree_skb, reason, tp_kfree_skb(ctx, read, (__u32)ctx[2]))
TP_HOOK_VARIANT(kfree_skb, noreason, tp_kfree_skb(ctx, read, 0))
TP_HOOK(consume_skb, tp_hit(ctx, read, TP_CONSUME_SKB, (void *)ctx[0], HOOK_FREE, 0, 0))
TP_HOOK(netif_receive_skb, tp_hit(ctx, read, TP_NETIF_RECEIVE_SKB, (void *)ctx[0], 0, 0, 0))
TP_HOOK(netif_rx, tp_hit(ctx, read, TP_NETIF_RX, (void *)ctx[0], 0, 0, 0))
TP_HOOK(napi_gro_receive_entry, tp_hit(ctx, read, TP_NAPI_GRO_RECEIVE_ENTRY, (void *)ctx[0], 0, 0, 0))
TP_HOOK(net_dev_queue, tp_hit(ctx, read, TP_NET_DEV_QUEUE, (void *)ctx[0], 0, 0, 0))
TP_HOOK(net_dev_start_xmit, tp_hit(ctx, read, TP_NET_DEV_START_XMIT, (void *)ctx[0], 0, 0, 0))
TP_HOOK(net_dev_xmit, tp_hit(ctx, read, TP_NET_DEV_XMIT, (void *)ctx[0], 0, (__s32)ctx[1], 0))
TP_HOOK(qdisc_enqueue, tp_hit(ctx, read, TP_QDISC_ENQUEUE, (void *)ctx[2], 0, 0, 0))
TP_HOOK(qdisc_dequeue, tp_hit(ctx, read, TP_QDISC_DEQUEUE, (void *)ctx[3], 0, 0, 0))
TP_HOOK(tcp_retransmit_skb, tp_hit(ctx, read, TP_TCP_RETRANSMIT_SKB, (void *)ctx[1], 0, 0, 0))
/* (sk, skb, reason) from 6.10; (sk, skb) before. skb is the packet that
 * caused the reset, NULL when none did. */
TP_HOOK_VARIANT(tcp_send_reset, reason, tp_hit(ctx, read, TP_TCP_SEND_RESET, (void *)ctx[1], 0, (__s32)ctx[2], 0))
TP_HOOK_VARIANT(tcp_send_reset, noreason, tp_hit(ctx, read, TP_TCP_SEND_RESET, (void *)ctx[1], 0, -1, 0))
TP_HOOK(tcp_bad_csum, tp_hit(ctx, read, TP_TCP_BAD_CSUM, (void *)ctx[0], 0, 0, 0))
TP_HOOK(tcp_probe, tp_hit(ctx, read, TP_TCP_PROBE, (void *)ctx[1], 0, 0, 0))
TP_HOOK(udp_fail_queue_rcv_skb, tp_hit(ctx, read, TP_UDP_FAIL_QUEUE_RCV_SKB, (void *)ctx[2], 0, (__s32)ctx[0], 0))
TP_HOOK(sock_rcvqueue_full, tp_hit(ctx, read, TP_SOCK_RCVQUEUE_FULL, (void *)ctx[1], 0, 0, 0))
TP_HOOK(icmp_send, tp_hit(ctx, read, TP_ICMP_SEND, (void *)ctx[0], 0, (__s32)ctx[1], (__s32)ctx[2]))
TP_HOOK(skb_copy_datagram_iovec, tp_hit(ctx, read, TP_SKB_COPY_DATAGRAM_IOVEC, (void *)ctx[0], 0, (__s32)ctx[1], 0))
/* (call_site, ptr, cache): no skb argument, see on_slab_free() */
TP_PROGRAMS(kmem_cache_free, on_slab_free((void *)ctx[1]))

#endif /* SKBTRAIL_TRACEPOINTS_BPF_H */
