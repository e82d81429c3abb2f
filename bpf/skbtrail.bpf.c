// SPDX-License-Identifier: GPL-2.0
/*
 * skbtrail's kernel side. One object, many programs; TypeScript decides
 * which ones load (bpf_program__set_autoload) from what the running kernel
 * supports, before loading, because one program that fails to load aborts
 * the whole object.
 *
 *   include/  events.h (the one ABI definition), kernel_types.h (CO-RE types)
 *   lib/      ring buffer, counters, packet parsing and filters, record
 *             header, the entry/return stash, packet lifecycle core: no
 *             programs
 *   progs/    every SEC() program: drop monitor, tracepoints, functions,
 *             netfilter, --monitor, --sock
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

/* In a section of its own so TypeScript finds it at offset 0 of the map
 * ".rodata.cfg" and fills it in before load. */
const volatile struct skbtrail_config CFG SEC(".rodata.cfg") = {};

/* Cleared by TypeScript the moment a run stops (Session.switchOff): from
 * then on every program returns at once, so the hooks still waiting to be
 * detached in the background cost the traced traffic almost nothing. */
volatile __u32 TRACING SEC(".data.tracing") = 1;

/* Never read: gives every type of events.h BTF (types only used inside
 * functions get none), from which build.ts generates the TypeScript
 * layouts and constants. */
const volatile struct {
	enum event_version version;
	enum event_kind kind;
	enum hook_phase phase;
	enum packet_layers layers;
	enum stat_index stat;
	enum hook_flags hook_flags;
	enum hook_setting hook_setting;
	enum tracepoint_id tracepoint;
	enum event_flags event_flags;
	enum capture_link capture_link;
	enum capture_limits capture_limits;
	enum monitor_what monitor_what;
	enum rtt_bucket_bound rtt_bound;
	enum rtt_hist_index rtt_index;
	enum latency_slots latency_slots;
	enum rtt_log2_slots rtt_log2_slots;
	enum ct_seen ct_seen;
	enum sock_timer sock_timer;
	struct drop_event drop;
	struct nf_event nf;
	struct capture capture;
	struct monitor_event monitor;
	struct sock_event sock;
	struct latency_event latency;
	struct drop_count_key drop_count;
	struct nf_count_key nf_count;
	struct mon_count_key mon_count;
	struct print_key print_key;
	struct print_state print_state;
} TYPES_FOR_TYPESCRIPT;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

#include "lib/ringbuf.bpf.h"
#include "lib/counters.bpf.h"
#include "lib/packet.bpf.h"
#include "lib/record.bpf.h"
#include "lib/capture.bpf.h"
#include "lib/stash.bpf.h"
#include "lib/lifecycle.bpf.h"
#include "lib/sock.bpf.h"

#include "progs/drop.bpf.h"
/* build.ts compiles this file a second time with SKBTRAIL_DROP_ONLY into drop.bpf.o: every
 * start reads and opens its whole object, and --drop needs none of the programs below. */
#ifndef SKBTRAIL_DROP_ONLY
#include "progs/tracepoints.bpf.h"
#include "progs/functions.bpf.h"
#include "progs/netfilter.bpf.h"
#include "progs/monitor.bpf.h"
#include "progs/sock.bpf.h"
#endif
