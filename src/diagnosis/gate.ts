// skbtrail run's policy: which drops seen while a command ran are
// unexpected (and fail the pipeline), and the groups the report shows.
// Pure: the expect file's schema, matching, grouping and the verdict; no
// I/O and no presentation (src/output/report.ts renders it).
//
// A drop is unexpected unless an expect entry or --allow allows it, or its
// knowledge-base level is below --fail-on (default warn: normal socket-close
// purges, level info, never fail). An expect entry with `max` allows at most
// that many drops in all; past it, every group it matched is unexpected.
import { shown, usageError } from "../common/errors";
import { inCidr, parseCidr, type Cidr } from "../common/ip";
import { YamlDoc, type YamlMap } from "../common/yaml";
import type { DropEvent } from "../events/decode";
import { functionName, LEVELS, names, siteReasons, type Level, type ReasonEntry } from "./knowledge";
import type { Finding } from "./rules";

export const DEFAULT_FAIL_ON: Level = "warn";
/** Groups the report lists; drops of further groups are counted (and still fail the run when unexpected). */
export const MAX_GROUPS = 1000;
/** An expect file larger than this is surely not one. */
export const MAX_EXPECT_FILE_BYTES = 1 << 20;

const ENTRY_KEYS = ["reason", "location", "proto", "saddr", "daddr", "sport", "dport", "max", "why"];
const CONDITION_KEYS = ENTRY_KEYS.filter((k) => k !== "max" && k !== "why");

export interface PortRange {
  min: number;
  max: number;
}

/** One allowed kind of drop of an expect file; every condition given must hold. */
export interface ExpectEntry {
  reasons?: string[];
  /** Function names or globs ("nft_*"), matched against the function part of the location. */
  locations?: string[];
  /** Lowercase protocol names: the L4 protocol (udp, tcp, icmp…) or the L3 one (ipv4, ipv6, arp). */
  protos?: string[];
  saddr?: Cidr;
  daddr?: Cidr;
  sport?: PortRange;
  dport?: PortRange;
  /** At most this many drops in all; undefined: any number. */
  max?: number;
  why?: string;
  /** Where it was written: "expect.yaml:3". */
  where: string;
}

export interface ExpectFile {
  entries: ExpectEntry[];
  failOn?: Level;
}

/** Whether a YAML text is an expect file (a mapping with `expect:`) rather than a rule list: for `kb check`. */
export function looksLikeExpectFile(text: string, file: string): boolean {
  const root = new YamlDoc(file, text).root;
  return !!root && typeof root === "object" && !Array.isArray(root) && "expect" in root;
}

function address(doc: YamlDoc, m: YamlMap, key: string): Cidr | undefined {
  if (m[key] === undefined) return undefined;
  const text = typeof m[key] === "string" ? (m[key] as string) : "";
  const cidr = parseCidr(text);
  if (!cidr) throw doc.error(m, key, `'${shown(String(m[key]))}' is not an address or prefix; use e.g. 10.0.0.2, 10.0.0.0/24 or fd00::/64`);
  return cidr;
}

function ports(doc: YamlDoc, m: YamlMap, key: string): PortRange | undefined {
  const v = m[key];
  if (v === undefined) return undefined;
  const match = /^(\d+)(?:-(\d+))?$/.exec(String(v));
  const min = match ? Number(match[1]) : NaN;
  const max = match ? Number(match[2] ?? match[1]) : NaN;
  if ((typeof v !== "number" && typeof v !== "string") || !match || min < 1 || max > 65535 || min > max)
    throw doc.error(m, key, `'${shown(String(v))}' is not a port or range; use e.g. ${key}: 53 or ${key}: 1024-65535`);
  return { min, max };
}

/**
 * Loads an expect file: `expect:` (a list of entries) and optionally
 * `fail_on:`. Every mistake is one line naming file:line: key; `reasons`
 * are the drop reason names skbtrail knows.
 */
export function loadExpectFile(text: string, file: string, reasons: Set<string>): ExpectFile {
  const doc = new YamlDoc(file, text);
  const root = doc.map(doc.root, "an expect file", ["expect", "fail_on"], ["expect"]);
  if (!Array.isArray(root.expect)) throw doc.error(root, "expect", "must be a list of allowed drops (each a mapping of reason, location, proto, saddr, daddr, sport, dport, max, why)");
  const failOn = root.fail_on === undefined ? undefined : (doc.string(root, "fail_on", /^(info|warn|error)$/, "use info, warn or error") as Level);
  const entries = root.expect.map((node): ExpectEntry => {
    const m = doc.map(node, "an expected drop", ENTRY_KEYS);
    if (!CONDITION_KEYS.some((k) => k in m)) throw doc.error(m, undefined, `an expected drop needs at least one of ${CONDITION_KEYS.join(", ")}`);
    const e: ExpectEntry = { where: `${file}:${doc.line(m)}` };
    e.reasons = names(doc, m, "reason", (r) => (reasons.has(r) ? undefined : `'${r}' is not a drop reason (names as in knowledge/drop-reasons.yaml, e.g. NO_SOCKET)`));
    e.locations = names(doc, m, "location");
    e.protos = names(doc, m, "proto")?.map((p) => p.toLowerCase());
    e.saddr = address(doc, m, "saddr");
    e.daddr = address(doc, m, "daddr");
    e.sport = ports(doc, m, "sport");
    e.dport = ports(doc, m, "dport");
    if (m.max !== undefined) {
      if (typeof m.max !== "number" || !Number.isSafeInteger(m.max) || m.max < 0) throw doc.error(m, "max", "must be a whole number, 0 or more (the most drops allowed)");
      e.max = m.max;
    }
    e.why = doc.optionalString(m, "why");
    return e;
  });
  return { entries, failOn };
}

/** --allow names: known drop reasons, or one line naming the flag and the fix. */
export function checkAllowed(list: string[], reasons: Set<string>): string[] {
  return list.map((raw) => {
    const name = raw.toUpperCase().replace(/^SKB_DROP_REASON_/, "");
    if (!reasons.has(name)) {
      const close = [...reasons].filter((n) => n.includes(name) || name.includes(n)).slice(0, 3);
      throw usageError(`--allow: '${shown(raw)}' is not a drop reason${close.length ? `; did you mean ${close.join(", ")}?` : "; use names as skbtrail --drop shows them, e.g. --allow NO_SOCKET"}`);
    }
    return name;
  });
}

/** A drop as the policy sees it. */
export interface DropFacts {
  /** Name, or null on kernels before 5.17 (no reasons). */
  reason: string | null;
  /** "func+0xoff [module]". */
  location: string;
  /** As in the JSON output: "UDP", "TCP", "ICMP" … or the L3 name ("ARP", "IPv6"). */
  proto: string;
  /** "IPv4", "IPv6", "ARP", … */
  l3: string;
  saddr: string | null;
  daddr: string | null;
  sport: number | null;
  dport: number | null;
}

const glob = (pattern: string) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
const inRange = (port: number | null, r: PortRange) => port !== null && port >= r.min && port <= r.max;

export function entryMatches(e: ExpectEntry, d: DropFacts): boolean {
  if (e.reasons && (d.reason === null || !e.reasons.includes(d.reason))) return false;
  if (e.locations) {
    const fn = d.location.split("+")[0]!;
    if (!e.locations.some((l) => glob(l).test(fn))) return false;
  }
  if (e.protos && !e.protos.includes(d.proto.toLowerCase()) && !e.protos.includes(d.l3.toLowerCase())) return false;
  if (e.saddr && (d.saddr === null || !inCidr(d.saddr, e.saddr))) return false;
  if (e.daddr && (d.daddr === null || !inCidr(d.daddr, e.daddr))) return false;
  if (e.sport && !inRange(d.sport, e.sport)) return false;
  if (e.dport && !inRange(d.dport, e.dport)) return false;
  return true;
}

export interface GatePolicy {
  failOn: Level;
  /** Where failOn came from, for the report: "--fail-on", the expect file, or "default". */
  failOnFrom: string;
  /** --allow: reason names allowed in any number. */
  allow: string[];
  expect: ExpectEntry[];
}

export type GroupStatus = "unexpected" | "allowed" | "tolerated";

/** Drops of one (reason, location, protocol, destination) that the same policy decision covers. */
export interface DropGroup {
  reason: string | null;
  /** From the knowledge base; unknown reasons and kernels without reasons count as warn. */
  level: Level;
  summary: string;
  explanation: string;
  advice: string;
  location: string;
  proto: string;
  daddr: string | null;
  dport: number | null;
  count: number;
  firstNs: number;
  lastNs: number;
  /** The first drop of the group, as decoded. */
  example: DropEvent;
  /** --diag: the findings of the first packet that brought some. */
  findings?: Finding[];
  entry?: ExpectEntry;
  allowedByFlag: boolean;
  status: GroupStatus;
  /** Why it has its status, in words. */
  why: string;
}

const NO_REASON: ReasonEntry = {
  level: "warn",
  summary: "dropped (this kernel gives no drop reason: reasons came with Linux 5.17)",
  explanation: "Kernels before 5.17 do not say why they drop a packet; the location (function+offset) is the clue.",
  advice: "Look the location up, or rerun with --drop --drop-stack to see the call chain of the drop.",
};

const unknownReason = (name: string): ReasonEntry => ({
  level: "warn",
  summary: `drop reason ${name} (not in skbtrail's knowledge base)`,
  explanation: "This kernel has a drop reason skbtrail does not describe yet.",
  advice: `Look ${name} up in the kernel's include/net/dropreason-core.h; rerun with --drop --drop-stack to see where it happens.`,
});

const rank = (l: Level) => LEVELS.indexOf(l);

/** Collects the drops of a run into groups and decides what is unexpected. */
export class Gate {
  private readonly groups = new Map<string, DropGroup>();
  private readonly entryCounts = new Map<ExpectEntry, number>();
  /** Drops of groups past MAX_GROUPS: how many, and how many of them unexpected. */
  readonly overflow = { drops: 0, unexpected: 0 };
  drops = 0;

  private readonly siteReasons: Map<string, string>;

  constructor(
    readonly policy: GatePolicy,
    private readonly reasons: Map<string, ReasonEntry>,
    /** The running kernel's drop reason names. */
    kernelReasons?: ReadonlySet<string>,
  ) {
    this.siteReasons = siteReasons(reasons, kernelReasons);
  }

  /** The knowledge of a drop: its reason's, or for one without a precise reason, the reason its location stands for. */
  private knowledge(reason: string | null, location: string): ReasonEntry {
    const inferred = reason === null || reason === "NOT_SPECIFIED" ? this.siteReasons.get(functionName(location)) : undefined;
    const entry = inferred ? this.reasons.get(inferred) : undefined;
    if (entry) return { ...entry, summary: `${entry.summary} (most likely ${inferred}, inferred from the location: ${reason === null ? "this kernel gives no reason" : "the kernel said NOT_SPECIFIED"})` };
    if (reason === null) return NO_REASON;
    return this.reasons.get(reason) ?? unknownReason(reason);
  }

  /**
   * Counts one drop; returns what is known of it now: "unexpected" and
   * "allowed"/"tolerated" are final, "limited" means an expect entry with a
   * `max` allows it so far (it turns unexpected when the entry's count
   * passes its max: see exceeded()).
   */
  add(facts: DropFacts, example: () => DropEvent, timeNs: number, findings?: Finding[]): { verdict: GroupStatus | "limited"; entry?: ExpectEntry } {
    this.drops++;
    const entry = this.policy.expect.find((e) => entryMatches(e, facts));
    if (entry) this.entryCounts.set(entry, (this.entryCounts.get(entry) ?? 0) + 1);
    const key = `${facts.reason}|${facts.location}|${facts.proto}|${facts.daddr}|${facts.dport}|${entry ? this.policy.expect.indexOf(entry) : -1}`;
    let group = this.groups.get(key);
    const k = this.knowledge(facts.reason, facts.location);
    const allowedByFlag = !entry && facts.reason !== null && this.policy.allow.includes(facts.reason);
    const verdict: GroupStatus | "limited" = entry
      ? entry.max === undefined
        ? "allowed"
        : this.exceeded(entry) ? "unexpected" : "limited"
      : allowedByFlag
        ? "allowed"
        : rank(k.level) >= rank(this.policy.failOn) ? "unexpected" : "tolerated";
    if (!group) {
      if (this.groups.size >= MAX_GROUPS) {
        this.overflow.drops++;
        if (verdict === "unexpected") this.overflow.unexpected++;
        return { verdict, entry };
      }
      group = {
        reason: facts.reason, level: k.level, summary: k.summary, explanation: k.explanation, advice: k.advice,
        location: facts.location, proto: facts.proto, daddr: facts.daddr, dport: facts.dport,
        count: 0, firstNs: timeNs, lastNs: timeNs, example: example(), entry, allowedByFlag, status: "tolerated", why: "",
      };
      this.groups.set(key, group);
    }
    group.count++;
    group.lastNs = Math.max(group.lastNs, timeNs);
    group.findings ??= findings;
    return { verdict, entry };
  }

  /** Whether an expect entry with a max has allowed more drops than its max. */
  exceeded(entry: ExpectEntry): boolean {
    return entry.max !== undefined && (this.entryCounts.get(entry) ?? 0) > entry.max;
  }

  /** The groups with their final status, unexpected first, then by count. */
  result(): DropGroup[] {
    const p = this.policy;
    for (const g of this.groups.values()) {
      if (g.entry) {
        const seen = this.entryCounts.get(g.entry) ?? 0;
        if (this.exceeded(g.entry)) {
          g.status = "unexpected";
          g.why = `${seen} drops matched ${g.entry.where}, which allows at most ${g.entry.max}`;
        } else {
          g.status = "allowed";
          g.why = `allowed by ${g.entry.where}${g.entry.max !== undefined ? ` (${seen} of at most ${g.entry.max})` : ""}${g.entry.why ? `: ${g.entry.why}` : ""}`;
        }
      } else if (g.allowedByFlag) {
        g.status = "allowed";
        g.why = `allowed by --allow ${g.reason}`;
      } else if (rank(g.level) >= rank(p.failOn)) {
        g.status = "unexpected";
        g.why = `level ${g.level} is at or above the failure level ${p.failOn} (${p.failOnFrom}), and nothing allows it`;
      } else {
        g.status = "tolerated";
        g.why = `level ${g.level} is below the failure level ${p.failOn} (${p.failOnFrom})`;
      }
    }
    const order: Record<GroupStatus, number> = { unexpected: 0, allowed: 1, tolerated: 2 };
    return [...this.groups.values()].sort((a, b) => order[a.status] - order[b.status] || b.count - a.count || a.firstNs - b.firstNs);
  }
}
