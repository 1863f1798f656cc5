#!/usr/bin/env bash
# The Floodgate test command: `bash scripts/test.sh` from anywhere in the
# checkout, on a fresh Debian machine, as root, with no terminal needed.
#
# It installs the external programs the test suite talks to (only those
# missing), starts a throwaway PostgreSQL cluster for the ledger tests
# unless FLOODGATE_TEST_POSTGRES already names one, checks formatting and
# `go vet`, runs every Go test, prints a summary and exits non-zero if
# anything failed.
#
# Environment:
#   FLOODGATE_TEST_POSTGRES  use this PostgreSQL URL instead of starting one
#   CI                       "true" makes tests fail (not skip) when an
#                            external tool is missing; this script sets it
#                            itself once every tool is known to be present
#   TEST_TIMEOUT             go test -timeout (default 20m)
#   TEST_PACKAGES            package patterns to test and vet (default ./...)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

export DEBIAN_FRONTEND=noninteractive
TEST_TIMEOUT=${TEST_TIMEOUT:-20m}
read -r -a TEST_PACKAGES <<<"${TEST_PACKAGES:-./...}"

log() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

# Everything registered here runs when the script exits, however it exits,
# in reverse order of registration.
CLEANUPS=()
cleanup() {
    local i
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUPS[i]}" || warn "cleanup failed: ${CLEANUPS[i]}"
    done
}
trap cleanup EXIT
trap 'echo "interrupted; cleaning up" >&2; exit 130' INT
trap 'echo "terminated; cleaning up" >&2; exit 143' TERM

# ---------------------------------------------------------------- Go itself
if ! command -v go >/dev/null 2>&1; then
    if [ -x /usr/local/go/bin/go ]; then
        export PATH="$PATH:/usr/local/go/bin"
    else
        echo "Go is not installed (this module needs Go $(sed -n 's/^go //p' go.mod))." >&2
        echo "Install it from https://go.dev/dl/ and put its bin directory on PATH." >&2
        exit 1
    fi
fi
log "$(go version)"

# ------------------------------------------------------- external programs
# Each entry: a test for the program's presence, and its Debian package.
# PostgreSQL's server binaries live outside PATH on Debian, hence the glob.
pg_bindir() {
    local d
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

have() {
    case "$1" in
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;;
    postgresql) pg_bindir >/dev/null ;;
    time) [ -x /usr/bin/time ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

declare -A PACKAGE_OF=(
    [aria2c]=aria2
    [opentracker]=opentracker
    [mktorrent]=mktorrent
    [transmission-show]=transmission-cli
    [nginx]=nginx
    [postgresql]=postgresql
    [time]=time
)
TOOLS=(aria2c opentracker mktorrent transmission-show nginx postgresql time)

missing_packages() {
    local t
    for t in "${TOOLS[@]}"; do
        have "$t" || printf '%s ' "${PACKAGE_OF[$t]}"
    done
}

MISSING=$(missing_packages)
if [ -n "$MISSING" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing: $MISSING"
        # Packages such as nginx and postgresql start system services from
        # their maintainer scripts; the tests start their own instances on
        # free ports, so keep the system ones from starting (and from
        # failing the install when port 80 or 5432 is taken).
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            CLEANUPS+=("rm -f /usr/sbin/policy-rc.d")
        fi
        apt-get update -qq
        # shellcheck disable=SC2086 # word splitting of the list is intended
        apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
        rm -f /usr/sbin/policy-rc.d
        MISSING=$(missing_packages)
        if [ -n "$MISSING" ]; then
            echo "still missing after apt-get install: $MISSING" >&2
            exit 1
        fi
    else
        warn "these Debian packages are missing: $MISSING"
        warn "install them as root with:"
        warn "    apt-get update && apt-get install -y $MISSING"
        warn "tests that need them will be skipped (or fail if CI=true)."
    fi
fi
if [ -z "$MISSING" ]; then
    # Every external tool is present, so a test that skips for want of
    # one would be hiding a bug: make such skips failures.
    export CI="${CI:-true}"
fi

# ------------------------------------------------------------- PostgreSQL
# A private cluster in a temporary directory: trust authentication on
# 127.0.0.1 only, a Unix socket inside that directory, durability off
# (it is thrown away), stopped and deleted when the script exits.
PG_DIR=""
# pg_run runs a PostgreSQL program inside PG_DIR, as the postgres system
# user when we are root (initdb and the server refuse to run as root; the
# Debian package creates that user for exactly this).
pg_run() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$PG_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$PG_DIR" && "$@")
    fi
}

start_postgres() {
    local bindir port tries
    bindir=$(pg_bindir) || {
        warn "PostgreSQL is not installed; FLOODGATE_TEST_POSTGRES stays unset and its tests will skip."
        return 0
    }
    PG_DIR=$(mktemp -d /tmp/floodgate-pg.XXXXXX)
    CLEANUPS+=("rm -rf '$PG_DIR'")
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "running as root but there is no 'postgres' user to run the server as" >&2
            return 1
        fi
        chown postgres: "$PG_DIR"
    fi
    # The bootstrap superuser is named postgres whoever runs initdb, so the
    # URL is the same for root and non-root runs.
    pg_run "$bindir/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 \
        --no-sync >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        return 1
    }
    for tries in 1 2 3 4 5; do
        port=$((10000 + RANDOM % 22000)) # below the ephemeral range (32768-)
        # Skip ports something already answers on.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue
        fi
        if pg_run "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
            -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null; then
            CLEANUPS+=("pg_run '$bindir/pg_ctl' -D '$PG_DIR/data' -m immediate -w stop >/dev/null")
            export FLOODGATE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
            log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_DIR)"
            return 0
        fi
        warn "PostgreSQL did not start on port $port (attempt $tries):"
        tail -n 5 "$PG_DIR/server.log" >&2 || true
    done
    echo "could not start PostgreSQL; see $PG_DIR/server.log" >&2
    return 1
}

declare -A RESULT=()
STAGES=()
FAILED=0
record() { # stage-name status seconds
    STAGES+=("$1")
    RESULT[$1]="$2 ($3 s)"
    case "$2" in ok*) ;; *) FAILED=1 ;; esac
}

if [ -n "${FLOODGATE_TEST_POSTGRES:-}" ]; then
    log "using PostgreSQL from FLOODGATE_TEST_POSTGRES"
    record postgres "ok (given)" 0
else
    t0=$SECONDS
    if start_postgres; then
        record postgres ok $((SECONDS - t0))
    else
        record postgres FAILED $((SECONDS - t0))
    fi
fi

# ------------------------------------------------------------- the checks
log "gofmt -l"
t0=$SECONDS
UNFORMATTED=$(gofmt -l . 2>&1 || true)
if [ -n "$UNFORMATTED" ]; then
    echo "not gofmt-formatted (run gofmt -w on them):"
    printf '    %s\n' $UNFORMATTED
    record gofmt FAILED $((SECONDS - t0))
else
    record gofmt ok $((SECONDS - t0))
fi

log "go vet ${TEST_PACKAGES[*]}"
t0=$SECONDS
if go vet "${TEST_PACKAGES[@]}"; then
    record vet ok $((SECONDS - t0))
else
    record vet FAILED $((SECONDS - t0))
fi

log "go test -count=1 -timeout $TEST_TIMEOUT ${TEST_PACKAGES[*]}  (CI=${CI:-unset})"
t0=$SECONDS
# The summariser is built first, from the standard library alone, so that
# a broken package elsewhere in the module cannot take the reporting down
# with it. (-buildvcs=false: VCS stamping fails when the checkout belongs
# to another user, and a test helper needs none.)
SUMMARY_BIN=$(mktemp /tmp/floodgate-testsummary.XXXXXX)
CLEANUPS+=("rm -f '$SUMMARY_BIN'")
# The run goes into a session of its own, in the background, so that
# (1) this script can still act on SIGINT/SIGTERM while it runs (bash
# defers traps until a foreground child ends), and (2) the cleanup can stop
# the go command, the test binaries and whatever they started as one group.
run_tests() { # summariser-or-empty
    if [ -n "$1" ]; then
        go test -count=1 -timeout "$TEST_TIMEOUT" -json "${TEST_PACKAGES[@]}" 2>&1 | "$1"
    else
        go test -count=1 -timeout "$TEST_TIMEOUT" "${TEST_PACKAGES[@]}"
    fi
}
stop_group() { # pgid
    kill -TERM -- "-$1" 2>/dev/null || return 0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 -- "-$1" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL -- "-$1" 2>/dev/null || true
}
SUMMARISER=$SUMMARY_BIN
if ! go build -buildvcs=false -o "$SUMMARY_BIN" ./scripts/testsummary; then
    warn "could not build scripts/testsummary; plain go test output follows"
    SUMMARISER=""
fi
export -f run_tests
export TEST_TIMEOUT
TEST_PACKAGES_LIST="${TEST_PACKAGES[*]}"
export TEST_PACKAGES_LIST
if command -v setsid >/dev/null 2>&1; then
    setsid bash -o pipefail -c 'read -r -a TEST_PACKAGES <<<"$TEST_PACKAGES_LIST"; run_tests "$1"' _ "$SUMMARISER" &
    TEST_PGID=$!
    CLEANUPS+=("stop_group $TEST_PGID")
    set +e
    wait "$TEST_PGID"
    TEST_STATUS=$?
    set -e
else
    set +e
    (set -o pipefail; run_tests "$SUMMARISER")
    TEST_STATUS=$?
    set -e
fi
if [ "$TEST_STATUS" -eq 0 ]; then
    record test ok $((SECONDS - t0))
else
    record test FAILED $((SECONDS - t0))
fi

# ---------------------------------------------------------------- summary
echo
echo "──── scripts/test.sh summary ────"
for s in "${STAGES[@]}"; do
    printf '  %-9s %s\n' "$s" "${RESULT[$s]}"
done
if [ -n "$MISSING" ]; then
    printf '  %-9s %s\n' missing "$MISSING(their tests were skipped)"
fi
if [ "$FAILED" -ne 0 ]; then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: PASSED"
