// The sending side of test traffic, run inside a namespace (tests call it
// through Netns.udp()/Netns.tcp() in netns.ts):
//   bun tests/lib/send.ts udp DADDR DPORT [--sport N] [--from ADDR] [--size BYTES] [--count N] [--reply] [--wait] [--connect]
//   bun tests/lib/send.ts udp DADDR DPORT SPORT [BYTES]     (the same, as tools/ call it)
//   bun tests/lib/send.ts tcp DADDR DPORT [--message TEXT] [--connect-ms MS] [--wait]
// udp: COUNT datagrams of BYTES from ADDR:N (any address, any port by
// default); --reply waits for one datagram back (exit 1 without it); --wait
// sends only after a line arrives on stdin, so a test can learn the sender's
// pid first; --connect connects the socket first (the kernel then reports
// ICMP errors to it: ECONNREFUSED). tcp: connects (exit 1 when refused or
// unanswered, giving up after --connect-ms, 5 s scaled by default); with
// --message, writes it and reads until the server closes; --wait prints
// "connected" and writes only after a line arrives on stdin, so a test can
// change the firewall of a connection already open.
import { parseArgs } from "node:util";
import { scaled } from "./skbtrail";

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sport: { type: "string" },
    from: { type: "string" },
    size: { type: "string" },
    count: { type: "string", default: "1" },
    reply: { type: "boolean", default: false },
    wait: { type: "boolean", default: false },
    connect: { type: "boolean", default: false },
    message: { type: "string" },
    "connect-ms": { type: "string" },
  },
});
const [proto, addr, dport, sport = opt.sport, size = opt.size ?? "16"] = positionals;
if ((proto !== "udp" && proto !== "tcp") || !addr || !(Number(dport) > 0)) {
  console.error("usage: send.ts udp DADDR DPORT [--sport N] [--from ADDR] [--size BYTES] [--count N] [--reply] [--wait] | tcp DADDR DPORT [--message TEXT] [--connect-ms MS] [--wait]");
  process.exit(2);
}
/** How long an answer may take (scaled for VMs). */
const ANSWER_MS = scaled(5_000);

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms))]);
}

if (proto === "udp") {
  let answered: () => void = () => {};
  const answer = new Promise<void>((resolve) => (answered = resolve));
  let drained: () => void = () => {};
  const socket = await Bun.udpSocket({
    port: sport ? Number(sport) : 0,
    hostname: opt.from ?? (addr.includes(":") ? "::" : "0.0.0.0"),
    ...(opt.connect ? { connect: { hostname: addr, port: Number(dport) } } : {}),
    socket: {
      data: () => answered(),
      drain: () => drained(),
      // An ICMP port unreachable coming back is expected: ignore socket errors.
      error() {},
    },
  });
  if (opt.wait) for await (const _ of console) break;
  const payload = Buffer.alloc(Number(size), "x");
  const sendOne = (): boolean => {
    try {
      return opt.connect ? (socket as unknown as { send(d: Buffer): boolean }).send(payload) : socket.send(payload, Number(dport), addr);
    } catch {
      // An earlier datagram's ICMP error, reported here instead: send again.
      return opt.connect ? (socket as unknown as { send(d: Buffer): boolean }).send(payload) : socket.send(payload, Number(dport), addr);
    }
  };
  for (let i = 0; i < Number(opt.count); i++) {
    // false: the socket would block; send again once it drains.
    while (!sendOne()) await new Promise<void>((r) => (drained = r));
  }
  if (opt.reply) {
    try {
      await within(answer, ANSWER_MS, "reply");
    } catch (e) {
      console.error(`send.ts: ${(e as Error).message}`);
      process.exit(1);
    }
  }
  socket.close();
  process.exit(0);
}

// tcp
let closed: () => void = () => {};
const done = new Promise<void>((resolve) => (closed = resolve));
try {
  const socket = await within(
    Bun.connect({
      hostname: addr,
      port: Number(dport),
      socket: { data() {}, close: () => closed(), end: () => closed(), error: () => closed() },
    }),
    opt["connect-ms"] !== undefined ? Number(opt["connect-ms"]) : ANSWER_MS,
    "connection",
  );
  if (opt.wait) {
    console.log("connected");
    for await (const _ of console) break;
  }
  if (opt.message !== undefined) {
    socket.write(opt.message);
    await within(done, ANSWER_MS, "answer");
  }
  socket.end();
  process.exit(0);
} catch (e) {
  console.error(`send.ts: ${(e as Error).message}`);
  process.exit(1);
}
