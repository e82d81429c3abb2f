// --monitor's model of what the kernel counted: the keys of its counting
// maps decoded (bpf/include/events.h), what each kind of event is called,
// and the aggregation of repeats for a console watched for hours: the first
// event of a kind is printed, then once per window how many more there were
// ("… 12 340 more like this (NO_SOCKET at __udp4_lib_rcv, UDP → 10.0.0.2:53)
// in the last 10 s"), so a flood cannot flood the terminal.
import { layout, monitor_what } from "../abi/layout.generated";
import { formatIPv4, formatIPv6, kernelString, type RecordBytes } from "./decode";
import { l3Name, l4Name } from "./protocols";

const W = monitor_what;

/** enum monitor_what → the name JSON uses ("event"). */
export const WHAT_NAMES: Record<number, string> = {
  [W.MON_DROP]: "drop",
  [W.MON_RESET_SENT]: "reset_sent",
  [W.MON_RESET_RECEIVED]: "reset_received",
  [W.MON_RTO]: "retransmit_timeout",
  [W.MON_RCVQ_FULL]: "receive_queue_full",
  [W.MON_RTT]: "rtt",
  [W.MON_RETRANSMIT]: "retransmit",
};

const u64At = (v: DataView, at: number) => v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** An address field (16 bytes, IPv4 in the first 4) as text. */
export function addressText(bytes: Uint8Array, at: number, l3: number): string {
  if (l3 === 0x86dd) return formatIPv6(bytes, at);
  return formatIPv4(bytes, at);
}

/** "UDP", "TCP", "ICMPv6", or the L3 name when there is no IP. */
export function protoName(l3: number, l4: number): string {
  return l3 === 0x0800 || l3 === 0x86dd ? l4Name(l4) : l3Name(l3);
}

/** struct print_key: one line's aggregation key. */
export interface PrintKey {
  what: number;
  reason: number;
  /** The drop location, as [hi, lo]. */
  location: [number, number];
  netns: number;
  l3: number;
  l4: number;
  dport: number;
  daddr: string;
}

const PK = layout.print_key.fields;

export function decodePrintKey(b: Uint8Array): PrintKey {
  const v = view(b);
  const l3 = v.getUint16(PK.l3_proto.offset, true);
  return {
    what: b[PK.what.offset]!,
    reason: v.getUint32(PK.reason.offset, true),
    location: [v.getUint32(PK.location.offset + 4, true), v.getUint32(PK.location.offset, true)],
    netns: v.getUint32(PK.netns.offset, true),
    l3,
    l4: b[PK.l4_proto.offset]!,
    dport: v.getUint16(PK.dport.offset, true),
    daddr: addressText(b, PK.daddr.offset, l3),
  };
}

const MON = layout.monitor_event.fields;
const HOOK_AT = layout.nf_event.fields.hook.offset;
const HE = layout.hook_event.fields;
const PKT = layout.packet.fields;
const META = layout.skb_meta.fields;

/**
 * The print key of a monitor record, byte for byte as the kernel made it
 * (print_key_of() in monitor.bpf.h): its identity in mon_print.
 */
export function printKeyOf(b: RecordBytes, off: number): Uint8Array {
  const k = new Uint8Array(layout.print_key.size);
  const hook = off + MON.nf.offset + HOOK_AT;
  const pkt = hook + HE.pkt.offset;
  k.set(b.u8.subarray(hook + HE.location.offset, hook + HE.location.offset + 8), PK.location.offset);
  k.set(b.u8.subarray(hook + HE.reason.offset, hook + HE.reason.offset + 4), PK.reason.offset);
  k.set(b.u8.subarray(hook + HE.meta.offset + META.netns.offset, hook + HE.meta.offset + META.netns.offset + 4), PK.netns.offset);
  k.set(b.u8.subarray(pkt + PKT.l3_proto.offset, pkt + PKT.l3_proto.offset + 2), PK.l3_proto.offset);
  k[PK.l4_proto.offset] = b.u8[pkt + PKT.l4_proto.offset]!;
  k[PK.what.offset] = b.u8[off + MON.what.offset]!;
  k.set(b.u8.subarray(pkt + PKT.dport.offset, pkt + PKT.dport.offset + 2), PK.dport.offset);
  k.set(b.u8.subarray(pkt + PKT.daddr.offset, pkt + PKT.daddr.offset + 16), PK.daddr.offset);
  return k;
}

/** Names a description needs, read from the running kernel. */
export interface KeyNamer {
  reason(value: number): string | undefined;
  rstReason(value: number): string | undefined;
  tcpState(value: number): string | undefined;
  /** The function an address is in ("__udp4_lib_rcv"), or the address. */
  functionAt(hi: number, lo: number): string;
  /** skbtrail's own network namespace: others are named in descriptions. */
  netns?: number;
}

/** "NO_SOCKET at __udp4_lib_rcv, UDP → 10.0.0.2:53": what a repeat line is about. */
export function describeKey(k: PrintKey, n: KeyNamer): string {
  const ports = k.l4 === 6 || k.l4 === 17;
  const to = k.l3 === 0x86dd && ports ? `[${k.daddr}]:${k.dport}` : ports ? `${k.daddr}:${k.dport}` : k.l3 === 0x0800 || k.l3 === 0x86dd || k.l3 === 0x0806 ? k.daddr : "";
  const dest = `${protoName(k.l3, k.l4)}${to ? ` → ${to}` : ""}${k.netns && n.netns !== undefined && k.netns !== n.netns ? ` in netns ${k.netns}` : ""}`;
  switch (k.what) {
    case W.MON_DROP:
      return `${n.reason(k.reason) ?? "dropped"} at ${n.functionAt(k.location[0], k.location[1])}, ${dest}`;
    case W.MON_RESET_SENT:
      return `reset sent${n.rstReason(k.reason) ? ` (${n.rstReason(k.reason)})` : ""}, ${dest}`;
    case W.MON_RESET_RECEIVED:
      return `reset received in ${n.tcpState(k.reason) ?? `state ${k.reason}`}, ${dest}`;
    case W.MON_RTO:
      return `retransmission timeout, ${dest}`;
    case W.MON_RCVQ_FULL:
      return `socket receive queue full, ${dest}`;
    case W.MON_RTT:
      return `RTT over the threshold, ${dest}`;
    default:
      return dest;
  }
}

/** struct drop_count_key. */
export interface DropCountKey {
  location: [number, number];
  reason: number;
  netns: number;
  l3: number;
  l4: number;
  ifname: string;
}

const DK = layout.drop_count_key.fields;

export function decodeDropCountKey(b: Uint8Array): DropCountKey {
  const v = view(b);
  return {
    location: [v.getUint32(DK.location.offset + 4, true), v.getUint32(DK.location.offset, true)],
    reason: v.getUint32(DK.reason.offset, true),
    netns: v.getUint32(DK.netns.offset, true),
    l3: v.getUint16(DK.l3_proto.offset, true),
    l4: b[DK.l4_proto.offset]!,
    ifname: kernelString(b, DK.ifname.offset, DK.ifname.size),
  };
}

/** struct nf_count_key. */
export interface NfCountKey {
  /** Caller of nf_hook_slow (tracepoints only), as [hi, lo]; [0, 0]: unknown. */
  caller: [number, number];
  family: number;
  hook: number;
  /** family and hook come from the hook state (function hooks). */
  hasHook: boolean;
  table: string;
  chain: string;
}

const NK = layout.nf_count_key.fields;

export function decodeNfCountKey(b: Uint8Array): NfCountKey {
  const v = view(b);
  return {
    caller: [v.getUint32(NK.caller.offset + 4, true), v.getUint32(NK.caller.offset, true)],
    family: b[NK.family.offset]!,
    hook: b[NK.hook.offset]!,
    hasHook: b[NK.has_hook.offset]! !== 0,
    table: kernelString(b, NK.table.offset, NK.table.size),
    chain: kernelString(b, NK.chain.offset, NK.chain.size),
  };
}

/** struct mon_count_key. */
export function decodeCountKey(b: Uint8Array): { what: number; value: number } {
  const v = view(b);
  return { what: v.getUint32(layout.mon_count_key.fields.what.offset, true), value: v.getUint32(layout.mon_count_key.fields.value.offset, true) };
}

/** Netfilter hook and family from the function that called nf_hook_slow (a drop's stack). */
export function hookFromCaller(fn: string): { family: string; hook: string } | undefined {
  const byCaller: Record<string, [string, string]> = {
    ip_rcv: ["ipv4", "PRE_ROUTING"], ip_local_deliver: ["ipv4", "INPUT"], ip_forward: ["ipv4", "FORWARD"],
    __ip_local_out: ["ipv4", "OUTPUT"], ip_output: ["ipv4", "POST_ROUTING"], ip_finish_output: ["ipv4", "POST_ROUTING"],
    ipv6_rcv: ["ipv6", "PRE_ROUTING"], ip6_input: ["ipv6", "INPUT"], ip6_forward: ["ipv6", "FORWARD"],
    __ip6_local_out: ["ipv6", "OUTPUT"], ip6_output: ["ipv6", "POST_ROUTING"], ip6_finish_output: ["ipv6", "POST_ROUTING"],
    br_handle_frame: ["bridge", "PRE_ROUTING"], br_pass_frame_up: ["bridge", "INPUT"], __br_forward: ["bridge", "FORWARD"],
    br_forward_finish: ["bridge", "POST_ROUTING"], arp_rcv: ["arp", "IN"], arp_xmit: ["arp", "OUT"],
    __netif_receive_skb_core: ["netdev", "INGRESS"], nf_hook_ingress: ["netdev", "INGRESS"],
  };
  const found = byCaller[fn.replace(/\.(?:isra|constprop|part|cold)\.\d+$/, "")];
  return found && { family: found[0], hook: found[1] };
}

/** "12 340": digits in groups of three, as the console line shows counts. */
export function groupedCount(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, " ");
}

export interface RepeatLine {
  key: PrintKey;
  /** Occurrences not printed since the key's last line. */
  count: number;
  /** Over how long (seconds). */
  seconds: number;
}

export interface RepeatReport {
  lines: RepeatLine[];
  /** Past the line budget: how many more occurrences, of how many keys. */
  restCount: number;
  restKeys: number;
}

interface KeyState {
  /** Printed whole in the current window: its next occurrences are repeats. */
  active: boolean;
  /** Lines printed whole for it since the last tick. */
  printed: number;
  /** Its total (all CPUs) at the last tick. */
  lastTotal: number;
  /** Since when its repeats are counted (ns, monotonic). */
  sinceNs: number;
}

/** What a key's total grew by since `before`; a smaller total: the kernel evicted the key and counted it anew. */
function growth(total: number, before: number): number {
  return total >= before ? total - before : total;
}

/**
 * -c in --monitor: how many events of printed kinds the kernel counted since
 * the start (those printed whole and those summed up), from mon_print's
 * totals read now and then.
 */
export class EventTally {
  private readonly last = new Map<string, number>();
  seen = 0;

  update(totals: { id: string; total: number }[]): number {
    const present = new Set<string>();
    for (const t of totals) {
      present.add(t.id);
      this.seen += growth(t.total, this.last.get(t.id) ?? 0);
      this.last.set(t.id, t.total);
    }
    for (const id of this.last.keys()) if (!present.has(id)) this.last.delete(id);
    return this.seen;
  }
}

/**
 * The console's aggregation. The kernel writes a record for the first
 * occurrence of a key on a CPU (and the first after a quiet window) and
 * counts every occurrence in mon_print; each window, the totals read from
 * there say how many more there were than were printed. Memory: one small
 * state per key the kernel map holds (it is an LRU of bounded size).
 */
export class Repeats {
  private readonly keys = new Map<string, KeyState>();
  private windowStartNs: number;

  constructor(
    nowNs: number,
    /** At most this many "more like this" lines per window; the rest in one line. */
    private readonly maxLines = 20,
  ) {
    this.windowStartNs = nowNs;
  }

  /** A record arrived: true when it is printed whole (its key is not being summed up). */
  record(id: string, nowNs: number): boolean {
    let st = this.keys.get(id);
    if (!st) this.keys.set(id, (st = { active: false, printed: 0, lastTotal: 0, sinceNs: nowNs }));
    if (st.active) return false;
    st.active = true;
    st.printed++;
    st.sinceNs = nowNs;
    return true;
  }

  /**
   * The end of a window: `totals` is every key the kernel holds with its
   * count. Keys with more occurrences than lines printed get a line; a key
   * with none at all in the window stops being summed up, so its next one
   * prints whole (the kernel writes a record for it: it was quiet as long).
   */
  tick(totals: { id: string; key: () => PrintKey; total: number }[], nowNs: number): RepeatReport {
    const lines: { id: string; key: () => PrintKey; count: number; seconds: number }[] = [];
    const present = new Set<string>();
    for (const t of totals) {
      present.add(t.id);
      let st = this.keys.get(t.id);
      if (!st) this.keys.set(t.id, (st = { active: false, printed: 0, lastTotal: 0, sinceNs: this.windowStartNs }));
      const delta = growth(t.total, st.lastTotal);
      const more = delta - st.printed;
      if (more > 0) lines.push({ id: t.id, key: t.key, count: more, seconds: (nowNs - st.sinceNs) / 1e9 });
      st.active = delta > 0;
      st.printed = 0;
      st.lastTotal = t.total;
      st.sinceNs = nowNs;
    }
    for (const id of this.keys.keys()) if (!present.has(id)) this.keys.delete(id);
    this.windowStartNs = nowNs;
    lines.sort((a, b) => b.count - a.count);
    const shown = lines.slice(0, this.maxLines);
    const rest = lines.slice(this.maxLines);
    return {
      lines: shown.map((l) => ({ key: l.key(), count: l.count, seconds: l.seconds })),
      restCount: rest.reduce((n, l) => n + l.count, 0),
      restKeys: rest.length,
    };
  }

  /** Keys it remembers (bounded by the kernel map's size). */
  get size(): number {
    return this.keys.size;
  }
}
