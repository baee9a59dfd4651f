/* Bandwidth limits, decided per packet by its socket's owner, in the counting programs
 * themselves: nothing else is attached, so a limit goes with the programs' links when
 * netgraph stops or dies.
 *
 * Each limit and direction is a virtual queue: a packet let through adds its length at
 * the limit's rate to when the queue would have emptied; once that is more than the
 * limit's backlog ahead of now, packets are refused until it drains. What passes over
 * any span is therefore the rate times the span, plus one backlog at most. A refused
 * packet going out is dropped with congestion notification (the sender's stack sees
 * NET_XMIT_DROP: TCP keeps the segment, sends it again later and shrinks its window;
 * UDP's send fails with ENOBUFS where the socket asks for errors, else silently); one
 * coming in is dropped (policing: the remote sender backs off as from any loss). */
#pragma once

#define MAX_LIMITS 64
/* A name that is never limited (the configured exemptions, such as sshd). */
#define LIMIT_EXEMPT 0xffffffff

/* Set by userspace for each limit (1-based id) and direction: index (id - 1) * 2 +
 * direction. A zero rate leaves that direction alone. */
struct limit_rate {
	__u64 bytes_per_second;
	__u64 backlog_ns;
	/* Refuse everything (a quota's "block"): going out with EPERM, so that a connect
	 * or send fails at once instead of retrying. */
	__u32 block;
	__u32 pad;
};

struct limit_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 queue_end_ns;
	/* Cumulative, read by userspace. */
	__u64 passed_bytes;
	__u64 passed_packets;
	__u64 held_bytes;
	__u64 held_packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_LIMITS * 2);
	__type(key, __u32);
	__type(value, struct limit_rate);
} limit_rates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_LIMITS * 2);
	__type(key, __u32);
	__type(value, struct limit_bucket);
} limit_buckets SEC(".maps");

/* Who is limited, by the owner's process name (the group leader's), cgroup (every
 * cgroup of a unit or container; a socket keeps the cgroup it was created in) and
 * user: the limit's id, or LIMIT_EXEMPT by name. */
struct limit_name {
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct limit_name);
	__type(value, __u32);
} limit_by_name SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} limit_by_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} limit_by_uid SEC(".maps");

/* Written by userspace while any limit is configured: without one, counting pays a
 * single load for limits. */
__u32 limits_in_force = 0;
/* netgraph's own process, never limited. */
const volatile __u32 own_tgid = 0;

/* The limit of a packet owned by `tgid` (0: none). */
static __always_inline __u32 limit_of(struct __sk_buff *skb, __u32 tgid)
{
	if (!tgid || tgid == own_tgid)
		return 0;
	struct owner *process = bpf_map_lookup_elem(&processes, &tgid);
	if (process) {
		__u32 *by_name = bpf_map_lookup_elem(&limit_by_name, process->comm);
		if (by_name)
			return *by_name == LIMIT_EXEMPT ? 0 : *by_name;
	}
	__u64 cgroup = bpf_skb_cgroup_id(skb);
	__u32 *by_cgroup = bpf_map_lookup_elem(&limit_by_cgroup, &cgroup);
	if (by_cgroup)
		return *by_cgroup;
	if (process) {
		__u32 *by_uid = bpf_map_lookup_elem(&limit_by_uid, &process->uid);
		if (by_uid)
			return *by_uid;
	}
	return 0;
}

enum limit_verdict {
	LIMIT_PASS = 0,
	/* Passed, but the queue is filling: TCP is asked to slow down. */
	LIMIT_PASS_SLOW_DOWN = 1,
	LIMIT_REFUSE = 2,
	LIMIT_BLOCK = 3,
};

/* TCP packets this small carry no data to speak of (ACKs, SYNs, FINs): refusing them
 * would stall the other direction's transfer or a new connection, so they are charged to
 * the queue but always pass. */
#define LIMIT_CONTROL_BYTES 128

/* `ip_bytes`: the packet's IP bytes as the stack hands it down (an offloaded packet's
 * headers once), as the far end of a link that carries such packets whole counts them;
 * a NIC that cuts them into segments adds each segment's headers on its wire. */
static __always_inline enum limit_verdict limit_packet(struct __sk_buff *skb, enum direction direction, __u32 tgid,
						       __u64 ip_bytes, __u8 protocol)
{
	__u32 limit = limit_of(skb, tgid);
	if (!limit || limit > MAX_LIMITS)
		return LIMIT_PASS;
	__u32 index = (limit - 1) * 2 + (direction == INGRESS);
	struct limit_rate *rate = bpf_map_lookup_elem(&limit_rates, &index);
	struct limit_bucket *bucket = bpf_map_lookup_elem(&limit_buckets, &index);
	if (!rate || !bucket)
		return LIMIT_PASS;
	__u64 length = ip_bytes;
	if (rate->block) {
		__sync_fetch_and_add(&bucket->held_bytes, length);
		__sync_fetch_and_add(&bucket->held_packets, 1);
		return LIMIT_BLOCK;
	}
	if (!rate->bytes_per_second)
		return LIMIT_PASS;
	__u64 cost = length * 1000000000ULL / rate->bytes_per_second;
	__u64 backlog = rate->backlog_ns;
	__u64 now = bpf_ktime_get_ns();
	int control = protocol == 6 && length <= LIMIT_CONTROL_BYTES;
	enum limit_verdict verdict = LIMIT_PASS;
	bpf_spin_lock(&bucket->lock);
	__u64 end = bucket->queue_end_ns > now ? bucket->queue_end_ns : now;
	if (end - now > backlog && !control) {
		verdict = LIMIT_REFUSE;
	} else {
		bucket->queue_end_ns = end + cost;
		if (end - now > backlog / 2)
			verdict = LIMIT_PASS_SLOW_DOWN;
	}
	bpf_spin_unlock(&bucket->lock);
	if (verdict == LIMIT_REFUSE) {
		__sync_fetch_and_add(&bucket->held_bytes, length);
		__sync_fetch_and_add(&bucket->held_packets, 1);
	} else {
		__sync_fetch_and_add(&bucket->passed_bytes, length);
		__sync_fetch_and_add(&bucket->passed_packets, 1);
	}
	return verdict;
}
