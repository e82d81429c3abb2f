// The line model: one traced hook of a packet, ready for any output (text,
// JSON, diagnosis): its event, the hook's name, and what it means in words,
// next to its line as nettrace does:
//   *ipv4 in chain: FORWARD*  *reason: NO_SOCKET, __udp4_lib_rcv+0x4bc*  *return: 0*
// Netfilter, drops, frees, clones, and the tracepoints' own arguments.
import { hook_flags, hook_phase, tracepoint_id } from "../abi/layout.generated";
import type { HookEvent } from "./decode";
import type { FreeRole } from "./lifecycle";
import { NF_FAMILIES, nfHookName, nfVerdict } from "./netfilter";
import { icmpTypeText } from "./protocols";

const { HOOK_FREE, HOOK_CLONE, HOOK_DROP, HOOK_JOINED } = hook_flags;

/** One traced hook of a packet, ready to print. */
export interface HookLine {
  e: HookEvent;
  name: string;
  notes: string[];
  /** The return event folded into this entry's line. */
  ret?: HookEvent;
  stack?: string[];
}

export interface Namer {
  /** Drop reason name for this kernel's value. */
  reason(value: number): string | undefined;
  /** func+0xoff for a kernel address. */
  symbol(hi: number, lo: number): string;
  /** sk_rst_reason name (6.10+). */
  rstReason(value: number): string | undefined;
}

/** What a normal free means, by what it ended (lifecycle.ts): only the last skb's free ends the packet. */
const FREE_NOTES: Record<FreeRole, string> = {
  packet: "packet is freed (normally)",
  clone: "a clone of the packet is freed (normally); the packet goes on",
  original: "skb is freed (normally); its clone goes on",
};

/** The notes of an entry event, with its return (when merged) folded in. */
export function annotate(e: HookEvent, name: string, n: Namer, ret?: HookEvent, freeRole: FreeRole = "packet"): string[] {
  const notes: string[] = [];
  const T = tracepoint_id;
  if (e.nf) {
    const family = NF_FAMILIES[e.nf.family] ?? `family ${e.nf.family}`;
    if (name === "nf_hook_slow") notes.push(`${family} in chain: ${nfHookName(e.nf.family, e.nf.hook)}`);
    if (e.nf.table) notes.push(`nftables table: ${e.nf.table}, chain: ${e.nf.chain}`);
  }
  // Tracepoints do not see skb_clone: the kernel found this clone by the data it shares.
  if (e.flags & HOOK_JOINED) notes.push("clone of the packet, first seen here");
  if (e.flags & HOOK_DROP) {
    const reason = n.reason(e.reason);
    const where = n.symbol(e.location.hi, e.location.lo);
    notes.push(reason ? `reason: ${reason}, ${where}` : where, "packet is dropped by kernel");
  } else if (e.flags & HOOK_FREE) {
    notes.push(FREE_NOTES[freeRole]);
  }
  if (e.flags & HOOK_CLONE) notes.push(e.skb2Key ? `packet is cloned (${e.skb2})` : "clone failed");
  switch (e.tracepoint) {
    case T.TP_NET_DEV_XMIT:
      notes.push(e.info[0] === 0 ? "skb is successfully sent to the NIC driver" : `driver returned ${e.info[0]}`);
      break;
    case T.TP_TCP_SEND_RESET: {
      const reason = e.info[0] >= 0 ? n.rstReason(e.info[0]) : undefined;
      notes.push(reason ? `TCP reset sent (reason: ${reason})` : "TCP reset sent");
      break;
    }
    case T.TP_ICMP_SEND:
      notes.push(`ICMP ${icmpTypeText(false, e.info[0], e.info[1])} sent`);
      break;
    case T.TP_UDP_FAIL_QUEUE_RCV_SKB:
      notes.push(`UDP socket could not queue the packet (error ${e.info[0]})`);
      break;
    case T.TP_SOCK_RCVQUEUE_FULL:
      notes.push("socket receive queue is full");
      break;
    case T.TP_TCP_RETRANSMIT_SKB:
      notes.push("TCP retransmission");
      break;
    case T.TP_TCP_RECEIVE_RESET:
      notes.push("TCP reset received");
      break;
    case T.TP_TCP_CONG_STATE_SET:
    case T.TP_TCP_RETRANSMIT_TIMER:
      notes.push("TCP retransmission timeout");
      break;
    case T.TP_TCP_BAD_CSUM:
      notes.push("bad TCP checksum");
      break;
    case T.TP_SKB_COPY_DATAGRAM_IOVEC:
      notes.push(`${e.info[0]} bytes delivered to user space`);
      break;
  }
  const r = ret ?? (e.phase === hook_phase.PHASE_RETURN ? e : undefined);
  if (r) notes.push(...returnNotes(r, name));
  return notes;
}

function returnNotes(r: HookEvent, name: string): string[] {
  if (r.flags & HOOK_CLONE) return [];
  if (name === "nf_hook_slow") return r.retval < 0 ? ["packet is dropped by netfilter (NF_DROP)"] : [];
  if (name === "nft_do_chain") {
    const verdict = nfVerdict(r.retval);
    return verdict === "NF_DROP" ? ["packet is dropped by nftables (NF_DROP)"] : verdict === "NF_ACCEPT" ? ["packet is accepted"] : [verdict];
  }
  return [`return: ${r.retvalWide ?? r.retval}`];
}

/** Hook lines of a packet's events: each return event folded into its entry's line. */
export function linesOf(events: HookEvent[], toLine: (e: HookEvent, ret?: HookEvent) => HookLine): HookLine[] {
  const lines: HookLine[] = [];
  const openEntries = new Map<string, number>(); // func/tracepoint/skb → index of its latest entry line
  for (const e of events) {
    const key = `${e.func}:${e.tracepoint}:${e.meta.skbKey}`;
    if (e.phase === hook_phase.PHASE_RETURN && !(e.flags & HOOK_CLONE)) {
      const at = openEntries.get(key);
      if (at !== undefined) {
        lines[at] = toLine(lines[at]!.e, e);
        openEntries.delete(key);
        continue;
      }
    }
    if (e.phase !== hook_phase.PHASE_RETURN) openEntries.set(key, lines.length);
    lines.push(toLine(e));
  }
  return lines;
}

/**
 * --latency-show: each line's delay since the packet's previous line (0 for
 * the first), and the total from the first line to the last, in ns. Lines
 * are in time order (Lifecycle sorts its events); a return folded into a
 * line does not move it.
 */
export function lineDelays(lines: HookLine[]): { delays: number[]; totalNs: number } {
  const delays = lines.map((l, i) => (i === 0 ? 0 : l.e.timeNs - lines[i - 1]!.e.timeNs));
  const totalNs = lines.length ? lines[lines.length - 1]!.e.timeNs - lines[0]!.e.timeNs : 0;
  return { delays, totalNs };
}
