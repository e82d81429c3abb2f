// skbtrail run's reports: the text for the log, the JSON document against
// the README's schema, JUnit XML against the structure CI systems read
// (xmllint, a real XML parser with XSD validation), GitHub annotations.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { dropReasonsText } from "../../src/common/assets";
import { Gate, loadExpectFile, type GatePolicy } from "../../src/diagnosis/gate";
import { loadDropReasons } from "../../src/diagnosis/knowledge";
import { decodeDrop, type RecordBytes } from "../../src/events/decode";
import { dropFacts } from "../../src/modes/run";
import { githubAnnotations, reportJson, reportJunit, reportText, resultOf, xmlEscape, type RunReport } from "../../src/output/report";
import { colorsFor } from "../../src/output/text";
import { Clock } from "../../src/output/time";
import fixtures from "../fixtures/drops.json";
import { reportSchema, validate } from "../lib/jsonschema";
import { tool } from "../lib/tools";

const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
const clock = new Clock();
const style = { colors: colorsFor(false), clock, date: false, detail: false };

function record(name: keyof typeof fixtures) {
  const u8 = new Uint8Array(Buffer.from(fixtures[name].bytes, "hex"));
  const b: RecordBytes = { u8, u16: new Uint16Array(u8.buffer), u32: new Uint32Array(u8.buffer), i32: new Int32Array(u8.buffer) };
  return decodeDrop(b, 0);
}

/** A run over real drop records: NO_SOCKET twice (unexpected), a NETFILTER_DROP allowed by an expect entry. */
function sampleReport(o: Partial<RunReport> = {}, policy: Partial<GatePolicy> = {}): RunReport {
  const { entries } = loadExpectFile("expect:\n  - { reason: NETFILTER_DROP, why: the firewall test }\n", "ci/expected.yaml", new Set(reasons.keys()));
  const p: GatePolicy = { failOn: "warn", failOnFrom: "the default", allow: [], expect: entries, ...policy };
  const gate = new Gate(p, reasons);
  const udp = record("udp4");
  const icmp = record("icmp4_echo");
  gate.add(dropFacts(udp.pkt, "NO_SOCKET", "__udp4_lib_rcv+0x4bc"), () => udp, udp.timeNs);
  gate.add(dropFacts(udp.pkt, "NO_SOCKET", "__udp4_lib_rcv+0x4bc"), () => udp, udp.timeNs + 1000);
  gate.add(dropFacts(icmp.pkt, "NETFILTER_DROP", "nf_hook_slow+0x9b"), () => icmp, icmp.timeNs);
  const groups = gate.result();
  return {
    command: ["./tests.sh", "--fast"], commandExit: { code: 0, signal: null }, exitCode: 6, policy: p, startedMs: Date.parse("2026-12-01T10:00:00Z"), seconds: 1.5,
    groups, drops: gate.drops, overflow: gate.overflow, lost: 0, unread: 0, ...o,
  };
}

describe("text", () => {
  test("groups with count, first packet, why, explanation and advice; the result with the exit code", () => {
    const text = reportText(sampleReport(), style).join("\n");
    expect(text).toContain("skbtrail run: ./tests.sh --fast exited with status 0 after 1.500 s");
    expect(text).toContain("3 drops seen while it ran, in 2 groups: 1 unexpected, 1 allowed (failure level: warn)");
    expect(text).toContain("[1] UNEXPECTED NO_SOCKET: UDP to 10.62.0.2:7001 at __udp4_lib_rcv+0x4bc, 2 drops (level error)");
    expect(text).toContain("    no socket is bound to the destination port");
    expect(text).toMatch(/first: \[\d+\.\d{6}\] UDP: 10\.62\.0\.1:5001 -> 10\.62\.0\.2:7001 \(on veth1, netns \d+\)/);
    expect(text).toContain("why it fails: level error is at or above the failure level warn (the default), and nothing allows it");
    expect(text).toContain(reasons.get("NO_SOCKET")!.advice);
    expect(text).toContain("[2] allowed NETFILTER_DROP: ICMP to 10.62.0.2 at nf_hook_slow+0x9b, 1 drop (level error)");
    expect(text).toContain("why it passes: allowed by ci/expected.yaml:2: the firewall test");
    expect(text).toMatch(/result: FAILED: 1 unexpected drop group \(exit 6\)$/);
  });

  test("a clean run, a failed command, a killed command", () => {
    const clean = { groups: [], drops: 0, exitCode: 0 };
    expect(reportText(sampleReport(clean), style).join("\n")).toBe(
      "skbtrail run: ./tests.sh --fast exited with status 0 after 1.500 s\nno drops seen while it ran (failure level: warn)\n\nresult: ok: no unexpected drops (exit 0)",
    );
    expect(reportText(sampleReport({ commandExit: { code: 3, signal: null }, exitCode: 3 }), style).at(-1)).toBe(
      "result: FAILED: the command exited with status 3; also 1 unexpected drop group (exit 3)",
    );
    const killed = sampleReport({ ...clean, commandExit: { code: null, signal: "SIGKILL" }, exitCode: 137 });
    expect(reportText(killed, style)[0]).toBe("skbtrail run: ./tests.sh --fast was killed by SIGKILL after 1.500 s");
    expect(resultOf(killed)).toBe("command-killed");
  });
});

describe("JSON", () => {
  test("the document follows the README's schema", async () => {
    const schema = await reportSchema();
    for (const r of [sampleReport(), sampleReport({ groups: [], drops: 0, exitCode: 0, pcap: { file: "d.pcapng", packets: 0, notKept: 0 } }), sampleReport({ commandExit: { code: null, signal: "SIGINT" }, exitCode: 130 })]) {
      const doc = JSON.parse(JSON.stringify(reportJson(r, clock)));
      expect(validate(schema, doc)).toEqual([]);
    }
    const doc = reportJson(sampleReport(), clock) as any;
    expect(doc).toMatchObject({ kind: "run-report", result: "unexpected-drops", exit_code: 6, drops: 3, unexpected_groups: 1, command: ["./tests.sh", "--fast"] });
    expect(doc.groups[0]).toMatchObject({ status: "unexpected", reason: "NO_SOCKET", count: 2, proto: "UDP", daddr: "10.62.0.2", dport: 7001, allowed_by: null });
    expect(doc.groups[0].example).toMatchObject({ kind: "drop", reason: "NO_SOCKET", saddr: "10.62.0.1", sport: 5001 });
    expect(doc.groups[1]).toMatchObject({ status: "allowed", allowed_by: "ci/expected.yaml:2" });
  });

  test("the checker rejects what the schema forbids", async () => {
    const schema = await reportSchema();
    const doc = JSON.parse(JSON.stringify(reportJson(sampleReport(), clock)));
    expect(validate(schema, { ...doc, extra: 1 })).toEqual(["$: unexpected property extra"]);
    expect(validate(schema, { ...doc, result: "fine" })[0]).toMatch(/^\$\.result: "fine" is not one of/);
    const { drops, ...noDrops } = doc;
    void drops;
    expect(validate(schema, noDrops)).toEqual(["$: lacks drops"]);
    doc.groups[0].count = "2";
    expect(validate(schema, doc)).toEqual(['$.groups[0].count: "2" is not of type integer']);
  });
});

describe.skipIf(!tool("xmllint", "libxml2-utils"))("JUnit XML", () => {
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-junit-`);
  const xsd = `${import.meta.dir}/../fixtures/junit.xsd`;
  const check = async (xml: string) => {
    writeFileSync(`${dir}/r.xml`, xml);
    return $`xmllint --noout --schema ${xsd} ${dir}/r.xml`.nothrow().quiet();
  };
  const xpath = async (expr: string) => (await $`xmllint --xpath ${expr} ${dir}/r.xml`.quiet().text()).trim();

  test("valid against the structure CI systems read: a case for the command and one per group, failed when unexpected", async () => {
    const r = await check(reportJunit(sampleReport(), clock));
    expect(r.stderr.toString()).toContain("validates");
    expect(r.exitCode).toBe(0);
    expect(await xpath("string(/testsuites/testsuite/@tests)")).toBe("3");
    expect(await xpath("string(/testsuites/testsuite/@failures)")).toBe("1");
    expect(await xpath("count(//testcase)")).toBe("3");
    expect(await xpath("string(//testcase[1]/@name)")).toBe("command: ./tests.sh --fast");
    expect(await xpath("count(//testcase[1]/failure)")).toBe("0");
    expect(await xpath("string(//testcase[failure]/@name)")).toBe("NO_SOCKET: UDP to 10.62.0.2:7001 at __udp4_lib_rcv+0x4bc (2x)");
    expect(await xpath("string(//testcase/failure/@type)")).toBe("unexpected-drop");
    expect(await xpath("string(//testcase/failure)")).toContain(reasons.get("NO_SOCKET")!.advice);
    expect(await xpath("string(//testcase[3]/system-out)")).toContain("allowed by ci/expected.yaml:2");
  });

  test("a failed command fails its case; a clean run has only the command's, passing", async () => {
    expect((await check(reportJunit(sampleReport({ commandExit: { code: 2, signal: null }, exitCode: 2 }), clock))).exitCode).toBe(0);
    expect(await xpath("string(//testcase[1]/failure/@message)")).toBe("the command exited with status 2");
    expect(await xpath("string(/testsuites/@failures)")).toBe("2");
    expect((await check(reportJunit(sampleReport({ groups: [], drops: 0, exitCode: 0 }), clock))).exitCode).toBe(0);
    expect(await xpath("count(//testcase)")).toBe("1");
    expect(await xpath("count(//failure)")).toBe("0");
  });

  test("text that is not XML is escaped, and the validator rejects a broken file", async () => {
    const r = sampleReport({ command: ["sh", "-c", "echo '<a & \"b\">' \x1b[31m"] });
    expect((await check(reportJunit(r, clock))).exitCode).toBe(0);
    expect(await xpath("string(//testcase[1]/@name)")).toBe(`command: sh -c 'echo '\\''<a & "b">'\\'' \\x1b[31m'`);
    expect(xmlEscape("a<b&\x01")).toBe("a&lt;b&amp;");
    expect((await check("<testsuites><testcase/></testsuites>")).exitCode).not.toBe(0);
  });
});

describe("GitHub annotations", () => {
  test("one ::error per unexpected group, escaped as workflow commands need", () => {
    const lines = githubAnnotations(sampleReport());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^::error title=skbtrail%3A unexpected drop NO_SOCKET::2x NO_SOCKET: UDP to 10\.62\.0\.2:7001 at __udp4_lib_rcv\+0x4bc: no socket is bound/);
    expect(lines[0]).not.toContain("\n");
    expect(githubAnnotations(sampleReport({ groups: [], drops: 0 }))).toEqual([]);
  });
});
