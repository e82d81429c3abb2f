// Human output in nettrace's style, so its users (and their greps) feel at home:
//   [153.345912] UDP: 127.0.0.1:55033 -> 127.0.0.1:9997 *reason: NO_SOCKET, __udp4_lib_rcv+0x9a2* *packet is dropped by kernel*
import { createColors } from "picocolors";
import type { DropEvent, SkbMeta } from "../decode";
import { packetSummary } from "./packet";
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
