// deploy/: the systemd unit, the DaemonSet and the Grafana dashboard parse,
// pass only real flags of the binary (src/cli/flags.ts) with values its
// parser accepts, and the dashboard asks for metrics skbtrail exposes.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { args } from "../../src/cli/flags";
import { parseCommandLine } from "../../src/cli/parse";

const DEPLOY = `${import.meta.dir}/../../deploy`;
const read = (name: string) => readFileSync(`${DEPLOY}/${name}`, "utf8");

/** Every spelling of the binary's flags: --long and -a aliases. */
const FLAGS = new Set(Object.entries(args).flatMap(([name, def]) => [`--${name}`, ...("alias" in def && def.alias ? [`-${def.alias}`] : [])]));

/** The flags of an argument list must all exist, and the whole must parse as a --monitor run. */
function expectRealFlags(argv: string[]): void {
  const flags = argv.filter((a) => a.startsWith("-")).map((a) => a.split("=")[0]!);
  expect(flags.length).toBeGreaterThan(0);
  for (const f of flags) expect(FLAGS.has(f) ? f : `${f} is not a flag of skbtrail`).toBe(f);
  const command = parseCommandLine(argv);
  expect(command.kind).toBe("run");
  expect(command.kind === "run" && command.options.mode).toBe("monitor");
}

/** A systemd unit's [Section] Key=Value lines (comments and blank lines left out). */
function unitKeys(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let section = "";
  for (const line of text.split("\n").map((l) => l.trim())) {
    if (!line || line.startsWith("#")) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) section = header[1]!;
    else {
      const eq = line.indexOf("=");
      expect(eq > 0 ? line : `not Key=Value in [${section}]: ${line}`).toBe(line);
      const key = `${section}.${line.slice(0, eq)}`;
      keys.set(key, [...(keys.get(key) ?? []), line.slice(eq + 1)]);
    }
  }
  return keys;
}

describe("deploy/", () => {
  test("systemd unit: real flags, hardened, only BPF tracing's capabilities", () => {
    const unit = unitKeys(read("skbtrail.service"));
    const [exec] = unit.get("Service.ExecStart")!;
    const [binary, ...argv] = exec!.split(/\s+/);
    expect(binary).toBe("/usr/local/bin/skbtrail");
    expectRealFlags(argv);
    // Metrics on localhost only, unless the operator says otherwise.
    expect(argv[argv.indexOf("--metrics") + 1]).toMatch(/^127\.0\.0\.1:\d+$/);
    const caps = unit.get("Service.CapabilityBoundingSet")![0]!.split(/\s+/);
    expect(caps).toContain("CAP_BPF");
    expect(caps).toContain("CAP_PERFMON");
    expect(caps).not.toContain("CAP_NET_ADMIN");
    expect(unit.get("Service.AmbientCapabilities")![0]!.split(/\s+/).sort()).toEqual([...caps].sort());
    expect(unit.get("Service.ProtectSystem")).toEqual(["strict"]);
    expect(unit.get("Service.NoNewPrivileges")).toEqual(["yes"]);
    expect(unit.get("Service.KillSignal")).toEqual(["SIGTERM"]);
    expect(unit.get("Install.WantedBy")).toEqual(["multi-user.target"]);
  });

  test("DaemonSet: real flags, host network and PID, the kernel's BTF and tracefs, the metrics port scraped", () => {
    const docs = yaml.loadAll(read("daemonset.yaml")) as any[];
    const ds = docs.find((d) => d.kind === "DaemonSet");
    expect(ds.apiVersion).toBe("apps/v1");
    const pod = ds.spec.template;
    expect(ds.spec.selector.matchLabels).toEqual(pod.metadata.labels);
    expect(pod.spec.hostNetwork).toBe(true);
    expect(pod.spec.hostPID).toBe(true);
    const [container] = pod.spec.containers;
    const argv: string[] = container.args.map(String);
    expectRealFlags(argv);
    const port = Number(argv[argv.indexOf("--metrics") + 1]!.split(":").pop());
    expect(container.ports[0].containerPort).toBe(port);
    expect(pod.metadata.annotations).toMatchObject({ "prometheus.io/scrape": "true", "prometheus.io/port": String(port), "prometheus.io/path": "/metrics" });
    expect(container.securityContext.privileged).toBe(false);
    expect(container.securityContext.capabilities.drop).toEqual(["ALL"]);
    expect(container.securityContext.capabilities.add).toEqual(expect.arrayContaining(["BPF", "PERFMON"]));
    const mounts = Object.fromEntries(container.volumeMounts.map((m: any) => [m.mountPath, m.name]));
    const hostPaths = Object.fromEntries(pod.spec.volumes.filter((v: any) => v.hostPath).map((v: any) => [v.name, v.hostPath.path]));
    for (const path of ["/sys/kernel/btf", "/sys/kernel/tracing"]) expect(hostPaths[mounts[path]]).toBe(path);
  });

  test("Grafana dashboard: JSON, and every metric it queries is one skbtrail exposes", () => {
    const dash = JSON.parse(read("grafana-dashboard.json"));
    expect(dash.uid).toBeString();
    const exprs: string[] = dash.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
    expect(exprs.length).toBeGreaterThan(5);
    // The names the exposition is made with (src/modes/*): the dashboard must not ask for others.
    const source = ["monitor.ts", "metrics-server.ts"].map((f) => readFileSync(`${import.meta.dir}/../../src/modes/${f}`, "utf8")).join("\n");
    const queried = new Set(exprs.flatMap((e) => e.match(/\b(?:skbtrail|process)_[a-z_]+/g) ?? []));
    for (const name of queried) expect(source.includes(`"${name.replace(/_(bucket|sum|count)$/, "")}"`) ? name : `${name} is not exposed`).toBe(name);
    for (const name of ["skbtrail_drops_total", "skbtrail_netfilter_drops_total", "skbtrail_tcp_rtt_seconds_bucket"]) expect(queried).toContain(name);
  });
});
