// SPDX-License-Identifier: GPL-2.0
/*
 * Tiny programs that tell which program and attach types the running
 * kernel accepts. TypeScript loads and attaches each one alone, then
 * closes it, before deciding which of skbtrail's real programs to load.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/kfree_skb")
int probe_tp_btf(void *ctx)
{
	return 0;
}

SEC("raw_tp/kfree_skb")
int probe_raw_tp(void *ctx)
{
	return 0;
}
