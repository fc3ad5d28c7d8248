#!/usr/bin/env bash
# make demo: starts a one-node hub with the embedded broker and embedded defaults under
# ./driftline-data/demo and says how to reach it. DEMO_SECONDS=N stops it after N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
data=./driftline-data/demo
mkdir -p "$data"
./bin/driftline hub serve --data "$data" --http 127.0.0.1:8080 --raft 127.0.0.1:7000 --mqtt 127.0.0.1:1883 &
hub=$!
trap 'kill $hub 2>/dev/null; wait $hub 2>/dev/null' EXIT INT TERM
echo "driftline demo: hub on http://127.0.0.1:8080, admin token in $data/admin.token"
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait $hub
fi
