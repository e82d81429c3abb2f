// Sends test traffic with exact ports and sizes (bash's /dev/udp cannot set
// the source port). Run inside a namespace:
//   bun tests/lib/send.ts [--wait] udp DADDR DPORT [SPORT] [PAYLOAD_BYTES]
// --wait sends only after a line arrives on stdin, so a test can learn the
// sender's pid first.
export {};
const argv = process.argv.slice(2);
const wait = argv[0] === "--wait";
const [proto, addr, dport, sport, size] = wait ? argv.slice(1) : argv;
if (proto !== "udp" || !addr || !dport) {
  console.error("usage: send.ts [--wait] udp DADDR DPORT [SPORT] [PAYLOAD_BYTES]");
  process.exit(2);
}
// An ICMP port unreachable coming back is expected: ignore socket errors.
const socket = await Bun.udpSocket({
  port: sport ? Number(sport) : 0,
  hostname: addr.includes(":") ? "::" : "0.0.0.0",
  socket: { error() {} },
});
if (wait) for await (const _ of console) break;
socket.send(Buffer.alloc(size ? Number(size) : 16, "x"), Number(dport), addr);
await Bun.sleep(10);
socket.close();
