// What --monitor attaches on this kernel (bpf/progs/monitor.bpf.h): the
// tracepoints it has, in the variant their arguments fit, and the function
// hooks that add what tracepoints cannot tell where kprobes or fentry exist
// (nftables table and chain; retransmission timeouts before 6.2). Plain
// data, as the tracing plan is: nothing is loaded here.
import { tracepoint_id } from "../abi/layout.generated";
import { program, type ProgramName } from "../abi/programs.generated";
import type { Btf } from "../kernel/btf";
import type { Features } from "../kernel/features";
import type { FunctionIndex } from "../kernel/functions";
import type { Attach, FunctionBackend, Plan, PlannedHook } from "./plan";
import { planTracepoints, type TracepointSpec } from "./tracepoints";

const T = tracepoint_id;
const tp = (btf: ProgramName, raw: ProgramName) => ({ btf, raw });

/** What each hook is for, in words (-v). */
export const MONITOR_PURPOSE: Record<string, string> = {
  "skb:kfree_skb": "drops with reason and location; netfilter drops",
  "tcp:tcp_send_reset": "TCP resets sent",
  "tcp:tcp_receive_reset": "TCP resets received",
  "tcp:tcp_cong_state_set": "retransmission timeouts (TCP entering the loss state)",
  "tcp:tcp_retransmit_skb": "TCP retransmissions (counted)",
  "sock:sock_rcvqueue_full": "socket receive queue overflows",
  "udp:udp_fail_queue_rcv_skb": "UDP receive queue overflows (counted; the drop is printed)",
  "tcp:tcp_probe": "TCP RTT samples",
  tcp_retransmit_timer: "retransmission timeouts",
  nft_do_chain: "nftables table and chain of netfilter drops",
};

/** The tracepoints of --monitor; skbArg is checked against the kernel's BTF (-1: a socket or nothing). */
export const MONITOR_TRACEPOINTS: TracepointSpec[] = [
  { id: T.TP_KFREE_SKB, name: "skb:kfree_skb", skbArg: 0, variants: [[3, tp(program.mon_drop_reason_btf, program.mon_drop_reason_raw)], [2, tp(program.mon_drop_noreason_btf, program.mon_drop_noreason_raw)]] },
  { id: T.TP_TCP_SEND_RESET, name: "tcp:tcp_send_reset", skbArg: 1, variants: [[3, tp(program.tp_tcp_send_reset_mon_reason_btf, program.tp_tcp_send_reset_mon_reason_raw)], [2, tp(program.tp_tcp_send_reset_mon_noreason_btf, program.tp_tcp_send_reset_mon_noreason_raw)]] },
  { id: T.TP_TCP_RECEIVE_RESET, name: "tcp:tcp_receive_reset", skbArg: -1, variants: [[1, tp(program.tp_tcp_receive_reset_mon_btf, program.tp_tcp_receive_reset_mon_raw)]] },
  { id: T.TP_TCP_CONG_STATE_SET, name: "tcp:tcp_cong_state_set", skbArg: -1, variants: [[2, tp(program.tp_tcp_cong_state_set_mon_btf, program.tp_tcp_cong_state_set_mon_raw)]] },
  { id: T.TP_TCP_RETRANSMIT_SKB, name: "tcp:tcp_retransmit_skb", skbArg: 1, variants: [[2, tp(program.tp_tcp_retransmit_skb_mon_btf, program.tp_tcp_retransmit_skb_mon_raw)]] },
  { id: T.TP_SOCK_RCVQUEUE_FULL, name: "sock:sock_rcvqueue_full", skbArg: 1, variants: [[2, tp(program.tp_sock_rcvqueue_full_mon_btf, program.tp_sock_rcvqueue_full_mon_raw)]] },
  { id: T.TP_UDP_FAIL_QUEUE_RCV_SKB, name: "udp:udp_fail_queue_rcv_skb", skbArg: -1, variants: [[3, tp(program.tp_udp_fail_queue_rcv_skb_mon_skb_btf, program.tp_udp_fail_queue_rcv_skb_mon_skb_raw)], [2, tp(program.tp_udp_fail_queue_rcv_skb_mon_noskb_btf, program.tp_udp_fail_queue_rcv_skb_mon_noskb_raw)]] },
  { id: T.TP_TCP_PROBE, name: "tcp:tcp_probe", skbArg: 1, variants: [[2, tp(program.tp_tcp_probe_mon_btf, program.tp_tcp_probe_mon_raw)]] },
];

/** Function hooks of --monitor: the programs per backend, and the tracepoint id they count under. */
const MONITOR_FUNCTIONS: Record<string, { id: number; kprobe: ProgramName[]; fentry: ProgramName[] }> = {
  tcp_retransmit_timer: { id: T.TP_TCP_RETRANSMIT_TIMER, kprobe: [program.kprobe_mon_retransmit_timer], fentry: [program.fentry_mon_retransmit_timer] },
  nft_do_chain: { id: T.TP_NFT_DO_CHAIN, kprobe: [program.kprobe_mon_nft_do_chain, program.kretprobe_mon_nft_do_chain], fentry: [program.fentry_mon_nft_do_chain, program.fexit_mon_nft_do_chain] },
};

/** The id --monitor's records and --func-stats use for a hook. */
export function monitorHookId(h: PlannedHook): number {
  return h.kind === "tracepoint" ? h.spec.id : MONITOR_FUNCTIONS[h.name]!.id;
}

export interface MonitorPlanInput {
  btf: Btf;
  features: Features;
  /** Undefined when the kernel has no function backend (nothing is looked up). */
  functions?: FunctionIndex;
  /** Record RTT samples (tcp:tcp_probe): --metrics, --tcp-rtt, --tcp-srtt. */
  rtt: boolean;
}

export function makeMonitorPlan(input: MonitorPlanInput): Plan {
  const { btf, features } = input;
  const specs = MONITOR_TRACEPOINTS.filter((spec) => spec.id !== T.TP_TCP_PROBE || input.rtt);
  const { hooks, skipped } = planTracepoints(btf, features.tpBtf, specs);
  const hasCongState = hooks.some((h) => h.name === "tcp:tcp_cong_state_set");
  const wanted = hasCongState ? ["nft_do_chain"] : ["tcp_retransmit_timer", "nft_do_chain"];
  for (const name of wanted) {
    const fh = planFunction(name, input);
    if ("why" in fh) skipped.push({ name, why: fh.why });
    else hooks.push(fh);
  }
  return { hooks, skipped, attachCookies: features.attachCookie };
}

/**
 * kprobes where the kernel has them (nft_do_chain is often in a module,
 * which fentry reaches only through module BTF); fentry for a vmlinux
 * function otherwise.
 */
function planFunction(name: string, input: MonitorPlanInput): PlannedHook | { why: string } {
  const own = MONITOR_FUNCTIONS[name]!;
  const f = input.features;
  if (!input.functions || (!f.kprobe && !f.fentry)) return { why: "needs kprobes or fentry, and this kernel has neither" };
  const r = input.functions.resolve(name, "own");
  if ("why" in r) return { why: r.why };
  let backend: FunctionBackend;
  let attach: Attach[];
  if (f.kprobe) {
    backend = "kprobe";
    attach = own.kprobe.map((p, i) => ({ how: "kprobe" as const, program: p, retprobe: i === 1 }));
  } else if (f.fentry && !r.fn.module && r.fn.symbol === r.fn.name && r.fn.ftrace !== false && (own.fentry.length < 2 || f.fentryHelpers)) {
    backend = "fentry";
    attach = own.fentry.map((p) => ({ how: "fentry-fixed" as const, program: p }));
  } else {
    return { why: "kprobes are missing and fentry cannot attach to it" };
  }
  return { kind: "function", name, fn: r.fn, backend, attach };
}
