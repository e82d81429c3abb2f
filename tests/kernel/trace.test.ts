// Packet lifecycles in the default mode, on whatever kernel runs the tests:
// tracepoints everywhere, and function hooks where the kernel has kprobes or
// fentry (tests/vm runs this file in Debian's 6.12). Each scenario asserts
// the hooks every kernel shows on the packet's path, in order.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tracerTreeText } from "../../src/common/assets";
import { allHooks, findGroup, loadTracerTree } from "../../src/plan/tracer-tree";
import { mapNamesOf } from "../lib/bpf";
import { blocks, inOrder, shown } from "../lib/blocks";
import { btfHas, btfStructSize, functionBackends, hasVlan, netfilterDropLocation } from "../lib/kernel";
import { Netns, Routed, TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { jsonLines, runSkbtrail, scaled, Skbtrail } from "../lib/skbtrail";

const enabled = requireKernelTests();
/** The function backends of this kernel, best first (none on a tracepoint-only kernel). */
const backends = enabled ? await functionBackends() : [];

// bpf_rdonly_cast (6.2+) lets tp_btf programs read the packet's headers with plain loads
// (wire.bpf.h): the hook tracepoints' cast programs, which every scenario below then runs.
test.skipIf(!enabled)("hook tracepoints read the packet's headers with plain loads where the kernel has bpf_rdonly_cast", async () => {
  const { code, stdout, stderr } = await runSkbtrail(["-v", "-t", "net:net_dev_queue", "--timeout", "0.1"]);
  expect(code, stderr).toBe(0);
  const line = `${stdout}${stderr}`.split("\n").find((l) => /^skbtrail: +net:net_dev_queue /.test(l));
  expect(line, stderr).toMatch(btfHas("bpf_rdonly_cast") ? / tp_btf tp_net_dev_queue_cast$/ : / tp_net_dev_queue_(btf|raw)$/);
});

describe.skipIf(!enabled)(`packet lifecycles (${backends.length ? `function hooks via ${backends[0]}` : "tracepoints only"})`, () => {
  let lo: Netns;
  let pair: TwoHosts;
  let routed: Routed;

  beforeAll(async () => {
    lo = await Netns.create("lo");
    pair = await TwoHosts.create("tr", 63);
    routed = await Routed.create("nat", 64, { masquerade: true });
    await pair.b.ns.chains({ table: "skbtrail_test", chain: "input", hook: "input", rules: ["udp dport 7777 drop"] });
  });
  afterAll(async () => {
    await Promise.all([lo?.destroy(), pair?.destroy(), routed?.destroy()]);
  });

  test("ICMP echo over loopback: request and reply, each one block, in path order", async () => {
    const t = Skbtrail.start(["-p", "icmp", "--netns-current", "-c", "2"], ["ip", "netns", "exec", lo.name]);
    await t.ready();
    await lo.ping("127.0.0.1");
    const { code, stdout } = await t.finished;
    expect(code).toBe(0);
    const [request, reply] = blocks(stdout);
    expect(request!.lines.every((l) => l.includes("ICMP: 127.0.0.1 -> 127.0.0.1 ping request, seq: 1")), shown(request)).toBe(true);
    expect(inOrder(request!.hooks, ["net_dev_queue", "net_dev_start_xmit", "netif_rx", "netif_receive_skb", "consume_skb"]), shown(request)).toBe(true);
    expect(request!.lines.at(-1), shown(request)).toContain("*packet is freed (normally)*");
    expect(reply!.lines[0], shown(reply)).toContain("ping reply, seq: 1");
    expect(inOrder(reply!.hooks, ["net_dev_queue", "netif_receive_skb"]), shown(reply)).toBe(true);
  });

  test("creates the packet tracker's maps, not those of the socket or monitor modes", async () => {
    const t = Skbtrail.start(["-p", "udp", "--dport", "7199"]);
    await t.ready();
    const maps = await mapNamesOf(t.proc.pid);
    await t.stop();
    for (const used of ["events", "stats", "tracked", "tracked_heads"]) expect(maps).toContain(used);
    // Function hooks keep their calls' arguments for the return.
    expect(maps.includes("call_frames")).toBe(backends.length > 0);
    for (const unused of ["sock_kept", "mon_print", "mon_drops"]) expect(maps).not.toContain(unused);
  });

  test("UDP between two namespaces over veth, delivered to a socket", async () => {
    const server = await pair.b.ns.serve("udp", 7301);
    const t = Skbtrail.start(["-p", "udp", "--dport", "7301"]);
    try {
      await t.ready();
      expect(await pair.a.ns.udp(pair.b.ip4, 7301, { sport: 5301, reply: true })).toBe(0); // the server echoed it
      expect(await t.waitFor(/UDP: .*:5301 -> /)).toBe(true);
      const { stdout } = await t.stop();
      const [b] = blocks(stdout);
      expect(b!.lines[0], shown(b)).toContain(`UDP: ${pair.a.ip4}:5301 -> ${pair.b.ip4}:7301`);
      expect(inOrder(b!.hooks, ["net_dev_queue", "net_dev_start_xmit", "netif_rx", "netif_receive_skb"]), shown(b)).toBe(true);
      // Delivered: freed by the reader (consume_skb's tracepoint, which
      // skb_consume_udp's fast path fires too), not dropped.
      expect(b!.hooks, shown(b)).not.toContain("kfree_skb");
      expect(b!.lines.join("\n"), shown(b)).not.toContain("*packet is dropped");
    } finally {
      await t.stop();
      await server.stop();
    }
  });

  test("VLAN: a packet whose tag the skb carries (transmit offload) shows its VLAN id at every hook of the link", async () => {
    // In the VMs (told their backends) Debian's kernel has 8021q: a missing one fails there instead of passing unrun.
    if (!hasVlan() && process.env.SKBTRAIL_EXPECT_BACKENDS) throw new Error("this VM's kernel has no 8021q module: the VLAN case cannot run");
    if (!hasVlan()) return console.warn("SKIPPED the VLAN case: this kernel has no 8021q (e.g. the development host); the VMs run it");
    // VLAN 100 over the pair's veth link: veth takes the tag into the skb on transmit, and its peer receives it there.
    for (const [h, ip] of [[pair.a, "10.65.0.1"], [pair.b, "10.65.0.2"]] as const)
      await h.ns.sh(`ip link add link ${h.dev} name vlan100 type vlan id 100 && ip addr add ${ip}/24 dev vlan100 && ip link set vlan100 up`);
    try {
      const t = Skbtrail.start(["-p", "icmp", "-s", "10.65.0.1", "--json", "-c", "1"]);
      await t.ready();
      await pair.a.ns.ping("10.65.0.2");
      const [packet] = jsonLines((await t.finished).stdout).filter((o) => o.kind === "packet");
      const vlans = packet!.events.map((e: { hook: string; vlan: number | null }) => `${e.hook} ${e.vlan}`);
      expect(vlans).toContain("net_dev_start_xmit 100");
      expect(vlans).toContain("netif_receive_skb 100");
    } finally {
      await Promise.all([pair.a.ns.sh("ip link del vlan100"), pair.b.ns.sh("ip link del vlan100")]);
    }
  });

  test("TCP between two namespaces: the SYN's path and the handshake's packets", async () => {
    const server = await pair.b.ns.serve("tcp", 7302);
    try {
      const t = Skbtrail.start(["-p", "tcp", "--port", "7302", "--json", "-c", "3"]);
      await t.ready();
      expect(await pair.a.ns.tcp(pair.b.ip4, 7302, { message: "hi" })).toBe(0);
      const packets = jsonLines((await t.finished).stdout).filter((o) => o.kind === "packet");
      const flags = packets.map((p) => p.events[0].tcp.flags);
      expect(flags).toContain("S");
      expect(flags).toContain("SA");
      const syn = packets.find((p) => p.events[0].tcp.flags === "S")!;
      expect(syn.events[0]).toMatchObject({ saddr: pair.a.ip4, daddr: pair.b.ip4, dport: 7302, proto: "TCP" });
      expect(inOrder(syn.events.map((e: { hook: string }) => e.hook), ["net_dev_queue", "netif_receive_skb"])).toBe(true);
    } finally {
      await server.stop();
    }
  });

  test("TCP's sent segments end when their memory is freed, each in a block of its own", async () => {
    // Each segment sent is the clone of an fclone pair, freed without an skb tracepoint (__kfree_skb, or NAPI's skb
    // cache, when the receiver read it). Where kprobe.multi works, kfree_skbmem and napi_skb_cache_put end it.
    // Elsewhere the slab frees the pair at the original's address, which ends the clone too, told from its
    // neighbours by alignment (fclone_of() in bpf/lib/lifecycle.bpf.h): a clone that starts on a cache line would
    // not be ended, and the kernel's layout says whether one does.
    // Both ends on one CPU: an skb read on another CPU than the one that made it is freed there later
    // (skb_attempt_defer_free, 6.x), whenever that CPU next receives.
    const skbSize = btfStructSize("sk_buff");
    if (skbSize % 64 === 0 && !backends.includes("kprobe-multi"))
      return console.warn(`SKIPPED: struct sk_buff is ${skbSize} bytes here, so a clone starts on a cache line and its pair's free is not told apart`);
    const server = await pair.b.ns.serve("tcp", 7304);
    try {
      await server.pin(0);
      const t = Skbtrail.start(["-p", "tcp", "--port", "7304", "--json"]);
      await t.ready();
      expect(await pair.a.ns.tcp(pair.b.ip4, 7304, { message: "hi", cpu: 0 })).toBe(0);
      // Both FINs, then a moment for the last ACKs (the originals of the pairs go when acknowledged).
      const fins = () => jsonLines(t.stdout).filter((o) => o.kind === "packet" && o.events.some((e: { tcp?: { flags: string } }) => e.tcp?.flags.includes("F"))).length;
      for (const deadline = Date.now() + scaled(10_000); fins() < 2 && Date.now() < deadline; ) await Bun.sleep(50);
      // A failure shows each block: its end and its hooks with their TCP flags.
      const story = () => jsonLines(t.stdout).filter((o) => o.kind === "packet").map((o) => `${o.end}: ${o.events.map((e: { hook: string; tcp?: { flags: string } }) => `${e.hook}${e.tcp ? `[${e.tcp.flags}]` : ""}`).join(" ")}`).join("\n");
      expect(fins(), story()).toBeGreaterThanOrEqual(2);
      await Bun.sleep(scaled(1_000));
      const packets = jsonLines((await t.stop()).stdout).filter((o) => o.kind === "packet");
      const sent = packets.filter((p) => p.events.some((e: { hook: string }) => e.hook === "net_dev_queue"));
      expect(sent.length).toBeGreaterThanOrEqual(5);
      // Hooks before the headers are written (function kernels) carry no addresses: the others name one direction.
      for (const p of sent) {
        const tuples = [...new Set(p.events.filter((e: { saddr?: string }) => e.saddr).map((e: Record<string, unknown>) => `${e.saddr}:${e.sport} ${e.daddr}:${e.dport}`))];
        expect({ tuples: tuples.length, end: p.end }, story()).toEqual({ tuples: 1, end: "freed" });
      }
    } finally {
      await server.stop();
    }
  });

  test("NAT: the packet is followed by its skb after masquerade rewrites its source", async () => {
    const t = Skbtrail.start(["-p", "icmp", "--saddr", routed.clientIp, "-c", "1"]);
    await t.ready();
    await routed.client.ping(routed.serverIp);
    const { stdout } = await t.finished;
    const [b] = blocks(stdout);
    const before = b!.lines.findIndex((l) => l.includes(`ICMP: ${routed.clientIp} -> ${routed.serverIp} ping request`));
    const after = b!.lines.findIndex((l) => l.includes(`ICMP: ${routed.routerOutIp} -> ${routed.serverIp} ping request`));
    expect(before, shown(b)).toBe(0);
    expect(after, shown(b)).toBeGreaterThan(before);
    // One skb, and the clones the block reports (function kernels see skb_clone, e.g. for an ARP queue).
    expect(b!.skbs, shown(b)).toHaveLength(1 + b!.lines.filter((l) => l.includes("*packet is cloned (")).length);
    // The server answered: the request ends consumed there, on every kernel.
    expect(b!.lines.at(-1), shown(b)).toContain(`ICMP: ${routed.routerOutIp} -> ${routed.serverIp} ping request`);
    expect(b!.lines.at(-1), shown(b)).toContain("*packet is freed (normally)*");
  });

  test("--pkt-fixed does not follow the packet through NAT (a run without it does)", async () => {
    const fixed = Skbtrail.start(["-p", "icmp", "--saddr", routed.clientIp, "--pkt-fixed"]);
    const followed = Skbtrail.start(["-p", "icmp", "--saddr", routed.clientIp]);
    try {
      await Promise.all([fixed.ready(), followed.ready()]);
      await routed.client.ping(routed.serverIp);
      // The control: the same packet, rewritten by NAT, and its block complete.
      expect(await followed.waitFor(new RegExp(`ICMP: ${routed.routerOutIp} -> ${routed.serverIp} ping request.*\\*packet is freed`))).toBe(true);
      // Not followed, the packet's block stays open until the stop.
      const { stdout } = await fixed.stop();
      expect(stdout).toContain(`ICMP: ${routed.clientIp} -> ${routed.serverIp} ping request`);
      expect(stdout).not.toContain(`ICMP: ${routed.routerOutIp} -> ${routed.serverIp}`);
    } finally {
      await Promise.all([fixed.stop(), followed.stop()]);
    }
  });

  test("an nftables drop ends the block with the drop reason and location", async () => {
    const t = Skbtrail.start(["-p", "udp", "--dport", "7777", "-c", "1"]);
    await t.ready();
    await pair.a.ns.udp(pair.b.ip4, 7777, { sport: 5777 });
    const [b] = blocks((await t.finished).stdout);
    expect(b!.hooks.at(-1), shown(b)).toBe("kfree_skb");
    expect(b!.lines.at(-1), shown(b)).toMatch(new RegExp(`\\*reason: NETFILTER_DROP, ${netfilterDropLocation()}\\* \\*packet is dropped by kernel\\*`));
  });

  test("--basic prints one line per hook as it happens", async () => {
    const t = Skbtrail.start(["--basic", "-p", "udp", "--dport", "7303", "-c", "3"]);
    await t.ready();
    await pair.a.ns.udp(pair.b.ip4, 7303, { sport: 5303 });
    const { stdout } = await t.finished;
    expect(stdout).not.toContain("*****");
    expect(stdout.split("\n").filter((l) => l.includes(":5303 -> "))).toHaveLength(3);
  });

  test("-t selects groups; --trace-stack prints stacks; --min-latency hides fast packets", async () => {
    const t = Skbtrail.start(["-t", "link-out", "-p", "udp", "--dport", "7304", "--trace-stack", "net_dev_xmit", "-c", "1"]);
    const slow = Skbtrail.start(["-p", "udp", "--dport", "7304", "--min-latency", "100ms", "--json"]);
    try {
      await Promise.all([t.ready(), slow.ready()]);
      await pair.a.ns.udp(pair.b.ip4, 7304, { sport: 5304 });
      const { stdout } = await t.finished;
      const [b] = blocks(stdout);
      // Only link-out's hooks, and the free that ends every packet.
      const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
      const linkOut = allHooks([findGroup(tree, "link-out")!]).map((h) => h.name.replace(/^\w+:/, ""));
      const hooks = new Set(b!.hooks);
      expect([...hooks].filter((h) => !linkOut.includes(h) && h !== "kfree_skb"), shown(b)).toEqual([]);
      for (const h of ["net_dev_queue", "net_dev_start_xmit", "net_dev_xmit", "kfree_skb"]) expect(hooks, shown(b)).toContain(h);
      // veth transmits through dev_hard_start_xmit on every kernel.
      if (backends.length) expect(hooks, shown(b)).toContain("dev_hard_start_xmit");
      expect(stdout).toMatch(/\[net_dev_xmit *\].*\nCall Stack:\n {4}-> /);
      // The packet lived microseconds: the --min-latency run printed nothing of it. A second
      // datagram waits in a socket nobody reads and is freed when that socket closes, 0.5 s on:
      // slow, so shown. Records are read in the order written: once the run shows the slow one,
      // it has read the fast one to its free (both counted complete) without showing it.
      const held = await pair.b.ns.serve("udp-full", pair.b.ip4, 7304);
      expect(await pair.a.ns.udp(pair.b.ip4, 7304, { sport: 5305 })).toBe(0);
      await Bun.sleep(500);
      await held.stop();
      expect(await slow.waitFor(/"sport":5305\b/)).toBe(true);
      const lines = jsonLines((await slow.stop()).stdout);
      expect(lines.filter((l) => l.kind === "packet").map((l) => l.events[0].sport)).toEqual([5305]);
      expect(lines.at(-1)).toMatchObject({ kind: "summary", packets: { complete: 2 } });
    } finally {
      await Promise.all([t.stop(), slow.stop()]);
    }
  });

  test("a packet socket reading every packet: its clones stay in their packet's block, and only the last free ends it", async () => {
    // A tap as tcpdump opens one, reading each packet (skb:skb_copy_datagram_iovec sees its copy).
    const ns = await Netns.create("clone");
    const sniffer = await ns.serve("packet-read");
    const t = Skbtrail.start(["--json", "-t", "link,life,skb_copy_datagram_iovec", "-p", "icmp", "--netns-current"], ["ip", "netns", "exec", ns.name]);
    try {
      await t.ready();
      await ns.ping("127.0.0.1");
      // The request's block ends once its last copy was read and freed.
      expect(await t.waitFor(/"kind":"packet".*"icmp":\{"type":8,.*"hook":"skb_copy_datagram_iovec"/)).toBe(true);
      expect(await t.waitFor(/"kind":"packet".*"icmp":\{"type":0,/)).toBe(true);
    } finally {
      await t.stop();
      await sniffer.stop();
      await ns.destroy();
    }
    const packets = jsonLines((await t.finished).stdout).filter((o) => o.kind === "packet");
    const show = (p: Record<string, any>) => JSON.stringify(p.events.map((e: Record<string, any>) => `${e.hook} ${e.skb} ${e.notes.join("; ")}`), null, 1);
    // No block of a clone alone: each starts where its packet was sent.
    for (const p of packets) expect(p.events[0].hook, show(p)).not.toBe("skb_copy_datagram_iovec");
    const request = packets.find((p) => p.events[0].icmp?.type === 8)!;
    expect(request.skbs.length, show(request)).toBeGreaterThanOrEqual(2);
    expect(request.events.filter((e: Record<string, any>) => e.hook === "skb_copy_datagram_iovec").length, show(request)).toBeGreaterThanOrEqual(1);
    // One free ends the packet; the others freed a clone, or the original while a clone went on.
    const frees = request.events.flatMap((e: Record<string, any>) => e.notes.filter((n: string) => /is freed \(normally\)/.test(n)));
    expect(frees.filter((n: string) => n === "packet is freed (normally)"), show(request)).toHaveLength(1);
    expect(frees.at(-1), show(request)).toBe("packet is freed (normally)");
  });

  test("--json: one object per packet, events in time order", async () => {
    const t = Skbtrail.start(["--json", "-p", "udp", "--dport", "7305", "-c", "1"]);
    await t.ready();
    await pair.a.ns.udp(pair.b.ip4, 7305, { sport: 5305 });
    const [packet, summary] = jsonLines((await t.finished).stdout);
    expect(packet).toMatchObject({ kind: "packet", end: "freed" });
    // A kernel address: its top bit set (ffff… with 4-level paging, ff11… and others with 5-level).
    expect(packet!.skbs[0]).toMatch(/^[89a-f][0-9a-f]{15}$/);
    const times = packet!.events.map((e: { ts_ns: number }) => e.ts_ns);
    expect([...times].sort((x: number, y: number) => x - y)).toEqual(times);
    expect(packet!.events.at(-1)).toMatchObject({ hook: "kfree_skb", notes: [expect.stringMatching(/^reason: NO_SOCKET/), "packet is dropped by kernel"] });
    expect(summary).toMatchObject({ kind: "summary", packets: { complete: 1 } });
    // Each event's metadata, read from the skb and the objects it points to: sent on a's veth0, received on b's veth1.
    const [netnsA, netnsB] = [await pair.a.ns.inode(), await pair.b.ns.inode()];
    const at = (hook: string) => packet!.events.find((e: Record<string, any>) => e.hook === hook);
    const sent = at("net_dev_queue");
    expect(sent.ifindex, JSON.stringify(sent)).toBeGreaterThan(0);
    expect(sent.comm.length, JSON.stringify(sent)).toBeGreaterThan(0);
    expect(sent).toMatchObject({ ifname: "veth0", netns: netnsA, len: 14 + 20 + 8 + 16 }); // Ethernet, IP, UDP, 16 bytes
    expect(at("netif_receive_skb")).toMatchObject({ ifname: "veth1", netns: netnsB });
  });

  test("-t errors, and the tree listing says how this kernel attaches a function", async () => {
    const bad = await runSkbtrail(["-t", "no_such_function_anywhere"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^skbtrail: -t: 'no_such_function_anywhere' is not a tracer group, a known tracepoint or a kernel function taking an sk_buff/);
    const tree = await runSkbtrail(["-t", "?"]);
    expect(tree.code).toBe(0);
    expect(tree.stdout).toMatch(/^link: /m);
    expect(tree.stdout).toMatch(/tracepoint net:netif_receive_skb \[tp_btf\]/);
    if (backends.length) expect(tree.stdout).toContain(`+ ip_rcv [${backends[0]}]`);
    else expect(tree.stdout).toContain("+ ip_rcv (function hooks need kprobes or fentry, and this kernel has neither)");
    // What --sock traces, and the hooks' notes.
    expect(tree.stdout).toMatch(/ tcp_retransmit_timer .*\{--sock\}: the retransmission timer fired/);
    expect(tree.stdout).toMatch(/ tcp_ack_update_rtt .*\{--sock -t\}: every RTT sample/);
  });

  test("the default mode says plainly when function coverage is missing, and only then", async () => {
    const t = Skbtrail.start(["-v"]);
    await t.ready();
    const r = await t.stop();
    expect(r.code).toBe(0);
    const plan = /^skbtrail: plan: (.*); \d+ skipped$/m.exec(r.stderr)?.[1];
    expect(plan).toBeDefined();
    if (backends.length) {
      expect(plan).toMatch(new RegExp(`\\d+ ${backends[0]}`));
      expect(r.stderr).not.toContain("tracepoints only");
    } else {
      expect(plan).not.toMatch(/kprobe|fentry/);
      expect(r.stderr).toMatch(/this kernel has no kprobes and no fentry: tracing \d+ tracepoints only/);
    }
  });
});
