// The command line: nettrace's flags with nettrace's meaning, plus
// skbtrail's own. Parsing only: it turns argv into Options or a usage error
// (exit 2) before anything touches the kernel.
import { parseArgs } from "citty";
import { capture_limits } from "../abi/layout.generated";
import { shown, usageError } from "../common/errors";
import type { Level } from "../diagnosis/knowledge";
import type { Filter, RttFilter } from "../bpf/config";
import { BACKENDS, type BackendChoice } from "../plan/plan";
import { args } from "./flags";
import {
  parseAddr, parseAmount, parseCount, parseDuration, parseIfname, parseLengthRange, parseList, parseListen, parseMark, parsePort, parseProto, parseTcpFlags, type Listen,
} from "./values";

export interface MonitorOptions {
  /** --aggregate: repeats are summed up over this many seconds. */
  aggregateSeconds: number;
}

export interface LatencyOptions {
  /** --latency-summary: a histogram at the end, no packets. */
  summary: boolean;
  /** --latency-free: the end hook's time counts. */
  countFree: boolean;
  /** --trace-free: where they end; undefined: the packet's free. */
  free?: string[];
}

export interface Options {
  /**
   * drop: the drop monitor; trace: packet lifecycles (default); basic: one
   * line per hook; diag: lifecycles with findings; monitor: abnormal events,
   * counted in the kernel; sock: socket events and connection summaries.
   */
  mode: "drop" | "trace" | "basic" | "diag" | "monitor" | "sock" | "latency";
  /** --latency's settings (mode "latency"). */
  latency?: LatencyOptions;
  monitor?: MonitorOptions;
  /** --tcp-rtt, --tcp-srtt/--filter-srtt, --filter-minrtt (--monitor, --sock): RTT samples at or above. */
  rttFilter: RttFilter;
  /** --rtt: a log2 table of the RTT samples, counted in the kernel, every second and at the end. */
  rttHistogram: boolean;
  /** --rtt without --sock or --rtt-detail: socket mode showing only that table (no records at all). */
  rttOnly: boolean;
  /** --sock --diag: the knowledge base's connection rules judge each connection. */
  sockDiag: boolean;
  /** --rtt-detail: socket mode showing only RTT samples, one line each. */
  rttDetail: boolean;
  /** --metrics: where to serve Prometheus metrics. */
  metrics?: Listen;
  /** --metrics-max-series: series per metric before label sets go to "other". */
  maxSeries: number;
  /** --rate-limit: printed events per second. */
  rateLimit?: number;
  /** --func-stats: calls per hook, a table every second, no events. */
  funcStats: boolean;
  filter: Filter;
  reasons: string[];
  /** -t selectors: groups, names, globs; undefined: the default set. */
  trace?: string[];
  ret: boolean;
  pktFixed: boolean;
  traceStack?: string[];
  /** --latency-show: delays between a packet's hooks and its total (lifecycle output). */
  latencyShow: boolean;
  /** --trace-matcher: hooks where a packet may start (its context, or --latency's measurement); undefined: every traced hook. */
  traceMatcher?: string[];
  /** --trace-exclude: hooks and groups taken out of the selection. */
  traceExclude?: string[];
  /** --trace-noclone: clones do not join their packet. */
  noClone: boolean;
  /** --tiny-show: shorter lines. */
  tiny: boolean;
  /** --min-latency, in ms (fractions allowed: 500us is 0.5). */
  minLatencyMs?: number;
  backend?: BackendChoice;
  /** --btf-path: the kernel's BTF from a file instead of /sys/kernel/btf/vmlinux. */
  btfPath?: string;
  diagQuiet: boolean;
  diagKeep: boolean;
  hooks: boolean;
  /** --kb: a user's rule file added to the built-in ones. */
  kb?: string;
  count?: number;
  timeout?: number;
  json: boolean;
  /** --output: events go to this file; status lines stay on the terminal. */
  output?: string;
  detail: boolean;
  date: boolean;
  dropStack: boolean;
  /** --pcap FILE: the packets' bytes as pcapng, with --snaplen bytes of each. */
  pcap?: string;
  snaplen: number;
  verbose: boolean;
  debug: boolean;
  /** skbtrail run: the command to run and the policy its drops are judged by. */
  gate?: GateOptions;
}

export interface GateOptions {
  command: string[];
  /** --allow: drop reason names, as given. */
  allow: string[];
  expect?: string;
  failOn?: Level;
  junit?: string;
  reportJson?: string;
}

export type Command =
  | { kind: "run"; options: Options }
  | { kind: "gate"; options: Options & { gate: GateOptions } }
  | { kind: "tracers"; options: Options }
  | { kind: "kb-check"; file: string }
  | { kind: "help" }
  | { kind: "version" };

const MAX_U32 = 0xffff_ffff;
/** The largest pid Linux can hand out (PID_MAX_LIMIT on 64-bit). */
const PID_MAX_LIMIT = 4_194_304;
/** A year: longer is surely a typo. */
const MAX_TIMEOUT_S = 365 * 24 * 3600;
/** --metrics-max-series when not given. */
export const DEFAULT_MAX_SERIES = 1000;
/** --aggregate when not given: repeats are summed up over 10 s. */
export const DEFAULT_AGGREGATE_S = 10;

function parseOutput(path: string, flag = "--output", example = "drops.log"): string {
  if (path === "") throw usageError(`${flag}: the file name is empty; give a file path, e.g. ${flag} ${example}`);
  return path;
}

/** Default of --snaplen: every header and the start of the payload. */
export const DEFAULT_SNAPLEN = 256;

const RUN_USAGE = "usage: skbtrail run [filters] [options] -- CMD [ARGS...]";
/** Flags of skbtrail run only. */
const RUN_ONLY = ["allow", "expect", "fail-on", "junit", "report-json"];
/** Flags that mean nothing to skbtrail run: it lasts as long as the command and reports drops. */
const NOT_IN_RUN: Record<string, string> = {
  count: "the run lasts as long as the command",
  timeout: "the run lasts as long as the command (give the command its own timeout)",
  basic: "it reports drops (add --diag for their packets' lifecycles)",
  "diag-quiet": "its report shows only drops already",
  "diag-keep": "it never stops at the first finding",
  "min-latency": "it reports drops",
  "latency-show": "it reports drops",
  latency: "it reports drops",
  "trace-exclude": "it reports drops",
  "trace-noclone": "it reports drops",
  "trace-matcher": "it reports drops",
  "tiny-show": "it reports drops",
  "trace-stack": "it reports drops",
  monitor: "it reports the drops the command caused (add --diag for their packets' lifecycles)",
  ret: "it reports drops",
};

/** Flags nettrace has whose feature skbtrail does not have yet. */
const NOT_YET: Record<string, string> = {};

/** Filters on packets that a socket does not have (--sock filters on the socket's addresses, ports, protocol, namespace, process). */
const NOT_FOR_SOCKETS = ["pkt-len", "tcp-flags", "ifname", "mark"];

/** Flags of packet tracing, meaningless for the drop monitor and --monitor. */
const TRACING_FLAGS = ["basic", "trace", "ret", "pkt-fixed", "trace-stack", "min-latency", "backend", "latency-show", "latency", "trace-exclude", "trace-noclone", "tiny-show", "trace-matcher"];
/** Flags of --latency only. */
const LATENCY_FLAGS = ["latency-summary", "latency-free", "trace-free"];
/** What --latency does not do: it writes one line per slow packet, from the kernel's measurement. */
const NOT_IN_LATENCY: Record<string, string> = {
  ret: "it measures paths, not calls",
  "latency-show": "--latency-show is for packet lifecycles (the default mode)",
  "trace-stack": "it writes one line per packet, without stacks",
  "pkt-fixed": "it measures per skb already",
  "trace-noclone": "it measures per skb: clones are never followed",
  "tiny-show": "its lines are short already",
  pcap: "it reports latencies, not packets' bytes",
  metrics: "it reports latencies",
};

type FlagInfo = { name: string; string: boolean };

function flagTable(): Map<string, FlagInfo> {
  const table = new Map<string, FlagInfo>();
  for (const [name, def] of Object.entries(args)) {
    const info = { name, string: def.type === "string" };
    table.set(`--${name}`, info);
    if ("alias" in def && def.alias) table.set(`-${def.alias}`, info);
  }
  return table;
}

/**
 * Checks every token against the known flags (citty accepts unknown ones
 * silently) and returns the flags given, in order.
 */
function scanFlags(argv: string[]): { given: Set<string> } {
  const table = flagTable();
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (!token.startsWith("-") || token === "-") throw usageError(`unexpected argument '${shown(token)}'; skbtrail takes only flags (see skbtrail --help)`);
    const [flag, inline] = token.startsWith("--") ? [token.split("=")[0]!, token.includes("=")] : [token.slice(0, 2), token.length > 2];
    const info = table.get(flag);
    if (!info) throw usageError(`unknown flag '${shown(flag)}'; see skbtrail --help for the list`);
    if (info.string && !inline) {
      const value = argv[i + 1];
      if (value === undefined || (value.startsWith("-") && value !== "-" && !/^-\d/.test(value)))
        throw usageError(`${flag} needs a value (${args[info.name as keyof typeof args].description})`);
      i++;
    } else if (!info.string && inline) {
      throw usageError(`${flag} takes no value`);
    }
    given.add(info.name);
  }
  return { given };
}

export function parseCommandLine(argv: string[]): Command {
  if (argv[0] === "kb") {
    if (argv[1] !== "check" || argv.length !== 3) throw usageError("usage: skbtrail kb check FILE (validates a rule file or an expect file and prints what it matches)");
    return { kind: "kb-check", file: argv[2]! };
  }
  if (argv[0] === "run") {
    const end = argv.indexOf("--");
    if (end < 0) throw usageError(`run: put the command after --, e.g. skbtrail run --netns-current -- ./tests.sh (${RUN_USAGE})`);
    const command = argv.slice(end + 1);
    if (!command.length || command[0] === "") throw usageError(`run: no command after --; e.g. skbtrail run -- ./tests.sh (${RUN_USAGE})`);
    const parsed = parseFlags(argv.slice(1, end), true);
    if (parsed.kind !== "run") return parsed;
    return { kind: "gate", options: { ...parsed.options, gate: { ...parsed.gate!, command } } };
  }
  const parsed = parseFlags(argv, false);
  return parsed.kind === "run" && parsed.options.trace?.length === 1 && parsed.options.trace[0] === "?" ? { kind: "tracers", options: parsed.options } : parsed;
}

type Parsed = { kind: "run"; options: Options; gate?: Omit<GateOptions, "command"> } | { kind: "help" } | { kind: "version" };

function parseFlags(argv: string[], run: boolean): Parsed {
  const { given } = scanFlags(argv);
  if (given.has("help")) return { kind: "help" };
  if (given.has("version")) return { kind: "version" };
  const a = parseArgs(argv, args) as Record<string, string | boolean | undefined>;
  const str = (name: string) => a[name] as string | undefined;

  for (const name of given) {
    const why = NOT_YET[name];
    if (why) throw usageError(why);
  }
  for (const name of given) {
    if (run && NOT_IN_RUN[name]) throw usageError(`--${name} does not apply to skbtrail run: ${NOT_IN_RUN[name]}`);
    if (!run && RUN_ONLY.includes(name)) {
      const def = args[name as keyof typeof args];
      throw usageError(`--${name} works with skbtrail run: skbtrail run --${name}${"valueHint" in def ? ` ${def.valueHint}` : ""} -- CMD`);
    }
  }
  if (given.has("snaplen") && !given.has("pcap")) throw usageError("--snaplen works with --pcap: add --pcap FILE");
  const diagFlags = ["diag", "diag-quiet", "diag-keep", "hooks", "kb"].filter((f) => given.has(f));
  if (diagFlags.length && !given.has("diag")) throw usageError(`--${diagFlags[0]} works with --diag: add --diag`);
  if (given.has("diag") && (given.has("drop") || given.has("basic"))) throw usageError(`--diag and --${given.has("drop") ? "drop" : "basic"} are different modes: use one`);
  if (given.has("monitor"))
    for (const other of ["drop", "diag"])
      if (given.has(other)) throw usageError(`--monitor and --${other} are different modes: use one (--monitor reports drops too)`);
  // --rtt alone is socket mode showing only the RTT table.
  const rttOnly = given.has("rtt") && !given.has("sock") && !given.has("rtt-detail");
  if (rttOnly) {
    if (given.has("diag")) throw usageError("--rtt alone shows only the RTT table and --diag judges whole connections: use --sock --diag --rtt");
    given.add("sock");
  }
  // nettrace's --rtt-detail is socket mode showing only RTT samples.
  if (given.has("rtt-detail")) {
    if (given.has("diag")) throw usageError("--rtt-detail shows only RTT samples and --diag judges whole connections: use --sock --diag, or drop --diag");
    given.add("sock");
  }
  if (given.has("sock")) {
    if (run) throw usageError(`--${given.has("rtt-detail") ? "rtt-detail" : rttOnly ? "rtt" : "sock"} does not apply to skbtrail run: it reports drops`);
    // -t and --backend choose --sock's function hooks; --rtt and --rtt-detail have none (RTT samples only).
    const sockHooks = !given.has("rtt-detail") && !rttOnly ? ["trace", "backend"] : [];
    for (const other of ["drop", "monitor", "basic", "metrics", "pcap", "reason", "func-stats", "rate-limit", "drop-stack", ...TRACING_FLAGS, ...NOT_FOR_SOCKETS])
      if (given.has(other) && !sockHooks.includes(other))
        throw usageError(
          given.has("rtt-detail") ? `--${other} does not apply to --rtt-detail (RTT samples of sockets): remove it`
          : rttOnly ? `--${other} does not apply to --rtt (the RTT table of sockets): remove it`
          : `--${other} does not apply to --sock (socket events and connection summaries): remove it`,
        );
    if (given.has("diag-keep")) throw usageError("--diag-keep does not apply to --sock --diag: it never stops at a finding (use -c or --timeout to stop)");
    if (given.has("hooks")) throw usageError("--hooks does not apply to --sock --diag: it lists netfilter hooks of dropped packets (use --diag without --sock)");
  }
  for (const f of LATENCY_FLAGS)
    if (given.has(f) && !given.has("latency")) throw usageError(`--${f} works with --latency: add --latency`);
  if (given.has("latency")) {
    for (const other of ["drop", "monitor", "diag", "basic"])
      if (given.has(other)) throw usageError(`--latency and --${other} are different modes: use one`);
    for (const [f, why] of Object.entries(NOT_IN_LATENCY))
      if (given.has(f)) throw usageError(`--${f} does not apply to --latency: ${why}`);
    if (given.has("latency-summary") && given.has("count")) throw usageError("--count does not apply to --latency-summary (one table at the end): use --timeout");
  }
  // skbtrail run monitors drops unless --diag asks for their lifecycles.
  const mode = given.has("sock") ? "sock" : given.has("latency") ? "latency" : given.has("monitor") ? "monitor" : given.has("drop") ? "drop" : given.has("basic") ? "basic" : given.has("diag") ? "diag" : run ? "drop" : "trace";
  if (mode === "drop" || mode === "monitor")
    for (const f of TRACING_FLAGS)
      if (given.has(f)) throw usageError(`--${f} is for tracing packets and --${mode} ${mode === "drop" ? "monitors drops" : "watches for abnormal events"}: use one mode (see skbtrail --help)`);
  if (mode !== "drop" && given.has("drop-stack")) throw usageError("--drop-stack works with --drop only; for stacks of traced hooks use --trace-stack");
  if (mode !== "drop" && mode !== "monitor" && given.has("reason")) throw usageError("--reason works with --drop and --monitor only");
  for (const f of ["tcp-rtt", "tcp-srtt"])
    if (given.has(f) && mode !== "monitor" && mode !== "sock") throw usageError(`--${f} works with --sock and --monitor only: add one of them`);
  for (const f of ["filter-srtt", "filter-minrtt", "rtt"])
    if (given.has(f) && mode !== "sock") throw usageError(`--${f} works with --sock only${f === "filter-srtt" ? " (in --monitor: --tcp-srtt)" : ""}: add --sock`);
  if (given.has("aggregate") && mode !== "monitor") throw usageError("--aggregate works with --monitor only: add --monitor");
  for (const f of ["rate-limit", "func-stats"])
    if (given.has(f) && mode !== "monitor" && mode !== "basic") throw usageError(`--${f} works with --monitor and --basic only: add one of them`);
  if (given.has("metrics-max-series") && !given.has("metrics")) throw usageError("--metrics-max-series works with --metrics: add --metrics [ADDR:]PORT");
  for (const f of ["min-latency", "latency-show"])
    if (mode === "basic" && given.has(f)) throw usageError(`--${f} needs packet lifecycles: drop --basic`);
  for (const f of ["trace-noclone", "trace-matcher"])
    if (mode === "basic" && given.has(f)) throw usageError(`--${f} needs packet lifecycles (--basic follows nothing): drop --basic, or choose hooks with -t`);

  const filter: Filter = {};
  if (str("saddr") !== undefined) filter.saddr = parseAddr("--saddr", str("saddr")!);
  if (str("daddr") !== undefined) filter.daddr = parseAddr("--daddr", str("daddr")!);
  if (str("addr") !== undefined) filter.addr = parseAddr("--addr", str("addr")!);
  if (str("sport") !== undefined) filter.sport = parsePort("--sport", str("sport")!);
  if (str("dport") !== undefined) filter.dport = parsePort("--dport", str("dport")!);
  if (str("port") !== undefined) filter.port = parsePort("--port", str("port")!);
  if (str("proto") !== undefined) filter.proto = parseProto("--proto", str("proto")!);
  if (str("netns") !== undefined) filter.netns = parseCount("--netns", str("netns")!, "4026531840", MAX_U32);
  if (a["netns-current"]) {
    if (filter.netns !== undefined) throw usageError("--netns and --netns-current conflict; give only one");
    filter.netnsCurrent = true;
  }
  if (str("pid") !== undefined) filter.pid = parseCount("--pid", str("pid")!, "1234", PID_MAX_LIMIT);
  if (str("pkt-len") !== undefined) filter.pktLen = parseLengthRange("--pkt-len", str("pkt-len")!);
  if (str("tcp-flags") !== undefined) filter.tcpFlags = parseTcpFlags("--tcp-flags", str("tcp-flags")!);
  if (str("ifname") !== undefined) filter.ifname = parseIfname("--ifname", str("ifname")!);
  if (str("mark") !== undefined) filter.mark = parseMark("--mark", str("mark")!);
  if (filter.proto?.l3 === 0x0806 && (filter.sport || filter.dport || filter.port || filter.tcpFlags))
    throw usageError("--proto arp conflicts with port and TCP flag filters: ARP has no ports");
  if (filter.tcpFlags && filter.proto?.l4 !== undefined && filter.proto.l4 !== 6)
    throw usageError(`--tcp-flags needs TCP packets but --proto is ${filter.proto.name}; use --proto tcp`);

  const backend = str("backend");
  if (backend !== undefined && !(BACKENDS as readonly string[]).includes(backend))
    throw usageError(`--backend: unknown backend '${shown(backend)}'; use one of ${BACKENDS.join(", ")}`);
  const trace = str("trace") !== undefined ? parseList("--trace", str("trace")!, "ip,tcp_v4_rcv,'nf_*'") : undefined;
  const reasons = str("reason") !== undefined ? parseList("--reason", str("reason")!, "NO_SOCKET,NETFILTER_DROP").map((r) => r.toUpperCase()) : [];
  const failOn = str("fail-on");
  if (failOn !== undefined && !["info", "warn", "error"].includes(failOn))
    throw usageError(`--fail-on: '${shown(failOn)}' is not a level; use info (every drop fails), warn (the default) or error`);
  const monitor: MonitorOptions | undefined =
    mode === "monitor"
      ? {
          aggregateSeconds: str("aggregate") !== undefined ? parseAmount("--aggregate", str("aggregate")!, "seconds", "10", 3600) : DEFAULT_AGGREGATE_S,
        }
      : undefined;
  const rttMs = (flag: string) => (str(flag) !== undefined ? parseAmount(`--${flag}`, str(flag)!, "milliseconds", "10", 60_000) : undefined);
  if (given.has("tcp-srtt") && given.has("filter-srtt")) throw usageError("--tcp-srtt and --filter-srtt are the same threshold: give one");
  const options: Options = {
      mode,
      monitor,
      rttFilter: { rttMinMs: rttMs("tcp-rtt"), srttMinMs: rttMs("tcp-srtt") ?? rttMs("filter-srtt"), minRttMinMs: rttMs("filter-minrtt") },
      rttHistogram: !!a.rtt,
      rttOnly,
      sockDiag: mode === "sock" && !!a.diag,
      rttDetail: !!a["rtt-detail"],
      metrics: str("metrics") !== undefined ? parseListen("--metrics", str("metrics")!) : undefined,
      maxSeries: str("metrics-max-series") !== undefined ? parseCount("--metrics-max-series", str("metrics-max-series")!, "1000", 100_000) : DEFAULT_MAX_SERIES,
      rateLimit: str("rate-limit") !== undefined ? parseCount("--rate-limit", str("rate-limit")!, "100", 1_000_000) : undefined,
      funcStats: !!a["func-stats"],
      filter,
      reasons,
      trace,
      ret: !!a.ret,
      pktFixed: !!a["pkt-fixed"],
      traceStack: str("trace-stack") !== undefined ? parseList("--trace-stack", str("trace-stack")!, "consume_skb,icmp_rcv") : undefined,
      latencyShow: !!a["latency-show"],
      latency:
        mode === "latency"
          ? {
              summary: !!a["latency-summary"],
              countFree: !!a["latency-free"],
              free: str("trace-free") !== undefined ? parseList("--trace-free", str("trace-free")!, "net_dev_xmit") : undefined,
            }
          : undefined,
      traceMatcher: str("trace-matcher") !== undefined ? parseList("--trace-matcher", str("trace-matcher")!, "net_dev_queue,netif_rx") : undefined,
      traceExclude: str("trace-exclude") !== undefined ? parseList("--trace-exclude", str("trace-exclude")!, "link-in,skb_copy_datagram_iovec") : undefined,
      noClone: !!a["trace-noclone"],
      tiny: !!a["tiny-show"],
      minLatencyMs: str("min-latency") !== undefined ? parseDuration("--min-latency", str("min-latency")!, "2ms", MAX_TIMEOUT_S * 1000) : undefined,
      backend: backend as BackendChoice | undefined,
      btfPath: str("btf-path"),
      diagQuiet: !!a["diag-quiet"],
      diagKeep: !!a["diag-keep"],
      hooks: !!a.hooks,
      kb: str("kb"),
      count: str("count") !== undefined ? parseCount("--count", str("count")!, "100") : undefined,
      timeout: str("timeout") !== undefined ? parseAmount("--timeout", str("timeout")!, "seconds", "30", MAX_TIMEOUT_S) : undefined,
      json: !!a.json,
      output: str("output") !== undefined ? parseOutput(str("output")!) : undefined,
      detail: !!a.detail,
      date: !!a.date,
      dropStack: !!a["drop-stack"],
      pcap: str("pcap") !== undefined ? parseOutput(str("pcap")!, "--pcap", "drops.pcapng") : undefined,
      snaplen: str("snaplen") !== undefined ? parseCount("--snaplen", str("snaplen")!, String(DEFAULT_SNAPLEN), capture_limits.CAPTURE_MAX) : DEFAULT_SNAPLEN,
      verbose: !!a.verbose,
      debug: !!a.debug,
  };
  if (!run) return { kind: "run", options };
  return {
    kind: "run",
    options,
    gate: {
      allow: str("allow") !== undefined ? parseList("--allow", str("allow")!, "NO_SOCKET,SOCKET_FILTER") : [],
      expect: str("expect") !== undefined ? parseOutput(str("expect")!, "--expect", "expected-drops.yaml") : undefined,
      failOn: failOn as Level | undefined,
      junit: str("junit") !== undefined ? parseOutput(str("junit")!, "--junit", "drops.xml") : undefined,
      reportJson: str("report-json") !== undefined ? parseOutput(str("report-json")!, "--report-json", "drops.json") : undefined,
    },
  };
}

