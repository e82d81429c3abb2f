// Packet lifecycles (the default mode), --basic and --diag: the selected
// hooks are planned onto the backends this kernel has, attached, and their
// events grouped per packet (or printed one by one with --basic), and with
// --diag explained by the knowledge base.
import { monotonicNowNs } from "../../ffi/libc";
import { event_kind, hook_setting, tracepoint_id } from "../abi/layout.generated";
import { tracerTreeText } from "../common/assets";
import { environmentError, shown, usageError } from "../common/errors";
import { attachPlan, linkCount, setTemplateTargets } from "../bpf/attach";
import { createCounters, readPerCpuHash } from "../bpf/counters";
import type { Session } from "../bpf/session";
import { KernelStacks } from "../bpf/stacks";
import type { Options } from "../cli/parse";
import { Diagnosis } from "../diagnosis/diagnosis";
import { worst, type Finding } from "../diagnosis/rules";
import { decodeCapture, decodeHook, type HookEvent } from "../events/decode";
import { Lifecycle, type PacketContext } from "../events/lifecycle";
import { annotate, linesOf, type HookLine, type Namer } from "../events/line";
import { dropReasons, resetReasons } from "../kernel/btf-facts";
import type { KernelInfo } from "../kernel/environment";
import { readFeatures, readTraceableFunctions, type Features } from "../kernel/features";
import { FunctionIndex, resolutionsKey } from "../kernel/functions";
import { fullAddress, kernelSymbols } from "../kernel/kallsyms";
import type { Output, RunSummary } from "../output/output";
import { attachedAs, checkBackend, knownHookNames, makePlan, plannedNamed, plannedPrograms, resolveOutside, type Plan, type PlannedHook } from "../plan/plan";
import { tracepointById } from "../plan/tracepoints";
import { excludeHooks, loadTracerTree, selectHooks, type Selection, type TreeGroup } from "../plan/tracer-tree";
import type { MetricsServer } from "./metrics-server";
import type { PacketCapture } from "./pcap";
import { filterConfig, ReadClock, runSession, type ModeSession } from "./skeleton";
import type { StopControl } from "./stop";

/**
 * Memory bounds of the lifecycle grouping: contexts open at once, events
 * kept per context (the rest are counted), and when an unfreed context is
 * given up (idle) or a freed one stops waiting for late returns (settle).
 */
const LIMITS = { idleNs: 3e9, settleNs: 100e6, maxContexts: 4096, maxEventsPerContext: 256 };
/** --diag: packets waiting for their namespace's ruleset; past this, they go out without it. */
const MAX_WAITING_DIAGNOSIS = 256;
/** At the stop, how long packets still open may take to show, and --diag may wait for a ruleset. */
const FINAL_SHOW_MS = 150;
/** After each batch, how long finished packets may take to show before reading goes on. */
const BATCH_SHOW_MS = 25;
/** --func-stats: the table's interval. */
const FUNC_STATS_MS = 1000;

export interface TraceResult {
  summary: RunSummary;
  /** --diag: some packet had an error-level finding. */
  errorFound: boolean;
}

export function loadTree(): TreeGroup[] {
  return loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
}

/**
 * What -t selects on this kernel, before any probe: names outside the tree
 * are looked up in BTF. `also`: names traced in any case (--latency's
 * --trace-matcher and --trace-free); --trace-exclude then takes hooks out.
 */
export function selectionFor(opts: Options, kernel: KernelInfo, tree: TreeGroup[], also: string[] = []): { selection: Selection; extra: string[]; functions: FunctionIndex } {
  const selection = selectHooks(tree, opts.trace);
  if (also.length) {
    const more = selectHooks(tree, also);
    for (const h of more.hooks) if (!selection.hooks.includes(h)) selection.hooks.push(h);
    for (const o of more.outside) if (!selection.outside.includes(o)) selection.outside.push(o);
  }
  const functions = new FunctionIndex(kernel.btf, kernelSymbols, readTraceableFunctions, undefined, resolutionsKey(kernel.btfPath));
  let extra = resolveOutside(selection, tree, functions);
  if (opts.traceExclude) {
    const r = excludeHooks(tree, selection, extra, opts.traceExclude);
    if (r.unknown.length) throw usageError(`--trace-exclude: '${shown(r.unknown[0]!)}' is not a tracer group, a hook of the tree or a traced function; see skbtrail -t '?'`);
    if (!selection.hooks.length && !r.functions.length) throw usageError("--trace-exclude leaves nothing to trace: exclude less, or select with -t");
    extra = r.functions;
  }
  return { selection, extra, functions };
}

/** Builds the plan: probes the kernel's backends, then gives each hook one. */
/** kprobes without attach cookies (before 5.15): the programs name their function by IP (bpf/lib/stash.bpf.h). */
export const kprobesByIp = (f: Features): boolean => f.kprobe && !f.attachCookie;

/** `returns`: functions whose return is traced even without --ret (PlanInput.returns). */
export function planFor(opts: Options, kernel: KernelInfo, selected: ReturnType<typeof selectionFor>, returns: string[] = []): { plan: Plan; features: Features } {
  const features = readFeatures(kernel, opts.backend !== "tracepoint", true);
  checkBackend(opts.backend, features);
  const plan = makePlan({
    btf: kernel.btf, functions: selected.functions, features, selection: selected.selection, extraFunctions: selected.extra,
    backend: opts.backend, ret: opts.ret, returns, followSkbs: !opts.pktFixed && !opts.funcStats,
  });
  selected.functions.keepResolutions();
  return { plan, features };
}

export function describePlan(plan: Plan, features: Features, out: Output): void {
  const count = new Map<string, number>();
  for (const h of plan.hooks) count.set(attachedAs(h), (count.get(attachedAs(h)) ?? 0) + 1);
  out.verbose(`plan: ${[...count].map(([how, n]) => `${n} ${how}`).join(", ")}; ${plan.skipped.length} skipped`);
  for (const h of plan.hooks) out.verbose(`  ${h.name.padEnd(32)} ${attachedAs(h)} ${h.attach.map((a) => a.program).join("+")}${h.kind === "function" && h.fn.symbol !== h.name ? ` (symbol ${h.fn.symbol})` : ""}`);
  for (const s of plan.skipped) out.verbose(`  skipped ${s.name}: ${s.why}`);
  if (!features.kprobe && !features.fentry && !features.kprobeMulti)
    out.note(
      `this kernel has no kprobes and no fentry: tracing ${plan.hooks.length} tracepoints only (function-level coverage needs CONFIG_KPROBES or BPF trampolines); ${plan.skipped.length} functions skipped (-v lists them)`,
    );
}

/** One role of hooks: each name must select a traced hook, or the run would measure nothing the user asked for. */
export function hooksFor(flag: string, names: string[], plan: Plan, tree: TreeGroup[], out: Output): PlannedHook[] {
  const hooks = plannedNamed(plan, tree, names);
  for (const n of names) if (!plannedNamed(plan, tree, [n]).length) out.note(`${flag}: ${shown(n)} is not traced on this kernel (-v says why)`);
  if (!hooks.length) throw environmentError(`${flag}: none of ${names.map(shown).join(", ")} can be traced on this kernel; skbtrail -t '?' lists what can`);
  return hooks;
}

/** --trace-stack names must be among the selected hooks or groups: checked before anything loads. */
function checkTraceStack(names: string[], selected: ReturnType<typeof selectionFor>): void {
  const known = new Set<string>(selected.extra);
  for (const h of selected.selection.hooks) {
    known.add(h.name).add(h.group);
    if (h.kind === "tracepoint") known.add(h.name.split(":")[1]!);
  }
  for (const n of names)
    if (!known.has(n)) throw usageError(`--trace-stack: '${shown(n)}' is not among the traced hooks; name a traced function, tracepoint or group (skbtrail -t '?')`);
}

export const hookKey = (h: PlannedHook) => (h.kind === "function" ? fullAddress(h.fn.key) : BigInt(h.spec.id));

/** The hook_flags map: kernel stacks for --trace-stack. */
function hookSettings(names: string[], plan: Plan, out: Output): Map<bigint, number> {
  const settings = new Map<bigint, number>();
  for (const n of names) {
    const hooks = plan.hooks.filter((h) => h.name === n || h.group === n || (h.kind === "tracepoint" && h.name.endsWith(`:${n}`)));
    if (!hooks.length) out.note(`--trace-stack: ${n} is not traced on this kernel (-v says why)`);
    for (const h of hooks) settings.set(hookKey(h), hook_setting.SETTING_STACK);
  }
  return settings;
}

/** Where finished packets go instead of the output: skbtrail run's gate (--diag). */
export interface PacketSink {
  packet(ctx: PacketContext, lines: HookLine[], findings: Finding[] | undefined, names: { reason(e: HookEvent): string | undefined; location(e: HookEvent): string }): void;
  started?: ModeSession["started"];
}

/** What a run may add to packet tracing: --pcap, --metrics, skbtrail run's gate (--diag). */
export interface TraceExtras {
  pcap?: PacketCapture;
  metrics?: MetricsServer;
  sink?: PacketSink;
}

export async function runTrace(opts: Options, kernel: KernelInfo, out: Output, stop: StopControl, { pcap, metrics, sink }: TraceExtras = {}): Promise<TraceResult> {
  const tree = loadTree();
  const selected = selectionFor(opts, kernel, tree, opts.traceMatcher ?? []);
  checkTraceStack(opts.traceStack ?? [], selected);
  const reasons = dropReasons(kernel.btf);
  const rstReasons = resetReasons(kernel.btf);
  const namer: Namer = {
    reason: (v) => reasons.get(v),
    symbol: (hi, lo) => kernelSymbols().format(hi, lo),
    rstReason: (v) => rstReasons.get(v),
  };
  let stacks: KernelStacks | undefined;
  const diagnosis =
    opts.mode === "diag"
      ? new Diagnosis({
          known: { reasons: new Set(reasons.values()), hooks: knownHookNames(tree), kernelFunction: (n) => selected.functions.exists(n) },
          kb: opts.kb,
          showHooks: opts.hooks,
          namer,
          stackOf: (id) => stacks!.frames(id),
        })
      : undefined;

  const planning = performance.now();
  const { plan, features } = planFor(opts, kernel, selected, diagnosis?.returnsLookedAt);
  out.verbose(`planned in ${Math.round(performance.now() - planning)} ms`);
  for (const note of kernel.notes) out.verbose(note);
  describePlan(plan, features, out);
  diagnosis?.setTraced({
    hasNftHook: plan.hooks.some((h) => h.name === "nft_do_chain"),
    groupOf: (() => {
      const groups = new Map(plan.hooks.map((h) => [h.kind === "tracepoint" ? h.name.split(":")[1]! : h.name, h.group]));
      return (n: string) => groups.get(n);
    })(),
  });
  const settings = hookSettings(opts.traceStack ?? [], plan, out);
  // --trace-matcher: packets start only at these hooks (then they are followed everywhere).
  if (opts.traceMatcher) for (const h of hooksFor("--trace-matcher", opts.traceMatcher, plan, tree, out)) settings.set(hookKey(h), (settings.get(hookKey(h)) ?? 0) | hook_setting.SETTING_MATCH);
  // Without nft_do_chain, the drop's stack tells which netfilter hook dropped it.
  const kfreeKey = BigInt(tracepoint_id.TP_KFREE_SKB);
  const kfreeStackWanted = settings.has(kfreeKey);
  if (diagnosis?.wantsDropStacks) settings.set(kfreeKey, (settings.get(kfreeKey) ?? 0) | hook_setting.SETTING_STACK);
  // Without --ret, the functions whose return a rule reads (PlanInput.returns) are the only ones whose entry stashes the call.
  if (!opts.ret)
    for (const h of plan.hooks)
      if (h.attach.some((a) => ("retprobe" in a && a.retprobe) || ("exit" in a && a.exit))) settings.set(hookKey(h), (settings.get(hookKey(h)) ?? 0) | hook_setting.SETTING_RETURN);

  const funcNames = new Map(plan.hooks.flatMap((h) => (h.kind === "function" ? [[h.fn.key, h.name] as const] : [])));
  // A function standing in for a tracepoint (__icmp_send) carries both: it is named as the function.
  const hookName = (e: HookEvent) =>
    e.func
      ? (funcNames.get(e.func) ?? kernelSymbols().format(0xffff0000 + Math.floor(e.func / 0x1_0000_0000), e.func >>> 0))
      : (tracepointById.get(e.tracepoint)?.name.split(":")[1] ?? `tracepoint ${e.tracepoint}`);
  // --ret: what a void function's return probe reads is no value: its return is not shown.
  const voidFunctions = new Set(plan.hooks.flatMap((h) => (h.kind === "function" && h.fn.voidReturn ? [h.fn.key] : [])));
  const toLine = (e: HookEvent, ret?: HookEvent, ctx?: PacketContext): HookLine => {
    const name = hookName(e);
    const wanted = e.stackId >= 0 && !(diagnosis && e.tracepoint === tracepoint_id.TP_KFREE_SKB && !kfreeStackWanted);
    if (voidFunctions.has(e.func)) ret = undefined;
    const notes = annotate(e, name, namer, ret, ctx && Lifecycle.freeRole(ctx, e));
    return { e, name, ret, notes, stack: wanted ? stacks!.frames(e.stackId) : undefined };
  };

  const names = { reason: (e: HookEvent) => namer.reason(e.reason), location: (e: HookEvent) => namer.symbol(e.location.hi, e.location.lo) };
  /** --pcap: a hook's bytes, with what happened there. */
  const capture = (l: HookLine, packet?: number) => pcap?.hook(l, l.e.capture, names.reason(l.e), names.location(l.e), packet);
  let shownPackets = 0;
  let errorFound = false;
  // --diag: packets in order, each waiting (boundedly) for its namespace's ruleset.
  const waiting: { ctx: PacketContext; lines: HookLine[] }[] = [];
  const showDiagnosed = (mayWait: boolean) => {
    while (waiting.length) {
      const { ctx, lines } = waiting[0]!;
      const findings = diagnosis!.examine(lines, mayWait && waiting.length <= MAX_WAITING_DIAGNOSIS);
      if (!findings) return;
      waiting.shift();
      show(ctx, lines, findings);
    }
  };
  const show = (ctx: PacketContext, lines: HookLine[], findings?: Finding[]) => {
    if (stop.reason === "diagnosis" || stop.reason === "count") return;
    const level = findings && worst(findings);
    if (level === "error") errorFound = true;
    if (opts.diagQuiet && (level === undefined || level === "info")) return;
    if (!stop.admit()) return;
    if (sink) return sink.packet(ctx, lines, findings, names);
    out.context(ctx, lines, findings);
    if (pcap) {
      shownPackets++;
      for (const l of lines) capture(l, shownPackets);
    }
    if (level === "error" && !opts.diagKeep) stop.request("diagnosis");
  };
  const minLatencyNs = Math.round((opts.minLatencyMs ?? 0) * 1e6);
  const clock = new ReadClock();
  const lifecycle =
    opts.mode === "basic"
      ? undefined
      : new Lifecycle(LIMITS, (ctx) => {
          if (ctx.lastNs - ctx.firstNs < minLatencyNs) return;
          const lines = linesOf(ctx.events, (e, ret) => toLine(e, ret, ctx));
          if (!diagnosis) return show(ctx, lines);
          waiting.push({ ctx, lines });
          showDiagnosed(true);
        }, !opts.noClone);

  // --func-stats (--basic): a table of calls per hook every second instead of events.
  let loadedSession: Session | undefined;
  const hookNames = new Map(plan.hooks.map((h) => [String(hookKey(h)), h.kind === "tracepoint" ? h.name.split(":")[1]! : h.name]));
  const lastCalls = new Map<string, number>();
  let nextStats = performance.now() + FUNC_STATS_MS;
  const showFuncStats = () => {
    const now = performance.now();
    const seconds = (now - nextStats + FUNC_STATS_MS) / 1000;
    nextStats = now + FUNC_STATS_MS;
    const rows = readPerCpuHash(loadedSession!.obj.map("func_stats"), 8, 1, 1024).map((e) => {
      const key = String(new DataView(e.key.buffer).getBigUint64(0, true));
      const total = e.sums[0]!;
      const calls = total - (lastCalls.get(key) ?? 0);
      lastCalls.set(key, total);
      return { hook: hookNames.get(key) ?? key, calls, total };
    });
    rows.sort((a, b) => b.calls - a.calls || a.hook.localeCompare(b.hook));
    if (stop.admit()) out.funcStats(rows, seconds, monotonicNowNs());
  };

  const summary = await runSession(
    kernel,
    {
      programs: plannedPrograms(plan),
      config: {
        ...filterConfig(opts.filter),
        reasonValues: [],
        dropStack: false,
        pktFixed: opts.pktFixed,
        traceRet: opts.ret,
        funcByIp: kprobesByIp(features),
        hookSettings: settings.size > 0,
        nfHooks: opts.hooks,
        snaplen: pcap?.snaplen,
        funcStats: opts.funcStats,
        rateLimit: opts.rateLimit,
        noClone: opts.noClone,
        hasMatcher: !!opts.traceMatcher,
      },
      links: linkCount(plan),
      // Detaching fentry/kprobe links takes seconds (RCU grace periods).
      slowDetach: plan.hooks.some((h) => h.kind === "function"),
      prepare: (obj) => setTemplateTargets(obj, plan),
      loaded: (session) => {
        loadedSession = session;
        if (opts.funcStats) createCounters(session.obj.map("func_stats"), plan.hooks.map(hookKey));
        session.setHookSettings(settings);
        stacks = new KernelStacks(session);
      },
      attach: (session, into) => {
        for (const r of attachPlan(session.obj, plan, into)) out.verbose(`  skipped ${r.name}: ${r.why}`);
      },
      started: sink?.started,
      record: (kind, ring, offset) => {
        if (kind !== event_kind.EVENT_HOOK && kind !== event_kind.EVENT_NF) return;
        const e = decodeHook(ring, offset, kind);
        if (pcap) e.capture = decodeCapture(ring, offset, kind);
        if (!lifecycle) {
          if (!stop.admit()) return;
          const l = toLine(e);
          out.hook(l);
          capture(l);
          return;
        }
        diagnosis?.noticeDrop(e);
        clock.saw(e.timeNs);
        lifecycle.add(e);
      },
      batchDone: (caughtUp) => {
        if (opts.funcStats && performance.now() >= nextStats) showFuncStats();
        lifecycle?.flush(clock.nowNs(caughtUp), performance.now() + BATCH_SHOW_MS);
        if (diagnosis) showDiagnosed(true);
        pcap?.flush();
      },
      finish: async (behind) => {
        // Packets still open at the stop are shown too (unless -c was
        // reached), briefly, and not when a flood left the reader behind.
        lifecycle?.flushAll(behind ? 0 : performance.now() + FINAL_SHOW_MS);
        if (!diagnosis) return;
        let timer: Timer | undefined;
        await Promise.race([diagnosis.settled(), new Promise((resolve) => (timer = setTimeout(resolve, FINAL_SHOW_MS)))]);
        clearTimeout(timer);
        showDiagnosed(false);
      },
    },
    out,
    stop,
    metrics,
  );
  summary.packets = lifecycle?.counts;
  return { summary, errorFound };
}
