// BPF programs loaded in the kernel, for tests that check nothing of ours stays behind.
import { $ } from "bun";

/** Loaded programs whose name matches (bpftool). */
export async function loadedPrograms(name: RegExp): Promise<{ id: number; name?: string }[]> {
  const progs = JSON.parse(await $`bpftool -j prog show`.text()) as { id: number; name?: string }[];
  return progs.filter((p) => name.test(p.name ?? ""));
}
