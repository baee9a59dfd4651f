#!/usr/bin/env bash
# Builds netgraph's container image with podman from the release binary, FROM scratch:
# the binary, the libraries ldd lists for it, the CA certificates and a default
# configuration. Usage: packaging/container/build.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/netgraph:latest}
binary=${NETGRAPH_BINARY:-target/release/netgraph}
[ -x "$binary" ] || { echo "no $binary: build it first (cargo build --release)" >&2; exit 1; }
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/bin" "$rootfs/etc/netgraph" "$rootfs/etc/ssl/certs" \
    "$rootfs/tmp" "$rootfs/run" "$rootfs/var/lib/netgraph"
chmod 1777 "$rootfs/tmp"
install -m 755 "$binary" "$rootfs/usr/bin/netgraph"
for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
    install -D -m 755 "$library" "$rootfs$library"
done
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
install -m 644 packaging/container/netgraph.toml "$rootfs/etc/netgraph/netgraph.toml"
cp packaging/container/Containerfile "$context/"
podman build --quiet --tag "$tag" --file "$context/Containerfile" "$context"
