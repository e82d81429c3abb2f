// The output writer on a real pipe (a FIFO): a reader that stops reading
// never holds the caller in write(), whether the pipe blocks or not; close()
// waits for a reader that takes the bytes, and gives up on one that does not.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { constants, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { unwrittenNote, Writer } from "../../src/output/writer";

let dir: string;
let fifo: string;
beforeEach(() => {
  dir = mkdtempSync(`${tmpdir()}/skbtrail-writer-`);
  fifo = `${dir}/fifo`;
  execFileSync("mkfifo", [fifo]);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const LINE = "x".repeat(99);
/** Far more than a pipe holds (64 KiB by default). */
const LINES = 20_000;

describe.each([
  ["a blocking pipe", constants.O_RDWR],
  ["a non-blocking pipe", constants.O_RDWR | constants.O_NONBLOCK],
])("%s nobody reads", (_, flags) => {
  test("lines and flushes return; the writer says it is backed up; close gives the rest up", async () => {
    // Read and write ends in one fd (close() closes it), never read: the pipe fills and stays full.
    const w = new Writer(openSync(fifo, flags), "the fifo");
    for (let i = 0; i < LINES; i++) w.line(LINE);
    w.flush();
    expect(w.backedUp(0)).toBe(true);
    expect(w.closed).toBe(false);
    const lost = await w.close();
    expect(lost).toBeGreaterThan(LINES * 100 - (1 << 20)); // all but what the pipe took
    expect(lost).toBeLessThan(LINES * 100);
  });
});

test("close waits for a reader that comes late and takes everything", async () => {
  const out = `${dir}/out`;
  // The reader starts after 0.3 s (less than the stall close() gives up after).
  const reader = Bun.spawn(["sh", "-c", `sleep 0.3; cat "${fifo}" > "${out}"`]);
  const w = new Writer(openSync(fifo, constants.O_RDWR), "the fifo");
  for (let i = 0; i < LINES; i++) w.line(LINE);
  expect(await w.close()).toBe(0); // it closes the fd: the reader sees the end
  await reader.exited;
  expect(readFileSync(out, "utf8")).toBe(`${LINE}\n`.repeat(LINES));
});

test("a signal while close waits for a slow reader ends the wait at once, and says so", async () => {
  // A reader that keeps taking 4 KiB every 50 ms: close() alone would wait about 25 s for the 2 MB.
  const reader = Bun.spawn(["sh", "-c", `while dd bs=4096 count=1 status=none of=/dev/null; do sleep 0.05; done < "${fifo}"`]);
  const w = new Writer(openSync(fifo, constants.O_RDWR), "the fifo");
  for (let i = 0; i < LINES; i++) w.line(LINE);
  let signalled = false;
  setTimeout(() => (signalled = true), 300);
  const lost = await w.close(() => signalled);
  expect(lost).toBeGreaterThan(0); // the reader was still taking them
  expect(w.interrupted).toBe(true);
  expect(unwrittenNote("the fifo", w, lost)).toMatch(/^the fifo: its last \d+ KiB were not written \(interrupted while its reader was still taking them\)$/);
  reader.kill();
  await reader.exited;
});

test("a reader that closes the pipe is seen without a write, and the writer closes", async () => {
  const reader = Bun.spawn(["sh", "-c", `exec 0< "${fifo}"; sleep 0.2`]); // holds the pipe open 0.2 s, reads nothing
  const w = new Writer(openSync(fifo, constants.O_WRONLY), "the fifo");
  expect(w.readerGone()).toBe(false);
  await reader.exited;
  await Bun.sleep(150); // past the writer's look interval
  expect(w.readerGone()).toBe(true);
  expect(w.closed).toBe(true);
  expect(w.failure).toBeUndefined(); // gone, not failed: the run stops with "output closed"
});
