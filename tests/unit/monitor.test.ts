// --monitor's pure parts: the console's aggregation of repeats (Repeats),
// the Prometheus exposition and the bound on label cardinality (SeriesTable).
import { describe, expect, test } from "bun:test";
import { layout, monitor_what } from "../../src/abi/layout.generated";
import { decodePrintKey, describeKey, EventTally, groupedCount, hookFromCaller, type PrintKey, Repeats } from "../../src/events/monitor";
import { escapeLabel, exposition, histogram, OTHER, SeriesTable, type Family } from "../../src/output/metrics";

const S = 1e9;

/** A print key's bytes as the kernel makes them: NO_SOCKET UDP to 10.0.0.2:53. */
function keyBytes(dport = 53): Uint8Array {
  const f = layout.print_key.fields;
  const b = new Uint8Array(layout.print_key.size);
  const v = new DataView(b.buffer);
  v.setUint32(f.location.offset, 0x81234567, true);
  v.setUint32(f.location.offset + 4, 0xffffffff, true);
  v.setUint32(f.reason.offset, 2, true);
  v.setUint32(f.netns.offset, 4026531833, true);
  v.setUint16(f.l3_proto.offset, 0x0800, true);
  b[f.l4_proto.offset] = 17;
  b[f.what.offset] = monitor_what.MON_DROP;
  v.setUint16(f.dport.offset, dport, true);
  b.set([10, 0, 0, 2], f.daddr.offset);
  return b;
}

const namer = {
  reason: (v: number) => (v === 2 ? "NO_SOCKET" : undefined),
  rstReason: () => undefined,
  tcpState: () => undefined,
  functionAt: (hi: number, lo: number) => (hi === 0xffffffff && lo === 0x81234567 ? "__udp4_lib_rcv" : "?"),
  netns: 4026531833,
};

const key = (): PrintKey => decodePrintKey(keyBytes());

describe("print keys", () => {
  test("decoded and described as the repeat line says them", () => {
    const k = key();
    expect(k).toMatchObject({ what: monitor_what.MON_DROP, reason: 2, l3: 0x0800, l4: 17, dport: 53, daddr: "10.0.0.2" });
    expect(describeKey(k, namer)).toBe("NO_SOCKET at __udp4_lib_rcv, UDP → 10.0.0.2:53");
    // Another namespace than skbtrail's own is named.
    expect(describeKey(k, { ...namer, netns: 1 })).toBe("NO_SOCKET at __udp4_lib_rcv, UDP → 10.0.0.2:53 in netns 4026531833");
  });

  test("counts in groups of three digits; netfilter hooks from nf_hook_slow's caller", () => {
    expect(groupedCount(12340)).toBe("12 340");
    expect(groupedCount(7)).toBe("7");
    expect(hookFromCaller("ip_local_deliver")).toEqual({ family: "ipv4", hook: "INPUT" });
    expect(hookFromCaller("ip6_forward.isra.0")).toEqual({ family: "ipv6", hook: "FORWARD" });
    expect(hookFromCaller("tcp_v4_rcv")).toBeUndefined();
  });
});

describe("EventTally: -c counts what the kernel counted, summed up or printed", () => {
  test("totals grow between reads; an evicted key counts anew; a key gone is forgotten", () => {
    const t = new EventTally();
    expect(t.update([{ id: "a", total: 1 }])).toBe(1);
    expect(t.update([{ id: "a", total: 40 }, { id: "b", total: 2 }])).toBe(42);
    // "a" evicted and counted anew (3 since); "b" unchanged.
    expect(t.update([{ id: "a", total: 3 }, { id: "b", total: 2 }])).toBe(45);
    // "b" gone from the map: when it comes back, all of its total is new.
    expect(t.update([{ id: "a", total: 3 }])).toBe(45);
    expect(t.update([{ id: "a", total: 3 }, { id: "b", total: 2 }])).toBe(47);
  });
});

describe("Repeats: first printed, then one line per key per window", () => {
  test("a flood: one line whole, then the rest counted in one line", () => {
    const r = new Repeats(0);
    expect(r.record("a", 1 * S)).toBe(true);
    // The kernel writes one record per CPU and window; the second is not printed.
    expect(r.record("a", 1.5 * S)).toBe(false);
    const report = r.tick([{ id: "a", key, total: 12341 }], 10 * S);
    expect(report.lines).toHaveLength(1);
    expect(report.lines[0]!.count).toBe(12340);
    expect(report.lines[0]!.seconds).toBe(9);
    expect(report.restKeys).toBe(0);
  });

  test("the next window counts only what came since; a quiet window ends the summing up", () => {
    const r = new Repeats(0);
    r.record("a", 1 * S);
    r.tick([{ id: "a", key, total: 5 }], 10 * S);
    // 3 more in the second window, none printed: all three are repeats.
    expect(r.tick([{ id: "a", key, total: 8 }], 20 * S).lines[0]!.count).toBe(3);
    // Quiet: no line, and the next occurrence prints whole again.
    expect(r.tick([{ id: "a", key, total: 8 }], 30 * S).lines).toHaveLength(0);
    expect(r.record("a", 31 * S)).toBe(true);
    expect(r.tick([{ id: "a", key, total: 9 }], 40 * S).lines).toHaveLength(0);
  });

  test("a key the kernel evicted and counts anew; keys gone from the kernel are forgotten", () => {
    const r = new Repeats(0);
    r.record("a", 1 * S);
    r.tick([{ id: "a", key, total: 100 }], 10 * S);
    expect(r.tick([{ id: "a", key, total: 4 }], 20 * S).lines[0]!.count).toBe(4);
    r.tick([], 30 * S);
    expect(r.size).toBe(0);
  });

  test("past the line budget, the rest is one line", () => {
    const r = new Repeats(0, 2);
    const totals = [5, 50, 500, 7].map((total, i) => ({ id: `k${i}`, key, total }));
    const report = r.tick(totals, 10 * S);
    expect(report.lines.map((l) => l.count)).toEqual([500, 50]);
    expect(report).toMatchObject({ restCount: 12, restKeys: 2 });
  });
});

describe("Prometheus exposition", () => {
  test("HELP, TYPE, labels escaped, histogram cumulative with +Inf, sum and count", () => {
    const families: Family[] = [
      { name: "x_drops_total", help: "Drops.\nTwo lines", type: "counter", labelNames: ["reason", "ifname"], samples: [{ labels: ["NO_SOCKET", 'a"b\\c\nd'], value: 3 }] },
      { name: "x_rtt_seconds", help: "RTT.", type: "histogram", labelNames: [], samples: [], histogram: histogram([0.001, 0.01], [2, 3, 1], 0.0123) },
      { name: "x_up", help: "Up.", type: "gauge", labelNames: [], samples: [{ labels: [], value: 0.1 + 0.2 }] },
    ];
    expect(exposition(families)).toBe(
      [
        "# HELP x_drops_total Drops.\\nTwo lines",
        "# TYPE x_drops_total counter",
        'x_drops_total{reason="NO_SOCKET",ifname="a\\"b\\\\c\\nd"} 3',
        "# HELP x_rtt_seconds RTT.",
        "# TYPE x_rtt_seconds histogram",
        'x_rtt_seconds_bucket{le="0.001"} 2',
        'x_rtt_seconds_bucket{le="0.01"} 5',
        'x_rtt_seconds_bucket{le="+Inf"} 6',
        "x_rtt_seconds_sum 0.0123",
        "x_rtt_seconds_count 6",
        "# HELP x_up Up.",
        "# TYPE x_up gauge",
        "x_up 0.3",
        "",
      ].join("\n"),
    );
    expect(escapeLabel("plain")).toBe("plain");
  });
});

describe("SeriesTable: bounded label cardinality", () => {
  const input = (label: string, value: number) => ({ labels: [label, "x"], value, sources: [label] });

  test("past the limit, new label sets go to 'other' and are counted; counters never go down", () => {
    const t = new SeriesTable(2, 60_000);
    t.update([input("a", 1), input("b", 2)], 0, 2);
    let { samples } = t.update([input("a", 3), input("b", 2), input("c", 5)], 1000, 2);
    expect(samples).toEqual([
      { labels: ["a", "x"], value: 3 },
      { labels: ["b", "x"], value: 2 },
      { labels: [OTHER, OTHER], value: 5 },
    ]);
    expect(t.overflowed).toBe(1);
    // c grows: so does other; a's kernel entry was made anew (smaller): a does not go down.
    ({ samples } = t.update([input("a", 1), input("b", 2), input("c", 9)], 2000, 2));
    expect(samples.find((s) => s.labels[0] === OTHER)!.value).toBe(9);
    expect(samples.find((s) => s.labels[0] === "a")!.value).toBe(3);
    expect(t.overflowed).toBe(1);
    expect(t.size).toBe(2);
  });

  test("a series idle longer than the idle time makes room, and its kernel entries are returned for deletion", () => {
    const t = new SeriesTable(1, 60_000);
    t.update([input("gone", 4)], 0, 2);
    const { samples, evicted } = t.update([input("gone", 4), input("new", 1)], 61_000, 2);
    expect(evicted).toEqual(["gone"]);
    expect(samples).toEqual([{ labels: ["new", "x"], value: 1 }]);
    expect(t.overflowed).toBe(0);
  });
});
