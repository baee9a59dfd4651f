#!/bin/sh
# How fast the store answers the page's history queries over a month with a million
# peers (examples/history_bench.rs); the table goes to bench/results/.
# usage: bench/history.sh [DAYS] [PEERS]
set -eu
cd "$(dirname "$0")/.."
days=${1:-30}
peers=${2:-1000000}
cargo build --profile dist --example history_bench
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
out=bench/results/$(date -u +%Y%m%d-%H%M)-history.md
{
    echo "# History queries, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r)"
    echo
    target/dist/examples/history_bench "$state" "$days" "$peers"
} | tee "$out"
