// The BPF objects the executable carries, as build.ts leaves them: --drop's
// own object holds the drop monitor's programs and the maps they use, and
// neither object carries what only a debugger reads (bench/README.md §14).
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { BpfObject, LibbpfError, loadLibbpf } from "../../ffi/libbpf";
import { loadError } from "../../src/bpf/session";
import { program, programMaps as generatedMaps } from "../../src/abi/programs.generated";
import { bpfObjectPath, dropObjectPath } from "../../src/common/assets";
import { elfSection, programMaps, subprogramNames } from "../../tools/elf";

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
  for (const p of drop.programs) for (const m of generatedMaps[p as keyof typeof generatedMaps]) expect(drop.maps).toContain(m);
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

// A program holds the maps of the subprograms it calls, through other
// subprograms too (calls within .text carry no relocation), and only those;
// a call to a kfunc (an extern) is not one.
test("a program's maps include its subprograms' maps, followed through their calls", async () => {
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-elf-`);
  try {
    const source = `
typedef unsigned int u32;
#define SEC(n) __attribute__((section(n), used))
#define MAP(name) struct { int (*type)[2]; int (*max_entries)[1]; u32 *key; u32 *value; } name SEC(".maps")
static void *(*lookup)(void *map, const void *key) = (void *)1;
MAP(deep); MAP(direct); MAP(unused_sub);
static __attribute__((noinline)) int inner(u32 k) { return lookup(&deep, &k) != 0; }
static __attribute__((noinline)) int outer(u32 k) { return inner(k + 1) + 1; }
static __attribute__((noinline)) int lonely(u32 k) { return lookup(&unused_sub, &k) != 0; }
SEC("tp/a") int prog_a(void *ctx) { return outer(1); }
SEC("tp/b") int prog_b(void *ctx) { u32 k = 0; return lookup(&direct, &k) != 0; }
SEC("tp/c") int prog_c(void *ctx) { return lonely(2); }
extern void *kfunc(const void *p, u32 id) __attribute__((section(".ksyms"), weak));
SEC("tp/d") int prog_d(void *ctx) { return kfunc(ctx, 1) != 0; }
char LICENSE[] SEC("license") = "GPL";
`;
    writeFileSync(`${dir}/calls.c`, source);
    await $`clang -g -O2 -target bpf -c ${dir}/calls.c -o ${dir}/calls.o`;
    const image = readFileSync(`${dir}/calls.o`);
    const maps = Object.fromEntries([...programMaps(image)].map(([p, m]) => [p, [...m].sort()]));
    expect(maps).toEqual({ prog_a: ["deep"], prog_b: ["direct"], prog_c: ["unused_sub"], prog_d: [] }); // a kfunc is no subprogram
    expect(subprogramNames(image).sort()).toEqual(["inner", "lonely", "outer"]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test("the shrunk objects keep their subprograms' symbols, by which libbpf finds them", () => {
  expect(subprogramNames(readFileSync(bpfObjectPath))).toContain("parse_skb");
});

test("a program the kernel refuses is named in the one line, with the way around it a function hook's program has", () => {
  const refused = (prog: string) => loadError(new LibbpfError("bpf_object__load", 13, `libbpf: prog '${prog}': BPF program load failed: Permission denied\nlibbpf: prog '${prog}': -- BEGIN PROG LOAD LOG --\n...`), "loading the BPF programs").message;
  expect(refused(program.kmulti_cast_skb0)).toMatch(/^loading the BPF programs failed: the kernel refused program kmulti_cast_skb0 \(bpf_object__load: .*\); run with -v for the verifier log; or trace its functions through another backend \(--backend kprobe, fentry or kprobe-multi\) or leave them out \(-t\)$/);
  expect(refused(program.tp_net_dev_queue_cast)).toMatch(/refused program tp_net_dev_queue_cast \(.*\); run with -v for the verifier log$/);
  // Nothing named: the call's error as it is.
  expect(loadError(new LibbpfError("bpf_object__load", 22, ""), "loading the BPF programs").message).toMatch(/^loading the BPF programs failed: bpf_object__load: .*; run with -v for the verifier log$/);
});
