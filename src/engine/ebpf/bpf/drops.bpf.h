/* Packets the kernel dropped, by owning socket and the kernel's reason: the
 * skb:kfree_skb tracepoint (BTF-typed, else classic), which says why since Linux
 * 5.17. It fires only for freed packets (delivered ones go through consume_skb), so it
 * costs counting nothing. */
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

/* One dropped packet: counted on its socket (the sender's, else the receiver's
 * `rx_sk`) under the kernel's reason. */
static __always_inline void count_drop(struct sk_buff *skb, struct sock *rx_sk, __u32 reason)
{
	if (reason < first_drop_reason)
		return;
	struct sock *sk = BPF_CORE_READ(skb, sk);
	if (!sk)
		sk = rx_sk;
	if (!sk)
		return;
	struct drop_key key = {
		.cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter),
		.reason = reason,
	};
	/* A socket netgraph never saw (made before it started, never counted) has no
	 * cookie yet, and so no owner to give the drop to. */
	if (!key.cookie)
		return;
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
			return;
		}
	}
	__sync_fetch_and_add(&count->packets, 1);
	__sync_fetch_and_add(&count->bytes, BPF_CORE_READ(skb, len));
}

/* The BTF-typed tracepoint: preferred, as the kernel skips a classic tracepoint's
 * program whenever any other kprobe or tracepoint program runs on the CPU (a
 * preemptible kernel runs them preemptibly), but a typed one only when this same
 * program does. Its arguments (skb, location, reason[, rx_sk]); `rx_sk` exists where
 * the record has it, and its read is left out by the loader elsewhere. */
SEC("tp_btf/kfree_skb")
int drops_on_free_typed(__u64 *ctx)
{
	struct trace_event_raw_kfree_skb *record = 0;
	struct sock *rx_sk = 0;
	if (bpf_core_field_exists(record->rx_sk))
		rx_sk = (struct sock *)ctx[3];
	count_drop((struct sk_buff *)ctx[0], rx_sk, (__u32)ctx[2]);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int drops_on_free(void *ctx)
{
	struct trace_event_raw_kfree_skb *record = ctx;
	__u32 reason = 0;
	bpf_probe_read_kernel(&reason, sizeof(reason), ctx + bpf_core_field_offset(record->reason));
	struct sk_buff *skb = 0;
	bpf_probe_read_kernel(&skb, sizeof(skb), ctx + bpf_core_field_offset(record->skbaddr));
	struct sock *rx_sk = 0;
	if (bpf_core_field_exists(record->rx_sk))
		bpf_probe_read_kernel(&rx_sk, sizeof(rx_sk), ctx + bpf_core_field_offset(record->rx_sk));
	count_drop(skb, rx_sk, reason);
	return 0;
}
