#!/usr/bin/env bash
# A stand-in for a pipeline's network tests (see github-actions.yml): it talks
# to a UDP service and probes the discard port, which nothing listens on (an
# expected drop, allowed by expected-drops.yaml). SMOKE_BREAK=1 adds a query to
# a service that is not there: an unexpected drop, which fails the run.
set -euo pipefail
ip link set lo up 2>/dev/null || true

# the service under test: an echo on UDP 5353 (it says "listening" once bound)
exec 3< <(exec bun -e '
  const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 5353, socket: { data(sock, buf, port, addr) { sock.send(buf, port, addr); } } });
  console.log("listening");
  await new Promise((r) => process.on("SIGTERM", r));
  s.close();
  process.exit(0);')
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
read -r -u 3 ready
[ "$ready" = listening ] || { echo "smoke: the echo service did not start"; exit 1; }

answer=$(bun -e '
  let done = (_: string) => {};
  const reply = new Promise<string>((r) => (done = r));
  const s = await Bun.udpSocket({ socket: { data(_s, buf) { done(buf.toString()); } } });
  setTimeout(() => done("no answer within 3 s"), 3000);
  s.send("ping", 5353, "127.0.0.1");
  console.log(await reply);
  process.exit(0);')
[ "$answer" = ping ] || { echo "smoke: the echo service did not answer ($answer)"; exit 1; }
echo "smoke: echo service answers"

# the health probe of the discard port (nothing listens: dropped, expected)
printf probe > /dev/udp/127.0.0.1/9

if [ "${SMOKE_BREAK:-}" = 1 ]; then
  printf query > /dev/udp/127.0.0.1/5354   # a typo'd port: nothing there
fi
echo "smoke: done"
