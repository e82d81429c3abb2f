// Ring-buffer records → typed events, using the offsets generated from the
// BPF object's BTF (src/abi/layout.generated.ts). Decoders read through typed
// arrays over the ring's memory; 64-bit values are read as two 32-bit
// halves (BigInt would make decoding several times slower).
//
// This runs once per record, millions of times a second at full rate, so
// strings are the cost to watch: the ones that repeat from record to record
// (comm, ifname, addresses) come from small caches keyed by their bytes, and
// the skb address is put in hex only when the output prints it.
import { capture_limits, event_flags, event_kind, event_version, layout } from "../abi/layout.generated";
import { addrHex, addrKey } from "../kernel/kallsyms";

/** Typed views over the bytes a record lives in (the ring, or a test fixture). */
export interface RecordBytes {
  u8: Uint8Array;
  u16: Uint16Array;
  u32: Uint32Array;
  i32: Int32Array;
}

export interface Packet {
  l3: number;
  l4: number;
  parsed: number;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  tcpFlags: number;
  tcpSeq: number;
  tcpAck: number;
  ipLen: number;
  icmpType: number;
  icmpCode: number;
  icmpId: number;
  icmpSeq: number;
  arpOp: number;
  vlan: number;
  ttl: number;
  /** No network layer: the family (AF_*) and type (SOCK_*) of the skb's socket; 0 when unknown. */
  skFamily: number;
  skType: number;
}

export interface SkbMeta {
  readonly skb: string; // hex address
  skbKey: number; // low 48 bits, for maps
  len: number;
  mark: number;
  ifindex: number;
  netns: number;
  pid: number;
  ifname: string;
  comm: string;
  /** enum ct_seen: what connection tracking made of the packet (skb->_nfct). */
  ct: number;
}

export interface DropEvent {
  kind: "drop";
  cpu: number;
  timeNs: number;
  meta: SkbMeta;
  pkt: Packet;
  location: { hi: number; lo: number };
  reason: number;
  stackId: number;
}

export interface NfInfo {
  family: number;
  hook: number;
  tableFamily: number;
  table: string;
  chain: string;
  /** --hooks: addresses of the functions registered on the hook, as [hi, lo]. */
  hookFuncs: [number, number][];
}

export interface HookEvent {
  kind: "hook";
  cpu: number;
  timeNs: number;
  meta: SkbMeta;
  pkt: Packet;
  /** Packet context; 0 with --pkt-fixed. Low 53 bits of the kernel's id. */
  ctxId: number;
  /** Low 48 bits of the traced function's address; 0 for tracepoints. */
  func: number;
  tracepoint: number;
  phase: number;
  flags: number;
  retval: number;
  /** The return value in hex when it does not fit 32 bits (a pointer: `retval` would be inexact). */
  retvalWide?: string;
  skb2: string;
  skb2Key: number;
  location: { hi: number; lo: number };
  reason: number;
  info: [number, number];
  stackId: number;
  nf?: NfInfo;
  /** --pcap: the packet's bytes at this hook. */
  capture?: Capture;
}

const H = layout.event_header.fields;
const P = layout.packet.fields;
const M = layout.skb_meta.fields;
const D = layout.drop_event.fields;
const E = layout.hook_event.fields;
const N = layout.nf_info.fields;
const NF_AT = layout.nf_event.fields.nf.offset;

// The caches below compare fields as 32-bit words.
if (M.comm.size !== 16 || M.ifname.size !== 16 || P.saddr.size !== 16 || P.daddr.size !== 16 || (M.comm.offset | M.ifname.offset | P.saddr.offset | P.daddr.offset) & 3)
  throw new Error("layout: comm, ifname and addresses must be 16 bytes at 4-byte offsets");

const u64 = (b: RecordBytes, off: number) => b.u32[(off >>> 2) + 1]! * 0x1_0000_0000 + b.u32[off >>> 2]!;

/** The size of each kind's struct, by kind. */
const SIZE_BY_KIND: number[] = [];
SIZE_BY_KIND[event_kind.EVENT_DROP] = layout.drop_event.size;
SIZE_BY_KIND[event_kind.EVENT_HOOK] = layout.hook_event.size;
SIZE_BY_KIND[event_kind.EVENT_NF] = layout.nf_event.size;
SIZE_BY_KIND[event_kind.EVENT_MONITOR] = layout.monitor_event.size;
SIZE_BY_KIND[event_kind.EVENT_SOCK] = layout.sock_event.size;
SIZE_BY_KIND[event_kind.EVENT_LATENCY] = layout.latency_event.size;

const CAP = layout.capture;
const { EVENT_F_CAPTURE } = event_flags;

/**
 * The kind of the `length`-byte record at `off`, or 0 when it must not be
 * decoded: another version, an unknown kind or flag, or shorter than its
 * kind's struct and, with a capture tail (--pcap), than the struct, the
 * tail and the bytes it announces (the header's size and the ring's length
 * both say).
 */
export function recordKind(b: RecordBytes, off: number, length: number): number {
  if (length < layout.event_header.size || b.u8[off + H.version.offset] !== event_version.EVENT_VERSION) return 0;
  const kind = b.u16[(off + H.kind.offset) >>> 1]!;
  const base = SIZE_BY_KIND[kind];
  if (base === undefined || length < base) return 0;
  const flags = b.u8[off + H.flags.offset]!;
  const size = b.u16[(off + H.size.offset) >>> 1]!;
  if (flags === 0) return size === base ? kind : 0;
  if (flags !== EVENT_F_CAPTURE || length < base + CAP.size) return 0;
  const captured = b.u16[(off + base + CAP.fields.len.offset) >>> 1]!;
  if (captured > capture_limits.CAPTURE_MAX || size !== base + CAP.size + captured || length < size) return 0;
  return kind;
}

/** --pcap: the packet's bytes after a record, as the kernel copied them. */
export interface Capture {
  /** enum capture_link: where the bytes start (MAC or network header). */
  link: number;
  /** The packet's length from that start; more than `bytes` when cut by the snaplen or the linear data. */
  wireLen: number;
  bytes: Uint8Array;
}

/**
 * The capture tail of a record recordKind() accepted, copied out of the
 * ring; undefined when the record has none or nothing could be captured.
 */
export function decodeCapture(b: RecordBytes, off: number, kind: number): Capture | undefined {
  if (!(b.u8[off + H.flags.offset]! & EVENT_F_CAPTURE)) return undefined;
  const at = off + SIZE_BY_KIND[kind]!;
  const len = b.u16[(at + CAP.fields.len.offset) >>> 1]!;
  if (!len) return undefined;
  return {
    link: b.u8[at + CAP.fields.link.offset]!,
    wireLen: b.u32[(at + CAP.fields.wire_len.offset) >>> 2]!,
    bytes: b.u8.slice(at + CAP.size, at + CAP.size + len),
  };
}

export function formatIPv4(u8: Uint8Array, off: number): string {
  return `${u8[off]}.${u8[off + 1]}.${u8[off + 2]}.${u8[off + 3]}`;
}

/** RFC 5952 text form: longest run of zero groups compressed to "::". */
export function formatIPv6(u8: Uint8Array, off: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((u8[off + 2 * i]! << 8) | u8[off + 2 * i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  // IPv4-mapped addresses read better with the IPv4 part dotted.
  if (bestStart === 0 && bestLen === 5 && groups[5] === 0xffff) return `::ffff:${formatIPv4(u8, off + 12)}`;
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** A NUL-terminated kernel string, with anything unprintable escaped. */
export function kernelString(u8: Uint8Array, off: number, max: number): string {
  let out = "";
  for (let i = 0; i < max; i++) {
    const c = u8[off + i]!;
    if (c === 0) break;
    out += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
  }
  return out;
}

const CACHE_SLOTS = 256;

/**
 * Strings decoded from 16-byte fields, kept by their bytes. Process names,
 * interface names and addresses repeat from one record to the next, and
 * comparing four words costs far less than decoding them again. Direct-mapped:
 * a slot holds the last field whose words hash to it; a collision only means
 * decoding again. The key is all 16 bytes, so a hit gives exactly what
 * `decode` would.
 */
export class StringCache {
  private readonly keys = new Int32Array(CACHE_SLOTS * 4);
  private readonly texts: string[];

  constructor(private readonly decode: (u8: Uint8Array, off: number) => string) {
    // An unused slot's key is 16 zero bytes: it holds what they decode to.
    this.texts = new Array<string>(CACHE_SLOTS).fill(decode(new Uint8Array(16), 0));
  }

  /** The string for the 16 bytes at `off` (4-byte aligned). */
  get(b: RecordBytes, off: number): string {
    const at = off >>> 2;
    const w0 = b.i32[at]!;
    const w1 = b.i32[at + 1]!;
    const w2 = b.i32[at + 2]!;
    const w3 = b.i32[at + 3]!;
    const slot = Math.imul(w0 ^ w1 ^ w2 ^ w3, 0x9e3779b1) >>> 24; // top 8 bits: 0..255
    const k = slot * 4;
    const keys = this.keys;
    if (keys[k] === w0 && keys[k + 1] === w1 && keys[k + 2] === w2 && keys[k + 3] === w3) return this.texts[slot]!;
    keys[k] = w0;
    keys[k + 1] = w1;
    keys[k + 2] = w2;
    keys[k + 3] = w3;
    return (this.texts[slot] = this.decode(b.u8, off));
  }
}

// One cache per field kind: the same bytes read differently as IPv4 and IPv6.
const comms = new StringCache((u8, off) => kernelString(u8, off, 16));
const ifnames = new StringCache((u8, off) => kernelString(u8, off, 16));
const ipv4Addrs = new StringCache(formatIPv4);
const ipv6Addrs = new StringCache(formatIPv6);

export function decodePacket(b: RecordBytes, off: number): Packet {
  const u8 = b.u8;
  const l3 = b.u16[(off + P.l3_proto.offset) >>> 1]!;
  const addrs = l3 === 0x86dd ? ipv6Addrs : ipv4Addrs;
  return {
    l3,
    l4: u8[off + P.l4_proto.offset]!,
    parsed: u8[off + P.parsed.offset]!,
    saddr: addrs.get(b, off + P.saddr.offset),
    daddr: addrs.get(b, off + P.daddr.offset),
    sport: b.u16[(off + P.sport.offset) >>> 1]!,
    dport: b.u16[(off + P.dport.offset) >>> 1]!,
    tcpFlags: u8[off + P.tcp_flags.offset]!,
    tcpSeq: b.u32[(off + P.tcp_seq.offset) >>> 2]!,
    tcpAck: b.u32[(off + P.tcp_ack.offset) >>> 2]!,
    ipLen: b.u16[(off + P.ip_len.offset) >>> 1]!,
    icmpType: u8[off + P.icmp_type.offset]!,
    icmpCode: u8[off + P.icmp_code.offset]!,
    icmpId: b.u16[(off + P.icmp_id.offset) >>> 1]!,
    icmpSeq: b.u16[(off + P.icmp_seq.offset) >>> 1]!,
    arpOp: b.u16[(off + P.arp_op.offset) >>> 1]!,
    vlan: b.u16[(off + P.vlan_id.offset) >>> 1]!,
    ttl: u8[off + P.ttl.offset]!,
    skFamily: u8[off + P.sk_family.offset]!,
    skType: u8[off + P.sk_type.offset]!,
  };
}

/** struct skb_meta as read from a record. */
class DecodedMeta implements SkbMeta {
  skbKey: number;
  len: number;
  mark: number;
  ifindex: number;
  netns: number;
  pid: number;
  ifname: string;
  comm: string;
  ct: number;
  private readonly skbHi: number;
  private readonly skbLo: number;

  constructor(b: RecordBytes, off: number) {
    const at = (off + M.skb.offset) >>> 2;
    this.skbLo = b.u32[at]!;
    this.skbHi = b.u32[at + 1]!;
    this.skbKey = addrKey(this.skbHi, this.skbLo);
    this.len = b.u32[(off + M.len.offset) >>> 2]!;
    this.mark = b.u32[(off + M.mark.offset) >>> 2]!;
    this.ifindex = b.u32[(off + M.ifindex.offset) >>> 2]!;
    this.netns = b.u32[(off + M.netns.offset) >>> 2]!;
    this.pid = b.u32[(off + M.pid.offset) >>> 2]!;
    this.ifname = ifnames.get(b, off + M.ifname.offset);
    this.comm = comms.get(b, off + M.comm.offset);
    this.ct = b.u8[off + M.ct.offset]!;
  }

  /** Made when asked for: text output prints it only with --detail. */
  get skb(): string {
    return addrHex(this.skbHi, this.skbLo);
  }
}

export function decodeMeta(b: RecordBytes, off: number): SkbMeta {
  return new DecodedMeta(b, off);
}

export function decodeDrop(b: RecordBytes, off: number): DropEvent {
  const loc = (off + D.location.offset) >>> 2;
  return {
    kind: "drop",
    cpu: b.u32[(off + H.cpu.offset) >>> 2]!,
    timeNs: u64(b, off + H.time_ns.offset),
    meta: decodeMeta(b, off + D.meta.offset),
    pkt: decodePacket(b, off + D.pkt.offset),
    location: { hi: b.u32[loc + 1]!, lo: b.u32[loc]! },
    reason: b.u32[(off + D.reason.offset) >>> 2]!,
    stackId: b.i32[(off + D.stack_id.offset) >>> 2]!,
  };
}

/** A hook_event, or an nf_event (a hook_event followed by struct nf_info). */
export function decodeHook(b: RecordBytes, off: number, kind: number): HookEvent {
  const w = (field: { offset: number }) => (off + field.offset) >>> 2;
  const ctx = w(E.ctx_id);
  const func = w(E.func);
  const skb2 = w(E.skb2);
  const loc = w(E.location);
  const retHi = b.i32[w(E.retval) + 1]!;
  const retLo = b.u32[w(E.retval)]!;
  const e: HookEvent = {
    kind: "hook",
    cpu: b.u32[(off + H.cpu.offset) >>> 2]!,
    timeNs: u64(b, off + H.time_ns.offset),
    meta: decodeMeta(b, off + E.meta.offset),
    pkt: decodePacket(b, off + E.pkt.offset),
    ctxId: (b.u32[ctx + 1]! & 0x1fffff) * 0x1_0000_0000 + b.u32[ctx]!,
    func: addrKey(b.u32[func + 1]!, b.u32[func]!),
    tracepoint: b.u32[w(E.tracepoint)]!,
    phase: b.u8[off + E.phase.offset]!,
    flags: b.u8[off + E.flags.offset]!,
    // kretprobes and fexit see the whole register: a C int's negative value
    // comes with zero high bits. Kernel pointers never have them zero.
    retval: retHi === 0 && retLo >= 0x8000_0000 ? retLo | 0 : retHi * 0x1_0000_0000 + retLo,
    retvalWide: retHi === 0 || retHi === -1 ? undefined : `0x${addrHex(retHi >>> 0, retLo)}`,
    skb2: addrHex(b.u32[skb2 + 1]!, b.u32[skb2]!),
    skb2Key: addrKey(b.u32[skb2 + 1]!, b.u32[skb2]!),
    location: { hi: b.u32[loc + 1]!, lo: b.u32[loc]! },
    reason: b.u32[w(E.reason)]!,
    info: [b.i32[w(E.info)]!, b.i32[w(E.info) + 1]!],
    stackId: b.i32[w(E.stack_id)]!,
  };
  if (kind === event_kind.EVENT_NF) {
    const at = off + NF_AT;
    e.nf = {
      family: b.u8[at + N.family.offset]!,
      hook: b.u8[at + N.hook.offset]!,
      tableFamily: b.u8[at + N.table_family.offset]!,
      table: kernelString(b.u8, at + N.table.offset, N.table.size),
      chain: kernelString(b.u8, at + N.chain.offset, N.chain.size),
      hookFuncs: [],
    };
    const count = Math.min(b.u8[at + N.hook_count.offset]!, N.hook_funcs.size / 8);
    for (let i = 0; i < count; i++) {
      const w = (at + N.hook_funcs.offset + 8 * i) >>> 2;
      e.nf.hookFuncs.push([b.u32[w + 1]!, b.u32[w]!]);
    }
  }
  return e;
}

/** --monitor's record: a hook event, with the socket's view and what it is about. */
export interface MonitorEvent {
  hook: HookEvent;
  /** enum monitor_what */
  what: number;
  /** A netfilter drop without function hooks: the caller of nf_hook_slow, as [hi, lo]; [0, 0] when unknown. */
  nfCaller: [number, number];
  srttUs: number;
  rttUs: number;
  /** TCP state of the socket; 0: no socket. */
  skState: number;
  /** The packet fields describe the socket's connection, not an skb. */
  fromSock: boolean;
}

const MON = layout.monitor_event.fields;

export function decodeMonitor(b: RecordBytes, off: number): MonitorEvent {
  const hasNf = b.u8[off + MON.has_nf.offset]! !== 0;
  const caller = (off + MON.nf_caller.offset) >>> 2;
  return {
    hook: decodeHook(b, off + MON.nf.offset, hasNf ? event_kind.EVENT_NF : event_kind.EVENT_HOOK),
    what: b.u8[off + MON.what.offset]!,
    nfCaller: [b.u32[caller + 1]!, b.u32[caller]!],
    srttUs: b.u32[(off + MON.srtt_us.offset) >>> 2]!,
    rttUs: b.u32[(off + MON.rtt_us.offset) >>> 2]!,
    skState: b.u8[off + MON.sk_state.offset]!,
    fromSock: b.u8[off + MON.from_sock.offset]! !== 0,
  };
}

/** A hook as the kernel names it in hook_flags keys: a function's address (key) or a tracepoint id. */
export interface HookId {
  /** enum tracepoint_id; 0 for a function. */
  tracepoint: number;
  /** The function's address, low 48 bits (as KernelFunction.key); 0 for a tracepoint. */
  func: number;
}

/** --latency: a packet whose path took at least --min-latency (struct latency_event). */
export interface LatencyEvent {
  kind: "latency";
  cpu: number;
  /** When the measurement ended. */
  timeNs: number;
  meta: SkbMeta;
  pkt: Packet;
  first: HookId;
  last: HookId;
  end: HookId;
  firstNs: number;
  lastNs: number;
  endNs: number;
  latencyNs: number;
  location: { hi: number; lo: number };
  reason: number;
  hooks: number;
  /** enum hook_flags of the end: HOOK_FREE, HOOK_DROP, or 0 (a --trace-free hook). */
  endFlags: number;
}

const L = layout.latency_event.fields;

function hookId(b: RecordBytes, off: number): HookId {
  const hi = b.u32[(off >>> 2) + 1]!;
  const lo = b.u32[off >>> 2]!;
  return hi === 0 ? { tracepoint: lo, func: 0 } : { tracepoint: 0, func: addrKey(hi, lo) };
}

export function decodeLatency(b: RecordBytes, off: number): LatencyEvent {
  const loc = (off + L.location.offset) >>> 2;
  return {
    kind: "latency",
    cpu: b.u32[(off + H.cpu.offset) >>> 2]!,
    timeNs: u64(b, off + H.time_ns.offset),
    meta: decodeMeta(b, off + L.meta.offset),
    pkt: decodePacket(b, off + L.pkt.offset),
    first: hookId(b, off + L.first_hook.offset),
    last: hookId(b, off + L.last_hook.offset),
    end: hookId(b, off + L.end_hook.offset),
    firstNs: u64(b, off + L.first_ns.offset),
    lastNs: u64(b, off + L.last_ns.offset),
    endNs: u64(b, off + L.end_ns.offset),
    latencyNs: u64(b, off + L.latency_ns.offset),
    location: { hi: b.u32[loc + 1]!, lo: b.u32[loc]! },
    reason: b.u32[(off + L.reason.offset) >>> 2]!,
    hooks: b.u32[(off + L.hooks.offset) >>> 2]!,
    endFlags: b.u8[off + L.end_flags.offset]!,
  };
}
