#!/usr/bin/env bash
# Builds netgraph and starts it on its defaults: every interface, loopback included,
# one JSON line per process per second on standard output. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
require_root
require_cargo
install_packages "${BUILD_PACKAGES[@]}"
cargo build --release --quiet
exec ./target/release/netgraph run "$@"
