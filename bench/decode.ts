// Where the TypeScript side's time goes per drop event, without the kernel:
// the product's code (src/decode.ts, src/output/) on records in ordinary
// memory, the same records bench/producer.bpf.c writes, laid out as in the
// ring (8-byte ring header, 168-byte struct drop_event, 8-byte aligned).
// Each figure is ns per record over 4,096 records passed repeatedly (hot
// caches, JIT warm), the median of a few passes of ~100 ms.
//
//   bun bench/decode.ts [--json]
//
// bench/run.ts runs it as a process of its own: decodeDrop called here on
// plain arrays and in the ring benchmark on the RingBuffer would see two
// shapes of argument and be compiled for both, slowing the ring figure.
//
// The "proposed" rows are NOT product code: they are sketches of cheaper
// versions, checked here to produce exactly the product's output, so the
// gain is known before anyone changes src/.
import { layout, event_kind, event_version } from "../src/layout.generated";
import { decodeDrop, decodePacket, kernelString, recordKind, type DropEvent, type RecordBytes } from "../src/decode";
import { addrHex, addrKey, Symbolizer } from "../src/kernel/kallsyms";
import { dropJson } from "../src/output/json";
import { colorsFor, dropLine } from "../src/output/text";
import { l3Name, l4Name } from "../src/output/packet";
import { Clock } from "../src/output/time";
import { readFileSync } from "node:fs";

const D = layout.drop_event;
const H = layout.event_header.fields;
const M = layout.skb_meta.fields;
const P = layout.packet.fields;
const RECORD = (8 + D.size + 7) & ~7;
const COUNT = 4096;

/** `count` records as the synthetic producer writes them, each after an 8-byte ring header. */
export function syntheticRing(count: number): RecordBytes {
  const buf = new ArrayBuffer(count * RECORD);
  const v = new DataView(buf);
  const u8 = new Uint8Array(buf);
  const text = new TextEncoder();
  for (let n = 0; n < count; n++) {
    v.setUint32(n * RECORD, D.size, true); // ring header: length, not busy
    const e = n * RECORD + 8;
    v.setUint16(e + H.kind.offset, event_kind.EVENT_DROP, true);
    v.setUint16(e + H.size.offset, D.size, true);
    v.setUint8(e + H.version.offset, event_version.EVENT_VERSION);
    v.setBigUint64(e + H.time_ns.offset, 86_400_000_000_000n + BigInt(n) * 997n, true);
    const m = e + D.fields.meta.offset;
    v.setBigUint64(m + M.skb.offset, 0xffff888100000000n + BigInt(n << 8), true);
    v.setUint32(m + M.len.offset, 60 + (n & 511), true);
    v.setUint32(m + M.ifindex.offset, 1, true);
    v.setUint32(m + M.netns.offset, 4026531840, true);
    v.setUint32(m + M.pid.offset, 4242, true);
    u8.set(text.encode("lo"), m + M.ifname.offset);
    u8.set(text.encode("ringbench"), m + M.comm.offset);
    const p = e + D.fields.pkt.offset;
    u8.set([10, 0, (n >> 8) & 0xff, n & 0xff], p + P.saddr.offset);
    u8.set([10, 1, 2, 3], p + P.daddr.offset);
    v.setUint16(p + P.l3_proto.offset, 0x0800, true);
    v.setUint8(p + P.l4_proto.offset, 17);
    v.setUint16(p + P.sport.offset, 1024 + (n & 0x7fff), true);
    v.setUint16(p + P.dport.offset, 9, true);
    v.setUint16(p + P.ip_len.offset, 28 + (n & 511), true);
    v.setUint8(p + P.ttl.offset, 64);
    v.setUint8(p + P.parsed.offset, 7);
    v.setBigUint64(e + D.fields.location.offset, 0xffffffff81a00000n + BigInt(n & 0xfff), true);
    v.setUint32(e + D.fields.reason.offset, 2, true);
    v.setInt32(e + D.fields.stack_id.offset, -1, true);
  }
  return { u8, u16: new Uint16Array(buf), u32: new Uint32Array(buf), i32: new Int32Array(buf) };
}

// ---- proposals (not product code) -------------------------------------------

/** addrHex through a table of 4-hex-digit strings. */
const HEX4: string[] = Array.from({ length: 65536 }, (_, i) => i.toString(16).padStart(4, "0"));
const addrHexTable = (hi: number, lo: number) => HEX4[hi >>> 16]! + HEX4[hi & 0xffff]! + HEX4[lo >>> 16]! + HEX4[lo & 0xffff]!;

/** The last string decoded from a 16-byte field, reused while the bytes stay the same (comm, ifname). */
class FieldCache {
  private w = new Int32Array([-1, -1, -1, -1]);
  private text = "";
  get(b: RecordBytes, off: number, max: number): string {
    const u = b.i32;
    const at = off >>> 2;
    const w = this.w;
    if (u[at] === w[0] && u[at + 1] === w[1] && u[at + 2] === w[2] && u[at + 3] === w[3]) return this.text;
    w.set(u.subarray(at, at + 4));
    return (this.text = kernelString(b.u8, off, max));
  }
}
const commCache = new FieldCache();
const ifnameCache = new FieldCache();

/** decodeDrop with the two changes above; same result. */
export function decodeDropProposed(b: RecordBytes, off: number): DropEvent {
  const mo = off + D.fields.meta.offset;
  const at = (mo + M.skb.offset) >>> 2;
  const lo = b.u32[at]!;
  const hi = b.u32[at + 1]!;
  const t = (off + H.time_ns.offset) >>> 2;
  const loc = (off + D.fields.location.offset) >>> 2;
  return {
    kind: "drop",
    cpu: b.u32[(off + H.cpu.offset) >>> 2]!,
    timeNs: b.u32[t + 1]! * 0x1_0000_0000 + b.u32[t]!,
    meta: {
      skb: addrHexTable(hi, lo),
      skbKey: addrKey(hi, lo),
      len: b.u32[(mo + M.len.offset) >>> 2]!,
      mark: b.u32[(mo + M.mark.offset) >>> 2]!,
      ifindex: b.u32[(mo + M.ifindex.offset) >>> 2]!,
      netns: b.u32[(mo + M.netns.offset) >>> 2]!,
      pid: b.u32[(mo + M.pid.offset) >>> 2]!,
      ifname: ifnameCache.get(b, mo + M.ifname.offset, M.ifname.size),
      comm: commCache.get(b, mo + M.comm.offset, M.comm.size),
    },
    pkt: decodePacket(b, off + D.fields.pkt.offset),
    location: { hi: b.u32[loc + 1]!, lo: b.u32[loc]! },
    reason: b.u32[(off + D.fields.reason.offset) >>> 2]!,
    stackId: b.i32[(off + D.fields.stack_id.offset) >>> 2]!,
  };
}

/** dropJson as one template string (no intermediate objects or spreads), the ISO second cached; same text. */
function dropJsonProposed(clock: Clock): (e: DropEvent, reason: string | undefined, location: string) => string {
  // The product's Clock keeps this private; the sketch reads the same value.
  const offsetNs = (clock as unknown as { offsetNs: number }).offsetNs;
  let second = -1;
  let prefix = "";
  const iso = (ns: number) => {
    const wall = ns + offsetNs;
    const s = Math.floor(wall / 1e9);
    if (s !== second) {
      second = s;
      prefix = new Date(s * 1000).toISOString().slice(0, 20);
    }
    return `${prefix}${String(Math.floor(wall / 1e3) % 1e6).padStart(6, "0")}Z`;
  };
  const q = JSON.stringify;
  return (e, reason, location) => {
    const p = e.pkt;
    const m = e.meta;
    const l3 = (p.parsed & 2) !== 0;
    const l4 = (p.parsed & 4) !== 0;
    const ip = l3 && (p.l3 === 0x0800 || p.l3 === 0x86dd);
    const ports = l4 && (p.l4 === 6 || p.l4 === 17);
    if ((l4 && (p.l4 === 6 || p.l4 === 1 || p.l4 === 58)) || p.l3 === 0x0806) return dropJson(e, reason, location, clock); // sketch covers UDP/other only
    return `{"kind":"drop","time":"${iso(e.timeNs)}","ts_ns":${e.timeNs},"reason":${reason === undefined ? "null" : q(reason)},"location":${q(location)},"l3":"${l3Name(p.l3)}","proto":${q(ip ? l4Name(p.l4) : l3Name(p.l3))},"saddr":${l3 ? q(p.saddr) : null},"daddr":${l3 ? q(p.daddr) : null},"sport":${ports ? p.sport : null},"dport":${ports ? p.dport : null},"ip_len":${ip ? p.ipLen : null},"ttl":${ip ? p.ttl : null},"vlan":${p.vlan || null},"skb":"${m.skb}","len":${m.len},"mark":${m.mark},"ifname":${m.ifname ? q(m.ifname) : null},"ifindex":${m.ifindex || null},"netns":${m.netns || null},"cpu":${e.cpu},"pid":${m.pid},"comm":${q(m.comm)}}`;
  };
}

// ---- measurement ---------------------------------------------------------------

let sink = 0;

/** Median ns per record of `step` over all records, in passes of ~`ms`. */
function measure(ring: RecordBytes, ms: number, step: (b: RecordBytes, off: number, i: number) => number): number {
  const pass = () => {
    for (let i = 0, off = 0; i < COUNT; i++, off += RECORD) {
      // The walk ffi/ringbuf.ts does: the ring header, then the record.
      if (ring.u32[off >>> 2]! & 0xc0000000) continue;
      sink += step(ring, off + 8, i);
    }
  };
  for (let i = 0; i < 30; i++) pass(); // let the JIT settle
  const results: number[] = [];
  for (let k = 0; k < 5; k++) {
    let passes = 0;
    const start = performance.now();
    do {
      pass();
      passes++;
    } while (performance.now() - start < ms / 5);
    results.push(((performance.now() - start) * 1e6) / (passes * COUNT));
  }
  return results.sort((a, b) => a - b)[2]!;
}

export interface DecodeCosts {
  /** Ring walk + recordKind: what the reader costs without decoding. */
  walk: number;
  /** decodeDrop, the product's per-record decode. */
  decodeDrop: number;
  /** Pieces of decodeDrop. */
  addrHex: number;
  commString: number;
  decodePacket: number;
  /** Per-record output work of --drop (after decoding). */
  symbolize: number;
  textLine: number;
  jsonLine: number;
  /** walk + decodeDrop + symbolize + dropJson: what --drop --json does per record. */
  jsonPipeline: number;
  /** Sketches (bench only), verified to give the product's output. */
  decodeDropProposed: number;
  jsonLineProposed: number;
}

export function decodeCosts(ms = 250): DecodeCosts {
  const ring = syntheticRing(COUNT);
  const symbols = new Symbolizer(readFileSync("/proc/kallsyms", "utf8"));
  // A real kernel address for the drop location, as the kernel would report it.
  const site = symbols.addressOf("kfree_skb_reason") ?? symbols.addressOf("sk_skb_reason_drop") ?? 0;
  const locHi = (Math.floor(site / 0x1_0000_0000) | 0xffff0000) >>> 0;
  const locLo = (site % 0x1_0000_0000) + 0x40;
  const clock = new Clock();
  const style = { colors: colorsFor(false), clock, date: false, detail: false };
  const events = Array.from({ length: COUNT }, (_, i) => decodeDrop(ring, i * RECORD + 8));
  const location = symbols.format(locHi, locLo);
  const jsonProposed = dropJsonProposed(clock);

  // The sketches must say exactly what the product says.
  for (let i = 0; i < COUNT; i += 97) {
    const off = i * RECORD + 8;
    const a = JSON.stringify(decodeDrop(ring, off));
    if (JSON.stringify(decodeDropProposed(ring, off)) !== a) throw new Error("decodeDropProposed differs from decodeDrop");
    if (jsonProposed(events[i]!, "NO_SOCKET", location) !== dropJson(events[i]!, "NO_SOCKET", location, clock))
      throw new Error(`dropJson sketch differs:\n${jsonProposed(events[i]!, "NO_SOCKET", location)}\n${dropJson(events[i]!, "NO_SOCKET", location, clock)}`);
  }

  const meta = D.fields.meta.offset;
  const pkt = D.fields.pkt.offset;
  return {
    walk: measure(ring, ms, (b, off) => recordKind(b, off)),
    decodeDrop: measure(ring, ms, (b, off) => (recordKind(b, off) === event_kind.EVENT_DROP ? decodeDrop(b, off).pkt.sport : 0)),
    addrHex: measure(ring, ms, (b, off) => addrHex(b.u32[((off + meta) >>> 2) + 1]!, b.u32[(off + meta) >>> 2]!).length),
    commString: measure(ring, ms, (b, off) => kernelString(b.u8, off + meta + M.comm.offset, M.comm.size).length),
    decodePacket: measure(ring, ms, (b, off) => decodePacket(b, off + pkt).saddr.length),
    symbolize: measure(ring, ms, (_b, _off, i) => symbols.format(locHi, locLo + (i & 0xff)).length),
    textLine: measure(ring, ms, (_b, _off, i) => dropLine(events[i]!, "NO_SOCKET", location, style).length),
    jsonLine: measure(ring, ms, (_b, _off, i) => dropJson(events[i]!, "NO_SOCKET", location, clock).length),
    jsonPipeline: measure(ring, ms, (b, off) => {
      if (recordKind(b, off) !== event_kind.EVENT_DROP) return 0;
      const e = decodeDrop(b, off);
      return dropJson(e, "NO_SOCKET", symbols.format(e.location.hi, e.location.lo), clock).length;
    }),
    decodeDropProposed: measure(ring, ms, (b, off) => (recordKind(b, off) === event_kind.EVENT_DROP ? decodeDropProposed(b, off).pkt.sport : 0)),
    jsonLineProposed: measure(ring, ms, (_b, _off, i) => jsonProposed(events[i]!, "NO_SOCKET", location).length),
  };
}

if (import.meta.main) {
  const costs = decodeCosts();
  if (process.argv.includes("--json")) {
    console.log(JSON.stringify(costs));
    process.exit(0);
  }
  for (const [k, v] of Object.entries(costs)) console.log(`${k.padEnd(20)} ${v.toFixed(0).padStart(6)} ns`);
  if (!sink) console.log("(nothing measured)");
}
