// --sock's pure parts: a sock_event record decoded from bytes laid out as
// the kernel writes them (the generated layout), the notes, the connection
// summaries (handshake, RTT, data bytes, how it ended, the memory bound) and
// the text and JSON lines.
import { describe, expect, test } from "bun:test";
import { event_kind, event_version, layout, rtt_log2_slots, sock_timer, tracepoint_id } from "../../src/abi/layout.generated";
import { recordKind, type RecordBytes } from "../../src/events/decode";
import { Connections, decodeSock, durationText, errnoName, NO_RTT, rttSampleNote, rttTable, sockNotes, timerName, type SockEvent, type SockNamer } from "../../src/events/sock";
import { connectionJson, rttHistogramJson, rttSampleJson, sockJson } from "../../src/output/json";
import { colorsFor, connectionLine, rttTableLines, sockLine, type TextStyle } from "../../src/output/text";
import { Clock } from "../../src/output/time";
import { jiffyNs } from "../../ffi/libc";

const T = tracepoint_id;
const S = layout.sock_event.fields;
const P = layout.packet.fields;

// The running kernel's numbers don't matter here: the names come through the namer.
const STATES = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"];
const st = (name: string) => STATES.indexOf(name);
const namer: SockNamer = {
  tcpState: (v) => STATES[v] || undefined,
  caState: (v) => ["CA_Open", "CA_Disorder", "CA_CWR", "CA_Recovery", "CA_Loss"][v],
  rstReason: (v) => (v === 2 ? "NO_SOCKET" : undefined),
};

interface RecordSpec {
  tp: number;
  state: string;
  old?: string;
  sk?: number;
  sport?: number;
  dport?: number;
  timeUs: number;
  rttUs?: number;
  arg?: number;
  bytesAcked?: number;
  bytesReceived?: number;
  tcp?: boolean;
  timer?: number;
  timerJiffies?: number;
  skErr?: number;
}

/** A sock_event's bytes as the kernel writes them: 10.0.0.1:SPORT -> 10.0.0.2:DPORT. */
function record(r: RecordSpec): RecordBytes {
  const u8 = new Uint8Array(layout.sock_event.size);
  const v = new DataView(u8.buffer);
  const H = layout.event_header.fields;
  v.setUint16(H.kind.offset, event_kind.EVENT_SOCK, true);
  v.setUint16(H.size.offset, layout.sock_event.size, true);
  u8[H.version.offset] = event_version.EVENT_VERSION;
  v.setUint32(H.time_ns.offset, (r.timeUs * 1000) % 2 ** 32, true);
  v.setUint32(H.time_ns.offset + 4, Math.floor((r.timeUs * 1000) / 2 ** 32), true);
  const pkt = S.pkt.offset;
  u8.set([10, 0, 0, 1], pkt + P.saddr.offset);
  u8.set([10, 0, 0, 2], pkt + P.daddr.offset);
  v.setUint16(pkt + P.l3_proto.offset, 0x0800, true);
  u8[pkt + P.l4_proto.offset] = 6;
  v.setUint16(pkt + P.sport.offset, r.sport ?? 40000, true);
  v.setUint16(pkt + P.dport.offset, r.dport ?? 80, true);
  v.setUint32(S.sk.offset, r.sk ?? 0x1000, true);
  v.setUint32(S.sk.offset + 4, 0xffff8881, true);
  v.setUint32(S.netns.offset, 4026531840, true);
  v.setUint32(S.tracepoint.offset, r.tp, true);
  v.setInt32(S.arg.offset, r.arg ?? -1, true);
  u8[S.state.offset] = st(r.state);
  u8[S.old_state.offset] = r.old ? st(r.old) : 0;
  u8[S.tcp.offset] = r.tcp === false ? 0 : 1;
  v.setUint32(S.rtt_us.offset, r.rttUs ?? 0, true);
  v.setUint32(S.min_rtt_us.offset, r.rttUs ?? NO_RTT, true);
  v.setUint32(S.bytes_acked.offset, r.bytesAcked ?? 0, true);
  v.setUint32(S.bytes_received.offset, r.bytesReceived ?? 0, true);
  u8[S.timer.offset] = r.timer ?? 0;
  v.setInt32(S.timer_jiffies.offset, r.timerJiffies ?? 0, true);
  u8[S.sk_err.offset] = r.skErr ?? 0;
  u8.set(new TextEncoder().encode("curl"), S.comm.offset);
  return { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
}

const ev = (r: RecordSpec): SockEvent => decodeSock(record(r), 0);
const set = (old: string, state: string, timeUs: number, more: Partial<RecordSpec> = {}) => ev({ tp: T.TP_INET_SOCK_SET_STATE, old, state, timeUs, ...more });

describe("sock_event records", () => {
  test("the decoder accepts the kind and reads every field where the layout puts it", () => {
    const b = record({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 5_000_000, rttUs: 37_000, bytesAcked: 1234 });
    expect(recordKind(b, 0, layout.sock_event.size)).toBe(event_kind.EVENT_SOCK);
    expect(recordKind(b, 0, layout.sock_event.size - 1)).toBe(0);
    const e = decodeSock(b, 0);
    expect(e).toMatchObject({ timeNs: 5e9, tracepoint: T.TP_TCP_PROBE, state: st("ESTABLISHED"), rttUs: 37_000, bytesAcked: 1234, netns: 4026531840, comm: "curl", tcp: true, skHex: "ffff888100001000" });
    expect(e.pkt).toMatchObject({ saddr: "10.0.0.1", sport: 40000, daddr: "10.0.0.2", dport: 80, l4: 6 });
  });

  test("notes: state changes, RTT, resets with and without a reason, errors, buffers", () => {
    expect(sockNotes(set("SYN_SENT", "ESTABLISHED", 1), namer)).toEqual(["SYN_SENT -> ESTABLISHED"]);
    expect(sockNotes(ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 1, rttUs: 37_000 }), namer)).toEqual(["rtt:37ms, rtt_min:37ms"]);
    expect(sockNotes(ev({ tp: T.TP_TCP_SEND_RESET, state: "ESTABLISHED", timeUs: 1, arg: 2 }), namer)).toEqual(["reset sent (NO_SOCKET)"]);
    expect(sockNotes(ev({ tp: T.TP_TCP_SEND_RESET, state: "ESTABLISHED", timeUs: 1, arg: -1 }), namer)).toEqual(["reset sent"]);
    expect(sockNotes(ev({ tp: T.TP_TCP_RECEIVE_RESET, state: "SYN_SENT", timeUs: 1 }), namer)).toEqual(["reset received: connection refused"]);
    expect(sockNotes(ev({ tp: T.TP_INET_SK_ERROR_REPORT, state: "CLOSE", timeUs: 1, arg: 111 }), namer)).toEqual(["error reported to the application: ECONNREFUSED"]);
    expect(sockNotes(ev({ tp: T.TP_TCP_CONG_STATE_SET, state: "ESTABLISHED", timeUs: 1, arg: 4 }), namer)).toEqual(["CA_Open -> CA_Loss"]);
    // UDP's queueing failure, by its rc.
    expect(sockNotes(ev({ tp: T.TP_UDP_FAIL_QUEUE_RCV_SKB, state: "CLOSE", timeUs: 1, arg: -12, tcp: false }), namer)).toEqual(["receive buffer full (0 of 0 bytes): datagram dropped"]);
    expect(sockNotes(ev({ tp: T.TP_UDP_FAIL_QUEUE_RCV_SKB, state: "CLOSE", timeUs: 1, arg: -105, tcp: false }), namer)).toEqual(["memory limit of the protocol reached: datagram dropped"]);
    expect(errnoName(104)).toBe("ECONNRESET");
    expect([durationText(37), durationText(1500), durationText(37_000), durationText(12_000_000)]).toEqual(["37µs", "1.5ms", "37ms", "12.0s"]);
  });
});

describe("connection summaries", () => {
  test("an active open closed by the peer: handshake, RTT min/avg/max, data bytes without SYN and FIN", () => {
    const c = new Connections(namer);
    const out = [
      set("CLOSE", "SYN_SENT", 1000, { sport: 0 }),
      set("SYN_SENT", "ESTABLISHED", 1250, { bytesAcked: 1 }),
      ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 1400, rttUs: 100 }),
      ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 1500, rttUs: 300 }),
      ev({ tp: T.TP_TCP_RETRANSMIT_SKB, state: "ESTABLISHED", timeUs: 1600 }),
      set("ESTABLISHED", "CLOSE_WAIT", 2000),
      set("CLOSE_WAIT", "LAST_ACK", 2100),
      // The kernel gave the local port back before CLOSE is traced.
      set("LAST_ACK", "CLOSE", 3000, { sport: 0, bytesAcked: 12, bytesReceived: 3 }),
    ].flatMap((e) => {
      e.pkt = c.endpoints(e);
      return c.add(e);
    });
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({
      fromStart: true, handshakeUs: 250, retransmits: 1, rtt: { samples: 2, minUs: 100, avgUs: 200, maxUs: 300 },
      bytesOut: 10, bytesIn: 2, end: "fin", closedBy: "peer", resetReason: null, startNs: 1e6, endNs: 3e6,
    });
    expect(out[0]!.pkt.sport).toBe(40000);
    expect(c.size).toBe(0);
  });

  test("a refused connect ends as reset received; later events of the socket start nothing", () => {
    const c = new Connections(namer);
    expect(c.add(set("CLOSE", "SYN_SENT", 1, { sport: 0 }))).toEqual([]);
    expect(c.add(ev({ tp: T.TP_TCP_RECEIVE_RESET, state: "SYN_SENT", timeUs: 2 }))).toEqual([]);
    expect(c.add(set("SYN_SENT", "CLOSE", 3))).toMatchObject([{ end: "reset_received", handshakeUs: null }]);
    expect(c.add(ev({ tp: T.TP_INET_SK_ERROR_REPORT, state: "CLOSE", timeUs: 4, arg: 111 }))).toEqual([]);
    // A failed connect clears the local address and both ports before the socket is freed.
    const destroyed = ev({ tp: T.TP_TCP_DESTROY_SOCK, state: "CLOSE", timeUs: 5, sport: 0, dport: 0 });
    expect(c.endpoints(destroyed)).toMatchObject({ sport: 40000, dport: 80 });
    expect(c.add(destroyed)).toEqual([]);
    expect(c.size).toBe(0);
  });

  test("listeners are never summed up; open connections are at the end; the oldest is evicted past the bound", () => {
    const c = new Connections(namer, 2);
    c.add(set("CLOSE", "LISTEN", 1, { sk: 1, dport: 0 }));
    c.add(set("LISTEN", "SYN_RECV", 2, { sk: 2 }));
    // A third socket: the listener (oldest) makes room, silently.
    expect(c.add(ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 3, sk: 3, rttUs: 50 }))).toEqual([]);
    expect(c.add(ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 4, sk: 4 }))).toMatchObject([{ end: "evicted", fromStart: true }]);
    expect(c.drain(10_000)).toMatchObject([{ end: "open", fromStart: false, rtt: { samples: 1 } }, { end: "open" }]);
  });
});

test("--rtt: the kernel's slots become log2 buckets of µs, from the first with samples to the last", () => {
  const slots = new Array<number>(rtt_log2_slots.RTT_LOG2_SLOTS).fill(0);
  slots[0] = 1; // 0 or 1 µs
  slots[5] = 3; // 32..63 µs
  slots[6] = 1;
  slots[8] = 1;
  slots[rtt_log2_slots.RTT_LOG2_COUNT] = 6;
  slots[rtt_log2_slots.RTT_LOG2_SUM_US] = 0 + 40 + 50 + 63 + 64 + 300;
  const t = rttTable(slots);
  expect(t.buckets).toEqual([
    { lowUs: 0, highUs: 1, count: 1 }, { lowUs: 2, highUs: 3, count: 0 }, { lowUs: 4, highUs: 7, count: 0 }, { lowUs: 8, highUs: 15, count: 0 }, { lowUs: 16, highUs: 31, count: 0 },
    { lowUs: 32, highUs: 63, count: 3 }, { lowUs: 64, highUs: 127, count: 1 }, { lowUs: 128, highUs: 255, count: 0 }, { lowUs: 256, highUs: 511, count: 1 },
  ]);
  expect(t).toMatchObject({ samples: 6, sumUs: 517, avgUs: 517 / 6 });
  // The last bucket holds everything above: 2^31 µs and more.
  const top = new Array<number>(rtt_log2_slots.RTT_LOG2_SLOTS).fill(0);
  top[rtt_log2_slots.RTT_LOG2_BUCKETS - 1] = 1;
  expect(rttTable(top).buckets).toEqual([{ lowUs: 2 ** 31, highUs: 2 ** 32 - 1, count: 1 }]);
  const lines = rttTableLines(t.buckets.slice(5, 7), 4, 55);
  expect(lines[0]).toBe("RTT distribution: 4 samples, average 55µs");
  expect(lines[2]).toBe(`          32 -> 63          : 3        |${"*".repeat(40)}|`);
  expect(lines[3]).toBe(`          64 -> 127         : 1        |${"*".repeat(13).padEnd(40)}|`);
  expect(rttTable(new Array(rtt_log2_slots.RTT_LOG2_SLOTS).fill(0))).toEqual({ buckets: [], samples: 0, sumUs: 0, avgUs: 0 });
});

test("--rtt --json: one table per line, every second and the final one", () => {
  const slots = new Array<number>(rtt_log2_slots.RTT_LOG2_SLOTS).fill(0);
  slots[5] = 2;
  slots[rtt_log2_slots.RTT_LOG2_COUNT] = 2;
  slots[rtt_log2_slots.RTT_LOG2_SUM_US] = 81;
  const clock = new Clock();
  const o = JSON.parse(rttHistogramJson(rttTable(slots), true, clock, 1e9));
  expect(o).toEqual({ kind: "rtt_histogram", time: clock.iso(1e9), final: true, samples: 2, sum_us: 81, avg_us: 41, buckets: [{ low_us: 32, high_us: 63, count: 2 }] });
  expect(JSON.parse(rttHistogramJson(rttTable(new Array(rtt_log2_slots.RTT_LOG2_SLOTS).fill(0)), false, clock, 1e9))).toMatchObject({ final: false, samples: 0, avg_us: null, buckets: [] });
});

describe("lines", () => {
  const style: TextStyle = { colors: colorsFor(false), clock: new Clock(), date: false, detail: false };

  test("text in nettrace's shape, and the summary line", () => {
    const e = ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 153_345_912, rttUs: 37_000 });
    expect(sockLine(e, "tcp_probe", "ESTABLISHED", "CA_Open", sockNotes(e, namer), style)).toBe(
      "[153.345912] [tcp_probe           ] TCP: 10.0.0.1:40000 -> 10.0.0.2:80 ESTABLISHED CA_Open out:(p0 r0) mem:(w0 r0) *rtt:37ms, rtt_min:37ms*",
    );
    const c = new Connections(namer);
    c.add(set("CLOSE", "SYN_SENT", 1000));
    c.add(set("SYN_SENT", "ESTABLISHED", 2000, { bytesAcked: 1 }));
    const [summary] = c.add(ev({ tp: T.TP_TCP_SEND_RESET, state: "ESTABLISHED", timeUs: 3000, arg: 2 })).concat(c.add(set("ESTABLISHED", "CLOSE", 4000, { bytesAcked: 6, bytesReceived: 9 })));
    expect(connectionLine(summary!, style)).toBe(
      "[0.004000] [connection          ] TCP: 10.0.0.1:40000 -> 10.0.0.2:80 *reset sent (NO_SOCKET)* duration:3.0ms, handshake:1.0ms, retrans:0, out:5B/0 segs, in:9B/0 segs",
    );
    const json = JSON.parse(connectionJson(summary!, style.clock));
    expect(json).toMatchObject({ kind: "connection", saddr: "10.0.0.1", sport: 40000, daddr: "10.0.0.2", dport: 80, duration_us: 3000, handshake_us: 1000, end: "reset_sent", reset_reason: "NO_SOCKET", rtt_samples: 0, rtt_min_us: null, bytes_out: 5, bytes_in: 9 });
  });

  test("the pending timer, nettrace's timer:(kind, seconds), in jiffies of the running kernel's tick", () => {
    const hz = 1e9 / jiffyNs();
    const e = ev({ tp: T.TP_TCP_RETRANSMIT_SKB, state: "ESTABLISHED", timeUs: 1, timer: sock_timer.SOCK_TIMER_RETRANS, timerJiffies: hz });
    expect(e.timerMs).toBeCloseTo(1000, 6);
    expect(sockLine(e, "tcp_retransmit_skb", "ESTABLISHED", "CA_Open", [], style)).toEndWith("mem:(w0 r0) timer:(retrans, 1.000s)");
    expect(JSON.parse(sockJson(e, "tcp_retransmit_skb", { state: "ESTABLISHED" }, [], new Clock())).timer).toEqual({ kind: "retrans", left_ms: 1000 });
    // Overdue: the handler runs a little after the expiry it was armed for.
    const late = ev({ tp: T.TP_NONE, state: "ESTABLISHED", timeUs: 1, timer: sock_timer.SOCK_TIMER_PROBE0, timerJiffies: -1 });
    expect(sockLine(late, "tcp_send_probe0", "ESTABLISHED", "CA_Open", [], style)).toContain(`timer:(probe0, ${(-1000 / hz / 1000).toFixed(3)}s)`);
    // sk_timer: keepalive, or a closed socket's FIN_WAIT2 timeout; no timer, no field.
    const sk = (timer: number) => ev({ tp: T.TP_INET_SOCK_SET_STATE, state: "FIN_WAIT2", timeUs: 1, timer, timerJiffies: 5 });
    expect([timerName(sk(sock_timer.SOCK_TIMER_FIN_WAIT2)), timerName(sk(sock_timer.SOCK_TIMER_KEEPALIVE))]).toEqual(["fin_wait2", "keepalive"]);
    const none = ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 1 });
    expect(sockLine(none, "tcp_probe", "ESTABLISHED", "CA_Open", [], style)).not.toContain("timer:");
    expect(JSON.parse(sockJson(none, "tcp_probe", { state: "ESTABLISHED" }, [], new Clock())).timer).toBeNull();
  });

  test("a connection the kernel gave up on: timed out, with its error, in text and JSON", () => {
    const c = new Connections(namer);
    c.add(set("CLOSE", "SYN_SENT", 1000));
    c.add(set("SYN_SENT", "ESTABLISHED", 2000, { bytesAcked: 1 }));
    const [summary] = c.add(set("ESTABLISHED", "CLOSE", 4000, { skErr: 110 }));
    expect(summary).toMatchObject({ end: "timeout", error: "ETIMEDOUT", closedBy: null });
    expect(connectionLine(summary!, style)).toContain("*timed out (ETIMEDOUT)* duration:3.0ms");
    expect(JSON.parse(connectionJson(summary!, style.clock))).toMatchObject({ end: "timeout", error: "ETIMEDOUT" });
    // The application took sk_err (woken by the report) before the CLOSE was traced: the report right before it says why.
    const e = new Connections(namer);
    e.add(set("CLOSE", "SYN_SENT", 1000));
    e.add(ev({ tp: T.TP_INET_SK_ERROR_REPORT, state: "SYN_SENT", timeUs: 3000, arg: 110 }));
    expect(e.add(set("SYN_SENT", "CLOSE", 3001, { skErr: 0 }))).toMatchObject([{ end: "timeout", error: "ETIMEDOUT" }]);
    // An error reported earlier, then a close by the application (no error left): closed, not timed out.
    const f = new Connections(namer);
    f.add(set("CLOSE", "SYN_SENT", 1000));
    f.add(set("SYN_SENT", "ESTABLISHED", 2000, { bytesAcked: 1 }));
    f.add(ev({ tp: T.TP_INET_SK_ERROR_REPORT, state: "ESTABLISHED", timeUs: 2500, arg: 113 }));
    f.add(set("ESTABLISHED", "FIN_WAIT1", 2600));
    f.add(set("FIN_WAIT1", "FIN_WAIT2", 2700));
    expect(f.add(set("FIN_WAIT2", "CLOSE", 2800, { skErr: 0 }))).toMatchObject([{ end: "fin", error: null }]);
    // A reset says more than the error it left (ECONNRESET): the end stays the reset.
    const d = new Connections(namer);
    d.add(set("CLOSE", "SYN_SENT", 1000));
    d.add(ev({ tp: T.TP_TCP_RECEIVE_RESET, state: "SYN_SENT", timeUs: 2000 }));
    expect(d.add(set("SYN_SENT", "CLOSE", 3000, { skErr: 111 }))).toMatchObject([{ end: "reset_received", error: null }]);
  });

  test("--rtt-detail: nettrace's srtt and rtt note with the minimum; JSON kind rtt", () => {
    const e = ev({ tp: T.TP_TCP_PROBE, state: "ESTABLISHED", timeUs: 153_345_912, rttUs: 36_000 });
    e.srttUs = 37_000;
    expect(rttSampleNote(e)).toBe("srtt:37ms, rtt:36ms, rtt_min:36ms");
    expect(sockLine(e, "tcp_probe", "ESTABLISHED", "CA_Open", [rttSampleNote(e)], style)).toBe(
      "[153.345912] [tcp_probe           ] TCP: 10.0.0.1:40000 -> 10.0.0.2:80 ESTABLISHED CA_Open out:(p0 r0) mem:(w0 r0) *srtt:37ms, rtt:36ms, rtt_min:36ms*",
    );
    const j = JSON.parse(rttSampleJson(e, "ESTABLISHED", "CA_Open", new Clock()));
    expect(j).toMatchObject({ kind: "rtt", proto: "TCP", saddr: "10.0.0.1", sport: 40000, daddr: "10.0.0.2", dport: 80, rtt_us: 36_000, srtt_us: 37_000, min_rtt_us: 36_000, state: "ESTABLISHED", ca_state: "CA_Open", sk: "ffff888100001000" });
  });

  test("JSON of an event: names, TCP fields, no minimum RTT before a sample", () => {
    const e = set("SYN_SENT", "ESTABLISHED", 1);
    const j = JSON.parse(sockJson(e, "inet_sock_set_state", { state: "ESTABLISHED", oldState: "SYN_SENT", caState: "CA_Open" }, sockNotes(e, namer), new Clock()));
    expect(j).toMatchObject({ kind: "sock", hook: "inet_sock_set_state", proto: "TCP", state: "ESTABLISHED", old_state: "SYN_SENT", notes: ["SYN_SENT -> ESTABLISHED"], sk: "ffff888100001000", no_socket: false });
    expect(j.tcp).toMatchObject({ ca_state: "CA_Open", min_rtt_us: null });
  });
});
