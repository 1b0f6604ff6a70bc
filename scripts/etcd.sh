#!/bin/sh
# etcd for tests, benchmarks and `make run-cluster`.
#
#   scripts/etcd.sh install                    install etcd (Debian package
#                                              etcd-server) when it is missing
#   scripts/etcd.sh run DIR CLIENT_PORT PEER_PORT
#                                              run a one-member etcd on
#                                              127.0.0.1 with its data in DIR
#                                              (in the foreground: exec)
#
# Nothing else is needed: the tests and `make run-cluster` call it.
set -eu

cmd=${1:-}
case "$cmd" in
install)
	if command -v etcd >/dev/null 2>&1; then
		exit 0
	fi
	echo "etcd.sh: installing etcd-server" >&2
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	$sudo apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server >&2
	# The package may start a system-wide etcd on the default ports; the
	# tests run their own.
	if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now etcd >/dev/null 2>&1 || true; fi
	command -v etcd >/dev/null 2>&1
	;;
run)
	[ $# -eq 4 ] || { echo "usage: $0 run DIR CLIENT_PORT PEER_PORT" >&2; exit 2; }
	dir=$2 client=$3 peer=$4
	mkdir -p "$dir"
	exec etcd --name default --data-dir "$dir" \
		--listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
		--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "default=http://127.0.0.1:$peer" \
		--max-txn-ops 10000 --logger zap --log-level warn
	;;
*)
	echo "usage: $0 install | run DIR CLIENT_PORT PEER_PORT" >&2
	exit 2
	;;
esac
