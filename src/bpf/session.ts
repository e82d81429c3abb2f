// The life of one BPF object, as libbpf-bootstrap does it: open →
// configure → load → attach → read the ring → switch off → tear down.
// Links are owned by file descriptors (never pinned), so even a crash
// leaves nothing attached.
import { BpfObject, LibbpfError, possibleCpus } from "../../ffi/libbpf";
import { RingBuffer, type RecordHandler } from "../../ffi/ringbuf";
import { stat_index } from "../abi/layout.generated";
import { programMaps, type ProgramName } from "../abi/programs.generated";
import { ExitCode, SkbtrailError } from "../common/errors";
import { writeConfig, type ConfigInput } from "./config";

/** How long one wait on the ring may block: bounds the delay of a lone event. */
const POLL_MS = 50;
/**
 * How long one batch of records may take before the reader looks at the
 * stop conditions again (signals, timers, -c): a flood never holds it.
 */
const BATCH_MS = 25;

/** The program libbpf's log says the kernel refused ("prog 'NAME': BPF program load failed: ..."), if it names one. */
function refusedProgram(log: string): string | undefined {
  return /prog '(\w+)': (?:BPF program load failed|failed to load)/.exec(log)?.[1];
}

/** Turns a libbpf failure into one line that says what to do. */
export function loadError(e: unknown, what: string): SkbtrailError {
  if (!(e instanceof LibbpfError)) return new SkbtrailError(`${what} failed: ${(e as Error).message}`, ExitCode.RUNTIME);
  if (e.code === 38 /* ENOSYS */)
    return new SkbtrailError("this kernel has no bpf() system call: it needs CONFIG_BPF_SYSCALL=y", ExitCode.ENVIRONMENT, e.log);
  if (e.code === 1 /* EPERM */)
    return new SkbtrailError(
      `the kernel refused to load BPF programs (${e.message}): run as root, and check kernel lockdown (cat /sys/kernel/security/lockdown) and the memlock limit (ulimit -l)`,
      ExitCode.ENVIRONMENT,
      e.log,
    );
  if (e.code === 24 /* EMFILE */ || e.code === 23 /* ENFILE */)
    return new SkbtrailError(`${what} failed: too many open files; raise the limit (ulimit -n 65536) or trace fewer hooks (-t)`, ExitCode.ENVIRONMENT, e.log);
  const refused = refusedProgram(e.log);
  // A function hook's program: the same hooks may load through another backend's programs.
  const otherBackend = refused && /^(kmulti|kprobe|kretprobe|fentry|fexit)_/.test(refused) ? "; or trace its functions through another backend (--backend kprobe, fentry or kprobe-multi) or leave them out (-t)" : "";
  if (refused) return new SkbtrailError(`${what} failed: the kernel refused program ${refused} (${e.message}); run with -v for the verifier log${otherBackend}`, ExitCode.RUNTIME, e.log);
  return new SkbtrailError(`${what} failed: ${e.message}; run with -v for the verifier log`, ExitCode.RUNTIME, e.log);
}

export interface Stats {
  /** Records the programs wrote. */
  events: number;
  /** Records lost because the ring was full. */
  lost: number;
  lostPerCpu: number[];
  /** Packets seen and rejected by a filter in the kernel. */
  filtered: number;
  /** Records not written: --rate-limit's budget for the second was spent. */
  rateLimited: number;
  /** --monitor: events not counted because a counting map was full. */
  mapFull: number;
}

export interface ReadOptions {
  /** A wait on the ring also ends when this fd is readable. */
  wakeFd?: number;
  /** Asked once reading stops: read what is still queued instead of dropping it. */
  finalDrain?: () => boolean;
  /**
   * Asked before each batch: whether the output still holds bytes its reader
   * has not taken, after waiting up to `waitMs` for it. Then no records are
   * read (the ring fills and the kernel counts what it loses) and memory stays bounded.
   */
  outputBackedUp?: (waitMs: number) => boolean;
}

/** Entries of a map the run does not use: it must exist (the programs name it), at next to no cost. */
const UNUSED_MAP_ENTRIES = 64;

/** The maps the reader itself uses: created whatever the programs. */
const READER_MAPS = ["events", "stats"];
const OBJECT_MAPS = new Set(Object.values(programMaps).flat());

/**
 * The object's maps none of these programs refers to (build-time table from the
 * object's relocations): they are not created. A preallocated LRU map of 64 Ki
 * entries takes ~15 ms to create natively and far longer under emulation, and
 * --drop needs none of the five the tracer has. Empty for another object's programs.
 */
function unusedMaps(programs: readonly string[]): Set<string> {
  const unused = new Set(OBJECT_MAPS);
  for (const p of programs) {
    if (!Object.hasOwn(programMaps, p)) return new Set();
    for (const m of programMaps[p as ProgramName]) unused.delete(m);
  }
  for (const m of READER_MAPS) unused.delete(m);
  return unused;
}

export class Session {
  private ring?: RingBuffer;

  private constructor(readonly obj: BpfObject) {}

  static open(image: Uint8Array, btfPath?: string): Session {
    try {
      return new Session(BpfObject.open(image, btfPath));
    } catch (e) {
      throw loadError(e, "opening the BPF object");
    }
  }

  /** Writes the read-only configuration and sizes the ring. Before load. */
  configure(config: ConfigInput, ringBytes: number): void {
    writeConfig(this.obj.map(".rodata.cfg").initialValue(), config);
    this.obj.map("events").setMaxEntries(ringBytes);
    // --latency's per-skb map is preallocated (LRU): ~8 MB of kernel memory no other mode needs.
    // (The benchmark's producer object, loaded through this path, has no such map.)
    if (!config.latency) this.obj.maps().find((m) => m.name === "lat_start")?.setMaxEntries(UNUSED_MAP_ENTRIES);
  }

  /** Loads exactly these programs: any other could fail on this kernel and abort the load. */
  load(programs: readonly string[]): void {
    const wanted = new Set<string>(programs);
    for (const p of this.obj.programs()) p.setAutoload(wanted.has(p.name));
    const unused = unusedMaps(programs);
    for (const m of this.obj.maps()) if (unused.has(m.name)) m.setAutocreate(false);
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

  /**
   * Reads records until `stopped()` says so, in batches bounded in time;
   * `afterBatch` runs after each, told whether the ring was left empty. Returns how many records were still in the
   * ring when it stopped: they are dropped unread, unless `finalDrain()`
   * says to read them: then the programs are switched off first, so the
   * drain ends (at most a ring's worth) even under a flood.
   * `wakeFd`: a wait also ends when it is readable (a pidfd, when its process exits).
   */
  async read(onRecord: RecordHandler, stopped: () => boolean, afterBatch: (caughtUp: boolean) => void, options: ReadOptions = {}): Promise<number> {
    const events = this.obj.map("events");
    this.ring ??= new RingBuffer(events.fd, events.maxEntries);
    const ring = this.ring;
    if (options.wakeFd !== undefined && options.wakeFd >= 0) ring.wakeOn(options.wakeFd);
    while (!stopped()) {
      if (options.outputBackedUp?.(POLL_MS)) {
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      if (!ring.hasRecords()) ring.wait(POLL_MS);
      ring.drain(onRecord, performance.now() + BATCH_MS);
      afterBatch(!ring.hasRecords());
      // Let signal handlers and timers run: the wait and the drain block the event loop.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (options.finalDrain?.()) {
      this.switchOff();
      ring.drain(onRecord);
      afterBatch(true);
    }
    return ring.skip();
  }

  /** Whether records wait in the ring, unread (false before the first read). */
  get recordsWaiting(): boolean {
    return this.ring?.hasRecords() ?? false;
  }

  /**
   * Switches every program off: from now on each returns at its first
   * instruction, so hooks still waiting to be detached cost (almost) nothing.
   */
  switchOff(): void {
    this.obj.map(".data.tracing").update(new Uint8Array(4), new Uint8Array(4));
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
      rateLimited: sum(stat_index.STAT_RATE_LIMITED),
      mapFull: sum(stat_index.STAT_MAP_FULL),
    };
  }

  /** Frees the ring and the object (detach the attachments first). */
  close(): void {
    this.ring?.close();
    this.ring = undefined;
    this.obj.close();
  }
}
