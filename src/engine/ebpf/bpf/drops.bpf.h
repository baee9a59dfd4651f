/* Packets the kernel dropped, by owning socket and the kernel's reason: the
 * skb:kfree_skb tracepoint, which says why since Linux 5.17. It fires only for freed
 * packets (delivered ones go through consume_skb), so it costs counting nothing. */
#pragma once

#include "socket_ends.bpf.h"

struct drop_key {
	__u64 cookie;
	__u32 reason; /* the kernel's enum skb_drop_reason; userspace names it from BTF */
	__u32 pad;
};

struct drop_count {
	__u64 packets;
	__u64 bytes;
	struct ends ends;
	__u16 near_port;
	__u16 far_port;
	__u32 netns;
	__u32 ifindex; /* the route's device, where the socket has one */
	__u16 protocol;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, struct drop_count);
} drops SEC(".maps");

/* Reasons below this one mean "not dropped" (SKB_NOT_DROPPED_YET, SKB_CONSUMED): set
 * by userspace from the kernel's BTF, as the numbering differs between kernels. */
const volatile __u32 first_drop_reason = 0;

/* The tracepoint's record. `reason` came with 5.17 (without it the program does not
 * load: older kernels' kfree_skb also fires for packets that were not dropped);
 * `rx_sk`, the socket a received packet was for, with 6.12. */
enum skb_drop_reason { SKB_DROP_REASON_LOCAL_PLACEHOLDER };
struct trace_event_raw_kfree_skb {
	void *skbaddr;
	void *rx_sk;
	enum skb_drop_reason reason;
} __attribute__((preserve_access_index));

SEC("tracepoint/skb/kfree_skb")
int drops_on_free(void *ctx)
{
	struct trace_event_raw_kfree_skb *record = ctx;
	__u32 reason = 0;
	bpf_probe_read_kernel(&reason, sizeof(reason), ctx + bpf_core_field_offset(record->reason));
	if (reason < first_drop_reason)
		return 0;
	struct sk_buff *skb = 0;
	bpf_probe_read_kernel(&skb, sizeof(skb), ctx + bpf_core_field_offset(record->skbaddr));
	struct sock *sk = BPF_CORE_READ(skb, sk);
	if (!sk && bpf_core_field_exists(record->rx_sk))
		bpf_probe_read_kernel(&sk, sizeof(sk), ctx + bpf_core_field_offset(record->rx_sk));
	if (!sk)
		return 0;
	struct drop_key key = {
		.cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter),
		.reason = reason,
	};
	/* A socket netgraph never saw (made before it started, never counted) has no
	 * cookie yet, and so no owner to give the drop to. */
	if (!key.cookie)
		return 0;
	struct drop_count *count = bpf_map_lookup_elem(&drops, &key);
	if (!count) {
		struct drop_count fresh = {.protocol = BPF_CORE_READ(sk, sk_protocol)};
		socket_ends(sk, &fresh.ends, &fresh.near_port, &fresh.far_port, &fresh.netns);
		int ifindex = BPF_CORE_READ(sk, sk_dst_cache, dev, ifindex);
		fresh.ifindex = ifindex > 0 ? ifindex : 0;
		bpf_map_update_elem(&drops, &key, &fresh, BPF_NOEXIST);
		count = bpf_map_lookup_elem(&drops, &key);
		if (!count) {
			count_loss(LOSS_DROPS_FULL);
			return 0;
		}
	}
	__sync_fetch_and_add(&count->packets, 1);
	__sync_fetch_and_add(&count->bytes, BPF_CORE_READ(skb, len));
	return 0;
}
