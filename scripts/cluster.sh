#!/bin/sh
# `make run-cluster`: a local etcd (scripts/etcd.sh, client port 2379, data
# in .cluster/etcd) and three gateway nodes on it (examples/cluster/node-*.yaml:
# HTTP on 127.0.0.1:9081-9083, admin API on 127.0.0.1:9181-9183). Logs in
# .cluster/*.log. Ctrl-C stops everything.
#
#   scripts/cluster.sh GATEWAY_BINARY
set -eu

gateway=${1:?usage: scripts/cluster.sh GATEWAY_BINARY}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p .cluster
"$root/scripts/etcd.sh" install

pids=""
stop() {
	trap - INT TERM EXIT
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$root/scripts/etcd.sh" run .cluster/etcd 2379 2380 >.cluster/etcd.log 2>&1 &
pids="$pids $!"
i=0
until curl -sf http://127.0.0.1:2379/health >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then echo "etcd did not start: see .cluster/etcd.log" >&2; exit 1; fi
	sleep 0.1
done
echo "etcd on http://127.0.0.1:2379 (data in .cluster/etcd)"

for n in a b c; do
	"$gateway" run --bootstrap "examples/cluster/node-$n.yaml" \
		--pid-file ".cluster/node-$n.pid" --upgrade-sock ".cluster/node-$n.sock" >".cluster/node-$n.log" 2>&1 &
	pids="$pids $!"
done
echo "gateway nodes: node-a http://127.0.0.1:9081 (admin :9181), node-b :9082 (:9182), node-c :9083 (:9183); logs in .cluster/"
echo "Ctrl-C stops the cluster"
wait
