#!/usr/bin/env bun
// Entry point. A background detach copy (src/bpf/detach.ts) only closes the
// link fds it inherited, and does so before the rest of skbtrail is even
// evaluated: copies start at every stop that leaves function hooks to detach,
// and under emulation their start costs the traffic (bench/README.md §17).
import { detachInherited, REAP_COMMAND } from "./bpf/detach";
import { ExitCode } from "./common/errors";

if (process.argv[2] === REAP_COMMAND) {
  detachInherited(Number(process.argv[3]), Number(process.argv[4]));
  process.exit(0);
}
// Not a top-level await: the executable is compiled to bytecode (build.ts), which needs a script.
// run() turns every failure into one line; this catch is for evaluating the command itself.
import("./skbtrail").then(
  ({ run }) => run(),
  (e: unknown) => {
    process.stderr.write(`skbtrail: internal error while starting: ${(e as Error)?.message ?? e} (please report it)\n`);
    process.exitCode = ExitCode.RUNTIME;
  },
);
