// Faults from the outside are one line with a documented exit code, never a
// stack trace, and are found before anything is attached: bad values, bad
// knowledge files, a full disk, damaged kernel data, too few file
// descriptors. The real binary, the real kernel, real files.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { requireKernelTests } from "../lib/require";
import { BINARY, runSkbtrail, Skbtrail, type Finished } from "../lib/skbtrail";

/** One line on stderr, this exit code, nothing traced. */
function oneLine(r: Finished, code: number, pattern: RegExp): void {
  expect({ code: r.code, stderr: r.stderr.trim() }).toMatchObject({ code, stderr: expect.stringMatching(pattern) });
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).not.toMatch(/internal error|    at /);
  expect(r.stdout).not.toContain("begin trace");
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(`${tmpdir()}/skbtrail-errors-`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("bad values are refused with their range, before the kernel is touched", () => {
  const cases: [string[], RegExp][] = [
    [["--drop", "--timeout", "99999999"], /^skbtrail: --timeout: 99999999 is out of range; use at most 31536000 seconds$/],
    [["--drop", "--pid", "4294967296"], /^skbtrail: --pid: 4294967296 is out of range; use a number from 1 to 4194304$/],
    [["--drop", "--netns", "4294967296"], /^skbtrail: --netns: 4294967296 is out of range; use a number from 1 to 4294967295$/],
    [["--drop", "--output", ""], /^skbtrail: --output: the file name is empty/],
    [["--drop", "--saddr", "\x1b[2J\x07"], /^skbtrail: --saddr: '\\x1b\[2J\\x07' is not an IPv4/],
    [["--drop", `--${"x".repeat(5000)}`], /^skbtrail: unknown flag '--x{58}…'; see skbtrail --help/],
  ];
  for (const [args, pattern] of cases)
    test(args.join(" ").slice(0, 60), async () => oneLine(await runSkbtrail(args), 2, pattern));

  test("help has no colours when it is not read on a terminal", async () => {
    const help = await runSkbtrail(["-h"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--drop");
    expect(help.stdout).not.toContain("\x1b");
  });
});

describe("a process that may not create executable memory (no JIT, so no bun:ffi) is told so in one line", () => {
  const NO_JIT = /^skbtrail: this process may not create executable memory, which bun:ffi needs to call libbpf \(.*\); run skbtrail without that restriction$/;
  test("BUN_JSC_useJIT=0", async () => oneLine(await runSkbtrail(["--drop", "--timeout", "1"], ["env", "BUN_JSC_useJIT=0"]), 3, NO_JIT));

  // What systemd's MemoryDenyWriteExecute=yes sets where the kernel has it (6.3+); inherited across exec.
  const MDWE = "import ctypes, os, sys\nif ctypes.CDLL(None).prctl(65, 1, 0, 0, 0): sys.exit(99)\nos.execv(sys.argv[1], sys.argv[1:])";
  const mdwe = Bun.spawnSync(["python3", "-c", MDWE, "/bin/true"]).exitCode === 0;
  test.skipIf(!mdwe)("prctl PR_SET_MDWE (6.3+: skipped where the kernel refuses the prctl)", async () => oneLine(await runSkbtrail(["--drop", "--timeout", "1"], ["python3", "-c", MDWE]), 3, NO_JIT));
});

const rule = (extra = "") => `- id: mine\n  level: warn\n  when: { hook: ip_rcv }\n  message: seen\n${extra}`;

describe("knowledge files are checked before use", () => {
  test("a FIFO, a device and an oversized file are refused at once", async () => {
    const fifo = `${dir}/rules.fifo`;
    await $`mkfifo ${fifo}`;
    symlinkSync("/dev/zero", `${dir}/zero.yaml`);
    writeFileSync(`${dir}/huge.yaml`, "#".repeat(2 << 20));
    oneLine(await runSkbtrail(["kb", "check", fifo]), 2, /^skbtrail: .*rules\.fifo is not a regular file/);
    oneLine(await runSkbtrail(["kb", "check", `${dir}/zero.yaml`]), 2, /^skbtrail: .*zero\.yaml is not a regular file/);
    oneLine(await runSkbtrail(["kb", "check", `${dir}/huge.yaml`]), 2, /^skbtrail: .*huge\.yaml is 2097152 bytes, more than such a file may be \(1048576\); check the path$/);
  });

  test("overrides that name no rule are errors at their line; kb check does not speak of --kb", async () => {
    writeFileSync(`${dir}/overrides.yaml`, `${rule("  overrides: [no-such-rule]\n")}`);
    const r = await runSkbtrail(["kb", "check", `${dir}/overrides.yaml`]);
    oneLine(r, 2, /overrides\.yaml:5: overrides: 'no-such-rule' names no rule/);
    expect(r.stderr).not.toContain("--kb");
  });

  test("a hook nothing knows is a warning for kb check", async () => {
    writeFileSync(`${dir}/hook.yaml`, rule().replace("ip_rcv", "no_such_function"));
    const r = await runSkbtrail(["kb", "check", `${dir}/hook.yaml`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1 warning\n  warning: .*hook\.yaml:3: hook: 'no_such_function' is neither in the tracer tree nor a tracepoint/);
  });
});

describe.skipIf(!requireKernelTests())("faults at run time", () => {
  test("--diag with a bad --kb file or an unknown --trace-stack fails before anything is loaded", async () => {
    writeFileSync(`${dir}/hook.yaml`, rule().replace("ip_rcv", "no_such_function"));
    const cases: [string[], RegExp][] = [
      [["--diag", "--kb", `${dir}/hook.yaml`], /^skbtrail: .*hook\.yaml:3: hook: 'no_such_function' is neither in the tracer tree nor a tracepoint skbtrail traces nor a function of this kernel$/],
      [["--trace-stack", "no_such_hook"], /^skbtrail: --trace-stack: 'no_such_hook' is not among the traced hooks/],
    ];
    for (const [args, pattern] of cases) {
      oneLine(await runSkbtrail([...args, "--timeout", "1"]), 2, pattern);
      // libbpf says when it opens an object (--debug): it must not have.
      expect((await runSkbtrail([...args, "--timeout", "1", "--debug"])).stderr).not.toContain("libbpf:");
    }
  });

  test("a full disk: --output /dev/full and stdout on /dev/full stop cleanly with exit 5", async () => {
    // Drops to write: UDP to a closed port on loopback, until the run ends.
    const dropsUntil = async (done: Promise<unknown>) => {
      let over = false;
      void done.then(() => (over = true));
      while (!over) {
        await $`bash -c 'printf x > /dev/udp/127.0.0.1/9'`.nothrow().quiet();
        await Bun.sleep(50);
      }
    };
    const file = Skbtrail.start(["--drop", "-p", "udp", "--dport", "9", "--output", "/dev/full", "--timeout", "60"]);
    await dropsUntil(file.finished);
    const r = await file.finished;
    oneLine({ ...r, stderr: r.stderr.replace("begin trace...\n", "") }, 5, /^skbtrail: cannot write to \/dev\/full \(ENOSPC: no space left on device\): free space or choose another --output$/);
    const stdout = $`${BINARY} --drop -p udp --dport 9 --timeout 60 > /dev/full`.nothrow().quiet();
    await dropsUntil(stdout);
    const s = await stdout;
    expect(s.exitCode).toBe(5);
    expect(s.stderr.toString()).toBe("skbtrail: cannot write to standard output (ENOSPC: no space left on device): free space or choose another --output\n");
  }, 120_000);

  /** Runs the binary with `file` mounted over `target` in a private mount namespace. */
  const withFileOver = (file: string, target: string, args: string) =>
    $`unshare -m sh -c ${`mount --make-rprivate / && mount --bind ${file} ${target} && ${BINARY} ${args}`}`.nothrow().quiet();

  test("an empty, damaged or truncated kernel BTF is one line, exit 3", async () => {
    const real = new Uint8Array(await Bun.file("/sys/kernel/btf/vmlinux").arrayBuffer());
    const files: [string, Uint8Array, RegExp][] = [
      ["empty", new Uint8Array(0), /not BTF data \(bad magic\)/],
      ["garbage", new Uint8Array(4096).map((_, i) => (i * 131) & 0xff), /not BTF data \(bad magic\)/],
      ["truncated", real.subarray(0, real.length >> 1), /truncated or inconsistent BTF header/],
    ];
    for (const [name, bytes, why] of files) {
      writeFileSync(`${dir}/${name}.btf`, bytes);
      const r = await withFileOver(`${dir}/${name}.btf`, "/sys/kernel/btf/vmlinux", "--drop --timeout 1");
      oneLine({ code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() }, 3, new RegExp(`^skbtrail: /sys/kernel/btf/vmlinux cannot be used \\(${why.source.replace(/^\//, "")}`));
    }
  });

  test("garbage in /proc/kallsyms: addresses stay unnamed, nothing breaks", async () => {
    writeFileSync(`${dir}/kallsyms`, "garbage\nffffffffzzzzzzzz T x\n\n");
    const r = await withFileOver(`${dir}/kallsyms`, "/proc/kallsyms", "--drop --drop-stack --timeout 1");
    expect(r.exitCode).toBe(0);
    expect(r.stderr.toString()).not.toContain("internal error");
    expect(r.stdout.toString()).toContain("total events:");
  });

  test("too few file descriptors: one line before anything is attached", async () => {
    for (const args of ["--drop", ""]) {
      const r = await $`bash -c ${`ulimit -n 20 && ${BINARY} ${args} --timeout 1`}`.nothrow().quiet();
      oneLine({ code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString().replace(/^skbtrail: this kernel has no kprobes.*\n/m, "") }, 3, /^skbtrail: too few file descriptors: this trace needs about \d+ and the limit is 20 \(hard limit 20\); raise it, e\.g\. ulimit -n \d+$/);
    }
  });
});
