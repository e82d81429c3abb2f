// The drop monitor on the real kernel: real namespaces, veth, nftables
// rules and traffic; the real binary; assertions on what it printed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mapNamesOf } from "../lib/bpf";
import { dropFunction, netfilterDropLocation } from "../lib/kernel";
import { TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { jsonLines, scaled, Skbtrail } from "../lib/skbtrail";
import { dropUnixConnection } from "../lib/unix";

const enabled = requireKernelTests();

describe.skipIf(!enabled)("skbtrail --drop on the host kernel", () => {
  let net: TwoHosts;

  beforeAll(async () => {
    net = await TwoHosts.create("drop", 61);
    // b drops UDP to 7777 and ICMP echo in its input chain, and marks UDP to 7201.
    await net.b.ns.chains(
      { table: "skbtrail_test", chain: "pre", hook: "prerouting", priority: -150, rules: ["udp dport 7201 meta mark set 0x42"] },
      { table: "skbtrail_test", chain: "input", hook: "input", rules: ["udp dport 7777 drop", "icmp type echo-request drop", "icmpv6 type echo-request drop"] },
    );
  });
  afterAll(async () => {
    await net?.destroy();
  });

  const send = (from: "a" | "b", daddr: string, dport: number, sport: number, size = 16) => net[from].ns.udp(daddr, dport, { sport, size });

  test("UDP to a closed port: NO_SOCKET with addresses, ports and location", async () => {
    const t = Skbtrail.start(["--drop", "-p", "udp", "--dport", "7101"]);
    await t.ready();
    await send("a", net.b.ip4, 7101, 5101);
    expect(await t.waitFor(/7101/)).toBe(true);
    const { code, stdout } = await t.stop();
    expect(code).toBe(0);
    expect(stdout).toContain(`UDP: ${net.a.ip4}:5101 -> ${net.b.ip4}:7101 *reason: NO_SOCKET, __udp4_lib_rcv+0x`);
    expect(stdout).toContain("*packet is dropped by kernel*");
    expect(stdout).toMatch(/^\[\d+\.\d{6}\] UDP/m);
    expect(stdout).toMatch(/end trace\.\.\.\ntotal events: 1, lost: 0/);
  });

  test("creates only the maps its program uses: the ring and its counters, none of the packet tracer's", async () => {
    const t = Skbtrail.start(["--drop", "-p", "udp", "--dport", "7102"]);
    await t.ready();
    const maps = await mapNamesOf(t.proc.pid);
    await t.stop();
    expect(maps).toContain("events");
    expect(maps).toContain("stats");
    for (const unused of ["tracked", "tracked_heads", "call_frames", "stash", "sock_kept", "mon_print"]) expect(maps).not.toContain(unused);
  });

  test("nftables drop rule: NETFILTER_DROP in netfilter", async () => {
    const t = Skbtrail.start(["--drop", "--dport", "7777"]);
    await t.ready();
    await send("a", net.b.ip4, 7777, 5777);
    expect(await t.waitFor(/7777/)).toBe(true);
    const { stdout } = await t.stop();
    // nf_hook_slow frees it on NF_DROP; 6.12's nft_do_chain frees it itself.
    expect(stdout).toMatch(new RegExp(`UDP: ${net.a.ip4}:5777 -> ${net.b.ip4}:7777 \\*reason: NETFILTER_DROP, ${netfilterDropLocation()}`));
  });

  test("TCP SYN to a closed port: NO_SOCKET with seq and flags", async () => {
    const t = Skbtrail.start(["--drop", "-p", "tcp", "--dport", "7103"]);
    await t.ready();
    await net.a.ns.tcp(net.b.ip4, 7103);
    expect(await t.waitFor(/7103/)).toBe(true);
    const { stdout } = await t.stop();
    expect(stdout).toMatch(new RegExp(`TCP: ${net.a.ip4}:\\d+ -> ${net.b.ip4}:7103 seq:\\d+, ack:0, flags:S \\*reason: NO_SOCKET, tcp_v4_rcv\\+0x`));
  });

  test("IPv6: UDP to a closed port and an ICMPv6 echo dropped by nftables", async () => {
    const t = Skbtrail.start(["--drop", "-p", "ipv6", "--addr", net.b.ip6]);
    await t.ready();
    await send("a", net.b.ip6, 7104, 5104);
    await net.a.ns.ping(net.b.ip6, "", false);
    expect(await t.waitFor(/ping request/)).toBe(true);
    const { stdout } = await t.stop();
    expect(stdout).toContain(`UDP: [${net.a.ip6}]:5104 -> [${net.b.ip6}]:7104 *reason: NO_SOCKET, __udp6_lib_rcv+0x`);
    expect(stdout).toMatch(new RegExp(`ICMPv6: ${net.a.ip6} -> ${net.b.ip6} ping request, seq: 1, id: \\d+ \\*reason: NETFILTER_DROP`));
  });

  test("ICMP echo dropped by nftables", async () => {
    const t = Skbtrail.start(["--drop", "-p", "icmp"]);
    await t.ready();
    await net.a.ns.ping(net.b.ip4, "", false);
    expect(await t.waitFor(/ping request/)).toBe(true);
    const { stdout } = await t.stop();
    expect(stdout).toMatch(new RegExp(`ICMP: ${net.a.ip4} -> ${net.b.ip4} ping request, seq: 1, id: \\d+ \\*reason: NETFILTER_DROP`));
  });

  test("every filter keeps what it should and excludes what it should", async () => {
    const inodeB = await net.b.ns.inode();
    // A labelled traffic set; each filter must show exactly the labels listed.
    const cases: { args: string[]; prefix?: string[]; shows: string[]; pidOf?: boolean }[] = [
      { args: ["--saddr", net.a.ip4], shows: ["u1", "u2", "syn", "big", "nft"] },
      { args: ["--saddr", "10.61.0.0/24", "--dport", "7202"], shows: ["u2"] },
      { args: ["--daddr", net.a.ip4], shows: ["back"] },
      { args: ["--addr", net.b.ip4], shows: ["u1", "u2", "syn", "big", "nft", "back"] },
      { args: ["--saddr", net.a.ip6], shows: ["u6"] },
      { args: ["--sport", "5201"], shows: ["u1"] },
      { args: ["--dport", "7202"], shows: ["u2"] },
      { args: ["--port", "5207"], shows: ["back"] },
      { args: ["-p", "tcp", "--daddr", net.b.ip4], shows: ["syn"] },
      { args: ["-p", "ipv6", "-p", "udp", "--addr", net.b.ip6], shows: ["u6"] },
      { args: ["--netns", String(inodeB), "-p", "udp"], shows: ["u1", "u2", "big", "nft", "u6"] },
      { args: ["--netns-current", "-p", "udp"], prefix: ["ip", "netns", "exec", net.a.ns.name], shows: ["back"] },
      { args: ["--pkt-len", "200-300", "--addr", net.b.ip4], shows: ["big"] },
      { args: ["--tcp-flags", "S", "--addr", net.b.ip4], shows: ["syn"] },
      { args: ["--tcp-flags", "SA", "--addr", net.b.ip4], shows: [] },
      { args: ["--reason", "NETFILTER_DROP", "--addr", net.b.ip4], shows: ["nft"] },
      { args: ["--ifname", "veth0", "-p", "udp"], shows: ["back"] },
      { args: ["--mark", "0x42"], shows: ["u1"] },
      { args: ["--pid", "PID", "--addr", net.b.ip4], shows: ["u2"], pidOf: true },
    ];
    const PORTS: Record<string, number> = { u1: 7201, u2: 7202, syn: 7203, big: 7204, nft: 7777, u6: 7206, back: 7207 };
    const label = (e: Record<string, any>) => Object.keys(PORTS).find((l) => PORTS[l] === e.dport) ?? `other:${e.proto}:${e.dport}`;
    // The "u2" sender waits on stdin so its pid is known before it sends.
    const u2 = net.a.ns.spawn("send.ts", ["udp", net.b.ip4, "7202", "--sport", "5202", "--wait"]);
    const runs = cases.map((c) => Skbtrail.start(["--drop", "--json", ...c.args.map((a) => (a === "PID" ? String(u2.pid) : a))], c.prefix));
    try {
      // Nineteen runs start at once: slow on two emulated CPUs.
      await Promise.all(runs.map((r) => r.ready(scaled(60_000))));
      expect(await send("a", net.b.ip4, 7201, 5201)).toBe(0); // u1 (marked by nft in b)
      u2.stdin.write("go\n"); // u2
      await u2.stdin.end();
      expect(await u2.exited).toBe(0);
      await net.a.ns.tcp(net.b.ip4, 7203); // syn (refused)
      expect(await send("a", net.b.ip4, 7204, 5204, 220)).toBe(0); // big: IP length 248
      expect(await send("a", net.b.ip4, 7777, 5205)).toBe(0); // nft
      expect(await send("a", net.b.ip6, 7206, 5206)).toBe(0); // u6
      expect(await send("b", net.a.ip4, 7207, 5207)).toBe(0); // back
      // Every run shows what it keeps. "back" comes last: once it is shown,
      // the kernel ran every run's program on every packet of the set.
      await Promise.all(cases.map((c, i) => Promise.all(c.shows.map((l) => runs[i]!.waitFor(new RegExp(`"dport":${PORTS[l]}\\b`))))));
    } finally {
      u2.kill();
      await Promise.all(runs.map((r) => r.stop()));
    }
    const outputs = await Promise.all(runs.map(async (r) => jsonLines((await r.finished).stdout)));
    const seen = outputs.map((lines) => [...new Set(lines.filter((e) => e.kind === "drop").map(label))].filter((l) => !l.startsWith("other")).sort());
    cases.forEach((c, i) => expect({ filter: c.args.join(" "), shows: seen[i] }).toEqual({ filter: c.args.join(" "), shows: [...c.shows].sort() }));
    // And every run read all it was sent before it stopped: what it excluded, it saw and left out.
    cases.forEach((c, i) => expect({ filter: c.args.join(" "), summary: outputs[i]!.at(-1) }).toMatchObject({ filter: c.args.join(" "), summary: { kind: "summary", unread: 0 } }));
    // A run that shows nothing saw the packets too: its filter ran on them in the kernel.
    cases.forEach((c, i) => c.shows.length || expect(outputs[i]!.at(-1)!.filtered, `filtered in kernel by ${c.args.join(" ")}`).toBeGreaterThan(0));
  });

  test("--json lines parse and carry the schema's fields, by name", async () => {
    const t = Skbtrail.start(["--drop", "--json", "--dport", "7301", "-c", "1"]);
    await t.ready();
    await send("a", net.b.ip4, 7301, 5301);
    const { code, stdout, stderr } = await t.finished;
    expect(code).toBe(0);
    expect(stderr).toContain("begin trace...");
    const lines = jsonLines(stdout);
    expect(stdout.trim().split("\n").length).toBe(lines.length); // nothing but JSON on stdout
    const [drop, summary] = lines;
    for (const field of ["time", "kind", "reason", "location", "proto", "saddr", "daddr", "sport", "dport", "ifname", "netns", "cpu"])
      expect(drop).toHaveProperty(field);
    expect(drop).toMatchObject({ kind: "drop", reason: "NO_SOCKET", proto: "UDP", l3: "IPv4", saddr: net.a.ip4, daddr: net.b.ip4, sport: 5301, dport: 7301, ifname: "veth1", netns: await net.b.ns.inode() });
    expect(drop!.location).toMatch(/^__udp4_lib_rcv\+0x[0-9a-f]+$/);
    expect(new Date(drop!.time).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(summary).toMatchObject({ kind: "summary", events: 1, lost: 0, stop: "count" });
  });

  test("an skb with no network layer is named by its socket, and a protocol filter leaves it out", async () => {
    // This test process closes the listener: --pid keeps other processes' drops out.
    const pid = String(process.pid);
    const text = Skbtrail.start(["--drop", "--pid", pid]);
    const json = Skbtrail.start(["--drop", "--json", "--pid", pid]);
    const udp = Skbtrail.start(["--drop", "--json", "--pid", pid, "-p", "udp"]);
    const runs = [text, json, udp];
    try {
      await Promise.all(runs.map((r) => r.ready()));
      dropUnixConnection();
      expect(await text.waitFor(/unix stream socket/)).toBe(true);
      expect(await json.waitFor(/"socket":\{"family":"unix"/)).toBe(true);
    } finally {
      await Promise.all(runs.map((r) => r.stop()));
    }
    const { stdout } = await text.finished;
    // The reason where the kernel gives one (SOCKET_CLOSE on 6.18), the location in the unix socket code.
    expect(stdout).toMatch(/^\[\d+\.\d{6}\] unix stream socket \*(reason: [A-Z_]+, )?unix_\w+\+0x[0-9a-f]+\* \*packet is dropped by kernel\*$/m);
    const drop = jsonLines((await json.finished).stdout).find((o) => o.kind === "drop" && o.socket);
    expect(drop).toMatchObject({ socket: { family: "unix", type: "stream" }, l3: "unknown", saddr: null, daddr: null, pid: process.pid });
    // -p udp saw the same drop in the kernel and left it out.
    const udpLines = jsonLines((await udp.finished).stdout);
    expect(udpLines.filter((o) => o.kind === "drop")).toEqual([]);
    expect(udpLines.at(-1)).toMatchObject({ kind: "summary", unread: 0 });
    expect(udpLines.at(-1)!.filtered).toBeGreaterThan(0);
  });

  test("--drop-stack prints the symbolized kernel stack of the drop", async () => {
    const t = Skbtrail.start(["--drop", "--drop-stack", "--dport", "7401", "-c", "1"]);
    await t.ready();
    await send("a", net.b.ip4, 7401, 5401);
    const { stdout } = await t.finished;
    // The first frame is the function that fires skb:kfree_skb, which depends on the kernel.
    expect(stdout).toMatch(new RegExp(`NO_SOCKET.*\\nCall Stack:\\n {4}-> ${dropFunction()}\\+0x[0-9a-f]+\\n {4}-> __udp4_lib_rcv\\+0x[0-9a-f]+\\n`));
  });
});
