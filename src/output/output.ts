// Where everything the user sees goes: events (text or NDJSON), status lines
// ("begin trace...", on stdout like nettrace, on stderr with --json so stdout
// stays pure NDJSON), -v notes, and the closing summary.
import type { Stats } from "../bpf/session";
import type { ConnectionVerdict } from "../diagnosis/connections";
import type { Finding } from "../diagnosis/rules";
import type { DropEvent, LatencyEvent } from "../events/decode";
import type { LatencySummary } from "../events/latency";
import type { LifecycleCounts, PacketContext } from "../events/lifecycle";
import { lineDelays, type HookLine } from "../events/line";
import { rttSampleNote, type ConnectionSummary, type RttTable, type SockEvent } from "../events/sock";
import { basicJson, connectionFindingJson, connectionJson, latencyHistogramJson, latencyJson, rttSampleJson, rttHistogramJson, contextJson, dropJson, funcStatsJson, monitorJson, repeatJson, repeatRestJson, sockJson, type SockNames } from "./json";
import { analysisLines, colorsFor, connectionLine, socketLine, rttTableLines, contextHeader, dropLine, funcStatsLines, hookLine, latencyLine, latencyTotalLine, tinyPacket, type LatencyNames, monitorLine, repeatLine, sockLine, stackLines, type TextStyle } from "./text";
import { Clock } from "./time";
import { unwrittenNote, Writer } from "./writer";

/** How a run ended and what it could not show, for the summary. */
export interface RunSummary {
  stats: Stats;
  seconds: number;
  /** Why it stopped: count, timeout, interrupted, terminated, hangup, diagnosis… */
  stop?: string;
  /** Records still in the ring at the stop, dropped unread. */
  unread: number;
  /** Records refused by the decoder (short, unknown kind or version). */
  rejected: number;
  packets?: LifecycleCounts;
}

/** What a --monitor record says beyond its hook line. */
export interface MonitorFacts {
  event: string;
  reason?: string;
  location?: string;
  tcpState?: string;
  srttUs?: number;
  rttUs?: number;
  fromSock: boolean;
  /** Netfilter family and hook from the drop's stack (no function hooks). */
  netfilter?: { family: string; hook: string };
}

/** A "more like this" line. */
export interface RepeatFacts {
  event: string;
  count: number;
  countText: string;
  seconds: number;
  description: string;
  reason: string | null;
  location: string | null;
  proto: string;
  daddr: string;
  dport: number | null;
  netns: number;
}

export interface OutputOptions {
  /** Status lines ("begin trace...") on stderr even for text (skbtrail run: stdout is the command's). */
  statusToStderr?: boolean;
  json: boolean;
  date: boolean;
  detail: boolean;
  verbose: boolean;
  /** --latency-show: delays between a packet's hooks, and its total. */
  latencyShow?: boolean;
  /** --tiny-show: text lines show the packet only where it changes. */
  tiny?: boolean;
}

export class Output {
  private readonly style: TextStyle;
  private readonly err = new Writer(2);
  /** Events go to a terminal (colours, the live --latency-summary table). */
  private readonly tty: boolean;
  /** --latency-summary on a terminal: lines of the table drawn last, to be redrawn. */
  private liveLines = 0;
  /** --tiny-show: the packet summary last written. */
  private readonly tinyPrevious: { summary?: string } = {};

  constructor(
    private readonly opts: OutputOptions,
    private readonly out: Writer = new Writer(1),
  ) {
    const tty = out.fd === 1 && !!process.stdout.isTTY;
    this.tty = tty;
    this.style = { colors: colorsFor(tty && !opts.json), clock: new Clock(), date: opts.date, detail: opts.detail, latencyShow: opts.latencyShow };
  }

  /** The events' destination is gone: a write failed, or the reader closed the pipe (seen even without a write, see Writer.readerGone). */
  readerGone(): boolean {
    return this.out.readerGone();
  }

  /** Why writing the events failed, as one line; undefined when it did not. */
  get failure(): string | undefined {
    return this.out.failure && `cannot write to ${this.out.name} (${this.out.failure}): free space or choose another --output`;
  }

  status(line: string): void {
    if (this.opts.json || this.opts.statusToStderr || this.out.fd !== 1) {
      this.err.line(line);
      this.err.flush();
    } else {
      this.out.line(line);
      this.out.flush();
    }
  }

  /** The text style (colours, clock) of the events' destination. */
  get textStyle(): TextStyle {
    return this.style;
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
    this.out.line(this.opts.tiny ? hookLine(l, this.style, undefined, tinyPacket(l, this.tinyPrevious)) : hookLine(l, this.style));
    if (l.stack) for (const s of stackLines(l.stack)) this.out.line(s);
  }

  /** Lifecycle mode: one packet with its hooks in time order (and --diag's findings). */
  context(ctx: PacketContext, lines: HookLine[], findings?: Finding[]): void {
    const latency = this.opts.latencyShow ? lineDelays(lines) : undefined;
    if (this.opts.json) return this.out.line(contextJson(ctx, lines, this.style.clock, findings, latency));
    this.out.line(contextHeader(ctx.skbs));
    const previous = {};
    lines.forEach((l, i) => {
      this.out.line(this.opts.tiny ? hookLine(l, this.style, latency?.delays[i], tinyPacket(l, previous)) : hookLine(l, this.style, latency?.delays[i]));
      if (l.stack) for (const s of stackLines(l.stack)) this.out.line(s);
    });
    if (latency) this.out.line(latencyTotalLine(latency.totalNs, lines.length));
    if (ctx.truncated) this.out.line(`(${ctx.truncated} more events of this packet were not kept)`);
    if (ctx.end === "idle") this.out.line("(no free seen: the kernel still holds this packet, or freed it where skbtrail has no hook)");
    if (ctx.end === "exit") this.out.line("(tracing stopped before this packet was freed)");
    if (findings?.length) for (const l of analysisLines(findings, this.style)) this.out.line(l);
    this.out.line("");
  }

  /** --latency: one packet at or above --min-latency. */
  latency(e: LatencyEvent, names: LatencyNames): void {
    if (this.opts.json) return this.out.line(latencyJson(e, names, this.style.clock));
    this.out.line(latencyLine(e, names, this.style));
  }

  /** --latency-summary: the distribution, at the end (replacing the live table). */
  latencySummary(h: LatencySummary): void {
    if (this.opts.json) return this.out.line(latencyHistogramJson(h));
    this.eraseLive();
    for (const l of rttTableLines(h.buckets, h.packets, h.avgUs, { title: "latency", unit: "packet" })) this.out.line(l);
  }

  /** Whether latencySummaryLive() draws anything: text on a terminal. */
  get live(): boolean {
    return this.tty && !this.opts.json;
  }

  /** --latency-summary on a terminal: the table so far, drawn over the previous one. */
  latencySummaryLive(h: LatencySummary): void {
    if (!this.live) return;
    this.eraseLive();
    const lines = rttTableLines(h.buckets, h.packets, h.avgUs, { title: "latency", unit: "packet" });
    for (const l of lines) this.out.line(l);
    this.liveLines = lines.length;
    this.out.flush();
  }

  private eraseLive(): void {
    if (this.liveLines) this.out.write(`\x1b[${this.liveLines}A\x1b[J`);
    this.liveLines = 0;
  }

  /** --monitor: an abnormal event printed whole. */
  monitor(l: HookLine, m: MonitorFacts): void {
    if (this.opts.json) return this.out.line(monitorJson(l, m, this.style.clock));
    const line = monitorLine(l, m.fromSock, m.tcpState, this.style);
    this.out.line(m.netfilter && !l.e.nf ? `${line} ${this.style.colors.yellow(`*${m.netfilter.family} ${m.netfilter.hook}*`)}` : line);
  }

  /** --monitor: how many more like an event printed earlier. */
  repeat(r: RepeatFacts): void {
    if (this.opts.json) return this.out.line(repeatJson(r));
    this.out.line(repeatLine(r.countText, r.description, r.seconds));
  }

  /** --monitor: repeats past the window's line budget. */
  repeatRest(count: number, countText: string, keys: number, seconds: number): void {
    if (this.opts.json) return this.out.line(repeatRestJson(count, keys, seconds));
    this.out.line(`… and ${countText} more events of ${keys} other kinds in the last ${Math.max(1, Math.round(seconds))} s`);
  }

  /** --sock: one socket event. */
  sock(e: SockEvent, hook: string, names: SockNames, notes: string[]): void {
    if (this.opts.json) return this.out.line(sockJson(e, hook, names, notes, this.style.clock));
    this.out.line(sockLine(e, hook, names.state, names.caState, notes, this.style));
  }

  /** --rtt-detail: one RTT sample, nettrace's "*srtt:37ms, rtt:36ms*" note. */
  rttSample(e: SockEvent, hook: string, state: string | undefined, caState: string | undefined): void {
    if (this.opts.json) return this.out.line(rttSampleJson(e, state, caState, this.style.clock));
    this.out.line(sockLine(e, hook, state, caState, [rttSampleNote(e)], this.style));
  }

  /** --sock: a connection summed up. */
  connection(c: ConnectionSummary): void {
    if (this.opts.json) return this.out.line(connectionJson(c, this.style.clock));
    this.out.line(connectionLine(c, this.style));
  }

  /** --sock --diag: a connection's summary (TCP; other protocols' sockets have none) and what the rules found. */
  verdict(v: ConnectionVerdict): void {
    if (this.opts.json) {
      if (v.summary) this.out.line(connectionJson(v.summary, this.style.clock));
      for (const f of v.findings) this.out.line(connectionFindingJson(v.facts, v.summary?.endNs ?? v.facts.startNs, f, this.style.clock));
      return;
    }
    this.out.line(v.summary ? connectionLine(v.summary, this.style) : socketLine(v.facts.startNs, v.facts.pkt, v.facts.listening === true, this.style));
    if (v.findings.length) {
      for (const l of analysisLines(v.findings, this.style)) this.out.line(l);
      this.out.line("");
    }
  }

  /**
   * --rtt: the distribution of the RTT samples, every second and at exit
   * (`final`). `inPlace` (only the table is printed): on a terminal each
   * table is drawn over the previous one. Otherwise every table follows what
   * came before: between event lines there is nothing to draw over, and a
   * pipe or a log keeps each second's table.
   */
  rttHistogram(t: RttTable, final: boolean, inPlace: boolean, nowNs: number): void {
    if (this.opts.json) return this.out.line(rttHistogramJson(t, final, this.style.clock, nowNs));
    this.eraseLive();
    const lines = rttTableLines(t.buckets, t.samples, t.avgUs);
    for (const l of lines) this.out.line(l);
    if (!final && inPlace && this.live) this.liveLines = lines.length;
  }

  /** --func-stats: the table of calls per hook. */
  funcStats(rows: { hook: string; calls: number; total: number }[], seconds: number, nowNs: number): void {
    if (this.opts.json) return this.out.line(funcStatsJson(rows, seconds, this.style.clock, nowNs));
    for (const l of funcStatsLines(rows, seconds)) this.out.line(l);
  }

  flush(): void {
    this.out.flush();
  }

  /** Other outputs of the run (--pcap) whose readers the run waits for too. */
  private readonly others: { backedUp(waitMs: number): boolean }[] = [];

  alsoWaitFor(output: { backedUp(waitMs: number): boolean }): void {
    this.others.push(output);
  }

  /** Whether a reader of the run's outputs still has bytes to take, after waiting up to `waitMs` for it. */
  backedUp(waitMs: number): boolean {
    return this.out.backedUp(waitMs) || this.others.some((o) => o.backedUp(waitMs));
  }

  /** The events' file again (SIGHUP after log rotation); false when it cannot be opened. */
  reopen(): boolean {
    this.out.flush();
    return this.out.reopen();
  }

  summary(r: RunSummary): void {
    const { stats, packets } = r;
    if (this.opts.json) {
      const p = packets
        ? { packets: { complete: packets.completed, idle: packets.idle, evicted: packets.evicted, not_shown: packets.notShown, truncated_events: packets.truncatedEvents } }
        : {};
      this.out.line(
        JSON.stringify({
          kind: "summary", events: stats.events, lost: stats.lost, lost_per_cpu: stats.lostPerCpu, filtered: stats.filtered, rate_limited: stats.rateLimited,
          unread: r.unread, rejected: r.rejected, ...p, seconds: Number(r.seconds.toFixed(3)), stop: r.stop ?? null,
        }),
      );
      this.out.flush();
      return;
    }
    this.out.line("end trace...");
    if (packets)
      this.out.line(
        `packets: ${packets.completed} complete, ${packets.idle} flushed without a free seen, ${packets.evicted} evicted to bound memory` +
          `${packets.notShown ? `, ${packets.notShown} still open at the stop not shown` : ""}${packets.truncatedEvents ? `, ${packets.truncatedEvents} events over the per-packet cap` : ""}`,
      );
    const perCpu = stats.lost ? ` (${stats.lostPerCpu.map((n, cpu) => (n ? `cpu${cpu}: ${n}` : "")).filter(Boolean).join(", ")})` : "";
    this.out.line(`total events: ${stats.events}, lost: ${stats.lost}${perCpu}, filtered in kernel: ${stats.filtered}`);
    // After -c the rest is expected to go unread; after a signal or a timeout under load it is worth saying.
    if (r.unread && r.stop !== "count") this.out.line(`${r.unread} events were still queued when tracing stopped (${r.stop}) and were dropped unread`);
    if (stats.rateLimited) this.out.line(`${stats.rateLimited} events over --rate-limit were counted, not printed`);
    if (r.rejected) this.out.line(`${r.rejected} malformed records were rejected by the decoder (a bug: please report it)`);
    if (stats.lost) this.out.line("some events were lost because the ring buffer was full: narrow the filters (-p, --saddr, --dport…) to see all of them");
    this.out.flush();
  }

  /** Writes what is left, waiting for a reader as long as it takes bytes (a stalled one is given up on, and said so). */
  async close(giveUp?: () => boolean): Promise<void> {
    const slow = (unwritten: number) => this.note(`${this.out.name} is read slowly: ${Math.ceil(unwritten / 1024)} KiB still to write (Ctrl-C gives them up)`);
    const lost = await this.out.close(giveUp, slow);
    if (lost) this.note(unwrittenNote(this.out.name, this.out, lost));
    await this.err.close(giveUp);
  }
}
