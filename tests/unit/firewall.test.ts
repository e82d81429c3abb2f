// The nftables side of --diag on a real ruleset (tests/fixtures/nft-ruleset.*,
// printed by nft 1.0.6 as `nft -j list ruleset` and `nft -a list ruleset`):
// chains by hook and family, drop rules in nft's own syntax, and the
// per-namespace cache that keeps a flood of drops from running nft per packet.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { arpHookFromPath, chainsOnHook, hookCaller, hookFromStack, parseRuleText, type Ruleset } from "../../src/diagnosis/firewall";
import { BackgroundReads } from "../../src/diagnosis/system";
import { NFPROTO, nftHookName } from "../../src/events/netfilter";

const dir = `${import.meta.dir}/../fixtures`;
const ruleset: Ruleset = {
  ...JSON.parse(readFileSync(`${dir}/nft-ruleset.json`, "utf8")),
  text: parseRuleText(readFileSync(`${dir}/nft-ruleset.txt`, "utf8")),
};

describe("chains on a hook", () => {
  test("an IPv4 packet at input meets the inet chain; its drop and reject rules read as nft writes them", () => {
    expect(chainsOnHook(ruleset, "input", "ipv4")).toEqual([
      {
        family: "inet", table: "t1", chain: "input", policy: "accept",
        dropRules: ["ct state invalid drop", "ip saddr @blocked drop", "tcp dport 8080 reject with tcp reset", 'udp dport { 53, 54 } counter packets 0 bytes 0 drop comment "no dns"'],
        invalidRules: ["ct state invalid drop"],
      },
    ]);
  });

  test("an IPv6 packet meets the inet and ip6 chains; policy drop counts", () => {
    expect(chainsOnHook(ruleset, "input", "ipv6").map((c) => `${c.family} ${c.table} ${c.chain}: ${c.dropRules.join("; ")}`)).toEqual([
      "inet t1 input: ct state invalid drop; ip saddr @blocked drop; tcp dport 8080 reject with tcp reset; udp dport { 53, 54 } counter packets 0 bytes 0 drop comment \"no dns\"",
      "ip6 t6 in6: icmpv6 type echo-request drop",
    ]);
    expect(chainsOnHook(ruleset, "forward", "ipv4")).toMatchObject([{ chain: "forward", policy: "drop", dropRules: [] }]);
  });

  test("rules that drop what conntrack calls INVALID: a state, a list or a set that includes it, never its negation or an accept", () => {
    const chain = { family: "inet", table: "t", name: "input", hook: "input", policy: "accept" };
    const rule = (handle: number, right: unknown, op = "in", verdict: Record<string, null> = { drop: null }) => ({
      rule: { family: "inet", table: "t", chain: "input", handle, expr: [{ match: { op, left: { ct: { key: "state" } }, right } }, verdict] },
    });
    const rules: Ruleset = {
      nftables: [
        { chain },
        rule(2, "invalid"),
        rule(3, ["invalid", "untracked"]),
        rule(4, { set: ["untracked", "invalid"] }, "=="),
        rule(5, "invalid", "!="),
        rule(6, ["established", "related"]),
        rule(7, "invalid", "in", { accept: null }),
        rule(8, "invalid", "in", { reject: null }),
      ],
      text: new Map(),
    };
    expect(chainsOnHook(rules, "input", "ipv4")[0]!.invalidRules).toEqual(["(rule handle 2)", "(rule handle 3)", "(rule handle 4)", "(rule handle 8)"]);
  });

  test("a bridged packet meets only bridge chains", () => {
    expect(chainsOnHook(ruleset, "forward", "bridge")).toMatchObject([{ family: "bridge", table: "b1", chain: "fw", policy: "drop" }]);
  });

  test("the hook from the drop's stack: the caller of nf_hook_slow", () => {
    expect(hookFromStack(["kfree_skb_reason+0x1", "nf_hook_slow+0x9b", "ip_local_deliver+0x4d", "ip_rcv+0x12"], false)).toEqual({ family: "ipv4", hook: "INPUT", nftHook: "input" });
    expect(hookFromStack(["nf_hook_slow+0x9b", "ip6_forward+0x33"], true)).toEqual({ family: "ipv6", hook: "FORWARD", nftHook: "forward" });
    // A bridge-family drop, as this host's 6.18 records it.
    const bridged = ["sk_skb_reason_drop+0x90", "nft_do_chain+0x46f", "nft_do_chain_bridge+0x216", "nf_hook_slow+0x43", "__br_forward+0xe6", "br_handle_frame_finish+0x392"];
    expect(hookFromStack(bridged, false)).toEqual({ family: "bridge", hook: "FORWARD", nftHook: "forward" });
    expect(hookFromStack([...bridged, "br_dev_xmit+0x2a"], false)).toMatchObject({ hook: "OUTPUT" });
    expect(hookFromStack(["nf_hook_slow+0x43", "__netif_receive_skb_core.constprop.0+0x1e1"], false)).toEqual({ family: "netdev", hook: "INGRESS", nftHook: "ingress" });
    expect(hookFromStack(["nf_hook_slow+0x43", "arp_rcv+0x10"], false)).toEqual({ family: "arp", hook: "IN", nftHook: "input" });
    expect(hookFromStack(["kfree_skb+0x1", "udp_rcv+0x10"], false)).toBeUndefined();
  });

  test("an ARP packet whose stack does not name the hook: its direction does (IN on receive, OUT when sent)", () => {
    // Seen once on 5.10 under emulation: a stack whose frame after nf_hook_slow was not arp_rcv.
    expect(hookCaller(["kfree_skb+0x75", "nf_hook_slow+0x93", "arp_rcv+0x172"])).toBe("arp_rcv");
    expect(hookCaller(["kfree_skb+0x75", "__netif_receive_skb_one_core+0x92"])).toBeUndefined();
    // The groups (tracer tree) of a's transmit and b's receive over a veth pair, as the failing run traced them.
    const received = ["link-out", "link-out", "link-out", "link-in", "link-in", "link-out", "link-in", "link-in"];
    expect(arpHookFromPath(received)).toEqual({ family: "arp", hook: "IN", nftHook: "input" });
    expect(arpHookFromPath([])).toEqual({ family: "arp", hook: "OUT", nftHook: "output" });
    expect(arpHookFromPath([...received, "link-out", undefined])).toMatchObject({ hook: "OUT" });
  });

  test("the hook nf_hook_slow was called for, as nft names it: the same words the stack gives (arp's IN is 'input')", () => {
    expect(nftHookName(NFPROTO.ARP, 0)).toBe("input");
    expect(nftHookName(NFPROTO.ARP, 1)).toBe("output");
    expect(nftHookName(NFPROTO.IPV4, 0)).toBe("prerouting");
    expect(nftHookName(NFPROTO.IPV6, 4)).toBe("postrouting");
    expect(nftHookName(NFPROTO.NETDEV, 0)).toBe("ingress");
    expect(nftHookName(NFPROTO.BRIDGE, 2)).toBe("forward");
  });
});

describe("background reads (rulesets, routes)", () => {
  test("one read per namespace while it is fresh; reads in the background; a failed read is known", async () => {
    const reads: number[] = [];
    let release!: () => void;
    const cache = new BackgroundReads<number, Ruleset>((inode) => {
      reads.push(inode);
      return new Promise((resolve) => (release = () => resolve(inode === 1 ? ruleset : undefined)));
    });
    cache.want(1);
    cache.want(1);
    expect(cache.get(1)).toBeUndefined(); // still reading
    release();
    await cache.settled();
    expect(cache.get(1)).toEqual({ value: ruleset });
    cache.want(1); // fresh: not read again
    cache.want(2);
    release();
    await cache.settled();
    expect(cache.get(2)).toEqual({ value: undefined });
    expect(reads).toEqual([1, 2]);
  });
});
