// A tiny server for test traffic, run inside a namespace:
//   bun tests/lib/serve.ts udp|tcp PORT SECONDS
// It echoes UDP datagrams, answers TCP with "ok", and exits after SECONDS.
export {};
const [proto, port, seconds] = process.argv.slice(2);
if ((proto !== "udp" && proto !== "tcp") || !port) {
  console.error("usage: serve.ts udp|tcp PORT [SECONDS]");
  process.exit(2);
}
if (proto === "udp") {
  await Bun.udpSocket({
    port: Number(port),
    hostname: "::",
    socket: {
      data(sock, data, peerPort, peerAddr) {
        sock.send(data, peerPort, peerAddr);
      },
    },
  });
} else {
  Bun.listen({
    hostname: "::",
    port: Number(port),
    socket: {
      data(s) {
        s.write("ok");
        s.end();
      },
    },
  });
}
console.log("listening");
await Bun.sleep(Number(seconds ?? 10) * 1000);
process.exit(0);
