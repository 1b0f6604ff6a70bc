#!/bin/sh
# Prints the path of a `protoc`, installing Debian's protobuf-compiler when
# there is none. Our own code generation needs no protoc (codegen parses
# proto/ with protox), but the etcd client crate (etcd-client) compiles
# etcd's protos in its build script with protoc, so every cargo build of the
# gateway needs one. The Makefile runs this once and exports PROTOC.
set -eu

if [ -n "${PROTOC:-}" ] && [ -x "$PROTOC" ]; then
	echo "$PROTOC"
	exit 0
fi
if ! command -v protoc >/dev/null 2>&1; then
	echo "protoc.sh: installing protobuf-compiler (etcd-client's build script needs protoc)" >&2
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null 2>&1; then
		$sudo apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >&2
	fi
fi
command -v protoc
