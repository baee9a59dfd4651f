/* A socket's two ends, ports and network namespace, read from the kernel's socket
 * (CO-RE): what the tracepoint programs record so that userspace can name a socket
 * that has no counters of its own. */
#pragma once

#ifndef AF_INET
#define AF_INET 2
#endif

/* An IPv4 address as the IPv6-mapped form every key uses. */
static __always_inline void mapped(__u8 out[16], __u32 v4)
{
	__builtin_memset(out, 0, 16);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &v4, 4);
}

static __always_inline void socket_ends(struct sock *sk, struct ends *ends, __u16 *near_port,
					__u16 *far_port, __u32 *netns)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		mapped(ends->near, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		mapped(ends->far, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else {
		BPF_CORE_READ_INTO(&ends->near, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&ends->far, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	*netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	*near_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	*far_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}
