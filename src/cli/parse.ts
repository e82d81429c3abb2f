// The command line: nettrace's flags with nettrace's meaning, plus
// skbtrail's own. Parsing only: it turns argv into Options or a usage error
// (exit 2) before anything touches the kernel.
import { defineCommand, parseArgs, renderUsage, type ArgsDef } from "citty";
import { usageError } from "../common/errors";
import {
  parseAddr, parseCount, parseIfname, parseLengthRange, parseList, parseMark, parsePort, parseProto,
  parseAmount, parseTcpFlags, type AddrFilter,
} from "./values";
import { VERSION } from "../common/version";
import { BACKENDS, type BackendChoice } from "../plan/plan";

export interface Filter {
  saddr?: AddrFilter;
  daddr?: AddrFilter;
  addr?: AddrFilter;
  sport?: number;
  dport?: number;
  port?: number;
  proto?: { name: string; l3?: number; l4?: number };
  netns?: number;
  netnsCurrent?: boolean;
  pid?: number;
  pktLen?: [number, number];
  tcpFlags?: number;
  ifname?: string;
  mark?: { value: number; mask: number };
}

export interface Options {
  /** drop: the drop monitor; trace: packet lifecycles (default); basic: one line per hook; diag: lifecycles with findings. */
  mode: "drop" | "trace" | "basic" | "diag";
  filter: Filter;
  reasons: string[];
  /** -t selectors: groups, names, globs; undefined: the default set. */
  trace?: string[];
  ret: boolean;
  pktFixed: boolean;
  traceStack?: string[];
  minLatencyMs?: number;
  backend?: BackendChoice;
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
  verbose: boolean;
  debug: boolean;
}

export type Command =
  | { kind: "run"; options: Options }
  | { kind: "tracers"; options: Options }
  | { kind: "kb-check"; file: string }
  | { kind: "help" }
  | { kind: "version" };

const s = (description: string, alias?: string, valueHint?: string) =>
  ({ type: "string", description, ...(alias ? { alias } : {}), ...(valueHint ? { valueHint } : {}) }) as const;
const b = (description: string, alias?: string) => ({ type: "boolean", description, ...(alias ? { alias } : {}) }) as const;

export const args = {
  saddr: s("filter source ip/ipv6 address (CIDR allowed)", "s", "ADDR"),
  daddr: s("filter dest ip/ipv6 address (CIDR allowed)", "d", "ADDR"),
  addr: s("filter source or dest ip/ipv6 address", undefined, "ADDR"),
  sport: s("filter source TCP/UDP port", "S", "PORT"),
  dport: s("filter dest TCP/UDP port", "D", "PORT"),
  port: s("filter source or dest TCP/UDP port", "P", "PORT"),
  proto: s("filter L3/L4 protocol, such as 'tcp', 'arp', 'ipv6'", "p", "PROTO"),
  netns: s("filter by net namespace inode (ls -l /proc/PID/ns/net)", undefined, "INODE"),
  "netns-current": b("filter by the current net namespace"),
  pid: s("filter by the current process id", undefined, "PID"),
  "pkt-len": s("filter by IP packet length (header included), N or N-M bytes", undefined, "LEN"),
  "tcp-flags": s("filter TCP packets having all these flags, from SAPRFU", undefined, "FLAGS"),
  ifname: s("filter by network interface name", "i", "IFNAME"),
  mark: s("filter by skb mark, VALUE[/MASK]", undefined, "MARK"),
  reason: s("--drop: keep only these drop reasons, e.g. NO_SOCKET,NETFILTER_DROP", undefined, "NAMES"),
  "min-latency": s("filter by the minimal time to live of the skb in ms", undefined, "MS"),
  "tcp-rtt": s("filter by the minimal rtt in ms (sock/monitor modes)", undefined, "MS"),
  "tcp-srtt": s("filter by the minimal srtt in ms (sock/monitor modes)", undefined, "MS"),

  trace: s("enable trace groups or functions, e.g. ip,tcp_v4_rcv ('?' lists them)", "t", "LIST"),
  ret: b("show function return values"),
  detail: b("show extra packet info: cpu, interface, pid/comm, netns"),
  date: b("print wall-clock timestamps instead of seconds since boot"),
  count: s("exit after COUNT events (packets in lifecycle mode)", "c", "COUNT"),
  timeout: s("exit after SECONDS", undefined, "SECONDS"),
  json: b("print one JSON object per line (schema in the README)"),
  output: s("write events to FILE instead of standard output", undefined, "FILE"),
  basic: b("'basic' trace mode: one line per hook, no per-packet grouping"),
  diag: b("enable 'diagnose' mode"),
  "diag-quiet": b("only print abnormal packets"),
  "diag-keep": b("don't quit when an abnormal packet is found"),
  hooks: b("print netfilter hooks if dropping by netfilter"),
  drop: b("skb drop monitor mode"),
  "drop-stack": b("print the kernel call stack of each drop"),
  sock: b("enable 'sock' mode"),
  monitor: b("enable 'monitor' mode"),
  "pkt-fixed": b("the packet is not NATed: don't follow it by skb address"),
  "trace-stack": s("print call stacks for these traces", undefined, "LIST"),
  backend: s(`force how functions are hooked: ${BACKENDS.join(", ")}`, undefined, "NAME"),
  kb: s("--diag: add the rules of this YAML file to the built-in ones", undefined, "FILE"),
  verbose: b("show log information", "v"),
  debug: b("show debug information (libbpf and verifier logs)"),
  help: b("show help information", "h"),
  version: b("show skbtrail version", "V"),
} satisfies ArgsDef;

export const command = defineCommand({
  meta: {
    name: "skbtrail",
    version: VERSION,
    description: "trace sk_buffs through the Linux network stack; say where and why packets are dropped",
  },
  args,
});

/** Flags nettrace has whose feature skbtrail does not have yet. */
const NOT_YET: Record<string, string> = {
  sock: "--sock mode is not supported by skbtrail",
  monitor: "--monitor mode is not supported by skbtrail yet; use --drop",
  "tcp-rtt": "--tcp-rtt belongs to sock/monitor modes, which skbtrail does not support",
  "tcp-srtt": "--tcp-srtt belongs to sock/monitor modes, which skbtrail does not support",
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
    if (!token.startsWith("-") || token === "-") throw usageError(`unexpected argument '${token}'; skbtrail takes only flags (see skbtrail --help)`);
    const [flag, inline] = token.startsWith("--") ? [token.split("=")[0]!, token.includes("=")] : [token.slice(0, 2), token.length > 2];
    const info = table.get(flag);
    if (!info) throw usageError(`unknown flag '${flag}'; see skbtrail --help for the list`);
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
    if (argv[1] !== "check" || argv.length !== 3) throw usageError("usage: skbtrail kb check FILE (validates a rule file and prints what it matches)");
    return { kind: "kb-check", file: argv[2]! };
  }
  const { given } = scanFlags(argv);
  if (given.has("help")) return { kind: "help" };
  if (given.has("version")) return { kind: "version" };
  const a = parseArgs(argv, args) as Record<string, string | boolean | undefined>;
  const str = (name: string) => a[name] as string | undefined;

  for (const name of given) {
    const why = NOT_YET[name];
    if (why) throw usageError(why);
  }
  const diagFlags = ["diag", "diag-quiet", "diag-keep", "hooks", "kb"].filter((f) => given.has(f));
  if (diagFlags.length && !given.has("diag")) throw usageError(`--${diagFlags[0]} works with --diag: add --diag`);
  if (given.has("diag") && (given.has("drop") || given.has("basic"))) throw usageError(`--diag and --${given.has("drop") ? "drop" : "basic"} are different modes: use one`);
  const mode = given.has("drop") ? "drop" : given.has("basic") ? "basic" : given.has("diag") ? "diag" : "trace";
  if (mode === "drop")
    for (const f of ["basic", "trace", "ret", "pkt-fixed", "trace-stack", "min-latency", "backend"])
      if (given.has(f)) throw usageError(`--${f} is for tracing packets and --drop monitors drops: use one mode (see skbtrail --help)`);
  if (mode !== "drop")
    for (const f of ["drop-stack", "reason"])
      if (given.has(f)) throw usageError(`--${f} works with --drop only; for stacks of traced hooks use --trace-stack`);
  if (mode === "basic" && given.has("min-latency")) throw usageError("--min-latency needs packet lifecycles: drop --basic");

  const filter: Filter = {};
  if (str("saddr") !== undefined) filter.saddr = parseAddr("--saddr", str("saddr")!);
  if (str("daddr") !== undefined) filter.daddr = parseAddr("--daddr", str("daddr")!);
  if (str("addr") !== undefined) filter.addr = parseAddr("--addr", str("addr")!);
  if (str("sport") !== undefined) filter.sport = parsePort("--sport", str("sport")!);
  if (str("dport") !== undefined) filter.dport = parsePort("--dport", str("dport")!);
  if (str("port") !== undefined) filter.port = parsePort("--port", str("port")!);
  if (str("proto") !== undefined) filter.proto = parseProto("--proto", str("proto")!);
  if (str("netns") !== undefined) filter.netns = parseCount("--netns", str("netns")!, "4026531840");
  if (a["netns-current"]) {
    if (filter.netns !== undefined) throw usageError("--netns and --netns-current conflict; give only one");
    filter.netnsCurrent = true;
  }
  if (str("pid") !== undefined) filter.pid = parseCount("--pid", str("pid")!, "1234");
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
    throw usageError(`--backend: unknown backend '${backend}'; use one of ${BACKENDS.join(", ")}`);
  const trace = str("trace") !== undefined ? parseList("--trace", str("trace")!, "ip,tcp_v4_rcv,'nf_*'") : undefined;
  const reasons = str("reason") !== undefined ? parseList("--reason", str("reason")!, "NO_SOCKET,NETFILTER_DROP").map((r) => r.toUpperCase()) : [];
  const options: Options = {
      mode,
      filter,
      reasons,
      trace,
      ret: !!a.ret,
      pktFixed: !!a["pkt-fixed"],
      traceStack: str("trace-stack") !== undefined ? parseList("--trace-stack", str("trace-stack")!, "consume_skb,icmp_rcv") : undefined,
      minLatencyMs: str("min-latency") !== undefined ? parseAmount("--min-latency", str("min-latency")!, "milliseconds", "10") : undefined,
      backend: backend as BackendChoice | undefined,
      diagQuiet: !!a["diag-quiet"],
      diagKeep: !!a["diag-keep"],
      hooks: !!a.hooks,
      kb: str("kb"),
      count: str("count") !== undefined ? parseCount("--count", str("count")!, "100") : undefined,
      timeout: str("timeout") !== undefined ? parseAmount("--timeout", str("timeout")!, "seconds", "30") : undefined,
      json: !!a.json,
      output: str("output"),
      detail: !!a.detail,
      date: !!a.date,
      dropStack: !!a["drop-stack"],
      verbose: !!a.verbose,
      debug: !!a.debug,
  };
  return { kind: trace?.length === 1 && trace[0] === "?" ? "tracers" : "run", options };
}

export async function helpText(): Promise<string> {
  const usage = await renderUsage(command);
  return `${usage}

Examples:
  skbtrail -p icmp --addr 10.0.0.2               the path of each ping through the kernel, per packet
  skbtrail -t ip,tcp -p tcp --dport 443 --ret     chosen groups, with return values
  skbtrail -t '?'                                 the tracer tree and what this kernel supports
  skbtrail --drop                                 every packet the kernel drops, with reason and location
  skbtrail --drop -p udp --dport 53 --drop-stack  dropped DNS queries, with kernel stacks
  skbtrail --drop --json -c 100 --timeout 30      machine-readable, for CI
  skbtrail --diag -p tcp --dport 8080             why packets to port 8080 die, and what to change
  skbtrail kb check my-rules.yaml                 validate a rule file for --kb

Exit codes: 0 ok, 1 --diag found an error, 2 bad command line or knowledge file, 3 missing privilege or kernel feature, 4 BPF load/attach failure.`;
}
