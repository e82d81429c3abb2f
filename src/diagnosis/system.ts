// What --diag asks the running system about a dropped packet (the nftables
// ruleset, the route to its destination) is asked in the packet's own
// network namespace, by the standard commands (nft, ip), in the background,
// each bounded by a timeout and reused for a second: a flood of drops runs
// a command once a second, and a slow or missing command never holds the
// output for long.
import { existsSync, readdirSync, statSync } from "node:fs";

/** A path that enters the network namespace with this inode (/run/netns/…, or a process's). */
export function netnsPath(inode: number): string | undefined {
  const candidates: string[] = [];
  if (existsSync("/run/netns")) candidates.push(...readdirSync("/run/netns").map((n) => `/run/netns/${n}`));
  candidates.push("/proc/self/ns/net");
  for (const pid of readdirSync("/proc")) if (/^\d+$/.test(pid)) candidates.push(`/proc/${pid}/ns/net`);
  for (const path of candidates) {
    try {
      if (statSync(path).ino === inode) return path;
    } catch {
      // the process went away
    }
  }
  return undefined;
}

/** How long one command may take before the finding goes out without it (nft takes seconds on a slow or emulated machine). */
const COMMAND_TIMEOUT_MS = 5000;
/** A read is reused this long. */
const FRESH_MS = 1000;
/** Results kept at most (the oldest go first): memory stays bounded whatever the traffic. */
const MAX_ENTRIES = 1024;

/** Runs a command in the namespace at `ns` (a netnsPath); its stdout, or undefined if it fails or is too slow. */
export async function runInNetns(ns: string, argv: string[]): Promise<string | undefined> {
  let proc;
  try {
    proc = Bun.spawn(["nsenter", `--net=${ns}`, ...argv], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  } catch {
    return undefined; // nsenter missing
  }
  const timer = setTimeout(() => proc.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  try {
    const text = await new Response(proc.stdout).text();
    return (await proc.exited) === 0 ? text : undefined;
  } finally {
    clearTimeout(timer);
  }
}

type Entry<T> = { readAt: number; value?: T; reading?: Promise<void> };

/** Results of a slow read per key, read in the background and kept for a second. */
export class BackgroundReads<K, T> {
  private readonly entries = new Map<string, Entry<T>>();

  constructor(
    private readonly read: (key: K) => Promise<T | undefined>,
    private readonly keyOf: (key: K) => string = String,
  ) {}

  /** Starts reading unless a fresh result is here or on its way. */
  want(key: K): void {
    const now = performance.now();
    const e = this.entries.get(this.keyOf(key));
    if (e && (e.reading || now - e.readAt < FRESH_MS)) return;
    const entry: Entry<T> = { readAt: now, value: e?.value };
    entry.reading = this.read(key).then(
      (v) => void Object.assign(entry, { value: v, readAt: performance.now(), reading: undefined }),
      () => void Object.assign(entry, { value: undefined, readAt: performance.now(), reading: undefined }),
    );
    this.entries.delete(this.keyOf(key)); // re-inserted last: the Map's order is the age
    this.entries.set(this.keyOf(key), entry);
    for (const [k, old] of this.entries) {
      if (this.entries.size <= MAX_ENTRIES) break;
      if (!old.reading) this.entries.delete(k);
    }
  }

  /** The result if a read finished ({ value: undefined } when it failed); undefined while reading. */
  get(key: K): { value?: T } | undefined {
    const e = this.entries.get(this.keyOf(key));
    return !e || e.reading ? undefined : { value: e.value };
  }

  /** Resolves when no read is in progress. */
  async settled(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => e.reading));
  }
}
