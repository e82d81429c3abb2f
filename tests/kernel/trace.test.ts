// Packet lifecycle tracing on the host kernel, where only tracepoints work:
// each scenario asserts the hooks expected on the packet's path, in order.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Netns, Routed, TwoHosts } from "../lib/netns";
import { jsonLines, runSkbtrail, Skbtrail } from "../lib/skbtrail";
import { requireKernelTests } from "../lib/require";
import { blocks, inOrder } from "../lib/blocks";

const LIB = `${import.meta.dir}/../lib`;
const enabled = requireKernelTests();

describe.skipIf(!enabled)("packet lifecycles with tracepoints (host kernel)", () => {
  let lo: Netns;
  let pair: TwoHosts;
  let routed: Routed;

  beforeAll(async () => {
    lo = await Netns.create("lo");
    pair = await TwoHosts.create("tr", 63);
    routed = await Routed.create("nat", 64, { masquerade: true });
    await pair.b.ns.nft(`
      table inet skbtrail_test {
        chain input {
          type filter hook input priority 0; policy accept;
          udp dport 7777 drop
        }
      }`);
  });
  afterAll(async () => {
    await Promise.all([lo?.destroy(), pair?.destroy(), routed?.destroy()]);
  });

  test("ICMP echo over loopback: request and reply, each one block, in path order", async () => {
    const t = Skbtrail.start(["-p", "icmp", "--netns-current", "-c", "2"], ["ip", "netns", "exec", lo.name]);
    await t.ready();
    await lo.try("ping -c1 -W1 127.0.0.1");
    const { code, stdout } = await t.finished;
    expect(code).toBe(0);
    const [request, reply] = blocks(stdout);
    expect(request!.lines.every((l) => l.includes("ICMP: 127.0.0.1 -> 127.0.0.1 ping request, seq: 1"))).toBe(true);
    expect(inOrder(request!.hooks, ["net_dev_queue", "net_dev_start_xmit", "netif_rx", "netif_receive_skb", "consume_skb"])).toBe(true);
    expect(request!.lines.at(-1)).toContain("*packet is freed (normally)*");
    expect(reply!.lines[0]).toContain("ping reply, seq: 1");
    expect(inOrder(reply!.hooks, ["net_dev_queue", "netif_receive_skb"])).toBe(true);
  });

  test("UDP between two namespaces over veth, delivered to a socket", async () => {
    const server = Bun.spawn(["ip", "netns", "exec", pair.b.ns.name, "bun", `${LIB}/serve.ts`, "udp", "7301", "8"], { stdout: "pipe" });
    try {
      await server.stdout.getReader().read(); // "listening"
      const t = Skbtrail.start(["-p", "udp", "--dport", "7301", "--timeout", "1.5"]);
      await t.ready();
      await pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7301 5301`);
      const { stdout } = await t.finished;
      const [b] = blocks(stdout);
      expect(b!.lines[0]).toContain(`UDP: ${pair.a.ip4}:5301 -> ${pair.b.ip4}:7301`);
      expect(inOrder(b!.hooks, ["net_dev_queue", "net_dev_start_xmit", "netif_rx", "netif_receive_skb"])).toBe(true);
      // Delivered: freed by the reader (consume_skb), or in skb_consume_udp's
      // fast path, which has no tracepoint (function hooks see it: VM tests).
      expect(b!.hooks).not.toContain("kfree_skb");
      expect(b!.hooks.at(-1) === "consume_skb" || stdout.includes("(tracing stopped before this packet was freed)")).toBe(true);
    } finally {
      server.kill();
    }
  });

  test("TCP between two namespaces: the SYN's path and the handshake's packets", async () => {
    const server = Bun.spawn(["ip", "netns", "exec", pair.b.ns.name, "bun", `${LIB}/serve.ts`, "tcp", "7302", "8"], { stdout: "pipe" });
    try {
      await server.stdout.getReader().read();
      const t = Skbtrail.start(["-p", "tcp", "--port", "7302", "--json", "-c", "3"]);
      await t.ready();
      await pair.a.ns.try(`timeout 3 bash -c 'exec 3<>/dev/tcp/${pair.b.ip4}/7302; echo hi >&3; cat <&3'`);
      const packets = jsonLines((await t.finished).stdout).filter((o) => o.kind === "packet");
      const flags = packets.map((p) => p.events[0].tcp.flags);
      expect(flags).toContain("S");
      expect(flags).toContain("SA");
      const syn = packets.find((p) => p.events[0].tcp.flags === "S")!;
      expect(syn.events[0]).toMatchObject({ saddr: pair.a.ip4, daddr: pair.b.ip4, dport: 7302, proto: "TCP" });
      expect(inOrder(syn.events.map((e: { hook: string }) => e.hook), ["net_dev_queue", "netif_receive_skb"])).toBe(true);
    } finally {
      server.kill();
    }
  });

  test("NAT: the packet is followed by its skb after masquerade rewrites its source", async () => {
    const t = Skbtrail.start(["-p", "icmp", "--saddr", routed.clientIp, "-c", "1"]);
    await t.ready();
    await routed.client.try(`ping -c1 -W1 ${routed.serverIp}`);
    const { stdout } = await t.finished;
    const [b] = blocks(stdout);
    const before = b!.lines.findIndex((l) => l.includes(`ICMP: ${routed.clientIp} -> ${routed.serverIp} ping request`));
    const after = b!.lines.findIndex((l) => l.includes(`ICMP: ${routed.routerOutIp} -> ${routed.serverIp} ping request`));
    expect(before).toBe(0);
    expect(after).toBeGreaterThan(before);
    expect(b!.skbs).toHaveLength(1);
    expect(b!.hooks.at(-1)).toBe("consume_skb");
  });

  test("--pkt-fixed does not follow the packet through NAT", async () => {
    const t = Skbtrail.start(["-p", "icmp", "--saddr", routed.clientIp, "--pkt-fixed", "--timeout", "3"]);
    await t.ready();
    await routed.client.try(`ping -c1 -W1 ${routed.serverIp}`);
    const { stdout } = await t.finished;
    expect(stdout).toContain(`ICMP: ${routed.clientIp} -> ${routed.serverIp} ping request`);
    expect(stdout).not.toContain(`ICMP: ${routed.routerOutIp} -> ${routed.serverIp}`);
  });

  test("an nftables drop ends the block with the drop reason and location", async () => {
    const t = Skbtrail.start(["-p", "udp", "--dport", "7777", "-c", "1"]);
    await t.ready();
    await pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7777 5777`);
    const [b] = blocks((await t.finished).stdout);
    expect(b!.hooks.at(-1)).toBe("kfree_skb");
    expect(b!.lines.at(-1)).toMatch(/\*reason: NETFILTER_DROP, nft_do_chain\+0x[0-9a-f]+\* \*packet is dropped by kernel\*/);
  });

  test("--basic prints one line per hook as it happens", async () => {
    const t = Skbtrail.start(["--basic", "-p", "udp", "--dport", "7303", "-c", "3"]);
    await t.ready();
    await pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7303 5303`);
    const { stdout } = await t.finished;
    expect(stdout).not.toContain("*****");
    expect(stdout.split("\n").filter((l) => l.includes(":5303 -> "))).toHaveLength(3);
  });

  test("-t selects groups; --trace-stack prints stacks; --min-latency hides fast packets", async () => {
    const t = Skbtrail.start(["-t", "link-out", "-p", "udp", "--dport", "7304", "--trace-stack", "net_dev_xmit", "-c", "1"]);
    const slow = Skbtrail.start(["-p", "udp", "--dport", "7304", "--min-latency", "5000", "--timeout", "3"]);
    await Promise.all([t.ready(), slow.ready()]);
    await pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7304 5304`);
    const { stdout } = await t.finished;
    const [b] = blocks(stdout);
    expect(new Set(b!.hooks)).toEqual(new Set(["net_dev_queue", "net_dev_start_xmit", "net_dev_xmit", "kfree_skb"]));
    expect(stdout).toMatch(/\[net_dev_xmit *\].*\nCall Stack:\n {4}-> /);
    expect(blocks((await slow.finished).stdout)).toHaveLength(0);
  });

  test("--json: one object per packet, events in time order", async () => {
    const t = Skbtrail.start(["--json", "-p", "udp", "--dport", "7305", "-c", "1"]);
    await t.ready();
    await pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7305 5305`);
    const [packet, summary] = jsonLines((await t.finished).stdout);
    expect(packet).toMatchObject({ kind: "packet", end: "freed" });
    expect(packet!.skbs[0]).toMatch(/^ffff[0-9a-f]{12}$/);
    const times = packet!.events.map((e: { ts_ns: number }) => e.ts_ns);
    expect([...times].sort((x: number, y: number) => x - y)).toEqual(times);
    expect(packet!.events.at(-1)).toMatchObject({ hook: "kfree_skb", notes: [expect.stringMatching(/^reason: NO_SOCKET/), "packet is dropped by kernel"] });
    expect(summary).toMatchObject({ kind: "summary", packets: { complete: 1 } });
  });

  test("-t errors and the tree listing", async () => {
    const bad = await runSkbtrail(["-t", "no_such_function_anywhere"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^skbtrail: -t: 'no_such_function_anywhere' is not a tracer group, a known tracepoint or a kernel function taking an sk_buff/);
    const tree = await runSkbtrail(["-t", "?"]);
    expect(tree.code).toBe(0);
    expect(tree.stdout).toMatch(/^link: /m);
    expect(tree.stdout).toMatch(/tracepoint net:netif_receive_skb \[tp_btf\]/);
    expect(tree.stdout).toMatch(/ip_rcv \(function hooks need kprobes or fentry, and this kernel has neither\)/);
  });

  test("the default mode says plainly that function coverage needs kprobes or fentry", async () => {
    const r = await runSkbtrail(["--timeout", "0.5"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/this kernel has no kprobes and no fentry: tracing \d+ tracepoints only/);
  });
});
