# Shared set-up of the benchmark scripts (sourced, not run). Expects
# LEECHERS, SIZE_MIB and a die function; sets WORK (a scratch directory on
# /dev/shm when it fits, removed on exit), PIDS (processes killed on exit)
# and FG (the floodgate binary: $FLOODGATE_BIN, or built from this checkout).
# $1 names the scratch directory.

if [ -z "${BENCH_DIR:-}" ]; then
    need_kib=$(((LEECHERS + 2) * SIZE_MIB * 1024 + 65536))
    if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2{print $4}')" -gt "$need_kib" ]; then
        BENCH_DIR=/dev/shm
    else
        BENCH_DIR=${TMPDIR:-/tmp}
    fi
fi
WORK=$(mktemp -d "$BENCH_DIR/floodgate-$1.XXXXXX")

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${FLOODGATE_BIN:-}" ]; then
    FG=$FLOODGATE_BIN
else
    FG=$WORK/floodgate
    echo "building ./cmd/floodgate ..."
    go build -o "$FG" ./cmd/floodgate
fi

if [ -n "${CPUPROFILE:-}" ]; then
    mkdir -p "$CPUPROFILE"
    # The flag is hidden from --help; an unknown flag would fail parsing.
    "$FG" get --cpuprofile /dev/null --help >/dev/null 2>&1 ||
        die "this floodgate has no --cpuprofile flag; unset CPUPROFILE"
fi
