#!/bin/sh
# `make bench-propagation`: how long after a gRPC write returns the change
# serves traffic (file store, 1 node; etcd, 3 nodes), then 200 writes/s
# under wrk. Expects the release build of the gateway and of the
# bench_propagation example (the Makefile builds them); installs wrk and
# etcd when missing.
#
#   bench/propagation.sh [writes] [sustain_seconds]
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
if ! command -v wrk >/dev/null 2>&1; then
	sudo=""; if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk
fi
"$root/scripts/etcd.sh" install
exec "$target/release/examples/bench_propagation" "$target/release/gateway" "$@"
