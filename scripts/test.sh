#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite, lab tests included (they need root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
require_root
require_cargo
# Lab tools, the real servers the export tests write to, and the writer of the
# GeoIP test database.
# mount and util-linux (prlimit, setpriv): the full-disk and hostile-client labs.
# podman, runc, busybox-static, containerd and docker.io: the containers lab (images
# are built from busybox, never pulled); python3-yaml reads the DaemonSet manifest; dnsmasq
# answers the peer-name lab's DNS queries; ethtool sets the wire lab's offloads.
# qemu-system-x86, kmod (depmod), cpio and xz-utils boot the kernel matrix's Debian
# kernels (fetched from Debian's archive by tests/kernel_matrix/kernels.sh).
# procps (sysctl): the TCP health lab's per-namespace TCP settings.
# nfdump (nfcapd): the IPFIX collector of the flows lab.
# tshark reads the packet capture lab's pcapng files; pmacct (nfacctd) decodes netgraph's
# IPFIX elements in the flows lab.
install_packages "${BUILD_PACKAGES[@]}" iproute2 nftables iputils-ping mount util-linux \
    influxdb victoria-metrics prometheus openssl curl chromium nodejs tmux systemd adduser \
    libmaxmind-db-writer-perl podman runc busybox-static containerd python3-yaml \
    dnsmasq-base ethtool docker.io tzdata qemu-system-x86 kmod cpio xz-utils \
    rpm rpmlint man-db groff-base python3-pip procps nfdump tshark pmacct
# npm comes with nodejs from NodeSource; Debian's own npm conflicts with that one.
command -v npm >/dev/null 2>&1 || install_packages npm
# The browser test drives chromium with playwright-core (no browser download).
npm ci --prefix tests/browser --no-audit --no-fund --silent
# kubernetes-validate checks the DaemonSet against Kubernetes' own schemas (PyPI).
python3 -c "import kubernetes_validate" >/dev/null 2>&1 ||
    python3 -m pip install --quiet --root-user-action=ignore kubernetes-validate ||
    python3 -m pip install --quiet --root-user-action=ignore --break-system-packages kubernetes-validate
# python-ipfix decodes the IPFIX lab's records over TCP with netgraph's published template.
python3 -c "import ipfix.reader" >/dev/null 2>&1 ||
    python3 -m pip install --quiet --root-user-action=ignore ipfix ||
    python3 -m pip install --quiet --root-user-action=ignore --break-system-packages ipfix
# opentelemetry-proto decodes the OTLP lab's requests with OpenTelemetry's own definitions.
python3 -c "import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2" >/dev/null 2>&1 ||
    python3 -m pip install --quiet --root-user-action=ignore opentelemetry-proto ||
    python3 -m pip install --quiet --root-user-action=ignore --break-system-packages opentelemetry-proto
# The package test builds the .deb and the RPM.
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked --quiet cargo-deb
command -v cargo-generate-rpm >/dev/null 2>&1 || cargo install --locked --quiet cargo-generate-rpm

cargo fmt --all -- --check
cargo clippy --release --all-targets --quiet -- -D warnings
rm -f target/lab-report.txt
# Lab tests are #[ignore]d for a plain `cargo test` (they need root): run them too.
cargo test --release --no-fail-fast -- --include-ignored
if [ -f target/lab-report.txt ]; then
    echo "== measured in the namespace lab =="
    cat target/lab-report.txt
fi
