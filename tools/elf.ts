// Just enough of ELF64 (little endian) to pull a section out of an object
// file: build.ts and the layout drift test read the .BTF of our BPF object.

export function elfSection(image: Uint8Array, wanted: string): Uint8Array {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(0, false) !== 0x7f454c46 || image[4] !== 2 || image[5] !== 1)
    throw new Error("not a little-endian ELF64 file");
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  const header = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: v.getUint32(at, true),
      offset: Number(v.getBigUint64(at + 0x18, true)),
      size: Number(v.getBigUint64(at + 0x20, true)),
    };
  };
  const names = header(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    let end = names.offset + h.name;
    while (image[end] !== 0) end++;
    const name = new TextDecoder().decode(image.subarray(names.offset + h.name, end));
    if (name === wanted) return image.subarray(h.offset, h.offset + h.size);
  }
  throw new Error(`ELF file has no ${wanted} section`);
}
