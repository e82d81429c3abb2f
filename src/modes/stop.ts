// When a run stops, and why: signals, --timeout, -c, the output going away,
// or the first error --diag finds. The reader looks at it between bounded
// batches, so every cause stops a run within a batch at any event rate.

export type StopReason = "count" | "timeout" | "interrupted" | "terminated" | "hangup" | "output closed" | "output failed" | "diagnosis";

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

  request(reason: StopReason): void {
    this.reason ??= reason;
  }

  /** Whether the run should stop now (looks at the clock for --timeout). */
  get stopped(): boolean {
    if (this.reason === undefined && performance.now() >= this.deadline) this.reason = "timeout";
    return this.reason !== undefined;
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

  get seconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }
}
