// The pcapng writer: block structure as the format defines it, and the
// file read back by the real tshark and tcpdump (Debian's packages).
import { describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { $ } from "bun";
import { enhancedPacket, LINKTYPE_ETHERNET, PcapngWriter } from "../../src/output/pcapng";
import { openError } from "../../src/output/writer";
import { tool } from "../lib/tools";

/** A UDP datagram 10.0.0.1:5000 -> 10.0.0.2:53 with `payload` bytes, as raw IPv4. */
function udpPacket(payload: number): Uint8Array {
  const p = new Uint8Array(28 + payload);
  const v = new DataView(p.buffer);
  p[0] = 0x45;
  v.setUint16(2, p.length);
  p[8] = 64;
  p[9] = 17;
  p.set([10, 0, 0, 1], 12);
  p.set([10, 0, 0, 2], 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += v.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  v.setUint16(10, ~sum & 0xffff);
  v.setUint16(20, 5000);
  v.setUint16(22, 53);
  v.setUint16(24, 8 + payload);
  return p;
}

/** The same inside an Ethernet frame. */
function ethernet(ip: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + ip.length);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
  f.set(ip, 14);
  return f;
}

interface Block {
  type: number;
  length: number;
  body: DataView;
}

function blocks(file: Uint8Array): Block[] {
  const out: Block[] = [];
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (let at = 0; at < file.length; ) {
    const type = v.getUint32(at, true);
    const length = v.getUint32(at + 4, true);
    expect(length % 4).toBe(0);
    expect(v.getUint32(at + length - 4, true)).toBe(length); // trailing length repeats the leading one
    out.push({ type, length, body: new DataView(file.buffer, file.byteOffset + at + 8, length - 12) });
    at += length;
  }
  return out;
}

const dir = mkdtempSync(`${tmpdir()}/skbtrail-pcapng-`);

async function sample(path: string): Promise<void> {
  const w = new PcapngWriter(path);
  const eth = w.interfaceId("veth1", () => ({ name: "veth1", description: "drops (skb:kfree_skb) on veth1", linktype: LINKTYPE_ETHERNET, snaplen: 256 }));
  // One link type per file: libpcap (tcpdump) refuses a file whose interfaces differ in it.
  const raw = w.interfaceId("veth0", () => ({ name: "veth0/ip_rcv", description: "hook ip_rcv on veth0", linktype: LINKTYPE_ETHERNET, snaplen: 256 }));
  expect(w.interfaceId("veth1", () => ({ name: "never", description: "", linktype: 1, snaplen: 1 }))).toBe(eth);
  const t = Date.parse("2026-12-01T10:00:00Z") * 1000;
  w.packet(eth, t + 1, ethernet(udpPacket(16)), 14 + 44, "kfree_skb: NO_SOCKET at __udp4_lib_rcv+0x4bc");
  w.packet(raw, t + 2, ethernet(udpPacket(3)), 14 + 31, "ip_rcv: nftables table: filter, chain: input");
  w.packet(eth, t + 3, ethernet(udpPacket(300)).subarray(0, 100), 14 + 328, "kfree_skb: NETFILTER_DROP at nft_do_chain+0x47f [nf_tables]");
  await w.close();
  expect(w.failure).toBeUndefined();
  expect(w.packets).toBe(3);
}

describe("pcapng blocks", () => {
  test("section header, one interface description each, enhanced packets with comments", async () => {
    await sample(`${dir}/s.pcapng`);
    const bs = blocks(new Uint8Array(readFileSync(`${dir}/s.pcapng`)));
    expect(bs.map((b) => b.type)).toEqual([0x0a0d0d0a, 1, 1, 6, 6, 6]);
    expect(bs[0]!.body.getUint32(0, true)).toBe(0x1a2b3c4d);
    expect(bs[1]!.body.getUint16(0, true)).toBe(LINKTYPE_ETHERNET);
    expect(bs[2]!.body.getUint16(0, true)).toBe(LINKTYPE_ETHERNET);
    const third = bs[5]!.body;
    expect(third.getUint32(0, true)).toBe(0); // interface 0
    expect(third.getUint32(12, true)).toBe(100); // captured
    expect(third.getUint32(16, true)).toBe(342); // on the wire
  });

  test("the original length is never below the captured length", () => {
    const b = blocks(enhancedPacket(0, 0, new Uint8Array(10), 4, ""))[0]!.body;
    expect(b.getUint32(16, true)).toBe(10);
  });
});

describe.skipIf(!tool("tshark", "tshark"))("read by tshark", () => {
  test("every packet, its addresses, its comment and its interface", async () => {
    await sample(`${dir}/t.pcapng`);
    const out = await $`tshark -r ${dir}/t.pcapng -T fields -E separator=/t -e frame.interface_name -e ip.src -e ip.dst -e udp.dstport -e frame.len -e frame.cap_len -e frame.comment`.text();
    expect(out.trim().split("\n")).toEqual([
      "veth1\t10.0.0.1\t10.0.0.2\t53\t58\t58\tkfree_skb: NO_SOCKET at __udp4_lib_rcv+0x4bc",
      "veth0/ip_rcv\t10.0.0.1\t10.0.0.2\t53\t45\t45\tip_rcv: nftables table: filter, chain: input",
      "veth1\t10.0.0.1\t10.0.0.2\t53\t342\t100\tkfree_skb: NETFILTER_DROP at nft_do_chain+0x47f [nf_tables]",
    ]);
    const times = await $`tshark -r ${dir}/t.pcapng -T fields -e frame.time_epoch`.text();
    const t = Date.parse("2026-12-01T10:00:00Z") / 1000;
    expect(times.trim().split("\n").map((x) => Math.round((Number(x) - t) * 1e6))).toEqual([1, 2, 3]);
  }, 60_000);
});

describe.skipIf(!tool("tcpdump", "tcpdump"))("read by tcpdump", () => {
  test("every packet, from every interface", async () => {
    await sample(`${dir}/d.pcapng`);
    const out = await $`tcpdump -r ${dir}/d.pcapng -n -tt`.quiet();
    const lines = out.stdout.toString().trim().split("\n");
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).toMatch(/IP 10\.0\.0\.1\.5000 > 10\.0\.0\.2\.53: /);
  }, 60_000);
});

describe("to a FIFO (a live reader such as Wireshark)", () => {
  const fifo = (name: string) => {
    const path = `${dir}/${name}`;
    execFileSync("mkfifo", [path]);
    return path;
  };

  test("with no reader, the open fails at once (ENXIO) and says to start the reader", () => {
    const path = fifo("none");
    let error: unknown;
    try {
      new PcapngWriter(path);
    } catch (e) {
      error = e;
    }
    expect((error as NodeJS.ErrnoException).code).toBe("ENXIO");
    expect(openError(error)).toBe("a FIFO with no reader: start its reader first");
  });

  test("a reader that stops reading: packets and flushes return, close gives the rest up and says so", async () => {
    const path = fifo("stalled");
    const held = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK); // a reader that never reads
    try {
      const w = new PcapngWriter(path);
      const id = w.interfaceId("veth1", () => ({ name: "veth1", description: "", linktype: LINKTYPE_ETHERNET, snaplen: 2048 }));
      for (let i = 0; i < 2000; i++) w.packet(id, i, ethernet(udpPacket(1000)), 14 + 1028, "kfree_skb: NO_SOCKET");
      w.flush();
      expect(w.backedUp(0)).toBe(true);
      await w.close();
      expect(w.failure).toBeUndefined();
      expect(w.stalled).toMatch(/^--pcap .*stalled: its last \d+ KiB were not written \(its reader took nothing for 1 s after the stop\)$/);
    } finally {
      closeSync(held);
    }
  });

  test.skipIf(!tool("tshark", "tshark"))("read live by tshark: every packet arrives", async () => {
    const path = fifo("live");
    const reader = Bun.spawn(["tshark", "-r", path, "-T", "fields", "-e", "frame.comment"], { stdout: "pipe", stderr: "pipe" });
    // tshark opens the FIFO when it is ready; until then the open fails (ENXIO).
    let w: PcapngWriter | undefined;
    for (let i = 0; !w && i < 600; i++)
      try {
        w = new PcapngWriter(path);
      } catch {
        await Bun.sleep(50);
      }
    const id = w!.interfaceId("veth1", () => ({ name: "veth1", description: "", linktype: LINKTYPE_ETHERNET, snaplen: 2048 }));
    // Far more than the FIFO holds: the writer waits for tshark, in flushes and at close.
    for (let i = 0; i < 3000; i++) {
      w!.packet(id, i, ethernet(udpPacket(1000)), 14 + 1028, `packet ${i}`);
      if (i % 100 === 99) while (w!.backedUp(50));
    }
    await w!.close();
    expect(w!.stalled).toBeUndefined();
    expect(w!.failure).toBeUndefined();
    const comments = (await new Response(reader.stdout).text()).trim().split("\n");
    expect(await reader.exited).toBe(0);
    expect(comments).toEqual(Array.from({ length: 3000 }, (_, i) => `packet ${i}`));
  }, 60_000);
});
