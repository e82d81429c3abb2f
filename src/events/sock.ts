// --sock's model: a socket record decoded (struct sock_event), what it
// means in words (its notes), and the connections the records describe,
// each summed up once when it closes or when tracing stops.
import { constants } from "node:os";
import { layout, rtt_log2_slots, sock_timer, tracepoint_id } from "../abi/layout.generated";
import { jiffyNs } from "../../ffi/libc";
import { addrHex, addrKey } from "../kernel/kallsyms";
import { decodePacket, kernelString, type Packet, type RecordBytes } from "./decode";

const { RTT_LOG2_BUCKETS, RTT_LOG2_COUNT, RTT_LOG2_SUM_US } = rtt_log2_slots;

const T = tracepoint_id;
const S = layout.sock_event.fields;
const H = layout.event_header.fields;

export interface SockEvent {
  cpu: number;
  timeNs: number;
  /** The connection: local address and port as source, remote as destination. */
  pkt: Packet;
  /** The socket's address (low 48 bits): the connection's identity while it lives. */
  sk: number;
  skHex: string;
  netns: number;
  pid: number;
  comm: string;
  tracepoint: number;
  /** A socket function's call (tracepoint TP_NONE): the function's name. */
  fn?: string;
  arg: number;
  state: number;
  oldState: number;
  caState: number;
  /** A full TCP socket: the fields below were read. */
  tcp: boolean;
  /** A reset sent for a packet no socket took: pkt is that packet, reversed. */
  noSocket: boolean;
  srttUs: number;
  rttUs: number;
  minRttUs: number;
  sndCwnd: number;
  packetsOut: number;
  retransOut: number;
  totalRetrans: number;
  segsOut: number;
  segsIn: number;
  wmemQueued: number;
  rmemAlloc: number;
  rcvbuf: number;
  sndbuf: number;
  bytesAcked: number;
  bytesReceived: number;
  /** A listener: connections waiting in its accept queue, and the queue's size. */
  acceptQueue: number;
  acceptQueueMax: number;
  /** Retransmission timeouts in a row, unanswered. */
  timeouts: number;
  /** The socket's pending error (errno; 0: none): ETIMEDOUT at the CLOSE of a connection the kernel gave up on. */
  skErr: number;
  /** The TCP timer pending (enum sock_timer; 0: none) and the ms until it fires (negative: overdue). */
  timer: number;
  timerMs: number;
}

const u64 = (b: RecordBytes, off: number) => b.u32[(off >>> 2) + 1]! * 0x1_0000_0000 + b.u32[off >>> 2]!;

/** `functions`: the traced socket functions' names by address key (their records name them by address). */
export function decodeSock(b: RecordBytes, off: number, functions?: ReadonlyMap<number, string>): SockEvent {
  const u32 = (f: { offset: number }) => b.u32[(off + f.offset) >>> 2]!;
  const i32 = (f: { offset: number }) => b.i32[(off + f.offset) >>> 2]!;
  const u8 = (f: { offset: number }) => b.u8[off + f.offset]!;
  const hi = (f: { offset: number }) => b.u32[((off + f.offset) >>> 2) + 1]!; // a __u64's high half
  const skLo = u32(S.sk);
  const skHi = hi(S.sk);
  const tracepoint = u32(S.tracepoint);
  return {
    cpu: b.u32[(off + H.cpu.offset) >>> 2]!,
    timeNs: u64(b, off + H.time_ns.offset),
    pkt: decodePacket(b, off + S.pkt.offset),
    sk: addrKey(skHi, skLo),
    skHex: addrHex(skHi, skLo),
    netns: u32(S.netns),
    pid: u32(S.pid),
    comm: kernelString(b.u8, off + S.comm.offset, S.comm.size),
    tracepoint,
    fn: tracepoint === T.TP_NONE ? (functions?.get(addrKey(hi(S.func), u32(S.func))) ?? "?") : undefined,
    arg: i32(S.arg),
    state: u8(S.state),
    oldState: u8(S.old_state),
    caState: u8(S.ca_state),
    tcp: u8(S.tcp) !== 0,
    noSocket: u8(S.no_socket) !== 0,
    srttUs: u32(S.srtt_us),
    rttUs: u32(S.rtt_us),
    minRttUs: u32(S.min_rtt_us),
    sndCwnd: u32(S.snd_cwnd),
    packetsOut: u32(S.packets_out),
    retransOut: u32(S.retrans_out),
    totalRetrans: u32(S.total_retrans),
    segsOut: u32(S.segs_out),
    segsIn: u32(S.segs_in),
    wmemQueued: i32(S.wmem_queued),
    rmemAlloc: i32(S.rmem_alloc),
    rcvbuf: i32(S.rcvbuf),
    sndbuf: i32(S.sndbuf),
    bytesAcked: u64(b, off + S.bytes_acked.offset),
    bytesReceived: u64(b, off + S.bytes_received.offset),
    acceptQueue: u32(S.ack_backlog),
    acceptQueueMax: u32(S.max_ack_backlog),
    timeouts: u8(S.timeouts),
    skErr: u8(S.sk_err),
    timer: u8(S.timer),
    timerMs: i32(S.timer_jiffies) * JIFFY_MS,
  };
}

/** The record counts timers in jiffies; their length is the kernel's CONFIG_HZ, which BTF does not carry. */
const JIFFY_MS = jiffyNs() / 1e6;

const TIMER_NAMES = new Map<number, string>([
  [sock_timer.SOCK_TIMER_RETRANS, "retrans"],
  [sock_timer.SOCK_TIMER_PROBE0, "probe0"],
  [sock_timer.SOCK_TIMER_LOSS_PROBE, "loss_probe"],
  [sock_timer.SOCK_TIMER_REO_TIMEOUT, "reorder"],
  [sock_timer.SOCK_TIMER_KEEPALIVE, "keepalive"],
  [sock_timer.SOCK_TIMER_FIN_WAIT2, "fin_wait2"],
]);

/** The pending timer's name, nettrace's words; undefined: none. */
export function timerName(e: SockEvent): string | undefined {
  return e.timer ? (TIMER_NAMES.get(e.timer) ?? `timer ${e.timer}`) : undefined;
}

/** Names read from the running kernel's BTF (src/kernel/btf-facts.ts). */
export interface SockNamer {
  tcpState(value: number): string | undefined;
  caState(value: number): string | undefined;
  rstReason(value: number): string | undefined;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, value]) => [value, name]));

/** "ECONNREFUSED" for 111 (the kernel's sk_err is positive). */
export function errnoName(value: number): string {
  return ERRNO_NAMES.get(Math.abs(value)) ?? `error ${value}`;
}

/** Why udp:udp_fail_queue_rcv_skb dropped a datagram: its rc, -ENOMEM for a full receive buffer, -ENOBUFS for the protocol's memory limit. */
export function udpQueueFailure(e: SockEvent): "full" | "memory" | "other" {
  const name = errnoName(e.arg);
  return name === "ENOMEM" ? "full" : name === "ENOBUFS" ? "memory" : "other";
}

/** tcp_sock.rtt_min before its first sample (~0U). */
export const NO_RTT = 0xffff_ffff;

/** µs below a millisecond (LAN and veth RTTs would all read "0ms"), ms above. */
export function durationText(us: number): string {
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 10_000) return `${(us / 1000).toFixed(1)}ms`;
  if (us < 10_000_000) return `${Math.round(us / 1000)}ms`;
  return `${(us / 1e6).toFixed(1)}s`;
}

const stateName = (n: SockNamer, v: number) => n.tcpState(v) ?? `state ${v}`;

/** A listener's accept queue is full: the kernel drops the next connection attempt (sk_acceptq_is_full). */
export const acceptQueueFull = (e: SockEvent) => e.acceptQueue > e.acceptQueueMax;

/** What a socket function's call means, in words; functions -t named outside the tree have none. */
function functionNote(e: SockEvent): string | undefined {
  const queue = () => `${e.acceptQueue} of ${e.acceptQueueMax} waiting`;
  switch (e.fn) {
    case "tcp_conn_request":
      return acceptQueueFull(e) ? `SYN dropped: the accept queue is full (${queue()}); the application does not accept() fast enough` : `SYN received (${queue()})`;
    case "inet_csk_accept":
      return `accept() (${queue()})`;
    case "tcp_retransmit_timer":
      return `retransmission timer fired: nothing acknowledged in time${e.timeouts ? ` (${e.timeouts + 1} in a row)` : ""}`;
    case "tcp_send_probe0":
      return "zero-window probe: the peer's receive window is closed";
    case "tcp_write_wakeup":
      return "window probe or keepalive sent";
    case "tcp_send_loss_probe":
      return "tail loss probe: the last segments went unacknowledged";
    case "tcp_enter_recovery":
      return "fast recovery: the peer reported a loss";
    case "tcp_enter_loss":
      return "retransmission timeout: loss recovery";
    case "tcp_enter_cwr":
      return "congestion window reduced (ECN or local congestion)";
    case "tcp_rcv_spurious_retrans":
      return "spurious retransmission: the peer resent data already received";
    case "tcp_close":
      return "close() by the application";
    case "tcp_fin":
      return "FIN received";
    case "tcp_send_active_reset":
      return "reset sent by this socket (abort)";
    default:
      return undefined;
  }
}

/** What the event means, in words, nettrace's *…* notes. */
export function sockNotes(e: SockEvent, n: SockNamer): string[] {
  if (e.fn) {
    const note = functionNote(e);
    return note ? [note] : [];
  }
  switch (e.tracepoint) {
    case T.TP_INET_SOCK_SET_STATE:
      return [`${stateName(n, e.oldState)} -> ${stateName(n, e.state)}`];
    case T.TP_TCP_PROBE:
      // rack.rtt_us is 0 until a first sample after the handshake (a passive open's first ACK): the smoothed RTT then.
      return [`${e.rttUs ? `rtt:${durationText(e.rttUs)}` : `srtt:${durationText(e.srttUs)}`}, rtt_min:${e.minRttUs === NO_RTT ? "-" : durationText(e.minRttUs)}`];
    case T.TP_TCP_RETRANSMIT_SKB:
      return ["retransmission"];
    case T.TP_TCP_RETRANSMIT_SYNACK:
      return ["SYN-ACK retransmitted"];
    case T.TP_TCP_SEND_RESET: {
      const reason = e.arg >= 0 ? n.rstReason(e.arg) : undefined;
      return [`reset sent${reason ? ` (${reason})` : ""}${e.noSocket ? ", no socket" : ""}`];
    }
    case T.TP_TCP_RECEIVE_RESET:
      return [n.tcpState(e.state) === "SYN_SENT" ? "reset received: connection refused" : "reset received"];
    case T.TP_TCP_DESTROY_SOCK:
      return ["socket destroyed"];
    case T.TP_TCP_CONG_STATE_SET:
      return [`${n.caState(e.caState) ?? e.caState} -> ${n.caState(e.arg) ?? e.arg}`];
    case T.TP_SOCK_RCVQUEUE_FULL:
      return [`receive buffer full (${e.rmemAlloc} of ${e.rcvbuf} bytes): packet dropped`];
    case T.TP_SOCK_EXCEED_BUF_LIMIT:
      return [`${e.arg === 1 ? "receive" : "send"} memory limit of the protocol reached`];
    case T.TP_INET_SK_ERROR_REPORT:
      return [`error reported to the application: ${errnoName(e.arg)}`];
    case T.TP_UDP_FAIL_QUEUE_RCV_SKB:
      return [udpQueueFailure(e) === "full" ? `receive buffer full (${e.rmemAlloc} of ${e.rcvbuf} bytes): datagram dropped` : udpQueueFailure(e) === "memory" ? "memory limit of the protocol reached: datagram dropped" : `datagram not queued: ${errnoName(e.arg)}`];
    default:
      return [];
  }
}

/** --rtt-detail: nettrace's note of an RTT sample, with the connection's minimum. */
export function rttSampleNote(e: SockEvent): string {
  return `srtt:${durationText(e.srttUs)}, rtt:${durationText(e.rttUs)}, rtt_min:${e.minRttUs === NO_RTT ? "-" : durationText(e.minRttUs)}`;
}

/** How a connection ended. */
export type ConnectionEnd = "fin" | "reset_sent" | "reset_received" | "timeout" | "closed" | "open" | "evicted";

/** One TCP connection, summed up (JSON kind "connection"). */
export interface ConnectionSummary {
  pkt: Packet;
  /** The socket's address: its later events (an error reported after CLOSE, its destruction) name it. */
  sk: number;
  netns: number;
  startNs: number;
  endNs: number;
  /** The connection's start was seen (its SYN_SENT or SYN_RECV): duration and handshake are whole. */
  fromStart: boolean;
  /** Active open: SYN_SENT → ESTABLISHED. Passive opens: unknown (the kernel makes the socket when the handshake is done). */
  handshakeUs: number | null;
  retransmits: number;
  rtt: { samples: number; minUs: number; avgUs: number; maxUs: number } | null;
  bytesOut: number | null;
  bytesIn: number | null;
  segsOut: number | null;
  segsIn: number | null;
  end: ConnectionEnd;
  /** end "fin": which side sent its FIN first. */
  closedBy: "local" | "peer" | null;
  resetReason: string | null;
  /** end "timeout": the error the kernel gave up with (ETIMEDOUT, or the ICMP error it last saw: EHOSTUNREACH…). */
  error: string | null;
  /** What --sock --diag judges (src/diagnosis/connections.ts). */
  health: ConnectionHealth;
}

/** What went wrong, or well, on a connection: the facts the connection rules match. */
export interface ConnectionHealth {
  /** It reached ESTABLISHED (or was seen there). */
  established: boolean;
  /** Retransmissions before it was established: SYNs nobody answered. */
  synRetransmits: number;
  /** Retransmission timeouts once established: the timer's firings (function hooks), else moves into CA_Loss (tcp_cong_state_set, Linux 6.2+). */
  timeouts: number;
  /** The largest smoothed RTT seen (tcp_probe), and the connection's minimum RTT (the kernel's windowed minimum, else the smallest sample). */
  srttMaxUs: number | null;
  minRttUs: number | null;
  /** sock_rcvqueue_full and sock_exceed_buf_limit events. */
  rcvqueueFull: number;
  bufLimit: number;
  /** The receive buffer at the last event that read it (bytes). */
  rcvbuf: number | null;
  /** A listener (--sock --diag, src/diagnosis/listen.ts): connection attempts its namespace dropped for a full accept queue, and the connections waiting in its own. */
  listenOverflows: number;
  acceptQueue: number;
  /** Zero-window probes sent (tcp_send_probe0: function hooks): the peer's receive window stayed closed. */
  zeroWindowProbes: number;
  /** A listener whose SYNs were seen dropped as they arrived (tcp_conn_request): how many, and its backlog. */
  queueFullSyns: number;
  backlog: number;
  /** Errors reported to the application (inet_sk_error_report), by errno name, in order, each once. */
  errors: string[];
}

/** At most this many distinct errors are kept per connection. */
const MAX_ERRORS = 8;

interface Tracked {
  sk: number;
  pkt: Packet;
  netns: number;
  startNs: number;
  lastNs: number;
  fromStart: boolean;
  synSentNs?: number;
  handshakeUs: number | null;
  retransmitEvents: number;
  /** Moves into CA_Loss, and firings of the retransmission timer once established (tcp_retransmit_timer). */
  lossMoves: number;
  timerFirings: number;
  rttSamples: number;
  rttSum: number;
  rttMin: number;
  rttMax: number;
  last?: SockEvent;
  closedBy: "local" | "peer" | null;
  reset?: { end: "reset_sent" | "reset_received"; reason: string | null };
  /** The socket's error at its CLOSE: the kernel gave up on it (tcp_write_err), unless a reset came. */
  gaveUp?: string;
  /** The error its last event reported to the application, if that was its last event. */
  justReported?: string;
  listener: boolean;
  /** Sequence numbers the kernel counts in bytes_acked / bytes_received that are not data: our SYN and FIN acknowledged, the peer's FIN. */
  synAcked: boolean;
  finAcked: boolean;
  finReceived: boolean;
  health: ConnectionHealth;
}

/** A connection's health before any event said something about it. */
export function healthyConnection(): ConnectionHealth {
  return { established: false, synRetransmits: 0, timeouts: 0, srttMaxUs: null, minRttUs: null, rcvqueueFull: 0, bufLimit: 0, rcvbuf: null, listenOverflows: 0, acceptQueue: 0, queueFullSyns: 0, backlog: 0, zeroWindowProbes: 0, errors: [] };
}

/** An error reported to the application, kept once (bounded). */
export function noteError(h: ConnectionHealth, name: string): void {
  if (!h.errors.includes(name) && h.errors.length < MAX_ERRORS) h.errors.push(name);
}

/** At most this many connections are followed at once (see Connections). */
export const MAX_CONNECTIONS = 65536;
const ENDED_KEPT = 1024;

/**
 * The TCP connections the records describe, keyed by socket address.
 * Memory is bounded: a Map of at most `max` entries (the oldest is summed
 * up as "evicted" to make room); the kernel keeps no per-socket state.
 * A connection ends at its move to CLOSE (or tcp_destroy_sock); listeners
 * are followed (so their CLOSE is theirs) but never summed up.
 */
export class Connections {
  private readonly live = new Map<number, Tracked>();
  /** Endpoints of the connections that just ended, for their last events (tcp_destroy_sock); FIFO, bounded. */
  private readonly ended = new Map<number, Packet>();

  constructor(
    private readonly n: SockNamer,
    private readonly max = MAX_CONNECTIONS,
  ) {}

  get size(): number {
    return this.live.size;
  }

  /**
   * The connection's endpoints as last seen whole: at CLOSE the kernel has
   * already given an automatically bound local port back (and before the
   * SYN it has none yet), so the event says port 0.
   */
  endpoints(e: SockEvent): Packet {
    if (e.pkt.sport) return e.pkt;
    const known = this.live.get(e.sk)?.pkt ?? this.ended.get(e.sk);
    // The same remote end (a failed connect clears the port too): the same connection, not the next one in the socket's memory.
    return known && (known.dport === e.pkt.dport || !e.pkt.dport) && known.daddr === e.pkt.daddr ? known : e.pkt;
  }

  /** Takes an event; returns the summary of the connection it ended, if any. */
  add(e: SockEvent): ConnectionSummary[] {
    if (e.noSocket || e.pkt.l4 !== 6 || e.tracepoint === T.TP_TCP_RETRANSMIT_SYNACK) return [];
    const done: ConnectionSummary[] = [];
    const state = this.n.tcpState(e.state);
    const opening = e.tracepoint === T.TP_INET_SOCK_SET_STATE && (state === "SYN_SENT" || state === "SYN_RECV" || state === "LISTEN");
    let c = this.live.get(e.sk);
    if (c && opening && this.n.tcpState(e.oldState) !== "SYN_SENT") {
      // The address was reused without a CLOSE seen: the old one is over.
      done.push(this.summary(c, "closed", c.lastNs));
      this.live.delete(e.sk);
      c = undefined;
    }
    if (!c) {
      // The last events of a connection already summed up (error report, destroy) start nothing.
      if (e.tracepoint === T.TP_TCP_DESTROY_SOCK || (!opening && this.ended.has(e.sk))) return done;
      if (this.live.size >= this.max) {
        const [oldest, tracked] = this.live.entries().next().value!;
        this.live.delete(oldest);
        if (!tracked.listener) done.push(this.summary(tracked, "evicted", e.timeNs));
      }
      c = {
        sk: e.sk, pkt: e.pkt, netns: e.netns, startNs: e.timeNs, lastNs: e.timeNs, fromStart: opening, handshakeUs: null,
        retransmitEvents: 0, lossMoves: 0, timerFirings: 0, rttSamples: 0, rttSum: 0, rttMin: Infinity, rttMax: 0, closedBy: null, listener: state === "LISTEN",
        synAcked: false, finAcked: false, finReceived: false, health: healthyConnection(),
      };
      this.live.set(e.sk, c);
    }
    c.lastNs = e.timeNs;
    // Only endpoints seen whole (see endpoints()).
    if (e.pkt.sport && e.pkt.dport) c.pkt = e.pkt;
    if (e.tcp) c.last = e;
    const justReported = c.justReported;
    c.justReported = undefined;
    const h = c.health;
    if (e.tcp) {
      if (e.minRttUs !== NO_RTT && e.minRttUs) h.minRttUs = e.minRttUs;
      if (e.rcvbuf) h.rcvbuf = e.rcvbuf;
    }
    // Any state past the handshake (FIN_WAIT1, CLOSE_WAIT…) was established first; SYN_SENT, SYN_RECV, CLOSE and LISTEN say nothing.
    const handshaking = state === "SYN_SENT" || state === "SYN_RECV" || state === "CLOSE" || state === "LISTEN" || state === undefined;
    if (!handshaking) h.established = true;
    switch (e.tracepoint) {
      case T.TP_INET_SOCK_SET_STATE: {
        const from = this.n.tcpState(e.oldState);
        if (state === "SYN_SENT") c.synSentNs = e.timeNs;
        if (state === "ESTABLISHED" && from === "SYN_SENT" && c.synSentNs !== undefined) c.handshakeUs = (e.timeNs - c.synSentNs) / 1000;
        if (c.closedBy === null && (state === "FIN_WAIT1" || state === "CLOSE_WAIT")) c.closedBy = state === "FIN_WAIT1" ? "local" : "peer";
        if (from === "SYN_SENT" && state === "ESTABLISHED") c.synAcked = true;
        if ((from === "FIN_WAIT1" && state === "FIN_WAIT2") || from === "LAST_ACK" || (from === "CLOSING" && state !== "CLOSE_WAIT")) c.finAcked = true;
        if (state === "CLOSE_WAIT" || state === "CLOSING" || (from === "FIN_WAIT2" && (state === "TIME_WAIT" || state === "CLOSE"))) c.finReceived = true;
        if (state === "CLOSE") {
          // The kernel reports its error (tcp_write_err) right before the CLOSE; the application,
          // woken by that report on another CPU, may have taken sk_err already when the CLOSE is traced.
          const error = e.skErr ? errnoName(e.skErr) : justReported;
          if (error) c.gaveUp = error;
          return this.end(e.sk, c, e.timeNs, done);
        }
        break;
      }
      case T.TP_TCP_PROBE:
        if (e.srttUs) h.srttMaxUs = Math.max(h.srttMaxUs ?? 0, e.srttUs);
        if (e.rttUs) {
          c.rttSamples++;
          c.rttSum += e.rttUs;
          c.rttMin = Math.min(c.rttMin, e.rttUs);
          c.rttMax = Math.max(c.rttMax, e.rttUs);
        }
        break;
      case T.TP_TCP_RETRANSMIT_SKB:
        c.retransmitEvents++;
        if (state === "SYN_SENT") h.synRetransmits++;
        break;
      case T.TP_TCP_CONG_STATE_SET:
        if (this.n.caState(e.arg) === "CA_Loss") h.timeouts = Math.max(++c.lossMoves, c.timerFirings);
        break;
      case T.TP_NONE:
        // The timer fires again while in CA_Loss (no new move), so where it is traced its count is the better one.
        if (e.fn === "tcp_retransmit_timer" && !handshaking) h.timeouts = Math.max(c.lossMoves, ++c.timerFirings);
        if (e.fn === "tcp_send_probe0") h.zeroWindowProbes++;
        break;
      case T.TP_SOCK_RCVQUEUE_FULL:
        h.rcvqueueFull++;
        break;
      case T.TP_SOCK_EXCEED_BUF_LIMIT:
        h.bufLimit++;
        break;
      case T.TP_INET_SK_ERROR_REPORT:
        noteError(h, (c.justReported = errnoName(e.arg)));
        break;
      case T.TP_TCP_SEND_RESET:
        c.reset ??= { end: "reset_sent", reason: e.arg >= 0 ? (this.n.rstReason(e.arg) ?? null) : null };
        break;
      case T.TP_TCP_RECEIVE_RESET:
        c.reset ??= { end: "reset_received", reason: null };
        break;
      case T.TP_TCP_DESTROY_SOCK:
        return this.end(e.sk, c, e.timeNs, done);
    }
    return done;
  }

  private end(sk: number, c: Tracked, nowNs: number, done: ConnectionSummary[]): ConnectionSummary[] {
    this.live.delete(sk);
    this.ended.delete(sk);
    if (this.ended.size >= ENDED_KEPT) this.ended.delete(this.ended.keys().next().value!);
    this.ended.set(sk, c.pkt);
    if (c.listener) return done;
    done.push(this.summary(c, c.reset?.end ?? (c.gaveUp ? "timeout" : c.closedBy ? "fin" : "closed"), nowNs));
    return done;
  }

  /** Tracing stopped: every connection still open, summed up. */
  drain(nowNs: number): ConnectionSummary[] {
    const open = [...this.live.values()].filter((c) => !c.listener).map((c) => this.summary(c, "open", nowNs));
    this.live.clear();
    this.ended.clear();
    return open;
  }

  private summary(c: Tracked, end: ConnectionEnd, endNs: number): ConnectionSummary {
    const l = c.last;
    const rttMin = c.rttSamples ? c.rttMin : null;
    return {
      pkt: c.pkt,
      sk: c.sk,
      netns: c.netns,
      startNs: c.startNs,
      endNs,
      fromStart: c.fromStart,
      handshakeUs: c.handshakeUs,
      // The socket's own count where it was read; retransmit events otherwise.
      retransmits: Math.max(c.retransmitEvents, l?.totalRetrans ?? 0),
      rtt: c.rttSamples ? { samples: c.rttSamples, minUs: c.rttMin, avgUs: Math.round(c.rttSum / c.rttSamples), maxUs: c.rttMax } : null,
      // Data only: the kernel's counters are sequence space, where SYN and FIN take one each.
      bytesOut: l ? Math.max(0, l.bytesAcked - Number(c.synAcked) - Number(c.finAcked)) : null,
      bytesIn: l ? Math.max(0, l.bytesReceived - Number(c.finReceived)) : null,
      segsOut: l ? l.segsOut : null,
      segsIn: l ? l.segsIn : null,
      end,
      closedBy: end === "fin" ? c.closedBy : null,
      resetReason: c.reset?.reason ?? null,
      error: end === "timeout" ? (c.gaveUp ?? null) : null,
      health: { ...c.health, minRttUs: c.health.minRttUs ?? rttMin, errors: [...c.health.errors] },
    };
  }
}

/** One row of the --rtt table: samples in [lowUs, highUs]. */
export interface RttBucket {
  lowUs: number;
  highUs: number;
  count: number;
}

/**
 * The rows of a log2 table (bcc's histogram shape) from a kernel
 * histogram's bucket counts: bucket i holds [2^i, 2^(i+1)) µs, the first
 * one 0 and 1 too; from the first bucket with samples to the last.
 */
export function log2Buckets(counts: number[]): RttBucket[] {
  const first = counts.findIndex((n) => n > 0);
  if (first < 0) return [];
  const last = counts.findLastIndex((n) => n > 0);
  return counts.slice(first, last + 1).map((count, j) => {
    const i = j + first;
    return { lowUs: i === 0 ? 0 : 2 ** i, highUs: 2 ** (i + 1) - 1, count };
  });
}

/** --rtt: the table of the RTT samples kept, as the kernel counted them. */
export interface RttTable {
  buckets: RttBucket[];
  /** The kernel's count (the buckets' sum once the programs are off; a live read may be a sample apart). */
  samples: number;
  sumUs: number;
  avgUs: number;
}

/** `slots`: the sock_rtt map summed over CPUs (RTT_LOG2_SLOTS numbers, enum rtt_log2_slots). */
export function rttTable(slots: number[]): RttTable {
  const samples = slots[RTT_LOG2_COUNT]!;
  const sumUs = slots[RTT_LOG2_SUM_US]!;
  return { buckets: log2Buckets(slots.slice(0, RTT_LOG2_BUCKETS)), samples, sumUs, avgUs: samples ? sumUs / samples : 0 };
}
