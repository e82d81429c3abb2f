// Names of protocol numbers: ethertypes, IP protocols, TCP flags, ICMP
// and ICMPv6 types and codes. Shared by the text and JSON output and the
// diagnosis.

const TCP_FLAGS: [number, string][] = [[0x02, "S"], [0x10, "A"], [0x08, "P"], [0x04, "R"], [0x01, "F"], [0x20, "U"]];

function flagsText(flags: number): string {
  return TCP_FLAGS.filter(([bit]) => flags & bit).map(([, c]) => c).join("");
}

// Every value of the 8-bit flags field, made once: this runs per TCP event.
const TCP_FLAGS_TEXT = Array.from({ length: 256 }, (_, flags) => flagsText(flags));

export function tcpFlagsText(flags: number): string {
  return TCP_FLAGS_TEXT[flags] ?? flagsText(flags);
}

const L4_NAMES: Record<number, string> = {
  1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6", 132: "SCTP", 136: "UDPLite",
};

export const l4Name = (proto: number) => L4_NAMES[proto] ?? `proto ${proto}`;

export function l3Name(l3: number): string {
  switch (l3) {
    case 0x0800: return "IPv4";
    case 0x86dd: return "IPv6";
    case 0x0806: return "ARP";
    default: return l3 ? `ethertype 0x${l3.toString(16).padStart(4, "0")}` : "unknown";
  }
}

// Socket families (AF_*) and types (SOCK_*), the same numbers on every
// architecture Linux runs BPF on: they name an skb that has no network layer
// by the socket it belongs to ("unix stream socket").
const SOCKET_FAMILIES: Record<number, string> = {
  1: "unix", 2: "inet", 10: "inet6", 15: "pfkey", 16: "netlink", 17: "packet", 29: "can", 30: "tipc",
  31: "bluetooth", 38: "alg", 40: "vsock", 41: "kcm", 44: "xdp", 45: "mctp",
};
const SOCKET_TYPES: Record<number, string> = { 1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 6: "dccp", 10: "packet" };

export const socketFamilyName = (family: number) => SOCKET_FAMILIES[family] ?? `family ${family}`;
export const socketTypeName = (type: number) => SOCKET_TYPES[type] ?? `type ${type}`;

/** "unix stream socket", "netlink raw socket". */
export const socketText = (family: number, type: number) => `${socketFamilyName(family)} ${socketTypeName(type)} socket`;

export const ICMP_TYPES: Record<number, string> = {
  0: "ping reply", 3: "destination unreachable", 4: "source quench", 5: "redirect", 8: "ping request",
  11: "time exceeded", 12: "parameter problem", 13: "timestamp request", 14: "timestamp reply",
};
const ICMP_UNREACH: Record<number, string> = {
  0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
  4: "fragmentation needed", 5: "source route failed", 9: "net prohibited", 10: "host prohibited",
  13: "administratively prohibited",
};
export const ICMPV6_TYPES: Record<number, string> = {
  1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem",
  128: "ping request", 129: "ping reply", 133: "router solicitation", 134: "router advertisement",
  135: "neighbour solicitation", 136: "neighbour advertisement", 143: "multicast listener report",
};
const ICMPV6_UNREACH: Record<number, string> = {
  0: "no route", 1: "administratively prohibited", 3: "address unreachable", 4: "port unreachable",
};

/** "destination unreachable (port unreachable)", "time exceeded, code 1"… */
export function icmpTypeText(v6: boolean, type: number, code: number): string {
  const name = (v6 ? ICMPV6_TYPES : ICMP_TYPES)[type] ?? `type ${type}`;
  const unreach = v6 ? type === 1 : type === 3;
  const codeName = unreach ? (v6 ? ICMPV6_UNREACH : ICMP_UNREACH)[code] : undefined;
  return codeName ? `${name} (${codeName})` : code ? `${name}, code ${code}` : name;
}
