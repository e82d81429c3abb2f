// The rule engine on event sequences shaped like real packet lives (as the
// kernel tests record them), one per rule family.
import { describe, expect, test } from "bun:test";
import { dropReasonsText, rulesText } from "../../src/common/assets";
import { RuleEngine, worst, type Finding, type Names } from "../../src/diagnosis/rules";
import type { HookEvent, NfInfo, Packet } from "../../src/events/decode";
import { loadDropReasons, loadRules } from "../../src/diagnosis/knowledge";
import { tracepoint_id } from "../../src/abi/layout.generated";
import type { HookLine } from "../../src/events/line";
import { tracepointById } from "../../src/plan/tracepoints";

const reasonNames = new Map([[2, "NOT_SPECIFIED"], [3, "NO_SOCKET"], [6, "SOCKET_RCVBUFF"], [12, "NETFILTER_DROP"], [16, "IP_RPFILTER"], [21, "IP_INHDR"]]);
const symbols = new Map([
  [0x1000, "__udp4_lib_rcv+0x4bc"],
  [0x2000, "ping_rcv+0xab"],
  [0x3000, "nft_do_chain+0x3e8"],
  [0x4000, "tcp_v4_rcv+0x91"],
  [0x5000, "icmp_rcv+0x1b1"],
  [0x6000, "sk_stream_kill_queues+0x58"],
  [0x7000, "tcp_rcv_established+0x20"],
  [0x8000, "ip_rcv_core.isra.0+0x1c"],
  [0x9000, "ip6_mc_input+0x1a6"],
]);
const names: Names = {
  reason: (v) => reasonNames.get(v),
  symbol: (_hi, lo) => symbols.get(lo) ?? "?",
  rstReason: (v) => (v === 1 ? "NO_SOCKET" : undefined),
  tracepoint: (e) => tracepointById.get(e.tracepoint)?.name,
};
const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
const known = { reasons: new Set(reasons.keys()) };
const diagnoser = (extra = "") => new RuleEngine([...loadRules(rulesText, "rules.yaml", known), ...(extra ? loadRules(extra, "mine.yaml", known) : [])], reasons, names);

const UDP: Partial<Packet> = { l3: 0x0800, l4: 17, saddr: "10.0.0.1", daddr: "10.0.0.2", sport: 5000, dport: 7777, ipLen: 48 };
const TCP: Partial<Packet> = { ...UDP, l4: 6, tcpFlags: 2 };

interface Step {
  name: string;
  tp?: number;
  /** A function hit that stands in for the tracepoint `tp` (__icmp_send for icmp:icmp_send). */
  standIn?: boolean;
  pkt?: Partial<Packet>;
  drop?: { reason: number; at: number };
  info?: [number, number];
  ret?: number;
  nf?: Partial<NfInfo>;
}

function life(steps: Step[], base: Partial<Packet> = UDP): HookLine[] {
  return steps.map((s, i) => {
    const pkt = { parsed: 6, tcpFlags: 0, tcpSeq: 0, tcpAck: 0, icmpType: 0, icmpCode: 0, icmpId: 0, icmpSeq: 0, arpOp: 0, vlan: 0, ttl: 64, skFamily: 0, skType: 0, ...base, ...s.pkt } as Packet;
    const e: HookEvent = {
      kind: "hook", cpu: 0, timeNs: 1000 + i, pkt, ctxId: 1, func: s.tp && !s.standIn ? 0 : 0x9000 + i, tracepoint: s.tp ?? 0, phase: 0,
      flags: s.drop ? 5 : 0, retval: 0, skb2: "", skb2Key: 0, location: { hi: 0xffffffff, lo: s.drop?.at ?? 0 }, reason: s.drop?.reason ?? 0,
      info: s.info ?? [0, 0], stackId: -1,
      meta: { skb: "ffff888100000000", skbKey: 1, len: 0, mark: 0, ifindex: 2, netns: 1, pid: 1, ifname: "veth1", comm: "x", ct: 0 },
      nf: s.nf ? { family: 2, hook: 1, tableFamily: 1, table: "", chain: "", hookFuncs: [], ...s.nf } : undefined,
    };
    const ret = s.ret === undefined ? undefined : { ...e, phase: 1, retval: s.ret };
    return { e, name: s.name, notes: [], ret };
  });
}

const T = tracepoint_id;
const kfree = (reason: number, at: number): Step => ({ name: "kfree_skb", tp: T.TP_KFREE_SKB, drop: { reason, at } });
const findings = (lines: HookLine[], extra = "") => diagnoser(extra).diagnose(lines, () => undefined);
const summary = (fs: Finding[]) => fs.map((f) => `${f.level}:${f.rule}`);

describe("rule families", () => {
  test("closed UDP port: the ICMP error explains it, the bare drop reason is not repeated", () => {
    const fs = findings(life([{ name: "netif_receive_skb", tp: T.TP_NETIF_RECEIVE_SKB }, { name: "icmp_send", tp: T.TP_ICMP_SEND, info: [3, 3] }, kfree(3, 0x1000)]));
    expect(summary(fs)).toEqual(["error:port-unreachable"]);
    expect(fs[0]!.message).toBe("nothing listens on udp port 7777 at 10.0.0.2: the host answered ICMP port unreachable");
    expect(fs[0]!.advice).toContain("ss -lunp | grep ':7777'");
    // Where the kernel lacks the tracepoint, __icmp_send stands in for it: the same finding.
    expect(summary(findings(life([{ name: "__icmp_send", tp: T.TP_ICMP_SEND, standIn: true, info: [3, 3] }, kfree(3, 0x1000)])))).toEqual(["error:port-unreachable"]);
  });

  test("closed TCP port: connection refused, once, whether or not the reset carries a reason", () => {
    const withReason = findings(life([{ name: "tcp_send_reset", tp: T.TP_TCP_SEND_RESET, info: [1, 0] }, kfree(3, 0x4000)], TCP));
    const without = findings(life([kfree(3, 0x4000)], TCP));
    expect(summary(withReason)).toEqual(["error:closed-tcp-port"]);
    expect(summary(without)).toEqual(["error:closed-tcp-port"]);
    expect(without[0]!.advice).toContain("ss -ltnp");
  });

  test("nftables drop seen by function hooks: table and chain in full, verdicts by name", () => {
    const fs = findings(life([
      { name: "nf_hook_slow", nf: { family: 2, hook: 1 }, ret: -1 },
      { name: "nft_do_chain", nf: { family: 2, hook: 1, table: "my_long_table_name", chain: "my_input_chain", tableFamily: 1 }, ret: 0 },
      kfree(12, 0x3000),
    ]));
    // One cause, one finding: the chain's finding replaces NETFILTER_DROP's generic text and nf_hook_slow's.
    expect(summary(fs)).toEqual(["error:nft-chain-drop"]);
    expect(fs[0]!.message).toBe("packet is dropped by nftables: table inet my_long_table_name, chain my_input_chain (ipv4 INPUT)");
    expect(fs[0]!.advice).toContain("nft -a list chain inet my_long_table_name my_input_chain");
  });

  test("a chain that frees the packet itself (6.8+: NF_STOLEN with the errno above) dropped it; a plain NF_STOLEN did not", () => {
    const chain = (ret: number, drop: boolean) =>
      summary(findings(life([
        { name: "nft_do_chain", nf: { family: 2, hook: 1, table: "t", chain: "c", tableFamily: 1 }, ret },
        ...(drop ? [kfree(12, 0x3000)] : []),
      ])));
    const EPERM = 1;
    expect(chain((EPERM << 16) | 2, true)).toEqual(["error:nft-chain-drop"]);
    expect(chain(2, false)).toEqual([]);
    expect(chain(0, true)).toEqual(["error:nft-chain-drop"]);
  });

  test("netfilter drop without the chain: the hook's finding replaces the generic text", () => {
    expect(summary(findings(life([{ name: "nf_hook_slow", nf: { family: 2, hook: 1 }, ret: -1 }, kfree(12, 0x3000)])))).toEqual(["error:nf-hook-drop"]);
  });

  test("an accepting chain is no finding", () => {
    const fs = findings(life([{ name: "nf_hook_slow", nf: { hook: 0 }, ret: 1 }, { name: "nft_do_chain", nf: { table: "t", chain: "c" }, ret: 1 }]));
    expect(fs).toEqual([]);
  });

  test("NAT and then no socket: one finding about the mapping", () => {
    const dnat = { daddr: "10.9.9.9", dport: 8080 };
    const fs = findings(life([{ name: "netif_receive_skb", tp: T.TP_NETIF_RECEIVE_SKB }, { name: "ip_local_deliver", pkt: dnat }, { ...kfree(3, 0x1000), pkt: dnat }]));
    expect(summary(fs)).toEqual(["error:nat-then-no-socket"]);
    expect(fs[0]!.advice).toContain("10.9.9.9:8080");
  });

  test("a raw-socket ping's reply found no ping socket: information, not an error (dropped in ping_rcv, or in icmp_rcv up to 6.x)", () => {
    for (const at of [0x2000, 0x5000]) {
      const fs = findings(life([kfree(3, at)], { l3: 0x0800, l4: 1, saddr: "10.0.0.2", daddr: "10.0.0.1", icmpType: 0 }));
      expect(summary(fs)).toEqual(["info:ping-reply-raw-socket"]);
      expect(worst(fs)).toBe("info");
    }
    // Before drop reasons (5.10): reasonless in icmp_rcv, for an echo reply only.
    const reasonless = (icmpType: number) => summary(findings(life([kfree(2, 0x5000)], { l3: 0x0800, l4: 1, saddr: "10.0.0.2", daddr: "10.0.0.1", icmpType })));
    expect(reasonless(0)).toEqual(["info:ping-reply-raw-socket-no-reason"]);
    expect(reasonless(8)).toEqual(["warn:drop-reason"]);
  });

  test("a closing socket purges a queued packet (Debian 6.1's normal TCP close): information", () => {
    expect(summary(findings(life([kfree(2, 0x6000)], TCP)))).toEqual(["info:socket-closed-with-queued-packet"]);
    // The same reasonless drop elsewhere still warns.
    expect(summary(findings(life([kfree(2, 0x7000)], TCP)))).toEqual(["warn:drop-reason"]);
  });

  test("IPv6 multicast for a group nobody joined (router solicitations on hosts): information", () => {
    const fs = findings(life([kfree(2, 0x9000)], { l3: 0x86dd, l4: 58, saddr: "fe80::1", daddr: "ff02::2", icmpType: 133 }));
    expect(summary(fs)).toEqual(["info:ipv6-multicast-not-joined"]);
    expect(fs[0]!.message).toContain("IPv6 multicast to ff02::2, a group nothing on veth1 joined");
  });

  test("a drop without a precise reason at a known site gets that site's reason, marked as inferred", () => {
    // NOT_SPECIFIED (5.17+), and no reason at all (before 5.17: a value the kernel has no name for).
    for (const reason of [2, 0]) {
      const [f, ...rest] = findings(life([kfree(reason, 0x1000)]));
      expect(rest).toEqual([]);
      expect(f).toMatchObject({ rule: "drop-reason", level: "error", reason: "NOT_SPECIFIED", inferred: "NO_SOCKET" });
      expect(f!.message).toBe("packet is dropped by kernel: no socket is bound to the destination port (inferred from where it was dropped, __udp4_lib_rcv)");
      expect(f!.advice).toContain("ss -ltnp");
    }
    // The compiler's suffixes do not hide the function.
    expect(findings(life([kfree(2, 0x8000)]))[0]).toMatchObject({ inferred: "IP_INHDR" });
    expect(diagnoser().reasonOf(life([kfree(0, 0x3000)])[0]!.e)).toBe("NETFILTER_DROP");
    // A precise reason is never second-guessed.
    expect(findings(life([kfree(16, 0x1000)]))[0]).toMatchObject({ reason: "IP_RPFILTER", inferred: undefined });
    // A kernel that has NO_SOCKET and said NOT_SPECIFIED in __udp4_lib_rcv meant another cause: nothing is inferred.
    const modern = new RuleEngine(loadRules(rulesText, "rules.yaml", known), reasons, names, new Set(["NOT_SPECIFIED", "NO_SOCKET"]));
    expect(modern.reasonOf(life([kfree(2, 0x1000)])[0]!.e)).toBe(undefined);
    expect(modern.reasonOf(life([kfree(2, 0x8000)])[0]!.e)).toBe("IP_INHDR");
    // There tcp_v4_rcv's reasonless discard is a TIME_WAIT socket's business; before 5.17 it is the missing socket,
    // and the rules about NO_SOCKET apply to the inferred reason.
    const timeWait = life([kfree(2, 0x4000)], TCP);
    expect(summary(modern.diagnose(timeWait, () => undefined))).toEqual(["info:tcp-time-wait-segment"]);
    expect(findings(timeWait)[0]).toMatchObject({ rule: "closed-tcp-port", level: "error" });
    // Where functions are traced, the TIME_WAIT socket's handling shows in the path: information on every kernel.
    for (const reason of [0, 2]) {
      const handled = life([{ name: "tcp_timewait_state_process" }, kfree(reason, 0x4000)], TCP);
      expect(summary(findings(handled))).toEqual(["info:tcp-time-wait-handled"]);
      expect(summary(modern.diagnose(handled, () => undefined))).toEqual(["info:tcp-time-wait-handled"]);
    }
    // 5.10 under emulation: a reply's skb took the address of a delivered segment (a TCP clone, whose slab slot
    // is freed with its original): its late FIN, handled by TIME_WAIT, is neither NAT nor a missing socket.
    const reply = { saddr: UDP.daddr, daddr: UDP.saddr, sport: UDP.dport, dport: UDP.sport };
    const reused = life([{ name: "tcp_queue_rcv" }, { name: "__ip_local_out", pkt: reply }, { name: "tcp_timewait_state_process", pkt: reply }, { ...kfree(0, 0x4000), pkt: reply }], TCP);
    expect(summary(findings(reused))).toEqual(["info:tcp-time-wait-handled"]);
  });

  test("a reply in a reused skb is no NAT; a translated one still is", () => {
    const noSocket = (pkt: Partial<Packet>) => summary(findings(life([{ name: "ip_rcv" }, { ...kfree(3, 0x1000), pkt }])));
    expect(noSocket({ saddr: UDP.daddr, daddr: UDP.saddr, sport: UDP.dport, dport: UDP.sport })).not.toContain("error:nat-then-no-socket");
    expect(noSocket({ daddr: "10.9.9.9" })).toEqual(["error:nat-then-no-socket"]);
    expect(noSocket({ sport: 1 })).toEqual(["error:nat-then-no-socket"]);
    // A translated segment a TIME_WAIT socket handled found its socket.
    const dnat = { daddr: "10.9.9.9" };
    expect(summary(findings(life([{ name: "ip_rcv" }, { name: "tcp_timewait_state_process", pkt: dnat }, { ...kfree(0, 0x4000), pkt: dnat }], TCP)))).toEqual(["info:tcp-time-wait-handled"]);
  });

  test("ICMP errors the kernel sent: TTL, MTU, no route, reject", () => {
    const sent = (type: number, code: number) => summary(findings(life([{ name: "icmp_send", tp: T.TP_ICMP_SEND, info: [type, code] }], { ...UDP, ipLen: 1400 })));
    expect(sent(11, 0)).toEqual(["error:ttl-exceeded"]);
    expect(sent(3, 4)).toEqual(["error:fragmentation-needed"]);
    expect(sent(3, 1)).toEqual(["error:no-route"]);
    expect(sent(3, 13)).toEqual(["error:admin-prohibited"]);
    const mtu = findings(life([{ name: "icmp_send", tp: T.TP_ICMP_SEND, info: [3, 4] }], { ...UDP, ipLen: 1400 }));
    expect(mtu[0]!.message).toContain("1400 bytes");
    // The forward path's drop after a TTL ran out (IP_INHDR) is the same cause: one finding.
    expect(summary(findings(life([{ name: "icmp_send", tp: T.TP_ICMP_SEND, info: [11, 0] }, kfree(21, 0x8000)])))).toEqual(["error:ttl-exceeded"]);
    // Before drop reasons (5.10) the drop after "fragmentation needed" is reasonless: the same cause, one finding.
    expect(summary(findings(life([{ name: "icmp_send", tp: T.TP_ICMP_SEND, info: [3, 4] }, kfree(2, 0x8000)], { ...UDP, ipLen: 1400 })))).toEqual(["error:fragmentation-needed"]);
  });

  test("sockets: receive queue full; a UDP queueing failure is its drop reason's finding alone", () => {
    expect(summary(findings(life([{ name: "sock_rcvqueue_full", tp: T.TP_SOCK_RCVQUEUE_FULL }])))).toEqual(["error:socket-receive-queue-full"]);
    expect(summary(findings(life([{ name: "udp_fail_queue_rcv_skb", tp: T.TP_UDP_FAIL_QUEUE_RCV_SKB, info: [-105, 0] }, kfree(6, 0x1000)])))).toEqual([`${reasons.get("SOCKET_RCVBUFF")!.level}:drop-reason`]);
  });

  test("return values by meaning: XDP_DROP, conntrack out of window, iptables NF_DROP, a socket filter's -EPERM", () => {
    expect(summary(findings(life([{ name: "do_xdp_generic", ret: 1 }])))).toEqual(["error:xdp-drop"]);
    expect(summary(findings(life([{ name: "do_xdp_generic", ret: 2 }])))).toEqual([]);
    expect(summary(findings(life([{ name: "tcp_in_window", ret: 0 }], TCP)))).toEqual(["warn:conntrack-out-of-window"]);
    expect(summary(findings(life([{ name: "ipt_do_table", ret: 0 }])))).toEqual(["error:iptables-drop"]);
    // A socket's filter: -EPERM, then a drop whose reason (none, or one inferred from a shared site) it replaces.
    expect(summary(findings(life([{ name: "sk_filter_trim_cap", ret: -1 }, kfree(2, 0x1000)])))).toEqual(["error:socket-filter-rejected"]);
    expect(summary(findings(life([{ name: "sk_filter_trim_cap", ret: 0 }])))).toEqual([]);
  });

  test("TCP retransmission and bad checksum", () => {
    expect(summary(findings(life([{ name: "tcp_retransmit_skb", tp: T.TP_TCP_RETRANSMIT_SKB }], TCP)))).toEqual(["warn:tcp-retransmission"]);
    expect(summary(findings(life([{ name: "tcp_bad_csum", tp: T.TP_TCP_BAD_CSUM }], TCP)))).toEqual(["error:tcp-bad-checksum"]);
  });

  test("a drop with only its reason gets the knowledge base's explanation and advice", () => {
    const fs = findings(life([kfree(16, 0x1000)]));
    expect(fs).toHaveLength(1);
    expect(fs[0]).toMatchObject({ rule: "drop-reason", reason: "IP_RPFILTER", level: reasons.get("IP_RPFILTER")!.level, advice: reasons.get("IP_RPFILTER")!.advice });
  });

  test("a normal life has no findings", () => {
    expect(findings(life([{ name: "net_dev_queue", tp: T.TP_NET_DEV_QUEUE }, { name: "consume_skb", tp: T.TP_CONSUME_SKB }]))).toEqual([]);
  });

  test("user rules: 'after' looks at earlier events of the same packet", () => {
    const rule = "- id: after-nat\n  level: warn\n  after: { hook: nf_nat_manip_pkt }\n  when: { drop_reason: any }\n  message: dropped after NAT at {hook}\n";
    expect(summary(findings(life([{ name: "nf_nat_manip_pkt" }, kfree(2, 0x1000)]), rule))).toContain("warn:after-nat");
    expect(summary(findings(life([kfree(2, 0x1000), { name: "nf_nat_manip_pkt" }]), rule))).not.toContain("warn:after-nat");
  });
});
