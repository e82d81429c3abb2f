// --metrics: Prometheus metrics over HTTP (Bun's server) on /metrics, in any
// mode. Started before anything is attached, so a port that is taken is one
// line and nothing traced. The families come from the running mode (its
// kernel counters) and from here: the session's record counts, the build,
// and the process (the names Prometheus' own client libraries use).
import { readdirSync, readFileSync } from "node:fs";
import type { Server } from "bun";
import { fileLimit } from "../../ffi/libc";
import { libbpfVersion } from "../../ffi/libbpf";
import type { Session } from "../bpf/session";
import type { Listen } from "../cli/values";
import { shown, usageError } from "../common/errors";
import { VERSION } from "../common/version";
import { exposition, type Family } from "../output/metrics";

const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricsSource = () => Family[];

export class MetricsServer {
  private server?: Server<undefined>;
  private session?: Session;
  private source?: MetricsSource;
  private readonly startSeconds = Date.now() / 1000 - process.uptime();
  /** Scrapes served (for -v and tests). */
  scrapes = 0;

  private constructor(readonly listen: Listen) {}

  /** Listens now; a taken port or an address not on this machine is one line (exit 2). */
  static start(listen: Listen): MetricsServer {
    const m = new MetricsServer(listen);
    try {
      m.server = Bun.serve({
        hostname: listen.host,
        port: listen.port,
        // A scrape that fails must not take the tool down: say why in the response.
        error: (e) => new Response(`skbtrail: ${String(e.message)}\n`, { status: 500 }),
        fetch: (req) => m.handle(req),
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const where = `${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${listen.port}`;
      if (code === "EADDRINUSE") throw usageError(`--metrics: ${where} is already in use (another skbtrail or exporter?); choose another port, e.g. --metrics ${listen.port + 1}`);
      if (code === "EADDRNOTAVAIL") throw usageError(`--metrics: ${shown(listen.host)} is not an address of this machine; use e.g. --metrics :${listen.port} (every address)`);
      if (code === "EACCES") throw usageError(`--metrics: not allowed to listen on ${where}; choose a port above 1023`);
      throw usageError(`--metrics: cannot listen on ${where} (${code ?? (e as Error).message})`);
    }
    return m;
  }

  /** The URL it answers on. */
  get url(): string {
    const host = this.listen.host === "0.0.0.0" ? "127.0.0.1" : this.listen.host.includes(":") ? `[${this.listen.host}]` : this.listen.host;
    return `http://${host}:${this.server?.port ?? this.listen.port}/metrics`;
  }

  /** The running session (its record and loss counters), from load until close. */
  useSession(session: Session | undefined): void {
    this.session = session;
  }

  /** The mode's own families (kernel counters), until it stops. */
  useSource(source: MetricsSource | undefined): void {
    this.source = source;
  }

  stop(): void {
    this.server?.stop(true);
    this.server = undefined;
  }

  private handle(req: Request): Response {
    const path = new URL(req.url).pathname;
    if (path === "/") return new Response(`skbtrail ${VERSION}: metrics at /metrics\n`, { headers: { "content-type": "text/plain" } });
    if (path !== "/metrics") return new Response("not found: try /metrics\n", { status: 404 });
    this.scrapes++;
    return new Response(exposition(this.families()), { headers: { "content-type": CONTENT_TYPE } });
  }

  families(): Family[] {
    return [...(this.source?.() ?? []), ...this.sessionFamilies(), ...buildFamilies(), ...this.processFamilies()];
  }

  private sessionFamilies(): Family[] {
    const stats = this.session?.stats();
    const counter = (name: string, help: string, value: number | undefined): Family => ({
      name, help, type: "counter", labelNames: [], samples: value === undefined ? [] : [{ labels: [], value }],
    });
    return [
      counter("skbtrail_events_total", "Records the kernel programs wrote to the ring buffer.", stats?.events),
      counter("skbtrail_events_lost_total", "Records lost because the ring buffer was full (the reader fell behind).", stats?.lost),
      counter("skbtrail_events_filtered_total", "Events the kernel programs saw and a filter rejected.", stats?.filtered),
      counter("skbtrail_events_rate_limited_total", "Records not written because --rate-limit was reached.", stats?.rateLimited),
    ];
  }

  private processFamilies(): Family[] {
    const g = (name: string, help: string, type: "gauge" | "counter", value: number): Family => ({ name, help, type, labelNames: [], samples: [{ labels: [], value }] });
    const cpu = process.cpuUsage();
    const out = [
      g("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", (cpu.user + cpu.system) / 1e6),
      g("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", process.memoryUsage.rss()),
      g("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", Math.round(this.startSeconds)),
      g("process_max_fds", "Maximum number of open file descriptors.", "gauge", fileLimit()[0]),
    ];
    try {
      out.push(g("process_open_fds", "Number of open file descriptors.", "gauge", readdirSync("/proc/self/fd").length));
      const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
      out.push(g("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", Number(fields[20])));
    } catch {
      // /proc unreadable: those two are left out
    }
    return out;
  }
}

let buildInfo: Family[] | undefined;

function buildFamilies(): Family[] {
  if (!buildInfo) {
    let kernel = "";
    try {
      kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    } catch {
      // unknown
    }
    buildInfo = [
      {
        name: "skbtrail_build_info",
        help: "skbtrail's version, the kernel it runs on and the libbpf it uses; always 1.",
        type: "gauge",
        labelNames: ["version", "kernel", "libbpf"],
        samples: [{ labels: [VERSION, kernel, libbpfVersion()], value: 1 }],
      },
    ];
  }
  return buildInfo;
}
