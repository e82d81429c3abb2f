// Real Debian kernels for the VM tests: the newest linux-image-amd64 of a
// Debian release, found in the archive's package index, downloaded once and
// unpacked (with depmod run) into a cache outside the repository.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { homedir } from "node:os";
import { $ } from "bun";

export const MIRROR = process.env.SKBTRAIL_VM_MIRROR ?? "http://deb.debian.org/debian";
export const CACHE = process.env.SKBTRAIL_VM_CACHE ?? `${homedir()}/.cache/skbtrail-vm`;

/** The Debian releases the VM tests boot, oldest kernel first. */
export const RELEASES = ["bullseye", "bookworm", "trixie"] as const;
export type Release = (typeof RELEASES)[number];

export interface VmKernel {
  release: Release;
  /** uname -r inside the VM, e.g. 6.1.0-50-amd64. */
  version: string;
  vmlinuz: string;
  /** Unpacked package root: lib/modules/VERSION holds the modules, depmod'ed. */
  root: string;
}

/** Package stanzas of a release's main/binary-amd64 index, by name. */
async function packageIndex(release: Release): Promise<Map<string, Record<string, string>>> {
  const url = `${MIRROR}/dists/${release}/main/binary-amd64/Packages.xz`;
  const text = await $`curl -fsSL --retry 3 ${url} | xz -dc`.quiet().text();
  const index = new Map<string, Record<string, string>>();
  for (const stanza of text.split("\n\n")) {
    const fields: Record<string, string> = {};
    for (const line of stanza.split("\n")) {
      const m = /^([A-Za-z0-9-]+): (.*)$/.exec(line);
      if (m) fields[m[1]!] = m[2]!;
    }
    if (fields.Package) index.set(fields.Package, fields);
  }
  return index;
}

/** Downloads and unpacks the release's kernel unless the cache has it. */
export async function vmKernel(release: Release): Promise<VmKernel> {
  const dir = `${CACHE}/${release}`;
  const found = (): VmKernel | undefined => {
    const boot = existsSync(`${dir}/root/boot`) ? readdirSync(`${dir}/root/boot`).find((f) => f.startsWith("vmlinuz-")) : undefined;
    if (!boot || !existsSync(`${dir}/ready`)) return undefined;
    const version = boot.slice("vmlinuz-".length);
    return { release, version, vmlinuz: `${dir}/root/boot/${boot}`, root: `${dir}/root` };
  };
  const cached = found();
  if (cached) return cached;

  const index = await packageIndex(release);
  const meta = index.get("linux-image-amd64");
  const image = /^(linux-image-[^ ,]+)/.exec(meta?.Depends ?? "")?.[1];
  const stanza = image ? index.get(image) : undefined;
  if (!stanza?.Filename) throw new Error(`no linux-image-amd64 in ${release}'s package index at ${MIRROR}`);

  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const deb = `${dir}/kernel.deb`;
  await $`curl -fsSL --retry 3 -o ${deb} ${MIRROR}/${stanza.Filename}`.quiet();
  const actual = (await $`sha256sum ${deb}`.quiet().text()).split(" ")[0];
  if (actual !== stanza.SHA256) throw new Error(`${stanza.Filename}: sha256 ${actual} does not match the index's ${stanza.SHA256}`);
  await $`dpkg-deb -x ${deb} ${dir}/unpack`.quiet();
  renameSync(`${dir}/unpack`, `${dir}/root`);
  rmSync(deb);
  // Merged-/usr releases (trixie) ship usr/lib/modules; depmod wants lib/modules.
  if (!existsSync(`${dir}/root/lib/modules`)) {
    mkdirSync(`${dir}/root/lib`, { recursive: true });
    symlinkSync("../usr/lib/modules", `${dir}/root/lib/modules`);
  }
  const version = readdirSync(`${dir}/root/lib/modules`)[0]!;
  await $`depmod -b ${dir}/root ${version}`.quiet();
  await Bun.write(`${dir}/ready`, `${stanza.Filename}\n`);
  return found()!;
}
