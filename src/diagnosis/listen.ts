// --sock --diag: listen-queue overflows. When a listener's accept queue is
// full the kernel drops the SYN (or the handshake's last ACK) without a
// tracepoint or a drop reason that says so (the SYN is consumed quietly;
// only 6.10+ gives the ACK the reason TCP_LISTEN_OVERFLOW). What every
// kernel does is count it per network namespace: TcpExt ListenOverflows in
// /proc/net/netstat. So the counters of every namespace a process lives in
// are read when tracing starts and when it stops; a namespace whose count
// grew gets a finding under each of its listeners that still has
// connections waiting to be accepted (/proc/PID/net/tcp{,6}: a listener's
// rx_queue is its accept queue), or one for the namespace when none has.
// A namespace created while tracing (or with no process at the start) has
// no baseline and is left out rather than blamed for older overflows.
// Where --sock has function hooks, tcp_conn_request shows each SYN a full
// queue drops, with its listener: those listeners get an exact finding of
// their own, and the namespace's count less those SYNs is judged as above.
// Client connections this run saw go unanswered (their SYNs sent again, never
// established) to a listener that overflowed are named in its finding: the
// two ends of one cause, when both hosts are traced.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { inCidr } from "../common/ip";
import type { Filter } from "../bpf/config";
import { formatIPv4, formatIPv6, type Packet } from "../events/decode";
import { acceptQueueFull, healthyConnection, type ConnectionHealth, type SockEvent } from "../events/sock";
import { type ConnectionFacts, judgeConnection, type ConnectionVerdict } from "./connections";
import type { Rule } from "./knowledge";

/** Namespaces looked at, at most (bounded whatever the number of containers). */
const MAX_NAMESPACES = 4096;
/** Unanswered client connections kept for the listeners' findings, and named in one finding, at most. */
const MAX_UNANSWERED = 1024;
const UNANSWERED_NAMED = 3;
/** Listeners seen dropping SYNs, kept at most. */
const MAX_FULL_LISTENERS = 4096;
const TCP_LISTEN = 0x0a;

/** The network namespaces processes live in: inode → one process in it. */
function namespaceProcesses(): Map<number, string> {
  const out = new Map<number, string>();
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || out.size >= MAX_NAMESPACES) continue;
    try {
      const ino = statSync(`/proc/${pid}/ns/net`).ino;
      if (!out.has(ino)) out.set(ino, pid);
    } catch {
      // the process went away, or is a kernel thread without one
    }
  }
  return out;
}

/** TcpExt ListenOverflows from a namespace's /proc/net/netstat; undefined when it is not there. */
export function listenOverflowCount(netstat: string): number | undefined {
  const lines = netstat.split("\n").filter((l) => l.startsWith("TcpExt:"));
  const names = lines[0]?.split(/\s+/);
  const values = lines[1]?.split(/\s+/);
  const i = names?.indexOf("ListenOverflows") ?? -1;
  const v = i > 0 ? Number(values?.[i]) : NaN;
  return Number.isFinite(v) ? v : undefined;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return undefined;
  }
}

export interface Listener {
  addr: string;
  port: number;
  family: 4 | 6;
  /** Connections waiting to be accepted. */
  queued: number;
}

/** /proc/net/tcp's address: the address as hex words in the kernel's byte order (little-endian here), then the port. */
function procAddress(text: string): { addr: string; port: number } {
  const [hex, port] = text.split(":");
  const bytes = Uint8Array.from([...hex!.matchAll(/.{8}/g)].flatMap((w) => [6, 4, 2, 0].map((o) => parseInt(w[0].slice(o, o + 2), 16))));
  return { addr: bytes.length === 4 ? formatIPv4(bytes, 0) : formatIPv6(bytes, 0), port: parseInt(port!, 16) };
}

/** Listening sockets with connections waiting to be accepted, from /proc/net/tcp or tcp6's text. */
export function waitingListeners(table: string, family: 4 | 6): Listener[] {
  const out: Listener[] = [];
  for (const line of table.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || parseInt(f[3]!, 16) !== TCP_LISTEN) continue;
    const queued = parseInt(f[4]!.split(":")[1]!, 16);
    if (queued > 0) out.push({ ...procAddress(f[1]!), family, queued });
  }
  return out;
}

/** Whether a listener is one the filters keep: its port is each port asked for, its address in each prefix (a wildcard listener is in all). */
function listenerKept(l: Listener, f: Filter): boolean {
  for (const port of [f.port, f.sport, f.dport]) if (port !== undefined && port !== l.port) return false;
  const wildcard = l.addr === "0.0.0.0" || l.addr === "::";
  for (const a of [f.addr, f.saddr, f.daddr]) if (a && !wildcard && (a.family !== l.family || !inCidr(l.addr, a))) return false;
  return true;
}

/** Whether a client's connection went to this listener: its port, and its address unless the listener takes any. */
function toListener(p: Packet, l: Listener): boolean {
  const wildcard = l.addr === "0.0.0.0" || l.addr === "::";
  return p.dport === l.port && (p.l3 === 0x86dd) === (l.family === 6) && (wildcard || p.daddr === l.addr);
}

function connectionText(p: Packet): string {
  const at = (addr: string, port: number) => (p.l3 === 0x86dd ? `[${addr}]:${port}` : `${addr}:${port}`);
  return `${at(p.saddr, p.sport)} -> ${at(p.daddr, p.dport)}`;
}

function listenerPacket(l: Listener | undefined): Packet {
  const any = !l || l.family === 4 ? "0.0.0.0" : "::";
  return {
    l3: l?.family === 6 ? 0x86dd : 0x0800, l4: 6, parsed: 0, saddr: l?.addr ?? any, daddr: any, sport: l?.port ?? 0, dport: 0,
    tcpFlags: 0, tcpSeq: 0, tcpAck: 0, ipLen: 0, icmpType: 0, icmpCode: 0, icmpId: 0, icmpSeq: 0, arpOp: 0, vlan: 0, ttl: 0, skFamily: 0, skType: 0,
  };
}

/** A listener seen dropping SYNs for its full queue (tcp_conn_request). */
interface FullListener {
  netns: number;
  listener: Listener;
  syns: number;
  /** Its queue and backlog at the last drop. */
  queued: number;
  backlog: number;
}

/** The ListenOverflows counters when tracing started, and the findings when it stops. */
export class ListenQueues {
  private readonly before = new Map<number, number>();
  private readonly unanswered: Packet[] = [];
  /** By namespace and listener socket address. */
  private readonly full = new Map<string, FullListener>();

  /** `netns`: the only namespace the filters keep, if they name one. */
  constructor(
    private readonly rules: Rule[],
    private readonly filter: Filter,
    private readonly netns: number | undefined,
  ) {}

  private namespaces(): [number, string][] {
    return [...namespaceProcesses()].filter(([ino]) => this.netns === undefined || ino === this.netns);
  }

  start(): void {
    if (this.filter.proto?.l4 !== undefined && this.filter.proto.l4 !== 6) return;
    for (const [ino, pid] of this.namespaces()) {
      const n = listenOverflowCount(readText(`/proc/${pid}/net/netstat`) ?? "");
      if (n !== undefined) this.before.set(ino, n);
    }
  }

  /** A client connection's verdict, as it is shown: kept when its SYNs went unanswered. */
  noteConnection(f: ConnectionFacts): void {
    if (f.listening || f.health.established || !f.health.synRetransmits || f.pkt.l4 !== 6 || this.unanswered.length >= MAX_UNANSWERED) return;
    this.unanswered.push(f.pkt);
  }

  /** A socket event: a SYN dropped by a full listener (tcp_conn_request) is counted for it. */
  noteEvent(e: SockEvent): void {
    if (e.fn !== "tcp_conn_request" || !acceptQueueFull(e)) return;
    const key = `${e.netns}:${e.skHex}`;
    let l = this.full.get(key);
    if (!l) {
      if (this.full.size >= MAX_FULL_LISTENERS) return;
      const listener: Listener = { addr: e.pkt.saddr, port: e.pkt.sport, family: e.pkt.l3 === 0x86dd ? 6 : 4, queued: 0 };
      l = { netns: e.netns, listener, syns: 0, queued: 0, backlog: 0 };
      this.full.set(key, l);
    }
    l.syns++;
    l.queued = e.acceptQueue;
    l.backlog = e.acceptQueueMax;
  }

  /**
   * A verdict per listener seen dropping SYNs; then, per namespace whose count grew by more than those,
   * one per listener still holding connections (one for the namespace when none is).
   */
  verdicts(startNs: number): ConnectionVerdict[] {
    const out: ConnectionVerdict[] = [];
    const judge = (l: Listener | undefined, netns: number, health: ConnectionHealth) => {
      const facts = { pkt: listenerPacket(l), netns, startNs, end: null, resetReason: null, retransmits: 0, health, listening: true };
      const findings = judgeConnection(this.rules, facts);
      const clients = l ? this.unanswered.filter((p) => toListener(p, l)) : [];
      if (clients.length) {
        const named = clients.slice(0, UNANSWERED_NAMED).map(connectionText).join(", ");
        const more = clients.length > UNANSWERED_NAMED ? ` and ${clients.length - UNANSWERED_NAMED} more` : "";
        for (const f of findings) f.message += `; among them the SYNs of ${clients.length === 1 ? "the connection" : `the ${clients.length} connections`} this run saw go unanswered: ${named}${more}`;
      }
      if (findings.length) out.push({ facts, findings });
    };
    const seen = [...this.full.values()];
    for (const l of seen) judge(l.listener, l.netns, { ...healthyConnection(), listenOverflows: l.syns, acceptQueue: l.queued, queueFullSyns: l.syns, backlog: l.backlog });
    for (const [ino, pid] of this.namespaces()) {
      const before = this.before.get(ino);
      const now = listenOverflowCount(readText(`/proc/${pid}/net/netstat`) ?? "");
      const seenHere = seen.filter((l) => l.netns === ino);
      const unexplained = now === undefined || before === undefined ? 0 : now - before - seenHere.reduce((n, l) => n + l.syns, 0);
      if (unexplained <= 0) continue;
      const waiting = [
        ...waitingListeners(readText(`/proc/${pid}/net/tcp`) ?? "", 4),
        ...waitingListeners(readText(`/proc/${pid}/net/tcp6`) ?? "", 6),
      ].filter((w) => !seenHere.some((l) => l.listener.port === w.port && l.listener.addr === w.addr));
      // Listeners still holding connections are the ones that overflowed: those the filters keep, or none
      // when only others hold some. Without any, the namespace's finding (the kernel does not say whose).
      const kept = waiting.filter((l) => listenerKept(l, this.filter));
      if (waiting.length && !kept.length) continue;
      for (const l of kept.length ? kept : [undefined]) judge(l, ino, { ...healthyConnection(), listenOverflows: unexplained, acceptQueue: l?.queued ?? 0 });
    }
    return out;
  }
}
