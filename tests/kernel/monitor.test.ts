// --monitor and --metrics on the real kernel: drops and resets made in
// namespaces of its own, the console's aggregation, --json, --rate-limit,
// the exposition checked by promtool, and a real Prometheus server scraping
// skbtrail while packets are dropped, asked through its HTTP API.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $, type Subprocess } from "bun";
import { programIdsOf, stillLoaded } from "../lib/bpf";
import { TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { btfHas, functionBackends, traceableFunction } from "../lib/kernel";
import { jsonLines, runSkbtrail, scaled, Skbtrail } from "../lib/skbtrail";

const enabled = requireKernelTests();
const PROMETHEUS = "/usr/bin/prometheus";
const PROMTOOL = "/usr/bin/promtool";

/** A port free on 127.0.0.1 now (the kernel's choice). */
function freePort(): number {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port!;
  s.stop(true);
  return port;
}

/** Polls `probe` until it returns a value (not undefined) or the time is up. */
async function until<T>(probe: () => Promise<T | undefined>, ms: number): Promise<T | undefined> {
  const deadline = Date.now() + scaled(ms);
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined || Date.now() > deadline) return v;
    await Bun.sleep(100);
  }
}

/** "… N more like this (DESCRIPTION) in the last S s" lines about `description`: their counts. */
function repeatCounts(stdout: string, description: string): number[] {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("… ") && l.includes(`(${description})`))
    .map((l) => Number(/^… ([\d ]+) more like this/.exec(l)![1]!.replace(/ /g, "")));
}


/** A drop reason by name where the kernel has it; before 5.17 drops have none ("unknown" in metrics). */
const reasonIf = (name: string) => (btfHas(`SKB_DROP_REASON_${name}`) ? name : undefined);

describe.skipIf(!enabled)("skbtrail --monitor on the host kernel", () => {
  let net: TwoHosts;
  let netnsB: number;

  beforeAll(async () => {
    net = await TwoHosts.create("mon", 93);
    netnsB = await net.b.ns.inode();
  });
  afterAll(async () => {
    await net?.destroy();
  });

  // Only what reaches b: the machine's other drops (other tests run too) stay out.
  const inB = () => ["--netns", String(netnsB)];

  test("a burst to a closed UDP port: the first drop printed, the rest in 'more like this' lines; nothing left loaded", async () => {
    const n = 40;
    const t = Skbtrail.start(["--monitor", "--aggregate", "1", ...inB(), "-p", "udp", "--dport", "7301"]);
    await t.ready();
    const ids = programIdsOf(t.proc.pid);
    expect(ids.length).toBeGreaterThan(0);
    expect(await net.a.ns.udp(net.b.ip4, 7301, { sport: 5301, count: n })).toBe(0);
    const reason = reasonIf("NO_SOCKET");
    const description = `${reason ?? "dropped"} at __udp4_lib_rcv, UDP → ${net.b.ip4}:7301 in netns ${netnsB}`;
    // The repeats of a window are summed up at its end; a burst may straddle two.
    await until(async () => (repeatCounts(t.stdout, description).reduce((a, b) => a + b, 0) === n - 1 ? true : undefined), 10_000);
    const { code, stdout } = await t.stop("SIGTERM");
    expect(code).toBe(0);
    const whole = stdout.split("\n").filter((l) => l.includes(`-> ${net.b.ip4}:7301`));
    if (whole.length !== 1) console.log(`skbtrail's output:\n${stdout}\n${t.stderr}`);
    expect(whole).toHaveLength(1);
    expect(whole[0]).toContain(`UDP: ${net.a.ip4}:5301 -> ${net.b.ip4}:7301 *${reason ? `reason: ${reason}, ` : ""}__udp4_lib_rcv+0x`);
    expect(repeatCounts(stdout, description).reduce((a, b) => a + b, 0)).toBe(n - 1);
    expect(stdout).toMatch(/^… \d+ more like this \((NO_SOCKET|dropped) at __udp4_lib_rcv, UDP → [\d.]+:7301 in netns \d+\) in the last \d+ s$/m);
    expect(await stillLoaded(ids)).toEqual([]);
  });

  test("--json: a refused TCP connection is a drop and a reset sent; the repeat is a record too", async () => {
    // A window longer than the test: two attempts seconds apart under emulation stay in one. Repeats are
    // kept per CPU (the first on each CPU is printed), so both attempts run on CPU 0, where their SYNs are
    // handled; the window's repeats are summed up when the run stops.
    const t = Skbtrail.start(["--monitor", "--json", "--aggregate", "600", ...inB(), "--port", "7302"]);
    await t.ready();
    // b refuses a's SYN: it drops the SYN and sends a reset (a's side is the next test).
    expect(await net.a.ns.tcp(net.b.ip4, 7302, { cpu: 0 })).not.toBe(0);
    expect(await net.a.ns.tcp(net.b.ip4, 7302, { cpu: 0 })).not.toBe(0);
    await t.waitFor(/"event":"drop"/);
    const { code, stdout } = await t.stop();
    expect(code).toBe(0);
    const events = jsonLines(stdout);
    const drop = events.find((e) => e.kind === "monitor" && e.event === "drop");
    const reason = reasonIf("NO_SOCKET");
    expect(drop).toMatchObject({ proto: "TCP", daddr: net.b.ip4, dport: 7302, netns: netnsB, ...(reason && { reason }) });
    expect(drop!.location).toMatch(/^tcp_v4_rcv\+0x/);
    expect(drop!.tcp.flags).toBe("S");
    // A reset sent without a socket fires tcp:tcp_send_reset from 6.10 on, the release that gave resets their reasons.
    const reset = events.find((e) => e.kind === "monitor" && e.event === "reset_sent");
    if (btfHas("SK_RST_REASON_NO_SOCKET")) expect(reset).toMatchObject({ proto: "TCP", dport: 7302 });
    else console.warn("SKIPPED reset sent: before 6.10 tcp:tcp_send_reset does not fire for a connection nothing listens for");
    // The second attempt's drop (another source port, the same key) is a repeat.
    const repeat = events.find((e) => e.kind === "repeat" && e.event === "drop");
    expect(repeat).toMatchObject({ count: 1, reason: reason ?? null, location: "tcp_v4_rcv", proto: "TCP", daddr: net.b.ip4, dport: 7302, netns: netnsB });
    expect(events.at(-1)).toMatchObject({ kind: "summary", lost: 0 });
  });

  test("a reset received: the client's side of a refused connection, in SYN_SENT", async () => {
    const t = Skbtrail.start(["--monitor", "--json", "--netns", String(await net.a.ns.inode()), "--port", "7303"]);
    await t.ready();
    expect(await net.a.ns.tcp(net.b.ip4, 7303)).not.toBe(0);
    await until(async () => (jsonLines(t.stdout).some((e) => e.event === "reset_received") ? true : undefined), 10_000);
    const events = jsonLines((await t.stop()).stdout);
    expect(events.find((e) => e.event === "reset_received")).toMatchObject({ tcp_state: "SYN_SENT", daddr: net.b.ip4, dport: 7303 });
  });

  test("--rate-limit: at most N records a second are printed, the rest counted", async () => {
    const ports = 12;
    const t = Skbtrail.start(["--monitor", "--json", "--rate-limit", "2", ...inB(), "-p", "udp"]);
    await t.ready();
    // Distinct ports: distinct keys, so the aggregation alone would print every one.
    const started = Date.now();
    await Promise.all(Array.from({ length: ports }, (_, i) => net.a.ns.udp(net.b.ip4, 7310 + i, { sport: 5310 + i })));
    const seconds = Math.ceil((Date.now() - started) / 1000) + 1;
    // Every drop accounted for before the stop: printed, or counted in a repeat line (those over the limit). A
    // repeat line (read from the kernel's counts) can come before a printed record is read from the ring, and
    // records still queued at the stop are not printed: waiting for any one line raced with the reader.
    await until(async () => {
      const lines = jsonLines(t.stdout).filter((e) => e.event === "drop");
      const seen = lines.reduce((n, e) => n + (e.kind === "monitor" ? 1 : e.kind === "repeat" ? Number(e.count) : 0), 0);
      return seen >= ports ? true : undefined;
    }, 20_000);
    const events = jsonLines((await t.stop()).stdout);
    const printed = events.filter((e) => e.kind === "monitor" && e.event === "drop").length;
    const summary = events.find((e) => e.kind === "summary")!;
    expect(printed).toBeGreaterThan(0);
    expect(printed).toBeLessThanOrEqual(2 * seconds);
    expect(printed + summary.rate_limited).toBe(ports);
  });

  test("a socket whose receive queue is full: its drops printed, the overflows counted in --metrics", async () => {
    const reader = await net.b.ns.serve("udp-full", net.b.ip4, 7350);
    const port = freePort();
    const t = Skbtrail.start(["--monitor", "--json", "--metrics", String(port), ...inB(), "-p", "udp", "--dport", "7350"]);
    try {
      await t.ready();
      expect(await net.a.ns.udp(net.b.ip4, 7350, { count: 40, size: 1000 })).toBe(0);
      if (btfHas("SKB_DROP_REASON_SOCKET_RCVBUFF"))
        expect(await until(async () => (jsonLines(t.stdout).some((e) => e.event === "drop" && e.reason === "SOCKET_RCVBUFF") ? true : undefined), 10_000)).toBe(true);
      else console.warn("SKIPPED SOCKET_RCVBUFF check: this kernel has no such drop reason");
      if (btfHas("btf_trace_udp_fail_queue_rcv_skb")) {
        const overflows = await until(async () => {
          const m = /^skbtrail_socket_receive_queue_overflows_total\{proto="UDP"\} (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
          return m && Number(m[1]) > 0 ? Number(m[1]) : undefined;
        }, 10_000);
        expect(overflows).toBeGreaterThan(0);
      } else console.warn("SKIPPED receive-queue overflow counter: this kernel has no udp:udp_fail_queue_rcv_skb tracepoint");
    } finally {
      await t.stop();
      await reader.stop();
    }
  });

  test("SIGHUP reopens --output (log rotation); SIGTERM ends the run cleanly", async () => {
    const dir = mkdtempSync(`${tmpdir()}/skbtrail-monitor-`);
    try {
      const log = `${dir}/monitor.log`;
      const t = Skbtrail.start(["--monitor", "--output", log, ...inB(), "-p", "udp"]);
      await t.ready();
      expect(await net.a.ns.udp(net.b.ip4, 7360, { sport: 5360 })).toBe(0);
      expect(await until(async () => (readFileSync(log, "utf8").includes(":7360 ") ? true : undefined), 10_000)).toBe(true);
      renameSync(log, `${log}.1`);
      t.proc.kill("SIGHUP");
      expect(await until(async () => (t.stderr.includes(`SIGHUP: reopened ${log}`) ? true : undefined), 10_000)).toBe(true);
      expect(await net.a.ns.udp(net.b.ip4, 7361, { sport: 5361 })).toBe(0);
      expect(await until(async () => (existsSync(log) && readFileSync(log, "utf8").includes(":7361 ") ? true : undefined), 10_000)).toBe(true);
      const { code } = await t.stop("SIGTERM");
      expect(code).toBe(0);
      expect(readFileSync(`${log}.1`, "utf8")).not.toContain(":7361 ");
      expect(readFileSync(log, "utf8")).not.toContain(":7360 ");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an nftables drop: printed with NETFILTER_DROP, counted by family and hook (and table and chain where function hooks exist)", async () => {
    await net.b.ns.chains({ table: "skbtrail_mon", chain: "input", hook: "input", rules: ["udp dport 7370 drop"] });
    const port = freePort();
    const t = Skbtrail.start(["--monitor", "--json", "--metrics", String(port), ...inB(), "-p", "udp", "--dport", "7370"]);
    try {
      await t.ready();
      expect(await net.a.ns.udp(net.b.ip4, 7370, { sport: 5370, count: 3 })).toBe(0);
      const line = await until(async () => {
        const m = /^skbtrail_netfilter_drops_total\{family="ipv4",hook="INPUT",table="([^"]*)",chain="([^"]*)"\} (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
        return m && m[3] === "3" ? m : undefined;
      }, 10_000);
      expect(line?.[3]).toBe("3");
      // Table and chain come from nft_do_chain, a function hook: empty on tracepoint-only kernels and where
      // nf_tables has no BTF (5.10).
      if ((await functionBackends()).length && traceableFunction("nft_do_chain")) expect([line![1], line![2]]).toEqual(["skbtrail_mon", "input"]);
      else expect([line![1], line![2]]).toEqual(["", ""]);
      const drop = await until(async () => jsonLines(t.stdout).find((e) => e.event === "drop"), 10_000);
      const reason = reasonIf("NETFILTER_DROP");
      expect(drop).toMatchObject({ dport: 7370, ...(reason && { reason }) });
    } finally {
      await t.stop();
      await net.b.ns.sh("nft delete table inet skbtrail_mon");
    }
  });

  test("--tcp-rtt: RTT samples at or above the threshold are events, and the RTT histogram counts them", async () => {
    if (!btfHas("btf_trace_tcp_probe")) return console.warn("SKIPPED --tcp-rtt: this kernel has no tcp:tcp_probe tracepoint");
    const server = await net.b.ns.serve("tcp", 7380);
    const port = freePort();
    // 0.001 ms: every sample is above it (veth RTTs are tens of µs). The client's side: its
    // "hello" is acknowledged by the answer, an ACK of new data (the server's side has none).
    const netnsA = await net.a.ns.inode();
    const t = Skbtrail.start(["--monitor", "--json", "--tcp-rtt", "0.001", "--metrics", String(port), "--netns", String(netnsA), "--port", "7380"]);
    try {
      await t.ready();
      expect(await net.a.ns.tcp(net.b.ip4, 7380, { message: "hello" })).toBe(0);
      const rtt = await until(async () => jsonLines(t.stdout).find((e) => e.event === "rtt"), 10_000);
      expect(rtt).toMatchObject({ proto: "TCP", netns: netnsA, daddr: net.b.ip4, dport: 7380 });
      expect(rtt!.rtt_us).toBeGreaterThan(0);
      expect(rtt!.srtt_us).toBeGreaterThan(0);
      // Below a millisecond in µs (not "0ms").
      if (rtt!.rtt_us < 1000) expect(rtt!.notes).toContain(`srtt:${rtt!.srtt_us}µs, rtt:${rtt!.rtt_us}µs`);
      const count = /^skbtrail_tcp_rtt_seconds_count (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      expect(Number(count?.[1])).toBeGreaterThan(0);
    } finally {
      await t.stop();
      await server.stop();
    }
  });

  for (const mode of ["--monitor", "--basic"])
    test(`${mode} --func-stats: calls per hook counted in the kernel, a table every second, no events`, async () => {
      const n = 5;
      const t = Skbtrail.start([mode, "--func-stats", "--json"]);
      try {
        await t.ready();
        // The machine's other drops count too: compare the totals before and after ours.
        const kfree = (e: Record<string, any>) => e.hooks.find((h: any) => h.hook === "kfree_skb")?.total as number | undefined;
        const tables = () => jsonLines(t.stdout).filter((e) => e.kind === "func_stats");
        const before = await until(async () => tables().map(kfree).find((x) => x !== undefined), 10_000);
        expect(before).toBeNumber();
        expect(await net.a.ns.udp(net.b.ip4, 7390, { sport: 5390, count: n })).toBe(0);
        expect(await until(async () => (tables().some((e) => kfree(e)! >= before! + n) ? true : undefined), 10_000)).toBe(true);
        const events = jsonLines((await t.stop()).stdout);
        expect(events.filter((e) => e.kind !== "func_stats" && e.kind !== "summary")).toEqual([]);
      } finally {
        await t.stop();
      }
    });

  test("--metrics on a taken port: one line naming the port and the fix, exit 2", async () => {
    const port = freePort();
    const holder = Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response() });
    try {
      const { code, stdout, stderr } = await runSkbtrail(["--monitor", "--metrics", String(port)]);
      expect(code).toBe(2);
      expect(stderr).toBe(`skbtrail: --metrics: 127.0.0.1:${port} is already in use (another skbtrail or exporter?); choose another port, e.g. --metrics ${port + 1}\n`);
      expect(stdout).not.toContain("begin trace");
    } finally {
      holder.stop(true);
    }
  });

  describe("--metrics", () => {
    const port = freePort();
    let t: Skbtrail;
    let prometheus: Subprocess | undefined;
    let promDir: string | undefined;
    let promUrl = "";

    beforeAll(async () => {
      t = Skbtrail.start(["--monitor", "--metrics", String(port), ...inB()]);
      await t.ready();
    });
    afterAll(async () => {
      prometheus?.kill("SIGKILL");
      await prometheus?.exited;
      if (promDir) rmSync(promDir, { recursive: true, force: true });
      await t?.stop();
    });

    const scrape = () => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());

    test("the exposition parses with promtool and names every metric of the issue", async () => {
      if (!existsSync(PROMTOOL)) {
        console.warn(`SKIPPED promtool check: ${PROMTOOL} missing (Debian package prometheus; .ci/setup installs it)`);
        return;
      }
      expect(await net.a.ns.udp(net.b.ip4, 7330, { sport: 5330 })).toBe(0);
      const text = await until(async () => {
        const s = await scrape();
        return s.includes(`netns="${netnsB}"`) ? s : undefined;
      }, 10_000);
      expect(text).toBeDefined();
      const check = await $`${PROMTOOL} check metrics < ${new Response(text!)}`.nothrow().quiet();
      expect(`${check.stdout}${check.stderr}`).toBe("");
      expect(check.exitCode).toBe(0);
      for (const family of [
        "skbtrail_drops_total counter",
        "skbtrail_netfilter_drops_total counter",
        "skbtrail_tcp_retransmit_timeouts_total counter",
        "skbtrail_tcp_resets_total counter",
        "skbtrail_tcp_rtt_seconds histogram",
        "skbtrail_events_lost_total counter",
        "skbtrail_build_info gauge",
        "process_resident_memory_bytes gauge",
      ])
        expect(text).toContain(`# TYPE ${family}\n`);
      expect(text).toMatch(new RegExp(`^skbtrail_drops_total\\{reason="${reasonIf("NO_SOCKET") ?? "unknown"}",location="__udp4_lib_rcv",proto="UDP",ifname="veth1",netns="${netnsB}"\\} 1$`, "m"));
    });

    test("a real Prometheus scrapes it during drops: the series exist with their labels and the count matches the packets sent", async () => {
      if (!existsSync(PROMETHEUS)) {
        console.warn(`SKIPPED Prometheus test: ${PROMETHEUS} missing (Debian package prometheus; .ci/setup installs it)`);
        return;
      }
      promDir = mkdtempSync(`${tmpdir()}/skbtrail-prometheus-`);
      writeFileSync(
        `${promDir}/prometheus.yml`,
        `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: skbtrail\n    static_configs:\n      - targets: ["127.0.0.1:${port}"]\n`,
      );
      const promPort = freePort();
      promUrl = `http://127.0.0.1:${promPort}`;
      prometheus = Bun.spawn(
        [PROMETHEUS, `--config.file=${promDir}/prometheus.yml`, `--storage.tsdb.path=${promDir}/data`, `--web.listen-address=127.0.0.1:${promPort}`],
        { stdin: "ignore", stdout: "ignore", stderr: "ignore" },
      );
      const query = async (q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
        const body = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as any;
        return body.status === "success" ? body.data.result : [];
      };
      // Scraped and up before the drops, so the series starts below their count.
      expect(await until(async () => ((await query('up{job="skbtrail"}'))[0]?.value[1] === "1" ? true : undefined), 30_000)).toBe(true);

      const n = 25;
      expect(await net.a.ns.udp(net.b.ip4, 7340, { sport: 5340, count: n })).toBe(0);
      // Every series of this namespace: UDP drops here came only from this test's sends (7330's one and these).
      const reason = reasonIf("NO_SOCKET") ?? "unknown";
      const selector = `skbtrail_drops_total{job="skbtrail",reason="${reason}",proto="UDP",netns="${netnsB}"}`;
      const result = await until(async () => {
        const r = await query(selector);
        return r.length === 1 && r[0]!.value[1] === String(n + 1) ? r : undefined;
      }, 20_000);
      expect(result ?? (await query(selector))).toEqual([
        {
          metric: { __name__: "skbtrail_drops_total", instance: `127.0.0.1:${port}`, job: "skbtrail", reason, location: "__udp4_lib_rcv", proto: "UDP", ifname: "veth1", netns: String(netnsB) },
          value: [expect.any(Number), String(n + 1)],
        },
      ]);
      // A rate over the window Prometheus saw: the drops happened while it scraped.
      const increase = await query(`increase(${selector}[1m])`);
      expect(Number(increase[0]?.value[1])).toBeGreaterThan(0);
      expect((await query('skbtrail_build_info{job="skbtrail"}'))[0]?.metric.version).toMatch(/^\d+\.\d+\.\d+/);
      expect((await query('skbtrail_events_lost_total{job="skbtrail"}'))[0]?.value[1]).toBe("0");
    });
  });
});
