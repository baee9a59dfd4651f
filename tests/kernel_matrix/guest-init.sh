#!/bin/busybox sh
# A matrix guest's /init: mounts what netgraph and the lab need, loads the modules,
# runs the scenario and powers off. Its output is the serial console.
/bin/busybox --install -s /bin
export PATH=/bin:/opt/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/cgroup /run/netns
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
for module in $(cat /modules/order); do
    insmod "/modules/$module" || echo "@error insmod $module"
done
echo "@kernel $(uname -r)"
IP=/opt/bin/ip NFT=/opt/bin/nft NETGRAPH=/opt/bin/netgraph LABTRAFFIC=/opt/bin/labtraffic \
    WORK=/tmp/matrix sh /scenario.sh
echo "@exit"
poweroff -f
