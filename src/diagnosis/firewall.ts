// Where tracepoints alone cannot name the nftables chain that dropped a
// packet (no function hooks on this kernel), the drop's kernel stack tells
// which netfilter hook ran it, and the ruleset of the packet's network
// namespace tells which chains sit on that hook. The ruleset is read with
// the nft command in that namespace (./system.ts).
import { netnsPath, runInNetns } from "./system";

/** A netfilter hook named three ways: its family ("ipv4", "bridge"…), its hook in that family, and nft's word for it. */
export interface NfHookNames {
  family: string;
  hook: string;
  nftHook: string;
}

/** Callers of nf_hook_slow (the NF_HOOK sites, inlined) → family (inet: the packet's) and hook. */
const HOOK_CALLERS: Record<string, [family: string, hook: string, nftHook: string]> = {
  ip_rcv: ["inet", "PRE_ROUTING", "prerouting"], ipv6_rcv: ["inet", "PRE_ROUTING", "prerouting"],
  ip_local_deliver: ["inet", "INPUT", "input"], ip6_input: ["inet", "INPUT", "input"],
  ip_forward: ["inet", "FORWARD", "forward"], ip6_forward: ["inet", "FORWARD", "forward"],
  __ip_local_out: ["inet", "OUTPUT", "output"], __ip6_local_out: ["inet", "OUTPUT", "output"],
  ip_output: ["inet", "POST_ROUTING", "postrouting"], ip6_output: ["inet", "POST_ROUTING", "postrouting"], ip_finish_output: ["inet", "POST_ROUTING", "postrouting"],
  br_handle_frame: ["bridge", "PRE_ROUTING", "prerouting"], br_pass_frame_up: ["bridge", "INPUT", "input"],
  __br_forward: ["bridge", "FORWARD", "forward"], br_forward_finish: ["bridge", "POST_ROUTING", "postrouting"],
  __netif_receive_skb_core: ["netdev", "INGRESS", "ingress"], __dev_queue_xmit: ["netdev", "EGRESS", "egress"],
  arp_rcv: ["arp", "IN", "input"], arp_xmit: ["arp", "OUT", "output"],
};

/**
 * The netfilter hook that dropped, from the frames of the drop's stack: the
 * caller of nf_hook_slow (bridge, netdev and arp hooks included). A bridge
 * device's own packets pass __br_forward on its OUTPUT hook.
 */
export function hookFromStack(frames: string[], ipv6: boolean): NfHookNames | undefined {
  const caller = hookCaller(frames);
  const known = caller ? HOOK_CALLERS[caller] : undefined;
  if (!known) return undefined;
  const [family, hook, nftHook] = caller === "__br_forward" && frames.some((f) => f.startsWith("br_dev_xmit+")) ? ["bridge", "OUTPUT", "output"] : known;
  return { family: family === "inet" ? (ipv6 ? "ipv6" : "ipv4") : family, hook, nftHook };
}

/** The function that called nf_hook_slow, in the drop's stack ("arp_rcv"); undefined when the stack has no nf_hook_slow. */
export function hookCaller(frames: string[]): string | undefined {
  const at = frames.findIndex((f) => f.startsWith("nf_hook_slow+"));
  return at >= 0 ? frames[at + 1]?.replace(/\+.*$/, "").replace(/\.(constprop|isra|part)\.\d+$/, "") : undefined;
}

/**
 * An ARP packet's netfilter hook where its stack does not name it (a stack
 * unwound only part of the way): the arp family has one hook per direction,
 * IN where a received packet reaches arp_rcv and OUT where arp_xmit sends.
 * `groups`: the tracer-tree groups of the packet's hooks before the drop, in
 * order; the last link-in (received) or link-out (sent) one says which.
 */
export function arpHookFromPath(groups: (string | undefined)[]): NfHookNames {
  const last = groups.findLast((g) => g === "link-in" || g === "link-out");
  return last === "link-in" ? { family: "arp", hook: "IN", nftHook: "input" } : { family: "arp", hook: "OUT", nftHook: "output" };
}

export interface ChainSummary {
  family: string;
  table: string;
  chain: string;
  policy: string;
  /** Rules whose verdict is drop or reject, in nft's own syntax. */
  dropRules: string[];
  /** Those of them that drop what conntrack calls INVALID (`ct state invalid drop`). */
  invalidRules: string[];
}

interface NftChain {
  family: string;
  table: string;
  name: string;
  hook?: string;
  policy?: string;
}

interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  expr: unknown[];
}

/** A namespace's ruleset: structure from `nft -j`, rules as `nft -a` prints them. */
export interface Ruleset {
  nftables: { chain?: NftChain; rule?: NftRule }[];
  /** "family table chain handle" → the rule in nft syntax. */
  text: Map<string, string>;
}

const ruleKey = (family: string, table: string, chain: string, handle: number) => `${family} ${table} ${chain} ${handle}`;

/** Rules of `nft -a list ruleset` by table, chain and handle. */
export function parseRuleText(text: string): Map<string, string> {
  const rules = new Map<string, string>();
  let table: [string, string] | undefined;
  let chain: string | undefined;
  for (const line of text.split("\n")) {
    const t = /^table (\S+) (\S+) \{/.exec(line);
    if (t) {
      table = [t[1]!, t[2]!];
      chain = undefined;
      continue;
    }
    const c = /^\tchain (\S+) \{/.exec(line);
    if (c) {
      chain = c[1];
      continue;
    }
    if (/^\t\}/.test(line)) chain = undefined;
    const r = /^\t\t(.*\S) # handle (\d+)$/.exec(line);
    if (r && table && chain) rules.set(ruleKey(table[0], table[1], chain, Number(r[2])), r[1]!);
  }
  return rules;
}

/** The nft table families whose chains see a packet of this netfilter family ("ipv4", "bridge"…). */
export function tableFamilies(nfFamily: string): string[] {
  switch (nfFamily) {
    case "ipv4": return ["inet", "ip"];
    case "ipv6": return ["inet", "ip6"];
    default: return [nfFamily]; // bridge, arp, netdev tables see only their own family
  }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null;

/** A drop or reject verdict among the rule's statements. */
const drops = (r: NftRule) => r.expr.some((x) => isObject(x) && ("drop" in x || "reject" in x));

/**
 * Does the rule match packets conntrack calls INVALID? nft -j writes
 * `ct state invalid` as {"match": {"op": "in", "left": {"ct": {"key": "state"}},
 * "right": "invalid"}}, with a list or {"set": […]} for several states.
 */
function matchesInvalid(r: NftRule): boolean {
  return r.expr.some((x) => {
    const m = isObject(x) && isObject(x.match) ? x.match : undefined;
    if (!m || m.op === "!=" || !isObject(m.left) || !isObject(m.left.ct) || m.left.ct.key !== "state") return false;
    const right = isObject(m.right) && Array.isArray(m.right.set) ? m.right.set : m.right;
    return Array.isArray(right) ? right.includes("invalid") : right === "invalid";
  });
}

/**
 * The base chains on a hook (as nft names it: "input", "prerouting",
 * "ingress"…) that see packets of this netfilter family, with their drop rules.
 */
export function chainsOnHook(ruleset: Ruleset, nftHook: string, nfFamily: string): ChainSummary[] {
  const families = tableFamilies(nfFamily);
  const chains = ruleset.nftables
    .map((o) => o.chain)
    .filter((c): c is NftChain => !!c && c.hook === nftHook && families.includes(c.family));
  const text = (r: NftRule) => ruleset.text.get(ruleKey(r.family, r.table, r.chain, r.handle)) ?? `(rule handle ${r.handle})`;
  return chains.map((c) => {
    const dropping = ruleset.nftables
      .map((o) => o.rule)
      .filter((r): r is NftRule => !!r && r.family === c.family && r.table === c.table && r.chain === c.name)
      .filter(drops);
    return {
      family: c.family,
      table: c.table,
      chain: c.name,
      policy: c.policy ?? "accept",
      dropRules: dropping.map(text),
      invalidRules: dropping.filter(matchesInvalid).map(text),
    };
  });
}

/** Reads the ruleset of the namespace with this inode; undefined if nft is missing, fails or is too slow. */
export async function readRuleset(inode: number): Promise<Ruleset | undefined> {
  const ns = netnsPath(inode);
  if (!ns) return undefined;
  const [json, text] = await Promise.all([runInNetns(ns, ["nft", "-j", "list", "ruleset"]), runInNetns(ns, ["nft", "-a", "list", "ruleset"])]);
  if (json === undefined || text === undefined) return undefined;
  return { ...(JSON.parse(json) as Pick<Ruleset, "nftables">), text: parseRuleText(text) };
}
