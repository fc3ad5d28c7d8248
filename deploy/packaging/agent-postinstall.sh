#!/bin/sh
# driftline-agent postinstall: the system user, the state dir, systemd. The service is enabled but
# not started: put the config from `driftline device add ... --agent-config` at
# /etc/driftline/agent.yaml (mode 0640, group driftline), then `systemctl start driftline-agent`.
set -e
if ! getent group driftline >/dev/null; then groupadd --system driftline; fi
if ! getent passwd driftline >/dev/null; then
	useradd --system --gid driftline --home-dir /var/lib/driftline-agent --no-create-home --shell /usr/sbin/nologin driftline
fi
install -d -o driftline -g driftline -m 0700 /var/lib/driftline-agent
install -d -o root -g driftline -m 0750 /etc/driftline
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable driftline-agent.service || true
fi
