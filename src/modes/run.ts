// skbtrail run [filters] [options] -- CMD [ARGS...]: the CI gate. Attaches
// (the drop monitor, or with --diag the lifecycle diagnosis), and once
// attached runs CMD with the caller's stdio and environment; when CMD exits,
// what is still queued is read (its last moments count), everything is
// detached, and the drops seen are judged by the policy
// (src/diagnosis/gate.ts) and reported (src/output/report.ts).
//
// Exit status: CMD's own when it failed (128+N when signal N killed it),
// else 6 when unexpected drops were seen, else 0.
import { accessSync, closeSync, constants, openSync, statSync } from "node:fs";
import { constants as os } from "node:os";
import type { Subprocess } from "bun";
import { close, pidfdOpen, Poller } from "../../ffi/libc";
import { hook_flags, packet_layers } from "../abi/layout.generated";
import type { GateOptions, Options } from "../cli/parse";
import { dropReasonsText } from "../common/assets";
import { ExitCode, SkbtrailError, shown, usageError } from "../common/errors";
import { readRuleFile } from "../diagnosis/diagnosis";
import { checkAllowed, DEFAULT_FAIL_ON, Gate, loadExpectFile, type DropFacts, type ExpectEntry, type GatePolicy } from "../diagnosis/gate";
import { loadDropReasons, type ReasonEntry } from "../diagnosis/knowledge";
import type { DropEvent, Packet } from "../events/decode";
import { l3Name, l4Name } from "../events/protocols";
import { dropReasons } from "../kernel/btf-facts";
import type { KernelInfo } from "../kernel/environment";
import type { Output, RunSummary } from "../output/output";
import type { RunReport } from "../output/report";
import { runDrop, type DropSink } from "./drop";
import type { PacketCapture } from "./pcap";
import type { StopControl } from "./stop";
import { runTrace, type PacketSink } from "./trace";

/** What a run needs that the user can get wrong, checked before anything is attached or run. */
export interface GateSetup {
  policy: GatePolicy;
  reasons: Map<string, ReasonEntry>;
}

/** "./tests.sh" or "make": exists and may be executed, or the shell's exit code (127, 126) with one line. */
function checkCommand(name: string): void {
  const fail = (why: string, code: number) => new SkbtrailError(`run: ${why}`, code);
  if (!name.includes("/")) {
    if (!Bun.which(name)) throw fail(`command '${shown(name)}' not found in PATH; check the name, or give its path (e.g. ./${shown(name)})`, ExitCode.COMMAND_NOT_FOUND);
    return;
  }
  try {
    if (statSync(name).isDirectory()) throw fail(`'${shown(name)}' is a directory, not a command`, ExitCode.COMMAND_NOT_EXECUTABLE);
  } catch (e) {
    if (e instanceof SkbtrailError) throw e;
    throw fail(`command '${shown(name)}' not found; check the path`, ExitCode.COMMAND_NOT_FOUND);
  }
  try {
    accessSync(name, constants.X_OK);
  } catch {
    throw fail(`'${shown(name)}' is not executable; chmod +x ${shown(name)}, or run it through its interpreter (sh ${shown(name)})`, ExitCode.COMMAND_NOT_EXECUTABLE);
  }
}

/** A report file can be written: created now (empty), written at the end. */
function checkWritable(flag: string, path: string | undefined): void {
  if (path === undefined) return;
  try {
    closeSync(openSync(path, "w"));
  } catch (e) {
    throw usageError(`${flag}: cannot write ${shown(path)} (${(e as NodeJS.ErrnoException).code}); give a writable file path`);
  }
}

/** Loads the policy (--allow, --expect, --fail-on) and checks the command and report paths: exit 2 (or 126/127) before anything happens. */
export function prepareGate(gate: GateOptions): GateSetup {
  const reasons = loadDropReasons(dropReasonsText, "knowledge/drop-reasons.yaml");
  const names = new Set(reasons.keys());
  const allow = checkAllowed(gate.allow, names);
  const expect = gate.expect !== undefined ? loadExpectFile(readRuleFile(gate.expect, "--expect", "a YAML expect file"), gate.expect, names) : undefined;
  checkCommand(gate.command[0]!);
  checkWritable("--junit", gate.junit);
  checkWritable("--report-json", gate.reportJson);
  const failOnFrom = gate.failOn ? "--fail-on" : expect?.failOn ? `fail_on of ${gate.expect}` : "the default";
  return { policy: { failOn: gate.failOn ?? expect?.failOn ?? DEFAULT_FAIL_ON, failOnFrom, allow, expect: expect?.entries ?? [] }, reasons };
}

/** The command, run with skbtrail's stdio and environment once tracing began. */
export class ChildCommand {
  private proc?: Subprocess<"inherit", "inherit", "inherit">;
  private pidfd = -1;
  private exitWatch?: Poller;
  private startedAt = 0;
  private endedAt = 0;
  startedMs = 0;

  constructor(readonly argv: string[]) {}

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get started(): boolean {
    return !!this.proc;
  }

  /** Starts it; returns its pidfd, whose readability ends the reader's waits the moment it exits. */
  start(): { wakeFd?: number } {
    this.startedMs = Date.now();
    this.startedAt = performance.now();
    try {
      this.proc = Bun.spawn(this.argv, { stdin: "inherit", stdout: "inherit", stderr: "inherit", env: process.env });
    } catch (e) {
      throw new SkbtrailError(`run: cannot start '${shown(this.argv[0]!)}': ${(e as Error).message}`, ExitCode.COMMAND_NOT_EXECUTABLE);
    }
    this.pidfd = pidfdOpen(this.proc.pid);
    if (this.pidfd < 0) return {};
    this.exitWatch = new Poller(this.pidfd);
    return { wakeFd: this.pidfd };
  }

  /** Whether it exited (without waiting). */
  hasExited(): boolean {
    if (!this.proc) return false;
    const done = this.exitWatch ? this.exitWatch.wait(0) : !this.running;
    if (done && !this.endedAt) this.endedAt = performance.now();
    return done;
  }

  /** How long it ran, in seconds. */
  get seconds(): number {
    return ((this.endedAt || performance.now()) - this.startedAt) / 1000;
  }

  forward(signal: NodeJS.Signals): void {
    this.proc?.kill(signal);
  }

  /** Its exit status or the signal that killed it, once reaped. */
  async end(): Promise<{ code: number | null; signal: string | null }> {
    if (!this.proc) return { code: null, signal: null };
    await this.proc.exited;
    if (!this.endedAt) this.endedAt = performance.now();
    this.exitWatch?.close();
    close(this.pidfd);
    this.pidfd = -1;
    const signal = this.proc.signalCode;
    if (signal) return { code: null, signal: typeof signal === "number" ? (Object.entries(os.signals).find(([, n]) => n === signal)?.[0] ?? `signal ${signal}`) : signal };
    return { code: this.proc.exitCode, signal: null };
  }
}

const { PKT_L3, PKT_L4 } = packet_layers;

/** A drop as the policy sees it (the fields of the JSON output). */
export function dropFacts(p: Packet, reason: string | null, location: string): DropFacts {
  const hasL3 = (p.parsed & PKT_L3) !== 0;
  const ip = hasL3 && (p.l3 === 0x0800 || p.l3 === 0x86dd);
  const ports = (p.parsed & PKT_L4) !== 0 && (p.l4 === 6 || p.l4 === 17);
  return {
    reason,
    location,
    proto: ip ? l4Name(p.l4) : l3Name(p.l3),
    l3: l3Name(p.l3),
    saddr: hasL3 ? p.saddr : null,
    daddr: hasL3 ? p.daddr : null,
    sport: ports ? p.sport : null,
    dport: ports ? p.dport : null,
  };
}

/** Packets of drops whose verdict waits on an expect entry's max, kept until it is known (bounded). */
const MAX_PENDING_PACKETS = 10_000;

/**
 * --pcap in skbtrail run: the packets of unexpected drops only. A drop an
 * entry with `max` allows so far is held back, and written if the entry
 * passes its max later.
 */
class GateCapture {
  private readonly pending = new Map<ExpectEntry, (() => void)[]>();
  private held = 0;
  notKept = 0;

  offer(v: { verdict: string; entry?: ExpectEntry }, write: () => void): void {
    if (v.verdict === "unexpected") {
      if (v.entry) this.release(v.entry);
      write();
    } else if (v.verdict === "limited" && v.entry) {
      if (this.held >= MAX_PENDING_PACKETS) return void this.notKept++;
      this.held++;
      const list = this.pending.get(v.entry) ?? [];
      list.push(write);
      this.pending.set(v.entry, list);
    }
  }

  private release(entry: ExpectEntry): void {
    const list = this.pending.get(entry);
    if (!list) return;
    this.pending.delete(entry);
    this.held -= list.length;
    for (const write of list) write();
  }
}

const signalNumber = (name: string) => (os.signals as Record<string, number>)[name] ?? 0;

export interface GateOutcome {
  report: RunReport;
  summary: RunSummary;
}

export async function runGate(
  opts: Options & { gate: GateOptions },
  setup: GateSetup,
  kernel: KernelInfo,
  out: Output,
  stop: StopControl,
  child: ChildCommand,
  pcap?: PacketCapture,
): Promise<GateOutcome> {
  const gate = new Gate(setup.policy, setup.reasons, new Set(dropReasons(kernel.btf).values()));
  const held = pcap && new GateCapture();
  let interruptedBy: string | undefined;
  stop.watch(() => (child.hasExited() ? "command exited" : undefined));
  const started = () => {
    // A signal while attaching: the command never starts.
    if (stop.reason !== undefined) return;
    return child.start();
  };
  let summary: RunSummary;
  if (opts.mode === "diag") {
    let packets = 0;
    const sink: PacketSink = {
      started,
      packet: (_ctx, lines, findings, names) => {
        const drop = lines.find((l) => l.e.flags & hook_flags.HOOK_DROP);
        if (!drop) return;
        const e = drop.e;
        const location = names.location(e);
        const example: DropEvent = { kind: "drop", cpu: e.cpu, timeNs: e.timeNs, meta: e.meta, pkt: e.pkt, location: e.location, reason: e.reason, stackId: e.stackId };
        const v = gate.add(dropFacts(e.pkt, names.reason(e) ?? null, location), () => example, e.timeNs, findings);
        held?.offer(v, () => {
          packets++;
          for (const l of lines) pcap!.hook(l, l.e.capture, names.reason(l.e), names.location(l.e), packets);
        });
      },
    };
    summary = (await runTrace({ ...opts, diagKeep: true, diagQuiet: false }, kernel, out, stop, { pcap, sink })).summary;
  } else {
    const sink: DropSink = {
      started,
      drop: (e, reason, location, capture) => {
        const v = gate.add(dropFacts(e.pkt, reason ?? null, location), () => e, e.timeNs);
        held?.offer(v, () => pcap!.drop(e, capture, reason, location));
      },
    };
    summary = await runDrop(opts, kernel, out, stop, { pcap, sink });
  }
  if (!child.started && summary.stop) interruptedBy = summary.stop;
  const commandExit = await child.end();
  const groups = gate.result();
  const unexpected = groups.some((g) => g.status === "unexpected") || gate.overflow.unexpected > 0;
  const exitCode = commandExit.signal
    ? 128 + signalNumber(commandExit.signal)
    : commandExit.code === null
      ? 128 + signalNumber({ interrupted: "SIGINT", terminated: "SIGTERM", hangup: "SIGHUP" }[interruptedBy ?? ""] ?? "SIGINT")
      : commandExit.code !== 0
        ? commandExit.code
        : unexpected
          ? ExitCode.UNEXPECTED_DROPS
          : ExitCode.OK;
  const report: RunReport = {
    command: opts.gate.command,
    commandExit,
    exitCode,
    policy: setup.policy,
    startedMs: child.startedMs || Date.now(),
    seconds: child.started ? child.seconds : 0,
    groups,
    drops: gate.drops,
    overflow: gate.overflow,
    lost: summary.stats.lost,
    unread: summary.unread,
    pcap: pcap && { file: pcap.path, packets: pcap.packets, notKept: held!.notKept },
  };
  return { report, summary };
}
