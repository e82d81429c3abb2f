// The TypeScript layouts are generated from the compiled object's BTF and
// committed: fail when they drift, and when events.h breaks its rules.
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { BPF_DIR, compileBpf, LAYOUT_FILE, layoutsFor } from "../../build";
import { generateLayouts } from "../../tools/layouts";

/** The build's object when it is newer than every BPF source (`bun run test` just built it), else undefined. */
function freshBuildObject(): string | undefined {
  const object = `${import.meta.dir}/../../build/skbtrail.bpf.o`;
  if (!existsSync(object)) return undefined;
  const built = statSync(object).mtimeMs;
  const sources = readdirSync(BPF_DIR, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return sources.every((e) => statSync(`${e.parentPath}/${e.name}`).mtimeMs <= built) ? object : undefined;
}

// The committed file against what bpf/ compiles to now. The build's object
// serves when it is fresh (clang takes 2 minutes here); CI also checks that
// the build left the committed generated files unchanged (.ci/run).
test("src/abi/layout.generated.ts matches a fresh compile of bpf/", async () => {
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-layout-`);
  try {
    const object = freshBuildObject() ?? (await compileBpf("skbtrail", dir));
    expect(readFileSync(LAYOUT_FILE, "utf8")).toBe(layoutsFor(object)); // else: bun run build.ts, commit
  } finally {
    rmSync(dir, { recursive: true });
  }
}, 600_000); // clang takes minutes on a loaded 2-CPU machine

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
