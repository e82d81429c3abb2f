// --sock --diag: the connection rules of the knowledge base (rules.yaml's
// rules with connection conditions: end, established, retransmits, …)
// judged on whole connections. A TCP connection is judged when it is summed
// up, a socket of another protocol (UDP: only its buffer and error events
// exist) when tracing stops. A closed connection's verdict waits a moment
// (HOLD_NS) or until its socket is destroyed: from Linux 6.10 the kernel
// reports the error to the application (ECONNREFUSED, ETIMEDOUT) just after
// the move to CLOSE, before it on older kernels.
import { tracepoint_id } from "../abi/layout.generated";
import type { Packet } from "../events/decode";
import { l4Name } from "../events/protocols";
import { durationText, errnoName, healthyConnection, MAX_CONNECTIONS, noteError, udpQueueFailure, type ConnectionEnd, type ConnectionHealth, type ConnectionSummary, type SockEvent } from "../events/sock";
import type { Conditions, Rule } from "./knowledge";
import type { Finding } from "./rules";

const T = tracepoint_id;

/** What a connection rule is matched against. */
export interface ConnectionFacts {
  pkt: Packet;
  netns: number;
  /** When it was first seen (kernel ns): with the endpoints, the connection's key in JSON. */
  startNs: number;
  /** How a TCP connection ended; null for sockets of other protocols (no states). */
  end: ConnectionEnd | null;
  resetReason: string | null;
  /** Segments retransmitted once established (SYNs not counted). */
  retransmits: number;
  health: ConnectionHealth;
  /** A listening socket (src/diagnosis/listen.ts), not a connection. */
  listening?: boolean;
}

/** A connection's verdict: its summary (TCP) and the findings the rules made. */
export interface ConnectionVerdict {
  summary?: ConnectionSummary;
  facts: ConnectionFacts;
  findings: Finding[];
}

/** How long a closed connection's verdict waits for the error the kernel reports just after CLOSE. */
export const HOLD_NS = 100e6;

export function summaryFacts(s: ConnectionSummary): ConnectionFacts {
  return {
    pkt: s.pkt, netns: s.netns, startNs: s.startNs, end: s.end, resetReason: s.resetReason,
    retransmits: Math.max(0, s.retransmits - s.health.synRetransmits), health: s.health,
  };
}

const atLeast = (want: number | undefined, have: number) => want === undefined || have >= want;

export function connectionMatches(c: Conditions, f: ConnectionFacts): boolean {
  const any = (list: string[] | undefined, value: string | null) => !list || (value !== null && list.includes(value));
  const h = f.health;
  if (!any(c.proto, l4Name(f.pkt.l4).toLowerCase())) return false;
  if (!any(c.end, f.end) || !any(c.rst_reason, f.resetReason)) return false;
  if (c.established !== undefined && c.established !== h.established) return false;
  if (!atLeast(c.syn_retransmits, h.synRetransmits) || !atLeast(c.retransmits, f.retransmits) || !atLeast(c.timeouts, h.timeouts)) return false;
  if (!atLeast(c.rcvqueue_full, h.rcvqueueFull) || !atLeast(c.buf_limit, h.bufLimit)) return false;
  if (!atLeast(c.listen_overflows, h.listenOverflows) || !atLeast(c.accept_queue, h.acceptQueue) || !atLeast(c.queue_full_syns, h.queueFullSyns)) return false;
  if (!atLeast(c.zero_window_probes, h.zeroWindowProbes)) return false;
  if (c.srtt_over_min !== undefined && !(h.srttMaxUs !== null && h.minRttUs && h.srttMaxUs >= c.srtt_over_min * h.minRttUs)) return false;
  if (c.srtt_ms !== undefined && !(h.srttMaxUs !== null && h.srttMaxUs >= c.srtt_ms * 1000)) return false;
  if (c.error && !h.errors.some((e) => c.error!.includes("any") || c.error!.includes(e))) return false;
  return true;
}

function fill(text: string, f: ConnectionFacts, c: Conditions): string {
  const h = f.health;
  const errors = c.error && !c.error.includes("any") ? h.errors.filter((e) => c.error!.includes(e)) : h.errors;
  const values: Record<string, string | number | null> = {
    saddr: f.pkt.saddr, daddr: f.pkt.daddr, sport: f.pkt.sport, dport: f.pkt.dport, proto: l4Name(f.pkt.l4).toLowerCase(), netns: f.netns,
    rst_reason: f.resetReason, end: f.end, retransmits: f.retransmits, syn_retransmits: h.synRetransmits, timeouts: h.timeouts,
    srtt_max: h.srttMaxUs === null ? null : durationText(h.srttMaxUs), min_rtt: h.minRttUs === null ? null : durationText(h.minRttUs),
    rcvqueue_full: h.rcvqueueFull, buf_limit: h.bufLimit, rcvbuf: h.rcvbuf,
    listen_overflows: h.listenOverflows, accept_queue: h.acceptQueue, queue_full_syns: h.queueFullSyns, backlog: h.backlog, zero_window_probes: h.zeroWindowProbes, error: errors.join(", ") || null,
  };
  return text.replace(/\{(\w+)\}/g, (_, k: string) => String(values[k] ?? "?"));
}

/** The findings of one connection, without those other findings override. */
export function judgeConnection(rules: Rule[], f: ConnectionFacts): Finding[] {
  const all: { f: Finding; overrides: string[] }[] = [];
  for (const r of rules) {
    if (r.kind !== "connection" || !connectionMatches(r.when, f)) continue;
    // Where it happened, in the ANALYSIS RESULT block: a TCP connection, or another protocol's socket.
    all.push({ f: { rule: r.id, level: r.level, hook: f.listening ? "listener" : f.end === null ? "socket" : "connection", message: fill(r.message, f, r.when), advice: r.advice && fill(r.advice, f, r.when) }, overrides: r.overrides });
  }
  const overridden = new Set(all.flatMap((x) => x.overrides));
  return all.filter((x) => !overridden.has(x.f.rule)).map((x) => x.f);
}

/** Sockets of other protocols followed at once; past it, new ones are not (their events still show). */
const MAX_OTHER_SOCKETS = 4096;

/**
 * Holds closed connections until their verdict is due, and sums up the
 * buffer and error events of other protocols' sockets. Bounded: at most
 * MAX_CONNECTIONS held (the oldest goes out early) and MAX_OTHER_SOCKETS.
 */
export class ConnectionDiagnosis {
  private readonly held = new Map<number, { summary: ConnectionSummary; dueNs: number }>();
  private readonly others = new Map<number, ConnectionFacts>();

  constructor(private readonly rules: Rule[]) {}

  private verdict(summary: ConnectionSummary): ConnectionVerdict {
    const facts = summaryFacts(summary);
    return { summary, facts, findings: judgeConnection(this.rules, facts) };
  }

  /** A connection summed up: judged once its error report had time to come (see HOLD_NS); an open one at once. */
  hold(summary: ConnectionSummary): ConnectionVerdict[] {
    if (summary.end === "open" || summary.end === "evicted") return [this.verdict(summary)];
    const out: ConnectionVerdict[] = [];
    const earlier = this.held.get(summary.sk);
    // The socket's memory reused by the next connection: the earlier one is complete.
    if (earlier) out.push(this.release(summary.sk));
    if (this.held.size >= MAX_CONNECTIONS) out.push(this.release(this.held.keys().next().value!));
    this.held.set(summary.sk, { summary, dueNs: summary.endNs + HOLD_NS });
    return out;
  }

  private release(sk: number): ConnectionVerdict {
    const { summary } = this.held.get(sk)!;
    this.held.delete(sk);
    return this.verdict(summary);
  }

  /** Every socket event: the late error of a held connection, its destruction; other protocols' buffer and error events. */
  event(e: SockEvent): ConnectionVerdict[] {
    if (e.noSocket) return [];
    const held = this.held.get(e.sk);
    if (held) {
      if (e.tracepoint === T.TP_INET_SK_ERROR_REPORT) noteError(held.summary.health, errnoName(e.arg));
      return e.tracepoint === T.TP_TCP_DESTROY_SOCK ? [this.release(e.sk)] : [];
    }
    if (e.pkt.l4 === 6) return [];
    let f = this.others.get(e.sk);
    if (!f) {
      if (this.others.size >= MAX_OTHER_SOCKETS) return [];
      f = { pkt: e.pkt, netns: e.netns, startNs: e.timeNs, end: null, resetReason: null, retransmits: 0, health: healthyConnection() };
      this.others.set(e.sk, f);
    }
    const h = f.health;
    if (e.rcvbuf) h.rcvbuf = e.rcvbuf;
    const udp = e.tracepoint === T.TP_UDP_FAIL_QUEUE_RCV_SKB ? udpQueueFailure(e) : undefined;
    if (e.tracepoint === T.TP_SOCK_RCVQUEUE_FULL || udp === "full") h.rcvqueueFull++;
    if (e.tracepoint === T.TP_SOCK_EXCEED_BUF_LIMIT || udp === "memory") h.bufLimit++;
    if (e.tracepoint === T.TP_INET_SK_ERROR_REPORT) noteError(h, errnoName(e.arg));
    return [];
  }

  /** Verdicts that are due at `nowNs` (the kernel's monotonic clock). */
  due(nowNs: number): ConnectionVerdict[] {
    const out: ConnectionVerdict[] = [];
    for (const [sk, h] of this.held) if (h.dueNs <= nowNs) out.push(this.release(sk));
    return out;
  }

  /** Tracing stopped: every held connection, then the other protocols' sockets that have findings. */
  drain(): ConnectionVerdict[] {
    const out = [...this.held.keys()].map((sk) => this.release(sk));
    for (const facts of this.others.values()) {
      const findings = judgeConnection(this.rules, facts);
      if (findings.length) out.push({ facts, findings });
    }
    this.others.clear();
    return out;
  }
}
