// When a run stops, and why: signals, --timeout, -c, the output going away,
// or the first error --diag finds. The reader looks at it between bounded
// batches, so every cause stops a run within a batch at any event rate.

export type StopReason =
  | "count"
  | "timeout"
  | "interrupted"
  | "terminated"
  | "hangup"
  | "output closed"
  | "output failed"
  | "diagnosis"
  | "command exited";

/**
 * Causes after which what is still queued in the ring is read rather than
 * dropped: skbtrail run's command exited, and the drops of its last moments
 * count. The programs are switched off first, so this read is bounded by
 * the ring's size even under a flood.
 */
const FINAL_DRAIN: ReadonlySet<StopReason> = new Set(["command exited"]);

export class StopControl {
  reason?: StopReason;
  private readonly deadline: number;
  private shown = 0;
  readonly startedAt = performance.now();

  constructor(
    /** -c: how many units (drops, packets, hooks) to show, then stop. */
    private readonly count?: number,
    timeoutSeconds?: number,
  ) {
    this.deadline = timeoutSeconds === undefined ? Infinity : this.startedAt + timeoutSeconds * 1000;
  }

  private readonly watches: (() => StopReason | undefined)[] = [];

  /** Signals received (SIGINT, SIGTERM): one that comes while the output is written at the end gives it up. */
  signals = 0;

  /** For the outputs' close(): whether a signal came since this call (the user does not want to wait any longer). */
  signalledFromNow(): () => boolean {
    const before = this.signals;
    return () => this.signals > before;
  }

  request(reason: StopReason): void {
    this.reason ??= reason;
  }

  /** A condition looked at with the clock, between batches (e.g. whether skbtrail run's command exited). */
  watch(check: () => StopReason | undefined): void {
    this.watches.push(check);
  }

  /** Whether the run should stop now (looks at the clock for --timeout, and at the watches). */
  get stopped(): boolean {
    if (this.reason === undefined && performance.now() >= this.deadline) this.reason = "timeout";
    for (const check of this.watches) if (this.reason === undefined) this.reason = check();
    return this.reason !== undefined;
  }

  /** Whether the records still queued at the stop are read rather than dropped. */
  get finalDrain(): boolean {
    return this.reason !== undefined && FINAL_DRAIN.has(this.reason);
  }

  /**
   * -c: whether one more unit may be shown; counts it, and the last one
   * asks the run to stop. Call it right before showing, so -c is exact.
   */
  admit(): boolean {
    if (this.count === undefined) return true;
    if (this.shown >= this.count) return false;
    if (++this.shown >= this.count) this.request("count");
    return true;
  }

  /** -c for units counted elsewhere (--rtt alone: RTT samples, counted in the kernel): stops once `total` reaches it. */
  counted(total: number): void {
    if (this.count !== undefined && total >= this.count) this.request("count");
  }

  get counting(): boolean {
    return this.count !== undefined;
  }

  get seconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }
}
