// The route that refused a packet, from `ip -j route show match` as iproute2 prints it.
import { describe, expect, test } from "bun:test";
import { mostSpecific, mtuFinding, neighbourFinding, neighbourQueueFinding, routeFinding } from "../../src/diagnosis/routes";

const q = { netns: 4026531840, ipv6: false, daddr: "10.5.0.1", ifname: "eth0" };

describe("routes", () => {
  test("the most specific matching route wins; a normal route has no type", () => {
    const json = JSON.stringify([{ dst: "default", gateway: "10.0.0.1" }, { type: "unreachable", dst: "10.5.0.0/16" }, { type: "blackhole", dst: "10.5.0.0/24" }, { dst: "10.4.0.0/14", dev: "eth1" }]);
    expect(mostSpecific(json, false)).toEqual({ type: "blackhole", dst: "10.5.0.0/24" });
    expect(mostSpecific(JSON.stringify([{ dst: "default" }, { dst: "10.5.0.1", dev: "eth1" }]), false)).toMatchObject({ type: "unicast", dst: "10.5.0.1", dev: "eth1" });
    expect(mostSpecific("[]", false)).toBeUndefined();
    expect(mostSpecific(JSON.stringify([{ dst: "10.5.0.0/24", gateway: "10.0.0.9", dev: "eth1" }]), false)).toEqual({ type: "unicast", dst: "10.5.0.0/24", gateway: "10.0.0.9", dev: "eth1" });
  });

  test("each refusing kind is named with the command that removes it; a normal route explains nothing unless forwarding is off", () => {
    expect(routeFinding(q, { route: { type: "prohibit", dst: "10.5.0.0/24" } })?.message).toBe("the route to 10.5.0.1 is a 'prohibit' route (10.5.0.0/24): the host refuses it and answers ICMP administratively prohibited (a route, not a firewall rule)");
    expect(routeFinding({ ...q, ipv6: true, daddr: "fd00::1" }, { route: { type: "unreachable", dst: "fd00::/64" } })?.advice).toContain("ip -6 route del unreachable fd00::/64");
    expect(routeFinding(q, {})?.message).toBe("no route to 10.5.0.1: the routing table has no route for it and no default route");
    expect(routeFinding(q, { route: { type: "unicast", dst: "default" }, forwarding: true })).toBeUndefined();
    expect(routeFinding(q, { route: { type: "unicast", dst: "default" }, forwarding: false })?.advice).toContain("sysctl -w net.ipv4.conf.eth0.forwarding=1");
  });

  test("a failed neighbour resolution names the next hop: the gateway, else the destination on its link", () => {
    expect(neighbourFinding(q, { route: { type: "unicast", dst: "10.5.0.0/24", gateway: "10.0.0.9", dev: "eth1" } }).message).toBe("neighbour resolution failed: 10.0.0.9 on eth1 did not answer ARP, so the packet to 10.5.0.1 could not be sent (not a routing problem)");
    expect(neighbourFinding({ ...q, ipv6: true, daddr: "fd00::5" }, undefined).message).toContain("fd00::5 on eth0 did not answer neighbour solicitation (NDP)");
  });

  test("a full queue of packets waiting for the next hop names it, and the queue's size once read", () => {
    const route = { type: "unicast", dst: "10.5.0.0/24", gateway: "10.0.0.9", dev: "eth1" };
    const full = neighbourQueueFinding(q, { route, queueBytes: 4096 });
    expect(full.message).toBe("the queue of packets waiting for 10.0.0.9 on eth1 to answer ARP was full (net.ipv4.neigh.eth1.unres_qlen_bytes = 4096): the packet to 10.5.0.1 was dropped to make room (not a routing problem)");
    expect(full.advice).toContain("sysctl -w net.ipv4.neigh.eth1.unres_qlen_bytes=BYTES");
    expect(neighbourQueueFinding({ ...q, ipv6: true, daddr: "fd00::5" }, undefined).message).toBe("the queue of packets waiting for fd00::5 on eth0 to answer neighbour solicitation (NDP) was full: the packet to fd00::5 was dropped to make room (not a routing problem)");
  });

  test("a packet too big names the MTU and the device of the route, once both are known", () => {
    expect(mtuFinding(q, { route: { type: "unicast", dst: "10.5.0.0/24", dev: "eth1" }, mtu: 1280 }, 1428)?.message).toBe("packet too big: 1428 bytes with Don't Fragment set do not fit the MTU 1280 of eth1, the interface towards 10.5.0.1 (ICMP fragmentation needed sent)");
    expect(mtuFinding(q, { route: { type: "unicast", dst: "10.5.0.0/24", dev: "eth1" } }, 1428)).toBeUndefined();
  });
});
