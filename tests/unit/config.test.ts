// Filters compiled into struct skbtrail_config bytes, checked field by field.
import { expect, test } from "bun:test";
import { resolveReasons, writeConfig } from "../../src/bpf/config";
import { layout } from "../../src/abi/layout.generated";
import { parseAddr } from "../../src/cli/values";
import { SkbtrailError } from "../../src/common/errors";

const C = layout.skbtrail_config.fields;
const A = layout.addr_filter.fields;

function config(input: Partial<Parameters<typeof writeConfig>[1]>) {
  const bytes = new Uint8Array(layout.skbtrail_config.size).fill(0xee);
  writeConfig(bytes, { filter: {}, reasonValues: [], dropStack: false, wakeupBytes: 4096, ...input });
  return { bytes, view: new DataView(bytes.buffer) };
}

test("an empty filter is all zeros but the wakeup threshold", () => {
  const { bytes, view } = config({});
  expect(view.getUint32(C.wakeup_bytes.offset, true)).toBe(4096);
  bytes.fill(0, C.wakeup_bytes.offset, C.wakeup_bytes.offset + 4);
  expect(bytes.every((b) => b === 0)).toBe(true);
});

test("CIDR prefixes become byte masks", () => {
  const { bytes } = config({ filter: { saddr: parseAddr("-s", "10.1.2.3/20"), daddr: parseAddr("-d", "fd00::1") } });
  const s = C.saddr.offset;
  expect([...bytes.slice(s + A.addr.offset, s + A.addr.offset + 4)]).toEqual([10, 1, 2, 3]);
  expect([...bytes.slice(s + A.mask.offset, s + A.mask.offset + 5)]).toEqual([0xff, 0xff, 0xf0, 0, 0]);
  expect(bytes[s + A.family.offset]).toBe(4);
  const d = C.daddr.offset;
  expect(bytes.slice(d + A.mask.offset, d + A.mask.offset + 16).every((b) => b === 0xff)).toBe(true);
  expect(bytes[d + A.family.offset]).toBe(6);
  expect(bytes[C.addr.offset + A.family.offset]).toBe(0);
});

test("ports, protocol, flags, lengths, netns, mark and interface", () => {
  const { bytes, view } = config({
    filter: { sport: 1, dport: 443, proto: { name: "udp", l4: 17 }, tcpFlags: 0x12, pktLen: [60, 90], netnsCurrent: true, mark: { value: 0x10, mask: 0xff }, ifname: "eth0" },
    currentNetns: 4026531840,
    dropStack: true,
  });
  expect(view.getUint16(C.sport.offset, true)).toBe(1);
  expect(view.getUint16(C.dport.offset, true)).toBe(443);
  expect(bytes[C.l4_proto.offset]).toBe(17);
  expect(bytes[C.has_l4_proto.offset]).toBe(1);
  expect(view.getUint16(C.l3_proto.offset, true)).toBe(0);
  expect(bytes[C.tcp_flags.offset]).toBe(0x12);
  expect([view.getUint32(C.pkt_len_min.offset, true), view.getUint32(C.pkt_len_max.offset, true)]).toEqual([60, 90]);
  expect(view.getUint32(C.netns.offset, true)).toBe(4026531840);
  expect([view.getUint32(C.mark.offset, true), view.getUint32(C.mark_mask.offset, true)]).toEqual([0x10, 0xff]);
  expect(Buffer.from(bytes.slice(C.ifname.offset, C.ifname.offset + 5)).toString("latin1")).toBe("eth0\0");
  expect(bytes[C.drop_stack.offset]).toBe(1);
});

test("drop reasons become a bitmap of this kernel's values", () => {
  const { bytes, view } = config({ reasonValues: [3, 64, 130] });
  expect(view.getBigUint64(C.reasons.offset, true)).toBe(1n << 3n);
  expect(view.getBigUint64(C.reasons.offset + 8, true)).toBe(1n);
  expect(view.getBigUint64(C.reasons.offset + 16, true)).toBe(1n << 2n);
  expect(bytes[C.has_reasons.offset]).toBe(1);
});

test("reason names resolve against the running kernel's enum, with suggestions", () => {
  const kernel = new Map([[2, "NOT_SPECIFIED"], [3, "NO_SOCKET"], [12, "NETFILTER_DROP"]]);
  expect(resolveReasons(["NO_SOCKET", "SKB_DROP_REASON_NETFILTER_DROP"], kernel)).toEqual([3, 12]);
  expect(() => resolveReasons(["SOCKET"], kernel)).toThrow(/this kernel has no drop reason 'SOCKET'; did you mean NO_SOCKET\?/);
  expect(() => resolveReasons(["NO_SOCKET"], new Map())).toThrow(SkbtrailError);
  expect(() => resolveReasons(["NO_SOCKET"], new Map())).toThrow(/added in Linux 5\.17/);
});
