// --pcap FILE: pcapng (the format Wireshark, tshark and tcpdump read) of
// the packets skbtrail saw, with the bytes the kernel copied. One Section
// Header; one Interface Description per interface seen (and per hook in
// lifecycle mode, so a display filter can pick one: its if_name is
// "IFNAME/HOOK"); one Enhanced Packet per event, with a comment saying what
// happened there ("kfree_skb: NO_SOCKET at __udp4_lib_rcv+0x4bc").
// Timestamps are µs since the epoch (the default if_tsresol). All blocks
// little-endian. Written through a Writer: a FIFO whose reader (a live
// Wireshark) falls behind holds the run's reading, never the run.
import { VERSION } from "../common/version";
import { unwrittenNote, Writer } from "./writer";

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
  private readonly out: Writer;
  private readonly interfaces = new Map<string, number>();
  private lost = 0;
  packets = 0;

  /** Opens (creates or truncates) the file; throws the open error (see openError). */
  constructor(readonly path: string) {
    this.out = Writer.toFile(path);
    this.out.bytes(sectionHeader());
  }

  /** Why writing failed, as one line; undefined while all is well. */
  get failure(): string | undefined {
    if (this.out.failure) return `cannot write --pcap ${this.path} (${this.out.failure}): free space or choose another file`;
    if (this.out.closed) return `--pcap ${this.path}: its reader went away`;
    return undefined;
  }

  /** The id of the interface described by `key`, written the first time it is asked for. */
  interfaceId(key: string, describe: () => PcapInterface): number {
    let id = this.interfaces.get(key);
    if (id === undefined) {
      id = this.interfaces.size;
      this.interfaces.set(key, id);
      this.out.bytes(interfaceDescription(describe()));
    }
    return id;
  }

  packet(interfaceId: number, micros: number, bytes: Uint8Array, wireLen: number, comment: string): void {
    this.packets++;
    this.out.bytes(enhancedPacket(interfaceId, micros, bytes, wireLen, comment));
  }

  flush(): void {
    this.out.flush();
  }

  /** See Writer.backedUp: the run reads no more records while this is true. */
  backedUp(waitMs: number): boolean {
    return this.out.backedUp(waitMs);
  }

  /** After close: what a reader that stopped taking bytes was not given (a note, like stdout's). */
  get stalled(): string | undefined {
    return this.lost ? unwrittenNote(`--pcap ${this.path}`, this.out, this.lost) : undefined;
  }

  private closed = false;

  async close(giveUp?: () => boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lost = await this.out.close(giveUp);
  }
}
