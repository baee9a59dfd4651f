#!/usr/bin/env bash
# Builds netgraph and starts it on its defaults: every interface, loopback included,
# history in the embedded store, the page on http://127.0.0.1:9800/. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
require_root
require_cargo
install_packages "${BUILD_PACKAGES[@]}"
cargo build --release --quiet
exec ./target/release/netgraph run "$@"
