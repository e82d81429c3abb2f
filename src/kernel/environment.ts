// What the running kernel offers, found at startup: privileges, BTF,
// tracefs, the shape of tracepoints and enums (they differ between kernels),
// and which BPF program types actually load and attach.
import { existsSync, readFileSync } from "node:fs";
import { geteuid, mount } from "../../ffi/libc";
import { BpfObject, LibbpfError, takeLibbpfLog } from "../../ffi/libbpf";
import { environmentError } from "../common/errors";
import { Btf, Kind } from "./btf";

const VMLINUX_BTF = "/sys/kernel/btf/vmlinux";
const TRACEFS = "/sys/kernel/tracing";

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
  return Btf.parse(new Uint8Array(readFileSync(VMLINUX_BTF)));
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

/** enum skb_drop_reason of this kernel: value → name without SKB_DROP_REASON_. */
export function dropReasons(btf: Btf): Map<number, string> {
  const out = new Map<number, string>();
  const [id] = btf.find("skb_drop_reason", Kind.ENUM);
  if (id === undefined) return out; // before 5.17: drops carry no reason
  for (const [name, value] of btf.enumValues(id)) out.set(value, name.replace(/^SKB_DROP_REASON_/, ""));
  return out;
}

/** Arguments of a tracepoint, from its btf_trace_<name> typedef (without the leading ctx). */
export function tracepointParams(btf: Btf, name: string): string[] | undefined {
  const [id] = btf.find(`btf_trace_${name}`, Kind.TYPEDEF);
  if (id === undefined) return undefined;
  const ptr = btf.resolve(btf.sizeOrType(id));
  const proto = btf.sizeOrType(ptr);
  if (btf.kind(ptr) !== Kind.PTR || btf.kind(proto) !== Kind.FUNC_PROTO) return undefined;
  return btf.params(proto).slice(1).map((p) => btf.typeString(p.type));
}

/** Loads and attaches one program of the probe object alone; true if the kernel took it. */
export function probeProgram(probeObject: Uint8Array, name: string): { ok: boolean; why?: string } {
  const obj = BpfObject.open(probeObject);
  try {
    for (const p of obj.programs()) p.setAutoload(p.name === name);
    obj.load();
    obj.program(name).attach().destroy();
    return { ok: true };
  } catch (e) {
    return { ok: false, why: e instanceof LibbpfError ? e.message : String(e) };
  } finally {
    obj.close();
    takeLibbpfLog();
  }
}
