#!/usr/bin/env bun
// Entry point: command line → mode → exit code. Every failure ends here as
// one line on stderr and a documented exit code.
import { helpText, parseCommandLine } from "./cli/parse";
import { runDrop } from "./modes/drop";
import { printTree, runTrace } from "./modes/trace";
import { detachInherited, REAP_COMMAND } from "./bpf/detach";
import { checkRuleFile } from "./modes/kb-check";
import { ExitCode, SkbtrailError, usageError } from "./common/errors";
import { Writer } from "./output/writer";
import { Output } from "./output/output";
import { VERSION } from "./common/version";

function openOutput(path: string): Writer {
  try {
    return Writer.toFile(path);
  } catch (e) {
    throw usageError(`--output: cannot write ${path} (${(e as NodeJS.ErrnoException).code}); give a writable file path`);
  }
}

async function main(argv: string[]): Promise<number> {
  const command = parseCommandLine(argv);
  if (command.kind === "help") {
    process.stdout.write(`${await helpText()}\n`);
    return ExitCode.OK;
  }
  if (command.kind === "version") {
    process.stdout.write(`skbtrail ${VERSION}\n`);
    return ExitCode.OK;
  }
  if (command.kind === "kb-check") {
    process.stdout.write(checkRuleFile(command.file));
    return ExitCode.OK;
  }
  const opts = command.options;
  const out = new Output(opts, opts.output ? openOutput(opts.output) : undefined);
  if (command.kind === "tracers") {
    await printTree(opts, out);
    out.close();
    return ExitCode.OK;
  }
  const stop = (reason: string) => () => out.finish(reason);
  process.on("SIGINT", stop("interrupted"));
  process.on("SIGTERM", stop("terminated"));
  process.on("SIGHUP", stop("hangup"));
  const timer = opts.timeout !== undefined ? setTimeout(stop("timeout"), opts.timeout * 1000) : undefined;
  const started = performance.now();
  try {
    if (opts.mode === "drop") {
      out.summary(await runDrop(opts, out), (performance.now() - started) / 1000);
      return ExitCode.OK;
    }
    const { stats, packets, errorFound } = await runTrace(opts, out);
    out.summary(stats, (performance.now() - started) / 1000, packets);
    return errorFound ? ExitCode.FINDING : ExitCode.OK;
  } finally {
    clearTimeout(timer);
    out.close();
  }
}

const verbose = process.argv.includes("-v") || process.argv.includes("--verbose");
if (process.argv[2] === REAP_COMMAND) {
  detachInherited(Number(process.argv[3]));
  process.exit(0);
}
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  if (e instanceof SkbtrailError) {
    process.stderr.write(`skbtrail: ${e.message}\n`);
    if (verbose && e.detail) process.stderr.write(`${e.detail}\n`);
    process.exitCode = e.exitCode;
  } else {
    process.stderr.write(`skbtrail: internal error: ${(e as Error).stack ?? e}\n`);
    process.exitCode = ExitCode.RUNTIME;
  }
}
