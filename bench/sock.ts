// Socket-mode and stack-latency cost on TCP (issue 12): a loopback bulk
// transfer (`ringbench tcpbulk`: one connection, 64 KiB writes flat out) and
// many short connections (`ringbench tcpconn`: connect, 16 bytes each way,
// close, one after the other), untraced and with dist/skbtrail attached,
// configurations alternated round by round (bench/drop.ts's method and its
// underSkbtrail: output to /dev/shm, SIGINT right after the traffic, the
// summary's events / lost / unread, CPU time from /proc/PID/stat).
//
//   sudo bun bench/sock.ts [SECONDS] [ROUNDS]
//
// Every run's traffic goes over the loopback of a network namespace made for
// that run and removed after it: each run starts with no TIME_WAIT socket
// left by the previous one (tcpconn makes tens of thousands a run), and gets
// the whole port range (see tcpconn in bench/ringbench.c). skbtrail runs in
// the host namespace and, with no --netns filter, sees every namespace. The
// traffic's two ends share CPU 0; skbtrail (not pinned) has CPU 1 to itself.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { int, median, underSkbtrail } from "./drop";

/** The bench traffic's port, and one nobody uses (a filter that matches nothing); below the
 * ephemeral range and apart from the kernel tests' ports, so no other traffic matches. */
const PORT = 24801;
const OTHER = 24802;

export interface SockConfig {
  name: string;
  /** skbtrail arguments; undefined: untraced. */
  args?: string[];
}

export const SOCK_CONFIGS: SockConfig[] = [
  { name: "untraced" },
  { name: `--sock -p tcp --port ${PORT} (every connection)`, args: ["--sock", "-p", "tcp", "--port", String(PORT)] },
  { name: `--sock -p tcp --port ${OTHER} (matches nothing)`, args: ["--sock", "-p", "tcp", "--port", String(OTHER)] },
  { name: `--rtt -p tcp --port ${PORT} (kernel histogram only)`, args: ["--rtt", "-p", "tcp", "--port", String(PORT)] },
  // --port too: other TCP traffic on the machine (VMs, tests) stays out of the events.
  { name: `--latency --min-latency 1s -p tcp --port ${PORT} (no packet that slow)`, args: ["--latency", "--min-latency", "1s", "-p", "tcp", "--port", String(PORT)] },
  { name: `--latency --latency-summary -p tcp --port ${PORT}`, args: ["--latency", "--latency-summary", "-p", "tcp", "--port", String(PORT)] },
];

interface Traffic {
  mode: "tcpbulk" | "tcpconn";
  title: string;
  /** The rate's column heading and the unit skbtrail's CPU time is divided by. */
  rate: string;
  unit: string;
  /** Units done, from ringbench's JSON line (checked for consistency). */
  amount(r: Record<string, number>): number;
}

const TRAFFICS: Traffic[] = [
  {
    mode: "tcpbulk",
    title: "TCP bulk transfer: one loopback connection, 64 KiB writes flat out",
    rate: "MB/s",
    unit: "MB",
    amount: (r) => {
      if (r.bytes !== r.received) throw new Error(`tcpbulk: ${r.bytes} bytes written, ${r.received} received`);
      return r.bytes! / 1e6;
    },
  },
  {
    mode: "tcpconn",
    title: "Short TCP connections: connect, 16 bytes each way, close, one at a time",
    rate: "connections/s",
    unit: "connection",
    amount: (r) => {
      if (r.connections !== r.answered) throw new Error(`tcpconn: ${r.connections} connections, ${r.answered} answered`);
      return r.connections!;
    },
  },
];

export interface SockRun {
  traffic: Traffic["mode"];
  config: string;
  /** Units (MB, connections) per second. */
  rate: number;
  amount: number;
  /** From skbtrail's summary; undefined when untraced. */
  events?: number;
  lost?: number;
  unread?: number;
  /** skbtrail's CPU time during the traffic, per unit. */
  skbtrailCpuUsPerUnit?: number;
}

const NETNS = `skbtrail-bench-${process.pid}`;

/** Set on SIGINT / SIGTERM (interrupt): no further run starts. */
let interrupted = false;

/**
 * Stops the bench: SIGINT to this process's children (the traffic, skbtrail), so the run in
 * progress fails and its finally blocks remove the namespace and skbtrail's output file.
 */
function interrupt(): void {
  interrupted = true;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const ppid = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1];
      if (ppid === String(process.pid)) process.kill(Number(pid), "SIGINT");
    } catch {
      // gone meanwhile
    }
  }
}

const ip = (...args: string[]) => {
  const p = Bun.spawnSync(["ip", ...args], { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${p.stderr.toString().trim()}`);
};

/** Runs `fn` with a new namespace NETNS (loopback up, sysctls for tcpconn), removed afterwards. */
async function inNetns<T>(fn: () => Promise<T>): Promise<T> {
  ip("netns", "add", NETNS);
  try {
    ip("-n", NETNS, "link", "set", "lo", "up");
    // tcpconn: twice the default client ports before a port comes round again, but never
    // PORT or OTHER (a client on OTHER would match the filter meant to match nothing), and
    // room for every TIME_WAIT socket of a long run (the default 131,072 is ~5 s of it;
    // past that the kernel closes without TIME_WAIT, another path).
    ip("netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535", `net.ipv4.ip_local_reserved_ports=${PORT},${OTHER}`, "net.ipv4.tcp_max_tw_buckets=1000000");
    return await fn();
  } finally {
    ip("netns", "del", NETNS);
  }
}

async function traffic(ringbench: string, t: Traffic, seconds: number): Promise<{ amount: number; seconds: number }> {
  // Both ends on CPU 0, skbtrail free to use CPU 1 (drop.ts's set-up: the kernel's time per
  // packet, BPF included, lands on the traffic's rate). Unpinned, the scheduler put the two
  // threads on one CPU or on both from run to run, and short connections went 14-19 k/s.
  const p = Bun.spawn(["ip", "netns", "exec", NETNS, ringbench, t.mode, "127.0.0.1", String(PORT), String(seconds)], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, RINGBENCH_CPU: "0" },
  });
  const text = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`ringbench ${t.mode} failed`);
  const r = JSON.parse(text) as Record<string, number>;
  return { amount: t.amount(r), seconds: r.seconds! };
}

/** `rounds` rounds; each runs every traffic under every configuration once, in order. */
export async function sockBench(binary: string, ringbench: string, seconds: number, rounds: number, configs = SOCK_CONFIGS): Promise<SockRun[]> {
  const runs: SockRun[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const t of TRAFFICS) {
      for (const c of configs) {
        if (interrupted) throw new Error("interrupted");
        runs.push(
          await inNetns(async () => {
            const base = { traffic: t.mode, config: c.name };
            if (!c.args) {
              const done = await traffic(ringbench, t, seconds);
              return { ...base, rate: done.amount / done.seconds, amount: done.amount };
            }
            // --timeout: a tracer left behind (the bench killed with SIGKILL) stops by itself.
            const args = [...c.args, "--timeout", String(seconds + 60)];
            const { result: done, summary, cpuSeconds } = await underSkbtrail(binary, args, () => traffic(ringbench, t, seconds));
            return {
              ...base,
              rate: done.amount / done.seconds,
              amount: done.amount,
              events: summary.events,
              lost: summary.lost,
              unread: summary.unread,
              skbtrailCpuUsPerUnit: (cpuSeconds * 1e6) / done.amount,
            };
          }),
        );
      }
    }
  }
  return runs;
}

/** The Markdown tables of a run, one per traffic, one row per configuration. */
export function sockTables(runs: SockRun[], seconds: number, rounds: number, configs = SOCK_CONFIGS): string {
  return TRAFFICS.map((t) => {
    const mine = runs.filter((r) => r.traffic === t.mode);
    const untraced = median(mine.filter((r) => r.config === "untraced").map((r) => r.rate));
    const rows = configs.map((c) => {
      const rs = mine.filter((r) => r.config === c.name);
      const rate = median(rs.map((r) => r.rate));
      const perRound = (f: (r: SockRun) => number | undefined) => rs.map((r) => int(f(r) ?? 0)).join(" / ");
      const range = `${int(rate)} (${int(Math.min(...rs.map((r) => r.rate)))}–${int(Math.max(...rs.map((r) => r.rate)))})`;
      const traced = c.args
        ? `${(rate / untraced).toFixed(2)}× | ${perRound((r) => r.events)} | ${perRound((r) => r.lost)} | ${perRound((r) => r.unread)} | ${median(rs.map((r) => r.skbtrailCpuUsPerUnit ?? 0)).toFixed(1)} µs`
        : "1× | – | – | – | –";
      return `| \`${c.name}\` | ${range} | ${traced} |`;
    });
    return [
      `### ${t.title} (${rounds} rounds × ${seconds} s, configurations alternated)`,
      "",
      `| configuration | ${t.rate}, median (range) | vs untraced | events reported, per round | lost, per round | unread at the stop, per round | skbtrail CPU per ${t.unit} |`,
      "|---|---|---|---|---|---|---|",
      ...rows,
      "",
    ].join("\n");
  }).join("\n");
}

if (import.meta.main) {
  const root = `${import.meta.dir}/..`;
  const build = `${import.meta.dir}/build`;
  const ringbench = `${build}/ringbench`;
  const source = `${import.meta.dir}/ringbench.c`;
  // Rebuilt when older than its source: an older one lacks tcpbulk / tcpconn.
  if (!existsSync(ringbench) || statSync(ringbench).mtimeMs < statSync(source).mtimeMs) {
    mkdirSync(build, { recursive: true });
    await Bun.$`cc -O2 -Wall -Wextra -o ${ringbench} ${source} -lbpf`;
  }
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  const [seconds, rounds] = [Number(process.argv[2] ?? 2), Number(process.argv[3] ?? 3)];
  const runs = await sockBench(process.env.SKBTRAIL_BIN ?? `${root}/dist/skbtrail`, ringbench, seconds, rounds);
  console.log(sockTables(runs, seconds, rounds));
}
