// The tracepoints skbtrail has programs for (bpf/tracepoints.bpf.h), with
// the argument list each program expects. A tracepoint's arguments change
// between kernels, so the running kernel's BTF decides which variant loads,
// or that the tracepoint is skipped.
import { tracepoint_id } from "../abi/layout.generated";
import { program, type ProgramName } from "../abi/programs.generated";
import { tracepointParams } from "../kernel/btf-facts";
import type { Btf } from "../kernel/btf";
import type { Plan, PlannedHook } from "./plan";

/** A tracepoint program as tp_btf (5.5+) and as raw_tp (the fallback); a hook's also as cast (tp_btf reading the headers through bpf_rdonly_cast, 6.2+). */
export interface TracepointPrograms {
  btf: ProgramName;
  raw: ProgramName;
  cast?: ProgramName;
}

export interface TracepointSpec {
  id: number;
  /** "category:event", as users write it in -t and in knowledge/. */
  name: string;
  /** Position of the struct sk_buff * argument (-1: the program finds its object itself). */
  skbArg: number;
  /** Position of the struct sock * argument a --sock program reads, checked like skbArg. */
  sockArg?: number;
  /** Programs per argument list, most specific first: [minimum argument count, programs]. */
  variants: [number, TracepointPrograms][];
  /** The skb's life ends here. */
  free?: boolean;
  /** Always the raw_tp program: before 6.2 tp_btf refuses to read a void * argument. */
  rawOnly?: boolean;
}

const T = tracepoint_id;

/** A hook tracepoint's programs PROG_btf, PROG_raw and PROG_cast (TP_HOOK in bpf/progs/tracepoints.bpf.h). */
type HookProgram = ProgramName extends infer N ? (N extends `${infer P}_cast` ? P : never) : never;
const hook = (prog: HookProgram): TracepointPrograms => ({ btf: `${prog}_btf`, raw: `${prog}_raw`, cast: `${prog}_cast` });

export const TRACEPOINTS: TracepointSpec[] = [
  { id: T.TP_KFREE_SKB, name: "skb:kfree_skb", skbArg: 0, variants: [[3, hook("tp_kfree_skb_reason")], [2, hook("tp_kfree_skb_noreason")]], free: true },
  { id: T.TP_CONSUME_SKB, name: "skb:consume_skb", skbArg: 0, variants: [[1, hook("tp_consume_skb")]], free: true },
  { id: T.TP_NETIF_RECEIVE_SKB, name: "net:netif_receive_skb", skbArg: 0, variants: [[1, hook("tp_netif_receive_skb")]] },
  { id: T.TP_NETIF_RX, name: "net:netif_rx", skbArg: 0, variants: [[1, hook("tp_netif_rx")]] },
  { id: T.TP_NAPI_GRO_RECEIVE_ENTRY, name: "net:napi_gro_receive_entry", skbArg: 0, variants: [[1, hook("tp_napi_gro_receive_entry")]] },
  { id: T.TP_NET_DEV_QUEUE, name: "net:net_dev_queue", skbArg: 0, variants: [[1, hook("tp_net_dev_queue")]] },
  { id: T.TP_NET_DEV_START_XMIT, name: "net:net_dev_start_xmit", skbArg: 0, variants: [[1, hook("tp_net_dev_start_xmit")]] },
  { id: T.TP_NET_DEV_XMIT, name: "net:net_dev_xmit", skbArg: 0, variants: [[2, hook("tp_net_dev_xmit")]] },
  { id: T.TP_QDISC_ENQUEUE, name: "qdisc:qdisc_enqueue", skbArg: 2, variants: [[3, hook("tp_qdisc_enqueue")]] },
  { id: T.TP_QDISC_DEQUEUE, name: "qdisc:qdisc_dequeue", skbArg: 3, variants: [[4, hook("tp_qdisc_dequeue")]] },
  { id: T.TP_TCP_RETRANSMIT_SKB, name: "tcp:tcp_retransmit_skb", skbArg: 1, variants: [[2, hook("tp_tcp_retransmit_skb")]] },
  { id: T.TP_TCP_SEND_RESET, name: "tcp:tcp_send_reset", skbArg: 1, variants: [[3, hook("tp_tcp_send_reset_reason")], [2, hook("tp_tcp_send_reset_noreason")]] },
  { id: T.TP_TCP_BAD_CSUM, name: "tcp:tcp_bad_csum", skbArg: 0, variants: [[1, hook("tp_tcp_bad_csum")]] },
  { id: T.TP_TCP_PROBE, name: "tcp:tcp_probe", skbArg: 1, variants: [[2, hook("tp_tcp_probe")]] },
  { id: T.TP_UDP_FAIL_QUEUE_RCV_SKB, name: "udp:udp_fail_queue_rcv_skb", skbArg: 2, variants: [[3, hook("tp_udp_fail_queue_rcv_skb")]] },
  { id: T.TP_SOCK_RCVQUEUE_FULL, name: "sock:sock_rcvqueue_full", skbArg: 1, variants: [[2, hook("tp_sock_rcvqueue_full")]] },
  { id: T.TP_ICMP_SEND, name: "icmp:icmp_send", skbArg: 0, variants: [[3, hook("tp_icmp_send")]] },
  { id: T.TP_SKB_COPY_DATAGRAM_IOVEC, name: "skb:skb_copy_datagram_iovec", skbArg: 0, variants: [[2, hook("tp_skb_copy_datagram_iovec")]] },
  { id: T.TP_KMEM_CACHE_FREE, name: "kmem:kmem_cache_free", skbArg: -1, variants: [[2, { btf: program.tp_kmem_cache_free_btf, raw: program.tp_kmem_cache_free_raw }]], free: true, rawOnly: true },
];

export const tracepointById = new Map(TRACEPOINTS.map((t) => [t.id, t]));
export const tracepointByName = new Map(TRACEPOINTS.map((t) => [t.name, t]));

/** The programs that fit this kernel's tracepoint, or why none does. */
export function tracepointPrograms(btf: Btf, spec: TracepointSpec): { programs?: TracepointPrograms; why?: string } {
  const event = spec.name.split(":")[1]!;
  const params = tracepointParams(btf, event);
  if (!params) return { why: "this kernel has no such tracepoint" };
  if (spec.skbArg >= 0 && !/struct sk_buff \*$/.test(params[spec.skbArg] ?? ""))
    return { why: `argument ${spec.skbArg} is ${params[spec.skbArg] ?? "missing"}, not struct sk_buff * (tracepoint changed: ${params.join(", ")})` };
  if (spec.sockArg !== undefined && !/struct sock \*$/.test(params[spec.sockArg] ?? ""))
    return { why: `argument ${spec.sockArg} is ${params[spec.sockArg] ?? "missing"}, not struct sock * (tracepoint changed: ${params.join(", ")})` };
  const variant = spec.variants.find(([min]) => params.length >= min);
  return variant ? { programs: variant[1] } : { why: `unexpected arguments (${params.join(", ")})` };
}

/**
 * A mode's own tracepoints (--monitor, --sock): each one this kernel has,
 * in the variant its arguments fit (tp_btf where the kernel has it, else
 * raw_tp), and why the others are skipped.
 */
export function planTracepoints(btf: Btf, tpBtf: boolean, specs: TracepointSpec[]): Plan {
  const hooks: PlannedHook[] = [];
  const skipped: Plan["skipped"] = [];
  for (const spec of specs) {
    const { programs, why } = tracepointPrograms(btf, spec);
    if (!programs) {
      skipped.push({ name: spec.name, why: why! });
      continue;
    }
    const via = tpBtf && !spec.rawOnly ? "tp_btf" : "raw_tp";
    hooks.push({ kind: "tracepoint", name: spec.name, spec, via, attach: [{ how: "tracepoint", program: via === "tp_btf" ? programs.btf : programs.raw }] });
  }
  return { hooks, skipped };
}
