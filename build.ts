// Build: BPF C → build/*.bpf.o (clang, CO-RE, -g) → src/abi/*.generated.ts (from the
// objects' BTF and symbols) → object shrunk (no DWARF, no line info) → knowledge/*.yaml parsed into build/knowledge.json →
// copy the libraries the executable carries → bun build --compile → dist/skbtrail.
//
//   bun run build.ts            everything
//   bun run build.ts --no-exe   objects, generated files, type check, libraries (no executable)
import { $ } from "bun";
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import yaml from "js-yaml";
import { elfSection, subprogramNames, withoutLineInfo } from "./tools/elf";
import { generateLayouts, generatePrograms } from "./tools/layouts";

const root = import.meta.dir;
const buildDir = `${root}/build`;
export const BPF_DIR = `${root}/bpf`;
const BPF_OBJECTS = ["skbtrail", "probe"];
/** --drop's own object: skbtrail.bpf.c with the drop monitor's programs only (0.2 MB instead of 15 to read and open). */
const DROP_OBJECT = { as: "drop", define: "SKBTRAIL_DROP_ONLY" };
const KNOWLEDGE_FILES = ["tracers", "drop-reasons", "rules"];
const LIBRARIES = ["libz.so.1", "libelf.so.1", "libbpf.so.1"];
const LIBRARY_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64"];
export const LAYOUT_FILE = `${root}/src/abi/layout.generated.ts`;
export const PROGRAMS_FILE = `${root}/src/abi/programs.generated.ts`;

/** Measurement builds only: SKBTRAIL_BPF_DEFINES="BENCH_EMPTY_HOOKS" (bench/README.md §16). */
const EXTRA_DEFINES = (process.env.SKBTRAIL_BPF_DEFINES ?? "").split(/\s+/).filter(Boolean);

/** Compiles bpf/NAME.bpf.c (CO-RE, with BTF) into OUTDIR/NAME.bpf.o, or with `variant` into OUTDIR/AS.bpf.o with -DDEFINE. */
export async function compileBpf(name: string, outDir: string, variant?: { as: string; define: string }): Promise<string> {
  const out = `${outDir}/${variant?.as ?? name}.bpf.o`;
  const defines = [...(variant ? [variant.define] : []), ...EXTRA_DEFINES].map((d) => `-D${d}`);
  await $`clang -O2 -g -target bpf -D__TARGET_ARCH_x86 ${defines} -Wall -Werror -I${BPF_DIR}/include -I${BPF_DIR} -c ${BPF_DIR}/${name}.bpf.c -o ${out}`;
  return out;
}

/** The layout file generated from a compiled skbtrail.bpf.o. */
export function layoutsFor(object: string): string {
  return generateLayouts(readFileSync(object), readFileSync(`${root}/bpf/include/events.h`, "utf8"));
}

/** The program-name file generated from the compiled skbtrail.bpf.o and probe.bpf.o. */
export function programsFor(skbtrailObject: string, probeObject: string): string {
  return generatePrograms([
    { constant: "program", object: readFileSync(skbtrailObject), maps: "programMaps" },
    { constant: "probe_program", object: readFileSync(probeObject) },
  ]);
}

/**
 * Drops from the object what only a debugger or the verifier's log reads (DWARF, BTF line info and
 * the relocations of both, local labels): 58 MB to 15 MB that a start reads and libbpf opens.
 * After the generated files are written; they need none of it. Running it twice changes nothing.
 */
async function shrinkBpfObject(object: string): Promise<void> {
  const btfExt = `${object}.btf-ext`;
  const image = readFileSync(object);
  writeFileSync(btfExt, withoutLineInfo(elfSection(image, ".BTF.ext")));
  // --discard-all: the local symbols, ~80,000 basic-block labels no relocation
  // names; but not the subprograms', by which libbpf finds them.
  const keep = subprogramNames(image).map((name) => `--keep-symbol=${name}`);
  await $`llvm-objcopy --strip-debug --discard-all ${keep} --remove-section=.rel.BTF.ext --update-section .BTF.ext=${btfExt} ${object}`;
  rmSync(btfExt);
}

function writeGenerated(file: string, text: string): void {
  if (existsSync(file) && readFileSync(file, "utf8") === text) return;
  writeFileSync(file, text);
  console.log(`build: regenerated ${file.slice(root.length + 1)} (commit it)`);
}

/** The knowledge files the executable carries, as parsed by js-yaml's core schema: JSON is read far faster than YAML is parsed (0.5-1.3 s of a start under emulation, bench/README.md §13). */
function writeKnowledgeJson(): void {
  const parsed = KNOWLEDGE_FILES.map((name) => {
    const text = readFileSync(`${root}/knowledge/${name}.yaml`, "utf8");
    return { text, root: yaml.load(text, { schema: yaml.CORE_SCHEMA }) };
  });
  writeFileSync(`${buildDir}/knowledge.json`, JSON.stringify(parsed));
}

async function build(): Promise<void> {
  mkdirSync(`${buildDir}/lib`, { recursive: true });
  for (const name of BPF_OBJECTS) await compileBpf(name, buildDir);
  await compileBpf("skbtrail", buildDir, DROP_OBJECT);

  writeGenerated(LAYOUT_FILE, layoutsFor(`${buildDir}/skbtrail.bpf.o`));
  writeGenerated(PROGRAMS_FILE, programsFor(`${buildDir}/skbtrail.bpf.o`, `${buildDir}/probe.bpf.o`));

  for (const object of ["skbtrail", "drop"]) await shrinkBpfObject(`${buildDir}/${object}.bpf.o`);
  writeKnowledgeJson();

  for (const lib of LIBRARIES) {
    const dir = LIBRARY_DIRS.find((d) => existsSync(`${d}/${lib}`));
    if (!dir) throw new Error(`build: ${lib} not found; install it: apt-get install libbpf1 libelf1 zlib1g`);
    copyFileSync(realpathSync(`${dir}/${lib}`), `${buildDir}/lib/${lib}`);
  }

  // The type check is part of the build: a BPF program renamed in bpf/
  // changes programs.generated.ts and fails here, not in a user's run.
  await $`${root}/node_modules/.bin/tsc --noEmit -p ${root}/tsconfig.build.json`;

  if (!process.argv.includes("--no-exe")) {
    mkdirSync(`${root}/dist`, { recursive: true });
    // Bytecode: the runtime need not parse ~1 MB of JavaScript at every start (seconds under emulation).
    // No .env or bunfig.toml from the directory it runs in: it runs as root, and a
    // bunfig.toml's preload would run someone else's code (Bun reads both by default).
    await $`bun build --compile --minify --sourcemap=none --bytecode --no-compile-autoload-dotenv --no-compile-autoload-bunfig --outfile ${root}/dist/skbtrail ${root}/src/main.ts`.quiet();
    console.log("build: dist/skbtrail");
  }
}

if (import.meta.main) await build();
