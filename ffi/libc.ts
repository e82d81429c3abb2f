// The libc calls skbtrail needs: memory mapping, waiting on file
// descriptors, clocks and errno. Only ffi/ touches bun:ffi.
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  mmap: { args: [FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.ptr },
  munmap: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  memfd_create: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.i32 },
  epoll_create1: { args: [FFIType.i32], returns: FFIType.i32 },
  epoll_ctl: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  epoll_wait: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  clock_getres: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  vsnprintf: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  geteuid: { args: [], returns: FFIType.u32 },
  getppid: { args: [], returns: FFIType.i32 },
  sysconf: { args: [FFIType.i32], returns: FFIType.i64 },
  mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  syscall: { args: [FFIType.i64, FFIType.i64, FFIType.i64], returns: FFIType.i64 },
}).symbols;

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
const MAP_FAILED = -1;
const EPOLLIN = 1;
const POLLOUT = 4;
const POLLERR = 8;
const POLLHUP = 16;
const F_GETFL = 3;
const O_NONBLOCK = 0o4000;
const EPOLL_CTL_ADD = 1;
const EINTR = 4;
const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_MONOTONIC_COARSE = 6;
const SC_PAGESIZE = 30;
const RLIMIT_NOFILE = 7;
const SYS_PIDFD_OPEN = 434;

export function errno(): number {
  return read.i32(libc.__errno_location() as Pointer, 0);
}

export function strerror(code: number): string {
  // The kernel's internal ENOTSUPP leaks out of BPF attach calls; libc has no text for it.
  if (code === 524) return "Not supported by the kernel (ENOTSUPP)";
  return String(libc.strerror(code));
}

/** An Error carrying errno, for failures of system or libbpf calls. */
export class SysError extends Error {
  constructor(
    readonly call: string,
    readonly code: number,
  ) {
    super(`${call}: ${strerror(code)} (errno ${code})`);
  }
}

export const pageSize = Number(libc.sysconf(SC_PAGESIZE));
export const geteuid = (): number => libc.geteuid();
export const getppid = (): number => libc.getppid();

export function mmap(length: number, prot: number, fd: number, offset: number): Pointer {
  const addr = libc.mmap(null, length, prot, MAP_SHARED, fd, offset);
  if (addr === null || Number(addr) === MAP_FAILED) throw new SysError("mmap", errno());
  return addr as Pointer;
}

export function munmap(addr: Pointer, length: number): void {
  libc.munmap(addr, length);
}

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_UN = 8;

/** flock(2), retried when a signal interrupts the wait; false if it failed. */
export function flock(fd: number, operation: number): boolean {
  for (;;) {
    if (libc.flock(fd, operation) === 0) return true;
    if (errno() !== EINTR) return false;
  }
}

export function close(fd: number): void {
  if (fd >= 0) libc.close(fd);
}

/** An anonymous in-memory file holding `data`; returns its fd. */
export function memfdWithContents(name: string, data: Uint8Array): number {
  const fd = libc.memfd_create(Buffer.from(`${name}\0`), 0);
  if (fd < 0) throw new SysError("memfd_create", errno());
  for (let off = 0; off < data.length; ) {
    const n = Number(libc.write(fd, data.subarray(off), data.length - off));
    if (n <= 0) throw new SysError("write", errno());
    off += n;
  }
  return fd;
}

/** Waits (in the calling thread) until one fd is readable, or the timeout. */
export class Poller {
  private readonly epfd: number;
  private readonly events = new Uint8Array(12); // one struct epoll_event (packed)

  constructor(fd: number) {
    this.epfd = libc.epoll_create1(0x80000 /* EPOLL_CLOEXEC */);
    if (this.epfd < 0) throw new SysError("epoll_create1", errno());
    this.add(fd);
  }

  /** Wakes the wait when this fd too becomes readable (e.g. a pidfd, when its process exits). */
  add(fd: number): void {
    const ev = new DataView(new ArrayBuffer(12));
    ev.setUint32(0, EPOLLIN, true);
    ev.setUint32(4, fd, true);
    if (libc.epoll_ctl(this.epfd, EPOLL_CTL_ADD, fd, new Uint8Array(ev.buffer)) < 0) throw new SysError("epoll_ctl", errno());
  }

  /** True when an fd became readable; false on timeout or a signal. */
  wait(timeoutMs: number): boolean {
    const n = libc.epoll_wait(this.epfd, this.events, 1, timeoutMs);
    if (n < 0 && errno() !== EINTR) throw new SysError("epoll_wait", errno());
    return n > 0;
  }

  close(): void {
    close(this.epfd);
  }
}

/** Waits up to `timeoutMs` (0: just looks) until `fd` can take a write without blocking (or has failed: the write says how). */
export function writable(fd: number, timeoutMs: number): boolean {
  pollFd[0] = fd;
  pollFd[1] = POLLOUT; // events; revents (the high half) cleared
  return libc.poll(pollFd, 1, timeoutMs) > 0;
}
/** Whether `fd`'s other end is gone without writing to it: a pipe whose reader closed it (POLLERR), a hung-up socket or terminal (POLLHUP). */
export function hungUp(fd: number): boolean {
  pollFd[0] = fd;
  pollFd[1] = POLLOUT;
  return libc.poll(pollFd, 1, 0) > 0 && ((pollFd[1] >>> 16) & (POLLERR | POLLHUP)) !== 0;
}
/** One struct pollfd (fd; events | revents << 16), reused: writers poll once per page. */
const pollFd = new Int32Array(2);

/** Whether writes to `fd` return EAGAIN instead of waiting (O_NONBLOCK). */
export function nonBlocking(fd: number): boolean {
  const flags = libc.fcntl(fd, F_GETFL, 0);
  return flags >= 0 && (flags & O_NONBLOCK) !== 0;
}

/**
 * A file descriptor that becomes readable when process `pid` exits
 * (pidfd_open, Linux 5.3+); -1 where the kernel has none.
 */
export function pidfdOpen(pid: number): number {
  return Number(libc.syscall(SYS_PIDFD_OPEN, pid, 0));
}

function clockNs(clock: number): number {
  const ts = new BigInt64Array(2);
  libc.clock_gettime(clock, ts);
  return Number(ts[0]) * 1e9 + Number(ts[1]);
}

/** Nanoseconds to add to a bpf_ktime_get_ns() value to get Unix time. */
export function monotonicToRealtimeNs(): number {
  return clockNs(CLOCK_REALTIME) - clockNs(CLOCK_MONOTONIC);
}

export function monotonicNowNs(): number {
  return clockNs(CLOCK_MONOTONIC);
}

/** The kernel's tick (1/CONFIG_HZ s, in ns): the coarse clocks advance once per jiffy. */
export function jiffyNs(): number {
  const ts = new BigInt64Array(2);
  libc.clock_getres(CLOCK_MONOTONIC_COARSE, ts);
  return Number(ts[0]) * 1e9 + Number(ts[1]);
}

// Big enough for a whole verifier log, which libbpf prints with one "%s"
// (a va_list cannot be formatted twice to retry with a bigger buffer).
let formatBuffer: Uint8Array | undefined;

/** Formats a C printf format with its va_list (libbpf's print callback). */
export function formatVaList(fmt: Pointer, args: Pointer): string {
  const buf = (formatBuffer ??= new Uint8Array(1 << 20));
  const n = libc.vsnprintf(buf, buf.length, fmt, args);
  return Buffer.from(buf.subarray(0, Math.max(0, Math.min(n, buf.length - 1)))).toString("utf8");
}

/** mount(2); throws SysError on failure. */
export function mount(source: string, target: string, fstype: string): void {
  const c = (s: string) => Buffer.from(`${s}\0`);
  if (libc.mount(c(source), c(target), c(fstype), 0, null) !== 0) throw new SysError(`mount ${target}`, errno());
}

/** RLIMIT_NOFILE as [soft, hard] (RLIM_INFINITY as Infinity). */
export function fileLimit(): [number, number] {
  const lim = new BigUint64Array(2);
  if (libc.getrlimit(RLIMIT_NOFILE, lim) !== 0) throw new SysError("getrlimit", errno());
  const n = (v: bigint) => (v >= 1n << 62n ? Infinity : Number(v));
  return [n(lim[0]!), n(lim[1]!)];
}

/** Raises the soft RLIMIT_NOFILE to `soft` (at most the hard limit); returns the new soft limit. */
export function raiseFileLimit(soft: number): number {
  const [current, hard] = fileLimit();
  const wanted = Math.min(soft, hard);
  if (wanted <= current) return current;
  const lim = new BigUint64Array([BigInt(wanted), hard === Infinity ? 0xffff_ffff_ffff_ffffn : BigInt(hard)]);
  return libc.setrlimit(RLIMIT_NOFILE, lim) === 0 ? wanted : current;
}
