// The tracer tree (knowledge/tracers.yaml): nettrace's groups are there, the
// tracepoints are ones skbtrail has programs for, -t selections pick the
// right hooks, and a broken tree names the file and line.
import { describe, expect, test } from "bun:test";
import { tracerTreeText } from "../../src/common/assets";
import { allHooks, findGroup, loadTracerTree, selectHooks, type TreeGroup } from "../../src/plan/tracer-tree";
import { TRACEPOINTS } from "../../src/plan/tracepoints";
import { FREE_FUNCTIONS } from "../../src/plan/plan";
import { SkbtrailError } from "../../src/common/errors";

const FILE = "knowledge/tracers.yaml";
const tree = loadTracerTree(tracerTreeText, FILE);
const hooks = allHooks(tree);
const functions = hooks.filter((h) => h.kind === "function");
const tracepoints = hooks.filter((h) => h.kind === "tracepoint");

function groups(gs: TreeGroup[]): TreeGroup[] {
  return gs.flatMap((g) => [g, ...groups(g.children)]);
}

describe("the built-in tracer tree", () => {
  test("has nettrace's groups", () => {
    const required = [
      "link", "link-in", "link-out", "sched", "bridge", "vlan", "vxlan", "bonding", "ipvlan", "ovs", "arp",
      "packet", "pkt-in", "pkt-output", "netfilter", "conntrack", "ip", "ip-in", "ip-out", "ip-route", "xfrm", "esp",
      "tcp", "tcp-in", "tcp-out", "udp", "udp-in", "icmp", "icmp-in", "socket", "tcp-state", "tcp-congestion", "tcp-retrans", "life",
    ];
    for (const name of required) expect(findGroup(tree, name), name).toBeDefined();
    expect(findGroup(tree, "link")!.children.map((g) => g.name)).toEqual(expect.arrayContaining(["link-in", "link-out"]));
    expect(findGroup(tree, "ip")!.children.map((g) => g.name)).toEqual(expect.arrayContaining(["ip-in", "ip-out", "ip-route"]));
    expect(findGroup(tree, "tcp")!.children.map((g) => g.name)).toEqual(expect.arrayContaining(["tcp-in", "tcp-out"]));
  });

  test("is large: at least 150 functions and 7 tracepoints", () => {
    expect(functions.length).toBeGreaterThanOrEqual(150);
    expect(tracepoints.length).toBeGreaterThanOrEqual(7);
  });

  test("every tracepoint is one skbtrail has a program for", () => {
    const supported = new Set(TRACEPOINTS.map((t) => t.name));
    for (const h of tracepoints) expect(supported.has(h.name), h.name).toBe(true);
    for (const name of ["net:netif_receive_skb", "net:net_dev_queue", "net:net_dev_xmit", "net:napi_gro_receive_entry", "qdisc:qdisc_dequeue",
      "tcp:tcp_retransmit_skb", "tcp:tcp_send_reset", "icmp:icmp_send", "sock:sock_rcvqueue_full", "udp:udp_fail_queue_rcv_skb", "skb:skb_copy_datagram_iovec"])
      expect(tracepoints.map((h) => h.name)).toContain(name);
  });

  test("keeps the hooks the planner and the tests rely on", () => {
    const names = new Set(hooks.map((h) => h.name));
    for (const name of ["__netif_receive_skb_core", "napi_gro_receive", "ip_rcv", "tcp_v4_rcv", "icmp_rcv", "nf_hook_slow", "nft_do_chain", "skb_clone", "consume_skb", "kfree_skb"])
      expect(names.has(name), name).toBe(true);
    expect(findGroup(tree, "netfilter")!.children.flatMap((g) => g.hooks.map((h) => h.name))).toEqual(expect.arrayContaining(["nf_hook_slow", "nft_do_chain"]));
    expect(findGroup(tree, "life")!.hooks.map((h) => h.name)).toEqual(expect.arrayContaining(["skb_clone", "consume_skb", "kfree_skb"]));
    for (const name of ["consume_skb", "kfree_skb"]) expect(FREE_FUNCTIONS[name]).toBeDefined();
  });

  test("some groups and hooks are off by default", () => {
    const off = groups(tree).filter((g) => !g.onByDefault).map((g) => g.name);
    expect(off).toEqual(expect.arrayContaining(["ipvlan", "bridge", "ovs", "tcp-state", "tcp-congestion"]));
    for (const h of hooks.filter((h) => ["ipvlan", "bridge", "ovs"].includes(h.group))) expect(h.onByDefault).toBe(false);
    const byName = new Map(hooks.map((h) => [h.name, h]));
    expect(byName.get("skb:skb_copy_datagram_iovec")!.onByDefault).toBe(false);
    expect(byName.get("pskb_expand_head")!.onByDefault).toBe(false);
    expect(byName.get("ip_rcv")!.onByDefault).toBe(true);
    expect(byName.get("net:netif_receive_skb")!.onByDefault).toBe(true);
  });

  test("without -t: every hook on by default, and nothing else", () => {
    const { hooks: chosen, outside } = selectHooks(tree, undefined);
    expect(outside).toEqual([]);
    expect(chosen.length).toBe(hooks.filter((h) => h.onByDefault).length);
    expect(chosen.every((h) => h.onByDefault)).toBe(true);
    expect(chosen.length).toBeLessThan(hooks.length);
  });

  test('-t ip,tcp_v4_rcv,"nf_*"', () => {
    const { hooks: chosen, outside } = selectHooks(tree, ["ip", "tcp_v4_rcv", "nf_*"]);
    const names = new Set(chosen.map((h) => h.name));
    // The ip group: its whole subtree, hooks off by default included.
    const ipHooks = allHooks([findGroup(tree, "ip")!]);
    expect(ipHooks.length).toBeGreaterThan(40);
    for (const h of ipHooks) expect(names.has(h.name), h.name).toBe(true);
    for (const g of ["ip-in", "ip-out", "ip-route", "xfrm", "esp"]) expect(findGroup(tree, "ip")!.children.map((c) => c.name)).toContain(g);
    // One function by name.
    expect(names.has("tcp_v4_rcv")).toBe(true);
    expect(names.has("tcp_v6_rcv")).toBe(false);
    // A glob: the tree's matching hooks, and it is also looked up among all kernel functions.
    const nf = hooks.filter((h) => /^nf_/.test(h.name)).map((h) => h.name);
    expect(nf).toEqual(expect.arrayContaining(["nf_hook_slow", "nf_nat_manip_pkt", "nf_conntrack_in", "nf_confirm"]));
    for (const n of nf) expect(names.has(n), n).toBe(true);
    expect(names.has("nft_do_chain")).toBe(false);
    expect(chosen.length).toBe(new Set([...ipHooks.map((h) => h.name), "tcp_v4_rcv", ...nf]).size);
    expect(outside).toEqual(["nf_*"]);
  });

  test("-t with a tracepoint's event name or a name outside the tree", () => {
    expect(selectHooks(tree, ["net_dev_xmit"]).hooks.map((h) => h.name)).toEqual(["net:net_dev_xmit"]);
    expect(selectHooks(tree, ["no_such_function_anywhere"])).toEqual({ hooks: [], outside: ["no_such_function_anywhere"] });
    expect(selectHooks(tree, ["all"]).hooks.length).toBe(hooks.length);
  });
});

describe("a broken tracer tree names the file and line", () => {
  const problem = (text: string): string => {
    try {
      loadTracerTree(text, "my-tree.yaml");
    } catch (e) {
      expect(e).toBeInstanceOf(SkbtrailError);
      expect((e as Error).message).not.toContain("\n");
      return (e as Error).message;
    }
    throw new Error("the tree was accepted");
  };
  const good = "- group: a\n  description: A\n  hooks:\n    - ip_rcv\n    - function: ip_output\n      note: out\n";

  test("a valid tree is accepted", () => {
    expect(allHooks(loadTracerTree(good, "my-tree.yaml")).map((h) => h.name)).toEqual(["ip_rcv", "ip_output"]);
  });

  test("an unknown key in a group", () => {
    expect(problem(`${good}- group: b\n  description: B\n  colour: red\n  hooks: [tcp_v4_rcv]\n`)).toMatch(/^my-tree\.yaml:9: colour: unknown key/);
  });

  test("an unknown key in a hook", () => {
    expect(problem(good.replace("      note: out\n", "      skb: 1\n"))).toMatch(/^my-tree\.yaml:6: skb: unknown key/);
  });

  test("a hook that appears twice", () => {
    expect(problem(`${good}- group: b\n  description: B\n  hooks:\n    - tcp_v4_rcv\n    - function: ip_output\n`)).toMatch(/^my-tree\.yaml:11: 'ip_output' appears twice in the tree/);
    expect(problem(`${good}- group: b\n  description: B\n  hooks:\n    - ip_rcv\n`)).toMatch(/^my-tree\.yaml:\d+: 'ip_rcv' appears twice in the tree/);
  });

  test("a group defined twice, a bad name, a group with neither hooks nor children", () => {
    expect(problem(`${good}${good}`)).toMatch(/^my-tree\.yaml:7: group: 'a' is defined twice/);
    expect(problem(good.replace("group: a", "group: Link"))).toMatch(/^my-tree\.yaml:1: group: /);
    expect(problem("- group: a\n  description: A\n")).toMatch(/^my-tree\.yaml:1: group 'a' needs either 'children' or 'hooks'/);
    expect(problem(good.replace("    - ip_rcv\n", "    - net:netif_rx\n"))).toMatch(/^my-tree\.yaml:\d+: 'net:netif_rx' is not a function name/);
  });
});
