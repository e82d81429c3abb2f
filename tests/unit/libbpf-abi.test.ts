// The option structs ffi/libbpf.ts writes by hand must match the libbpf
// headers of the library the executable embeds (Debian's libbpf-dev is the
// same version as the embedded libbpf1): compiled and measured with clang.
// Newer libbpf versions append fields (bpf_prog_load_opts grew from 104 to
// 112 bytes in 1.5): a struct may be larger than ours, never different in
// the fields we write.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { OPTION_STRUCTS } from "../../ffi/libbpf";

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
