// A small typed surface over libbpf. The executable carries its own copy of
// libbpf (and libelf, libz) from Debian's packages: each is written to a
// memfd and dlopen'ed as /proc/self/fd/N in dependency order, so the loader
// finds libelf and libz by soname without any file on the target machine.
// SKBTRAIL_LIBBPF=/path/to/libbpf.so.1 uses another libbpf instead.
import { dlopen, FFIType, JSCallback, ptr, read, toArrayBuffer, CString, type Pointer } from "bun:ffi";
import { close, errno, formatVaList, memfdWithContents, SysError } from "./libc";
import { embeddedLibraries } from "./embedded";

const symbols = {
  libbpf_major_version: { args: [], returns: FFIType.u32 },
  libbpf_minor_version: { args: [], returns: FFIType.u32 },
  libbpf_num_possible_cpus: { args: [], returns: FFIType.i32 },
  libbpf_set_print: { args: [FFIType.function], returns: FFIType.ptr },
  bpf_object__open_mem: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.ptr },
  bpf_object__load: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_object__close: { args: [FFIType.ptr], returns: FFIType.void },
  bpf_object__next_program: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  bpf_object__find_map_by_name: { args: [FFIType.ptr, FFIType.cstring], returns: FFIType.ptr },
  bpf_object__next_map: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  bpf_map__name: { args: [FFIType.ptr], returns: FFIType.cstring },
  bpf_map__set_autocreate: { args: [FFIType.ptr, FFIType.bool], returns: FFIType.i32 },
  bpf_program__name: { args: [FFIType.ptr], returns: FFIType.cstring },
  bpf_program__set_autoload: { args: [FFIType.ptr, FFIType.bool], returns: FFIType.i32 },
  bpf_program__fd: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_program__attach: { args: [FFIType.ptr], returns: FFIType.ptr },
  bpf_map__fd: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_map__set_max_entries: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  bpf_map__max_entries: { args: [FFIType.ptr], returns: FFIType.u32 },
  bpf_map__initial_value: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  bpf_link__destroy: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_link__fd: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_program__set_attach_target: { args: [FFIType.ptr, FFIType.i32, FFIType.cstring], returns: FFIType.i32 },
  bpf_program__attach_kprobe_opts: { args: [FFIType.ptr, FFIType.cstring, FFIType.ptr], returns: FFIType.ptr },
  bpf_program__attach_kprobe_multi_opts: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  bpf_program__insns: { args: [FFIType.ptr], returns: FFIType.ptr },
  bpf_program__insn_cnt: { args: [FFIType.ptr], returns: FFIType.u64 },
  bpf_prog_load: { args: [FFIType.i32, FFIType.cstring, FFIType.cstring, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  bpf_raw_tracepoint_open: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  bpf_link__disconnect: { args: [FFIType.ptr], returns: FFIType.void },
  bpf_map_lookup_elem: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  bpf_map_delete_elem: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  bpf_map_get_next_key: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  bpf_map_update_elem: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
} as const;

const RESIDENT_ONLY: Record<string, Record<string, { args: []; returns: FFIType }>> = {
  "libz.so.1": { zlibVersion: { args: [], returns: FFIType.ptr } },
  "libelf.so.1": { elf_errno: { args: [], returns: FFIType.i32 } },
};

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
let lib: Lib | undefined;
const keepAlive: unknown[] = [];

/** $SKBTRAIL_LIBBPF names a library that cannot be loaded. */
export class LibraryLoadError extends Error {
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(why);
  }
}

/** Loads libbpf once: the embedded copy, or $SKBTRAIL_LIBBPF. */
export async function loadLibbpf(): Promise<Lib> {
  if (lib) return lib;
  const override = process.env.SKBTRAIL_LIBBPF;
  if (override) {
    try {
      lib = dlopen(override, symbols).symbols;
    } catch (e) {
      throw new LibraryLoadError(override, (e as Error).message);
    }
  } else {
    // Keep every memfd open until all are loaded: glibc matches dlopen paths
    // by name, and a reused /proc/self/fd/N would return the earlier library.
    const fds: number[] = [];
    let handle;
    for (const { name, path } of embeddedLibraries) {
      const fd = memfdWithContents(name, new Uint8Array(await Bun.file(path).arrayBuffer()));
      fds.push(fd);
      // libz and libelf only need to be resident (libbpf's loader finds them
      // by soname); bun:ffi wants at least one symbol of each.
      handle = dlopen(`/proc/self/fd/${fd}`, name.startsWith("libbpf") ? symbols : RESIDENT_ONLY[name]!);
      keepAlive.push(handle);
    }
    fds.forEach(close);
    lib = (handle as ReturnType<typeof dlopen<typeof symbols>>).symbols;
  }
  installPrintCallback(lib);
  return lib;
}

function bpf(): Lib {
  if (!lib) throw new Error("libbpf not loaded: call loadLibbpf() first");
  return lib;
}

/** CPUs the kernel may bring up: the number of slots of a per-CPU map value. */
export function possibleCpus(): number {
  return bpf().libbpf_num_possible_cpus();
}

export function libbpfVersion(): string {
  return `${bpf().libbpf_major_version()}.${bpf().libbpf_minor_version()}`;
}

// libbpf reports problems (including the verifier log) through its print
// callback. Collect them instead of letting them reach the user's terminal;
// the caller turns a failure into one clear line and shows the log with -v.
const LIBBPF_DEBUG = 2;
let logLines: string[] = [];
let printDebug = false;

function installPrintCallback(l: Lib): void {
  const cb = new JSCallback(
    (level: number, fmt: Pointer, args: Pointer) => {
      if (level === LIBBPF_DEBUG && !printDebug) return 0;
      const line = formatVaList(fmt, args);
      if (printDebug) process.stderr.write(`libbpf: ${line}`);
      logLines.push(line);
      if (logLines.length > 5000) logLines = logLines.slice(-2500);
      return 0;
    },
    { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  );
  keepAlive.push(cb);
  l.libbpf_set_print(cb.ptr!);
}

/** Echo libbpf's debug output (--debug). */
export function setLibbpfDebug(on: boolean): void {
  printDebug = on;
}

/** Returns and clears what libbpf printed since the last call. */
export function takeLibbpfLog(): string {
  const text = logLines.join("");
  logLines = [];
  return text;
}

/** A libbpf call failed; `log` holds what libbpf printed (e.g. the verifier log). */
export class LibbpfError extends SysError {
  constructor(
    call: string,
    code: number,
    readonly log: string,
  ) {
    super(call, code);
  }
}

function check(call: string, result: number): number {
  if (result < 0) throw new LibbpfError(call, -result, takeLibbpfLog());
  return result;
}

function checkPtr(call: string, p: unknown): Pointer {
  if (p === null) throw new LibbpfError(call, errno(), takeLibbpfLog());
  return p as Pointer;
}

const cstr = (s: string) => Buffer.from(`${s}\0`);

/**
 * The option structs passed to libbpf, written by hand (bun:ffi has no C
 * headers): sizes and the offsets used, as in libbpf 1.x's bpf/libbpf.h and
 * bpf/bpf.h. tests/unit/libbpf-abi.test.ts checks them against the headers.
 */
export const OPTION_STRUCTS = {
  bpf_kprobe_opts: { size: 32, fields: { sz: 0, bpf_cookie: 8, offset: 16, retprobe: 24 } },
  bpf_kprobe_multi_opts: { size: 48, fields: { sz: 0, syms: 8, addrs: 16, cookies: 24, cnt: 32, retprobe: 40 } },
  bpf_prog_load_opts: { size: 104, fields: { sz: 0, expected_attach_type: 12, attach_btf_id: 32 } },
  bpf_object_open_opts: { size: 80, fields: { sz: 0, btf_custom_path: 48 } },
} as const;

export class BpfLink {
  constructor(readonly handle: Pointer) {}
  get fd(): number {
    return bpf().bpf_link__fd(this.handle);
  }
  destroy(): void {
    bpf().bpf_link__destroy(this.handle);
  }
  /** Frees libbpf's object but leaves the attachment to whoever holds the fd. */
  release(): void {
    bpf().bpf_link__disconnect(this.handle);
    bpf().bpf_link__destroy(this.handle);
  }
}

export class BpfProgram {
  constructor(readonly handle: Pointer) {}
  get name(): string {
    return String(bpf().bpf_program__name(this.handle));
  }
  setAutoload(on: boolean): void {
    check("bpf_program__set_autoload", bpf().bpf_program__set_autoload(this.handle, on));
  }
  /** Attaches the way the program's section says (tp_btf/, raw_tp/, ...). */
  attach(): BpfLink {
    return new BpfLink(checkPtr(`attach ${this.name}`, bpf().bpf_program__attach(this.handle)));
  }

  /** fentry/fexit/tp_btf target, by kernel function name. Before load. */
  setAttachTarget(func: string): void {
    check(`attach target ${func} for ${this.name}`, bpf().bpf_program__set_attach_target(this.handle, 0, cstr(func)));
  }

  /** A kprobe (or kretprobe) on one function, with a cookie. */
  attachKprobe(func: string, cookie: bigint, retprobe: boolean): BpfLink {
    const o = OPTION_STRUCTS.bpf_kprobe_opts;
    const opts = new BigUint64Array(o.size / 8);
    opts[o.fields.sz / 8] = BigInt(o.size);
    opts[o.fields.bpf_cookie / 8] = cookie;
    opts[o.fields.retprobe / 8] = retprobe ? 1n : 0n;
    return new BpfLink(checkPtr(`attach ${this.name} to ${func}`, bpf().bpf_program__attach_kprobe_opts(this.handle, cstr(func), opts)));
  }

  /** One kprobe.multi link for many functions, each with its cookie. */
  attachKprobeMulti(funcs: string[], cookies: bigint[], retprobe: boolean): BpfLink {
    const names = funcs.map(cstr); // kept referenced until the call returns
    const syms = new BigUint64Array(names.map((n) => BigInt(ptr(n))));
    const cookieArray = BigUint64Array.from(cookies);
    const o = OPTION_STRUCTS.bpf_kprobe_multi_opts;
    const opts = new BigUint64Array(o.size / 8);
    opts[o.fields.sz / 8] = BigInt(o.size);
    opts[o.fields.syms / 8] = BigInt(ptr(syms));
    opts[o.fields.cookies / 8] = BigInt(ptr(cookieArray));
    opts[o.fields.cnt / 8] = BigInt(funcs.length);
    opts[o.fields.retprobe / 8] = retprobe ? 1n : 0n;
    const link = bpf().bpf_program__attach_kprobe_multi_opts(this.handle, null, opts);
    void names;
    return new BpfLink(checkPtr(`attach ${this.name} to ${funcs.length} functions`, link));
  }

  /** A copy of the program's instructions (8 bytes each; final once the object is loaded). */
  instructions(): Uint8Array {
    const count = Number(bpf().bpf_program__insn_cnt(this.handle));
    return new Uint8Array(toArrayBuffer(bpf().bpf_program__insns(this.handle) as Pointer, 0, count * 8).slice(0));
  }

  /**
   * Loads a copy of this loaded tracing program for another kernel function
   * (fentry/fexit: the instructions do not depend on the target) and
   * attaches it. Returns the link's file descriptor; the program's fd is
   * closed (the link keeps the program). `id`: the copy is written for its
   * function (see writeFunctionId).
   */
  cloneAndAttach(btfId: number, attachType: number, id?: FunctionId): number {
    const insns = this.instructions();
    if (id) writeFunctionId(insns, id, this.name);
    const count = insns.length / 8;
    const o = OPTION_STRUCTS.bpf_prog_load_opts;
    const opts = new DataView(new ArrayBuffer(o.size));
    opts.setBigUint64(o.fields.sz, BigInt(o.size), true);
    opts.setUint32(o.fields.expected_attach_type, attachType, true);
    opts.setUint32(o.fields.attach_btf_id, btfId, true);
    const progFd = check(`load ${this.name} for BTF id ${btfId}`, bpf().bpf_prog_load(BPF_PROG_TYPE_TRACING, cstr(this.name), cstr("GPL"), insns, count, new Uint8Array(opts.buffer)));
    try {
      return check(`attach ${this.name} for BTF id ${btfId}`, bpf().bpf_raw_tracepoint_open(null, progFd));
    } finally {
      close(progFd);
    }
  }
}

/** What a template's copy is written for: bpf/progs/functions.bpf.h, FENTRY_ID_PROGRAMS. */
export interface FunctionId {
  /** The traced function's address. */
  func: bigint;
  /** fexit: the return value's slot in the context (the function's number of arguments). */
  returnSlot?: number;
}

const BPF_LD_IMM64 = 0x18;
const BPF_LDX_MEM_DW = 0x79;
const FUNC_ID_MARK = 0x736b62747261696cn; // "skbtrail"

/** Writes the function's address over the marked immediate, and its return slot into the load after it. */
export function writeFunctionId(code: Uint8Array, id: FunctionId, program: string): void {
  const v = new DataView(code.buffer, code.byteOffset, code.byteLength);
  const imm64 = (at: number) => (BigInt(v.getUint32(at + 12, true)) << 32n) | BigInt(v.getUint32(at + 4, true));
  for (let at = 0; at + 16 <= code.length; at += 8) {
    if (code[at] !== BPF_LD_IMM64 || imm64(at) !== FUNC_ID_MARK) continue;
    v.setUint32(at + 4, Number(id.func & 0xffffffffn), true);
    v.setUint32(at + 12, Number(id.func >> 32n), true);
    if (id.returnSlot !== undefined) {
      if (code[at + 16] !== BPF_LDX_MEM_DW) throw new Error(`${program}: no return-value load after the function mark`);
      v.setInt16(at + 18, id.returnSlot * 8, true);
    }
    return;
  }
  throw new Error(`${program}: no function mark in its instructions`);
}

const BPF_PROG_TYPE_TRACING = 26;
export const BPF_TRACE_FENTRY = 24;
export const BPF_TRACE_FEXIT = 25;

export class BpfMap {
  constructor(
    readonly name: string,
    readonly handle: Pointer,
  ) {}
  get fd(): number {
    return bpf().bpf_map__fd(this.handle);
  }
  get maxEntries(): number {
    return bpf().bpf_map__max_entries(this.handle);
  }
  setMaxEntries(n: number): void {
    check(`resize map ${this.name}`, bpf().bpf_map__set_max_entries(this.handle, n));
  }
  /** Whether load creates the map (default true); a program that uses a map not created fails the verifier. */
  setAutocreate(create: boolean): void {
    check(`autocreate map ${this.name}`, bpf().bpf_map__set_autocreate(this.handle, create));
  }
  /** The map's initial contents (e.g. .rodata) as a writable view; valid until load. */
  initialValue(): Uint8Array {
    const size = new BigUint64Array(1);
    const p = checkPtr(`initial value of ${this.name}`, bpf().bpf_map__initial_value(this.handle, size));
    return new Uint8Array(toArrayBuffer(p, 0, Number(size[0])));
  }
  /** Looks up `key`, filling `value`; false when absent. */
  lookup(key: Uint8Array, value: Uint8Array): boolean {
    return bpf().bpf_map_lookup_elem(this.fd, key, value) === 0;
  }
  delete(key: Uint8Array): void {
    bpf().bpf_map_delete_elem(this.fd, key);
  }
  /** The key after `prev` (the first with null) into `next`; false at the end. */
  nextKey(prev: Uint8Array | null, next: Uint8Array): boolean {
    return bpf().bpf_map_get_next_key(this.fd, prev, next) === 0;
  }
  update(key: Uint8Array, value: Uint8Array): void {
    check(`update map ${this.name}`, bpf().bpf_map_update_elem(this.fd, key, value, 0));
  }
}

export class BpfObject {
  private constructor(
    readonly handle: Pointer,
    // libbpf keeps pointing into the ELF image until load: keep it referenced.
    private image: Uint8Array | null,
  ) {}

  /** `btfPath`: a vmlinux BTF file for CO-RE relocations instead of the kernel's own (--btf-path). */
  static open(image: Uint8Array, btfPath?: string): BpfObject {
    let opts: BigUint64Array | null = null;
    const path = btfPath === undefined ? undefined : cstr(btfPath);
    if (path) {
      const o = OPTION_STRUCTS.bpf_object_open_opts;
      opts = new BigUint64Array(o.size / 8);
      opts[o.fields.sz / 8] = BigInt(o.size);
      opts[o.fields.btf_custom_path / 8] = BigInt(ptr(path));
    }
    const handle = checkPtr("bpf_object__open_mem", bpf().bpf_object__open_mem(image, image.length, opts)); // libbpf copies the path
    return new BpfObject(handle, image);
  }

  programs(): BpfProgram[] {
    const out: BpfProgram[] = [];
    for (let p = bpf().bpf_object__next_program(this.handle, null) as Pointer | null; p !== null; p = bpf().bpf_object__next_program(this.handle, p) as Pointer | null)
      out.push(new BpfProgram(p));
    return out;
  }

  program(name: string): BpfProgram {
    const found = this.programs().find((p) => p.name === name);
    if (!found) throw new Error(`BPF object has no program ${name}`);
    return found;
  }

  maps(): BpfMap[] {
    const out: BpfMap[] = [];
    for (let m = bpf().bpf_object__next_map(this.handle, null) as Pointer | null; m !== null; m = bpf().bpf_object__next_map(this.handle, m) as Pointer | null)
      out.push(new BpfMap(String(bpf().bpf_map__name(m)), m));
    return out;
  }

  map(name: string): BpfMap {
    const p = bpf().bpf_object__find_map_by_name(this.handle, cstr(name));
    if (p === null) throw new Error(`BPF object has no map ${name}`);
    return new BpfMap(name, p as Pointer);
  }

  load(): void {
    check("bpf_object__load", bpf().bpf_object__load(this.handle));
    this.image = null;
  }

  close(): void {
    bpf().bpf_object__close(this.handle);
    this.image = null;
  }
}

export { CString, ptr, read };
