// skbtrail -t '?': the tracer tree, marking what exists on this kernel and
// how each hook would be attached (or why it would not), which hooks --sock
// traces, and each hook's note.
import type { Options } from "../cli/parse";
import type { KernelInfo } from "../kernel/environment";
import type { Output } from "../output/output";
import { attachedAs, FREE_FUNCTIONS } from "../plan/plan";
import { SOCK_GROUPS, sockFunctionNames } from "../plan/sock";
import { allHooks, findGroup, type TreeGroup } from "../plan/tracer-tree";
import { loadTree, planFor, selectionFor } from "./trace";

export function printTree(opts: Options, kernel: KernelInfo, out: Output): void {
  const tree = loadTree();
  const all = { ...opts, trace: ["all"] };
  const { plan } = planFor(all, kernel, selectionFor(all, kernel, tree));
  const planned = new Map(plan.hooks.map((h) => [h.name, attachedAs(h)]));
  const skipped = new Map(plan.skipped.map((s) => [s.name, s.why]));
  // --sock's socket functions: its default set, and the others of its groups (with -t).
  const sockDefault = new Set(sockFunctionNames(tree, undefined).names);
  const sockGroups = new Set(allHooks(SOCK_GROUPS.map((g) => findGroup(tree, g)!)).map((h) => h.name));
  out.raw("available tracers (+ traced by default, - only with -t; [backend] or (why not); {--sock} traced by --sock, {--sock -t} with -t):");
  const walk = (groups: TreeGroup[], depth: number) => {
    for (const g of groups) {
      out.raw(`${"  ".repeat(depth)}${g.name}: ${g.description}${g.onByDefault ? "" : " (off by default)"}`);
      walk(g.children, depth + 1);
      for (const h of g.hooks) {
        const name = h.kind === "tracepoint" ? `tracepoint ${h.name}` : h.name;
        const via = FREE_FUNCTIONS[h.name];
        const how = via ? `[tracepoint ${via}]` : planned.has(h.name) ? `[${planned.get(h.name)}]` : `(${skipped.get(h.name) ?? "not planned"})`;
        const sock = sockDefault.has(h.name) ? " {--sock}" : sockGroups.has(h.name) && h.kind === "function" ? " {--sock -t}" : "";
        out.raw(`${"  ".repeat(depth + 1)}${h.onByDefault ? "+" : "-"} ${name} ${how}${sock}${h.note ? `: ${h.note}` : ""}`);
      }
    }
  };
  walk(tree, 0);
}
