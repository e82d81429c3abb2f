// Attaches a plan's hooks: tracepoints one program each; kprobe.multi one
// link per program for all its functions; kprobes one link per function
// (program shared, told apart by the attach cookie = function address);
// fentry/fexit the loaded template for the first function and copies of
// its instructions for the others (loading one big program per function
// would make the verifier run each time).
import { BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, type BpfLink, type BpfObject } from "../../ffi/libbpf";
import { close } from "../../ffi/libc";
import { fullAddress } from "../kernel/kallsyms";
import type { FunctionHook, Plan } from "../plan/plan";

/** fentry/fexit programs without a fixed target: loaded for a first function, copied for the others. */
const CLONED = /_p?skb\d$/;

/** Everything attached, as file descriptors the kernel counts as owners. */
export class Attachments {
  readonly links: BpfLink[] = [];
  readonly linkFds: number[] = [];

  /** File descriptors that keep the hooks attached. */
  fds(): number[] {
    return [...this.links.map((l) => l.fd), ...this.linkFds];
  }

  /** Detaches everything here and now. */
  destroy(): void {
    for (const l of this.links.reverse()) l.destroy();
    this.linkFds.forEach(close);
    this.links.length = 0;
    this.linkFds.length = 0;
  }

  /** Forgets the attachments without detaching: another process holds their fds. */
  release(): void {
    for (const l of this.links) l.release();
    this.linkFds.forEach(close);
    this.links.length = 0;
    this.linkFds.length = 0;
  }
}

/** Programs to load for a plan; fentry/fexit templates get their first target. */
export function programsToLoad(obj: BpfObject, plan: Plan): string[] {
  const names = new Set<string>();
  const templates = new Map<string, string>();
  for (const h of plan.hooks) {
    if (h.kind === "tracepoint") {
      names.add(h.program);
      continue;
    }
    for (const p of [h.entry, h.exit]) {
      if (!p) continue;
      names.add(p);
      if (h.backend === "fentry" && CLONED.test(p) && !templates.has(p)) templates.set(p, h.fn.symbol);
    }
  }
  for (const [program, target] of templates) obj.program(program).setAttachTarget(target);
  return [...names];
}

function group<T>(items: T[], key: (t: T) => string | undefined): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    if (k) out.set(k, [...(out.get(k) ?? []), it]);
  }
  return out;
}

/** A hook the kernel refused at attach time (e.g. a notrace function): skipped, not fatal. */
export interface AttachFailure {
  name: string;
  why: string;
}

/**
 * Attaches every hook of the plan. A tracepoint that fails is fatal (the
 * probe said it works); a function the kernel refuses is skipped and
 * returned, so one odd function never costs the whole trace.
 */
export function attachPlan(obj: BpfObject, plan: Plan, into: Attachments): AttachFailure[] {
  for (const h of plan.hooks) if (h.kind === "tracepoint") into.links.push(obj.program(h.program).attach());

  const failures = new Map<string, string>();
  const refused = (h: FunctionHook, e: unknown) => failures.set(h.name, `the kernel refused to attach: ${e instanceof Error ? e.message : e}`);
  const attempt = (h: FunctionHook, attach: () => void) => {
    try {
      attach();
    } catch (e) {
      refused(h, e);
    }
  };
  const fns = plan.hooks.filter((h): h is FunctionHook => h.kind === "function");
  const cookie = (h: FunctionHook) => fullAddress(h.fn.key);
  // One refused symbol fails a whole kprobe.multi link: split and retry, so
  // only the refused ones are left out (a few extra attaches per bad symbol).
  const attachMulti = (program: string, hooks: FunctionHook[], retprobe: boolean): void => {
    try {
      into.links.push(obj.program(program).attachKprobeMulti(hooks.map((h) => h.fn.symbol), hooks.map(cookie), retprobe));
    } catch (e) {
      if (hooks.length === 1) return void refused(hooks[0]!, e);
      const half = hooks.length >> 1;
      attachMulti(program, hooks.slice(0, half), retprobe);
      attachMulti(program, hooks.slice(half), retprobe);
    }
  };

  for (const retprobe of [false, true]) {
    const programOf = (h: FunctionHook) => (retprobe ? h.exit : h.entry);
    for (const [program, hooks] of group(fns.filter((h) => h.backend === "kprobe-multi"), programOf)) attachMulti(program, hooks, retprobe);
    // kprobe: one link per function (skb_clone and netfilter programs on kprobe-multi kernels too).
    for (const h of fns) {
      const program = programOf(h);
      const single = h.backend === "kprobe" || (h.backend === "kprobe-multi" && program && !program.startsWith("kmulti_"));
      if (program && single) attempt(h, () => into.links.push(obj.program(program).attachKprobe(h.fn.symbol, cookie(h), retprobe)));
    }
    // fentry/fexit: the template is attached to its own target, copies to the rest.
    for (const [program, hooks] of group(fns.filter((h) => h.backend === "fentry"), programOf)) {
      const prog = obj.program(program);
      attempt(hooks[0]!, () => into.links.push(prog.attach()));
      if (!CLONED.test(program)) continue; // fixed-target programs (nf_hook_slow, skb_clone…)
      for (const h of hooks.slice(1)) attempt(h, () => into.linkFds.push(prog.cloneAndAttach(h.fn.btfId, retprobe ? BPF_TRACE_FEXIT : BPF_TRACE_FENTRY)));
    }
  }
  return [...failures].map(([name, why]) => ({ name, why }));
}
