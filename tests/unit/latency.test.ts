// Latency figures on hook records captured from the kernel (the lifecycle
// fixture): --latency-show's per-hook delays and totals in text and JSON;
// --latency-summary's table, --tiny-show's lines, --trace-exclude's selection;
// and --latency's own records, captured from the kernel (tools/capture-latency.ts).
import { describe, expect, test } from "bun:test";
import { event_kind, hook_flags, latency_slots, tracepoint_id } from "../../src/abi/layout.generated";
import { tracerTreeText } from "../../src/common/assets";
import { latencySummary } from "../../src/events/latency";
import { decodeHook, decodeLatency, recordKind, type HookEvent } from "../../src/events/decode";
import { Lifecycle, type PacketContext } from "../../src/events/lifecycle";
import { lineDelays, linesOf, type HookLine } from "../../src/events/line";
import { contextJson, latencyJson } from "../../src/output/json";
import { colorsFor, delayText, hookLine, latencyLine, latencyTotalLine, packetSummary, rttTableLines, tinyPacket } from "../../src/output/text";
import { Clock } from "../../src/output/time";
import { tracepointById } from "../../src/plan/tracepoints";
import { allHooks, excludeHooks, findGroup, loadTracerTree, selectHooks } from "../../src/plan/tracer-tree";
import captured from "../fixtures/lifecycles.json";
import latencyFixtures from "../fixtures/latency.json";

function packets(): PacketContext[] {
  const out: PacketContext[] = [];
  const life = new Lifecycle({ idleNs: 3e9, settleNs: 100e6, maxContexts: 4096, maxEventsPerContext: 256 }, (c) => out.push(c));
  for (const hex of captured.records) {
    const u8 = new Uint8Array(Buffer.from(hex, "hex"));
    life.add(decodeHook({ u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) }, 0, event_kind.EVENT_HOOK));
  }
  life.flushAll();
  return out;
}

const toLine = (e: HookEvent, ret?: HookEvent): HookLine => ({ e, ret, name: tracepointById.get(e.tracepoint)!.name.split(":")[1]!, notes: [] });
const style = { colors: colorsFor(false), clock: new Clock(), date: false, detail: false, latencyShow: true };

describe("--latency-show", () => {
  test("each hook's delay is the time since the packet's previous hook; they add up to the total", () => {
    const all = packets();
    expect(all.length).toBeGreaterThan(1);
    for (const ctx of all) {
      const lines = linesOf(ctx.events, toLine);
      const { delays, totalNs } = lineDelays(lines);
      expect(delays[0]).toBe(0);
      for (let i = 1; i < lines.length; i++) expect(delays[i]).toBe(lines[i]!.e.timeNs - lines[i - 1]!.e.timeNs);
      expect(delays.reduce((a, b) => a + b, 0)).toBe(totalNs);
      expect(totalNs).toBe(ctx.lastNs - ctx.firstNs);
    }
  });

  test("text: a delay column after the time, a total line; without the flag, nettrace's layout", () => {
    const ctx = packets()[0]!;
    const lines = linesOf(ctx.events, toLine);
    const { delays, totalNs } = lineDelays(lines);
    const second = hookLine(lines[1]!, style, delays[1]);
    expect(second).toMatch(new RegExp(`^\\[[\\d.]+\\] \\[\\+${delayText(delays[1]!).replace(".", "\\.")} *\\] \\[${lines[1]!.name} *\\] `));
    expect(hookLine(lines[1]!, { ...style, latencyShow: false })).toMatch(/^\[[\d.]+\] \[[a-z_]+ *\] /);
    expect(latencyTotalLine(totalNs, lines.length)).toBe(`total latency: ${delayText(totalNs)} over ${lines.length} hooks`);
  });

  test("delays: sub-µs precision below 10 µs, then the usual durations", () => {
    expect(delayText(0)).toBe("0.0µs");
    expect(delayText(1_234)).toBe("1.2µs");
    expect(delayText(52_000)).toBe("52µs");
    expect(delayText(50_300_000)).toBe("50ms");
  });

  test("JSON: delay_us per event and latency_us per packet only when asked", () => {
    const ctx = packets()[0]!;
    const lines = linesOf(ctx.events, toLine);
    const latency = lineDelays(lines);
    const o = JSON.parse(contextJson(ctx, lines, style.clock, undefined, latency));
    expect(o.latency_us).toBe(Math.round(latency.totalNs) / 1000);
    expect(o.events.map((e: { delay_us: number }) => e.delay_us)).toEqual(latency.delays.map((d) => Math.round(d) / 1000));
    const plain = JSON.parse(contextJson(ctx, lines, style.clock));
    expect(plain.latency_us).toBeUndefined();
    expect(plain.events[0].delay_us).toBeUndefined();
  });
});

describe("--latency-summary's table", () => {
  test("kernel slots become the log2 buckets of the RTT table, from the first used to the last", () => {
    const slots = new Array(latency_slots.LAT_SLOTS).fill(0);
    slots[0] = 2; // under 2 µs
    slots[3] = 1; // 8..15 µs
    slots[5] = 4; // 32..63 µs
    slots[latency_slots.LAT_SUM_US] = 2 * 1 + 10 + 4 * 40;
    const s = latencySummary(slots);
    expect(s.packets).toBe(7);
    expect(s.avgUs).toBeCloseTo(172 / 7);
    expect(s.buckets.map((b) => [b.lowUs, b.highUs, b.count])).toEqual([[0, 1, 2], [2, 3, 0], [4, 7, 0], [8, 15, 1], [16, 31, 0], [32, 63, 4]]);
    const lines = rttTableLines(s.buckets, s.packets, s.avgUs, { title: "latency", unit: "packet" });
    expect(lines[0]).toBe("latency distribution: 7 packets, average 25µs");
    expect(lines).toHaveLength(2 + 6);
    expect(latencySummary(new Array(latency_slots.LAT_SLOTS).fill(0))).toEqual({ buckets: [], packets: 0, avgUs: 0 });
  });
});

describe("--tiny-show", () => {
  test("the packet only on the first line and where it changes", () => {
    const ctx = packets()[0]!;
    const lines = linesOf(ctx.events, toLine);
    const previous = {};
    const shown = lines.map((l) => hookLine(l, style, undefined, tinyPacket(l, previous)));
    expect(shown[0]).toContain(packetSummary(lines[0]!.e.pkt));
    for (let i = 1; i < lines.length; i++) {
      const same = packetSummary(lines[i]!.e.pkt) === packetSummary(lines[i - 1]!.e.pkt);
      expect(shown[i]!.includes(packetSummary(lines[i]!.e.pkt))).toBe(!same);
      expect(shown[i]).toMatch(new RegExp(`^\\[[\\d.]+\\] \\[${lines[i]!.name} *\\]`));
    }
  });
});

describe("--trace-exclude", () => {
  const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
  test("groups, names and globs leave the selection; unknown names are reported", () => {
    const sel = selectHooks(tree, undefined);
    const before = sel.hooks.map((h) => h.name);
    expect(before).toContain("net:net_dev_queue");
    const linkOut = allHooks([findGroup(tree, "link-out")!]).map((h) => h.name);
    const r = excludeHooks(tree, sel, ["tcp_v4_do_rcv", "udp_rcv"], ["link-out", "skb_copy_datagram_iovec", "tcp_*", "no_such_hook_at_all"]);
    const after = sel.hooks.map((h) => h.name);
    for (const n of linkOut) expect(after).not.toContain(n);
    expect(after.some((n) => n.endsWith("skb_copy_datagram_iovec"))).toBe(false);
    expect(after.some((n) => n.startsWith("tcp_"))).toBe(false);
    expect(after.length).toBeLessThan(before.length);
    expect(r.functions).toEqual(["udp_rcv"]);
    expect(r.unknown).toEqual(["no_such_hook_at_all"]);
  });
});

describe("--latency records captured from the kernel", () => {
  const record = (hex: string) => {
    const u8 = new Uint8Array(Buffer.from(hex, "hex"));
    const b = { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
    expect(recordKind(b, 0, u8.length)).toBe(event_kind.EVENT_LATENCY);
    return decodeLatency(b, 0);
  };
  const tp = (id: number) => tracepointById.get(id)!.name.split(":")[1];

  test("a datagram to a closed port: from the first device hook to its drop, the packet as first seen", () => {
    const e = record(latencyFixtures.udp_drop);
    expect(e.pkt).toMatchObject({ l4: 17, sport: 5009, dport: 7009 });
    expect(e.pkt.daddr).toMatch(/^10\.69\.0\.2$/);
    expect(e.first).toEqual({ tracepoint: tracepoint_id.TP_NET_DEV_QUEUE, func: 0 });
    expect(e.end).toEqual({ tracepoint: tracepoint_id.TP_KFREE_SKB, func: 0 });
    expect(tp(e.last.tracepoint)).not.toBe("kfree_skb");
    expect(e.endFlags & hook_flags.HOOK_DROP).toBeTruthy();
    expect(e.hooks).toBeGreaterThanOrEqual(3);
    expect(e.firstNs).toBeLessThanOrEqual(e.lastNs);
    expect(e.lastNs).toBeLessThanOrEqual(e.endNs);
    // Without --latency-free: to the last hook before the drop.
    expect(e.latencyNs).toBe(e.lastNs - e.firstNs);
    expect(e.meta.ifname).toBe("veth0");
  });

  test("with --latency-free the drop's own time counts", () => {
    const e = record(latencyFixtures.udp_drop_free_counted);
    expect(e.latencyNs).toBe(e.endNs - e.firstNs);
    expect(e.latencyNs).toBeGreaterThan(e.lastNs - e.firstNs);
  });

  test("text and JSON name the hooks and the drop", () => {
    const e = record(latencyFixtures.udp_drop);
    const names = { first: tp(e.first.tracepoint)!, last: tp(e.last.tracepoint)!, end: "kfree_skb", reason: "NO_SOCKET", location: "__udp4_lib_rcv+0x4bc" };
    expect(latencyLine(e, names, style)).toMatch(
      new RegExp(`^\\[[\\d.]+\\] \\[net_dev_queue -> ${names.last} *\\] UDP: 10\\.69\\.0\\.1:5009 -> 10\\.69\\.0\\.2:7009 \\*latency: [\\d.]+(µs|ms)\\* \\*${e.hooks} hooks, ended at kfree_skb \\(reason: NO_SOCKET, __udp4_lib_rcv\\+0x4bc\\)\\*$`),
    );
    const o = JSON.parse(latencyJson(e, names, style.clock));
    expect(o).toMatchObject({ kind: "latency", ts_ns: e.firstNs, last_ts_ns: e.lastNs, end_ts_ns: e.endNs, first_hook: "net_dev_queue", end_hook: "kfree_skb", end: "drop", hooks: e.hooks, reason: "NO_SOCKET", proto: "UDP", dport: 7009 });
    expect(o.latency_us).toBe(e.latencyNs / 1000);
  });
});
