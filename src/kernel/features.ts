// Which BPF program and attach types the running kernel really accepts,
// found by loading and attaching tiny programs (bpf/probe.bpf.c), and which
// functions ftrace can hook. Asked only when a mode needs the answer: each
// probe makes libbpf parse the kernel's BTF once more.
import { existsSync, readFileSync } from "node:fs";
import { BpfObject, LibbpfError, takeLibbpfLog } from "../../ffi/libbpf";
import { probe_program, type ProbeProgramName } from "../abi/programs.generated";
import type { KernelInfo } from "./environment";
import { forgetKept, keep, readKept } from "./kept";

const TRACEFS = "/sys/kernel/tracing";

export interface Features {
  tpBtf: boolean;
  kprobe: boolean;
  /** kprobes take attach cookies (5.15+); without, the programs name the function by its IP (x86). */
  attachCookie: boolean;
  kprobeMulti: boolean;
  fentry: boolean;
  fexit: boolean;
  /**
   * Trampoline programs can ask which function they are on and read its
   * return value (bpf_get_func_ip, bpf_get_func_ret: 5.17+). Without, copies
   * of a template carry both in their instructions (bpf/progs/functions.bpf.h).
   */
  fentryHelpers: boolean;
  /** kprobe.multi programs may call bpf_rdonly_cast (6.2+): they read the skb and the packet's headers with plain loads. */
  kprobeMultiCast: boolean;
  /** tp_btf programs may read the packet's headers through bpf_rdonly_cast (6.2+): the tracepoints' _cast programs. */
  tpBtfCast: boolean;
}

/** Loads and attaches one program of the probe object alone; ok when the kernel took it. */
export function probeProgram(probeObject: Uint8Array, name: ProbeProgramName, btfPath?: string): { ok: boolean; why?: string } {
  const obj = BpfObject.open(probeObject, btfPath);
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
 * What the kernel accepted, kept until reboot (kept.ts): a kernel's program
 * and attach types do not change while it runs, and probing costs a BPF load
 * each (seconds under emulation). Forgotten when a load fails anyway
 * (forgetFeatures). The key is the newest field: an older skbtrail's answer
 * lacks it, and is probed again (change it when Features gains a field).
 */
const KEPT = "features";
const KEPT_KEY = "tpBtfCast";

function cachedFeatures(needFunctions: boolean, needCast: boolean): Features | undefined {
  const c = readKept<{ functions: boolean; cast: boolean; features: Features }>(KEPT, KEPT_KEY);
  return c && (c.functions || !needFunctions) && (c.cast || !needCast) ? c.features : undefined;
}

/** Drops the kept probe results (after a load they promised failed). */
export function forgetFeatures(): void {
  forgetKept(KEPT);
}

/**
 * Skips the probes that cannot succeed: kprobes and kprobe.multi need kprobe
 * events in tracefs; fexit is asked only where fentry works, and the plain
 * trampolines only where the ones with helpers fail; nothing about
 * functions when only tracepoints are wanted. `needCast`: the hook
 * tracepoints' cast programs may be used (the trace modes); only they ask, so
 * no other mode's first start after a boot pays for the probe.
 */
export function readFeatures(kernel: KernelInfo, needFunctions: boolean, needCast = false): Features {
  const cached = cachedFeatures(needFunctions, needCast);
  if (cached) {
    const functions = needFunctions ? cached : { ...cached, kprobe: false, attachCookie: false, kprobeMulti: false, fentry: false, fexit: false, fentryHelpers: false, kprobeMultiCast: false };
    return needCast ? functions : { ...functions, tpBtfCast: false };
  }
  const ok = (p: ProbeProgramName) => probeProgram(kernel.object("probe"), p, kernel.btfPath).ok;
  const kprobeEvents = needFunctions && existsSync(`${TRACEFS}/kprobe_events`);
  const attachCookie = kprobeEvents && ok(probe_program.probe_kprobe);
  const kprobe = attachCookie || (kprobeEvents && ok(probe_program.probe_kprobe_plain));
  const funcIp = needFunctions && ok(probe_program.probe_fentry);
  const fentryHelpers = funcIp && ok(probe_program.probe_fexit);
  const fentry = funcIp || (needFunctions && ok(probe_program.probe_fentry_plain));
  const kprobeMulti = attachCookie && ok(probe_program.probe_kprobe_multi);
  const tpBtf = ok(probe_program.probe_tp_btf);
  const features = {
    tpBtf,
    kprobe,
    attachCookie,
    kprobeMulti,
    fentry,
    fexit: fentryHelpers || (fentry && ok(probe_program.probe_fexit_plain)),
    fentryHelpers,
    kprobeMultiCast: kprobeMulti && ok(probe_program.probe_kprobe_multi_cast),
    tpBtfCast: needCast && tpBtf && ok(probe_program.probe_tp_btf_cast),
  };
  keep(KEPT, KEPT_KEY, { functions: needFunctions, cast: needCast, features });
  return features;
}

/** The functions ftrace can hook (fentry and kprobe.multi need that), or undefined when unreadable. */
export function readTraceableFunctions(): string | undefined {
  try {
    return readFileSync(`${TRACEFS}/available_filter_functions`, "utf8");
  } catch {
    return undefined;
  }
}
