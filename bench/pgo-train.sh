#!/usr/bin/env bash
# The training workload of the profile-guided production build
# (bench/pgo.sh): traffic of the kind a gateway serves, deliberately not
# the benchmark's own scenarios, so that `make bench` measures the build
# on traffic it was not trained on.
#
#   bench/pgo-train.sh GATEWAY_BIN [BARE_BIN [ADMIN_CLIENT]]
#   bench/pgo-train.sh --check GATEWAY_BIN   only write the training's config
#                                            and validate it (make test does)
#
# It starts two upstream nginx and one gateway with its own config (1,200
# routes of four URI forms over 40 hosts, wildcard and host-less routes,
# method and header matchers, a service with a plugin chain, an
# authenticated route with a rate limit, a mock route, a weighted two-node
# upstream, an SSL resource), listening on HTTP and HTTPS. wrk sends a
# random mix over the whole table (GET and POST with a body, 404s, 401s,
# keep-alive and a new connection per request, 1 to 24 connections) over
# HTTP and HTTPS. With ADMIN_CLIENT (gateway/examples/pgo_admin.rs) the
# management API's calls follow, writes and reads, while wrk keeps sending
# the mix: a gateway serves those too. Then GETs through the bare Pingora
# proxy, when it is given. The binaries, built with -Cprofile-generate,
# write their profiles when they exit: every process is stopped with
# SIGTERM at the end. TRAIN_SECONDS (default 3) is the length of each wrk
# run; TRAIN_ADMIN_ROUNDS (default 20) the admin client's rounds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
CHECK=0
if [ "${1:-}" = --check ]; then CHECK=1; shift; fi
GATEWAY_BIN=$(realpath "${1:?usage: bench/pgo-train.sh [--check] GATEWAY_BIN [BARE_BIN [ADMIN_CLIENT]]}")
BARE_BIN=${2:+$(realpath "$2")}
ADMIN_CLIENT=${3:+$(realpath "$3")}
SECS=${TRAIN_SECONDS:-3}
ROUTES=1200
PY=${PYTHON:-python3}

log() { printf 'pgo-train: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
TMP=$(mktemp -d /tmp/pgo-train.XXXXXX)
stop_all() {
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [ $rc -eq 0 ]; then rm -rf "$TMP"; else log "kept $TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready URL [CURL ARGS...]: a 200 within 20 s.
wait_ready() {
    local url=$1 code="" deadline=$((SECONDS + 20))
    shift
    while [ $SECONDS -lt $deadline ]; do
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null) || code=""
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    tail -n 20 "$TMP"/*.log >&2 || true
    die "$url not ready (answered '${code:-no connection}')"
}

# wrk_mix URL CONNECTIONS [EXTRA]: the request mix (train.lua) for SECS.
wrk_mix() {
    local out
    out=$(wrk -t1 -c"$2" -d"${SECS}s" --timeout 5s -s "$TMP/train.lua" "$1" -- "$ROUTES" "${3:-}" 2>&1) ||
        { printf '%s\n' "$out" >&2; die "wrk failed against $1"; }
    log "$1 -c$2 ${3:-keep-alive}: $(printf '%s\n' "$out" | awk '/Requests\/sec/ {print $2 " req/s"}'), $(printf '%s\n' "$out" | grep '^statuses')"
}

install_missing curl=curl openssl=openssl python3=python3 || die "could not install the tools the training needs"
[ "$CHECK" = 1 ] || install_missing nginx=nginx wrk=wrk || die "could not install the tools the training needs"

read -r UP UP2 HTTP HTTPS ADMIN BARE <<<"$(free_ports 6)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=train.test \
    -addext 'subjectAltName=DNS:train.test,DNS:*.train.test,IP:127.0.0.1' \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"

# The gateway's bootstrap and config (see the header for their shape).
$PY - "$TMP" "$UP" "$UP2" "$HTTP" "$HTTPS" "$ADMIN" "$ROUTES" <<'EOF'
import json, sys
tmp = sys.argv[1]
up, up2, http, https, admin, n = (int(x) for x in sys.argv[2:])
q = json.dumps
cert, key = open(tmp + "/cert.pem").read(), open(tmp + "/key.pem").read()
open(tmp + "/bootstrap.yaml", "w").write("\n".join([
    "node_id: train", "threads: 1", "listeners:",
    "  - { name: http, address: %s }" % q("127.0.0.1:%d" % http),
    "  - name: https", "    address: %s" % q("127.0.0.1:%d" % https),
    "    tls:", "      default_certificate:", "        cert: %s" % q(cert), "        key: %s" % q(key),
    "admin: { address: %s }" % q("127.0.0.1:%d" % admin),
    "store: { file: { path: config.yaml } }",
    "logging: { level: WARN, access_log: { disabled: true } }",
    "shutdown: { graceful_timeout: 0s }", ""]))
c = ["upstreams:",
     "  - { id: origin, nodes: [{ host: 127.0.0.1, port: %d }] }" % up,
     "  - id: pool",
     "    nodes: [{ host: 127.0.0.1, port: %d, weight: 3 }, { host: 127.0.0.1, port: %d }]" % (up, up2),
     "services:",
     "  - id: chain",
     "    upstream_id: pool",
     "    plugins:",
     "      request_id: {}",
     "      proxy_rewrite: { headers: { set: [{ name: X-Service, value: chain }], remove: [X-Drop] } }",
     "      response_rewrite: { headers: { add: [{ name: X-Served-By, value: train }] } }",
     "consumers:",
     "  - username: trainer",
     "    credentials: { key_auth: { key: train-key-0001 } }",
     "ssls:",
     "  - id: wild",
     "    snis: [\"*.train.test\", train.test]",
     "    cert: %s" % q(cert), "    key: %s" % q(key),
     "routes:",
     "  - id: secure",
     "    uris: [\"/secure/*\"]",
     "    upstream_id: origin",
     "    plugins:",
     "      key_auth: {}",
     "      limit_count: { count: 1000000000, time_window: 60s }",
     "      cors: { allow_origins: [\"*\"] }",
     "  - id: mock",
     "    uris: [/mock]",
     "    plugins: { mock: { status: 200, body: \"mocked\\n\", content_type: text/plain } }"]
for i in range(n):
    form = i % 4
    uri = ["/v1/orders/%d" % i, "/static/%d/*" % i, "/accounts/:acct/items/%d" % i, "/hdr/%d" % i][form]
    c.append("  - id: t%d" % i)
    c.append("    uris: [%s]" % q(uri))
    if i % 10 != 9:
        host = "h%d.train.test" % (i % 40) if i % 10 != 8 else "*.w%d.train.test" % (i % 40)
        c.append("    hosts: [%s]" % q(host))
    if form == 0:
        c.append("    methods: [GET, POST]")
    if form == 3:
        c.append("    headers: [{ name: x-tenant, value: { exact: t%d } }]" % (i % 5))
    c.append("    service_id: chain" if i % 7 == 0 else "    upstream_id: %s" % ("pool" if i % 3 == 0 else "origin"))
open(tmp + "/config.yaml", "w").write("\n".join(c) + "\n")
EOF

# The request mix: a random route of the table per request (its host, a
# path of its form), with a share of 404s, authenticated requests, mock
# answers and POSTs with a body. `wrk ... -- ROUTES close` sends
# `Connection: close` (a new connection per request).
cat >"$TMP/train.lua" <<'EOF'
local n, close = 1200, false
local body = string.rep("0123456789abcdef", 96)
function init(args)
    n = tonumber(args[1]) or n
    close = args[2] == "close"
    math.randomseed(os.time() * 1000 + (wrk.thread and 7 or 0))
end
local function host_of(i)
    if i % 10 == 9 then return "train.test" end
    if i % 10 == 8 then return string.format("api.w%d.train.test", i % 40) end
    return string.format("h%d.train.test", i % 40)
end
request = function()
    local r = math.random(100)
    local h = {}
    if close then h["Connection"] = "close" end
    if r <= 5 then
        h["Host"] = "h1.train.test"
        return wrk.format("GET", "/nothing/here/" .. r, h)
    elseif r <= 12 then
        h["Host"] = "train.test"
        h["apikey"] = (r <= 10) and "train-key-0001" or "wrong"
        h["Origin"] = "https://app.train.test"
        return wrk.format("GET", "/secure/profile?id=" .. r, h)
    elseif r <= 15 then
        h["Host"] = "train.test"
        return wrk.format("GET", "/mock", h)
    end
    local i = math.random(0, n - 1)
    h["Host"] = host_of(i)
    h["User-Agent"] = "pgo-train"
    h["X-Drop"] = "1"
    local form, path = i % 4
    if form == 0 then
        path = "/v1/orders/" .. i
    elseif form == 1 then
        path = string.format("/static/%d/js/app-%d.js", i, r)
    elseif form == 2 then
        path = string.format("/accounts/%d/items/%d?page=%d", r, i, r % 3)
    else
        path = "/hdr/" .. i
        h["X-Tenant"] = "t" .. (i % 5)
    end
    if form == 0 and r > 80 then
        h["Content-Type"] = "application/json"
        return wrk.format("POST", path, h, body)
    end
    return wrk.format("GET", path, h)
end
-- The answers by status, so that a mix that stopped reaching its routes
-- (all 404, say) shows.
statuses = {}
function response(status)
    statuses[status] = (statuses[status] or 0) + 1
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done()
    local all = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
    end
    local keys = {}
    for k in pairs(all) do table.insert(keys, k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do table.insert(parts, k .. "=" .. all[k]) end
    io.write("statuses " .. table.concat(parts, " ") .. "\n")
end
EOF

out=$("$GATEWAY_BIN" validate --kind bootstrap "$TMP/bootstrap.yaml" 2>&1) || { printf '%s\n' "$out" >&2; die "the training bootstrap does not validate"; }
out=$("$GATEWAY_BIN" validate "$TMP/config.yaml" 2>&1) || { printf '%s\n' "$out" >&2; die "the training config does not validate"; }
if [ "$CHECK" = 1 ]; then
    log "the training's bootstrap and config validate"
    exit 0
fi

for port in "$UP" "$UP2"; do
    mkdir -p "$TMP/upstream-$port/tmp"
    $PY "$ROOT/bench/genconf.py" upstream --dir "$TMP/upstream-$port" --port "$port"
    nginx -p "$TMP/upstream-$port" -c "$TMP/upstream-$port/nginx.conf" -e "$TMP/upstream-$port/error.log" \
        >"$TMP/upstream-$port.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$port/"
done
(cd "$TMP" && exec "$GATEWAY_BIN" run --bootstrap "$TMP/bootstrap.yaml" --config "$TMP/config.yaml" \
    --pid-file "$TMP/gateway.pid" --upgrade-sock "$TMP/upgrade.sock") >"$TMP/gateway.log" 2>&1 &
PIDS+=($!)
wait_ready "http://127.0.0.1:$HTTP/mock" -H 'Host: train.test'
wait_ready "https://train.test:$HTTPS/mock" --resolve "train.test:$HTTPS:127.0.0.1"

wrk_mix "http://127.0.0.1:$HTTP" 24
wrk_mix "http://127.0.0.1:$HTTP" 1
wrk_mix "http://127.0.0.1:$HTTP" 8 close
wrk_mix "https://127.0.0.1:$HTTPS" 24
wrk_mix "https://127.0.0.1:$HTTPS" 4 close
if [ -n "$ADMIN_CLIENT" ]; then
    SECS=$((SECS * 3)) wrk_mix "http://127.0.0.1:$HTTP" 8 &
    traffic=$!
    "$ADMIN_CLIENT" "$ADMIN" "$UP" "${TRAIN_ADMIN_ROUNDS:-20}" >&2 || die "the management API calls failed (log: $TMP/gateway.log)"
    wait "$traffic" || die "wrk failed during the management API calls"
fi

if [ -n "$BARE_BIN" ]; then
    "$BARE_BIN" "127.0.0.1:$BARE" "127.0.0.1:$UP" >"$TMP/bare.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$BARE/"
    wrk_mix "http://127.0.0.1:$BARE" 24
    wrk_mix "http://127.0.0.1:$BARE" 1
fi
stop_all
log "done"
