// --monitor --metrics: what it costs the traffic, and whether its memory
// stays flat over a long run.
//
//   sudo bun bench/monitor.ts [SECONDS] [ROUNDS]   cost (default 5 s, 3 rounds)
//   sudo bun bench/monitor.ts --soak MINUTES       soak
//
// Cost: loopback UDP floods (`ringbench flood`, flat out) where every
// datagram is dropped (a closed port: NO_SOCKET) and where none is (a
// `ringbench sink` reading with recvmmsg from a 64 MiB buffer), each untraced
// and with `skbtrail --monitor --metrics` attached, alternated round by round
// in one run; ratios are to the median untraced rate of the same traffic.
// After each traced flood /metrics is scraped: the drops it counts against
// the packets sent, and the lost events.
//
// Soak: one `--monitor --metrics` run for MINUTES under mixed drops, every
// 10 s: a 1 s flood to a closed port, 200 datagrams to ports never used
// before (new keys for the console's and the metrics' bounded tables) and 5
// refused TCP connections (resets); resident memory (VmRSS) sampled every
// 10 s, and /metrics scraped (lost events, series).
import { createSocket } from "node:dgram";
import { existsSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { $ } from "bun";
import { closedPort, cpuSeconds, flood, FLOOD_ADDR } from "./drop";
import { memory } from "./stop";

const ROOT = `${import.meta.dir}/..`;
const BINARY = process.env.SKBTRAIL_BIN ?? `${ROOT}/dist/skbtrail`;
const RINGBENCH = `${import.meta.dir}/build/ringbench`;
const METRICS_PORT = 9465;
const SINK_PORT = 9466;

async function ensureRingbench(): Promise<void> {
  // The same command as bench/run.ts build().
  if (!existsSync(RINGBENCH)) await $`mkdir -p ${import.meta.dir}/build && cc -O2 -Wall -Wextra -o ${RINGBENCH} ${import.meta.dir}/ringbench.c -lbpf`;
}

/** Udp RcvbufErrors of this network namespace (/proc/net/snmp): datagrams the sink could not queue. */
async function rcvbufErrors(): Promise<number> {
  const lines = (await Bun.file("/proc/net/snmp").text()).split("\n").filter((l) => l.startsWith("Udp: "));
  const [names, values] = lines.map((l) => l.split(/\s+/));
  return Number(values![names!.indexOf("RcvbufErrors")]);
}

/** skbtrail --monitor --metrics, started until "begin trace..." (its output in RAM). */
async function startMonitor(extra: string[] = []) {
  const out = `/dev/shm/skbtrail-monitor-bench-${process.pid}.out`;
  rmSync(out, { force: true });
  const proc = Bun.spawn([BINARY, "--monitor", "--metrics", String(METRICS_PORT), "--output", out, ...extra], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const err = proc.stderr.getReader();
  let text = "";
  while (!text.includes("begin trace...")) {
    const { done, value } = await err.read();
    if (done) throw new Error(`skbtrail did not start: ${text}`);
    text += new TextDecoder().decode(value);
  }
  void (async () => {
    while (!(await err.read()).done);
  })();
  return {
    proc,
    async stop() {
      proc.kill("SIGINT");
      await proc.exited;
      rmSync(out, { force: true });
    },
  };
}

/** Sum of a metric's samples whose line matches `filter`, from one scrape. */
async function scrape(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
}
function sum(text: string, metric: string, filter = ""): number {
  return text
    .split("\n")
    .filter((l) => l.startsWith(metric) && (l[metric.length] === " " || l[metric.length] === "{") && l.includes(filter))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

interface CostRun {
  traffic: "dropped" | "delivered";
  config: "untraced" | "--monitor --metrics";
  pps: number;
  packets: number;
  /** Delivered traffic: datagrams the sink could not queue anyway (not skbtrail's doing). */
  rcvbufErrors?: number;
  /** Traced: what /metrics said after the flood. */
  dropsCounted?: number;
  lost?: number;
  skbtrailCpuNsPerPacket?: number;
}

async function costRun(traffic: CostRun["traffic"], traced: boolean, dropPort: number, seconds: number): Promise<CostRun> {
  const monitor = traced ? await startMonitor() : undefined;
  const sink = traffic === "delivered" ? Bun.spawn([RINGBENCH, "sink", FLOOD_ADDR, String(SINK_PORT), String(seconds + 3)], { stdout: "pipe", stderr: "inherit" }) : undefined;
  try {
    const sinkOut = sink?.stdout.getReader();
    if (sinkOut && !new TextDecoder().decode((await sinkOut.read()).value).includes("ready")) throw new Error("ringbench sink did not start");
    const errors0 = await rcvbufErrors();
    const drops0 = monitor ? sum(await scrape(), "skbtrail_drops_total", 'location="__udp4_lib_rcv"') : 0;
    const cpu0 = monitor ? cpuSeconds(monitor.proc.pid) : 0;
    const sent = await flood(RINGBENCH, traffic === "dropped" ? dropPort : SINK_PORT, seconds);
    const run: CostRun = { traffic, config: traced ? "--monitor --metrics" : "untraced", pps: sent.packets / sent.seconds, packets: sent.packets };
    if (traffic === "delivered") run.rcvbufErrors = (await rcvbufErrors()) - errors0;
    if (monitor) {
      run.skbtrailCpuNsPerPacket = ((cpuSeconds(monitor.proc.pid) - cpu0) * 1e9) / sent.packets;
      const text = await scrape();
      run.dropsCounted = sum(text, "skbtrail_drops_total", 'location="__udp4_lib_rcv"') - drops0;
      run.lost = sum(text, "skbtrail_events_lost_total");
    }
    return run;
  } finally {
    sink?.kill();
    await sink?.exited;
    await monitor?.stop();
  }
}

async function cost(seconds: number, rounds: number): Promise<void> {
  const dropPort = await closedPort();
  const runs: CostRun[] = [];
  for (let r = 0; r < rounds; r++)
    for (const traffic of ["dropped", "delivered"] as const)
      for (const traced of [false, true]) {
        const run = await costRun(traffic, traced, dropPort, seconds);
        console.error(JSON.stringify(run));
        runs.push(run);
      }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`| traffic (${seconds} s floods, ${rounds} rounds interleaved) | untraced pps | --monitor --metrics pps | ratio | skbtrail CPU / packet | drops counted / sent | lost |`);
  console.log("|---|---|---|---|---|---|---|");
  for (const traffic of ["dropped", "delivered"] as const) {
    const base = median(runs.filter((r) => r.traffic === traffic && r.config === "untraced").map((r) => r.pps));
    const traced = runs.filter((r) => r.traffic === traffic && r.config !== "untraced");
    const pps = median(traced.map((r) => r.pps));
    const counted = traced.map((r) => `${r.dropsCounted}/${r.packets}`).join(", ");
    const cpu = median(traced.map((r) => r.skbtrailCpuNsPerPacket!));
    console.log(
      `| ${traffic === "dropped" ? "every packet dropped (NO_SOCKET)" : "none dropped (delivered to a sink)"} | ${Math.round(base).toLocaleString("en-US")} | ${Math.round(pps).toLocaleString("en-US")} | ${(pps / base).toFixed(2)}× | ${cpu.toFixed(1)} ns | ${counted} | ${traced.map((r) => r.lost).join(", ")} |`,
    );
  }
}

/** One soak step's traffic: a 1 s flood, 200 new UDP keys, 5 refused TCP connections. */
async function mixedDrops(dropPort: number, step: number): Promise<void> {
  await flood(RINGBENCH, dropPort, 1);
  // node:dgram: the port-unreachable errors that come back are ignored (Bun's own UDP socket throws them).
  const socket = createSocket("udp4").on("error", () => {});
  await Promise.all(Array.from({ length: 200 }, (_, i) => new Promise<void>((done) => socket.send("soak", 20000 + ((step * 200 + i) % 40000), FLOOD_ADDR, () => done()))));
  socket.close();
  await Promise.all(
    Array.from({ length: 5 }, (_, i) => new Promise<void>((done) => connect(10000 + ((step * 5 + i) % 5000), FLOOD_ADDR).on("error", () => done()).on("connect", function (this: any) { this.destroy(); done(); }))),
  );
}

async function soak(minutes: number): Promise<void> {
  const dropPort = await closedPort();
  const monitor = await startMonitor();
  const samples: { s: number; rssMb: number; lost: number; series: number }[] = [];
  const started = performance.now();
  try {
    for (let step = 0; performance.now() - started < minutes * 60_000; step++) {
      const stepStart = performance.now();
      await mixedDrops(dropPort, step);
      const text = await scrape();
      const sample = {
        s: Math.round((performance.now() - started) / 1000),
        rssMb: Math.round(memory(monitor.proc.pid).rss * 10) / 10,
        lost: sum(text, "skbtrail_events_lost_total"),
        series: text.split("\n").filter((l) => l.startsWith("skbtrail_drops_total{")).length,
      };
      samples.push(sample);
      console.error(JSON.stringify(sample));
      await Bun.sleep(Math.max(0, 10_000 - (performance.now() - stepStart)));
    }
  } finally {
    await monitor.stop();
  }
  // Warm-up: the first minute (JIT, kallsyms, the tables filling to their bounds).
  const after = samples.filter((x) => x.s >= 60);
  const rss = after.map((x) => x.rssMb);
  const n = after.length;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ts = after.map((x) => x.s / 60);
  const slope = n > 1 ? after.reduce((a, x, i) => a + (ts[i]! - mean(ts)) * (x.rssMb - mean(rss)), 0) / ts.reduce((a, t) => a + (t - mean(ts)) ** 2, 0) : 0;
  console.log(`| soak | minutes | samples after 1 min | RSS first / min / max / last (MB) | slope after warm-up | drops_total series at the end | lost events |`);
  console.log("|---|---|---|---|---|---|---|");
  console.log(
    `| --monitor --metrics, mixed drops | ${minutes} | ${n} | ${rss[0]} / ${Math.min(...rss)} / ${Math.max(...rss)} / ${rss.at(-1)} | ${slope.toFixed(2)} MB/min | ${samples.at(-1)?.series} | ${samples.at(-1)?.lost} |`,
  );
}

if (process.getuid?.() !== 0) throw new Error("run as root: sudo bun bench/monitor.ts");
await ensureRingbench();
const soakAt = process.argv.indexOf("--soak");
if (soakAt > 0) await soak(Number(process.argv[soakAt + 1] ?? 30));
else await cost(Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 3));
