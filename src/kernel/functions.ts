// Kernel functions that can be traced: where their sk_buff argument is
// (from BTF, never from a table), which symbol to attach to (the compiler
// may have renamed it ip_rcv_core.isra.0), and whether ftrace can hook it
// (fentry and kprobe.multi need that; plain kprobes do not).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { Btf, Kind } from "./btf";
import type { Symbolizer } from "./kallsyms";
import { keep, readKept } from "./kept";

export interface KernelFunction {
  name: string;
  /** The kallsyms symbol to attach to: the name, or a compiler-renamed copy. */
  symbol: string;
  /** Low 48 bits of the address (see kallsyms.ts); the full address is 0xffff… */
  key: number;
  /** 0-based position of the struct sk_buff * parameter (-1: a socket function, see sockArg). */
  skbArg: number;
  /** Resolved as a socket function (--sock): 0-based position of its struct sock * parameter. */
  sockArg?: number;
  /** The parameter is struct sk_buff ** (__netif_receive_skb_core): read through it. */
  pskb?: boolean;
  /** Module name when the function lives in a module. */
  module?: string;
  /** BTF FUNC id in the BTF it was found in (vmlinux, or the module's). */
  btfId: number;
  /** In available_filter_functions; undefined when that list is unreadable. */
  ftrace?: boolean;
  /** Declared void in BTF: whatever its return probe reads is no return value. */
  voidReturn?: boolean;
  /** Number of parameters (BTF): fexit finds the return value right after them. */
  args: number;
}

/** A shell-like glob (* and ?) as an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
}

export type Resolution = { fn: KernelFunction } | { why: string };

const MAX_KPROBE_ARG = 4; // PT_REGS_PARM1..5; the programs exist for positions 0..4
const MAX_SOCK_ARG = 2; // --sock's function programs: positions 0..2 (bpf/progs/sock.bpf.h)

const KEPT = "functions";
/** Names KernelFunction's newest field: change it with the fields, so an older skbtrail's resolutions are not used. */
const KEPT_SHAPE = "sockArg";

/**
 * What resolutions kept from an earlier run depend on besides the boot: the
 * BTF file, and the modules loaded and where (a module loaded since may add
 * functions, one loaded again moves them).
 */
export function resolutionsKey(btfPath: string | undefined): string {
  const modules = existsSync("/proc/modules") ? readFileSync("/proc/modules", "utf8").replace(/^(\S+) .*? (0x[0-9a-f]+).*$/gm, "$1 $2") : "";
  return `${KEPT_SHAPE}\n${btfPath ?? "vmlinux"}\n${modules}`;
}

export class FunctionIndex {
  private renamed = new Map<string, string>(); // plain name → renamed symbol
  private readonly moduleCache = new Map<string, Btf | undefined>();
  private filterFunctions?: Set<string> | null;
  private symbolTable?: Symbolizer;
  private readonly resolved: Map<string, Resolution>;
  private newlyResolved = false;

  /**
   * `loadSymbols` and `loadTraceable` run on first need: reading /proc/kallsyms and
   * ftrace's function list takes ~250 ms here, seconds under emulation. With
   * `keptKey` (resolutionsKey), resolutions kept by an earlier run of this boot
   * are used, so a run whose functions were all resolved before reads neither.
   */
  constructor(
    private readonly vmlinux: Btf,
    private readonly loadSymbols: () => Symbolizer,
    private readonly loadTraceable: () => string | undefined,
    /** Where the split BTF of loaded modules is. */
    private readonly moduleBtfDir = "/sys/kernel/btf",
    private readonly keptKey?: string,
  ) {
    this.resolved = new Map(Object.entries((keptKey !== undefined && readKept<Record<string, Resolution>>(KEPT, keptKey)) || {}));
  }

  /** Keeps this run's resolutions for the next runs of this boot (with a `keptKey`). */
  keepResolutions(): void {
    if (this.newlyResolved && this.keptKey !== undefined) keep(KEPT, this.keptKey, Object.fromEntries(this.resolved));
    this.newlyResolved = false;
  }

  /** In available_filter_functions; undefined when that list is unreadable. */
  private traceable(symbol: string): boolean | undefined {
    if (this.filterFunctions === undefined) {
      const text = this.loadTraceable();
      this.filterFunctions = text === undefined ? null : new Set(text.split("\n").map((l) => l.split(" ")[0]!).filter(Boolean));
    }
    return this.filterFunctions ? this.filterFunctions.has(symbol) : undefined;
  }

  private get symbols(): Symbolizer {
    if (!this.symbolTable) {
      this.symbolTable = this.loadSymbols();
      this.renamed = this.symbolTable.renamedCopies();
    }
    return this.symbolTable;
  }

  /** The split BTF of one loaded module, read on first need. */
  private moduleBtf(module: string): Btf | undefined {
    if (!this.moduleCache.has(module)) {
      const path = `${this.moduleBtfDir}/${module}`;
      this.moduleCache.set(module, existsSync(path) ? Btf.parse(readFileSync(path), this.vmlinux) : undefined);
    }
    return this.moduleCache.get(module);
  }

  /** BTF of every loaded module (/sys/kernel/btf/<module>, split on vmlinux's): for globs. */
  private modules(): { module: string; btf: Btf }[] {
    const dir = this.moduleBtfDir;
    const names = existsSync(dir) ? readdirSync(dir).filter((m) => m !== "vmlinux") : [];
    return names.flatMap((module) => {
      const btf = this.moduleBtf(module);
      return btf ? [{ module, btf }] : [];
    });
  }

  private findFunc(name: string): { btf: Btf; id: number; module?: string } | undefined {
    const [id] = this.vmlinux.find(name, Kind.FUNC);
    if (id !== undefined) return { btf: this.vmlinux, id };
    // A module's function: kallsyms names the module, and only its BTF is read.
    const module = this.symbols.moduleOf(name) ?? this.symbols.moduleOf(this.renamed.get(name) ?? name);
    const btf = module ? this.moduleBtf(module) : undefined;
    const own = btf?.find(name, Kind.FUNC).filter((i) => i >= btf.firstId) ?? [];
    return own.length ? { btf: btf!, id: own[0]!, module } : undefined;
  }

  /** Whether this kernel (vmlinux or a loaded module) has a function of this name. */
  exists(name: string): boolean {
    return this.findFunc(name) !== undefined;
  }

  /** Position of the first struct sk_buff * parameter, or -1. */
  static skbParam(btf: Btf, funcId: number): number {
    return btf.params(btf.sizeOrType(funcId)).findIndex((p) => btf.typeString(p.type) === "struct sk_buff *");
  }

  /** Position of the first struct sock * parameter, or -1. */
  static sockParam(btf: Btf, funcId: number): number {
    return btf.params(btf.sizeOrType(funcId)).findIndex((p) => /^(const )?struct sock \*$/.test(btf.typeString(p.type)));
  }

  /** True when the first parameter is struct sk_buff ** (the skb can be replaced by the callee). */
  static pskbFirst(btf: Btf, funcId: number): boolean {
    const [first] = btf.params(btf.sizeOrType(funcId));
    return first !== undefined && btf.typeString(first.type) === "struct sk_buff * *";
  }

  /**
   * `as`: "skb", a function followed through its sk_buff; "own", skbtrail has
   * a program of its own for it, which finds the skb itself; "sock", a
   * socket function (--sock), followed through its struct sock.
   */
  resolve(name: string, as: "skb" | "own" | "sock" = "skb"): Resolution {
    const id = as === "skb" ? name : `${name} (${as === "own" ? "own program" : "socket"})`;
    let r = this.resolved.get(id);
    if (!r) {
      r = this.resolveNow(name, as);
      this.resolved.set(id, r);
      this.newlyResolved = true;
    }
    return r;
  }

  private resolveNow(name: string, as: "skb" | "own" | "sock"): Resolution {
    const found = this.findFunc(name);
    if (!found) return { why: "not in this kernel's BTF (absent, inlined, or its module is not loaded)" };
    let pskb = false;
    let skbArg = -1;
    let sockArg: number | undefined;
    if (as === "sock") {
      sockArg = FunctionIndex.sockParam(found.btf, found.id);
      if (sockArg < 0) return { why: "takes no struct sock * argument" };
      if (sockArg > MAX_SOCK_ARG) return { why: `its struct sock is argument ${sockArg + 1}; --sock reads the first ${MAX_SOCK_ARG + 1}` };
    } else {
      pskb = FunctionIndex.pskbFirst(found.btf, found.id);
      skbArg = pskb ? 0 : FunctionIndex.skbParam(found.btf, found.id);
      if (skbArg < 0 && as === "skb") return { why: "takes no struct sk_buff * argument" };
      if (skbArg > MAX_KPROBE_ARG) return { why: `its sk_buff is argument ${skbArg + 1}; skbtrail reads the first ${MAX_KPROBE_ARG + 1}` };
    }
    let symbol = name;
    let key = this.symbols.addressOf(name);
    if (key === undefined) {
      const renamed = this.renamed.get(name);
      if (renamed) {
        symbol = renamed;
        key = this.symbols.addressOf(renamed);
      }
    }
    if (key === undefined) return { why: "no symbol in /proc/kallsyms (inlined everywhere)" };
    const ftrace = this.traceable(symbol);
    const proto = found.btf.sizeOrType(found.id);
    const voidReturn = found.btf.sizeOrType(proto) === 0 || undefined; // FUNC_PROTO → return type (0: void)
    const args = found.btf.vlen(proto);
    return { fn: { name, symbol, key, skbArg, sockArg, pskb: pskb || undefined, module: found.module, btfId: found.id, ftrace, voidReturn, args } };
  }

  /** Names of BTF functions matching a glob (* and ?) that take an skb. */
  glob(pattern: string): string[] {
    const re = globToRegExp(pattern);
    const out: string[] = [];
    const scan = (btf: Btf) => {
      for (const id of btf.ownIds(Kind.FUNC)) {
        const name = btf.name(id);
        if (re.test(name) && (FunctionIndex.skbParam(btf, id) >= 0 || FunctionIndex.pskbFirst(btf, id))) out.push(name);
      }
    };
    scan(this.vmlinux);
    for (const { btf } of this.modules()) scan(btf);
    return [...new Set(out)].sort();
  }
}
