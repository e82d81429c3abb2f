// The plan the fixture captures record with (tools/capture-lifecycles.ts,
// tools/capture-latency.ts): the default tracer set on this kernel's
// tracepoints only, as a CI machine without kprobes traces it.
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
    functions: new FunctionIndex(kernel.btf, kernelSymbols),
    features: { ...readFeatures(kernel, false), kprobe: false, attachCookie: false, kprobeMulti: false, fentry: false, fexit: false },
    selection: selectHooks(loadTracerTree(tracerTreeText, "knowledge/tracers.yaml"), undefined),
    extraFunctions: [],
    ret: false,
    followSkbs: true,
  });
}
