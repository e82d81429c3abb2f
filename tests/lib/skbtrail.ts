// Runs the real compiled binary (dist/skbtrail) as a test subject: start it,
// wait for "begin trace...", make traffic, stop it, read what it printed.
import type { Subprocess } from "bun";

export const BINARY = `${import.meta.dir}/../../dist/skbtrail`;

/**
 * Waits are sized for this machine; under software emulation (the VM tests)
 * everything is 10–50× slower, and SKBTRAIL_TEST_SCALE says by how much.
 */
export const SCALE = Number(process.env.SKBTRAIL_TEST_SCALE ?? "1");

/** A wait in ms, scaled for the machine the tests run on. */
export const scaled = (ms: number) => ms * SCALE;

export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

export class Skbtrail {
  private stdoutText = "";
  private stderrText = "";
  readonly finished: Promise<Finished>;

  private readonly stdoutReader: { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(): Promise<void> };

  private constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    const collect = async (reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> }, onText: (t: string) => void) => {
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        onText(decoder.decode(value, { stream: true }));
      }
    };
    this.stdoutReader = proc.stdout.getReader();
    const out = collect(this.stdoutReader, (t) => (this.stdoutText += t));
    const err = collect(proc.stderr.getReader(), (t) => (this.stderrText += t));
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
  async ready(timeoutMs = scaled(15_000)): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const begun = () => /begin trace\.\.\./.test(this.stdoutText + this.stderrText);
    while (!begun()) {
      if (this.proc.exitCode !== null) {
        // A short run (-c under a flood) may be over before its output was read: read it all, then look.
        await this.finished;
        if (begun()) return;
        throw new Error(`skbtrail exited before tracing: ${this.stderrText.trim()}`);
      }
      if (Date.now() > deadline) {
        // Not left tracing behind the failed test: it would hold its hooks through the next ones.
        this.proc.kill("SIGKILL");
        throw new Error(`skbtrail not ready after ${timeoutMs} ms: ${this.stderrText.trim()}`);
      }
      await Bun.sleep(20);
    }
  }

  /** Waits until `pattern` shows up in stdout (events may arrive up to a poll interval late). */
  async waitFor(pattern: RegExp, timeoutMs = scaled(10_000)): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stdoutText)) {
      if (this.proc.exitCode !== null) {
        // Exited: what it printed may still be in the pipe.
        await this.finished;
        return pattern.test(this.stdoutText);
      }
      if (Date.now() > deadline) return false;
      await Bun.sleep(20);
    }
    return true;
  }

  /** Closes the reading end of its stdout, as `skbtrail | head -1` does once head has its line. */
  async closeStdout(): Promise<void> {
    await this.stdoutReader.cancel();
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
  // Only whole lines: output read while it is written, or cut by a closed pipe, may end mid-line.
  return stdout.split("\n").slice(0, -1).filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}
