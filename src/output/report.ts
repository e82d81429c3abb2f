// skbtrail run's report, in each form a pipeline reads: text for the log,
// one JSON document (schema in the README, "CI"), JUnit XML for CI
// dashboards (one test case per drop group, failed when unexpected, and one
// for the command itself), and GitHub Actions annotations. Presentation only:
// the policy and the groups come from src/diagnosis/gate.ts.
import { hostname } from "node:os";
import { VERSION } from "../common/version";
import type { DropGroup, GatePolicy } from "../diagnosis/gate";
import { dropObject } from "./json";
import { packetSummary, type TextStyle } from "./text";
import type { Clock } from "./time";

/** Everything a report says about one run. */
export interface RunReport {
  command: string[];
  /** How the command ended: its exit code, or the signal that killed it; both null when it never ran. */
  commandExit: { code: number | null; signal: string | null };
  /** skbtrail's own exit code (README, "Exit codes"). */
  exitCode: number;
  policy: GatePolicy;
  /** When tracing began (epoch ms) and how long the command ran. */
  startedMs: number;
  seconds: number;
  groups: DropGroup[];
  drops: number;
  /** Drops of groups past the listing limit. */
  overflow: { drops: number; unexpected: number };
  /** Records the ring could not take (the counts are then lower bounds), and records left unread. */
  lost: number;
  unread: number;
  pcap?: { file: string; packets: number; notKept: number };
}

export type RunResult = "ok" | "unexpected-drops" | "command-failed" | "command-killed" | "not-run";

export function resultOf(r: RunReport): RunResult {
  if (r.commandExit.signal) return "command-killed";
  if (r.commandExit.code === null) return "not-run";
  if (r.commandExit.code !== 0) return "command-failed";
  return unexpectedCount(r) ? "unexpected-drops" : "ok";
}

/** Unexpected groups, those past the listing limit counted as one when they have unexpected drops. */
export function unexpectedCount(r: RunReport): number {
  return r.groups.filter((g) => g.status === "unexpected").length + (r.overflow.unexpected ? 1 : 0);
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** "UDP to 10.0.0.2:53", "ICMP to 10.0.0.2", "ARP". */
export function destination(g: DropGroup): string {
  if (g.daddr === null) return g.proto;
  const host = g.daddr.includes(":") && g.dport !== null ? `[${g.daddr}]` : g.daddr;
  return `${g.proto} to ${host}${g.dport !== null ? `:${g.dport}` : ""}`;
}

/** One line that names the group: "NO_SOCKET: UDP to 10.0.0.2:53 at __udp4_lib_rcv+0x4bc". */
export function groupTitle(g: DropGroup): string {
  return `${g.reason ?? "drop"}: ${destination(g)} at ${g.location}`;
}

/** The command as a shell would take it back, control characters shown as \xNN. */
export function commandText(command: string[]): string {
  return command
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))
    .join(" ")
    .replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function commandEnd(r: RunReport): string {
  if (r.commandExit.signal) return `was killed by ${r.commandExit.signal}`;
  if (r.commandExit.code === null) return "did not run";
  return `exited with status ${r.commandExit.code}`;
}

function exampleLine(g: DropGroup, clock: Clock, date: boolean): string {
  const e = g.example;
  const where = [e.meta.ifname && `on ${e.meta.ifname}`, e.meta.netns && `netns ${e.meta.netns}`].filter(Boolean).join(", ");
  return `[${clock.stamp(e.timeNs, date)}] ${packetSummary(e.pkt)}${where ? ` (${where})` : ""}`;
}

const STATUS_WORDS = { unexpected: "UNEXPECTED", allowed: "allowed", tolerated: "tolerated" } as const;

/** The report as text lines, for the log. */
export function reportText(r: RunReport, s: TextStyle): string[] {
  const c = s.colors;
  const lines = [`skbtrail run: ${commandText(r.command)} ${commandEnd(r)} after ${r.seconds.toFixed(3)} s`];
  const unexpected = unexpectedCount(r);
  if (!r.drops) lines.push(`no drops seen while it ran (failure level: ${r.policy.failOn})`);
  else {
    const counts = (["unexpected", "allowed", "tolerated"] as const).map((st) => [st, r.groups.filter((g) => g.status === st).length] as const).filter(([, n]) => n);
    lines.push(`${plural(r.drops, "drop")} seen while it ran, in ${plural(r.groups.length, "group")}: ${counts.map(([st, n]) => `${n} ${st}`).join(", ")} (failure level: ${r.policy.failOn})`);
  }
  if (r.lost) lines.push(c.yellow(`${r.lost} events were lost (ring buffer full): the counts below are lower bounds; narrow the filters`));
  r.groups.forEach((g, i) => {
    const word = g.status === "unexpected" ? c.red(STATUS_WORDS[g.status]) : STATUS_WORDS[g.status];
    lines.push("", `[${i + 1}] ${word} ${groupTitle(g)}, ${plural(g.count, "drop")} (level ${g.level})`);
    lines.push(`    ${g.summary}`);
    lines.push(`    first: ${exampleLine(g, s.clock, s.date)}`);
    lines.push(`    ${g.status === "unexpected" ? "why it fails" : "why it passes"}: ${g.why}`);
    if (g.status !== "tolerated") {
      lines.push("    explanation:", `\t${g.explanation}`);
      lines.push("    fix advice:", `\t${c.green(g.advice)}`);
    }
    for (const f of g.findings ?? []) {
      if (f.rule === "drop-reason" && !f.details?.length) continue; // the same as the explanation above
      lines.push(`    finding (${f.rule}, ${f.level}): ${f.message}`);
      for (const d of f.details ?? []) lines.push(d.startsWith("\t") ? `    ${d}` : `      ${d}`);
      if (f.advice && f.advice !== g.advice) lines.push(`      advice: ${f.advice}`);
    }
  });
  if (r.overflow.drops) lines.push("", `${plural(r.overflow.drops, "more drop")} in groups past the first ${r.groups.length} (not listed), ${r.overflow.unexpected} of them unexpected`);
  if (r.pcap) lines.push("", `pcap of the unexpected drops: ${r.pcap.file} (${plural(r.pcap.packets, "packet")}${r.pcap.notKept ? `, ${r.pcap.notKept} not kept` : ""})`);
  const result = resultOf(r);
  const verdict =
    result === "ok"
      ? c.green("ok: no unexpected drops")
      : result === "unexpected-drops"
        ? c.red(`FAILED: ${plural(unexpected, "unexpected drop group")}`)
        : result === "not-run"
          ? c.red("FAILED: the command did not run")
          : c.red(`FAILED: the command ${commandEnd(r)}${unexpected ? `; also ${plural(unexpected, "unexpected drop group")}` : ""}`);
  lines.push("", `result: ${verdict} (exit ${r.exitCode})`);
  return lines;
}

/** The report as one JSON document (schema: README, "CI"). */
export function reportJson(r: RunReport, clock: Clock): Record<string, unknown> {
  return {
    kind: "run-report",
    skbtrail: VERSION,
    command: r.command,
    command_exit: r.commandExit,
    exit_code: r.exitCode,
    result: resultOf(r),
    fail_on: r.policy.failOn,
    started: new Date(r.startedMs).toISOString(),
    seconds: Number(r.seconds.toFixed(3)),
    drops: r.drops,
    unexpected_groups: unexpectedCount(r),
    lost: r.lost,
    unread: r.unread,
    groups: r.groups.map((g) => ({
      status: g.status,
      why: g.why,
      reason: g.reason,
      level: g.level,
      summary: g.summary,
      location: g.location,
      proto: g.proto,
      daddr: g.daddr,
      dport: g.dport,
      count: g.count,
      first: clock.iso(g.firstNs),
      last: clock.iso(g.lastNs),
      allowed_by: g.status !== "allowed" ? null : g.entry ? g.entry.where : "--allow",
      explanation: g.explanation,
      advice: g.advice,
      example: dropObject(g.example, g.reason ?? undefined, g.location, clock),
      findings: g.findings ?? [],
    })),
    groups_not_listed: r.overflow,
    pcap: r.pcap ? { file: r.pcap.file, packets: r.pcap.packets, not_kept: r.pcap.notKept } : null,
  };
}

const XML_INVALID = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g;
export function xmlEscape(text: string): string {
  return text
    .replace(XML_INVALID, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

function groupDetail(g: DropGroup, clock: Clock): string {
  const lines = [`${groupTitle(g)}: ${g.count} drops (level ${g.level})`, g.summary, `first: ${exampleLine(g, clock, false)}`, g.why, `explanation: ${g.explanation}`, `advice: ${g.advice}`];
  for (const f of g.findings ?? []) lines.push(`finding (${f.rule}): ${f.message}`, ...(f.details ?? []).map((d) => `  ${d.trim()}`), ...(f.advice ? [`  advice: ${f.advice}`] : []));
  return lines.join("\n");
}

/**
 * JUnit XML as Jenkins, GitLab, GitHub test reporters and others read it:
 * <testsuites> → one <testsuite> → a <testcase> for the command and one per
 * drop group, with <failure message type> when it fails.
 */
export function reportJunit(r: RunReport, clock: Clock): string {
  const a = (text: string) => xmlEscape(text);
  const cases: string[] = [];
  const cmd = commandText(r.command);
  const cmdFailed = r.commandExit.code !== 0;
  cases.push(
    `    <testcase classname="skbtrail.run" name="${a(`command: ${cmd}`)}" time="${r.seconds.toFixed(3)}">` +
      (cmdFailed ? `\n      <failure message="${a(`the command ${commandEnd(r)}`)}" type="command-failed"/>\n    ` : "") +
      `</testcase>`,
  );
  for (const g of r.groups) {
    const name = a(`${groupTitle(g)} (${g.count}x)`);
    const detail = a(groupDetail(g, clock));
    if (g.status === "unexpected")
      cases.push(`    <testcase classname="skbtrail.run.drops" name="${name}" time="0">\n      <failure message="${a(`${g.summary}: ${g.why}`)}" type="unexpected-drop">${detail}</failure>\n    </testcase>`);
    else cases.push(`    <testcase classname="skbtrail.run.drops" name="${name}" time="0">\n      <system-out>${detail}</system-out>\n    </testcase>`);
  }
  if (r.overflow.drops)
    cases.push(
      `    <testcase classname="skbtrail.run.drops" name="${a(`${r.overflow.drops} drops in groups not listed`)}" time="0">` +
        (r.overflow.unexpected ? `\n      <failure message="${a(`${r.overflow.unexpected} unexpected drops in groups not listed`)}" type="unexpected-drop"/>\n    ` : "") +
        `</testcase>`,
    );
  const failures = (cmdFailed ? 1 : 0) + unexpectedCount(r);
  const tests = cases.length;
  const time = r.seconds.toFixed(3);
  const stamp = new Date(r.startedMs).toISOString().replace(/\.\d+Z$/, "");
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="skbtrail run" tests="${tests}" failures="${failures}" errors="0" time="${time}">`,
    `  <testsuite name="${a(`skbtrail run: ${cmd}`)}" tests="${tests}" failures="${failures}" errors="0" skipped="0" time="${time}" timestamp="${stamp}" hostname="${a(hostname())}">`,
    `    <properties>`,
    `      <property name="skbtrail.version" value="${a(VERSION)}"/>`,
    `      <property name="skbtrail.exit_code" value="${r.exitCode}"/>`,
    `      <property name="skbtrail.fail_on" value="${r.policy.failOn}"/>`,
    `      <property name="skbtrail.drops" value="${r.drops}"/>`,
    `      <property name="skbtrail.lost" value="${r.lost}"/>`,
    `    </properties>`,
    ...cases,
    `  </testsuite>`,
    `</testsuites>`,
    "",
  ].join("\n");
}

// GitHub's workflow commands: data escapes %, CR, LF; properties also : and ,.
const ghData = (s: string) => s.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
const ghProperty = (s: string) => ghData(s).replace(/:/g, "%3A").replace(/,/g, "%2C");

/** GitHub Actions: one ::error annotation per unexpected group (and one for a failed command). */
export function githubAnnotations(r: RunReport): string[] {
  const lines = r.groups
    .filter((g) => g.status === "unexpected")
    .map((g) => `::error title=${ghProperty(`skbtrail: unexpected drop ${g.reason ?? ""}`.trim())}::${ghData(`${g.count}x ${groupTitle(g)}: ${g.summary}. ${g.why}. Advice: ${g.advice}`)}`);
  if (r.overflow.unexpected) lines.push(`::error title=${ghProperty("skbtrail: unexpected drops")}::${ghData(`${r.overflow.unexpected} unexpected drops in groups not listed in the report`)}`);
  return lines;
}
