// Buffered, synchronous output: events are formatted into a buffer and
// written once per ring-buffer batch, so nothing is lost when the process
// exits right after (-c, --timeout) and a slow reader applies backpressure.
// A reader that went away (EPIPE) or a write that fails (disk full, I/O
// error) closes the writer: the run stops instead of failing later.
import { closeSync, openSync, writeSync } from "node:fs";

export class Writer {
  private chunks: string[] = [];
  private size = 0;
  /** Set when the output is gone: the reader closed the pipe, or a write failed. */
  closed = false;
  /** Why a write failed (ENOSPC, EIO…); undefined when the reader just went away. */
  failure?: string;

  constructor(
    readonly fd: number,
    /** What to call it in an error message ("stdout", "--output drops.log"). */
    readonly name = fd === 1 ? "standard output" : fd === 2 ? "standard error" : `fd ${fd}`,
  ) {}

  static toFile(path: string): Writer {
    return new Writer(openSync(path, "w"), path);
  }

  line(text: string): void {
    if (this.closed) return;
    this.chunks.push(text, "\n");
    this.size += text.length + 1;
    if (this.size > 1 << 16) this.flush();
  }

  flush(): void {
    if (!this.chunks.length || this.closed) return;
    let data = Buffer.from(this.chunks.join(""));
    this.chunks = [];
    this.size = 0;
    while (data.length) {
      try {
        data = data.subarray(writeSync(this.fd, data));
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === "EAGAIN") {
          Bun.sleepSync(1);
          continue;
        }
        this.closed = true;
        if (err.code !== "EPIPE") this.failure = `${err.code ?? "error"}: ${err.message.replace(/^\w+: /, "").replace(/, write$/, "")}`;
        return;
      }
    }
  }

  close(): void {
    this.flush();
    if (this.fd > 2) {
      try {
        closeSync(this.fd);
      } catch (e) {
        this.failure ??= (e as NodeJS.ErrnoException).code;
      }
    }
  }
}
