// Floods a UDP port as fast as one Bun process can send, for a bounded time:
//   bun tests/lib/flood.ts ADDR PORT SECONDS
// Run inside a test's namespace. Prints how many datagrams it sent.
export {};
const [addr, port, seconds] = process.argv.slice(2);
if (!addr || !port || !seconds || !(Number(seconds) > 0 && Number(seconds) <= 60)) {
  console.error("usage: flood.ts ADDR PORT SECONDS (at most 60)");
  process.exit(2);
}
// ICMP errors coming back (a closed port) surface as send errors: ignore them.
const socket = await Bun.udpSocket({ hostname: addr.includes(":") ? "::" : "0.0.0.0", socket: { error() {} } });
const payload = Buffer.alloc(16, "x");
const end = performance.now() + Number(seconds) * 1000;
let sent = 0;
while (performance.now() < end) {
  for (let i = 0; i < 256; i++) {
    try {
      socket.send(payload, Number(port), addr);
      sent++;
    } catch {
      // ECONNREFUSED from an earlier ICMP port unreachable
    }
  }
}
console.log(sent);
socket.close();
process.exit(0);
