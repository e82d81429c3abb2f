// Kernel address → "function+0xoff" (and " [module]" for module code),
// from /proc/kallsyms. Kernel addresses live in the top of the 64-bit space;
// keeping only their low 48 bits gives exact doubles (no BigInt per event).

import { closeSync, openSync, readSync } from "node:fs";

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

const T = 84, t = 116, W = 87, w = 119; // text symbol types: functions, and weak ones
const NL = 10, TAB = 9, SPACE = 32, DOT = 46;
const RENAMED = /^(.+)\.(isra|constprop|part|llvm)\.\d+$/;
const latin1 = new TextDecoder("latin1");

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return c >= 65 && c <= 70 ? c - 55 : -1;
}

const INDEX_BITS = 20; // up to ~1M symbols

/**
 * Indexes of `keys` in ascending order. Kernel text spans well under 2^32
 * bytes, so (key − min, index) packs into one double and a native numeric
 * sort does it: a comparator called a few million times is what start-up
 * under emulation cannot afford.
 */
function sortedOrder(keys: Float64Array): Uint32Array {
  const n = keys.length;
  let min = Infinity;
  let max = -Infinity;
  for (let k = 0; k < n; k++) {
    min = Math.min(min, keys[k]!);
    max = Math.max(max, keys[k]!);
  }
  if (n >= 2 ** INDEX_BITS || max - min >= 2 ** (52 - INDEX_BITS))
    return Uint32Array.from({ length: n }, (_, k) => k).sort((x, y) => keys[x]! - keys[y]!);
  const packed = new Float64Array(n);
  for (let k = 0; k < n; k++) packed[k] = (keys[k]! - min) * 2 ** INDEX_BITS + k;
  packed.sort();
  const order = new Uint32Array(n);
  for (let k = 0; k < n; k++) order[k] = packed[k]! % 2 ** INDEX_BITS;
  return order;
}

/**
 * The kernel's text symbols, parsed from the bytes of /proc/kallsyms
 * without making a string per line: ~200k lines, and emulated start-up is
 * dominated by how much is done per line. Names become strings only when
 * asked for.
 */
export class Symbolizer {
  private readonly bytes: Uint8Array;
  /** Per symbol, sorted by address: its address (low 48 bits), name and module as byte ranges. */
  private readonly addrs: Float64Array;
  private readonly nameAt: Uint32Array;
  private readonly nameLen: Uint16Array;
  private readonly moduleAt: Uint32Array;
  private readonly moduleLen: Uint16Array;
  /** Open-addressing table of symbol index + 1 by a hash of the name; built on first need. */
  private byName?: Int32Array;

  /** `text` is the content of /proc/kallsyms. */
  constructor(text: string | Uint8Array) {
    const b = (this.bytes = typeof text === "string" ? new TextEncoder().encode(text) : text);
    const cap = Math.ceil(b.length / 20);
    const addrs = new Float64Array(cap);
    const nameAt = new Uint32Array(cap);
    const nameLen = new Uint16Array(cap);
    const moduleAt = new Uint32Array(cap);
    const moduleLen = new Uint16Array(cap);
    let n = 0;
    const lines = Buffer.from(b.buffer, b.byteOffset, b.byteLength); // its indexOf is memchr
    for (let i = 0; i < b.length; ) {
      let end = lines.indexOf(NL, i);
      if (end < 0) end = b.length;
      // "ffffffffc0a01000 t nft_do_chain\t[nf_tables]"
      const type = b[i + 17];
      if (end - i >= 20 && b[i + 16] === SPACE && b[i + 18] === SPACE && (type === T || type === t || type === W || type === w)) {
        let key = 0;
        for (let j = i + 4; j < i + 16 && key >= 0; j++) {
          const d = hexDigit(b[j]!);
          key = d < 0 ? -1 : key * 16 + d;
        }
        if (key > 0) {
          // key 0: addresses hidden (kptr_restrict, not root)
          let tab = i + 19;
          while (tab < end && b[tab] !== TAB) tab++; // not indexOf: it would search past the line
          addrs[n] = key;
          nameAt[n] = i + 19;
          nameLen[n] = tab - (i + 19);
          if (tab < end && b[tab + 1] === 91 /* [ */ && b[end - 1] === 93 /* ] */) {
            moduleAt[n] = tab + 2;
            moduleLen[n] = end - 1 - (tab + 2);
          }
          n++;
        }
      }
      i = end + 1;
    }
    const order = sortedOrder(addrs.subarray(0, n));
    this.addrs = new Float64Array(n);
    this.nameAt = new Uint32Array(n);
    this.nameLen = new Uint16Array(n);
    this.moduleAt = new Uint32Array(n);
    this.moduleLen = new Uint16Array(n);
    for (let j = 0; j < n; j++) {
      const k = order[j]!;
      this.addrs[j] = addrs[k]!;
      this.nameAt[j] = nameAt[k]!;
      this.nameLen[j] = nameLen[k]!;
      this.moduleAt[j] = moduleAt[k]!;
      this.moduleLen[j] = moduleLen[k]!;
    }
  }

  get size(): number {
    return this.addrs.length;
  }

  private name(k: number): string {
    return latin1.decode(this.bytes.subarray(this.nameAt[k]!, this.nameAt[k]! + this.nameLen[k]!));
  }

  private module(k: number): string | undefined {
    return this.moduleLen[k] ? latin1.decode(this.bytes.subarray(this.moduleAt[k]!, this.moduleAt[k]! + this.moduleLen[k]!)) : undefined;
  }

  private hash(bytes: Uint8Array, at: number, len: number): number {
    let h = 2166136261;
    for (let i = at; i < at + len; i++) h = Math.imul(h ^ bytes[i]!, 16777619);
    return h >>> 0;
  }

  /** Index of the first symbol (by address) with this name, or -1. */
  private find(name: string): number {
    const slots = (this.byName ??= this.nameTable());
    const want = new TextEncoder().encode(name);
    const mask = slots.length - 1;
    for (let slot = this.hash(want, 0, want.length) & mask; slots[slot]; slot = (slot + 1) & mask) {
      const k = slots[slot]! - 1;
      if (this.nameLen[k] !== want.length) continue;
      let same = true;
      for (let j = 0; j < want.length && same; j++) same = this.bytes[this.nameAt[k]! + j] === want[j];
      if (same) return k;
    }
    return -1;
  }

  private nameTable(): Int32Array {
    const slots = new Int32Array(2 ** Math.ceil(Math.log2(this.size * 2 + 2)));
    const mask = slots.length - 1;
    for (let k = 0; k < this.size; k++) {
      let slot = this.hash(this.bytes, this.nameAt[k]!, this.nameLen[k]!) & mask;
      let taken = false;
      for (; slots[slot]; slot = (slot + 1) & mask) {
        const other = slots[slot]! - 1;
        if (this.nameLen[other] === this.nameLen[k] && this.bytes.subarray(this.nameAt[other]!, this.nameAt[other]! + this.nameLen[k]!).every((c, j) => c === this.bytes[this.nameAt[k]! + j])) {
          taken = true; // the first (lowest address) of a repeated name stays
          break;
        }
      }
      if (!taken) slots[slot] = k + 1;
    }
    return slots;
  }

  /** Address (low 48 bits) of a text symbol; the first one when the name repeats. */
  addressOf(name: string): number | undefined {
    const k = this.find(name);
    return k < 0 ? undefined : this.addrs[k];
  }

  /** [start, end) of a text symbol (low 48 bits): end is where the next symbol starts. */
  range(name: string): [number, number] | undefined {
    const k = this.find(name);
    return k < 0 || k + 1 >= this.size ? undefined : [this.addrs[k]!, this.addrs[k + 1]!];
  }

  /** The module a symbol lives in, undefined for vmlinux or an unknown symbol. */
  moduleOf(name: string): string | undefined {
    const k = this.find(name);
    return k < 0 ? undefined : this.module(k);
  }

  /** Compiler-renamed copies (ip_rcv_core.isra.0) by plain name: only names with a dot become strings. */
  renamedCopies(): Map<string, string> {
    const out = new Map<string, string>();
    for (let k = 0; k < this.size; k++) {
      const at = this.nameAt[k]!;
      if (this.bytes.subarray(at, at + this.nameLen[k]!).indexOf(DOT) < 0) continue;
      const name = this.name(k);
      const m = RENAMED.exec(name);
      if (m && !out.has(m[1]!)) out.set(m[1]!, name);
    }
    return out;
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
    return { name: this.name(lo), offset: key - a[lo]!, module: this.module(lo) };
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

/**
 * A /proc file read in big chunks: its size is unknown (0), and readFileSync
 * grows its buffer step by step, which costs several times the kernel's
 * own work for the 5–10 MB of kallsyms.
 */
export function readProcFile(path: string): Uint8Array {
  const fd = openSync(path, "r");
  try {
    let buf = new Uint8Array(8 << 20);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got <= 0) return buf.subarray(0, n);
      n += got;
    }
  } finally {
    closeSync(fd);
  }
}

/** /proc/kallsyms of the running kernel, read on first use. */
export function kernelSymbols(): Symbolizer {
  symbolizer ??= new Symbolizer(readProcFile("/proc/kallsyms"));
  return symbolizer;
}

/** Reads /proc/kallsyms again on next use: modules loaded since have symbols too (long runs). */
export function forgetKernelSymbols(): void {
  symbolizer = undefined;
}
