// skbtrail --monitor: only what is abnormal (drops, netfilter drops, TCP
// resets and retransmission timeouts, socket queue overflows, and with
// --tcp-rtt/--tcp-srtt slow RTT samples), cheap enough to leave running:
// the kernel counts every event in per-CPU maps (bpf/progs/monitor.bpf.h) and
// writes a record only for the first of a kind and destination, so the cost
// does not grow with the event rate. The console gets that first line, then
// once per --aggregate window how many more there were; --metrics gets the
// counters; --func-stats a table of calls per hook every second.
import { monotonicNowNs } from "../../ffi/libc";
import { event_kind, layout, monitor_what, rtt_bucket_bound, rtt_hist_index } from "../abi/layout.generated";
import { attachPlan, linkCount } from "../bpf/attach";
import { hasRttFilter, resolveReasons, rttThresholds } from "../bpf/config";
import { createCounters, keyId, readPerCpuArray, readPerCpuHash, type CounterEntry } from "../bpf/counters";
import type { Session } from "../bpf/session";
import type { Options } from "../cli/parse";
import { dropReasonKnowledge } from "../diagnosis/diagnosis";
import { decodeMonitor, type MonitorEvent } from "../events/decode";
import { annotate, type HookLine } from "../events/line";
import {
  decodeCountKey, decodeDropCountKey, decodeNfCountKey, decodePrintKey, describeKey, groupedCount, EventTally, hookFromCaller, printKeyOf, protoName, Repeats, WHAT_NAMES,
  type KeyNamer, type PrintKey,
} from "../events/monitor";
import { NF_FAMILIES, nfHookName } from "../events/netfilter";
import { dropReasons, resetReasons, tcpCaLoss, tcpStates } from "../kernel/btf-facts";
import { currentNetns, type KernelInfo } from "../kernel/environment";
import { readFeatures, readTraceableFunctions } from "../kernel/features";
import { FunctionIndex, resolutionsKey } from "../kernel/functions";
import { addrKey, forgetKernelSymbols, fullAddress, kernelSymbols } from "../kernel/kallsyms";
import { histogram, SeriesTable, type Family } from "../output/metrics";
import type { Output, RunSummary } from "../output/output";
import { attachedAs, plannedPrograms, type Plan } from "../plan/plan";
import { makeMonitorPlan, MONITOR_PURPOSE, monitorHookId } from "../plan/monitor";
import type { MetricsServer } from "./metrics-server";
import { filterConfig, runSession } from "./skeleton";
import type { StopControl } from "./stop";

const W = monitor_what;
/** Lines printed whole per mon_print entry: its LRU keeps the memory of the console bounded. */
const PRINT_KEYS = 4096;
/** -c: how often the kernel's counts are looked at (a map read of every key). */
const TALLY_MS = 50;
/** --func-stats: the table's interval. */
const FUNC_STATS_MS = 1000;
/** A series unchanged this long may make room for a new one (an interface or namespace that went away). */
const SERIES_IDLE_MS = 3600_000;
/** Unknown addresses make kallsyms be read again, at most this often (modules loaded since). */
const KALLSYMS_REFRESH_MS = 60_000;

export async function runMonitor(opts: Options, kernel: KernelInfo, out: Output, stop: StopControl, metrics?: MetricsServer): Promise<RunSummary> {
  const m = opts.monitor!;
  const btf = kernel.btf;
  const reasons = dropReasons(btf);
  const reasonByName = new Map([...reasons].map(([v, n]) => [n, v]));
  const rstReasons = resetReasons(btf);
  const states = tcpStates(btf);
  const reasonValues = resolveReasons(opts.reasons, reasons);

  // What the knowledge base calls normal (level info) is counted, not printed.
  const knowledge = dropReasonKnowledge();
  // Before 5.17 the kernel gives no reason (0 in the record): every drop is printed.
  const printed = reasons.size ? [...reasons].filter(([, name]) => knowledge.get(name)?.level !== "info").map(([v]) => v) : [0];

  const features = readFeatures(kernel, true);
  const hasFunctions = features.kprobe || features.fentry;
  const functions = hasFunctions ? new FunctionIndex(btf, kernelSymbols, readTraceableFunctions, undefined, resolutionsKey(kernel.btfPath)) : undefined;
  const rtt = opts.metrics !== undefined || hasRttFilter(opts.rttFilter);
  const plan = makeMonitorPlan({ btf, features, functions, rtt });
  functions?.keepResolutions();
  const nfRange = kernelSymbols().range("nf_hook_slow");
  describe(plan, out, hasFunctions);

  const hookNames = new Map<number, string>(plan.hooks.map((h) => [monitorHookId(h), h.kind === "tracepoint" ? h.name.split(":")[1]! : h.name]));
  const symbols = new SymbolCache();
  const tables = new MetricTables(opts.maxSeries);
  const namer = {
    reason: (v: number) => reasons.get(v),
    rstReason: (v: number) => rstReasons.get(v),
    tcpState: (v: number) => states.get(v),
    symbol: (hi: number, lo: number) => symbols.format(hi, lo),
    functionAt: (hi: number, lo: number) => symbols.functionAt(hi, lo),
    netns: currentNetns(),
  };

  let session: Session | undefined;
  const repeats = new Repeats(monotonicNowNs());
  const windowMs = m.aggregateSeconds * 1000;
  let nextTick = performance.now() + windowMs;
  const funcStats = opts.funcStats ? new FuncStats(plan, hookNames) : undefined;
  let nextStats = performance.now() + FUNC_STATS_MS;
  // -c counts events of printed kinds, summed up ones too: a flood of one kind prints one line.
  const tally = stop.counting && !funcStats ? new EventTally() : undefined;
  let nextTally = 0;
  const printTotals = () => readPerCpuHash(session!.obj.map("mon_print"), layout.print_key.size, 2, PRINT_KEYS * 2);

  const showRecord = (e: MonitorEvent, id: string) => {
    if (!repeats.record(id, e.hook.timeNs) || !stop.admit()) return;
    const name = hookNames.get(e.hook.tracepoint) ?? `hook ${e.hook.tracepoint}`;
    const line: HookLine = { e: e.hook, name, notes: annotate(e.hook, name, namer) };
    // µs below a millisecond: LAN and veth RTTs would all read "0ms".
    const rttText = (us: number) => (us < 1000 ? `${us}µs` : `${Math.round(us / 1000)}ms`);
    if (e.what === W.MON_RTT) line.notes.push(`srtt:${rttText(e.srttUs)}, rtt:${rttText(e.rttUs)}`);
    let netfilter: { family: string; hook: string } | undefined;
    if (e.what === W.MON_DROP && (e.nfCaller[0] || e.nfCaller[1])) netfilter = hookFromCaller(symbols.functionAt(e.nfCaller[0], e.nfCaller[1]));
    out.monitor(line, {
      event: WHAT_NAMES[e.what] ?? `what ${e.what}`,
      reason: e.what === W.MON_DROP ? reasons.get(e.hook.reason) : e.what === W.MON_RESET_SENT ? rstReasons.get(e.hook.reason) : undefined,
      location: e.what === W.MON_DROP ? symbols.format(e.hook.location.hi, e.hook.location.lo) : undefined,
      tcpState: e.skState ? states.get(e.skState) : undefined,
      srttUs: e.what === W.MON_RTT || e.what === W.MON_RTO ? e.srttUs : undefined,
      rttUs: e.what === W.MON_RTT ? e.rttUs : undefined,
      fromSock: e.fromSock,
      netfilter,
    });
  };

  /** Sums up the window; false when it must wait: `exact` and a record came meanwhile (it would count as a repeat). */
  const tick = (nowNs: number, exact: boolean): boolean => {
    if (exact && session!.recordsWaiting) return false; // no map read that would be thrown away
    const entries = printTotals();
    // The kernel writes a record, then counts it: with the ring empty after the counts were read, every record they stand for was read.
    if (exact && session!.recordsWaiting) return false;
    const report = repeats.tick(entries.map((en) => ({ id: en.id, key: () => decodePrintKey(en.key), total: en.sums[0]! })), nowNs);
    for (const r of report.lines) out.repeat(repeatFacts(r.key, r.count, r.seconds, namer));
    if (report.restKeys) out.repeatRest(report.restCount, groupedCount(report.restCount), report.restKeys, m.aggregateSeconds);
    return true;
  };

  metrics?.useSource(() => (session ? monitorFamilies(session, tables, namer, symbols, funcStats) : []));

  const summary = await runSession(
    kernel,
    {
      programs: plannedPrograms(plan),
      config: {
        ...filterConfig(opts.filter),
        reasonValues,
        dropStack: false,
        funcStats: opts.funcStats,
        rateLimit: opts.rateLimit,
        monitor: {
          printedReasons: printed,
          aggregateNs: m.aggregateSeconds * 1e9,
          nfHookSlow: nfRange && [fullAddress(nfRange[0]), fullAddress(nfRange[1])],
          nfDropReason: reasonByName.get("NETFILTER_DROP"),
          nftHooked: plan.hooks.some((h) => h.kind !== "tracepoint" && h.name === "nft_do_chain"),
          caLoss: tcpCaLoss(btf) ?? 4,
        },
        rttThresholds: rttThresholds(opts.rttFilter),
        rttSamples: { histogram: opts.metrics !== undefined, events: hasRttFilter(opts.rttFilter) },
      },
      links: linkCount(plan),
      slowDetach: plan.hooks.some((h) => h.kind === "function"),
      prepare: (obj) => {
        obj.map("mon_drops").setMaxEntries(Math.max(1024, opts.maxSeries * 4));
        obj.map("mon_nf").setMaxEntries(Math.max(256, opts.maxSeries));
        obj.map("mon_print").setMaxEntries(PRINT_KEYS);
      },
      loaded: (s) => {
        session = s;
        if (funcStats) createCounters(s.obj.map("func_stats"), funcStats.keys());
      },
      attach: (s, into) => {
        for (const r of attachPlan(s.obj, plan, into)) out.verbose(`  skipped ${r.name}: ${r.why}`);
      },
      record: (kind, ring, offset) => {
        if (kind !== event_kind.EVENT_MONITOR) return;
        showRecord(decodeMonitor(ring, offset), keyId(printKeyOf(ring, offset)));
      },
      batchDone: (caughtUp) => {
        const now = performance.now();
        if (tally && now >= nextTally) {
          nextTally = now + TALLY_MS;
          stop.counted(tally.update(printTotals().map((en) => ({ id: en.id, total: en.sums[0]! }))));
        }
        // Repeats are summed up once the ring is read: a record still queued would be counted as a repeat
        // (a reader a whole window behind sums up anyway).
        const behind = now >= nextTick + windowMs;
        if (!funcStats && now >= nextTick && (caughtUp || behind) && tick(monotonicNowNs(), !behind)) nextTick = now + windowMs;
        if (funcStats && now >= nextStats) {
          const seconds = (now - nextStats + FUNC_STATS_MS) / 1000;
          nextStats = now + FUNC_STATS_MS;
          if (stop.admit()) out.funcStats(funcStats.read(session!), seconds, monotonicNowNs());
        }
      },
      finish: (behind) => {
        if (!funcStats && !behind) tick(monotonicNowNs(), false);
        metrics?.useSource(undefined);
        session = undefined;
      },
    },
    out,
    stop,
    metrics,
  );
  return summary;
}

function describe(plan: Plan, out: Output, hasFunctions: boolean): void {
  out.verbose(`monitor plan: ${plan.hooks.length} hooks; ${plan.skipped.length} skipped`);
  for (const h of plan.hooks) out.verbose(`  ${h.name.padEnd(28)} ${attachedAs(h).padEnd(8)} ${MONITOR_PURPOSE[h.name] ?? ""}`);
  for (const s of plan.skipped) out.verbose(`  skipped ${s.name}: ${s.why}`);
  if (!hasFunctions)
    out.verbose("no kprobes and no fentry: netfilter drops are counted by family and hook (from the drop's stack), without nftables table and chain");
}

/** Function names of kernel addresses, kallsyms read again (rarely) when one is unknown: modules come and go. */
class SymbolCache {
  private readonly names = new Map<number, string>();
  private lastRefresh = performance.now();

  functionAt(hi: number, lo: number): string {
    if (!hi && !lo) return "unknown";
    const key = addrKey(hi, lo);
    let name = this.names.get(key);
    if (name === undefined) {
      let sym = kernelSymbols().lookup(key);
      if ((!sym || sym.offset >= 1 << 20) && performance.now() - this.lastRefresh > KALLSYMS_REFRESH_MS) {
        this.lastRefresh = performance.now();
        forgetKernelSymbols();
        sym = kernelSymbols().lookup(key);
      }
      name = sym && sym.offset < 1 << 20 ? sym.name : `0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`;
      if (this.names.size >= 8192) this.names.clear();
      this.names.set(key, name);
    }
    return name;
  }

  format(hi: number, lo: number): string {
    return kernelSymbols().format(hi, lo);
  }
}

function repeatFacts(k: PrintKey, count: number, seconds: number, namer: KeyNamer & { symbol(hi: number, lo: number): string }) {
  const ports = k.l4 === 6 || k.l4 === 17;
  return {
    event: WHAT_NAMES[k.what] ?? `what ${k.what}`,
    count,
    countText: groupedCount(count),
    seconds,
    description: describeKey(k, namer),
    reason: k.what === W.MON_DROP ? (namer.reason(k.reason) ?? null) : k.what === W.MON_RESET_SENT ? (namer.rstReason(k.reason) ?? null) : null,
    location: k.what === W.MON_DROP ? namer.functionAt(k.location[0], k.location[1]) : null,
    proto: protoName(k.l3, k.l4),
    daddr: k.daddr,
    dport: ports ? k.dport : null,
    netns: k.netns,
  };
}

/** --func-stats: calls per planned hook, read from the kernel's per-CPU counters. */
class FuncStats {
  private readonly last = new Map<number, number>();

  constructor(
    private readonly plan: Plan,
    private readonly names: Map<number, string>,
  ) {}

  keys(): bigint[] {
    return this.plan.hooks.map((h) => BigInt(monitorHookId(h)));
  }

  /** Calls per hook since the last read, and in total; busiest first. */
  read(session: Session): { hook: string; calls: number; total: number }[] {
    const entries = readPerCpuHash(session.obj.map("func_stats"), 8, 1, 1024);
    const rows = entries.map((e) => {
      const id = Number(new DataView(e.key.buffer).getBigUint64(0, true));
      const total = e.sums[0]!;
      const calls = total - (this.last.get(id) ?? 0);
      this.last.set(id, total);
      return { hook: this.names.get(id) ?? `hook ${id}`, calls, total };
    });
    return rows.sort((a, b) => b.calls - a.calls || a.hook.localeCompare(b.hook));
  }

  totals(session: Session): { hook: string; total: number }[] {
    return readPerCpuHash(session.obj.map("func_stats"), 8, 1, 1024).map((e) => ({
      hook: this.names.get(Number(new DataView(e.key.buffer).getBigUint64(0, true))) ?? "?",
      total: e.sums[0]!,
    }));
  }
}

/** The cardinality bound of each labelled metric. */
class MetricTables {
  readonly drops: SeriesTable;
  readonly netfilter: SeriesTable;
  readonly resets: SeriesTable;
  readonly overflows: SeriesTable;

  constructor(max: number) {
    this.drops = new SeriesTable(max, SERIES_IDLE_MS);
    this.netfilter = new SeriesTable(max, SERIES_IDLE_MS);
    this.resets = new SeriesTable(max, SERIES_IDLE_MS);
    this.overflows = new SeriesTable(max, SERIES_IDLE_MS);
  }
}

/** Sums kernel entries into label sets. */
function group(entries: CounterEntry[], labelsOf: (e: CounterEntry) => string[]): { labels: string[]; value: number; sources: string[] }[] {
  const byLabels = new Map<string, { labels: string[]; value: number; sources: string[] }>();
  for (const e of entries) {
    const labels = labelsOf(e);
    const id = labels.join("\u0000");
    const g = byLabels.get(id);
    if (g) {
      g.value += e.sums[0]!;
      g.sources.push(e.id);
    } else byLabels.set(id, { labels, value: e.sums[0]!, sources: [e.id] });
  }
  return [...byLabels.values()];
}

function hexToBytes(id: string): Uint8Array {
  return Uint8Array.from(id.match(/../g)!.map((h) => parseInt(h, 16)));
}

/** The counters the kernel keeps, as Prometheus families (read at each scrape). */
function monitorFamilies(session: Session, t: MetricTables, namer: KeyNamer, symbols: SymbolCache, funcStats?: FuncStats): Family[] {
  const now = performance.now();
  const map = (name: string) => session.obj.map(name);
  const evict = (name: string, ids: string[]) => ids.forEach((id) => map(name).delete(hexToBytes(id)));

  const drops = readPerCpuHash(map("mon_drops"), layout.drop_count_key.size, 1, t.drops.max * 8);
  const dropSeries = t.drops.update(
    group(drops, (e) => {
      const k = decodeDropCountKey(e.key);
      return [namer.reason(k.reason) ?? (k.reason ? String(k.reason) : "unknown"), symbols.functionAt(k.location[0], k.location[1]), protoName(k.l3, k.l4), k.ifname, String(k.netns)];
    }),
    now,
    5,
  );
  evict("mon_drops", dropSeries.evicted);

  const nf = readPerCpuHash(map("mon_nf"), layout.nf_count_key.size, 1, t.netfilter.max * 4);
  const nfSeries = t.netfilter.update(
    group(nf, (e) => {
      const k = decodeNfCountKey(e.key);
      if (k.hasHook) return [NF_FAMILIES[k.family] ?? String(k.family), nfHookName(k.family, k.hook), k.table, k.chain];
      const byCaller = k.caller[0] || k.caller[1] ? hookFromCaller(symbols.functionAt(k.caller[0], k.caller[1])) : undefined;
      return [byCaller?.family ?? NF_FAMILIES[k.family] ?? "unknown", byCaller?.hook ?? "unknown", "", ""];
    }),
    now,
    4,
  );
  evict("mon_nf", nfSeries.evicted);

  const counts = readPerCpuHash(map("mon_counts"), layout.mon_count_key.size, 1, 1024).map((e) => ({ ...decodeCountKey(e.key), e }));
  const of = (what: number) => counts.filter((c) => c.what === what).map((c) => c.e);
  const sum = (what: number) => of(what).reduce((n, e) => n + e.sums[0]!, 0);
  const resets = t.resets.update(
    [
      ...group(of(W.MON_RESET_SENT), (e) => ["sent", namer.rstReason(decodeCountKey(e.key).value) ?? "unknown"]),
      ...group(of(W.MON_RESET_RECEIVED), (e) => ["received", namer.tcpState(decodeCountKey(e.key).value) ?? "unknown"]),
    ],
    now,
    2,
  );
  const overflows = t.overflows.update(group(of(W.MON_RCVQ_FULL), (e) => [protoName(0x0800, decodeCountKey(e.key).value)]), now, 1);

  const rtt = readPerCpuArray(map("mon_rtt"), rtt_hist_index.RTT_SLOTS);
  const bounds = Object.values(rtt_bucket_bound).map((us) => us / 1e6);
  const stats = session.stats();
  const plain = (name: string, help: string, value: number, type: "counter" | "gauge" = "counter"): Family => ({ name, help, type, labelNames: [], samples: [{ labels: [], value }] });
  const families: Family[] = [
    {
      name: "skbtrail_drops_total",
      help: "Packets the kernel dropped (skb:kfree_skb), by drop reason, the function that dropped them, protocol, interface and network namespace inode.",
      type: "counter",
      labelNames: ["reason", "location", "proto", "ifname", "netns"],
      samples: dropSeries.samples,
    },
    {
      name: "skbtrail_netfilter_drops_total",
      help: "Packets netfilter dropped, by family, hook, and nftables table and chain (empty where the kernel has no kprobes or fentry).",
      type: "counter",
      labelNames: ["family", "hook", "table", "chain"],
      samples: nfSeries.samples,
    },
    {
      name: "skbtrail_tcp_resets_total",
      help: "TCP resets sent (by reset reason, Linux 6.10+) and received (by the TCP state of the socket: SYN_SENT means the connection was refused).",
      type: "counter",
      labelNames: ["direction", "reason"],
      samples: resets.samples,
    },
    plain("skbtrail_tcp_retransmit_timeouts_total", "TCP retransmission timeouts (a connection entering the loss state).", sum(W.MON_RTO)),
    plain("skbtrail_tcp_retransmits_total", "TCP segments retransmitted.", sum(W.MON_RETRANSMIT)),
    {
      name: "skbtrail_socket_receive_queue_overflows_total",
      help: "Packets a socket could not queue because its receive buffer was full, by protocol.",
      type: "counter",
      labelNames: ["proto"],
      samples: overflows.samples,
    },
    {
      name: "skbtrail_tcp_rtt_seconds",
      help: "RTT samples of TCP connections (the last sample when an ACK acknowledges new data).",
      type: "histogram",
      labelNames: [],
      samples: [],
      histogram: histogram(bounds, rtt.slice(0, rtt_hist_index.RTT_INF + 1), rtt[rtt_hist_index.RTT_SUM_US]! / 1e6),
    },
    plain("skbtrail_uncounted_events_total", "Events not counted because a kernel counting map was full (raise --metrics-max-series).", stats.mapFull),
    {
      name: "skbtrail_metric_series_overflow_total",
      help: "Label sets that got no series of their own because the metric had --metrics-max-series series; they are counted in the series whose labels are all 'other'.",
      type: "counter",
      labelNames: ["metric"],
      samples: [
        { labels: ["skbtrail_drops_total"], value: t.drops.overflowed },
        { labels: ["skbtrail_netfilter_drops_total"], value: t.netfilter.overflowed },
        { labels: ["skbtrail_tcp_resets_total"], value: t.resets.overflowed },
        { labels: ["skbtrail_socket_receive_queue_overflows_total"], value: t.overflows.overflowed },
      ],
    },
  ];
  if (funcStats)
    families.push({
      name: "skbtrail_hook_calls_total",
      help: "--func-stats: calls of each hook skbtrail attached.",
      type: "counter",
      labelNames: ["hook"],
      samples: funcStats.totals(session).map((r) => ({ labels: [r.hook], value: r.total })),
    });
  return families;
}
