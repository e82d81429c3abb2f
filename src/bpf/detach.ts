// Detaching fentry and kprobe links waits for RCU grace periods: seconds
// for a hundred hooks. So at exit, after all output is written, a copy of
// skbtrail in its own process group inherits the links' file descriptors
// and closes them in the background; the user's prompt returns at once and
// nothing stays attached once it is done. (The links are fd-owned: if the
// copy dies, the kernel closes its fds and detaches all the same.)
import { close } from "../../ffi/libc";

/** The hidden command line of the background copy. */
export const REAP_COMMAND = "__detach";

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

/** In the background copy: close the inherited link fds, each detach in turn. */
export function detachInherited(count: number): void {
  for (let fd = 3; fd < 3 + count; fd++) close(fd);
}
