// What users hit first: bad flags, no root, and the binary on a machine
// without libbpf. Each failure is one line with a documented exit code.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { BINARY, runSkbtrail } from "../lib/skbtrail";
import { requireKernelTests } from "../lib/require";

describe("the compiled binary", () => {
  test("bad input: one line naming the flag and the fix, exit 2", async () => {
    for (const args of [["--drop", "--dport", "99999"], ["--drop", "--bogus"], ["-t", "ip", "--drop"], ["--drop", "--output", "/nonexistent/dir/out"]]) {
      const r = await runSkbtrail(args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/^skbtrail: /);
    }
  });

  test("an unknown drop reason is a usage error found before anything is attached", async () => {
    if (!requireKernelTests()) return;
    const r = await runSkbtrail(["--drop", "--reason", "NO_SUCH_REASON"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^skbtrail: --reason: this kernel has no drop reason 'NO_SUCH_REASON'/);
    expect(r.stdout).not.toContain("begin trace");
  });

  test("-h and -V", async () => {
    const help = await runSkbtrail(["-h"]);
    expect(help.code).toBe(0);
    for (const flag of ["--saddr", "--drop", "--drop-stack", "--json", "--timeout", "--reason", "--netns-current", "--tcp-flags"]) expect(help.stdout).toContain(flag);
    expect(help.stdout).toContain("Exit codes:");
    const version = await runSkbtrail(["-V"]);
    expect(version.stdout).toMatch(/^skbtrail \d+\.\d+\.\d+\n$/);
  });
  test("the directory it runs in changes nothing: no .env, no bunfig.toml preload (it runs as root)", async () => {
    const dir = mkdtempSync(`${tmpdir()}/skbtrail-cwd-`);
    try {
      await Bun.write(`${dir}/bunfig.toml`, 'preload = ["./preload.ts"]\n');
      await Bun.write(`${dir}/preload.ts`, 'console.error("PRELOADED");\n');
      // A state directory that would get files if .env were read (--drop keeps its probed features there).
      await Bun.write(`${dir}/.env`, `SKBTRAIL_STATE_DIR=${dir}/state\n`);
      const version = await $`${BINARY} -V`.cwd(dir).nothrow().quiet();
      expect(version.stderr.toString()).toBe("");
      expect(version.stdout.toString()).toMatch(/^skbtrail \d+\.\d+\.\d+\n$/);
      if (!requireKernelTests()) return;
      const { SKBTRAIL_STATE_DIR: _, ...env } = process.env;
      const drop = await $`${BINARY} --drop --timeout 0.2`.cwd(dir).env(env).nothrow().quiet();
      expect(drop.exitCode).toBe(0);
      expect(drop.stderr.toString()).not.toContain("PRELOADED");
      expect(await Bun.file(`${dir}/state/features.json`).exists()).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!requireKernelTests())("privileges and dependencies", () => {
  test("as an unprivileged user: says root is needed, exit 3", async () => {
    const r = await $`setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all ${BINARY} --drop --timeout 1`.nothrow().quiet();
    expect(r.exitCode).toBe(3);
    expect(r.stderr.toString()).toBe("skbtrail: skbtrail must run as root (or with CAP_BPF and CAP_PERFMON) to load BPF programs: run it with sudo\n");
  });

  test("runs from an empty directory with the system's libbpf, libelf and libz hidden", async () => {
    // Wherever the dynamic loader would find them here (ldconfig's cache).
    const system = (await $`ldconfig -p`.text()).split("\n").flatMap((l) => {
      const m = /^\s*(libbpf\.so\.1|libelf\.so\.1|libz\.so\.1) \(.*x86-64.*\) => (\S+)$/.exec(l);
      return m ? [{ lib: m[1]!, path: m[2]! }] : [];
    });
    const dir = mkdtempSync(`${tmpdir()}/skbtrail-alone-`);
    try {
      copyFileSync(BINARY, `${dir}/skbtrail`);
      // A private mount namespace where the system's copies are empty files.
      const hide = system.map((s) => `mount --bind /dev/null ${s.path}`).join(" && ") || "true";
      const script = `${hide} && cd ${dir} && ./skbtrail --drop --timeout 0.5`;
      const r = await $`unshare -m sh -c ${`mount --make-rprivate / && ${script}`}`.env({ PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }).nothrow().quiet();
      expect(r.stderr.toString()).toBe("");
      expect(r.stdout.toString()).toContain("begin trace...");
      expect(r.stdout.toString()).toContain("total events:");
      // Proof the hiding works: the system copy cannot be loaded in that namespace.
      const libbpf = system.find((s) => s.lib === "libbpf.so.1");
      if (!libbpf) return console.log("this system has no libbpf.so.1: nothing to hide");
      const probe = await $`unshare -m sh -c ${`mount --make-rprivate / && ${hide} && SKBTRAIL_LIBBPF=${libbpf.path} ${dir}/skbtrail --drop --timeout 0.5`}`.nothrow().quiet();
      expect(probe.exitCode).toBe(3);
      expect(probe.stderr.toString()).toMatch(/^skbtrail: SKBTRAIL_LIBBPF=.* cannot be loaded/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
