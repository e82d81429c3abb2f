// Kernel address → "function+0xoff" (and " [module]" for module code),
// from /proc/kallsyms. Kernel addresses live in the top of the 64-bit space;
// keeping only their low 48 bits gives exact doubles (no BigInt per event).

import { readFileSync } from "node:fs";

const LOW48 = 0x1_0000_0000_0000;
const MAX_SYMBOL_SIZE = 0x10_0000;

/** The full 64-bit kernel address of a low-48-bit key (for attach cookies). */
export function fullAddress(key: number): bigint {
  return 0xffff_0000_0000_0000n | BigInt(key);
}

/** The low 48 bits of a kernel address given as two 32-bit halves. */
export function addrKey(hi: number, lo: number): number {
  return (hi & 0xffff) * 0x1_0000_0000 + lo;
}

let hex4: string[] | undefined;

/** A 64-bit value given as two 32-bit halves, as 16 hex digits ("ffff888100a3c000"). */
export function addrHex(hi: number, lo: number): string {
  // Four lookups in a table of 4-digit strings instead of toString(16) +
  // padStart (~150 ns): decoders call this per record. Built on first use
  // (~5 ms) to keep it out of startup.
  const t = (hex4 ??= Array.from({ length: 0x10000 }, (_, i) => i.toString(16).padStart(4, "0")));
  return t[hi >>> 16]! + t[hi & 0xffff]! + t[lo >>> 16]! + t[lo & 0xffff]!;
}

export class Symbolizer {
  private readonly addrs: Float64Array;
  private readonly symbolNames: string[];
  private readonly modules: (string | undefined)[];
  private byName?: Map<string, number>;

  /** `text` is the content of /proc/kallsyms. */
  constructor(text: string) {
    const entries: { key: number; name: string; module?: string }[] = [];
    for (const line of text.split("\n")) {
      // "ffffffffc0a01000 t nft_do_chain\t[nf_tables]"
      const type = line.charCodeAt(17);
      if (line.length < 20 || line.charCodeAt(16) !== 32) continue;
      // text symbols only: T/t, and W/w (weak functions)
      if (type !== 84 && type !== 116 && type !== 87 && type !== 119) continue;
      const key = parseInt(line.slice(4, 16), 16);
      if (!key) continue; // addresses hidden (kptr_restrict, not root)
      const tab = line.indexOf("\t", 19);
      const name = tab < 0 ? line.slice(19) : line.slice(19, tab);
      const module = tab < 0 ? undefined : line.slice(tab + 1).replace(/^\[|\]$/g, "");
      entries.push({ key, name, module });
    }
    entries.sort((a, b) => a.key - b.key);
    this.addrs = Float64Array.from(entries, (e) => e.key);
    this.symbolNames = entries.map((e) => e.name);
    this.modules = entries.map((e) => e.module);
  }

  get size(): number {
    return this.symbolNames.length;
  }

  names(): readonly string[] {
    return this.symbolNames;
  }

  /** Address (low 48 bits) of a text symbol; the first one when the name repeats. */
  addressOf(name: string): number | undefined {
    if (!this.byName) {
      this.byName = new Map();
      for (let i = this.symbolNames.length - 1; i >= 0; i--) this.byName.set(this.symbolNames[i]!, this.addrs[i]!);
    }
    return this.byName.get(name);
  }

  /** The symbol containing `key` (low 48 bits), or undefined. */
  lookup(key: number): { name: string; offset: number; module?: string } | undefined {
    const a = this.addrs;
    let lo = 0;
    let hi = a.length - 1;
    if (hi < 0 || key < a[0]! || key >= LOW48) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (a[mid]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return { name: this.symbolNames[lo]!, offset: key - a[lo]!, module: this.modules[lo] };
  }

  /** "func+0x1a" or "func+0x1a [module]"; the hex address when unknown. */
  format(hi: number, lo: number): string {
    if (hi === 0 && lo === 0) return "0";
    const sym = hi >>> 16 === 0xffff ? this.lookup(addrKey(hi, lo)) : undefined;
    // Past the end of a symbol by that much it is really in code kallsyms did
    // not list when read (e.g. a BPF program loaded afterwards).
    if (!sym || sym.offset >= MAX_SYMBOL_SIZE) return `0x${addrHex(hi, lo)}`;
    return `${sym.name}+0x${sym.offset.toString(16)}${sym.module ? ` [${sym.module}]` : ""}`;
  }
}

let symbolizer: Symbolizer | undefined;

/** /proc/kallsyms of the running kernel, read on first use (~150 ms). */
export function kernelSymbols(): Symbolizer {
  symbolizer ??= new Symbolizer(readFileSync("/proc/kallsyms", "utf8"));
  return symbolizer;
}
