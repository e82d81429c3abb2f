// skbtrail --sock: socket mode (bpf/progs/sock.bpf.h), on the socket
// tracepoints and, where the kernel has kprobes or fentry, the socket
// functions of the tracer tree (src/plan/sock.ts; -t chooses them). One
// line per socket event for the sockets the filters keep (filtered in the
// kernel), and one summary per TCP connection when it closes or when
// tracing stops (src/events/sock.ts). -c counts socket events. The RTT
// thresholds (--tcp-rtt, --tcp-srtt/--filter-srtt, --filter-minrtt) keep
// RTT samples (tcp_probe) in the kernel; the other events are all shown,
// so summaries stay whole, and their RTT figures are of the samples kept.
// --rtt adds a log2 table of those samples, counted in the kernel (sock_rtt)
// and read every second; alone (no --sock, no --rtt-detail) it is the only
// output, and only tcp_probe is attached, writing no records: a busy host's
// samples cost a map update each, never a trip through the ring; -c then
// counts samples (the kernel's count, looked at after each batch). --diag
// judges each connection with the knowledge base's connection rules
// (src/diagnosis/connections.ts): its findings follow its summary; at the
// end, listeners whose full accept queue dropped connection attempts
// (src/diagnosis/listen.ts).
// --rtt-detail (nettrace's) shows only the RTT samples, one line each.
import { monotonicNowNs } from "../../ffi/libc";
import { event_kind, rtt_log2_slots, tracepoint_id } from "../abi/layout.generated";
import { environmentError } from "../common/errors";
import { attachPlan, linkCount, setTemplateTargets } from "../bpf/attach";
import type { Options } from "../cli/parse";
import { rttThresholds } from "../bpf/config";
import { readPerCpuArray } from "../bpf/counters";
import type { Session } from "../bpf/session";
import { ConnectionDiagnosis, type ConnectionVerdict } from "../diagnosis/connections";
import { loadKnowledge } from "../diagnosis/diagnosis";
import { ListenQueues } from "../diagnosis/listen";
import { worst } from "../diagnosis/rules";
import { Connections, decodeSock, rttTable, errnoName, sockNotes, type ConnectionSummary, type SockNamer } from "../events/sock";
import { resetReasons, tcpCaStates, tcpStates } from "../kernel/btf-facts";
import { currentNetns, type KernelInfo } from "../kernel/environment";
import { readFeatures, readTraceableFunctions } from "../kernel/features";
import { FunctionIndex, resolutionsKey } from "../kernel/functions";
import { kernelSymbols } from "../kernel/kallsyms";
import type { Output, RunSummary } from "../output/output";
import { attachedAs, checkBackend, plannedPrograms } from "../plan/plan";
import { makeSockPlan, sockFunctionNames, SOCK_FUNCTIONS_WOULD_ADD, SOCK_PURPOSE, SOCK_TRACEPOINTS } from "../plan/sock";
import { filterConfig, ReadClock, runSession } from "./skeleton";
import { kprobesByIp, loadTree } from "./trace";
import type { StopControl } from "./stop";

const T = tracepoint_id;

/** --rtt: the table is read from the kernel and shown this often. */
const RTT_TABLE_MS = 1000;

/** A --sock tracepoint's hook name ("tcp_probe"), from its spec ("tcp:tcp_probe"). */
const HOOK_NAMES = new Map(SOCK_TRACEPOINTS.map((t) => [t.id, t.name.split(":")[1]!]));

export interface SockResult {
  summary: RunSummary;
  /** --diag: some connection had an error-level finding. */
  errorFound: boolean;
}

export async function runSock(opts: Options, kernel: KernelInfo, out: Output, stop: StopControl): Promise<SockResult> {
  const btf = kernel.btf;
  // --diag: the knowledge base is loaded (and a bad --kb file refused) before anything is attached.
  const rules = opts.sockDiag ? loadKnowledge({ reasons: new Set() }, opts.kb).rules : undefined;
  const diagnosis = rules && new ConnectionDiagnosis(rules);
  const listenQueues = rules && new ListenQueues(rules, opts.filter, opts.filter.netns ?? (opts.filter.netnsCurrent ? currentNetns() : undefined));
  let errorFound = false;
  const showVerdicts = (verdicts: ConnectionVerdict[]) => {
    for (const v of verdicts) {
      listenQueues?.noteConnection(v.facts);
      const level = worst(v.findings);
      if (level === "error") errorFound = true;
      if (opts.diagQuiet && (level === undefined || level === "info")) continue;
      out.verdict(v);
    }
  };
  const summed = (summaries: ConnectionSummary[]) => {
    for (const c of summaries) diagnosis ? showVerdicts(diagnosis.hold(c)) : out.connection(c);
  };
  const states = tcpStates(btf);
  const caStates = tcpCaStates(btf);
  const rstReasons = resetReasons(btf);
  const namer: SockNamer = { tcpState: (v) => states.get(v), caState: (v) => caStates.get(v), rstReason: (v) => rstReasons.get(v) };

  const features = readFeatures(kernel, opts.backend !== "tracepoint");
  checkBackend(opts.backend, features);
  const hasFunctions = features.kprobe || features.kprobeMulti || features.fentry;
  const functions = hasFunctions && !opts.rttOnly && !opts.rttDetail
    ? { index: new FunctionIndex(btf, kernelSymbols, readTraceableFunctions, undefined, resolutionsKey(kernel.btfPath)), ...sockFunctionNames(loadTree(), opts.trace) }
    : undefined;
  const plan = makeSockPlan({ btf, features, rttOnly: opts.rttOnly, functions, backend: opts.backend });
  const functionNames = new Map(plan.hooks.flatMap((h) => (h.kind === "function" ? [[h.fn.key, h.name] as const] : [])));
  out.verbose(`sock plan: ${plan.hooks.length - functionNames.size} tracepoints, ${functionNames.size} functions; ${plan.skipped.length} skipped`);
  for (const h of plan.hooks) out.verbose(`  ${h.name.padEnd(28)} ${attachedAs(h).padEnd(8)} ${SOCK_PURPOSE[h.name] ?? ""}`);
  for (const s of plan.skipped) out.verbose(`  skipped ${s.name}: ${s.why}`);
  if (!hasFunctions && !opts.rttOnly && !opts.rttDetail) {
    const why = `${opts.backend === "tracepoint" ? "--backend tracepoint" : "this kernel has no kprobes and no fentry"}: ${SOCK_FUNCTIONS_WOULD_ADD}`;
    if (opts.trace) out.note(`${why}; -t is ignored`);
    else out.verbose(why);
  }
  if (opts.rttOnly && !plan.hooks.length)
    throw environmentError("--rtt needs the tracepoint tcp:tcp_probe, which this kernel does not have: run it on Linux 4.16 or newer");
  if (!opts.rttOnly && !plan.hooks.some((h) => h.name === "sock:inet_sock_set_state"))
    throw environmentError("--sock needs the tracepoint sock:inet_sock_set_state, which this kernel does not have: run it on Linux 4.16 or newer (--drop and --monitor work here)");

  const connections = new Connections(namer);
  const clock = new ReadClock();
  let loaded: Session | undefined;
  const readRtt = () => rttTable(readPerCpuArray(loaded!.obj.map("sock_rtt"), rtt_log2_slots.RTT_LOG2_SLOTS));
  let nextTable = performance.now() + RTT_TABLE_MS;
  const summary = await runSession(
    kernel,
    {
      programs: plannedPrograms(plan),
      config: {
        ...filterConfig(opts.filter),
        rttThresholds: rttThresholds(opts.rttFilter),
        rttSamples: { histogram: opts.rttHistogram, events: !opts.rttOnly },
        funcByIp: kprobesByIp(features),
      },
      links: linkCount(plan),
      prepare: (obj) => setTemplateTargets(obj, plan),
      slowDetach: functionNames.size > 0,
      loaded: (session) => {
        loaded = session;
      },
      // --diag: each namespace's listen-overflow count as tracing starts (compared at the end).
      attach: (s, into) => {
        listenQueues?.start();
        for (const r of attachPlan(s.obj, plan, into)) out.verbose(`  skipped ${r.name}: ${r.why}`);
      },
      record: (kind, ring, offset) => {
        if (kind !== event_kind.EVENT_SOCK) return;
        const e = decodeSock(ring, offset, functionNames);
        clock.saw(e.timeNs);
        // --rtt-detail: the RTT samples only (tcp_probe with a sample), one line each; -c counts them.
        if (opts.rttDetail) {
          if (e.tracepoint !== T.TP_TCP_PROBE || !e.rttUs) return;
          if (stop.admit()) out.rttSample(e, HOOK_NAMES.get(e.tracepoint)!, states.get(e.state), caStates.get(e.caState));
          return;
        }
        e.pkt = connections.endpoints(e);
        // -c counts socket events, shown or not; --diag-quiet shows only the connections with findings.
        if (stop.admit() && !opts.diagQuiet) {
          const hook = e.fn ?? HOOK_NAMES.get(e.tracepoint) ?? `tracepoint ${e.tracepoint}`;
          out.sock(e, hook, {
            // Other protocols keep TCP's numbers in the same field (UDP: ESTABLISHED when connected): not shown.
            state: e.noSocket || e.pkt.l4 !== 6 ? undefined : states.get(e.state),
            oldState: e.tracepoint === T.TP_INET_SOCK_SET_STATE ? states.get(e.oldState) : undefined,
            caState: e.tcp ? caStates.get(e.caState) : undefined,
            resetReason: e.tracepoint === T.TP_TCP_SEND_RESET && e.arg >= 0 ? rstReasons.get(e.arg) : undefined,
            error: e.tracepoint === T.TP_INET_SK_ERROR_REPORT ? errnoName(e.arg) : undefined,
          }, sockNotes(e, namer));
        }
        summed(connections.add(e));
        if (diagnosis) showVerdicts(diagnosis.event(e));
        listenQueues?.noteEvent(e);
      },
      batchDone: (caughtUp) => {
        if (diagnosis) showVerdicts(diagnosis.due(clock.nowNs(caughtUp)));
        if (!opts.rttHistogram) return;
        const now = performance.now();
        const due = now >= nextTable;
        // --rtt alone has no records for -c to count: it counts the kernel's samples, read after each batch.
        const countSamples = opts.rttOnly && stop.counting;
        if (!due && !countSamples) return;
        const table = readRtt();
        if (countSamples) stop.counted(table.samples);
        if (!due) return;
        nextTable = now + RTT_TABLE_MS;
        out.rttHistogram(table, false, opts.rttOnly, monotonicNowNs());
      },
      // Records still queued at the stop were dropped: the open connections are summed up from what was read.
      finish: () => {
        summed(connections.drain(monotonicNowNs()));
        if (diagnosis) showVerdicts(diagnosis.drain());
        if (listenQueues) showVerdicts(listenQueues.verdicts(monotonicNowNs()));
        // The programs are off: the table is final.
        if (opts.rttHistogram) out.rttHistogram(readRtt(), true, opts.rttOnly, monotonicNowNs());
      },
    },
    out,
    stop,
  );
  return { summary, errorFound };
}
