// The TypeScript layouts are generated from the compiled object's BTF and
// committed: fail when they drift, and when events.h breaks its rules.
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { compileBpf, LAYOUT_FILE, layoutsFor } from "../../build";
import { generateLayouts } from "../../tools/layouts";

test("src/abi/layout.generated.ts matches a fresh compile of bpf/", async () => {
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-layout-`);
  try {
    const object = await compileBpf("skbtrail", dir);
    expect(readFileSync(LAYOUT_FILE, "utf8")).toBe(layoutsFor(object)); // else: bun run build.ts, commit
  } finally {
    rmSync(dir, { recursive: true });
  }
}, 300_000); // clang takes tens of seconds of CPU (unrolled parsers), minutes on a busy machine

test("implicit padding and missing BTF are refused", async () => {
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-layout-`);
  try {
    writeFileSync(`${dir}/bad.c`, "struct padded { unsigned char a; unsigned int b; };\nstruct padded used;\n");
    await $`clang -g -O2 -target bpf -c ${dir}/bad.c -o ${dir}/bad.o`;
    const object = readFileSync(`${dir}/bad.o`);
    expect(() => generateLayouts(object, "struct padded {\n")).toThrow(/padded\.b: implicit padding before it/);
    expect(() => generateLayouts(object, "struct absent {\n")).toThrow(/struct absent of events.h has no BTF/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
