// Lifecycle grouping on hook records captured from the kernel
// (tools/capture-lifecycles.ts: a ping between two namespaces and a UDP
// datagram to a closed port, with the tracepoints of a default trace),
// and on variations of them for what tracepoints cannot show here (clones,
// returns): settling, idle, eviction, caps, address reuse.
import { describe, expect, test } from "bun:test";
import { event_kind, hook_flags, hook_phase, tracepoint_id } from "../../src/abi/layout.generated";
import { decodeHook, type HookEvent } from "../../src/events/decode";
import { Lifecycle, type LifecycleLimits, type PacketContext } from "../../src/events/lifecycle";
import { tracepointById } from "../../src/plan/tracepoints";
import { annotate } from "../../src/events/line";
import { ReadClock } from "../../src/modes/skeleton";
import { monotonicNowNs } from "../../ffi/libc";
import captured from "../fixtures/lifecycles.json";

/** The captured records, decoded afresh (tests change them). */
function recorded(): HookEvent[] {
  return captured.records.map((hex) => {
    const u8 = new Uint8Array(Buffer.from(hex, "hex"));
    return decodeHook({ u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) }, 0, event_kind.EVENT_HOOK);
  });
}

const LIMITS: LifecycleLimits = { idleNs: 3e9, settleNs: 100e6, maxContexts: 4096, maxEventsPerContext: 256 };
const name = (e: HookEvent) => tracepointById.get(e.tracepoint)!.name.split(":")[1];

function group(events: HookEvent[], limits: Partial<LifecycleLimits> = {}) {
  const out: PacketContext[] = [];
  const life = new Lifecycle({ ...LIMITS, ...limits }, (ctx) => out.push(ctx));
  for (const e of events) life.add(e);
  return { out, life };
}

const last = (events: HookEvent[]) => events.reduce((t, e) => Math.max(t, e.timeNs), 0);

describe("captured packets", () => {
  test("four packets, one context each, events in time order, each ended by its free", () => {
    const events = recorded();
    const { out, life } = group(events);
    const end = last(events);
    life.flush(end); // the frees are seen now…
    expect(out).toHaveLength(0); // …but the packets wait for late returns
    life.flush(end + LIMITS.settleNs);
    expect(out).toHaveLength(4);
    const summaries = out.map((c) => `${c.events[0]!.pkt.saddr}>${c.events[0]!.pkt.daddr} proto ${c.events[0]!.pkt.l4}: ${c.events.map(name).join(" ")} (${c.end})`);
    expect(summaries).toContain("10.68.0.1>10.68.0.2 proto 1: net_dev_queue net_dev_start_xmit netif_rx net_dev_xmit netif_receive_skb consume_skb (freed)");
    expect(summaries.some((s) => s.startsWith("10.68.0.1>10.68.0.2 proto 17: net_dev_queue") && s.includes("icmp_send kfree_skb (freed)"))).toBe(true);
    for (const c of out) {
      expect(c.skbs).toHaveLength(1);
      expect(c.events.map((e) => e.timeNs)).toEqual([...c.events.map((e) => e.timeNs)].sort((a, b) => a - b));
    }
    expect(life.counts).toMatchObject({ completed: 4, idle: 0, evicted: 0 });
  });

  test("an skb address reused by a later packet starts a new context", () => {
    const events = recorded();
    const request = events.find((e) => e.pkt.l4 === 1 && e.pkt.icmpType === 8)!;
    const udp = events.find((e) => e.pkt.l4 === 17)!;
    expect(udp.meta.skbKey).toBe(request.meta.skbKey); // the kernel reused the memory
    const { out, life } = group(events);
    life.flushAll();
    expect(out.filter((c) => c.skbs[0] === request.meta.skb)).toHaveLength(2);
  });

  test("a packet whose free is never seen is flushed as idle, and at exit as exit", () => {
    const events = recorded().filter((e) => !(e.ctxId === recorded()[0]!.ctxId && e.flags & hook_flags.HOOK_FREE));
    const { out, life } = group(events);
    life.flush(last(events) + LIMITS.settleNs);
    const open = () => out.find((c) => c.id === events[0]!.ctxId);
    expect(open()).toBeUndefined();
    life.flush(events[0]!.timeNs + LIMITS.idleNs + 1e9);
    expect(open()).toMatchObject({ end: "idle" });

    const again = group(events);
    again.life.flushAll();
    expect(again.out.find((c) => c.id === events[0]!.ctxId)).toMatchObject({ end: "exit" });
  });

  test("a reader left behind judges idleness by what it read: a free still queued in the ring ends the packet", () => {
    // The records were captured long ago: by the wall clock, every packet is idle.
    // (Moved to a minute before now: the machine may have booted after they were taken.)
    const events = recorded();
    const shift = monotonicNowNs() - 60e9 - last(events);
    for (const e of events) e.timeNs += shift;
    const id = events[0]!.ctxId;
    const free = events.find((e) => e.ctxId === id && e.flags & hook_flags.HOOK_FREE)!;
    const clock = new ReadClock();
    const out: PacketContext[] = [];
    const life = new Lifecycle(LIMITS, (ctx) => out.push(ctx));
    for (const e of events.filter((e) => e !== free)) {
      clock.saw(e.timeNs);
      life.add(e);
    }
    life.flush(clock.nowNs(false)); // the batch ended with records still queued
    expect(out.find((c) => c.id === id)).toBeUndefined();
    clock.saw(free.timeNs);
    life.add(free);
    life.flush(clock.nowNs(true)); // caught up: now is the wall clock
    life.flush(clock.nowNs(true) + LIMITS.settleNs);
    expect(out.find((c) => c.id === id)).toMatchObject({ end: "freed" });
    expect(clock.nowNs(true)).toBeGreaterThan(last(events));
  });
});

describe("variations", () => {
  const request = () => recorded().filter((e) => e.ctxId === recorded()[0]!.ctxId);

  test("a clone joins its packet; the packet ends when its last skb is freed", () => {
    const events = request();
    const clone = { ...events[1]!, flags: hook_flags.HOOK_CLONE, phase: hook_phase.PHASE_RETURN, skb2: "ffff88810000aa00", skb2Key: 0x88810000aa00 };
    const free = events.at(-1)!;
    const { out, life } = group([...events.slice(0, 2), clone, ...events.slice(2)]);
    life.flush(last(events) + LIMITS.settleNs * 2);
    expect(out).toHaveLength(0); // the clone is still alive
    const cloneFree = { ...free, meta: Object.assign(Object.create(Object.getPrototypeOf(free.meta)), free.meta, { skbKey: clone.skb2Key }), timeNs: free.timeNs + 10 };
    life.add(cloneFree);
    life.flush(cloneFree.timeNs);
    life.flush(cloneFree.timeNs + LIMITS.settleNs);
    expect(out).toHaveLength(1);
    expect(out[0]!.skbs).toEqual([events[0]!.meta.skb, clone.skb2]);
    expect(out[0]).toMatchObject({ end: "freed" });
  });

  test("--trace-noclone: a clone neither joins its packet nor keeps it open", () => {
    const events = request();
    const clone = { ...events[1]!, flags: hook_flags.HOOK_CLONE, phase: hook_phase.PHASE_RETURN, skb2: "ffff88810000aa00", skb2Key: 0x88810000aa00 };
    const out: PacketContext[] = [];
    const life = new Lifecycle(LIMITS, (ctx) => out.push(ctx), false);
    for (const e of [...events.slice(0, 2), clone, ...events.slice(2)]) life.add(e);
    life.flush(last(events));
    life.flush(last(events) + LIMITS.settleNs);
    expect(out).toHaveLength(1);
    expect(out[0]!.skbs).toEqual([events[0]!.meta.skb]);
    expect(out[0]).toMatchObject({ end: "freed" });
  });

  /** A copy of `e` about another skb (the clone), at `timeNs`. */
  const onSkb = (e: HookEvent, skb: string, skbKey: number, timeNs: number): HookEvent => ({
    ...e,
    meta: { ...e.meta, skb, skbKey }, // the decoded skb is a getter: a plain object takes the clone's
    timeNs,
  });

  test("a clone freed before the original's end: one block, and its free is the clone's, not the packet's", () => {
    const events = request();
    const origFree = events.at(-1)!;
    const cloneEvent = { ...events[1]!, flags: hook_flags.HOOK_CLONE, phase: hook_phase.PHASE_RETURN, skb2: "ffff88810000aa00", skb2Key: 0x88810000aa00 };
    // The clone is freed in the middle of the original's path (a packet socket read it).
    const cloneFree = onSkb(origFree, cloneEvent.skb2, cloneEvent.skb2Key, (events[2]!.timeNs + events[3]!.timeNs) / 2);
    const { out, life } = group([...events.slice(0, 2), cloneEvent, events[2]!, cloneFree, ...events.slice(3, -1)]);
    // Long after the clone's free the packet is still open: its original lives on.
    life.flush(last(events) + LIMITS.settleNs * 2);
    expect(out).toHaveLength(0);
    life.add(origFree);
    life.flush(last(events) + LIMITS.settleNs * 3);
    life.flush(last(events) + LIMITS.settleNs * 5);
    expect(out).toHaveLength(1);
    const [ctx] = out;
    expect(ctx!.skbs).toEqual([events[0]!.meta.skb, cloneEvent.skb2]);
    expect(ctx!.events).toContain(cloneFree);
    expect(Lifecycle.freeRole(ctx!, cloneFree)).toBe("clone");
    expect(Lifecycle.freeRole(ctx!, origFree)).toBe("packet");
    const namer = { reason: () => undefined, symbol: () => "f+0x1", rstReason: () => undefined };
    expect(annotate(cloneFree, "consume_skb", namer, undefined, Lifecycle.freeRole(ctx!, cloneFree))).toEqual(["a clone of the packet is freed (normally); the packet goes on"]);
    expect(annotate(origFree, "consume_skb", namer, undefined, Lifecycle.freeRole(ctx!, origFree))).toEqual(["packet is freed (normally)"]);
  });

  test("the original freed while its clone lives on: its free says so, and the clone's free ends the packet", () => {
    const events = request();
    const origFree = events.at(-1)!;
    const cloneEvent = { ...events[1]!, flags: hook_flags.HOOK_CLONE, phase: hook_phase.PHASE_RETURN, skb2: "ffff88810000bb00", skb2Key: 0x88810000bb00 };
    const cloneFree = onSkb(origFree, cloneEvent.skb2, cloneEvent.skb2Key, origFree.timeNs + 50);
    const { out, life } = group([...events.slice(0, 2), cloneEvent, ...events.slice(2), cloneFree]);
    life.flushAll();
    expect(out).toHaveLength(1);
    expect(Lifecycle.freeRole(out[0]!, origFree)).toBe("original");
    expect(Lifecycle.freeRole(out[0]!, cloneFree)).toBe("packet");
  });

  test("a clone first seen after the original's free (tracepoints: found by its data) keeps the block open until its own free", () => {
    const events = request();
    const origFree = events.at(-1)!;
    // A packet socket reads its clone after the original was consumed: the kernel joined it to the packet.
    const read = { ...onSkb(events[0]!, "ffff88810000cc00", 0x88810000cc00, origFree.timeNs + 100), flags: hook_flags.HOOK_JOINED, tracepoint: tracepoint_id.TP_SKB_COPY_DATAGRAM_IOVEC };
    const cloneFree = onSkb(origFree, read.meta.skb, read.meta.skbKey, origFree.timeNs + 200);
    const { out, life } = group(events);
    life.flush(origFree.timeNs); // the original's free is seen: the packet starts settling…
    life.add(read); // …when its clone shows up
    life.flush(origFree.timeNs + LIMITS.settleNs * 2);
    expect(out).toHaveLength(0);
    life.add(cloneFree);
    life.flush(cloneFree.timeNs + LIMITS.settleNs * 3);
    life.flush(cloneFree.timeNs + LIMITS.settleNs * 5);
    expect(out).toHaveLength(1);
    expect(out[0]!.skbs).toEqual([events[0]!.meta.skb, read.meta.skb]);
    expect(out[0]!.events.slice(-2)).toEqual([read, cloneFree]);
    expect(Lifecycle.freeRole(out[0]!, origFree)).toBe("original");
    expect(Lifecycle.freeRole(out[0]!, cloneFree)).toBe("packet");
    const namer = { reason: () => undefined, symbol: () => "f+0x1", rstReason: () => undefined };
    expect(annotate(read, "skb_copy_datagram_iovec", namer)).toContain("clone of the packet, first seen here");
  });

  test("a function's return after the free does not bring the skb back to life", () => {
    const events = request();
    const free = events.at(-1)!;
    const late = { ...events[2]!, phase: hook_phase.PHASE_RETURN, tracepoint: tracepoint_id.TP_NONE, func: 0x1234, timeNs: free.timeNs + 1000 };
    const { out, life } = group([...events, late]);
    life.flush(late.timeNs);
    life.flush(late.timeNs + LIMITS.settleNs);
    expect(out).toHaveLength(1);
    expect(out[0]!.events.at(-1)).toBe(late); // kept, in time order
  });

  test("the slab free of a tracked skb ends its packet without a line of its own", () => {
    const events = request().slice(0, -1);
    const slab = { ...events[0]!, tracepoint: tracepoint_id.TP_KMEM_CACHE_FREE, flags: hook_flags.HOOK_FREE, timeNs: last(events) + 5 };
    const { out, life } = group([...events, slab]);
    life.flush(slab.timeNs);
    life.flush(slab.timeNs + LIMITS.settleNs);
    expect(out).toHaveLength(1);
    expect(out[0]!.events).toHaveLength(events.length);
  });

  test("past the context limit the oldest goes out early: 'freed' if it was, 'evicted' if alive", () => {
    const events = recorded();
    const { out, life } = group(events, { maxContexts: 1 });
    // Each new packet pushed the previous one out: what had seen its free says so.
    const freedInside = (c: PacketContext) => c.events.some((e) => e.flags & hook_flags.HOOK_FREE);
    expect(out.map((c) => c.end)).toEqual(out.map((c) => (freedInside(c) ? "freed" : "evicted")));
    expect(new Set(out.map((c) => c.end))).toEqual(new Set(["freed", "evicted"]));
    expect(life.counts.evicted).toBe(out.filter((c) => c.end === "evicted").length);
  });

  test("events past the per-packet cap are counted, not kept", () => {
    const events = request();
    const { out, life } = group(events, { maxEventsPerContext: 3 });
    life.flushAll();
    expect(out[0]!.events).toHaveLength(3);
    expect(out[0]!.truncated).toBe(events.length - 3);
    expect(life.counts.truncatedEvents).toBe(events.length - 3);
  });

  test("at the stop, what does not fit the time left is counted as not shown", () => {
    const { out, life } = group(recorded());
    life.flushAll(performance.now() - 1);
    expect(out).toHaveLength(0);
    expect(life.counts.notShown).toBe(4);
    expect(life.size).toBe(0);
  });

  test("--pkt-fixed (no kernel context): one context per skb address", () => {
    const events = request().map((e) => ({ ...e, ctxId: 0 }));
    const { out, life } = group(events);
    life.flushAll();
    expect(out).toHaveLength(1);
    expect(out[0]!.id).toBe(events[0]!.meta.skbKey);
  });
});
