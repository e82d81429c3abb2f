// Real distribution kernels for the VM tests: the newest linux-image-amd64 of a
// Debian release (and linux-image-generic of Ubuntu 24.04, the most common
// kernel between Debian's 6.1 and 6.12), found in the archive's package index,
// downloaded once and unpacked (with depmod run) into a cache outside the
// repository.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { homedir } from "node:os";
import { $ } from "bun";

export const MIRROR = process.env.SKBTRAIL_VM_MIRROR ?? "http://deb.debian.org/debian";
export const UBUNTU_MIRROR = process.env.SKBTRAIL_VM_UBUNTU_MIRROR ?? "http://archive.ubuntu.com/ubuntu";
export const CACHE = process.env.SKBTRAIL_VM_CACHE ?? `${homedir()}/.cache/skbtrail-vm`;

/** The releases the VM tests boot, oldest kernel first. */
export const RELEASES = ["bullseye", "bookworm", "noble", "trixie"] as const;
export type Release = (typeof RELEASES)[number];

/**
 * Where a release's kernel is: its archive, the index's suite, and the
 * package that depends on the newest image. Ubuntu's image keeps its modules
 * in a package of their own (linux-modules-VERSION), which it depends on.
 */
const SOURCES: Record<Release, { mirror: string; suite: string; latest: string }> = {
  bullseye: { mirror: MIRROR, suite: "bullseye", latest: "linux-image-amd64" },
  bookworm: { mirror: MIRROR, suite: "bookworm", latest: "linux-image-amd64" },
  noble: { mirror: UBUNTU_MIRROR, suite: "noble-updates", latest: "linux-image-generic" },
  trixie: { mirror: MIRROR, suite: "trixie", latest: "linux-image-amd64" },
};

export interface VmKernel {
  release: Release;
  /** uname -r inside the VM, e.g. 6.1.0-50-amd64. */
  version: string;
  vmlinuz: string;
  /** Unpacked package root: lib/modules/VERSION holds the modules, depmod'ed. */
  root: string;
}

const indexUrl = (release: Release) => `${SOURCES[release].mirror}/dists/${SOURCES[release].suite}/main/binary-amd64/Packages.xz`;

/** Package stanzas of a release's main/binary-amd64 index, by name. */
async function packageIndex(release: Release): Promise<Map<string, Record<string, string>>> {
  const text = await $`curl -fsSL --retry 3 ${indexUrl(release)} | xz -dc`.quiet().text();
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

/** Whether the release's kernel is cached, or its archive's index answers (within 30 s). */
export async function kernelReachable(release: Release): Promise<boolean> {
  if (existsSync(`${CACHE}/${release}/ready`)) return true;
  return (await $`curl -fsSI --max-time 30 ${indexUrl(release)}`.quiet().nothrow()).exitCode === 0;
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

  const { mirror, latest } = SOURCES[release];
  const index = await packageIndex(release);
  const image = /^(linux-image-[^ ,]+)/.exec(index.get(latest)?.Depends ?? "")?.[1];
  const stanza = image ? index.get(image) : undefined;
  if (!stanza?.Filename) throw new Error(`no ${latest} in ${release}'s package index at ${mirror}`);
  const modules = /(?:^|, )(linux-modules-[^ ,]+)/.exec(stanza.Depends ?? "")?.[1];
  const packages = [stanza, ...(modules ? [index.get(modules)] : [])];

  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const deb = `${dir}/package.deb`;
  for (const p of packages) {
    if (!p?.Filename) throw new Error(`no ${modules} in ${release}'s package index at ${mirror}`);
    await $`curl -fsSL --retry 3 -o ${deb} ${mirror}/${p.Filename}`.quiet();
    const actual = (await $`sha256sum ${deb}`.quiet().text()).split(" ")[0];
    if (actual !== p.SHA256) throw new Error(`${p.Filename}: sha256 ${actual} does not match the index's ${p.SHA256}`);
    await $`dpkg-deb -x ${deb} ${dir}/unpack`.quiet();
    rmSync(deb);
  }
  renameSync(`${dir}/unpack`, `${dir}/root`);
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
