// skbtrail --drop: every packet the kernel frees as dropped (skb:kfree_skb),
// with the reason, the location and the packet.
import { event_kind } from "../abi/layout.generated";
import { program, type ProgramName } from "../abi/programs.generated";
import { resolveReasons } from "../bpf/config";
import { KernelStacks } from "../bpf/stacks";
import type { Options } from "../cli/parse";
import { decodeCapture, decodeDrop, type Capture, type DropEvent } from "../events/decode";
import { dropReasons, tracepointParams } from "../kernel/btf-facts";
import type { KernelInfo } from "../kernel/environment";
import { readFeatures } from "../kernel/features";
import { addrKey, kernelSymbols } from "../kernel/kallsyms";
import type { Output, RunSummary } from "../output/output";
import type { MetricsServer } from "./metrics-server";
import type { PacketCapture } from "./pcap";
import { filterConfig, runSession, type ModeSession } from "./skeleton";
import type { StopControl } from "./stop";

/** Which kfree_skb program fits this kernel: tracepoint shape × attach type. */
function chooseProgram(params: string[] | undefined, tpBtf: boolean): ProgramName {
  const hasReason = (params?.length ?? 0) >= 3; // (skb, location, reason[, rx_sk]) since 5.17
  if (hasReason) return tpBtf ? program.drop_reason_btf : program.drop_reason_raw;
  return tpBtf ? program.drop_noreason_btf : program.drop_noreason_raw;
}

/** Drops come from a few code sites: each is named once (kernel addresses only; bounded in case of garbage). */
function locationNamer(): (hi: number, lo: number) => string {
  const names = new Map<number, string>();
  return (hi, lo) => {
    if (hi >>> 16 !== 0xffff) return kernelSymbols().format(hi, lo);
    const key = addrKey(hi, lo);
    let name = names.get(key);
    if (name === undefined) {
      if (names.size >= 4096) names.clear();
      names.set(key, (name = kernelSymbols().format(hi, lo)));
    }
    return name;
  };
}

/** Where drops go instead of the output: skbtrail run's gate. */
export interface DropSink {
  drop(e: DropEvent, reason: string | undefined, location: string, capture: Capture | undefined): void;
  started?: ModeSession["started"];
}

/** What a run may add to the drop monitor: --pcap, --metrics, skbtrail run's gate. */
export interface DropExtras {
  pcap?: PacketCapture;
  metrics?: MetricsServer;
  sink?: DropSink;
}

export async function runDrop(opts: Options, kernel: KernelInfo, out: Output, stop: StopControl, { pcap, metrics, sink }: DropExtras = {}): Promise<RunSummary> {
  const reasons = dropReasons(kernel.btf);
  const reasonValues = resolveReasons(opts.reasons, reasons);
  const params = tracepointParams(kernel.btf, "kfree_skb");
  const dropProgram = chooseProgram(params, readFeatures(kernel, false).tpBtf);
  for (const note of kernel.notes) out.verbose(note);
  out.verbose(`skb:kfree_skb(${params?.join(", ") ?? "?"}) via ${dropProgram}; ${reasons.size} drop reasons known`);

  let stacks: KernelStacks | undefined;
  const locationName = locationNamer();
  return runSession(
    kernel,
    {
      programs: [dropProgram],
      object: "drop",
      config: {
        ...filterConfig(opts.filter),
        reasonValues,
        dropStack: opts.dropStack,
        snaplen: pcap?.snaplen,
      },
      links: 1,
      slowDetach: false,
      loaded: (session) => {
        if (opts.dropStack) stacks = new KernelStacks(session);
      },
      attach: (session, into) => into.links.push(session.obj.program(dropProgram).attach()),
      started: sink?.started,
      record: (kind, ring, offset) => {
        if (kind !== event_kind.EVENT_DROP || !stop.admit()) return;
        const e = decodeDrop(ring, offset);
        const reason = reasons.get(e.reason);
        const location = locationName(e.location.hi, e.location.lo);
        const capture = pcap && decodeCapture(ring, offset, kind);
        if (sink) return sink.drop(e, reason, location, capture);
        out.drop(e, reason, location, stacks?.frames(e.stackId));
        pcap?.drop(e, capture, reason, location);
      },
      batchDone: () => pcap?.flush(),
    },
    out,
    stop,
    metrics,
  );
}
