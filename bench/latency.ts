// Stack-latency mode cost (--latency, --latency-summary): the drop bench's
// traffic (loopback UDP to a closed port, one sender flat out, untraced and
// traced alternated round by round, bench/drop.ts), with every packet
// measured in the kernel. The question it answers: can --latency run on busy
// traffic? Under a threshold no packet reaches user space (events 0); the
// summary counts every packet in a kernel histogram; with no threshold
// every packet is a record, the worst case.
//
//   sudo bun bench/latency.ts [SECONDS] [ROUNDS]
import { dropBench, floodTable, type DropConfig, type DropRun } from "./drop";

export const LATENCY_CONFIGS: DropConfig[] = [
  { name: "untraced" },
  { name: "--latency --min-latency 1s (no packet that slow)", args: ["--latency", "--min-latency", "1s", "-p", "udp"] },
  { name: "--latency --latency-summary", args: ["--latency", "--latency-summary", "-p", "udp"] },
  { name: "--latency (no threshold: every packet a record)", args: ["--latency", "-p", "udp"] },
];

/** The Markdown table of a run (bench/drop.ts floodTable). */
export function latencyTable(runs: DropRun[], seconds: number, rounds: number): string {
  return floodTable(`Stack latency: loopback UDP to a closed port, one sender flat out (${rounds} rounds × ${seconds} s, configurations alternated)`, runs, LATENCY_CONFIGS);
}

if (import.meta.main) {
  const root = `${import.meta.dir}/..`;
  const [seconds, rounds] = [Number(process.argv[2] ?? 2), Number(process.argv[3] ?? 3)];
  const runs = await dropBench(process.env.SKBTRAIL_BIN ?? `${root}/dist/skbtrail`, `${import.meta.dir}/build/ringbench`, seconds, rounds, LATENCY_CONFIGS);
  console.log(latencyTable(runs, seconds, rounds));
}
