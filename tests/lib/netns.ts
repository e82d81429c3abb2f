// Real network topologies for kernel tests: namespaces joined by veth,
// with IPv4 and IPv6 addresses and optional nftables rules. Everything a
// test creates is removed by destroy(), which tests call in afterAll/finally.
import { $ } from "bun";

let counter = 0;

export class Netns {
  private constructor(readonly name: string) {}

  static async create(tag: string): Promise<Netns> {
    const name = `skbt-${process.pid}-${tag}-${counter++}`;
    await $`ip netns add ${name}`;
    const ns = new Netns(name);
    await ns.sh("ip link set lo up");
    return ns;
  }

  /** Runs a shell command inside the namespace; throws on failure. */
  sh(command: string) {
    return $`ip netns exec ${this.name} sh -c ${command}`.quiet();
  }

  /** Like sh(), but returns the exit code instead of throwing. */
  async try(command: string): Promise<number> {
    return (await $`ip netns exec ${this.name} sh -c ${command}`.nothrow().quiet()).exitCode;
  }

  /** Loads an nftables ruleset into this namespace. */
  async nft(ruleset: string): Promise<void> {
    await $`ip netns exec ${this.name} nft -f - < ${new Response(ruleset)}`.quiet();
  }

  /** Inode of the namespace, as --netns takes it. */
  async inode(): Promise<number> {
    return Number((await $`ip netns exec ${this.name} stat -L -c %i /proc/self/ns/net`.text()).trim());
  }

  async destroy(): Promise<void> {
    await $`ip netns del ${this.name}`.nothrow().quiet();
  }
}

export interface Host {
  ns: Netns;
  ip4: string;
  ip6: string;
  dev: string;
}

/** Two hosts on one link: a (10.X.0.1, fd00:X::1) and b (10.X.0.2, fd00:X::2). */
export class TwoHosts {
  private constructor(
    readonly a: Host,
    readonly b: Host,
  ) {}

  static async create(tag: string, subnet: number): Promise<TwoHosts> {
    const nsA = await Netns.create(`${tag}a`);
    const nsB = await Netns.create(`${tag}b`);
    try {
      await $`ip link add veth0 netns ${nsA.name} type veth peer name veth1 netns ${nsB.name}`.quiet();
      const a = { ns: nsA, ip4: `10.${subnet}.0.1`, ip6: `fd00:${subnet}::1`, dev: "veth0" };
      const b = { ns: nsB, ip4: `10.${subnet}.0.2`, ip6: `fd00:${subnet}::2`, dev: "veth1" };
      for (const h of [a, b])
        await h.ns.sh(`ip addr add ${h.ip4}/24 dev ${h.dev} && ip addr add ${h.ip6}/64 dev ${h.dev} nodad && ip link set ${h.dev} up`);
      // Resolve neighbours now: a first packet waiting for ARP/ND takes another path.
      await nsA.try(`ping -c1 -W1 ${b.ip4} && ping -6 -c1 -W1 ${b.ip6}`);
      return new TwoHosts(a, b);
    } catch (e) {
      await nsA.destroy();
      await nsB.destroy();
      throw e;
    }
  }

  async destroy(): Promise<void> {
    await this.a.ns.destroy();
    await this.b.ns.destroy();
  }
}

/** One UDP datagram from inside `from` (bash's /dev/udp: no extra tools). */
export function sendUdp(from: Netns, addr: string, port: number, payload = "skbtrail-test"): Promise<unknown> {
  return from.sh(`printf '%s' '${payload}' > /dev/udp/${addr}/${port}`);
}

/** A TCP connection attempt (SYN); the result does not matter to callers. */
export function connectTcp(from: Netns, addr: string, port: number): Promise<number> {
  return from.try(`timeout 3 bash -c 'exec 3<>/dev/tcp/${addr}/${port}'`);
}

/**
 * client (10.X.1.2) — router (10.X.1.1 | 10.X.2.1) — server (10.X.2.2), with
 * forwarding on the router and optional masquerade towards the server.
 */
export class Routed {
  private constructor(
    readonly client: Netns,
    readonly router: Netns,
    readonly server: Netns,
    readonly subnet: number,
  ) {}

  static async create(tag: string, subnet: number, opts: { masquerade?: boolean } = {}): Promise<Routed> {
    const client = await Netns.create(`${tag}c`);
    const router = await Netns.create(`${tag}r`);
    const server = await Netns.create(`${tag}s`);
    const t = new Routed(client, router, server, subnet);
    try {
      await $`ip link add veth0 netns ${client.name} type veth peer name in0 netns ${router.name}`.quiet();
      await $`ip link add out0 netns ${router.name} type veth peer name veth0 netns ${server.name}`.quiet();
      await client.sh(`ip addr add ${t.clientIp}/24 dev veth0 && ip link set veth0 up && ip route add default via 10.${subnet}.1.1`);
      await server.sh(`ip addr add ${t.serverIp}/24 dev veth0 && ip link set veth0 up && ip route add default via 10.${subnet}.2.1`);
      await router.sh(
        `ip addr add 10.${subnet}.1.1/24 dev in0 && ip addr add ${t.routerOutIp}/24 dev out0 && ip link set in0 up && ip link set out0 up && sysctl -qw net.ipv4.ip_forward=1`,
      );
      if (opts.masquerade)
        await router.nft(`table ip nat {
  chain post {
    type nat hook postrouting priority srcnat;
    oifname "out0" masquerade
  }
}`);
      return t;
    } catch (e) {
      await t.destroy();
      throw e;
    }
  }

  get clientIp(): string {
    return `10.${this.subnet}.1.2`;
  }
  get serverIp(): string {
    return `10.${this.subnet}.2.2`;
  }
  /** The router's address on the server side: what masquerade rewrites to. */
  get routerOutIp(): string {
    return `10.${this.subnet}.2.1`;
  }

  async destroy(): Promise<void> {
    await Promise.all([this.client.destroy(), this.router.destroy(), this.server.destroy()]);
  }
}
