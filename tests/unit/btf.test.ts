// The BTF reader on a small committed blob (tests/fixtures/btf/kernel-like.c).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Btf, Kind } from "../../src/kernel/btf";
import { dropReasons, tracepointParams } from "../../src/kernel/btf-facts";

const btf = Btf.parse(new Uint8Array(readFileSync(`${import.meta.dir}/../fixtures/btf/kernel-like.btf`)));

test("drop reasons are read by name, without the SKB_DROP_REASON_ prefix", () => {
  const reasons = dropReasons(btf);
  expect(reasons.get(3)).toBe("NO_SOCKET");
  expect(reasons.get(12)).toBe("NETFILTER_DROP");
  expect(reasons.get(1)).toBe("SKB_CONSUMED");
});

test("tracepoint arguments come from the btf_trace_ typedef, without the context argument", () => {
  expect(tracepointParams(btf, "kfree_skb")).toEqual(["struct sk_buff *", "void *", "enum skb_drop_reason", "struct sock *"]);
  expect(tracepointParams(btf, "consume_skb")).toEqual(["struct sk_buff *", "void *"]);
  expect(tracepointParams(btf, "no_such_tracepoint")).toBeUndefined();
});

test("function prototypes, through typedefs and qualifiers", () => {
  const [fn] = btf.find("tcp_v4_do_rcv", Kind.FUNC);
  const params = btf.params(btf.sizeOrType(fn!));
  expect(params.map((p) => [p.name, btf.typeString(p.type)])).toEqual([["sk", "struct sock *"], ["skb", "struct sk_buff *"]]);
  const [td] = btf.find("takes_typedef", Kind.FUNC);
  expect(btf.typeString(btf.params(btf.sizeOrType(td!))[0]!.type)).toBe("struct sk_buff *");
  const [ip] = btf.find("ip_rcv", Kind.FUNC);
  expect(btf.params(btf.sizeOrType(ip!)).map((p) => btf.typeString(p.type))).toEqual(["struct sk_buff *", "struct net_device *", "void *", "struct net_device *"]);
});

test("struct members and sizes", () => {
  const [skb] = btf.find("sk_buff", Kind.STRUCT);
  expect(btf.size(skb!)).toBe(24);
  expect(btf.members(skb!).map((m) => [m.name, m.bitOffset / 8, btf.size(m.type)])).toEqual([["next", 0, 8], ["len", 8, 4], ["protocol", 12, 2], ["head", 16, 8]]);
  expect(btf.find("sk_buff", Kind.FUNC)).toEqual([]);
});

test("the name index (built after a few look-ups) and the byte scan agree", () => {
  const fresh = Btf.parse(new Uint8Array(readFileSync(`${import.meta.dir}/../fixtures/btf/kernel-like.btf`)));
  const names = ["sk_buff", "ip_rcv", "skb_drop_reason", "nope", "sock", "btf_trace_kfree_skb", "kfree_skb_hook", "tcp_v4_do_rcv"];
  const scanned = names.map((n) => fresh.find(n)); // 8 look-ups: by scanning
  expect(names.map((n) => fresh.find(n))).toEqual(scanned); // now through the index
  expect(fresh.find("nope")).toEqual([]);
});

test("garbage is rejected", () => {
  expect(() => Btf.parse(new Uint8Array(64))).toThrow(/not BTF data/);
});
