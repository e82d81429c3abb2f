// What skbtrail needs from the machine before it touches the kernel:
// privileges, libbpf, the kernel's BTF, tracefs, and enough file
// descriptors. Each missing piece is one line that says what to do (exit 3).
import { existsSync, readFileSync, statSync } from "node:fs";
import { fileLimit, geteuid, mount, raiseFileLimit } from "../../ffi/libc";
import { LibraryLoadError, loadLibbpf, setLibbpfDebug } from "../../ffi/libbpf";
import { bpfObjectPath, probeObjectPath } from "../common/assets";
import { environmentError } from "../common/errors";
import { Btf, BtfError } from "./btf";

const VMLINUX_BTF = "/sys/kernel/btf/vmlinux";
const TRACEFS = "/sys/kernel/tracing";

export interface KernelInfo {
  btf: Btf;
  /** Things worth saying with -v (e.g. tracefs was mounted). */
  notes: string[];
  bpfObject: Uint8Array;
  probeObject: Uint8Array;
}

/** CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, is what loading tracing programs takes. */
export function checkPrivileges(): void {
  if (geteuid() === 0) return;
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  const caps = BigInt(`0x${capEff}`);
  const has = (bit: number) => (caps >> BigInt(bit)) & 1n;
  if (has(21) || (has(38) && has(39))) return;
  throw environmentError("skbtrail must run as root (or with CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo");
}

export function loadKernelBtf(): Btf {
  if (!existsSync(VMLINUX_BTF))
    throw environmentError(
      `this kernel has no BTF (${VMLINUX_BTF} is missing): skbtrail needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, as most distributions ship since 2020`,
    );
  try {
    return Btf.parse(new Uint8Array(readFileSync(VMLINUX_BTF)));
  } catch (e) {
    const why = e instanceof BtfError ? e.message : (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw environmentError(`${VMLINUX_BTF} cannot be used (${why}): the kernel's BTF is unreadable or damaged; check the kernel package`);
  }
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
export async function prepareKernel(debug: boolean): Promise<KernelInfo> {
  checkPrivileges();
  try {
    await loadLibbpf();
  } catch (e) {
    if (e instanceof LibraryLoadError)
      throw environmentError(`SKBTRAIL_LIBBPF=${e.path} cannot be loaded (${e.message}); unset it to use the libbpf built into skbtrail`);
    throw e;
  }
  setLibbpfDebug(debug);
  const btf = loadKernelBtf();
  const notes: string[] = [];
  const tracefs = ensureTracefs();
  if (tracefs) notes.push(tracefs);
  return {
    btf,
    notes,
    bpfObject: new Uint8Array(await Bun.file(bpfObjectPath).arrayBuffer()),
    probeObject: new Uint8Array(await Bun.file(probeObjectPath).arrayBuffer()),
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
