// Facts read by name from the running kernel's BTF, because their numbers
// and shapes differ between kernels: enums (drop reasons, reset reasons)
// and the arguments of tracepoints.
import { Kind, type Btf } from "./btf";

/** Names of an enum's values, value → name with `prefix` removed. */
export function enumNames(btf: Btf, name: string, prefix: RegExp): Map<number, string> {
  const [id] = btf.find(name, Kind.ENUM);
  if (id === undefined) return new Map();
  return new Map([...btf.enumValues(id)].map(([k, v]) => [v, k.replace(prefix, "")]));
}

/** enum skb_drop_reason of this kernel: value → name without SKB_DROP_REASON_ (empty before 5.17). */
export function dropReasons(btf: Btf): Map<number, string> {
  return enumNames(btf, "skb_drop_reason", /^SKB_DROP_REASON_/);
}

/** enum sk_rst_reason (6.10+): value → name without SK_RST_REASON_. */
export function resetReasons(btf: Btf): Map<number, string> {
  return enumNames(btf, "sk_rst_reason", /^SK_RST_REASON_/);
}

/** Arguments of a tracepoint, from its btf_trace_<name> typedef (without the leading ctx). */
export function tracepointParams(btf: Btf, name: string): string[] | undefined {
  const [id] = btf.find(`btf_trace_${name}`, Kind.TYPEDEF);
  if (id === undefined) return undefined;
  const ptr = btf.resolve(btf.sizeOrType(id));
  const proto = btf.sizeOrType(ptr);
  if (btf.kind(ptr) !== Kind.PTR || btf.kind(proto) !== Kind.FUNC_PROTO) return undefined;
  return btf.params(proto).slice(1).map((p) => btf.typeString(p.type));
}

/** The TCP states (TCP_ESTABLISHED…), value → name without TCP_: an anonymous enum, found by its first member. */
export function tcpStates(btf: Btf): Map<number, string> {
  for (const id of btf.enumsWithMember("TCP_ESTABLISHED")) {
    const values = btf.enumValues(id);
    if (values.get("TCP_ESTABLISHED") === 1 && values.has("TCP_SYN_SENT"))
      return new Map([...values].filter(([k]) => k !== "TCP_MAX_STATES").map(([k, v]) => [v, k.replace(/^TCP_/, "")]));
  }
  return new Map();
}

/** enum tcp_ca_state's TCP_CA_Loss (a retransmission timeout puts the socket there). */
export function tcpCaLoss(btf: Btf): number | undefined {
  const [id] = btf.find("tcp_ca_state", Kind.ENUM);
  return id === undefined ? undefined : btf.enumValues(id).get("TCP_CA_Loss");
}

/** enum tcp_ca_state: value → "CA_Open", "CA_Loss"… (nettrace's words). */
export function tcpCaStates(btf: Btf): Map<number, string> {
  return enumNames(btf, "tcp_ca_state", /^TCP_/);
}
