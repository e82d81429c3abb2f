// What --sock attaches on this kernel (bpf/progs/sock.bpf.h): the socket
// tracepoints it has, in the variant their arguments fit, and, where the
// kernel has kprobes or fentry, the socket functions of the tracer tree
// (SOCK_GROUPS), each through its struct sock * argument (position from
// BTF). The tracepoints alone make socket mode work on kernels without
// kprobes and fentry; the functions add what no tracepoint shows (timers
// firing, probes, SYNs reaching a full listener). Plain data.
import { tracepoint_id } from "../abi/layout.generated";
import { program as P } from "../abi/programs.generated";
import { shown, usageError } from "../common/errors";
import type { Btf } from "../kernel/btf";
import type { Features } from "../kernel/features";
import type { FunctionIndex, KernelFunction } from "../kernel/functions";
import { chooseBackend, type Attach, type BackendChoice, type FunctionBackend, type Plan } from "./plan";
import { allHooks, findGroup, selectHooks, type TreeGroup } from "./tracer-tree";
import { planTracepoints, type TracepointSpec } from "./tracepoints";

const T = tracepoint_id;

/** What each hook is for, in words (-v). */
export const SOCK_PURPOSE: Record<string, string> = {
  "sock:inet_sock_set_state": "state changes (handshake, close)",
  "tcp:tcp_probe": "RTT samples (segments that acknowledge new data)",
  "tcp:tcp_retransmit_skb": "retransmissions",
  "tcp:tcp_retransmit_synack": "SYN-ACK retransmissions",
  "tcp:tcp_send_reset": "resets sent (with the reason from Linux 6.10)",
  "tcp:tcp_receive_reset": "resets received",
  "tcp:tcp_destroy_sock": "sockets freed",
  "tcp:tcp_cong_state_set": "congestion state changes (Linux 6.2+)",
  "sock:sock_rcvqueue_full": "receive buffer full (a packet dropped)",
  "sock:sock_exceed_buf_limit": "protocol memory limit reached",
  "sock:inet_sk_error_report": "errors reported to the application",
  "udp:udp_fail_queue_rcv_skb": "a UDP socket's receive buffer full (a datagram dropped)",
};

/** Said with -v where no function backend is used: what the function hooks would add. */
export const SOCK_FUNCTIONS_WOULD_ADD = "retransmission timers firing, zero-window and loss probes, SYNs reaching a full listener and accept() calls need function hooks (tracepoints only here)";

/** nettrace's socket-mode groups of the tracer tree: --sock traces their functions that take a struct sock *. */
export const SOCK_GROUPS = ["tcp-state", "tcp-congestion", "tcp-retrans"];
/** And tcp-in's SYN handler: the listener with its accept queue, where a full queue drops the SYN. */
const SOCK_ALSO = ["tcp_conn_request"];

export const SOCK_TRACEPOINTS: TracepointSpec[] = [
  { id: T.TP_INET_SOCK_SET_STATE, name: "sock:inet_sock_set_state", skbArg: -1, sockArg: 0, variants: [[3, { btf: P.tp_inet_sock_set_state_sock_btf, raw: P.tp_inet_sock_set_state_sock_raw }]] },
  { id: T.TP_TCP_PROBE, name: "tcp:tcp_probe", skbArg: 1, sockArg: 0, variants: [[2, { btf: P.tp_tcp_probe_sock_btf, raw: P.tp_tcp_probe_sock_raw }]] },
  { id: T.TP_TCP_RETRANSMIT_SKB, name: "tcp:tcp_retransmit_skb", skbArg: 1, sockArg: 0, variants: [[2, { btf: P.tp_tcp_retransmit_skb_sock_btf, raw: P.tp_tcp_retransmit_skb_sock_raw }]] },
  { id: T.TP_TCP_RETRANSMIT_SYNACK, name: "tcp:tcp_retransmit_synack", skbArg: -1, sockArg: 0, variants: [[2, { btf: P.tp_tcp_retransmit_synack_sock_btf, raw: P.tp_tcp_retransmit_synack_sock_raw }]] },
  { id: T.TP_TCP_SEND_RESET, name: "tcp:tcp_send_reset", skbArg: 1, sockArg: 0, variants: [[3, { btf: P.tp_tcp_send_reset_sock_reason_btf, raw: P.tp_tcp_send_reset_sock_reason_raw }], [2, { btf: P.tp_tcp_send_reset_sock_noreason_btf, raw: P.tp_tcp_send_reset_sock_noreason_raw }]] },
  { id: T.TP_TCP_RECEIVE_RESET, name: "tcp:tcp_receive_reset", skbArg: -1, sockArg: 0, variants: [[1, { btf: P.tp_tcp_receive_reset_sock_btf, raw: P.tp_tcp_receive_reset_sock_raw }]] },
  { id: T.TP_TCP_DESTROY_SOCK, name: "tcp:tcp_destroy_sock", skbArg: -1, sockArg: 0, variants: [[1, { btf: P.tp_tcp_destroy_sock_sock_btf, raw: P.tp_tcp_destroy_sock_sock_raw }]] },
  { id: T.TP_TCP_CONG_STATE_SET, name: "tcp:tcp_cong_state_set", skbArg: -1, sockArg: 0, variants: [[2, { btf: P.tp_tcp_cong_state_set_sock_btf, raw: P.tp_tcp_cong_state_set_sock_raw }]] },
  { id: T.TP_SOCK_RCVQUEUE_FULL, name: "sock:sock_rcvqueue_full", skbArg: 1, sockArg: 0, variants: [[2, { btf: P.tp_sock_rcvqueue_full_sock_btf, raw: P.tp_sock_rcvqueue_full_sock_raw }]] },
  { id: T.TP_SOCK_EXCEED_BUF_LIMIT, name: "sock:sock_exceed_buf_limit", skbArg: -1, sockArg: 0, variants: [[4, { btf: P.tp_sock_exceed_buf_limit_sock_btf, raw: P.tp_sock_exceed_buf_limit_sock_raw }]] },
  { id: T.TP_INET_SK_ERROR_REPORT, name: "sock:inet_sk_error_report", skbArg: -1, sockArg: 0, variants: [[1, { btf: P.tp_inet_sk_error_report_sock_btf, raw: P.tp_inet_sk_error_report_sock_raw }]] },
  // UDP queues datagrams without sock:sock_rcvqueue_full: this is where its full receive buffer shows.
  { id: T.TP_UDP_FAIL_QUEUE_RCV_SKB, name: "udp:udp_fail_queue_rcv_skb", skbArg: -1, sockArg: 1, variants: [[2, { btf: P.tp_udp_fail_queue_rcv_skb_sock_btf, raw: P.tp_udp_fail_queue_rcv_skb_sock_raw }]] },
];

/** Programs per position of the struct sock * argument (SOCK_FUNC_PROGRAMS). */
const BY_SOCK_ARG = [
  { kmulti: P.kmulti_sock0, kprobe: P.kprobe_sock0, fentry: P.fentry_sock0, fentryId: P.fentry_id_sock0 },
  { kmulti: P.kmulti_sock1, kprobe: P.kprobe_sock1, fentry: P.fentry_sock1, fentryId: P.fentry_id_sock1 },
  { kmulti: P.kmulti_sock2, kprobe: P.kprobe_sock2, fentry: P.fentry_sock2, fentryId: P.fentry_id_sock2 },
];

/**
 * The socket functions --sock traces: without -t, the hooks of SOCK_GROUPS
 * on by default in their group (the per-segment ones are off: the
 * tracepoints show those events more cheaply); with -t, the functions it
 * selects in the tree (its tracepoints are --sock's own, always attached)
 * and names outside it.
 */
export function sockFunctionNames(tree: TreeGroup[], selectors: string[] | undefined): { names: string[]; named: string[] } {
  if (!selectors) {
    const hooks = allHooks(SOCK_GROUPS.map((g) => findGroup(tree, g)!));
    return { names: [...hooks.filter((h) => h.kind === "function" && h.defaultInGroup).map((h) => h.name), ...SOCK_ALSO], named: [] };
  }
  const selection = selectHooks(tree, selectors);
  for (const o of selection.outside) if (/[*?]/.test(o)) throw usageError(`-t with --sock: '${shown(o)}' matches no hook of the tree; name socket functions in full (skbtrail -t '?')`);
  return { names: selection.hooks.filter((h) => h.kind === "function").map((h) => h.name), named: selection.outside };
}

export interface SockPlanInput {
  btf: Btf;
  features: Features;
  /** --rtt alone: only the RTT samples are counted, so only tcp:tcp_probe is attached. */
  rttOnly: boolean;
  /** Socket functions to trace (sockFunctionNames); `named`: the ones -t named outside the tree, which must exist. */
  functions?: { index: FunctionIndex; names: string[]; named: string[] };
  backend?: BackendChoice;
}

function sockAttach(fn: KernelFunction, backend: FunctionBackend, f: Features): Attach[] {
  const p = BY_SOCK_ARG[fn.sockArg!]!;
  if (backend === "kprobe-multi") return [{ how: "kprobe-multi", program: p.kmulti, retprobe: false }];
  if (backend === "kprobe") return [{ how: "kprobe", program: p.kprobe, retprobe: false }];
  const idInCode = !f.fentryHelpers;
  return [{ how: "fentry-template", program: idInCode ? p.fentryId : p.fentry, exit: false, idInCode }];
}

export function makeSockPlan(input: SockPlanInput): Plan {
  const f = input.features;
  const plan = planTracepoints(input.btf, f.tpBtf, input.rttOnly ? SOCK_TRACEPOINTS.filter((t) => t.id === T.TP_TCP_PROBE) : SOCK_TRACEPOINTS);
  plan.attachCookies = f.attachCookie;
  if (input.rttOnly || !input.functions) return plan;
  const { index, names, named } = input.functions;
  for (const name of [...names, ...named]) {
    const r = index.resolve(name, "sock");
    if ("why" in r) {
      if (named.includes(name)) throw usageError(`-t: '${shown(name)}' is not a tracer group, a hook of the tree or a kernel function taking a struct sock (${r.why}); see skbtrail -t '?'`);
      plan.skipped.push({ name, why: r.why });
      continue;
    }
    const backend = chooseBackend(r.fn, f, input.backend);
    if (typeof backend !== "string") plan.skipped.push({ name, why: backend.why });
    else plan.hooks.push({ kind: "function", name, group: "socket", fn: r.fn, backend, attach: sockAttach(r.fn, backend, f) });
  }
  index.keepResolutions();
  return plan;
}
