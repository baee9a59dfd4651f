#!/bin/sh
# Builds netgraph's packages from this tree: target/debian/*.deb and
# target/generate-rpm/*.rpm, with the manual pages generated from the command line.
# usage: packaging/packages.sh [PROFILE]   (default: dist, the shipped build)
# Needs cargo-deb and cargo-generate-rpm (cargo install cargo-deb cargo-generate-rpm).
set -eu
cd "$(dirname "$0")/.."
profile=${1:-dist}
cargo build --profile "$profile" --bin netgraph
rm -rf target/man
"target/$profile/netgraph" man target/man
gzip -9n target/man/*.1
cargo deb --profile "$profile" --no-build
cargo generate-rpm --profile "$profile"
