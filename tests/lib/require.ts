// Kernel tests need root and a BTF kernel. Where those are missing they are
// skipped with a reason printed, never passed silently; SKBTRAIL_REQUIRE_KERNEL=1
// (set by CI) turns a missing prerequisite into a failure instead.
import { existsSync } from "node:fs";

export function requireKernelTests(): boolean {
  const missing =
    process.getuid?.() !== 0 ? "not running as root" : !existsSync("/sys/kernel/btf/vmlinux") ? "the kernel has no BTF" : undefined;
  if (!missing) return true;
  if (process.env.SKBTRAIL_REQUIRE_KERNEL === "1") throw new Error(`kernel tests required but ${missing}`);
  console.warn(`SKIPPED kernel tests: ${missing} (run as root on a BTF kernel)`);
  return false;
}
