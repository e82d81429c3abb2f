// --latency-summary: the kernel's log2 histogram of packet latencies (the
// lat_hist map, bpf/lib/latency.bpf.h) turned into table rows: the same
// buckets as --sock --rtt's table (µs, [2^i, 2^(i+1)), the first from 0).
import { latency_slots } from "../abi/layout.generated";
import { log2Buckets, type RttBucket } from "./sock";

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
  const buckets = log2Buckets(counts);
  return { buckets, packets, avgUs: packets ? slots[LAT_SUM_US]! / packets : 0 };
}
