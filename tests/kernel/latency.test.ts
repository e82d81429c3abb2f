// Stack latency on whatever kernel runs the tests: --latency measured in the
// kernel (first hook of the matcher set to the free or a --trace-free hook,
// only packets at or above --min-latency reach user space), --latency-summary,
// and in the lifecycle mode --latency-show, --tiny-show and --trace-exclude.
// Only tracepoints every kernel has are asserted on (net_dev_queue,
// net_dev_start_xmit, netif_receive_skb, kfree_skb); function hooks may
// come in between where the kernel has kprobes or fentry.
//
// The qdisc case needs sch_netem (Debian's kernels have it as a module; the
// development host's 6.18 does not): it is skipped with the reason printed
// where modinfo does not know it, and is run by the VM level.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { blocks, shown } from "../lib/blocks";
import { btfHas, hasNetem } from "../lib/kernel";
import { TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { jsonLines, scaled, Skbtrail } from "../lib/skbtrail";

const enabled = requireKernelTests();
const netem = enabled && hasNetem();
if (enabled && !netem) console.warn("SKIPPED the qdisc latency case: this kernel has no sch_netem (modinfo sch_netem fails); the VM level runs it on Debian's kernels");

/** The records of a --latency --json run, and its summary. */
function records(stdout: string) {
  const lines = jsonLines(stdout);
  return { latency: lines.filter((l) => l.kind === "latency"), histogram: lines.find((l) => l.kind === "latency_histogram"), summary: lines.find((l) => l.kind === "summary") };
}

describe.skipIf(!enabled)("stack latency", () => {
  let pair: TwoHosts;

  beforeAll(async () => {
    pair = await TwoHosts.create("lat", 95);
  });
  afterAll(async () => {
    await pair?.destroy();
  });

  test("--latency: one record per packet, first hook to its drop; the free counts only with --latency-free", async () => {
    const plain = Skbtrail.start(["--latency", "--json", "-p", "udp", "--dport", "7501", "-c", "1", "--timeout", String(scaled(30))]);
    const withFree = Skbtrail.start(["--latency", "--latency-free", "--json", "-p", "udp", "--dport", "7501", "-c", "1", "--timeout", String(scaled(30))]);
    await Promise.all([plain.ready(), withFree.ready()]);
    await pair.a.ns.udp(pair.b.ip4, 7501, { sport: 5501 }); // nothing listens: dropped at b
    const [p, f] = await Promise.all([plain.finished, withFree.finished]);
    for (const run of [p, f]) {
      expect(run.code, run.stderr).toBe(0);
      const { latency } = records(run.stdout);
      expect(latency, run.stdout).toHaveLength(1);
      const r = latency[0]!;
      expect(r).toMatchObject({ proto: "UDP", saddr: pair.a.ip4, daddr: pair.b.ip4, sport: 5501, dport: 7501, end_hook: "kfree_skb", end: "drop" });
      // Drop reasons from 5.17: read from the running kernel's BTF.
      expect(r.reason).toBe(btfHas("SKB_DROP_REASON_NO_SOCKET") ? "NO_SOCKET" : null);
      expect(r.location).toMatch(/^\w+\+0x[0-9a-f]+/);
      // Its path: sent by a (the first hook sees a's device at the latest), received by b.
      expect(r.hooks).toBeGreaterThanOrEqual(3);
      expect(r.ts_ns).toBeLessThanOrEqual(r.last_ts_ns);
      expect(r.last_ts_ns).toBeLessThanOrEqual(r.end_ts_ns);
    }
    const rp = records(p.stdout).latency[0]!;
    const rf = records(f.stdout).latency[0]!;
    // The kernel's own figures: to the last hook before the free, or to the free.
    expect(Math.round(rp.latency_us * 1000)).toBe(rp.last_ts_ns - rp.ts_ns);
    expect(Math.round(rf.latency_us * 1000)).toBe(rf.end_ts_ns - rf.ts_ns);
    expect(rp.last_hook).not.toBe("kfree_skb");
  });

  test("--min-latency: a packet under the threshold never reaches user space", async () => {
    const all = Skbtrail.start(["--latency", "--json", "-p", "udp", "--dport", "7502", "--timeout", String(scaled(30))]);
    const slow = Skbtrail.start(["--latency", "--json", "-p", "udp", "--dport", "7502", "--min-latency", "1s", "--timeout", String(scaled(30))]);
    try {
      await Promise.all([all.ready(), slow.ready()]);
      await pair.a.ns.udp(pair.b.ip4, 7502, { sport: 5502 });
      expect(await all.waitFor(/"kind":"latency"/)).toBe(true);
    } finally {
      await Promise.all([all.stop(), slow.stop()]);
    }
    const a = records((await all.finished).stdout);
    const s = records((await slow.finished).stdout);
    expect(a.latency).toHaveLength(1);
    // The packet took less than the threshold (it would have been reported otherwise)…
    expect(a.latency[0]!.latency_us).toBeLessThan(1e6);
    // …and the slow run's kernel measured it and wrote nothing: no record at all.
    expect(s.latency).toEqual([]);
    expect(s.summary).toMatchObject({ kind: "summary", events: 0, lost: 0 });
  });

  test("--latency-summary: the kernel counts every packet into the table, and writes no records", async () => {
    const t = Skbtrail.start(["--latency", "--latency-summary", "--json", "-p", "udp", "--dport", "7503", "--timeout", String(scaled(30))]);
    try {
      await t.ready();
      expect(await pair.a.ns.udp(pair.b.ip4, 7503, { sport: 5503, count: 5 })).toBe(0);
      const server = await pair.b.ns.serve("udp", 7504); // and 3 more to a different port: not counted
      await pair.a.ns.udp(pair.b.ip4, 7504, { sport: 5504, count: 3 });
      await server.stop();
    } finally {
      await t.stop();
    }
    const { latency, histogram, summary } = records((await t.finished).stdout);
    expect(latency).toEqual([]);
    expect(summary).toMatchObject({ events: 0 });
    expect(histogram).toMatchObject({ kind: "latency_histogram", packets: 5 });
    expect(histogram!.buckets.reduce((n: number, b: { count: number }) => n + b.count, 0)).toBe(5);
    for (const b of histogram!.buckets) expect(b.high_us).toBe(b.low_us === 0 ? 1 : b.low_us * 2 - 1);
  });

  test("--trace-matcher and --trace-free choose where the measurement starts and ends", async () => {
    const args = ["--latency", "--json", "-p", "udp", "--dport", "7505", "-c", "1", "--trace-matcher", "net_dev_start_xmit", "--trace-free", "netif_receive_skb"];
    const t = Skbtrail.start(args);
    const tf = Skbtrail.start([...args, "--latency-free"]);
    await Promise.all([t.ready(), tf.ready()]);
    await pair.a.ns.udp(pair.b.ip4, 7505, { sport: 5505 });
    const [r, rf] = (await Promise.all([t.finished, tf.finished])).map((x) => records(x.stdout).latency[0]);
    for (const x of [r, rf]) expect(x).toMatchObject({ first_hook: "net_dev_start_xmit", end_hook: "netif_receive_skb", end: "hook", dport: 7505 });
    expect(Math.round(r!.latency_us * 1000)).toBe(r!.last_ts_ns - r!.ts_ns);
    expect(Math.round(rf!.latency_us * 1000)).toBe(rf!.end_ts_ns - rf!.ts_ns);
  });

  test("--latency-show, --tiny-show and --trace-exclude in the lifecycle mode", async () => {
    const show = Skbtrail.start(["--latency-show", "--tiny-show", "-p", "udp", "--dport", "7506", "-c", "1", "--timeout", String(scaled(30))]);
    const excl = Skbtrail.start(["--trace-exclude", "netif_receive_skb", "-p", "udp", "--dport", "7506", "-c", "1", "--timeout", String(scaled(30))]);
    await Promise.all([show.ready(), excl.ready()]);
    await pair.a.ns.udp(pair.b.ip4, 7506, { sport: 5506 });
    const [s, e] = await Promise.all([show.finished, excl.finished]);
    const lines = s.stdout.split("\n").filter((l) => /^\[[\d.]+\] \[\+/.test(l));
    expect(lines.length, s.stdout).toBeGreaterThanOrEqual(3);
    // The delays add up to the total, each from the line's own timestamps (µs in the text).
    const stamps = lines.map((l) => Number(/^\[([\d.]+)\]/.exec(l)![1]));
    const total = /^total latency: (.*) over (\d+) hooks$/m.exec(s.stdout);
    expect(total, s.stdout).not.toBeNull();
    expect(Number(total![2])).toBe(lines.length);
    expect(lines[0]).toMatch(/\[\+0\.0µs *\]/);
    // Each delay as printed, with the precision it was printed at.
    const PRECISION: Record<string, [number, number]> = { µs: [1, 0.5], ms: [1000, 500], s: [1e6, 5e5] };
    let sumUs = 0;
    let slack = 1; // the timestamps are whole µs
    for (const l of lines) {
      const [, num, unit] = /\[\+([\d.]+)(µs|ms|s) *\]/.exec(l)!;
      const [scale, half] = PRECISION[unit!]!;
      sumUs += Number(num) * scale;
      slack += num!.includes(".") ? half / 10 : half;
    }
    expect(Math.abs(sumUs - (stamps.at(-1)! - stamps[0]!) * 1e6), s.stdout).toBeLessThanOrEqual(slack);
    // --tiny-show: the packet on the first line, then only where it differs from the one shown before.
    expect(lines[0]).toContain(`UDP: ${pair.a.ip4}:5506 -> ${pair.b.ip4}:7506`);
    const summaries = lines.map((l) => {
      const rest = /^\[[\d.]+\] \[\+[^\]]*\] \[[^\]]*\] ?(.*)$/.exec(l)![1]!;
      return rest.startsWith("*") ? "" : rest.split(" *")[0]!;
    });
    let lastShown = "";
    for (const summary of summaries)
      if (summary) {
        expect(summary, s.stdout).not.toBe(lastShown);
        lastShown = summary;
      }
    // net_dev_start_xmit follows net_dev_queue with the same headers on every kernel.
    expect(summaries.slice(1).some((x) => x === ""), s.stdout).toBe(true);
    const [b] = blocks(e.stdout);
    expect(b!.hooks, shown(b)).toContain("kfree_skb");
    expect(b!.hooks, shown(b)).not.toContain("netif_receive_skb");
    expect(b!.hooks, shown(b)).toContain("net_dev_queue");
  });

  test("--trace-matcher in the lifecycle mode: a packet starts only at those hooks, then is followed", async () => {
    const t = Skbtrail.start(["--trace-matcher", "netif_receive_skb", "-p", "udp", "--dport", "7508", "-c", "1", "--timeout", String(scaled(30))]);
    const all = Skbtrail.start(["-p", "udp", "--dport", "7508", "-c", "1", "--timeout", String(scaled(30))]);
    await Promise.all([t.ready(), all.ready()]);
    await pair.a.ns.udp(pair.b.ip4, 7508, { sport: 5508 });
    const [m, a] = await Promise.all([t.finished, all.finished]);
    const [bm] = blocks(m.stdout);
    const [ba] = blocks(a.stdout);
    // Without it the block starts on the sending side; with it, at the receive, and still ends at the drop.
    expect(ba!.hooks, shown(ba)).toContain("net_dev_queue");
    expect(bm!.hooks[0], shown(bm)).toBe("netif_receive_skb");
    expect(bm!.hooks, shown(bm)).not.toContain("net_dev_queue");
    expect(bm!.hooks.at(-1), shown(bm)).toBe("kfree_skb");
  });

  test.skipIf(!netem)("a packet delayed in a qdisc (netem): --latency finds it between net_dev_queue and the transmit", async () => {
    // The kernel has netem (modinfo knows built-in and module): adding it must work.
    expect(await pair.a.ns.try(`tc qdisc add dev ${pair.a.dev} root netem delay 50ms`)).toBe(0);
    try {
      const t = Skbtrail.start(["--latency", "--json", "-p", "udp", "--dport", "7507", "--trace-matcher", "net_dev_queue", "--trace-free", "net_dev_xmit", "--min-latency", "40ms", "-c", "1", "--timeout", String(scaled(30))]);
      await t.ready();
      await pair.a.ns.udp(pair.b.ip4, 7507, { sport: 5507 });
      const r = records((await t.finished).stdout).latency[0];
      expect(r).toMatchObject({ first_hook: "net_dev_queue", end_hook: "net_dev_xmit", end: "hook", dport: 7507 });
      // netem holds it 50 ms between the queueing and the driver.
      expect(r!.latency_us).toBeGreaterThanOrEqual(50_000);
      expect(r!.hooks).toBeGreaterThanOrEqual(3);
    } finally {
      await pair.a.ns.try(`tc qdisc del dev ${pair.a.dev} root`);
    }
  });
});
