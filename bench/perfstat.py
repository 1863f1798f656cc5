#!/usr/bin/env python3
"""Run a floodgate peer under `perf stat` or `perf record`, for bench/paid.sh.

    FLOODGATE_BIN=bench/perfstat.py FG_REAL=/path/to/floodgate \
        PERFDIR=/tmp/perfstat bash bench/paid.sh
    bench/perfstat.py --summary /tmp/perfstat

    PERFMODE=record FLOODGATE_BIN=bench/perfstat.py FG_REAL=/path/to/floodgate \
        PERFDIR=/tmp/perfrecord bash bench/paid.sh
    bench/perfstat.py --packages /tmp/perfrecord

Every `floodgate get` and `floodgate seed` runs under `perf stat` (task
clock, context switches, page faults, and the read, write, futex and
epoll_pwait system calls), one file per process in PERFDIR, named
MODE.COMMAND.TIME.PID (MODE: plain or paid, from the torrent's name); other
commands run as they are. SIGINT and SIGTERM are passed on to the peer, so
the script's SIGINT still stops a seeder (perf itself would not pass it,
and a backgrounded shell could not catch it). --summary prints the mean of
every counter per mode and command. perf stat's task clock is exact where
the script's own CPU columns count in 10 ms ticks, and the system-call
counts show costs a CPU profile spreads thin (a wake-up per payment
message, say).

With PERFMODE=record every peer runs under `perf record -g` instead
(kernel stacks included, so system calls count where they are made), and
--packages charges each sample to the innermost floodgate package on its
stack (internal/engine, internal/paid, ...; samples with none go to the
Go runtime's scheduler, garbage collector or "other") and prints, per
command, the mean milliseconds per process in plain and paid runs and
their difference, largest first. A Go CPU profile of a single run cannot
resolve a difference of a few milliseconds; the mean over many processes
can, and it names the package to look at.
"""
import collections
import os
import re
import signal
import subprocess
import sys
import time

EVENTS = ",".join([
    "task-clock", "context-switches", "cpu-migrations", "page-faults",
    "syscalls:sys_enter_read", "syscalls:sys_enter_write",
    "syscalls:sys_enter_futex", "syscalls:sys_enter_epoll_pwait",
])


def summary(directory):
    sums = collections.defaultdict(float)
    files = collections.defaultdict(set)
    for name in sorted(os.listdir(directory)):
        if name.endswith(".data"):
            continue  # perf record output: see --packages
        mode, command = name.split(".")[:2]
        with open(os.path.join(directory, name)) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) < 3 or not fields[0] or fields[0].startswith("<"):
                    continue
                event = fields[2].replace("syscalls:sys_enter_", "")
                sums[(mode, command, event)] += float(fields[0])
                files[(mode, command)].add(name)
    for mode, command in sorted(files):
        n = len(files[(mode, command)])
        counters = sorted((e, v / n) for (m, c, e), v in sums.items() if (m, c) == (mode, command))
        print(f"{mode} {command} ({n} runs): " + " ".join(f"{e}={v:.0f}" for e, v in counters))


RECORD_HZ = 999
PACKAGE = re.compile(r"floodgate-p2p/floodgate/(?:internal|cmd)/(\w+)")


def charge(frames):
    """The package a sample's stack (innermost frame first) is charged to."""
    for frame in frames:
        m = PACKAGE.search(frame)
        if m:
            return m.group(1)
    if any("gcBgMarkWorker" in f or "gcDrain" in f or "bgsweep" in f for f in frames):
        return "(runtime: gc)"
    if any(f.startswith("runtime.mcall") or f.startswith("runtime.schedule") or "findRunnable" in f for f in frames):
        return "(runtime: scheduler)"
    if any("net/http" in f for f in frames):
        return "(net/http)"
    return "(other)"


def packages(directory):
    ms = collections.defaultdict(float)  # (command, mode, package) -> ms summed
    runs = collections.Counter()  # (command, mode) -> processes
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".data"):
            continue
        mode, command = name.split(".")[:2]
        runs[(command, mode)] += 1
        script = subprocess.run(["perf", "script", "-F", "ip,sym", "-i", os.path.join(directory, name)],
                                capture_output=True, text=True).stdout
        for block in script.split("\n\n"):
            frames = [line.split(None, 1)[1] for line in block.strip().splitlines() if len(line.split(None, 1)) == 2]
            if frames:
                ms[(command, mode, charge(frames))] += 1000 / RECORD_HZ
    for command in sorted({c for c, _ in runs}):
        n = {mode: runs[(command, mode)] for mode in ("plain", "paid")}
        if not all(n.values()):
            continue
        mean = {key: v / n[key[1]] for key, v in ms.items() if key[0] == command}
        total = {mode: sum(v for (c, m, _), v in mean.items() if m == mode) for mode in n}
        print(f"{command}: ms per process (plain {n['plain']}, paid {n['paid']} processes): "
              f"plain {total['plain']:.0f}, paid {total['paid']:.0f}, difference {total['paid'] - total['plain']:+.0f}")
        pkgs = {p for (_, _, p) in mean}
        rows = sorted(pkgs, key=lambda p: -abs(mean.get((command, "paid", p), 0) - mean.get((command, "plain", p), 0)))
        for p in rows[:15]:
            a, b = mean.get((command, "plain", p), 0), mean.get((command, "paid", p), 0)
            print(f"  {b - a:+7.1f}  {a:7.1f} {b:7.1f}  {p}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--summary"] and len(args) == 2:
        summary(args[1])
        return 0
    if args[:1] == ["--packages"] and len(args) == 2:
        packages(args[1])
        return 0
    real = os.environ.get("FG_REAL")
    if not real:
        print("perfstat.py: set FG_REAL to the floodgate binary", file=sys.stderr)
        return 2
    if not args or args[0] not in ("get", "seed"):
        os.execv(real, [real] + args)
    mode = "paid" if any(a.endswith("paid.torrent") for a in args) else "plain"
    out = os.path.join(os.environ.get("PERFDIR", "/tmp/perfstat"),
                       f"{mode}.{args[0]}.{time.time_ns()}.{os.getpid()}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.environ.get("PERFMODE") == "record":
        perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", str(RECORD_HZ), "-o", out + ".data", "--", real] + args)
    else:
        perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", EVENTS, "--", real] + args)

    def forward(signum, frame):
        subprocess.call(["pkill", "-" + signal.Signals(signum).name[3:], "-P", str(perf.pid)])

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return perf.wait()


if __name__ == "__main__":
    sys.exit(main())
