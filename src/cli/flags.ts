// The flag table: nettrace's flags with nettrace's meaning, plus
// skbtrail's own, and the help text made from it.
import { defineCommand, renderUsage, type ArgsDef } from "citty";
import { VERSION } from "../common/version";
import { BACKENDS } from "../plan/plan";

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
  "min-latency": s("keep only packets that lived at least this long, e.g. 500us, 2ms, 1s; a bare number is milliseconds (nettrace's manual; current nettrace reads µs)", undefined, "TIME"),
  "tcp-rtt": s("--monitor: also report TCP RTT samples of at least MS milliseconds; --sock: only those RTT samples", undefined, "MS"),
  "tcp-srtt": s("--monitor: also report TCP RTT samples whose smoothed RTT is at least MS milliseconds; --sock: only those RTT samples", undefined, "MS"),
  "filter-srtt": s("--sock: only RTT samples whose smoothed RTT is at least MS milliseconds (nettrace's newer name of --tcp-srtt)", undefined, "MS"),
  "filter-minrtt": s("--sock: only RTT samples of connections whose minimum RTT is at least MS milliseconds", undefined, "MS"),
  rtt: b("a log2 table of the TCP RTT samples, counted in the kernel, redrawn every second and printed at exit; alone: only the table (implies --sock, no events); with --sock or --rtt-detail: beside their lines"),
  "rtt-detail": b("socket mode showing only RTT samples: one line per sample (srtt, rtt, minimum rtt), the RTT thresholds applying; implies --sock"),

  trace: s("enable trace groups or functions, e.g. ip,tcp_v4_rcv ('?' lists them)", "t", "LIST"),
  ret: b("show function return values"),
  detail: b("show extra packet info: cpu, interface, pid/comm, netns"),
  date: b("print wall-clock timestamps instead of seconds since boot"),
  count: s("exit after COUNT events (packets in lifecycle mode)", "c", "COUNT"),
  timeout: s("exit after SECONDS", undefined, "SECONDS"),
  json: b("print one JSON object per line (schema in the README)"),
  output: s("write events to FILE instead of standard output", undefined, "FILE"),
  pcap: s("also write the packets seen to FILE as pcapng (Wireshark, tshark, tcpdump), what happened as packet comments", undefined, "FILE"),
  snaplen: s("--pcap: bytes of each packet to capture (default 256, at most 4096)", undefined, "BYTES"),
  allow: s("run: drop reasons that never fail the run, e.g. NO_SOCKET,SOCKET_FILTER", undefined, "REASONS"),
  expect: s("run: YAML file of the drops the run allows (reason, location, proto, addresses, ports, max)", undefined, "FILE"),
  "fail-on": s("run: the lowest knowledge-base level of a drop that fails the run: info, warn (default), error", undefined, "LEVEL"),
  junit: s("run: write a JUnit XML report to FILE (one test case per drop group)", undefined, "FILE"),
  "report-json": s("run: write the report to FILE as one JSON document (schema in the README)", undefined, "FILE"),
  basic: b("'basic' trace mode: one line per hook, no per-packet grouping"),
  diag: b("enable 'diagnose' mode; with --sock: judge each connection (refused, unanswered, reset, retransmissions, RTT, full buffers, errors)"),
  "diag-quiet": b("only print abnormal packets (--sock --diag: only connections with findings)"),
  "diag-keep": b("don't quit when an abnormal packet is found"),
  hooks: b("print netfilter hooks if dropping by netfilter"),
  drop: b("skb drop monitor mode"),
  "drop-stack": b("print the kernel call stack of each drop"),
  sock: b("'sock' mode: socket events (state changes, RTT samples, resets, retransmissions, timers, probes, full buffers and listeners, errors) and a summary per TCP connection; -t chooses its socket functions"),
  monitor: b("'monitor' mode: only abnormal events (drops, resets, timeouts, overflows), repeats summed up; cheap enough to leave running"),
  aggregate: s("--monitor: sum up repeats of an event for SECONDS before saying how many (default 10)", undefined, "SECONDS"),
  "rate-limit": s("--monitor/--basic: print at most N events per second, count the rest", undefined, "N"),
  "func-stats": b("--monitor/--basic: count calls per traced hook in the kernel and print a table every second, no events"),
  metrics: s("serve Prometheus metrics on http://[ADDR:]PORT/metrics (PORT alone: localhost; :PORT: every address)", undefined, "[ADDR:]PORT"),
  "metrics-max-series": s("--metrics: at most N series per metric (default 1000); more go to the label value 'other'", undefined, "N"),
  "pkt-fixed": b("the packet is not NATed: don't follow it by skb address"),
  "trace-stack": s("print call stacks for these traces", undefined, "LIST"),
  "latency-show": b("packet lifecycles: show each hook's delay since the packet's previous hook, and the packet's total"),
  latency: b("'latency' mode: measure each packet's time through the stack in the kernel, first hook to free; report only those at or above --min-latency"),
  "latency-summary": b("--latency: print the distribution of latencies (log2 table) at the end instead of packets"),
  "latency-free": b("--latency: the free (or --trace-free hook) counts: measure up to it, not to the hook before it"),
  "trace-matcher": s("hooks where a packet may be matched and start its lifecycle, or --latency's measurement (default: every traced hook)", undefined, "LIST"),
  "trace-free": s("--latency: hooks that end a measurement, instead of the packet's free", undefined, "LIST"),
  "trace-exclude": s("remove these hooks or groups from the traced set", undefined, "LIST"),
  "trace-noclone": b("don't follow clones of a packet (skb_clone)"),
  "tiny-show": b("shorter lines: a packet's summary only where it changes (a block's first line, after NAT; --basic: the next packet)"),
  backend: s(`force how functions are hooked: ${BACKENDS.join(", ")}`, undefined, "NAME"),
  "btf-path": s("use this vmlinux BTF file (e.g. from BTFHub) on a kernel without /sys/kernel/btf/vmlinux", undefined, "FILE"),
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

const ANSI = /\x1b\[[0-9;]*m/g;

/** The help text; coloured only for a terminal, and never with NO_COLOR set. */
export async function helpText(color: boolean): Promise<string> {
  const usage = (await renderUsage(command)).replace(color ? /$^/ : ANSI, "");
  return `${usage}

Examples:
  skbtrail -p icmp --addr 10.0.0.2               the path of each ping through the kernel, per packet
  skbtrail -t ip,tcp -p tcp --dport 443 --ret     chosen groups, with return values
  skbtrail -t '?'                                 the tracer tree and what this kernel supports
  skbtrail --drop                                 every packet the kernel drops, with reason and location
  skbtrail --drop -p udp --dport 53 --drop-stack  dropped DNS queries, with kernel stacks
  skbtrail --drop --json -c 100 --timeout 30      machine-readable, for CI
  skbtrail --monitor --metrics :9464              always on: abnormal events, Prometheus metrics on port 9464
  skbtrail --sock -p tcp --port 443               socket events and a summary per TCP connection on port 443
  skbtrail --rtt-detail --tcp-rtt 10              every TCP RTT sample of 10 ms or more, one line each
  skbtrail --rtt -p tcp --port 443                the RTT distribution of port 443's connections, redrawn every second
  skbtrail --diag -p tcp --dport 8080             why packets to port 8080 die, and what to change
  skbtrail --latency --min-latency 2ms            packets that spent 2 ms or more in the stack, measured in the kernel
  skbtrail --latency --latency-summary --timeout 10
                                                  the distribution of packet latencies over 10 s
  skbtrail --sock --diag -p tcp --dport 5432      what went wrong on each connection to port 5432 (refused, unanswered, resets, loss)
  skbtrail --drop --pcap drops.pcapng            the dropped packets' bytes, for Wireshark, with reason and location
  skbtrail kb check my-rules.yaml                 validate a rule file for --kb (or an --expect file)

CI gate:
  skbtrail run [filters] [options] -- CMD [ARGS...]
                                                  run CMD while watching for drops; report them when it exits
  skbtrail run --netns-current --junit drops.xml --pcap drops.pcapng -- ./tests.sh
  skbtrail run --expect expected-drops.yaml --fail-on error -- make check

Signals: SIGINT and SIGTERM stop; SIGHUP stops too, except in --monitor with --output, where it reopens the file (log rotation).

Exit codes: 0 ok, 1 --diag found an error, 2 bad command line or knowledge file, 3 missing privilege or kernel feature, 4 BPF load/attach failure, 5 the output could not be written.
skbtrail run: CMD's own status when it failed (128+N when signal N killed it), else 6 when unexpected drops were seen, else 0; 126/127 when CMD cannot be executed / is not found.`;
}
