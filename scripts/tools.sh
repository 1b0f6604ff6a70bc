#!/bin/sh
# Installs the pinned code generation plugins that `make gen` drives, into
# the repository (nothing global): .tools/bin for the Go plugins and
# clients/ts/node_modules for protoc-gen-es (pinned by clients/ts/package.json
# and package-lock.json). Idempotent and fast when everything is in place:
# a tool is installed again only when its pinned version changed.
set -eu

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"

# go install TOOL@VERSION unless .tools/bin/NAME.version records VERSION.
install_go() {
	name=$1 pkg=$2 version=$3
	if [ -x "$bin/$name" ] && [ "$(cat "$bin/$name.version" 2>/dev/null)" = "$version" ]; then
		return
	fi
	echo "tools: installing $name $version" >&2
	GOBIN="$bin" GOFLAGS=-mod=mod go install "$pkg@$version"
	echo "$version" >"$bin/$name.version"
}

install_go protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_go protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

# npm ci when node_modules does not match the lock file (npm writes its own
# copy of the lock to node_modules/.package-lock.json on install).
ts="$root/clients/ts"
if ! cmp -s "$ts/package-lock.json" "$ts/node_modules/.pingora-lock" 2>/dev/null; then
	echo "tools: npm ci in clients/ts" >&2
	(cd "$ts" && npm ci --no-audit --no-fund --loglevel=error)
	cp "$ts/package-lock.json" "$ts/node_modules/.pingora-lock"
fi
