// Which hooks to trace and how: each selected function or tracepoint gets a
// backend the running kernel supports (kprobe.multi, fentry/fexit, kprobe,
// tp_btf, raw_tp), and the plan says for each BPF program how it attaches,
// or why the hook is skipped. The result is plain data: nothing here loads
// or attaches anything, the probe results come in.
import { program, type ProgramName } from "../abi/programs.generated";
import { environmentError, usageError, shown } from "../common/errors";
import type { Btf } from "../kernel/btf";
import type { Features } from "../kernel/features";
import type { FunctionIndex, KernelFunction } from "../kernel/functions";
import { tracepointByName, tracepointPrograms, type TracepointSpec } from "./tracepoints";
import { globToRegExp } from "../kernel/functions";
import { allHooks, selectHooks, type Selection, type TreeGroup } from "./tracer-tree";

export type FunctionBackend = "kprobe-multi" | "fentry" | "kprobe";
export const BACKENDS = ["kprobe-multi", "fentry", "kprobe", "tracepoint"] as const;
export type BackendChoice = (typeof BACKENDS)[number];

/** How one BPF program of a hook is attached. */
export type Attach =
  /** tp_btf / raw_tp: the program's section names its tracepoint. */
  | { how: "tracepoint"; program: ProgramName }
  /** One link for every function that uses this program; the attach cookie is the function's address. */
  | { how: "kprobe-multi"; program: ProgramName; retprobe: boolean }
  /** One link per function, the program shared; the attach cookie is the function's address. */
  | { how: "kprobe"; program: ProgramName; retprobe: boolean }
  /** A BTF trampoline program whose section names its one target. */
  | { how: "fentry-fixed"; program: ProgramName }
  /**
   * A BTF trampoline template: loaded for its first function, its instructions copied for the others.
   * `idInCode` (kernels without bpf_get_func_ip/bpf_get_func_ret): every copy gets the function's address
   * and return slot written into its instructions, and the template itself is not attached.
   */
  | { how: "fentry-template"; program: ProgramName; exit: boolean; idInCode: boolean };

export interface FunctionHook {
  kind: "function";
  name: string;
  group?: string;
  fn: KernelFunction;
  backend: FunctionBackend;
  /** Entry program first, then the return program when there is one. */
  attach: Attach[];
}

export interface TracepointHook {
  kind: "tracepoint";
  name: string;
  group?: string;
  spec: TracepointSpec;
  via: "tp_btf" | "raw_tp";
  attach: [Attach & { how: "tracepoint" }];
}

export type PlannedHook = FunctionHook | TracepointHook;

export interface Plan {
  hooks: PlannedHook[];
  skipped: { name: string; why: string }[];
  /** kprobes get their function's address as attach cookie (5.15+); without, the programs read their IP. */
  attachCookies?: boolean;
}

interface OwnPrograms {
  fentry?: ProgramName;
  fexit?: ProgramName;
  kprobe?: ProgramName;
  kretprobe?: ProgramName;
}

/** Functions with programs of their own (bpf/progs/functions.bpf.h, netfilter.bpf.h). */
const OWN_PROGRAMS: Record<string, OwnPrograms> = {
  skb_clone: { fexit: program.fexit_skb_clone, kprobe: program.kprobe_skb_clone, kretprobe: program.kretprobe_skb_clone },
  nf_hook_slow: { fentry: program.fentry_nf_hook_slow, fexit: program.fexit_nf_hook_slow, kprobe: program.kprobe_nf_hook_slow, kretprobe: program.kretprobe_nf_hook_slow },
  nft_do_chain: { fentry: program.fentry_nft_do_chain, fexit: program.fexit_nft_do_chain, kprobe: program.kprobe_nft_do_chain, kretprobe: program.kretprobe_nft_do_chain },
  __icmp_send: { fentry: program.fentry_icmp_send, kprobe: program.kprobe_icmp_send },
  kfree_skb_partial: { fentry: program.fentry_skb_partial_free, kprobe: program.kprobe_skb_partial_free },
};

/**
 * Functions that mark the same point as a tracepoint older kernels lack:
 * traced in its place there, their events read as the tracepoint's (same
 * details), so the diagnosis rules about it work on those kernels too.
 */
const TRACEPOINT_STAND_INS: Record<string, string> = { "icmp:icmp_send": "__icmp_send" };

/** Programs per position of the sk_buff argument (PT_REGS_PARM1..5); kmultiCast: kmulti reading the skb with plain loads (Features.kprobeMultiCast). */
const BY_SKB_ARG: { kmulti: ProgramName; kmultiCast: ProgramName; kprobe: ProgramName; fentry: ProgramName; fexit: ProgramName; fentryId: ProgramName; fexitId: ProgramName }[] = [
  { kmulti: program.kmulti_skb0, kmultiCast: program.kmulti_cast_skb0, kprobe: program.kprobe_skb0, fentry: program.fentry_skb0, fexit: program.fexit_skb0, fentryId: program.fentry_id_skb0, fexitId: program.fexit_id_skb0 },
  { kmulti: program.kmulti_skb1, kmultiCast: program.kmulti_cast_skb1, kprobe: program.kprobe_skb1, fentry: program.fentry_skb1, fexit: program.fexit_skb1, fentryId: program.fentry_id_skb1, fexitId: program.fexit_id_skb1 },
  { kmulti: program.kmulti_skb2, kmultiCast: program.kmulti_cast_skb2, kprobe: program.kprobe_skb2, fentry: program.fentry_skb2, fexit: program.fexit_skb2, fentryId: program.fentry_id_skb2, fexitId: program.fexit_id_skb2 },
  { kmulti: program.kmulti_skb3, kmultiCast: program.kmulti_cast_skb3, kprobe: program.kprobe_skb3, fentry: program.fentry_skb3, fexit: program.fexit_skb3, fentryId: program.fentry_id_skb3, fexitId: program.fexit_id_skb3 },
  { kmulti: program.kmulti_skb4, kmultiCast: program.kmulti_cast_skb4, kprobe: program.kprobe_skb4, fentry: program.fentry_skb4, fexit: program.fexit_skb4, fentryId: program.fentry_id_skb4, fexitId: program.fexit_id_skb4 },
];

/** Freeing functions are followed through their tracepoints, which every kernel has. */
export const FREE_FUNCTIONS: Record<string, string> = {
  kfree_skb: "skb:kfree_skb",
  kfree_skb_reason: "skb:kfree_skb",
  sk_skb_reason_drop: "skb:kfree_skb",
  consume_skb: "skb:consume_skb",
};

/** Tracepoints a packet lifecycle always needs: they end contexts. */
export const LIFE_TRACEPOINTS = ["skb:kfree_skb", "skb:consume_skb"];

/**
 * Frees without an skb tracepoint (__kfree_skb, as TCP's, a coalesced
 * segment's) still return the skb to its slab: kmem_cache_free ends
 * those lives, and keeps a reused address out of the old packet.
 */
export const SLAB_FREE_TRACEPOINT = "kmem:kmem_cache_free";

/**
 * ...but every slab free on the machine enters kmem_cache_free: 5-7% of
 * an open/close loop's time on the host (bench/README.md §19). Where
 * kprobe.multi works, the functions that free an skb's own memory end those
 * lives instead, in one link that only skbs enter (kmulti_skb_memory_free).
 * kfree_skbmem is required; kfree_skb_partial is left to its own program
 * when it is traced (its line then ends the packet).
 */
export const SKB_MEMORY_FREES = ["kfree_skbmem", "kfree_skb_partial", "napi_skb_cache_put"];

export interface PlanInput {
  btf: Btf;
  functions: FunctionIndex;
  features: Features;
  selection: Selection;
  /** Extra function names from globs/names outside the tree (already checked to exist). */
  extraFunctions: string[];
  backend?: BackendChoice;
  ret: boolean;
  /** Functions whose return is traced even without `ret` (those a --diag rule looks at). */
  returns?: string[];
  /** skbs are followed by address (not --pkt-fixed): watch their memory being freed. */
  followSkbs: boolean;
}

const NO_FUNCTION_BACKEND = "function hooks need kprobes or fentry, and this kernel has neither";
const NOT_TRACEABLE = "the kernel marks it not traceable (absent from available_filter_functions): neither ftrace nor kprobes attach to it";
const OWN_NEEDS_HELPERS = "its program needs kprobes, or fentry with bpf_get_func_ip and bpf_get_func_ret (5.17+)";

export function chooseBackend(fn: KernelFunction, f: Features, forced: BackendChoice | undefined): FunctionBackend | { why: string } {
  if (forced === "tracepoint") return { why: "--backend tracepoint traces tracepoints only" };
  // Kprobes refuse what ftrace cannot hook too (x86 kernels with kprobes on
  // ftrace and without KPROBE_EVENTS_ON_NOTRACE, as Debian's): asking would
  // only cost an attach and a "Could not probe notrace function" in dmesg.
  if (fn.ftrace === false) return { why: NOT_TRACEABLE };
  // fentry reads the skb from the arguments' BTF types, and kernels before
  // 6.x refuse to read through a struct sk_buff ** there: kprobes for those.
  const trampolineOk = f.fentry && !fn.module && fn.symbol === fn.name && !fn.pskb;
  // Functions with programs of their own ask which function they are on
  // (bpf_get_func_ip): before 5.17 those take kprobes, even under --backend fentry.
  const ownWithoutHelpers = fn.name in OWN_PROGRAMS && !f.fentryHelpers;
  const fentryOk = trampolineOk && !ownWithoutHelpers;
  if (forced === "fentry") {
    if (fentryOk) return "fentry";
    if (trampolineOk && f.kprobe) return "kprobe"; // an own program without the helpers
    return { why: fn.module ? "fentry is used for vmlinux functions only" : fn.pskb ? "its skb is behind a pointer, which fentry cannot read on every kernel" : ownWithoutHelpers ? OWN_NEEDS_HELPERS : `fentry cannot attach to ${fn.symbol}` };
  }
  if (forced === "kprobe-multi") return f.kprobeMulti ? "kprobe-multi" : { why: `kprobe.multi cannot attach to ${fn.symbol}` };
  if (forced === "kprobe") return "kprobe";
  if (f.kprobeMulti) return "kprobe-multi";
  // Kprobes before fentry: one verified program serves every function, where
  // each fentry copy goes through the verifier again. Under emulation the
  // default set started in 29 s with kprobes against 55 s with fentry on 6.1
  // (24 s against 42 s on 5.10), and fentry's detach takes longer, for a
  // per-packet cost 1.1x (6.1) to 1.3x (5.10) lower (bench/README.md §9-10).
  // fentry with --backend fentry, or where kprobes are missing.
  if (f.kprobe) return "kprobe";
  if (fentryOk) return "fentry";
  return { why: trampolineOk ? OWN_NEEDS_HELPERS : NO_FUNCTION_BACKEND };
}

/** The backend and programs of a function hook. */
function attachFunction(fn: KernelFunction, backend: FunctionBackend, ret: boolean, f: Features): { backend: FunctionBackend; attach: Attach[] } {
  const own = OWN_PROGRAMS[fn.name];
  if (own) {
    // Fixed-target programs; on kprobe.multi kernels these use plain kprobes.
    if (backend === "fentry")
      return { backend, attach: [own.fentry && { how: "fentry-fixed" as const, program: own.fentry }, own.fexit && { how: "fentry-fixed" as const, program: own.fexit }].filter((a) => !!a) };
    return { backend: "kprobe", attach: [own.kprobe && { how: "kprobe" as const, program: own.kprobe, retprobe: false }, own.kretprobe && { how: "kprobe" as const, program: own.kretprobe, retprobe: true }].filter((a) => !!a) };
  }
  const p = BY_SKB_ARG[fn.skbArg]!;
  if (fn.pskb) {
    const entry = backend === "kprobe-multi" ? program.kmulti_pskb0 : program.kprobe_pskb0;
    return { backend, attach: [{ how: backend === "kprobe-multi" ? "kprobe-multi" : "kprobe", program: entry, retprobe: false }] };
  }
  switch (backend) {
    case "kprobe-multi":
      return { backend, attach: [{ how: "kprobe-multi", program: f.kprobeMultiCast ? p.kmultiCast : p.kmulti, retprobe: false }, ...(ret ? [{ how: "kprobe-multi" as const, program: program.kmulti_return, retprobe: true }] : [])] };
    case "fentry": {
      const idInCode = !f.fentryHelpers;
      const entry = idInCode ? p.fentryId : p.fentry;
      const exit = idInCode ? p.fexitId : p.fexit;
      return { backend, attach: [{ how: "fentry-template", program: entry, exit: false, idInCode }, ...(ret ? [{ how: "fentry-template" as const, program: exit, exit: true, idInCode }] : [])] };
    }
    case "kprobe":
      return { backend, attach: [{ how: "kprobe", program: p.kprobe, retprobe: false }, ...(ret ? [{ how: "kprobe" as const, program: program.kretprobe_return_value, retprobe: true }] : [])] };
  }
}

export function checkBackend(backend: BackendChoice | undefined, f: Features): void {
  const missing =
    backend === "kprobe-multi" && !f.kprobeMulti ? "kprobe.multi (Linux 5.18+ with CONFIG_FPROBE)" :
    backend === "fentry" && !(f.fentry && f.fexit) ? "fentry/fexit (BPF trampolines)" :
    backend === "kprobe" && !f.kprobe ? "kprobes (CONFIG_KPROBE_EVENTS)" : undefined;
  if (missing) throw environmentError(`--backend ${backend}: this kernel does not support ${missing}; run without --backend to use what it has`);
}

/**
 * -t names that are not in the tree: tracepoints skbtrail has programs
 * for, or kernel functions taking an skb (names and globs, found in BTF).
 * Adds the tracepoints to the selection; returns the functions.
 */
export function resolveOutside(selection: Selection, tree: TreeGroup[], functions: FunctionIndex): string[] {
  const extra: string[] = [];
  for (const sel of selection.outside) {
    if (tracepointByName.has(sel)) {
      selection.hooks.push({ kind: "tracepoint", name: sel, group: "", onByDefault: true, defaultInGroup: true });
      continue;
    }
    if (/[*?]/.test(sel)) {
      const found = functions.glob(sel);
      if (!found.length && !allHooks(tree).some((h) => h.name === sel)) throw usageError(`-t: no kernel function matching '${shown(sel)}' takes an sk_buff; see skbtrail -t '?'`);
      extra.push(...found);
      continue;
    }
    const r = functions.resolve(sel);
    if ("why" in r) throw usageError(`-t: '${shown(sel)}' is not a tracer group, a known tracepoint or a kernel function taking an sk_buff (${r.why}); see skbtrail -t '?'`);
    extra.push(sel);
  }
  return extra;
}

export function makePlan(input: PlanInput): Plan {
  const { btf, functions, features, selection } = input;
  const hooks: PlannedHook[] = [];
  const skipped: Plan["skipped"] = [];
  const planned = new Set<string>();

  const addTracepoint = (name: string, group?: string) => {
    if (planned.has(name)) return;
    planned.add(name);
    const spec = tracepointByName.get(name);
    if (!spec) return skipped.push({ name, why: "skbtrail has no program for this tracepoint" });
    const { programs, why } = tracepointPrograms(btf, spec);
    if (!programs) {
      skipped.push({ name, why: why! });
      if (TRACEPOINT_STAND_INS[name]) addFunction(TRACEPOINT_STAND_INS[name]!, group);
      return;
    }
    const btfOk = features.tpBtf && !spec.rawOnly;
    const chosen = !btfOk ? programs.raw : features.tpBtfCast && programs.cast ? programs.cast : programs.btf;
    hooks.push({ kind: "tracepoint", name, group, spec, via: btfOk ? "tp_btf" : "raw_tp", attach: [{ how: "tracepoint", program: chosen }] });
  };

  const addFunction = (name: string, group?: string) => {
    if (FREE_FUNCTIONS[name]) return addTracepoint(FREE_FUNCTIONS[name]!, group);
    if (planned.has(name)) return;
    planned.add(name);
    if (!features.kprobe && !features.kprobeMulti && !features.fentry) return skipped.push({ name, why: NO_FUNCTION_BACKEND });
    const r = functions.resolve(name, name in OWN_PROGRAMS ? "own" : "skb");
    if ("why" in r) return skipped.push({ name, why: r.why });
    const backend = chooseBackend(r.fn, features, input.backend);
    if (typeof backend !== "string") return skipped.push({ name, why: backend.why });
    hooks.push({ kind: "function", name, group, fn: r.fn, ...attachFunction(r.fn, backend, input.ret || !!input.returns?.includes(name), features) });
  };

  /** The frees of an skb's memory through kprobe.multi, or none where that cannot be (then the slab free). */
  const memoryFrees = (): KernelFunction[] => {
    if (!features.kprobeMulti || input.backend === "tracepoint") return [];
    const fns: KernelFunction[] = [];
    for (const name of SKB_MEMORY_FREES) {
      if (hooks.some((h) => h.kind === "function" && h.name === name)) {
        if (name in OWN_PROGRAMS) continue; // its own program's line ends the packet
        return []; // traced for its line: its entry would run two programs, in no set order
      }
      const r = functions.resolve(name);
      if ("fn" in r && r.fn.ftrace !== false) fns.push(r.fn);
      else if (name === SKB_MEMORY_FREES[0]) return [];
    }
    return fns;
  };

  for (const tp of LIFE_TRACEPOINTS) addTracepoint(tp, "life");
  for (const h of selection.hooks) (h.kind === "tracepoint" ? addTracepoint : addFunction)(h.name, h.group);
  for (const name of input.extraFunctions) addFunction(name);
  if (input.followSkbs) {
    const frees = memoryFrees();
    for (const fn of frees) hooks.push({ kind: "function", name: fn.name, group: "life", fn, backend: "kprobe-multi", attach: [{ how: "kprobe-multi", program: program.kmulti_skb_memory_free, retprobe: false }] });
    if (!frees.length) addTracepoint(SLAB_FREE_TRACEPOINT, "life");
  }
  return { hooks, skipped, attachCookies: features.attachCookie };
}

/** Every program a plan loads. */
export function plannedPrograms(plan: Plan): ProgramName[] {
  return [...new Set(plan.hooks.flatMap((h) => h.attach.map((a) => a.program)))];
}

/** How a hook is attached, in words (-v, -t '?'). */
export function attachedAs(h: PlannedHook): string {
  return h.kind === "tracepoint" ? h.via : h.backend;
}

/** Every hook name a rule may use: the tree's functions and tracepoints, and skbtrail's tracepoints as "category:event" and "event". */
export function knownHookNames(tree: TreeGroup[]): Set<string> {
  const names = new Set(allHooks(tree).map((h) => h.name));
  for (const name of tracepointByName.keys()) names.add(name).add(name.split(":")[1]!);
  for (const name of Object.keys(FREE_FUNCTIONS)) names.add(name);
  return names;
}

/** The planned hooks a --trace-matcher / --trace-free list names (groups, names, globs, as -t takes them). */
export function plannedNamed(plan: Plan, tree: TreeGroup[], names: string[]): PlannedHook[] {
  const wanted = new Set<string>();
  for (const n of names) {
    for (const h of selectHooks(tree, [n]).hooks) wanted.add(FREE_FUNCTIONS[h.name] ?? h.name);
    wanted.add(FREE_FUNCTIONS[n] ?? n);
  }
  const globs = names.filter((n) => /[*?]/.test(n)).map(globToRegExp);
  return plan.hooks.filter(
    (h) => wanted.has(h.name) || (h.kind === "tracepoint" && wanted.has(h.name.split(":")[1]!)) || (h.kind === "function" && globs.some((re) => re.test(h.name))),
  );
}
