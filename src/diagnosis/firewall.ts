// Where tracepoints alone cannot name the nftables chain that dropped a
// packet (no function hooks on this kernel), the drop's kernel stack tells
// which netfilter hook ran it, and the ruleset of the packet's network
// namespace tells which chains sit on that hook. Read with the nft command
// in that namespace; without nft, the finding just says what to run.
import { existsSync, readdirSync, statSync } from "node:fs";

/** Netfilter hook from the frames of a drop's stack: the caller of nf_hook_slow. */
export function hookFromStack(frames: string[]): string | undefined {
  const at = frames.findIndex((f) => f.startsWith("nf_hook_slow+"));
  const caller = at >= 0 ? frames[at + 1]?.replace(/\+.*$/, "") : undefined;
  if (!caller) return undefined;
  const byCaller: Record<string, string> = {
    ip_rcv: "PRE_ROUTING", ipv6_rcv: "PRE_ROUTING", ip_local_deliver: "INPUT", ip6_input: "INPUT",
    ip_forward: "FORWARD", ip6_forward: "FORWARD", __ip_local_out: "OUTPUT", __ip6_local_out: "OUTPUT",
    ip_output: "POST_ROUTING", ip6_output: "POST_ROUTING", ip_finish_output: "POST_ROUTING",
  };
  return byCaller[caller];
}

/** A path that enters the network namespace with this inode (/run/netns/…, or a process's). */
export function netnsPath(inode: number): string | undefined {
  const candidates: string[] = [];
  if (existsSync("/run/netns")) candidates.push(...readdirSync("/run/netns").map((n) => `/run/netns/${n}`));
  candidates.push("/proc/self/ns/net");
  for (const pid of readdirSync("/proc")) if (/^\d+$/.test(pid)) candidates.push(`/proc/${pid}/ns/net`);
  for (const path of candidates) {
    try {
      if (statSync(path).ino === inode) return path;
    } catch {
      // the process went away
    }
  }
  return undefined;
}

export interface ChainSummary {
  family: string;
  table: string;
  chain: string;
  policy: string;
  /** Rules whose verdict is drop or reject, as nft prints them. */
  dropRules: string[];
}

interface NftJson {
  nftables: { chain?: { family: string; table: string; name: string; hook?: string; policy?: string }; rule?: { family: string; table: string; chain: string; expr: unknown[] } }[];
}

const HOOK_NAMES: Record<string, string> = { PRE_ROUTING: "prerouting", INPUT: "input", FORWARD: "forward", OUTPUT: "output", POST_ROUTING: "postrouting" };

/** The base chains on `hook` for this address family, with their drop rules. */
export function chainsOnHook(ruleset: NftJson, hook: string, ipv6: boolean): ChainSummary[] {
  const families = ipv6 ? ["inet", "ip6"] : ["inet", "ip"];
  const chains = ruleset.nftables
    .map((o) => o.chain)
    .filter((c): c is NonNullable<typeof c> => !!c && c.hook === HOOK_NAMES[hook] && families.includes(c.family));
  return chains.map((c) => ({
    family: c.family,
    table: c.table,
    chain: c.name,
    policy: c.policy ?? "accept",
    dropRules: ruleset.nftables
      .map((o) => o.rule)
      .filter((r): r is NonNullable<typeof r> => !!r && r.family === c.family && r.table === c.table && r.chain === c.name)
      .filter((r) => r.expr.some((x) => typeof x === "object" && x !== null && ("drop" in x || "reject" in x)))
      .map((r) => describeRule(r.expr)),
  }));
}

/** A compact text form of common nft JSON expressions ("udp dport 7777 drop"). */
function describeRule(expr: unknown[]): string {
  return expr
    .map((x) => {
      const e = x as Record<string, any>;
      if ("match" in e) {
        const left = e.match.left;
        const l = left?.payload ? `${left.payload.protocol} ${left.payload.field}` : left?.meta ? `meta ${left.meta.key}` : JSON.stringify(left);
        const op = e.match.op === "==" ? "" : `${e.match.op} `;
        return `${l} ${op}${typeof e.match.right === "object" ? JSON.stringify(e.match.right) : e.match.right}`;
      }
      return Object.keys(e)[0];
    })
    .join(" ");
}

/** Reads the ruleset of the namespace with this inode; undefined if nft is missing or fails. */
export async function readRuleset(inode: number): Promise<NftJson | undefined> {
  const ns = netnsPath(inode);
  if (!ns) return undefined;
  try {
    const proc = Bun.spawn(["nsenter", `--net=${ns}`, "nft", "-j", "list", "ruleset"], { stdout: "pipe", stderr: "ignore" });
    const text = await new Response(proc.stdout).text();
    if ((await proc.exited) !== 0) return undefined;
    return JSON.parse(text) as NftJson;
  } catch {
    return undefined;
  }
}
