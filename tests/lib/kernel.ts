// Facts about the running kernel that tests must not hard-code: they differ
// between the kernels the tests run on (a tracepoint-only 6.18 CI machine,
// Debian's 5.10/6.1/6.12 in tests/vm, a stock Ubuntu). Each is read from the
// kernel itself (/proc/kallsyms, its BTF) or asked of the binary, once per process.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { BINARY, runSkbtrail } from "./skbtrail";
import { Btf, Kind } from "../../src/kernel/btf";

/** The function backends in the order the binary prefers them (chooseBackend in src/plan/plan.ts). */
export const FUNCTION_BACKENDS = ["kprobe-multi", "kprobe", "fentry"] as const;

/** Kept until reboot, for the next test file: each answer costs three runs (half a minute under emulation). */
const BACKENDS_FILE = "/run/skbtrail-tests-backends.json";

let backends: Promise<string[]> | undefined;

/**
 * The function backends this kernel runs, best first: the binary is asked
 * with --backend X (it fails with one clear line when the kernel cannot).
 */
export function functionBackends(): Promise<string[]> {
  backends ??= (async () => {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    try {
      const kept = JSON.parse(readFileSync(BACKENDS_FILE, "utf8")) as { boot: string; binary: number; ok: string[] };
      if (kept.boot === boot && kept.binary === statSync(BINARY).mtimeMs) return kept.ok;
    } catch {
      // none kept yet
    }
    const ok: string[] = [];
    for (const b of FUNCTION_BACKENDS) if ((await runSkbtrail(["--backend", b, "-t", "ip_rcv", "--timeout", "0.1"])).code === 0) ok.push(b);
    try {
      writeFileSync(BACKENDS_FILE, JSON.stringify({ boot, binary: statSync(BINARY).mtimeMs, ok }));
    } catch {
      // a read-only /run: ask again next time
    }
    return ok;
  })();
  return backends;
}

let symbols: { modules: string; names: Map<string, string> } | undefined;

/** The kernel's text symbols (functions), those of the modules loaded now included: name → module ("" for vmlinux). */
function kallsyms(): Map<string, string> {
  // No /proc/modules on a kernel built without module support.
  const modules = existsSync("/proc/modules") ? readFileSync("/proc/modules", "utf8").replace(/ .*/g, "") : "";
  if (symbols?.modules !== modules) {
    const names = new Map<string, string>();
    for (const m of readFileSync("/proc/kallsyms", "utf8").matchAll(/^[0-9a-f]+ [tT] (\S+)(?:\t\[(\w+)\])?$/gm)) if (!names.has(m[1]!)) names.set(m[1]!, m[2] ?? "");
    symbols = { modules, names };
  }
  return symbols.names;
}

/** Names of the kernel's functions, those of the modules loaded now included. */
export function kernelFunctions(): Set<string> {
  return new Set(kallsyms().keys());
}

/** The module a kernel function lives in; undefined for vmlinux (or a function the kernel lacks). */
export function moduleOf(fn: string): string | undefined {
  return kallsyms().get(fn) || undefined;
}

/**
 * The function that calls skb:kfree_skb, the first frame of a drop's stack:
 * sk_skb_reason_drop (6.11+), kfree_skb_reason (5.17–6.10), kfree_skb before.
 * Each newer one made the older an inline wrapper, so the newest present wins.
 */
export function dropFunction(): string {
  const found = ["sk_skb_reason_drop", "kfree_skb_reason", "kfree_skb"].find((f) => kallsyms().has(f));
  if (!found) throw new Error("/proc/kallsyms has none of sk_skb_reason_drop, kfree_skb_reason, kfree_skb");
  return found;
}

/**
 * The netfilter functions that free a packet an nftables rule dropped:
 * nf_hook_slow on the NF_DROP verdict, or nft_do_chain itself (Debian's
 * 6.12 frees it there and returns NF_STOLEN). Those the kernel has.
 */
export function netfilterDroppers(): string[] {
  return ["nf_hook_slow", "nft_do_chain"].filter((f) => kallsyms().has(f));
}

/** A regex source for a drop location in netfilter: `nf_hook_slow+0x1f` or `nft_do_chain+0x47f [nf_tables]`. */
export function netfilterDropLocation(): string {
  return `(?:${netfilterDroppers().join("|")})\\+0x[0-9a-f]+(?: \\[\\w+\\])?`;
}

let btfStrings: string | undefined;

/** Whether the running kernel's BTF names it: a type (btf_trace_tcp_probe for a tracepoint), an enum value (SK_RST_REASON_NO_SOCKET). */
export function btfHas(name: string): boolean {
  btfStrings ??= readFileSync("/sys/kernel/btf/vmlinux", "latin1");
  return btfStrings.includes(`\0${name}\0`);
}

/** The size of a struct in the running kernel's BTF (its layout differs between kernels). */
export function btfStructSize(name: string): number {
  const vmlinux = Btf.parse(new Uint8Array(readFileSync("/sys/kernel/btf/vmlinux")));
  return vmlinux.sizeOrType(vmlinux.find(name, Kind.STRUCT)[0]!);
}

/**
 * Whether skbtrail can hook this kernel function: it must be in BTF, its
 * module's own (/sys/kernel/btf/MODULE, 5.11+) for a module function. On
 * 5.10 module functions such as nft_do_chain have none.
 */
export function traceableFunction(fn: string): boolean {
  const module = moduleOf(fn);
  return module ? existsSync(`/sys/kernel/btf/${module}`) : btfHas(fn);
}

/** Whether the kernel has sch_netem, built in or as a module (Debian's kernels; not the development host's 6.18). */
export function hasNetem(): boolean {
  return Bun.spawnSync(["modinfo", "sch_netem"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}

/** Whether the kernel has 802.1Q VLAN devices, built in or as a module (Debian's kernels; not the development host's 6.18). */
export function hasVlan(): boolean {
  return existsSync("/sys/module/8021q") || Bun.spawnSync(["modinfo", "8021q"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}
