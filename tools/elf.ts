// Just enough of ELF64 (little endian) to read our BPF objects at build time:
// a section's bytes (the .BTF that build.ts and the layout drift test read)
// and which maps each program refers to (its relocations).

interface Section {
  name: string;
  type: number;
  flags: number;
  offset: number;
  size: number;
  link: number;
  info: number;
}

const SHT_SYMTAB = 2;
const SHT_REL = 9;
const SHF_EXECINSTR = 0x4;
const STT_FUNC = 2;
const SHN_UNDEF = 0; // the section of an extern symbol
const BPF_CALL = 0x85; // BPF_JMP | BPF_CALL
const BPF_PSEUDO_CALL = 1; // its source register: a call to a subprogram, not a helper

function elfSections(image: Uint8Array): Section[] {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(0, false) !== 0x7f454c46 || image[4] !== 2 || image[5] !== 1)
    throw new Error("not a little-endian ELF64 file");
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  const headers = Array.from({ length: shnum }, (_, i) => {
    const at = shoff + i * shentsize;
    return {
      nameAt: v.getUint32(at, true),
      type: v.getUint32(at + 4, true),
      flags: Number(v.getBigUint64(at + 8, true)),
      offset: Number(v.getBigUint64(at + 0x18, true)),
      size: Number(v.getBigUint64(at + 0x20, true)),
      link: v.getUint32(at + 0x28, true),
      info: v.getUint32(at + 0x2c, true),
    };
  });
  const names = headers[shstrndx]!.offset;
  return headers.map(({ nameAt, ...h }) => ({ name: cString(image, names + nameAt), ...h }));
}

function cString(image: Uint8Array, at: number): string {
  let end = at;
  while (image[end] !== 0) end++;
  return new TextDecoder().decode(image.subarray(at, end));
}

export function elfSection(image: Uint8Array, wanted: string): Uint8Array {
  const s = elfSections(image).find((h) => h.name === wanted);
  if (!s) throw new Error(`ELF file has no ${wanted} section`);
  return image.subarray(s.offset, s.offset + s.size);
}

interface ElfSymbol {
  name: string;
  type: number;
  section: number;
  value: number;
  size: number;
}

function elfSymbols(image: Uint8Array, sections: Section[]): ElfSymbol[] {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtab) throw new Error("ELF file has no symbol table");
  const strtab = sections[symtab.link]!.offset;
  return Array.from({ length: symtab.size / 24 }, (_, i) => {
    const at = symtab.offset + i * 24;
    return {
      name: cString(image, strtab + v.getUint32(at, true)),
      type: image[at + 4]! & 0xf,
      section: v.getUint16(at + 6, true),
      value: Number(v.getBigUint64(at + 8, true)),
      size: Number(v.getBigUint64(at + 16, true)),
    };
  });
}

/** The subprograms: functions in .text (static __noinline), which libbpf finds by their symbols. */
export function subprogramNames(image: Uint8Array): string[] {
  const sections = elfSections(image);
  const text = sections.findIndex((s) => s.name === ".text");
  return elfSymbols(image, sections).filter((s) => s.type === STT_FUNC && s.section === text).map((s) => s.name);
}

/**
 * Program name → the maps (of the .maps section) its instructions refer to,
 * dead branches included: a superset of what it can touch. A program also
 * holds the maps of the subprograms (static __noinline functions in .text)
 * it calls, directly or through another subprogram.
 */
export function programMaps(image: Uint8Array): Map<string, Set<string>> {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const sections = elfSections(image);
  const mapsSection = sections.findIndex((s) => s.name === ".maps");
  const textSection = sections.findIndex((s) => s.name === ".text");
  const symbols = elfSymbols(image, sections);
  const functions = symbols.filter((s) => s.type === STT_FUNC && sections[s.section]!.flags & SHF_EXECINSTR);
  const key = (f: { name: string; section: number }) => `${f.section}:${f.name}`;
  const maps = new Map(functions.map((f) => [key(f), new Set<string>()]));
  const calls = new Map(functions.map((f) => [key(f), new Set<string>()]));
  const calledSymbol = new Map<string, ElfSymbol>(); // "section:offset" of a relocated call → its symbol
  const externCalls = new Set<string>(); // "section:offset" of a call to an extern (a kfunc: kernel code, no maps)
  for (const rel of sections) {
    if (rel.type !== SHT_REL || !(sections[rel.info]!.flags & SHF_EXECINSTR)) continue;
    const code = sections[rel.info]!;
    for (let at = rel.offset; at < rel.offset + rel.size; at += 16) {
      const offset = Number(v.getBigUint64(at, true));
      const symbol = symbols[Number(v.getBigUint64(at + 8, true) >> 32n)]!;
      const owner = functions.find((f) => f.section === rel.info && offset >= f.value && offset < f.value + f.size);
      if (!owner) throw new Error(`a relocation at ${code.name}+${offset} outside every function`);
      if (symbol.section === mapsSection) maps.get(key(owner))!.add(symbol.name);
      if (symbol.section === textSection) calledSymbol.set(`${rel.info}:${offset}`, symbol);
      if (symbol.section === SHN_UNDEF) externCalls.add(`${rel.info}:${offset}`);
    }
  }
  // Calls to subprograms (BPF_PSEUDO_CALL), libbpf's rule: a relocated call
  // goes to its symbol's offset plus imm + 1 instructions, an unrelocated one
  // (within .text) to its own offset plus imm + 1.
  for (const f of functions) {
    const code = sections[f.section]!;
    for (let at = f.value; at < f.value + f.size; at += 8) {
      if (image[code.offset + at] !== BPF_CALL || image[code.offset + at + 1]! >> 4 !== BPF_PSEUDO_CALL) continue;
      if (externCalls.has(`${f.section}:${at}`)) continue;
      const symbol = calledSymbol.get(`${f.section}:${at}`);
      if (!symbol && f.section !== textSection) throw new Error(`${f.name} calls a subprogram without a relocation`);
      const target = (symbol ? symbol.value : at) + (v.getInt32(code.offset + at + 4, true) + 1) * 8;
      const callee = functions.find((g) => g.section === textSection && target >= g.value && target < g.value + g.size);
      if (!callee) throw new Error(`${f.name} calls .text+${target}, where no function is`);
      calls.get(key(f))!.add(key(callee));
    }
  }
  const result = new Map<string, Set<string>>();
  for (const program of functions.filter((f) => f.section !== textSection)) {
    const used = new Set<string>();
    const seen = new Set<string>();
    const visit = (f: string) => {
      if (seen.has(f)) return;
      seen.add(f);
      for (const m of maps.get(f)!) used.add(m);
      for (const c of calls.get(f)!) visit(c);
    };
    visit(key(program));
    result.set(program.name, used);
  }
  return result;
}

/**
 * A .BTF.ext section without its line info (function info and CO-RE
 * relocations kept): line info only annotates the verifier's log with source
 * lines, and it was 14.7 of the object's 58 MB, all parsed by libbpf at every start.
 */
export function withoutLineInfo(btfExt: Uint8Array): Uint8Array {
  const v = new DataView(btfExt.buffer, btfExt.byteOffset, btfExt.byteLength);
  const headerLength = v.getUint32(4, true);
  const part = (at: number) => btfExt.subarray(headerLength + v.getUint32(at, true), headerLength + v.getUint32(at, true) + v.getUint32(at + 4, true));
  const funcInfo = part(8);
  const coreRelos = headerLength >= 32 ? part(24) : new Uint8Array(0);
  const out = new Uint8Array(headerLength + funcInfo.length + coreRelos.length);
  out.set(btfExt.subarray(0, headerLength));
  out.set(funcInfo, headerLength);
  out.set(coreRelos, headerLength + funcInfo.length);
  const w = new DataView(out.buffer);
  w.setUint32(8, 0, true); // func_info_off
  w.setUint32(16, funcInfo.length, true); // line_info_off, line_info_len 0
  w.setUint32(20, 0, true);
  if (headerLength >= 32) w.setUint32(24, funcInfo.length, true); // core_relo_off
  return out;
}
