#!/bin/sh
# driftline-hub preremove: stop the node (it hands leadership over on SIGTERM). The data dir and
# the user stay: removing a hub's state is the operator's call.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop driftline-hub.service || true
	systemctl disable driftline-hub.service || true
fi
