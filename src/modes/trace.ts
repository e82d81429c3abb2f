// Packet lifecycle tracing (the default mode) and --basic: the selected
// hooks are planned onto the backends this kernel has, attached, and their
// events grouped per packet (or printed one by one with --basic).
import { existsSync, readFileSync } from "node:fs";
import { monotonicNowNs } from "../../ffi/libc";
import type { Options } from "../cli/parse";
import { decodeHook, recordKind, EVENT_HOOK, EVENT_NF, type HookEvent } from "../events/decode";
import { usageError } from "../common/errors";
import { FunctionIndex } from "../kernel/functions";
import { dropReasons, probeProgram } from "../kernel/environment";
import { Kind } from "../kernel/btf";
import { Lifecycle, type PacketContext } from "../events/lifecycle";
import { annotate, type Namer } from "../events/line";
import type { Output } from "../output/output";
import type { HookLine } from "../output/text";
import { checkBackend, FREE_FUNCTIONS, makePlan, type Features, type Plan } from "../plan/plan";
import { Attachments, attachPlan, programsToLoad } from "../bpf/attach";
import { currentNetns, kernelSymbols, prepareKernel, Session, type KernelInfo, type Stats } from "../bpf/session";
import { tracepointById, tracepointByName } from "../plan/tracepoints";
import { allHooks, loadTracerTree, selectHooks, type TreeGroup } from "../plan/tracer-tree";
import { tracerTreeText } from "../common/assets";
import { fullAddress } from "../kernel/kallsyms";
import { hook_setting, tracepoint_id } from "../abi/layout.generated";
import { Diagnosis } from "../diagnosis/diagnosis";
import { worst } from "../diagnosis/rules";
import { handOff } from "../bpf/detach";
import { KernelStacks } from "../bpf/stacks";
import type { LifecycleCounts } from "../events/lifecycle";

const RING_BYTES = 16 << 20;
const WAKEUP_BYTES = 256 << 10;
const LIMITS = { idleNs: 3e9, settleNs: 100e6, maxContexts: 4096, maxEventsPerContext: 1000 };
const PHASE_RETURN = 1;

/**
 * Each probe loads a small object (libbpf parses the kernel's BTF each
 * time): skip the ones that cannot succeed. kprobes and kprobe.multi need
 * kprobe events in tracefs; fexit is asked only where fentry works.
 */
function readFeatures(kernel: KernelInfo, needFunctions: boolean): Features {
  const ok = (p: string) => probeProgram(kernel.probeObject, p).ok;
  const kprobeEvents = needFunctions && existsSync("/sys/kernel/tracing/kprobe_events");
  const kprobe = kprobeEvents && ok("probe_kprobe");
  const fentry = needFunctions && ok("probe_fentry");
  return {
    tpBtf: ok("probe_tp_btf"),
    kprobe,
    kprobeMulti: kprobe && ok("probe_kprobe_multi"),
    fentry,
    fexit: fentry && ok("probe_fexit"),
  };
}

function readFilterFunctions(): string | undefined {
  try {
    return readFileSync("/sys/kernel/tracing/available_filter_functions", "utf8");
  } catch {
    return undefined;
  }
}

export interface TraceResult {
  stats: Stats;
  packets?: LifecycleCounts;
  /** --diag: some packet had an error-level finding. */
  errorFound: boolean;
}

/** Builds the plan for the selected hooks on this kernel. */
function planFor(opts: Options, kernel: KernelInfo, tree: TreeGroup[]): { plan: Plan; features: Features } {
  const selectors = opts.trace;
  const selection = selectHooks(tree, selectors);
  const functions = new FunctionIndex(kernel.btf, kernelSymbols, readFilterFunctions());
  // Names outside the tree: tracepoints skbtrail knows, or kernel functions taking an skb.
  const extraFunctions: string[] = [];
  for (const sel of selection.outside) {
    if (tracepointByName.has(sel)) {
      selection.hooks.push({ kind: "tracepoint", name: sel, group: "", onByDefault: true });
      continue;
    }
    if (/[*?]/.test(sel)) {
      const found = functions.glob(sel);
      if (!found.length && !allHooks(tree).some((h) => h.name === sel)) throw usageError(`-t: no kernel function matching '${sel}' takes an sk_buff; see skbtrail -t '?'`);
      extraFunctions.push(...found);
      continue;
    }
    const r = functions.resolve(sel);
    if ("why" in r) throw usageError(`-t: '${sel}' is not a tracer group, a known tracepoint or a kernel function taking an sk_buff (${r.why}); see skbtrail -t '?'`);
    extraFunctions.push(sel);
  }
  const needFunctions = opts.backend !== "tracepoint";
  const features = readFeatures(kernel, needFunctions);
  checkBackend(opts.backend, features);
  kernel.btf.indexNames();
  const plan = makePlan({ btf: kernel.btf, functions, features, selection, extraFunctions, backend: opts.backend, ret: opts.ret, followSkbs: !opts.pktFixed });
  return { plan, features };
}

function describePlan(plan: Plan, features: Features, out: Output): void {
  const fnHooks = plan.hooks.filter((h) => h.kind === "function");
  const backends = (["kprobe-multi", "fentry", "kprobe"] as const).map((b) => [b, fnHooks.filter((h) => h.kind === "function" && h.backend === b).length] as const).filter(([, n]) => n);
  out.verbose(
    `plan: ${plan.hooks.length - fnHooks.length} tracepoints (${features.tpBtf ? "tp_btf" : "raw_tp"})${backends.map(([b, n]) => `, ${n} functions (${b})`).join("")}; ${plan.skipped.length} skipped`,
  );
  for (const h of plan.hooks) out.verbose(`  ${h.name.padEnd(32)} ${h.kind === "function" ? `${h.backend} ${[h.entry, h.exit].filter(Boolean).join("+")}${h.fn.symbol !== h.name ? ` (symbol ${h.fn.symbol})` : ""}` : h.program}`);
  for (const s of plan.skipped) out.verbose(`  skipped ${s.name}: ${s.why}`);
  if (!features.kprobe && !features.fentry && !features.kprobeMulti)
    out.note(
      `this kernel has no kprobes and no fentry: tracing ${plan.hooks.length} tracepoints only (function-level coverage needs CONFIG_KPROBES or BPF trampolines); ${plan.skipped.length} functions skipped (-v lists them)`,
    );
}

/** `-t ?`: the tree, marking what exists on this kernel and which backend each hook would use. */
export async function printTree(opts: Options, out: Output): Promise<void> {
  const kernel = await prepareKernel(opts.debug);
  const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
  const { plan } = planFor({ ...opts, trace: ["all"] }, kernel, tree);
  const planned = new Map(plan.hooks.map((h) => [h.name, h.kind === "function" ? h.backend : h.program.endsWith("_btf") ? "tp_btf" : "raw_tp"]));
  const skipped = new Map(plan.skipped.map((s) => [s.name, s.why]));
  const lines: string[] = ["available tracers (+ traced by default, - only with -t; [backend] or (why not)):"];
  const walk = (groups: TreeGroup[], depth: number) => {
    for (const g of groups) {
      lines.push(`${"  ".repeat(depth)}${g.name}: ${g.description}${g.onByDefault ? "" : " (off by default)"}`);
      walk(g.children, depth + 1);
      for (const h of g.hooks) {
        const name = h.kind === "tracepoint" ? `tracepoint ${h.name}` : h.name;
        const via = FREE_FUNCTIONS[h.name];
        const how = via ? `[tracepoint ${via}]` : planned.has(h.name) ? `[${planned.get(h.name)}]` : `(${skipped.get(h.name) ?? "not planned"})`;
        lines.push(`${"  ".repeat(depth + 1)}${h.onByDefault ? "+" : "-"} ${name} ${how}`);
      }
    }
  };
  walk(tree, 0);
  for (const l of lines) out.raw(l);
}

export async function runTrace(opts: Options, out: Output): Promise<TraceResult> {
  const kernel = await prepareKernel(opts.debug);
  const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
  const { plan, features } = planFor(opts, kernel, tree);
  for (const note of kernel.notes) out.verbose(note);
  describePlan(plan, features, out);

  const reasons = dropReasons(kernel.btf);
  const rstReasons = enumNames(kernel, "sk_rst_reason", /^SK_RST_REASON_/);
  const namer: Namer = {
    reason: (v) => reasons.get(v),
    symbol: (hi, lo) => kernelSymbols().format(hi, lo),
    rstReason: (v) => rstReasons.get(v),
  };
  const funcNames = new Map(plan.hooks.flatMap((h) => (h.kind === "function" ? [[h.fn.key, h.name] as const] : [])));
  const hookName = (e: HookEvent) => (e.tracepoint ? (tracepointById.get(e.tracepoint)?.name.split(":")[1] ?? `tracepoint ${e.tracepoint}`) : (funcNames.get(e.func) ?? kernelSymbols().format(0xffff0000 + Math.floor(e.func / 0x1_0000_0000), e.func >>> 0)));
  let stacks: KernelStacks | undefined;
  const diagnosis = opts.mode === "diag" ? Diagnosis.create(opts, kernel, plan, tree, namer, (id) => stacks!.frames(id)) : undefined;
  const settings = hookSettings(opts.traceStack ?? [], plan);
  // Without nft_do_chain, the drop's stack tells which netfilter hook dropped it.
  const stackWanted = settings.has(BigInt(tracepoint_id.TP_KFREE_SKB));
  if (diagnosis?.wantsDropStacks) settings.set(BigInt(tracepoint_id.TP_KFREE_SKB), (settings.get(BigInt(tracepoint_id.TP_KFREE_SKB)) ?? 0) | hook_setting.SETTING_STACK);

  const session = Session.open(kernel.bpfObject);
  const attachments = new Attachments();
  let handedOff = false;
  try {
    session.configure(
      {
        filter: opts.filter,
        currentNetns: opts.filter.netnsCurrent ? currentNetns() : undefined,
        reasonValues: [],
        dropStack: false,
        wakeupBytes: WAKEUP_BYTES,
        pktFixed: opts.pktFixed,
        traceRet: opts.ret,
        hookSettings: settings.size > 0,
        nfHooks: opts.hooks,
      },
      RING_BYTES,
    );
    session.load(programsToLoad(session.obj, plan));
    session.setHookSettings(settings);
    const refused = session.attach(() => attachPlan(session.obj, plan, attachments));
    for (const r of refused) out.verbose(`  skipped ${r.name}: ${r.why}`);
    out.status("begin trace...");

    stacks = new KernelStacks(session);
    const result: TraceResult = { stats: { events: 0, lost: 0, lostPerCpu: [], filtered: 0 }, errorFound: false };
    let queue = Promise.resolve();
    const toLine = (e: HookEvent, ret?: HookEvent): HookLine => {
      const name = hookName(e);
      const wanted = e.stackId >= 0 && !(diagnosis && e.tracepoint === tracepoint_id.TP_KFREE_SKB && !stackWanted);
      return { e, name, ret, notes: annotate(e, name, namer, ret), stack: wanted ? stacks!.frames(e.stackId) : undefined, stackId: e.stackId };
    };
    let shown = 0;
    const enough = () => opts.count !== undefined && shown >= opts.count;
    const counted = () => {
      if (opts.count !== undefined && ++shown >= opts.count) out.finish("count");
    };
    const minLatencyNs = (opts.minLatencyMs ?? 0) * 1e6;
    // Contexts still open when tracing stops are printed too (unless -c was reached).
    const lifecycle = opts.mode === "basic" ? undefined : new Lifecycle(LIMITS, (ctx) => {
      if (enough() || ctx.lastNs - ctx.firstNs < minLatencyNs) return;
      const lines = linesOf(ctx, toLine);
      if (!diagnosis) {
        out.context(ctx, lines);
        return counted();
      }
      // In order: a finding may wait for the ruleset, the next packet waits for it.
      queue = queue.then(async () => {
        if (out.stopReason === "diagnosis") return; // stopped at an earlier packet's error
        const findings = await diagnosis.examine(lines);
        const level = worst(findings);
        if (level === "error") result.errorFound = true;
        if (opts.diagQuiet && (level === undefined || level === "info")) return;
        out.context(ctx, lines, findings);
        counted();
        if (level === "error" && !opts.diagKeep) out.finish("diagnosis");
      });
    });

    await session.read(
      (ring, offset) => {
        const kind = recordKind(ring, offset);
        if (enough() || (kind !== EVENT_HOOK && kind !== EVENT_NF)) return;
        const e = decodeHook(ring, offset, kind);
        if (lifecycle) return lifecycle.add(e);
        out.hook(toLine(e));
        counted();
      },
      () => out.done,
      () => {
        lifecycle?.flush(monotonicNowNs());
        out.flush();
      },
    );
    lifecycle?.flushAll();
    await queue;
    out.flush();
    const stats = session.stats();
    // Detaching fentry/kprobe links can take seconds (RCU grace periods):
    // hand them to a background process so the prompt comes back now.
    if (plan.hooks.some((h) => h.kind === "function") && handOff(attachments.fds())) {
      attachments.release();
      handedOff = true;
    }
    result.stats = stats;
    result.packets = lifecycle?.counts;
    return result;
  } finally {
    if (!handedOff) attachments.destroy();
    session.close();
  }
}

/** Hook lines of a context: each return event folded into its entry's line. */
function linesOf(ctx: PacketContext, toLine: (e: HookEvent, ret?: HookEvent) => HookLine): HookLine[] {
  const lines: HookLine[] = [];
  const openEntries = new Map<string, number>(); // func/tracepoint → index of its latest entry line
  for (const e of ctx.events) {
    const key = `${e.func}:${e.tracepoint}:${e.meta.skbKey}`;
    if (e.phase === PHASE_RETURN && !(e.flags & 2)) {
      const at = openEntries.get(key);
      if (at !== undefined) {
        lines[at] = toLine(lines[at]!.e, e);
        openEntries.delete(key);
        continue;
      }
    }
    if (e.phase !== PHASE_RETURN) openEntries.set(key, lines.length);
    lines.push(toLine(e));
  }
  return lines;
}

function enumNames(kernel: KernelInfo, name: string, prefix: RegExp): Map<number, string> {
  const [id] = kernel.btf.find(name, Kind.ENUM);
  return new Map(id === undefined ? [] : [...kernel.btf.enumValues(id)].map(([k, v]) => [v, k.replace(prefix, "")]));
}

const hookKey = (h: Plan["hooks"][number]) => (h.kind === "function" ? fullAddress(h.fn.key) : BigInt(h.spec.id));

/** The hook_flags map: stacks for --trace-stack. */
function hookSettings(stackSelectors: string[], plan: Plan): Map<bigint, number> {
  const settings = new Map<bigint, number>();
  for (const sel of stackSelectors) {
    const hooks = plan.hooks.filter((h) => h.name === sel || h.group === sel || (h.kind === "tracepoint" && h.name.endsWith(`:${sel}`)));
    if (!hooks.length) throw usageError(`--trace-stack: '${sel}' is not among the traced hooks; name a traced function, tracepoint or group`);
    for (const h of hooks) settings.set(hookKey(h), hook_setting.SETTING_STACK);
  }
  return settings;
}
