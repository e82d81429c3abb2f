// Where everything the user sees goes: events (text or NDJSON), status lines
// ("begin trace...", on stdout like nettrace, on stderr with --json so stdout
// stays pure NDJSON), -v notes, and the closing summary.
import type { DropEvent } from "../decode";
import type { Stats } from "../session";
import { dropJson } from "./json";
import { colorsFor, dropLine, stackLines, type TextStyle } from "./text";
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
    isTTY = !!process.stdout.isTTY,
  ) {
    this.style = { colors: colorsFor(isTTY && !opts.json), clock: new Clock(), date: opts.date, detail: opts.detail };
  }

  get done(): boolean {
    return this.stopReason !== undefined || this.out.closed;
  }

  finish(reason: string): void {
    this.stopReason ??= reason;
  }

  status(line: string): void {
    if (this.opts.json) {
      this.err.line(line);
      this.err.flush();
    } else {
      this.out.line(line);
      this.out.flush();
    }
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

  flush(): void {
    this.out.flush();
  }

  summary(stats: Stats, seconds: number): void {
    if (this.opts.json) {
      this.out.line(JSON.stringify({ kind: "summary", events: stats.events, lost: stats.lost, lost_per_cpu: stats.lostPerCpu, filtered: stats.filtered, seconds: Number(seconds.toFixed(3)), stop: this.stopReason ?? null }));
      this.out.flush();
      return;
    }
    this.out.line("end trace...");
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
