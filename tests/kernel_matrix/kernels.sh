#!/usr/bin/env bash
# Fetches the kernel matrix's kernels from Debian's archive (with an apt configuration
# of its own: the host's sources are left alone) and unpacks each into
# CACHE/NAME/{vmlinuz,modules/}. Prints one line per kernel: NAME DIRECTORY.
# Kernels: the newest cloud kernel of bullseye (5.10), bookworm (6.1), trixie (6.12) and
# sid (the newest). Usage: kernels.sh CACHE
set -euo pipefail
cache=$1
mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
{
    for suite in bullseye bookworm trixie sid; do
        echo "deb [signed-by=$keyring] http://deb.debian.org/debian $suite main"
    done
} > "$cache/apt/sources.list"
apt_options=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
# A day-old index is fresh enough; a failed update keeps the one there is.
if [ -z "$(find "$cache/apt/lists" -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
    apt-get "${apt_options[@]}" -qq update >&2 || echo "warning: apt update for the kernel matrix failed" >&2
fi
names() { apt-cache "${apt_options[@]}" search --names-only "$1" | awk '{print $1}' | sort -rV; }

# Downloads the first package of a list that the archive serves (listed ones may 404).
download_first() {
    local package
    for package in "$@"; do
        if ls "$cache/debs/${package}_"*.deb >/dev/null 2>&1 \
            || (cd "$cache/debs" && apt-get "${apt_options[@]}" -qq download "$package" >&2 2>/dev/null); then
            echo "$package"
            return 0
        fi
    done
    return 1
}

unpack() {
    local name=$1 dir=$cache/$1
    shift
    if [ ! -f "$dir/vmlinuz" ]; then
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/tree"
        local package
        for package in "$@"; do
            dpkg-deb -x "$(ls "$cache/debs/${package}_"*.deb | head -1)" "$dir.tmp/tree"
        done
        local vmlinuz
        vmlinuz=$(find "$dir.tmp/tree" \( -name 'vmlinuz-*' -o -name 'vmlinuz.unsigned' \) -type f | head -1)
        [ -n "$vmlinuz" ] || { echo "no vmlinuz in $*" >&2; return 1; }
        mv "$vmlinuz" "$dir.tmp/vmlinuz"
        local modules
        modules=$(find "$dir.tmp/tree" -type d -regex '.*/lib/modules/[^/]+' | head -1)
        basename "$modules" > "$dir.tmp/release"
        mv "$modules" "$dir.tmp/modules"
        rm -rf "$dir.tmp/tree" "$dir"
        mv "$dir.tmp" "$dir"
    fi
    echo "$name $dir"
}

for pattern in '^linux-image-5\.10\.[0-9.-]*-cloud-amd64-unsigned$' \
    '^linux-image-6\.1\.[0-9.-]*-cloud-amd64-unsigned$' \
    '^linux-image-6\.12\.[0-9.]*\+deb13-cloud-amd64-unsigned$'; do
    # shellcheck disable=SC2046
    package=$(download_first $(names "$pattern")) || { echo "no kernel matches $pattern" >&2; exit 1; }
    version=${package#linux-image-}
    unpack "${version%-cloud-amd64-unsigned}" "$package"
done
# sid's image and its modules come in two packages.
for binary in $(names '^linux-binary-unsigned-[0-9.]*\+deb[0-9]*-cloud-amd64$'); do
    version=${binary#linux-binary-unsigned-}
    version=${version%-cloud-amd64}
    if download_first "$binary" >/dev/null && download_first "linux-modules-$version-cloud-amd64" >/dev/null; then
        unpack "$version" "$binary" "linux-modules-$version-cloud-amd64"
        exit 0
    fi
done
echo "no sid kernel could be fetched" >&2
exit 1
