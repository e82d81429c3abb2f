// Experiment, not part of run.ts: what the product's wakeup rule costs.
// bpf/ringbuf.bpf.h asks for a wakeup (BPF_RB_FORCE_WAKEUP) on every record
// while >= wakeup_bytes are pending. This builds, in a temporary copy of the
// repository, a variant that asks only when a record takes the backlog across
// the threshold, and compares the two: the drop monitor on loopback UDP and
// the ring benchmark with the TypeScript reader, alternated.
//
//   sudo bun bench/wakeup-experiment.ts        (about 90 s; run bench/run.ts once first)
//
// Nothing in the repository is changed; the copy is removed at the end.
import { $ } from "bun";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dropBench, DROP_CONFIGS } from "./drop";
import { RingBench, fmtRate } from "./ring";

const ROOT = `${import.meta.dir}/..`;
const OUT = `${import.meta.dir}/build`;

const ORIGINAL = `	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= CFG.wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;`;
// The largest record (struct nf_event) is well under 512 bytes, so every
// upward crossing of the threshold lands in [wakeup_bytes, wakeup_bytes + 512).
const CROSSING = `	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (avail >= CFG.wakeup_bytes && avail < CFG.wakeup_bytes + 512)
		return BPF_RB_FORCE_WAKEUP;`;

const dir = mkdtempSync("/tmp/skbtrail-wakeup-");
try {
  for (const f of ["bpf", "src", "ffi", "knowledge", "node_modules", "build.ts", "package.json", "tsconfig.json", "bunfig.toml", "assets.d.ts", "bun.lock"])
    cpSync(`${ROOT}/${f}`, `${dir}/${f}`, { recursive: true });
  const header = `${dir}/bpf/ringbuf.bpf.h`;
  const text = readFileSync(header, "utf8");
  if (!text.includes(ORIGINAL)) throw new Error("bpf/ringbuf.bpf.h changed: update this experiment");
  writeFileSync(header, text.replace(ORIGINAL, CROSSING));
  console.error("building the variant (about 15 s)");
  await $`bun run build.ts`.cwd(dir).quiet();
  cpSync(`${import.meta.dir}/producer.bpf.c`, `${dir}/bench/producer.bpf.c`);
  await $`clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I${dir}/bpf -c ${dir}/bench/producer.bpf.c -o ${dir}/producer.bpf.o`;

  const variants = [
    { name: "product (wake on every record past 256 KiB)", binary: `${ROOT}/dist/skbtrail`, producer: `${OUT}/producer.bpf.o` },
    { name: "variant (wake when crossing 256 KiB)", binary: `${dir}/dist/skbtrail`, producer: `${dir}/producer.bpf.o` },
  ];
  const rows: string[] = [];
  for (let round = 0; round < 2; round++) {
    for (const v of variants) {
      const drop = await dropBench(v.binary, `${OUT}/ringbench`, 2, 1, DROP_CONFIGS.slice(0, 3));
      const bench = await RingBench.open(v.producer, `${OUT}/ringbench`);
      let ts;
      try {
        await bench.run("ts", 0.5, 0);
        ts = await bench.run("ts", 1.5, 0);
      } finally {
        bench.close();
      }
      const pps = (name: string) => drop.find((r) => r.config === name)!;
      const base = pps("untraced").pps;
      const cell = (name: string) => `${(pps(name).pps / base).toFixed(2)}× (lost ${pps(name).lost})`;
      rows.push(
        `| ${v.name} | ${Math.round(base)} | ${cell("--drop")} | ${cell("--drop --json")} | ${fmtRate(ts.rate)}/s, producer ${fmtRate(ts.producedRate)}/s at ${ts.producerCpuNs.toFixed(0)} ns/record, lost ${ts.lost} |`,
      );
    }
  }
  console.log(
    [
      "| wakeup rule | untraced pkt/s | `--drop` vs untraced | `--drop --json` vs untraced | ring, TypeScript reader, producer flat out |",
      "|---|---|---|---|---|",
      ...rows,
    ].join("\n"),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
