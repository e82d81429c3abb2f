// Symbolized kernel stacks from the "stacks" map. Entries are never
// deleted, so an id always names the same stack and is symbolized once.
import { kernelSymbols } from "../kernel/kallsyms";
import type { Session } from "./session";

const STACK_DEPTH = 127;
/** Leading frames that are our BPF program (maybe unknown to kallsyms) and the tracing machinery. */
const TRACING_FRAME = /^(0x|bpf_prog_|bpf_trampoline_|bpf_trace_run|__bpf_trace_|__traceiter_|trace_|kprobe_|fprobe_|rethook_)|\[bpf\]$/;

export class KernelStacks {
  private readonly cache = new Map<number, string[]>();

  constructor(private readonly session: Session) {}

  frames(id: number): string[] {
    if (id < 0) return ["(stack not recorded: the stack map is full or the stack was unreadable)"];
    let frames = this.cache.get(id);
    if (!frames) {
      frames = this.session.stack(id, STACK_DEPTH).map(([hi, lo]) => kernelSymbols().format(hi, lo));
      while (frames.length > 1 && TRACING_FRAME.test(frames[0]!)) frames.shift();
      this.cache.set(id, frames);
    }
    return frames;
  }
}
