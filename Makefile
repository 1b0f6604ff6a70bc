# pingora-config: one entry point for everything.
#
#   make run           the gateway on its default config (examples/config.yaml)
#   make run-cluster   etcd and three gateway nodes on it (examples/cluster/)
#   make test          every test (what CI runs: .ci/run)
#   make gen           regenerate code, JSON Schema and docs from proto/
#   make bench         the benchmarks (release build)
#
# One cargo target directory is shared by every step, so each crate builds
# once per profile.

CARGO ?= cargo
# Where cargo builds (CARGO_TARGET_DIR when set).
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
export CARGO_TERM_COLOR ?= never

.PHONY: all build tools gen check-gen check-breaking fmt lint test test-rust test-go test-ts run run-cluster validate bench bench-config bench-propagation

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

## Fail on a wire/JSON breaking change of proto/ against main (the merge
## base), or against BREAKING_AGAINST=<git ref>.
check-breaking:
	@if [ -z "$(BREAKING_AGAINST)" ] && ! git rev-parse -q --verify main >/dev/null; then \
	  echo "check-breaking: no local branch main to compare with (set BREAKING_AGAINST=<ref>); skipped"; exit 0; fi; \
	$(CARGO) run -q -p pingora-config-codegen --bin codegen -- breaking $(if $(BREAKING_AGAINST),--against $(BREAKING_AGAINST))

## The Go client: vet, gofmt, and its tests (the shared corpus).
test-go:
	cd clients/go && go vet ./...
	@out=$$(gofmt -l clients/go); if [ -n "$$out" ]; then echo "gofmt: these need formatting:"; echo "$$out"; exit 1; fi
	cd clients/go && go test ./...

## The TS client: type check and the corpus test (npm ci runs in `make tools`).
test-ts: tools
	cd clients/ts && npx --no-install tsc --noEmit && npm test --silent

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -q --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-targets

## Everything CI checks, in the order that fails fastest.
test: check-gen lint check-breaking test-rust test-go test-ts

## Check the example configs with the same rules the gateway applies.
validate:
	$(CARGO) run -q -p pingora-config-gateway --bin gateway -- validate examples/config.yaml examples/full.yaml
	$(CARGO) run -q -p pingora-config-gateway --bin gateway -- validate --kind bootstrap examples/gateway.yaml examples/cluster/node-a.yaml examples/cluster/node-b.yaml examples/cluster/node-c.yaml

## The gateway on its default config: HTTP on 127.0.0.1:9080, file store
## examples/config.yaml (edit it while it runs: changes are live).
run:
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

## Load + validate a generated 10,000-route config; time `make gen`.
bench-config:
	$(CARGO) build -q --release -p pingora-config --example bench_load
	$(CARGO) build -q --release -p pingora-config-codegen --bin codegen
	./target/release/examples/bench_load 10000
	@start=$$(date +%s%N); ./target/release/codegen || exit 1; end=$$(date +%s%N); \
	  echo "bench-gen: make gen (codegen already built) took $$(( (end - start) / 1000000 )) ms"

## The gateway against nginx under wrk (installs nginx and wrk if missing),
## then the config benchmarks. See bench/README.md.
bench: bench-config
	bench/run.sh
	$(MAKE) bench-propagation
