# pingora-config: one entry point for everything.
#
#   make run           the gateway on its default config (examples/config.yaml)
#   make run-cluster   etcd and three gateway nodes on it (examples/cluster/)
#   make test          every test (what CI runs: .ci/run)
#   make gen           regenerate code, JSON Schema and docs from proto/
#   make production    the binary to deploy (profile-guided, fat LTO): target/pgo/<host>/production/gateway
#   make bench         the benchmarks (on that production build)
#   make web           build the web admin UI into web/dist
#
# One cargo target directory is shared by every step, so each crate builds
# once per profile.

CARGO ?= cargo
# The gateway binary the Go, TS and browser tests run (cargo's debug profile).
GATEWAY_BIN ?= $(abspath $(or $(CARGO_TARGET_DIR),target))/debug/gateway
# Where cargo builds (CARGO_TARGET_DIR when set).
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
export CARGO_TERM_COLOR ?= never
# etcd-client's build script compiles etcd's protos with protoc (our own
# `make gen` needs none): found, or installed from Debian's packages, once
# per make run.
ifeq ($(origin PROTOC),undefined)
PROTOC := $(shell scripts/protoc.sh)
endif
export PROTOC

.PHONY: all build gateway-bin tools gen check-gen check-breaking fmt lint test test-rust test-go test-ts web web-deps test-web run run-cluster validate production bench bench-plain bench-config bench-propagation

all: build

build:
	$(CARGO) build --workspace

## The pinned protoc plugins (Go: .tools/bin; TS: clients/ts/node_modules).
## Fast when they are already installed.
tools:
	scripts/tools.sh

## Regenerate everything generated from proto/ (no protoc needed): Rust,
## JSON Schema, docs, and the Go and TS clients through the pinned plugins.
gen: tools
	$(CARGO) run -q -p pingora-config-codegen --bin codegen

## Fail when the committed generated files differ from what `make gen` writes.
check-gen: tools
	$(CARGO) run -q -p pingora-config-codegen --bin codegen -- --check

## Fail on a wire/JSON breaking change of proto/: on a branch, against its
## merge base with main; on main itself (CI on a landing), against the
## previous commit; or against BREAKING_AGAINST=<git ref>. Skipped, with a
## notice, when there is no history to compare with (a shallow clone).
check-breaking:
	@against="$(BREAKING_AGAINST)"; \
	if [ -z "$$against" ]; then \
	  branch=$$(git rev-parse --abbrev-ref HEAD 2>/dev/null); \
	  if [ "$$branch" != main ] && git rev-parse -q --verify main >/dev/null; then against=$$(git merge-base main HEAD); \
	  elif git rev-parse -q --verify HEAD~1 >/dev/null; then against=HEAD~1; \
	  else echo "check-breaking: no earlier commit to compare with (shallow clone?); set BREAKING_AGAINST=<ref>; skipped"; exit 0; fi; \
	fi; \
	echo "check-breaking: proto/ against $$against"; \
	$(CARGO) run -q -p pingora-config-codegen --bin codegen -- breaking --against "$$against"

## The gateway binary (debug) that the Go, TS and browser tests start, at
## GATEWAY_BIN; a no-op when `make test-rust` already built it.
export GATEWAY_BIN

gateway-bin:
	$(CARGO) build -p pingora-config-gateway --bin gateway

## The Go client: vet, gofmt, and its tests (the shared corpus; the facade
## against a real gateway).
test-go: gateway-bin
	cd clients/go && go vet ./...
	@out=$$(gofmt -l clients/go); if [ -n "$$out" ]; then echo "gofmt: these need formatting:"; echo "$$out"; exit 1; fi
	cd clients/go && go test ./...

## The TS client: type check, the corpus test and the facade against a real
## gateway over grpc-web and gRPC (npm ci runs in `make tools`).
test-ts: tools gateway-bin
	cd clients/ts && npx --no-install tsc --noEmit && npm test --silent

## The web UI's pinned npm dependencies (npm ci when the lock changed).
web-deps:
	scripts/web.sh

## The web admin UI: type check, then build into web/dist (the admin
## listener serves it at /ui/).
web: web-deps
	cd web && npm run build --silent

## The web UI's tests: the form generator's component tests (vitest, jsdom),
## then the browser tests (Debian's Chromium, installed by the test when
## missing, driven by playwright-core) against the real gateway binary.
test-web: web gateway-bin
	cd web && npm test --silent
	cd web && GATEWAY_BIN="$(GATEWAY_BIN)" node e2e/run.mjs

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -q --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-targets
	bench/pgo-train.sh --check $(GATEWAY_BIN)

## Everything CI checks, in the order that fails fastest.
test: check-gen lint check-breaking test-rust test-go test-ts test-web

## Check the example configs with the same rules the gateway applies.
validate:
	$(CARGO) run -q -p pingora-config-gateway --bin gateway -- validate examples/config.yaml examples/full.yaml
	$(CARGO) run -q -p pingora-config-gateway --bin gateway -- validate --kind bootstrap examples/gateway.yaml examples/cluster/node-a.yaml examples/cluster/node-b.yaml examples/cluster/node-c.yaml

## The gateway on its default config: HTTP on 127.0.0.1:9080, file store
## examples/config.yaml (edit it while it runs: changes are live).
run: web
	$(CARGO) run -q --release -p pingora-config-gateway --bin gateway -- run --config examples/config.yaml

## A local cluster: etcd (scripts/etcd.sh installs it when missing) and
## three gateway nodes sharing it, HTTP on 127.0.0.1:9081-9083 and admin API
## on 127.0.0.1:9181-9183 (examples/cluster/). Ctrl-C stops everything.
run-cluster:
	$(CARGO) build -q --release -p pingora-config-gateway --bin gateway
	scripts/cluster.sh $(TARGET_DIR)/release/gateway

## Time from a gRPC write returning to the change serving traffic (file
## store; etcd with 3 nodes), then 200 writes/s under wrk. See bench/README.md.
bench-propagation:
	$(CARGO) build -q --release -p pingora-config-gateway --bin gateway --example bench_propagation
	CARGO_TARGET_DIR=$(abspath $(TARGET_DIR)) bench/propagation.sh

## Load + validate a generated 10,000-route config; what a reload of the
## benchmark's 10,000 routes costs by part; time `make gen`.
bench-config:
	$(CARGO) build -q --release -p pingora-config --example bench_load
	$(CARGO) build -q --release -p pingora-config-gateway --example bench_reload
	$(CARGO) build -q --release -p pingora-config-codegen --bin codegen
	$(TARGET_DIR)/release/examples/bench_load 10000
	@dir=$$(mktemp -d) && python3 bench/genconf.py gateway --dir "$$dir" --port 1 --admin-port 2 --upstream-port 3 \
	  --routes 10000 >/dev/null && $(TARGET_DIR)/release/examples/bench_reload "$$dir/config.yaml"; \
	  rc=$$?; rm -rf "$$dir"; exit $$rc
	@start=$$(date +%s%N); $(TARGET_DIR)/release/codegen || exit 1; end=$$(date +%s%N); \
	  echo "bench-gen: make gen (codegen already built) took $$(( (end - start) / 1000000 )) ms"

## The binary to deploy: the production profile (fat LTO, one codegen
## unit) built with profile-guided optimisation, trained on
## bench/pgo-train.sh's traffic (not the benchmark's); ~15 min of builds on
## 2 cores. Prints the path of the binary.
production:
	CARGO_TARGET_DIR=$(abspath $(TARGET_DIR)) bench/pgo.sh

## The production build of the gateway and of a bare Pingora proxy against
## nginx under wrk (installs nginx and wrk if missing), then the config and
## propagation benchmarks. See bench/README.md.
bench: bench-config
	CARGO_TARGET_DIR=$(abspath $(TARGET_DIR)) bench/pgo.sh --bench
	$(MAKE) bench-propagation

## The same gateway-against-nginx run on the production profile built
## without a profile (fat LTO only): what a plain `cargo build` gives.
bench-plain:
	GATEWAY_BIN=$(abspath $(TARGET_DIR))/production/gateway bench/run.sh
