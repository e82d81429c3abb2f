// Detaching fentry and kprobe links waits for RCU grace periods: seconds
// for a hundred hooks. So at exit, after all output is written, a copy of
// skbtrail in its own process group inherits the links' file descriptors
// and closes them in the background; the user's prompt returns at once and
// nothing stays attached once it is done. (The links are fd-owned: if the
// copy dies, the kernel closes its fds and detaches all the same.)
//
// A run started meanwhile must not queue behind that copy. Each fentry
// detach holds the kernel's ftrace_lock across RCU-tasks grace periods;
// reading available_filter_functions (one lock per page-sized read) and
// attaching fentry programs take the same lock, so the new run got going
// only once every old link was gone (Debian 6.1 under emulation: blocked
// 22-30 s, "begin trace..." after 36-46 s instead of 19 s, and a script
// that stopped waiting sent its traffic before the run was attached). So a
// starting run holds LOCK_FILES shared until it is attached, and the copy
// takes it exclusively, only for a moment, before each close: it pauses
// while a run starts and carries on once that run is tracing.
import { openSync } from "node:fs";
import { close, flock, LOCK_EX, LOCK_SH, LOCK_UN } from "../../ffi/libc";

/** The hidden command line of the background copy. */
export const REAP_COMMAND = "__detach";

/** Where starting runs and background copies meet (the first that can be opened). */
const LOCK_FILES = ["/run/skbtrail.lock", "/tmp/skbtrail.lock"];

function openLock(): number | undefined {
  for (const path of LOCK_FILES) {
    try {
      return openSync(path, "a", 0o600);
    } catch {
      // not writable here: try the next
    }
  }
  return undefined;
}

/** The lock this run holds while it starts, if any. */
let pausing: number | undefined;

/**
 * Pauses background detaches of earlier runs until resumeDetaches() (a crash
 * releases them too). Waits at most for one close in flight.
 */
export function pauseDetaches(): void {
  if (pausing !== undefined) return;
  const lock = openLock();
  if (lock === undefined) return;
  if (flock(lock, LOCK_SH)) pausing = lock;
  else close(lock);
}

/** This run is attached (or gave up): earlier runs' detaches go on. */
export function resumeDetaches(): void {
  if (pausing !== undefined) close(pausing); // closing the file drops the lock
  pausing = undefined;
}

/** Starts the background copy with `fds` as its fds 3, 4, …; false if it could not start. */
export function handOff(fds: number[]): boolean {
  if (!fds.length) return false;
  // Compiled, the executable is skbtrail itself; from source, bun runs main.ts.
  const self = Bun.main.endsWith(".ts") ? [process.execPath, Bun.main] : [process.execPath];
  try {
    const child = Bun.spawn([...self, REAP_COMMAND, String(fds.length)], {
      stdio: ["ignore", "ignore", "ignore", ...fds],
      detached: true,
    });
    child.unref();
    return true;
  } catch {
    return false;
  }
}

/** In the background copy: close the inherited link fds, each detach in turn, none while a run starts. */
export function detachInherited(count: number): void {
  const lock = openLock();
  for (let fd = 3; fd < 3 + count; fd++) {
    // Not held while closing: a starting run waits for one close at most.
    if (lock !== undefined && flock(lock, LOCK_EX)) flock(lock, LOCK_UN);
    close(fd);
  }
}
