// Where the TypeScript side's time goes per drop event, without the kernel:
// the product's code (src/events/decode.ts, src/output/) on records in ordinary
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
import { layout, event_kind, event_version } from "../src/abi/layout.generated";
import { decodeDrop, decodePacket, kernelString, recordKind, StringCache, type RecordBytes } from "../src/events/decode";
import { addrHex, Symbolizer } from "../src/kernel/kallsyms";
import { dropJson } from "../src/output/json";
import { colorsFor, dropLine } from "../src/output/text";
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
  /** Pieces of decodeDrop: the skb address in hex (made only when printed), the comm string (cached by its bytes), the packet. */
  addrHex: number;
  commString: number;
  decodePacket: number;
  /** Per-record output work of --drop (after decoding). */
  symbolize: number;
  textLine: number;
  jsonLine: number;
  /** walk + decodeDrop + symbolize + dropJson: what --drop --json does per record. */
  jsonPipeline: number;
  /** walk + decodeDrop + symbolize + dropLine: what --drop does per record. */
  textPipeline: number;
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
  // The comm field through a cache of its own, as decodeDrop reads it.
  const comms = new StringCache((u8, off) => kernelString(u8, off, M.comm.size));

  const meta = D.fields.meta.offset;
  const pkt = D.fields.pkt.offset;
  return {
    walk: measure(ring, ms, (b, off) => recordKind(b, off, RECORD - 8)),
    decodeDrop: measure(ring, ms, (b, off) => (recordKind(b, off, RECORD - 8) === event_kind.EVENT_DROP ? decodeDrop(b, off).pkt.sport : 0)),
    addrHex: measure(ring, ms, (b, off) => addrHex(b.u32[((off + meta) >>> 2) + 1]!, b.u32[(off + meta) >>> 2]!).length),
    commString: measure(ring, ms, (b, off) => comms.get(b, off + meta + M.comm.offset).length),
    decodePacket: measure(ring, ms, (b, off) => decodePacket(b, off + pkt).saddr.length),
    symbolize: measure(ring, ms, (_b, _off, i) => symbols.format(locHi, locLo + (i & 0xff)).length),
    textLine: measure(ring, ms, (_b, _off, i) => dropLine(events[i]!, "NO_SOCKET", location, style).length),
    jsonLine: measure(ring, ms, (_b, _off, i) => dropJson(events[i]!, "NO_SOCKET", location, clock).length),
    jsonPipeline: measure(ring, ms, (b, off) => {
      if (recordKind(b, off, RECORD - 8) !== event_kind.EVENT_DROP) return 0;
      const e = decodeDrop(b, off);
      return dropJson(e, "NO_SOCKET", symbols.format(e.location.hi, e.location.lo), clock).length;
    }),
    textPipeline: measure(ring, ms, (b, off) => {
      if (recordKind(b, off, RECORD - 8) !== event_kind.EVENT_DROP) return 0;
      const e = decodeDrop(b, off);
      return dropLine(e, "NO_SOCKET", symbols.format(e.location.hi, e.location.lo), style).length;
    }),
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
