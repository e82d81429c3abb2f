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
    public fd: number,
    /** What to call it in an error message ("stdout", "--output drops.log"). */
    readonly name = fd === 1 ? "standard output" : fd === 2 ? "standard error" : `fd ${fd}`,
  ) {}

  /** The file it writes to, when it was opened by path (--output). */
  private path?: string;

  static toFile(path: string): Writer {
    const w = new Writer(openSync(path, "w"), path);
    w.path = path;
    return w;
  }

  /**
   * Opens its file again by name, appending (SIGHUP after logrotate moved
   * it away). False when it is not a file or the new one cannot be opened:
   * it then keeps writing where it did.
   */
  reopen(): boolean {
    if (!this.path || this.closed) return false;
    this.flush();
    let fd: number;
    try {
      fd = openSync(this.path, "a");
    } catch {
      return false;
    }
    try {
      closeSync(this.fd);
    } catch {
      // the old file's problem, not the new one's
    }
    this.fd = fd;
    return true;
  }

  /** Text without a newline (terminal control sequences). */
  write(text: string): void {
    if (this.closed) return;
    this.chunks.push(text);
    this.size += text.length;
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
