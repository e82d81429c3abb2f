// VM tests: real Debian kernels booted under QEMU run the same dist/skbtrail
// and the same kernel test files as the host (see vm.ts), to prove the
// backends this host cannot run (kprobe, kprobe.multi, fentry/fexit) and the
// older tracepoint signatures. Kernels are downloaded once into
// ~/.cache/skbtrail-vm. SKBTRAIL_VM=0 skips them (visibly); CI runs them.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { requireKernelTests } from "../lib/require";
import { BINARY } from "../lib/skbtrail";
import { type Release, vmKernel } from "./kernels";
import { runInVm } from "./vm";

const ROOT = `${import.meta.dir}/../..`;
const wanted = requireKernelTests() && process.env.SKBTRAIL_VM !== "0";
if (!wanted) console.warn("SKIPPED VM tests (SKBTRAIL_VM=0, or kernel tests are off)");

interface VmCase {
  release: Release;
  /** Function backends the kernel must offer, best first. */
  backends: string[];
  /** Kernel test files to run inside. */
  suites: string[];
}

const CASES: VmCase[] = [
  // 6.1: kprobes and fentry, no kprobe.multi (no CONFIG_FPROBE); return-value diagnosis.
  { release: "bookworm", backends: ["fentry", "kprobe"], suites: ["tests/kernel/functions.test.ts", "tests/kernel/diag.test.ts"] },
  // 6.12: kprobe.multi too.
  { release: "trixie", backends: ["kprobe-multi", "fentry", "kprobe"], suites: ["tests/kernel/functions.test.ts"] },
  // 5.10: no attach cookie nor bpf_get_func_ip (5.15+), so no function backend; no drop reasons (5.17+).
  { release: "bullseye", backends: [], suites: ["tests/kernel/functions.test.ts"] },
];

function bunTest(c: VmCase): string {
  return `bun test --timeout 300000 ${c.suites.join(" ")}`;
}

describe.skipIf(!wanted)("VM tests on Debian kernels", () => {
  test("dist/skbtrail is built", () => expect(existsSync(BINARY)).toBe(true));

  for (const c of CASES) {
    test(
      `${c.release}: ${c.suites.map((s) => s.split("/").pop()).join(", ")} with backends [${c.backends.join(", ")}]`,
      async () => {
        const kernel = await vmKernel(c.release);
        const r = await runInVm(kernel, bunTest(c), {
          cwd: ROOT,
          env: { SKBTRAIL_REQUIRE_KERNEL: "1", SKBTRAIL_EXPECT_BACKENDS: c.backends.join(","), NO_COLOR: "1" },
          timeoutMs: 1_200_000,
        });
        // The suite's own report, per test, lands in the host's output and in build/vm-logs/.
        const report = `--- ${c.release} (${kernel.version}), ${r.seconds.toFixed(0)} s in the VM ---\n${r.output.trim()}\n`;
        console.log(report);
        mkdirSync(`${ROOT}/build/vm-logs`, { recursive: true });
        writeFileSync(`${ROOT}/build/vm-logs/${c.release}.log`, report + (r.exitCode < 0 ? r.console : ""));
        if (r.exitCode < 0) console.log(r.console.slice(-4000));
        expect(r.exitCode).toBe(0);
      },
      1_300_000,
    );
  }

  test(
    "bullseye: the drop monitor reports drops without a reason on a 5.10 kernel",
    async () => {
      const kernel = await vmKernel("bullseye");
      const script = `
        ./dist/skbtrail --drop -p udp --dport 9 -c 1 --timeout 120 > /tmp/out 2>&1 &
        for i in $(seq 600); do grep -q 'begin trace' /tmp/out && break; sleep 0.1; done
        printf x > /dev/udp/127.0.0.1/9
        wait
        cat /tmp/out`;
      const r = await runInVm(kernel, script, { cwd: ROOT, timeoutMs: 300_000 });
      expect(r.exitCode).toBe(0);
      expect(r.output).toMatch(/UDP: 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:9 /);
      expect(r.output).not.toMatch(/reason: /);
      expect(r.output).toMatch(/__udp4_lib_rcv\+0x[0-9a-f]+|udp_rcv/);
    },
    400_000,
  );
});
