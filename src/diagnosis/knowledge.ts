// The diagnosis knowledge base: knowledge/drop-reasons.yaml (what each
// enum skb_drop_reason means and what to do about it) and
// knowledge/rules.yaml (findings about hooks, return values, tracepoint
// arguments and whole packet lives). Both are validated when loaded: a
// mistake is an error naming file, line and key. Everything matches by
// name; no rule holds a kernel number.
import { YamlDoc, type YamlMap } from "../common/yaml";
import { NF_HOOK_NAMES } from "../events/netfilter";

export type Level = "info" | "warn" | "error";
export const LEVELS: Level[] = ["info", "warn", "error"];

export interface ReasonEntry {
  level: Level;
  summary: string;
  explanation: string;
  advice: string;
  kernels?: string;
  /** Functions that drop mostly for this reason (a reasonless drop there is explained by it). */
  sites?: string[];
}

/** Return values by meaning: netfilter and XDP verdicts, signs, errno names. */
export const RETURN_MEANINGS = [
  "NF_DROP", "NF_ACCEPT", "NF_STOLEN", "NF_QUEUE", "NF_REPEAT", "NF_STOP",
  "XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT",
  "zero", "non-zero", "negative", "positive",
] as const;
const ERRNO = /^-E[A-Z0-9]+$/;

/** ICMP errors the kernel sends (icmp:icmp_send), by name. */
export const ICMP_SENT: Record<string, { type: number; code?: number }> = {
  "net-unreachable": { type: 3, code: 0 },
  "host-unreachable": { type: 3, code: 1 },
  "protocol-unreachable": { type: 3, code: 2 },
  "port-unreachable": { type: 3, code: 3 },
  "fragmentation-needed": { type: 3, code: 4 },
  "admin-prohibited": { type: 3, code: 13 },
  "destination-unreachable": { type: 3 },
  "ttl-exceeded": { type: 11, code: 0 },
  "reassembly-timeout": { type: 11, code: 1 },
  "parameter-problem": { type: 12 },
  redirect: { type: 5 },
  any: { type: -1 },
};

/** ICMP message types a rule can name (icmp_type), IPv4. */
export const ICMP_TYPES: Record<string, number> = { "echo-reply": 0, "dest-unreachable": 3, redirect: 5, "echo-request": 8, "time-exceeded": 11 };


export interface Conditions {
  hook?: string[];
  drop_reason?: string[];
  location?: string[];
  return?: string;
  icmp_sent?: string[];
  rst_reason?: string[];
  nf_hook?: string;
  proto?: string[];
  /** The packet's ICMP type (echo-reply…). */
  icmp_type?: string[];
  /** The packet's addresses or ports changed before this event (NAT). */
  nat_before?: boolean;
  // Connection rules (--sock --diag): facts of one whole connection, matched at its summary.
  /** How it ended: fin, reset_sent, reset_received, closed, open, evicted. */
  end?: string[];
  /** It reached ESTABLISHED. */
  established?: boolean;
  /** At least this many: SYNs retransmitted, segments retransmitted, retransmission timeouts (moves into CA_Loss). */
  syn_retransmits?: number;
  retransmits?: number;
  timeouts?: number;
  /** The largest smoothed RTT is at least this many times the minimum RTT … */
  srtt_over_min?: number;
  /** … and at least this many milliseconds. */
  srtt_ms?: number;
  /** At least this many: receive buffer full (sock_rcvqueue_full), protocol memory limit reached (sock_exceed_buf_limit). */
  rcvqueue_full?: number;
  buf_limit?: number;
  /** At least this many: connection attempts a listener's full accept queue made the kernel drop (TcpExt ListenOverflows), connections waiting to be accepted at the end. */
  listen_overflows?: number;
  accept_queue?: number;
  /** At least this many SYNs a listener dropped for its full accept queue, seen as they arrived (tcp_conn_request: function hooks). */
  queue_full_syns?: number;
  /** At least this many zero-window probes sent (tcp_send_probe0: function hooks). */
  zero_window_probes?: number;
  /** An error reported to the application, by errno name (ECONNREFUSED), or any. */
  error?: string[];
}

/** What a rule is about: one packet's life (hook events), or one connection (--sock --diag). */
export type RuleKind = "packet" | "connection";

export interface Rule {
  id: string;
  kind: RuleKind;
  level: Level;
  when: Conditions;
  /** Another event of the same packet, earlier, must match these. */
  after?: Conditions;
  message: string;
  advice?: string;
  /** Findings (rule ids, or "drop-reason") this one makes redundant for the packet. */
  overrides: string[];
  file: string;
  line: number;
}

const RULE_ID = /^[a-z0-9][a-z0-9-]*$/;
/** Names in knowledge and expect files: reasons, functions, tracepoints (net:netif_rx), globs (nf_*). */
const NAME = /^[A-Za-z0-9_:.*+-]+$/;
/** Conditions on one hook event of a packet. */
const PACKET_KEYS = ["hook", "drop_reason", "location", "return", "icmp_sent", "icmp_type", "nf_hook", "nat_before"];
/** Conditions on a whole connection that are minimums (the condition holds at or above the number). */
const CONNECTION_MINIMUMS = [
  "syn_retransmits", "retransmits", "timeouts", "srtt_over_min", "srtt_ms", "rcvqueue_full", "buf_limit", "listen_overflows", "accept_queue", "queue_full_syns", "zero_window_probes",
] as const;
/** Conditions on a whole connection. */
const CONNECTION_KEYS = ["end", "established", ...CONNECTION_MINIMUMS, "error"];
/** Conditions both kinds of rule take. */
const SHARED_KEYS = ["rst_reason", "proto"];
const CONDITION_KEYS = [...PACKET_KEYS, ...SHARED_KEYS, ...CONNECTION_KEYS];
export const CONNECTION_ENDS = ["fin", "reset_sent", "reset_received", "timeout", "closed", "open", "evicted"];
export const PLACEHOLDERS = ["hook", "reason", "location", "table", "table_family", "chain", "nf_family", "nf_hook", "rst_reason", "icmp_sent", "saddr", "daddr", "sport", "dport", "proto", "ifname", "retval", "ip_len", "netns"];
/** Placeholders of connection rules: the connection's endpoints and its figures. */
export const CONNECTION_PLACEHOLDERS = [
  "saddr", "daddr", "sport", "dport", "proto", "netns", "rst_reason", "end", "retransmits", "syn_retransmits", "timeouts",
  "srtt_max", "min_rtt", "rcvqueue_full", "buf_limit", "rcvbuf", "listen_overflows", "accept_queue", "queue_full_syns", "backlog", "zero_window_probes", "error",
];

export function loadDropReasons(text: string, file: string): Map<string, ReasonEntry> {
  const doc = new YamlDoc(file, text);
  if (!doc.root || typeof doc.root !== "object" || Array.isArray(doc.root)) throw doc.error(doc.root, undefined, "the drop reason file maps reason names to entries");
  const root = doc.root as YamlMap;
  const out = new Map<string, ReasonEntry>();
  const siteOf = new Map<string, string>();
  for (const [name, node] of Object.entries(root)) {
    if (!/^[A-Z0-9_]+$/.test(name)) throw doc.error(root, name, "a drop reason is written like NO_SOCKET (the enum name without SKB_DROP_REASON_)");
    const m = doc.map(node, `drop reason ${name}`, ["level", "summary", "explanation", "advice", "kernels", "sites"], ["level", "summary", "explanation", "advice"]);
    const sites = names(doc, m, "sites", (site) => {
      const other = siteOf.get(site);
      return other ? `'${site}' is already a site of ${other}; a function is the site of one reason only` : (siteOf.set(site, name), undefined);
    });
    out.set(name, {
      level: level(doc, m),
      summary: doc.string(m, "summary"),
      explanation: doc.string(m, "explanation"),
      advice: doc.string(m, "advice"),
      kernels: doc.optionalString(m, "kernels"),
      sites,
    });
  }
  return out;
}

/**
 * Drop site (function) → the reason a drop there without one most likely had (ReasonEntry.sites).
 * Reasons the running kernel has are left out: a kernel that has NO_SOCKET and still said
 * NOT_SPECIFIED in tcp_v4_rcv meant another cause (before 5.17 a kernel has none: every site counts).
 */
export function siteReasons(reasons: Map<string, ReasonEntry>, kernelReasons: ReadonlySet<string> = new Set()): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, entry] of reasons) if (!kernelReasons.has(name)) for (const site of entry.sites ?? []) out.set(site, name);
  return out;
}

/** A kernel function's name from a symbol, without offset and the compiler's suffixes (tcp_v4_rcv.cold, ip_rcv_core.isra.0). */
export const functionName = (symbol: string) => symbol.replace(/[+ ].*$/, "").replace(/\.(cold|constprop|isra|part|llvm)(\.\d+)?/g, "");

function level(doc: YamlDoc, m: YamlMap): Level {
  return doc.string(m, "level", /^(info|warn|error)$/, "use info, warn or error") as Level;
}

/** A name or a list of names. */
export function names(doc: YamlDoc, m: YamlMap, key: string, check?: (name: string) => string | undefined): string[] | undefined {
  const v = m[key];
  if (v === undefined) return undefined;
  const list = Array.isArray(v) ? v : [v];
  if (!list.length || list.some((x) => typeof x !== "string" || !NAME.test(x))) throw doc.error(m, key, "must be a name or a list of names");
  for (const x of list as string[]) {
    const problem = check?.(x);
    if (problem) throw doc.error(m, key, problem);
  }
  return list as string[];
}

export interface KnownNames {
  /** Every drop reason name skbtrail knows (the drop reason file). */
  reasons: Set<string>;
  /** Hook names: tracer tree functions, tracepoints as "category:event" and "event"; undefined: not checked. */
  hooks?: Set<string>;
  /** Whether the running kernel has a function of this name (rules may name any function -t can trace). */
  kernelFunction?: (name: string) => boolean;
  /** When set, a hook nobody knows is a warning collected here instead of an error. */
  warnings?: string[];
}

function conditions(doc: YamlDoc, node: unknown, what: string, known: KnownNames): Conditions {
  const m = doc.map(node, what, CONDITION_KEYS);
  if (!Object.keys(m).length) throw doc.error(m, undefined, `${what} needs at least one condition (${CONDITION_KEYS.join(", ")})`);
  const c: Conditions = {};
  c.hook = names(doc, m, "hook", (h) => {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$|^[a-z0-9_]+:[a-z0-9_]+$/.test(h)) return `'${h}' is not a function or tracepoint name`;
    if (!known.hooks || known.hooks.has(h) || known.kernelFunction?.(h)) return undefined;
    const problem = `'${h}' is neither in the tracer tree nor a tracepoint skbtrail traces${known.kernelFunction ? " nor a function of this kernel" : ""}`;
    if (!known.warnings) return problem;
    known.warnings.push(`${doc.file}:${doc.line(m, "hook")}: hook: ${problem}; the rule matches only where that hook is traced (-t)`);
    return undefined;
  });
  c.drop_reason = names(doc, m, "drop_reason", (r) => (r === "any" || known.reasons.has(r) ? undefined : `'${r}' is not a drop reason of any supported kernel`));
  c.location = names(doc, m, "location");
  c.rst_reason = names(doc, m, "rst_reason");
  c.proto = names(doc, m, "proto");
  if (m.return !== undefined) {
    const r = doc.string(m, "return");
    if (!(RETURN_MEANINGS as readonly string[]).includes(r) && !ERRNO.test(r))
      throw doc.error(m, "return", `'${r}' is not a return value meaning: use ${RETURN_MEANINGS.join(", ")} or an errno like -EINVAL`);
    c.return = r;
  }
  c.icmp_sent = names(doc, m, "icmp_sent", (r) => (ICMP_SENT[r] ? undefined : `'${r}' is not an ICMP error name: use ${Object.keys(ICMP_SENT).join(", ")}`));
  c.icmp_type = names(doc, m, "icmp_type", (t) => (t in ICMP_TYPES ? undefined : `'${t}' is not an ICMP type name: use ${Object.keys(ICMP_TYPES).join(", ")}`));
  if (m.nf_hook !== undefined) {
    const r = doc.string(m, "nf_hook");
    if (!NF_HOOK_NAMES.includes(r)) throw doc.error(m, "nf_hook", `'${r}' is not a netfilter hook: use ${NF_HOOK_NAMES.join(", ")}`);
    c.nf_hook = r;
  }
  if (m.nat_before !== undefined) c.nat_before = doc.boolean(m, "nat_before", false);
  c.end = names(doc, m, "end", (e) => (CONNECTION_ENDS.includes(e) ? undefined : `'${e}' is not how a connection ends: use ${CONNECTION_ENDS.join(", ")}`));
  if (m.established !== undefined) c.established = doc.boolean(m, "established", false);
  for (const key of CONNECTION_MINIMUMS) {
    if (m[key] === undefined) continue;
    const v = m[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw doc.error(m, key, "must be a number, at least 0 (the condition holds at or above it)");
    c[key] = v;
  }
  c.error = names(doc, m, "error", (e) => (e === "any" || /^E[A-Z0-9]+$/.test(e) ? undefined : `'${e}' is not an errno name: use one like ECONNREFUSED, or any`));
  return c;
}

/** A rule's kind from its conditions: connection conditions and packet ones do not mix. */
function ruleKind(doc: YamlDoc, m: YamlMap, id: string): RuleKind {
  const when = m.when as YamlMap;
  const packet = PACKET_KEYS.filter((k) => k in when);
  const connection = CONNECTION_KEYS.filter((k) => k in when);
  if (packet.length && connection.length)
    throw doc.error(m, "when", `rule ${id} mixes packet conditions (${packet.join(", ")}) with connection conditions (${connection.join(", ")}): split it in two rules`);
  if (connection.length && m.after !== undefined) throw doc.error(m, "after", `rule ${id} is about a connection: 'after' is for the events of one packet`);
  return connection.length ? "connection" : "packet";
}

function template(doc: YamlDoc, m: YamlMap, key: string, kind: RuleKind): string {
  const text = doc.string(m, key);
  const allowed = kind === "connection" ? CONNECTION_PLACEHOLDERS : PLACEHOLDERS;
  for (const [, name] of text.matchAll(/\{([^}]*)\}/g))
    if (!allowed.includes(name!)) throw doc.error(m, key, `unknown placeholder {${name}}${kind === "connection" ? " in a connection rule" : ""}: use ${allowed.map((p) => `{${p}}`).join(", ")}`);
  return text;
}

/**
 * Loads a rule file. `otherIds` are the rules loaded before it, which its
 * rules may override (besides "drop-reason" and each other).
 */
export function loadRules(text: string, file: string, known: KnownNames, otherIds: Set<string> = new Set()): Rule[] {
  const doc = new YamlDoc(file, text);
  if (!Array.isArray(doc.root)) throw doc.error(doc.root, undefined, "a rule file is a list of rules (an expect file for skbtrail run is a mapping with the key 'expect')");
  const ids = new Set<string>();
  const nodes = new Map<Rule, YamlMap>();
  const rules = doc.root.map((node) => {
    const m = doc.map(node, "a rule", ["id", "level", "when", "after", "message", "advice", "overrides"], ["id", "level", "when", "message"]);
    const id = doc.string(m, "id", RULE_ID, "lowercase letters, digits and -");
    if (ids.has(id)) throw doc.error(m, "id", `'${id}' is used twice`);
    ids.add(id);
    const when = conditions(doc, m.when, `the conditions of rule ${id}`, known);
    const kind = ruleKind(doc, m, id);
    const rule: Rule = {
      id,
      kind,
      level: level(doc, m),
      when,
      after: m.after === undefined ? undefined : conditions(doc, m.after, `the 'after' conditions of rule ${id}`, known),
      message: template(doc, m, "message", kind),
      advice: m.advice === undefined ? undefined : template(doc, m, "advice", kind),
      overrides: names(doc, m, "overrides") ?? [],
      file,
      line: doc.line(m),
    };
    nodes.set(rule, m);
    return rule;
  });
  for (const [rule, m] of nodes)
    for (const o of rule.overrides)
      if (o !== "drop-reason" && !ids.has(o) && !otherIds.has(o))
        throw doc.error(m, "overrides", `'${o}' names no rule (use a rule id, or drop-reason for the drop's general explanation)`);
  return rules;
}
