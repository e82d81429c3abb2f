// Records real hook_event records from the kernel as byte fixtures for the
// lifecycle grouping's unit tests (tests/unit/lifecycle.test.ts): the
// tracepoints of a default trace on this kernel, for a ping between two
// namespaces (request and reply) and a UDP datagram to a closed port. Run
// as root after changing bpf/include/events.h, and commit the result:
//   bun run build.ts --no-exe && bun tools/capture-lifecycles.ts
import { writeFileSync } from "node:fs";
import { event_kind } from "../src/abi/layout.generated";
import { Attachments, attachPlan } from "../src/bpf/attach";
import { parseAddr } from "../src/cli/values";
import { Session } from "../src/bpf/session";
import { prepareKernel } from "../src/kernel/environment";
import { plannedPrograms } from "../src/plan/plan";
import { TwoHosts } from "../tests/lib/netns";
import { drainRecords, tracepointDefaultPlan } from "./capture";

const SEND = `${import.meta.dir}/../tests/lib/send.ts`;
const net = await TwoHosts.create("lcap", 68);
const kernel = await prepareKernel(false);
const plan = tracepointDefaultPlan(kernel);
const session = Session.open(kernel.object("tracer"));
const attachments = new Attachments();
const records: string[] = [];

try {
  session.configure({ filter: { addr: parseAddr("--addr", net.b.ip4) }, reasonValues: [], dropStack: false, wakeupBytes: 1 }, 1 << 20);
  session.load(plannedPrograms(plan));
  session.attach(() => attachPlan(session.obj, plan, attachments));
  await net.a.ns.try(`ping -c1 -W1 ${net.b.ip4}`);
  await net.a.ns.sh(`bun ${SEND} udp ${net.b.ip4} 7009 5009`);
  await Bun.sleep(300); // the reply's free and the slab frees come after
  await drainRecords(session, [event_kind.EVENT_HOOK, event_kind.EVENT_NF], (hex) => records.push(hex));
} finally {
  attachments.destroy();
  session.close();
  await net.destroy();
}

writeFileSync(`${import.meta.dir}/../tests/fixtures/lifecycles.json`, `${JSON.stringify({ kernel: (await Bun.file("/proc/sys/kernel/osrelease").text()).trim(), records }, null, 2)}\n`);
console.log(`captured ${records.length} hook records`);
