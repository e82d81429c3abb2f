// What --sock attaches on this kernel (bpf/progs/sock.bpf.h): the socket
// tracepoints it has, in the variant their arguments fit. Tracepoints only,
// so socket mode works on kernels without kprobes and fentry; what function
// hooks would add is said with -v (SOCK_FUNCTIONS_WOULD_ADD). Plain data.
import { tracepoint_id } from "../abi/layout.generated";
import { program as P } from "../abi/programs.generated";
import type { Btf } from "../kernel/btf";
import type { Plan } from "./plan";
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

/** Said with -v: tracepoints do not show these; function hooks (a later backend) would. */
export const SOCK_FUNCTIONS_WOULD_ADD = "retransmission timer firings, zero-window probes, listen queue overflows and accept/connect calls need function hooks (not used by --sock yet)";

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

/** `rttOnly` (--rtt alone): only the RTT samples are counted, so only tcp:tcp_probe is attached. */
export function makeSockPlan(btf: Btf, tpBtf: boolean, rttOnly = false): Plan {
  return planTracepoints(btf, tpBtf, rttOnly ? SOCK_TRACEPOINTS.filter((t) => t.id === T.TP_TCP_PROBE) : SOCK_TRACEPOINTS);
}
