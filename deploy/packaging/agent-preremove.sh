#!/bin/sh
# driftline-agent preremove: stop the agent. Its state dir (models, outbox) stays.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop driftline-agent.service || true
	systemctl disable driftline-agent.service || true
fi
