// skbtrail run's cost to a pipeline: the wall time it adds to a command
// (`skbtrail run -- true` against `true` run bare, interleaved, median of
// N), split into exec → attached ("begin trace..." on stderr) and the rest
// (the command, noticing its exit, the final read, detach, the report); and
// --pcap's cost on the drop flood of bench/drop.ts (`--drop` against
// `--drop --pcap`, untraced baseline alternated in the same rounds).
//
//   bun bench/run-gate.ts [RUNS] [FLOOD_SECONDS] [FLOOD_ROUNDS]
//
// Needs dist/skbtrail and bench/build/ringbench (cc -O2 -o bench/build/ringbench bench/ringbench.c -lbpf).
import { existsSync, rmSync } from "node:fs";
import { dropBench, type DropRun } from "./drop";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface GateRun {
  bareMs: number;
  runMs: number;
  /** exec → "begin trace..." of `skbtrail run -- true`. */
  attachedMs: number;
  /** "begin trace..." → skbtrail's exit (command, exit noticed, final read, detach, report). */
  afterMs: number;
}

async function bare(): Promise<number> {
  const t = performance.now();
  await Bun.spawn(["true"], { stdout: "ignore", stderr: "ignore" }).exited;
  return performance.now() - t;
}

async function gated(binary: string): Promise<{ total: number; attached: number }> {
  const t = performance.now();
  // --netns-current: the report counts only this namespace's drops (the machine's others do not matter here).
  const proc = Bun.spawn([binary, "run", "--netns-current", "--", "true"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let attached = 0;
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of proc.stderr) {
    text += decoder.decode(chunk, { stream: true });
    if (!attached && text.includes("begin trace...")) attached = performance.now() - t;
  }
  const code = await proc.exited;
  if (code !== 0 || !attached) throw new Error(`skbtrail run -- true failed (${code}): ${text}`);
  return { total: performance.now() - t, attached };
}

export async function gateBench(binary: string, runs: number): Promise<{ runs: GateRun[]; medianAddedMs: number; medianAttachedMs: number; medianAfterMs: number }> {
  await gated(binary); // warm: page cache, probe results in /run/skbtrail
  await bare();
  const out: GateRun[] = [];
  for (let i = 0; i < runs; i++) {
    const b = await bare();
    const g = await gated(binary);
    out.push({ bareMs: b, runMs: g.total, attachedMs: g.attached, afterMs: g.total - g.attached });
  }
  return {
    runs: out,
    medianAddedMs: median(out.map((r) => r.runMs - r.bareMs)),
    medianAttachedMs: median(out.map((r) => r.attachedMs)),
    medianAfterMs: median(out.map((r) => r.afterMs - r.bareMs)),
  };
}

export async function pcapBench(binary: string, ringbench: string, seconds: number, rounds: number): Promise<DropRun[]> {
  const file = `${existsSync("/dev/shm") ? "/dev/shm" : "/tmp"}/skbtrail-bench-${process.pid}.pcapng`;
  try {
    return await dropBench(binary, ringbench, seconds, rounds, [
      { name: "untraced" },
      { name: "--drop", args: ["--drop"] },
      { name: "--drop --pcap", args: ["--drop", "--pcap", file] },
    ]);
  } finally {
    rmSync(file, { force: true });
  }
}

if (import.meta.main) {
  const root = `${import.meta.dir}/..`;
  const binary = process.env.SKBTRAIL_BIN ?? `${root}/dist/skbtrail`;
  const g = await gateBench(binary, Number(process.argv[2] ?? 10));
  console.log(JSON.stringify({ gate: { medianAddedMs: g.medianAddedMs, medianAttachedMs: g.medianAttachedMs, medianAfterMs: g.medianAfterMs, runs: g.runs.length } }));
  const ringbench = `${import.meta.dir}/build/ringbench`;
  if (!existsSync(ringbench)) throw new Error(`${ringbench} is missing: cc -O2 -o bench/build/ringbench bench/ringbench.c -lbpf`);
  const runs = await pcapBench(binary, ringbench, Number(process.argv[3] ?? 2), Number(process.argv[4] ?? 2));
  for (const r of runs) console.log(JSON.stringify(r));
  const mean = (name: string) => {
    const xs = runs.filter((r) => r.config === name);
    return xs.reduce((s, r) => s + r.pps, 0) / xs.length;
  };
  const base = mean("untraced");
  console.log(JSON.stringify({ pcap: { untracedPps: Math.round(base), dropRatio: +(mean("--drop") / base).toFixed(3), dropPcapRatio: +(mean("--drop --pcap") / base).toFixed(3) } }));
}
