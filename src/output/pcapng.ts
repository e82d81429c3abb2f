// --pcap FILE: pcapng (the format Wireshark, tshark and tcpdump read) of
// the packets skbtrail saw, with the bytes the kernel copied. One Section
// Header; one Interface Description per interface seen (and per hook in
// lifecycle mode, so a display filter can pick one: its if_name is
// "IFNAME/HOOK"); one Enhanced Packet per event, with a comment saying what
// happened there ("kfree_skb: NO_SOCKET at __udp4_lib_rcv+0x4bc").
// Timestamps are µs since the epoch (the default if_tsresol). All blocks
// little-endian. Writes are buffered and synchronous, like Writer.
import { closeSync, openSync, writeSync } from "node:fs";
import { VERSION } from "../common/version";

export const LINKTYPE_ETHERNET = 1;

const SHB = 0x0a0d0d0a;
const IDB = 1;
const EPB = 6;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_END = 0;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const FLUSH_BYTES = 1 << 16;

export interface PcapInterface {
  /** if_name: "veth1", or "veth1/netif_receive_skb" in lifecycle mode. */
  name: string;
  description: string;
  linktype: number;
  snaplen: number;
}

const pad4 = (n: number) => (n + 3) & ~3;
const utf8 = new TextEncoder();

/** Options: (code, value) pairs, each padded to 32 bits, then opt_endofopt. */
function options(opts: [number, Uint8Array][]): Uint8Array {
  const size = opts.reduce((n, [, v]) => n + 4 + pad4(v.length), 0) + 4;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const [code, value] of opts) {
    view.setUint16(at, code, true);
    view.setUint16(at + 2, value.length, true);
    out.set(value, at + 4);
    at += 4 + pad4(value.length);
  }
  view.setUint16(at, OPT_END, true);
  return out;
}

/** A block: type, total length, body (padded), options, total length again. */
function block(type: number, body: Uint8Array, opts: Uint8Array): Uint8Array {
  const total = 12 + pad4(body.length) + opts.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, total, true);
  out.set(body, 8);
  out.set(opts, 8 + pad4(body.length));
  view.setUint32(total - 4, total, true);
  return out;
}

function sectionHeader(): Uint8Array {
  const body = new Uint8Array(16);
  const v = new DataView(body.buffer);
  v.setUint32(0, BYTE_ORDER_MAGIC, true);
  v.setUint16(4, 1, true); // major
  v.setUint16(6, 0, true); // minor
  v.setBigInt64(8, -1n, true); // section length: not given
  return block(SHB, body, options([[SHB_USERAPPL, utf8.encode(`skbtrail ${VERSION}`)]]));
}

function interfaceDescription(i: PcapInterface): Uint8Array {
  const body = new Uint8Array(8);
  const v = new DataView(body.buffer);
  v.setUint16(0, i.linktype, true);
  v.setUint32(4, i.snaplen, true);
  return block(IDB, body, options([[IF_NAME, utf8.encode(i.name)], [IF_DESCRIPTION, utf8.encode(i.description)], [IF_TSRESOL, new Uint8Array([6])]]));
}

export function enhancedPacket(interfaceId: number, micros: number, bytes: Uint8Array, wireLen: number, comment: string): Uint8Array {
  const body = new Uint8Array(20 + bytes.length);
  const v = new DataView(body.buffer);
  v.setUint32(0, interfaceId, true);
  v.setUint32(4, Math.floor(micros / 0x1_0000_0000), true);
  v.setUint32(8, micros % 0x1_0000_0000, true);
  v.setUint32(12, bytes.length, true);
  v.setUint32(16, Math.max(wireLen, bytes.length), true);
  body.set(bytes, 20);
  return block(EPB, body, options(comment ? [[OPT_COMMENT, utf8.encode(comment)]] : []));
}

export class PcapngWriter {
  private readonly fd: number;
  private chunks: Uint8Array[] = [];
  private size = 0;
  private readonly interfaces = new Map<string, number>();
  /** Why a write failed; undefined while all is well. */
  failure?: string;
  packets = 0;

  /** Opens (creates or truncates) the file; throws the open error. */
  constructor(readonly path: string) {
    this.fd = openSync(path, "w");
    this.push(sectionHeader());
  }

  /** The id of the interface described by `key`, written the first time it is asked for. */
  interfaceId(key: string, describe: () => PcapInterface): number {
    let id = this.interfaces.get(key);
    if (id === undefined) {
      id = this.interfaces.size;
      this.interfaces.set(key, id);
      this.push(interfaceDescription(describe()));
    }
    return id;
  }

  packet(interfaceId: number, micros: number, bytes: Uint8Array, wireLen: number, comment: string): void {
    this.packets++;
    this.push(enhancedPacket(interfaceId, micros, bytes, wireLen, comment));
  }

  private push(b: Uint8Array): void {
    if (this.failure) return;
    this.chunks.push(b);
    this.size += b.length;
    if (this.size >= FLUSH_BYTES) this.flush();
  }

  flush(): void {
    if (!this.chunks.length || this.failure) return;
    const data = Buffer.concat(this.chunks);
    this.chunks = [];
    this.size = 0;
    try {
      let at = 0;
      while (at < data.length) at += writeSync(this.fd, data, at);
    } catch (e) {
      this.failure = `cannot write --pcap ${this.path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): free space or choose another file`;
    }
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    try {
      closeSync(this.fd);
    } catch (e) {
      this.failure ??= `cannot write --pcap ${this.path} (${(e as NodeJS.ErrnoException).code}): free space or choose another file`;
    }
  }
}
