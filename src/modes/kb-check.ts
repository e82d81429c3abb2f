// skbtrail kb check FILE: validates a user's rule file against the schema
// (the same checks --kb applies) and says, rule by rule, what it matches.
// It needs no kernel: hooks it cannot place are warnings, not errors.
import { tracerTreeText } from "../common/assets";
import { loadKnowledge } from "../diagnosis/diagnosis";
import type { Conditions } from "../diagnosis/knowledge";
import { knownHookNames } from "../plan/plan";
import { loadTracerTree } from "../plan/tracer-tree";

function describe(c: Conditions): string {
  return Object.entries(c)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(" or ") : v}`)
    .join(", ");
}

export function checkRuleFile(file: string): string {
  const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
  const warnings: string[] = [];
  const { rules } = loadKnowledge({ reasons: new Set(), hooks: knownHookNames(tree), warnings }, file, "");
  const mine = rules.filter((r) => r.file === file);
  const lines = [`${file}: ${mine.length} rule${mine.length === 1 ? "" : "s"}, valid${warnings.length ? `, ${warnings.length} warning${warnings.length === 1 ? "" : "s"}` : ""}`];
  for (const w of warnings) lines.push(`  warning: ${w}`);
  for (const r of mine) {
    lines.push(`  ${r.id} (${r.level}, line ${r.line}): when ${describe(r.when)}${r.after ? `, after ${describe(r.after)}` : ""}`);
    lines.push(`    says: ${r.message}`);
    if (r.overrides.length) lines.push(`    replaces: ${r.overrides.join(", ")}`);
  }
  return `${lines.join("\n")}\n`;
}
