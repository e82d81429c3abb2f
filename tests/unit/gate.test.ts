// skbtrail run's policy: the expect file's schema (every mistake one line
// naming file:line: key), matching, grouping, and which drops are unexpected.
import { describe, expect, test } from "bun:test";
import { dropReasonsText } from "../../src/common/assets";
import { SkbtrailError, ExitCode } from "../../src/common/errors";
import { checkAllowed, entryMatches, Gate, loadExpectFile, looksLikeExpectFile, MAX_GROUPS, type DropFacts, type GatePolicy } from "../../src/diagnosis/gate";
import { loadDropReasons } from "../../src/diagnosis/knowledge";
import type { DropEvent } from "../../src/events/decode";

const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
const names = new Set(reasons.keys());

function problem(text: string): string {
  try {
    loadExpectFile(text, "expect.yaml", names);
  } catch (e) {
    expect(e).toBeInstanceOf(SkbtrailError);
    expect((e as SkbtrailError).exitCode).toBe(ExitCode.USAGE);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error("the expect file was accepted");
}

const udp = (o: Partial<DropFacts> = {}): DropFacts => ({
  reason: "NO_SOCKET", location: "__udp4_lib_rcv+0x4bc", proto: "UDP", l3: "IPv4", saddr: "10.61.0.1", daddr: "10.61.0.2", sport: 5101, dport: 7101, ...o,
});
const example = { kind: "drop" } as DropEvent;
const policy = (o: Partial<GatePolicy> = {}): GatePolicy => ({ failOn: "warn", failOnFrom: "the default", allow: [], expect: [], ...o });

describe("expect files", () => {
  const good = `fail_on: error
expect:
  - reason: NO_SOCKET
    proto: udp
    daddr: 10.61.0.0/24
    dport: 7000-7200
    max: 2
    why: probes a closed port
  - reason: [NETFILTER_DROP, SOCKET_FILTER]
    location: nft_*
  - saddr: fd00::1
    sport: 53
`;

  test("a valid file loads: entries with where they are written, and fail_on", () => {
    const f = loadExpectFile(good, "expect.yaml", names);
    expect(f.failOn).toBe("error");
    expect(f.entries).toHaveLength(3);
    expect(f.entries[0]).toMatchObject({ reasons: ["NO_SOCKET"], protos: ["udp"], dport: { min: 7000, max: 7200 }, max: 2, why: "probes a closed port", where: "expect.yaml:3" });
    expect(f.entries[0]!.daddr).toMatchObject({ family: 4, prefix: 24 });
    expect(f.entries[1]).toMatchObject({ reasons: ["NETFILTER_DROP", "SOCKET_FILTER"], locations: ["nft_*"], where: "expect.yaml:9" });
    expect(f.entries[2]).toMatchObject({ sport: { min: 53, max: 53 }, where: "expect.yaml:11" });
    expect(looksLikeExpectFile(good, "expect.yaml")).toBe(true);
    expect(looksLikeExpectFile("- id: x\n", "rules.yaml")).toBe(false);
  });

  test("each mistake names file, line and key", () => {
    expect(problem("expect:\n  - reason: NO_SOKET\n")).toBe("expect.yaml:2: reason: 'NO_SOKET' is not a drop reason (names as in knowledge/drop-reasons.yaml, e.g. NO_SOCKET)");
    expect(problem("expect:\n  - reason: NO_SOCKET\n    dport: 70000\n")).toBe("expect.yaml:3: dport: '70000' is not a port or range; use e.g. dport: 53 or dport: 1024-65535");
    expect(problem("expect:\n  - reason: NO_SOCKET\n    daddr: 10.0.0.300\n")).toMatch(/^expect\.yaml:3: daddr: '10\.0\.0\.300' is not an address or prefix/);
    expect(problem("expect:\n  - reason: NO_SOCKET\n    max: -1\n")).toBe("expect.yaml:3: max: must be a whole number, 0 or more (the most drops allowed)");
    expect(problem("expect:\n  - reason: NO_SOCKET\n    port: 53\n")).toMatch(/^expect\.yaml:3: port: unknown key in an expected drop \(allowed: reason, location/);
    expect(problem("expect:\n  - why: nothing to match\n")).toMatch(/^expect\.yaml:2: an expected drop needs at least one of reason, location/);
    expect(problem("fail_on: sometimes\nexpect: []\n")).toBe("expect.yaml:1: fail_on: 'sometimes' is not valid: use info, warn or error");
    expect(problem("expect: NO_SOCKET\n")).toMatch(/^expect\.yaml:1: expect: must be a list of allowed drops/);
    expect(problem("- reason: NO_SOCKET\n")).toMatch(/^expect\.yaml:1: an expect file must be a mapping/);
    expect(problem("expect:\n  - reason: [NO_SOCKET\n")).toMatch(/^expect\.yaml:\d+: not valid YAML/);
    expect(problem("expect: !!js/function 'x'\n")).toMatch(/^expect\.yaml:1: not valid YAML/);
  });

  test("--allow takes known reason names and suggests close ones", () => {
    expect(checkAllowed(["no_socket", "SKB_DROP_REASON_NETFILTER_DROP"], names)).toEqual(["NO_SOCKET", "NETFILTER_DROP"]);
    expect(() => checkAllowed(["SOCKET"], names)).toThrow(/^--allow: 'SOCKET' is not a drop reason; did you mean /);
  });
});

describe("matching", () => {
  const entry = (text: string) => loadExpectFile(`expect:\n  - ${text}\n`, "e.yaml", names).entries[0]!;

  test("every given key must hold", () => {
    expect(entryMatches(entry("{ reason: NO_SOCKET, proto: udp, daddr: 10.61.0.0/24, dport: 7101 }"), udp())).toBe(true);
    expect(entryMatches(entry("{ reason: NO_SOCKET, proto: tcp }"), udp())).toBe(false);
    expect(entryMatches(entry("{ reason: NO_SOCKET, dport: 7102-7200 }"), udp())).toBe(false);
    expect(entryMatches(entry("{ daddr: 10.62.0.0/16 }"), udp())).toBe(false);
    expect(entryMatches(entry("{ saddr: 10.61.0.1, sport: 5101 }"), udp())).toBe(true);
  });

  test("locations by function name or glob, protocols by L4 or L3 name, IPv6 prefixes", () => {
    expect(entryMatches(entry("{ location: __udp4_lib_rcv }"), udp())).toBe(true);
    expect(entryMatches(entry("{ location: nft_* }"), udp({ location: "nft_do_chain+0x47f [nf_tables]" }))).toBe(true);
    expect(entryMatches(entry("{ location: nft_* }"), udp())).toBe(false);
    expect(entryMatches(entry("{ proto: ipv4 }"), udp())).toBe(true);
    expect(entryMatches(entry("{ daddr: 'fd00:61::/64' }"), udp({ l3: "IPv6", daddr: "fd00:61::2" }))).toBe(true);
    expect(entryMatches(entry("{ daddr: 'fd00:62::/64' }"), udp({ l3: "IPv6", daddr: "fd00:61::2" }))).toBe(false);
  });

  test("a drop without ports or reason matches no port or reason condition", () => {
    expect(entryMatches(entry("{ dport: 1-65535 }"), udp({ proto: "ICMP", sport: null, dport: null }))).toBe(false);
    expect(entryMatches(entry("{ reason: NO_SOCKET }"), udp({ reason: null }))).toBe(false);
  });
});

describe("the verdict", () => {
  test("by level: error and warn fail by default, info never; --fail-on moves the line", () => {
    const gate = new Gate(policy(), reasons);
    gate.add(udp(), () => example, 1);
    gate.add(udp({ reason: "NOT_SPECIFIED", location: "sk_stream_kill_queues+0x5d" }), () => example, 2);
    gate.add(udp({ reason: "SOCKET_CLOSE", location: "unix_release_sock+0x1a" }), () => example, 3);
    const groups = gate.result();
    expect(groups.map((g) => [g.reason, g.level, g.status])).toEqual([
      ["NO_SOCKET", "error", "unexpected"],
      ["NOT_SPECIFIED", "warn", "unexpected"],
      ["SOCKET_CLOSE", "info", "tolerated"],
    ]);
    expect(groups[0]!.why).toBe("level error is at or above the failure level warn (the default), and nothing allows it");
    const strict = new Gate(policy({ failOn: "error", failOnFrom: "--fail-on" }), reasons);
    strict.add(udp({ reason: "NOT_SPECIFIED", location: "tcp_rcv_established+0x20" }), () => example, 1);
    expect(strict.result()[0]).toMatchObject({ status: "tolerated", why: "level warn is below the failure level error (--fail-on)" });
  });

  test("drops of one reason, location, protocol and destination form one group with its count and first packet", () => {
    const gate = new Gate(policy(), reasons);
    const first = { kind: "drop", timeNs: 10 } as DropEvent;
    gate.add(udp(), () => first, 10);
    gate.add(udp({ sport: 5999 }), () => ({ kind: "drop" }) as DropEvent, 30);
    gate.add(udp({ dport: 7102 }), () => example, 20);
    const groups = gate.result();
    expect(groups).toHaveLength(2);
    expect(groups[0]).toMatchObject({ count: 2, firstNs: 10, lastNs: 30, dport: 7101 });
    expect(groups[0]!.example).toBe(first);
    expect(gate.drops).toBe(3);
  });

  test("--allow and expect entries allow; an entry's max, once passed, fails every group it matched", () => {
    const { entries } = loadExpectFile("expect:\n  - { reason: NO_SOCKET, dport: 7101, max: 2, why: on purpose }\n  - { reason: NETFILTER_DROP }\n", "e.yaml", names);
    const gate = new Gate(policy({ allow: ["NOT_SPECIFIED"], expect: entries }), reasons);
    expect(gate.add(udp(), () => example, 1)).toMatchObject({ verdict: "limited", entry: entries[0] });
    expect(gate.add(udp(), () => example, 2).verdict).toBe("limited");
    gate.add(udp({ reason: "NETFILTER_DROP" }), () => example, 3);
    gate.add(udp({ reason: "NOT_SPECIFIED" }), () => example, 4);
    expect(gate.result().map((g) => [g.reason, g.status, g.why])).toEqual([
      ["NO_SOCKET", "allowed", "allowed by e.yaml:2 (2 of at most 2): on purpose"],
      ["NETFILTER_DROP", "allowed", "allowed by e.yaml:3"],
      ["NOT_SPECIFIED", "allowed", "allowed by --allow NOT_SPECIFIED"],
    ]);
    expect(gate.add(udp(), () => example, 5)).toMatchObject({ verdict: "unexpected", entry: entries[0] });
    expect(gate.result()[0]).toMatchObject({ reason: "NO_SOCKET", status: "unexpected", count: 3, why: "3 drops matched e.yaml:2, which allows at most 2" });
  });

  test("kernels without reasons and reasons the knowledge base lacks count as warn", () => {
    const gate = new Gate(policy({ failOn: "error" }), reasons);
    gate.add(udp({ reason: null, location: "tcp_rcv_established+0x20" }), () => example, 1);
    gate.add(udp({ reason: "BRAND_NEW_REASON" }), () => example, 2);
    expect(gate.result().map((g) => [g.reason, g.level, g.status])).toEqual([
      [null, "warn", "tolerated"],
      ["BRAND_NEW_REASON", "warn", "tolerated"],
    ]);
  });

  test("a drop without a precise reason at a known site is judged by the reason the site stands for", () => {
    const gate = new Gate(policy(), reasons);
    gate.add(udp({ reason: null }), () => example, 1);
    gate.add(udp({ reason: null, location: "inet_sock_destruct+0xd1", proto: "ICMP", dport: null }), () => example, 2);
    const [closed, purged] = gate.result();
    expect(closed).toMatchObject({ reason: null, level: "error", status: "unexpected" });
    expect(closed!.summary).toBe("no socket is bound to the destination port (most likely NO_SOCKET, inferred from the location: this kernel gives no reason)");
    expect(purged).toMatchObject({ level: "info", status: "tolerated" });
  });

  test("past the group limit drops are counted, and unexpected ones still fail", () => {
    const gate = new Gate(policy(), reasons);
    for (let i = 0; i < MAX_GROUPS + 5; i++) gate.add(udp({ dport: (i % 60000) + 1, daddr: `10.0.${i >> 8}.${i & 255}` }), () => example, i);
    expect(gate.result()).toHaveLength(MAX_GROUPS);
    expect(gate.overflow).toEqual({ drops: 5, unexpected: 5 });
  });
});
