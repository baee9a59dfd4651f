/* Packet capture by owner (`netgraph capture`, an alert's capture): the counting
 * programs copy the packets whose owner is in scope to a perf buffer, with who the
 * owner is. Nothing else is copied; while no capture runs, counting pays one load. */
#pragma once

/* Set by userspace before loading where the kernel lets the counting programs write
 * to a perf buffer (decided by loading); without it the branch is dropped. */
const volatile __u8 can_capture = 0;

/* Who is captured, written by userspace; `active` last when a capture starts, first
 * when it ends. Every criterion given must hold. */
struct capture_scope {
	__u32 active;
	__u32 tgid;
	__u32 uid;
	__u8 by_tgid;
	__u8 by_uid;
	__u8 by_name;
	__u8 by_cgroup;
	__u8 by_peer;
	__u8 pad[3];
	/* Bytes of each packet copied (the rest is counted in `length` only). */
	__u32 snap_length;
	char comm[16];
	__u8 peer[16];
};

struct capture_scope capture_scope = {};

/* Every cgroup of the containers or units in scope (by_cgroup). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} capture_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} captured_packets SEC(".maps");

/* What precedes each packet's bytes in the perf buffer. */
struct captured_header {
	__u64 time_ns; /* bpf_ktime_get_ns */
	__u64 cookie;
	__u64 cgroup_id;
	__u64 netns; /* the owner's network namespace, where its interfaces are */
	__u32 tgid;
	__u32 uid;
	__u32 ifindex;
	__u32 length; /* the packet's length; fewer bytes follow when it was cut */
	__u32 captured;
	__u16 gso_segs;
	enum direction direction;
	__u8 protocol;
	char comm[16];
};

/* A perf record's size is 16 bits: the header and this many bytes fit. */
#define CAPTURE_MAX_BYTES 65000

static __always_inline int same_bytes16(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1];
}

static __always_inline int in_capture_scope(struct __sk_buff *skb, enum direction direction, __u32 tgid,
					    struct owner *process, __u64 cgroup)
{
	struct capture_scope *scope = &capture_scope;
	if (scope->by_tgid && tgid != scope->tgid)
		return 0;
	if (scope->by_uid && (!process || process->uid != scope->uid))
		return 0;
	if (scope->by_name) {
		/* The kernel's names: at most 15 bytes and a NUL. */
		char comm[16] = {};
		__builtin_memcpy(comm, scope->comm, sizeof(comm));
		if (!process || !same_bytes16((const __u8 *)process->comm, (const __u8 *)comm))
			return 0;
	}
	if (scope->by_cgroup && !bpf_map_lookup_elem(&capture_cgroups, &cgroup))
		return 0;
	if (scope->by_peer) {
		struct ends ends = {};
		__u8 peer[16] = {};
		__builtin_memcpy(peer, scope->peer, sizeof(peer));
		if (!read_ends(skb, direction, 0, &ends) || !same_bytes16(ends.far, peer))
			return 0;
	}
	return 1;
}

/* Copies the packet of a socket owned by `tgid` (0: none known) when it is in scope. */
static __always_inline void capture_packet(struct __sk_buff *skb, enum direction direction, __u8 protocol,
					   __u64 cookie, __u32 tgid)
{
	if (!tgid)
		return;
	struct owner *process = bpf_map_lookup_elem(&processes, &tgid);
	__u64 cgroup = bpf_skb_cgroup_id(skb);
	if (!in_capture_scope(skb, direction, tgid, process, cgroup))
		return;
	struct captured_header header = {
		.time_ns = bpf_ktime_get_ns(),
		.cookie = cookie,
		.cgroup_id = cgroup,
		.tgid = tgid,
		.ifindex = skb->ifindex,
		.length = skb->len,
		.gso_segs = skb->gso_segs,
		.direction = direction,
		.protocol = protocol,
	};
	if (process) {
		header.uid = process->uid;
		header.netns = process->netns;
		__builtin_memcpy(header.comm, process->comm, sizeof(header.comm));
	}
	__u64 bytes = skb->len;
	__u32 snap = capture_scope.snap_length;
	if (bytes > snap)
		bytes = snap;
	if (bytes > CAPTURE_MAX_BYTES)
		bytes = CAPTURE_MAX_BYTES;
	header.captured = bytes;
	/* The packet's first `bytes` bytes follow the header: the kernel copies them. */
	bpf_perf_event_output(skb, &captured_packets, BPF_F_CURRENT_CPU | (bytes << 32), &header, sizeof(header));
}

/* Never used: makes the generated Rust types carry `struct captured_header`. */
struct captured_header *captured_header_type __attribute__((unused));
