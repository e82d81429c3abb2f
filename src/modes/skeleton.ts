// The one session skeleton every mode runs on: check file descriptors →
// open → configure → load → attach → "begin trace..." → read in bounded
// batches until told to stop → switch the programs off → read the counters
// → detach (slow links in the background) → let the mode show what it still
// holds. A mode says what to load and attach and what a record means;
// stopping, counting and tearing down are the skeleton's.
import type { BpfObject } from "../../ffi/libbpf";
import { monotonicNowNs } from "../../ffi/libc";
import type { ProgramName } from "../abi/programs.generated";
import { Attachments } from "../bpf/attach";
import type { ConfigInput, Filter } from "../bpf/config";
import { handOff, resumeDetaches } from "../bpf/detach";
import { Session } from "../bpf/session";
import { recordKind, type RecordBytes } from "../events/decode";
import { type BpfObjectName, currentNetns, ensureFileDescriptors, type KernelInfo } from "../kernel/environment";
import { forgetFeatures } from "../kernel/features";
import type { Output, RunSummary } from "../output/output";
import type { MetricsServer } from "./metrics-server";
import type { StopControl } from "./stop";

/** The ring every mode reads: big enough for bursts of a few hundred thousand records. */
export const RING_BYTES = 16 << 20;
/** The kernel wakes the reader once this much is pending (bench/README.md, "Wakeups"). */
export const WAKEUP_BYTES = 256 << 10;

export interface ModeSession {
  programs: ProgramName[];
  /** The object that holds them (default: the tracer's, which holds every program). */
  object?: BpfObjectName;
  /** The read-only configuration, but for the wakeup threshold (the skeleton's). */
  config: Omit<ConfigInput, "wakeupBytes">;
  /** Links it will attach (each holds a file descriptor). */
  links: number;
  /** Before load: e.g. the first targets of fentry templates. */
  prepare?(obj: BpfObject): void;
  /** After load, before attach: e.g. per-hook settings in a map. */
  loaded?(session: Session): void;
  attach(session: Session, into: Attachments): void;
  /**
   * Right after "begin trace...", everything attached: e.g. skbtrail run
   * starts its command. It may give an fd whose readability ends a wait on
   * the ring at once (the command's pidfd).
   */
  started?(): { wakeFd?: number } | void;
  /** One whole record of a known kind. */
  record(kind: number, ring: RecordBytes, offset: number): void;
  /** After each batch of records (`caughtUp`: the ring was left empty): show what is complete. */
  batchDone?(caughtUp: boolean): void;
  /**
   * After the last read, programs off: show what is still held. `behind`:
   * records were still queued at the stop (a flood outran the reader), so
   * what is held is partial and need not be shown.
   */
  finish?(behind: boolean): Promise<void> | void;
  /** Its links take long to detach (function hooks): a background process detaches them. */
  slowDetach: boolean;
}

/** The filters every mode's configuration starts with (--netns-current resolved here). */
export function filterConfig(filter: Filter): Pick<ConfigInput, "filter" | "currentNetns"> {
  return { filter, currentNetns: filter.netnsCurrent ? currentNetns() : undefined };
}

/**
 * The time up to which records were read: now once a batch left the ring
 * empty, else the newest record read. Waits (a packet's idle end, an
 * unanswered SYN) are judged on it: a reader a flood left seconds behind
 * must not give up on events still queued in the ring.
 */
export class ReadClock {
  private newestNs = 0;

  saw(timeNs: number): void {
    if (timeNs > this.newestNs) this.newestNs = timeNs;
  }

  nowNs(caughtUp: boolean): number {
    return caughtUp ? monotonicNowNs() : this.newestNs;
  }
}

const ms = (x: number) => `${Math.round(x)} ms`;

/** `metrics`: --metrics, which reports the session's counters while it runs. */
export async function runSession(kernel: KernelInfo, mode: ModeSession, out: Output, stop: StopControl, metrics?: MetricsServer): Promise<RunSummary> {
  // One fd per program and per link, and a few maps: fail before anything is attached.
  ensureFileDescriptors(mode.programs.length + mode.links + 16);
  const session = Session.open(kernel.object(mode.object ?? "tracer"), kernel.btfPath);
  const attachments = new Attachments();
  let handedOff = false;
  try {
    try {
      const t0 = performance.now();
      session.configure({ ...mode.config, wakeupBytes: WAKEUP_BYTES }, RING_BYTES);
      mode.prepare?.(session.obj);
      session.load(mode.programs);
      metrics?.useSession(session);
      mode.loaded?.(session);
      const t1 = performance.now();
      session.attach(() => mode.attach(session, attachments));
      resumeDetaches();
      out.verbose(`loaded ${mode.programs.length} programs in ${ms(t1 - t0)}, attached ${attachments.size} links in ${ms(performance.now() - t1)}`);
    } catch (e) {
      // A signal during a long load interrupts the verifier (EAGAIN): that
      // is the user stopping us, not a failure. Let its handler run, then see.
      await new Promise((resolve) => setImmediate(resolve));
      if (stop.reason === undefined) {
        forgetFeatures(); // what the probes promised did not hold: probe again next time
        throw e;
      }
      return { stats: { events: 0, lost: 0, lostPerCpu: [], filtered: 0, rateLimited: 0, mapFull: 0 }, seconds: stop.seconds, stop: stop.reason, unread: 0, rejected: 0 };
    }
    out.status("begin trace...");
    const wakeFd = mode.started?.()?.wakeFd;

    let rejected = 0;
    let skipped = 0;
    const unread = await session.read(
      (ring, offset, length) => {
        // Stopped within this batch: the rest is dropped, unless the cause wants it read.
        if (stop.reason !== undefined && !stop.finalDrain) return void skipped++;
        const kind = recordKind(ring, offset, length);
        if (kind === 0) return void rejected++;
        mode.record(kind, ring, offset);
      },
      () => {
        if (out.readerGone()) stop.request(out.failure ? "output failed" : "output closed");
        return stop.stopped;
      },
      (caughtUp) => {
        mode.batchDone?.(caughtUp);
        out.flush();
      },
      { wakeFd, finalDrain: () => stop.finalDrain, outputBackedUp: (waitMs) => out.backedUp(waitMs) },
    );
    // The hooks stop costing the traced traffic now, then go away.
    session.switchOff();
    const stats = session.stats();
    // Slow detaches (function hooks) go to background copies; what none took is detached here.
    if (mode.slowDetach) {
      const notHandedOff = handOff(attachments.fds());
      if (notHandedOff === undefined) {
        attachments.release();
        handedOff = true;
      } else out.note(`detaching ${attachments.size} hooks here, which takes a while: ${notHandedOff}`);
    }
    if (!handedOff) attachments.destroy();
    await mode.finish?.(unread + skipped > 0);
    out.flush();
    return { stats, seconds: stop.seconds, stop: stop.reason, unread: unread + skipped, rejected };
  } finally {
    metrics?.useSession(undefined);
    if (!handedOff) attachments.destroy();
    session.close();
  }
}
