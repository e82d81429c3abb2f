// Compiles the user's filters into struct skbtrail_config, the read-only
// data of the BPF object: the kernel evaluates them before anything is
// written to the ring, and the verifier drops the code of unused ones.
import { layout } from "../abi/layout.generated";
import { shown, usageError } from "../common/errors";

/** An address filter: bytes, prefix length, family. */
export interface AddrFilter {
  text: string;
  family: 4 | 6;
  bytes: Uint8Array; // 16 bytes, IPv4 in the first 4
  prefix: number;
}

/** What the kernel filters packets on (the command line's filter flags). */
export interface Filter {
  saddr?: AddrFilter;
  daddr?: AddrFilter;
  addr?: AddrFilter;
  sport?: number;
  dport?: number;
  port?: number;
  proto?: { name: string; l3?: number; l4?: number };
  netns?: number;
  netnsCurrent?: boolean;
  pid?: number;
  pktLen?: [number, number];
  tcpFlags?: number;
  ifname?: string;
  mark?: { value: number; mask: number };
}

const C = layout.skbtrail_config.fields;
const A = layout.addr_filter.fields;

export interface ConfigInput {
  filter: Filter;
  /** netns inode --netns-current resolved to */
  currentNetns?: number;
  /** enum skb_drop_reason values to keep; empty or absent: all */
  reasonValues?: number[];
  dropStack?: boolean;
  wakeupBytes: number;
  pktFixed?: boolean;
  traceRet?: boolean;
  /** kprobes without attach cookies: the programs name the function by its IP (bpf/lib/stash.bpf.h). */
  funcByIp?: boolean;
  /** Some hooks have settings in the hook_flags map (stacks). */
  hookSettings?: boolean;
  /** --hooks: record the functions registered on each netfilter hook. */
  nfHooks?: boolean;
  /** --pcap: bytes of each packet to copy after its record; 0 or absent: none. */
  snaplen?: number;
  /** --func-stats: count calls per hook, write no records. */
  funcStats?: boolean;
  /** --rate-limit: records per second. */
  rateLimit?: number;
  /** --monitor's settings (bpf/progs/monitor.bpf.h). */
  monitor?: MonitorConfig;
  /** RTT samples kept (--monitor, --sock); 0 or absent: no threshold. */
  rttThresholds?: RttThresholds;
  /** What becomes of the RTT samples kept (--monitor, --sock); absent: nothing. */
  rttSamples?: RttSamples;
  /** --latency: measure paths in the kernel (bpf/lib/latency.bpf.h). */
  latency?: LatencyConfig;
  /** --trace-noclone: a clone does not join its packet. */
  noClone?: boolean;
  /** --trace-matcher (lifecycles): only hooks with SETTING_MATCH start a packet. */
  hasMatcher?: boolean;
}

export interface LatencyConfig {
  /** Packets at or above this are reported (or counted with `summary`). */
  minNs: number;
  /** --latency-free: the end hook's time counts. */
  countFree: boolean;
  /** --latency-summary: a histogram in the kernel, no records. */
  summary: boolean;
  /** --trace-free: hooks marked SETTING_END end measurements; frees only forget them. */
  customEnd: boolean;
}

/** --tcp-rtt, --tcp-srtt (--filter-srtt), --filter-minrtt: thresholds on RTT samples, ms. */
export interface RttFilter {
  rttMinMs?: number;
  srttMinMs?: number;
  minRttMinMs?: number;
}

export const hasRttFilter = (f: RttFilter) => f.rttMinMs !== undefined || f.srttMinMs !== undefined || f.minRttMinMs !== undefined;

export function rttThresholds(f: RttFilter): RttThresholds {
  const us = (ms?: number) => Math.round((ms ?? 0) * 1000);
  return { rttUs: us(f.rttMinMs), srttUs: us(f.srttMinMs), minRttUs: us(f.minRttMinMs) };
}

/** Thresholds on tcp:tcp_probe's RTT samples, in µs. */
export interface RttThresholds {
  rttUs: number;
  srttUs: number;
  /** The connection's minimum RTT (--sock only). */
  minRttUs?: number;
}

export interface RttSamples {
  /** Counted in the kernel's histogram (--monitor: mon_rtt for /metrics; --sock --rtt: sock_rtt). */
  histogram: boolean;
  /** Written as records (--monitor: those over the thresholds; --sock: tcp_probe's, unless --rtt alone). */
  events: boolean;
}

export interface MonitorConfig {
  /** enum skb_drop_reason values whose drops are printed (the others are counted only). */
  printedReasons: number[];
  /** A key quiet this long on a CPU is printed again. */
  aggregateNs: number;
  /** [start, end) of nf_hook_slow, to find its caller in a drop's stack; undefined: unknown. */
  nfHookSlow?: [bigint, bigint];
  /** This kernel's NETFILTER_DROP; undefined: it has no drop reasons. */
  nfDropReason?: number;
  /** nft_do_chain is hooked: a netfilter drop's table and chain can be read. */
  nftHooked: boolean;
  /** enum tcp_ca_state's TCP_CA_Loss. */
  caLoss: number;
}

/** Whether any packet filter is set (the kernel skips parsing for --func-stats without one). */
export function hasFilters(f: Filter, currentNetns?: number): boolean {
  return Object.values(f).some((v) => v !== undefined && v !== false) || currentNetns !== undefined;
}

function setBits(target: Uint8Array, at: number, values: number[]): void {
  for (const r of values) {
    if (r >= 256) continue;
    target[at + Math.floor(r / 64) * 8 + Math.floor((r % 64) / 8)]! |= 1 << (r % 8);
  }
}

function writeAddr(view: DataView, at: number, f: AddrFilter | undefined): void {
  if (!f) return;
  const bytes = new Uint8Array(view.buffer, view.byteOffset + at, layout.addr_filter.size);
  bytes.set(f.bytes, A.addr.offset);
  for (let bit = 0; bit < f.prefix; bit++) bytes[A.mask.offset + (bit >> 3)]! |= 0x80 >> (bit & 7);
  bytes[A.family.offset] = f.family;
}

/** Fills `target` (the CFG bytes, exactly one struct skbtrail_config). */
export function writeConfig(target: Uint8Array, input: ConfigInput): void {
  if (target.length !== layout.skbtrail_config.size)
    throw new Error(`.rodata.cfg is ${target.length} bytes, expected ${layout.skbtrail_config.size}: stale layout`);
  target.fill(0);
  const v = new DataView(target.buffer, target.byteOffset, target.byteLength);
  const f = input.filter;
  writeAddr(v, C.saddr.offset, f.saddr);
  writeAddr(v, C.daddr.offset, f.daddr);
  writeAddr(v, C.addr.offset, f.addr);
  v.setUint16(C.sport.offset, f.sport ?? 0, true);
  v.setUint16(C.dport.offset, f.dport ?? 0, true);
  v.setUint16(C.port.offset, f.port ?? 0, true);
  v.setUint16(C.l3_proto.offset, f.proto?.l3 ?? 0, true);
  if (f.proto?.l4 !== undefined) {
    v.setUint8(C.l4_proto.offset, f.proto.l4);
    v.setUint8(C.has_l4_proto.offset, 1);
  }
  v.setUint8(C.tcp_flags.offset, f.tcpFlags ?? 0);
  v.setUint8(C.drop_stack.offset, input.dropStack ? 1 : 0);
  v.setUint32(C.netns.offset, f.netns ?? (f.netnsCurrent ? input.currentNetns! : 0), true);
  v.setUint32(C.pid.offset, f.pid ?? 0, true);
  if (f.pktLen) {
    v.setUint32(C.pkt_len_min.offset, f.pktLen[0], true);
    v.setUint32(C.pkt_len_max.offset, f.pktLen[1], true);
  }
  if (f.mark) {
    v.setUint32(C.mark.offset, f.mark.value, true);
    v.setUint32(C.mark_mask.offset, f.mark.mask, true);
  }
  if (f.ifname) target.set(new TextEncoder().encode(f.ifname), C.ifname.offset);
  if (input.reasonValues?.length) {
    setBits(target, C.reasons.offset, input.reasonValues);
    v.setUint8(C.has_reasons.offset, 1);
  }
  v.setUint8(C.pkt_fixed.offset, input.pktFixed ? 1 : 0);
  v.setUint8(C.trace_ret.offset, input.traceRet ? 1 : 0);
  v.setUint32(C.func_by_ip.offset, input.funcByIp ? 1 : 0, true);
  v.setUint8(C.hook_settings.offset, input.hookSettings ? 1 : 0);
  v.setUint8(C.nf_hooks.offset, input.nfHooks ? 1 : 0);
  v.setUint16(C.snaplen.offset, input.snaplen ?? 0, true);
  v.setUint32(C.wakeup_bytes.offset, input.wakeupBytes, true);
  v.setUint8(C.func_stats.offset, input.funcStats ? 1 : 0);
  v.setUint8(C.has_filters.offset, hasFilters(f, input.currentNetns) ? 1 : 0);
  v.setUint32(C.rate_limit.offset, input.rateLimit ?? 0, true);
  const m = input.monitor;
  if (m) {
    setBits(target, C.printed_reasons.offset, m.printedReasons);
    v.setBigUint64(C.aggregate_ns.offset, BigInt(Math.round(m.aggregateNs)), true);
    if (m.nfHookSlow) {
      v.setBigUint64(C.nf_hook_slow.offset, m.nfHookSlow[0], true);
      v.setBigUint64(C.nf_hook_slow.offset + 8, m.nfHookSlow[1], true);
    }
    v.setUint32(C.nf_drop_reason.offset, m.nfDropReason ?? 0, true);
    v.setUint32(C.nft_hooked.offset, m.nftHooked ? 1 : 0, true);
    v.setUint8(C.ca_loss.offset, m.caLoss);
  }
  const lat = input.latency;
  if (lat) {
    v.setBigUint64(C.latency_min_ns.offset, BigInt(Math.round(lat.minNs)), true);
    v.setUint8(C.latency.offset, 1);
    v.setUint8(C.latency_free.offset, lat.countFree ? 1 : 0);
    v.setUint8(C.latency_summary.offset, lat.summary ? 1 : 0);
    v.setUint8(C.latency_custom_end.offset, lat.customEnd ? 1 : 0);
  }
  v.setUint8(C.no_clone.offset, input.noClone ? 1 : 0);
  v.setUint8(C.has_matcher.offset, input.hasMatcher ? 1 : 0);
  v.setUint8(C.rtt_hist.offset, input.rttSamples?.histogram ? 1 : 0);
  v.setUint8(C.rtt_events.offset, input.rttSamples?.events ? 1 : 0);
  const rtt = input.rttThresholds;
  if (rtt) {
    v.setUint32(C.rtt_min_us.offset, rtt.rttUs, true);
    v.setUint32(C.srtt_min_us.offset, rtt.srttUs, true);
    v.setUint32(C.minrtt_min_us.offset, rtt.minRttUs ?? 0, true);
  }
}

/** Turns --reason names into this kernel's enum values (names differ in number between kernels). */
export function resolveReasons(names: string[], reasons: Map<number, string>): number[] {
  if (!names.length) return [];
  if (!reasons.size) throw usageError("--reason: this kernel reports no drop reasons (added in Linux 5.17); remove --reason");
  const byName = new Map([...reasons].map(([v, n]) => [n, v]));
  return names.map((name) => {
    const value = byName.get(name.replace(/^SKB_DROP_REASON_/, ""));
    if (value === undefined || value >= 256) {
      const close = [...byName.keys()].filter((n) => n.includes(name) || name.includes(n)).slice(0, 3);
      throw usageError(`--reason: this kernel has no drop reason '${shown(name)}'${close.length ? `; did you mean ${close.join(", ")}?` : "; skbtrail --drop shows the reasons that occur"}`);
    }
    return value;
  });
}
