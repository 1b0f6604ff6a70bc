#!/usr/bin/env bash
# bench/run.sh: the gateway against nginx as a reverse proxy, side by side,
# on loopback, one worker thread each, the same upstream (see bench/README.md).
#
#   bench/run.sh                       build the gateway (production profile) and run every scenario
#   GATEWAY=0 bench/run.sh             nginx only (also: --only-nginx)
#   bench/run.sh --scenario https_1route --rounds 3 --duration 4
#
# Options (each has an environment variable of the same meaning):
#   --only-nginx          GATEWAY=0      measure nginx alone, build nothing
#   --scenario NAME       SCENARIOS=".." run only these (repeatable); see --list
#   --rounds N            ROUNDS=6       measured rounds per proxy
#   --duration S          DURATION=4     seconds of one measured wrk run
#   --warmup S            WARMUP=2       seconds of the unmeasured wrk run per proxy
#   --connections N       CONNECTIONS=32 wrk connections (wrk runs one thread)
#   --no-build            BUILD=0        use target/production/gateway as it is
#   --no-pin              PIN=0          do not pin processes to CPUs
#   --keep-tmp            KEEP_TMP=1     keep the temp dir (configs, logs, wrk outputs)
#   --list                               print the scenarios and exit
# Also: GATEWAY_BIN (default target/production/gateway), PROXY_CPU=0, LOAD_CPU=1,
# NOISE_MAX=10 (% of a CPU taken by other processes that makes a run noisy),
# NOISE_RETRIES=2 (repeats of a noisy run), NOISE_BUDGET=40 (seconds of repeats).
#
# Adding a scenario: write a function `scenario_<name>` (see the three below)
# and add <name> to ALL_SCENARIOS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

GATEWAY=${GATEWAY:-1}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
BUILD=${BUILD:-1}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
GATEWAY_BIN=${GATEWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/production/gateway}
BARE_BIN=${BARE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/production/examples/bare_pingora}
CARGO=${CARGO:-cargo}
ALL_SCENARIOS="http_1route http_10k_routes https_1route http_plugins"
SCENARIOS=${SCENARIOS:-}
READY_TIMEOUT=20
NOISE_MAX=${NOISE_MAX:-10}
NOISE_RETRIES=${NOISE_RETRIES:-2}
NOISE_BUDGET=${NOISE_BUDGET:-40}
NOISE_SPENT=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

picked=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only-nginx) GATEWAY=0 ;;
        --scenario) picked="$picked ${2:?--scenario needs a name}"; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --warmup) WARMUP=${2:?}; shift ;;
        --connections) CONNECTIONS=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --no-pin) PIN=0 ;;
        --keep-tmp) KEEP_TMP=1 ;;
        --list) echo "$ALL_SCENARIOS aa_nginx" | tr ' ' '\n'; exit 0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$picked" ] && SCENARIOS=$picked
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}

log() { printf '%s\n' "bench: $*" >&2; }
die() { printf '%s\n' "bench: error: $*" >&2; exit 1; }

# ------------------------------------------------------------------ tools

ensure_tools() {
    install_missing nginx=nginx wrk=wrk curl=curl openssl=openssl python3=python3 taskset=util-linux \
        getconf=libc-bin ps=procps || die "could not install the tools the benchmark needs"
}

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# ------------------------------------------------------------- processes

PIDS=()     # every process started, stopped by cleanup()
TMP=""
STATUS=0

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP_TMP" = 1 ] || [ $rc -ne 0 ]; then
            log "kept $TMP (configs, logs, wrk outputs)"
        else
            rm -rf "$TMP"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pin CPU: the taskset prefix for a command, or nothing.
pin() { [ "$PIN" = 1 ] && echo "taskset -c $1"; return 0; }

# start NAME LOG CPU CMD...: start CMD in the background; sets STARTED_PID.
start() {
    local name=$1 logf=$2 cpu=$3
    shift 3
    # shellcheck disable=SC2046
    $(pin "$cpu") "$@" >"$logf" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# show_logs FILE...: the last lines of each existing file, to stderr.
show_logs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "--- last lines of $f:" >&2
        tail -n 30 "$f" >&2
    done
}

# wait_ready NAME PID URL HOST LOG...: the port accepts and a request gets 200.
wait_ready() {
    local name=$1 pid=$2 url=$3 host=$4 code="" deadline=$((SECONDS + READY_TIMEOUT))
    shift 4
    local hdr=()
    [ -n "$host" ] && hdr=(-H "Host: $host")
    [ -n "${C_HDR[$name]:-}" ] && hdr+=(-H "${C_HDR[$name]}")
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before it was ready"
            show_logs "$@"
            die "$name did not start"
        fi
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "${hdr[@]}" "$url" 2>/dev/null) || code=""
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    log "$name not ready after ${READY_TIMEOUT}s ($url answered '${code:-no connection}')"
    show_logs "$@"
    die "$name did not become ready"
}

# The processes whose CPU and memory count as "the proxy": nginx's master
# and its workers; the gateway's one process (all its threads).
proc_tree() {
    local pid=$1
    echo "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null || true)
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# cpu_ticks PID...: utime+stime summed, in clock ticks (all threads).
cpu_ticks() {
    local total=0 pid line
    for pid in "$@"; do
        line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        line=${line##*) }
        # shellcheck disable=SC2086
        set -- $line
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# rss_kb PID...: the memory of a proxy, in kB: VmRSS of one process; for
# several (nginx's master and worker, which share most of their pages) the
# sum of their Pss, so that shared pages are not counted twice.
rss_kb() {
    local total=0 pid v
    if [ $# -eq 1 ]; then
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || v=0
        echo "${v:-0}"
        return
    fi
    for pid in "$@"; do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null) ||
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || v=0
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# children_ticks: sets CHILD_TICKS to the CPU time (user+sys) of this
# shell's finished children, in clock ticks, from the `times` builtin (so it
# must run in this shell, not in $(...)). Around a wrk run its delta is
# wrk's CPU time.
children_ticks() {
    times >"$TMP/times"
    CHILD_TICKS=$(awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
        printf "%d", t * hz + 0.5 }' "$TMP/times")
}

# cpu_busy CPU: "busy total" jiffies of one CPU from /proc/stat.
cpu_busy() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# --------------------------------------------------------- the contestants

# Per scenario: the proxies measured, in the order they were added.
C_NAMES=()
declare -A C_PIDS C_URL C_HOST C_DESC C_RSS0 C_HDR
SCEN=""

begin_scenario() {
    SCEN=$1
    C_NAMES=()
    C_PIDS=(); C_URL=(); C_HOST=(); C_DESC=(); C_RSS0=()
    SDIR=$TMP/$SCEN
    mkdir -p "$SDIR"
    echo
    echo "== $SCEN: $2 (at ${SECONDS}s)"
}

# add_nginx NAME ROUTES [tls] [LOCATION_EXTRA]: nginx as the reverse proxy.
add_nginx() {
    local name=$1 routes=$2 tls=${3:-} extra=${4:-} dir port scheme=http args=() REQ_HOST REQ_PATH
    dir=$SDIR/$name
    mkdir -p "$dir/tmp"
    port=$(free_ports 1)
    if [ "$tls" = tls ]; then scheme=https; args+=(--tls "$TMP/cert.pem" "$TMP/key.pem"); fi
    [ -n "$extra" ] && args+=(--location-extra "$extra")
    eval "$($PY "$BENCH/genconf.py" nginx --dir "$dir" --port "$port" --upstream-port "$UPSTREAM_PORT" \
        --routes "$routes" "${args[@]}")"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/nginx-t.log" 2>&1 ||
        { cat "$dir/nginx-t.log" >&2; die "nginx rejected $dir/nginx.conf"; }
    start "$name" "$dir/out.log" "$PROXY_CPU" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    local pid=$STARTED_PID
    wait_ready "$name" "$pid" "$scheme://127.0.0.1:$port$REQ_PATH" "$REQ_HOST" "$dir/out.log" "$dir/error.log" "$dir/proxy.error.log"
    C_NAMES+=("$name")
    C_PIDS[$name]=$(proc_tree "$pid")
    C_URL[$name]="$scheme://127.0.0.1:$port$REQ_PATH"
    C_HOST[$name]=$REQ_HOST
    C_DESC[$name]="nginx, $routes route(s)${tls:+, TLS}"
    # shellcheck disable=SC2086
    C_RSS0[$name]=$(rss_kb ${C_PIDS[$name]})
}

# add_gateway NAME ROUTES [tls] [PLUGINS_JSON] [CONFIG_EXTRA_YAML] [REQUEST_HEADER]:
# the gateway (skipped with GATEWAY=0).
add_gateway() {
    [ "$GATEWAY" = 1 ] || return 0
    local name=$1 routes=$2 tls=${3:-} plugins=${4:-} extra_yaml=${5:-} header=${6:-}
    local dir port admin scheme=http args=() REQ_HOST REQ_PATH out
    dir=$SDIR/$name
    mkdir -p "$dir"
    read -r port admin <<<"$(free_ports 2)"
    if [ "$tls" = tls ]; then scheme=https; args+=(--tls "$TMP/cert.pem" "$TMP/key.pem"); fi
    [ -n "$plugins" ] && args+=(--plugins "$plugins")
    [ -n "$extra_yaml" ] && args+=(--config-extra "$extra_yaml")
    eval "$($PY "$BENCH/genconf.py" gateway --dir "$dir" --port "$port" --admin-port "$admin" \
        --upstream-port "$UPSTREAM_PORT" --routes "$routes" "${args[@]}")"
    out=$("$GATEWAY_BIN" validate --kind bootstrap "$dir/bootstrap.yaml" 2>&1) ||
        { printf '%s\n' "$out" >&2; die "the generated bootstrap does not validate: $dir/bootstrap.yaml"; }
    out=$("$GATEWAY_BIN" validate "$dir/config.yaml" 2>&1) ||
        { printf '%s\n' "$out" >&2; die "the generated config does not validate: $dir/config.yaml"; }
    # Keep the pid file and upgrade socket out of /tmp's shared names.
    local extra=()
    "$GATEWAY_BIN" run --help 2>/dev/null | grep -q -- --pid-file && extra+=(--pid-file "$dir/gateway.pid")
    "$GATEWAY_BIN" run --help 2>/dev/null | grep -q -- --upgrade-sock && extra+=(--upgrade-sock "$dir/upgrade.sock")
    start "$name" "$dir/gateway.log" "$PROXY_CPU" \
        "$GATEWAY_BIN" run --bootstrap "$dir/bootstrap.yaml" --config "$dir/config.yaml" "${extra[@]}"
    local pid=$STARTED_PID
    C_HDR[$name]=$header
    wait_ready "$name" "$pid" "$scheme://127.0.0.1:$port$REQ_PATH" "$REQ_HOST" "$dir/gateway.log"
    C_NAMES+=("$name")
    C_PIDS[$name]=$pid
    C_URL[$name]="$scheme://127.0.0.1:$port$REQ_PATH"
    C_HOST[$name]=$REQ_HOST
    C_DESC[$name]="gateway, $routes route(s)${tls:+, TLS}${plugins:+, plugins}"
    C_RSS0[$name]=$(rss_kb "$pid")
}

# add_bare NAME: the bare Pingora proxy (gateway/examples/bare_pingora.rs:
# one fixed upstream, nothing else), the floor Pingora itself sets
# (skipped with GATEWAY=0).
add_bare() {
    [ "$GATEWAY" = 1 ] || return 0
    local name=$1 dir port
    dir=$SDIR/$name
    mkdir -p "$dir"
    [ -x "$BARE_BIN" ] || die "$BARE_BIN is missing (built by: cargo build --profile production -p pingora-config-gateway --example bare_pingora)"
    port=$(free_ports 1)
    start "$name" "$dir/bare.log" "$PROXY_CPU" "$BARE_BIN" "127.0.0.1:$port" "127.0.0.1:$UPSTREAM_PORT"
    local pid=$STARTED_PID
    wait_ready "$name" "$pid" "http://127.0.0.1:$port/" "" "$dir/bare.log"
    C_NAMES+=("$name")
    C_PIDS[$name]=$pid
    C_URL[$name]="http://127.0.0.1:$port/"
    C_HOST[$name]=""
    C_DESC[$name]="bare Pingora proxy, one fixed upstream"
    C_RSS0[$name]=$(rss_kb "$pid")
}

# compare NUM DEN LABEL: print the ratios NUM/DEN (paired by round).
compare() { printf 'compare\t%s\t%s\t%s\t%s\n' "$SCEN" "$1" "$2" "$3" >>"$TMP/meta.tsv"; }
# limit NAME MB LABEL: check NAME's RSS after start against MB.
limit() { printf 'limit\t%s\t%s\t%s\t%s\n' "$SCEN" "$1" "$2" "$3" >>"$TMP/meta.tsv"; }

# wrk_run NAME SECONDS OUT: one wrk run against NAME, pinned to the load CPU.
wrk_run() {
    local name=$1 secs=$2 out=$3 hdr=()
    [ -n "${C_HOST[$name]}" ] && hdr=(-H "Host: ${C_HOST[$name]}")
    [ -n "${C_HDR[$name]:-}" ] && hdr+=(-H "${C_HDR[$name]}")
    # shellcheck disable=SC2046
    $(pin "$LOAD_CPU") wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --timeout 5s --latency "${hdr[@]}" \
        "${C_URL[$name]}" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed against $name"; }
}

# measure NAME ROUND: one measured run; appends a line to rounds.tsv.
#
# With pinning, a run is "noisy" when other processes took more than
# NOISE_MAX% of the proxy's CPU (its busy time in /proc/stat beyond the
# proxy's own CPU time) or of the load CPU (beyond wrk's and the upstream's). A noisy run is repeated,
# up to NOISE_RETRIES times, while the NOISE_BUDGET seconds of repeats last;
# the last attempt is kept and flagged.
measure() {
    local name=$1 round=$2 out attempt=0 t0 t1 c0 c1 p0 p1 l0 l1 w0 w1 u0 u1 rps p99 reqs errs
    local cpu cpu_pct load_pct other_pct load_other_pct noisy why
    out=$SDIR/wrk-$name-$round.txt
    while :; do
        # shellcheck disable=SC2086
        {
            read -r l0 < <(cpu_busy "$LOAD_CPU")
            read -r p0 < <(cpu_busy "$PROXY_CPU")
            u0=$(cpu_ticks $UPSTREAM_PIDS)
            c0=$(cpu_ticks ${C_PIDS[$name]})
            children_ticks
            w0=$CHILD_TICKS
            t0=$(date +%s%N)
            wrk_run "$name" "$DURATION" "$out"
            t1=$(date +%s%N)
            children_ticks
            w1=$CHILD_TICKS
            c1=$(cpu_ticks ${C_PIDS[$name]})
            u1=$(cpu_ticks $UPSTREAM_PIDS)
            read -r p1 < <(cpu_busy "$PROXY_CPU")
            read -r l1 < <(cpu_busy "$LOAD_CPU")
        }
        read -r rps p99 reqs errs <<<"$($PY "$BENCH/report.py" parse-wrk "$out")"
        [ "$reqs" -gt 0 ] || die "wrk made no request against $name: $(cat "$out")"
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.3f", d / hz * 1e6 / n }')
        cpu_pct=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) \
            'BEGIN { printf "%.1f", 100 * d / hz / (ns / 1e9) }')
        load_pct=- other_pct=- load_other_pct=- noisy=0 why=""
        if [ "$PIN" = 1 ]; then
            # shellcheck disable=SC2086
            load_pct=$(echo $l0 $l1 | awk '{ t = $4 - $2; printf "%.1f", (t > 0 ? 100 * ($3 - $1) / t : 0) }')
            # shellcheck disable=SC2086
            other_pct=$(echo $p0 $p1 $((c1 - c0)) | awk '{ t = $4 - $2; o = $3 - $1 - $5; if (o < 0) o = 0
                printf "%.1f", (t > 0 ? 100 * o / t : 0) }')
            # The load CPU runs wrk and the upstream: anything beyond their
            # CPU time is other processes'.
            # shellcheck disable=SC2086
            load_other_pct=$(echo $l0 $l1 $((w1 - w0 + u1 - u0)) | awk '{ t = $4 - $2; o = $3 - $1 - $5
                if (o < 0) o = 0; printf "%.1f", (t > 0 ? 100 * o / t : 0) }')
            if awk -v o="$other_pct" -v m="$NOISE_MAX" 'BEGIN { exit !(o > m) }'; then
                noisy=1 why="other processes took ${other_pct}% of CPU $PROXY_CPU"
            elif awk -v o="$load_other_pct" -v m="$NOISE_MAX" 'BEGIN { exit !(o > m) }'; then
                noisy=1 why="other processes took ${load_other_pct}% of CPU $LOAD_CPU"
            fi
        fi
        if [ "$noisy" = 1 ] && [ "$attempt" -lt "$NOISE_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
            printf '   round %d  %-16s noisy: %s; again\n' "$round" "$name" "$why"
            attempt=$((attempt + 1))
            NOISE_SPENT=$((NOISE_SPENT + DURATION))
            continue
        fi
        break
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SCEN" "$name" "$round" "$rps" "$p99" "$reqs" \
        "$cpu" "$cpu_pct" "$load_pct" "$errs" "$other_pct/${load_other_pct:--}" "$noisy" >>"$TMP/rounds.tsv"
    printf '   round %d  %-16s %10.0f req/s  p99 %6.0fus  %6.2f us CPU/req  proxy CPU %5.1f%%%s%s\n' \
        "$round" "$name" "$rps" "$p99" "$cpu" "$cpu_pct" \
        "$([ "$noisy" = 0 ] || echo "  NOISY ($why)")" "$([ "$errs" = 0 ] || echo "  ERRORS: $errs")"
}

# run_rounds: warm up every proxy, then ROUNDS rounds in a rotating order
# (A B, B A, A B ... for two), then stop the scenario's processes.
run_rounds() {
    local n=${#C_NAMES[@]} r i name
    [ "$n" -gt 0 ] || die "scenario $SCEN has no proxy"
    for name in "${C_NAMES[@]}"; do
        wrk_run "$name" "$WARMUP" "$SDIR/wrk-$name-warmup.txt"
    done
    for r in $(seq 1 "$ROUNDS"); do
        for i in $(seq 0 $((n - 1))); do
            measure "${C_NAMES[$(((i + r - 1) % n))]}" "$r"
        done
    done
    for name in "${C_NAMES[@]}"; do
        # shellcheck disable=SC2086
        printf 'contestant\t%s\t%s\t%s\t%s\t%s\n' "$SCEN" "$name" "${C_RSS0[$name]}" \
            "$(rss_kb ${C_PIDS[$name]})" "${C_DESC[$name]}" >>"$TMP/meta.tsv"
    done
    for name in "${C_NAMES[@]}"; do
        for pid in ${C_PIDS[$name]}; do stop_pid "$pid"; done
    done
}

# -------------------------------------------------------------- scenarios
# A scenario: begin_scenario, add the proxies, declare the ratios and memory
# limits to print, run_rounds. Each proxy gets its own process, port and dir.

scenario_http_1route() {
    begin_scenario http_1route "plain HTTP, one route /* (the default shape)"
    add_nginx nginx 1
    add_gateway gateway 1
    add_bare pingora-bare
    compare gateway nginx "gateway/nginx"
    compare pingora-bare nginx "bare Pingora/nginx"
    compare gateway pingora-bare "gateway/bare Pingora"
    limit gateway 30 "gateway, 1 route"
    run_rounds
}

scenario_http_10k_routes() {
    begin_scenario http_10k_routes "plain HTTP, 10,000 routes (exact, prefix, parameter; 100 hosts); wrk hits route 5051"
    add_nginx nginx 10000
    add_gateway gateway 10000
    # The same gateway with one route, interleaved in the same rounds: the
    # match cost of 10,000 routes as a paired ratio.
    add_gateway gateway-1route 1
    compare gateway nginx "gateway/nginx"
    compare gateway gateway-1route "gateway 10k/1 route"
    limit gateway 150 "gateway, 10,000 routes"
    run_rounds
}

scenario_https_1route() {
    begin_scenario https_1route "TLS terminated by the proxy (self-signed RSA 2048), plain HTTP to the upstream"
    add_nginx nginx 1 tls
    add_gateway gateway 1 tls
    local name hostport
    for name in "${C_NAMES[@]}"; do
        hostport=${C_URL[$name]#https://}
        hostport=${hostport%%/*}
        printf '   %-16s negotiates %s\n' "$name" "$(openssl s_client -connect "$hostport" -brief </dev/null 2>&1 |
            grep -E '^(Protocol version|Ciphersuite):' | sed 's/.*: //' | paste -sd ' ' -)"
    done
    compare gateway nginx "gateway/nginx"
    run_rounds
}

# Issue 4's realistic chain on the hit route, against the same gateway
# without plugins in the same rounds: the target is at least 85% of its
# requests/s.
scenario_http_plugins() {
    begin_scenario http_plugins "plain HTTP, one route with key_auth + limit_count (high) + proxy_rewrite + request_id + prometheus"
    local chain consumers
    chain='{"key_auth": {}, "limit_count": {"count": 1000000000, "time_window": "60s"}, "proxy_rewrite": {"headers": {"set": [{"name": "X-Bench", "value": "$route_id"}]}}, "request_id": {}, "prometheus": {}}'
    consumers=$'consumers:\n  - username: bench\n    credentials:\n      key_auth: { key: bench-key-000001 }'
    add_gateway gateway-plugins 1 "" "$chain" "$consumers" "apikey: bench-key-000001"
    add_gateway gateway 1
    compare gateway-plugins gateway "with plugins / without"
    run_rounds
}

# Not in the default set: nginx against an identical nginx (an A/A test).
# The spread of its ratios is the noise floor of this machine.
scenario_aa_nginx() {
    begin_scenario aa_nginx "A/A test: two identical nginx proxies, 1 route"
    add_nginx nginx 1
    add_nginx nginx-b 1
    compare nginx-b nginx "nginx-b/nginx"
    run_rounds
}

# ------------------------------------------------------------------- main

main() {
    local s started=$SECONDS
    ensure_tools
    for s in $SCENARIOS; do
        declare -F "scenario_$s" >/dev/null || die "unknown scenario '$s' (known: $ALL_SCENARIOS aa_nginx)"
    done
    if [ "$PIN" = 1 ] && [ "$(nproc)" -lt 2 ]; then
        log "fewer than 2 CPUs: not pinning"
        PIN=0
    fi

    if [ "$GATEWAY" = 1 ]; then
        if [ "$BUILD" = 1 ]; then
            log "building the gateway (production profile: fat LTO, one codegen unit; ~10 min on 2 cores the first time)"
            (cd "$ROOT" && $CARGO build --profile production -q -p pingora-config-gateway --bin gateway --example bare_pingora) || die "cargo build failed"
        fi
        [ -x "$GATEWAY_BIN" ] || die "no gateway binary at $GATEWAY_BIN (GATEWAY=0 measures nginx alone)"
        "$GATEWAY_BIN" run --help >/dev/null 2>&1 ||
            die "$GATEWAY_BIN has no 'run' command yet (GATEWAY=0 measures nginx alone)"
    fi

    TMP=$(mktemp -d /tmp/pingora-bench.XXXXXX)
    cd "$TMP"
    : >"$TMP/rounds.tsv"
    : >"$TMP/meta.tsv"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"

    echo "pingora-config bench: $(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "tools: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
    [ "$GATEWAY" = 0 ] || echo "gateway: $GATEWAY_BIN"
    if [ "$PIN" = 1 ]; then
        echo "pinning: proxy under test on CPU $PROXY_CPU; wrk and the upstream nginx on CPU $LOAD_CPU"
    else
        echo "pinning: none"
    fi
    echo "load: wrk -t1 -c$CONNECTIONS --latency, ${WARMUP}s warm-up per proxy, then $ROUNDS rounds of ${DURATION}s per proxy, alternating"
    [ "$GATEWAY" = 1 ] || echo "GATEWAY=0: nginx only"

    # The one upstream of every scenario.
    local udir=$TMP/upstream
    mkdir -p "$udir/tmp"
    UPSTREAM_PORT=$(free_ports 1)
    $PY "$BENCH/genconf.py" upstream --dir "$udir" --port "$UPSTREAM_PORT"
    start upstream "$udir/out.log" "$LOAD_CPU" nginx -p "$udir" -c "$udir/nginx.conf" -e "$udir/error.log"
    wait_ready upstream "$STARTED_PID" "http://127.0.0.1:$UPSTREAM_PORT/" "" "$udir/out.log" "$udir/error.log" "$udir/upstream.error.log"
    UPSTREAM_PIDS=$(proc_tree "$STARTED_PID")

    for s in $SCENARIOS; do "scenario_$s"; done

    $PY "$BENCH/report.py" table "$TMP" || STATUS=1
    echo
    echo "total time $((SECONDS - started))s, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
    return $STATUS
}

main
