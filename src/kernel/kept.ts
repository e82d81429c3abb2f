// Facts about the running kernel kept in /run (a tmpfs: gone at reboot),
// each under a key naming what it depends on besides the boot. Probing and
// resolving cost seconds under emulation and repeat on every run: a test
// suite or a script starts skbtrail hundreds of times per boot.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

/** SKBTRAIL_STATE_DIR moves it (the unit tests keep theirs apart from real runs'). */
const dir = () => process.env.SKBTRAIL_STATE_DIR || "/run/skbtrail";

export function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

/** What `keep` stored under this name, if it was stored under this key in this boot. */
export function readKept<T>(name: string, key: string): T | undefined {
  try {
    const kept = JSON.parse(readFileSync(`${dir()}/${name}.json`, "utf8")) as { key: string; value: T };
    return kept.key === `${bootId()}\n${key}` ? kept.value : undefined;
  } catch {
    return undefined;
  }
}

export function keep(name: string, key: string, value: unknown): void {
  try {
    mkdirSync(dir(), { recursive: true, mode: 0o700 });
    writeFileSync(`${dir()}/${name}.json`, JSON.stringify({ key: `${bootId()}\n${key}`, value }), { mode: 0o600 });
  } catch {
    // a read-only /run: work it out again next time
  }
}

export function forgetKept(name: string): void {
  rmSync(`${dir()}/${name}.json`, { force: true });
}
