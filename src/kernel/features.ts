// Which BPF program and attach types the running kernel really accepts,
// found by loading and attaching tiny programs (bpf/probe.bpf.c), and which
// functions ftrace can hook. Asked only when a mode needs the answer: each
// probe makes libbpf parse the kernel's BTF once more.
import { existsSync, readFileSync } from "node:fs";
import { BpfObject, LibbpfError, takeLibbpfLog } from "../../ffi/libbpf";
import { probe_program, type ProbeProgramName } from "../abi/programs.generated";
import type { KernelInfo } from "./environment";

const TRACEFS = "/sys/kernel/tracing";

export interface Features {
  tpBtf: boolean;
  kprobe: boolean;
  kprobeMulti: boolean;
  fentry: boolean;
  fexit: boolean;
}

/** Loads and attaches one program of the probe object alone; ok when the kernel took it. */
export function probeProgram(probeObject: Uint8Array, name: ProbeProgramName): { ok: boolean; why?: string } {
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

/**
 * Skips the probes that cannot succeed: kprobes and kprobe.multi need kprobe
 * events in tracefs; fexit is asked only where fentry works; nothing about
 * functions when only tracepoints are wanted.
 */
export function readFeatures(kernel: KernelInfo, needFunctions: boolean): Features {
  const ok = (p: ProbeProgramName) => probeProgram(kernel.probeObject, p).ok;
  const kprobe = needFunctions && existsSync(`${TRACEFS}/kprobe_events`) && ok(probe_program.probe_kprobe);
  const fentry = needFunctions && ok(probe_program.probe_fentry);
  return {
    tpBtf: ok(probe_program.probe_tp_btf),
    kprobe,
    kprobeMulti: kprobe && ok(probe_program.probe_kprobe_multi),
    fentry,
    fexit: fentry && ok(probe_program.probe_fexit),
  };
}

/** The functions ftrace can hook (fentry and kprobe.multi need that), or undefined when unreadable. */
export function readTraceableFunctions(): string | undefined {
  try {
    return readFileSync(`${TRACEFS}/available_filter_functions`, "utf8");
  } catch {
    return undefined;
  }
}
