# On first install, enable and start the unit as the .deb does; on upgrade, restart it.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
    systemctl enable --now netgraph.service >/dev/null 2>&1 || :
else
    systemctl try-restart netgraph.service >/dev/null 2>&1 || :
fi
