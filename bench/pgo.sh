#!/usr/bin/env bash
# The production build: the gateway (and the bare Pingora proxy the
# benchmark compares it with) built with profile-guided optimisation,
# trained on bench/pgo-train.sh's workload, which is not the benchmark's.
#
#   bench/pgo.sh                 build, train, rebuild; prints the binaries' paths
#   bench/pgo.sh --bench ARGS    then run bench/run.sh on them with ARGS
#
# `make production` runs the first, `make bench` the second.
#
# Steps (see bench/README.md, "Profile-guided build"):
#   1. the production profile built with -Cprofile-generate into
#      target/pgo-gen (its own target dir: the plain production build
#      is left alone);
#   2. bench/pgo-train.sh's traffic through the instrumented binaries,
#      and management API calls (gateway/examples/pgo_admin.rs) through
#      the gateway (each writes a .profraw when it exits);
#   3. llvm-profdata merges them; it must come from the same LLVM major
#      version as rustc's (installed here as Debian's llvm-<N> if missing);
#   4. the production profile built again with -Cprofile-use into
#      target/pgo.
# --target is given so that RUSTFLAGS reach only the binaries, not build
# scripts and proc macros. Two full production builds: ~12 minutes on 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
GEN_DIR=$TARGET/pgo-gen
USE_DIR=$TARGET/pgo
DATA=$GEN_DIR/profiles
CARGO=${CARGO:-cargo}

log() { printf 'pgo: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

profdata() {
    local p
    for p in "llvm-profdata-$LLVM_MAJOR" "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
        command -v "$p" >/dev/null 2>&1 && { echo "$p"; return; }
    done
    if command -v apt-get >/dev/null 2>&1; then
        log "installing llvm-$LLVM_MAJOR (llvm-profdata for rustc's LLVM $LLVM_MAJOR)"
        { apt-get install -y "llvm-$LLVM_MAJOR" || { apt-get update && apt-get install -y "llvm-$LLVM_MAJOR"; }; } >&2 \
            || die "cannot install llvm-$LLVM_MAJOR"
        echo "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"
        return
    fi
    die "no llvm-profdata for LLVM $LLVM_MAJOR (rustc's); install llvm-$LLVM_MAJOR"
}

build() { # build DIR RUSTFLAGS
    (cd "$ROOT" && RUSTFLAGS="$2" $CARGO build --profile production --target "$TRIPLE" --target-dir "$1" -q \
        -p pingora-config-gateway --bin gateway --example bare_pingora)
}

main() {
    local bench=0
    if [ "${1:-}" = --bench ]; then bench=1; shift; fi
    [ -n "$LLVM_MAJOR" ] || die "cannot read rustc's LLVM version"
    local llvm_profdata
    llvm_profdata=$(profdata)

    log "1/4 instrumented build (target dir $GEN_DIR)"
    build "$GEN_DIR" "-Cprofile-generate=$DATA"
    rm -rf "$DATA" && mkdir -p "$DATA"

    log "2/4 training: bench/pgo-train.sh"
    # The management API's client of the training: a plain build, it is
    # not part of what is measured.
    (cd "$ROOT" && $CARGO build --release -q -p pingora-config-gateway --example pgo_admin)
    "$ROOT/bench/pgo-train.sh" "$GEN_DIR/$TRIPLE/production/gateway" "$GEN_DIR/$TRIPLE/production/examples/bare_pingora" \
        "$TARGET/release/examples/pgo_admin" \
        >"$GEN_DIR/training.log" 2>&1 \
        || { tail -20 "$GEN_DIR/training.log" >&2; die "the training run failed (log: $GEN_DIR/training.log)"; }
    local n
    n=$(find "$DATA" -name '*.profraw' | wc -l)
    [ "$n" -gt 0 ] || die "the training wrote no profile to $DATA"

    log "3/4 merging $n profiles"
    "$llvm_profdata" merge -o "$GEN_DIR/merged.profdata" "$DATA"
    # Named by its content: cargo does not look into the file RUSTFLAGS
    # names, so with a fixed name a crate built with an earlier profile
    # (every dependency, after a change to our code only) would be kept.
    local profile
    profile=$GEN_DIR/merged-$(sha256sum "$GEN_DIR/merged.profdata" | cut -c1-16).profdata
    rm -f "$GEN_DIR"/merged-*.profdata
    mv "$GEN_DIR/merged.profdata" "$profile"

    log "4/4 optimised build (target dir $USE_DIR)"
    build "$USE_DIR" "-Cprofile-use=$profile"

    local gw=$USE_DIR/$TRIPLE/production/gateway bare=$USE_DIR/$TRIPLE/production/examples/bare_pingora
    log "built: $gw and $bare"
    if [ "$bench" = 1 ]; then
        GATEWAY_BIN=$gw BARE_BIN=$bare exec "$ROOT/bench/run.sh" --no-build "$@"
    fi
}

main "$@"
