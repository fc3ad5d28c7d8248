#!/bin/sh
# loadtest.sh runs a subset of the test suite under CPU, memory and disk pressure and reports the
# tests that fail: a test that fails only on a loaded machine waits on time, not on a condition
# (issue 16, docs/reliability.md "The test suite under load"). Used by `make soak-load`.
#
#   LOAD_PKGS   packages to test (default: the ones whose tests run servers and wait on them)
#   LOAD_RUNS   how many times to run them (default 1)
#   LOAD_CPU    CPU hogs beside the tests (default 2)
#   LOAD_VM     memory held by the memory hog (default 1G)
#   LOAD_FLAGS  go test flags (default -race -count=1 -timeout 30m)
#   LOAD_KEEP   keep a failed run's whole output in LOAD_KEEP.N
#
# stress-ng is used when installed (make ci-deps installs it); otherwise shell busy loops, a
# process holding LOAD_VM of memory and a dd loop writing and syncing a file stand in.
set -u
PKGS=${LOAD_PKGS:-"./hub/store/ ./hub/protocol/ ./hub/rollout/ ./hub/webhook/ ./agent/outbox/ ./agent/pipeline/ ./agent/samples/"}
RUNS=${LOAD_RUNS:-1}
CPU=${LOAD_CPU:-2}
VM=${LOAD_VM:-1G}
FLAGS=${LOAD_FLAGS:-"-race -count=1 -timeout 30m"}
GO=${GO:-go}

tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if command -v stress-ng >/dev/null 2>&1; then
	echo "loadtest: stress-ng --cpu $CPU --vm 1 --vm-bytes $VM --hdd 1 --hdd-bytes 128M"
	stress-ng --cpu "$CPU" --vm 1 --vm-bytes "$VM" --vm-keep --hdd 1 --hdd-bytes 128M --temp-path "$tmp" --timeout 0 --quiet &
	pids="$pids $!"
else
	echo "loadtest: stress-ng not installed (make ci-deps): $CPU shell busy loops, a dd writer with fsync, $VM held by a tail"
	i=0
	while [ "$i" -lt "$CPU" ]; do
		sh -c 'while :; do :; done' &
		pids="$pids $!"
		i=$((i + 1))
	done
	sh -c "while :; do dd if=/dev/zero of='$tmp/disk' bs=1M count=128 conv=fsync 2>/dev/null; done" &
	pids="$pids $!"
	head -c "$VM" /dev/zero | tail >/dev/null &
	pids="$pids $!"
fi

failed=0
run=1
while [ "$run" -le "$RUNS" ]; do
	echo "loadtest: run $run of $RUNS: $GO test $FLAGS $PKGS (load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
	# shellcheck disable=SC2086
	$GO test $FLAGS $PKGS >"$tmp/out" 2>&1
	rc=$?
	grep -E '^(ok|FAIL|---)|^panic:' "$tmp/out" | grep -v '^--- PASS' || true
	if [ "$rc" -ne 0 ]; then
		failed=$((failed + 1))
		echo "loadtest: run $run FAILED (exit $rc); failing tests:"
		grep -E -- '--- FAIL' "$tmp/out" || tail -40 "$tmp/out"
		echo "loadtest: their messages:"
		grep -E '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+:' "$tmp/out" | grep -v 'level=' | head -40
		if [ -n "${LOAD_KEEP:-}" ]; then cp "$tmp/out" "$LOAD_KEEP.$run"; echo "loadtest: full output in $LOAD_KEEP.$run"; fi
	fi
	run=$((run + 1))
done
echo "loadtest: $failed of $RUNS runs failed"
[ "$failed" -eq 0 ]
