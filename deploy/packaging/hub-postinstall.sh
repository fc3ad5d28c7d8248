#!/bin/sh
# driftline-hub postinstall: the system user, the data dir, systemd. The service is enabled but
# not started: configure /etc/driftline/hub.env first, then `systemctl start driftline-hub`.
set -e
if ! getent group driftline >/dev/null; then groupadd --system driftline; fi
if ! getent passwd driftline >/dev/null; then
	useradd --system --gid driftline --home-dir /var/lib/driftline --no-create-home --shell /usr/sbin/nologin driftline
fi
install -d -o driftline -g driftline -m 0700 /var/lib/driftline
install -d -o root -g driftline -m 0750 /etc/driftline
chgrp driftline /etc/driftline/hub.env 2>/dev/null || true
chmod 0640 /etc/driftline/hub.env 2>/dev/null || true
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable driftline-hub.service || true
fi
