// Latency figures on hook records captured from the kernel (the lifecycle
// fixture): --latency-show's per-hook delays and totals in text and JSON.
import { describe, expect, test } from "bun:test";
import { event_kind } from "../../src/abi/layout.generated";
import { decodeHook, type HookEvent } from "../../src/events/decode";
import { Lifecycle, type PacketContext } from "../../src/events/lifecycle";
import { lineDelays, linesOf, type HookLine } from "../../src/events/line";
import { contextJson } from "../../src/output/json";
import { colorsFor, delayText, hookLine, latencyTotalLine } from "../../src/output/text";
import { Clock } from "../../src/output/time";
import { tracepointById } from "../../src/plan/tracepoints";
import captured from "../fixtures/lifecycles.json";

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
