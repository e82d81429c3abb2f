// Prometheus text exposition (format 0.0.4) of skbtrail's metrics, and the
// bound on their label cardinality. Presentation only: the numbers come from
// the kernel's counting maps and the process, read by the mode.
//
//   # HELP skbtrail_drops_total Packets the kernel dropped, by reason, …
//   # TYPE skbtrail_drops_total counter
//   skbtrail_drops_total{reason="NO_SOCKET",location="__udp4_lib_rcv",…} 12340

export type MetricType = "counter" | "gauge" | "histogram";

export interface Sample {
  /** Label values, in the order of the family's label names. */
  labels: string[];
  value: number;
}

export interface HistogramValue {
  /** Upper bounds (in the metric's unit) and the cumulative count of each. */
  buckets: [bound: number, cumulative: number][];
  count: number;
  sum: number;
}

export interface Family {
  /** Full name, with its unit and _total for counters (Prometheus conventions). */
  name: string;
  help: string;
  type: MetricType;
  labelNames: string[];
  samples: Sample[];
  /** type "histogram": one unlabelled histogram. */
  histogram?: HistogramValue;
}

/** Label values escape backslash, double quote and newline. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escapes backslash and newline. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(15)));
}

function labelText(names: string[], values: string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? "")}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** The text exposition of these families: HELP and TYPE, then the samples. */
export function exposition(families: Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type === "histogram") {
      const h = f.histogram ?? { buckets: [], count: 0, sum: 0 };
      for (const [bound, cumulative] of h.buckets) lines.push(`${f.name}_bucket${labelText([], [], ["le", formatValue(bound)])} ${formatValue(cumulative)}`);
      lines.push(`${f.name}_bucket{le="+Inf"} ${formatValue(h.count)}`, `${f.name}_sum ${formatValue(h.sum)}`, `${f.name}_count ${formatValue(h.count)}`);
      continue;
    }
    for (const s of f.samples) lines.push(`${f.name}${labelText(f.labelNames, s.labels)} ${formatValue(s.value)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The label value every label of the overflow series has. */
export const OTHER = "other";

export interface SeriesInput {
  labels: string[];
  value: number;
  /** The kernel entries summed into it: deleted when the series is evicted. */
  sources: string[];
}

interface Series {
  labels: string[];
  value: number;
  /** When its value last changed (ms, monotonic). */
  changedMs: number;
  sources: Set<string>;
}

/**
 * At most `max` series of one metric. A new label set gets a series while
 * there is room; when there is none, the series idle longest (unchanged for
 * at least `idleMs`: an interface or namespace that went away) makes room,
 * and its kernel entries are deleted; otherwise the label set goes to the
 * one series whose labels are all "other", for good (so that every series
 * only ever grows, as counters must), and is counted in `overflowed`.
 */
export class SeriesTable {
  private readonly series = new Map<string, Series>();
  private readonly refused = new Set<string>();
  /** Label sets that went to "other" (distinct, as far as remembered). */
  overflowed = 0;
  /** The overflow series' value: what refused label sets counted since. */
  private otherBase = 0;
  private readonly otherLast = new Map<string, number>();

  constructor(
    readonly max: number,
    private readonly idleMs: number,
  ) {}

  get size(): number {
    return this.series.size;
  }

  /**
   * Takes the current values of every label set (each the sum of its kernel
   * entries, which only grow) and returns the samples to expose, and the
   * kernel entries of evicted series, which the caller deletes.
   */
  update(inputs: SeriesInput[], nowMs: number, labelCount: number): { samples: Sample[]; evicted: string[] } {
    const evicted: string[] = [];
    for (const input of inputs) {
      const id = input.labels.join("\u0000");
      const known = this.series.get(id);
      if (known) {
        if (input.value !== known.value) {
          // A value that went down: its kernel entries were evicted and made again.
          known.value = Math.max(known.value, input.value);
          known.changedMs = nowMs;
        }
        for (const s of input.sources) known.sources.add(s);
        continue;
      }
      if (this.refused.has(id)) {
        this.addOther(id, input.value);
        continue;
      }
      if (this.series.size >= this.max) {
        const victim = this.idlest(nowMs);
        if (victim) {
          evicted.push(...victim[1].sources);
          this.series.delete(victim[0]);
        }
      }
      if (this.series.size < this.max) {
        this.series.set(id, { labels: input.labels, value: input.value, changedMs: nowMs, sources: new Set(input.sources) });
        continue;
      }
      // Bounded memory for the refused: past 10× the limit, they are no longer told apart.
      if (this.refused.size < this.max * 10) this.refused.add(id);
      this.overflowed++;
      this.addOther(id, input.value);
    }
    const samples = [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value }));
    if (this.refused.size || this.otherBase) samples.push({ labels: new Array(labelCount).fill(OTHER), value: this.otherBase });
    return { samples, evicted };
  }

  private addOther(id: string, value: number): void {
    const last = this.otherLast.get(id) ?? 0;
    if (value > last) this.otherBase += value - last;
    if (this.otherLast.size < this.max * 10 || this.otherLast.has(id)) this.otherLast.set(id, Math.max(last, value));
  }

  private idlest(nowMs: number): [string, Series] | undefined {
    let best: [string, Series] | undefined;
    for (const entry of this.series) if (nowMs - entry[1].changedMs >= this.idleMs && (!best || entry[1].changedMs < best[1].changedMs)) best = entry;
    return best;
  }
}

/** Prometheus histogram buckets from per-bucket (not cumulative) counts. */
export function histogram(bounds: number[], counts: number[], sum: number): HistogramValue {
  let cumulative = 0;
  const buckets: [number, number][] = bounds.map((b, i) => [b, (cumulative += counts[i] ?? 0)]);
  const count = cumulative + (counts[bounds.length] ?? 0);
  return { buckets, count, sum };
}
