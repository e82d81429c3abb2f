// Buffered output that never blocks the run: events are formatted into a
// buffer and written once per ring-buffer batch; what the destination does
// not take at once (a pipe whose reader is slow or stopped reading) waits
// here, and the run reads no more records until it is taken, so memory stays
// bounded and signals, --timeout and -c are still seen between waits. At the
// end, close() waits for the reader as long as it keeps taking bytes.
// A reader that went away (EPIPE) or a write that fails (disk full, I/O
// error) closes the writer: the run stops instead of failing later.
import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";
import { isatty } from "node:tty";
import { hungUp, nonBlocking, writable } from "../../ffi/libc";

/** close() gives up on a reader that took nothing for this long (a stopped pager, a stuck pipe). */
export const STALLED_READER_MS = 1000;
/** close() looks for signals this often while it waits for a reader. */
const DRAIN_SLICE_MS = 50;
/** How often readerGone() looks at the pipe (a poll each time). */
const READER_CHECK_MS = 100;
/** A write to a blocking pipe that is not full takes this much without waiting (PIPE_BUF). */
const PIPE_BUF = 4096;

export class Writer {
  private chunks: (string | Uint8Array)[] = [];
  /** Some chunks are bytes (pcapng), not text: they are concatenated, not joined. */
  private binary = false;
  private size = 0;
  /** Bytes formatted but not yet taken by the destination. */
  private pending?: Buffer;
  /** A pipe, socket or terminal: a reader may be slow or stopped (a file or /dev/null takes every write). */
  private readonly hasReader: boolean;
  /** Set when the output is gone: the reader closed the pipe, or a write failed. */
  closed = false;
  /** Set when close() stopped waiting for a reader that was still taking bytes (a second signal). */
  interrupted = false;
  /** Why a write failed (ENOSPC, EIO…); undefined when the reader just went away. */
  failure?: string;

  constructor(
    public fd: number,
    /** What to call it in an error message ("stdout", "--output drops.log"). */
    readonly name = fd === 1 ? "standard output" : fd === 2 ? "standard error" : `fd ${fd}`,
  ) {
    let reader = false;
    try {
      const st = fstatSync(fd);
      reader = st.isFIFO() || st.isSocket() || isatty(fd);
    } catch {
      // a closed fd: the first write says so
    }
    this.hasReader = reader;
  }

  private nextReaderCheck = 0;

  /**
   * Whether the reader went away, seen without a write: a run that writes
   * rarely (--monitor sums up repeats every 10 s, a narrow filter) would
   * otherwise go on until its next line. Looks every READER_CHECK_MS; closes
   * the writer when it is gone, as a failed write would.
   */
  readerGone(): boolean {
    if (this.closed) return true;
    if (!this.hasReader) return false;
    const now = performance.now();
    if (now < this.nextReaderCheck) return false;
    this.nextReaderCheck = now + READER_CHECK_MS;
    if (hungUp(this.fd)) this.closed = true;
    return this.closed;
  }

  /** The file it writes to, when it was opened by path (--output). */
  private path?: string;

  /**
   * Creates or truncates `path`. Opened without waiting: a FIFO with no reader
   * fails at once (ENXIO, see openError) instead of holding the start.
   */
  static toFile(path: string): Writer {
    const w = new Writer(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NONBLOCK, 0o666), path);
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
      fd = openSync(this.path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NONBLOCK, 0o666);
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

  /** Bytes as they are (a binary format). */
  bytes(b: Uint8Array): void {
    if (this.closed) return;
    this.chunks.push(b);
    this.binary = true;
    this.size += b.length;
    if (this.size > 1 << 16) this.flush();
  }

  line(text: string): void {
    if (this.closed) return;
    this.chunks.push(text, "\n");
    this.size += text.length + 1;
    if (this.size > 1 << 16) this.flush();
  }

  /** Writes what the destination takes now, without waiting; the rest stays pending. */
  flush(): void {
    while (!this.closed && this.writePending()) {
      if (!this.chunks.length) return;
      // Joined only once the bytes before them were taken: a stalled reader costs no copying.
      this.pending = this.binary ? Buffer.concat(this.chunks.map((c) => (typeof c === "string" ? Buffer.from(c) : c))) : Buffer.from(this.chunks.join(""));
      this.chunks = [];
      this.binary = false;
      this.size = 0;
    }
  }

  /** True once every pending byte was written; false when the destination is full or failed. */
  private writePending(): boolean {
    if (!this.pending?.length) return true; // the common case, once per batch: no system call
    // A blocking pipe or terminal would hold the whole run in write(): look first, and write a page at a time.
    const careful = this.hasReader && !nonBlocking(this.fd);
    while (this.pending?.length) {
      if (careful && !writable(this.fd, 0)) return false;
      try {
        this.pending = this.pending.subarray(writeSync(this.fd, careful ? this.pending.subarray(0, PIPE_BUF) : this.pending));
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === "EAGAIN") return false;
        this.closed = true;
        this.pending = undefined;
        if (err.code !== "EPIPE") this.failure = `${err.code ?? "error"}: ${err.message.replace(/^\w+: /, "").replace(/, write$/, "")}`;
        return false;
      }
    }
    return true;
  }

  /** Bytes (about: text not yet encoded counts by its length) written by no flush yet. */
  private get unwritten(): number {
    return this.closed ? 0 : (this.pending?.length ?? 0) + this.size;
  }

  /**
   * Flushes; if the destination keeps some of it, waits up to `waitMs` for it
   * to take more and flushes again. True while bytes are still pending.
   */
  backedUp(waitMs: number): boolean {
    this.flush();
    if (!this.unwritten) return false;
    writable(this.fd, waitMs);
    this.flush();
    return this.unwritten > 0;
  }

  /**
   * Waits for a reader while it keeps taking bytes; returns those it gave up
   * on, after STALLED_READER_MS without progress or once `giveUp` says so;
   * `slow` hears once that the reader is still taking them after that long.
   * Waits in short slices and yields between them, so signal handlers run:
   * a second Ctrl-C is seen even while a slow reader still takes megabytes.
   */
  private async drain(giveUp: () => boolean, slow?: (unwritten: number) => void): Promise<number> {
    const started = performance.now();
    let left = this.unwritten;
    let progressAt = started;
    while (this.backedUp(DRAIN_SLICE_MS)) {
      const now = performance.now();
      if (this.unwritten !== left) [left, progressAt] = [this.unwritten, now];
      else if (now - progressAt >= STALLED_READER_MS) return left;
      // Said once, when the reader is slow but not stalled: the user may not want to wait.
      if (slow && now - started >= STALLED_READER_MS) {
        slow(left);
        slow = undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (giveUp()) {
        this.interrupted = true;
        return this.unwritten;
      }
    }
    return 0;
  }

  /** Writes what is left (see drain) and closes a file it opened; returns the bytes it had to give up on. */
  async close(giveUp: () => boolean = () => false, slow?: (unwritten: number) => void): Promise<number> {
    const lost = await this.drain(giveUp, slow);
    if (this.fd > 2) {
      try {
        closeSync(this.fd);
      } catch (e) {
        this.failure ??= (e as NodeJS.ErrnoException).code;
      }
    }
    return lost;
  }
}

/** The note for bytes close() did not write: `who` ("standard output", "--pcap FILE") and why. */
export function unwrittenNote(who: string, w: Writer, lost: number): string {
  const why = w.interrupted ? "interrupted while its reader was still taking them" : `its reader took nothing for ${STALLED_READER_MS / 1000} s after the stop`;
  return `${who}: its last ${Math.ceil(lost / 1024)} KiB were not written (${why})`;
}

/** Why a file cannot be opened for writing, as said after "cannot write PATH". */
export function openError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENXIO" ? "a FIFO with no reader: start its reader first" : `${code}`;
}
