// Two skbtrail binaries side by side under a Debian kernel (QEMU): how fast
// loopback UDP flows while each traces with a filter that matches nothing
// (`-p tcp --dport 1`, the cost every other packet on a busy box pays).
// Per backend, three pairs of runs, the order alternated (A B, B A, A B), an
// untraced flood before each traced one (the emulated machine drifts), the
// next run only once the previous one's background detach is gone.
// Prints Markdown tables: packets per 3 s flood, median and each run, and
// the ratio to the median untraced flood; seconds from exec to `begin trace...`
// for those runs and for `--drop` started in the same alternated order, with
// the phases `-v` reports (kernel ready, planned, loaded, attached).
// `--starts`: starts only, no floods: `--drop`, and per backend the default
// set and `--diag` (issue 9: no more than 1 s above the default set).
// `--detach`: also a flood right after each traced run's prompt came back,
// while its background copy detaches the hooks (switched off, still
// entered), and the seconds from the prompt until that copy is gone.
// `--matching`: the filter matches every datagram of the flood instead
// (`-p udp --dport 9`): each is followed and recorded at every hook; the
// events go to a file (/tmp/events), and the records each run lost are
// counted from its summary there.
// `--drops`: the traced runs are `--drop` on the same flood to a closed
// port, every datagram dropped and reported (to /tmp/events, lost records
// counted as with --matching); name the backend `tracepoints` (--drop
// takes no --backend).
// `--slab`: the traffic is an open/close loop instead (`ringbench openclose`,
// no network): what tracing costs the rest of a machine, whose every slab
// free enters a program on kmem:kmem_cache_free.
//
// RELEASE `host` runs the same script on this machine, with its tracepoints
// (no --backend) unless backends are named.
//
//   bun run bench/ab.ts [--starts | --detach | --matching | --drops | --slab] RELEASE A_BINARY B_BINARY [BACKEND...]
//   e.g. bun run bench/ab.ts bookworm /tmp/old/dist/skbtrail dist/skbtrail fentry kprobe
//        bun run bench/ab.ts host /tmp/old/dist/skbtrail dist/skbtrail
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { release as hostRelease } from "node:os";
import { $ } from "bun";
import { type Release, vmKernel } from "../tests/vm/kernels";
import { runInVm } from "../tests/vm/vm";

const BUILD = `${import.meta.dir}/build`;
const startsOnly = process.argv.includes("--starts");
const detaching = process.argv.includes("--detach");
const matching = process.argv.includes("--matching");
const drops = process.argv.includes("--drops");
/** The traced runs write their events to a file, whose summary counts the records lost. */
const recording = matching || drops;
const slab = process.argv.includes("--slab");
/** What a "flood" counts: datagrams sent, or opens and closes. */
const UNIT = slab ? "opens and closes" : "packets";
/** The traced runs' filter, and where their events go. */
const TRACED = drops ? "--drop -p udp --dport 9 --output /tmp/events" : matching ? "-p udp --dport 9 --output /tmp/events" : "-p tcp --dport 1";
/** A START or PHASES row's name: `drop`, a backend (the default set) or `diag,BACKEND`. */
const startName = (what: string) => (what === "drop" ? "`--drop`" : what.startsWith("diag,") ? `\`--diag\`, ${what.slice(5)}` : `default set, ${what}`);
const [release, a, b, ...backends] = process.argv.slice(2).filter((arg) => !arg.startsWith("--"));
if (!release || !a || !b) {
  console.error("usage: bun run bench/ab.ts [--starts | --detach | --matching | --drops | --slab] RELEASE A_BINARY B_BINARY [BACKEND...]");
  process.exit(2);
}
const ROUNDS = ["a b", "b a", "a b"];
const onHost = release === "host";
const HOST_TRACEPOINTS = "tracepoints"; // the backend name of a host run without --backend

mkdirSync(`${BUILD}/ab`, { recursive: true });
// Built each time (under a second): a stale copy would lack a mode added since.
await $`cc -O2 -Wall -o ${BUILD}/ringbench ${import.meta.dir}/ringbench.c -lbpf`;
copyFileSync(a, `${BUILD}/ab/a`);
copyFileSync(b, `${BUILD}/ab/b`);
const dropStarts = `for order in ${ROUNDS.map((r) => `"${r}"`).join(" ")}; do
  for bin in $order; do
    start drop $bin ./$bin -v --drop
    kill -INT %1; wait
  done
done`;
// A file, not bash -c: pgrep -f must not see the script's text. Binaries are copied out of the 9p share first.
writeFileSync(
  `${BUILD}/ab/ab.sh`,
  `set -m
cd /tmp; cp ${BUILD}/ab/a ${BUILD}/ab/b ${BUILD}/ringbench /tmp/
flood() { ./ringbench ${slab ? "openclose 3" : "flood 127.0.0.1 9 3"} | sed 's/.*"\\(packets\\|ops\\)":\\([0-9]*\\).*/\\2/'; }
# start WHAT BIN COMMAND...: runs COMMAND as job %1, waits for "begin trace", prints the milliseconds it took.
start() {
  local what=$1 bin=$2 t0=$(date +%s%N)
  shift 2
  "$@" > /tmp/run.out 2>&1 &
  for i in $(seq 6000); do grep -q "begin trace" /tmp/run.out && break; sleep 0.02; done
  echo "START $what $bin $(( ($(date +%s%N) - t0) / 1000000 ))"
  echo "PHASES $what $bin $(grep -oE '(BTF. in|planned in|programs in|links in) [0-9]+ ms' /tmp/run.out | grep -oE '[0-9]+ ms' | tr -d ' ms' | tr '\\n' ' ')"
}
${dropStarts}
for backend in ${(backends.length ? backends : onHost ? [HOST_TRACEPOINTS] : ["fentry", "kprobe"]).join(" ")}; do
  backend_flag="--backend $backend"; [ $backend = ${HOST_TRACEPOINTS} ] && backend_flag=""
  for order in ${ROUNDS.map((r) => `"${r}"`).join(" ")}; do
    for bin in $order; do
      ${startsOnly ? "" : 'echo "RESULT untraced - $(flood)"'}
      start $backend $bin ./$bin -v $backend_flag ${TRACED}
      ${startsOnly ? "" : 'echo "RESULT $backend $bin $(flood)"'}
      kill -INT %1; wait; prompt=$(date +%s%N)
      ${recording ? `echo "LOST $backend $bin $(grep -oE 'lost: [0-9]+' /tmp/events | tail -1 | grep -oE '[0-9]+')"; rm -f /tmp/events` : ""}
      ${detaching ? 'echo "RESULT $backend,detaching $bin $(flood)"' : ""}
      for i in $(seq 1200); do pgrep -x $bin > /dev/null || break; sleep 0.1; done
      echo "DETACHED $backend $bin $(( ($(date +%s%N) - prompt) / 1000000 ))"
      ${startsOnly ? `start diag,$backend $bin ./$bin -v --diag $backend_flag -p tcp --dport 1
      kill -INT %1; wait
      for i in $(seq 1200); do pgrep -x $bin > /dev/null || break; sleep 0.1; done` : ""}
    done
  done
done
`,
);
async function runOnHost(): Promise<{ output: string; seconds: number }> {
  const t0 = performance.now();
  const output = await $`bash ${BUILD}/ab/ab.sh`.env({ ...process.env, NO_COLOR: "1" }).text();
  return { output, seconds: (performance.now() - t0) / 1000 };
}
const kernel = onHost ? undefined : await vmKernel(release as Release);
const r = kernel
  ? await runInVm(kernel, `bash ${BUILD}/ab/ab.sh`, {
      cwd: `${import.meta.dir}/..`,
      env: { NO_COLOR: "1" },
      timeoutMs: 3_600_000,
      consoleFile: `${BUILD}/ab-${release}.console`, // how far a run that hangs got
    })
  : await runOnHost();
writeFileSync(`${BUILD}/ab-${release}.log`, r.output);
const runs = [...r.output.matchAll(/^RESULT (\S+) (\S+) (\d+)$/gm)].map(([, backend, bin, packets]) => ({ backend: backend!, bin: bin!, packets: Number(packets) }));
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
const untraced = median(runs.filter((x) => x.backend === "untraced").map((x) => x.packets));
console.log(`${kernel?.version ?? hostRelease()}, ${r.seconds.toFixed(0)} s; A = ${a}, B = ${b}${runs.length ? `; untraced median ${untraced} ${UNIT} per flood` : ""}\n`);
const lost = [...r.output.matchAll(/^LOST (\S+) (\S+) (\d*)$/gm)].map(([, backend, bin, n]) => ({ backend: backend!, bin: bin!, n: n || "?" }));
if (runs.length) console.log(`| backend | binary | ${UNIT} per flood, median (runs) | vs untraced median |${recording ? " records lost (runs) |" : ""}\n|---|---|---|---|${recording ? "---|" : ""}`);
for (const backend of new Set(runs.filter((x) => x.backend !== "untraced").map((x) => x.backend)))
  for (const bin of ["a", "b"]) {
    const p = runs.filter((x) => x.backend === backend && x.bin === bin).map((x) => x.packets);
    const lostRuns = recording ? ` ${lost.filter((x) => x.backend === backend && x.bin === bin).map((x) => x.n).join(", ")} |` : "";
    console.log(`| ${backend.replace(",detaching", ", while detaching")} | ${bin.toUpperCase()} | ${median(p)} (${p.join(", ")}) | ${(median(p) / untraced).toFixed(2)}× |${lostRuns}`);
  }
const starts = [...r.output.matchAll(/^START (\S+) (\S+) (\d+)$/gm)].map(([, what, bin, ms]) => ({ what: what!, bin: bin!, seconds: Number(ms) / 1000 }));
console.log("\n| exec → `begin trace...` | A: seconds, median (runs) | B | B / A |\n|---|---|---|---|");
for (const what of new Set(starts.map((x) => x.what))) {
  const of = (bin: string) => starts.filter((x) => x.what === what && x.bin === bin).map((x) => x.seconds);
  const [sa, sb] = [of("a"), of("b")];
  const row = (xs: number[]) => `${median(xs).toFixed(2)} (${xs.map((x) => x.toFixed(2)).join(", ")})`;
  console.log(`| ${startName(what)} | ${row(sa)} | ${row(sb)} | ${(median(sb) / median(sa)).toFixed(2)} |`);
}
const detached = [...r.output.matchAll(/^DETACHED (\S+) (\S+) (\d+)$/gm)].map(([, backend, bin, ms]) => ({ backend: backend!, bin: bin!, seconds: Number(ms) / 1000 }));
console.log("\n| prompt → last hook detached (background copy gone), seconds | A, each run | B, each run |\n|---|---|---|");
for (const backend of new Set(detached.map((x) => x.backend))) {
  const of = (bin: string) => detached.filter((x) => x.backend === backend && x.bin === bin).map((x) => x.seconds.toFixed(1)).join(", ");
  console.log(`| ${backend}${detaching ? " (a flood meanwhile)" : ""} | ${of("a")} | ${of("b")} |`);
}
const phases = [...r.output.matchAll(/^PHASES (\S+) (\S+) ([\d ]*)$/gm)].map(([, what, bin, ms]) => ({ what: what!, bin: bin!, ms: ms!.trim().split(" ").map(Number) }));
console.log("\n| `-v` phases, ms: kernel ready / planned / loaded / attached | A, each run | B, each run |\n|---|---|---|");
for (const what of new Set(phases.map((x) => x.what))) {
  const of = (bin: string) => phases.filter((x) => x.what === what && x.bin === bin).map((x) => x.ms.join(" / ")).join("; ");
  console.log(`| ${startName(what)} | ${of("a")} | ${of("b")} |`);
}
