// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* The floor of per-packet cost: empty programs at each hook netgraph's eBPF engine
 * uses per packet, so that bench/cost.py can tell netgraph's own work from what any
 * program attached there costs (the call, bpf_stats' clock reads). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("cgroup_skb/egress")
int f_count_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int f_count_ingress(struct __sk_buff *skb)
{
	return 1;
}

/* TCX_NEXT, as netgraph's own interface programs return. */
SEC("tc")
int f_iface_egress(struct __sk_buff *skb)
{
	return -1;
}

SEC("tc")
int f_iface_ingress(struct __sk_buff *skb)
{
	return -1;
}

/* Typed tracepoints, as netgraph attaches them. */
SEC("tp_btf/sock_send_length")
int f_on_send(unsigned long long *ctx)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int f_on_recv(unsigned long long *ctx)
{
	return 0;
}

/* The same hooks with one trivial helper call each: a program that asks the kernel
 * anything at all (its socket's storage, the current process) pays at least this. */
SEC("cgroup_skb/egress")
int c_count_egress(struct __sk_buff *skb)
{
	return bpf_get_prandom_u32() != 0 || 1;
}

SEC("cgroup_skb/ingress")
int c_count_ingress(struct __sk_buff *skb)
{
	return bpf_get_prandom_u32() != 0 || 1;
}

SEC("tp_btf/sock_send_length")
int c_on_send(unsigned long long *ctx)
{
	return bpf_get_prandom_u32() == 0;
}

SEC("tp_btf/sock_recv_length")
int c_on_recv(unsigned long long *ctx)
{
	return bpf_get_prandom_u32() == 0;
}
