// VM tests: real Debian kernels (and Ubuntu 24.04's) booted under QEMU run the same dist/skbtrail
// and the same kernel test files as the host (see vm.ts), to prove the
// backends this host cannot run (kprobe, kprobe.multi, fentry/fexit) and the
// older tracepoint signatures. Kernels are downloaded once into
// ~/.cache/skbtrail-vm. SKBTRAIL_VM=0 skips them (visibly); CI runs them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { requireKernelTests } from "../lib/require";
import { BINARY } from "../lib/skbtrail";
import { kernelReachable, type Release, type VmKernel, vmKernel } from "./kernels";
import { runInVm } from "./vm";

const ROOT = `${import.meta.dir}/../..`;
const wanted = requireKernelTests() && process.env.SKBTRAIL_VM !== "0";
if (!wanted) console.warn("SKIPPED VM tests (SKBTRAIL_VM=0, or kernel tests are off)");

/** How much slower than the host the emulated VMs are: every wait of the kernel tests is scaled by it. */
const VM_SCALE = "20";

interface VmCase {
  release: Release;
  /** The boot's name in logs (build/vm-logs/NAME.log): a release may be booted more than once to share the work out. */
  name: string;
  /** Function backends the kernel must offer, best first. */
  backends: string[];
  /** Those whose cases the functions suite runs here (default: all): another boot proves the same path. */
  runBackends?: string[];
  /** Kernel test files to run inside, all in this one boot; "FILE -t PATTERN" runs only that file's matching tests, on its own. */
  suites: string[];
  /** Its kernel comes from an archive other than Debian's: where this network cannot reach it, the boot is skipped, visibly. */
  optional?: boolean;
  /** stop.test.ts's causes, when this boot runs it (default: STOP_CAUSES). */
  stopCauses?: string;
  /** A shell check run after the suites in the same boot; its output is judged by `check`. */
  extra?: { name: string; script: string; check: (output: string) => void };
}

// diag.test.ts's scenarios per kernel. Issue 13 asks for these on 6.1 and 6.12 (and every one on 5.10, where
// the cause is inferred from the location): route kinds, bridge, reject with a reset, conntrack INVALID, MTU, neighbours.
// ("family": the bridge, netdev and arp tables' drop rules.)
const ANY_KERNEL_SCENARIOS = "route|family|reject rule|INVALID|too big|next hop|normal traffic";
/** Where the kernel sends an ICMP error: seen through __icmp_send before 6.9; and --hooks, where nft_do_chain returns NF_DROP. */
const ICMP_ERROR_SCENARIOS = `${ANY_KERNEL_SCENARIOS}|closed UDP port|forwarding turned off|TTL expiry|--hooks`;
/** Whose finding changes where functions are hooked: nftables chains (nft_do_chain), a socket filter's return. */
const FUNCTION_HOOK_SCENARIOS = `${ANY_KERNEL_SCENARIOS}|nftables|socket filter`;
/** stop.test.ts's cases of every mode under a flood (not those of a stalled reader). */
const STOP_UNDER_FLOOD = "under a flood (drop|lifecycle|basic|diag|monitor|latency|sock) ";
/** The stop causes a VM runs by default (stop.test.ts, SKBTRAIL_TEST_STOP_CAUSES): a signal, -c and the closed pipe. */
const STOP_CAUSES = "SIGINT,-c 50,a closed pipe";
/** trace.test.ts's case of which tracepoint programs load: the _cast ones where bpf_rdonly_cast is, else tp_btf. */
const CAST_PROGRAMS = "plain loads";
/** ...and its VLAN case (5.10 marks an offloaded tag with a bit of its own). */
const VLAN_AND_CAST = `VLAN|${CAST_PROGRAMS}`;
/** sock.test.ts's cases of --sock's socket functions (one per backend). */
const SOCKET_FUNCTIONS = "socket functions";

// The VMs share out the host's CPUs in this order (PARALLEL below). With two CPUs, in one CI rehearsal
// (2026-12-05; each boot's seconds are in build/vm-logs/NAME.log): bullseye 607 s then bullseye-diag 368 s
// and noble 269 s, beside trixie 430 s then bookworm 756 s: the two slots end within a minute of each other.
const CASES: VmCase[] = [
  // 5.10: no attach cookie nor bpf_get_func_ip (5.15+): kprobes name their function by instruction pointer and
  // stack slot, fentry/fexit copies carry it in their instructions; no drop reasons (5.17+): the CI gate judges
  // drops by the reason their location stands for; the monitor on the tracepoints 5.10 has; socket mode on them
  // and on its socket functions (kprobes by instruction pointer, fentry copies), the whole suite.
  {
    release: "bullseye",
    name: "bullseye",
    backends: ["kprobe", "fentry"],
    suites: ["tests/kernel/functions.test.ts", "tests/kernel/run.test.ts", "tests/kernel/btf.test.ts", "tests/kernel/monitor.test.ts", "tests/kernel/sock.test.ts"],
    extra: {
      name: "the drop monitor reports drops without a reason on a 5.10 kernel",
      script: `
        ./dist/skbtrail --drop -p udp --dport 9 -c 1 --timeout 600 > /tmp/out 2>&1 &
        for i in $(seq 6000); do grep -q 'begin trace' /tmp/out && break; sleep 0.1; done
        printf x > /dev/udp/127.0.0.1/9
        wait
        cat /tmp/out`,
      check(output) {
        expect(output).toMatch(/UDP: 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:9 /);
        expect(output).not.toMatch(/reason: /);
        expect(output).toMatch(/__udp4_lib_rcv\+0x[0-9a-f]+|udp_rcv/);
      },
    },
  },
  // 6.12: kprobe.multi too; the default mode, the drop monitor and their filters on a kernel with function hooks;
  // the diag scenarios function hooks change (nft_do_chain's chains, a chain that frees what it drops: NF_STOLEN,
  // 6.8+; a socket filter's return) and issue 13's; the monitor's function hooks (nft_do_chain); socket mode's
  // socket functions (its tracepoints are proven on 5.10 and on the host's newer kernel). The functions and socket
  // function suites run kprobe.multi's cases only: fentry and kprobes with cookies are 6.1's paths too.
  {
    release: "trixie",
    name: "trixie",
    backends: ["kprobe-multi", "kprobe", "fentry"],
    runBackends: ["kprobe-multi"],
    suites: ["tests/kernel/functions.test.ts", "tests/kernel/trace.test.ts", "tests/kernel/drop.test.ts", `tests/kernel/diag.test.ts -t '${FUNCTION_HOOK_SCENARIOS}'`, "tests/kernel/monitor.test.ts", `tests/kernel/sock.test.ts -t '${SOCKET_FUNCTIONS}'`],
  },
  // 6.1: kprobes and fentry, no kprobe.multi (no CONFIG_FPROBE). First, every mode stopping under a flood with
  // kprobes (the default where kprobe.multi is missing, as on 5.10), before any fentry run: floods while fentry
  // links are torn down soft-lock Debian's 6.1 under TCG ("CPU stuck for 23s", then the VM hangs; bench/README.md).
  // Then runs started while fentry's slow teardown goes on; the diag scenarios where ICMP errors are seen through
  // __icmp_send (no icmp:icmp_send tracepoint before 6.9) and issue 13's; the others are 5.10's and 6.12's only.
  // Socket mode's socket functions through kprobes with attach cookies and fentry copies that ask bpf_get_func_ip.
  {
    release: "bookworm",
    name: "bookworm",
    backends: ["kprobe", "fentry"],
    suites: [`tests/kernel/stop.test.ts -t '${STOP_UNDER_FLOOD}'`, "tests/kernel/functions.test.ts", "tests/kernel/backtoback.test.ts", `tests/kernel/diag.test.ts -t '${ICMP_ERROR_SCENARIOS}'`, `tests/kernel/sock.test.ts -t '${SOCKET_FUNCTIONS}'`],
  },
  // 5.10's diag scenarios in a boot of their own, beside the others: the cause named without drop reasons (inferred
  // from the location) and without module BTF (no nft_do_chain: the chain from nf_hook_slow's hook and the ruleset);
  // and stack latency with a netem qdisc (here, not above: the two boots of a slot then end closer together).
  // Also the VLAN tag an skb carries, which kernels before 5.19 mark with a bit of its own (vlan_present), and the
  // tracepoints' tp_btf programs where bpf_rdonly_cast is missing (the _cast programs' probe refused).
  { release: "bullseye", name: "bullseye-diag", backends: ["kprobe", "fentry"], suites: ["tests/kernel/diag.test.ts", "tests/kernel/latency.test.ts", `tests/kernel/trace.test.ts -t '${VLAN_AND_CAST}'`] },
  // Ubuntu 24.04's 6.8, the kernel most machines between Debian's 6.1 and 6.12 run: kprobe.multi's entry programs
  // read the skb and the headers through bpf_rdonly_cast (6.2+), and so do the tracepoints' _cast programs, which 6.12
  // alone would prove otherwise. And every mode stopping under a flood with function hooks, on every cause but
  // SIGHUP (the same handler as SIGTERM); the stalled-reader cases, about skbtrail's own output, stay on the host
  // (their waits assume its speed).
  {
    release: "noble",
    name: "noble",
    backends: ["kprobe-multi", "kprobe", "fentry"],
    runBackends: ["kprobe-multi"],
    suites: ["tests/kernel/functions.test.ts", `tests/kernel/trace.test.ts -t '${CAST_PROGRAMS}'`, `tests/kernel/stop.test.ts -t '${STOP_UNDER_FLOOD}'`],
    stopCauses: `${STOP_CAUSES},SIGTERM,--timeout`,
    optional: true,
  },
];

/** SKBTRAIL_VM_ONLY=bullseye,trixie boots only those (by name), e.g. to rerun what a CI run failed. */
const ONLY = process.env.SKBTRAIL_VM_ONLY?.split(",").filter(Boolean);
const CHOSEN = ONLY ? CASES.filter((c) => ONLY.includes(c.name)) : CASES;
const UNREACHABLE = wanted ? (await Promise.all(CHOSEN.map(async (c) => (c.optional && !(await kernelReachable(c.release)) ? [c] : [])))).flat() : [];
for (const c of UNREACHABLE) console.warn(`SKIPPED VM ${c.name}: its kernel's archive cannot be reached from here`);
const BOOTED = CHOSEN.filter((c) => !UNREACHABLE.includes(c));

const EXTRA = "=====skbtrail-vm-extra=====";

interface Boot {
  kernel: VmKernel;
  /** The suites' exit code (-1: the VM did not finish). */
  exitCode: number;
  suites: string;
  extra: string;
  seconds: number;
}

/**
 * VMs boot side by side, one per host CPU: QEMU runs each VM's vCPUs in one
 * thread (vm.ts), so a VM keeps one CPU busy, and the level takes as long as
 * its longest VM instead of the sum.
 */
const PARALLEL = Math.max(1, Math.min(BOOTED.length, availableParallelism()));
let running = 0;
const waiting: (() => void)[] = [];
async function inSlot<T>(work: () => Promise<T>): Promise<T> {
  while (running >= PARALLEL) await new Promise<void>((wake) => waiting.push(wake));
  running++;
  try {
    return await work();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** One boot per release runs all its suites (and its extra check): booting is the slow part. */
const boots = new Map<VmCase, Promise<Boot>>();
function boot(c: VmCase): Promise<Boot> {
  let b = boots.get(c);
  if (!b) {
    b = inSlot(async () => {
      const kernel = await vmKernel(c.release);
      mkdirSync(`${ROOT}/build/vm-logs`, { recursive: true });
      // In the order listed; whole files next to each other share one bun test, a file with -t runs alone.
      const picked = (s: string) => s.includes(" -t ");
      const runs: string[] = [];
      for (const [i, s] of c.suites.entries()) {
        if (i > 0 && !picked(s) && !picked(c.suites[i - 1]!)) runs[runs.length - 1] += ` ${s}`;
        else runs.push(s);
      }
      const command = ["suites=0", ...runs.map((s) => `bun test --timeout 900000 ${s} || suites=1`), ...(c.extra ? [`echo ${EXTRA}`, c.extra.script] : []), "exit $suites"].join("\n");
      const r = await runInVm(kernel, command, {
        cwd: ROOT,
        env: {
          SKBTRAIL_REQUIRE_KERNEL: "1",
          SKBTRAIL_EXPECT_BACKENDS: c.backends.join(","),
          SKBTRAIL_RUN_BACKENDS: (c.runBackends ?? c.backends).join(","),
          SKBTRAIL_TEST_SCALE: VM_SCALE,
          SKBTRAIL_TEST_STOP_CAUSES: c.stopCauses ?? STOP_CAUSES,
          NO_COLOR: "1",
        },
        timeoutMs: 3_000_000,
        consoleFile: `${ROOT}/build/vm-logs/${c.name}.console`,
      });
      const [suites = "", extra = ""] = r.output.split(`${EXTRA}\n`);
      // The suite's own report, per test, lands in the host's output and in build/vm-logs/.
      const report = `--- ${c.name} (${kernel.version}), ${r.seconds.toFixed(0)} s in the VM ---\n${r.output.trim()}\n`;
      console.log(report);
      writeFileSync(`${ROOT}/build/vm-logs/${c.name}.log`, report + (r.exitCode < 0 ? r.console : ""));
      if (r.exitCode < 0) console.log(r.console.slice(-4000));
      return { kernel, exitCode: r.exitCode, suites, extra, seconds: r.seconds };
    });
    b.catch(() => {}); // its test reports the failure
    boots.set(c, b);
  }
  return b;
}

/** Each failed test of a bun test report, with the lines of its error above it. */
function failures(report: string): string[] {
  const lines = report.split("\n");
  return lines.flatMap((line, i) => (line.startsWith("(fail)") && !lines.slice(0, i).includes(line) ? [lines.slice(Math.max(0, i - 40), i + 1).join("\n")] : []));
}

describe.skipIf(!wanted)("VM tests on distribution kernels", () => {
  // Every VM starts now (as slots free up); the tests below wait for theirs.
  beforeAll(() => BOOTED.forEach(boot));
  test("dist/skbtrail is built", () => expect(existsSync(BINARY)).toBe(true));

  // Once more at the very end, short: CI keeps only the tail of its log, and the reports above are long.
  afterAll(async () => {
    for (const [c, b] of boots) {
      const r = await b.catch((e) => ({ exitCode: -1, suites: String(e) }) as Boot);
      if (r.exitCode === 0) continue;
      const failed = failures(r.suites).map((f) => f.split("\n").slice(-12).join("\n"));
      console.log(`=== VM ${c.name} failed (exit ${r.exitCode}; its log: build/vm-logs/${c.name}.log) ===\n${failed.join("\n") || r.suites.slice(-1500)}`);
    }
  });

  for (const c of UNREACHABLE) test.skip(`${c.release}: its kernel's archive cannot be reached from here`, () => {});
  for (const c of BOOTED) {
    test(
      `${c.release}: ${c.suites.map((s) => s.split("/").pop()).join(", ")} with backends [${c.backends.join(", ")}]`,
      async () => {
        const b = await boot(c);
        // The failures again, here: CI keeps only the tail of a long log.
        expect({ exitCode: b.exitCode, failed: failures(b.suites) }).toEqual({ exitCode: 0, failed: [] });
      },
      3_100_000,
    );
    if (c.extra) {
      const { name, check } = c.extra;
      test(`${c.release}: ${name}`, async () => check((await boot(c)).extra), 3_100_000);
    }
  }
});
