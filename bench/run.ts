// All of skbtrail's benchmarks in one run (about a minute), printed as a
// Markdown table and written to bench/results.md. Every figure comes from
// this one run. Needs root (BPF), the built product (bun run build.ts; built
// here when missing), clang and cc with libbpf-dev.
//
//   sudo bun run bench/run.ts        (or: sudo bun run bench)
//
// See bench/README.md for what each figure means.
import { $ } from "bun";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { cpus } from "node:os";
import { RingBench, fmtRate, type Phase, type SearchResult } from "./ring";
import type { DecodeCosts } from "./decode";
import { dropBench, floodTable, type DropRun, DROP_CONFIGS } from "./drop";
import { startupBench, type StartupResult } from "./startup";
import { stopBench, STOP_MODES, type StopRun } from "./stop";
import { libbpfVersion, loadLibbpf } from "../ffi/libbpf";

const BENCH = import.meta.dir;
const ROOT = `${BENCH}/..`;
const OUT = `${BENCH}/build`;
const BINARY = `${ROOT}/dist/skbtrail`;
const TIME_LIMIT_MS = 240_000;

// Durations (seconds) and repetitions: the whole run stays near a minute.
const RING_SECONDS = 1.5;
const RING_ROUNDS = 3;
const DRAIN_ROUNDS = 10;
const SEARCH_SECONDS = 1;
const SEARCH_TRIALS = 5;
const FIXED_RATE = 1_000_000;
const DROP_SECONDS = 2;
const DROP_ROUNDS = 3;
const STARTUP_RUNS = 10;
const STOP_ROUNDS = 3;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const range = (xs: number[], f: (x: number) => string) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
const ns = (x: number) => `${x.toFixed(0)} ns`;
const ms = (x: number) => x.toFixed(0);
const pct = (x: number) => `${x.toFixed(2)}×`;
const int = (x: number) => Math.round(x).toLocaleString("en-US");
const mark = (ok: boolean) => (ok ? "✓" : "✗");

async function build(): Promise<void> {
  if (!existsSync(BINARY) || !existsSync(`${ROOT}/build/lib/libbpf.so.1`)) {
    console.error("bench: building the product first (bun run build.ts)");
    await $`bun run ${ROOT}/build.ts`.cwd(ROOT);
  }
  mkdirSync(OUT, { recursive: true });
  // The product's flags (build.ts compileBpf), with bpf/ on the include path.
  await $`clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I${ROOT}/bpf/include -I${ROOT}/bpf -c ${BENCH}/producer.bpf.c -o ${OUT}/producer.bpf.o`;
  await $`cc -O2 -Wall -Wextra -o ${OUT}/ringbench ${BENCH}/ringbench.c -lbpf`;
}

async function environment(): Promise<string> {
  const kernel = (await $`uname -r`.text()).trim();
  const model = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "unknown CPU";
  const systemLibbpf = (await $`dpkg-query -W -f=\${Version} libbpf-dev`.nothrow().quiet().text()).trim() || "?";
  return `${new Date().toISOString().replace(/\.\d+Z$/, "Z")} · kernel ${kernel} · ${model}, ${cpus().length} CPUs · Bun ${Bun.version} · libbpf ${libbpfVersion()} (product, embedded) / ${systemLibbpf} (C consumer)`;
}

interface RingResults {
  flatOut: Phase[];
  drain: { ts: number[]; tsWalk: number[]; c: number[] };
  sustained: { ts: SearchResult; c: SearchResult };
  fixed: { ts: Phase; c: Phase };
}

async function ringBenchmarks(): Promise<RingResults> {
  const bench = await RingBench.open(`${OUT}/producer.bpf.o`, `${OUT}/ringbench`);
  try {
    await bench.run("ts", 0.5, 0); // warm the JIT; not reported
    const flatOut: Phase[] = [];
    for (let i = 0; i < RING_ROUNDS; i++) for (const c of ["ts", "c"] as const) flatOut.push(await bench.run(c, RING_SECONDS, 0));
    const drain = await bench.drainFullRing(DRAIN_ROUNDS);
    const guess = (c: "ts" | "c") => 0.8 * median(flatOut.filter((p) => p.consumer === c).map((p) => p.rate));
    const sustained = {
      ts: await bench.maxSustained("ts", guess("ts"), SEARCH_SECONDS, SEARCH_TRIALS),
      c: await bench.maxSustained("c", guess("c"), SEARCH_SECONDS, SEARCH_TRIALS),
    };
    const fixed = { ts: await bench.run("ts", RING_SECONDS, FIXED_RATE), c: await bench.run("c", RING_SECONDS, FIXED_RATE) };
    return { flatOut, drain, sustained, fixed };
  } finally {
    bench.close();
  }
}

function ringTable(r: RingResults): string {
  const of = (c: "ts" | "c") => r.flatOut.filter((p) => p.consumer === c);
  const ts = of("ts");
  const c = of("c");
  const tsRate = median(ts.map((p) => p.rate));
  const cRate = median(c.map((p) => p.rate));
  // A consumer busy nearly all the time is the bottleneck; otherwise the producer is.
  const cBusy = median(c.map((p) => p.cpuSeconds / Math.max(p.seconds, 1e-9)));
  const cBound = cBusy < 0.95;
  const ratio = tsRate / cRate;
  const best = (s: SearchResult) => (s.best ? `${fmtRate(s.best.producedRate)}/s` : "none found");
  const limit = (s: SearchResult) => s.limit ?? "no trial failed";
  const sTs = r.sustained.ts.best?.producedRate ?? 0;
  const sC = r.sustained.c.best?.producedRate ?? 0;
  const lines = [
    `### Ring-buffer pipeline: synthetic BPF producer → product ring (16 MiB, wakeup at 256 KiB) → consumer`,
    "",
    `| | TypeScript reader (product: RingBuffer + decodeDrop) | C consumer (libbpf ring_buffer__poll) | TS / C |`,
    `|---|---|---|---|`,
    `| **Records decoded per second**, producer flat out (median of ${RING_ROUNDS} × ${RING_SECONDS} s; range) | **${fmtRate(tsRate)}/s** (${range(ts.map((p) => p.rate), fmtRate)}) | **${fmtRate(cRate)}/s** (${range(c.map((p) => p.rate), fmtRate)})${cBound ? " ¹" : ""} | **${pct(ratio)}** ${mark(ratio >= 0.5)} (target ≥ 0.5×) |`,
    `| Lost records in those runs (sum) | ${int(ts.reduce((a, p) => a + p.lost, 0))} | ${int(c.reduce((a, p) => a + p.lost, 0))} | |`,
    `| Producer's rate meanwhile / its CPU per record (syscall + BPF) ² | ${fmtRate(median(ts.map((p) => p.producedRate)))}/s / ${ns(median(ts.map((p) => p.producerCpuNs)))} | ${fmtRate(median(c.map((p) => p.producedRate)))}/s / ${ns(median(c.map((p) => p.producerCpuNs)))} | |`,
    `| Consumer CPU per record, flat out | ${ns(median(ts.map((p) => p.cpuNsPerEvent)))} | ${ns(median(c.map((p) => p.cpuNsPerEvent)))} (busy ${(cBusy * 100).toFixed(0)}% of the time) | |`,
    `| Highest paced rate kept up with: zero loss, producer not held back (${SEARCH_TRIALS} rates × ${SEARCH_SECONDS} s, a failure retried once) | ${best(r.sustained.ts)} (first failure: ${limit(r.sustained.ts)}) | ${best(r.sustained.c)} (first failure: ${limit(r.sustained.c)}) | ${sTs && sC ? pct(sTs / sC) : "–"} |`,
    `| Consumer CPU per record at a paced ${fmtRate(FIXED_RATE)}/s (lost) | ${ns(r.fixed.ts.cpuNsPerEvent)} (${int(r.fixed.ts.lost)}) | ${ns(r.fixed.c.cpuNsPerEvent)} (${int(r.fixed.c.lost)}) | |`,
    `| Drain of a full ring (about 95,000 records, no producer running), ns per record, median of the last ${DRAIN_ROUNDS} of ${2 * DRAIN_ROUNDS} | ${ns(median(r.drain.ts))} (walk without decoding: ${ns(median(r.drain.tsWalk))}) | ${ns(median(r.drain.c))} | ${pct(median(r.drain.c) / median(r.drain.ts))} |`,
    "",
  ];
  if (cBound)
    lines.push(
      `¹ The C consumer was busy only ${(cBusy * 100).toFixed(0)}% of the time: one producer CPU cannot outrun it here, so its figure is the producer's limit and the true TS / C ratio is lower.`,
    );
  const tsLost = ts.reduce((a, p) => a + p.lost, 0);
  lines.push(
    tsLost
      ? "² submit() wakes the reader once, as the backlog crosses 256 KiB (bpf/lib/ringbuf.bpf.h), so a reader that falls behind loses records (counted above) instead of slowing the producer. The TypeScript reader stores its consumer position once per drain (ffi/ringbuf.ts): while it drains a full ring, the producer sees no free space."
      : "² The producer's CPU per record includes the wakeups submit() asks for (bpf/lib/ringbuf.bpf.h: once, as the backlog crosses 256 KiB).",
    "",
  );
  return lines.join("\n");
}

function decodeTable(d: DecodeCosts): string {
  return [
    "### TypeScript per-record costs (hot memory, no kernel; ns per record)",
    "",
    "| ring walk | decodeDrop | of which: comm string · decodePacket; skb address in hex (made only when printed) ³ | symbolize location ⁴ | text line | JSON line | --drop per record (walk+decode+symbolize+text) | --drop --json per record (walk+decode+symbolize+JSON) |",
    "|---|---|---|---|---|---|---|---|",
    `| ${d.walk.toFixed(1)} | ${ms(d.decodeDrop)} | ${ms(d.commString)} · ${ms(d.decodePacket)}; ${ms(d.addrHex)} | ${ms(d.symbolize)} | ${ms(d.textLine)} | ${ms(d.jsonLine)} | ${ms(d.textPipeline)} | ${ms(d.jsonPipeline)} |`,
    "",
    "³ comm, ifname and addresses come from caches keyed by their 16 bytes (src/events/decode.ts StringCache): the synthetic records repeat comm and ifname, while saddr changes with every record (each one a miss); the skb address is put in hex (64 Ki-entry table) only when the output prints it (JSON, or text with --detail).",
    "⁴ Symbolizer.format on every call, as measured here and in the two pipelines; `--drop` names each drop location once (src/modes/drop.ts), so the product pays a map lookup instead.",
    "",
  ].join("\n");
}

function dropTable(runs: DropRun[]): string {
  return floodTable(`Drop monitor: loopback UDP to a closed port, one sender flat out (${DROP_ROUNDS} rounds × ${DROP_SECONDS} s, configurations alternated)`, runs, DROP_CONFIGS, 0.8);
}

function startupTable(s: StartupResult): string {
  const ready = median(s.readyMs);
  return [
    `### Startup (warm, ${s.readyMs.length} runs)`,
    "",
    "| exec → `begin trace...` (`--drop --timeout 1`), median (range) | SIGINT → exit, median | `--version` exec → exit, median | binary size |",
    "|---|---|---|---|",
    `| **${ms(ready)} ms** (${range(s.readyMs, ms)}) ${mark(ready < 100)} (target < 100 ms) | ${ms(median(s.stopMs))} ms | ${ms(median(s.versionMs))} ms | ${(s.binaryBytes / 1e6).toFixed(1)} MB (${int(s.binaryBytes)} bytes) |`,
    "",
  ].join("\n");
}

function stopTable(runs: StopRun[]): string {
  const rows = STOP_MODES.map(({ mode }) => {
    const rs = runs.filter((r) => r.mode === mode);
    const soak = rs.find((r) => r.floodMs > 1000);
    const mb = (x: number) => `${Math.round(x)} MB`;
    return `| \`${mode}\` | ${ms(median(rs.map((r) => r.exitMs)))} ms (${range(rs.map((r) => r.exitMs), ms)}) | ${ms(median(rs.map((r) => r.goneMs)))} ms | ${rs.map((r) => int(r.unread)).join(" / ")} | ${soak ? `${mb(soak.rss.first)} → ${mb(soak.rss.last)} (peak ${mb(soak.rss.peak)})` : "–"} |`;
  });
  return [
    `### Stopping under a flood: SIGINT after 10 s (first round: a soak) or 1 s of loopback UDP flat out to a closed port (${STOP_ROUNDS} rounds)`,
    "",
    "| mode | SIGINT → exit, median (range) | SIGINT → its last program gone, median | records dropped unread at the stop, per round | resident memory after 1 s → after 10 s |",
    "|---|---|---|---|---|",
    ...rows,
    "",
  ].join("\n");
}

/** bench/decode.ts in a process of its own (see there why). */
async function decodeInProcessOfItsOwn(): Promise<DecodeCosts> {
  const p = Bun.spawn([process.execPath, `${BENCH}/decode.ts`, "--json"], { stdout: "pipe", stderr: "inherit" });
  const text = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error("bench/decode.ts failed");
  return JSON.parse(text) as DecodeCosts;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: sudo bun run bench/run.ts");
  const started = performance.now();
  const watchdog = setTimeout(() => {
    // Helpers end by themselves (bounded durations, EOF on stdin); links close with our fds.
    console.error(`bench: over the ${TIME_LIMIT_MS / 1000} s limit, giving up`);
    process.exit(3);
  }, TIME_LIMIT_MS);
  await build();
  await loadLibbpf();
  const env = await environment();
  const step = (name: string) => console.error(`bench: ${name} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  // Startup first, before this process and the page cache carry the others' load.
  step("startup");
  const startup = await startupBench(BINARY, STARTUP_RUNS);
  step("ring buffer");
  const ring = await ringBenchmarks();
  step("drop monitor");
  const drop = await dropBench(BINARY, `${OUT}/ringbench`, DROP_SECONDS, DROP_ROUNDS);
  step("stopping under a flood");
  const stops = await stopBench(BINARY, `${OUT}/ringbench`, STOP_ROUNDS);
  step("decode costs");
  const decode = await decodeInProcessOfItsOwn();
  clearTimeout(watchdog);
  const total = (performance.now() - started) / 1000;
  const md = [
    "## skbtrail benchmarks",
    "",
    `${env} · whole run ${total.toFixed(0)} s (\`sudo bun run bench/run.ts\`; see bench/README.md)`,
    "",
    ringTable(ring),
    decodeTable(decode),
    dropTable(drop),
    startupTable(startup),
    stopTable(stops),
  ].join("\n");
  process.stdout.write(md);
  writeFileSync(`${BENCH}/results.md`, md);
  writeFileSync(`${OUT}/results.json`, JSON.stringify({ env, decode, ring, drop, startup, stops }, null, 1));
}

await main();
