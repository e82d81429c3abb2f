// Decoders on real records captured from the kernel (tests/fixtures/capture.ts).
import { describe, expect, test } from "bun:test";
import fixtures from "../fixtures/drops.json";
import { decodeDrop, formatIPv6, kernelString, recordKind, EVENT_DROP, type RecordBytes } from "../../src/decode";
import { layout } from "../../src/layout.generated";
import { packetSummary } from "../../src/output/packet";
import { packetJson } from "../../src/output/json";

function bytes(hex: string): RecordBytes {
  const u8 = new Uint8Array(Buffer.from(hex, "hex"));
  return { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
}

function drop(name: keyof typeof fixtures) {
  const b = bytes(fixtures[name].bytes);
  expect(b.u8.length).toBe(layout.drop_event.size); // else: re-capture, events.h changed
  expect(recordKind(b, 0)).toBe(EVENT_DROP);
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
  });

  test("a record of another version is not decoded as a drop", () => {
    const b = bytes(fixtures.udp4.bytes);
    b.u8[layout.event_header.fields.version.offset] = 99;
    expect(recordKind(b, 0)).toBe(0);
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
