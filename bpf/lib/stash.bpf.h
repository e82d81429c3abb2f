/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per thread and traced function, what an entry program saw (the skb, one
 * more argument, the packet context), for the return program of the same
 * call: the call may have freed the skb or changed what it points to.
 */
#ifndef SKBTRAIL_STASH_BPF_H
#define SKBTRAIL_STASH_BPF_H

struct stash_key {
	__u64 tid;
	__u64 func;
};

struct stash_value {
	__u64 skb;
	__u64 arg; /* e.g. nft_do_chain's chain */
	__u64 ctx; /* the entry's packet context (0: not recorded) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stash_key);
	__type(value, struct stash_value);
} stash SEC(".maps");

static __always_inline void stash_put(__u64 func, void *skb, void *arg, __u64 ctx_id)
{
	struct stash_key k = { .tid = bpf_get_current_pid_tgid(), .func = func };
	struct stash_value v = { .skb = (__u64)skb, .arg = (__u64)arg, .ctx = ctx_id };

	bpf_map_update_elem(&stash, &k, &v, BPF_ANY);
}

static __always_inline bool stash_take(__u64 func, struct stash_value *out)
{
	struct stash_key k = { .tid = bpf_get_current_pid_tgid(), .func = func };
	struct stash_value *v = bpf_map_lookup_elem(&stash, &k);

	if (!v)
		return false;
	*out = *v;
	bpf_map_delete_elem(&stash, &k);
	return true;
}

#endif /* SKBTRAIL_STASH_BPF_H */
