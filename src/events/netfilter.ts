// Netfilter's numbers by name: protocol families (NFPROTO_*), the hooks of
// each family (the same number means another hook in bridge, arp and
// netdev), and verdicts. include/uapi/linux/netfilter*.h.

export const NFPROTO = { INET: 1, IPV4: 2, ARP: 3, NETDEV: 5, BRIDGE: 7, IPV6: 10 } as const;

/** NFPROTO_* → the family as nft writes it. */
export const NF_FAMILIES: Record<number, string> = { 1: "inet", 2: "ipv4", 3: "arp", 5: "netdev", 7: "bridge", 10: "ipv6" };

/** nft's family keyword of a table of this NFPROTO (ipv4 tables are "ip"). */
export const NFT_FAMILIES: Record<number, string> = { 1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6" };

// Hook names per family, in the kernel's numbering.
const INET_HOOKS = ["PRE_ROUTING", "INPUT", "FORWARD", "OUTPUT", "POST_ROUTING", "INGRESS"];
const BRIDGE_HOOKS = ["PRE_ROUTING", "INPUT", "FORWARD", "OUTPUT", "POST_ROUTING", "BROUTING"];
const ARP_HOOKS = ["IN", "OUT", "FORWARD"];
const NETDEV_HOOKS = ["INGRESS", "EGRESS"];

function hooksOf(family: number): string[] {
  switch (family) {
    case NFPROTO.ARP: return ARP_HOOKS;
    case NFPROTO.NETDEV: return NETDEV_HOOKS;
    case NFPROTO.BRIDGE: return BRIDGE_HOOKS;
    default: return INET_HOOKS;
  }
}

/** Every hook name rules may use (nf_hook: INPUT, IN, INGRESS, BROUTING…). */
export const NF_HOOK_NAMES = [...new Set([...INET_HOOKS, ...BRIDGE_HOOKS, ...ARP_HOOKS, ...NETDEV_HOOKS])];

/** The hook's name in its family: hook 1 is INPUT for ipv4, OUT for arp, EGRESS for netdev. */
export function nfHookName(family: number, hook: number): string {
  return hooksOf(family)[hook] ?? `hook ${hook}`;
}

const NFT_ARP_HOOKS: Record<string, string> = { IN: "input", OUT: "output" };

/** The hook as nft's chain definitions write it ("input", "prerouting", "ingress"…): arp's IN and OUT are "input" and "output". */
export function nftHookName(family: number, hook: number): string {
  const name = nfHookName(family, hook);
  return (family === NFPROTO.ARP && NFT_ARP_HOOKS[name]) || name.toLowerCase().replace("_", "");
}

/** Netfilter verdicts; the low byte of a verdict. */
export const NF_VERDICTS = ["NF_DROP", "NF_ACCEPT", "NF_STOLEN", "NF_QUEUE", "NF_REPEAT", "NF_STOP"];

/**
 * A hook's verdict by what it did to the packet. Since Linux 6.8 a chain
 * that drops frees the packet itself (NF_DROP_REASON: kfree_skb_reason, then
 * NF_STOLEN with the errno in the upper 16 bits); before, it returned NF_DROP
 * (its errno, if any, in the same bits) and nf_hook_slow freed it. Both are
 * a drop by the chain: rules and notes say NF_DROP for either.
 */
export function nfVerdict(v: number): string {
  const code = NF_VERDICTS[v & 0xff] ?? `verdict ${v}`;
  return code === "NF_STOLEN" && v >>> 16 !== 0 ? "NF_DROP" : code;
}
