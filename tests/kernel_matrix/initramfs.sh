#!/usr/bin/env bash
# Builds a guest's initramfs for one kernel of the matrix: static busybox, iproute2 and
# nftables with their libraries, netgraph and labtraffic with theirs, the kernel's
# modules the lab needs (decompressed, in dependency order), guest-init.sh as /init and
# scenario.sh beside it. Usage: initramfs.sh KERNEL_DIR OUTPUT NETGRAPH LABTRAFFIC
set -euo pipefail
kernel=$1 output=$2 netgraph=$3 labtraffic=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,opt/bin,modules,proc,sys,dev,tmp,run,etc,root}
cp /bin/busybox "$root/bin/busybox"
# Binaries called by full path with the libraries ldd lists (busybox's own `ip` has
# no netns).
copy_binary() {
    cp "$1" "$root/opt/bin/$(basename "$1")"
    ldd "$1" | grep -o '/[^ ]*' | while read -r library; do
        mkdir -p "$root$(dirname "$library")"
        cp -L "$library" "$root$library"
    done
}
for binary in "$(command -v ip)" "$(command -v nft)" "$netgraph" "$labtraffic"; do
    copy_binary "$binary"
done

# Modules and their dependencies, in modules.dep order; .ko.xz decompressed (busybox's
# insmod reads plain .ko).
release=$(cat "$kernel/release")
depmod_root=$(mktemp -d)
mkdir -p "$depmod_root/lib/modules"
cp -r "$kernel/modules" "$depmod_root/lib/modules/$release"
depmod -b "$depmod_root" "$release"
wanted="veth nf_tables nft_counter nft_objref sch_ingress cls_bpf"
dep_file=$depmod_root/lib/modules/$release/modules.dep
: > "$root/modules/order"
add_module() {
    local path
    path=$(grep -E "(^|/)$1\.ko(\.xz|\.zst)?:" "$dep_file" | head -1 | cut -d: -f1) || true
    [ -n "$path" ] || return 0 # built in, or not in this kernel
    local dependency
    for dependency in $(grep -E "^$path:" "$dep_file" | cut -d: -f2); do
        add_module "$(basename "$dependency" | sed -E 's/\.ko(\.xz|\.zst)?$//')"
    done
    local name
    name=$(basename "$path" | sed -E 's/\.ko(\.xz|\.zst)?$//')
    grep -qx "$name.ko" "$root/modules/order" && return 0
    case "$path" in
        *.xz) xz -dc "$depmod_root/lib/modules/$release/$path" > "$root/modules/$name.ko" ;;
        *.zst) zstd -dqc "$depmod_root/lib/modules/$release/$path" > "$root/modules/$name.ko" ;;
        *) cp "$depmod_root/lib/modules/$release/$path" "$root/modules/$name.ko" ;;
    esac
    echo "$name.ko" >> "$root/modules/order"
}
for module in $wanted; do
    add_module "$module"
done
rm -rf "$depmod_root"

cp "$here/guest-init.sh" "$root/init"
cp "$here/scenario.sh" "$root/scenario.sh"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$output"
