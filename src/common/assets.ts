// Files built by build.ts and carried inside the executable.
import bpfObject from "../../build/skbtrail.bpf.o" with { type: "file" };
import dropObject from "../../build/drop.bpf.o" with { type: "file" };
import probeObject from "../../build/probe.bpf.o" with { type: "file" };
import knowledge from "../../build/knowledge.json" with { type: "json" };
import tracerTree from "../../knowledge/tracers.yaml" with { type: "text" };
import dropReasons from "../../knowledge/drop-reasons.yaml" with { type: "text" };
import rules from "../../knowledge/rules.yaml" with { type: "text" };
import { parsedAlready } from "./yaml";

export const bpfObjectPath: string = bpfObject;
export const dropObjectPath: string = dropObject;
export const probeObjectPath: string = probeObject;

export const tracerTreeText: string = tracerTree;
export const dropReasonsText: string = dropReasons;
export const rulesText: string = rules;

// The build parsed them (build/knowledge.json): loading them costs no YAML parse.
// Each entry holds its text: one edited since the build is parsed as usual.
for (const { text, root } of knowledge) parsedAlready(text, root);
