// Attaches a plan's hooks the way the plan says (Attach.how): tracepoints
// one link each; kprobe.multi one link per program for all its functions;
// kprobes one link per function (program shared, told apart by the attach
// cookie = function address, or before 5.15 by the probe's IP); fentry/fexit templates loaded for a first
// function and their instructions copied for the others (libbpf prepares the
// object once), before 5.17 with each copy's function written into it.
import { BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, type BpfLink, type BpfObject } from "../../ffi/libbpf";
import { close } from "../../ffi/libc";
import type { ProgramName } from "../abi/programs.generated";
import { fullAddress } from "../kernel/kallsyms";
import type { Attach, FunctionHook, Plan } from "../plan/plan";

/** Everything attached, as file descriptors the kernel counts as owners. */
export class Attachments {
  readonly links: BpfLink[] = [];
  readonly linkFds: number[] = [];

  /** File descriptors that keep the hooks attached. */
  fds(): number[] {
    return [...this.links.map((l) => l.fd), ...this.linkFds];
  }

  get size(): number {
    return this.links.length + this.linkFds.length;
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

type FentryTemplate = Attach & { how: "fentry-template" };

/** Sets each fentry/fexit template's first target. Before load. */
export function setTemplateTargets(obj: BpfObject, plan: Plan): void {
  const first = new Map<ProgramName, string>();
  for (const h of plan.hooks)
    if (h.kind === "function") for (const a of h.attach) if (a.how === "fentry-template" && !first.has(a.program)) first.set(a.program, h.fn.symbol);
  for (const [prog, target] of first) obj.program(prog).setAttachTarget(target);
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
  const failures = new Map<string, string>();
  const refused = (h: FunctionHook, e: unknown) => failures.set(h.name, `the kernel refused to attach: ${e instanceof Error ? e.message : e}`);
  const attempt = (h: FunctionHook, attach: () => void) => {
    try {
      attach();
    } catch (e) {
      refused(h, e);
    }
  };
  // Before 5.15 libbpf refuses any cookie on a kprobe: none is given there.
  const cookie = (h: FunctionHook) => (plan.attachCookies ? fullAddress(h.fn.key) : 0n);
  // One refused symbol fails a whole kprobe.multi link: split and retry, so
  // only the refused ones are left out (a few extra attaches per bad symbol).
  const attachMulti = (prog: ProgramName, hooks: FunctionHook[], retprobe: boolean): void => {
    try {
      into.links.push(obj.program(prog).attachKprobeMulti(hooks.map((h) => h.fn.symbol), hooks.map(cookie), retprobe));
    } catch (e) {
      if (hooks.length === 1) return void refused(hooks[0]!, e);
      const half = hooks.length >> 1;
      attachMulti(prog, hooks.slice(0, half), retprobe);
      attachMulti(prog, hooks.slice(half), retprobe);
    }
  };

  const multi = new Map<ProgramName, { retprobe: boolean; hooks: FunctionHook[] }>();
  const templates = new Map<ProgramName, { attach: FentryTemplate; hooks: FunctionHook[] }>();
  for (const h of plan.hooks) {
    if (h.kind === "tracepoint") {
      into.links.push(obj.program(h.attach[0].program).attach());
      continue;
    }
    for (const a of h.attach) {
      switch (a.how) {
        case "kprobe-multi": {
          const group = multi.get(a.program) ?? { retprobe: a.retprobe, hooks: [] };
          multi.set(a.program, group);
          group.hooks.push(h);
          break;
        }
        case "kprobe":
          attempt(h, () => into.links.push(obj.program(a.program).attachKprobe(h.fn.symbol, cookie(h), a.retprobe)));
          break;
        case "fentry-fixed":
          attempt(h, () => into.links.push(obj.program(a.program).attach()));
          break;
        case "fentry-template": {
          const group = templates.get(a.program) ?? { attach: a, hooks: [] };
          templates.set(a.program, group);
          group.hooks.push(h);
          break;
        }
        case "tracepoint":
          throw new Error(`function hook ${h.name} planned as a tracepoint`);
      }
    }
  }
  for (const [prog, { retprobe, hooks }] of multi) attachMulti(prog, hooks, retprobe);
  // A template is attached to its own (first) target, copies to the rest.
  // With idInCode every copy is written for its function, the first one too.
  for (const [prog, { attach, hooks }] of templates) {
    const p = obj.program(prog);
    const type = attach.exit ? BPF_TRACE_FEXIT : BPF_TRACE_FENTRY;
    const idOf = (h: FunctionHook) => ({ func: fullAddress(h.fn.key), returnSlot: attach.exit ? h.fn.args : undefined });
    const copy = (h: FunctionHook) => p.cloneAndAttach(h.fn.btfId, type, attach.idInCode ? idOf(h) : undefined);
    if (!attach.idInCode) attempt(hooks[0]!, () => into.links.push(p.attach()));
    for (const h of attach.idInCode ? hooks : hooks.slice(1)) attempt(h, () => into.linkFds.push(copy(h)));
  }
  return [...failures].map(([name, why]) => ({ name, why }));
}

/** File descriptors a plan will hold: one per link, plus the loaded programs. */
export function linkCount(plan: Plan): number {
  return plan.hooks.reduce((n, h) => n + h.attach.length, 0);
}
