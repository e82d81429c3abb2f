// Detaching fentry and kprobe links waits for RCU grace periods: seconds
// for a hundred hooks. So at exit, after all output is written, copies of
// skbtrail in their own process groups inherit the links' file descriptors
// and close them in the background; the user's prompt returns at once and
// nothing stays attached once they are done. (The links are fd-owned: if a
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
//
// The copy starts closing only once the run has exited. The run still holds
// references (its own link fds, and each kprobe's perf event, which its link
// keeps): a copy quicker than the run's exit left the last ones to the run,
// whose exit then detached in the kernel while the prompt waited (6.1 under
// emulation: 6-24 s, perf_release -> unregister_kprobe -> synchronize_rcu).
import { openSync } from "node:fs";
import { close, flock, getppid, LOCK_EX, LOCK_SH, LOCK_UN, pidfdOpen, Poller } from "../../ffi/libc";

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

/**
 * Background copies that share the closes out. A kprobe's detach waits for
 * RCU grace periods outside the kernel's locks, so closes in parallel share
 * them (fentry and kprobe.multi detaches serialize on ftrace_lock: no gain,
 * no harm).
 */
const DETACH_COPIES = 4;

/**
 * Starts background copies with their share of `fds` as fds 3, 4, …; a share
 * whose copy cannot start goes to the next one. Returns why some fds were
 * left with the caller (who then closes them itself, slowly), or undefined.
 */
export function handOff(fds: number[]): string | undefined {
  if (!fds.length) return undefined;
  // Compiled, the executable is skbtrail itself; from source, bun runs main.ts.
  const self = Bun.main.endsWith(".ts") ? [process.execPath, Bun.main] : [process.execPath];
  const copies = Math.min(DETACH_COPIES, fds.length);
  const shares = Array.from({ length: copies }, (_, i) => fds.filter((_, j) => j % copies === i));
  let carried: number[] = [];
  let why: string | undefined;
  for (const share of shares) {
    const mine = [...carried, ...share];
    try {
      const child = Bun.spawn([...self, REAP_COMMAND, String(mine.length), String(process.pid)], {
        stdio: ["ignore", "ignore", "ignore", ...mine],
        detached: true,
      });
      child.unref();
      carried = [];
    } catch (e) {
      carried = mine;
      why = (e as Error).message;
    }
  }
  return carried.length ? `no background copy could start (${why})` : undefined;
}

/** How long a copy waits for the run that started it to exit, at most. */
const PARENT_EXIT_WAIT_MS = 30_000;

/** Returns once `parent` has exited (this copy is then reparented), or after PARENT_EXIT_WAIT_MS. */
function waitForParentExit(parent: number): void {
  if (getppid() !== parent) return;
  const pidfd = pidfdOpen(parent); // readable once it has exited
  if (pidfd >= 0) {
    const poller = new Poller(pidfd);
    poller.wait(PARENT_EXIT_WAIT_MS);
    poller.close();
    close(pidfd);
    return;
  }
  // No pidfd_open (before 5.3): look every 2 ms.
  for (const until = performance.now() + PARENT_EXIT_WAIT_MS; getppid() === parent && performance.now() < until; ) Bun.sleepSync(2);
}

/** In the background copy: once `parent` has exited, close the inherited link fds, each detach in turn, none while a run starts. */
export function detachInherited(count: number, parent: number): void {
  waitForParentExit(parent);
  const lock = openLock();
  for (let fd = 3; fd < 3 + count; fd++) {
    // Not held while closing: a starting run waits for one close at most.
    if (lock !== undefined && flock(lock, LOCK_EX)) flock(lock, LOCK_UN);
    close(fd);
  }
}
