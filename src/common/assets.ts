// Files built by build.ts and carried inside the executable.
import bpfObject from "../../build/skbtrail.bpf.o" with { type: "file" };
import probeObject from "../../build/probe.bpf.o" with { type: "file" };

export const bpfObjectPath: string = bpfObject;
export const probeObjectPath: string = probeObject;
import tracerTree from "../../knowledge/tracers.yaml" with { type: "text" };

export const tracerTreeText: string = tracerTree;
import dropReasons from "../../knowledge/drop-reasons.yaml" with { type: "text" };
import rules from "../../knowledge/rules.yaml" with { type: "text" };

export const dropReasonsText: string = dropReasons;
export const rulesText: string = rules;
