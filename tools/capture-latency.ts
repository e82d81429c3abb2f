// Records real latency_event records (--latency) from the kernel as byte
// fixtures for the decoder's unit tests (tests/unit/latency.test.ts): the
// tracepoints of a default trace on this kernel, every one a matcher, for a
// UDP datagram to a closed port between two namespaces (measured from its
// first hook to its drop) and the same with --latency-free. Run as root
// after changing bpf/include/events.h, and commit the result:
//   bun run build.ts --no-exe && bun tools/capture-latency.ts
import { writeFileSync } from "node:fs";
import { event_kind, hook_setting } from "../src/abi/layout.generated";
import { Attachments, attachPlan } from "../src/bpf/attach";
import { parseAddr } from "../src/cli/values";
import { Session } from "../src/bpf/session";
import { prepareKernel } from "../src/kernel/environment";
import { plannedPrograms } from "../src/plan/plan";
import { TwoHosts } from "../tests/lib/netns";
import { drainRecords, tracepointDefaultPlan } from "./capture";

const SEND = `${import.meta.dir}/../tests/lib/send.ts`;
const net = await TwoHosts.create("latcap", 69);
const kernel = await prepareKernel(false);
const plan = tracepointDefaultPlan(kernel);
const fixtures: Record<string, string> = {};

for (const [name, countFree] of [["udp_drop", false], ["udp_drop_free_counted", true]] as const) {
  const session = Session.open(kernel.object("tracer"));
  const attachments = new Attachments();
  try {
    session.configure(
      { filter: { addr: parseAddr("--addr", net.b.ip4) }, wakeupBytes: 1, hookSettings: true, latency: { minNs: 0, countFree, summary: false, customEnd: false } },
      1 << 20,
    );
    session.load(plannedPrograms(plan));
    session.setHookSettings(new Map(plan.hooks.map((h) => [BigInt(h.kind === "tracepoint" ? h.spec.id : 0), hook_setting.SETTING_MATCH])));
    session.attach(() => attachPlan(session.obj, plan, attachments));
    await net.a.ns.sh(`bun ${SEND} udp ${net.b.ip4} 7009 --sport 5009`);
    await Bun.sleep(300);
    await drainRecords(session, [event_kind.EVENT_LATENCY], (hex) => (fixtures[name] ??= hex));
  } finally {
    attachments.destroy();
    session.close();
  }
}
await net.destroy();

writeFileSync(`${import.meta.dir}/../tests/fixtures/latency.json`, `${JSON.stringify({ kernel: (await Bun.file("/proc/sys/kernel/osrelease").text()).trim(), ...fixtures }, null, 2)}\n`);
console.log(`captured ${Object.keys(fixtures).join(", ")}`);
