#!/usr/bin/env python3
"""Integration test of `copy --bwlimit RATE` and `--tps-limit N` (issue
20): bad values are refused; a limited copy takes at least the time its
limit allows (a lower bound derived from the limit and the engine's own
accounting, never an upper bound); the engine accounts every byte and
request on each side; a Ctrl-C ends the waits (exit 4, resumable).

Run:  python3 tests/integration/test_copy_limits.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

FILES, SIZE = 40, 64 * 1024
MIB = 1024 * 1024


def make_tree(base, name):
    src = os.path.join(base, name)
    os.makedirs(src)
    for i in range(FILES):
        with open(os.path.join(src, 'f%02d' % i), 'wb') as f:
            f.write(os.urandom(SIZE))
    return src


def limits_logged(db):
    """{side: (bytes, operations)} from the engine's log records."""
    con = tmtest.connect(db)
    try:
        rows = [r[0].decode() for r in con.execute(
            "SELECT message FROM logs WHERE message LIKE '% limits: %'")]
    finally:
        con.close()
    out = {}
    for msg in rows:
        m = re.match(r'^(source|destination) limits: (\d+) bytes, (\d+) operations;', msg)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def fresh(base, name):
    src = make_tree(base, name + '-src')
    dst = os.path.join(base, name + '-dst')
    os.mkdir(dst)
    db = os.path.join(base, name + '.db')
    expect_rc(tmtest.run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
    return src, dst, db


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy_limits')
    base = tempfile.mkdtemp(prefix='treemig-limits-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    def check_bad():
        src, dst, db = fresh(base, 'bad')
        for opt, val in (('--bwlimit', '1X'), ('--bwlimit', '-1'), ('--bwlimit', ''),
                         ('--bwlimit', 'M'), ('--bwlimit', '1.5Q'), ('--bwlimit', '1M/h'),
                         ('--tps-limit', 'abc'), ('--tps-limit', '-3'),
                         ('--tps-limit', '')):
            for cmd in ('copy', 'verify'):
                cp = tmtest.run([cmd, '--db', db, '--yes' if cmd == 'copy' else '-q',
                                 opt, val])
                expect_rc(cp, 2, '%s %s %r' % (cmd, opt, val))
                if opt.encode() not in cp.stderr:
                    fail('%s %s %r: the message does not name the option: %s'
                         % (cmd, opt, val, tmtest.show(cp)))
        expect_eq('phase after refused limits', 'discovered', tmtest.migration(db)['phase'])
        expect_eq('destination after refused limits', [], os.listdir(dst))
        # the units: accepted (0: no limit)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--bwlimit', '0',
                         '--tps-limit', '0'])
        expect_rc(cp, 0, 'copy --bwlimit 0 --tps-limit 0')
        for val in ('512', '500K', '1.5M', '2MiB/s', '1MB', '1G', '100B'):
            cp = tmtest.run(['verify', '--db', db, '--quiet', '--bwlimit', val])
            expect_rc(cp, 0, 'verify --bwlimit %s' % val)
    R.check('--bwlimit and --tps-limit: bad values refused by copy and verify, '
            'units accepted', check_bad)

    def check_bwlimit():
        src, dst, db = fresh(base, 'bw')
        rate = 1 * MIB
        t0 = time.monotonic()
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--bwlimit', '1M'])
        elapsed = time.monotonic() - t0
        expect_rc(cp, 0, 'copy --bwlimit 1M')
        total = FILES * SIZE
        expect_eq("the engine's accounting: bytes on each side",
                  {'source': total, 'destination': total},
                  {k: v[0] for k, v in limits_logged(db).items()})
        # a file's bytes are paid once they went: the whole run cannot be
        # faster than all but the largest single charge (one file) allow
        least = (total - SIZE) / rate
        if elapsed < least:
            fail('copy --bwlimit 1M of %d bytes took %.2f s, less than %.2f s'
                 % (total, elapsed, least))
        print('     %d bytes at 1 MiB/s: %.2f s (at least %.2f s)' % (total, elapsed, least))
        expect_rc(tmtest.run(['verify', '--db', db, '--quiet', '--checksum']), 0, 'verify')
    R.check('--bwlimit 1M: each side accounts every byte; the copy takes at '
            'least the time the limit allows', check_bwlimit)

    def check_tps():
        src, dst, db = fresh(base, 'tps')
        tps = 20.0
        t0 = time.monotonic()
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--tps-limit', '20'])
        elapsed = time.monotonic() - t0
        expect_rc(cp, 0, 'copy --tps-limit 20')
        got = limits_logged(db)
        ops = min(v[1] for v in got.values()) if len(got) == 2 else 0
        if ops < FILES:
            fail('fewer requests accounted than files opened: %r' % got)
        least = (ops - 1) / tps
        if elapsed < least:
            fail('copy --tps-limit 20 made %d requests a side in %.2f s, less than '
                 '%.2f s' % (ops, elapsed, least))
        print('     %d requests a side at 20/s: %.2f s (at least %.2f s)'
              % (ops, elapsed, least))
    R.check('--tps-limit 20: the requests of each side are accounted and the copy '
            'takes at least the time the limit allows', check_tps)

    def check_interrupt():
        src, dst, db = fresh(base, 'int')
        # 100 bytes/s: 2.5 MiB would take 7 hours, one file 11 minutes
        p = subprocess.Popen([tmtest.TREEMIG, 'copy', '--db', db, '--yes', '--quiet',
                              '--bwlimit', '100B'], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # the copy has started (its first file waits 11 minutes for its
            # bytes to be paid for); then Ctrl-C
            while p.poll() is None:
                try:
                    if tmtest.migration(db).get('phase') == 'copying':
                        break
                except Exception:
                    pass
                time.sleep(0.05)
            time.sleep(0.5)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if p.returncode != 4:
            fail('copy --bwlimit 100B after Ctrl-C: exit %d, %r' % (p.returncode, err[-400:]))
        expect_eq('phase after Ctrl-C', 'suspended', tmtest.migration(db)['phase'])
        expect_rc(tmtest.run(['copy', '--db', db, '--yes', '--quiet']), 0,
                  'copy again, without a limit')
        expect_rc(tmtest.run(['verify', '--db', db, '--quiet', '--checksum']), 0, 'verify')
    R.check('Ctrl-C during a copy held back by --bwlimit: exit 4, resumable',
            check_interrupt)


if __name__ == '__main__':
    main()
