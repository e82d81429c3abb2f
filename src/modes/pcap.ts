// --pcap FILE for every mode: the packets' bytes the kernel copied (only
// when --pcap asks, see bpf/lib/capture.bpf.h) written as pcapng, one
// interface description per interface (per interface and hook in lifecycle
// mode) and per packet a comment saying what happened there.
//
// Every interface is Ethernet: libpcap (tcpdump) refuses a file whose
// interfaces differ in link type, so a packet copied from its network header
// (no MAC header there) gets an Ethernet header with zero addresses.
import { capture_link, hook_flags } from "../abi/layout.generated";
import { shown, usageError } from "../common/errors";
import type { Capture, DropEvent, HookEvent } from "../events/decode";
import type { HookLine } from "../events/line";
import { LINKTYPE_ETHERNET, PcapngWriter } from "../output/pcapng";
import { openError } from "../output/writer";
import { Clock } from "../output/time";

const ETH_HLEN = 14;

/** Raw IPv4/IPv6 bytes behind an Ethernet header with zero addresses and the IP version's ethertype. */
function withEthernetHeader(ip: Uint8Array): Uint8Array {
  const frame = new Uint8Array(ETH_HLEN + ip.length);
  frame[12] = ip[0]! >> 4 === 6 ? 0x86 : 0x08;
  frame[13] = ip[0]! >> 4 === 6 ? 0xdd : 0x00;
  frame.set(ip, ETH_HLEN);
  return frame;
}

export class PacketCapture {
  private readonly clock = new Clock();
  /** Events that came without bytes (no header to start from, e.g. early on the transmit path). */
  withoutBytes = 0;

  private constructor(
    private readonly writer: PcapngWriter,
    readonly path: string,
    readonly snaplen: number,
  ) {}

  /**
   * Opens the file before anything is attached: a path that cannot be written
   * is a usage error. A FIFO with no reader yet (Wireshark not started) is
   * waited for, asking `stopped` every 100 ms: undefined if the run was stopped
   * (Ctrl-C, --timeout) before a reader came.
   */
  static async open(path: string, snaplen: number, stopped: () => boolean, waiting: (line: string) => void): Promise<PacketCapture | undefined> {
    for (let told = false; ; told = true) {
      try {
        return new PacketCapture(new PcapngWriter(path), path, snaplen);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENXIO") throw usageError(`--pcap: cannot write ${shown(path)} (${openError(e)}); give a writable file path`);
      }
      if (!told) waiting(`--pcap: ${shown(path)} is a FIFO with no reader yet: waiting for one (e.g. wireshark -k -i ${shown(path)})`);
      await Bun.sleep(100);
      if (stopped()) return undefined;
    }
  }

  get packets(): number {
    return this.writer.packets;
  }

  get failure(): string | undefined {
    return this.writer.failure;
  }

  /** After close: what a stalled reader was not given, as a note. */
  get stalled(): string | undefined {
    return this.writer.stalled;
  }

  /** Its reader has bytes still to take (see Writer.backedUp). */
  backedUp(waitMs: number): boolean {
    return this.writer.backedUp(waitMs);
  }

  private write(e: DropEvent | HookEvent, capture: Capture | undefined, hook: string | undefined, comment: string): boolean {
    if (!capture || (capture.link !== capture_link.CAPTURE_ETHERNET && capture.link !== capture_link.CAPTURE_RAW)) {
      this.withoutBytes++;
      return false;
    }
    const raw = capture.link === capture_link.CAPTURE_RAW;
    const m = e.meta;
    const dev = m.ifname || "(no device)";
    const id = this.writer.interfaceId(`${m.netns}|${m.ifindex}|${m.ifname}|${hook ?? ""}`, () => ({
      name: hook ? `${dev}/${hook}` : dev,
      description: `${hook ? `hook ${hook}` : "drops (skb:kfree_skb)"} on ${dev} (ifindex ${m.ifindex}, netns ${m.netns})`,
      linktype: LINKTYPE_ETHERNET,
      snaplen: this.snaplen + ETH_HLEN,
    }));
    const bytes = raw ? withEthernetHeader(capture.bytes) : capture.bytes;
    this.writer.packet(id, this.clock.wallMicros(e.timeNs), bytes, capture.wireLen + (raw ? ETH_HLEN : 0), raw ? `${comment} (no MAC header here: Ethernet header added)` : comment);
    return true;
  }

  /** A drop of the drop monitor: "kfree_skb: NO_SOCKET at __udp4_lib_rcv+0x4bc". */
  drop(e: DropEvent, capture: Capture | undefined, reason: string | undefined, location: string): boolean {
    return this.write(e, capture, undefined, `kfree_skb: ${reason ?? "dropped"} at ${location}`);
  }

  /** One hook of a packet's life: "netif_receive_skb", "kfree_skb: NETFILTER_DROP at nft_do_chain+0x3e8", with the line's notes. */
  hook(l: HookLine, capture: Capture | undefined, reason: string | undefined, location: string | undefined, packet?: number): boolean {
    const notes = l.e.flags & hook_flags.HOOK_DROP ? [`${reason ?? "dropped"} at ${location}`, ...l.notes.filter((n) => !n.startsWith("reason: ") && n !== "packet is dropped by kernel" && n !== location)] : l.notes;
    const comment = `${l.name}${notes.length ? `: ${notes.join("; ")}` : ""}${packet !== undefined ? ` (packet ${packet})` : ""}`;
    return this.write(l.e, capture, l.name, comment);
  }

  flush(): void {
    this.writer.flush();
  }

  close(giveUp?: () => boolean): Promise<void> {
    return this.writer.close(giveUp);
  }
}
