#!/usr/bin/env bash
# make demo: runs the whole system on this machine (see docs/demo.md). Needs Go only.
# DEMO_SECONDS=N stops it by itself after N seconds and prints a summary; Ctrl-C stops it
# cleanly. The demo program stops every process it started (each in its own process group).
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}
mkdir -p bin
for cmd in hub/cmd/driftline agent/cmd/driftline-agent firmware-sim/cmd/firmware-sim firmware-sim/cmd/driftline-demo; do
  "$go" build -trimpath -o "bin/$(basename "$cmd")" "./$cmd"
done
exec ./bin/driftline-demo "$@"
