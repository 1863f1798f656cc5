#!/usr/bin/env bash
# Payment overhead benchmark: the same transfer with a plain torrent and
# with a paid Floodgate torrent, in one run, over loopback.
#
#   1   one `floodgate seed` -> one `floodgate get`
#   4   one `floodgate seed` -> LEECHERS `floodgate get` started at once
#
# Both torrents hold the same content, piece length and tracker (the
# provider's); the paid one adds signed terms (one class at PRICE units per
# MiB), so its peers authenticate, open broker channels and pay for every
# verified piece, and the seeder redeems. Each (scenario, mode) pair runs
# ROUNDS times, plain and paid alternating (and swapping which goes first
# every round) so that drift in the shared machine's load hits both alike.
#
# Measured per run: wall seconds (start of the gets until the last exits),
# MiB/s (all bytes delivered / wall), CPU seconds (user+system) of the
# leechers (whole life) and of the seeder (while the gets run), and of the
# provider (broker + tracker) while the gets run, shown apart. The summary
# gives medians over the rounds and the paid/plain ratios. Nothing here
# asserts on speed; the script fails only if a transfer fails or delivers
# different bytes. See bench/README.md ("Payment overhead").
#
# Environment:
#   SIZE_MIB      content size in MiB (default 256)
#   PIECE_LENGTH  piece length in bytes (default 262144)
#   LEECHERS      leechers in the second scenario (default 4)
#   ROUNDS        runs of each (scenario, mode) (default 3)
#   WARMUP        unrecorded runs (plain, then paid) of the first scenario
#                 before round 1 (default 1): the first run after start-up
#                 took up to 2.5 times as long (fresh /dev/shm pages, cold
#                 caches), which skewed round 1 and its profiles
#   SCENARIOS     which scenarios, default "1 4"
#   PRICE         units per MiB of the paid class (default 30)
#   BENCH_DIR     where the data goes (default /dev/shm when it has room)
#   FLOODGATE_BIN use this binary instead of building ./cmd/floodgate
#   CPUPROFILE    a directory: CPU profiles of every floodgate peer of the
#                 first round go there (NAME.pprof, see the summary)
#   LOGDIR        a directory: every process's log is copied there, and the
#                 provider's metrics (broker requests by route)
#   PEER_FLAGS    extra flags for every `floodgate seed` and `get` (e.g. -v)
#   PROVIDER_CPUS run the provider on these CPUs (taskset list, e.g. 0)
#   PEER_CPUS     run every seed and get on these CPUs (e.g. 1-3)
#   BASE_BIN      a second floodgate binary (say, main's, to judge a
#                 change): its paid runs form a third mode, "base", in
#                 every round next to plain and paid (the order rotating),
#                 and the summary adds paid/base ratios. Batches run
#                 minutes apart on a shared VM differ by 2-3 %, more than
#                 most changes; runs side by side in one batch do not.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZE_MIB=${SIZE_MIB:-256}
PIECE_LENGTH=${PIECE_LENGTH:-262144}
LEECHERS=${LEECHERS:-4}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-1 4}
PRICE=${PRICE:-30}
SIZE=$((SIZE_MIB * 1024 * 1024))

die() { echo "bench: $*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package 'time')"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer"
MODES="plain paid"
if [ -n "${BASE_BIN:-}" ]; then
    [ -x "$BASE_BIN" ] || die "BASE_BIN $BASE_BIN is not an executable"
    MODES="plain paid base"
fi
# CPU pinning (optional): a real provider runs on its own machine, so on a
# host with cores to spare its broker work can be kept off the peers'.
PROVIDER_PIN=()
PEER_PIN=()
if [ -n "${PROVIDER_CPUS:-}${PEER_CPUS:-}" ]; then
    command -v taskset >/dev/null || die "PROVIDER_CPUS/PEER_CPUS need taskset (Debian package util-linux)"
    [ -z "${PROVIDER_CPUS:-}" ] || PROVIDER_PIN=(taskset -c "$PROVIDER_CPUS")
    [ -z "${PEER_CPUS:-}" ] || PEER_PIN=(taskset -c "$PEER_CPUS")
fi

# ------------------------------------------------------------- workspace
# shellcheck source=bench/lib.sh
. bench/lib.sh paidbench

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
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening on port $1: $(tail -n 5 "$WORK/$3.log")"
        sleep 0.05
    done
    die "$3 is not listening on port $1 after 60 s"
}

# wait_printed file regexp pid name: until the process's log matches.
wait_printed() {
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || die "$4 exited: $(tail -n 5 "$1")"
        sleep 0.05
    done
    die "$4 did not start within 60 s: $(tail -n 5 "$1")"
}

# http_get port path -> the response (headers and body) of a plain GET.
http_get() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
        cat <&3) 2>/dev/null | tr -d '\0' || true
}

# wait_seeder hexhash: until the provider's tracker lists a seeder, so the
# gets find it in their first announce.
wait_seeder() {
    local q i
    q=$(echo "$1" | sed 's/../%&/g')
    for ((i = 0; i < 400; i++)); do
        [[ "$(http_get "$PPORT" "/scrape?info_hash=$q")" == *"8:completei"[1-9]* ]] && return 0
        sleep 0.05
    done
    die "the tracker does not list the seeder of $1"
}

# cpu_ticks pid -> utime+stime of a running process, in clock ticks.
cpu_ticks() {
    awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"
}
CLK_TCK=$(getconf CLK_TCK)

profile_args() { # name -> flags asking for a CPU profile, in round 1 only
    if [ -n "${CPUPROFILE:-}" ] && [ "$ROUND" -eq 1 ]; then
        echo "--cpuprofile $CPUPROFILE/$1.pprof"
    fi
}

# ------------------------------------------------------------- provider
PPORT=$(free_port)
"${PROVIDER_PIN[@]}" "$FG" provider --listen "127.0.0.1:$PPORT" --data-dir "$WORK/provider" --announce-interval 2s \
    >"$WORK/provider.log" 2>&1 &
PROVIDER=$!
PIDS+=("$PROVIDER")
wait_listening "$PPORT" "$PROVIDER" provider
for ((i = 0; i < 200; i++)); do
    [[ "$(http_get "$PPORT" /healthz)" == *" 200 "* ]] && break
    sleep 0.05
done
BROKER=http://127.0.0.1:$PPORT

# account name -> creates and registers keys/name.key, prints the account.
account() {
    "$FG" account new --key "$WORK/keys/$1.key" >/dev/null
    "$FG" account register --key "$WORK/keys/$1.key" --broker "$BROKER" | awk '/^account:/{print $2}'
}
account seeder >/dev/null
for ((i = 1; i <= LEECHERS; i++)); do
    acct=$(account "leecher$i")
    # Enough for every round's downloads several times over.
    "$FG" mint --provider-key "$WORK/provider/provider.key" --broker "$BROKER" \
        "$acct" $((2 * (ROUNDS + WARMUP) * (SIZE_MIB + 64) * PRICE + 100000)) >/dev/null
done

# ------------------------------------------------------------- content
SRC=$WORK/src
mkdir -p "$SRC"
echo "writing $SIZE_MIB MiB of random data to $WORK ..."
head -c "$SIZE" /dev/urandom >"$SRC/content.bin"
HASH=$("$FG" create --piece-length "$PIECE_LENGTH" --tracker "$BROKER/announce" \
    -o "$WORK/plain.torrent" "$SRC/content.bin" | awk '/info hash:/{print $3}')
"$FG" create --piece-length "$PIECE_LENGTH" --tracker "$BROKER/announce" \
    --provider-key "$WORK/provider/provider.key" --broker "$BROKER" --class "gold:0:$PRICE" \
    -o "$WORK/paid.torrent" "$SRC/content.bin" >/dev/null
PAID_PRICE=$(awk -v s="$SIZE" -v p="$PRICE" 'BEGIN{printf "%d", int(s*p/1048576)}')

echo "host: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
    "load $(cut -d' ' -f1-3 /proc/loadavg), data on $(df -P "$WORK" | awk 'NR==2{print $1}')," \
    "$SIZE_MIB MiB, piece length $PIECE_LENGTH, paid class $PRICE units/MiB ($PAID_PRICE per download)"

# ------------------------------------------------------------- one run
# results.tsv: scenario mode round wall mibs cpu_leechers cpu_seeder cpu_provider
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# run_once scenario(leecher count) mode(plain|paid|base)
run_once() {
    local n=$1 mode=$2 tag seed s0 p0 s1 p1 t0 t1 i ok=1 pids=() cpu_l=0 wall user sys rss seedflags=()
    local bin=$FG torrent=$mode
    tag="$mode-$n-r$ROUND"
    if [ "$mode" = base ]; then
        bin=$BASE_BIN torrent=paid # the paid transfer, by the other binary
    fi
    if [ "$torrent" = paid ]; then
        seedflags=(--key "$WORK/keys/seeder.key" --state-dir "$WORK/state/$tag-seed")
    fi
    # shellcheck disable=SC2046 # profile flags are words on purpose
    # Port 0: the seeder picks a free port and prints it, which leaves no
    # window for another process to take it.
    "${PEER_PIN[@]}" "$bin" seed "${seedflags[@]}" --listen 127.0.0.1:0 $(profile_args "$mode-$n-seed") ${PEER_FLAGS:-} \
        "$WORK/$torrent.torrent" "$SRC/content.bin" >"$WORK/$tag-seed.log" 2>&1 &
    seed=$!
    PIDS+=("$seed")
    wait_printed "$WORK/$tag-seed.log" "^seeding .* on " "$seed" "$tag-seed"
    wait_seeder "$HASH"
    s0=$(cpu_ticks "$seed")
    p0=$(cpu_ticks "$PROVIDER")
    t0=$(date +%s.%N)
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$WORK/out-$i"
        # shellcheck disable=SC2046
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/$tag-get$i.time" \
            "${PEER_PIN[@]}" "$bin" get --key "$WORK/keys/leecher$i.key" --state-dir "$WORK/state/$tag-get$i" \
            --listen 127.0.0.1:0 --out "$WORK/out-$i" $(profile_args "$mode-$n-get$i") ${PEER_FLAGS:-} \
            "$WORK/$torrent.torrent" >"$WORK/$tag-get$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || { ok=0; echo "get $((i + 1)) of $tag failed: $(tail -n 3 "$WORK/$tag-get$((i + 1)).log")" >&2; }
    done
    t1=$(date +%s.%N)
    s1=$(cpu_ticks "$seed")
    p1=$(cpu_ticks "$PROVIDER")
    [ "$ok" -eq 1 ] || die "$tag failed"
    for ((i = 1; i <= n; i++)); do
        cmp -s "$SRC/content.bin" "$WORK/out-$i/content.bin" || die "$tag: get $i produced different bytes"
        read -r wall user sys rss <"$WORK/$tag-get$i.time"
        cpu_l=$(awk -v a="$cpu_l" -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", a+u+s}')
        if [ "$torrent" = paid ] && ! grep -q "^paid [0-9]* units" "$WORK/$tag-get$i.log"; then
            die "$tag: get $i did not pay: $(cat "$WORK/$tag-get$i.log")"
        fi
        rm -rf "$WORK/out-$i"
    done
    kill -INT "$seed"
    wait "$seed" || die "$tag: the seeder failed on exit: $(tail -n 3 "$WORK/$tag-seed.log")"
    [ "$ROUND" -gt 0 ] || return 0 # a warm-up run: checked, not recorded
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$mode" "$ROUND" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" \
        "$(awk -v a="$t0" -v b="$t1" -v s="$SIZE" -v n="$n" 'BEGIN{printf "%.1f", n*s/1048576/(b-a)}')" \
        "$cpu_l" \
        "$(awk -v t=$((s1 - s0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')" \
        "$(awk -v t=$((p1 - p0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')" >>"$RESULTS"
    if [ "$torrent" = paid ]; then
        echo "    leechers paid $(grep -h '^paid [0-9]* units' "$WORK/$tag"-get*.log | awk '{printf "%s%d", (NR > 1 ? " + " : ""), $2; s += $2} END{printf " = %d", s}')" \
            "units (price $PAID_PRICE each); seeder $(grep -o 'earned [0-9]* units' "$WORK/$tag-seed.log")"
    fi
}

for n in $SCENARIOS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "scenario $n: want a leecher count"
    [ "$n" -le "$LEECHERS" ] || die "scenario $n: only $LEECHERS leecher accounts (LEECHERS)"
done
ROUND=0
for ((w = 1; w <= WARMUP; w++)); do
    for mode in $MODES; do
        echo "warm-up $w: 1 seeder -> ${SCENARIOS%% *} leecher(s), $mode (not recorded) ..."
        run_once "${SCENARIOS%% *}" "$mode"
    done
done
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for n in $SCENARIOS; do
        # Each mode goes first in turn (of two: plain first in odd
        # rounds; of three: rotating).
        if [ -z "${BASE_BIN:-}" ]; then
            if ((ROUND % 2)); then order="plain paid"; else order="paid plain"; fi
        else
            case $((ROUND % 3)) in
            1) order="plain paid base" ;;
            2) order="paid base plain" ;;
            0) order="base plain paid" ;;
            esac
        fi
        for mode in $order; do
            echo "round $ROUND: 1 seeder -> $n leecher(s), $mode ..."
            run_once "$n" "$mode"
        done
    done
done

# ------------------------------------------------------------- report
if [ -n "${LOGDIR:-}" ]; then
    mkdir -p "$LOGDIR"
    cp "$WORK"/*.log "$WORK"/*.time "$LOGDIR"/
    http_get "$PPORT" /metrics >"$LOGDIR/provider.metrics"
fi
echo
echo "every run (cpu_s: user+system seconds; seeder and provider while the gets ran)"
printf '%-9s %-6s %5s %8s %8s %12s %10s %12s\n' leechers mode round wall_s MiB/s cpu_leechers cpu_seeder cpu_provider
sort -k1,1n -k2,2 -k3,3n "$RESULTS" | awk -F'\t' '{printf "%-9s %-6s %5s %8s %8s %12s %10s %12s\n", $1, $2, $3, $4, $5, $6, $7, $8}'

# median column scenario mode -> median of that column over the rounds
median() {
    awk -F'\t' -v c="$1" -v n="$2" -v m="$3" '$1 == n && $2 == m {print $c}' "$RESULTS" | sort -g |
        awk '{v[NR] = $1} END {if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "-" }'; }

echo
echo "medians over $ROUNDS round(s); cpu_peers = leechers + seeder"
printf '%-9s %-6s %8s %8s %10s %12s\n' leechers mode wall_s MiB/s cpu_peers cpu_provider
for n in $SCENARIOS; do
    for mode in $MODES; do
        w=$(median 4 "$n" "$mode")
        r=$(median 5 "$n" "$mode")
        # The median of the per-run sums, so one round's numbers stay together.
        c=$(awk -F'\t' -v n="$n" -v m="$mode" '$1 == n && $2 == m {printf "%.2f\n", $6 + $7}' "$RESULTS" | sort -g |
            awk '{v[NR] = $1} END {if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2}')
        p=$(median 8 "$n" "$mode")
        printf '%-9s %-6s %8s %8s %10s %12s\n' "$n" "$mode" "$w" "$r" "$c" "$p"
        eval "W_${mode}_$n=$w C_${mode}_$n=$c P_${mode}_$n=$p"
    done
done
echo
echo "paid/plain (goal: wall <= 1.03, cpu_peers <= 1.05)"
for n in $SCENARIOS; do
    eval "wp=\$W_paid_$n wq=\$W_plain_$n cp=\$C_paid_$n cq=\$C_plain_$n pp=\$P_paid_$n pq=\$P_plain_$n"
    # shellcheck disable=SC2154 # set by eval
    echo "  1 -> $n: wall $(ratio "$wp" "$wq"), cpu_peers $(ratio "$cp" "$cq")," \
        "cpu_peers+provider $(ratio "$(awk -v a="$cp" -v b="$pp" 'BEGIN{print a+b}')" "$(awk -v a="$cq" -v b="$pq" 'BEGIN{print a+b}')")"
done
if [ -n "${BASE_BIN:-}" ]; then
    echo "paid/base (this binary's paid runs over BASE_BIN's)"
    for n in $SCENARIOS; do
        eval "wp=\$W_paid_$n wb=\$W_base_$n cp=\$C_paid_$n cb=\$C_base_$n pp=\$P_paid_$n pb=\$P_base_$n"
        # shellcheck disable=SC2154 # set by eval
        echo "  1 -> $n: wall $(ratio "$wp" "$wb"), cpu_peers $(ratio "$cp" "$cb"), cpu_provider $pp s vs $pb s"
    done
fi
# The same ratios round by round: the modes of one round ran back to back,
# so their ratio cancels most of the drift in a shared machine's load that
# the medians above still carry.
# per_round A B: the A/B ratios of every round, min / median / max, the
# mean with about two standard errors either side (a normal
# approximation; with a handful of rounds it is optimistic), and the mean
# of the middle three fifths (one run stalled by the VM skews the mean,
# not that).
per_round() {
    echo
    echo "$1/$2 per round (min / median / max; mean ± 95 % confidence interval; trimmed mean)"
    for n in $SCENARIOS; do
        for col in 4:wall 6+7:cpu_peers; do
            awk -F'\t' -v n="$n" -v col="${col%%:*}" -v name="${col#*:}" -v a="$1" -v b="$2" '
                function v() { if (col == "6+7") return $6 + $7; return $col }
                $1 == n && $2 == a { num[$3] = v() }
                $1 == n && $2 == b { den[$3] = v() }
                END {
                    k = 0
                    for (r in num) if ((r in den) && den[r] > 0) x[++k] = num[r] / den[r]
                    if (k == 0) exit
                    for (i = 2; i <= k; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
                    med = (k % 2) ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2
                    sum = 0; for (i = 1; i <= k; i++) sum += x[i]; mean = sum / k
                    ss = 0; for (i = 1; i <= k; i++) ss += (x[i] - mean) ^ 2
                    half = (k > 1) ? 2 * sqrt(ss / (k - 1) / k) : 0
                    cut = int(k / 5); tsum = 0
                    for (i = cut + 1; i <= k - cut; i++) tsum += x[i]
                    printf "  1 -> %s: %-9s %.3f / %.3f / %.3f; %.3f ± %.3f; %.3f\n", n, name, x[1], med, x[k], mean, half, tsum / (k - 2 * cut)
                }' "$RESULTS"
        done
    done
}
per_round paid plain
if [ -n "${BASE_BIN:-}" ]; then
    per_round base plain
    per_round paid base
fi
if [ -n "${CPUPROFILE:-}" ]; then
    echo "CPU profiles of round 1 in $CPUPROFILE: go tool pprof -top $CPUPROFILE/paid-1-get1.pprof"
fi
