// skbtrail --drop: every packet the kernel frees as dropped (skb:kfree_skb),
// with the reason, the location and the packet.
import type { Options } from "../cli/parse";
import { resolveReasons } from "../bpf/config";
import { decodeDrop, recordKind, EVENT_DROP } from "../events/decode";
import { dropReasons, probeProgram, tracepointParams } from "../kernel/environment";
import { currentNetns, kernelSymbols, prepareKernel, Session, type Stats } from "../bpf/session";
import type { Output } from "../output/output";
import { Attachments } from "../bpf/attach";
import { KernelStacks } from "../bpf/stacks";
import { addrKey } from "../kernel/kallsyms";

const RING_BYTES = 8 << 20;
const WAKEUP_BYTES = 256 << 10;

/** Which kfree_skb program fits this kernel: tracepoint shape × attach type. */
function chooseProgram(params: string[] | undefined, tpBtf: boolean): string {
  const hasReason = (params?.length ?? 0) >= 3; // (skb, location, reason[, rx_sk]) since 5.17
  return `drop_${hasReason ? "reason" : "noreason"}_${tpBtf ? "btf" : "raw"}`;
}

export async function runDrop(opts: Options, out: Output): Promise<Stats> {
  const kernel = await prepareKernel(opts.debug);
  const reasons = dropReasons(kernel.btf);
  const reasonValues = resolveReasons(opts.reasons, reasons);
  const params = tracepointParams(kernel.btf, "kfree_skb");
  const tpBtf = probeProgram(kernel.probeObject, "probe_tp_btf");
  const program = chooseProgram(params, tpBtf.ok);
  for (const note of kernel.notes) out.verbose(note);
  out.verbose(`skb:kfree_skb(${params?.join(", ") ?? "?"}) via ${program}${tpBtf.ok ? "" : ` (tp_btf unavailable: ${tpBtf.why})`}; ${reasons.size} drop reasons known`);

  const session = Session.open(kernel.bpfObject);
  const attachments = new Attachments();
  try {
    session.configure(
      {
        filter: opts.filter,
        currentNetns: opts.filter.netnsCurrent ? currentNetns() : undefined,
        reasonValues,
        dropStack: opts.dropStack,
        wakeupBytes: WAKEUP_BYTES,
      },
      RING_BYTES,
    );
    session.load([program]);
    session.attach(() => attachments.links.push(session.obj.program(program).attach()));
    out.status("begin trace...");

    const stacks = opts.dropStack ? new KernelStacks(session) : undefined;
    // Drops come from a few code sites: name each once. (Kernel addresses
    // only, so the low 48 bits are the key; bounded in case of garbage.)
    const locations = new Map<number, string>();
    const locationName = (hi: number, lo: number): string => {
      if (hi >>> 16 !== 0xffff) return kernelSymbols().format(hi, lo);
      const key = addrKey(hi, lo);
      let name = locations.get(key);
      if (name === undefined) {
        if (locations.size >= 4096) locations.clear();
        locations.set(key, (name = kernelSymbols().format(hi, lo)));
      }
      return name;
    };
    let shown = 0;
    await session.read(
      (ring, offset) => {
        if (out.done || recordKind(ring, offset) !== EVENT_DROP) return;
        const e = decodeDrop(ring, offset);
        out.drop(e, reasons.get(e.reason), locationName(e.location.hi, e.location.lo), stacks?.frames(e.stackId));
        if (opts.count !== undefined && ++shown >= opts.count) out.finish("count");
      },
      () => out.done,
      () => out.flush(),
    );
    return session.stats();
  } finally {
    attachments.destroy();
    session.close();
  }
}
