// The knowledge base: the built-in files load, and every kind of mistake in
// a rule file is reported with file, line and key.
import { describe, expect, test } from "bun:test";
import { dropReasonsText, rulesText, tracerTreeText } from "../../src/common/assets";
import { loadDropReasons, loadRules, type KnownNames } from "../../src/diagnosis/knowledge";
import { loadTracerTree } from "../../src/plan/tracer-tree";
import { SkbtrailError } from "../../src/common/errors";
import { YamlDoc } from "../../src/common/yaml";
import yaml from "js-yaml";
import { knownHookNames } from "../../src/plan/plan";

const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
const tree = loadTracerTree(tracerTreeText, "knowledge/tracers.yaml");
const known: KnownNames = { reasons: new Set(reasons.keys()), hooks: knownHookNames(tree) };

function problem(text: string): string {
  try {
    loadRules(text, "mine.yaml", known);
  } catch (e) {
    expect(e).toBeInstanceOf(SkbtrailError);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error("the rule file was accepted");
}

describe("built-in knowledge", () => {
  test("the drop reasons, rules and tracer tree load and validate; the rules name only hooks skbtrail traces", () => {
    expect(reasons.get("NO_SOCKET")).toMatchObject({ level: "error" });
    const rules = loadRules(rulesText, "knowledge/rules.yaml", known);
    expect(rules.length).toBeGreaterThan(10);
    expect(new Set(rules.map((r) => r.id)).size).toBe(rules.length);
    expect(loadTracerTree(tracerTreeText, "knowledge/tracers.yaml").length).toBeGreaterThan(3);
  });

  test("the executable's copy parsed at build time (build/knowledge.json) is what the YAML files say", () => {
    for (const text of [dropReasonsText, rulesText, tracerTreeText]) {
      const root = new YamlDoc("built-in", text).root;
      expect(root).toEqual(yaml.load(text, { schema: yaml.CORE_SCHEMA }));
      // Not parsed again: every load gets the build's copy (after editing knowledge/, run bun run build.ts).
      expect(new YamlDoc("again", text).root).toBe(root);
    }
    // A text edited since the build is parsed as usual, lines and all.
    expect(() => loadRules(`${rulesText}\n- id: x\n  level: warn\n`, "edited.yaml", known)).toThrow(`edited.yaml:${rulesText.split("\n").length + 1}: a rule lacks the key 'when'`);
  });

  test("a drop site belongs to one reason only", () => {
    const entry = (sites: string) => `  level: warn\n  summary: s\n  explanation: e\n  advice: a\n  sites: ${sites}\n`;
    expect(() => loadDropReasons(`A_REASON:\n${entry("[f, g]")}B_REASON:\n${entry("[h, g]")}`, "r.yaml")).toThrow(/^r\.yaml:\d+: sites: 'g' is already a site of A_REASON/);
  });
});

describe("a rule file with a mistake names file, line and key", () => {
  const good = "- id: mine\n  level: warn\n  when: { hook: ip_rcv }\n  message: seen\n";

  test("a valid file is accepted", () => {
    expect(loadRules(good, "mine.yaml", known)[0]).toMatchObject({ id: "mine", level: "warn", line: 1, when: { hook: ["ip_rcv"] } });
  });

  const cases: [string, string, RegExp][] = [
    ["unknown key", `${good}  colour: red\n`, /^mine\.yaml:5: colour: unknown key in a rule \(allowed: id, level, when/],
    ["unknown level", good.replace("warn", "fatal"), /^mine\.yaml:2: level: 'fatal' is not valid: use info, warn or error$/],
    ["wrong type", good.replace("message: seen", "message: [a, b]"), /^mine\.yaml:4: message: must be a non-empty string$/],
    ["missing key", good.replace("  message: seen\n", ""), /^mine\.yaml:1: a rule lacks the key 'message'$/],
    ["unknown condition", good.replace("hook: ip_rcv", "hook: ip_rcv, colour: red"), /^mine\.yaml:3: colour: unknown key in the conditions of rule mine/],
    ["a drop reason no kernel has", good.replace("hook: ip_rcv", "drop_reason: NO_SUCH_REASON"), /^mine\.yaml:3: drop_reason: 'NO_SUCH_REASON' is not a drop reason of any supported kernel$/],
    ["a return value given as a number", good.replace("hook: ip_rcv", "return: 4"), /^mine\.yaml:3: return: must be a non-empty string$/],
    ["an unknown return meaning", good.replace("hook: ip_rcv", "return: NF_MAYBE"), /^mine\.yaml:3: return: 'NF_MAYBE' is not a return value meaning: use NF_DROP/],
    ["an unknown ICMP error", good.replace("hook: ip_rcv", "icmp_sent: port-closed"), /^mine\.yaml:3: icmp_sent: 'port-closed' is not an ICMP error name/],
    ["an unknown netfilter hook", good.replace("hook: ip_rcv", "nf_hook: INBOUND"), /^mine\.yaml:3: nf_hook: 'INBOUND' is not a netfilter hook/],
    ["an unknown placeholder", good.replace("message: seen", "message: seen {colour}"), /^mine\.yaml:4: message: unknown placeholder \{colour\}/],
    ["a duplicate id", good + good.replace("  level: warn", "  level: info"), /^mine\.yaml:5: id: 'mine' is used twice$/],
    ["no conditions", good.replace("{ hook: ip_rcv }", "{}"), /^mine\.yaml:3: the conditions of rule mine needs at least one condition/],
    ["not YAML", "- id: [unclosed\n", /^mine\.yaml:2: not valid YAML/],
    ["not a list", "id: x\n", /^mine\.yaml:1: a rule file is a list of rules \(an expect file for skbtrail run is a mapping with the key 'expect'\)$/],
    [
      "a mistake in a flow mapping, at its own line (not a later key of that name)",
      `${good.replace("hook: ip_rcv", "hook: ip_rcv, drop_reason: NOPE")}- id: b\n  level: warn\n  when:\n    drop_reason: NO_SOCKET\n  message: m\n`,
      /^mine\.yaml:3: drop_reason: 'NOPE' is not a drop reason/,
    ],
    ["overrides naming no rule", `${good}  overrides: [nothing-like-this]\n`, /^mine\.yaml:5: overrides: 'nothing-like-this' names no rule/],
    ["a hook nothing knows", good.replace("ip_rcv", "no_such_function"), /^mine\.yaml:3: hook: 'no_such_function' is neither in the tracer tree nor a tracepoint/],
  ];
  for (const [what, text, expected] of cases) test(what, () => expect(problem(text)).toMatch(expected));

  test("YAML tags that would build objects or run code are refused", () => {
    expect(problem('- id: x\n  level: warn\n  when: { hook: !!js/function "function(){}" }\n  message: m\n')).toMatch(/^mine\.yaml:\d+: not valid YAML: unknown tag/);
    expect(problem("- id: x\n  level: warn\n  when: { hook: !!binary aGVsbG8= }\n  message: m\n")).toMatch(/^mine\.yaml:\d+: not valid YAML: unknown tag/);
  });
});
