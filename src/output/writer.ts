// Buffered, synchronous output: events are formatted into a buffer and
// written once per ring-buffer batch, so nothing is lost when the process
// exits right after (-c, --timeout) and a slow reader applies backpressure.
import { closeSync, openSync, writeSync } from "node:fs";

export class Writer {
  private chunks: string[] = [];
  private size = 0;
  /** Set when the reader went away (EPIPE): stop tracing. */
  closed = false;

  constructor(readonly fd: number) {}

  static toFile(path: string): Writer {
    return new Writer(openSync(path, "w"));
  }

  line(text: string): void {
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
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EAGAIN") {
          Bun.sleepSync(1);
          continue;
        }
        if (code === "EPIPE") {
          this.closed = true;
          return;
        }
        throw e;
      }
    }
  }

  close(): void {
    this.flush();
    if (this.fd > 2) closeSync(this.fd);
  }
}
