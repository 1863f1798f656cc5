#!/usr/bin/env bash
# Transfer benchmark: Floodgate against aria2c over loopback, in one run.
#
#   (a) one `floodgate seed` -> one `floodgate get`
#   (b) one aria2c seeder    -> one aria2c leecher (through a tracker,
#       which aria2c needs to find its peer)
#   (c) one `floodgate seed` -> LEECHERS `floodgate get` started at once
#
# For every process it reports wall seconds, throughput, CPU seconds
# (user+system) and peak RSS. Leechers are measured from start to exit
# (so start-up, connection and verification are included); a seeder's CPU
# is counted only while its leechers run, its peak RSS over its lifetime.
# See bench/README.md. Nothing here asserts on speed.
#
# Environment:
#   SIZE_MIB      content size in MiB (default 256)
#   PIECE_LENGTH  piece length in bytes (default 262144)
#   LEECHERS      leechers in scenario (c) (default 4)
#   BENCH_DIR     where the data goes (default: a directory on /dev/shm
#                 when it has room, so the disk is not what is measured)
#   FLOODGATE_BIN use this binary instead of building ./cmd/floodgate
#   CPUPROFILE    if set to a directory, ask floodgate for CPU profiles
#                 there (needs the hidden --cpuprofile flag)
#   SCENARIOS     which to run, default "a b c"
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZE_MIB=${SIZE_MIB:-256}
PIECE_LENGTH=${PIECE_LENGTH:-262144}
LEECHERS=${LEECHERS:-4}
SCENARIOS=${SCENARIOS:-a b c}
SIZE=$((SIZE_MIB * 1024 * 1024))

die() { echo "bench: $*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package 'time')"
for tool in aria2c; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian package 'aria2')"
done

# ------------------------------------------------------------- workspace
# shellcheck source=bench/lib.sh
. bench/lib.sh bench
profile_args() { # name -> flags asking for a CPU profile, if wanted
    if [ -n "${CPUPROFILE:-}" ]; then
        echo "--cpuprofile $CPUPROFILE/$1.pprof"
    fi
}

free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % 22000)) # below the ephemeral range (32768-)
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

wait_listening() { # port pid name
    local i
    for ((i = 0; i < 1200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening on port $1 (see $WORK/$3.log)"
        sleep 0.05
    done
    die "$3 is not listening on port $1 after 60 s"
}

# proc_cpu_ticks pid -> utime+stime in clock ticks, of the process and of
# its waited-for children (so it works through a /usr/bin/time wrapper).
proc_cpu_ticks() {
    awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] + f[14] + f[15] }' "/proc/$1/stat"
}
proc_hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

# measured cmd... : run to completion under /usr/bin/time, writing
# "wall user sys maxrss_kib" to $WORK/$NAME.time. NAME must be set.
measured() {
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/$NAME.time" "$@" >"$WORK/$NAME.log" 2>&1
}

ROWS=()
row() { # scenario process wall MiB/s cpu rss_mib
    ROWS+=("$(printf '%-24s %-22s %8s %9s %8s %9s' "$@")")
}

# leecher_row scenario name: turn a .time file into a table row.
leecher_row() {
    local wall user sys rss
    read -r wall user sys rss <"$WORK/$2.time"
    row "$1" "$2" "$wall" "$(awk -v s="$SIZE" -v w="$wall" 'BEGIN{printf "%.1f", s/1048576/w}')" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')" "$((rss / 1024))"
}

# seeder_row scenario name pid ticks_before: CPU since ticks_before, peak
# RSS so far.
seeder_row() {
    local ticks
    ticks=$(($(proc_cpu_ticks "$3") - $4))
    row "$1" "$2" "-" "-" "$(awk -v t="$ticks" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')" \
        "$(($(proc_hwm_kib "$3") / 1024))"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ------------------------------------------------------------- the content
SRC=$WORK/src
mkdir -p "$SRC"
echo "writing $SIZE_MIB MiB of random data to $WORK ..."
head -c "$SIZE" /dev/urandom >"$SRC/content.bin"
"$FG" create --piece-length "$PIECE_LENGTH" -o "$WORK/direct.torrent" "$SRC/content.bin" >/dev/null

echo "host: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
    "data on $(df -P "$WORK" | awk 'NR==2{print $1}'), $SIZE_MIB MiB, piece length $PIECE_LENGTH"
echo "floodgate: $FG   aria2c: $(aria2c --version | head -n1)"

# --------------------------------------------- (a) floodgate -> floodgate
scenario_a() {
    local port seed ticks NAME
    port=$(free_port)
    # shellcheck disable=SC2046 # profile flags are words on purpose
    "$FG" seed --free --listen "127.0.0.1:$port" $(profile_args seed-a) \
        "$WORK/direct.torrent" "$SRC/content.bin" >"$WORK/seed-a.log" 2>&1 &
    seed=$!
    PIDS+=("$seed")
    wait_listening "$port" "$seed" seed-a
    ticks=$(proc_cpu_ticks "$seed")
    mkdir -p "$WORK/out-a"
    NAME=get-a
    # shellcheck disable=SC2046
    measured "$FG" get --peer "127.0.0.1:$port" --out "$WORK/out-a" $(profile_args get-a) "$WORK/direct.torrent" ||
        die "floodgate get failed; see $WORK/get-a.log: $(tail -n 5 "$WORK/get-a.log")"
    cmp -s "$SRC/content.bin" "$WORK/out-a/content.bin" || die "floodgate get produced different bytes"
    leecher_row "a floodgate->floodgate" get-a
    seeder_row "a floodgate->floodgate" "seed (during get)" "$seed" "$ticks"
    stop_pid "$seed"
    rm -rf "$WORK/out-a"
}

# ----------------------------------------------------- (b) aria2c -> aria2c
ARIA2=(--no-conf=true --enable-dht=false --enable-dht6=false --bt-enable-lpd=false
    --enable-peer-exchange=false --disable-ipv6=true --bt-external-ip=127.0.0.1
    --file-allocation=none --console-log-level=warn --summary-interval=0
    --enable-color=false --auto-file-renaming=false)

scenario_b() {
    local tport tracker sport seed ticks NAME hash i
    tport=$(free_port)
    "$FG" create --piece-length "$PIECE_LENGTH" --tracker "http://127.0.0.1:$tport/announce" \
        -o "$WORK/tracked.torrent" "$SRC/content.bin" >/dev/null
    if command -v opentracker >/dev/null && command -v transmission-show >/dev/null; then
        hash=$(info_hash "$WORK/tracked.torrent")
        mkdir -p "$WORK/ot" && chmod 755 "$WORK/ot"
        echo "$hash" >"$WORK/ot/whitelist.txt" && chmod 644 "$WORK/ot/whitelist.txt"
        opentracker -i 127.0.0.1 -p "$tport" -P "$tport" -d "$WORK/ot" -w whitelist.txt >"$WORK/tracker-b.log" 2>&1 &
        TRACKER_NAME=opentracker
    else
        "$FG" tracker --listen "127.0.0.1:$tport" >"$WORK/tracker-b.log" 2>&1 &
        TRACKER_NAME="floodgate tracker"
    fi
    tracker=$!
    PIDS+=("$tracker")
    wait_listening "$tport" "$tracker" tracker-b

    sport=$(free_port)
    # --bt-seed-unverified: the data is known good, and the seeder's
    # start-up hashing is not what is being measured.
    aria2c "${ARIA2[@]}" --listen-port="$sport" --bt-seed-unverified=true --seed-ratio=0.0 \
        --dir="$SRC" "$WORK/tracked.torrent" >"$WORK/aria2-seed.log" 2>&1 &
    seed=$!
    PIDS+=("$seed")
    wait_listening "$sport" "$seed" aria2-seed
    # The seeder must be registered before the leecher's first announce,
    # or the leecher waits a whole announce interval.
    for ((i = 0; i < 200; i++)); do
        scrape_complete "$tport" "$WORK/tracked.torrent" && break
        sleep 0.05
    done
    ticks=$(proc_cpu_ticks "$seed")
    mkdir -p "$WORK/out-b"
    NAME=aria2-leech
    measured aria2c "${ARIA2[@]}" --listen-port="$(free_port)" --seed-time=0 --bt-stop-timeout=60 \
        --dir="$WORK/out-b" "$WORK/tracked.torrent" ||
        die "aria2c leecher failed; see $WORK/aria2-leech.log"
    cmp -s "$SRC/content.bin" "$WORK/out-b/content.bin" || die "aria2c produced different bytes"
    leecher_row "b aria2c->aria2c" aria2-leech
    # aria2c's own figure covers only its transfer phase (no start-up and
    # no shutdown), which makes the comparison fairer to it.
    ARIA2_OWN=$(awk -F'|' '$2 ~ /OK/ {gsub(/ /, "", $3); print $3; exit}' "$WORK/aria2-leech.log")
    seeder_row "b aria2c->aria2c" "aria2c seed (during)" "$seed" "$ticks"
    stop_pid "$seed"
    stop_pid "$tracker"
    rm -rf "$WORK/out-b"
}

# info_hash torrent -> hex info hash, as an independent program reads it.
info_hash() {
    transmission-show "$1" | awk '/^ *Hash( v1)?:/{print $NF; exit}'
}

# scrape_complete port torrent: true once the tracker reports a seeder.
scrape_complete() {
    local hash q reply
    hash=$(info_hash "$2")
    q=$(echo "$hash" | sed 's/../%&/g')
    reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET /scrape?info_hash=%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$q" >&3 &&
        cat <&3) 2>/dev/null | tr -d '\0' || true)
    [[ "$reply" == *"8:completei"[1-9]* ]]
}

# ------------------------------------- (c) floodgate seed -> N floodgate get
scenario_c() {
    local port seed ticks i NAME pids=() t0 t1 ok=1
    port=$(free_port)
    # shellcheck disable=SC2046
    "$FG" seed --free --listen "127.0.0.1:$port" $(profile_args seed-c) \
        "$WORK/direct.torrent" "$SRC/content.bin" >"$WORK/seed-c.log" 2>&1 &
    seed=$!
    PIDS+=("$seed")
    wait_listening "$port" "$seed" seed-c
    ticks=$(proc_cpu_ticks "$seed")
    t0=$(date +%s.%N)
    for ((i = 1; i <= LEECHERS; i++)); do
        mkdir -p "$WORK/out-c$i"
        NAME=get-c$i
        measured "$FG" get --peer "127.0.0.1:$port" --out "$WORK/out-c$i" "$WORK/direct.torrent" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || { ok=0; echo "leecher $((i + 1)) failed; see $WORK/get-c$((i + 1)).log" >&2; }
    done
    t1=$(date +%s.%N)
    [ "$ok" -eq 1 ] || die "scenario c failed"
    for ((i = 1; i <= LEECHERS; i++)); do
        cmp -s "$SRC/content.bin" "$WORK/out-c$i/content.bin" || die "leecher $i produced different bytes"
        leecher_row "c 1->$LEECHERS floodgate" "get-c$i"
    done
    seeder_row "c 1->$LEECHERS floodgate" "seed (during gets)" "$seed" "$ticks"
    row "c 1->$LEECHERS floodgate" "all $LEECHERS, aggregate" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" \
        "$(awk -v a="$t0" -v b="$t1" -v s="$SIZE" -v n="$LEECHERS" 'BEGIN{printf "%.1f", n*s/1048576/(b-a)}')" "-" "-"
    stop_pid "$seed"
    for ((i = 1; i <= LEECHERS; i++)); do rm -rf "$WORK/out-c$i"; done
}

for s in $SCENARIOS; do
    case "$s" in
    a) echo "(a) floodgate seed -> floodgate get ..."; scenario_a ;;
    b) echo "(b) aria2c -> aria2c ..."; scenario_b ;;
    c) echo "(c) floodgate seed -> $LEECHERS x floodgate get ..."; scenario_c ;;
    *) die "unknown scenario $s" ;;
    esac
done

echo
printf '%-24s %-22s %8s %9s %8s %9s\n' scenario process wall_s MiB/s cpu_s rss_MiB
printf '%s\n' "${ROWS[@]}"
if [[ " $SCENARIOS " == *" a "* && " $SCENARIOS " == *" b "* ]]; then
    fa=$(awk '{print $1}' "$WORK/get-a.time")
    fb=$(awk '{print $1}' "$WORK/aria2-leech.time")
    echo
    echo "floodgate/aria2c throughput ratio (a vs b): $(awk -v a="$fa" -v b="$fb" 'BEGIN{printf "%.2f", b/a}')x (goal >= 4x)"
    echo "aria2c's own average speed for its transfer phase alone: ${ARIA2_OWN:-unknown}"
fi
if [ -n "${CPUPROFILE:-}" ]; then
    echo "CPU profiles in $CPUPROFILE (go tool pprof -top $FG $CPUPROFILE/get-a.pprof)"
fi
