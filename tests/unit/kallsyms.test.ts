import { expect, test } from "bun:test";
import { Symbolizer } from "../../src/kernel/kallsyms";

const KALLSYMS = [
  "ffffffff81000000 T _stext",
  "ffffffff81a12340 T __udp4_lib_rcv",
  "ffffffff81a13000 t udp_queue_rcv_skb",
  "ffffffff81b00000 D some_data",
  "ffffffff81a10000 W weak_fn",
  "ffffffffc0a01000 t nft_do_chain\t[nf_tables]",
  "ffffffffc0a02000 t nft_immediate_eval\t[nf_tables]",
  "0000000000000000 T hidden_when_not_root",
  "",
].join("\n");

test("addresses become func+0xoff, with [module] for module code", () => {
  const s = new Symbolizer(KALLSYMS);
  expect(s.format(0xffffffff, 0x81a126e2)).toBe("__udp4_lib_rcv+0x3a2");
  expect(s.format(0xffffffff, 0xc0a0147f)).toBe("nft_do_chain+0x47f [nf_tables]");
  expect(s.format(0xffffffff, 0x81a10004)).toBe("weak_fn+0x4");
  expect(s.format(0xffffffff, 0x81a13000)).toBe("udp_queue_rcv_skb+0x0");
});

test("data symbols and hidden (zero) addresses are not used; unknown addresses stay hex", () => {
  const s = new Symbolizer(KALLSYMS);
  expect(s.size).toBe(6);
  expect(s.format(0xffffffff, 0x80000000)).toBe("0xffffffff80000000");
  expect(s.format(0x00007fff, 0x12345678)).toBe("0x00007fff12345678");
});
