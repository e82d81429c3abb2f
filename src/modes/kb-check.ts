// skbtrail kb check FILE: validates a user's rule file against the schema
// (the same checks --kb applies) and says, rule by rule, what it matches.
import { loadTracerTree } from "../plan/tracer-tree";
import { loadKnowledge } from "../diagnosis/diagnosis";
import { tracerTreeText } from "../common/assets";
import type { Conditions } from "../diagnosis/knowledge";

function describe(c: Conditions): string {
  return Object.entries(c)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(" or ") : v}`)
    .join(", ");
}

export function checkRuleFile(file: string): string {
  const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
  const { rules } = loadKnowledge([], tree, file);
  const mine = rules.filter((r) => r.file === file);
  const lines = [`${file}: ${mine.length} rule${mine.length === 1 ? "" : "s"}, valid`];
  for (const r of mine) {
    lines.push(`  ${r.id} (${r.level}, line ${r.line}): when ${describe(r.when)}${r.after ? `, after ${describe(r.after)}` : ""}`);
    lines.push(`    says: ${r.message}`);
    if (r.overrides.length) lines.push(`    replaces: ${r.overrides.join(", ")}`);
  }
  return `${lines.join("\n")}\n`;
}
