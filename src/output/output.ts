// Where everything the user sees goes: events (text or NDJSON), status lines
// ("begin trace...", on stdout like nettrace, on stderr with --json so stdout
// stays pure NDJSON), -v notes, and the closing summary.
import type { DropEvent } from "../events/decode";
import type { Stats } from "../bpf/session";
import type { PacketContext, LifecycleCounts } from "../events/lifecycle";
import { basicJson, contextJson, dropJson } from "./json";
import { analysisLines, colorsFor, contextHeader, dropLine, hookLine, stackLines, type HookLine, type TextStyle } from "./text";
import type { Finding } from "../diagnosis/rules";
import { Clock } from "./time";
import { Writer } from "./writer";

export interface OutputOptions {
  json: boolean;
  date: boolean;
  detail: boolean;
  verbose: boolean;
}

export class Output {
  /** Why tracing should stop ("count", "timeout", "signal"…); undefined while running. */
  stopReason?: string;
  private readonly style: TextStyle;
  private readonly err = new Writer(2);

  constructor(
    private readonly opts: OutputOptions,
    private readonly out: Writer = new Writer(1),
  ) {
    const tty = out.fd === 1 && !!process.stdout.isTTY;
    this.style = { colors: colorsFor(tty && !opts.json), clock: new Clock(), date: opts.date, detail: opts.detail };
  }

  get done(): boolean {
    return this.stopReason !== undefined || this.out.closed;
  }

  finish(reason: string): void {
    this.stopReason ??= reason;
  }

  status(line: string): void {
    if (this.opts.json || this.out.fd !== 1) {
      this.err.line(line);
      this.err.flush();
    } else {
      this.out.line(line);
      this.out.flush();
    }
  }

  /** A line as is (listings such as -t ?). */
  raw(line: string): void {
    this.out.line(line);
  }

  /** Something the user should know even without -v (on stderr). */
  note(line: string): void {
    this.err.line(`skbtrail: ${line}`);
    this.err.flush();
  }

  verbose(line: string): void {
    if (!this.opts.verbose) return;
    this.err.line(`skbtrail: ${line}`);
    this.err.flush();
  }

  drop(e: DropEvent, reason: string | undefined, location: string, stack?: string[]): void {
    if (this.opts.json) {
      this.out.line(dropJson(e, reason, location, this.style.clock, stack));
      return;
    }
    this.out.line(dropLine(e, reason, location, this.style));
    if (stack) for (const l of stackLines(stack)) this.out.line(l);
  }

  /** --basic: one hook as it arrives. */
  hook(l: HookLine): void {
    if (this.opts.json) return this.out.line(basicJson(l, this.style.clock));
    this.out.line(hookLine(l, this.style));
    if (l.stack) for (const s of stackLines(l.stack)) this.out.line(s);
  }

  /** Lifecycle mode: one packet with its hooks in time order (and --diag's findings). */
  context(ctx: PacketContext, lines: HookLine[], findings?: Finding[]): void {
    if (this.opts.json) return this.out.line(contextJson(ctx, lines, this.style.clock, findings));
    this.out.line(contextHeader(ctx.skbs));
    for (const l of lines) {
      this.out.line(hookLine(l, this.style));
      if (l.stack) for (const s of stackLines(l.stack)) this.out.line(s);
    }
    if (ctx.truncated) this.out.line(`(${ctx.truncated} more events of this packet were not kept)`);
    if (ctx.end === "idle") this.out.line("(no free seen: the kernel still holds this packet, or freed it where skbtrail has no hook)");
    if (ctx.end === "exit") this.out.line("(tracing stopped before this packet was freed)");
    if (findings?.length) for (const l of analysisLines(findings, this.style)) this.out.line(l);
    this.out.line("");
  }

  flush(): void {
    this.out.flush();
  }

  summary(stats: Stats, seconds: number, packets?: LifecycleCounts): void {
    if (this.opts.json) {
      const p = packets ? { packets: { complete: packets.completed, idle: packets.idle, evicted: packets.evicted, truncated_events: packets.truncatedEvents } } : {};
      this.out.line(JSON.stringify({ kind: "summary", events: stats.events, lost: stats.lost, lost_per_cpu: stats.lostPerCpu, filtered: stats.filtered, ...p, seconds: Number(seconds.toFixed(3)), stop: this.stopReason ?? null }));
      this.out.flush();
      return;
    }
    this.out.line("end trace...");
    if (packets)
      this.out.line(`packets: ${packets.completed} complete, ${packets.idle} flushed without a free seen, ${packets.evicted} evicted to bound memory${packets.truncatedEvents ? `, ${packets.truncatedEvents} events over the per-packet cap` : ""}`);
    const perCpu = stats.lost ? ` (${stats.lostPerCpu.map((n, cpu) => (n ? `cpu${cpu}: ${n}` : "")).filter(Boolean).join(", ")})` : "";
    this.out.line(`total events: ${stats.events}, lost: ${stats.lost}${perCpu}, filtered in kernel: ${stats.filtered}`);
    if (stats.lost) this.out.line("some events were lost because the ring buffer was full: narrow the filters (-p, --saddr, --dport…) to see all of them");
    this.out.flush();
  }

  close(): void {
    this.out.close();
    this.err.flush();
  }
}
