// IPv4 and IPv6 addresses and prefixes in their text forms, as bytes: for
// the filters of the command line and the addresses of an expect file.

export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

export function parseIPv6(text: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.split("::").length > 2) return undefined;
  let tail = text;
  let v4: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".")) {
    v4 = parseIPv4(text.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = text.slice(0, lastColon + 1) + "0:0";
  }
  const [head, rest] = tail.includes("::") ? tail.split("::") : [tail, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const left = groups(head);
  const right = groups(rest);
  const missing = 8 - left.length - right.length;
  if (rest === undefined ? missing !== 0 : missing < 1) return undefined;
  const all = [...left, ...Array(rest === undefined ? 0 : missing).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  if (v4) out.set(v4, 12);
  return out;
}

/** An address with a prefix length (CIDR); a bare address is a /32 or /128. */
export interface Cidr {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  bytes: Uint8Array;
  prefix: number;
}

/** "10.0.0.0/8", "fd00::1", …; undefined when it is none. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, prefixText, extra] = text.split("/");
  if (extra !== undefined || !addr) return undefined;
  const v4 = parseIPv4(addr);
  const bytes = v4 ?? parseIPv6(addr);
  if (!bytes) return undefined;
  const max = v4 ? 32 : 128;
  if (prefixText !== undefined && (!/^\d+$/.test(prefixText) || Number(prefixText) > max)) return undefined;
  return { family: v4 ? 4 : 6, bytes, prefix: prefixText === undefined ? max : Number(prefixText) };
}

/** Whether the address (text, either family) lies in the prefix. */
export function inCidr(address: string, cidr: Cidr): boolean {
  const bytes = cidr.family === 4 ? parseIPv4(address) : parseIPv6(address);
  if (!bytes) return false;
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    if ((bytes[bit >> 3]! & mask) !== (cidr.bytes[bit >> 3]! & mask)) return false;
  }
  return true;
}
