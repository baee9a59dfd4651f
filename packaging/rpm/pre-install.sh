# netgraph's system user, as the .deb makes it; the unit runs as it.
getent group netgraph >/dev/null || groupadd --system netgraph
getent passwd netgraph >/dev/null ||
    useradd --system --gid netgraph --no-create-home --home-dir /var/lib/netgraph \
        --shell /sbin/nologin --comment "netgraph daemon" netgraph
exit 0
