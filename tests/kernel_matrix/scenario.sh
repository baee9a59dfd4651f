#!/bin/sh
# The kernel matrix's workloads, run on the host (with NETGRAPH_EBPF_WITHOUT forcing a
# fallback) or as a guest kernel's init: two namespaces joined by a veth pair, nftables
# counters in namespace `a` as the truth, netgraph in the initial namespace with the eBPF
# engine. Prints `@feature` lines (netgraph check), `@truth NAME BYTES` lines (where
# netgraph's hooks sit), `@far NAME BYTES` lines (the far end of the veth, what the wire
# carried) and netgraph's JSON lines as `@json LINE`; the test on the host compares them.
# Needs: NETGRAPH, LABTRAFFIC (binaries), WORK (a scratch directory); IP and NFT may
# name iproute2's and nftables' binaries.
set -u
IP=${IP:-ip}
NFT=${NFT:-nft}
A=ngm-a
B=ngm-b
ADDR_A=10.77.0.1
ADDR_B=10.77.0.2

say() { echo "$@"; }
in_a() { "$IP" netns exec $A "$@"; }
in_b() { "$IP" netns exec $B "$@"; }

cleanup() {
    [ -n "${NETGRAPH_PID:-}" ] && kill "$NETGRAPH_PID" 2>/dev/null
    for pid in $SERVERS; do kill "$pid" 2>/dev/null; done
    "$IP" netns del $A 2>/dev/null
    "$IP" netns del $B 2>/dev/null
}
SERVERS=""
trap cleanup EXIT

mkdir -p "$WORK/bin"
# Each workload's process is named after the link it was started by.
for name in ng-up ng-sink ng-down ng-src ng-udp ng-echo ng-short ng-sink2 ng-acc ng-cli ng-lo ng-losrv ng-refused ng-dropped ng-limited ng-sink3; do
    ln -sf "$LABTRAFFIC" "$WORK/bin/$name"
done
run() { name=$1; shift; "$WORK/bin/$name" "$@"; }

cleanup
SERVERS=""
"$IP" netns add $A && "$IP" netns add $B || { say "@error cannot make namespaces"; exit 1; }
"$IP" link add ngm-va netns $A type veth peer name ngm-vb netns $B || { say "@error cannot make a veth pair"; exit 1; }
in_a "$IP" addr add $ADDR_A/24 dev ngm-va
in_b "$IP" addr add $ADDR_B/24 dev ngm-vb
for ns in $A $B; do
    "$IP" netns exec $ns "$IP" link set lo up
done
in_a "$IP" link set ngm-va up
in_b "$IP" link set ngm-vb up

# Truth where netgraph's cgroup_skb hooks sit: output and input of namespace a.
in_a "$NFT" -f - <<NFT || { say "@error nftables refused the truth counters"; exit 1; }
table inet truth {
    counter up {}
    counter down {}
    counter udp_out {}
    counter udp_in {}
    counter short {}
    counter accepted {}
    counter loopback {}
    counter dropped {}
    counter limited {}
    chain output {
        type filter hook output priority 0;
        oifname "ngm-va" udp dport 7108 counter name dropped drop
        oifname "ngm-va" tcp dport 7109 counter name limited
        oifname "ngm-va" tcp dport 7101 counter name up
        oifname "ngm-va" udp dport 7103 counter name udp_out
        oifname "ngm-va" tcp dport 7104 counter name short
        oifname "lo" tcp dport 7106 counter name loopback
    }
    chain input {
        type filter hook input priority 0;
        iifname "ngm-va" tcp sport 7102 counter name down
        iifname "ngm-va" udp sport 7103 counter name udp_in
        iifname "ngm-va" tcp dport 7105 counter name accepted
    }
}
NFT

# And at the far end of the link, in namespace b: what the wire carried.
in_b "$NFT" -f - <<NFT || { say "@error nftables refused the far end's counters"; exit 1; }
table inet truth {
    counter up {}
    counter down {}
    counter udp_out {}
    counter udp_in {}
    counter short {}
    counter accepted {}
    counter limited {}
    counter up_back {}
    chain input {
        type filter hook input priority 0;
        iifname "ngm-vb" tcp dport 7101 counter name up
        iifname "ngm-vb" tcp dport 7109 counter name limited
        iifname "ngm-vb" udp dport 7103 counter name udp_out
        iifname "ngm-vb" tcp dport 7104 counter name short
    }
    chain output {
        type filter hook output priority 0;
        oifname "ngm-vb" tcp sport 7101 counter name up_back
        oifname "ngm-vb" tcp sport 7102 counter name down
        oifname "ngm-vb" udp sport 7103 counter name udp_in
        oifname "ngm-vb" tcp dport 7105 counter name accepted
    }
}
NFT

"$NETGRAPH" check 2>/dev/null | sed -n 's/^ok *eBPF \([a-z_]*\): \([a-z]*\)\(.*\)$/@feature \1 \2\3/p'
cat > "$WORK/netgraph.toml" <<TOML
[store]
enabled = false
[web]
enabled = false
[[limits]]
name = "matrix"
process = "ng-limited"
egress = "3200 kbit/s"
TOML
"$NETGRAPH" run --engine ebpf --json --interval 1s --config "$WORK/netgraph.toml" \
    > "$WORK/netgraph.jsonl" 2> "$WORK/netgraph.log" &
NETGRAPH_PID=$!
started=0
for _ in $(seq 1 300); do
    grep -q "netgraph running" "$WORK/netgraph.log" 2>/dev/null && { started=1; break; }
    kill -0 "$NETGRAPH_PID" 2>/dev/null || break
    sleep 0.1
done
if [ $started -ne 1 ]; then
    say "@error netgraph did not start"
    sed 's/^/@log /' "$WORK/netgraph.log"
    exit 1
fi

serve() { "$@" > /dev/null 2>&1 & SERVERS="$SERVERS $!"; }
# Waits until a namespace listens on a TCP port (IPv4, /proc/net/tcp state 0A).
ready() {
    hex=$(printf %04X "$2")
    for _ in $(seq 1 100); do
        in_"$1" cat /proc/net/tcp | grep -q ":$hex 00000000:0000 0A" && return 0
        sleep 0.1
    done
    say "@error nothing listens on port $2 in namespace $1"
}

# Packet capture: the upload's packets, both ways, by a second engine of its own;
# its summary line says how many packets and bytes it wrote.
"$NETGRAPH" capture --process ng-up --for 300s -w "$WORK/up.pcapng" 2> "$WORK/capture.log" &
CAPTURE_PID=$!
for _ in $(seq 1 600); do
    grep -q "capture started" "$WORK/capture.log" 2>/dev/null && break
    kill -0 "$CAPTURE_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q "capture started" "$WORK/capture.log" || { say "@error the capture did not start"; sed 's/^/@log /' "$WORK/capture.log"; }
serve in_b "$WORK/bin/ng-sink" tcp-sink $ADDR_B:7101
ready b 7101
in_a "$WORK/bin/ng-up" tcp-send $ADDR_B:7101 6000000 > /dev/null || say "@error upload"
sleep 0.5
kill -INT "$CAPTURE_PID"
wait "$CAPTURE_PID" || say "@error the capture failed"
lost=$(sed -n 's/.*; \([0-9]*\) packets lost.*/\1/p' "$WORK/capture.log")
say "@capture $(sed -n 's/^netgraph: \([0-9]*\) packets (\([0-9]*\) bytes).*/\1 \2/p' "$WORK/capture.log") ${lost:-0}"
# Its own engine's skipped tracing runs are its own (its counts are not compared).
grep -E " (WARN|ERROR) " "$WORK/capture.log" | grep -v "skipped runs of netgraph's tracing programs" \
    | sed "s/^/@log capture: /"

serve in_b "$WORK/bin/ng-src" tcp-source $ADDR_B:7102 1
ready b 7102
in_a "$WORK/bin/ng-down" tcp-recv $ADDR_B:7102 > /dev/null || say "@error download"

serve in_b "$WORK/bin/ng-echo" udp-echo $ADDR_B:7103
sleep 0.3
in_a "$WORK/bin/ng-udp" udp-ping $ADDR_B:7103 1000 512 connected 1000 > /dev/null || say "@error udp"

serve in_b "$WORK/bin/ng-sink2" tcp-sink $ADDR_B:7104
ready b 7104
in_a "$WORK/bin/ng-short" short-lived $ADDR_B:7104 300 20000 > /dev/null || say "@error short-lived"

serve in_a "$WORK/bin/ng-acc" tcp-sink $ADDR_A:7105
ready a 7105
in_b "$WORK/bin/ng-cli" tcp-send $ADDR_A:7105 6000000 > /dev/null || say "@error accepted"

serve in_a "$WORK/bin/ng-losrv" tcp-sink 127.0.0.1:7106
ready a 7106
in_a "$WORK/bin/ng-lo" tcp-send 127.0.0.1:7106 6000000 > /dev/null || say "@error loopback"

# TCP health: a connect to a port nothing listens on is refused, once.
in_a "$WORK/bin/ng-refused" tcp-send $ADDR_B:7107 1 > /dev/null 2>&1 && say "@error a connect to a closed port succeeded"

# Drops: every datagram to this port is dropped by netfilter on its way out.
in_a "$WORK/bin/ng-dropped" udp-trickle $ADDR_B:7108 1 100 > /dev/null 2>&1

# Limits: a process held to 400 kB/s, writing for 4 s; it ends once the far end has
# everything it wrote (the far end counts what passed, over the time it took).
serve in_b "$WORK/bin/ng-sink3" tcp-sink $ADDR_B:7109
ready b 7109
# Centiseconds since boot (the guests' busybox date has no nanoseconds).
centiseconds() { cut -d' ' -f1 /proc/uptime | tr -d . | sed 's/^0*//'; }
started=$(centiseconds)
in_a "$WORK/bin/ng-limited" tcp-send $ADDR_B:7109 4s > /dev/null || say "@error limited"
say "@limited_ms $(( ($(centiseconds) - started) * 10 ))"

# Two intervals for the last counts to be drained, then the last partial one at exit.
sleep 2.5
kill "$NETGRAPH_PID"
wait "$NETGRAPH_PID"
NETGRAPH_PID=""
for counter in up down udp_out udp_in short accepted loopback limited; do
    bytes=$(in_a "$NFT" list counter inet truth $counter | sed -n 's/.*bytes \([0-9]*\).*/\1/p')
    say "@truth $counter ${bytes:-0}"
done
packets=$(in_a "$NFT" list counter inet truth dropped | sed -n 's/.*packets \([0-9]*\).*/\1/p')
say "@dropped ${packets:-0}"
# Loopback has no far end: its traffic never leaves namespace a.
for counter in up up_back down udp_out udp_in short accepted limited; do
    bytes=$(in_b "$NFT" list counter inet truth $counter | sed -n 's/.*bytes \([0-9]*\).*/\1/p')
    say "@far $counter ${bytes:-0}"
done
grep -E " (WARN|ERROR) " "$WORK/netgraph.log" | sed "s/^/@log /"
sed 's/^/@json /' "$WORK/netgraph.jsonl"
say "@done"
