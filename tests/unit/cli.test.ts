// Command-line parsing and every usage error: one line naming the flag and the fix.
import { describe, expect, test } from "bun:test";
import { parseCommandLine, type Options } from "../../src/cli/parse";
import { SkbtrailError, ExitCode } from "../../src/common/errors";

function options(...argv: string[]): Options {
  const c = parseCommandLine(argv);
  if (c.kind !== "run") throw new Error(`expected a run, got ${c.kind}`);
  return c.options;
}

function usageError(...argv: string[]): string {
  try {
    parseCommandLine(argv);
  } catch (e) {
    expect(e).toBeInstanceOf(SkbtrailError);
    expect((e as SkbtrailError).exitCode).toBe(ExitCode.USAGE);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error(`no error for ${argv.join(" ")}`);
}

describe("valid command lines", () => {
  test("nettrace's filter flags, long and short", () => {
    const o = options("--drop", "-s", "10.0.0.1", "-d", "fd00::2", "-S", "5", "-D", "80", "-P", "443", "-p", "TCP", "--tcp-flags", "sa", "--pkt-len", "64-128");
    expect(o.mode).toBe("drop");
    expect(o.filter.saddr).toMatchObject({ family: 4, prefix: 32 });
    expect([...o.filter.saddr!.bytes.slice(0, 4)]).toEqual([10, 0, 0, 1]);
    expect(o.filter.daddr).toMatchObject({ family: 6, prefix: 128 });
    expect(o.filter).toMatchObject({ sport: 5, dport: 80, port: 443, proto: { name: "tcp", l4: 6 }, tcpFlags: 0x12, pktLen: [64, 128] });
  });

  test("values with =, CIDR prefixes, single lengths, marks", () => {
    const o = options("--drop", "--saddr=10.1.0.0/16", "--addr", "2001:db8::/32", "--pkt-len", "1500", "--mark", "0x10/0xff", "--ifname", "eth0");
    expect(o.filter.saddr).toMatchObject({ prefix: 16 });
    expect(o.filter.addr).toMatchObject({ family: 6, prefix: 32 });
    expect(o.filter.pktLen).toEqual([1500, 1500]);
    expect(o.filter.mark).toEqual({ value: 0x10, mask: 0xff });
    expect(o.filter.ifname).toBe("eth0");
  });

  test("output and run-length flags", () => {
    const o = options("--drop", "--json", "-c", "100", "--timeout", "30", "--detail", "--date", "--drop-stack", "-v", "--reason", "no_socket,NETFILTER_DROP");
    expect(o).toMatchObject({ json: true, count: 100, timeout: 30, detail: true, date: true, dropStack: true, verbose: true, reasons: ["NO_SOCKET", "NETFILTER_DROP"] });
  });

  test("--sock --diag: connections judged, --diag-quiet and --kb with it; without --sock, --diag stays packet diagnosis", () => {
    expect(options("--sock", "--diag")).toMatchObject({ mode: "sock", sockDiag: true, diagQuiet: false });
    expect(options("--sock", "--diag", "--diag-quiet", "--kb", "mine.yaml")).toMatchObject({ mode: "sock", sockDiag: true, diagQuiet: true, kb: "mine.yaml" });
    expect(options("--sock")).toMatchObject({ mode: "sock", sockDiag: false });
    expect(options("--diag")).toMatchObject({ mode: "diag", sockDiag: false });
  });

  test("--rtt-detail: socket mode with only RTT samples, as nettrace's; the thresholds and --rtt go with it", () => {
    expect(options("--rtt-detail")).toMatchObject({ mode: "sock", rttDetail: true, sockDiag: false });
    expect(options("--sock", "--rtt-detail", "--tcp-rtt", "10", "--rtt")).toMatchObject({ mode: "sock", rttDetail: true, rttHistogram: true, rttFilter: { rttMinMs: 10 } });
    expect(options("--sock")).toMatchObject({ rttDetail: false });
  });

  test("--rtt alone: socket mode with only the RTT table; with --sock or --rtt-detail, beside their lines", () => {
    expect(options("--rtt", "--tcp-rtt", "1", "-c", "100")).toMatchObject({ mode: "sock", rttHistogram: true, rttOnly: true, rttDetail: false, sockDiag: false, count: 100 });
    expect(options("--sock", "--rtt")).toMatchObject({ mode: "sock", rttHistogram: true, rttOnly: false });
    expect(options("--rtt-detail", "--rtt")).toMatchObject({ mode: "sock", rttHistogram: true, rttOnly: false, rttDetail: true });
    expect(options("--sock")).toMatchObject({ rttHistogram: false, rttOnly: false });
  });

  test("--netns and --netns-current", () => {
    expect(options("--drop", "--netns", "4026531840").filter.netns).toBe(4026531840);
    expect(options("--drop", "--netns-current").filter.netnsCurrent).toBe(true);
  });

  test("--monitor with its filters, limits and metrics", () => {
    const o = options("--monitor", "--tcp-rtt", "10", "--tcp-srtt", "2.5", "--aggregate", "5", "--rate-limit", "100", "-p", "udp", "--reason", "NO_SOCKET");
    expect(o).toMatchObject({ mode: "monitor", monitor: { aggregateSeconds: 5 }, rttFilter: { rttMinMs: 10, srttMinMs: 2.5 }, rateLimit: 100, funcStats: false, reasons: ["NO_SOCKET"], filter: { proto: { l4: 17 } } });
    expect(options("--monitor").monitor).toEqual({ aggregateSeconds: 10 });
    expect(options("--monitor", "--func-stats").funcStats).toBe(true);
    expect(options("--basic", "--func-stats", "--rate-limit", "5")).toMatchObject({ mode: "basic", funcStats: true, rateLimit: 5 });
  });

  test("--metrics: localhost by default, every address with :PORT, or the address given", () => {
    expect(options("--monitor", "--metrics", "9464").metrics).toEqual({ host: "127.0.0.1", port: 9464, text: "9464" });
    expect(options("--monitor", "--metrics", ":9464").metrics).toMatchObject({ host: "0.0.0.0", port: 9464 });
    expect(options("--monitor", "--metrics", "10.0.0.5:9100").metrics).toMatchObject({ host: "10.0.0.5", port: 9100 });
    expect(options("--monitor", "--metrics", "[::1]:9464").metrics).toMatchObject({ host: "::1", port: 9464 });
    expect(options("--drop", "--metrics", "localhost:9464").metrics).toMatchObject({ host: "localhost", port: 9464 });
    expect(options("--monitor", "--metrics", "9464").maxSeries).toBe(1000);
    expect(options("--monitor", "--metrics", "9464", "--metrics-max-series", "50").maxSeries).toBe(50);
  });

  test("--min-latency: a unit, or a bare number of milliseconds", () => {
    expect(options("--min-latency", "500us").minLatencyMs).toBe(0.5);
    expect(options("--min-latency", "500µs").minLatencyMs).toBe(0.5);
    expect(options("--min-latency", "2ms").minLatencyMs).toBe(2);
    expect(options("--min-latency", "1.5s").minLatencyMs).toBe(1500);
    expect(options("--min-latency", "3").minLatencyMs).toBe(3);
    expect(options("--diag", "--min-latency", "250000ns").minLatencyMs).toBeCloseTo(0.25);
  });

  test("--latency-show in the lifecycle modes", () => {
    expect(options("--latency-show").latencyShow).toBe(true);
    expect(options("--diag", "--latency-show")).toMatchObject({ mode: "diag", latencyShow: true });
    expect(options().latencyShow).toBe(false);
  });

  test("--latency and its flags", () => {
    expect(options("--latency", "--min-latency", "500us")).toMatchObject({ mode: "latency", minLatencyMs: 0.5, latency: { summary: false, countFree: false } });
    expect(options("--latency").traceMatcher).toBeUndefined();
    const o = options("--latency", "--latency-summary", "--latency-free", "--trace-matcher", "net_dev_queue", "--trace-free", "net_dev_xmit,consume_skb", "-p", "icmp");
    expect(o.latency).toEqual({ summary: true, countFree: true, free: ["net_dev_xmit", "consume_skb"] });
    expect(o.traceMatcher).toEqual(["net_dev_queue"]);
    expect(o.filter.proto).toMatchObject({ l4: 1 });
    expect(options("--latency", "-c", "5", "--json").count).toBe(5);
    expect(options("-p", "tcp").latency).toBeUndefined();
  });

  test("--trace-exclude, --trace-noclone, --tiny-show", () => {
    expect(options("--trace-exclude", "link-in,skb_copy_datagram_iovec")).toMatchObject({ mode: "trace", traceExclude: ["link-in", "skb_copy_datagram_iovec"], noClone: false, tiny: false });
    expect(options("--diag", "--trace-noclone", "--tiny-show")).toMatchObject({ noClone: true, tiny: true });
    expect(options("--basic", "--tiny-show").tiny).toBe(true);
    expect(options("--latency", "--trace-exclude", "qdisc_*").traceExclude).toEqual(["qdisc_*"]);
    expect(options("--trace-matcher", "netif_receive_skb,ip_rcv").traceMatcher).toEqual(["netif_receive_skb", "ip_rcv"]);
    expect(options("--diag", "--trace-matcher", "ip").traceMatcher).toEqual(["ip"]);
  });

  test("help and version", () => {
    expect(parseCommandLine(["-h"]).kind).toBe("help");
    expect(parseCommandLine(["--drop", "--help"]).kind).toBe("help");
    expect(parseCommandLine(["-V"]).kind).toBe("version");
  });
});

describe("usage errors name the flag and the fix", () => {
  const cases: [string[], RegExp][] = [
    [["--drop", "--bogus"], /unknown flag '--bogus'; see skbtrail --help/],
    [["--drop", "-x"], /unknown flag '-x'/],
    [["--drop", "stray"], /unexpected argument 'stray'/],
    [["--drop", "-s"], /^-s needs a value/],
    [["--drop", "--saddr", "--json"], /^--saddr needs a value/],
    [["--drop", "--json=yes"], /--json takes no value/],
    [["--drop", "-s", "10.0.0.256"], /--saddr: '10\.0\.0\.256' is not an IPv4 or IPv6 address; use e\.g\./],
    [["--drop", "-d", "fd00:::1"], /--daddr: 'fd00:::1' is not an IPv4 or IPv6 address/],
    [["--drop", "--addr", "10.0.0.0/33"], /--addr: '10\.0\.0\.0\/33'/],
    [["--drop", "--addr", "1:2:3:4:5:6:7:8:9"], /--addr: '1:2:3:4:5:6:7:8:9'/],
    [["--drop", "-D", "65536"], /--dport: '65536' is not a port; use a number from 1 to 65535/],
    [["--drop", "-S", "0"], /--sport: '0' is not a port/],
    [["--drop", "-P", "http"], /--port: 'http' is not a port/],
    [["--drop", "-p", "quic"], /--proto: unknown protocol 'quic'; use one of ip, ipv4, ipv6, arp, tcp, udp/],
    [["--drop", "--tcp-flags", "SX"], /--tcp-flags: 'SX' has an unknown TCP flag 'X'; use letters of SAPRFU/],
    [["--drop", "--pkt-len", "100-10"], /--pkt-len: '100-10' is not a length or range/],
    [["--drop", "-c", "0"], /--count: '0' is not a positive whole number/],
    [["--drop", "--timeout", "soon"], /--timeout: 'soon' is not a number of seconds/],
    [["--drop", "--netns", "abc"], /--netns: 'abc' is not a positive whole number/],
    [["--drop", "--netns", "1", "--netns-current"], /--netns and --netns-current conflict/],
    [["--drop", "--mark", "0x1/0"], /--mark: '0x1\/0' is not a mark/],
    [["--drop", "--ifname", "a very long interface name"], /--ifname: .* is not an interface name/],
    [["--drop", "--reason", "A,,B"], /--reason: empty name in 'A,,B'/],
    [["--drop", "-p", "arp", "--dport", "53"], /--proto arp conflicts with port and TCP flag filters/],
    [["--drop", "-p", "udp", "--tcp-flags", "S"], /--tcp-flags needs TCP packets but --proto is udp; use --proto tcp/],
    [["--drop", "--timeout", "31536001"], /^--timeout: 31536001 is out of range; use at most 31536000 seconds$/],
    [["--drop", "--pid", "4194305"], /^--pid: 4194305 is out of range; use a number from 1 to 4194304$/],
    [["--drop", "--netns", "4294967296"], /^--netns: 4294967296 is out of range; use a number from 1 to 4294967295$/],
    [["--drop", "--output", ""], /^--output: the file name is empty/],
    [["--drop", "-s", "\x1b]0;title\x07"], /^--saddr: '\\x1b\]0;title\\x07' is not an IPv4/],
    [["--drop", "--sock"], /^--drop does not apply to --sock \(socket events and connection summaries\): remove it$/],
    [["--sock", "--tcp-flags", "S"], /^--tcp-flags does not apply to --sock/],
    [["--sock", "-i", "eth0"], /^--ifname does not apply to --sock/],
    [["--sock", "--monitor"], /^--monitor does not apply to --sock/],
    [["--sock", "--diag", "--diag-keep"], /^--diag-keep does not apply to --sock --diag: it never stops at a finding \(use -c or --timeout to stop\)$/],
    [["--sock", "--diag", "--hooks"], /^--hooks does not apply to --sock --diag/],
    [["--sock", "--diag-quiet"], /^--diag-quiet works with --diag: add --diag$/],
    [["--rtt-detail", "--diag"], /^--rtt-detail shows only RTT samples and --diag judges whole connections: use --sock --diag, or drop --diag$/],
    [["--rtt-detail", "--drop"], /^--drop does not apply to --rtt-detail \(RTT samples of sockets\): remove it$/],
    [["--rtt-detail", "--pkt-len", "100"], /^--pkt-len does not apply to --rtt-detail/],
    [["run", "--rtt-detail", "--", "true"], /^--rtt-detail does not apply to skbtrail run: it reports drops$/],
    [["--drop", "--rtt"], /^--drop does not apply to --rtt \(the RTT table of sockets\): remove it$/],
    [["--rtt", "--diag"], /^--rtt alone shows only the RTT table and --diag judges whole connections: use --sock --diag --rtt$/],
    [["run", "--rtt", "--", "true"], /^--rtt does not apply to skbtrail run: it reports drops$/],
    [["--latency", "--rtt"], /^--latency does not apply to --rtt \(the RTT table of sockets\): remove it$/],
    [["--monitor", "--filter-srtt", "5"], /^--filter-srtt works with --sock only \(in --monitor: --tcp-srtt\): add --sock$/],
    [["--sock", "--tcp-srtt", "5", "--filter-srtt", "5"], /^--tcp-srtt and --filter-srtt are the same threshold: give one$/],
    [["--sock", "--filter-minrtt", "-1"], /^--filter-minrtt: '-1' is not a number of milliseconds/],
    [["--drop", "--monitor"], /^--monitor and --drop are different modes: use one/],
    [["--monitor", "--diag"], /^--monitor and --diag are different modes/],
    [["--drop", "--tcp-rtt", "10"], /^--tcp-rtt works with --sock and --monitor only: add one of them$/],
    [["--tcp-srtt", "10"], /^--tcp-srtt works with --sock and --monitor only/],
    [["--drop", "--aggregate", "5"], /^--aggregate works with --monitor only: add --monitor$/],
    [["--drop", "--rate-limit", "5"], /^--rate-limit works with --monitor and --basic only/],
    [["--func-stats"], /^--func-stats works with --monitor and --basic only/],
    [["--monitor", "-t", "ip"], /^--trace is for tracing packets and --monitor watches for abnormal events: use one mode/],
    [["--monitor", "--basic"], /^--basic is for tracing packets and --monitor/],
    [["--monitor", "--drop-stack"], /^--drop-stack works with --drop only/],
    [["--diag", "--reason", "NO_SOCKET"], /^--reason works with --drop and --monitor only/],
    [["--monitor", "--tcp-rtt", "fast"], /^--tcp-rtt: 'fast' is not a number of milliseconds; use e\.g\. --tcp-rtt 10$/],
    [["--monitor", "--tcp-srtt", "0"], /^--tcp-srtt: '0' is not a number of milliseconds/],
    [["--monitor", "--aggregate", "7200"], /^--aggregate: 7200 is out of range; use at most 3600 seconds$/],
    [["--monitor", "--rate-limit", "0"], /^--rate-limit: '0' is not a positive whole number; use e\.g\. --rate-limit 100$/],
    [["--monitor", "--metrics", "http"], /^--metrics: 'http' is not \[ADDR:\]PORT; use e\.g\. --metrics 9464 \(localhost\), --metrics :9464 \(every address\)/],
    [["--monitor", "--metrics", "70000"], /^--metrics: port 70000 is out of range; use a port from 1 to 65535/],
    [["--monitor", "--metrics", "0"], /^--metrics: port 0 is out of range/],
    [["--monitor", "--metrics", "300.1.1.1:9464"], /^--metrics: '300\.1\.1\.1:9464' is not \[ADDR:\]PORT/],
    [["--min-latency", "fast"], /^--min-latency: 'fast' is not a duration; use e\.g\. --min-latency 2ms \(units ns, us, ms, s; a bare number is milliseconds\)$/],
    [["--min-latency", "5m"], /^--min-latency: '5m' is not a duration/],
    [["--min-latency", "0us"], /^--min-latency: '0us' is not a duration/],
    [["--min-latency", "400d"], /^--min-latency: '400d' is not a duration/],
    [["--min-latency", "31536001s"], /^--min-latency: 31536001s is out of range; use at most 31536000s$/],
    [["--basic", "--min-latency", "2ms"], /^--min-latency needs packet lifecycles: drop --basic$/],
    [["--basic", "--latency-show"], /^--latency-show needs packet lifecycles: drop --basic$/],
    [["--latency-summary"], /^--latency-summary works with --latency: add --latency$/],
    [["--latency-free"], /^--latency-free works with --latency: add --latency$/],
    [["--basic", "--trace-matcher", "ip_rcv"], /^--trace-matcher needs packet lifecycles \(--basic follows nothing\): drop --basic, or choose hooks with -t$/],
    [["--drop", "--trace-matcher", "ip_rcv"], /^--trace-matcher is for tracing packets and --drop monitors drops/],
    [["--diag", "--trace-free", "ip_rcv"], /^--trace-free works with --latency: add --latency$/],
    [["--latency", "--drop"], /^--latency and --drop are different modes: use one$/],
    [["--latency", "--diag"], /^--latency and --diag are different modes: use one$/],
    [["--latency", "--basic"], /^--latency and --basic are different modes: use one$/],
    [["--latency", "--latency-show"], /^--latency-show does not apply to --latency: --latency-show is for packet lifecycles/],
    [["--latency", "--ret"], /^--ret does not apply to --latency: it measures paths, not calls$/],
    [["--latency", "--pcap", "x.pcapng"], /^--pcap does not apply to --latency/],
    [["--latency", "--trace-noclone"], /^--trace-noclone does not apply to --latency/],
    [["--latency", "--latency-summary", "-c", "3"], /^--count does not apply to --latency-summary \(one table at the end\): use --timeout$/],
    [["--latency", "--trace-matcher", "a,,b"], /^--trace-matcher: empty name in 'a,,b'/],
    [["--sock", "--latency"], /^--latency does not apply to --sock/],
    [["--monitor", "--trace-exclude", "ip"], /^--trace-exclude is for tracing packets and --monitor/],
    [["--drop", "--tiny-show"], /^--tiny-show is for tracing packets and --drop monitors drops/],
    [["--basic", "--trace-noclone"], /^--trace-noclone needs packet lifecycles \(--basic follows nothing\): drop --basic, or choose hooks with -t$/],
    [["run", "--latency", "--", "true"], /^--latency does not apply to skbtrail run: it reports drops$/],
    [["--drop", "--latency-show"], /^--latency-show is for tracing packets and --drop monitors drops/],
    [["--sock", "--latency-show"], /^--latency-show does not apply to --sock/],
    [["--monitor", "--metrics-max-series", "10"], /^--metrics-max-series works with --metrics: add --metrics \[ADDR:\]PORT$/],
    [["--monitor", "--metrics", "9464", "--metrics-max-series", "x"], /^--metrics-max-series: 'x' is not a positive whole number/],
  ];
  for (const [argv, expected] of cases) test(argv.join(" "), () => expect(usageError(...argv)).toMatch(expected));
});

describe("skbtrail run", () => {
  const gate = (...argv: string[]) => {
    const c = parseCommandLine(argv);
    if (c.kind !== "gate") throw new Error(`expected a gate run, got ${c.kind}`);
    return c.options;
  };

  test("flags before --, the command after it, untouched", () => {
    const o = gate("run", "-p", "udp", "--netns-current", "--allow", "no_socket", "--expect", "e.yaml", "--fail-on", "error", "--junit", "j.xml", "--report-json", "r.json", "--pcap", "d.pcapng", "--", "sh", "-c", "exit 3", "--drop");
    expect(o.mode).toBe("drop");
    expect(o.filter).toMatchObject({ proto: { name: "udp" }, netnsCurrent: true });
    expect(o.gate).toEqual({ command: ["sh", "-c", "exit 3", "--drop"], allow: ["no_socket"], expect: "e.yaml", failOn: "error", junit: "j.xml", reportJson: "r.json" });
    expect(o).toMatchObject({ pcap: "d.pcapng", snaplen: 256 });
    expect(gate("run", "--diag", "--", "true").mode).toBe("diag");
    expect(gate("run", "--", "true").gate.command).toEqual(["true"]);
  });

  test("--pcap and --snaplen in every mode", () => {
    expect(options("--drop", "--pcap", "x.pcapng", "--snaplen", "1500")).toMatchObject({ pcap: "x.pcapng", snaplen: 1500 });
    expect(options("-p", "icmp", "--pcap", "x.pcapng").pcap).toBe("x.pcapng");
  });

  const cases: [string[], RegExp][] = [
    [["run", "./tests.sh"], /^run: put the command after --, e\.g\. skbtrail run --netns-current -- \.\/tests\.sh/],
    [["run", "-p", "udp", "--"], /^run: no command after --/],
    [["run", "-c", "10", "--", "true"], /^--count does not apply to skbtrail run: the run lasts as long as the command$/],
    [["run", "--timeout", "5", "--", "true"], /^--timeout does not apply to skbtrail run/],
    [["run", "--basic", "--", "true"], /^--basic does not apply to skbtrail run/],
    [["run", "--fail-on", "fatal", "--", "true"], /^--fail-on: 'fatal' is not a level; use info \(every drop fails\), warn \(the default\) or error$/],
    [["run", "--junit", "", "--", "true"], /^--junit: the file name is empty/],
    [["run", "--allow", "A,,B", "--", "true"], /^--allow: empty name in 'A,,B'/],
    [["--drop", "--junit", "x.xml"], /^--junit works with skbtrail run: skbtrail run --junit FILE -- CMD$/],
    [["--drop", "--allow", "NO_SOCKET"], /^--allow works with skbtrail run/],
    [["--drop", "--snaplen", "100"], /^--snaplen works with --pcap: add --pcap FILE$/],
    [["--drop", "--pcap", "x", "--snaplen", "5000"], /^--snaplen: 5000 is out of range; use a number from 1 to 4096$/],
    [["--drop", "--pcap", ""], /^--pcap: the file name is empty/],
  ];
  for (const [argv, expected] of cases) test(argv.join(" "), () => expect(usageError(...argv)).toMatch(expected));
});
