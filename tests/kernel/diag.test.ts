// --diag on the host kernel: one real cause per scenario, each asserting
// the finding's message and advice, and a clean run with no finding.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connectTcp, Routed, TwoHosts } from "../lib/netns";
import { Skbtrail, jsonLines } from "../lib/skbtrail";
import { requireKernelTests } from "../lib/require";

const LIB = `${import.meta.dir}/../lib`;
const enabled = requireKernelTests();

/** Runs --diag with these filters around `traffic`; stops at the first error (no --diag-keep). */
async function diagnose(args: string[], traffic: () => Promise<unknown>) {
  // It stops at the first error; the timeout only bounds a failing run (VMs are slow).
  const t = Skbtrail.start(["--diag", ...args, "--timeout", "90"]);
  await t.ready();
  await traffic();
  return t.finished;
}

describe.skipIf(!enabled)("--diag finds the cause", () => {
  let pair: TwoHosts;
  let routed: Routed;

  beforeAll(async () => {
    pair = await TwoHosts.create("dg", 91);
    routed = await Routed.create("dgr", 92);
    await pair.b.ns.nft(`
      table inet skbtrail_diag_filter {
        chain input_drop_rules {
          type filter hook input priority 0; policy accept;
          udp dport 7777 drop
        }
      }`);
    await routed.router.nft(`
      table inet router_firewall {
        chain forward_filter_chain {
          type filter hook forward priority 0; policy accept;
          udp dport 7778 drop
        }
      }`);
    await routed.router.sh("sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.in0.rp_filter=1 && ip link set out0 mtu 1280");
    await routed.server.sh("ip link set veth0 mtu 1280");
    // A spoofed source for the rp_filter case; a permanent neighbour entry so
    // the client does not ARP from that source (the router would not answer).
    const routerMac = (await routed.router.sh("cat /sys/class/net/in0/address").text()).trim();
    await routed.client.sh(`ip addr add 10.92.9.9/32 dev veth0 && ip neigh replace 10.92.1.1 lladdr ${routerMac} dev veth0 nud permanent`);
  });
  afterAll(async () => {
    await Promise.all([pair?.destroy(), routed?.destroy()]);
  });

  test("closed UDP port", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7601"], () => pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7601 5601`));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("---------------- ANALYSIS RESULT ---------------------");
    expect(r.stdout).toMatch(/\[1\] ERROR happens in icmp_send\(.*\):\n\tnothing listens on udp port 7601 at 10\.91\.0\.2: the host answered ICMP port unreachable\n/);
    expect(r.stdout).toContain("fix advice:\n\tcheck that the service runs and is bound to 10.91.0.2 port 7601: ss -lunp | grep ':7601'");
  });

  test("closed TCP port: refused with a reset", async () => {
    const r = await diagnose(["-p", "tcp", "--dport", "7602"], () => connectTcp(pair.a.ns, pair.b.ip4, 7602));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("connection refused: nothing listens on TCP port 7602 at 10.91.0.2");
    expect(r.stdout).toContain("ss -ltnp | grep ':7602'");
  });

  test("nftables drop in an input chain: hook, table and chain in full", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7777"], () => pair.a.ns.sh(`bun ${LIB}/send.ts udp ${pair.b.ip4} 7777 5777`));
    expect(r.code).toBe(1);
    // Tracepoint kernels name the chain from the drop's stack and the ruleset;
    // function kernels (VM tests) from nft_do_chain's verdict: same facts.
    expect(r.stdout).toContain("NETFILTER_DROP");
    expect(r.stdout).toContain("ipv4 INPUT");
    expect(r.stdout).toContain("table inet skbtrail_diag_filter, chain input_drop_rules (");
    expect(r.stdout).toContain("fix advice:\n\tfind the rule that drops it: nft -a list chain inet skbtrail_diag_filter input_drop_rules");
  });

  test("nftables drop in a forward chain on a router", async () => {
    const r = await diagnose(["-p", "udp", "--dport", "7778"], () => routed.client.sh(`bun ${LIB}/send.ts udp ${routed.serverIp} 7778 5778`));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("ipv4 FORWARD");
    expect(r.stdout).toContain("table inet router_firewall, chain forward_filter_chain (");
    expect(r.stdout).toContain("nft -a list chain inet router_firewall forward_filter_chain");
  });

  test("reverse-path filter", async () => {
    const r = await diagnose(["-s", "10.92.9.9"], () => routed.client.try(`python3 -c "
import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.92.9.9', 5603)); s.sendto(b'x', ('${routed.serverIp}', 7603))"`));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("drop reason:\n\tIP_RPFILTER");
    expect(r.stdout).toMatch(/fix advice:\n\t.*rp_filter/);
  });

  test("no route to host, answered by the router", async () => {
    const r = await diagnose(["--daddr", "10.92.99.1"], () => routed.client.try("ping -c1 -W1 10.92.99.1"));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/no route to 10\.92\.99\.1: the host answered ICMP destination unreachable \((net|host) unreachable\)/);
    expect(r.stdout).toContain("ip route get 10.92.99.1");
  });

  test("TTL expiry on a router", async () => {
    const r = await diagnose(["-p", "icmp", "--daddr", routed.serverIp], () => routed.client.try(`ping -c1 -W1 -t 1 ${routed.serverIp}`));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("the packet's TTL ran out at this host (ICMP time exceeded sent)");
    expect(r.stdout).toContain(`traceroute ${routed.serverIp}`);
  });

  test("packet too big for a smaller MTU, Don't Fragment set", async () => {
    const r = await diagnose(["-p", "icmp", "--daddr", routed.serverIp], () => routed.client.try(`ping -c1 -W1 -M do -s 1400 ${routed.serverIp}`));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("packet too big: 1428 bytes with Don't Fragment set do not fit the next hop's MTU");
    expect(r.stdout).toContain(`ip route get ${routed.serverIp}`);
  });

  test("socket receive buffer overflow", async () => {
    const reader = Bun.spawn(["ip", "netns", "exec", pair.b.ns.name, "python3", "-c", `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
s.bind(("${pair.b.ip4}", 7604))
print("listening", flush=True)
time.sleep(300)`], { stdout: "pipe" });
    try {
      await reader.stdout.getReader().read();
      const r = await diagnose(["-p", "udp", "--dport", "7604"], () =>
        pair.a.ns.sh(`for i in $(seq 1 40); do bun ${LIB}/send.ts udp ${pair.b.ip4} 7604 0 1000; done`),
      );
      expect(r.code).toBe(1);
      // From udp:udp_fail_queue_rcv_skb where it carries the skb (6.x), else from the drop reason.
      expect(r.stdout).toMatch(/the UDP socket could not queue the packet \(receive buffer full or out of memory\)|the receiving socket's buffer was full/);
      expect(r.stdout).toContain("RcvbufErrors");
    } finally {
      reader.kill();
    }
  });

  test("normal traffic gives no warning or error: ping, TCP with a normal close, DNS-like UDP", async () => {
    const tcp = Bun.spawn(["ip", "netns", "exec", pair.b.ns.name, "bun", `${LIB}/serve.ts`, "tcp", "8080", "10"], { stdout: "pipe" });
    const udp = Bun.spawn(["ip", "netns", "exec", pair.b.ns.name, "bun", `${LIB}/serve.ts`, "udp", "5353", "10"], { stdout: "pipe" });
    try {
      await Promise.all([tcp.stdout.getReader().read(), udp.stdout.getReader().read()]);
      const t = Skbtrail.start(["--diag", "--diag-quiet", "--diag-keep", "--json", "--addr", pair.b.ip4, "--timeout", "5"]);
      await t.ready();
      await pair.a.ns.try(`ping -c2 -i 0.2 -W1 ${pair.b.ip4}`);
      await pair.a.ns.try(`timeout 3 bash -c 'exec 3<>/dev/tcp/${pair.b.ip4}/8080; echo hi >&3; cat <&3; exec 3>&-'`);
      await pair.a.ns.try(`python3 -c "
import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'query', ('${pair.b.ip4}', 5353)); s.recvfrom(100)"`);
      const r = await t.finished;
      const packets = jsonLines(r.stdout).filter((o) => o.kind === "packet");
      expect(packets.flatMap((p) => p.findings.map((f: { rule: string; level: string; message: string }) => `${f.level} ${f.rule}: ${f.message}`))).toEqual([]);
      expect(r.code).toBe(0);
      expect(jsonLines(r.stdout).at(-1)).toMatchObject({ kind: "summary" });
    } finally {
      tcp.kill();
      udp.kill();
    }
  });
});
