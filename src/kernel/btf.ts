// A reader for the BPF Type Format: the running kernel's types
// (/sys/kernel/btf/vmlinux, and split BTF of modules) and those of our own
// compiled object (build.ts generates the TypeScript layouts from it).
// Format: https://docs.kernel.org/bpf/btf.html

export enum Kind {
  VOID = 0, INT = 1, PTR = 2, ARRAY = 3, STRUCT = 4, UNION = 5, ENUM = 6, FWD = 7, TYPEDEF = 8,
  VOLATILE = 9, CONST = 10, RESTRICT = 11, FUNC = 12, FUNC_PROTO = 13, VAR = 14, DATASEC = 15,
  FLOAT = 16, DECL_TAG = 17, TYPE_TAG = 18, ENUM64 = 19,
}

export interface Member {
  name: string;
  type: number;
  bitOffset: number;
}

export interface Param {
  name: string;
  type: number;
}

const MAGIC = 0xeb9f;

/** The bytes are not well-formed BTF. */
export class BtfError extends Error {}
const utf8 = new TextDecoder();

/** Bytes that follow the common 12-byte type record, per kind. */
function extraSize(kind: Kind, vlen: number): number {
  switch (kind) {
    case Kind.INT: case Kind.VAR: case Kind.DECL_TAG: return 4;
    case Kind.ARRAY: return 12;
    case Kind.STRUCT: case Kind.UNION: case Kind.DATASEC: case Kind.ENUM64: return 12 * vlen;
    case Kind.ENUM: case Kind.FUNC_PROTO: return 8 * vlen;
    default: return 0;
  }
}

export class Btf {
  private readonly view: DataView;
  private readonly typeStart: number;
  private readonly strStart: number;
  private readonly strLen: number;
  /** Byte offset of each of this blob's own types (index 0 = first own id). */
  private readonly offsets: Uint32Array;
  private names?: Map<string, number[]>;
  private strings?: string;
  /** Look-ups by scanning so far: past a few, one index is cheaper. */
  private scans = 0;
  readonly firstId: number;
  readonly count: number;

  private constructor(
    bytes: Uint8Array,
    readonly base?: Btf,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v = this.view;
    // Every offset is checked once here, so later reads stay in bounds.
    if (bytes.length < 24 || v.getUint16(0, true) !== MAGIC) throw new BtfError("not BTF data (bad magic)");
    const hdrLen = v.getUint32(4, true);
    const typeLen = v.getUint32(12, true);
    this.typeStart = hdrLen + v.getUint32(8, true);
    this.strStart = hdrLen + v.getUint32(16, true);
    this.strLen = v.getUint32(20, true);
    if (hdrLen < 24 || this.typeStart + typeLen > bytes.length || this.strStart + this.strLen > bytes.length || (this.strLen && bytes[this.strStart + this.strLen - 1] !== 0))
      throw new BtfError("truncated or inconsistent BTF header");
    this.firstId = base ? base.count : 1;

    // Every record is at least 12 bytes: size the table for the worst case.
    const offsets = new Uint32Array(Math.ceil(typeLen / 12));
    let n = 0;
    const end = this.typeStart + typeLen;
    for (let off = this.typeStart; off < end; n++) {
      if (off + 12 > end) throw new BtfError(`type ${this.firstId + n} runs past the type section`);
      offsets[n] = off;
      const info = v.getUint32(off + 4, true);
      const kind = (info >>> 24) & 0x1f;
      if (kind > Kind.ENUM64) throw new BtfError(`type ${this.firstId + n} has unknown kind ${kind}`);
      off += 12 + extraSize(kind, info & 0xffff);
      if (off > end) throw new BtfError(`type ${this.firstId + n} runs past the type section`);
    }
    this.offsets = offsets.subarray(0, n);
    this.count = this.firstId + n;
  }

  static parse(bytes: Uint8Array, base?: Btf): Btf {
    return new Btf(bytes, base);
  }

  private owner(id: number): Btf {
    return id < this.firstId && this.base ? this.base.owner(id) : this;
  }

  private word(id: number, at: number): number {
    const off = this.offsets[id - this.firstId];
    if (off === undefined) throw new BtfError(`type id ${id} does not exist`);
    return this.view.getUint32(off + at, true);
  }

  /** The string at `off` of the string section (split BTF continues the base's). */
  str(off: number): string {
    if (this.base && off < this.base.strLen) return this.base.str(off);
    const local = this.base ? off - this.base.strLen : off;
    if (local >= this.strLen) throw new BtfError(`string offset ${off} is outside the string section`);
    // The whole section decoded once, then sliced: a kernel's names are
    // ASCII, and one decode costs far less than one per name.
    const strings = (this.strings ??= utf8.decode(new Uint8Array(this.view.buffer, this.view.byteOffset + this.strStart, this.strLen)));
    return strings.slice(local, strings.indexOf("\0", local)); // the section ends with NUL (checked at parse)
  }

  kind(id: number): Kind {
    if (id === 0) return Kind.VOID;
    const o = this.owner(id);
    if (o !== this) return o.kind(id);
    return (this.word(id, 4) >>> 24) & 0x1f;
  }

  name(id: number): string {
    if (id === 0) return "void";
    const o = this.owner(id);
    return o === this ? this.str(this.word(id, 0)) : o.name(id);
  }

  vlen(id: number): number {
    const o = this.owner(id);
    return o === this ? this.word(id, 4) & 0xffff : o.vlen(id);
  }

  /** size for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT; the referenced type otherwise. */
  sizeOrType(id: number): number {
    const o = this.owner(id);
    return o === this ? this.word(id, 8) : o.sizeOrType(id);
  }

  private kindFlag(id: number): boolean {
    const o = this.owner(id);
    return o === this ? this.word(id, 4) >>> 31 === 1 : o.kindFlag(id);
  }

  private extra(id: number, at: number): number {
    const o = this.owner(id);
    return o === this ? this.word(id, 12 + at) : o.extra(id, at);
  }

  /** Follows typedefs and qualifiers to the underlying type. */
  resolve(id: number): number {
    for (;;) {
      const k = this.kind(id);
      if (k !== Kind.TYPEDEF && k !== Kind.VOLATILE && k !== Kind.CONST && k !== Kind.RESTRICT && k !== Kind.TYPE_TAG) return id;
      id = this.sizeOrType(id);
    }
  }

  /** C-like spelling of a type: "struct sk_buff *", "enum skb_drop_reason", "void *". */
  typeString(id: number): string {
    id = this.resolve(id);
    switch (this.kind(id)) {
      case Kind.VOID: return "void";
      case Kind.PTR: return `${this.typeString(this.sizeOrType(id))} *`;
      case Kind.STRUCT: case Kind.FWD: return `struct ${this.name(id)}`;
      case Kind.UNION: return `union ${this.name(id)}`;
      case Kind.ENUM: case Kind.ENUM64: return `enum ${this.name(id)}`;
      case Kind.FUNC_PROTO: return "function";
      default: return this.name(id);
    }
  }

  /** Size in bytes of a (resolved) type. */
  size(id: number): number {
    id = this.resolve(id);
    switch (this.kind(id)) {
      case Kind.PTR: return 8;
      case Kind.ARRAY: return this.arrayInfo(id).count * this.size(this.arrayInfo(id).elem);
      case Kind.INT: case Kind.STRUCT: case Kind.UNION: case Kind.ENUM: case Kind.ENUM64: case Kind.FLOAT: case Kind.DATASEC:
        return this.sizeOrType(id);
      default: return 0;
    }
  }

  /** Bit width and signedness of an INT type. */
  intInfo(id: number): { bits: number; signed: boolean } {
    const enc = this.extra(id, 0);
    return { bits: enc & 0xff, signed: ((enc >>> 24) & 1) === 1 };
  }

  arrayInfo(id: number): { elem: number; count: number } {
    return { elem: this.extra(id, 0), count: this.extra(id, 8) };
  }

  members(id: number): Member[] {
    const out: Member[] = [];
    const bitfields = this.kindFlag(id);
    for (let i = 0; i < this.vlen(id); i++) {
      const off = this.extra(id, i * 12 + 8);
      out.push({ name: this.strAt(id, i * 12), type: this.extra(id, i * 12 + 4), bitOffset: bitfields ? off & 0xffffff : off });
    }
    return out;
  }

  params(protoId: number): Param[] {
    const out: Param[] = [];
    for (let i = 0; i < this.vlen(protoId); i++) out.push({ name: this.strAt(protoId, i * 8), type: this.extra(protoId, i * 8 + 4) });
    return out;
  }

  /** Enumerators of an ENUM or ENUM64 type, name → value. */
  enumValues(id: number): Map<string, number> {
    const out = new Map<string, number>();
    const is64 = this.kind(id) === Kind.ENUM64;
    const stride = is64 ? 12 : 8;
    for (let i = 0; i < this.vlen(id); i++) {
      const lo = this.extra(id, i * stride + 4);
      const value = is64 ? this.extra(id, i * stride + 8) * 0x1_0000_0000 + lo : lo | 0;
      out.set(this.strAt(id, i * stride), value);
    }
    return out;
  }

  /** Variables of a DATASEC: type id, offset and size within the section. */
  datasecVars(id: number): { type: number; offset: number; size: number }[] {
    const out = [];
    for (let i = 0; i < this.vlen(id); i++)
      out.push({ type: this.extra(id, i * 12), offset: this.extra(id, i * 12 + 4), size: this.extra(id, i * 12 + 8) });
    return out;
  }

  private strAt(id: number, at: number): string {
    const o = this.owner(id);
    return o === this ? this.str(this.extra(id, at)) : o.strAt(id, at);
  }

  /** All ids (including the base's) whose name is `name`, optionally of one kind. */
  find(name: string, kind?: Kind): number[] {
    if (!this.names && ++this.scans > 8) this.nameIndex();
    const own = this.names ? (this.names.get(name) ?? []) : this.scan(name);
    const ids = this.base ? [...this.base.find(name), ...own] : own;
    return kind === undefined ? ids : ids.filter((id) => this.kind(id) === kind);
  }

  /** Finds own ids named `name` by comparing bytes: no strings are built. */
  private scan(name: string): number[] {
    const want = new TextEncoder().encode(name);
    const out: number[] = [];
    for (let id = this.firstId; id < this.count; id++) if (this.strEquals(this.word(id, 0), want)) out.push(id);
    return out;
  }

  private strEquals(off: number, want: Uint8Array): boolean {
    if (this.base && off < this.base.strLen) return this.base.strEquals(off, want);
    if (off === 0) return want.length === 0;
    const local = this.base ? off - this.base.strLen : off;
    if (local + want.length >= this.strLen) return false;
    const start = this.strStart + local;
    for (let i = 0; i < want.length; i++) if (this.view.getUint8(start + i) !== want[i]) return false;
    return this.view.getUint8(start + want.length) === 0;
  }

  private nameIndex(): Map<string, number[]> {
    if (this.names) return this.names;
    const names = new Map<string, number[]>();
    for (let id = this.firstId; id < this.count; id++) {
      const nameOff = this.word(id, 0);
      if (nameOff === 0) continue;
      const name = this.str(nameOff);
      const list = names.get(name);
      if (list) list.push(id);
      else names.set(name, [id]);
    }
    this.names = names;
    return names;
  }

  /** Own ENUM types with an enumerator of this name (anonymous enums have no other handle): bytes compared, no strings made. */
  enumsWithMember(member: string): number[] {
    const want = new TextEncoder().encode(member);
    const out: number[] = [];
    for (let id = this.firstId; id < this.count; id++) {
      const info = this.word(id, 4);
      if (((info >>> 24) & 0x1f) !== Kind.ENUM) continue;
      for (let i = 0; i < (info & 0xffff); i++)
        if (this.strEquals(this.word(id, 12 + i * 8), want)) {
          out.push(id);
          break;
        }
    }
    return out;
  }

  /** Ids of this blob's own types of one kind (not the base's). */
  *ownIds(kind: Kind): Generator<number> {
    for (let id = this.firstId; id < this.count; id++) if (((this.word(id, 4) >>> 24) & 0x1f) === kind) yield id;
  }
}
