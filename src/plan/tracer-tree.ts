// The tracer tree (knowledge/tracers.yaml): groups of kernel functions and
// tracepoints, as nettrace organizes them, validated when loaded. Turns -t
// selections (groups, names, globs, "all") into the hooks to trace.
import { YamlDoc, type YamlMap } from "../common/yaml";
import { globToRegExp } from "../kernel/functions";

export interface TreeHook {
  kind: "function" | "tracepoint";
  /** Function name, or "category:event" for a tracepoint. */
  name: string;
  /** Group it belongs to (its leaf group). */
  group: string;
  /** Traced without -t (its group and itself are on by default). */
  onByDefault: boolean;
  /** Its own `default`, whatever its group's (--sock's choice among its groups). */
  defaultInGroup: boolean;
  note?: string;
}

export interface TreeGroup {
  name: string;
  description: string;
  onByDefault: boolean;
  children: TreeGroup[];
  hooks: TreeHook[];
}

const GROUP_NAME = /^[a-z0-9][a-z0-9-]*$/;
const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const TRACEPOINT_NAME = /^[a-z0-9_]+:[a-z0-9_]+$/;

export function loadTracerTree(text: string, file: string): TreeGroup[] {
  const doc = new YamlDoc(file, text);
  const seenGroups = new Set<string>();
  const seenHooks = new Set<string>();

  const hook = (node: unknown, group: string, groupOn: boolean, parent: unknown): TreeHook => {
    if (typeof node === "string") {
      if (!FUNCTION_NAME.test(node)) throw doc.error(parent, undefined, `'${node}' is not a function name (a tracepoint is written "tracepoint: category:event")`);
      return { kind: "function", name: node, group, onByDefault: groupOn, defaultInGroup: true };
    }
    const m = doc.map(node, "a hook", ["function", "tracepoint", "default", "note"]);
    if (("function" in m) === ("tracepoint" in m)) throw doc.error(m, undefined, "a hook has exactly one of 'function' or 'tracepoint'");
    const kind = "function" in m ? "function" : "tracepoint";
    const name = kind === "function" ? doc.string(m, "function", FUNCTION_NAME, "a C identifier") : doc.string(m, "tracepoint", TRACEPOINT_NAME, 'write "category:event"');
    const own = doc.boolean(m, "default", true);
    return { kind, name, group, onByDefault: groupOn && own, defaultInGroup: own, note: doc.optionalString(m, "note") };
  };

  const group = (node: unknown, parentOn: boolean): TreeGroup => {
    const m: YamlMap = doc.map(node, "a group", ["group", "description", "default", "children", "hooks"], ["group", "description"]);
    const name = doc.string(m, "group", GROUP_NAME, "lowercase letters, digits and -");
    if (seenGroups.has(name)) throw doc.error(m, "group", `'${name}' is defined twice`);
    seenGroups.add(name);
    const on = parentOn && doc.boolean(m, "default", true);
    if (("children" in m) === ("hooks" in m)) throw doc.error(m, undefined, `group '${name}' needs either 'children' or 'hooks'`);
    const g: TreeGroup = { name, description: doc.string(m, "description"), onByDefault: on, children: [], hooks: [] };
    if ("children" in m) g.children = doc.list(m, "children").map((c) => group(c, on));
    else
      g.hooks = doc.list(m, "hooks").map((h) => {
        const parsed = hook(h, name, on, m);
        if (seenHooks.has(parsed.name)) throw doc.error(typeof h === "object" ? h : m, undefined, `'${parsed.name}' appears twice in the tree`);
        seenHooks.add(parsed.name);
        return parsed;
      });
    return g;
  };

  if (!Array.isArray(doc.root) || doc.root.length === 0) throw doc.error(doc.root, undefined, "the tracer tree must be a list of groups");
  return doc.root.map((g) => group(g, true));
}

export function allHooks(groups: TreeGroup[]): TreeHook[] {
  return groups.flatMap((g) => [...g.hooks, ...allHooks(g.children)]);
}

export function findGroup(groups: TreeGroup[], name: string): TreeGroup | undefined {
  for (const g of groups) {
    if (g.name === name) return g;
    const inner = findGroup(g.children, name);
    if (inner) return inner;
  }
  return undefined;
}

export interface Selection {
  /** Hooks of the tree that were selected. */
  hooks: TreeHook[];
  /** Names and globs that are not in the tree: functions to look up in BTF. */
  outside: string[];
}

/**
 * What -t selects. Without -t: every hook on by default. A group name
 * selects its whole subtree (including hooks off by default); a name or
 * glob selects matching hooks of the tree, and is also looked up among all
 * kernel functions when it is not a tree hook.
 */
export function selectHooks(groups: TreeGroup[], selectors: string[] | undefined): Selection {
  const every = allHooks(groups);
  if (!selectors) return { hooks: every.filter((h) => h.onByDefault), outside: [] };
  const chosen = new Set<TreeHook>();
  const outside: string[] = [];
  for (const sel of selectors) {
    if (sel === "all") {
      every.forEach((h) => chosen.add(h));
      continue;
    }
    const g = findGroup(groups, sel);
    if (g) {
      allHooks([g]).forEach((h) => chosen.add(h));
      continue;
    }
    const re = globToRegExp(sel);
    const matches = every.filter((h) => re.test(h.name) || (h.kind === "tracepoint" && re.test(h.name.split(":")[1]!)));
    matches.forEach((h) => chosen.add(h));
    if (/[*?]/.test(sel) || matches.length === 0) outside.push(sel);
  }
  return { hooks: [...chosen], outside };
}

/** Whether a tree hook is named by a -t style name: its group, its name, or a glob over either form of a tracepoint's name. */
export function hookNamedBy(groups: TreeGroup[], h: TreeHook, name: string): boolean {
  const g = findGroup(groups, name);
  if (g) return allHooks([g]).includes(h);
  const re = globToRegExp(name);
  return re.test(h.name) || (h.kind === "tracepoint" && re.test(h.name.split(":")[1]!));
}

/**
 * --trace-exclude: takes hooks out of a selection (groups, names, globs, as
 * -t takes them) and out of `functions` (names found outside the tree).
 * Returns the names that matched nothing in the tree or the functions.
 */
export function excludeHooks(groups: TreeGroup[], selection: Selection, functions: string[], names: string[]): { functions: string[]; unknown: string[] } {
  const every = allHooks(groups);
  const unknown: string[] = [];
  let kept = functions;
  for (const name of names) {
    const re = globToRegExp(name);
    const inTree = every.some((h) => hookNamedBy(groups, h, name));
    const inFunctions = kept.some((f) => re.test(f));
    if (!inTree && !inFunctions) unknown.push(name);
    selection.hooks = selection.hooks.filter((h) => !hookNamedBy(groups, h, name));
    kept = kept.filter((f) => !re.test(f));
  }
  return { functions: kept, unknown };
}
