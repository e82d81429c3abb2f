// Dependencies point one way, down the data flow (DESIGN.md §3): main →
// modes → cli → output → diagnosis → events → bpf → plan → kernel →
// common/abi → ffi. Read from the import statements of every file: an
// import of a folder ranked higher than the importer's fails, and so does
// any import of src/ from ffi/.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const RANK: Record<string, number> = {
  ffi: 0,
  "src/common": 1,
  "src/abi": 1,
  "src/kernel": 2,
  "src/plan": 3,
  "src/bpf": 4,
  "src/events": 5,
  "src/diagnosis": 6,
  "src/output": 7,
  "src/cli": 8,
  "src/modes": 9,
  src: 10, // main.ts, skbtrail.ts
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = `${dir}/${name}`;
    return statSync(path).isDirectory() ? files(path) : name.endsWith(".ts") ? [path] : [];
  });
}

/** The layer of a file: its folder, as named in RANK. */
function layer(file: string): string {
  const dir = relative(ROOT, dirname(file));
  if (!(dir in RANK)) throw new Error(`${relative(ROOT, file)} is in a folder the layering does not know: add it to RANK`);
  return dir;
}

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+["'](\.{1,2}\/[^"']+)["']/gms)].map((m) => resolve(dirname(file), m[1]!));
}

/** Imports that point up (or sideways into another folder of the same rank). */
function wrongArrows(graph: [file: string, targets: string[]][]): string[] {
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    const from = layer(file);
    for (const target of targets) {
      const rel = relative(ROOT, target);
      if (!rel.startsWith("src/") && !rel.startsWith("ffi/")) continue; // build outputs, knowledge/, package.json
      const to = layer(target.endsWith(".ts") ? target : `${target}.ts`);
      if (to !== from && RANK[to]! >= RANK[from]!) wrong.push(`${relative(ROOT, file)} imports ${rel} (${from} → ${to})`);
    }
  }
  return wrong;
}

test("every import in src/ and ffi/ points down the data flow", () => {
  const all = [...files(`${ROOT}/src`), ...files(`${ROOT}/ffi`)];
  expect(wrongArrows(all.map((f) => [f, imports(f)]))).toEqual([]);
});

test("an arrow pointing back up is found", () => {
  const at = (p: string) => `${ROOT}/${p}`;
  expect(
    wrongArrows([
      [at("ffi/libbpf.ts"), [at("src/common/errors")]],
      [at("src/events/decode.ts"), [at("src/output/text.ts"), at("src/kernel/kallsyms")]],
      [at("src/abi/layout.generated.ts"), [at("src/common/errors")]],
    ]),
  ).toEqual([
    "ffi/libbpf.ts imports src/common/errors (ffi → src/common)",
    "src/events/decode.ts imports src/output/text.ts (src/events → src/output)",
    "src/abi/layout.generated.ts imports src/common/errors (src/abi → src/common)",
  ]);
});
