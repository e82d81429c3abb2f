// --diag: the knowledge base loaded and checked, the rule engine, and what
// the running system adds to a finding: for a firewall drop seen only
// through its drop reason (no nft_do_chain hook on this kernel), the hook
// from the drop's stack and the nftables chains sitting on that hook.
import { readFileSync, statSync } from "node:fs";
import { hook_flags } from "../abi/layout.generated";
import { dropReasonsText, rulesText } from "../common/assets";
import { shown, usageError } from "../common/errors";
import type { HookEvent } from "../events/decode";
import type { HookLine, Namer } from "../events/line";
import { NF_FAMILIES, nfHookName, nftHookName } from "../events/netfilter";
import { tracepointById } from "../plan/tracepoints";
import { chainsOnHook, hookFromStack, RulesetCache } from "./firewall";
import { loadDropReasons, loadRules, type KnownNames, type Rule } from "./knowledge";
import { RuleEngine, type Finding, type Names } from "./rules";

/** A rule file larger than this is surely not one (and must not fill memory). */
export const MAX_RULE_FILE_BYTES = 1 << 20;

/** Reads a user's rule file: a regular file of reasonable size, or one clear line. */
export function readRuleFile(file: string, flag: string): string {
  const where = flag ? `${flag}: ` : "";
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw usageError(`${where}${shown(file)} is not a regular file; give the path of a YAML rule file`);
    size = st.size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === undefined) throw e;
    throw usageError(`${where}cannot read ${shown(file)} (${(e as NodeJS.ErrnoException).code}); give the path of a YAML rule file`);
  }
  if (size > MAX_RULE_FILE_BYTES) throw usageError(`${where}${shown(file)} is ${size} bytes, more than a rule file may be (${MAX_RULE_FILE_BYTES}); check the path`);
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw usageError(`${where}cannot read ${shown(file)} (${(e as NodeJS.ErrnoException).code}); give the path of a YAML rule file`);
  }
}

/** The built-in drop reasons (knowledge/drop-reasons.yaml): level, summary, advice per name. */
export function dropReasonKnowledge() {
  return loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
}

/**
 * Loads the built-in knowledge and a user's rule file; every error names
 * file and line. `flag` is how the user gave the file (--kb), or "" for
 * `skbtrail kb check`.
 */
export function loadKnowledge(known: KnownNames, userFile?: string, flag = "--kb") {
  const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
  const knownAll: KnownNames = { ...known, reasons: new Set([...reasons.keys(), ...known.reasons]) };
  // The built-in rules' hooks are checked by a unit test, against the tree, on no particular kernel.
  const rules: Rule[] = loadRules(rulesText, "knowledge/rules.yaml", { reasons: knownAll.reasons });
  if (userFile) {
    const text = readRuleFile(userFile, flag);
    const builtin = new Set(rules.map((r) => r.id));
    const mine = loadRules(text, userFile, knownAll, builtin);
    for (const r of mine) {
      if (builtin.has(r.id)) throw usageError(`${userFile}:${r.line}: id: '${r.id}' is a built-in rule; give yours another id`);
      rules.push(r);
    }
  }
  return { reasons, rules };
}

const { HOOK_DROP } = hook_flags;

export interface DiagnosisInput {
  known: KnownNames;
  /** A user's rule file (--kb). */
  kb?: string;
  /** --hooks: list the functions and chains on the netfilter hook that dropped. */
  showHooks: boolean;
  namer: Namer;
  stackOf: (id: number) => string[];
}

/** What the diagnosis needs to know of the plan. */
export interface TracedHooks {
  /** The trace has nft_do_chain: drops name their table and chain themselves. */
  hasNftHook: boolean;
  groupOf: (hookName: string) => string | undefined;
}

export class Diagnosis {
  private readonly engine: RuleEngine;
  private readonly rulesets = new RulesetCache();
  private traced: TracedHooks = { hasNftHook: false, groupOf: () => undefined };

  /** Loads and checks the knowledge base: a bad --kb file fails here, before anything is attached. */
  constructor(private readonly input: DiagnosisInput) {
    const { reasons, rules } = loadKnowledge(input.known, input.kb);
    const names: Names = { ...input.namer, tracepoint: (e) => tracepointById.get(e.tracepoint)?.name };
    this.engine = new RuleEngine(rules, reasons, names);
  }

  /** Once the plan is made. */
  setTraced(traced: TracedHooks): void {
    this.traced = traced;
  }

  /** Without nft_do_chain, the drop's stack tells which netfilter hook dropped it. */
  get wantsDropStacks(): boolean {
    return !this.traced.hasNftHook;
  }

  /** A firewall drop was seen: start reading its namespace's ruleset now, while the packet settles. */
  noticeDrop(e: HookEvent): void {
    if (this.needsRuleset(e)) this.rulesets.want(e.meta.netns);
  }

  private needsRuleset(e: HookEvent): boolean {
    return (e.flags & HOOK_DROP) !== 0 && this.input.namer.reason(e.reason) === "NETFILTER_DROP" && (!this.traced.hasNftHook || this.input.showHooks);
  }

  /**
   * The findings of one packet. Undefined when they need a ruleset that is
   * still being read and `mayWait`; without `mayWait` they go out without it.
   */
  examine(lines: HookLine[], mayWait: boolean): Finding[] | undefined {
    const drop = lines.find((l) => l.e.flags & HOOK_DROP);
    const netns = drop && this.needsRuleset(drop.e) ? drop.e.meta.netns : undefined;
    if (netns !== undefined) {
      this.rulesets.want(netns);
      if (mayWait && !this.rulesets.get(netns)) return undefined;
    }
    const findings = this.engine.diagnose(lines, this.traced.groupOf);
    for (const f of findings) {
      if (f.rule !== "drop-reason" || f.reason !== "NETFILTER_DROP" || !drop) continue;
      f.details = [...this.firewallDetails(drop, lines, f), ...this.hookFunctions(lines)];
    }
    return findings;
  }

  /** Resolves when no ruleset read is in progress (at exit). */
  settled(): Promise<void> {
    return this.rulesets.settled();
  }

  /** --hooks with function hooks: the kernel functions registered on the netfilter hook that dropped. */
  private hookFunctions(lines: HookLine[]): string[] {
    if (!this.input.showHooks) return [];
    const dropped = lines.findLast((l) => l.name === "nf_hook_slow" && l.e.nf?.hookFuncs.length);
    if (!dropped?.e.nf) return [];
    return ["hook functions on this hook, in order:", ...dropped.e.nf.hookFuncs.map(([hi, lo]) => `\t${this.input.namer.symbol(hi, lo).replace(/\+0x0$/, "")}`)];
  }

  /** Which hook dropped it and which nftables chains sit there, from the stack and the ruleset. */
  private firewallDetails(drop: HookLine, lines: HookLine[], f: Finding): string[] {
    const nft = lines.find((l) => l.e.nf?.table);
    if (nft && !this.input.showHooks) return [];
    const frames = drop.e.stackId >= 0 ? this.input.stackOf(drop.e.stackId) : [];
    // The hook by its family's names: from nft_do_chain when traced, else from the drop's stack (inet only).
    const family = nft?.e.nf ? (NF_FAMILIES[nft.e.nf.family] ?? `family ${nft.e.nf.family}`) : drop.e.pkt.l3 === 0x86dd ? "ipv6" : "ipv4";
    const nfHook = nft?.e.nf ? nfHookName(nft.e.nf.family, nft.e.nf.hook) : hookFromStack(frames);
    if (!nfHook) return ["netfilter hook: unknown (no stack of the drop)"];
    const nftHook = nft?.e.nf ? nftHookName(nft.e.nf.family, nft.e.nf.hook) : nfHook.toLowerCase().replace("_", "");
    const out = [`netfilter hook:`, `\t${family} ${nfHook}`];
    const read = this.rulesets.get(drop.e.meta.netns);
    if (!read) return [...out, "\t(the ruleset of the packet's network namespace was not read in time)"];
    if (!read.ruleset) return [...out, "\t(cannot read the ruleset of the packet's network namespace: is the nft command installed?)"];
    const chains = chainsOnHook(read.ruleset, nftHook, family);
    if (!chains.length) return [...out, "\tno nftables chain on this hook: look at iptables-legacy (iptables-save) or other hook users"];
    const suspects = chains.filter((c) => c.dropRules.length || c.policy === "drop");
    if (suspects.length === 1) {
      const c = suspects[0]!;
      f.advice = `find the rule that drops it: nft -a list chain ${c.family} ${c.table} ${c.chain}`;
    }
    const all = this.input.showHooks || !suspects.length;
    out.push(all ? "nftables chains on this hook:" : "nftables chains on this hook that drop:");
    for (const c of all ? chains : suspects) {
      out.push(`\ttable ${c.family} ${c.table}, chain ${c.chain} (policy ${c.policy})`);
      for (const r of c.dropRules) out.push(`\t\t${r}`);
    }
    return out;
  }
}
