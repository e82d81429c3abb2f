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

/**
 * Program name → the maps (of the .maps section) its instructions refer to,
 * dead branches included: a superset of what it can touch. References from
 * .text (subprograms) count for every program.
 */
export function programMaps(image: Uint8Array): Map<string, Set<string>> {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const sections = elfSections(image);
  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtab) throw new Error("ELF file has no symbol table");
  const strtab = sections[symtab.link]!.offset;
  const mapsSection = sections.findIndex((s) => s.name === ".maps");
  const symbols = Array.from({ length: symtab.size / 24 }, (_, i) => {
    const at = symtab.offset + i * 24;
    return {
      name: cString(image, strtab + v.getUint32(at, true)),
      type: image[at + 4]! & 0xf,
      section: v.getUint16(at + 6, true),
      value: Number(v.getBigUint64(at + 8, true)),
      size: Number(v.getBigUint64(at + 16, true)),
    };
  });
  const programs = symbols.filter((s) => s.type === STT_FUNC && sections[s.section]!.flags & SHF_EXECINSTR && sections[s.section]!.name !== ".text");
  const result = new Map(programs.map((p) => [p.name, new Set<string>()]));
  const shared = new Set<string>();
  for (const rel of sections) {
    if (rel.type !== SHT_REL || !(sections[rel.info]!.flags & SHF_EXECINSTR)) continue;
    const inText = sections[rel.info]!.name === ".text";
    const owners = programs.filter((p) => p.section === rel.info);
    for (let at = rel.offset; at < rel.offset + rel.size; at += 16) {
      const symbol = symbols[Number(v.getBigUint64(at + 8, true) >> 32n)]!;
      if (symbol.section !== mapsSection) continue;
      const offset = Number(v.getBigUint64(at, true));
      if (inText) shared.add(symbol.name);
      else result.get(owners.find((p) => offset >= p.value && offset < p.value + p.size)!.name)!.add(symbol.name);
    }
  }
  for (const maps of result.values()) for (const m of shared) maps.add(m);
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
