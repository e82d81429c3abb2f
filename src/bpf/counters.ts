// Reading the kernel's per-CPU counting maps (--monitor, --func-stats): each
// entry holds one value per possible CPU, which are summed here. Maps are
// read whole, by walking their keys; entries the kernel adds or evicts
// meanwhile are simply seen or not, never twice.
import { possibleCpus, type BpfMap } from "../../ffi/libbpf";

export interface CounterEntry {
  /** The key's bytes (a copy). */
  key: Uint8Array;
  /** Its key as a string of hex digits: an identity for maps. */
  id: string;
  /** Per u64 word of the value: the sum over CPUs. */
  sums: number[];
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function keyId(key: Uint8Array): string {
  let s = "";
  for (let i = 0; i < key.length; i++) s += HEX[key[i]!];
  return s;
}

/**
 * Every entry of a per-CPU hash map whose value is `words` u64s, with each
 * word summed over the CPUs. At most `limit` entries (a map being rewritten
 * while walked could otherwise restart the walk forever).
 */
export function readPerCpuHash(map: BpfMap, keySize: number, words: number, limit: number): CounterEntry[] {
  const cpus = possibleCpus();
  const value = new Uint32Array(cpus * words * 2);
  const valueBytes = new Uint8Array(value.buffer);
  const seen = new Set<string>();
  const out: CounterEntry[] = [];
  let prev: Uint8Array | null = null;
  for (let steps = 0; steps < limit * 2 && out.length < limit; steps++) {
    const next = new Uint8Array(keySize);
    if (!map.nextKey(prev, next)) break;
    prev = next;
    const id = keyId(next);
    if (seen.has(id)) continue;
    seen.add(id);
    if (!map.lookup(next, valueBytes)) continue; // evicted meanwhile
    const sums = new Array<number>(words).fill(0);
    for (let cpu = 0; cpu < cpus; cpu++)
      for (let w = 0; w < words; w++) {
        const at = (cpu * words + w) * 2;
        sums[w]! += value[at + 1]! * 0x1_0000_0000 + value[at]!;
      }
    out.push({ key: next, id, sums });
  }
  return out;
}

/** A per-CPU array of u64s, each index summed over the CPUs. */
export function readPerCpuArray(map: BpfMap, length: number): number[] {
  const cpus = possibleCpus();
  const value = new Uint32Array(cpus * 2);
  const valueBytes = new Uint8Array(value.buffer);
  const key = new Uint32Array(1);
  const keyBytes = new Uint8Array(key.buffer);
  const out: number[] = [];
  for (let i = 0; i < length; i++) {
    key[0] = i;
    let sum = 0;
    if (map.lookup(keyBytes, valueBytes)) for (let cpu = 0; cpu < cpus; cpu++) sum += value[cpu * 2 + 1]! * 0x1_0000_0000 + value[cpu * 2]!;
    out.push(sum);
  }
  return out;
}

/** Creates zeroed entries (u64 per CPU) for these u64 keys: --func-stats counts only into existing ones. */
export function createCounters(map: BpfMap, keys: bigint[]): void {
  const zero = new Uint8Array(possibleCpus() * 8);
  for (const k of keys) map.update(new Uint8Array(new BigUint64Array([k]).buffer), zero);
}
