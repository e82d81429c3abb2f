// Boots a real distribution kernel (Debian's, Ubuntu's) under QEMU and runs one shell command in it.
//
// The pattern is cilium/ebpf's vimto: the host's root file system is shared
// read-only into the VM over virtio 9p, and the command runs chrooted into it,
// so the VM runs the very dist/skbtrail, bun, nft and test files of the host.
// A tiny busybox initramfs loads the 9p and overlay modules, makes the share
// writable with an overlay on tmpfs (nothing reaches the host), puts the
// kernel's own modules at /lib/modules, and powers off when the command ends. The command's output
// comes back over the serial console between two marker lines.
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { $ } from "bun";
import { CACHE, type VmKernel } from "./kernels";

const BEGIN = "=====skbtrail-vm-begin=====";
const END = /=====skbtrail-vm-exit=(\d+)=====/;

export interface VmResult {
  exitCode: number;
  /** What the command printed (stdout and stderr together). */
  output: string;
  /** Everything the console printed, for diagnosing a VM that did not finish. */
  console: string;
  seconds: number;
}

export interface VmOptions {
  /** Working directory inside the VM (a host path, seen read-only). */
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** A file the console is appended to as it comes: a VM that hangs shows how far it got. */
  consoleFile?: string;
}

function modulesDir(k: VmKernel): string {
  return `${k.root}/lib/modules/${k.version}`;
}

/** insmod order for the 9p share, from the package's own module dependencies. */
async function shareModules(k: VmKernel): Promise<string[]> {
  const text = await $`modprobe -d ${k.root} -S ${k.version} --show-depends -a virtio_pci 9pnet_virtio 9p overlay`.quiet().text();
  return [...new Set([...text.matchAll(/^insmod (\S+)/gm)].map((m) => m[1]!))];
}

async function initramfs(k: VmKernel): Promise<string> {
  const file = `${CACHE}/${k.release}/initrd-${k.version}.cpio`;
  if (await Bun.file(file).exists()) return file;
  const dir = mkdtempSync(`${CACHE}/initrd-`);
  try {
    for (const d of ["bin", "dev", "proc", "sys", "host", "modules"]) mkdirSync(`${dir}/${d}`);
    await $`cp /bin/busybox ${dir}/bin/busybox`.quiet();
    const order: string[] = [];
    for (const [i, ko] of (await shareModules(k)).entries()) {
      const name = `${String(i).padStart(2, "0")}.ko`;
      if (ko.endsWith(".xz")) await $`xz -dc ${ko} > ${dir}/modules/${name}`.quiet();
      else if (ko.endsWith(".zst")) await $`zstd -qdc ${ko} > ${dir}/modules/${name}`.quiet();
      else await $`cp ${ko} ${dir}/modules/${name}`.quiet();
      order.push(name);
    }
    writeFileSync(`${dir}/init`, INIT.replaceAll("@VERSION@", k.version).replaceAll("@MODULES@", modulesDir(k)), { mode: 0o755 });
    await $`cd ${dir} && find . | cpio -o -H newc --quiet > ${file}.tmp && mv ${file}.tmp ${file}`.quiet();
    return file;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// PID 1 of the VM. The command to run is a script on the host, named on the
// kernel command line (skbtrail.run=PATH).
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod $m; done
run=$(sed -n 's/.*skbtrail\\.run=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mkdir -p /lower /rw
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower || { echo "9p mount failed"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs rw /rw
mkdir /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /host || { echo "overlay mount failed"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs tmp /host/tmp
mount -t tmpfs run /host/run
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/sys/fs/bpf /host/sys/kernel/tracing /host/lib/modules/@VERSION@
mount -t devpts devpts /host/dev/pts
mount -t bpf bpf /host/sys/fs/bpf
mount -t tracefs tracefs /host/sys/kernel/tracing
mount --bind /host@MODULES@ /host/lib/modules/@VERSION@
# The kernel loads modules on demand (nft, veth) through this helper, which
# would otherwise look in the initramfs.
printf '#!/bin/sh\nexec /bin/chroot /host /sbin/modprobe "$@"\n' > /modprobe
chmod +x /modprobe
echo /modprobe > /proc/sys/kernel/modprobe
echo "${BEGIN}"
chroot /host /bin/bash "$run" 2>&1
echo "=====skbtrail-vm-exit=$?====="
echo o > /proc/sysrq-trigger
sleep 10
`;

/** Runs COMMAND (bash) as root in a VM booted from kernel K. */
export async function runInVm(k: VmKernel, command: string, opts: VmOptions = {}): Promise<VmResult> {
  const initrd = await initramfs(k);
  mkdirSync(`${CACHE}/runs`, { recursive: true });
  const runDir = mkdtempSync(`${CACHE}/runs/run-`);
  const env = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/tmp", TERM: "dumb", ...opts.env };
  const script = [
    "set -e",
    ...Object.entries(env).map(([key, v]) => `export ${key}=${shellQuote(v)}`),
    "ip link set lo up",
    `cd ${shellQuote(opts.cwd ?? process.cwd())}`,
    "set +e",
    command,
  ].join("\n");
  writeFileSync(`${runDir}/run.sh`, `${script}\n`);
  // Software emulation unless SKBTRAIL_VM_ACCEL=kvm: nested KVM hangs on these machines.
  // One emulator thread for both vCPUs (see tests/README.md); SKBTRAIL_VM_ACCEL=tcg-multi
  // gives each vCPU its own, as QEMU does by default, for benchmarks where the reader
  // must run beside the traffic as it would on a real 2-CPU machine.
  const accels: Record<string, string[]> = {
    tcg: ["-accel", "tcg,thread=single", "-cpu", "max"],
    "tcg-multi": ["-accel", "tcg,thread=multi", "-cpu", "max"],
    kvm: ["-accel", "kvm"],
  };
  const accelArgs = accels[process.env.SKBTRAIL_VM_ACCEL ?? "tcg"];
  if (!accelArgs) throw new Error(`SKBTRAIL_VM_ACCEL=${process.env.SKBTRAIL_VM_ACCEL}: use one of ${Object.keys(accels).join(", ")}`);
  const started = performance.now();
  const qemu = Bun.spawn(
    [
      "qemu-system-x86_64",
      ...accelArgs,
      ...["-m", "4096", "-smp", "2", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"],
      ...["-kernel", k.vmlinuz, "-initrd", initrd],
      ...["-append", `console=ttyS0 quiet loglevel=1 panic=-1 skbtrail.run=${runDir}/run.sh`],
      ...["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"],
    ],
    { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
  );
  const timeout = setTimeout(() => qemu.kill("SIGKILL"), opts.timeoutMs ?? 600_000);
  try {
    const [out, err] = await Promise.all([readConsole(qemu.stdout, opts.consoleFile), new Response(qemu.stderr).text(), qemu.exited]);
    const consoleText = out.replaceAll("\r", "") + err;
    const body = consoleText.split(BEGIN)[1] ?? "";
    const exit = END.exec(body);
    return {
      exitCode: exit ? Number(exit[1]) : -1,
      output: exit ? body.slice(0, exit.index).replace(/^\n/, "") : body,
      console: consoleText,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    clearTimeout(timeout);
    rmSync(runDir, { recursive: true, force: true });
  }
}

async function readConsole(stream: ReadableStream<Uint8Array>, file: string | undefined): Promise<string> {
  if (file) writeFileSync(file, "");
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    if (file) appendFileSync(file, chunk);
    text += decoder.decode(chunk, { stream: true });
  }
  return text + decoder.decode();
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

