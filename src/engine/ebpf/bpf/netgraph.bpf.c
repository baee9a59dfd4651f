// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* netgraph's kernel side: counts every IP packet of every local socket against the
 * socket (cgroup_skb at the cgroup v2 root: an owned socket's packets in its own
 * storage, the rest in a map by cookie), and records which process owns each socket,
 * in process context, as it is created or used. Userspace joins the two. */

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "kernel_types.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* A packet's direction in every key; one byte, and typed in the keys so that the
 * generated Rust types carry it. */
enum direction {
	EGRESS = 0,
	INGRESS = 1,
} __attribute__((packed));
#define EEXIST 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* A kfunc from Linux 6.2: weak, so that older kernels load the rest; used only where
 * userspace set use_kern_ctx, so the verifier drops the call where it is absent. */
extern void *bpf_cast_to_kern_ctx(void *ctx) __ksym __weak;
const volatile __u8 use_kern_ctx = 0;

/* Every byte is a named field, so zero-initialised keys hash alike. */
struct traffic_key {
	__u64 cookie;
	__u32 tgid; /* the socket's owner when the packet passed; 0 if none yet */
	__u32 ifindex;
	enum direction direction;
	__u8 protocol;
	__u8 transient; /* a request or time-wait socket: it has no owner and soon goes */
	__u8 pad;
	/* The device's network namespace (inode number), for packets without an owner:
	 * an ifindex only means something inside its namespace. 0 otherwise. */
	__u32 netns;
};

/* Packets as they passed the hook, and what their offloaded segments add where the
 * link carries segments (userspace knows which links do): a GSO packet leaves, or a
 * GRO packet arrived as, `gso_segs` packets each with its own IP and transport header. */
struct traffic_value {
	__u64 bytes;
	__u64 packets;
	__u64 segment_bytes;
	__u64 segment_packets;
};

/* Set by userspace before loading when GeoIP or peers need each packet's two ends; the
 * verifier drops the branch not taken, so without it counting costs what it did. */
const volatile __u8 record_addresses = 0;
/* With record_addresses: queue the DNS queries sockets send and the answers they
 * receive (names for peers). */
const volatile __u8 record_dns_answers = 0;
/* With record_addresses: queue the TLS ClientHellos sockets send (server names). */
const volatile __u8 record_tls_hellos = 0;

/* Both ends of a packet as IPv6 (IPv4 mapped to ::ffff:a.b.c.d): `near` is this
 * host's side of the interface (the sender on egress), `far` the other. */
struct ends {
	__u8 near[16];
	__u8 far[16];
};

struct peer_traffic_key {
	struct traffic_key socket;
	struct ends ends;
	/* TCP and UDP ports, host byte order; 0 for other protocols. */
	__u16 near_port;
	__u16 far_port;
	__u32 pad;
};

struct owner {
	__u64 cgroup_id;
	__u64 netns; /* inode number of the socket's network namespace */
	__u32 tgid;
	__u32 uid;
	char comm[16];
	__u16 family;
	__u8 protocol;
	__u8 released;
	__u32 pad;
};

enum loss {
	LOSS_TRAFFIC_FULL,
	LOSS_OWNERS_FULL,
	LOSS_PROCESSES_FULL,
	LOSS_INTERFACES_FULL,
	LOSS_HEALTH_FULL,
	LOSS_DROPS_FULL,
	LOSS_KINDS,
};

/* Cumulative per socket, interface and direction: userspace takes deltas, so reading
 * never races with counting. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct traffic_key);
	__type(value, struct traffic_value);
} traffic SEC(".maps");

/* The same counters by socket and both ends, used instead when record_addresses is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct peer_traffic_key);
	__type(value, struct traffic_value);
} peer_traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

/* Everything that crosses each interface (TC), so that traffic no local socket
 * moved (forwarded, or answered by the kernel itself) is seen too. Protocol 0 with
 * non_ip set counts frames that carry no IP. */
struct interface_key {
	__u32 ifindex;
	enum direction direction;
	__u8 protocol;
	__u8 non_ip;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct interface_key);
	__type(value, struct traffic_value);
} interface_traffic SEC(".maps");

struct interface_peer_key {
	struct interface_key interface;
	struct ends ends;
};

/* The same by both ends, used instead when record_addresses is set; userspace deletes
 * pairs that have been quiet a while. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct interface_peer_key);
	__type(value, struct traffic_value);
} interface_peer_traffic SEC(".maps");

/* Link-layer header length per interface (14 for Ethernet and loopback, 0 for
 * tun or WireGuard), written by userspace as it attaches. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} link_header_length SEC(".maps");

/* Who each owning process is, by tgid, so that traffic stamped with a past owner is
 * still named after a socket changed hands. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct owner);
} processes SEC(".maps");

/* Set by userspace before loading where the kernel has the typed socket tracepoints and
 * the socket storage iterator: owned sockets are then counted in their own storage, by
 * the `_in_storage` variants of the counting and release programs. Those use fetching
 * atomics (Linux 5.12+), which older verifiers refuse even in code never run, so the
 * plain variants leave them out entirely. */
const volatile __u8 count_in_storage = 0;

enum slot_state {
	SLOT_FREE = 0,
	SLOT_CLAIMING = 1,
	SLOT_READY = 2,
};

/* One direction of an owned socket's traffic, counted in the socket's own storage: no
 * hash map update per packet. The first packet after the socket has an owner claims the
 * slot for that owner, interface and protocol, for the socket's life; packets under any
 * other (another owner, interface or protocol), and after release, go to `traffic`.
 * The counts are taken out with atomic exchanges, by the iterator (each drain) and at
 * release, so each byte leaves the slot exactly once. */
struct socket_slot {
	__u64 bytes;
	__u64 packets;
	__u64 segment_bytes;
	__u64 segment_packets;
	__u32 tgid;
	__u32 ifindex;
	__u32 state;
	__u8 protocol;
	__u8 pad[3];
};

/* Kept with each socket: its cookie (the cookie helper costs about as much as the rest
 * of a key), its owner (written when it is created or adopted, so that counting needs
 * no lookup), and its slots. */
struct socket_state {
	__u64 cookie;
	__u32 tgid;
	__u32 released;
	struct socket_slot egress;
	struct socket_slot ingress;
	/* TCP packets received, for sampling the smoothed RTT now and then. */
	__u32 rtt_tick;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct socket_state);
} socket_states SEC(".maps");

/* Bumped whenever a socket changes hands, so that the adoption checks cached per CPU
 * below are known to be current. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} owner_generation SEC(".maps");

/* The socket and process each CPU last checked for adoption: a process sends or
 * receives on one socket many times in a row, and these array lookups are inlined,
 * where looking at the socket's storage is a helper call. */
struct adoption_check {
	__u64 cookie;
	__u64 generation;
	__u32 tgid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct adoption_check);
} last_adoption_check SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

static __always_inline void count_loss(__u32 kind)
{
	__u64 *lost = bpf_map_lookup_elem(&losses, &kind);
	if (lost)
		*lost += 1;
}

/* TCP's health: its map, its tracepoints, and the RTT sampling counting does. */
#include "tcp_health.bpf.h"
/* Dropped packets by owning socket and reason. */
#include "drops.bpf.h"


/* The transport protocol from the IP header: skb data starts there in cgroup_skb.
 * Read in place when the header is in the linear part, as it nearly always is. */
static __always_inline __u8 ip_protocol(struct __sk_buff *skb)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	if (data + 10 <= end) {
		if ((data[0] >> 4) == 4)
			return data[9];
		if ((data[0] >> 4) == 6)
			return data[6];
		return 0;
	}
	__u8 version = 0, protocol = 0;
	if (bpf_skb_load_bytes(skb, 0, &version, 1))
		return 0;
	if ((version >> 4) == 4)
		bpf_skb_load_bytes(skb, 9, &protocol, 1);
	else if ((version >> 4) == 6)
		bpf_skb_load_bytes(skb, 6, &protocol, 1);
	return protocol;
}

/* The owner `owners` holds for a socket; 0 if none. */
static __always_inline __u32 recorded_owner(__u64 cookie)
{
	struct owner *owner = bpf_map_lookup_elem(&owners, &cookie);
	return owner ? owner->tgid : 0;
}

/* Bandwidth limits by owner, decided as packets are counted. */
#include "limits.bpf.h"

/* One byte at `offset` of a packet whose data starts at its IP header (cgroup_skb):
 * read in place when it is in the linear part, as headers nearly always are, since a
 * helper call costs more than the rest of the read. */
static __always_inline __u8 packet_byte(struct __sk_buff *skb, __u32 offset)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	__u8 value = 0;
	if (offset < 256 && data + offset + 1 <= end)
		return data[offset];
	bpf_skb_load_bytes(skb, offset, &value, 1);
	return value;
}

/* The replicated headers and extra packets of an offloaded (GSO or GRO) packet whose
 * IP header is `ip_header` bytes long: 0 for a plain packet. */
struct segments {
	__u64 bytes;
	__u64 packets;
};

static __always_inline struct segments offloaded_segments(struct __sk_buff *skb, int from_network, __u32 ip_header,
							  __u8 protocol)
{
	struct segments extra = {};
	__u32 count = skb->gso_segs;
	if (count <= 1 || !ip_header)
		return extra;
	__u32 headers = ip_header;
	if (protocol == 6) {
		__u8 offset = 0;
		if (from_network)
			bpf_skb_load_bytes_relative(skb, ip_header + 12, &offset, 1, BPF_HDR_START_NET);
		else
			offset = packet_byte(skb, ip_header + 12);
		headers += (offset >> 4) * 4;
	} else if (protocol == 17) {
		headers += 8;
	}
	extra.bytes = (__u64)(count - 1) * headers;
	extra.packets = count - 1;
	return extra;
}

/* The IP header's length, for packets whose data starts there (cgroup_skb) or at the
 * network header (`from_network`); 0 if not IP. */
static __always_inline __u32 ip_header_length(struct __sk_buff *skb, int from_network)
{
	__u8 version = 0;
	if (!from_network)
		version = packet_byte(skb, 0);
	else if (bpf_skb_load_bytes_relative(skb, 0, &version, 1, BPF_HDR_START_NET))
		return 0;
	if ((version >> 4) == 4)
		return (version & 0xf) * 4;
	return (version >> 4) == 6 ? 40 : 0;
}

/* Adds packets to a cumulative counter, creating it on first use; `loss` is counted
 * if the map is full. Per-CPU maps need no atomic add: no other CPU writes this copy. */
static __always_inline void add_counts(void *map, void *key, __u64 bytes, __u64 packets, struct segments extra,
				       int per_cpu, __u32 loss)
{
	struct traffic_value *value = bpf_map_lookup_elem(map, key);
	if (!value) {
		struct traffic_value zero = {};
		/* -EEXIST: another CPU created it first, which is no loss. */
		long err = bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			count_loss(loss);
			return;
		}
		value = bpf_map_lookup_elem(map, key);
		if (!value)
			return;
	}
	if (per_cpu) {
		value->bytes += bytes;
		value->packets += packets;
		value->segment_bytes += extra.bytes;
		value->segment_packets += extra.packets;
	} else {
		__sync_fetch_and_add(&value->bytes, bytes);
		__sync_fetch_and_add(&value->packets, packets);
		if (extra.packets) {
			__sync_fetch_and_add(&value->segment_bytes, extra.bytes);
			__sync_fetch_and_add(&value->segment_packets, extra.packets);
		}
	}
}

static __always_inline void add_packet(void *map, void *key, __u64 bytes, struct segments extra, int per_cpu,
				       __u32 loss)
{
	add_counts(map, key, bytes, 1, extra, per_cpu, loss);
}

/* Reads a packet's two ends from its IP header, `offset` bytes into the packet
 * (relative to the network header when `from_network`). Returns the IP header's
 * length (0 if the packet is not IP). */
static __always_inline __u32 read_ends(struct __sk_buff *skb, enum direction direction, int from_network,
				       struct ends *ends)
{
	__u8 version = 0;
	__u8 *source = direction == EGRESS ? ends->near : ends->far;
	__u8 *destination = direction == EGRESS ? ends->far : ends->near;
	__u32 base = from_network ? BPF_HDR_START_NET : BPF_HDR_START_MAC;
	if (from_network) {
		if (bpf_skb_load_bytes_relative(skb, 0, &version, 1, base))
			return 0;
	} else if (bpf_skb_load_bytes(skb, 0, &version, 1)) {
		return 0;
	}
	if ((version >> 4) == 4) {
		source[10] = source[11] = 0xff;
		destination[10] = destination[11] = 0xff;
		if (from_network) {
			bpf_skb_load_bytes_relative(skb, 12, source + 12, 4, base);
			bpf_skb_load_bytes_relative(skb, 16, destination + 12, 4, base);
		} else {
			bpf_skb_load_bytes(skb, 12, source + 12, 4);
			bpf_skb_load_bytes(skb, 16, destination + 12, 4);
		}
		return (version & 0xf) * 4;
	}
	if ((version >> 4) == 6) {
		if (from_network) {
			bpf_skb_load_bytes_relative(skb, 8, source, 16, base);
			bpf_skb_load_bytes_relative(skb, 24, destination, 16, base);
		} else {
			bpf_skb_load_bytes(skb, 8, source, 16);
			bpf_skb_load_bytes(skb, 24, destination, 16);
		}
		return 40;
	}
	return 0;
}

/* The ports of a TCP or UDP packet whose transport header starts at `header`. */
static __always_inline void read_ports(struct __sk_buff *skb, enum direction direction, __u32 header,
				       struct peer_traffic_key *peer)
{
	__u16 ports[2] = {};
	if (bpf_skb_load_bytes(skb, header, ports, sizeof(ports)))
		return;
	__u16 source = bpf_ntohs(ports[0]), destination = bpf_ntohs(ports[1]);
	peer->near_port = direction == EGRESS ? source : destination;
	peer->far_port = direction == EGRESS ? destination : source;
}

/* Payloads names for peers are learnt from: DNS answers that reach a socket (from
 * port 53, over UDP or TCP), the queries sockets send (an answer counts only if it
 * answers one of them) and TLS ClientHellos a socket sends (the server name), their
 * first bytes, with the socket and the far end. A queue that overwrites its oldest
 * entry when full: names are a hint, never a count. */
#define SAMPLE_MAX 2048

enum sample_kind {
	SAMPLE_DNS_UDP = 1,
	SAMPLE_DNS_TCP = 2,
	SAMPLE_TLS_HELLO = 3,
	SAMPLE_DNS_UDP_QUERY = 4,
	SAMPLE_DNS_TCP_QUERY = 5,
} __attribute__((packed));

struct payload_sample {
	__u64 cookie;
	__u32 tgid;
	__u32 length;
	__u8 far[16];
	enum sample_kind kind;
	__u8 pad[7];
	__u8 data[SAMPLE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 512);
	__type(value, struct payload_sample);
} payload_samples SEC(".maps");

/* Built here: a sample does not fit on the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct payload_sample);
} sample_scratch SEC(".maps");

static __always_inline void report_sample(struct __sk_buff *skb, struct peer_traffic_key *peer, __u32 offset,
					  enum sample_kind kind)
{
	if (skb->len <= offset)
		return;
	__u64 length = skb->len - offset;
	if (length > SAMPLE_MAX - 1)
		length = SAMPLE_MAX - 1;
	__u32 zero = 0;
	struct payload_sample *sample = bpf_map_lookup_elem(&sample_scratch, &zero);
	if (!sample)
		return;
	sample->cookie = peer->socket.cookie;
	sample->tgid = peer->socket.tgid;
	sample->kind = kind;
	__builtin_memcpy(sample->far, peer->ends.far, sizeof(sample->far));
	/* Bounded again right at the call, where the verifier checks it (the compiler
	 * would otherwise carry the clamped value through a spill it cannot follow). */
	asm volatile("" : "+r"(length));
	length &= SAMPLE_MAX - 1;
	if (length == 0)
		return;
	sample->length = length;
	if (bpf_skb_load_bytes(skb, offset, sample->data, length))
		return;
	bpf_map_push_elem(&payload_samples, sample, BPF_EXIST);
}

/* Where a TCP segment's payload starts, `header` being its IP header's length. */
static __always_inline __u32 tcp_payload(struct __sk_buff *skb, __u32 header)
{
	__u8 offset = 0;
	if (bpf_skb_load_bytes(skb, header + 12, &offset, 1))
		return 0;
	return header + (offset >> 4) * 4;
}

/* Queues what names can be learnt from: DNS queries sent and answers received,
 * ClientHellos sent. */
static __always_inline void sample_payload(struct __sk_buff *skb, enum direction direction, __u32 header,
					   struct peer_traffic_key *peer)
{
	__u8 protocol = peer->socket.protocol;
	if (record_dns_answers && peer->far_port == 53) {
		int query = direction == EGRESS;
		if (protocol == 17)
			report_sample(skb, peer, header + 8, query ? SAMPLE_DNS_UDP_QUERY : SAMPLE_DNS_UDP);
		else if (protocol == 6)
			report_sample(skb, peer, tcp_payload(skb, header), query ? SAMPLE_DNS_TCP_QUERY : SAMPLE_DNS_TCP);
		return;
	}
	if (record_tls_hellos && direction == EGRESS && protocol == 6) {
		__u32 payload = tcp_payload(skb, header);
		if (!payload || skb->len < payload + 6)
			return;
		/* A handshake record whose message is a ClientHello. */
		__u8 start[6] = {};
		if (bpf_skb_load_bytes(skb, payload, start, sizeof(start)) || start[0] != 0x16 || start[5] != 0x01)
			return;
		report_sample(skb, peer, payload, SAMPLE_TLS_HELLO);
	}
}

/* Moves what a slot holds to `traffic`, under the slot's key: after the socket's
 * release, its last packets are counted there. */
static __always_inline void hand_over(struct socket_slot *slot, __u64 cookie, enum direction direction)
{
	struct traffic_key key = {
		.cookie = cookie,
		.tgid = slot->tgid,
		.ifindex = slot->ifindex,
		.direction = direction,
		.protocol = slot->protocol,
	};
	struct segments extra = {
		.bytes = __sync_lock_test_and_set(&slot->segment_bytes, 0),
		.packets = __sync_lock_test_and_set(&slot->segment_packets, 0),
	};
	__u64 bytes = __sync_lock_test_and_set(&slot->bytes, 0);
	__u64 packets = __sync_lock_test_and_set(&slot->packets, 0);
	if (bytes || packets || extra.packets)
		add_counts(&traffic, &key, bytes, packets, extra, 0, LOSS_TRAFFIC_FULL);
}

/* Claims a free slot for this owner, interface and protocol; another CPU claiming it at
 * the same moment wins, and this packet goes to `traffic`. */
static __always_inline int claim(struct socket_slot *slot, __u32 tgid, __u32 ifindex, __u8 protocol)
{
	if (__sync_val_compare_and_swap(&slot->state, SLOT_FREE, SLOT_CLAIMING) != SLOT_FREE)
		return 0;
	slot->tgid = tgid;
	slot->ifindex = ifindex;
	slot->protocol = protocol;
	/* An exchange: ordered after the key's fields for CPUs that read the state. */
	__sync_lock_test_and_set(&slot->state, SLOT_READY);
	return 1;
}

/* Counts a packet in its socket's slot when the socket has an owner, is not released
 * and the slot is this owner's, interface's and protocol's (or free). Returns whether
 * it did; the caller counts it in `traffic` otherwise. */
static __always_inline int count_in_socket(struct __sk_buff *skb, struct socket_state *state, enum direction direction,
					   __u8 protocol)
{
	__u32 tgid = state->tgid;
	if (!tgid || state->released)
		return 0;
	struct socket_slot *slot = direction == EGRESS ? &state->egress : &state->ingress;
	__u32 ifindex = skb->ifindex;
	if (slot->state != SLOT_READY) {
		if (!state->cookie)
			state->cookie = bpf_get_socket_cookie(skb);
		if (!claim(slot, tgid, ifindex, protocol))
			return 0;
	}
	if (slot->tgid != tgid || slot->ifindex != ifindex || slot->protocol != protocol)
		return 0;
	if (skb->gso_segs > 1) {
		struct segments extra = offloaded_segments(skb, 0, ip_header_length(skb, 0), protocol);
		__sync_fetch_and_add(&slot->segment_bytes, extra.bytes);
		__sync_fetch_and_add(&slot->segment_packets, extra.packets);
	}
	__sync_fetch_and_add(&slot->bytes, skb->len);
	/* A fetching add is fully ordered: the read of `released` below comes after it. */
	__u64 before = __sync_fetch_and_add(&slot->packets, 1);
	asm volatile("" : : "r"(before));
	/* Released meanwhile: the release may have taken the slot's counts before this
	 * packet's; what is left joins them in `traffic`. */
	if (*(volatile __u32 *)&state->released)
		hand_over(slot, state->cookie, direction);
	return 1;
}

/* The current process: thread group id, user, cgroup and the group leader's name
 * (a thread's own name, such as "Socket Thread", is not the application's). */
static __always_inline void fill_current(struct owner *owner)
{
	owner->tgid = bpf_get_current_pid_tgid() >> 32;
	owner->uid = (__u32)bpf_get_current_uid_gid();
	owner->cgroup_id = bpf_get_current_cgroup_id();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (!owner->netns)
		owner->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	if (!leader || bpf_core_read_str(owner->comm, sizeof(owner->comm), &leader->comm) < 0)
		bpf_get_current_comm(owner->comm, sizeof(owner->comm));
}

static __always_inline void remember(__u64 cookie, struct owner *owner)
{
	if (bpf_map_update_elem(&owners, &cookie, owner, BPF_ANY))
		count_loss(LOSS_OWNERS_FULL);
	if (bpf_map_update_elem(&processes, &owner->tgid, owner, BPF_ANY))
		count_loss(LOSS_PROCESSES_FULL);
}

/* Kernels without the socket tracepoints (before 6.3) cannot follow a socket to the
 * process that uses it; of those, the sockets a server accepts are the ones no creation
 * hook sees. The accept syscalls' exit names the process: by cookie where the socket
 * has one, else by its two ends, which its first unowned packet is matched against.
 * Set by userspace where these programs are loaded. */
const volatile __u8 match_accepted = 0;

struct accepted_key {
	__u8 local[16];
	__u8 remote[16];
	__u16 local_port;
	__u16 remote_port;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accepted_key);
	__type(value, struct owner);
} accepted SEC(".maps");

/* The owner an accept recorded for this packet's two ends, now the socket's. */
static __always_inline __u32 claim_accepted(struct __sk_buff *skb, enum direction direction, __u64 cookie)
{
	struct ends ends = {};
	__u32 header = read_ends(skb, direction, 0, &ends);
	if (!header)
		return 0;
	__u16 ports[2] = {};
	if (bpf_skb_load_bytes(skb, header, ports, sizeof(ports)))
		return 0;
	struct accepted_key key = {};
	__builtin_memcpy(key.local, ends.near, sizeof(key.local));
	__builtin_memcpy(key.remote, ends.far, sizeof(key.remote));
	key.local_port = bpf_ntohs(direction == EGRESS ? ports[0] : ports[1]);
	key.remote_port = bpf_ntohs(direction == EGRESS ? ports[1] : ports[0]);
	struct owner *found = bpf_map_lookup_elem(&accepted, &key);
	if (!found)
		return 0;
	struct owner owner = *found;
	bpf_map_delete_elem(&accepted, &key);
	remember(cookie, &owner);
	return owner.tgid;
}

/* The socket's owner as counting sees it (0: none yet). */
static __always_inline __u32 state_owner(struct __sk_buff *skb, struct socket_state *state, int in_storage)
{
	if (in_storage)
		return state->tgid;
	if (!state->cookie)
		state->cookie = bpf_get_socket_cookie(skb);
	return recorded_owner(state->cookie);
}

/* Packets copied for a capture, by owner. */
#include "capture.bpf.h"

/* Counts the packet, and says what its owner's limit decides for it. A packet refused
 * going out never reaches the wire and is not counted; one refused coming in was
 * carried by the wire to its socket, and is.
 * `in_storage`: a constant in each variant (see count_in_storage). */
static __always_inline enum limit_verdict count(struct __sk_buff *skb, enum direction direction, int in_storage)
{
	struct traffic_key key = {
		.ifindex = skb->ifindex,
		.direction = direction,
		.protocol = ip_protocol(skb),
	};
	/* Only full sockets have owners; a request or time-wait socket (a SYN-ACK, a late
	 * ACK) is marked so that userspace lets go of its counters as soon as it is quiet. */
	struct bpf_sock *sk = skb->sk;
	/* The storage helper takes any socket and finds none for a request or time-wait
	 * one: the full-socket helper is asked only then. */
	struct socket_state *state = sk ? bpf_sk_storage_get(&socket_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE) : 0;
	if (state && count_tcp_health && direction == INGRESS && key.protocol == 6)
		sample_rtt(sk, state);
	enum limit_verdict verdict = LIMIT_PASS;
	if (limits_in_force && state) {
		verdict = limit_packet(skb, direction, state_owner(skb, state, in_storage), skb->len, key.protocol);
		if (verdict >= LIMIT_REFUSE && direction == EGRESS)
			return verdict;
	}
	if (can_capture && capture_scope.active && state) {
		__u32 owner = state_owner(skb, state, in_storage);
		if (!state->cookie)
			state->cookie = bpf_get_socket_cookie(skb);
		capture_packet(skb, direction, key.protocol, state->cookie, owner);
	}
	if (state) {
		if (in_storage && !record_addresses && count_in_socket(skb, state, direction, key.protocol))
			return verdict;
		if (!state->cookie)
			state->cookie = bpf_get_socket_cookie(skb);
		key.cookie = state->cookie;
		/* The storage holds the owner only where it counts there too. */
		key.tgid = in_storage ? state->tgid : recorded_owner(key.cookie);
	} else if (sk && bpf_sk_fullsock(sk)) {
		/* No memory for its storage. */
		key.cookie = bpf_get_socket_cookie(skb);
		key.tgid = recorded_owner(key.cookie);
	} else {
		key.cookie = bpf_get_socket_cookie(skb);
		key.transient = sk != 0;
	}
	if (!in_storage && match_accepted && !key.tgid && !key.transient && key.protocol == 6 && key.cookie)
		key.tgid = claim_accepted(skb, direction, key.cookie);
	if (!key.tgid && use_kern_ctx) {
		struct sk_buff *kernel_skb = bpf_cast_to_kern_ctx(skb);
		key.netns = BPF_CORE_READ(kernel_skb, dev, nd_net.net, ns.inum);
	}
	if (record_addresses) {
		struct peer_traffic_key peer = {.socket = key};
		__u32 header = read_ends(skb, direction, 0, &peer.ends);
		if (header && (key.protocol == 6 || key.protocol == 17))
			read_ports(skb, direction, header, &peer);
		struct segments extra = offloaded_segments(skb, 0, header, key.protocol);
		add_packet(&peer_traffic, &peer, skb->len, extra, 0, LOSS_TRAFFIC_FULL);
		if (header && (peer.far_port == 53 || record_tls_hellos))
			sample_payload(skb, direction, header, &peer);
	} else {
		struct segments extra = {};
		if (skb->gso_segs > 1)
			extra = offloaded_segments(skb, 0, ip_header_length(skb, 0), key.protocol);
		add_packet(&traffic, &key, skb->len, extra, 0, LOSS_TRAFFIC_FULL);
	}
	return verdict;
}

/* What an egress program returns: bit 0 lets the packet go, bit 1 notifies congestion
 * (Linux 5.3+), which TCP answers by shrinking its window. */
static __always_inline int egress_return(enum limit_verdict verdict)
{
	if (verdict == LIMIT_BLOCK)
		return 0;
	if (verdict == LIMIT_REFUSE)
		return 2;
	return verdict == LIMIT_PASS_SLOW_DOWN ? 3 : 1;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	return egress_return(count(skb, EGRESS, 0));
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	return count(skb, INGRESS, 0) < LIMIT_REFUSE;
}

SEC("cgroup_skb/egress")
int count_egress_in_storage(struct __sk_buff *skb)
{
	return egress_return(count(skb, EGRESS, 1));
}

SEC("cgroup_skb/ingress")
int count_ingress_in_storage(struct __sk_buff *skb)
{
	return count(skb, INGRESS, 1) < LIMIT_REFUSE;
}

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17

/* An IP packet a non-INET socket sent (AF_PACKET: DHCP clients, packet generators):
 * the IP stack's hooks never saw it, but the frame carries its socket, whose owner the
 * send tracepoint recorded. Counted as that socket's traffic, so it is named after its
 * process rather than left to the interface's remainder. */
static __always_inline void count_packet_socket(struct __sk_buff *skb, __u64 bytes, struct segments extra,
						__u8 protocol)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->family == AF_INET || sk->family == AF_INET6)
		return;
	struct traffic_key key = {
		.cookie = bpf_get_socket_cookie(skb),
		.ifindex = skb->ifindex,
		.direction = EGRESS,
		.protocol = protocol,
	};
	struct owner *owner = bpf_map_lookup_elem(&owners, &key.cookie);
	if (owner)
		key.tgid = owner->tgid;
	if (record_addresses) {
		struct peer_traffic_key peer = {.socket = key};
		read_ends(skb, EGRESS, 1, &peer.ends);
		add_packet(&peer_traffic, &peer, bytes, extra, 0, LOSS_TRAFFIC_FULL);
	} else {
		add_packet(&traffic, &key, bytes, extra, 0, LOSS_TRAFFIC_FULL);
	}
}

/* Counts a frame at TC, in IP-layer bytes like the socket counters: the IP header's
 * length field, or for offloaded packets that leave it 0, the frame less its link
 * header. */
static __always_inline void count_interface(struct __sk_buff *skb, enum direction direction)
{
	struct interface_key key = {.ifindex = skb->ifindex, .direction = direction};
	__u64 bytes = 0;
	__u8 header[8] = {};
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes_relative(skb, 0, header, 8, BPF_HDR_START_NET) == 0)
			bytes = (header[2] << 8) | header[3];
		__u8 protocol = 0;
		bpf_skb_load_bytes_relative(skb, 9, &protocol, 1, BPF_HDR_START_NET);
		key.protocol = protocol;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes_relative(skb, 0, header, 8, BPF_HDR_START_NET) == 0) {
			__u64 payload = (header[4] << 8) | header[5];
			bytes = payload ? payload + 40 : 0;
			key.protocol = header[6];
		}
	} else {
		key.non_ip = 1;
	}
	if (!bytes && !key.non_ip) {
		__u32 ifindex = skb->ifindex;
		__u32 *link = bpf_map_lookup_elem(&link_header_length, &ifindex);
		__u32 link_len = link ? *link : 0;
		bytes = skb->len > link_len ? skb->len - link_len : 0;
	}
	bytes = key.non_ip ? skb->len : bytes;
	struct segments extra = {};
	if (!key.non_ip && skb->gso_segs > 1)
		extra = offloaded_segments(skb, 1, ip_header_length(skb, 1), key.protocol);
	if (direction == EGRESS && !key.non_ip)
		count_packet_socket(skb, bytes, extra, key.protocol);
	if (record_addresses) {
		struct interface_peer_key peer = {.interface = key};
		if (!key.non_ip)
			read_ends(skb, direction, 1, &peer.ends);
		add_packet(&interface_peer_traffic, &peer, bytes, extra, 1, LOSS_INTERFACES_FULL);
	} else {
		add_packet(&interface_traffic, &key, bytes, extra, 1, LOSS_INTERFACES_FULL);
	}
}

/* TCX_NEXT: a monitor decides nothing. Returning TCX_PASS would end the chain, so the
 * programs and tc filters after ours (a firewall, another monitor) would never see
 * the packet; with none after ours, the packet passes. */
#define TCX_NEXT -1

SEC("tc")
int interface_ingress(struct __sk_buff *skb)
{
	count_interface(skb, INGRESS);
	return TCX_NEXT;
}

SEC("tc")
int interface_egress(struct __sk_buff *skb)
{
	count_interface(skb, EGRESS);
	return TCX_NEXT;
}

SEC("cgroup/sock_create")
int owner_on_create(struct bpf_sock *sk)
{
	/* A socket is created in its creator's network namespace. */
	struct owner owner = {
		.family = sk->family,
		.protocol = sk->protocol,
	};
	fill_current(&owner);
	__u64 cookie = bpf_get_socket_cookie(sk);
	remember(cookie, &owner);
	/* Left out where the kernel has no use for it: older kernels' socket hooks may
	 * not reach socket storage at all, and the verifier drops this branch there. */
	if (!count_in_storage)
		return 1;
	struct socket_state *state = bpf_sk_storage_get(&socket_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (state) {
		state->cookie = cookie;
		state->tgid = owner.tgid;
	}
	return 1;
}

static __always_inline void release(struct bpf_sock *sk, int in_storage)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct owner *owner = bpf_map_lookup_elem(&owners, &cookie);
	if (owner)
		owner->released = 1;
	if (!in_storage)
		return;
	struct socket_state *state = bpf_sk_storage_get(&socket_states, sk, 0, 0);
	if (state) {
		/* An exchange: ordered before taking the counts, so a packet counted in a
		 * slot after they were taken sees it and hands its own over. */
		__sync_lock_test_and_set(&state->released, 1);
		if (state->egress.state == SLOT_READY)
			hand_over(&state->egress, cookie, EGRESS);
		if (state->ingress.state == SLOT_READY)
			hand_over(&state->ingress, cookie, INGRESS);
	}
}

SEC("cgroup/sock_release")
int owner_on_release(struct bpf_sock *sk)
{
	release(sk, 0);
	return 1;
}

SEC("cgroup/sock_release")
int owner_on_release_in_storage(struct bpf_sock *sk)
{
	release(sk, 1);
	return 1;
}

/* A socket used by a process other than its recorded owner (accepted by a server, or
 * inherited across fork) now belongs to that process. `typed`: called from a BTF-typed
 * tracepoint, which reads the socket in place and may use its storage and cookie
 * helper; otherwise (a raw tracepoint, where the kernel's policy refuses typed ones)
 * the socket is read with probe-reads, and a socket whose cookie was never made is
 * left to the next call. `typed` is a constant in each copy the compiler makes. */
static __always_inline void adopt(struct sock *sk, int typed)
{
	/* The tracepoints fire for every kind of socket; netgraph counts these. */
	__u16 family = typed ? sk->__sk_common.skc_family : BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6 && family != AF_PACKET)
		return;
	__u64 cookie = typed ? sk->__sk_common.skc_cookie.counter : BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!typed && !cookie)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	__u64 *shared = bpf_map_lookup_elem(&owner_generation, &zero);
	__u64 generation = shared ? *shared : 0;
	struct adoption_check *last = bpf_map_lookup_elem(&last_adoption_check, &zero);
	if (cookie && last && last->cookie == cookie && last->tgid == tgid && last->generation == generation)
		return; /* this process owned this socket, and nothing changed hands since */
	struct socket_state *state = 0;
	if (typed) {
		if (!cookie)
			cookie = bpf_get_socket_cookie(sk);
		state = bpf_sk_storage_get(&socket_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	}
	struct owner *known = bpf_map_lookup_elem(&owners, &cookie);
	if (!known || known->tgid != tgid || (state && state->tgid != tgid)) {
		struct owner owner = {};
		if (known) {
			owner.family = known->family;
			owner.protocol = known->protocol;
			owner.netns = known->netns;
		} else {
			owner.family = family;
			owner.protocol = typed ? sk->sk_protocol : BPF_CORE_READ(sk, sk_protocol);
			owner.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		}
		fill_current(&owner);
		remember(cookie, &owner);
		if (state) {
			state->cookie = cookie;
			state->tgid = tgid;
		}
		if (shared)
			generation = __sync_add_and_fetch(shared, 1);
	}
	if (last) {
		last->cookie = cookie;
		last->tgid = tgid;
		last->generation = generation;
	}
}

/* What the iterator reports of a slot: the counts it took, and their key. */
struct slot_report {
	__u64 cookie;
	__u32 tgid;
	__u32 ifindex;
	enum direction direction;
	__u8 protocol;
	__u8 pad[6];
	struct traffic_value counts;
};

/* Never used: makes the generated Rust types carry `struct slot_report`. */
struct slot_report *slot_report_type __attribute__((unused));

static __always_inline void report_slot(struct seq_file *seq, struct socket_state *state, struct socket_slot *slot,
					enum direction direction)
{
	if (slot->state != SLOT_READY)
		return;
	struct slot_report report = {
		.cookie = state->cookie,
		.tgid = slot->tgid,
		.ifindex = slot->ifindex,
		.direction = direction,
		.protocol = slot->protocol,
	};
	report.counts.bytes = __sync_lock_test_and_set(&slot->bytes, 0);
	report.counts.packets = __sync_lock_test_and_set(&slot->packets, 0);
	report.counts.segment_bytes = __sync_lock_test_and_set(&slot->segment_bytes, 0);
	report.counts.segment_packets = __sync_lock_test_and_set(&slot->segment_packets, 0);
	if (report.counts.bytes || report.counts.packets || report.counts.segment_packets)
		bpf_seq_write(seq, &report, sizeof(report));
}

/* Takes what every socket's slots counted since the last run (userspace reads it each
 * drain). The counts are taken as they are written out; userspace reads in pieces
 * smaller than the kernel's buffer, so no socket's output is ever discarded and shown
 * again (which would lose what was taken). */
SEC("iter/bpf_sk_storage_map")
int take_socket_counts(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct socket_state *state = ctx->value;
	if (!state)
		return 0;
	struct seq_file *seq = ctx->meta->seq;
	report_slot(seq, state, &state->egress, EGRESS);
	report_slot(seq, state, &state->ingress, INGRESS);
	return 0;
}

/* BTF-typed tracepoints (Linux 6.3+ has them): the socket is read in place. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(owner_on_send, struct sock *sk, int ret, int flags)
{
	/* A failed call (EAGAIN on a non-blocking socket) moved nothing: no owner changes. */
	if (ret < 0)
		return 0;
	adopt(sk, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(owner_on_recv, struct sock *sk, int ret, int flags)
{
	if (ret < 0)
		return 0;
	adopt(sk, 1);
	return 0;
}

/* The same tracepoints as raw tracepoints, for kernels whose policy refuses the typed
 * (BPF_PROG_TYPE_TRACING) kind: args are (sk, ret, flags). */
SEC("raw_tp/sock_send_length")
int owner_on_send_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if ((int)ctx->args[1] < 0)
		return 0;
	adopt((struct sock *)ctx->args[0], 0);
	return 0;
}

SEC("raw_tp/sock_recv_length")
int owner_on_recv_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if ((int)ctx->args[1] < 0)
		return 0;
	adopt((struct sock *)ctx->args[0], 0);
	return 0;
}

/* Each cgroup v2 path as the cgroup is made, by cgroup id: a container that lived a
 * moment has taken its directory away before userspace could find it by id. */
#define CGROUP_PATH_LEN 256

struct cgroup_path {
	char path[CGROUP_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct cgroup_path);
} cgroup_paths SEC(".maps");

SEC("raw_tp/cgroup_mkdir")
int record_cgroup_path(struct bpf_raw_tracepoint_args *ctx)
{
	struct cgroup *cgroup = (struct cgroup *)ctx->args[0];
	/* Hierarchy 0 is cgroup v2, whose ids the owners carry. */
	if (BPF_CORE_READ(cgroup, root, hierarchy_id) != 0)
		return 0;
	__u64 id = BPF_CORE_READ(cgroup, kn, id);
	struct cgroup_path value = {};
	bpf_probe_read_kernel_str(value.path, sizeof(value.path), (const char *)ctx->args[1]);
	bpf_map_update_elem(&cgroup_paths, &id, &value, BPF_ANY);
	return 0;
}

/* The program each process runs, as it was executed (the path given to execve), kept
 * past the process's end: a process that lives milliseconds is gone from /proc before
 * its traffic is attributed. */
struct exe_path {
	char path[CGROUP_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct exe_path);
} exe_paths SEC(".maps");

/* Built here: a path does not fit well on the BPF stack beside the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exe_path);
} exe_scratch SEC(".maps");

SEC("raw_tp/sched_process_exec")
int record_exe(struct bpf_raw_tracepoint_args *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	struct exe_path *value = bpf_map_lookup_elem(&exe_scratch, &zero);
	if (!value)
		return 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (bpf_probe_read_kernel_str(value->path, sizeof(value->path), filename) <= 0)
		return 0;
	bpf_map_update_elem(&exe_paths, &tgid, value, BPF_ANY);
	return 0;
}

/* The exit of accept(2) and accept4(2), as classic tracepoints (every kernel): the
 * returned descriptor's socket belongs to the caller. */
struct syscall_exit {
	__u64 common;
	__s32 syscall_nr;
	__s32 pad;
	__s64 ret;
};

static __always_inline void owner_on_accept(struct syscall_exit *ctx)
{
	__s64 fd = ctx->ret;
	if (fd < 0)
		return;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *table = BPF_CORE_READ(task, files, fdt);
	if (!table || fd >= BPF_CORE_READ(table, max_fds))
		return;
	struct file **files = BPF_CORE_READ(table, fd);
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &files[fd]) || !file)
		return;
	struct socket *socket = BPF_CORE_READ(file, private_data);
	struct sock *sk = socket ? BPF_CORE_READ(socket, sk) : 0;
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	struct owner owner = {
		.family = family,
		.protocol = BPF_CORE_READ(sk, sk_protocol),
		.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
	};
	fill_current(&owner);
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (cookie) {
		remember(cookie, &owner);
		return;
	}
	struct accepted_key key = {};
	if (family == AF_INET) {
		key.local[10] = key.local[11] = 0xff;
		key.remote[10] = key.remote[11] = 0xff;
		/* Sizes given: BPF_CORE_READ_INTO would read sizeof(*dst), one byte here. */
		bpf_core_read(key.local + 12, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(key.remote + 12, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(key.local, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(key.remote, 16, &sk->__sk_common.skc_v6_daddr);
	}
	key.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	key.remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	bpf_map_update_elem(&accepted, &key, &owner, BPF_ANY);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int owner_on_accept4_exit(struct syscall_exit *ctx)
{
	owner_on_accept(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int owner_on_accept_exit(struct syscall_exit *ctx)
{
	owner_on_accept(ctx);
	return 0;
}
