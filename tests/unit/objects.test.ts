// The BPF objects the executable carries, as build.ts leaves them: --drop's
// own object holds the drop monitor's programs and the maps they use, and
// neither object carries what only a debugger reads (bench/README.md §14).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { BpfObject, loadLibbpf } from "../../ffi/libbpf";
import { program, programMaps } from "../../src/abi/programs.generated";
import { bpfObjectPath, dropObjectPath } from "../../src/common/assets";
import { elfSection } from "../../tools/elf";

function contents(path: string): { programs: string[]; maps: string[] } {
  const obj = BpfObject.open(new Uint8Array(readFileSync(path)));
  try {
    return { programs: obj.programs().map((p) => p.name).sort(), maps: obj.maps().map((m) => m.name) };
  } finally {
    obj.close();
  }
}

test("the drop object holds the drop monitor's programs, each with every map it uses", async () => {
  await loadLibbpf();
  const drop = contents(dropObjectPath);
  expect(drop.programs).toEqual(Object.keys(program).filter((p) => /^drop_/.test(p)).sort());
  for (const p of drop.programs) for (const m of programMaps[p as keyof typeof programMaps]) expect(drop.maps).toContain(m);
  expect(contents(bpfObjectPath).programs).toEqual(Object.keys(program).sort());
});

test("neither object carries DWARF or BTF line info", () => {
  for (const path of [bpfObjectPath, dropObjectPath]) {
    const image = readFileSync(path);
    expect(() => elfSection(image, ".debug_info")).toThrow(/no .debug_info section/);
    const ext = elfSection(image, ".BTF.ext");
    expect(new DataView(ext.buffer, ext.byteOffset).getUint32(20, true)).toBe(0); // line_info_len
  }
});
