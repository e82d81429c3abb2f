// The fixtures of kernel tests, in one place: real topologies (namespaces
// joined by veth, IPv4 and IPv6 addresses), nftables chains that drop or
// mark, servers, and traffic. Servers are tests/lib/serve.ts and traffic is
// tests/lib/send.ts, both Bun, run inside a namespace. Everything a test
// creates is removed by destroy() or Server.stop(), which tests call in
// afterAll/finally.
import { $, type Subprocess } from "bun";
import { scaled } from "./skbtrail";

const LIB = import.meta.dir;
let counter = 0;

/** An nftables chain of a test: `type filter hook HOOK`, policy accept, these rules. */
export interface Chain {
  /** The table's family: inet unless given. */
  family?: "inet" | "ip" | "ip6" | "bridge" | "arp" | "netdev";
  table: string;
  chain: string;
  hook: "prerouting" | "input" | "forward" | "output" | "postrouting" | "ingress";
  /** The device of a netdev-family chain. */
  device?: string;
  priority?: number;
  /** nft rule statements, e.g. "udp dport 7777 drop". */
  rules: string[];
}

export interface UdpOptions {
  sport?: number;
  /** Source address (one of the namespace's, possibly a spoofed extra one). */
  from?: string;
  /** Payload bytes (16 by default). */
  size?: number;
  count?: number;
  /** Wait for a datagram back; the exit code says whether it came. */
  reply?: boolean;
  /** Connect the socket first: the kernel reports ICMP errors to a connected socket (ECONNREFUSED). */
  connect?: boolean;
}

/** A process listening inside a namespace (serve.ts), until stop(). */
export class Server {
  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {}
  get pid(): number {
    return this.proc.pid;
  }
  /** Runs all its threads on that CPU only (see Netns.tcp's `cpu`). */
  async pin(cpu: number): Promise<void> {
    await $`taskset -a -p -c ${cpu} ${this.pid}`.quiet();
  }
  async stop(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.exited;
  }
}

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

  /** Adds filter chains (tables of the same name merge). */
  async chains(...chains: Chain[]): Promise<void> {
    await this.nft(
      chains
        .map((c) => `table ${c.family ?? "inet"} ${c.table} {\n  chain ${c.chain} {\n    type filter hook ${c.hook}${c.device ? ` device "${c.device}"` : ""} priority ${c.priority ?? 0}; policy accept;\n${c.rules.map((r) => `    ${r}\n`).join("")}  }\n}\n`)
        .join(""),
    );
  }

  /** Starts serve.ts here (see there for MODE and ARGS) and waits until it listens. */
  async serve(mode: "udp" | "tcp" | "udp-full" | "udp-filtered" | "tcp-full" | "packet" | "packet-read", ...args: (string | number)[]): Promise<Server> {
    const proc = Bun.spawn(["ip", "netns", "exec", this.name, "bun", `${LIB}/serve.ts`, mode, ...args.map(String)], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const server = new Server(proc);
    const first = await proc.stdout.getReader().read();
    if (!new TextDecoder().decode(first.value).includes("listening")) {
      await server.stop();
      throw new Error(`serve.ts ${mode} ${args.join(" ")} in ${this.name} did not start: ${await new Response(proc.stderr).text()}`);
    }
    return server;
  }

  /** UDP datagrams from here (send.ts); the exit code (0 sent, and answered with `reply`). */
  async udp(daddr: string, dport: number, o: UdpOptions = {}): Promise<number> {
    const args = ["udp", daddr, String(dport)];
    if (o.sport !== undefined) args.push("--sport", String(o.sport));
    if (o.from) args.push("--from", o.from);
    if (o.size !== undefined) args.push("--size", String(o.size));
    if (o.count !== undefined) args.push("--count", String(o.count));
    if (o.reply) args.push("--reply");
    if (o.connect) args.push("--connect");
    return this.bun("send.ts", args);
  }

  /**
   * A TCP connection from here (send.ts): 0 when it was accepted (and, with a message, answered and closed);
   * `connectMs`: give up connecting after that long; `cpu`: run on that CPU only (its packets are then
   * handled there: what per-CPU state in the kernel sees).
   */
  tcp(daddr: string, dport: number, o: { message?: string; connectMs?: number; cpu?: number } = {}): Promise<number> {
    const more = [...(o.message !== undefined ? ["--message", o.message] : []), ...(o.connectMs !== undefined ? ["--connect-ms", String(o.connectMs)] : [])];
    return this.bun("send.ts", ["tcp", daddr, String(dport), ...more], o.cpu);
  }

  /**
   * One ping (extra ping arguments in `flags`); its exit code. It waits for
   * the reply (scaled for VMs: a socket gone when the reply comes makes a
   * drop), or 1 s when `answered` is false (the echo is meant to die).
   */
  ping(addr: string, flags = "", answered = true): Promise<number> {
    const wait = answered ? Math.ceil(scaled(2_000) / 1000) : 1;
    return this.try(`ping ${addr.includes(":") ? "-6 " : ""}-c1 -W${wait} ${flags} ${addr}`);
  }

  /** Starts `bun tests/lib/SCRIPT ARGS` here, stdin a pipe (send.ts --wait): for tests that need its pid. */
  spawn(script: string, args: string[]): Subprocess<"pipe", "ignore", "inherit"> {
    return Bun.spawn(["ip", "netns", "exec", this.name, "bun", `${LIB}/${script}`, ...args], { stdin: "pipe", stdout: "ignore", stderr: "inherit" });
  }

  private async bun(script: string, args: string[], cpu?: number): Promise<number> {
    const pin = cpu === undefined ? [] : ["taskset", "-c", String(cpu)];
    const r = await $`ip netns exec ${this.name} ${pin} bun ${`${LIB}/${script}`} ${args}`.nothrow().quiet();
    // Refused or unanswered is often the point; anything else is worth seeing when a test fails.
    if (r.exitCode !== 0 && !/ECONNREFUSED|Failed to connect|no (reply|answer|connection) within/.test(r.stderr.toString())) console.error(`${script} ${args.join(" ")} in ${this.name}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
    return r.exitCode;
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
      await nsA.ping(b.ip4);
      await nsA.ping(b.ip6);
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

/** A TCP connection attempt (SYN); the result does not matter to callers. */
export function connectTcp(from: Netns, addr: string, port: number): Promise<number> {
  return from.tcp(addr, port);
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
      // Resolve neighbours now: a first packet waiting for ARP takes another path.
      await client.ping(t.serverIp);
      if (opts.masquerade) await router.nft(`table ip nat {\n  chain post {\n    type nat hook postrouting priority srcnat;\n    oifname "out0" masquerade\n  }\n}\n`);
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
