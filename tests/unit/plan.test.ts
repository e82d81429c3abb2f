// Plan making on a small kernel-like BTF blob (tests/fixtures/btf) with a
// made-up kallsyms and ftrace list: which backend each hook gets for the
// features a kernel has, and how each of its programs attaches.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { program } from "../../src/abi/programs.generated";
import { Btf } from "../../src/kernel/btf";
import type { Features } from "../../src/kernel/features";
import { FunctionIndex } from "../../src/kernel/functions";
import { Symbolizer } from "../../src/kernel/kallsyms";
import { checkBackend, makePlan, plannedPrograms, type BackendChoice, type FunctionHook, type Plan } from "../../src/plan/plan";
import { makeSockPlan, SOCK_TRACEPOINTS } from "../../src/plan/sock";
import type { TreeHook } from "../../src/plan/tracer-tree";

const btf = Btf.parse(new Uint8Array(readFileSync(`${import.meta.dir}/../fixtures/btf/kernel-like.btf`)));
// ip_rcv_core exists only as a compiler-renamed copy; no_skb_here takes no skb.
const KALLSYMS = [
  "ffffffff81000000 T ip_rcv",
  "ffffffff81000100 t ip_rcv_core.isra.0",
  "ffffffff81000200 T nf_hook_slow",
  "ffffffff81000300 T skb_clone",
  "ffffffff81000400 t __netif_receive_skb_core",
  "ffffffff81000500 T tcp_v4_do_rcv",
  "ffffffff81000600 T no_skb_here",
  "ffffffff81000700 T __icmp_send",
  "ffffffff81000800 t kfree_skbmem",
  "ffffffff81000900 T kfree_skb_partial",
  "ffffffff81000a00 t napi_skb_cache_put",
].join("\n");
const MEMORY_FREES = ["kfree_skbmem", "kfree_skb_partial", "napi_skb_cache_put"];
// ftrace cannot hook tcp_v4_do_rcv here (as if notrace).
const FTRACE = ["ip_rcv", "ip_rcv_core.isra.0", "nf_hook_slow", "skb_clone", "__netif_receive_skb_core", "__icmp_send", ...MEMORY_FREES].join("\n");

const NONE: Features = { tpBtf: false, kprobe: false, attachCookie: false, kprobeMulti: false, fentry: false, fexit: false, fentryHelpers: false, kprobeMultiCast: false, tpBtfCast: false };
const TRACEPOINTS_ONLY: Features = { ...NONE, tpBtf: true };
const KPROBE: Features = { ...TRACEPOINTS_ONLY, kprobe: true, attachCookie: true };
const FENTRY: Features = { ...KPROBE, fentry: true, fexit: true, fentryHelpers: true }; // Debian 6.1
const OLD_FENTRY: Features = { ...TRACEPOINTS_ONLY, kprobe: true, fentry: true, fexit: true }; // Debian 11's 5.10
const MULTI: Features = { ...FENTRY, kprobeMulti: true }; // Debian 6.12 (without the bpf_rdonly_cast probe's answer)

const hooks = (...names: string[]): TreeHook[] => names.map((name) => ({ kind: name.includes(":") ? "tracepoint" : "function", name, group: "g", onByDefault: true, defaultInGroup: true }));

function plan(features: Features, names: string[], opts: { ret?: boolean; returns?: string[]; backend?: BackendChoice; follow?: boolean; extra?: string[]; ftrace?: string } = {}): Plan {
  return makePlan({
    btf,
    functions: new FunctionIndex(btf, () => new Symbolizer(KALLSYMS), () => opts.ftrace ?? FTRACE, "/nonexistent"),
    features,
    selection: { hooks: hooks(...names), outside: [] },
    extraFunctions: opts.extra ?? [],
    backend: opts.backend,
    ret: opts.ret ?? false,
    returns: opts.returns,
    followSkbs: opts.follow ?? true,
  });
}

const fn = (p: Plan, name: string) => p.hooks.find((h): h is FunctionHook => h.kind === "function" && h.name === name);
const skipped = (p: Plan, name: string) => p.skipped.find((s) => s.name === name)?.why;

describe("the hooks every lifecycle needs", () => {
  test("frees end contexts; the slab free only when skbs are followed by address; tracepoints by tp_btf when it works", () => {
    const p = plan(TRACEPOINTS_ONLY, ["net:net_dev_queue"]);
    expect(p.hooks.map((h) => h.name)).toEqual(["skb:kfree_skb", "skb:consume_skb", "net:net_dev_queue", "kmem:kmem_cache_free"]);
    // kfree_skb has (skb, location, reason, rx_sk) in this BTF: the reason variant.
    expect(p.hooks[0]!.attach).toEqual([{ how: "tracepoint", program: program.tp_kfree_skb_reason_btf }]);
    // kmem_cache_free's void * argument: raw_tp, whatever the kernel.
    expect(p.hooks[3]).toMatchObject({ via: "raw_tp", attach: [{ program: program.tp_kmem_cache_free_raw }] });
    expect(plan(NONE, []).hooks.every((h) => h.kind === "tracepoint" && h.via === "raw_tp")).toBe(true);
    expect(plan(TRACEPOINTS_ONLY, [], { follow: false }).hooks.map((h) => h.name)).toEqual(["skb:kfree_skb", "skb:consume_skb"]);
  });

  test("where tp_btf programs may read headers through bpf_rdonly_cast (6.2+), the hook tracepoints load their cast programs", () => {
    const p = plan({ ...TRACEPOINTS_ONLY, tpBtfCast: true }, ["net:net_dev_queue"]);
    expect(p.hooks.map((h) => [h.name, h.kind === "tracepoint" && h.via, h.attach[0]!.program])).toEqual([
      ["skb:kfree_skb", "tp_btf", program.tp_kfree_skb_reason_cast],
      ["skb:consume_skb", "tp_btf", program.tp_consume_skb_cast],
      ["net:net_dev_queue", "tp_btf", program.tp_net_dev_queue_cast],
      // No packet to read: the raw_tp program as always.
      ["kmem:kmem_cache_free", "raw_tp", program.tp_kmem_cache_free_raw],
    ]);
  });

  test("where kprobe.multi works, the functions that free an skb's memory end its life, in one link, instead of the slab free", () => {
    const ends = (p: Plan) => p.hooks.filter((h) => h.group === "life" && !["skb:kfree_skb", "skb:consume_skb"].includes(h.name)).map((h) => `${h.name} ${h.attach.map((a) => `${a.how} ${a.program}`).join(", ")}`);
    const viaMulti = (...names: string[]) => names.map((n) => `${n} kprobe-multi ${program.kmulti_skb_memory_free}`);
    const slab = [`kmem:kmem_cache_free tracepoint ${program.tp_kmem_cache_free_raw}`];
    expect(ends(plan(MULTI, ["net:net_dev_queue"]))).toEqual(viaMulti(...MEMORY_FREES));
    // kfree_skb_partial traced: its own program's line ends the packet (a plain kprobe, as every own program on these kernels).
    const partial = plan(MULTI, ["kfree_skb_partial"]);
    expect(fn(partial, "kfree_skb_partial")?.attach).toEqual([{ how: "kprobe", program: program.kprobe_skb_partial_free, retprobe: false }]);
    expect(ends(partial).filter((e) => !e.startsWith("kfree_skb_partial kprobe "))).toEqual(viaMulti("kfree_skbmem", "napi_skb_cache_put"));
    expect(fn(plan(FENTRY, ["kfree_skb_partial"], { backend: "fentry" }), "kfree_skb_partial")?.attach).toEqual([{ how: "fentry-fixed", program: program.fentry_skb_partial_free }]);
    // Traced for its line (two programs at one entry, in no set order), or not traceable: the slab free.
    expect(ends(plan(MULTI, ["kfree_skbmem"])).filter((e) => e.startsWith("kmem:"))).toEqual(slab);
    expect(ends(plan(MULTI, [], { ftrace: "ip_rcv" }))).toEqual(slab);
    // The others are taken where the kernel has them.
    expect(ends(plan(MULTI, [], { ftrace: "kfree_skbmem" }))).toEqual(viaMulti("kfree_skbmem"));
    // Without kprobe.multi, or with function hooks ruled out: the slab free; nothing when skbs are not followed by address.
    for (const p of [plan(FENTRY, []), plan(KPROBE, []), plan(MULTI, [], { backend: "tracepoint" })]) expect(ends(p)).toEqual(slab);
    expect(ends(plan(MULTI, [], { follow: false }))).toEqual([]);
  });

  test("freeing functions are traced through their tracepoints", () => {
    const p = plan(MULTI, ["kfree_skb", "consume_skb"], { follow: false });
    expect(p.hooks.filter((h) => h.kind === "function")).toEqual([]);
  });

  test("a tracepoint this kernel does not have is skipped with the reason", () => {
    expect(skipped(plan(TRACEPOINTS_ONLY, ["net:netif_rx"]), "net:netif_rx")).toBe("this kernel has no such tracepoint");
  });

  test("where the kernel lacks icmp:icmp_send, __icmp_send is traced in its place (its own entry program, no return), if functions can be", () => {
    for (const [backend, entry] of [[undefined, { how: "kprobe", program: program.kprobe_icmp_send, retprobe: false }], ["fentry", { how: "fentry-fixed", program: program.fentry_icmp_send }]] as const) {
      const p = plan(FENTRY, ["icmp:icmp_send"], { ret: true, backend });
      expect(skipped(p, "icmp:icmp_send")).toBe("this kernel has no such tracepoint");
      expect(fn(p, "__icmp_send")?.attach).toEqual([entry]);
    }
    // Declared void in BTF: --ret shows no return value for it.
    expect(fn(plan(KPROBE, ["icmp:icmp_send"]), "__icmp_send")?.fn.voidReturn).toBe(true);
    expect(fn(plan(KPROBE, ["ip_rcv"]), "ip_rcv")?.fn.voidReturn).toBeUndefined();
    const none = plan(TRACEPOINTS_ONLY, ["icmp:icmp_send"]);
    expect(fn(none, "__icmp_send")).toBeUndefined();
    expect(skipped(none, "__icmp_send")).toContain("kprobes or fentry");
  });
});

describe("backend choice per function", () => {
  test("tracepoints only: every function is skipped, saying why", () => {
    const p = plan(TRACEPOINTS_ONLY, ["ip_rcv", "skb_clone"]);
    expect(skipped(p, "ip_rcv")).toBe("function hooks need kprobes or fentry, and this kernel has neither");
    expect(fn(p, "ip_rcv")).toBeUndefined();
  });

  test("kprobe.multi where the kernel has it; plain kprobes for skbtrail's own entry/return programs", () => {
    const p = plan(MULTI, ["ip_rcv", "nf_hook_slow", "skb_clone"], { ret: true });
    expect(fn(p, "ip_rcv")).toMatchObject({
      backend: "kprobe-multi",
      attach: [{ how: "kprobe-multi", program: program.kmulti_skb0, retprobe: false }, { how: "kprobe-multi", program: program.kmulti_return, retprobe: true }],
    });
    expect(fn(p, "nf_hook_slow")).toMatchObject({
      backend: "kprobe",
      attach: [{ how: "kprobe", program: program.kprobe_nf_hook_slow, retprobe: false }, { how: "kprobe", program: program.kretprobe_nf_hook_slow, retprobe: true }],
    });
    expect(fn(p, "skb_clone")!.attach.map((a) => a.program)).toEqual([program.kprobe_skb_clone, program.kretprobe_skb_clone]);
    // Where kprobe programs may call bpf_rdonly_cast: the entry program that reads the skb with plain loads.
    expect(fn(plan({ ...MULTI, kprobeMultiCast: true }, ["ip_rcv"]), "ip_rcv")!.attach).toEqual([{ how: "kprobe-multi", program: program.kmulti_cast_skb0, retprobe: false }]);
  });

  test("kprobes before fentry by default (each fentry copy is verified again); fentry where kprobes are missing", () => {
    expect(fn(plan(FENTRY, ["ip_rcv"]), "ip_rcv")!.backend).toBe("kprobe");
    expect(fn(plan({ ...FENTRY, kprobe: false, attachCookie: false }, ["ip_rcv"]), "ip_rcv")!.backend).toBe("fentry");
  });

  test("fentry templates by skb position, fexit only with --ret; fixed-target programs for skbtrail's own", () => {
    const p = plan(FENTRY, ["ip_rcv", "nf_hook_slow", "skb_clone"], { ret: true, backend: "fentry" });
    expect(fn(p, "ip_rcv")).toMatchObject({
      backend: "fentry",
      attach: [{ how: "fentry-template", program: program.fentry_skb0, exit: false, idInCode: false }, { how: "fentry-template", program: program.fexit_skb0, exit: true, idInCode: false }],
    });
    expect(fn(p, "nf_hook_slow")!.attach).toEqual([{ how: "fentry-fixed", program: program.fentry_nf_hook_slow }, { how: "fentry-fixed", program: program.fexit_nf_hook_slow }]);
    expect(fn(p, "skb_clone")!.attach).toEqual([{ how: "fentry-fixed", program: program.fexit_skb_clone }]);
    expect(fn(plan(FENTRY, ["ip_rcv"], { backend: "fentry" }), "ip_rcv")!.attach).toHaveLength(1);
  });

  test("without bpf_get_func_ip/bpf_get_func_ret (5.10): kprobes by default; fentry templates whose copies carry their function; skbtrail's own programs on kprobes", () => {
    expect(fn(plan(OLD_FENTRY, ["ip_rcv"]), "ip_rcv")!.backend).toBe("kprobe");
    for (const [features, backend] of [[OLD_FENTRY, "fentry"], [{ ...OLD_FENTRY, kprobe: false }, undefined]] as const) {
      const p = plan(features, ["ip_rcv"], { ret: true, backend });
      expect(fn(p, "ip_rcv")).toMatchObject({
        backend: "fentry",
        fn: { args: 4 },
        attach: [{ how: "fentry-template", program: program.fentry_id_skb0, exit: false, idInCode: true }, { how: "fentry-template", program: program.fexit_id_skb0, exit: true, idInCode: true }],
      });
    }
    const own = plan(OLD_FENTRY, ["nf_hook_slow", "skb_clone"], { ret: true, backend: "fentry" });
    expect(fn(own, "nf_hook_slow")!.attach.map((a) => a.program)).toEqual([program.kprobe_nf_hook_slow, program.kretprobe_nf_hook_slow]);
    expect(fn(own, "skb_clone")!.backend).toBe("kprobe");
    expect(skipped(plan({ ...OLD_FENTRY, kprobe: false }, ["nf_hook_slow"]), "nf_hook_slow")).toMatch(/^its program needs kprobes, or fentry with bpf_get_func_ip/);
  });

  test("without --ret, the returns a --diag rule looks at are traced, and only those", () => {
    for (const features of [FENTRY, MULTI]) {
      const p = plan(features, ["ip_rcv", "ip_rcv_core"], { returns: ["ip_rcv_core"] });
      expect(fn(p, "ip_rcv")!.attach).toHaveLength(1);
      expect(fn(p, "ip_rcv_core")!.attach.map((a) => ("retprobe" in a ? a.retprobe : "exit" in a && a.exit))).toEqual([false, true]);
    }
  });

  test("where fentry cannot go, kprobes: a renamed copy, an skb behind a pointer", () => {
    const p = plan(FENTRY, ["ip_rcv_core", "__netif_receive_skb_core"]);
    expect(fn(p, "ip_rcv_core")).toMatchObject({ backend: "kprobe", fn: { symbol: "ip_rcv_core.isra.0" }, attach: [{ program: program.kprobe_skb0 }] });
    expect(fn(p, "__netif_receive_skb_core")).toMatchObject({ backend: "kprobe", fn: { pskb: true }, attach: [{ program: program.kprobe_pskb0 }] });
    expect(fn(plan({ ...FENTRY, kprobe: false, attachCookie: false }, ["ip_rcv_core"]), "ip_rcv_core")).toBeUndefined();
  });

  test("what ftrace cannot hook is not attempted: kprobes refuse it too ('Could not probe notrace function')", () => {
    for (const backend of [undefined, "kprobe", "fentry", "kprobe-multi"] as const)
      expect(skipped(plan(MULTI, ["tcp_v4_do_rcv"], { backend }), "tcp_v4_do_rcv")).toMatch(/^the kernel marks it not traceable/);
    expect(fn(plan(MULTI, ["__netif_receive_skb_core"]), "__netif_receive_skb_core")!.attach).toEqual([{ how: "kprobe-multi", program: program.kmulti_pskb0, retprobe: false }]);
  });

  test("a forced backend applies where it can and skips, saying why, where it cannot", () => {
    const p = plan(MULTI, ["ip_rcv", "ip_rcv_core"], { backend: "fentry" });
    expect(fn(p, "ip_rcv")!.backend).toBe("fentry");
    expect(skipped(p, "ip_rcv_core")).toBe("fentry cannot attach to ip_rcv_core.isra.0");
    expect(fn(plan(MULTI, ["ip_rcv"], { backend: "kprobe" }), "ip_rcv")!.backend).toBe("kprobe");
    expect(skipped(plan(MULTI, ["ip_rcv"], { backend: "tracepoint" }), "ip_rcv")).toBe("--backend tracepoint traces tracepoints only");
  });

  test("functions without an skb, or absent, are skipped with the reason", () => {
    const p = plan(MULTI, ["no_skb_here", "not_in_btf"]);
    expect(skipped(p, "no_skb_here")).toBe("takes no struct sk_buff * argument");
    expect(skipped(p, "not_in_btf")).toMatch(/^not in this kernel's BTF/);
  });

  test("a --backend the kernel lacks is one line, exit 3", () => {
    expect(() => checkBackend("kprobe-multi", FENTRY)).toThrow(/^--backend kprobe-multi: this kernel does not support kprobe\.multi/);
    expect(() => checkBackend("fentry", KPROBE)).toThrow(/fentry\/fexit/);
    expect(() => checkBackend("kprobe", FENTRY)).not.toThrow();
  });

  test("the programs to load are each hook's, once", () => {
    const p = plan(FENTRY, ["ip_rcv", "ip_rcv_core", "nf_hook_slow"], { ret: true });
    const programs = plannedPrograms(p);
    expect(new Set(programs).size).toBe(programs.length);
    expect(programs).toContain(program.kprobe_skb0);
    expect(plannedPrograms(plan(FENTRY, ["ip_rcv"], { backend: "fentry" }))).toContain(program.fentry_skb0);
    expect(programs).toContain(program.kretprobe_return_value);
    expect(programs).toContain(program.tp_consume_skb_btf);
  });
});

describe("--sock's tracepoints", () => {
  test("the variant each signature fits; a changed socket argument and absent tracepoints skipped with the reason", () => {
    const p = makeSockPlan({ btf, features: TRACEPOINTS_ONLY, rttOnly: false });
    expect(p.hooks.map((h) => [h.name, h.attach[0]!.program])).toEqual([
      ["sock:inet_sock_set_state", program.tp_inet_sock_set_state_sock_btf],
      // (sk, skb): a kernel before 6.10, no reset reason.
      ["tcp:tcp_send_reset", program.tp_tcp_send_reset_sock_noreason_btf],
    ]);
    expect(makeSockPlan({ btf, features: NONE, rttOnly: false }).hooks[0]!.attach[0]!.program).toBe(program.tp_inet_sock_set_state_sock_raw);
    expect(skipped(p, "tcp:tcp_receive_reset")).toBe("argument 0 is struct sk_buff *, not struct sock * (tracepoint changed: struct sk_buff *)");
    expect(skipped(p, "tcp:tcp_probe")).toBe("this kernel has no such tracepoint");
    expect(p.hooks.length + p.skipped.length).toBe(SOCK_TRACEPOINTS.length);
  });

  // Here ftrace can hook tcp_v4_do_rcv (a socket function with a struct sock * first); `ftrace` replaces that list.
  const sockPlan = (features: Features, names: string[], named: string[] = [], backend?: BackendChoice, ftrace = `${FTRACE}\ntcp_v4_do_rcv`) =>
    makeSockPlan({ btf, features, rttOnly: false, backend, functions: { index: new FunctionIndex(btf, () => new Symbolizer(KALLSYMS), () => ftrace, "/nonexistent"), names, named } });

  test("socket functions: their struct sock argument's programs on each backend; functions without one skipped, or refused when -t named them", () => {
    const attach = (features: Features, backend?: BackendChoice) => fn(sockPlan(features, ["tcp_v4_do_rcv"], [], backend), "tcp_v4_do_rcv")?.attach;
    expect(attach(MULTI)).toEqual([{ how: "kprobe-multi", program: program.kmulti_sock0, retprobe: false }]);
    expect(attach(KPROBE)).toEqual([{ how: "kprobe", program: program.kprobe_sock0, retprobe: false }]);
    expect(attach(FENTRY, "fentry")).toEqual([{ how: "fentry-template", program: program.fentry_sock0, exit: false, idInCode: false }]);
    // 5.10: no bpf_get_func_ip, the function's address is written into each copy.
    expect(attach(OLD_FENTRY, "fentry")).toEqual([{ how: "fentry-template", program: program.fentry_id_sock0, exit: false, idInCode: true }]);
    // Not traceable (notrace): skipped, as skb functions are.
    expect(skipped(sockPlan(KPROBE, ["tcp_v4_do_rcv"], [], undefined, FTRACE), "tcp_v4_do_rcv")).toContain("not traceable");
    const p = sockPlan(KPROBE, ["ip_rcv", "not_in_btf"]);
    expect(skipped(p, "ip_rcv")).toBe("takes no struct sock * argument");
    expect(skipped(p, "not_in_btf")).toContain("not in this kernel's BTF");
    expect(() => sockPlan(KPROBE, [], ["ip_rcv"])).toThrow("not a tracer group, a hook of the tree or a kernel function taking a struct sock");
    // No function backend: the tracepoints only.
    expect(sockPlan(TRACEPOINTS_ONLY, ["tcp_v4_do_rcv"]).hooks.every((h) => h.kind === "tracepoint")).toBe(true);
  });
});

describe("resolutions kept for the next run of this boot", () => {
  test("a second run with the same key reads neither kallsyms nor ftrace's list; another key resolves again", () => {
    // A directory of its own: real runs keep theirs in /run/skbtrail (and a user without root cannot write there).
    const dir = mkdtempSync(`${tmpdir()}/skbtrail-kept-`);
    process.env.SKBTRAIL_STATE_DIR = dir;
    try {
      const key = `unit test ${process.pid} ${Date.now()}`;
      const first = new FunctionIndex(btf, () => new Symbolizer(KALLSYMS), () => FTRACE, "/nonexistent", key);
      const resolved = [first.resolve("ip_rcv_core"), first.resolve("nf_hook_slow", "own"), first.resolve("not_in_btf")];
      first.keepResolutions();
      const unread = () => {
        throw new Error("read again");
      };
      const second = new FunctionIndex(btf, unread, unread, "/nonexistent", key);
      expect([second.resolve("ip_rcv_core"), second.resolve("nf_hook_slow", "own"), second.resolve("not_in_btf")]).toEqual(resolved);
      expect(resolved[0]).toMatchObject({ fn: { symbol: "ip_rcv_core.isra.0", ftrace: true } });
      expect(() => new FunctionIndex(btf, unread, unread, "/nonexistent", `${key} other`).resolve("ip_rcv_core")).toThrow("read again");
    } finally {
      rmSync(dir, { recursive: true });
      delete process.env.SKBTRAIL_STATE_DIR;
    }
  });
});
