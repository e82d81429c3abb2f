// Drop monitor cost: loopback UDP to a closed port (every datagram is
// dropped with NO_SOCKET, so every one is a skb:kfree_skb event) sent as fast
// as one `ringbench flood` process can, untraced and with dist/skbtrail
// attached, same duration, configurations alternated round by round.
//
//   sudo bun bench/drop.ts [SECONDS] [ROUNDS]
//
// skbtrail's output goes to a file in /dev/shm (RAM), so the figure is
// skbtrail's own cost, not a terminal's; the summary at its end gives the
// events and the lost count. skbtrail's CPU time during the flood comes from
// /proc/PID/stat.
import { existsSync, readFileSync, rmSync, openSync, readSync, closeSync, fstatSync } from "node:fs";
import { tmpdir } from "node:os";

export const FLOOD_ADDR = "127.0.0.1";

export interface DropConfig {
  name: string;
  /** skbtrail arguments; undefined: untraced. */
  args?: string[];
}

export const DROP_CONFIGS: DropConfig[] = [
  { name: "untraced" },
  { name: "--drop", args: ["--drop"] },
  { name: "--drop --json", args: ["--drop", "--json"] },
  { name: "--drop -p tcp (matches nothing)", args: ["--drop", "-p", "tcp"] },
];

export interface DropRun {
  config: string;
  pps: number;
  packets: number;
  /** From skbtrail's summary; undefined when untraced. */
  events?: number;
  lost?: number;
  filtered?: number;
  /** skbtrail's CPU time during the flood, per packet sent. */
  skbtrailCpuNsPerPacket?: number;
  outputBytes?: number;
}

/** A UDP port on 127.0.0.1 nobody listens on (binding it works), so datagrams to it are dropped. */
export async function closedPort(): Promise<number> {
  for (const port of [9, 7, 19, 37, 9997]) {
    try {
      const s = await Bun.udpSocket({ hostname: FLOOD_ADDR, port });
      s.close();
      return port;
    } catch {
      // in use: try another
    }
  }
  throw new Error("no closed UDP port found on 127.0.0.1");
}

export async function flood(ringbench: string, port: number, seconds: number): Promise<{ packets: number; seconds: number }> {
  const p = Bun.spawn([ringbench, "flood", FLOOD_ADDR, String(port), String(seconds)], { stdout: "pipe", stderr: "inherit" });
  const text = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error("ringbench flood failed");
  return JSON.parse(text) as { packets: number; seconds: number };
}

export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100)
}

function tail(path: string, bytes: number): string {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(bytes, size));
    readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** What skbtrail's summary says at exit. */
export interface SkbtrailSummary {
  events: number;
  lost: number;
  filtered: number;
  /** Records still in the ring at the stop, dropped unread. */
  unread: number;
}

function parseSummary(text: string, json: boolean): SkbtrailSummary {
  if (json) {
    const line = text.trimEnd().split("\n").pop()!;
    const s = JSON.parse(line) as { kind: string } & SkbtrailSummary;
    if (s.kind !== "summary") throw new Error(`skbtrail's last line is not the summary: ${line}`);
    return s;
  }
  const m = /total events: (\d+), lost: (\d+).*?, filtered in kernel: (\d+)/.exec(text);
  if (!m) throw new Error(`no summary in skbtrail's output: ${text.slice(-300)}`);
  const unread = /(\d+) events were still queued when tracing stopped/.exec(text);
  return { events: Number(m[1]), lost: Number(m[2]), filtered: Number(m[3]), unread: Number(unread?.[1] ?? 0) };
}

export interface TracedWork<T> {
  /** What `work` returned. */
  result: T;
  summary: SkbtrailSummary;
  /** skbtrail's CPU time while `work` ran. */
  cpuSeconds: number;
  outputBytes: number;
}

/**
 * Starts `binary args` (stdout to a file in /dev/shm), waits for "begin trace...",
 * runs `work`, stops skbtrail with SIGINT and reads its summary.
 */
export async function underSkbtrail<T>(binary: string, args: string[], work: () => Promise<T>): Promise<TracedWork<T>> {
  const dir = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const out = `${dir}/skbtrail-bench-${process.pid}.out`;
  rmSync(out, { force: true });
  const json = args.includes("--json");
  const proc = Bun.spawn([binary, ...args], { stdin: "ignore", stdout: Bun.file(out), stderr: "pipe" });
  let stderr = "";
  void (async () => {
    for await (const chunk of proc.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  try {
    // "begin trace..." goes to stdout (the file), or to stderr with --json.
    const deadline = performance.now() + 15_000;
    while (!(json ? stderr : existsSync(out) ? tail(out, 4096) : "").includes("begin trace...")) {
      if (proc.exitCode !== null) throw new Error(`skbtrail exited before tracing: ${stderr.trim()}`);
      if (performance.now() > deadline) throw new Error("skbtrail did not start within 15 s");
      await Bun.sleep(5);
    }
    const cpu0 = cpuSeconds(proc.pid);
    const result = await work();
    const cpu = cpuSeconds(proc.pid) - cpu0;
    proc.kill("SIGINT");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await proc.exited;
    clearTimeout(timer);
    return { result, summary: parseSummary(tail(out, 4096), json), cpuSeconds: cpu, outputBytes: Bun.file(out).size };
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    await proc.exited;
    rmSync(out, { force: true });
  }
}

/** A flood under skbtrail (underSkbtrail). */
async function traced(binary: string, ringbench: string, port: number, seconds: number, config: DropConfig): Promise<DropRun> {
  const { result: sent, summary, cpuSeconds: cpu, outputBytes } = await underSkbtrail(binary, config.args!, () => flood(ringbench, port, seconds));
  return {
    config: config.name,
    pps: sent.packets / sent.seconds,
    packets: sent.packets,
    events: summary.events,
    lost: summary.lost,
    filtered: summary.filtered,
    skbtrailCpuNsPerPacket: (cpu * 1e9) / sent.packets,
    outputBytes,
  };
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
export const int = (x: number) => Math.round(x).toLocaleString("en-US");

/**
 * The Markdown table of a flood bench, one row per configuration:
 * packets/s (median and range), the ratio to untraced (✓/✗ against
 * `target` when given), events and losses per round, skbtrail's CPU per packet.
 */
export function floodTable(title: string, runs: DropRun[], configs: DropConfig[], target?: number): string {
  return [
    `### ${title}`,
    "",
    `| configuration | packets/s, median (range) | vs untraced${target === undefined ? "" : ` (target ≥ ${target}×)`} | events reported, per round | lost, per round | skbtrail CPU per packet |`,
    "|---|---|---|---|---|---|",
    ...floodRows(runs, configs, target),
    "",
  ].join("\n");
}

function floodRows(runs: DropRun[], configs: DropConfig[], target?: number): string[] {
  const untraced = median(runs.filter((r) => r.config === "untraced").map((r) => r.pps));
  return configs.map((c) => {
    const rs = runs.filter((r) => r.config === c.name);
    const pps = median(rs.map((r) => r.pps));
    const ratio = pps / untraced;
    const mark = target === undefined ? "" : ratio >= target ? " ✓" : " ✗";
    const perRound = (f: (r: DropRun) => number | undefined) => rs.map((r) => int(f(r) ?? 0)).join(" / ");
    const traced = c.args
      ? `${ratio.toFixed(2)}×${mark} | ${perRound((r) => r.events)} | ${perRound((r) => r.lost)} | ${median(rs.map((r) => r.skbtrailCpuNsPerPacket ?? 0)).toFixed(0)} ns`
      : "1× | – | – | –";
    return `| \`${c.name}\` | ${int(pps)} (${int(Math.min(...rs.map((r) => r.pps)))}–${int(Math.max(...rs.map((r) => r.pps)))}) | ${traced} |`;
  });
}

/** `rounds` rounds; each runs every configuration once, in order. */
export async function dropBench(binary: string, ringbench: string, seconds: number, rounds: number, configs = DROP_CONFIGS): Promise<DropRun[]> {
  const port = await closedPort();
  const runs: DropRun[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const c of configs) {
      if (!c.args) {
        const sent = await flood(ringbench, port, seconds);
        runs.push({ config: c.name, pps: sent.packets / sent.seconds, packets: sent.packets });
      } else runs.push(await traced(binary, ringbench, port, seconds, c));
    }
  }
  return runs;
}

if (import.meta.main) {
  const root = `${import.meta.dir}/..`;
  const runs = await dropBench(process.env.SKBTRAIL_BIN ?? `${root}/dist/skbtrail`, `${import.meta.dir}/build/ringbench`, Number(process.argv[2] ?? 2), Number(process.argv[3] ?? 1));
  for (const r of runs) console.log(JSON.stringify(r));
}
