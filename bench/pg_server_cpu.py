#!/usr/bin/env python3
"""bench/pg_server_cpu.py: the CPU a command costs a PostgreSQL server.

    bench/pg_server_cpu.py PGDATA -- CMD [ARG...]

Runs CMD (e.g. `treemig discover --db postgresql://...`) and samples, every
20 ms until it exits, /proc/PID/stat of every child of the server whose
data directory is PGDATA (its postmaster.pid names the postmaster). Prints
one line: the wall, CMD's CPU (user + sys, itself and its children), the
CPU of the client backends that ran meanwhile (a backend's last sample is
at most 20 ms short), of autovacuum workers, of the server's own
processes (checkpointer, WAL writer: what they used during the run), and
treemig + backends + own processes. On a machine shared with other work
these CPU seconds are steadier than the wall (docs/BENCHMARKS.md,
"PostgreSQL node rows by COPY"). Linux only; must be able to read the
server's /proc entries (its user or root).
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


def kind_of(title):
    if "autovacuum worker" in title:
        return "autovacuum"
    if "[local]" in title or "(" in title:  # a client: "user db [local] ..." or "host(port)"
        return "backend"
    return "own" if title else ""


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    with open(os.path.join(args[0], "postmaster.pid")) as f:
        pm = int(f.readline())
    tck = os.sysconf("SC_CLK_TCK")
    before = children(pm, tck)
    seen = {}
    t0 = time.monotonic()
    p = subprocess.Popen(args[2:])
    while True:
        done = p.poll() is not None
        for pid, (cpu, title) in children(pm, tck).items():
            kind = seen.get(pid, (0, ""))[1] or kind_of(title)  # the first title that tells
            seen[pid] = (cpu, kind)
        if done:
            break
        time.sleep(0.02)
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
