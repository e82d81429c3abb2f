// --diag: the knowledge base loaded and checked, the rule engine, and what
// the running system adds to a finding: for a firewall drop seen only
// through its drop reason (no nft_do_chain hook on this kernel), the hook
// from the drop's stack and the nftables chains sitting on that hook.
import { readFileSync } from "node:fs";
import type { Options } from "../cli/parse";
import { dropReasonsText, rulesText } from "../common/assets";
import { Diagnoser, type Finding, type Names } from "./rules";
import { usageError } from "../common/errors";
import { dropReasons } from "../kernel/environment";
import { loadDropReasons, loadRules, type KnownNames, type Rule } from "./knowledge";
import { chainsOnHook, hookFromStack, readRuleset } from "./firewall";
import type { Namer } from "../events/line";
import type { HookLine } from "../output/text";
import type { Plan } from "../plan/plan";
import type { KernelInfo } from "../bpf/session";
import { tracepointById } from "../plan/tracepoints";
import { allHooks, type TreeGroup } from "../plan/tracer-tree";

/** Loads the built-in knowledge and a user's rule file; every error names file and line. */
export function loadKnowledge(kernelReasons: Iterable<string>, tree: TreeGroup[], userFile?: string) {
  const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
  const known: KnownNames = {
    reasons: new Set([...reasons.keys(), ...kernelReasons]),
    hooks: new Set(allHooks(tree).map((h) => h.name)),
  };
  const rules: Rule[] = loadRules(rulesText, "knowledge/rules.yaml", known);
  if (userFile) {
    let text: string;
    try {
      text = readFileSync(userFile, "utf8");
    } catch (e) {
      throw usageError(`--kb: cannot read ${userFile} (${(e as NodeJS.ErrnoException).code}); give the path of a YAML rule file`);
    }
    const builtin = new Set(rules.map((r) => r.id));
    for (const r of loadRules(text, userFile, known)) {
      if (builtin.has(r.id)) throw usageError(`${userFile}:${r.line}: id: '${r.id}' is a built-in rule; give yours another id`);
      rules.push(r);
    }
  }
  return { reasons, rules };
}

export class Diagnosis {
  private constructor(
    private readonly engine: Diagnoser,
    private readonly groupOf: (name: string) => string | undefined,
    private readonly showHooks: boolean,
    /** The plan has no nft_do_chain hook: ask the kernel for drop stacks instead. */
    readonly wantsDropStacks: boolean,
    private readonly stackOf: (id: number) => string[],
    private readonly symbol: (hi: number, lo: number) => string,
  ) {}

  static create(opts: Options, kernel: KernelInfo, plan: Plan, tree: TreeGroup[], namer: Namer, stackOf: (id: number) => string[]): Diagnosis {
    const { reasons, rules } = loadKnowledge(dropReasons(kernel.btf).values(), tree, opts.kb);
    const names: Names = { ...namer, tracepoint: (e) => tracepointById.get(e.tracepoint)?.name };
    const groups = new Map(plan.hooks.map((h) => [h.name, h.group]));
    for (const h of plan.hooks) if (h.kind === "tracepoint") groups.set(h.name.split(":")[1]!, h.group);
    const hasNftHook = plan.hooks.some((h) => h.name === "nft_do_chain");
    return new Diagnosis(new Diagnoser(rules, reasons, names), (n) => groups.get(n), opts.hooks, !hasNftHook, stackOf, namer.symbol);
  }

  async examine(lines: HookLine[]): Promise<Finding[]> {
    const findings = this.engine.diagnose(lines, this.groupOf);
    for (const f of findings) {
      if (f.rule !== "drop-reason" || f.reason !== "NETFILTER_DROP") continue;
      const drop = lines.find((l) => l.e.flags & 4);
      if (drop) f.details = [...(await this.firewallDetails(drop, lines, f)), ...this.hookFunctions(lines)];
    }
    return findings;
  }

  /** --hooks with function hooks: the kernel functions registered on the netfilter hook that dropped. */
  private hookFunctions(lines: HookLine[]): string[] {
    if (!this.showHooks) return [];
    const dropped = lines.findLast((l) => l.name === "nf_hook_slow" && l.e.nf?.hookFuncs.length);
    if (!dropped?.e.nf) return [];
    return ["hook functions on this hook, in order:", ...dropped.e.nf.hookFuncs.map(([hi, lo]) => `\t${this.symbol(hi, lo).replace(/\+0x0$/, "")}`)];
  }

  /** Which hook dropped it and which nftables chains sit there, from the stack and the ruleset. */
  private async firewallDetails(drop: HookLine, lines: HookLine[], f: Finding): Promise<string[]> {
    const nft = lines.find((l) => l.e.nf?.table);
    if (nft && !this.showHooks) return [];
    const frames = drop.stackId !== undefined && drop.stackId >= 0 ? this.stackOf(drop.stackId) : [];
    const hook = nft?.e.nf ? ["PRE_ROUTING", "INPUT", "FORWARD", "OUTPUT", "POST_ROUTING"][nft.e.nf.hook] : hookFromStack(frames);
    if (!hook) return ["netfilter hook: unknown (no stack of the drop)"];
    const out = [`netfilter hook:`, `\t${drop.e.pkt.l3 === 0x86dd ? "ipv6" : "ipv4"} ${hook}`];
    const ruleset = await readRuleset(drop.e.meta.netns);
    if (!ruleset) return [...out, "\t(cannot read the ruleset of the packet's network namespace: is the nft command installed?)"];
    const chains = chainsOnHook(ruleset, hook, drop.e.pkt.l3 === 0x86dd);
    if (!chains.length) return [...out, "\tno nftables chain on this hook: look at iptables-legacy (iptables-save) or other hook users"];
    const suspects = chains.filter((c) => c.dropRules.length || c.policy === "drop");
    if (suspects.length === 1) {
      const c = suspects[0]!;
      f.advice = `find the rule that drops it: nft -a list chain ${c.family} ${c.table} ${c.chain}`;
    }
    out.push(this.showHooks || !suspects.length ? "nftables chains on this hook:" : "nftables chains on this hook that drop:");
    for (const c of this.showHooks || !suspects.length ? chains : suspects) {
      out.push(`\ttable ${c.family} ${c.table}, chain ${c.chain} (policy ${c.policy})`);
      for (const r of c.dropRules) out.push(`\t\t${r}`);
    }
    return out;
  }
}
