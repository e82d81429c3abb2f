// Runs the real compiled binary (dist/skbtrail) as a test subject: start it,
// wait for "begin trace...", make traffic, stop it, read what it printed.
import type { Subprocess } from "bun";

export const BINARY = `${import.meta.dir}/../../dist/skbtrail`;

export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

export class Skbtrail {
  private stdoutText = "";
  private stderrText = "";
  readonly finished: Promise<Finished>;

  private constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    const collect = async (stream: ReadableStream<Uint8Array>, onText: (t: string) => void) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) onText(decoder.decode(chunk, { stream: true }));
    };
    const out = collect(proc.stdout, (t) => (this.stdoutText += t));
    const err = collect(proc.stderr, (t) => (this.stderrText += t));
    this.finished = Promise.all([proc.exited, out, err]).then(([code]) => ({ code, stdout: this.stdoutText, stderr: this.stderrText }));
  }

  /** Starts the binary; `prefix` can run it elsewhere (e.g. ["ip", "netns", "exec", ns]). */
  static start(args: string[], prefix: string[] = []): Skbtrail {
    return new Skbtrail(Bun.spawn([...prefix, BINARY, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  }

  get stdout(): string {
    return this.stdoutText;
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** Resolves once "begin trace..." appeared (stdout, or stderr with --json). */
  async ready(timeoutMs = 180_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!/begin trace\.\.\./.test(this.stdoutText + this.stderrText)) {
      if (this.proc.exitCode !== null) throw new Error(`skbtrail exited before tracing: ${this.stderrText.trim()}`);
      if (Date.now() > deadline) throw new Error(`skbtrail not ready after ${timeoutMs} ms: ${this.stderrText.trim()}`);
      await Bun.sleep(20);
    }
  }

  /** Waits until `pattern` shows up in stdout (events may arrive up to a poll interval late). */
  async waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stdoutText)) {
      if (this.proc.exitCode !== null || Date.now() > deadline) return false;
      await Bun.sleep(20);
    }
    return true;
  }

  async stop(signal: NodeJS.Signals = "SIGINT"): Promise<Finished> {
    if (this.proc.exitCode === null) this.proc.kill(signal);
    return this.finished;
  }
}

/** Runs the binary to completion (for error paths and short runs). */
export async function runSkbtrail(args: string[], prefix: string[] = []): Promise<Finished> {
  return Skbtrail.start(args, prefix).finished;
}

/** JSON lines of an NDJSON output. */
export function jsonLines(stdout: string): Record<string, any>[] {
  return stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}
