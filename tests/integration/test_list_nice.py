#!/usr/bin/env python3
"""Integration test: discovery's listing threads run at a nicer value than
the rest of the process (src/engine/discover.c LIST_NICE, +10), so that the
one writer thread they feed keeps a core; the main thread keeps its own.

Runs `treemig discover` on a simulated pair whose listings take 20 ms each
(so that the run lasts long enough to be seen) and reads the nice value of
every thread from /proc/PID/task/TID/stat while it runs.

Run:  python3 tests/integration/test_list_nice.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, fail  # noqa: E402

LIST_NICE = 10
WORKERS = 3
SHAPE = 'sim:depth=3,folders=6,files=2,latency=20'


def thread_nices(pid):
    """{tid: nice} of the live threads of pid ({} once it is gone)."""
    out = {}
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open('/proc/%d/task/%s/stat' % (pid, tid)) as f:
                st = f.read()
        except OSError:
            continue
        # the fields after the command's parentheses: state is field 3,
        # nice field 19
        fields = st[st.rindex(')') + 2:].split()
        out[int(tid)] = int(fields[16])
    return out


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_list_nice')
    base = tempfile.mkdtemp(prefix='treemig-nice-', dir='/tmp')
    own = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        def check_nice():
            if own >= 19:
                raise tmtest.Skip('this process runs at nice 19: no value above to see')
            db = os.path.join(base, 'n.db')
            p = subprocess.Popen([tmtest.TREEMIG, 'discover', '--quiet', '--db', db,
                                  '--workers', str(WORKERS), SHAPE, SHAPE + ',world=dst'],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            want = min(own + LIST_NICE, 19)   # the kernel's ceiling
            most = {}   # the sample with the most threads at want
            try:
                while p.poll() is None:
                    seen = thread_nices(p.pid)
                    if sum(v == want for v in seen.values()) > \
                            sum(v == want for v in most.values()):
                        most = seen
                    time.sleep(0.005)
                err = p.stderr.read().decode(errors='replace')
            finally:
                if p.poll() is None:
                    p.kill()
                p.wait()
            expect_eq('discover exit code (stderr: %s)' % err.strip()[-300:], 0, p.returncode)
            if not most:
                fail('no thread was ever seen at nice %d (own %d): the listing threads '
                     'are not niced' % (want, own))
            niced = sorted(t for t, v in most.items() if v == want)
            # one listing thread per worker and side, nothing else
            expect_eq('threads at nice %d' % want, 2 * WORKERS, len(niced))
            expect_eq('the main thread keeps its nice value', own, most.get(p.pid))
            others = sorted(v for t, v in most.items() if v != want)
            expect_eq('the other threads (writer, checkpointer, ...) keep theirs',
                      [own] * len(others), others)
        R.check('listing threads at nice +%d, the others unchanged' % LIST_NICE, check_nice)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


if __name__ == '__main__':
    main()
