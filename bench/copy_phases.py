#!/usr/bin/env python3
"""copy_phases.py TREEMIG DB DST BYTES: runs `TREEMIG copy --yes --quiet
--db DB` and samples DST every 10 ms (the sizes of every file under it,
temporaries included) and /proc/stat, to split the copy's wall time into
its start (to the first byte under DST), its bytes (until BYTES are there)
and its end (until the process exits), with the machine's busy, idle and
iowait core-seconds during the bytes. The sampling itself costs some CPU
(an os.walk every 10 ms): for a few large files, not for many small ones.
"""
import os
import subprocess
import sys
import time


def cpu():
    """(busy, idle, iowait) ticks of every core so far."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[3], v[4]


def size_under(dst):
    n = 0
    for d, _, fs in os.walk(dst):
        for f in fs:
            try:
                n += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass  # a temporary renamed meanwhile
    return n


def main():
    if len(sys.argv) != 5:
        sys.exit('usage: copy_phases.py TREEMIG DB DST BYTES')
    tm, db, dst, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    t0 = time.monotonic()
    p = subprocess.Popen([tm, 'copy', '--yes', '--quiet', '--db', db])
    first = full = c1 = c2 = None
    while p.poll() is None:
        n = size_under(dst)
        t = time.monotonic() - t0
        if n and first is None:
            first, c1 = t, cpu()
        if n >= total and full is None:
            full, c2 = t, cpu()
        time.sleep(0.01)
    end = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit('copy exited %d' % p.returncode)
    if first is None or full is None:
        sys.exit('the copy ended before %d bytes were seen under %s' % (total, dst))
    hz = os.sysconf('SC_CLK_TCK')
    busy, idle, wait = ((b - a) / hz for a, b in zip(c1, c2))
    print('start %.2f s, bytes %.2f s (busy %.2f, idle %.2f, iowait %.2f core-s), end %.2f s,'
          ' total %.2f s' % (first, full - first, busy, idle, wait, end - full, end))


if __name__ == '__main__':
    main()
