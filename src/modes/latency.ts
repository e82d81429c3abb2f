// --latency: stack latency measured in the kernel (bpf/lib/latency.bpf.h).
// The hooks are planned as for packet lifecycles; each gets its role in the
// hook_flags map (where a measurement may start: --trace-matcher, every hook
// by default; where it ends: --trace-free, the packet's free by default).
// Only packets at or above --min-latency reach user space, one line each;
// with --latency-summary none do: the kernel counts a log2 histogram, read
// at the end. -c counts the packets reported.
import { event_kind, hook_flags, hook_setting, latency_slots } from "../abi/layout.generated";
import { usageError } from "../common/errors";
import { attachPlan, linkCount, setTemplateTargets } from "../bpf/attach";
import { readPerCpuArray } from "../bpf/counters";
import type { Session } from "../bpf/session";
import type { Options } from "../cli/parse";
import { decodeLatency, type HookId, type LatencyEvent } from "../events/decode";
import { latencySummary } from "../events/latency";
import { dropReasons } from "../kernel/btf-facts";
import type { KernelInfo } from "../kernel/environment";
import { kernelSymbols } from "../kernel/kallsyms";
import type { Output, RunSummary } from "../output/output";
import type { LatencyNames } from "../output/text";
import { plannedNamed, plannedPrograms } from "../plan/plan";
import { tracepointById } from "../plan/tracepoints";
import { filterConfig, runSession } from "./skeleton";
import type { StopControl } from "./stop";
import { describePlan, hookKey, hooksFor, kprobesByIp, loadTree, planFor, selectionFor } from "./trace";

/** --latency-summary on a terminal: the table is redrawn this often. */
const LIVE_MS = 1000;

export async function runLatency(opts: Options, kernel: KernelInfo, out: Output, stop: StopControl): Promise<RunSummary> {
  const lat = opts.latency!;
  const tree = loadTree();
  const selected = selectionFor(opts, kernel, tree, [...(opts.traceMatcher ?? []), ...(lat.free ?? [])]);
  // Frees end measurements (and forget skbs whose memory goes back to the slab).
  const { plan, features } = planFor({ ...opts, ret: false }, kernel, selected);
  describePlan(plan, features, out);

  const settings = new Map<bigint, number>();
  const matchers = opts.traceMatcher ? hooksFor("--trace-matcher", opts.traceMatcher, plan, tree, out) : plan.hooks;
  for (const h of matchers) settings.set(hookKey(h), hook_setting.SETTING_MATCH);
  if (lat.free) for (const h of hooksFor("--trace-free", lat.free, plan, tree, out)) settings.set(hookKey(h), (settings.get(hookKey(h)) ?? 0) | hook_setting.SETTING_END);
  if (lat.free && opts.traceMatcher && [...settings.values()].every((v) => v !== hook_setting.SETTING_MATCH))
    throw usageError("--trace-matcher and --trace-free name the same hooks: a measurement would end where it starts; name different hooks");

  out.verbose(`latency: measured from ${opts.traceMatcher ? matchers.map((h) => h.name).join(", ") : `any of the ${plan.hooks.length} hooks`} to ${lat.free ? plannedNamed(plan, tree, lat.free).map((h) => h.name).join(", ") : "the packet's free"}${lat.countFree ? " (included)" : ""}`);

  const funcNames = new Map(plan.hooks.flatMap((h) => (h.kind === "function" ? [[h.fn.key, h.name] as const] : [])));
  const hookName = (id: HookId) =>
    id.func
      ? (funcNames.get(id.func) ?? kernelSymbols().format(0xffff0000 + Math.floor(id.func / 0x1_0000_0000), id.func >>> 0))
      : (tracepointById.get(id.tracepoint)?.name.split(":")[1] ?? `tracepoint ${id.tracepoint}`);
  const reasons = dropReasons(kernel.btf);
  const names = (e: LatencyEvent): LatencyNames => ({
    first: hookName(e.first),
    last: hookName(e.last),
    end: hookName(e.end),
    reason: e.endFlags & hook_flags.HOOK_DROP ? reasons.get(e.reason) : undefined,
    location: e.endFlags & hook_flags.HOOK_DROP ? kernelSymbols().format(e.location.hi, e.location.lo) : undefined,
  });

  let loaded: Session | undefined;
  let nextDraw = performance.now() + LIVE_MS;
  const summary = await runSession(
    kernel,
    {
      programs: plannedPrograms(plan),
      config: {
        ...filterConfig(opts.filter),
        hookSettings: true,
        funcByIp: kprobesByIp(features),
        latency: { minNs: Math.round((opts.minLatencyMs ?? 0) * 1e6), countFree: lat.countFree, summary: lat.summary, customEnd: !!lat.free },
      },
      links: linkCount(plan),
      slowDetach: plan.hooks.some((h) => h.kind === "function"),
      prepare: (obj) => setTemplateTargets(obj, plan),
      loaded: (session) => {
        loaded = session;
        session.setHookSettings(settings);
      },
      attach: (session, into) => {
        for (const r of attachPlan(session.obj, plan, into)) out.verbose(`  skipped ${r.name}: ${r.why}`);
      },
      record: (kind, ring, offset) => {
        if (kind !== event_kind.EVENT_LATENCY || !stop.admit()) return;
        const e = decodeLatency(ring, offset);
        out.latency(e, names(e));
      },
      // On a terminal the table so far, every second (a map read: cheap).
      batchDone: () => {
        if (!lat.summary || !out.live || performance.now() < nextDraw) return;
        nextDraw = performance.now() + LIVE_MS;
        out.latencySummaryLive(latencySummary(readPerCpuArray(loaded!.obj.map("lat_hist"), latency_slots.LAT_SLOTS)));
      },
      // The programs are off: the histogram is final.
      finish: () => {
        if (lat.summary) out.latencySummary(latencySummary(readPerCpuArray(loaded!.obj.map("lat_hist"), latency_slots.LAT_SLOTS)));
      },
    },
    out,
    stop,
  );
  return summary;
}
