#!/bin/sh
# The web UI's npm dependencies (web/node_modules, pinned by
# web/package-lock.json), installed with `npm ci` only when the lock file
# changed since the last install; and, for the browser tests, Debian's
# Chromium (web/e2e/run.mjs installs it with apt-get when it is missing).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/web"
if ! cmp -s "$web/package-lock.json" "$web/node_modules/.pingora-lock" 2>/dev/null; then
	echo "web: npm ci in web/" >&2
	(cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
	cp "$web/package-lock.json" "$web/node_modules/.pingora-lock"
fi
