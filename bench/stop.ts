// Stopping under load: loopback UDP to a closed port, sent flat out by one
// `ringbench flood` process, while skbtrail runs in each mode; SIGINT after a
// second of it (ten in the first round: a soak). Measured: SIGINT → exit
// (the prompt), SIGINT → the last of the run's programs gone from the kernel
// (judged by the program ids its fds held), and the process's resident
// memory after 1 s and at the end of the soak (it must stay flat: every
// buffer of the reader is bounded). The events go to a file in /dev/shm, so
// what is timed is skbtrail's stop, not how fast this script reads a pipe
// (a pipe read slowly held the stop for seconds: bench/README.md §5).
//
//   sudo bun bench/stop.ts [ROUNDS]
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import { loadedProgramIds, programIdsOf } from "../tests/lib/bpf";
import { closedPort, FLOOD_ADDR } from "./drop";

export interface StopRun {
  mode: string;
  /** SIGINT → process exit, ms. */
  exitMs: number;
  /** SIGINT → none of its programs loaded, ms. */
  goneMs: number;
  /** Records the summary says were dropped unread at the stop. */
  unread: number;
  /** Resident memory (MB) after 1 s of flood, at the stop, and its peak. */
  rss: { first: number; last: number; peak: number };
  /** How long the flood ran before SIGINT, ms. */
  floodMs: number;
}

/** VmRSS and VmHWM of a process, in MB. */
export function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) / 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** The last line of a file (the summary), read from its end: the events before it can be gigabytes. */
function lastLine(path: string): string {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const tail = Buffer.alloc(Math.min(size, 1 << 16));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    return tail.toString("utf8").trimEnd().split("\n").at(-1)!;
  } finally {
    closeSync(fd);
  }
}

/** The first round floods this long before SIGINT: memory must stay flat. */
const SOAK_MS = 10_000;

export const STOP_MODES: { mode: string; args: string[] }[] = [
  { mode: "--drop", args: ["--drop", "-p", "udp"] },
  { mode: "lifecycle (default)", args: ["-p", "udp"] },
  { mode: "--basic", args: ["--basic", "-p", "udp"] },
  { mode: "--diag --diag-keep", args: ["--diag", "--diag-keep", "-p", "udp"] },
];

async function once(binary: string, ringbench: string, port: number, args: string[], floodMs: number): Promise<Omit<StopRun, "mode">> {
  const flood = Bun.spawn([ringbench, "flood", FLOOD_ADDR, String(port), String(floodMs / 1000 + 30)], { stdout: "ignore", stderr: "inherit" });
  const dir = mkdtempSync("/dev/shm/skbtrail-stop-");
  const events = openSync(`${dir}/events.json`, "w");
  const proc = Bun.spawn([binary, ...args, "--dport", String(port), "--json"], { stdin: "ignore", stdout: events, stderr: "pipe" });
  closeSync(events);
  try {
    const err = proc.stderr.getReader();
    let text = "";
    while (!text.includes("begin trace...")) {
      const { done, value } = await err.read();
      if (done) throw new Error(`skbtrail did not start: ${text}`);
      text += new TextDecoder().decode(value);
    }
    await Bun.sleep(1000);
    const first = memory(proc.pid).rss;
    await Bun.sleep(floodMs - 1000);
    const { rss: last, peak } = memory(proc.pid);
    const ids = programIdsOf(proc.pid);
    const t = performance.now();
    proc.kill("SIGINT");
    await proc.exited;
    const exitMs = performance.now() - t;
    for (;;) {
      const now = await loadedProgramIds();
      if (!ids.some((id) => now.has(id))) break;
      await Bun.sleep(10);
    }
    const goneMs = performance.now() - t;
    const summary = JSON.parse(lastLine(`${dir}/events.json`)) as { unread: number };
    return { exitMs, goneMs, unread: summary.unread, rss: { first, last, peak }, floodMs };
  } finally {
    proc.kill("SIGKILL");
    flood.kill();
    await flood.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function stopBench(binary: string, ringbench: string, rounds: number): Promise<StopRun[]> {
  const port = await closedPort();
  const runs: StopRun[] = [];
  for (let i = 0; i < rounds; i++)
    for (const m of STOP_MODES) runs.push({ mode: m.mode, ...(await once(binary, ringbench, port, m.args, i === 0 ? SOAK_MS : 1000)) });
  return runs;
}

if (import.meta.main) {
  const root = `${import.meta.dir}/..`;
  console.log(JSON.stringify(await stopBench(`${root}/dist/skbtrail`, `${import.meta.dir}/build/ringbench`, Number(process.argv[2] ?? 3)), null, 1));
}
