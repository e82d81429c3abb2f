// A unix socket message the kernel frees as a drop, for tests of skbs with
// no network layer. A stream connect queues one skb (owned by the new,
// not yet accepted socket) on the listener; closing the listener without
// accepting frees it with kfree_skb in unix_release_sock on every kernel
// (reason SOCKET_CLOSE where the kernel gives one). Bun's socket API accepts
// by itself, so the sockets are made through libc with bun:ffi.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;

function libc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}

/** struct sockaddr_un for `path`. */
function address(path: string): Uint8Array {
  const a = new Uint8Array(110);
  new DataView(a.buffer).setUint16(0, AF_UNIX, true);
  a.set(new TextEncoder().encode(path), 2);
  return a;
}

/**
 * Connects a unix stream socket to a listener in a temporary directory and
 * closes the listener before it accepts: the kernel drops the connection's
 * skb. The directory is removed; throws if a call fails.
 */
export function dropUnixConnection(): void {
  const c = libc();
  const dir = mkdtempSync(`${tmpdir()}/skbtrail-unix-`);
  const fds: number[] = [];
  const check = (r: number, what: string) => {
    if (r < 0) throw new Error(`unix.ts: ${what} failed`);
    return r;
  };
  try {
    const addr = address(`${dir}/listener`);
    const listener = check(c.socket(AF_UNIX, SOCK_STREAM, 0), "socket");
    fds.push(listener);
    check(c.bind(listener, ptr(addr), addr.length), "bind");
    check(c.listen(listener, 1), "listen");
    const client = check(c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0), "socket");
    fds.push(client);
    check(c.connect(client, ptr(addr), addr.length), "connect");
    c.close(fds.shift()!); // the listener, with the connection still queued
  } finally {
    for (const fd of fds) c.close(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}
