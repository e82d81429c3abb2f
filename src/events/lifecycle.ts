// Groups hook events into packet contexts: one per packet the user cares
// about, holding every skb it became (clones included) and every event, in
// time order. A context is complete when its last live skb is freed; one
// whose end is never seen is flushed after an idle time. Memory is bounded:
// past the limits, the oldest contexts are flushed early and events beyond
// a context's cap are counted, not kept.
import { hook_flags, hook_phase, tracepoint_id } from "../abi/layout.generated";
import type { HookEvent } from "./decode";

const { HOOK_FREE, HOOK_CLONE } = hook_flags;
const { PHASE_RETURN } = hook_phase;
const SLAB_FREE = tracepoint_id.TP_KMEM_CACHE_FREE;

export interface PacketContext {
  id: number;
  /** Every skb of the context, in the order they appeared (hex). */
  skbs: string[];
  events: HookEvent[];
  firstNs: number;
  lastNs: number;
  /**
   * How it ended: freed; idle (no free seen for a while); evicted (still
   * alive when the memory bound made room); or still alive at exit.
   */
  end: "freed" | "idle" | "evicted" | "exit";
  /** Events not kept because the context reached its cap. */
  truncated: number;
  /** Frees that left other skbs of the packet alive: a clone freed while the packet goes on. */
  copyFrees: Set<HookEvent>;
}

interface Open extends PacketContext {
  live: Set<number>;
  seen: Set<number>;
  freed: boolean;
  /** When a flush first saw it freed (reader's clock). */
  freedSeenNs?: number;
}

/** What a normal free ended: the packet's life, a clone of it, or its first skb while a clone lives on. */
export type FreeRole = "packet" | "clone" | "original";

export interface LifecycleLimits {
  /** Flush a context after this long without an event. */
  idleNs: number;
  /**
   * A freed context waits this long, from the first flush that sees it freed,
   * for events that follow the free (returns of the functions that freed it,
   * which may come in the next batch).
   */
  settleNs: number;
  maxContexts: number;
  maxEventsPerContext: number;
}

export interface LifecycleCounts {
  completed: number;
  idle: number;
  evicted: number;
  truncatedEvents: number;
  /** Still open at the stop and not shown for lack of time. */
  notShown: number;
}

export class Lifecycle {
  private readonly open = new Map<number, Open>();
  readonly counts: LifecycleCounts = { completed: 0, idle: 0, evicted: 0, truncatedEvents: 0, notShown: 0 };

  constructor(
    private readonly limits: LifecycleLimits,
    private readonly emit: (ctx: PacketContext) => void,
    /** --trace-noclone: the kernel does not follow clones, so a clone neither joins nor keeps a context open. */
    private readonly followClones = true,
  ) {}

  get size(): number {
    return this.open.size;
  }

  add(e: HookEvent): void {
    // With --pkt-fixed the kernel tracks nothing: one context per skb address.
    const id = e.ctxId || e.meta.skbKey;
    let ctx = this.open.get(id);
    if (e.tracepoint === SLAB_FREE) {
      // The skb's memory was freed: it only ends a life, nothing to show.
      if (ctx) this.free(ctx, e.meta.skbKey);
      return;
    }
    if (!ctx) {
      if (this.open.size >= this.limits.maxContexts) this.evictOldest();
      ctx = { id, skbs: [], events: [], firstNs: e.timeNs, lastNs: e.timeNs, end: "freed", truncated: 0, copyFrees: new Set(), live: new Set(), seen: new Set(), freed: false };
      this.open.set(id, ctx);
    } else {
      // Map order is the order of the last event: keep the oldest first.
      this.open.delete(id);
      this.open.set(id, ctx);
    }
    // A function's return can follow the free of the skb it was given (the
    // call freed it): it never brings the skb back to life.
    this.remember(ctx, e.meta.skbKey, e.meta.skb, e.phase !== PHASE_RETURN || (e.flags & HOOK_CLONE) !== 0);
    if (e.flags & HOOK_CLONE && e.skb2Key && this.followClones) this.remember(ctx, e.skb2Key, e.skb2, true);
    if (ctx.events.length < this.limits.maxEventsPerContext) ctx.events.push(e);
    else {
      ctx.truncated++;
      this.counts.truncatedEvents++;
    }
    ctx.firstNs = Math.min(ctx.firstNs, e.timeNs);
    ctx.lastNs = Math.max(ctx.lastNs, e.timeNs);
    if (e.flags & HOOK_FREE) this.free(ctx, e.meta.skbKey);
  }

  /**
   * What a free ended: the packet, or one of its skbs while others live on
   * (a clone read by a packet socket, or the original while its clone goes on).
   */
  static freeRole(ctx: PacketContext, e: HookEvent): FreeRole {
    if (!ctx.copyFrees.has(e)) return "packet";
    return e.meta.skb === ctx.skbs[0] ? "original" : "clone";
  }

  private free(ctx: Open, skb: number): void {
    ctx.live.delete(skb);
    if (ctx.live.size === 0) ctx.freed = true;
  }

  private remember(ctx: Open, key: number, hex: string, live: boolean): void {
    if (!ctx.seen.has(key)) {
      ctx.seen.add(key);
      ctx.skbs.push(hex);
      // A clone first seen after the original's free (a packet socket reads it later): the
      // packet lives on in it, and its block must wait for it rather than end and split.
      if (live && ctx.freed) {
        ctx.freed = false;
        ctx.freedSeenNs = undefined;
      }
    }
    if (live) ctx.live.add(key);
  }

  /**
   * Emits complete contexts, and those idle since before `nowNs - idleNs`
   * (`nowNs`: how far the reader got, see ReadClock), until the clock
   * passes `untilMs` (performance.now()); the rest wait for
   * the next call. Call after each batch, so events of one packet from other
   * CPUs that arrived in the same batch are already in.
   */
  flush(nowNs: number, untilMs = Infinity): void {
    let n = 0;
    for (const ctx of [...this.open.values()]) {
      if ((++n & 63) === 0 && performance.now() > untilMs) return;
      if (ctx.freed) {
        ctx.freedSeenNs ??= nowNs;
        if (nowNs - ctx.freedSeenNs >= this.limits.settleNs) this.finish(ctx, "freed");
      } else if (ctx.lastNs < nowNs - this.limits.idleNs) this.finish(ctx, "idle");
    }
  }

  /**
   * Emits everything still open (at exit), oldest first, until the clock
   * passes `untilMs` (performance.now()): under a flood thousands are open,
   * and the stop must stay prompt. The ones left are counted, not shown.
   */
  flushAll(untilMs = Infinity): void {
    for (const ctx of [...this.open.values()]) {
      if (performance.now() > untilMs) {
        this.counts.notShown = this.open.size;
        this.open.clear();
        return;
      }
      this.finish(ctx, ctx.freed ? "freed" : "exit");
    }
  }

  /**
   * Makes room for a new context: the oldest one goes out early. If it was
   * already freed it only loses its settling time, and it says "freed".
   */
  private evictOldest(): void {
    const oldest = this.open.values().next().value;
    if (oldest) this.finish(oldest, oldest.freed ? "freed" : "evicted");
  }

  private finish(ctx: Open, end: PacketContext["end"]): void {
    this.open.delete(ctx.id);
    if (end === "freed") this.counts.completed++;
    else if (end === "idle") this.counts.idle++;
    else if (end === "evicted") this.counts.evicted++;
    ctx.events.sort((a, b) => a.timeNs - b.timeNs);
    // Of a packet with clones, only the last free ended it; the earlier ones freed one of its skbs.
    if (ctx.skbs.length > 1) {
      const frees = ctx.events.filter((e) => e.flags & HOOK_FREE);
      const last = end === "freed" ? frees.at(-1) : undefined;
      for (const e of frees) if (e !== last) ctx.copyFrees.add(e);
    }
    const { live: _l, seen: _s, freed: _f, freedSeenNs: _n, ...done } = ctx;
    this.emit({ ...done, end });
  }
}
