// skbtrail --drop: every packet the kernel frees as dropped (skb:kfree_skb),
// with the reason, the location and the packet.
import type { Options } from "./cli";
import { resolveReasons } from "./config";
import { decodeDrop, recordKind, EVENT_DROP, type DropEvent } from "./decode";
import { dropReasons, probeProgram, tracepointParams } from "./kernel/probe";
import { currentNetns, kernelSymbols, prepareKernel, Session, type Stats } from "./session";
import type { Output } from "./output/output";

const RING_BYTES = 8 << 20;
const WAKEUP_BYTES = 256 << 10;
const STACK_DEPTH = 127;
const TRACING_FRAME = /^(bpf_prog_|bpf_trace_run|__bpf_trace_|__traceiter_|trace_)|\[bpf\]$/;

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
    session.attach([program]);
    out.status("begin trace...");

    const stacks = opts.dropStack ? new StackReader(session) : undefined;
    let shown = 0;
    await session.read(
      (ring, offset) => {
        if (out.done || recordKind(ring, offset) !== EVENT_DROP) return;
        const e = decodeDrop(ring, offset);
        out.drop(e, reasons.get(e.reason), kernelSymbols().format(e.location.hi, e.location.lo), stacks?.frames(e));
        if (opts.count !== undefined && ++shown >= opts.count) out.finish("count");
      },
      () => out.done,
      () => out.flush(),
    );
    return session.stats();
  } finally {
    session.close();
  }
}

/**
 * Kernel stacks of drops, from the "stacks" map. Entries are never deleted,
 * so an id always names the same stack; symbolized stacks are cached.
 */
class StackReader {
  private readonly cache = new Map<number, string[]>();
  private readonly value = new BigUint64Array(STACK_DEPTH);
  private readonly valueBytes = new Uint8Array(this.value.buffer);
  private readonly key = new Uint32Array(1);
  private readonly keyBytes = new Uint8Array(this.key.buffer);

  constructor(private readonly session: Session) {}

  frames(e: DropEvent): string[] {
    if (e.stackId < 0) return ["(stack not recorded: the stack map is full or the stack was unreadable)"];
    const cached = this.cache.get(e.stackId);
    if (cached) return cached;
    this.key[0] = e.stackId;
    this.value.fill(0n);
    if (!this.session.obj.map("stacks").lookup(this.keyBytes, this.valueBytes)) return ["(stack not found)"];
    const words = new Uint32Array(this.value.buffer);
    const frames: string[] = [];
    for (let i = 0; i < STACK_DEPTH && this.value[i] !== 0n; i++) frames.push(kernelSymbols().format(words[2 * i + 1]!, words[2 * i]!));
    // The first frames are our BPF program and the tracepoint machinery.
    while (frames.length > 1 && TRACING_FRAME.test(frames[0]!)) frames.shift();
    this.cache.set(e.stackId, frames);
    return frames;
  }
}
