// NDJSON output: one object per line, names rather than numbers. The schema
// is documented in the README ("JSON output"); change both together.
import type { DropEvent, Packet, SkbMeta } from "../decode";
import type { PacketContext } from "../lifecycle";
import type { HookLine } from "./text";
import type { Finding } from "../diagnose";
import { NF_FAMILIES, nfHookName } from "./annotate";
import { l3Name, l4Name, tcpFlagsText } from "./packet";
import type { Clock } from "./time";

const PKT_L3 = 2;
const PKT_L4 = 4;

export function packetJson(p: Packet): Record<string, unknown> {
  const hasL3 = (p.parsed & PKT_L3) !== 0;
  const hasL4 = (p.parsed & PKT_L4) !== 0;
  const ip = hasL3 && (p.l3 === 0x0800 || p.l3 === 0x86dd);
  const ports = hasL4 && (p.l4 === 6 || p.l4 === 17);
  return {
    l3: l3Name(p.l3),
    proto: ip ? l4Name(p.l4) : l3Name(p.l3),
    saddr: hasL3 ? p.saddr : null,
    daddr: hasL3 ? p.daddr : null,
    sport: ports ? p.sport : null,
    dport: ports ? p.dport : null,
    ip_len: ip ? p.ipLen : null,
    ttl: ip ? p.ttl : null,
    vlan: p.vlan || null,
    ...(hasL4 && p.l4 === 6 ? { tcp: { seq: p.tcpSeq, ack: p.tcpAck, flags: tcpFlagsText(p.tcpFlags) } } : {}),
    ...(hasL4 && (p.l4 === 1 || p.l4 === 58) ? { icmp: { type: p.icmpType, code: p.icmpCode, id: p.icmpId, seq: p.icmpSeq } } : {}),
    ...(p.l3 === 0x0806 && hasL3 ? { arp: { op: p.arpOp === 1 ? "request" : p.arpOp === 2 ? "reply" : p.arpOp } } : {}),
  };
}

export function metaJson(cpu: number, m: SkbMeta): Record<string, unknown> {
  return { skb: m.skb, len: m.len, mark: m.mark, ifname: m.ifname || null, ifindex: m.ifindex || null, netns: m.netns || null, cpu, pid: m.pid, comm: m.comm };
}

/**
 * The members of packetJson and metaJson written out in one object literal:
 * --drop --json makes one per event, and spreading the two objects into a
 * third cost more than the rest of the line. JSON.stringify leaves out the
 * members that are undefined, as the spreads did (tests/unit/decode.test.ts
 * checks both give the same text).
 */
export function dropJson(e: DropEvent, reason: string | undefined, location: string, clock: Clock, stack?: string[]): string {
  const p = e.pkt;
  const m = e.meta;
  const hasL3 = (p.parsed & PKT_L3) !== 0;
  const hasL4 = (p.parsed & PKT_L4) !== 0;
  const ip = hasL3 && (p.l3 === 0x0800 || p.l3 === 0x86dd);
  const ports = hasL4 && (p.l4 === 6 || p.l4 === 17);
  return JSON.stringify({
    kind: "drop",
    time: clock.iso(e.timeNs),
    ts_ns: e.timeNs,
    reason: reason ?? null,
    location,
    l3: l3Name(p.l3),
    proto: ip ? l4Name(p.l4) : l3Name(p.l3),
    saddr: hasL3 ? p.saddr : null,
    daddr: hasL3 ? p.daddr : null,
    sport: ports ? p.sport : null,
    dport: ports ? p.dport : null,
    ip_len: ip ? p.ipLen : null,
    ttl: ip ? p.ttl : null,
    vlan: p.vlan || null,
    tcp: hasL4 && p.l4 === 6 ? { seq: p.tcpSeq, ack: p.tcpAck, flags: tcpFlagsText(p.tcpFlags) } : undefined,
    icmp: hasL4 && (p.l4 === 1 || p.l4 === 58) ? { type: p.icmpType, code: p.icmpCode, id: p.icmpId, seq: p.icmpSeq } : undefined,
    arp: p.l3 === 0x0806 && hasL3 ? { op: p.arpOp === 1 ? "request" : p.arpOp === 2 ? "reply" : p.arpOp } : undefined,
    skb: m.skb,
    len: m.len,
    mark: m.mark,
    ifname: m.ifname || null,
    ifindex: m.ifindex || null,
    netns: m.netns || null,
    cpu: e.cpu,
    pid: m.pid,
    comm: m.comm,
    stack,
  });
}

/** One hook of a packet: where, when, the packet as it was there, and what happened. */
export function hookJson(l: HookLine, clock: Clock): Record<string, unknown> {
  const e = l.e;
  return {
    time: clock.iso(e.timeNs),
    ts_ns: e.timeNs,
    hook: l.name,
    notes: l.notes,
    ...packetJson(e.pkt),
    ...metaJson(e.cpu, e.meta),
    ...(e.nf ? { netfilter: { family: NF_FAMILIES[e.nf.family] ?? e.nf.family, hook: nfHookName(e.nf.family, e.nf.hook), table: e.nf.table || null, chain: e.nf.chain || null } } : {}),
    ...(l.stack ? { stack: l.stack } : {}),
  };
}

/** --basic --json: one object per hook. */
export function basicJson(l: HookLine, clock: Clock): string {
  return JSON.stringify({ kind: "hook", ...hookJson(l, clock) });
}

/** Lifecycle --json: one object per packet context with its ordered events. */
export function contextJson(ctx: PacketContext, lines: HookLine[], clock: Clock, findings?: Finding[]): string {
  return JSON.stringify({
    kind: "packet",
    skbs: ctx.skbs,
    start: clock.iso(ctx.firstNs),
    duration_us: Math.round((ctx.lastNs - ctx.firstNs) / 1000),
    end: ctx.end,
    truncated_events: ctx.truncated,
    events: lines.map((l) => hookJson(l, clock)),
    ...(findings ? { findings } : {}),
  });
}
