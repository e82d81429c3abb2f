// Startup: time from exec of `dist/skbtrail --drop --timeout 1` to the line
// "begin trace..." on its stdout (libbpf loaded from the embedded copies,
// kernel BTF read, object opened, configured, verified, attached), warm
// (one unmeasured run first). After the line the run is stopped with SIGINT
// rather than waiting for the timeout; the time from SIGINT to exit is
// reported too. `--version` (exec to exit) shows the runtime's own floor.
//
//   sudo bun bench/startup.ts [RUNS]
import { statSync } from "node:fs";

export interface StartupResult {
  /** exec → "begin trace...", ms, one per run. */
  readyMs: number[];
  /** SIGINT → exit, ms. */
  stopMs: number[];
  /** exec → exit of `--version`, ms. */
  versionMs: number[];
  binaryBytes: number;
}

async function once(binary: string): Promise<{ ready: number; stop: number }> {
  const start = performance.now();
  const proc = Bun.spawn([binary, "--drop", "--timeout", "1"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const decoder = new TextDecoder();
  let text = "";
  let ready = 0;
  try {
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes("begin trace...")) {
        ready = performance.now() - start;
        break;
      }
    }
    if (!ready) throw new Error(`skbtrail did not start: ${await new Response(proc.stderr).text()}`);
    const t = performance.now();
    proc.kill("SIGINT");
    await proc.exited;
    return { ready, stop: performance.now() - t };
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
}

async function version(binary: string): Promise<number> {
  const start = performance.now();
  const proc = Bun.spawn([binary, "--version"], { stdout: "ignore", stderr: "ignore" });
  await proc.exited;
  return performance.now() - start;
}

export async function startupBench(binary: string, runs: number): Promise<StartupResult> {
  await once(binary); // warm: page cache, first-run effects
  await version(binary);
  const result: StartupResult = { readyMs: [], stopMs: [], versionMs: [], binaryBytes: statSync(binary).size };
  for (let i = 0; i < runs; i++) {
    const r = await once(binary);
    result.readyMs.push(r.ready);
    result.stopMs.push(r.stop);
    result.versionMs.push(await version(binary));
  }
  return result;
}

if (import.meta.main) {
  const r = await startupBench(process.env.SKBTRAIL_BIN ?? `${import.meta.dir}/../dist/skbtrail`, Number(process.argv[2] ?? 10));
  console.log(JSON.stringify(r));
}
