// Human output in nettrace's style, so its users (and their greps) feel at home:
//   [153.345912] UDP: 127.0.0.1:55033 -> 127.0.0.1:9997 *reason: NO_SOCKET, __udp4_lib_rcv+0x9a2* *packet is dropped by kernel*
// Packets in one line:
//   TCP: 10.0.0.1:5 -> 10.0.0.2:80 seq:1, ack:0, flags:S
//   UDP: 10.0.0.1:5 -> 10.0.0.2:53
//   ICMP: 10.0.0.1 -> 10.0.0.2 ping request, seq: 0, id: 545
// IPv6 endpoints with ports are bracketed ([fd00::1]:80) so they stay unambiguous.
import { createColors } from "picocolors";
import { packet_layers } from "../abi/layout.generated";
import type { Finding } from "../diagnosis/rules";
import type { DropEvent, Packet, SkbMeta } from "../events/decode";
import type { HookLine } from "../events/line";
import { ICMP_TYPES, ICMPV6_TYPES, icmpTypeText, l3Name, l4Name, tcpFlagsText } from "../events/protocols";
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
  if (!(p.parsed & PKT_L3)) return p.l3 && p.l3 !== 0x0800 && p.l3 !== 0x86dd ? l3Name(p.l3) : "unknown";
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

/** "[153.345912] [ip_rcv              ] UDP: … *note*" (nettrace's layout). */
export function hookLine(l: HookLine, s: TextStyle): string {
  const c = s.colors;
  const detail = s.detail ? `[${l.e.meta.skb}]` : "";
  const where = s.detail ? `[${l.name.padEnd(20)}]${detailPrefix(l.e.cpu, l.e.meta)}` : `[${l.name.padEnd(20)}] `;
  const notes = l.notes.map((n) => (/dropped|reset sent|error|full|bad /.test(n) ? c.red(`*${n}*`) : c.yellow(`*${n}*`))).join(" ");
  return `[${s.clock.stamp(l.e.timeNs, s.date)}] ${detail}${where}${packetSummary(l.e.pkt)}${notes ? ` ${notes}` : ""}`;
}

/** A socket's connection: "TCP: 10.0.0.1:40000 -> 10.0.0.2:80 ESTABLISHED". */
export function connectionSummary(p: Packet, state: string | undefined): string {
  const v6 = p.l3 === 0x86dd;
  return `TCP: ${endpoint(p.saddr, p.sport, v6)} -> ${endpoint(p.daddr, p.dport, v6)}${state ? ` ${state}` : ""}`;
}

/** --monitor: the hook line, with the connection instead of a packet for socket events. */
export function monitorLine(l: HookLine, fromSock: boolean, state: string | undefined, s: TextStyle): string {
  if (!fromSock) return hookLine(l, s);
  const c = s.colors;
  const where = s.detail ? `[${l.name.padEnd(20)}]${detailPrefix(l.e.cpu, l.e.meta)}` : `[${l.name.padEnd(20)}] `;
  const notes = l.notes.map((n) => (/reset|timeout/.test(n) ? c.red(`*${n}*`) : c.yellow(`*${n}*`))).join(" ");
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
