// skbtrail kb check FILE: validates a user's rule file against the schema
// (the same checks --kb applies) and says, rule by rule, what it matches;
// or, for an expect file of skbtrail run (a mapping with `expect:`), the
// checks --expect applies, entry by entry. It needs no kernel: hooks it
// cannot place are warnings, not errors.
import { dropReasonsText, tracerTreeText } from "../common/assets";
import { loadKnowledge, readRuleFile } from "../diagnosis/diagnosis";
import { loadExpectFile, looksLikeExpectFile, type ExpectEntry } from "../diagnosis/gate";
import { loadDropReasons, type Conditions } from "../diagnosis/knowledge";
import { knownHookNames } from "../plan/plan";
import { loadTracerTree } from "../plan/tracer-tree";

function describe(c: Conditions): string {
  return Object.entries(c)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(" or ") : v}`)
    .join(", ");
}

function describeEntry(e: ExpectEntry): string {
  const parts: string[] = [];
  if (e.reasons) parts.push(`reason ${e.reasons.join(" or ")}`);
  if (e.locations) parts.push(`location ${e.locations.join(" or ")}`);
  if (e.protos) parts.push(`proto ${e.protos.join(" or ")}`);
  for (const k of ["saddr", "daddr"] as const) if (e[k]) parts.push(`${k} in ${formatCidr(e[k]!)}`);
  for (const k of ["sport", "dport"] as const) if (e[k]) parts.push(`${k} ${e[k]!.min === e[k]!.max ? e[k]!.min : `${e[k]!.min}-${e[k]!.max}`}`);
  return `${parts.join(", ")}${e.max !== undefined ? `, at most ${e.max}` : ", any number"}${e.why ? ` (${e.why})` : ""}`;
}

function formatCidr(c: { bytes: Uint8Array; prefix: number; family: 4 | 6 }): string {
  const text = c.family === 4 ? [...c.bytes].join(".") : [...Array(8).keys()].map((i) => ((c.bytes[2 * i]! << 8) | c.bytes[2 * i + 1]!).toString(16)).join(":");
  return `${text}/${c.prefix}`;
}

export function checkRuleFile(file: string): string {
  const text = readRuleFile(file, "", "a YAML rule or expect file");
  if (looksLikeExpectFile(text, file)) {
    const reasons = new Set(loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml").keys());
    const { entries, failOn } = loadExpectFile(text, file, reasons);
    const lines = [`${file}: expect file for skbtrail run, ${entries.length} allowed drop${entries.length === 1 ? "" : "s"}, valid${failOn ? `; fail_on: ${failOn}` : ""}`];
    for (const e of entries) lines.push(`  ${e.where}: ${describeEntry(e)}`);
    return `${lines.join("\n")}\n`;
  }
  const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
  const warnings: string[] = [];
  const { rules } = loadKnowledge({ reasons: new Set(), hooks: knownHookNames(tree), warnings }, file, "");
  const mine = rules.filter((r) => r.file === file);
  const lines = [`${file}: ${mine.length} rule${mine.length === 1 ? "" : "s"}, valid${warnings.length ? `, ${warnings.length} warning${warnings.length === 1 ? "" : "s"}` : ""}`];
  for (const w of warnings) lines.push(`  warning: ${w}`);
  for (const r of mine) {
    lines.push(`  ${r.id} (${r.level}, ${r.kind === "connection" ? "a connection rule (--sock --diag), " : ""}line ${r.line}): when ${describe(r.when)}${r.after ? `, after ${describe(r.after)}` : ""}`);
    lines.push(`    says: ${r.message}`);
    if (r.overrides.length) lines.push(`    replaces: ${r.overrides.join(", ")}`);
  }
  return `${lines.join("\n")}\n`;
}
