#!/usr/bin/env python3
"""bench/thread_time.py: where each thread of a command spends its wall time.

    bench/thread_time.py [-i SECONDS] -- CMD [ARG...]

Runs CMD and samples every thread's /proc/PID/task/TID/schedstat (time on a
CPU, time runnable but waiting for one) every SECONDS (default 0.02) until
it exits; prints per thread, busiest first: CPU s, runnable-wait s (ready
to run, no core free: the machine's other threads ran), asleep s (the rest
of the time it was seen: waiting on a lock, a condition, I/O). Threads of
under one sample interval are missed; the figures of a thread are those of
its last sample (at most one interval short). Linux only (schedstat).
"""
import os
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    interval = 0.02
    if args[:1] == ["-i"]:
        interval = float(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    t0 = time.monotonic()
    p = subprocess.Popen(args)
    last, first = {}, {}
    while p.poll() is None:
        now = time.monotonic()
        try:
            tids = os.listdir("/proc/%d/task" % p.pid)
        except OSError:
            tids = []
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/schedstat" % (p.pid, tid)) as f:
                    run, wait, _ = f.read().split()
                with open("/proc/%d/task/%s/comm" % (p.pid, tid)) as f:
                    comm = f.read().strip()
            except (OSError, ValueError):
                continue
            first.setdefault(tid, now)
            last[tid] = (int(run) / 1e9, int(wait) / 1e9, now, comm)
        time.sleep(interval)
    wall = time.monotonic() - t0
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print("wall %.2f s, exit %d, load %s; per thread: cpu s, runnable-wait s, asleep s, seen s"
          % (wall, p.returncode, load))
    tot_run = tot_wait = 0.0
    for tid, (run, wait, seen, comm) in sorted(last.items(), key=lambda kv: -kv[1][0]):
        life = seen - first[tid]
        print("  %-8s %-16s %6.2f %6.2f %6.2f %6.2f"
              % (tid, comm, run, wait, max(0.0, life - run - wait), life))
        tot_run += run
        tot_wait += wait
    print("  all threads: cpu %.2f s, runnable-wait %.2f s" % (tot_run, tot_wait))
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
