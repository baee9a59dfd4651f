/* TCP's health per socket: segments retransmitted (and their payload bytes), connects
 * made and how those that failed failed, the smoothed round-trip time. From two
 * tracepoints (tcp:tcp_retransmit_skb, sock:inet_sock_set_state), which fire
 * only on those events: counting packets costs nothing more. Cumulative per socket
 * cookie; userspace takes deltas and joins them to the socket's owner. */
#pragma once

#include "socket_ends.bpf.h"

struct tcp_health {
	__u64 retransmits;	/* segments, as the kernel's TcpRetransSegs counts them */
	__u64 retransmit_bytes; /* their TCP payload */
	__u32 connects;		/* SYN_SENT -> ESTABLISHED */
	__u32 refused;		/* SYN_SENT -> CLOSE with ECONNREFUSED (a reset) */
	__u32 timed_out;	/* ... with ETIMEDOUT (SYNs unanswered) */
	__u32 unreachable;	/* ... with EHOSTUNREACH or ENETUNREACH (ICMP) */
	__u32 aborted;		/* ... with no error: the program gave up */
	__u32 ifindex;		/* the route's device when last seen; 0 if none */
	__u32 rtt_us;		/* the smoothed RTT when last seen */
	__u32 netns;		/* the socket's network namespace (inode): where ifindex means something */
	struct ends ends;
	__u16 near_port;
	__u16 far_port;
	__u32 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tcp_health);
} tcp_health SEC(".maps");

/* Set by userspace where the health tracepoints load: the counting programs then also
 * sample each TCP socket's smoothed RTT now and then. */
const volatile __u8 count_tcp_health = 0;

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define ENETUNREACH 101
#define ETIMEDOUT 110
#define ECONNREFUSED 111
#define EHOSTUNREACH 113

/* The leading fields of both tracepoints' records, which every kernel since 4.16 lays
 * out alike (after the 8-byte common header): read without BTF, as classic
 * tracepoints are. */
struct retransmit_args {
	__u64 common;
	const void *skbaddr;
	const void *skaddr;
};

/* Kernels since about 6.10 trace every attempt with its `err`. Those that failed before
 * the kernel counted them (still queued below, no window or memory, no route) are not
 * retransmissions; those the stack refused once counted are TcpRetransSegs', and so
 * here: a device or qdisc dropping it (NET_XMIT_DROP, a positive err, as a veth whose
 * peer's backlog is full returns), -ENOBUFS, a firewall (-EPERM). Relocated against the
 * running kernel's BTF; older kernels trace only what was sent. */
#define ENOBUFS 105
#define EPERM 1
struct trace_event_raw_tcp_retransmit_skb {
	int err;
} __attribute__((preserve_access_index));

struct set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
};

/* The socket's record, made on its first event with its two ends; 0 for a socket
 * netgraph cannot name (no cookie yet) or when the map is full. */
static __always_inline struct tcp_health *health_of(struct sock *sk)
{
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!cookie)
		return 0;
	struct tcp_health *health = bpf_map_lookup_elem(&tcp_health, &cookie);
	if (health)
		return health;
	struct tcp_health fresh = {};
	socket_ends(sk, &fresh.ends, &fresh.near_port, &fresh.far_port, &fresh.netns);
	if (bpf_map_update_elem(&tcp_health, &cookie, &fresh, BPF_NOEXIST) == -EEXIST)
		return bpf_map_lookup_elem(&tcp_health, &cookie);
	health = bpf_map_lookup_elem(&tcp_health, &cookie);
	if (!health)
		count_loss(LOSS_HEALTH_FULL);
	return health;
}

/* The route's device and the smoothed RTT, as the socket has them now. */
static __always_inline void note_path(struct tcp_health *health, struct sock *sk)
{
	int ifindex = BPF_CORE_READ(sk, sk_dst_cache, dev, ifindex);
	if (ifindex > 0)
		health->ifindex = ifindex;
	__u32 srtt = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
	if (srtt)
		health->rtt_us = srtt;
}

/* Received TCP packets per RTT sample: the RTT of a live socket is refreshed every
 * so many packets it receives (its first included), which costs the other packets one
 * increment in the socket's storage. */
#define RTT_SAMPLE_EVERY 64

static __always_inline void sample_rtt(struct bpf_sock *sk, struct socket_state *state)
{
	if ((state->rtt_tick++ % RTT_SAMPLE_EVERY) != 0 || !state->cookie)
		return;
	struct bpf_tcp_sock *tcp = bpf_tcp_sock(sk);
	if (!tcp || !tcp->srtt_us)
		return;
	/* Sockets with a record: made at their handshake, or accepted. */
	struct tcp_health *health = bpf_map_lookup_elem(&tcp_health, &state->cookie);
	if (health)
		health->rtt_us = tcp->srtt_us >> 3;
}

/* One retransmission attempt: counted unless it failed before the kernel counted it
 * (see `err` above; `has_err` where the kernel traces every attempt). */
static __always_inline void count_retransmit(struct sock *sk, struct sk_buff *skb, int has_err, int err)
{
	if (!sk || !skb)
		return;
	if (has_err && err < 0 && err != -ENOBUFS && err != -EPERM)
		return;
	struct tcp_health *health = health_of(sk);
	if (!health)
		return;
	/* tcp_skb_pcount(): tcp_gso_segs, 8 bytes into the skb's control block on every
	 * kernel since 4.x (after seq and end_seq). */
	__u16 segments = 0;
	bpf_probe_read_kernel(&segments, sizeof(segments), (void *)skb + bpf_core_field_offset(skb->cb) + 8);
	__sync_fetch_and_add(&health->retransmits, segments ? segments : 1);
	__sync_fetch_and_add(&health->retransmit_bytes, BPF_CORE_READ(skb, len));
	note_path(health, sk);
}

/* A TCP socket's state change: connects made, and how those that failed failed. */
static __always_inline void count_state(struct sock *sk, int old, int new)
{
	/* Connects, accepted connections (their RTT from the handshake), and the end of
	 * connections (their last RTT); nothing else. */
	if (old != TCP_SYN_SENT && old != TCP_SYN_RECV && new != TCP_CLOSE)
		return;
	struct tcp_health *health = health_of(sk);
	if (!health)
		return;
	note_path(health, sk);
	if (old != TCP_SYN_SENT)
		return;
	if (new == TCP_ESTABLISHED) {
		__sync_fetch_and_add(&health->connects, 1);
		return;
	}
	if (new != TCP_CLOSE)
		return;
	/* Set before the state changes: by the reset, the retransmission timer's end, or
	 * the ICMP error that ended the attempt. */
	int error = BPF_CORE_READ(sk, sk_err);
	if (error == ECONNREFUSED)
		__sync_fetch_and_add(&health->refused, 1);
	else if (error == ETIMEDOUT)
		__sync_fetch_and_add(&health->timed_out, 1);
	else if (error == EHOSTUNREACH || error == ENETUNREACH)
		__sync_fetch_and_add(&health->unreachable, 1);
	else
		__sync_fetch_and_add(&health->aborted, 1);
}

/* The BTF-typed tracepoints are preferred: the kernel skips a classic tracepoint's
 * program whenever another kprobe or tracepoint program runs on the same CPU (on a
 * preemptible kernel, one that was preempted), a typed one only when this same program
 * does. Arguments (sk, skb[, err]): `err` exists where the record has it, and its read
 * is left out by the loader elsewhere. */
SEC("tp_btf/tcp_retransmit_skb")
int health_on_retransmit_typed(__u64 *ctx)
{
	struct trace_event_raw_tcp_retransmit_skb *record = 0;
	int has_err = bpf_core_field_exists(record->err);
	int err = 0;
	if (has_err)
		err = (int)ctx[2];
	count_retransmit((struct sock *)ctx[0], (struct sk_buff *)ctx[1], has_err, err);
	return 0;
}

/* Arguments (sk, oldstate, newstate). */
SEC("tp_btf/inet_sock_set_state")
int health_on_state_typed(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	if (BPF_CORE_READ(sk, sk_protocol) != 6 /* TCP */)
		return 0;
	count_state(sk, (int)ctx[1], (int)ctx[2]);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int health_on_retransmit(struct retransmit_args *ctx)
{
	struct trace_event_raw_tcp_retransmit_skb *record = (void *)ctx;
	int has_err = bpf_core_field_exists(record->err);
	int err = 0;
	if (has_err)
		bpf_probe_read_kernel(&err, sizeof(err), (void *)ctx + bpf_core_field_offset(record->err));
	count_retransmit((struct sock *)ctx->skaddr, (struct sk_buff *)ctx->skbaddr, has_err, err);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int health_on_state(struct set_state_args *ctx)
{
	if (ctx->protocol != 6 /* TCP */)
		return 0;
	count_state((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate);
	return 0;
}
