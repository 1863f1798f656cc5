#!/usr/bin/env python3
"""Run a floodgate peer under `perf stat`, for bench/paid.sh.

    FLOODGATE_BIN=bench/perfstat.py FG_REAL=/path/to/floodgate \
        PERFDIR=/tmp/perfstat bash bench/paid.sh
    bench/perfstat.py --summary /tmp/perfstat

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
"""
import collections
import os
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


def main():
    args = sys.argv[1:]
    if args[:1] == ["--summary"] and len(args) == 2:
        summary(args[1])
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
    perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", EVENTS, "--", real] + args)

    def forward(signum, frame):
        subprocess.call(["pkill", "-" + signal.Signals(signum).name[3:], "-P", str(perf.pid)])

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return perf.wait()


if __name__ == "__main__":
    sys.exit(main())
