// Decoders on real records captured from the kernel (tools/capture-fixtures.ts).
import { describe, expect, test } from "bun:test";
import { addrHex } from "../../src/kernel/kallsyms";
import fixtures from "../fixtures/drops.json";
import { decodeCapture, decodeDrop, formatIPv6, kernelString, recordKind, StringCache, type DropEvent, type RecordBytes } from "../../src/events/decode";
import { capture_limits, capture_link, event_flags, event_kind, layout } from "../../src/abi/layout.generated";
import { tcpFlagsText } from "../../src/events/protocols";
import { dropJson, metaJson, packetJson } from "../../src/output/json";
import { colorsFor, dropLine, packetSummary } from "../../src/output/text";
import { Clock } from "../../src/output/time";

function bytes(hex: string): RecordBytes {
  const u8 = new Uint8Array(Buffer.from(hex, "hex"));
  return { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
}

function drop(name: keyof typeof fixtures) {
  const b = bytes(fixtures[name].bytes);
  expect(b.u8.length).toBe(layout.drop_event.size); // else: re-capture, events.h changed
  expect(recordKind(b, 0, b.u8.length)).toBe(event_kind.EVENT_DROP);
  return decodeDrop(b, 0);
}

describe("drop records captured from the kernel", () => {
  test("UDP over IPv4", () => {
    const e = drop("udp4");
    expect(packetSummary(e.pkt)).toBe("UDP: 10.62.0.1:5001 -> 10.62.0.2:7001");
    expect(e.pkt.ipLen).toBe(48); // 20 IP + 8 UDP + 20 payload
    expect(e.meta.ifname).toBe("veth1");
    expect(e.meta.skb).toMatch(/^ffff[0-9a-f]{12}$/);
    expect(e.location.hi >>> 16).toBe(0xffff);
    expect(e.stackId).toBe(-1);
    expect(packetJson(e.pkt)).toMatchObject({ l3: "IPv4", proto: "UDP", saddr: "10.62.0.1", daddr: "10.62.0.2", sport: 5001, dport: 7001 });
  });

  test("TCP SYN over IPv4 and IPv6", () => {
    const v4 = drop("tcp4_syn");
    expect(packetSummary(v4.pkt)).toMatch(/^TCP: 10\.62\.0\.1:\d+ -> 10\.62\.0\.2:7003 seq:\d+, ack:0, flags:S$/);
    const v6 = drop("tcp6_syn");
    expect(packetSummary(v6.pkt)).toMatch(/^TCP: \[fd00:62::1\]:\d+ -> \[fd00:62::2\]:7004 seq:\d+, ack:0, flags:S$/);
    expect(packetJson(v6.pkt)).toMatchObject({ l3: "IPv6", proto: "TCP", tcp: { ack: 0, flags: "S" } });
  });

  test("UDP over IPv6 behind a destination-options extension header", () => {
    const e = drop("udp6_exthdr");
    expect(packetSummary(e.pkt)).toBe("UDP: [fd00:62::1]:5005 -> [fd00:62::2]:7005");
    expect(e.pkt.ipLen).toBe(40 + 8 + 8 + 6);
  });

  test("ICMP and ICMPv6 echo requests", () => {
    expect(packetSummary(drop("icmp4_echo").pkt)).toMatch(/^ICMP: 10\.62\.0\.1 -> 10\.62\.0\.2 ping request, seq: 1, id: \d+$/);
    expect(packetSummary(drop("icmp6_echo").pkt)).toMatch(/^ICMPv6: fd00:62::1 -> fd00:62::2 ping request, seq: 1, id: \d+$/);
    expect(packetJson(drop("icmp4_echo").pkt)).toMatchObject({ proto: "ICMP", icmp: { type: 8, code: 0, seq: 1 } });
  });

  test("ARP (a's reply to b, dropped by b's arp table)", () => {
    const e = drop("arp");
    expect(packetSummary(e.pkt)).toBe("ARP: 10.62.0.1 -> 10.62.0.2 reply");
    expect(packetJson(e.pkt)).toMatchObject({ l3: "ARP", proto: "ARP", sport: null, arp: { op: "reply" } });
  });

  test("in-band VLAN tag (inner tag of a QinQ frame)", () => {
    const e = drop("vlan_udp4");
    expect(packetSummary(e.pkt)).toBe("UDP: 10.62.0.1:5010 -> 10.62.0.2:8802 vlan 100");
    expect(packetJson(e.pkt)).toMatchObject({ vlan: 100, proto: "UDP" });
  });

  test("unknown ethertype", () => {
    const e = drop("unknown_ethertype");
    expect(packetSummary(e.pkt)).toBe("ethertype 0x88b5");
    expect(packetJson(e.pkt)).toMatchObject({ l3: "ethertype 0x88b5", saddr: null, sport: null });
    // Sent from a packet socket: the frame's own protocol names it, not the socket.
    expect(e.pkt.skFamily).toBe(17);
  });

  test("a unix socket's skb (no network layer) is named by its socket, in text and JSON", () => {
    const e = drop("unix_stream");
    expect(packetSummary(e.pkt)).toBe("unix stream socket");
    expect(packetJson(e.pkt)).toMatchObject({ l3: "unknown", proto: "unknown", saddr: null, sport: null, socket: { family: "unix", type: "stream" } });
    // A packet with a network layer has no socket field, and without a socket it stays "unknown".
    expect(packetJson(drop("udp4").pkt)).toMatchObject({ socket: null });
    e.pkt.skFamily = 0;
    expect(packetSummary(e.pkt)).toBe("unknown");
    // Families and types the table lacks are shown by number.
    e.pkt.skFamily = 99;
    e.pkt.skType = 9;
    expect(packetSummary(e.pkt)).toBe("family 99 type 9 socket");
  });

  test("a record of another version is not decoded as a drop", () => {
    const b = bytes(fixtures.udp4.bytes);
    b.u8[layout.event_header.fields.version.offset] = 99;
    expect(recordKind(b, 0, b.u8.length)).toBe(0);
  });
});

// --pcap: a record followed by struct capture and the packet's bytes. The
// decoder checks the tail's size against the header and the ring's length.
describe("records with a capture tail", () => {
  const H = layout.event_header.fields;
  const C = layout.capture.fields;
  const BASE = layout.drop_event.size;
  /** The udp4 drop with `len` captured bytes (0..len-1) after it; `wire` their original length. */
  function withTail(len: number, opts: { size?: number; flags?: number; extra?: number } = {}): RecordBytes {
    const rec = bytes(fixtures.udp4.bytes);
    const total = BASE + layout.capture.size + len;
    const u8 = new Uint8Array((total + (opts.extra ?? 0) + 7) & ~7);
    u8.set(rec.u8);
    const b: RecordBytes = { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
    b.u8[H.flags.offset] = opts.flags ?? event_flags.EVENT_F_CAPTURE;
    b.u16[H.size.offset >>> 1] = opts.size ?? total;
    b.u32[(BASE + C.wire_len.offset) >>> 2] = 1514;
    b.u16[(BASE + C.len.offset) >>> 1] = len;
    b.u8[BASE + C.link.offset] = capture_link.CAPTURE_ETHERNET;
    for (let i = 0; i < len; i++) b.u8[BASE + layout.capture.size + i] = i & 0xff;
    return b;
  }

  test("a drop with its bytes decodes as a drop, and the bytes come out as copied", () => {
    const b = withTail(62);
    const length = BASE + layout.capture.size + 62;
    expect(recordKind(b, 0, length)).toBe(event_kind.EVENT_DROP);
    expect(packetSummary(decodeDrop(b, 0).pkt)).toBe("UDP: 10.62.0.1:5001 -> 10.62.0.2:7001");
    const c = decodeCapture(b, 0, event_kind.EVENT_DROP)!;
    expect(c).toMatchObject({ link: capture_link.CAPTURE_ETHERNET, wireLen: 1514 });
    expect([...c.bytes]).toEqual([...Array(62).keys()]);
    expect(c.bytes.buffer).not.toBe(b.u8.buffer); // a copy: the ring's space is given back
  });

  test("a record without the flag has no capture", () => {
    const b = bytes(fixtures.udp4.bytes);
    expect(decodeCapture(b, 0, event_kind.EVENT_DROP)).toBeUndefined();
  });

  test("sizes that disagree, unknown flags and oversized tails are rejected", () => {
    const length = (len: number) => BASE + layout.capture.size + len;
    expect(recordKind(withTail(62, { size: BASE }), 0, length(62))).toBe(0); // header says no tail
    expect(recordKind(withTail(62, { size: length(61) }), 0, length(62))).toBe(0); // header and tail disagree
    expect(recordKind(withTail(62), 0, length(61))).toBe(0); // the ring's record is shorter than announced
    expect(recordKind(withTail(62, { flags: 2 }), 0, length(62))).toBe(0); // a flag this version does not know
    expect(recordKind(withTail(0, { flags: event_flags.EVENT_F_CAPTURE }), 0, BASE + 4)).toBe(0); // too short for the tail itself
    const big = withTail(16, { size: length(capture_limits.CAPTURE_MAX + 1), extra: capture_limits.CAPTURE_MAX });
    big.u16[(BASE + layout.capture.fields.len.offset) >>> 1] = capture_limits.CAPTURE_MAX + 1;
    expect(recordKind(big, 0, length(capture_limits.CAPTURE_MAX + 1))).toBe(0);
  });

  test("a tail with nothing captured decodes as no capture", () => {
    const b = withTail(0);
    expect(recordKind(b, 0, BASE + layout.capture.size)).toBe(event_kind.EVENT_DROP);
    expect(decodeCapture(b, 0, event_kind.EVENT_DROP)).toBeUndefined();
  });
});

describe("formatting helpers", () => {
  const v6 = (hex: string) => formatIPv6(new Uint8Array(Buffer.from(hex, "hex")), 0);
  test("IPv6 addresses in RFC 5952 form", () => {
    expect(v6("00000000000000000000000000000001")).toBe("::1");
    expect(v6("20010db8000000000001000000000001")).toBe("2001:db8::1:0:0:1");
    expect(v6("20010db8000000010000000000000000")).toBe("2001:db8:0:1::");
    expect(v6("00000000000000000000ffff0a000001")).toBe("::ffff:10.0.0.1");
    expect(v6("fe800000000000000000000000000000")).toBe("fe80::");
    expect(v6("20010db8000100010001000100010001")).toBe("2001:db8:1:1:1:1:1:1");
  });

  test("kernel strings are cut at NUL and escaped when unprintable", () => {
    const u8 = new Uint8Array([0x65, 0x74, 0x68, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x5c, 0, 0x41]);
    expect(kernelString(u8, 0, 11)).toBe("eth\\x1b[31m\\x5c");
  });
});

// The per-record fast paths (tables, caches, one-literal JSON) must print
// exactly what the plain code printed.
describe("fast paths give the same text", () => {
  const M = layout.skb_meta.fields;
  const META = layout.drop_event.fields.meta.offset;
  const PKT = layout.drop_event.fields.pkt.offset;
  const record = (name: keyof typeof fixtures = "udp4") => bytes(fixtures[name].bytes);
  const setString = (b: RecordBytes, off: number, text: string | number[]) => {
    b.u8.fill(0, off, off + 16);
    b.u8.set(typeof text === "string" ? new TextEncoder().encode(text) : text, off);
  };

  test("64-bit addresses in hex, high bit set or not", () => {
    expect(addrHex(0xffff8881, 0x00a3c000)).toBe("ffff888100a3c000");
    expect(addrHex(0x80000000, 0xffffffff)).toBe("80000000ffffffff");
    expect(addrHex(0, 0)).toBe("0000000000000000");
    expect(addrHex(0x1, 0xf)).toBe("000000010000000f");
    for (const [hi, lo] of [[0xdeadbeef, 0x80000001], [0x7fffffff, 0x12345678], [0xffffffff, 0]])
      expect(addrHex(hi!, lo!)).toBe(hi!.toString(16).padStart(8, "0") + lo!.toString(16).padStart(8, "0"));
    const b = record();
    const at = (META + M.skb.offset) >>> 2;
    [b.u32[at], b.u32[at + 1]] = [0x00000001, 0x80000000];
    expect(decodeDrop(b, 0).meta.skb).toBe("8000000000000001");
  });

  test("comm and ifname follow their bytes", () => {
    const b = record();
    const comm = META + M.comm.offset;
    const ifname = META + M.ifname.offset;
    setString(b, comm, "bash");
    setString(b, ifname, "veth1");
    expect(decodeDrop(b, 0).meta).toMatchObject({ comm: "bash", ifname: "veth1" });
    setString(b, comm, "bask");
    setString(b, ifname, "veth2");
    expect(decodeDrop(b, 0).meta).toMatchObject({ comm: "bask", ifname: "veth2" });
    setString(b, comm, "0123456789abcdef"); // all 16 bytes, no NUL
    expect(decodeDrop(b, 0).meta.comm).toBe("0123456789abcdef");
    b.u8[comm + 15] = 0x46; // only the last byte changes
    expect(decodeDrop(b, 0).meta.comm).toBe("0123456789abcdeF");
    setString(b, comm, [0x62, 0x61, 0x73, 0x68, 0, 0x41]); // same text, other bytes after the NUL
    expect(decodeDrop(b, 0).meta.comm).toBe("bash");
    setString(b, comm, "");
    expect(decodeDrop(b, 0).meta.comm).toBe("");
  });

  test("a cache slot shared by two fields holds the right text for each", () => {
    // Words [A, B] and [B, A] hash alike (the hash XORs the words): same slot.
    const names = new StringCache((u8, off) => kernelString(u8, off, 16));
    const u8 = new Uint8Array(32);
    u8.set(new TextEncoder().encode("abcdefgh"), 0);
    u8.set(new TextEncoder().encode("efghabcd"), 16);
    const b: RecordBytes = { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
    for (let i = 0; i < 3; i++) {
      expect(names.get(b, 0)).toBe("abcdefgh");
      expect(names.get(b, 16)).toBe("efghabcd");
    }
  });

  test("addresses follow their bytes, and the same bytes read as IPv4 and IPv6 differ", () => {
    const v4 = record("udp4");
    expect(decodeDrop(v4, 0).pkt.daddr).toBe("10.62.0.2");
    v4.u8[PKT + layout.packet.fields.daddr.offset + 3] = 9;
    expect(decodeDrop(v4, 0).pkt.daddr).toBe("10.62.0.9");
    const v6 = record("tcp6_syn");
    expect(decodeDrop(v6, 0).pkt.daddr).toBe("fd00:62::2");
    v6.u8[PKT + layout.packet.fields.daddr.offset + 15] = 9;
    expect(decodeDrop(v6, 0).pkt.daddr).toBe("fd00:62::9");
    // IPv4 bytes in a record that says IPv6
    v4.u16[(PKT + layout.packet.fields.l3_proto.offset) >>> 1] = 0x86dd;
    expect(decodeDrop(v4, 0).pkt.saddr).toBe("a3e:1::");
  });

  test("TCP flags", () => {
    expect(tcpFlagsText(0x02)).toBe("S");
    expect(tcpFlagsText(0x12)).toBe("SA");
    expect(tcpFlagsText(0x3f)).toBe("SAPRFU");
    expect(tcpFlagsText(0xc0)).toBe("");
  });

  // dropJson as it was: the two objects of the README's schema, spread.
  const reference = (e: DropEvent, reason: string | undefined, location: string, clock: Clock, stack?: string[]) =>
    JSON.stringify({ kind: "drop", time: clock.iso(e.timeNs), ts_ns: e.timeNs, reason: reason ?? null, location, ...packetJson(e.pkt), ...metaJson(e.cpu, e.meta), ...(stack ? { stack } : {}) });

  test("JSON drop lines: every captured packet, with and without reason and stack", () => {
    const clock = new Clock();
    for (const name of Object.keys(fixtures) as (keyof typeof fixtures)[]) {
      const e = drop(name);
      expect(dropJson(e, "NO_SOCKET", "__udp4_lib_rcv+0x4bc", clock)).toBe(reference(e, "NO_SOCKET", "__udp4_lib_rcv+0x4bc", clock));
      expect(dropJson(e, undefined, "0x0", clock, ["a+0x1", "b+0x2 [mod]"])).toBe(reference(e, undefined, "0x0", clock, ["a+0x1", "b+0x2 [mod]"]));
    }
  });

  test("JSON escapes a comm with quotes, backslashes and control characters", () => {
    const b = record();
    setString(b, META + M.comm.offset, [0x61, 0x22, 0x62, 0x5c, 0x63, 0x01, 0x0a, 0x7f, 0xe9]); // a " b \ c, then 0x01 0x0a 0x7f 0xe9
    setString(b, META + M.ifname.offset, [0x22, 0x22]);
    const e = decodeDrop(b, 0);
    expect(e.meta.comm).toBe('a"b\\x5cc\\x01\\x0a\\x7f\\xe9');
    const line = dropJson(e, 'x"y', "f\\g", new Clock());
    expect(line).toContain(String.raw`"comm":"a\"b\\x5cc\\x01\\x0a\\x7f\\xe9"`);
    expect(line).toContain(String.raw`"ifname":"\"\""`);
    expect(line).toContain(String.raw`"reason":"x\"y","location":"f\\g"`);
    expect(JSON.parse(line)).toMatchObject({ comm: e.meta.comm, ifname: '""', reason: 'x"y', location: "f\\g" });
  });

  test("time stamps: the cached second, across second boundaries", () => {
    const clock = new Clock();
    const offsetNs = (clock as unknown as { offsetNs: number }).offsetNs;
    // The formulas before the cache.
    const iso = (ns: number) => {
      const wall = ns + offsetNs;
      const micros = String(Math.floor(wall / 1e3) % 1e6).padStart(6, "0");
      return new Date(Math.floor(wall / 1e6)).toISOString().replace(/\.\d{3}Z$/, `.${micros}Z`);
    };
    const local = (ns: number) => {
      const wall = ns + offsetNs;
      const d = new Date(Math.floor(wall / 1e6));
      const p = (n: number, w = 2) => String(n).padStart(w, "0");
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(Math.floor(wall / 1e3) % 1e6, 6)}`;
    };
    // Start just before a wall-clock second, step across a few of them.
    const start = 5_000_000_000_000 - (offsetNs % 1e9) - 3_000;
    for (let ns = start; ns < start + 3e9; ns += 49_999_991) {
      for (const t of [ns, ns + 1_000, ns + 2_999, ns + 3_000, ns + 3_001]) {
        expect(clock.iso(t)).toBe(iso(t));
        expect(clock.stamp(t, true)).toBe(local(t));
      }
    }
    expect(clock.stamp(153_345_912_400, false)).toBe("153.345912");
  });

  test("text lines print the skb address only with --detail", () => {
    const e = drop("udp4");
    const style = { colors: colorsFor(false), clock: new Clock(), date: false, detail: false };
    const plain = dropLine(e, "NO_SOCKET", "__udp4_lib_rcv+0x4bc", style);
    expect(plain).toMatch(/^\[\d+\.\d{6}\] UDP: 10\.62\.0\.1:5001 -> 10\.62\.0\.2:7001 \*reason: NO_SOCKET, __udp4_lib_rcv\+0x4bc\* \*packet is dropped by kernel\*$/);
    const detail = dropLine(e, "NO_SOCKET", "__udp4_lib_rcv+0x4bc", { ...style, detail: true });
    expect(detail).toContain(`[${e.meta.skb}][cpu:`);
    expect(e.meta.skb).toMatch(/^ffff[0-9a-f]{12}$/);
  });
});
