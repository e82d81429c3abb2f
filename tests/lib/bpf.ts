// The BPF programs a run created, judged by their ids (never by name
// patterns over every program on the machine): a process's file
// descriptors say which programs it holds (fdinfo), and bpftool says which
// are still loaded.
import { readdirSync, readFileSync } from "node:fs";
import { $ } from "bun";
import { scaled } from "./skbtrail";

/** Ids of the BPF programs the process holds: program fds and the programs of its link fds. */
export function programIdsOf(pid: number): number[] {
  return idsOf(pid, "prog_id");
}

/** Names of the BPF maps the process holds (the kernel keeps 15 characters of each). */
export async function mapNamesOf(pid: number): Promise<string[]> {
  const maps = JSON.parse(await $`bpftool -j map show`.text()) as { id: number; name?: string }[];
  const held = new Set(idsOf(pid, "map_id"));
  return maps.filter((m) => held.has(m.id)).map((m) => m.name ?? "");
}

function idsOf(pid: number, field: "prog_id" | "map_id"): number[] {
  const ids = new Set<number>();
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+)$`, "m").exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"));
      if (m) ids.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return [...ids].sort((a, b) => a - b);
}

/** Ids of every BPF program loaded in the kernel now. */
export async function loadedProgramIds(): Promise<Set<number>> {
  const progs = JSON.parse(await $`bpftool -j prog show`.text()) as { id: number }[];
  return new Set(progs.map((p) => p.id));
}

/**
 * Waits (up to `seconds`, scaled for VMs) until none of `ids` is loaded;
 * returns those still loaded. The kernel frees a detached program after an
 * RCU grace period, and a background process may still be detaching.
 */
export async function stillLoaded(ids: number[], seconds = 5): Promise<number[]> {
  const deadline = Date.now() + scaled(seconds * 1000);
  for (;;) {
    const loaded = await loadedProgramIds();
    const left = ids.filter((id) => loaded.has(id));
    if (!left.length || Date.now() > deadline) return left;
    await Bun.sleep(100);
  }
}
