// --diag on the host kernel: one real cause per scenario, each asserting
// the finding's message and advice, and a clean run with no finding.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync } from "node:fs";
import { btfHas, functionBackends, traceableFunction } from "../lib/kernel";
import { $ } from "bun";
import { Netns, Routed, TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { jsonLines, scaled, Skbtrail } from "../lib/skbtrail";

const enabled = requireKernelTests();

/** Runs --diag with these filters around `traffic`: it stops by itself at the first error (no --diag-keep). */
async function diagnose(args: string[], traffic: () => Promise<unknown>) {
  const t = Skbtrail.start(["--diag", ...args]);
  await t.ready();
  await traffic();
  // A run that finds nothing is stopped after a while, and fails on its exit code.
  const bound = setTimeout(() => t.stop(), scaled(30_000));
  try {
    return await t.finished;
  } finally {
    clearTimeout(bound);
  }
}

/** One cause, one finding: the drop's analysis has exactly one warning or error (no generic duplicate of the specific one). */
function expectOneCause(stdout: string): void {
  const found = stdout.match(/^\[\d+\] (ERROR|WARNING) happens.*\n.*/gm) ?? [];
  // A failure shows the findings themselves.
  expect(found.length === 1 ? 1 : found).toEqual(1);
}

/** Whether --diag sees the ICMP errors the kernel sends: the tracepoint icmp:icmp_send (6.9+), or __icmp_send hooked in its place. */
async function icmpErrorsSeen(): Promise<boolean> {
  return existsSync("/sys/kernel/tracing/events/icmp/icmp_send") || ((await functionBackends()).length > 0 && traceableFunction("__icmp_send"));
}

describe.skipIf(!enabled)("--diag finds the cause", () => {
  let pair: TwoHosts;
  let routed: Routed;

  beforeAll(async () => {
    pair = await TwoHosts.create("dg", 91);
    routed = await Routed.create("dgr", 92);
    await pair.b.ns.chains({ table: "skbtrail_diag_filter", chain: "input_drop_rules", hook: "input", rules: ["udp dport 7777 drop", "udp dport 7779 reject", "tcp dport 7780 reject with tcp reset"] });
    await routed.router.chains({ table: "router_firewall", chain: "forward_filter_chain", hook: "forward", rules: ["udp dport 7778 drop"] });
    await routed.router.sh("sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.in0.rp_filter=1 && ip link set out0 mtu 1280");
    await routed.server.sh("ip link set veth0 mtu 1280");
    await routed.router.sh("ip route add unreachable 10.92.50.0/24 && ip route add blackhole 10.92.51.0/24 && ip route add prohibit 10.92.52.0/24 && ip route add 10.92.53.0/24 via 10.92.2.99 dev out0 onlink");
    // A spoofed source for the rp_filter case; a permanent neighbour entry so
    // the client does not ARP from that source (the router would not answer).
    const routerMac = (await routed.router.sh("cat /sys/class/net/in0/address").text()).trim();
    await routed.client.sh(`ip addr add 10.92.9.9/32 dev veth0 && ip neigh replace 10.92.1.1 lladdr ${routerMac} dev veth0 nud permanent`);
  });
  afterAll(async () => {
    await Promise.all([pair?.destroy(), routed?.destroy()]);
  });

  test("closed UDP port", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7601"], () => pair.a.ns.udp(pair.b.ip4, 7601, { sport: 5601 }));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("---------------- ANALYSIS RESULT ---------------------");
    if (await icmpErrorsSeen()) {
      expect(r.stdout).toMatch(/\[1\] ERROR happens in (icmp_send|__icmp_send)\(.*\):\n\tnothing listens on udp port 7601 at 10\.91\.0\.2: the host answered ICMP port unreachable\n/);
      expect(r.stdout).toContain("fix advice:\n\tcheck that the service runs and is bound to 10.91.0.2 port 7601: ss -lunp | grep ':7601'");
    } else expect(r.stdout).toContain("no socket is bound to the destination port");
    expectOneCause(r.stdout);
  });

  test("closed TCP port: refused with a reset", async () => {
    const r = await diagnose(["-p", "tcp", "--dport", "7602"], () => pair.a.ns.tcp(pair.b.ip4, 7602));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("connection refused: nothing listens on TCP port 7602 at 10.91.0.2");
    expect(r.stdout).toContain("ss -ltnp | grep ':7602'");
    expectOneCause(r.stdout);
  });

  test("nftables drop in an input chain: hook, table and chain in full", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7777"], () => pair.a.ns.udp(pair.b.ip4, 7777, { sport: 5777 }));
    expect(r.code).toBe(1);
    // Tracepoint kernels name the chain from the drop's stack and the ruleset;
    // function kernels (VM tests) from nft_do_chain's verdict: same facts.
    // Named by the kernel where it has drop reasons (5.17+); before, inferred from the location.
    if (btfHas("SKB_DROP_REASON_NETFILTER_DROP")) expect(r.stdout).toContain("NETFILTER_DROP");
    expect(r.stdout).toContain("ipv4 INPUT");
    expect(r.stdout).toContain("table inet skbtrail_diag_filter, chain input_drop_rules (");
    expect(r.stdout).toContain("fix advice:\n\tfind the rule that drops it: nft -a list chain inet skbtrail_diag_filter input_drop_rules");
    // One cause, one finding: NETFILTER_DROP's generic text is not repeated next to the chain.
    expectOneCause(r.stdout);
  });

  test("--hooks after an nftables drop: the chains on that hook and, with function hooks, nettrace's blamed hook functions", async () => {
    const r = await diagnose(["--hooks", "-p", "udp", "--dport", "7777"], () => pair.a.ns.udp(pair.b.ip4, 7777, { sport: 5779 }));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("nftables chains on this hook:\n\ttable inet skbtrail_diag_filter, chain input_drop_rules (policy accept)");
    // nf_hook_slow's hook entries are read where it can be traced (functions backends); elsewhere the hook
    // function is named from the drop's stack when it freed the packet itself (nftables 6.8+: the drop's
    // location is then in nft_do_chain), and nothing is named when nf_hook_slow freed it.
    if ((await functionBackends()).length) expect(r.stdout).toMatch(/following hook functions are blamed:\n(\t\w+\n)*\tnft_do_chain_inet\n/);
    else if (/location:\n\tnft_do_chain\+/.test(r.stdout)) expect(r.stdout).toContain("following hook functions are blamed:\n\tnft_do_chain_inet\n");
    else expect(r.stdout).not.toContain("following hook functions are blamed:");
  });

  test("a reject rule answering ICMP is a reject, not a closed port", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7779"], () => pair.a.ns.udp(pair.b.ip4, 7779, { sport: 5780 }));
    expect(r.code).toBe(1);
    if (await icmpErrorsSeen()) expect(r.stdout).toMatch(/: a reject rule, the host answered ICMP destination unreachable \(port unreachable\)\n/);
    expect(r.stdout).toMatch(/udp dport 7779 reject|nft -a list chain inet skbtrail_diag_filter input_drop_rules/);
    expect(r.stdout).not.toContain("nothing listens");
    expectOneCause(r.stdout);
  });

  test("a reject rule answering with a TCP reset is a reject, not a closed port", async () => {
    const r = await diagnose(["-p", "tcp", "--dport", "7780"], () => pair.a.ns.tcp(pair.b.ip4, 7780));
    expect(r.code).toBe(1);
    // The reset is seen where nf_send_reset can be traced (function hooks; module BTF for nf_reject_ipv4, 5.11+).
    if ((await functionBackends()).length && traceableFunction("nf_send_reset")) expect(r.stdout).toMatch(/: a reject rule, the host answered with a TCP reset\n/);
    expect(r.stdout).toMatch(/tcp dport 7780 reject|nft -a list chain inet skbtrail_diag_filter input_drop_rules/);
    expect(r.stdout).not.toContain("nothing listens");
    expectOneCause(r.stdout);
  });

  test("a packet conntrack classifies INVALID, dropped by 'ct state invalid drop': the state and the rule, once", async () => {
    // The sysctls exist only once nf_conntrack is loaded (a module on Debian, built in elsewhere).
    await $`modprobe nf_conntrack`.nothrow().quiet();
    if (!existsSync("/proc/sys/net/netfilter/nf_conntrack_tcp_loose")) throw new Error("nf_conntrack did not load (modprobe nf_conntrack): this test needs connection tracking");
    const net = await TwoHosts.create("dgi", 95);
    const server = await net.b.ns.serve("tcp", 7810);
    // A connection opened before b tracks connections: conntrack never saw it start.
    const client = Bun.spawn(["ip", "netns", "exec", net.a.ns.name, "bun", `${import.meta.dir}/../lib/send.ts`, "tcp", net.b.ip4, "7810", "--message", "hi", "--wait"], { stdin: "pipe", stdout: "pipe", stderr: "ignore" });
    try {
      expect(new TextDecoder().decode((await client.stdout.getReader().read()).value)).toContain("connected");
      // The rule makes b's conntrack run; with loose pickup off, a segment of a connection it never saw open is INVALID.
      await net.b.ns.chains({ table: "skbtrail_ct_invalid", chain: "input_state", hook: "input", rules: ["ct state invalid drop"] });
      await net.b.ns.sh("sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0");
      const invalidCount = async () =>
        (await net.b.ns.sh("tail -n +2 /proc/net/stat/nf_conntrack").text()).trim().split("\n").reduce((sum, row) => sum + parseInt(row.trim().split(/\s+/)[4]!, 16), 0);
      const before = await invalidCount();
      const r = await diagnose(["-p", "tcp", "--dport", "7810", "--addr", net.b.ip4], async () => {
        client.stdin.write("go\n");
        await client.stdin.end();
      });
      expect(await invalidCount()).toBeGreaterThan(before); // conntrack itself counted it invalid
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        "connection tracking classified the packet as INVALID (it belongs to no connection conntrack knows), and the firewall drops INVALID packets: rule 'ct state invalid drop' in table inet skbtrail_ct_invalid, chain input_state\n",
      );
      expect(r.stdout).toContain("conntrack state:\n\tINVALID (no connection)");
      expect(r.stdout).toContain("nf_conntrack_log_invalid");
      // One cause, one finding: neither NETFILTER_DROP's general text nor the chain's generic finding besides it.
      expectOneCause(r.stdout);
      expect(r.stdout).not.toContain("a firewall rule (netfilter) dropped the packet");
      expect(r.stdout).not.toContain("packet is dropped by nftables: table");
    } finally {
      client.kill();
      await server.stop();
      await net.destroy();
    }
  });

  test("a bridge-family drop rule: the bridge's FORWARD hook and its chain", async () => {
    const [a, br, c] = [await Netns.create("dba"), await Netns.create("dbb"), await Netns.create("dbc")];
    try {
      await $`ip link add va netns ${a.name} type veth peer name pa netns ${br.name}`.quiet();
      await $`ip link add vc netns ${c.name} type veth peer name pc netns ${br.name}`.quiet();
      await br.sh("ip link add br0 type bridge && ip link set pa master br0 && ip link set pc master br0 && ip link set pa up && ip link set pc up && ip link set br0 up");
      await a.sh("ip addr add 10.93.0.1/24 dev va && ip link set va up && ip neigh replace 10.93.0.3 lladdr 02:00:00:00:93:03 dev va");
      await c.sh("ip addr add 10.93.0.3/24 dev vc && ip link set vc address 02:00:00:00:93:03 && ip link set vc up");
      await br.chains({ family: "bridge", table: "skbtrail_bridge_fw", chain: "forward_rules", hook: "forward", rules: ["udp dport 7790 drop"] });
      const r = await diagnose(["-p", "udp", "--dport", "7790"], () => a.udp("10.93.0.3", 7790));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("bridge FORWARD");
      expect(r.stdout).toContain("table bridge skbtrail_bridge_fw, chain forward_rules");
      expect(r.stdout).toContain("nft -a list chain bridge skbtrail_bridge_fw forward_rules");
      expectOneCause(r.stdout);
    } finally {
      await Promise.all([a.destroy(), br.destroy(), c.destroy()]);
    }
  });

  // The other families whose hooks only the drop's stack names on tracepoint-only kernels (nf_hook_slow's caller).
  for (const c of [
    { family: "netdev", hook: "ingress", named: "netdev INGRESS", chain: "ingress_rules", rule: "udp dport 7791 drop", filter: ["-p", "udp", "--dport", "7791"], traffic: () => pair.a.ns.udp(pair.b.ip4, 7791) },
    // a forgets b's address: its next packet to b asks ARP first, and b drops the request.
    { family: "arp", hook: "input", named: "arp IN", chain: "arp_in_rules", rule: "arp operation request drop", filter: ["-p", "arp"], traffic: () => pair.a.ns.sh(`ip neigh flush dev ${pair.a.dev} && ping -c1 -W1 ${pair.b.ip4} || true`) },
  ] as const)
    test(`a drop rule of the ${c.family} family: the ${c.named} hook and its chain`, async () => {
      const table = `skbtrail_${c.family}_fw`;
      await pair.b.ns.chains({ family: c.family, table, chain: c.chain, hook: c.hook, device: c.family === "netdev" ? pair.b.dev : undefined, rules: [c.rule] });
      try {
        const r = await diagnose([...c.filter], c.traffic);
        expect(r.code).toBe(1);
        expect(r.stdout).toContain(c.named);
        expect(r.stdout).toContain(`table ${c.family} ${table}, chain ${c.chain}`);
        expect(r.stdout).toContain(`nft -a list chain ${c.family} ${table} ${c.chain}`);
        expectOneCause(r.stdout);
      } finally {
        await pair.b.ns.sh(`nft delete table ${c.family} ${table}`);
      }
    });

  test("nftables drop in a forward chain on a router", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7778"], () => routed.client.udp(routed.serverIp, 7778, { sport: 5778 }));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("ipv4 FORWARD");
    expect(r.stdout).toContain("table inet router_firewall, chain forward_filter_chain (");
    expectOneCause(r.stdout);
    expect(r.stdout).toContain("nft -a list chain inet router_firewall forward_filter_chain");
  });

  test("reverse-path filter", async () => {
    const r = await diagnose(["-s", "10.92.9.9"], () => routed.client.udp(routed.serverIp, 7603, { from: "10.92.9.9", sport: 5603 }));
    expect(r.code).toBe(1);
    // Before drop reasons (5.17), inferred from where it was dropped.
    expect(r.stdout).toContain(`drop reason:\n\t${btfHas("SKB_DROP_REASON_IP_RPFILTER") ? "IP_RPFILTER" : "NOT_SPECIFIED (most likely IP_RPFILTER, inferred from the location)"}\n`);
    expect(r.stdout).toMatch(/fix advice:\n\t.*rp_filter/);
    expectOneCause(r.stdout);
  });

  test("no route to host: the router's routing table says there is none", async () => {
    const r = await diagnose(["--daddr", "10.92.99.1"], () => routed.client.ping("10.92.99.1", "", false));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("no route to 10.92.99.1: the routing table has no route for it and no default route");
    expect(r.stdout).toContain("ip route get 10.92.99.1");
    expectOneCause(r.stdout);
  });

  // One finding naming the route, instead of the ICMP error (a prohibit route is no firewall) or the bare drop reason.
  for (const [kind, net, answer] of [
    ["unreachable", 50, "refuses it and answers ICMP host unreachable"],
    ["blackhole", 51, "discards it silently"],
    ["prohibit", 52, "refuses it and answers ICMP administratively prohibited (a route, not a firewall rule)"],
  ] as const)
    test(`${kind} route on the router`, async () => {
      const r = await diagnose(["--daddr", `10.92.${net}.1`], () => routed.client.ping(`10.92.${net}.1`, "", false));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`the route to 10.92.${net}.1 is ${kind === "unreachable" ? "an" : "a"} '${kind}' route (10.92.${net}.0/24): the host ${answer}`);
      expect(r.stdout).toContain(`ip route del ${kind} 10.92.${net}.0/24`);
      expectOneCause(r.stdout);
    });

  test("the next hop never answers ARP: a neighbour failure naming it, not 'no route'", async () => {
    const r = await diagnose(["--daddr", "10.92.53.1"], () => routed.client.ping("10.92.53.1", "-c 1 -W 5", false));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("neighbour resolution failed: 10.92.2.99 on out0 did not answer ARP, so the packet to 10.92.53.1 could not be sent (not a routing problem)");
    expect(r.stdout).toContain("ip neigh show 10.92.2.99 dev out0");
    expect(r.stdout).not.toContain("no route to");
    expectOneCause(r.stdout);
  });

  test("the queue of packets waiting for ARP overflows: the next hop and the queue's size, not 'no route'", async () => {
    // A queue of 1 byte holds one packet: each datagram pushes the one before out (NEIGH_QUEUEFULL).
    const size = (await routed.router.sh("cat /proc/sys/net/ipv4/neigh/out0/unres_qlen_bytes")).text().trim();
    await routed.router.sh("sysctl -qw net.ipv4.neigh.out0.unres_qlen_bytes=1");
    try {
      const r = await diagnose(["-p", "udp", "--daddr", "10.92.53.2"], () => routed.client.udp("10.92.53.2", 7606, { count: 3 }));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("the queue of packets waiting for 10.92.2.99 on out0 to answer ARP was full (net.ipv4.neigh.out0.unres_qlen_bytes = 1): the packet to 10.92.53.2 was dropped to make room (not a routing problem)");
      expect(r.stdout).toContain("sysctl -w net.ipv4.neigh.out0.unres_qlen_bytes=BYTES");
      expect(r.stdout).not.toContain("no route to");
      expectOneCause(r.stdout);
    } finally {
      await routed.router.sh(`sysctl -qw net.ipv4.neigh.out0.unres_qlen_bytes=${size}`);
    }
  });

  test("forwarding turned off on the router's input interface", async () => {
    await routed.router.sh("sysctl -qw net.ipv4.conf.in0.forwarding=0");
    try {
      const r = await diagnose(["-p", "udp", "--dport", "7605"], () => routed.client.udp(routed.serverIp, 7605));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`${routed.serverIp} is not an address of this host and forwarding is off on in0 (net.ipv4.conf.in0.forwarding = 0): the host does not route it`);
      expect(r.stdout).toContain("sysctl -w net.ipv4.conf.in0.forwarding=1");
      expectOneCause(r.stdout);
    } finally {
      await routed.router.sh("sysctl -qw net.ipv4.conf.in0.forwarding=1");
    }
  });

  test("TTL expiry on a router", async () => {
    const r = await diagnose(["-p", "icmp", "--daddr", routed.serverIp], () => routed.client.ping(routed.serverIp, "-t 1", false));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("the packet's TTL ran out at this host (ICMP time exceeded sent)");
    expect(r.stdout).toContain(`traceroute ${routed.serverIp}`);
    expectOneCause(r.stdout);
  });

  test("packet too big for a smaller MTU, Don't Fragment set", async () => {
    const r = await diagnose(["-p", "icmp", "--daddr", routed.serverIp], () => routed.client.ping(routed.serverIp, "-M do -s 1400", false));
    expect(r.code).toBe(1);
    // Named with the MTU and the interface where the kernel says PKT_TOO_BIG (6.0+); else the ICMP error tells.
    const named = r.stdout.includes("reason: PKT_TOO_BIG") ? "the MTU 1280 of out0, the interface towards 10.92.2.2" : "the next hop's MTU";
    expect(r.stdout).toContain(`packet too big: 1428 bytes with Don't Fragment set do not fit ${named}`);
    expectOneCause(r.stdout);
    expect(r.stdout).toContain(`ip route get ${routed.serverIp}`);
  });

  test("socket receive buffer overflow", async () => {
    // A socket with the smallest receive buffer, never read: a few datagrams fill it.
    const reader = await pair.b.ns.serve("udp-full", pair.b.ip4, 7604);
    try {
      const r = await diagnose(["-p", "udp", "--dport", "7604"], () => pair.a.ns.udp(pair.b.ip4, 7604, { count: 40, size: 1000 }));
      expect(r.code).toBe(1);
      // The drop reason (5.17+), else inferred from the location.
      expect(r.stdout).toContain("the receiving socket's buffer was full");
      expect(r.stdout).toContain("RcvbufErrors");
      expectOneCause(r.stdout);
    } finally {
      await reader.stop();
    }
  });

  test("a socket filter rejects every datagram: the socket's filter, once, not a full buffer", async () => {
    const receiver = await pair.b.ns.serve("udp-filtered", pair.b.ip4, 7605);
    try {
      const r = await diagnose(["-p", "udp", "--dport", "7605"], () => pair.a.ns.udp(pair.b.ip4, 7605, { sport: 5605 }));
      expect(r.code).toBe(1);
      // With function hooks, sk_filter_trim_cap's -EPERM says it on every kernel; else the drop reason (5.17+).
      if ((await functionBackends()).length && traceableFunction("sk_filter_trim_cap"))
        expect(r.stdout).toContain("a filter on the receiving socket rejected the packet (sk_filter_trim_cap returned -EPERM)");
      else if (btfHas("SKB_DROP_REASON_SOCKET_FILTER")) expect(r.stdout).toContain("a filter attached to the receiving socket rejected the packet");
      // Where neither exists (a 5.10 without kprobes) the location is all there is, shared with a full buffer.
      else return console.warn("SKIPPED the socket-filter checks: this kernel has neither function hooks for sk_filter_trim_cap nor the drop reason SOCKET_FILTER (5.17+)");
      expect(r.stdout).not.toContain("buffer was full");
      expectOneCause(r.stdout);
    } finally {
      await receiver.stop();
    }
  });

  /** Sends one Ethernet frame from a to b's address through a packet socket: the only way to send what the kernel's own stack would never build. */
  async function sendFrame(etherType: number, payload: string): Promise<void> {
    const mac = (await pair.b.ns.sh(`cat /sys/class/net/${pair.b.dev}/address`)).text().trim();
    const script = [
      "import socket, struct",
      `s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('${pair.a.dev}', 0))`,
      `s.send(bytes.fromhex('${mac.replaceAll(":", "")}') + s.getsockname()[4] + struct.pack('!H', ${etherType}) + ${payload})`,
    ].join("; ");
    await pair.a.ns.sh(`python3 -c "${script}"`);
  }

  /** Runs --diag --json with ARGS while sending, until a packet finding contains TEXT; returns that finding. */
  async function findingFor(args: string[], text: string, traffic: () => Promise<void>) {
    const t = Skbtrail.start(["--diag", "--diag-keep", "--json", ...args]);
    try {
      await t.ready();
      await traffic();
      expect(await t.waitFor(new RegExp(`"kind":"packet".*${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`))).toBe(true);
    } finally {
      await t.stop();
    }
    type F = { message: string; level: string };
    const packet = jsonLines((await t.finished).stdout).find((o) => o.kind === "packet" && o.findings.some((f: F) => f.message.includes(text)));
    const finding = packet?.findings.find((f: F) => f.message.includes(text));
    expect(finding).toBeDefined();
    // One cause, one finding: nothing else about the same drop above info.
    expect(packet!.findings.filter((f: F) => f !== finding && f.level !== "info").map((f: F) => f.message)).toEqual([]);
    return finding;
  }

  test("an IP protocol nothing handles: its drop explained (inferred from the location where the kernel has no drop reasons)", async () => {
    // Protocol 253 (RFC 3692, for experiments): no kernel module or socket takes it.
    const send = () => pair.a.ns.sh(`python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 253).sendto(b'skbtrail', ('${pair.b.ip4}', 0))"`).then(() => {});
    const finding = await findingFor(["-s", pair.a.ip4, "--daddr", pair.b.ip4], "no handler for the packet's IP protocol number", send);
    expect(finding.level).toBe("warn");
    if (!btfHas("SKB_DROP_REASON_IP_NOPROTO")) expect(finding.message).toMatch(/\(inferred from where it was dropped, (ip_protocol_deliver_rcu|ip_local_deliver_finish)/);
  });

  test("a malformed IPv4 header: dropped by the IP layer's header checks (inferred from the location where the kernel has no drop reasons)", async () => {
    // An IPv4 header saying it is 16 bytes long (the minimum is 20): ip_rcv_core refuses it, whatever the checksum.
    const header = `struct.pack('!BBHHHBBH4s4s', 0x44, 0, 28, 0, 0, 64, 253, 0, socket.inet_aton('${pair.a.ip4}'), socket.inet_aton('${pair.b.ip4}')) + b'skbtrail'`;
    const finding = await findingFor(["-s", pair.a.ip4, "--daddr", pair.b.ip4], "the IP header is invalid", () => sendFrame(0x0800, header));
    expect(finding.level).toBe("warn");
    if (!btfHas("SKB_DROP_REASON_IP_INHDR")) expect(finding.message).toMatch(/\(inferred from where it was dropped, ip_rcv_core/);
  });

  test("a frame of a protocol nothing handles (EtherType 0x88b5): normal, said so (inferred from the location where the kernel has no drop reasons)", async () => {
    const netns = await pair.b.ns.inode();
    const finding = await findingFor(["--netns", String(netns), "-i", pair.b.dev], "no protocol handler for this kind of packet", () => sendFrame(0x88b5, "b'skbtrail local experiment'"));
    expect(finding.level).toBe("info");
    if (!btfHas("SKB_DROP_REASON_UNHANDLED_PROTO")) expect(finding.message).toMatch(/\(inferred from where it was dropped, __netif_receive_skb_core/);
  });

  test("a socket closed with unread packets: its queue purged, normal (inferred from the location where the kernel has no reason for it)", async () => {
    // A raw socket for protocol 253 in b gets a copy of the datagram; it is closed unread as soon as the copy is queued.
    const ready = `/tmp/skbtrail-raw-${process.pid}`;
    const script = `import socket, select; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253); open('${ready}', 'w').close(); select.select([s], [], [], 60); s.close()`;
    const reader = Bun.spawn(["ip", "netns", "exec", pair.b.ns.name, "python3", "-c", script]);
    try {
      const send = async () => {
        // The reader's file says its socket is open; a reader that died first fails here, not at the test's timeout.
        while (!existsSync(ready)) {
          if (reader.exitCode !== null) throw new Error(`the raw-socket reader exited early (code ${reader.exitCode})`);
          await Bun.sleep(10);
        }
        await pair.a.ns.sh(`python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 253).sendto(b'skbtrail', ('${pair.b.ip4}', 0))"`);
        expect(await reader.exited).toBe(0);
      };
      const finding = await findingFor(["-s", pair.a.ip4, "--daddr", pair.b.ip4], "a whole queue of packets was discarded at once", send);
      expect(finding.level).toBe("info");
      if (!btfHas("SKB_DROP_REASON_QUEUE_PURGE")) expect(finding.message).toMatch(/\(inferred from where it was dropped, inet_sock_destruct/);
    } finally {
      reader.kill();
      rmSync(ready, { force: true });
    }
  });

  test("normal traffic gives no warning or error: ping, TCP with a normal close, DNS-like UDP", async () => {
    const tcp = await pair.b.ns.serve("tcp", 8080);
    const udp = await pair.b.ns.serve("udp", 5353);
    // --diag-quiet prints only abnormal packets; the same run without it is
    // the control that every packet was seen (and judged) at all.
    const quiet = Skbtrail.start(["--diag", "--diag-quiet", "--diag-keep", "--json", "--addr", pair.b.ip4]);
    const all = Skbtrail.start(["--diag", "--diag-keep", "--json", "--addr", pair.b.ip4]);
    // Last, a datagram nftables drops: --diag-quiet shows it, and records are read in the order
    // they were written, so once it shows, the quiet run has judged all the traffic before it.
    // (Any event: on function hooks the first, udp_send_skb, comes before the UDP header is written.)
    const isMarker = (p: Record<string, any>) => p.events.some((e: Record<string, any>) => e.dport === 7777);
    try {
      await Promise.all([quiet.ready(), all.ready()]);
      expect(await pair.a.ns.ping(pair.b.ip4, "-c2 -i 0.2")).toBe(0);
      expect(await pair.a.ns.tcp(pair.b.ip4, 8080, { message: "hi" })).toBe(0);
      expect(await pair.a.ns.udp(pair.b.ip4, 5353, { reply: true, size: 5 })).toBe(0);
      await pair.a.ns.udp(pair.b.ip4, 7777, { sport: 5780 });
      expect(await quiet.waitFor(/"kind":"packet".*"dport":7777/)).toBe(true);
      expect(await all.waitFor(/"kind":"packet".*"dport":7777/)).toBe(true);
    } finally {
      // The tracers first: what ending the servers does (a reset from a killed server) is not the traffic judged.
      await Promise.all([quiet.stop(), all.stop()]);
      await Promise.all([tcp.stop(), udp.stop()]);
    }
    const seen = jsonLines((await all.finished).stdout).filter((o) => o.kind === "packet");
    const summary = (p: Record<string, any>) => `${p.events[0].proto} ${p.events[0].saddr}:${p.events[0].sport ?? ""} -> ${p.events[0].daddr}:${p.events[0].dport ?? ""}`;
    // The packet's path and flags too: what it was is what a failure must show.
    const abnormal = (p: Record<string, any>) =>
      p.findings
        .filter((f: { level: string }) => f.level !== "info")
        .map((f: { rule: string; level: string; message: string; location?: string }) => `${summary(p)}: ${f.level} ${f.rule} at ${f.location ?? "?"}: ${f.message} (path: ${p.events.map((e: Record<string, any>) => `${e.hook}${e.tcp ? `[${e.tcp.flags}]` : ""}`).join(" ")})`);
    const normal = seen.filter((p) => !isMarker(p));
    expect(normal.flatMap(abnormal)).toEqual([]);
    for (const proto of ["ICMP", "TCP", "UDP"]) expect(normal.map(summary).join("\n")).toContain(proto);
    const r = await quiet.finished;
    expect(r.code).toBe(1); // the marker's drop is an error
    const shown = jsonLines(r.stdout).filter((o) => o.kind === "packet");
    expect(shown.filter((p) => !isMarker(p)).flatMap(abnormal)).toEqual([]);
    expect(shown.filter((p) => !isMarker(p))).toEqual([]);
    expect(shown.filter(isMarker).flatMap(abnormal).join("\n")).toMatch(/error/);
  });
});
