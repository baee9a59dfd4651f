# On removal (not upgrade), stop and disable the unit.
if [ "$1" -eq 0 ]; then
    systemctl disable --now netgraph.service >/dev/null 2>&1 || :
fi
