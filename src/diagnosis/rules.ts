// Turns a packet's life (its hook lines, in order) into findings, driven by
// the knowledge base: every drop gets the explanation of its reason, and
// rules match hooks, return values by meaning, tracepoint arguments by name
// and sequences within the packet's life.
import { hook_flags, hook_phase, tracepoint_id } from "../abi/layout.generated";
import type { HookEvent } from "../events/decode";
import { addrKey } from "../kernel/kallsyms";
import type { HookLine } from "../events/line";
import { NF_FAMILIES, nfHookName, nfVerdict } from "../events/netfilter";
import { icmpTypeText, l3Name, l4Name } from "../events/protocols";
import { functionName, ICMP_SENT, ICMP_TYPES, siteReasons, type Conditions, type Level, type ReasonEntry, type Rule } from "./knowledge";

const { HOOK_DROP } = hook_flags;

export interface Finding {
  rule: string;
  level: Level;
  /** The hook where it happened, and its tracer group. */
  hook: string;
  group?: string;
  message: string;
  advice?: string;
  explanation?: string;
  /** Drops: where and why. */
  location?: string;
  reason?: string;
  /** The reason a drop without one most likely had, inferred from its location (ReasonEntry.sites). */
  inferred?: string;
  /** Extra lines (e.g. the nftables chains on the hook that dropped). */
  details?: string[];
}

/** What can be said about one line: the facts rules are matched against. */
interface Facts {
  hook: string;
  tracepoint?: string;
  reason?: string;
  /** The reason a drop without a precise one most likely had, from its location: rules match it instead. */
  inferred?: string;
  location?: string;
  retval?: number;
  icmpSent?: { type: number; code: number };
  rstReason?: string;
  nfHook?: string;
  nfFamily?: string;
  table?: string;
  tableFamily?: string;
  chain?: string;
  proto: string;
  /** An ICMPv4 packet's type. */
  icmpType?: number;
  nat: boolean;
}

export interface Names {
  reason(value: number): string | undefined;
  symbol(hi: number, lo: number): string;
  rstReason(value: number): string | undefined;
  /** Tracepoint "category:event" of a hook event, if it is one. */
  tracepoint(e: HookEvent): string | undefined;
}

const LEVEL_RANK: Record<Level, number> = { info: 0, warn: 1, error: 2 };
export const worst = (findings: Finding[]): Level | undefined =>
  findings.reduce<Level | undefined>((w, f) => (w === undefined || LEVEL_RANK[f.level] > LEVEL_RANK[w] ? f.level : w), undefined);

function returnMatches(meaning: string, hook: string, v: number | undefined): boolean {
  if (v === undefined) return false;
  if (meaning.startsWith("NF_")) {
    // nf_hook_slow returns 1 to continue and a negative errno for a drop.
    if (hook === "nf_hook_slow") return meaning === "NF_DROP" ? v < 0 : meaning === "NF_ACCEPT" && v === 1;
    return nfVerdict(v) === meaning;
  }
  if (meaning.startsWith("XDP_")) return ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"][v] === meaning;
  if (meaning.startsWith("-E")) return v === -(ERRNO_NUMBERS[meaning.slice(1)] ?? Number.NaN);
  return meaning === "zero" ? v === 0 : meaning === "non-zero" ? v !== 0 : meaning === "negative" ? v < 0 : v > 0;
}

/**
 * Whether the packet's addresses or ports changed since its first hook (NAT).
 * Both ends swapped is no translation: a reply whose skb took a freed one's
 * address (a TCP clone leaves its slab slot with its original, unseen).
 */
function translated(first: HookEvent["pkt"], now: HookEvent["pkt"]): boolean {
  const same = first.saddr === now.saddr && first.daddr === now.daddr && first.sport === now.sport && first.dport === now.dport;
  const swapped = first.saddr === now.daddr && first.daddr === now.saddr && first.sport === now.dport && first.dport === now.sport;
  return !same && !swapped;
}

/** errno values of x86-64 Linux, for rules written with names. */
const ERRNO_NUMBERS: Record<string, number> = {
  EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, E2BIG: 7, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17,
  ENODEV: 19, EINVAL: 22, ENOSPC: 28, EPIPE: 32, EMSGSIZE: 90, EPROTONOSUPPORT: 93, EOPNOTSUPP: 95, EADDRINUSE: 98,
  EADDRNOTAVAIL: 99, ENETDOWN: 100, ENETUNREACH: 101, ECONNRESET: 104, ENOBUFS: 105, ETIMEDOUT: 110, ECONNREFUSED: 111,
  EHOSTUNREACH: 113, EINPROGRESS: 115,
};

function matches(c: Conditions, f: Facts): boolean {
  const any = (list: string[] | undefined, value: string | undefined) => !list || (value !== undefined && list.includes(value));
  if (c.hook && !c.hook.some((h) => h === f.hook || h === f.tracepoint)) return false;
  const reason = f.inferred ?? f.reason;
  if (c.drop_reason && !(reason !== undefined && (c.drop_reason.includes("any") || c.drop_reason.includes(reason)))) return false;
  if (!any(c.location, f.location)) return false;
  if (c.return && !returnMatches(c.return, f.hook, f.retval)) return false;
  if (c.icmp_sent) {
    const sent = f.icmpSent;
    const fits = (name: string) => {
      const want = ICMP_SENT[name]!;
      return want.type < 0 || (sent!.type === want.type && (want.code === undefined || sent!.code === want.code));
    };
    if (!sent || !c.icmp_sent.some(fits)) return false;
  }
  if (!any(c.rst_reason, f.rstReason)) return false;
  if (c.nf_hook && c.nf_hook !== f.nfHook) return false;
  if (!any(c.proto, f.proto)) return false;
  if (c.icmp_type && !c.icmp_type.some((t) => ICMP_TYPES[t] === f.icmpType)) return false;
  if (c.nat_before !== undefined && c.nat_before !== f.nat) return false;
  return true;
}

const MAX_CACHED_SITES = 4096;

export class RuleEngine {
  /** Drop site (function) → the reason a drop there without one most likely had. */
  private readonly siteReasons: Map<string, string>;

  constructor(
    private readonly rules: Rule[],
    private readonly reasons: Map<string, ReasonEntry>,
    private readonly names: Names,
    /** The running kernel's drop reason names. */
    kernelReasons?: ReadonlySet<string>,
  ) {
    this.siteReasons = siteReasons(reasons, kernelReasons);
  }

  /** Drop location → its function: asked for every drop of a flood, and locations are few (bounded all the same). */
  private readonly siteCache = new Map<number, string>();

  /** The function a drop happened in (its location without offset and compiler suffixes). */
  siteOf(e: HookEvent): string {
    const key = addrKey(e.location.hi, e.location.lo);
    let site = this.siteCache.get(key);
    if (site === undefined) {
      if (this.siteCache.size >= MAX_CACHED_SITES) this.siteCache.clear();
      site = functionName(this.names.symbol(e.location.hi, e.location.lo));
      this.siteCache.set(key, site);
    }
    return site;
  }

  /** A drop's reason as the kernel gave it, else the one its location points to (kernels before 5.17 give none). */
  reasonOf(e: HookEvent): string | undefined {
    const given = this.names.reason(e.reason);
    return given && given !== "NOT_SPECIFIED" ? given : this.siteReasons.get(this.siteOf(e));
  }

  /** The drop-reason finding: the reason's entry, or for a drop without a precise reason the entry its location points to. */
  private dropFinding(l: HookLine, facts: Facts, group: string | undefined): Finding {
    const inferred = facts.inferred;
    const entry = this.reasons.get(inferred ?? facts.reason!);
    const summary = entry?.summary ?? `drop reason ${facts.reason}`;
    return {
      rule: "drop-reason",
      level: entry?.level ?? "warn",
      hook: l.name,
      group,
      message: `packet is dropped by kernel: ${summary}${inferred ? ` (inferred from where it was dropped, ${facts.location})` : ""}`,
      explanation: entry?.explanation,
      advice: entry?.advice,
      location: this.names.symbol(l.e.location.hi, l.e.location.lo),
      reason: facts.reason,
      inferred,
    };
  }

  private facts(l: HookLine, first: HookEvent): Facts {
    const e = l.e;
    const p = e.pkt;
    const facts: Facts = {
      hook: l.name,
      tracepoint: this.names.tracepoint(e),
      proto: (p.l3 === 0x0800 || p.l3 === 0x86dd ? l4Name(p.l4) : l3Name(p.l3)).toLowerCase(),
      icmpType: p.l3 === 0x0800 && p.l4 === 1 ? p.icmpType : undefined,
      nat: translated(first.pkt, p),
      retval: l.ret?.retval ?? (e.phase === hook_phase.PHASE_RETURN ? e.retval : undefined),
    };
    if (e.flags & HOOK_DROP) {
      facts.reason = this.names.reason(e.reason) ?? "NOT_SPECIFIED";
      facts.location = this.siteOf(e);
      if (facts.reason === "NOT_SPECIFIED") facts.inferred = this.siteReasons.get(facts.location);
    }
    if (e.tracepoint === tracepoint_id.TP_ICMP_SEND) facts.icmpSent = { type: e.info[0], code: e.info[1] };
    if (e.tracepoint === tracepoint_id.TP_TCP_SEND_RESET && e.info[0] >= 0) facts.rstReason = this.names.rstReason(e.info[0]);
    if (e.nf) {
      facts.nfFamily = NF_FAMILIES[e.nf.family] ?? String(e.nf.family);
      facts.nfHook = nfHookName(e.nf.family, e.nf.hook);
      facts.table = e.nf.table || undefined;
      facts.tableFamily = e.nf.table ? (NF_FAMILIES[e.nf.tableFamily] ?? String(e.nf.tableFamily)) : undefined;
      facts.chain = e.nf.chain || undefined;
    }
    return facts;
  }

  private fill(text: string, l: HookLine, f: Facts): string {
    const p = l.e.pkt;
    const values: Record<string, string | number | undefined> = {
      hook: f.hook, reason: f.reason, location: l.e.flags & HOOK_DROP ? this.names.symbol(l.e.location.hi, l.e.location.lo) : undefined,
      table: f.table, table_family: f.tableFamily, chain: f.chain, nf_family: f.nfFamily, nf_hook: f.nfHook, rst_reason: f.rstReason,
      icmp_sent: f.icmpSent ? icmpTypeText(false, f.icmpSent.type, f.icmpSent.code) : undefined,
      saddr: p.saddr, daddr: p.daddr, sport: p.sport, dport: p.dport, proto: f.proto, ifname: l.e.meta.ifname,
      retval: f.retval, ip_len: p.ipLen, netns: l.e.meta.netns,
    };
    return text.replace(/\{(\w+)\}/g, (_, k: string) => String(values[k] ?? "?"));
  }

  /** Findings of one packet, in the order of its hooks, without those other findings override. */
  diagnose(lines: HookLine[], group: (name: string) => string | undefined): Finding[] {
    if (!lines.length) return [];
    const first = lines[0]!.e;
    const all: { f: Finding; overrides: string[] }[] = [];
    const factsSoFar: Facts[] = [];
    for (const l of lines) {
      const facts = this.facts(l, first);
      if (facts.reason !== undefined) all.push({ f: this.dropFinding(l, facts, group(l.name)), overrides: [] });
      for (const r of this.rules) {
        // Connection rules are judged on whole connections (connections.ts).
        if (r.kind !== "packet" || !matches(r.when, facts)) continue;
        if (r.after && !factsSoFar.some((earlier) => matches(r.after!, earlier))) continue;
        all.push({
          f: { rule: r.id, level: r.level, hook: l.name, group: group(l.name), message: this.fill(r.message, l, facts), advice: r.advice && this.fill(r.advice, l, facts) },
          overrides: r.overrides,
        });
      }
      factsSoFar.push(facts);
    }
    const overridden = new Set(all.flatMap((x) => x.overrides));
    const kept = all.filter((x) => !overridden.has(x.f.rule)).map((x) => x.f);
    // One finding per rule and hook: a retransmitted packet repeats its path.
    const seen = new Set<string>();
    return kept.filter((f) => {
      const key = `${f.rule}|${f.hook}|${f.message}`;
      return seen.has(key) ? false : (seen.add(key), true);
    });
  }
}
