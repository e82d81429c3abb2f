// --btf-path (nettrace's flag): the kernel's BTF from a file, for kernels
// without /sys/kernel/btf/vmlinux (BTFHub-style files). The file is checked
// against the running kernel (its functions must be in /proc/kallsyms), so
// a file built for another kernel is one clear line, before anything loads.
// True on any kernel with BTF: the matching file is a copy of the kernel's
// own, the foreign one is the BTF of skbtrail's BPF object.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { runSkbtrail, scaled, Skbtrail } from "../lib/skbtrail";

const enabled = requireKernelTests();
const ROOT = `${import.meta.dir}/../..`;

describe.skipIf(!enabled)("--btf-path", () => {
  let dir: string;
  let net: TwoHosts;

  beforeAll(async () => {
    dir = mkdtempSync(`${tmpdir()}/skbtrail-btf-`);
    copyFileSync("/sys/kernel/btf/vmlinux", `${dir}/vmlinux.btf`);
    await $`llvm-objcopy --dump-section .BTF=${dir}/foreign.btf ${ROOT}/build/skbtrail.bpf.o ${dir}/scratch.o`.quiet();
    writeFileSync(`${dir}/garbage.btf`, "not BTF at all\n");
    net = await TwoHosts.create("btf", 64);
  });
  afterAll(async () => {
    await net?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the kernel's BTF given as a file: the drop monitor runs on it", async () => {
    const t = Skbtrail.start(["--btf-path", `${dir}/vmlinux.btf`, "--drop", "-p", "udp", "--dport", "7501", "-c", "1"]);
    await t.ready();
    await net.a.ns.udp(net.b.ip4, 7501);
    const { code, stdout } = await t.finished;
    expect(code).toBe(0);
    expect(stdout).toContain(`-> ${net.b.ip4}:7501`);
  });

  test("the whole tracer on the file: the default mode (its function hooks where the kernel has them) and --sock (state names from it)", async () => {
    const file = `${dir}/vmlinux.btf`;
    const t = Skbtrail.start(["--btf-path", file, "-p", "udp", "--dport", "7502"]);
    await t.ready();
    await net.a.ns.udp(net.b.ip4, 7502);
    await t.waitFor(/\[kfree_skb/, scaled(10_000));
    const trace = await t.stop("SIGINT");
    expect(trace.code).toBe(0);
    expect(trace.stdout).toMatch(new RegExp(`\\[kfree_skb +\\] UDP: ${net.a.ip4}:\\d+ -> ${net.b.ip4}:7502`));
    const sock = Skbtrail.start(["--btf-path", file, "--sock", "-p", "tcp", "--dport", "7503"]);
    await sock.ready();
    expect(await net.a.ns.tcp(net.b.ip4, 7503)).not.toBe(0); // nothing listens: refused
    await sock.waitFor(/SYN_SENT -> CLOSE/, scaled(10_000));
    const { code, stdout } = await sock.stop("SIGINT");
    expect(code).toBe(0);
    expect(stdout).toContain(`-> ${net.b.ip4}:7503 SYN_SENT CA_Open out:(`);
    expect(stdout).toContain("*CLOSE -> SYN_SENT*");
  });

  test("a file for another kernel, a damaged one, a missing one: one line each, nothing loaded", async () => {
    const foreign = await runSkbtrail(["--btf-path", `${dir}/foreign.btf`, "--drop"]);
    expect(foreign.code).toBe(3);
    expect(foreign.stderr).toMatch(/^skbtrail: --btf-path: .*foreign\.btf does not match the running kernel \(\d+ of \d+ sampled functions are in \/proc\/kallsyms\); give the BTF file built for \$\(uname -r\)\n$/);
    const garbage = await runSkbtrail(["--btf-path", `${dir}/garbage.btf`, "--drop"]);
    expect(garbage.code).toBe(3);
    expect(garbage.stderr).toMatch(/^skbtrail: --btf-path: .*garbage\.btf is not usable BTF \(not BTF data \(bad magic\)\); give the vmlinux BTF file built for \$\(uname -r\)\n$/);
    const missing = await runSkbtrail(["--btf-path", `${dir}/missing.btf`, "--drop"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`skbtrail: --btf-path: cannot read ${dir}/missing.btf (ENOENT); give the path of a vmlinux BTF file\n`);
    for (const r of [foreign, garbage, missing]) expect(r.stdout).not.toContain("begin trace");
  });
});
