// A packet dropped by the routing decision (ip_error, ip6_pkt_drop) was
// refused by a route: an unreachable, blackhole, prohibit or throw route,
// no route at all, or forwarding turned off on the interface it came in
// on. The drop reason cannot tell these apart (and old kernels give none),
// so the route to the packet's destination is read from the routing table
// of its network namespace (`ip route show match`, the main table: policy
// rules are not looked at) and the finding names the kind of route.
// A packet dropped because the next hop never answered ARP/NDP is no routing
// problem: the same read names that next hop and its interface, and, when
// the queue of packets waiting for it overflowed, that queue's size.
import { netnsPath, runInNetns } from "./system";

/** Functions where a packet the routing decision refused is dropped. */
export const ROUTE_DROP_SITES = new Set(["ip_error", "ip6_pkt_drop"]);

export interface RouteQuery {
  netns: number;
  ipv6: boolean;
  daddr: string;
  /** The interface the packet came in on (forwarding is per interface). */
  ifname: string;
  /** Also read the MTU of the route's device (a packet too big for it). */
  mtu?: boolean;
  /** Also read the size of the route's device's queue of packets waiting for ARP/NDP (it overflowed). */
  queue?: boolean;
}

export interface RouteAnswer {
  /** The most specific matching route: its type ("unicast" for a normal one), destination, gateway and device; none when no route matches. */
  route?: { type: string; dst: string; gateway?: string; dev?: string };
  /** Whether the input interface forwards (undefined: not known). */
  forwarding?: boolean;
  /** The MTU of the route's device, when asked for. */
  mtu?: number;
  /** The route's device's unres_qlen_bytes, when asked for. */
  queueBytes?: number;
}

export const routeQueryKey = (q: RouteQuery) => `${q.netns} ${q.ipv6 ? 6 : 4} ${q.daddr} ${q.ifname} ${q.mtu ? "mtu" : ""} ${q.queue ? "queue" : ""}`;

/** Prefix length of a route's dst as `ip -j` prints it ("default", "10.0.0.0/24", "10.0.0.1"). */
function prefixLength(dst: string, ipv6: boolean): number {
  if (dst === "default") return 0;
  const slash = dst.indexOf("/");
  return slash < 0 ? (ipv6 ? 128 : 32) : Number(dst.slice(slash + 1));
}

/** The most specific of the routes `ip -j route show match` printed (the first of equals: the kernel's order). */
export function mostSpecific(json: string, ipv6: boolean): RouteAnswer["route"] {
  const routes = JSON.parse(json) as { type?: string; dst: string; gateway?: string; dev?: string }[];
  let best: (typeof routes)[number] | undefined;
  for (const r of routes) if (!best || prefixLength(r.dst, ipv6) > prefixLength(best.dst, ipv6)) best = r;
  return best && { type: best.type ?? "unicast", dst: best.dst, gateway: best.gateway, dev: best.dev };
}

/** Reads the route to the packet's destination, and whether its input interface forwards. */
export async function readRoute(q: RouteQuery): Promise<RouteAnswer | undefined> {
  const ns = netnsPath(q.netns);
  if (!ns || !/^[\w.:-]+$/.test(q.daddr)) return undefined;
  const family = q.ipv6 ? "-6" : "-4";
  const sysctl = q.ipv6 ? `/proc/sys/net/ipv6/conf/${q.ifname}/forwarding` : `/proc/sys/net/ipv4/conf/${q.ifname}/forwarding`;
  const [routes, forwarding] = await Promise.all([
    runInNetns(ns, ["ip", "-j", family, "route", "show", "match", q.daddr]),
    /^[\w.-]+$/.test(q.ifname) ? runInNetns(ns, ["cat", sysctl]) : undefined,
  ]);
  if (routes === undefined) return undefined;
  const route = mostSpecific(routes, q.ipv6);
  const dev = route?.dev && /^[\w.-]+$/.test(route.dev) ? route.dev : undefined;
  const [link, queue] = await Promise.all([
    q.mtu && dev ? runInNetns(ns, ["ip", "-j", "link", "show", "dev", dev]) : undefined,
    q.queue && dev ? runInNetns(ns, ["cat", `/proc/sys/net/ipv${q.ipv6 ? 6 : 4}/neigh/${dev}/unres_qlen_bytes`]) : undefined,
  ]);
  const mtu = link ? (JSON.parse(link) as { mtu?: number }[])[0]?.mtu : undefined;
  const queueBytes = queue === undefined ? NaN : Number(queue.trim());
  return { route, forwarding: forwarding === undefined ? undefined : forwarding.trim() !== "0", mtu, queueBytes: Number.isFinite(queueBytes) ? queueBytes : undefined };
}

/** The finding's words for a refusing route, or undefined when the route does not explain the drop. */
export function routeFinding(q: RouteQuery, a: RouteAnswer): { message: string; advice: string } | undefined {
  const ip = q.ipv6 ? "ip -6" : "ip";
  const where = `(in the packet's network namespace, ${q.netns})`;
  const r = a.route;
  if (!r)
    return {
      message: `no route to ${q.daddr}: the routing table has no route for it and no default route`,
      advice: `add a route or a default route ${where}: ${ip} route get ${q.daddr}; ${ip} route add default via GATEWAY (policy routing: ip rule show)`,
    };
  const refusing: Record<string, string> = {
    unreachable: "refuses it and answers ICMP host unreachable",
    prohibit: "refuses it and answers ICMP administratively prohibited (a route, not a firewall rule)",
    blackhole: "discards it silently",
    throw: "ends the lookup in this table, and no other table routes it",
  };
  if (refusing[r.type])
    return {
      message: `the route to ${q.daddr} is ${/^[aeiou]/.test(r.type) ? "an" : "a"} '${r.type}' route (${r.dst}): the host ${refusing[r.type]}`,
      advice: `see it ${where}: ${ip} route show ${r.dst}; if this traffic should pass, remove it: ${ip} route del ${r.type} ${r.dst}`,
    };
  if (a.forwarding === false) {
    const key = q.ipv6 ? `net.ipv6.conf.${q.ifname}.forwarding` : `net.ipv4.conf.${q.ifname}.forwarding`;
    return {
      message: `${q.daddr} is not an address of this host and forwarding is off on ${q.ifname} (${key} = 0): the host does not route it`,
      advice: `if this host should route it, turn forwarding on ${where}: sysctl -w ${key}=1 (all interfaces: sysctl -w net.ipv${q.ipv6 ? 6 : 4}.${q.ipv6 ? "conf.all.forwarding" : "ip_forward"}=1)`,
    };
  }
  return undefined;
}

/** The next hop (the route's gateway, else the destination itself), its device, and the words for its family. */
function nextHop(q: RouteQuery, a: RouteAnswer | undefined) {
  return { hop: a?.route?.gateway ?? q.daddr, dev: a?.route?.dev ?? q.ifname, ip: q.ipv6 ? "ip -6" : "ip", asked: q.ipv6 ? "neighbour solicitation (NDP)" : "ARP" };
}

/** The finding for a failed neighbour resolution: the next hop and its device. */
export function neighbourFinding(q: RouteQuery, a: RouteAnswer | undefined): { message: string; advice: string } {
  const { hop, dev, ip, asked } = nextHop(q, a);
  return {
    message: `neighbour resolution failed: ${hop} on ${dev} did not answer ${asked}, so the packet to ${q.daddr} could not be sent (not a routing problem)`,
    advice: `check that ${hop} is up and on ${dev}'s link (in the packet's network namespace, ${q.netns}): ${ip} neigh show ${hop} dev ${dev} (FAILED or INCOMPLETE); ping -c1 -I ${dev} ${hop}${q.ipv6 ? "" : `; arping -c1 -I ${dev} ${hop}`}; check cabling, VLAN and the next hop's firewall`,
  };
}

/** The finding for a packet dropped from the full queue of packets waiting for the next hop's link-layer address. */
export function neighbourQueueFinding(q: RouteQuery, a: RouteAnswer | undefined): { message: string; advice: string } {
  const { hop, dev, ip, asked } = nextHop(q, a);
  const key = `net.ipv${q.ipv6 ? 6 : 4}.neigh.${dev}.unres_qlen_bytes`;
  const size = a?.queueBytes !== undefined ? ` (${key} = ${a.queueBytes})` : "";
  return {
    message: `the queue of packets waiting for ${hop} on ${dev} to answer ${asked} was full${size}: the packet to ${q.daddr} was dropped to make room (not a routing problem)`,
    advice: `check that ${hop} answers (in the packet's network namespace, ${q.netns}): ${ip} neigh show ${hop} dev ${dev} (FAILED or INCOMPLETE); ping -c1 -I ${dev} ${hop}; if it answers but slowly under bursts, give the queue more room: sysctl -w ${key}=BYTES`,
  };
}

/** The finding for a packet too big for the next hop with Don't Fragment set: the MTU and the interface, when read. */
export function mtuFinding(q: RouteQuery, a: RouteAnswer | undefined, ipLen: number): { message: string; advice: string } | undefined {
  const dev = a?.route?.dev;
  if (!dev || !a?.mtu) return undefined;
  return {
    message: `packet too big: ${ipLen} bytes with Don't Fragment set do not fit the MTU ${a.mtu} of ${dev}, the interface towards ${q.daddr} (ICMP fragmentation needed sent)`,
    advice: `the path's MTU is ${a.mtu} at ${dev} (in the packet's network namespace, ${q.netns}: ip link show ${dev}; ip route get ${q.daddr}): lower the sender's MTU to it, or clamp TCP MSS (nft: tcp flags syn tcp option maxseg size set rt mtu), and let ICMP 'fragmentation needed' through firewalls`,
  };
}
