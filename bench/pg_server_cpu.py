#!/usr/bin/env python3
"""bench/pg_server_cpu.py: the CPU a command costs a PostgreSQL server.

    bench/pg_server_cpu.py [-t SECONDS] PGDATA -- CMD [ARG...]

Runs CMD (e.g. `treemig discover --db postgresql://...`) and samples, every
20 ms until it exits, /proc/PID/stat of every child of the server whose
data directory is PGDATA (its postmaster.pid names the postmaster). Prints
one line: the wall, CMD's CPU (user + sys, itself and its children), the
CPU of the client backends that ran meanwhile (a backend's last sample is
at most 20 ms short), of autovacuum workers, of the server's own
processes (checkpointer, WAL writer: what they used during the run), and
treemig + backends + own processes. On a machine shared with other work
these CPU seconds are steadier than the wall (docs/BENCHMARKS.md,
"PostgreSQL node rows by COPY"). With -t, first a timeline: per
SECONDS of the run, the cores the client backends and CMD's own process
(its threads) used, from the same samples (taken every 10 ms then):
whether the server waits for the client or the client for the server
(docs/BENCHMARKS.md, "PostgreSQL discovery: when the backend waits").
Linux only; must be able to read the server's /proc entries (its user or
root).
"""
import os
import resource
import subprocess
import sys
import time


def children(pm, tck):
    """{pid: (cpu s, process title)} of the postmaster's children."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as fh:
                st = fh.read()
            f = st[st.rindex(")") + 2:].split()
            if int(f[1]) != pm:
                continue
            with open("/proc/%s/cmdline" % p) as fh:
                title = fh.read().replace("\0", " ").strip()
            out[int(p)] = ((int(f[11]) + int(f[12])) / tck, title)
        except (OSError, ValueError):
            pass
    return out


def own_cpu(pid, tck):
    """CPU s of process pid and its threads (0 once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            st = fh.read()
        f = st[st.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / tck
    except (OSError, ValueError):
        return 0.0


def timeline(samples, bucket):
    """Prints the cores used per bucket from (t, backends cpu, cmd cpu)."""
    print("%7s %9s %9s" % ("t s", "backends", "command"))
    i = 0
    while i < len(samples):
        j = i
        while j < len(samples) and samples[j][0] < samples[i][0] + bucket:
            j += 1
        if j >= len(samples):
            break
        (t, b, c), (t2, b2, c2) = samples[i], samples[j]
        print("%7.2f %9.2f %9.2f" % (t, (b2 - b) / (t2 - t), (c2 - c) / (t2 - t)))
        i = j


def kind_of(title):
    if "autovacuum worker" in title:
        return "autovacuum"
    if "[local]" in title or "(" in title:  # a client: "user db [local] ..." or "host(port)"
        return "backend"
    return "own" if title else ""


def main():
    args = sys.argv[1:]
    bucket = None
    if args[:1] == ["-t"]:
        bucket = float(args[1])
        args = args[2:]
    if len(args) < 3 or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    with open(os.path.join(args[0], "postmaster.pid")) as f:
        pm = int(f.readline())
    tck = os.sysconf("SC_CLK_TCK")
    before = children(pm, tck)
    seen = {}
    samples = []  # (t, backends' cpu, cmd's cpu), for -t
    t0 = time.monotonic()
    p = subprocess.Popen(args[2:])
    while True:
        done = p.poll() is not None
        for pid, (cpu, title) in children(pm, tck).items():
            kind = seen.get(pid, (0, ""))[1] or kind_of(title)  # the first title that tells
            seen[pid] = (cpu, kind)
        if done:
            break
        if bucket:
            c = own_cpu(p.pid, tck)
            if c or not samples:  # not after it exited (unreaped: 0)
                samples.append((time.monotonic() - t0,
                                sum(cpu - (before[pid][0] if pid in before else 0)
                                    for pid, (cpu, kind) in seen.items() if kind == "backend"),
                                c))
        time.sleep(0.01 if bucket else 0.02)
    if bucket:
        timeline(samples, bucket)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ru.ru_utime + ru.ru_stime
    cat = {"backend": 0.0, "autovacuum": 0.0, "own": 0.0}
    for pid, (cpu, kind) in seen.items():
        cat[kind if kind in cat else "own"] += cpu - (before[pid][0] if pid in before else 0)
    print("wall %.2f s; cpu s: command %.2f, backends %.2f, autovacuum %.2f, server's own %.2f;"
          " command + backends + own %.2f"
          % (wall, cmd, cat["backend"], cat["autovacuum"], cat["own"],
             cmd + cat["backend"] + cat["own"]))
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
