// Human output in nettrace's style, so its users (and their greps) feel at home:
//   [153.345912] UDP: 127.0.0.1:55033 -> 127.0.0.1:9997 *reason: NO_SOCKET, __udp4_lib_rcv+0x9a2* *packet is dropped by kernel*
// Packets in one line:
//   TCP: 10.0.0.1:5 -> 10.0.0.2:80 seq:1, ack:0, flags:S
//   UDP: 10.0.0.1:5 -> 10.0.0.2:53
//   ICMP: 10.0.0.1 -> 10.0.0.2 ping request, seq: 0, id: 545
// IPv6 endpoints with ports are bracketed ([fd00::1]:80) so they stay unambiguous.
import { createColors } from "picocolors";
import { hook_flags, packet_layers } from "../abi/layout.generated";
import type { Finding } from "../diagnosis/rules";
import type { DropEvent, LatencyEvent, Packet, SkbMeta } from "../events/decode";
import type { HookLine } from "../events/line";
import { durationText, timerName, type ConnectionSummary, type RttBucket, type SockEvent } from "../events/sock";
import { ICMP_TYPES, ICMPV6_TYPES, icmpTypeText, l3Name, l4Name, socketText, tcpFlagsText } from "../events/protocols";
import type { Clock } from "./time";

const { PKT_L3, PKT_L4 } = packet_layers;

function icmpText(p: Packet): string {
  const v6 = p.l4 === 58;
  const isEcho = v6 ? p.icmpType === 128 || p.icmpType === 129 : p.icmpType === 0 || p.icmpType === 8;
  if (isEcho) return `${(v6 ? ICMPV6_TYPES : ICMP_TYPES)[p.icmpType]}, seq: ${p.icmpSeq}, id: ${p.icmpId}`;
  return icmpTypeText(v6, p.icmpType, p.icmpCode);
}

function endpoint(addr: string, port: number, v6: boolean): string {
  return v6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

export function packetSummary(p: Packet): string {
  if (!(p.parsed & PKT_L3)) {
    if (p.l3 && p.l3 !== 0x0800 && p.l3 !== 0x86dd) return l3Name(p.l3);
    // No network layer: a local socket's message (unix, netlink), named by its socket.
    return p.skFamily ? socketText(p.skFamily, p.skType) : "unknown";
  }
  if (p.l3 === 0x0806) {
    const op = p.arpOp === 1 ? "request" : p.arpOp === 2 ? "reply" : `op ${p.arpOp}`;
    return `ARP: ${p.saddr} -> ${p.daddr} ${op}`;
  }
  const v6 = p.l3 === 0x86dd;
  const vlan = p.vlan ? ` vlan ${p.vlan}` : "";
  if (!(p.parsed & PKT_L4)) return `${v6 ? "IPv6" : "IPv4"}: ${p.saddr} -> ${p.daddr} ${l4Name(p.l4)}${vlan}`;
  switch (p.l4) {
    case 6:
      return `TCP: ${endpoint(p.saddr, p.sport, v6)} -> ${endpoint(p.daddr, p.dport, v6)} seq:${p.tcpSeq}, ack:${p.tcpAck}, flags:${tcpFlagsText(p.tcpFlags)}${vlan}`;
    case 17:
      return `UDP: ${endpoint(p.saddr, p.sport, v6)} -> ${endpoint(p.daddr, p.dport, v6)}${vlan}`;
    default:
      return `${l4Name(p.l4)}: ${p.saddr} -> ${p.daddr} ${icmpText(p)}${vlan}`;
  }
}


export type Colors = ReturnType<typeof createColors>;

/** Colors only on a terminal, and never when NO_COLOR is set. */
export function colorsFor(isTTY: boolean): Colors {
  return createColors(isTTY && !("NO_COLOR" in process.env));
}

export interface TextStyle {
  colors: Colors;
  clock: Clock;
  date: boolean;
  detail: boolean;
  /** --latency-show: a column with each hook's delay since the packet's previous one. */
  latencyShow?: boolean;
  /** --tiny-show: the packet only where it changes. */
  tiny?: boolean;
}

/** A delay between hooks: sub-µs precision below 10 µs, where the stack's own steps are. */
export function delayText(ns: number): string {
  return ns < 10_000 ? `${(ns / 1000).toFixed(1)}µs` : durationText(ns / 1000);
}

/** "[cpu:1  ][lo        ][pid:1234   ][ping            ][ns:4026531840] " for --detail. */
export function detailPrefix(cpu: number, m: SkbMeta): string {
  return `[cpu:${String(cpu).padEnd(3)}][${(m.ifname || "-").padEnd(10)}][pid:${String(m.pid).padEnd(7)}][${m.comm.padEnd(16)}][ns:${m.netns}] `;
}

export function dropLine(e: DropEvent, reason: string | undefined, location: string, s: TextStyle): string {
  const c = s.colors;
  const where = reason ? `reason: ${c.red(reason)}, ${location}` : location;
  const detail = s.detail ? `[${e.meta.skb}]${detailPrefix(e.cpu, e.meta)}` : "";
  return `[${s.clock.stamp(e.timeNs, s.date)}] ${detail}${packetSummary(e.pkt)} *${where}* ${c.yellow("*packet is dropped by kernel*")}`;
}

export function stackLines(frames: string[]): string[] {
  return ["Call Stack:", ...frames.map((f) => `    -> ${f}`)];
}

/**
 * "[153.345912] [ip_rcv              ] UDP: … *note*" (nettrace's layout);
 * with --latency-show, `delayNs` adds "[+1.2µs    ] " after the time.
 */
export function hookLine(l: HookLine, s: TextStyle, delayNs?: number, packet = packetSummary(l.e.pkt)): string {
  const c = s.colors;
  const delay = delayNs === undefined ? "" : `[+${delayText(delayNs).padEnd(9)}] `;
  const detail = `${delay}${s.detail ? `[${l.e.meta.skb}]` : ""}`;
  const where = s.detail ? `[${l.name.padEnd(20)}]${detailPrefix(l.e.cpu, l.e.meta)}` : `[${l.name.padEnd(20)}] `;
  const notes = l.notes.map((n) => (/dropped|reset sent|error|full|bad /.test(n) ? c.red(`*${n}*`) : c.yellow(`*${n}*`))).join(" ");
  return `[${s.clock.stamp(l.e.timeNs, s.date)}] ${detail}${where}${packet}${notes ? `${packet ? " " : ""}${notes}` : ""}`.trimEnd();
}

/**
 * --tiny-show: the packet is written only where it differs from the line
 * before (the first line of a block, and after NAT or a new packet in
 * --basic); `previous` carries the last summary written.
 */
export function tinyPacket(l: HookLine, previous: { summary?: string }): string {
  const summary = packetSummary(l.e.pkt);
  if (summary === previous.summary) return "";
  previous.summary = summary;
  return summary;
}

/** The names of a --latency record's hooks and, for a drop, its reason and location. */
export interface LatencyNames {
  first: string;
  last: string;
  end: string;
  reason?: string;
  location?: string;
}

/**
 * --latency: one slow packet, nettrace's shape with the path in the hook column:
 * "[153.345912] [net_dev_queue -> net_dev_start_xmit] ICMP: … *latency: 50ms* *3 hooks, ended at net_dev_xmit*"
 */
export function latencyLine(e: LatencyEvent, n: LatencyNames, s: TextStyle): string {
  const c = s.colors;
  const detail = s.detail ? `[${e.meta.skb}]${detailPrefix(e.cpu, e.meta)}` : "";
  const drop = e.endFlags & hook_flags.HOOK_DROP ? ` (${n.reason ? `reason: ${n.reason}, ` : ""}${n.location})` : "";
  const path = n.first === n.last ? n.first : `${n.first} -> ${n.last}`;
  const ended = `${e.hooks} hook${e.hooks === 1 ? "" : "s"}, ended at ${n.end}${drop}`;
  return `[${s.clock.stamp(e.firstNs, s.date)}] ${detail}[${path.padEnd(20)}] ${packetSummary(e.pkt)} ${c.red(`*latency: ${delayText(e.latencyNs)}*`)} ${c.yellow(`*${ended}*`)}`;
}

/** A socket's connection: "TCP: 10.0.0.1:40000 -> 10.0.0.2:80 ESTABLISHED". */
export function connectionSummary(p: Packet, state: string | undefined): string {
  const v6 = p.l3 === 0x86dd;
  return `${l4Name(p.l4)}: ${endpoint(p.saddr, p.sport, v6)} -> ${endpoint(p.daddr, p.dport, v6)}${state ? ` ${state}` : ""}`;
}

/** Notes that say something went wrong are red, the rest yellow. */
function noteText(notes: string[], bad: RegExp, c: Colors): string {
  return notes.map((n) => (bad.test(n) ? c.red(`*${n}*`) : c.yellow(`*${n}*`))).join(" ");
}

/**
 * --sock, nettrace's shape:
 * "[153.345912] [tcp_probe           ] TCP: 10.0.0.1:5 -> 10.0.0.2:80 ESTABLISHED CA_Open out:(p1 r0) mem:(w0 r0) timer:(retrans, 0.204s) *rtt:37ms, rtt_min:36ms*"
 */
export function sockLine(e: SockEvent, hook: string, state: string | undefined, caState: string | undefined, notes: string[], s: TextStyle): string {
  const tcp = e.tcp ? ` ${caState ?? `CA_${e.caState}`} out:(p${e.packetsOut} r${e.retransOut})` : "";
  const mem = e.tcp || e.rcvbuf ? ` mem:(w${e.wmemQueued} r${e.rmemAlloc})` : "";
  const timer = timerName(e);
  const timerText = timer ? ` timer:(${timer}, ${(e.timerMs / 1000).toFixed(3)}s)` : "";
  const detail = s.detail ? `[cpu:${String(e.cpu).padEnd(3)}][pid:${String(e.pid).padEnd(7)}][${e.comm.padEnd(16)}][ns:${e.netns}][${e.skHex}] ` : "";
  const text = noteText(notes, /reset|retrans|full|limit|error|refused/, s.colors);
  return `[${s.clock.stamp(e.timeNs, s.date)}] [${hook.padEnd(20)}] ${detail}${connectionSummary(e.pkt, state)}${tcp}${mem}${timerText}${text ? ` ${text}` : ""}`;
}

/** --rtt, --latency-summary: bcc's log2 table ("     16 -> 31       : 3        |****    |"). */
export function rttTableLines(buckets: RttBucket[], samples: number, avgUs: number, what = { title: "RTT", unit: "sample" }): string[] {
  if (!samples) return [`${what.title} distribution: no ${what.unit}s`];
  const max = Math.max(...buckets.map((b) => b.count));
  return [
    `${what.title} distribution: ${samples} ${what.unit}${samples === 1 ? "" : "s"}, average ${durationText(avgUs)}`,
    `${"µs".padStart(14).padEnd(28)}: count    distribution`,
    ...buckets.map((b) => `${String(b.lowUs).padStart(12)} -> ${String(b.highUs).padEnd(12)}: ${String(b.count).padEnd(8)} |${"*".repeat(Math.round((b.count / max) * 40)).padEnd(40)}|`),
  ];
}

const ENDED: Record<ConnectionSummary["end"], string> = {
  fin: "closed by FIN",
  reset_sent: "reset sent",
  reset_received: "reset received",
  timeout: "timed out",
  closed: "closed",
  open: "still open",
  evicted: "no longer followed (memory bound)",
};

/** --sock: one line per connection that closed, or was open at the end. */
export function connectionLine(c: ConnectionSummary, s: TextStyle): string {
  const ended = `${ENDED[c.end]}${c.closedBy ? ` (${c.closedBy} first)` : ""}${c.resetReason ? ` (${c.resetReason})` : ""}${c.error ? ` (${c.error})` : ""}`;
  const parts = [`duration:${durationText((c.endNs - c.startNs) / 1000)}${c.fromStart ? "" : " (seen from mid-connection)"}`];
  if (c.handshakeUs !== null) parts.push(`handshake:${durationText(c.handshakeUs)}`);
  parts.push(`retrans:${c.retransmits}`);
  if (c.rtt) parts.push(`rtt min/avg/max:${durationText(c.rtt.minUs)}/${durationText(c.rtt.avgUs)}/${durationText(c.rtt.maxUs)} (${c.rtt.samples} sample${c.rtt.samples === 1 ? "" : "s"})`);
  if (c.bytesOut !== null) parts.push(`out:${c.bytesOut}B/${c.segsOut} segs, in:${c.bytesIn}B/${c.segsIn} segs`);
  const text = noteText([ended], /reset|timed out/, s.colors);
  return `[${s.clock.stamp(c.endNs, s.date)}] [${"connection".padEnd(20)}] ${connectionSummary(c.pkt, undefined)} ${text} ${parts.join(", ")}`;
}

/** --sock --diag: the socket of another protocol (UDP) whose findings follow, at its first event. */
export function socketLine(timeNs: number, p: Packet, listening: boolean, s: TextStyle): string {
  return `[${s.clock.stamp(timeNs, s.date)}] [${(listening ? "listener" : "socket").padEnd(20)}] ${connectionSummary(p, listening ? "LISTEN" : undefined)}`;
}

/** --monitor: the hook line, with the connection instead of a packet for socket events. */
export function monitorLine(l: HookLine, fromSock: boolean, state: string | undefined, s: TextStyle): string {
  if (!fromSock) return hookLine(l, s);
  const c = s.colors;
  const where = s.detail ? `[${l.name.padEnd(20)}]${detailPrefix(l.e.cpu, l.e.meta)}` : `[${l.name.padEnd(20)}] `;
  const notes = noteText(l.notes, /reset|timeout/, c);
  return `[${s.clock.stamp(l.e.timeNs, s.date)}] ${where}${connectionSummary(l.e.pkt, state)}${notes ? ` ${notes}` : ""}`;
}

/** "… 12 340 more like this (NO_SOCKET at __udp4_lib_rcv, UDP → 10.0.0.2:53) in the last 10 s" */
export function repeatLine(count: string, description: string, seconds: number): string {
  return `… ${count} more like this (${description}) in the last ${Math.max(1, Math.round(seconds))} s`;
}

/** --func-stats: calls per hook over the last interval, and since the start. */
export function funcStatsLines(rows: { hook: string; calls: number; total: number }[], seconds: number): string[] {
  const width = Math.max(20, ...rows.map((r) => r.hook.length));
  return [
    `--- calls per hook in the last ${seconds.toFixed(1)} s ---`,
    ...rows.map((r) => `${r.hook.padEnd(width)} ${String(r.calls).padStart(12)}  (total ${r.total})`),
  ];
}

export function contextHeader(skbs: string[]): string {
  return `***************** ${skbs.join(",")} ***************`;
}

/** --latency-show: the block's last line, first hook to last. */
export function latencyTotalLine(totalNs: number, hooks: number): string {
  return `total latency: ${delayText(totalNs)} over ${hooks} hook${hooks === 1 ? "" : "s"}`;
}

const LEVEL_WORDS = { info: "INFO", warn: "WARNING", error: "ERROR" } as const;

/** nettrace's ANALYSIS RESULT block. */
export function analysisLines(findings: Finding[], s: TextStyle): string[] {
  const c = s.colors;
  const lines = ["---------------- ANALYSIS RESULT ---------------------"];
  findings.forEach((f, i) => {
    const word = LEVEL_WORDS[f.level];
    const colored = f.level === "error" ? c.red(word) : f.level === "warn" ? c.yellow(word) : c.cyan(word);
    lines.push(`[${i + 1}] ${colored} happens in ${f.hook}${f.group ? `(${f.group})` : ""}:`, `\t${f.message}`);
    if (f.explanation) lines.push(`\t${f.explanation}`);
    if (f.location) lines.push("    location:", `\t${f.location}`);
    if (f.reason) lines.push("    drop reason:", `\t${f.reason}${f.inferred ? ` (most likely ${f.inferred}, inferred from the location)` : ""}`);
    if (f.details?.length) lines.push(...f.details.map((d) => (d.startsWith("\t") ? d : `    ${d}`)));
    if (f.advice) lines.push("    fix advice:", `\t${c.green(f.advice)}`);
    lines.push("");
  });
  lines.push("analysis finished!");
  return lines;
}
