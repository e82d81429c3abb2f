// --latency-summary: the kernel's log2 histogram of packet latencies (the
// lat_hist map, bpf/lib/latency.bpf.h) turned into table rows: the same
// buckets as --sock --rtt's table (µs, [2^i, 2^(i+1)), the first from 0).
import { latency_slots } from "../abi/layout.generated";
import type { RttBucket } from "./sock";

const { LAT_BUCKETS, LAT_SUM_US } = latency_slots;

export interface LatencySummary {
  buckets: RttBucket[];
  packets: number;
  avgUs: number;
}

/** `slots`: lat_hist summed over CPUs (LAT_SLOTS numbers). */
export function latencySummary(slots: number[]): LatencySummary {
  const counts = slots.slice(0, LAT_BUCKETS);
  const packets = counts.reduce((a, b) => a + b, 0);
  const first = counts.findIndex((n) => n > 0);
  const last = counts.findLastIndex((n) => n > 0);
  const buckets = first < 0 ? [] : counts.slice(first, last + 1).map((count, j) => {
    const i = j + first;
    return { lowUs: i === 0 ? 0 : 2 ** i, highUs: 2 ** (i + 1) - 1, count };
  });
  return { buckets, packets, avgUs: packets ? slots[LAT_SUM_US]! / packets : 0 };
}
