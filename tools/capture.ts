// What the fixture captures share (tools/capture-lifecycles.ts,
// tools/capture-latency.ts): the plan they record with, the default tracer
// set on this kernel's tracepoints only (as a CI machine without kprobes
// traces it), and reading what the ring holds.
import type { RingBuffer } from "../ffi/ringbuf";
import type { Session } from "../src/bpf/session";
import { recordKind } from "../src/events/decode";
import type { KernelInfo } from "../src/kernel/environment";
import { readFeatures } from "../src/kernel/features";
import { FunctionIndex } from "../src/kernel/functions";
import { kernelSymbols } from "../src/kernel/kallsyms";
import { makePlan, type Plan } from "../src/plan/plan";
import { loadTracerTree, selectHooks } from "../src/plan/tracer-tree";
import { tracerTreeText } from "../src/common/assets";

export function tracepointDefaultPlan(kernel: KernelInfo): Plan {
  return makePlan({
    btf: kernel.btf,
    functions: new FunctionIndex(kernel.btf, kernelSymbols, () => undefined),
    features: { ...readFeatures(kernel, false), kprobe: false, attachCookie: false, kprobeMulti: false, fentry: false, fexit: false },
    selection: selectHooks(loadTracerTree(tracerTreeText, "knowledge/tracers.yaml"), undefined),
    extraFunctions: [],
    ret: false,
    followSkbs: true,
  });
}

/** Reads the ring once to its end; each record of a kind `kinds` names, as hex. */
export async function drainRecords(session: Session, kinds: number[], keep: (hex: string) => void): Promise<void> {
  let drained = false;
  await session.read(
    (ring: RingBuffer, offset: number, length: number) => {
      if (kinds.includes(recordKind(ring, offset, length))) keep(Buffer.from(ring.u8.subarray(offset, offset + length)).toString("hex"));
    },
    () => drained,
    () => (drained = true),
  );
}
