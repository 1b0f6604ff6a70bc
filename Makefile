# pingora-config: one entry point for everything.
#
#   make run           the gateway on its default config (examples/config.yaml)
#   make test          every test (what CI runs: .ci/run)
#   make gen           regenerate code, JSON Schema and docs from proto/
#   make bench         the benchmarks (release build)
#
# One cargo target directory is shared by every step, so each crate builds
# once per profile.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build gen check-gen fmt lint test test-rust run validate bench bench-config

all: build

build:
	$(CARGO) build --workspace

## Regenerate everything generated from proto/ (no protoc needed).
gen:
	$(CARGO) run -q -p pingora-config-codegen --bin codegen

## Fail when the committed generated files differ from what `make gen` writes.
check-gen:
	$(CARGO) run -q -p pingora-config-codegen --bin codegen -- --check

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -q --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace --all-targets

## Everything CI checks, in the order that fails fastest.
test: check-gen lint test-rust

## Check the example configs with the same rules the gateway applies.
validate:
	$(CARGO) run -q -p pingora-config-gateway --bin gateway -- validate examples/config.yaml examples/full.yaml
	$(CARGO) run -q -p pingora-config-gateway --bin gateway -- validate --kind bootstrap examples/gateway.yaml

## The gateway on its default config: HTTP on 127.0.0.1:9080, file store
## examples/config.yaml (edit it while it runs: changes are live).
run:
	$(CARGO) run -q --release -p pingora-config-gateway --bin gateway -- run --config examples/config.yaml

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
