# Shared by the run and test scripts: installs Debian/Ubuntu packages once, quietly.
# Usage: install_packages PKG...
install_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: run as root (packet capture and package installation need it): sudo $0" >&2
        exit 1
    fi
}

require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; install Rust (https://rustup.rs) and run again" >&2
        exit 1
    fi
    # The eBPF skeleton is generated with rustfmt; clippy lints the tests.
    if command -v rustup >/dev/null 2>&1; then
        rustup component add rustfmt clippy >/dev/null 2>&1 || true
    fi
}

# protobuf-compiler: containerd-client generates its gRPC bindings with protoc.
BUILD_PACKAGES=(build-essential pkg-config libpcap-dev clang libelf-dev zlib1g-dev linux-libc-dev protobuf-compiler)
