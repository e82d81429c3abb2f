// The command: command line → mode → exit code. Every failure ends here as
// one line on stderr and a documented exit code; stack traces only with --debug.
import { pauseDetaches, resumeDetaches } from "./bpf/detach";
import { helpText } from "./cli/flags";
import { parseCommandLine } from "./cli/parse";
import { ExitCode, SkbtrailError, shown, usageError } from "./common/errors";
import { VERSION } from "./common/version";
import { prepareKernel } from "./kernel/environment";
import { writeFileSync } from "node:fs";
import { runDrop } from "./modes/drop";
import { checkRuleFile } from "./modes/kb-check";
import { PacketCapture } from "./modes/pcap";
import { ChildCommand, prepareGate, runGate } from "./modes/run";
import { MetricsServer } from "./modes/metrics-server";
import { runLatency } from "./modes/latency";
import { runMonitor } from "./modes/monitor";
import { runSock } from "./modes/sock";
import { StopControl, type StopReason } from "./modes/stop";
import { runTrace } from "./modes/trace";
import { printTree } from "./modes/tree";
import { Output } from "./output/output";
import { githubAnnotations, reportJson, reportJunit, reportText, type RunReport } from "./output/report";
import { Clock } from "./output/time";
import { openError, Writer } from "./output/writer";

function openOutput(path: string): Writer {
  try {
    return Writer.toFile(path);
  } catch (e) {
    throw usageError(`--output: cannot write ${shown(path)} (${openError(e)}); give a writable file path`);
  }
}

const SIGNALS: [NodeJS.Signals, StopReason, number][] = [
  ["SIGINT", "interrupted", 2],
  ["SIGTERM", "terminated", 15],
  ["SIGHUP", "hangup", 1],
];

/**
 * The first signal stops the run cleanly; a second one, while it stops,
 * exits at once (links are fd-owned). `divert` takes a signal instead when
 * it returns true: `skbtrail run` forwards them to the command while it
 * runs, `--monitor --output` reopens the file on SIGHUP (log rotation).
 */
function stopOnSignals(stop: StopControl, divert: (signal: NodeJS.Signals) => boolean): void {
  for (const [signal, reason, number] of SIGNALS)
    process.on(signal, () => {
      if (divert(signal)) return;
      stop.signals++;
      if (stop.reason !== undefined && stop.reason !== "count") process.exit(128 + number);
      stop.request(reason);
    });
}

/** Writes a report file; a failure is the output failure (exit 5) unless the command failed. */
function writeReport(flag: string, path: string | undefined, text: () => string, failures: string[]): void {
  if (path === undefined) return;
  try {
    writeFileSync(path, text());
  } catch (e) {
    failures.push(`${flag}: cannot write ${shown(path)} (${(e as NodeJS.ErrnoException).code}): free space or choose another file`);
  }
}

/** skbtrail run: the gate's report on stdout (or --output), in files, and as GitHub annotations. */
async function publishReport(report: RunReport, opts: { json: boolean; date: boolean; junit?: string; reportJson?: string }, out: Output): Promise<string[]> {
  const clock = new Clock();
  const failures: string[] = [];
  if (opts.json) out.raw(JSON.stringify(reportJson(report, clock)));
  else for (const line of reportText(report, out.textStyle)) out.raw(line);
  out.flush();
  writeReport("--junit", opts.junit, () => reportJunit(report, clock), failures);
  writeReport("--report-json", opts.reportJson, () => `${JSON.stringify(reportJson(report, clock), null, 2)}\n`, failures);
  if (process.env.GITHUB_ACTIONS === "true") {
    const annotations = new Writer(1);
    for (const line of githubAnnotations(report)) annotations.line(line);
    await annotations.close();
  }
  return failures;
}

async function main(argv: string[]): Promise<number> {
  const command = parseCommandLine(argv);
  if (command.kind === "help") {
    process.stdout.write(`${await helpText(!!process.stdout.isTTY && !("NO_COLOR" in process.env))}\n`);
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
  const stop = new StopControl(opts.count, opts.timeout);
  // skbtrail run: the policy files and the command are checked before anything is attached.
  const gate = command.kind === "gate" ? { setup: prepareGate(command.options.gate), child: new ChildCommand(command.options.gate.command) } : undefined;
  const out = new Output({ ...opts, statusToStderr: !!gate }, opts.output ? openOutput(opts.output) : undefined);
  const reopen = () => out.note(out.reopen() ? `SIGHUP: reopened ${opts.output}` : `SIGHUP: could not reopen ${opts.output}; still writing to the file it had open`);
  const rotating = !gate && opts.mode === "monitor" && !!opts.output;
  stopOnSignals(stop, (signal) => {
    if (gate?.child.running) gate.child.forward(signal);
    else if (rotating && signal === "SIGHUP") reopen();
    else return false;
    return true;
  });
  const pcap = opts.pcap !== undefined ? await PacketCapture.open(opts.pcap, opts.snaplen, () => stop.stopped, (line) => out.note(line)) : undefined;
  if (opts.pcap !== undefined && !pcap) {
    // Stopped while waiting for a reader of the --pcap FIFO: nothing was attached.
    await out.close(stop.signalledFromNow());
    return ExitCode.OK;
  }
  if (pcap) out.alsoWaitFor(pcap);
  let exitCode: number = ExitCode.OK;
  let metrics: MetricsServer | undefined;
  const failures: string[] = [];
  try {
    // Until attached, earlier runs' background detaches wait (src/bpf/detach.ts).
    pauseDetaches();
    const kernel = await prepareKernel(opts.debug, opts.btfPath);
    out.verbose(`kernel ready (libbpf, BTF) in ${Math.round(stop.seconds * 1000)} ms`);
    // Listening before anything is attached: a port that is taken is one line.
    if (opts.metrics && command.kind === "run") {
      metrics = MetricsServer.start(opts.metrics);
      out.verbose(`serving metrics on ${metrics.url}`);
    }
    if (command.kind === "tracers") {
      printTree(opts, kernel, out);
    } else if (command.kind === "gate") {
      const { report } = await runGate(command.options, gate!.setup, kernel, out, stop, gate!.child, pcap);
      await pcap?.close(stop.signalledFromNow());
      if (pcap?.failure) failures.push(pcap.failure);
      if (pcap?.stalled) out.note(pcap.stalled);
      failures.push(...(await publishReport(report, { ...opts, ...command.options.gate }, out)));
      exitCode = report.exitCode;
      // The command's own failure decides; a report that could not be written comes next.
      const commandFailed = report.commandExit.code !== 0;
      if (!commandFailed && (failures.length || out.failure)) throw new SkbtrailError(failures[0] ?? out.failure!, ExitCode.OUTPUT);
      for (const f of failures) out.note(f);
      return exitCode;
    } else if (opts.mode === "drop") {
      out.summary(await runDrop(opts, kernel, out, stop, { pcap, metrics }));
    } else if (opts.mode === "latency") {
      out.summary(await runLatency(opts, kernel, out, stop));
    } else if (opts.mode === "sock") {
      const { summary, errorFound } = await runSock(opts, kernel, out, stop);
      out.summary(summary);
      if (errorFound) exitCode = ExitCode.FINDING;
    } else if (opts.mode === "monitor") {
      out.summary(await runMonitor(opts, kernel, out, stop, metrics));
    } else {
      const { summary, errorFound } = await runTrace(opts, kernel, out, stop, { pcap, metrics });
      out.summary(summary);
      if (errorFound) exitCode = ExitCode.FINDING;
    }
  } finally {
    resumeDetaches();
    metrics?.stop();
    // A signal now gives up the output's last bytes: a slow reader never holds the exit.
    const giveUp = stop.signalledFromNow();
    await out.close(giveUp);
    await pcap?.close(giveUp);
  }
  if (pcap?.stalled) out.note(pcap.stalled);
  if (pcap && (pcap.withoutBytes || opts.verbose)) out.note(`--pcap: ${pcap.packets} packets written to ${shown(pcap.path)}${pcap.withoutBytes ? `; ${pcap.withoutBytes} events had no header to capture from` : ""}`);
  // Tracing stopped cleanly when the output failed; say what failed.
  if (out.failure) throw new SkbtrailError(out.failure, ExitCode.OUTPUT);
  if (pcap?.failure) throw new SkbtrailError(pcap.failure, ExitCode.OUTPUT);
  return exitCode;
}

const debug = process.argv.includes("--debug");
const verbose = debug || process.argv.includes("-v") || process.argv.includes("--verbose");
/** Runs main and turns every failure into one line and its exit code. */
export async function run(): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (e) {
    if (e instanceof SkbtrailError) {
      process.stderr.write(`skbtrail: ${e.message}\n`);
      if (verbose && e.detail) process.stderr.write(`${e.detail}\n`);
      process.exitCode = e.exitCode;
    } else if ((e as NodeJS.ErrnoException).code === "EMFILE" || (e as NodeJS.ErrnoException).code === "ENFILE") {
      process.stderr.write("skbtrail: too many open files: raise the limit (ulimit -n 65536) or trace fewer hooks (-t)\n");
      process.exitCode = ExitCode.ENVIRONMENT;
    } else {
      const err = e as Error;
      process.stderr.write(`skbtrail: internal error: ${shown(String(err?.message ?? e))} (please report it; --debug shows where)\n`);
      if (debug) process.stderr.write(`${err?.stack ?? e}\n`);
      process.exitCode = ExitCode.RUNTIME;
    }
  }
}
