// NDJSON output: one object per line, names rather than numbers. The schema
// is documented in the README ("JSON output"); change both together.
import { hook_flags, packet_layers } from "../abi/layout.generated";
import type { ConnectionFacts } from "../diagnosis/connections";
import type { Finding } from "../diagnosis/rules";
import type { DropEvent, LatencyEvent, Packet, SkbMeta } from "../events/decode";
import type { PacketContext } from "../events/lifecycle";
import type { HookLine } from "../events/line";
import type { LatencySummary } from "../events/latency";
import { NO_RTT, timerName, type ConnectionSummary, type RttTable, type SockEvent } from "../events/sock";
import { NF_FAMILIES, nfHookName } from "../events/netfilter";
import { l3Name, l4Name, socketFamilyName, socketTypeName, tcpFlagsText } from "../events/protocols";
import type { Clock } from "./time";

const { PKT_L3, PKT_L4 } = packet_layers;

type Json = Record<string, unknown>;

// The members are written into the caller's object: --drop --json makes one
// object per event, and spreading per-part objects into it cost more than
// the rest of the line.
function putPacket(o: Json, p: Packet): Json {
  const hasL3 = (p.parsed & PKT_L3) !== 0;
  const hasL4 = (p.parsed & PKT_L4) !== 0;
  const ip = hasL3 && (p.l3 === 0x0800 || p.l3 === 0x86dd);
  const ports = hasL4 && (p.l4 === 6 || p.l4 === 17);
  o.l3 = l3Name(p.l3);
  o.proto = ip ? l4Name(p.l4) : l3Name(p.l3);
  o.saddr = hasL3 ? p.saddr : null;
  o.daddr = hasL3 ? p.daddr : null;
  o.sport = ports ? p.sport : null;
  o.dport = ports ? p.dport : null;
  o.ip_len = ip ? p.ipLen : null;
  o.ttl = ip ? p.ttl : null;
  o.vlan = p.vlan || null;
  // Always set (undefined is left out of the JSON): one object shape for every packet.
  o.tcp = hasL4 && p.l4 === 6 ? { seq: p.tcpSeq, ack: p.tcpAck, flags: tcpFlagsText(p.tcpFlags) } : undefined;
  o.icmp = hasL4 && (p.l4 === 1 || p.l4 === 58) ? { type: p.icmpType, code: p.icmpCode, id: p.icmpId, seq: p.icmpSeq } : undefined;
  o.arp = p.l3 === 0x0806 && hasL3 ? { op: p.arpOp === 1 ? "request" : p.arpOp === 2 ? "reply" : p.arpOp } : undefined;
  // No network layer: the socket the skb belongs to (a unix socket's message).
  o.socket = !hasL3 && p.skFamily ? { family: socketFamilyName(p.skFamily), type: socketTypeName(p.skType) } : null;
  return o;
}

function putMeta(o: Json, cpu: number, m: SkbMeta): Json {
  o.skb = m.skb;
  o.len = m.len;
  o.mark = m.mark;
  o.ifname = m.ifname || null;
  o.ifindex = m.ifindex || null;
  o.netns = m.netns || null;
  o.cpu = cpu;
  o.pid = m.pid;
  o.comm = m.comm;
  return o;
}

export function packetJson(p: Packet): Json {
  return putPacket({}, p);
}

export function metaJson(cpu: number, m: SkbMeta): Json {
  return putMeta({}, cpu, m);
}

/** A drop as the JSON output shows it (kind "drop"). */
export function dropObject(e: DropEvent, reason: string | undefined, location: string, clock: Clock, stack?: string[]): Json {
  const o: Json = { kind: "drop", time: clock.iso(e.timeNs), ts_ns: e.timeNs, reason: reason ?? null, location };
  putMeta(putPacket(o, e.pkt), e.cpu, e.meta);
  o.stack = stack;
  return o;
}

export function dropJson(e: DropEvent, reason: string | undefined, location: string, clock: Clock, stack?: string[]): string {
  return JSON.stringify(dropObject(e, reason, location, clock, stack));
}

/** One hook of a packet: where, when, the packet as it was there, and what happened. */
export function hookJson(l: HookLine, clock: Clock): Json {
  const e = l.e;
  const o: Json = { time: clock.iso(e.timeNs), ts_ns: e.timeNs, hook: l.name, notes: l.notes };
  putMeta(putPacket(o, e.pkt), e.cpu, e.meta);
  o.netfilter = e.nf ? { family: NF_FAMILIES[e.nf.family] ?? e.nf.family, hook: nfHookName(e.nf.family, e.nf.hook), table: e.nf.table || null, chain: e.nf.chain || null } : undefined;
  o.stack = l.stack;
  return o;
}

/** --basic --json: one object per hook. */
export function basicJson(l: HookLine, clock: Clock): string {
  return JSON.stringify({ kind: "hook", ...hookJson(l, clock) });
}

/** µs with ns precision, for delays between hooks. */
const usOf = (ns: number) => Math.round(ns) / 1000;

/**
 * Lifecycle --json: one object per packet context with its ordered events;
 * with --latency-show (`latency`) each event's delay_us and the packet's latency_us.
 */
export function contextJson(ctx: PacketContext, lines: HookLine[], clock: Clock, findings?: Finding[], latency?: { delays: number[]; totalNs: number }): string {
  return JSON.stringify({
    kind: "packet",
    skbs: ctx.skbs,
    start: clock.iso(ctx.firstNs),
    duration_us: Math.round((ctx.lastNs - ctx.firstNs) / 1000),
    ...(latency ? { latency_us: usOf(latency.totalNs) } : {}),
    end: ctx.end,
    truncated_events: ctx.truncated,
    events: lines.map((l, i) => (latency ? { ...hookJson(l, clock), delay_us: usOf(latency.delays[i]!) } : hookJson(l, clock))),
    ...(findings ? { findings } : {}),
  });
}

/** --monitor: one abnormal event printed whole. */
export function monitorJson(
  l: HookLine,
  m: { event: string; reason?: string; location?: string; tcpState?: string; srttUs?: number; rttUs?: number; fromSock: boolean; netfilter?: { family: string; hook: string } },
  clock: Clock,
): string {
  const o: Json = { kind: "monitor", event: m.event, ...hookJson(l, clock) };
  o.reason = m.reason ?? null;
  o.location = m.location ?? null;
  o.connection = m.fromSock;
  o.tcp_state = m.tcpState ?? null;
  o.srtt_us = m.srttUs ?? null;
  o.rtt_us = m.rttUs ?? null;
  if (m.netfilter && !o.netfilter) o.netfilter = { family: m.netfilter.family, hook: m.netfilter.hook, table: null, chain: null };
  return JSON.stringify(o);
}

/** --monitor: how many more events of one kind there were than were printed. */
export function repeatJson(r: { event: string; count: number; seconds: number; description: string; reason: string | null; location: string | null; proto: string; daddr: string; dport: number | null; netns: number }): string {
  return JSON.stringify({ kind: "repeat", ...r, seconds: Number(r.seconds.toFixed(3)) });
}

/** --monitor: repeats past the line budget of a window, in one object. */
export function repeatRestJson(count: number, keys: number, seconds: number): string {
  return JSON.stringify({ kind: "repeat_rest", count, keys, seconds: Number(seconds.toFixed(3)) });
}

/** --func-stats: calls per hook over the last interval. */
export function funcStatsJson(rows: { hook: string; calls: number; total: number }[], seconds: number, clock: Clock, nowNs: number): string {
  return JSON.stringify({ kind: "func_stats", time: clock.iso(nowNs), seconds: Number(seconds.toFixed(3)), hooks: rows });
}

/** The connection's endpoints, as packets give them (local as source). */
function putConnection(o: Json, p: Packet, netns: number): Json {
  o.l3 = l3Name(p.l3);
  o.proto = l4Name(p.l4);
  o.saddr = p.saddr;
  o.sport = p.sport;
  o.daddr = p.daddr;
  o.dport = p.dport;
  o.netns = netns || null;
  return o;
}

/** Names of a --sock event's numbers, from the running kernel's BTF. */
export interface SockNames {
  state?: string;
  oldState?: string;
  caState?: string;
  resetReason?: string;
  /** inet_sk_error_report: the errno's name. */
  error?: string;
}

/** --sock: one socket event (kind "sock"). */
export function sockJson(e: SockEvent, hook: string, names: SockNames, notes: string[], clock: Clock): string {
  const o: Json = { kind: "sock", time: clock.iso(e.timeNs), ts_ns: e.timeNs, hook };
  putConnection(o, e.pkt, e.netns);
  o.sk = e.noSocket ? null : e.skHex;
  o.cpu = e.cpu;
  o.pid = e.pid;
  o.comm = e.comm;
  o.state = names.state ?? null;
  o.old_state = names.oldState ?? null;
  o.notes = notes;
  o.reset_reason = names.resetReason ?? null;
  o.error = names.error ?? null;
  o.no_socket = e.noSocket;
  o.tcp = e.tcp
    ? {
        ca_state: names.caState ?? e.caState, srtt_us: e.srttUs, rtt_us: e.rttUs, min_rtt_us: e.minRttUs === NO_RTT ? null : e.minRttUs, cwnd: e.sndCwnd, packets_out: e.packetsOut,
        retrans_out: e.retransOut, total_retrans: e.totalRetrans, segs_out: e.segsOut, segs_in: e.segsIn, bytes_acked: e.bytesAcked, bytes_received: e.bytesReceived,
      }
    : null;
  o.mem = e.tcp || e.rcvbuf ? { wmem_queued: e.wmemQueued, rmem_alloc: e.rmemAlloc, sndbuf: e.sndbuf, rcvbuf: e.rcvbuf } : null;
  o.accept_queue = names.state === "LISTEN" ? { waiting: e.acceptQueue, max: e.acceptQueueMax } : null;
  const timer = timerName(e);
  o.timer = timer ? { kind: timer, left_ms: Math.round(e.timerMs * 1000) / 1000 } : null;
  return JSON.stringify(o);
}

/** --rtt-detail: one RTT sample (kind "rtt"). */
export function rttSampleJson(e: SockEvent, state: string | undefined, caState: string | undefined, clock: Clock): string {
  const o: Json = { kind: "rtt", time: clock.iso(e.timeNs), ts_ns: e.timeNs };
  putConnection(o, e.pkt, e.netns);
  o.sk = e.skHex;
  o.pid = e.pid;
  o.comm = e.comm;
  o.state = state ?? null;
  o.ca_state = caState ?? e.caState;
  o.rtt_us = e.rttUs;
  o.srtt_us = e.srttUs;
  o.min_rtt_us = e.minRttUs === NO_RTT ? null : e.minRttUs;
  o.cwnd = e.sndCwnd;
  o.packets_out = e.packetsOut;
  o.retrans_out = e.retransOut;
  return JSON.stringify(o);
}

/** --rtt: the RTT samples' log2 table (kind "rtt_histogram"), every second and at exit (`final`). */
export function rttHistogramJson(t: RttTable, final: boolean, clock: Clock, nowNs: number): string {
  return JSON.stringify({
    kind: "rtt_histogram", time: clock.iso(nowNs), final, samples: t.samples, sum_us: t.sumUs, avg_us: t.samples ? Math.round(t.avgUs) : null,
    buckets: t.buckets.map((b) => ({ low_us: b.lowUs, high_us: b.highUs, count: b.count })),
  });
}

/** --sock: one connection summed up (kind "connection"). */
export function connectionJson(c: ConnectionSummary, clock: Clock): string {
  const o: Json = { kind: "connection", time: clock.iso(c.endNs), start: clock.iso(c.startNs) };
  putConnection(o, c.pkt, c.netns);
  o.duration_us = Math.round((c.endNs - c.startNs) / 1000);
  o.from_start = c.fromStart;
  o.handshake_us = c.handshakeUs === null ? null : Math.round(c.handshakeUs);
  o.retransmits = c.retransmits;
  o.rtt_samples = c.rtt?.samples ?? 0;
  o.rtt_min_us = c.rtt?.minUs ?? null;
  o.rtt_avg_us = c.rtt?.avgUs ?? null;
  o.rtt_max_us = c.rtt?.maxUs ?? null;
  o.bytes_out = c.bytesOut;
  o.bytes_in = c.bytesIn;
  o.segs_out = c.segsOut;
  o.segs_in = c.segsIn;
  o.end = c.end;
  o.closed_by = c.closedBy;
  o.reset_reason = c.resetReason;
  o.error = c.error;
  return JSON.stringify(o);
}

/** --latency: one slow packet (kind "latency"); `names` as in the text line. */
export function latencyJson(e: LatencyEvent, n: { first: string; last: string; end: string; reason?: string; location?: string }, clock: Clock): string {
  const o: Json = { kind: "latency", time: clock.iso(e.firstNs), ts_ns: e.firstNs, latency_us: usOf(e.latencyNs), first_hook: n.first, last_hook: n.last, end_hook: n.end };
  o.end = e.endFlags & hook_flags.HOOK_DROP ? "drop" : e.endFlags & hook_flags.HOOK_FREE ? "free" : "hook";
  o.last_ts_ns = e.lastNs;
  o.end_ts_ns = e.endNs;
  o.hooks = e.hooks;
  o.reason = n.reason ?? null;
  o.location = n.location ?? null;
  putMeta(putPacket(o, e.pkt), e.cpu, e.meta);
  return JSON.stringify(o);
}

/** --latency-summary: the log2 table of packet latencies (kind "latency_histogram"). */
export function latencyHistogramJson(h: LatencySummary): string {
  return JSON.stringify({ kind: "latency_histogram", packets: h.packets, avg_us: h.packets ? Math.round(h.avgUs) : null, buckets: h.buckets.map((b) => ({ low_us: b.lowUs, high_us: b.highUs, count: b.count })) });
}

/** --sock --diag: one finding about a connection (kind "finding"); its endpoints, netns and start are the connection's key. */
export function connectionFindingJson(c: ConnectionFacts, timeNs: number, f: Finding, clock: Clock): string {
  const o: Json = { kind: "finding", time: clock.iso(timeNs), start: clock.iso(c.startNs) };
  putConnection(o, c.pkt, c.netns);
  o.rule = f.rule;
  o.level = f.level;
  o.message = f.message;
  o.advice = f.advice ?? null;
  return JSON.stringify(o);
}
