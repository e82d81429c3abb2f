// The life of one BPF object, as libbpf-bootstrap does it: open →
// configure → load → attach → read the ring → tear down in reverse. Links
// are owned by file descriptors (never pinned), so even a crash leaves
// nothing attached.
import { readFileSync, statSync } from "node:fs";
import { BpfObject, LibbpfError, loadLibbpf, possibleCpus, setLibbpfDebug } from "../../ffi/libbpf";
import { RingBuffer, type RecordHandler } from "../../ffi/ringbuf";
import { writeConfig, type ConfigInput } from "./config";
import { ExitCode, SkbtrailError } from "../common/errors";
import { checkPrivileges, ensureTracefs, loadKernelBtf } from "../kernel/environment";
import type { Btf } from "../kernel/btf";
import { Symbolizer } from "../kernel/kallsyms";
import { stat_index } from "../abi/layout.generated";
import { bpfObjectPath, probeObjectPath } from "../common/assets";

/** How long one wait on the ring may block: bounds the delay of a lone event and of Ctrl-C. */
const POLL_MS = 50;

export interface KernelInfo {
  btf: Btf;
  /** Things worth saying with -v (e.g. tracefs was mounted). */
  notes: string[];
  bpfObject: Uint8Array;
  probeObject: Uint8Array;
}

/** Checks privileges, loads libbpf and reads the running kernel's BTF. */
export async function prepareKernel(debug: boolean): Promise<KernelInfo> {
  checkPrivileges();
  await loadLibbpf();
  setLibbpfDebug(debug);
  const btf = loadKernelBtf();
  const notes: string[] = [];
  const tracefs = ensureTracefs();
  if (tracefs) notes.push(tracefs);
  return {
    btf,
    notes,
    bpfObject: new Uint8Array(await Bun.file(bpfObjectPath).arrayBuffer()),
    probeObject: new Uint8Array(await Bun.file(probeObjectPath).arrayBuffer()),
  };
}

export function currentNetns(): number {
  return statSync("/proc/self/ns/net").ino;
}

let symbolizer: Symbolizer | undefined;
/** /proc/kallsyms, read on first use. */
export function kernelSymbols(): Symbolizer {
  symbolizer ??= new Symbolizer(readFileSync("/proc/kallsyms", "utf8"));
  return symbolizer;
}

/** Turns a libbpf failure into one line that says what to do. */
function loadError(e: unknown, what: string): SkbtrailError {
  if (!(e instanceof LibbpfError)) return new SkbtrailError(`${what} failed: ${(e as Error).message}`, ExitCode.RUNTIME);
  if (e.code === 38 /* ENOSYS */)
    return new SkbtrailError("this kernel has no bpf() system call: it needs CONFIG_BPF_SYSCALL=y", ExitCode.ENVIRONMENT, e.log);
  if (e.code === 1 /* EPERM */)
    return new SkbtrailError(
      `the kernel refused to load BPF programs (${e.message}): run as root, and check kernel lockdown (cat /sys/kernel/security/lockdown) and the memlock limit (ulimit -l)`,
      ExitCode.ENVIRONMENT,
      e.log,
    );
  return new SkbtrailError(`${what} failed: ${e.message}; run with -v for the verifier log`, ExitCode.RUNTIME, e.log);
}

export interface Stats {
  events: number;
  lost: number;
  lostPerCpu: number[];
  filtered: number;
}

export class Session {
  private ring?: RingBuffer;

  private constructor(readonly obj: BpfObject) {}

  static open(image: Uint8Array): Session {
    try {
      return new Session(BpfObject.open(image));
    } catch (e) {
      throw loadError(e, "opening the BPF object");
    }
  }

  /** Writes the read-only configuration and sizes the ring. Before load. */
  configure(config: ConfigInput, ringBytes: number): void {
    writeConfig(this.obj.map(".rodata.cfg").initialValue(), config);
    this.obj.map("events").setMaxEntries(ringBytes);
  }

  /** Loads exactly these programs: any other could fail on this kernel and abort the load. */
  load(programs: string[]): void {
    const wanted = new Set(programs);
    for (const p of this.obj.programs()) p.setAutoload(wanted.has(p.name));
    try {
      this.obj.load();
    } catch (e) {
      throw loadError(e, "loading the BPF programs");
    }
  }

  /** Runs `attachAll`, turning a failure into one clear line. */
  attach<T>(attachAll: () => T): T {
    try {
      return attachAll();
    } catch (e) {
      throw loadError(e, "attaching");
    }
  }

  /** Per-hook settings (enum hook_setting) by function address or tracepoint id. After load. */
  setHookSettings(settings: Map<bigint, number>): void {
    const map = this.obj.map("hook_flags");
    for (const [k, v] of settings) map.update(new Uint8Array(new BigUint64Array([k]).buffer), new Uint8Array([v]));
  }

  /** A kernel stack from the "stacks" map, as [hi, lo] address halves. */
  stack(id: number, depth: number): [number, number][] {
    const value = new Uint32Array(depth * 2);
    if (!this.obj.map("stacks").lookup(new Uint8Array(new Uint32Array([id]).buffer), new Uint8Array(value.buffer))) return [];
    const frames: [number, number][] = [];
    for (let i = 0; i < depth && (value[2 * i] || value[2 * i + 1]); i++) frames.push([value[2 * i + 1]!, value[2 * i]!]);
    return frames;
  }

  /** Reads records until `stop()` says so; `afterBatch` runs after each drained batch. */
  async read(onRecord: RecordHandler, stopped: () => boolean, afterBatch: () => void): Promise<void> {
    const events = this.obj.map("events");
    this.ring ??= new RingBuffer(events.fd, events.maxEntries);
    while (!stopped()) {
      this.ring.wait(POLL_MS);
      this.ring.drain(onRecord);
      afterBatch();
      // Let signal handlers and timers run: the wait above blocks the event loop.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Per-CPU counters kept by the BPF programs. */
  stats(): Stats {
    const map = this.obj.map("stats");
    const values = new BigUint64Array(possibleCpus());
    const bytes = new Uint8Array(values.buffer);
    const sum = (index: number, perCpu?: number[]) => {
      if (!map.lookup(new Uint8Array(new Uint32Array([index]).buffer), bytes)) return 0;
      let total = 0;
      values.forEach((v, cpu) => {
        total += Number(v);
        if (perCpu) perCpu[cpu] = Number(v);
      });
      return total;
    };
    const lostPerCpu: number[] = [];
    return {
      events: sum(stat_index.STAT_EVENTS),
      lost: sum(stat_index.STAT_LOST, lostPerCpu),
      lostPerCpu,
      filtered: sum(stat_index.STAT_FILTERED),
    };
  }

  /** Frees the ring and the object (detach the attachments first). */
  close(): void {
    this.ring?.close();
    this.ring = undefined;
    this.obj.close();
  }
}
