// --sock --diag's judgement, offline: connections made of sock_event
// records (bytes as the kernel writes them), summed up by the real
// Connections, judged by the real connection rules of knowledge/rules.yaml
// through ConnectionDiagnosis, and the loader's checks of connection rules.
import { describe, expect, test } from "bun:test";
import { event_kind, event_version, layout, tracepoint_id } from "../../src/abi/layout.generated";
import { dropReasonsText, rulesText } from "../../src/common/assets";
import { SkbtrailError } from "../../src/common/errors";
import { ConnectionDiagnosis, HOLD_NS, judgeConnection, type ConnectionVerdict } from "../../src/diagnosis/connections";
import { ListenQueues, listenOverflowCount, waitingListeners } from "../../src/diagnosis/listen";
import { loadDropReasons, loadRules, type Rule } from "../../src/diagnosis/knowledge";
import type { RecordBytes } from "../../src/events/decode";
import { Connections, decodeSock, healthyConnection, NO_RTT, sockNotes, type SockEvent, type SockNamer } from "../../src/events/sock";
import { addrKey } from "../../src/kernel/kallsyms";
import { connectionFindingJson } from "../../src/output/json";
import { Clock } from "../../src/output/time";

const T = tracepoint_id;
const S = layout.sock_event.fields;
const P = layout.packet.fields;
const H = layout.event_header.fields;
const STATES = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"];
const CA = ["CA_Open", "CA_Disorder", "CA_CWR", "CA_Recovery", "CA_Loss"];
const namer: SockNamer = { tcpState: (v) => STATES[v] || undefined, caState: (v) => CA[v], rstReason: () => undefined };

interface Spec {
  tp: number;
  state: string;
  old?: string;
  us: number;
  sk?: number;
  arg?: number;
  rttUs?: number;
  srttUs?: number;
  minRttUs?: number;
  l4?: number;
  rcvbuf?: number;
  /** A socket function's call (tracepoint TP_NONE), by name (FUNCTIONS). */
  fn?: string;
  acceptQueue?: [number, number];
  timeouts?: number;
  /** The socket's pending error (errno). */
  skErr?: number;
}

/** Made-up addresses of the socket functions the records name (their high half 0xffffffff). */
const FUNCTIONS: Record<string, number> = { tcp_retransmit_timer: 0x81001000, tcp_conn_request: 0x81002000, tcp_send_probe0: 0x81003000, inet_csk_accept: 0x81004000 };
const FUNCTION_NAMES = new Map(Object.entries(FUNCTIONS).map(([name, lo]) => [addrKey(0xffffffff, lo), name]));

/** A sock_event as the kernel writes it: 10.0.0.1:40000 -> 10.0.0.2:80 (TCP unless l4 says). */
function ev(r: Spec): SockEvent {
  const u8 = new Uint8Array(layout.sock_event.size);
  const v = new DataView(u8.buffer);
  v.setUint16(H.kind.offset, event_kind.EVENT_SOCK, true);
  v.setUint16(H.size.offset, layout.sock_event.size, true);
  u8[H.version.offset] = event_version.EVENT_VERSION;
  v.setUint32(H.time_ns.offset, (r.us * 1000) % 2 ** 32, true);
  v.setUint32(H.time_ns.offset + 4, Math.floor((r.us * 1000) / 2 ** 32), true);
  u8.set([10, 0, 0, 1], S.pkt.offset + P.saddr.offset);
  u8.set([10, 0, 0, 2], S.pkt.offset + P.daddr.offset);
  v.setUint16(S.pkt.offset + P.l3_proto.offset, 0x0800, true);
  u8[S.pkt.offset + P.l4_proto.offset] = r.l4 ?? 6;
  v.setUint16(S.pkt.offset + P.sport.offset, 40000, true);
  v.setUint16(S.pkt.offset + P.dport.offset, 80, true);
  v.setUint32(S.sk.offset, r.sk ?? 0x1000, true);
  v.setUint32(S.sk.offset + 4, 0xffff8881, true);
  v.setUint32(S.tracepoint.offset, r.tp, true);
  v.setInt32(S.arg.offset, r.arg ?? -1, true);
  u8[S.state.offset] = STATES.indexOf(r.state);
  u8[S.old_state.offset] = r.old ? STATES.indexOf(r.old) : 0;
  u8[S.tcp.offset] = (r.l4 ?? 6) === 6 ? 1 : 0;
  v.setUint32(S.rtt_us.offset, r.rttUs ?? 0, true);
  v.setUint32(S.srtt_us.offset, r.srttUs ?? 0, true);
  v.setUint32(S.min_rtt_us.offset, r.minRttUs ?? NO_RTT, true);
  v.setInt32(S.rcvbuf.offset, r.rcvbuf ?? 0, true);
  if (r.fn) {
    v.setUint32(S.func.offset, FUNCTIONS[r.fn]!, true);
    v.setUint32(S.func.offset + 4, 0xffffffff, true);
  }
  v.setUint32(S.ack_backlog.offset, r.acceptQueue?.[0] ?? 0, true);
  v.setUint32(S.max_ack_backlog.offset, r.acceptQueue?.[1] ?? 0, true);
  u8[S.timeouts.offset] = r.timeouts ?? 0;
  u8[S.sk_err.offset] = r.skErr ?? 0;
  const b: RecordBytes = { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
  return decodeSock(b, 0, FUNCTION_NAMES);
}

const set = (old: string, state: string, us: number, more: Partial<Spec> = {}) => ev({ tp: T.TP_INET_SOCK_SET_STATE, old, state, us, ...more });
const rules: Rule[] = loadRules(rulesText, "knowledge/rules.yaml", { reasons: new Set(loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml").keys()) });

/** Runs events through Connections and the diagnosis as --sock --diag does; the verdicts due by `untilUs`. */
function judge(events: SockEvent[], untilUs?: number): ConnectionVerdict[] {
  const connections = new Connections(namer);
  const diagnosis = new ConnectionDiagnosis(rules);
  const out: ConnectionVerdict[] = [];
  for (const e of events) {
    for (const c of connections.add(e)) out.push(...diagnosis.hold(c));
    out.push(...diagnosis.event(e));
  }
  if (untilUs !== undefined) out.push(...diagnosis.due(untilUs * 1000));
  else {
    for (const c of connections.drain(1e12)) out.push(...diagnosis.hold(c));
    out.push(...diagnosis.drain());
  }
  return out;
}

const ids = (v: ConnectionVerdict) => v.findings.map((f) => f.rule);
const opened = [set("CLOSE", "SYN_SENT", 1000), set("SYN_SENT", "ESTABLISHED", 1100)];
const closedByFin = (us: number) => [set("ESTABLISHED", "FIN_WAIT1", us), set("FIN_WAIT1", "FIN_WAIT2", us + 10), set("FIN_WAIT2", "CLOSE", us + 20), ev({ tp: T.TP_TCP_DESTROY_SOCK, state: "CLOSE", us: us + 21 })];

describe("connection findings", () => {
  test("a refused connect: one finding (the error the kernel reports after CLOSE is its consequence), judged when the socket is destroyed", () => {
    const events = [
      set("CLOSE", "SYN_SENT", 1000),
      ev({ tp: T.TP_TCP_RECEIVE_RESET, state: "SYN_SENT", us: 1100 }),
      set("SYN_SENT", "CLOSE", 1101),
      ev({ tp: T.TP_INET_SK_ERROR_REPORT, state: "CLOSE", us: 1102, arg: 111 }),
    ];
    // Not before its hold is over: the error report may still come.
    expect(judge(events, 1101 + HOLD_NS / 1000 - 1)).toEqual([]);
    const [v] = judge([...events, ev({ tp: T.TP_TCP_DESTROY_SOCK, state: "CLOSE", us: 1200 })], 1200);
    expect(v!.summary).toMatchObject({ end: "reset_received", health: { established: false, errors: ["ECONNREFUSED"] } });
    expect(ids(v!)).toEqual(["connection-refused"]);
    expect(v!.findings[0]).toMatchObject({ level: "error", message: expect.stringContaining("to 10.0.0.2:80 was refused"), advice: expect.stringContaining("ss -ltnp | grep ':80'") });
  });

  test("an unanswered SYN: retransmitted, then closed by the application; due once its hold is over", () => {
    const events = [
      set("CLOSE", "SYN_SENT", 1000),
      ev({ tp: T.TP_TCP_RETRANSMIT_SKB, state: "SYN_SENT", us: 1_001_000 }),
      ev({ tp: T.TP_TCP_RETRANSMIT_SKB, state: "SYN_SENT", us: 3_001_000 }),
      set("SYN_SENT", "CLOSE", 3_500_000),
    ];
    const [v] = judge(events, 3_500_000 + HOLD_NS / 1000);
    expect(v!.summary).toMatchObject({ end: "closed", retransmits: 2, health: { synRetransmits: 2 } });
    expect(ids(v!)).toEqual(["syn-unanswered"]);
    expect(v!.findings[0]!.message).toContain("sent again 2 times");
    // Still in SYN_SENT when tracing stops: the same finding.
    expect(judge(events.slice(0, 3)).map(ids)).toEqual([["syn-unanswered"]]);
    // The kernel gave up itself (its SYN retries spent): the socket's error at CLOSE, the same finding.
    const [w] = judge([...events.slice(0, 3), ev({ tp: T.TP_INET_SOCK_SET_STATE, old: "SYN_SENT", state: "CLOSE", us: 3_500_000, skErr: 110 })], 3_500_000 + HOLD_NS / 1000);
    expect(w!.summary).toMatchObject({ end: "timeout", error: "ETIMEDOUT" });
    expect(ids(w!)).toEqual(["syn-unanswered"]);
  });

  test("an established connection the kernel gave up on: it ended in a timeout, with its error, on every kernel (no error report needed)", () => {
    const rtx = (us: number) => ev({ tp: T.TP_TCP_RETRANSMIT_SKB, state: "ESTABLISHED", us });
    const [v] = judge([...opened, rtx(2000), rtx(3000), ev({ tp: T.TP_INET_SOCK_SET_STATE, old: "ESTABLISHED", state: "CLOSE", us: 9000, skErr: 113 })], 9000 + HOLD_NS / 1000);
    expect(v!.summary).toMatchObject({ end: "timeout", error: "EHOSTUNREACH", retransmits: 2 });
    expect(ids(v!)).toEqual(["connection-timed-out"]);
  });

  test("a reset by the peer mid-stream", () => {
    const [v] = judge([
      ...opened,
      ev({ tp: T.TP_TCP_RECEIVE_RESET, state: "ESTABLISHED", us: 2000 }),
      set("ESTABLISHED", "CLOSE", 2001),
      ev({ tp: T.TP_INET_SK_ERROR_REPORT, state: "CLOSE", us: 2002, arg: 104 }),
      ev({ tp: T.TP_TCP_DESTROY_SOCK, state: "CLOSE", us: 2003 }),
    ]);
    expect(ids(v!)).toEqual(["reset-by-peer"]);
  });

  test("retransmissions once established; a retransmission timeout (CA_Loss) says more and replaces them", () => {
    const retrans = [2000, 2100, 2200].map((us) => ev({ tp: T.TP_TCP_RETRANSMIT_SKB, state: "ESTABLISHED", us }));
    const [v] = judge([...opened, ...retrans, ...closedByFin(3000)]);
    expect(ids(v!)).toEqual(["retransmissions"]);
    expect(v!.findings[0]!.message).toStartWith("3 segments were sent again");
    const loss = ev({ tp: T.TP_TCP_CONG_STATE_SET, state: "ESTABLISHED", us: 2050, arg: CA.indexOf("CA_Loss") });
    const [w] = judge([...opened, retrans[0]!, loss, ...retrans.slice(1), ...closedByFin(3000)]);
    expect(ids(w!)).toEqual(["retransmission-timeouts"]);
  });

  test("socket functions: the retransmission timer's firings once established are the timeouts (no CA_Loss needed, none counted twice); in the handshake they are not", () => {
    const timer = (us: number, state = "ESTABLISHED") => ev({ tp: T.TP_NONE, fn: "tcp_retransmit_timer", state, us });
    const [v] = judge([...opened, timer(2000), timer(2400), ...closedByFin(3000)]);
    expect(ids(v!)).toEqual(["retransmission-timeouts"]);
    expect(v!.findings[0]!.message).toStartWith("the retransmission timer expired 2 times");
    const loss = ev({ tp: T.TP_TCP_CONG_STATE_SET, state: "ESTABLISHED", us: 2001, arg: CA.indexOf("CA_Loss") });
    const [w] = judge([...opened, timer(2000), loss, timer(2400), ...closedByFin(3000)]);
    expect(w!.summary!.health.timeouts).toBe(2);
    const [x] = judge([set("CLOSE", "SYN_SENT", 1000), timer(2000, "SYN_SENT"), set("SYN_SENT", "ESTABLISHED", 2100), ...closedByFin(3000)]);
    expect(x!.summary!.health.timeouts).toBe(0);
  });

  test("socket functions: zero-window probes are the peer's closed window (a warning with their count)", () => {
    const probe = (us: number) => ev({ tp: T.TP_NONE, fn: "tcp_send_probe0", state: "ESTABLISHED", us });
    const [v] = judge([...opened, probe(2000), probe(2400), ...closedByFin(3000)]);
    expect(ids(v!)).toEqual(["zero-window"]);
    expect(v!.findings[0]).toMatchObject({ level: "warn" });
    expect(v!.findings[0]!.message).toStartWith("10.0.0.2:80 closed its receive window: this side had data to send and probed the zero window 2 times");
  });

  test("socket functions' notes: a SYN reaching a listener, its queue full or not; the timer's firings in a row", () => {
    const syn = (waiting: number) => ev({ tp: T.TP_NONE, fn: "tcp_conn_request", state: "LISTEN", us: 1, acceptQueue: [waiting, 0] });
    expect(syn(0).fn).toBe("tcp_conn_request");
    expect(sockNotes(syn(0), namer)).toEqual(["SYN received (0 of 0 waiting)"]);
    expect(sockNotes(syn(1), namer)).toEqual(["SYN dropped: the accept queue is full (1 of 0 waiting); the application does not accept() fast enough"]);
    expect(sockNotes(ev({ tp: T.TP_NONE, fn: "tcp_retransmit_timer", state: "ESTABLISHED", us: 1, timeouts: 2 }), namer)).toEqual(["retransmission timer fired: nothing acknowledged in time (3 in a row)"]);
  });

  test("RTT: a smoothed RTT 4× the minimum and above 20 ms is a finding; 3× is not, nor 4× of a tiny RTT", () => {
    const probe = (us: number, rttUs: number, srttUs: number, minRttUs: number) => ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", us, rttUs, srttUs, minRttUs });
    const [v] = judge([...opened, probe(2000, 5000, 5000, 5000), probe(3000, 90_000, 25_000, 5000), ...closedByFin(4000)]);
    expect(ids(v!)).toEqual(["rtt-inflated"]);
    expect(v!.findings[0]!.message).toContain("rose to 25ms (smoothed), more than 4 times the connection's minimum of 5.0ms");
    const [w] = judge([...opened, probe(2000, 10_000, 10_000, 10_000), probe(3000, 40_000, 30_000, 10_000), ...closedByFin(4000)]);
    expect(ids(w!)).toEqual([]);
    const [x] = judge([...opened, probe(2000, 100, 100, 100), probe(3000, 5000, 1000, 100), ...closedByFin(4000)]);
    expect(ids(x!)).toEqual([]);
  });

  test("a normal connection has no finding", () => {
    const v = judge([...opened, ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", us: 1500, rttUs: 50, srttUs: 50, minRttUs: 50 }), ...closedByFin(3000)]);
    expect(v).toHaveLength(1);
    expect(v[0]!.summary).toMatchObject({ end: "fin" });
    expect(v[0]!.findings).toEqual([]);
  });

  test("UDP: a full receive buffer and a refused destination, judged when tracing stops; JSON carries the connection's key", () => {
    const udp = (tp: number, us: number, arg = -1) => ev({ tp, state: "CLOSE", us, l4: 17, sk: 0x2000, arg, rcvbuf: 2304 });
    const [v, ...rest] = judge([udp(T.TP_SOCK_RCVQUEUE_FULL, 1000), udp(T.TP_SOCK_RCVQUEUE_FULL, 1001), udp(T.TP_INET_SK_ERROR_REPORT, 1002, 111)]);
    expect(rest).toEqual([]);
    expect(v!.summary).toBeUndefined();
    expect(ids(v!)).toEqual(["receive-buffer-full", "udp-port-unreachable"]);
    expect(v!.findings[0]!.message).toContain("(2304 bytes) was full 2 times");
    const j = JSON.parse(connectionFindingJson(v!.facts, v!.facts.startNs, v!.findings[1]!, new Clock()));
    expect(j).toMatchObject({ kind: "finding", rule: "udp-port-unreachable", level: "error", proto: "UDP", saddr: "10.0.0.1", sport: 40000, daddr: "10.0.0.2", dport: 80 });
    expect(typeof j.start).toBe("string");
  });

  test("UDP's own queueing failure (udp:udp_fail_queue_rcv_skb) by its rc: ENOMEM a full buffer, ENOBUFS the memory limit", () => {
    const fail = (us: number, rc: number) => ev({ tp: T.TP_UDP_FAIL_QUEUE_RCV_SKB, state: "CLOSE", us, l4: 17, sk: 0x3000, arg: rc, rcvbuf: 4608 });
    const [v] = judge([fail(1000, -12), fail(1001, -12), fail(1002, -12), fail(1003, -105)]);
    expect(v!.facts.health).toMatchObject({ rcvqueueFull: 3, bufLimit: 1, rcvbuf: 4608 });
    expect(ids(v!)).toEqual(["receive-buffer-full", "memory-pressure"]);
    expect(v!.findings[1]!.advice).toContain("sysctl net.ipv4.udp_mem");
    // Not a connection: the block says where.
    expect(v!.findings[0]!.hook).toBe("socket");
  });
});

describe("listen-queue overflows (src/diagnosis/listen.ts)", () => {
  test("the namespace's counter and its listeners with waiting connections, read from /proc's text", () => {
    const netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\nIpExt: InNoRoutes\nIpExt: 0\n";
    expect(listenOverflowCount(netstat)).toBe(7);
    expect(listenOverflowCount("IpExt: InNoRoutes\nIpExt: 0\n")).toBeUndefined();
    const head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const tcp = head +
      "   0: 02005E0A:1CEE 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n" + // listening, 2 waiting
      "   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n" + // listening, none waiting
      "   2: 02005E0A:1CEE 01005E0A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n"; // established
    expect(waitingListeners(tcp, 4)).toEqual([{ addr: "10.94.0.2", port: 7406, family: 4, queued: 2 }]);
    const tcp6 = head + "   0: 940000FD000000000000000002000000:1CEE 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n";
    expect(waitingListeners(tcp6, 6)).toEqual([{ addr: "fd00:94::2", port: 7406, family: 6, queued: 1 }]);
  });

  test("the finding names the listener when one still holds connections, else the namespace", () => {
    const facts = (addr: string, port: number, queued: number) => ({
      pkt: { ...ev({ tp: T.TP_INET_SOCK_SET_STATE, state: "LISTEN", us: 0 }).pkt, saddr: addr, sport: port, daddr: "0.0.0.0", dport: 0 }, netns: 4026532000, startNs: 0, end: null, resetReason: null, retransmits: 0,
      health: { ...healthyConnection(), listenOverflows: 3, acceptQueue: queued }, listening: true,
    });
    const [named, ...rest] = judgeConnection(rules, facts("10.94.0.2", 7406, 2));
    expect(rest).toEqual([]);
    expect(named).toMatchObject({ rule: "listen-queue-overflow", level: "error", hook: "listener" });
    expect(named!.message).toContain("the listener 10.94.0.2:7406 was full: the kernel dropped 3 connection attempts");
    expect(named!.advice).toContain("ss -ltn 'sport = :7406'");
    const [unnamed, ...none] = judgeConnection(rules, facts("0.0.0.0", 0, 0));
    expect(none).toEqual([]);
    expect(unnamed).toMatchObject({ rule: "listen-queue-overflow-namespace", level: "error" });
    expect(unnamed!.message).toContain("dropped 3 connection attempts in network namespace 4026532000");
    // Nothing dropped: no finding.
    expect(judgeConnection(rules, { ...facts("10.94.0.2", 7406, 2), health: healthyConnection() })).toEqual([]);
  });

  test("SYNs seen dropped at tcp_conn_request (function hooks): the listener's exact finding, instead of the namespace's count", () => {
    const syn = (waiting: number) => {
      const e = ev({ tp: T.TP_NONE, fn: "tcp_conn_request", state: "LISTEN", us: 1, acceptQueue: [waiting, 0] });
      e.pkt = { ...e.pkt, saddr: "10.94.0.2", sport: 7406, daddr: "0.0.0.0", dport: 0 };
      return e;
    };
    // A namespace no process lives in: no counter is read, only what the events showed.
    const queues = new ListenQueues(rules, {}, 1);
    for (const e of [syn(0), syn(1), ev({ tp: T.TP_NONE, fn: "inet_csk_accept", state: "LISTEN", us: 2, acceptQueue: [1, 0] }), syn(1)]) queues.noteEvent(e);
    const [v, ...rest] = queues.verdicts(0);
    expect(rest).toEqual([]);
    expect(v!.findings.map((f) => f.rule)).toEqual(["listen-queue-overflow-seen"]);
    expect(v!.findings[0]!.message).toBe("the accept queue of the listener 10.94.0.2:7406 was full (1 waiting, listen() backlog 0): the kernel dropped 2 SYNs as they arrived (the clients wait for retransmissions, then time out)");
    expect(v!.facts.pkt).toMatchObject({ saddr: "10.94.0.2", sport: 7406 });
    expect(new ListenQueues(rules, {}, 1).verdicts(0)).toEqual([]);
  });
});

describe("connection rules in a rule file", () => {
  const problem = (text: string) => {
    try {
      loadRules(text, "mine.yaml", { reasons: new Set() });
    } catch (e) {
      expect(e).toBeInstanceOf(SkbtrailError);
      return (e as Error).message;
    }
    throw new Error("the rule file was accepted");
  };

  test("a connection rule loads with its kind; packet and connection conditions do not mix; names and numbers are checked", () => {
    const [r] = loadRules(`- id: slow\n  level: warn\n  when: { proto: tcp, srtt_ms: 100 }\n  message: "slow to {daddr}: {srtt_max}"\n`, "mine.yaml", { reasons: new Set() });
    expect(r).toMatchObject({ kind: "connection", when: { proto: ["tcp"], srtt_ms: 100 } });
    expect(problem(`- id: x\n  level: warn\n  when: { hook: ip_rcv, end: fin }\n  message: m\n`)).toMatch(/^mine\.yaml:3: when: rule x mixes packet conditions \(hook\) with connection conditions \(end\)/);
    expect(problem(`- id: x\n  level: warn\n  when: { end: finished }\n  message: m\n`)).toMatch(/^mine\.yaml:3: end: 'finished' is not how a connection ends/);
    expect(problem(`- id: x\n  level: warn\n  when: { retransmits: many }\n  message: m\n`)).toMatch(/^mine\.yaml:3: retransmits: must be a number/);
    expect(problem(`- id: x\n  level: warn\n  when: { error: refused }\n  message: m\n`)).toMatch(/'refused' is not an errno name/);
    expect(problem(`- id: x\n  level: warn\n  when: { end: fin }\n  message: "{hook}"\n`)).toMatch(/unknown placeholder \{hook\} in a connection rule/);
    expect(problem(`- id: x\n  level: warn\n  when: { hook: ip_rcv }\n  message: "{srtt_max}"\n`)).toMatch(/unknown placeholder \{srtt_max\}/);
  });
});
