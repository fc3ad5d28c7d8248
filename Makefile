# Driftline build. `make build` puts the binaries in bin/, `make test` runs every test with the race
# detector, `make ci` installs what integration tests need and runs everything (see .ci/run).
GO      ?= go
BIN     := bin
CMDS    := hub/cmd/driftline agent/cmd/driftline-agent firmware-sim/cmd/firmware-sim
PKGS    := ./...
TESTFLAGS ?= -race -count=1 -timeout 20m
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/driftline/driftline/agent.Version=$(VERSION) -X github.com/driftline/driftline/hub/cli.Version=$(VERSION)

SHELL   := /bin/bash

.PHONY: all build test ci ci-deps vet bench bench-fleet bench-load demo fuzz soak soak-load clean release

all: build

build:
	@mkdir -p $(BIN)
	@for d in $(CMDS); do \
		if [ -d $$d ]; then echo "go build $$d"; $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$$(basename $$d) ./$$d || exit 1; fi; \
	done

vet:
	$(GO) vet $(PKGS)

test:
	$(GO) test $(TESTFLAGS) $(PKGS)

# ci-deps installs the outside programs that integration tests drive: Mosquitto (external broker
# tests), Chromium (dashboard browser test), promtool (metrics format check, alert rules and their
# unit tests; in Debian's prometheus package) and qemu-user-static (the arm64 and armv7 agents run
# under it in systemtest), docker-compose (`docker-compose config` validates deploy/compose without a
# Docker daemon), strace (the chaos harness's slow-disk faults) and stress-ng (make soak-load). Run
# as root on a Debian-like machine; elsewhere it says what is missing.
ci-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends mosquitto prometheus chromium qemu-user-static docker-compose ca-certificates strace stress-ng; \
	else \
		echo "ci-deps: not root or no apt-get: integration tests that need mosquitto/chromium/promtool will skip"; \
	fi

ci: ci-deps vet build
	DRIFTLINE_INTEGRATION=1 $(GO) test $(TESTFLAGS) $(PKGS)
	cd scripts/release && $(GO) vet ./... && DRIFTLINE_INTEGRATION=1 $(GO) test -count=1 ./...

# bench runs every benchmark once through and prints one table (scripts/benchtable); the raw
# output stays in bench.out. Figures and their baselines are recorded in docs/benchmarks.md.
bench:
	@set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 60m $(PKGS) 2>&1 | tee bench.out | $(GO) run ./scripts/benchtable

fuzz:
	@for p in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$p 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$p || exit 1; \
		done; \
	done

# bench-fleet measures 1,000 and 10,000 fleet-mode agents on one hub (hub and fleet in separate
# processes): time to online, a 1 MiB rollout in waves [1, 10, 100] %, the steady state; see
# docs/benchmarks.md. 10,000 agents take ~11 minutes and ~16 GiB (most of it file pages).
bench-fleet: build
	$(GO) build -trimpath -o $(BIN)/bench-fleet ./firmware-sim/cmd/bench-fleet
	$(BIN)/bench-fleet -devices $${FLEET_SIZES:-1000,10000} $(BENCH_FLEET_FLAGS)

# bench-load is the hub-side load test past the agents one machine can run: Mosquitto as
# docs/operations.md configures it, a one-node hub on it, DEVICES simulated devices spoken for by
# firmware-sim/loadgen over a few MQTT connections, the steady state and a 1 MiB rollout in waves
# [1, 10, 100] % to all of them; see docs/benchmarks.md. 100,000 devices need ~15 minutes and most
# of the machine: run it under the shared lock.
DEVICES ?= 100000
bench-load: build
	$(GO) build -trimpath -o $(BIN)/bench-load ./firmware-sim/cmd/bench-load
	$(BIN)/bench-load -devices $(DEVICES) -hub $(BIN)/driftline $(BENCH_LOAD_FLAGS)

# soak runs the fault-injection harness (internal/chaos) for DURATION with SEED (default: from the
# clock; a failure prints the seed to replay), on NODES hub processes (3 or 5). make ci runs a
# bounded 30 s version. The porcupine visualisation of a failure goes to CHAOS_OUT (default: a
# temp dir named in the output).
SEED ?=
DURATION ?= 10m
NODES ?= 3
#
# soak then runs soak-load: a subset of the test suite (LOAD_PKGS) under CPU, memory and disk
# pressure (stress-ng when installed, else shell hogs; scripts/loadtest.sh), LOAD_RUNS times, and
# names the tests that failed. LOAD=0 skips it.
LOAD ?= 1
soak:
	CHAOS_SEED=$(SEED) CHAOS_DURATION=$(DURATION) CHAOS_NODES=$(NODES) $(GO) test -count=1 -v -timeout 0 -run '^TestChaos$$' ./internal/chaos/
	@if [ "$(LOAD)" != 0 ]; then $(MAKE) soak-load; fi

soak-load:
	GO=$(GO) ./scripts/loadtest.sh

demo: build
	@./scripts/demo.sh

# release cross-compiles static binaries (CGO_ENABLED=0) of the hub and the agent for the hosts
# they run on, builds .deb packages of both with their systemd units (scripts/release, its own Go
# module: nfpm), and writes SHA256SUMS; everything lands in dist/.
DIST           := dist
RELEASE_ARCHES := amd64 arm64 armv7
release:
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@for a in $(RELEASE_ARCHES); do \
		goarch=$$a; goarm=; if [ $$a = armv7 ]; then goarch=arm; goarm=7; fi; \
		for c in hub/cmd/driftline agent/cmd/driftline-agent; do \
			echo "go build $$c linux/$$a"; \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$goarch GOARM=$$goarm $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" \
				-o $(DIST)/$$(basename $$c)-linux-$$a ./$$c || exit 1; \
		done; \
	done
	cd scripts/release && $(GO) run . -repo ../.. -dist ../../$(DIST) -version $(VERSION)
	@cd $(DIST) && sha256sum -c --quiet SHA256SUMS && ls -l

clean:
	rm -rf $(BIN) $(DIST)
