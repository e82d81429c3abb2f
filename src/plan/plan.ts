// Which hooks to trace and how: each selected function or tracepoint gets a
// backend the running kernel supports (kprobe.multi, fentry/fexit, kprobe,
// tp_btf, raw_tp) and the BPF program(s) that serve it, or a reason it is
// skipped. Nothing here touches the kernel: the probe results come in.
import type { Btf } from "../kernel/btf";
import type { FunctionIndex, KernelFunction } from "../kernel/functions";
import { tracepointByName, tracepointProgram, type TracepointSpec } from "./tracepoints";
import type { Selection, TreeHook } from "./tracer-tree";
import { environmentError } from "../common/errors";

export type FunctionBackend = "kprobe-multi" | "fentry" | "kprobe";
export const BACKENDS = ["kprobe-multi", "fentry", "kprobe", "tracepoint"] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export interface Features {
  tpBtf: boolean;
  kprobe: boolean;
  kprobeMulti: boolean;
  fentry: boolean;
  fexit: boolean;
}

export interface FunctionHook {
  kind: "function";
  name: string;
  group?: string;
  fn: KernelFunction;
  backend: FunctionBackend;
  /** Programs that run at entry and at return (either may be absent). */
  entry?: string;
  exit?: string;
}

export interface TracepointHook {
  kind: "tracepoint";
  name: string;
  group?: string;
  spec: TracepointSpec;
  /** Full program name, ending in _btf or _raw. */
  program: string;
}

export type PlannedHook = FunctionHook | TracepointHook;

export interface Plan {
  hooks: PlannedHook[];
  skipped: { name: string; why: string }[];
}

/** Functions with programs of their own (bpf/functions.bpf.h, netfilter.bpf.h). */
const SPECIAL: Record<string, { fentry?: string; fexit?: string; kprobe?: string; kretprobe?: string }> = {
  skb_clone: { fexit: "fexit_skb_clone", kprobe: "kprobe_skb_clone", kretprobe: "kretprobe_skb_clone" },
  nf_hook_slow: { fentry: "fentry_nf_hook_slow", fexit: "fexit_nf_hook_slow", kprobe: "kprobe_nf_hook_slow", kretprobe: "kretprobe_nf_hook_slow" },
  nft_do_chain: { fentry: "fentry_nft_do_chain", fexit: "fexit_nft_do_chain", kprobe: "kprobe_nft_do_chain", kretprobe: "kretprobe_nft_do_chain" },
};

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
 * Frees without an skb tracepoint (__kfree_skb, UDP delivery, TCP's
 * deferred frees) still return the skb to its slab: kmem_cache_free ends
 * those lives, and keeps a reused address out of the old packet.
 */
export const SLAB_FREE_TRACEPOINT = "kmem:kmem_cache_free";

export interface PlanInput {
  btf: Btf;
  functions: FunctionIndex;
  features: Features;
  selection: Selection;
  /** Extra function names from globs/names outside the tree (already checked to exist). */
  extraFunctions: string[];
  backend?: BackendChoice;
  ret: boolean;
  /** skbs are followed by address (not --pkt-fixed): watch their memory being freed. */
  followSkbs: boolean;
}

const NO_FUNCTION_BACKEND = "function hooks need kprobes or fentry, and this kernel has neither";

function chooseBackend(fn: KernelFunction, f: Features, forced: BackendChoice | undefined): FunctionBackend | { why: string } {
  // fentry reads the skb from the arguments' BTF types, and kernels before
  // 6.x refuse to read through a struct sk_buff ** there: kprobes for those.
  const fentryOk = f.fentry && fn.ftrace !== false && !fn.module && fn.symbol === fn.name && !fn.pskb;
  const multiOk = f.kprobeMulti && fn.ftrace !== false;
  if (forced === "tracepoint") return { why: "--backend tracepoint traces tracepoints only" };
  if (forced === "fentry")
    return fentryOk ? "fentry" : { why: fn.module ? "fentry is used for vmlinux functions only" : fn.pskb ? "its skb is behind a pointer, which fentry cannot read on every kernel" : `fentry cannot attach to ${fn.symbol}` };
  if (forced === "kprobe-multi") return multiOk ? "kprobe-multi" : { why: `kprobe.multi cannot attach to ${fn.symbol}` };
  if (forced === "kprobe") return "kprobe";
  if (multiOk) return "kprobe-multi";
  if (fentryOk) return "fentry";
  if (f.kprobe) return "kprobe";
  return { why: NO_FUNCTION_BACKEND };
}


function programsFor(fn: KernelFunction, backend: FunctionBackend, ret: boolean): { entry?: string; exit?: string } {
  const special = SPECIAL[fn.name];
  if (special) {
    return backend === "fentry"
      ? { entry: special.fentry, exit: special.fexit }
      : { entry: special.kprobe, exit: special.kretprobe };
  }
  const n = fn.skbArg;
  if (fn.pskb) return { entry: `${backend === "kprobe-multi" ? "kmulti" : "kprobe"}_pskb0` };
  switch (backend) {
    case "kprobe-multi": return { entry: `kmulti_skb${n}`, exit: ret ? "kmulti_return" : undefined };
    case "fentry": return { entry: `fentry_skb${n}`, exit: ret ? `fexit_skb${n}` : undefined };
    case "kprobe": return { entry: `kprobe_skb${n}`, exit: ret ? "kretprobe_return_value" : undefined };
  }
}

export function checkBackend(backend: BackendChoice | undefined, f: Features): void {
  const missing =
    backend === "kprobe-multi" && !f.kprobeMulti ? "kprobe.multi (Linux 5.18+ with CONFIG_FPROBE)" :
    backend === "fentry" && !(f.fentry && f.fexit) ? "fentry/fexit (BPF trampolines)" :
    backend === "kprobe" && !f.kprobe ? "kprobes (CONFIG_KPROBE_EVENTS)" : undefined;
  if (missing) throw environmentError(`--backend ${backend}: this kernel does not support ${missing}; run without --backend to use what it has`);
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
    const { program, why } = tracepointProgram(btf, spec);
    if (!program) return skipped.push({ name, why: why! });
    hooks.push({ kind: "tracepoint", name, group, spec, program: `${program}_${features.tpBtf && !spec.rawOnly ? "btf" : "raw"}` });
  };

  const addFunction = (name: string, group?: string) => {
    if (FREE_FUNCTIONS[name]) return addTracepoint(FREE_FUNCTIONS[name]!, group);
    if (planned.has(name)) return;
    planned.add(name);
    if (!features.kprobe && !features.kprobeMulti && !features.fentry) return skipped.push({ name, why: NO_FUNCTION_BACKEND });
    const r = functions.resolve(name, name in SPECIAL);
    if ("why" in r) return skipped.push({ name, why: r.why });
    const backend = chooseBackend(r.fn, features, input.backend);
    if (typeof backend !== "string") return skipped.push({ name, why: backend.why });
    hooks.push({ kind: "function", name, group, fn: r.fn, backend, ...programsFor(r.fn, backend, input.ret) });
  };

  for (const tp of LIFE_TRACEPOINTS) addTracepoint(tp, "life");
  if (input.followSkbs) addTracepoint(SLAB_FREE_TRACEPOINT, "life");
  for (const h of selection.hooks as TreeHook[]) (h.kind === "tracepoint" ? addTracepoint : addFunction)(h.name, h.group);
  for (const name of input.extraFunctions) addFunction(name);
  return { hooks, skipped };
}
