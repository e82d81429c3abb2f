// The option structs ffi/libbpf.ts writes by hand must match the libbpf
// headers of the library the executable embeds (Debian's libbpf-dev is the
// same version as the embedded libbpf1): compiled and measured with clang.
// Newer libbpf versions append fields (bpf_prog_load_opts grew from 104 to
// 112 bytes in 1.5): a struct may be larger than ours, never different in
// the fields we write.
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { BpfObject, loadLibbpf, OPTION_STRUCTS, writeFunctionId } from "../../ffi/libbpf";
import { bpfObjectPath } from "../../src/common/assets";

test("sizes and field offsets of the libbpf option structs match bpf/libbpf.h and bpf/bpf.h", async () => {
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-abi-`);
  try {
    const lines = Object.entries(OPTION_STRUCTS).flatMap(([struct, { fields }]) => [
      `printf("${struct} size %zu\\n", sizeof(struct ${struct}));`,
      ...Object.keys(fields).map((f) => `printf("${struct} ${f} %zu\\n", offsetof(struct ${struct}, ${f}));`),
    ]);
    writeFileSync(`${dir}/abi.c`, `#include <stdio.h>\n#include <stddef.h>\n#include <bpf/libbpf.h>\n#include <bpf/bpf.h>\nint main(void) {\n${lines.join("\n")}\nreturn 0;\n}\n`);
    await $`clang -o ${dir}/abi ${dir}/abi.c`.quiet();
    const measured = (await $`${dir}/abi`.text()).trim().split("\n");
    const sizes = measured.filter((l) => / size /.test(l)).map((l) => l.split(" "));
    for (const [struct, , size] of sizes) expect({ struct, atLeast: Number(size) >= OPTION_STRUCTS[struct as keyof typeof OPTION_STRUCTS].size }).toEqual({ struct, atLeast: true });
    const expected = Object.entries(OPTION_STRUCTS).flatMap(([struct, { fields }]) => Object.entries(fields).map(([f, off]) => `${struct} ${f} ${off}`));
    expect(measured.filter((l) => !/ size /.test(l))).toEqual(expected);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Copies of the fentry_id/fexit_id templates are written for their function
// (bpf/progs/functions.bpf.h): the compiled instructions must hold the mark,
// and fexit's the return-value load right after it, for writeFunctionId to find.
test("every id-carrying template has its function mark, and writeFunctionId writes the address and return slot", async () => {
  await loadLibbpf();
  const obj = BpfObject.open(new Uint8Array(readFileSync(bpfObjectPath)));
  try {
    const templates = obj.programs().filter((p) => /^f(entry|exit)_id_skb\d$/.test(p.name));
    expect(templates.map((p) => p.name).sort()).toEqual([0, 1, 2, 3, 4].flatMap((n) => [`fentry_id_skb${n}`, `fexit_id_skb${n}`]).sort());
    for (const p of templates) {
      const exit = p.name.startsWith("fexit");
      const code = p.instructions();
      const before = code.slice();
      writeFunctionId(code, { func: 0xffffffff81234560n, returnSlot: exit ? 3 : undefined }, p.name);
      const changed = [...code.keys()].filter((i) => code[i] !== before[i]);
      const at = changed[0]! - 4; // the first changed byte lies in the ld_imm64's low immediate
      const v = new DataView(code.buffer);
      expect({ name: p.name, op: code[at], lo: v.getUint32(at + 4, true), hi: v.getUint32(at + 12, true) }).toEqual({ name: p.name, op: 0x18, lo: 0x81234560, hi: 0xffffffff });
      if (exit) expect({ name: p.name, op: code[at + 16], off: v.getInt16(at + 18, true) }).toEqual({ name: p.name, op: 0x79, off: 24 });
      expect(() => writeFunctionId(code, { func: 1n }, p.name)).toThrow(/no function mark/); // written once, the mark is gone
    }
  } finally {
    obj.close();
  }
});
