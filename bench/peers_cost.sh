#!/bin/bash
# Per-packet kernel time of netgraph's programs (bpf_stats, via bpftool) under a 5 s
# 64-byte UDP flood on loopback, without and with [peers]. Needs root, bpftool and
# cargo build --profile dist --bins --examples. Usage: [NETGRAPH=binary] bench/peers_cost.sh [BASELINE_NETGRAPH]
# With a baseline binary (an older build), its run without peers comes first, for the
# cost of the peers-off path before and after a change, in the same run.
set -e
cd "$(dirname "$0")/.."
T=target/dist/examples/labtraffic
NG=${NETGRAPH:-target/dist/netgraph}
sysctl -q kernel.bpf_stats_enabled=1
modes="off on"
[ -n "${1:-}" ] && modes="baseline off on"
for mode in $modes; do
  conf=/tmp/measure-$mode.toml
  printf '[store]\nenabled = false\n[web]\nenabled = false\n' > $conf
  [ $mode = on ] && printf '[peers]\nenabled = true\n' >> $conf
  binary=$NG
  [ $mode = baseline ] && binary=$1
  $binary run --engine ebpf --interval 1s --config $conf >/dev/null 2>/tmp/measure-$mode.log &
  ng=$!
  sleep 2
  $T udp-sink 127.0.0.1:7999 recv >/dev/null & sink=$!
  sleep 0.3
  $T udp-flood 127.0.0.1:7999 5 64 connected >/dev/null
  bpftool prog show -j | python3 -c '
import json,sys
progs=[p for p in json.load(sys.stdin) if p.get("name") in ("count_egress","count_ingress","owner_on_send","owner_on_recv")]
for p in progs:
    if p.get("run_cnt"):
        print("'$mode'", p["name"], p["run_cnt"], "runs", round(p["run_time_ns"]/p["run_cnt"],1), "ns/run")'
  kill $sink; kill $ng; wait $ng 2>/dev/null || true
done
sysctl -q kernel.bpf_stats_enabled=0
