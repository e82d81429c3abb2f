// The listening side of test traffic, run inside a namespace (tests start it
// through serve() in netns.ts, which waits for "listening" and kills it when
// the test ends):
//   bun tests/lib/serve.ts udp PORT          echoes each datagram back
//   bun tests/lib/serve.ts tcp PORT          answers each connection's first data with "ok", then closes
//   bun tests/lib/serve.ts udp-full ADDR PORT  a UDP socket with the smallest receive buffer that is never read
//   bun tests/lib/serve.ts tcp-full ADDR PORT  a TCP listener with backlog 0 that never accepts: one connection fills its queue
//   bun tests/lib/serve.ts udp-filtered ADDR PORT  a UDP socket whose filter (SO_ATTACH_FILTER) rejects every datagram
//   bun tests/lib/serve.ts packet            an AF_PACKET socket for every protocol (a packet tap, as tcpdump opens)
//   bun tests/lib/serve.ts packet-read       the same, reading every packet as it comes (blocking: it only reads)
// It lives until it is killed. Bun's socket API has no receive-buffer size,
// no listen backlog, no socket filter and no packet sockets: those are opened
// through libc with bun:ffi.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { writeSync } from "node:fs";

const [mode, ...args] = process.argv.slice(2);

/** libc's socket calls, for the sockets Bun's API cannot open. */
function libc() {
  const { symbols } = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  });
  return symbols;
}

const AF_INET = 2;
const AF_PACKET = 17;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_RAW = 3;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_ATTACH_FILTER = 26;
const ETH_P_ALL_BE = 0x0300; // htons(ETH_P_ALL)

function fail(what: string): never {
  console.error(`serve.ts: ${what} failed`);
  process.exit(1);
}

switch (mode) {
  case "udp":
    await Bun.udpSocket({
      port: Number(args[0]),
      hostname: "::",
      socket: {
        data(sock, data, peerPort, peerAddr) {
          sock.send(data, peerPort, peerAddr);
        },
      },
    });
    break;
  case "tcp":
    Bun.listen({
      hostname: "::",
      port: Number(args[0]),
      socket: {
        data(s) {
          s.write("ok");
          s.end();
        },
      },
    });
    break;
  case "udp-full":
  case "udp-filtered":
  case "tcp-full": {
    const [addr, port] = args;
    if (!addr || !/^\d+\.\d+\.\d+\.\d+$/.test(addr) || !port) fail(`${mode} needs an IPv4 ADDR and a PORT:`);
    const c = libc();
    const fd = c.socket(AF_INET, mode === "tcp-full" ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0) fail("socket(AF_INET)");
    // The kernel raises 1 to its minimum (a few KiB): a handful of datagrams fill it.
    if (mode === "udp-full" && c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, ptr(new Int32Array([1])), 4) !== 0) fail("setsockopt(SO_RCVBUF)");
    if (mode === "udp-filtered") {
      // Classic BPF, one instruction: BPF_RET|BPF_K 0 (keep 0 bytes: reject). struct sock_fprog: length, then the pointer.
      const insn = new Uint8Array(8);
      new DataView(insn.buffer).setUint16(0, 0x06, true);
      const fprog = new BigUint64Array(2);
      fprog[0] = 1n;
      fprog[1] = BigInt(ptr(insn));
      if (c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, ptr(fprog), 16) !== 0) fail("setsockopt(SO_ATTACH_FILTER)");
    }
    const sin = new Uint8Array(16); // struct sockaddr_in
    new DataView(sin.buffer).setUint16(0, AF_INET, true);
    new DataView(sin.buffer).setUint16(2, Number(port), false);
    sin.set(addr.split(".").map(Number), 4);
    if (c.bind(fd, ptr(sin), sin.length) !== 0) fail(`bind(${addr}:${port})`);
    // Backlog 0: the queue holds one connection (full means more than the backlog); never accepted.
    if (mode === "tcp-full" && c.listen(fd, 0) !== 0) fail("listen");
    break;
  }
  case "packet":
    if (libc().socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE) < 0) fail("socket(AF_PACKET)");
    break;
  case "packet-read": {
    const c = libc();
    const fd = c.socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE);
    if (fd < 0) fail("socket(AF_PACKET)");
    // Blocking reads never return to the event loop: say so synchronously first.
    writeSync(1, "listening\n");
    const buf = new Uint8Array(65536);
    for (;;) if (c.recv(fd, ptr(buf), buf.length, 0) < 0) fail("recv");
  }
  default:
    console.error("usage: serve.ts udp PORT | tcp PORT | udp-full ADDR PORT | udp-filtered ADDR PORT | tcp-full ADDR PORT | packet | packet-read");
    process.exit(2);
}
console.log("listening");
// Until killed: a timer keeps the event loop (and the sockets) alive.
setInterval(() => {}, 1 << 30);
