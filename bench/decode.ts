// Where the TypeScript reader's time goes, without the kernel: the
// product's decoder (src/decode.ts) on records held in ordinary memory, the
// same records bench/producer.bpf.c writes, laid out as in the ring
// (8-byte ring header, 168-byte struct drop_event, 8-byte aligned).
//
//   bun bench/decode.ts
//
// Parts measured, each in ns per record on hot (cached) memory:
//   walk    the ring walk and recordKind only
//   decode  walk + decodeDrop (what the product does per record)
//   and the pieces of decodeDrop: decodeMeta, decodePacket.
import { layout, event_kind, event_version } from "../src/layout.generated";
import { decodeDrop, decodeMeta, decodePacket, recordKind, type RecordBytes } from "../src/decode";

const D = layout.drop_event;
const H = layout.event_header.fields;
const M = layout.skb_meta.fields;
const P = layout.packet.fields;
const RECORD = (8 + D.size + 7) & ~7;

/** `count` records as the synthetic producer writes them, each after an 8-byte ring header. */
export function syntheticRing(count: number): RecordBytes {
  const buf = new ArrayBuffer(count * RECORD);
  const v = new DataView(buf);
  const u8 = new Uint8Array(buf);
  for (let n = 0; n < count; n++) {
    const ringHeader = n * RECORD;
    v.setUint32(ringHeader, D.size, true);
    const e = ringHeader + 8;
    v.setUint16(e + H.kind.offset, event_kind.EVENT_DROP, true);
    v.setUint16(e + H.size.offset, D.size, true);
    v.setUint8(e + H.version.offset, event_version.EVENT_VERSION);
    v.setUint32(e + H.cpu.offset, 0, true);
    v.setBigUint64(e + H.time_ns.offset, 1_000_000_000n + BigInt(n), true);
    const m = e + D.fields.meta.offset;
    v.setBigUint64(m + M.skb.offset, 0xffff888100000000n + BigInt(n << 8), true);
    v.setUint32(m + M.len.offset, 60 + (n & 511), true);
    v.setUint32(m + M.ifindex.offset, 1, true);
    v.setUint32(m + M.netns.offset, 4026531840, true);
    v.setUint32(m + M.pid.offset, 4242, true);
    u8.set(new TextEncoder().encode("lo"), m + M.ifname.offset);
    u8.set(new TextEncoder().encode("ringbench"), m + M.comm.offset);
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

export interface DecodeCosts {
  walkNs: number;
  decodeNs: number;
  metaNs: number;
  packetNs: number;
}

let sink = 0;

/** ns per record of `step` applied to every record of `ring`, repeated for about `ms`. */
function measure(ring: RecordBytes, count: number, ms: number, step: (b: RecordBytes, off: number) => void): number {
  const pass = () => {
    for (let i = 0, off = 0; i < count; i++, off += RECORD) {
      // The walk src/../ffi/ringbuf.ts does: read the ring header, then the record.
      const header = ring.u32[off >>> 2]!;
      if (header & 0xc0000000) continue;
      step(ring, off + 8);
    }
  };
  for (let i = 0; i < 20; i++) pass(); // let the JIT settle
  let passes = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    pass();
    passes++;
  }
  return ((performance.now() - start) * 1e6) / (passes * count);
}

export function decodeCosts(ms = 300): DecodeCosts {
  const count = 4096;
  const ring = syntheticRing(count);
  return {
    walkNs: measure(ring, count, ms, (b, off) => {
      sink += recordKind(b, off);
    }),
    decodeNs: measure(ring, count, ms, (b, off) => {
      if (recordKind(b, off) !== event_kind.EVENT_DROP) return;
      const e = decodeDrop(b, off);
      sink += e.pkt.sport + e.meta.comm.length;
    }),
    metaNs: measure(ring, count, ms, (b, off) => {
      sink += decodeMeta(b, off + D.fields.meta.offset).len;
    }),
    packetNs: measure(ring, count, ms, (b, off) => {
      sink += decodePacket(b, off + D.fields.pkt.offset).sport;
    }),
  };
}

if (import.meta.main) {
  console.log(JSON.stringify(decodeCosts(), null, 1), sink > 0 ? "" : "?");
}
