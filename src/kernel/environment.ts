// What skbtrail needs from the machine before it touches the kernel:
// privileges, libbpf, the kernel's BTF, tracefs, and enough file
// descriptors. Each missing piece is one line that says what to do (exit 3).
import { existsSync, readFileSync, statSync } from "node:fs";
import { fileLimit, geteuid, mount, raiseFileLimit } from "../../ffi/libc";
import { LibraryLoadError, loadLibbpf, setLibbpfDebug } from "../../ffi/libbpf";
import { bpfObjectPath, dropObjectPath, probeObjectPath } from "../common/assets";
import { environmentError, shown, usageError } from "../common/errors";
import { Btf, BtfError, Kind } from "./btf";
import { kernelSymbols } from "./kallsyms";

const VMLINUX_BTF = "/sys/kernel/btf/vmlinux";
const TRACEFS = "/sys/kernel/tracing";

export interface KernelInfo {
  btf: Btf;
  /** --btf-path: libbpf's CO-RE relocations use this file too. */
  btfPath?: string;
  /** Things worth saying with -v (e.g. tracefs was mounted). */
  notes: string[];
  /** A BPF object the executable carries, read on first use (natively ~3 ms per MB, far more under emulation). */
  object(name: BpfObjectName): Uint8Array;
}

/** tracer: every program; drop: the drop monitor's alone (--drop); probe: the feature probes. */
export type BpfObjectName = "tracer" | "drop" | "probe";

const OBJECT_PATHS: Record<BpfObjectName, string> = { tracer: bpfObjectPath, drop: dropObjectPath, probe: probeObjectPath };

/** CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, is what loading tracing programs takes. */
export function checkPrivileges(): void {
  if (geteuid() === 0) return;
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  const caps = BigInt(`0x${capEff}`);
  const has = (bit: number) => (caps >> BigInt(bit)) & 1n;
  if (has(21) || (has(38) && has(39))) return;
  throw environmentError("skbtrail must run as root (or with CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo");
}

/** The running kernel's BTF: /sys/kernel/btf/vmlinux, or a file given with --btf-path (checked against the kernel). */
export function loadKernelBtf(btfPath?: string): Btf {
  const path = btfPath ?? VMLINUX_BTF;
  if (btfPath === undefined && !existsSync(VMLINUX_BTF))
    throw environmentError(
      `this kernel has no BTF (${VMLINUX_BTF} is missing): skbtrail needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, as most distributions ship since 2020, or --btf-path with the BTF file built for $(uname -r) (e.g. from BTFHub)`,
    );
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path); // a Buffer is a Uint8Array: no copy
  } catch (e) {
    if (btfPath === undefined) throw environmentError(`${VMLINUX_BTF} cannot be read (${(e as NodeJS.ErrnoException).code}); check the kernel`);
    throw usageError(`--btf-path: cannot read ${shown(btfPath)} (${(e as NodeJS.ErrnoException).code}); give the path of a vmlinux BTF file`);
  }
  let btf: Btf;
  try {
    btf = Btf.parse(bytes);
  } catch (e) {
    const why = e instanceof BtfError ? e.message : (e as Error).message;
    if (btfPath === undefined) throw environmentError(`${VMLINUX_BTF} cannot be used (${why}): the kernel's BTF is unreadable or damaged; check the kernel package`);
    throw environmentError(`--btf-path: ${shown(btfPath)} is not usable BTF (${why}); give the vmlinux BTF file built for $(uname -r)`);
  }
  if (btfPath !== undefined) checkBtfMatchesKernel(btf, btfPath);
  return btf;
}

/**
 * A BTF file from another kernel would make CO-RE read the wrong offsets:
 * nearly every function a kernel's BTF describes is in its symbol table
 * (98% here), one of another version's far fewer (5.10's BTF on 6.18: 68%).
 */
function checkBtfMatchesKernel(btf: Btf, path: string): void {
  const symbols = kernelSymbols();
  let functions = 0;
  let found = 0;
  for (const id of btf.ownIds(Kind.FUNC)) {
    if (functions++ % 16) continue; // a sample is enough
    if (symbols.addressOf(btf.name(id)) !== undefined) found++;
  }
  const sampled = Math.ceil(functions / 16);
  if (!sampled || found / sampled < 0.9)
    throw environmentError(
      `--btf-path: ${shown(path)} does not match the running kernel (${found} of ${sampled} sampled functions are in /proc/kallsyms); give the BTF file built for $(uname -r)`,
    );
}

/** Mounts tracefs when it is missing (kprobe and tracepoint attachment use it). */
export function ensureTracefs(): string | undefined {
  if (existsSync(`${TRACEFS}/events`)) return undefined;
  try {
    mount("nodev", TRACEFS, "tracefs");
    return `mounted tracefs on ${TRACEFS}`;
  } catch (e) {
    return `tracefs is not mounted and mounting it failed (${(e as Error).message})`;
  }
}

/** Checks privileges, loads libbpf and reads the running kernel's BTF. Attaches nothing. */
export async function prepareKernel(debug: boolean, btfPath?: string): Promise<KernelInfo> {
  checkPrivileges();
  try {
    await loadLibbpf();
  } catch (e) {
    if (e instanceof LibraryLoadError)
      throw environmentError(`SKBTRAIL_LIBBPF=${e.path} cannot be loaded (${e.message}); unset it to use the libbpf built into skbtrail`);
    throw e;
  }
  setLibbpfDebug(debug);
  const btf = loadKernelBtf(btfPath);
  const notes: string[] = [];
  const objects: Partial<Record<BpfObjectName, Uint8Array>> = {};
  const tracefs = ensureTracefs();
  if (tracefs) notes.push(tracefs);
  return {
    btf,
    btfPath,
    notes,
    object: (name) => (objects[name] ??= readFileSync(OBJECT_PATHS[name])),
  };
}

export function currentNetns(): number {
  return statSync("/proc/self/ns/net").ino;
}

/** What the runtime and libbpf hold open besides our programs, maps and links. */
const BASE_FDS = 64;

/**
 * Makes sure `needed` more file descriptors can be opened (each program,
 * map and link is one), raising the soft limit up to the hard one as
 * libbpf-tools do. Checked before anything is loaded or attached.
 */
export function ensureFileDescriptors(needed: number): void {
  const want = needed + BASE_FDS;
  const have = raiseFileLimit(want);
  if (have < want)
    throw environmentError(
      `too few file descriptors: this trace needs about ${want} and the limit is ${have} (hard limit ${fileLimit()[1]}); raise it, e.g. ulimit -n ${Math.max(1024, 2 ** Math.ceil(Math.log2(want)))}`,
    );
}
