#!/usr/bin/env bun
// Entry point. A background detach copy (src/bpf/detach.ts) only closes the
// link fds it inherited, and does so before the rest of skbtrail is even
// evaluated: copies start at every stop that leaves function hooks to detach,
// and under emulation their start costs the traffic (bench/README.md §17).
// Nothing that touches bun:ffi is imported statically: its first dlopen fails
// where the process may not create executable memory, and that must be one line.
import { ExitCode } from "./common/errors";

/** bun:ffi compiles its calls into machine code: a process denied W+X memory has no JIT, and no FFI. */
const NO_JIT =
  "skbtrail: this process may not create executable memory, which bun:ffi needs to call libbpf " +
  "(systemd's MemoryDenyWriteExecute=yes, prctl PR_SET_MDWE, SELinux's deny_execmem, or BUN_JSC_useJIT=0); " +
  "run skbtrail without that restriction";

function startFailure(e: unknown): void {
  const message = (e as Error)?.message ?? String(e);
  if (/requires the JIT/.test(message)) {
    process.stderr.write(`${NO_JIT}\n`);
    process.exitCode = ExitCode.ENVIRONMENT;
    return;
  }
  // run() turns every failure into one line; this is for evaluating the command itself.
  process.stderr.write(`skbtrail: internal error while starting: ${message} (please report it)\n`);
  process.exitCode = ExitCode.RUNTIME;
}

// Not a top-level await: the executable is compiled to bytecode (build.ts), which needs a script.
import("./bpf/detach")
  .then(({ detachInherited, REAP_COMMAND }) => {
    if (process.argv[2] === REAP_COMMAND) {
      detachInherited(Number(process.argv[3]), Number(process.argv[4]));
      process.exit(0);
    }
    return import("./skbtrail").then(({ run }) => run());
  })
  .catch(startFailure);
