// Build: BPF C → build/*.bpf.o (clang, CO-RE, -g) → src/layout.generated.ts
// (from the object's BTF) → copy the libraries the executable carries →
// bun build --compile → dist/skbtrail.
//
//   bun run build.ts            everything
//   bun run build.ts --no-exe   objects, layouts and libraries only (fast)
import { $ } from "bun";
import { copyFileSync, mkdirSync, readFileSync, realpathSync, existsSync, writeFileSync } from "node:fs";
import { generateLayouts } from "./src/layouts";

const root = import.meta.dir;
const buildDir = `${root}/build`;
const BPF_OBJECTS = ["skbtrail", "probe"];
const LIBRARIES = ["libz.so.1", "libelf.so.1", "libbpf.so.1"];
const LIBRARY_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64"];

mkdirSync(`${buildDir}/lib`, { recursive: true });

for (const name of BPF_OBJECTS) {
  await $`clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I${root}/bpf -c ${root}/bpf/${name}.bpf.c -o ${buildDir}/${name}.bpf.o`;
}

const layoutFile = `${root}/src/layout.generated.ts`;
const layouts = generateLayouts(readFileSync(`${buildDir}/skbtrail.bpf.o`), readFileSync(`${root}/bpf/events.h`, "utf8"));
if (!existsSync(layoutFile) || readFileSync(layoutFile, "utf8") !== layouts) {
  writeFileSync(layoutFile, layouts);
  console.log("build: regenerated src/layout.generated.ts (commit it)");
}

for (const lib of LIBRARIES) {
  const dir = LIBRARY_DIRS.find((d) => existsSync(`${d}/${lib}`));
  if (!dir) throw new Error(`build: ${lib} not found; install it: apt-get install libbpf1 libelf1 zlib1g`);
  copyFileSync(realpathSync(`${dir}/${lib}`), `${buildDir}/lib/${lib}`);
}

if (!process.argv.includes("--no-exe")) {
  mkdirSync(`${root}/dist`, { recursive: true });
  await $`bun build --compile --minify --sourcemap=none --outfile ${root}/dist/skbtrail ${root}/src/main.ts`.quiet();
  console.log("build: dist/skbtrail");
}
