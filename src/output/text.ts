// Human output in nettrace's style, so its users (and their greps) feel at home:
//   [153.345912] UDP: 127.0.0.1:55033 -> 127.0.0.1:9997 *reason: NO_SOCKET, __udp4_lib_rcv+0x9a2* *packet is dropped by kernel*
import { createColors } from "picocolors";
import type { DropEvent, HookEvent, SkbMeta } from "../events/decode";
import { packetSummary } from "../events/protocols";
import type { Finding } from "../diagnosis/rules";
import type { Clock } from "./time";

export type Colors = ReturnType<typeof createColors>;

/** Colors only on a terminal, and never when NO_COLOR is set. */
export function colorsFor(isTTY: boolean): Colors {
  return createColors(isTTY && !("NO_COLOR" in process.env));
}

export interface TextStyle {
  colors: Colors;
  clock: Clock;
  date: boolean;
  detail: boolean;
}

/** "[cpu:1  ][lo        ][pid:1234   ][ping            ][ns:4026531840] " for --detail. */
export function detailPrefix(cpu: number, m: SkbMeta): string {
  return `[cpu:${String(cpu).padEnd(3)}][${(m.ifname || "-").padEnd(10)}][pid:${String(m.pid).padEnd(7)}][${m.comm.padEnd(16)}][ns:${m.netns}] `;
}

export function dropLine(e: DropEvent, reason: string | undefined, location: string, s: TextStyle): string {
  const c = s.colors;
  const where = reason ? `reason: ${c.red(reason)}, ${location}` : location;
  const detail = s.detail ? `[${e.meta.skb}]${detailPrefix(e.cpu, e.meta)}` : "";
  return `[${s.clock.stamp(e.timeNs, s.date)}] ${detail}${packetSummary(e.pkt)} *${where}* ${c.yellow("*packet is dropped by kernel*")}`;
}

export function stackLines(frames: string[]): string[] {
  return ["Call Stack:", ...frames.map((f) => `    -> ${f}`)];
}

/** One traced hook of a packet, ready to print. */
export interface HookLine {
  e: HookEvent;
  name: string;
  notes: string[];
  /** The return event folded into this entry's line. */
  ret?: HookEvent;
  stack?: string[];
  stackId?: number;
}

/** "[153.345912] [ip_rcv              ] UDP: … *note*" (nettrace's layout). */
export function hookLine(l: HookLine, s: TextStyle): string {
  const c = s.colors;
  const detail = s.detail ? `[${l.e.meta.skb}]` : "";
  const where = s.detail ? `[${l.name.padEnd(20)}]${detailPrefix(l.e.cpu, l.e.meta)}` : `[${l.name.padEnd(20)}] `;
  const notes = l.notes.map((n) => (/dropped|reset sent|error|full|bad /.test(n) ? c.red(`*${n}*`) : c.yellow(`*${n}*`))).join(" ");
  return `[${s.clock.stamp(l.e.timeNs, s.date)}] ${detail}${where}${packetSummary(l.e.pkt)}${notes ? ` ${notes}` : ""}`;
}

export function contextHeader(skbs: string[]): string {
  return `***************** ${skbs.join(",")} ***************`;
}

const LEVEL_WORDS = { info: "INFO", warn: "WARNING", error: "ERROR" } as const;

/** nettrace's ANALYSIS RESULT block. */
export function analysisLines(findings: Finding[], s: TextStyle): string[] {
  const c = s.colors;
  const lines = ["---------------- ANALYSIS RESULT ---------------------"];
  findings.forEach((f, i) => {
    const word = LEVEL_WORDS[f.level];
    const colored = f.level === "error" ? c.red(word) : f.level === "warn" ? c.yellow(word) : c.cyan(word);
    lines.push(`[${i + 1}] ${colored} happens in ${f.hook}${f.group ? `(${f.group})` : ""}:`, `\t${f.message}`);
    if (f.explanation) lines.push(`\t${f.explanation}`);
    if (f.location) lines.push("    location:", `\t${f.location}`);
    if (f.reason) lines.push("    drop reason:", `\t${f.reason}`);
    if (f.details?.length) lines.push(...f.details.map((d) => (d.startsWith("\t") ? d : `    ${d}`)));
    if (f.advice) lines.push("    fix advice:", `\t${c.green(f.advice)}`);
    lines.push("");
  });
  lines.push("analysis finished!");
  return lines;
}
