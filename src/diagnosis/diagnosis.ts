// --diag: the knowledge base loaded and checked, the rule engine, and what
// the running system adds to a finding: for a firewall drop seen only
// through its drop reason (no nft_do_chain hook on this kernel), the hook
// from the drop's stack and the nftables chains sitting on that hook; for a
// drop by the routing decision, the kind of route that refused the packet.
import { readFileSync, statSync } from "node:fs";
import { ct_seen, hook_flags, tracepoint_id } from "../abi/layout.generated";
import { dropReasonsText, rulesText } from "../common/assets";
import { shown, usageError } from "../common/errors";
import type { HookEvent } from "../events/decode";
import type { HookLine, Namer } from "../events/line";
import { NF_FAMILIES, nfHookName, nftHookName } from "../events/netfilter";
import { icmpTypeText } from "../events/protocols";
import { tracepointById } from "../plan/tracepoints";
import { arpHookFromPath, chainsOnHook, hookCaller, hookFromStack, readRuleset, type ChainSummary, type NfHookNames } from "./firewall";
import { functionName, loadDropReasons, loadRules, type KnownNames, type Rule } from "./knowledge";
import { mtuFinding, neighbourFinding, neighbourQueueFinding, readRoute, ROUTE_DROP_SITES, routeFinding, routeQueryKey, type RouteQuery } from "./routes";
import { RuleEngine, type Finding, type Names } from "./rules";
import { BackgroundReads } from "./system";

/** A rule file larger than this is surely not one (and must not fill memory). */
export const MAX_RULE_FILE_BYTES = 1 << 20;

/** Reads a user's rule (or expect) file: a regular file of reasonable size, or one clear line. */
export function readRuleFile(file: string, flag: string, what = "a YAML rule file"): string {
  const where = flag ? `${flag}: ` : "";
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw usageError(`${where}${shown(file)} is not a regular file; give the path of ${what}`);
    size = st.size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === undefined) throw e;
    throw usageError(`${where}cannot read ${shown(file)} (${(e as NodeJS.ErrnoException).code}); give the path of ${what}`);
  }
  if (size > MAX_RULE_FILE_BYTES) throw usageError(`${where}${shown(file)} is ${size} bytes, more than such a file may be (${MAX_RULE_FILE_BYTES}); check the path`);
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw usageError(`${where}cannot read ${shown(file)} (${(e as NodeJS.ErrnoException).code}); give the path of ${what}`);
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

/** Findings a refusing route, a silent next hop or a known MTU explains better (knowledge/rules.yaml): the ICMP error the host sent, the drop reason. */
const ROUTE_EXPLAINED = new Set(["no-route", "admin-prohibited", "fragmentation-needed", "drop-reason"]);

/** Knowledge-base rules that name a netfilter drop more precisely than its drop reason (knowledge/rules.yaml). */
const NETFILTER_DROP_RULES = new Set(["nft-chain-drop", "nf-hook-drop", "iptables-drop"]);
/** The functions a firewall's reject rule sends its TCP reset with (IPv4, IPv6). */
const TCP_RESET_REJECTS = new Set(["nf_send_reset", "nf_send_reset6"]);
/** The skb free functions a drop's stack starts with (the frame under the tracepoint). */
const SKB_FREES = /^(sk_skb_reason_drop|kfree_skb|__kfree_skb|kfree_skb_reason|kfree_skb_list|consume_skb|skb_release)/;

export class Diagnosis {
  private readonly engine: RuleEngine;
  private readonly rulesets = new BackgroundReads(readRuleset);
  private readonly routes = new BackgroundReads(readRoute, routeQueryKey);
  private traced: TracedHooks = { hasNftHook: false, groupOf: () => undefined };

  /** Loads and checks the knowledge base: a bad --kb file fails here, before anything is attached. */
  constructor(private readonly input: DiagnosisInput) {
    const { reasons, rules } = loadKnowledge(input.known, input.kb);
    const names: Names = { ...input.namer, tracepoint: (e) => tracepointById.get(e.tracepoint)?.name };
    this.engine = new RuleEngine(rules, reasons, names, input.known.reasons);
    this.returnsLookedAt = rules.flatMap((r) => [r.when, r.after].flatMap((c) => (c?.return !== undefined ? (c.hook ?? []) : [])));
  }

  /** Hooks whose return value a rule looks at: their returns are traced without --ret (sk_filter_trim_cap's -EPERM, ipt_do_table's NF_DROP). */
  readonly returnsLookedAt: string[];

  /** Once the plan is made. */
  setTraced(traced: TracedHooks): void {
    this.traced = traced;
  }

  /** Without nft_do_chain, the drop's stack tells which netfilter hook dropped it. */
  get wantsDropStacks(): boolean {
    return !this.traced.hasNftHook;
  }

  /** A drop was seen: start reading what explains it (ruleset, route) now, while the packet settles. */
  noticeDrop(e: HookEvent): void {
    if (this.needsRuleset(e)) this.rulesets.want(e.meta.netns);
    const route = this.routeQuery(e);
    if (route) this.routes.want(route);
  }

  /** A drop by the routing decision, for want of the next hop's link-layer address (never answered, or too many packets waiting for it), or too big for its MTU: the route to ask about. */
  private routeQuery(e: HookEvent): RouteQuery | undefined {
    if (!(e.flags & HOOK_DROP)) return undefined;
    const reason = this.engine.reasonOf(e);
    if (!ROUTE_DROP_SITES.has(this.engine.siteOf(e)) && reason !== "NEIGH_FAILED" && reason !== "NEIGH_QUEUEFULL" && reason !== "PKT_TOO_BIG") return undefined;
    const ipv6 = e.pkt.l3 === 0x86dd;
    if (!ipv6 && e.pkt.l3 !== 0x0800) return undefined;
    return { netns: e.meta.netns, ipv6, daddr: e.pkt.daddr, ifname: e.meta.ifname, mtu: reason === "PKT_TOO_BIG", queue: reason === "NEIGH_QUEUEFULL" };
  }

  /** The ruleset names the chain where nft_do_chain is not traced; for a packet with no connection, it tells whether a `ct state invalid` rule dropped it. */
  private needsRuleset(e: HookEvent): boolean {
    return (e.flags & HOOK_DROP) !== 0 && this.engine.reasonOf(e) === "NETFILTER_DROP" && (!this.traced.hasNftHook || this.input.showHooks || e.meta.ct === ct_seen.CT_NONE);
  }

  /**
   * The findings of one packet. Undefined when they need a ruleset that is
   * still being read and `mayWait`; without `mayWait` they go out without it.
   */
  examine(lines: HookLine[], mayWait: boolean): Finding[] | undefined {
    const drop = lines.find((l) => l.e.flags & HOOK_DROP);
    const netns = drop && this.needsRuleset(drop.e) ? drop.e.meta.netns : undefined;
    const route = drop && this.routeQuery(drop.e);
    if (netns !== undefined) this.rulesets.want(netns);
    if (route) this.routes.want(route);
    if (mayWait && ((netns !== undefined && !this.rulesets.get(netns)) || (route && !this.routes.get(route)))) return undefined;
    // An ICMP error sent before a firewall drop is a reject rule's answer, not a closed port or a missing route:
    // the firewall's finding says so, and the ICMP rules do not see it.
    const netfilterDrop = drop && this.engine.reasonOf(drop.e) === "NETFILTER_DROP";
    const answer = netfilterDrop ? lines.find((l) => l.e.tracepoint === tracepoint_id.TP_ICMP_SEND && l.e.timeNs <= drop.e.timeNs) : undefined;
    // `reject with tcp reset` answers through nf_send_reset(6), seen where function hooks exist.
    const reset = netfilterDrop && lines.some((l) => TCP_RESET_REJECTS.has(l.name) && l.e.timeNs <= drop.e.timeNs);
    const findings = this.engine.diagnose(answer ? lines.filter((l) => l !== answer) : lines, this.traced.groupOf);
    if (route) {
      // The route (or the silent next hop) names the cause: its finding replaces the ICMP error's and the drop reason's.
      const answer = this.routes.get(route)?.value;
      const reason = this.engine.reasonOf(drop!.e);
      const [rule, words] =
        reason === "NEIGH_FAILED" ? ["neighbour-failed", neighbourFinding(route, answer)]
        : reason === "NEIGH_QUEUEFULL" ? ["neighbour-queue-full", neighbourQueueFinding(route, answer)]
        : reason === "PKT_TOO_BIG" ? ["packet-too-big", mtuFinding(route, answer, drop!.e.pkt.ipLen)]
        : ["route-refused", answer && routeFinding(route, answer)];
      if (words) return [{ rule, level: "error", hook: drop!.name, group: this.traced.groupOf(drop!.name), ...words }, ...findings.filter((f) => !ROUTE_EXPLAINED.has(f.rule))];
    }
    // One cause, one finding: the firewall details go to the finding that names the drop (the
    // chain's when traced, which overrides the generic NETFILTER_DROP text), else to the generic one.
    const firewall = findings.find((f) => NETFILTER_DROP_RULES.has(f.rule)) ?? findings.find((f) => f.rule === "drop-reason");
    if (!firewall || !netfilterDrop) return findings;
    // A packet without a connection, where a `ct state invalid` rule drops: that rule and conntrack's verdict are the cause.
    const invalid = !answer && !reset ? this.conntrackInvalid(drop, lines) : undefined;
    if (invalid) return [invalid, ...findings.filter((f) => f !== firewall && !NETFILTER_DROP_RULES.has(f.rule))];
    firewall.details = [...this.firewallDetails(drop, lines, firewall), ...this.hookFunctions(drop, lines)];
    if (answer) firewall.message += `: a reject rule, the host answered ICMP ${icmpTypeText(drop.e.pkt.l3 === 0x86dd, answer.e.info[0], answer.e.info[1])}`;
    else if (reset) firewall.message += ": a reject rule, the host answered with a TCP reset";
    return findings;
  }

  /** Resolves when no ruleset read is in progress (at exit). */
  async settled(): Promise<void> {
    await Promise.all([this.rulesets.settled(), this.routes.settled()]);
  }

  /**
   * --hooks: the kernel functions registered on the netfilter hook that dropped, read by nf_hook_slow's
   * program where it is traced; else, where the hook function freed the packet itself (nftables since 6.8:
   * NF_STOLEN), that function from the drop's stack.
   */
  private hookFunctions(drop: HookLine, lines: HookLine[]): string[] {
    if (!this.input.showHooks) return [];
    const traced = lines.findLast((l) => l.name === "nf_hook_slow" && l.e.nf?.hookFuncs.length)?.e.nf;
    const names = traced ? traced.hookFuncs.map(([hi, lo]) => functionName(this.input.namer.symbol(hi, lo))) : this.hookFunctionFromStack(drop);
    // nettrace's words, so scripts that grep its output keep working.
    return names.length ? ["following hook functions are blamed:", ...names.map((n) => `\t${n}`)] : [];
  }

  /** The frame nf_hook_slow called, unless that is the free itself (nf_hook_slow freeing on NF_DROP). */
  private hookFunctionFromStack(drop: HookLine): string[] {
    const frames = drop.e.stackId >= 0 ? this.input.stackOf(drop.e.stackId) : [];
    const slow = frames.findIndex((f) => f.startsWith("nf_hook_slow+"));
    const callee = slow > 0 ? functionName(frames[slow - 1]!) : undefined;
    return callee && !SKB_FREES.test(callee) ? [callee] : [];
  }

  /**
   * The netfilter hook that dropped: from nf_hook_slow or nft_do_chain where
   * traced (the chain too from nft_do_chain), else from the drop's stack. The
   * traced hook comes first: on 5.10 a kretprobe on nf_hook_slow hides its
   * caller in the stack behind kretprobe_trampoline.
   */
  private droppingHook(drop: HookLine, lines: HookLine[]): { hook?: NfHookNames; nftChain?: { table: string; chain: string }; frames: string[] } {
    const before = lines.filter((l) => l.e.nf && l.e.timeNs <= drop.e.timeNs);
    const nf = before.at(-1)?.e.nf;
    const chain = before.findLast((l) => l.e.nf!.table)?.e.nf;
    const frames = drop.e.stackId >= 0 ? this.input.stackOf(drop.e.stackId) : [];
    if (nf) return { hook: { family: NF_FAMILIES[nf.family] ?? `family ${nf.family}`, hook: nfHookName(nf.family, nf.hook), nftHook: nftHookName(nf.family, nf.hook) }, nftChain: chain && { table: chain.table, chain: chain.chain }, frames };
    const fromStack = hookFromStack(frames, drop.e.pkt.l3 === 0x86dd);
    if (!fromStack && drop.e.pkt.l3 === 0x0806 /* ARP */) return { hook: arpHookFromPath(lines.filter((l) => l.e.timeNs < drop.e.timeNs).map((l) => this.traced.groupOf(l.name))), frames };
    return { hook: fromStack, frames };
  }

  /**
   * A netfilter drop of a packet conntrack gave no connection (skb->_nfct
   * empty: nftables' `ct state invalid`) on a hook whose chains drop INVALID
   * packets: the finding that names conntrack's verdict and the rule.
   * Undefined where the ruleset does not show such a rule.
   */
  private conntrackInvalid(drop: HookLine, lines: HookLine[]): Finding | undefined {
    if (drop.e.meta.ct !== ct_seen.CT_NONE) return undefined;
    const ruleset = this.rulesets.get(drop.e.meta.netns)?.value;
    const { hook, nftChain } = this.droppingHook(drop, lines);
    if (!ruleset || !hook) return undefined;
    const chains: ChainSummary[] = chainsOnHook(ruleset, hook.nftHook, hook.family)
      .filter((c) => c.invalidRules.length && (!nftChain || (c.table === nftChain.table && c.chain === nftChain.chain)));
    if (!chains.length) return undefined;
    const c = chains[0]!;
    const others = chains.length > 1 ? ` (and ${chains.slice(1).map((o) => `table ${o.family} ${o.table}, chain ${o.chain}`).join("; ")})` : "";
    return {
      rule: "conntrack-invalid",
      level: "error",
      hook: drop.name,
      group: this.traced.groupOf(drop.name),
      message: `connection tracking classified the packet as INVALID (it belongs to no connection conntrack knows), and the firewall drops INVALID packets: rule '${c.invalidRules[0]}' in table ${c.family} ${c.table}, chain ${c.chain}${others}`,
      advice:
        "most often conntrack never saw the connection start (it was opened before connections were tracked here, or its other direction takes another path: asymmetric routing), " +
        "or the packet lies outside the TCP window conntrack expects. Count them: conntrack -S (invalid=); ask the kernel why: sysctl -w net.netfilter.nf_conntrack_log_invalid=255, then dmesg. " +
        `If this traffic is legitimate, send both directions through this host, or accept it before that rule: nft -a list chain ${c.family} ${c.table} ${c.chain}`,
      location: this.input.namer.symbol(drop.e.location.hi, drop.e.location.lo),
      reason: this.engine.reasonOf(drop.e),
      details: [`conntrack state:`, `	INVALID (no connection)`, `netfilter hook:`, `	${hook.family} ${hook.hook}`, `nftables rules that drop INVALID packets:`, ...chains.flatMap((ch) => [`	table ${ch.family} ${ch.table}, chain ${ch.chain}`, ...ch.invalidRules.map((r) => `		${r}`)])],
    };
  }

  /** Which hook dropped it and which nftables chains sit there, from the stack and the ruleset. */
  private firewallDetails(drop: HookLine, lines: HookLine[], f: Finding): string[] {
    const nft = lines.find((l) => l.e.nf?.table);
    if (nft && !this.input.showHooks) return [];
    const { hook, frames } = this.droppingHook(drop, lines);
    if (!hook) {
      const caller = hookCaller(frames);
      const why = !frames.length ? "no stack of the drop" : caller ? `nf_hook_slow was called from ${caller}, not a hook skbtrail knows` : "no nf_hook_slow in the drop's stack";
      return [`netfilter hook: unknown (${why})`];
    }
    const { family, nftHook } = hook;
    const out = [`netfilter hook:`, `\t${family} ${hook.hook}`];
    const read = this.rulesets.get(drop.e.meta.netns);
    if (!read) return [...out, "\t(the ruleset of the packet's network namespace was not read in time)"];
    const ruleset = read.value;
    if (!ruleset) return [...out, "\t(cannot read the ruleset of the packet's network namespace: is the nft command installed?)"];
    const chains = chainsOnHook(ruleset, nftHook, family);
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
