#!/usr/bin/env python3
"""The progress of copy and verify as a person sees it (issue 20): on a
real pseudo terminal the live line says the depth, nodes and sizes for
people, and an ETA that is "—" until a few seconds of progress were seen,
then H:MM:SS; the last line is the final count and ends the line before
the summary; `status` during the copy shows its ETA in the same format and
says "depth" for the copy; `verify --checksum` counts to its total, nodes
and bytes; `status` gives sizes for people and `status --json` exact
bytes.

The source is a simulated storage whose every open waits 25 ms
(`latency`), so that a copy with two workers lasts several seconds; the
destination a local folder. No check bounds a duration.

Run:  python3 tests/integration/test_copy_progress.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

SRC = 'sim:seed=4,depth=2,folders=3,files=200,latency=25'
ETA = r'ETA (\u2014|\d+:\d\d:\d\d)'
SIZE = r'\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)'


def on_pty(args):
    """Runs treemig with stdout and stderr on a new pty; returns (exit code,
    everything it wrote, decoded)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([tmtest.TREEMIG] + args, stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b''
    while True:
        r, _, _ = select.select([master], [], [], 120)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=120), out.decode('utf-8', 'replace')


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy_progress')
    base = tempfile.mkdtemp(prefix='treemig-cprog-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    dst = os.path.join(base, 'dst')
    os.mkdir(dst)
    db = os.path.join(base, 's.db')
    expect_rc(tmtest.run(['discover', '--db', db, '--quiet', SRC, dst]), 0, 'discover')
    st = tmtest.status_json(db)
    total, total_bytes = st['copy']['pending'], st['copy']['bytes_pending']
    if total < 200:
        fail('the source has only %d nodes to copy' % total)
    ctx = {}

    def check_live():
        rc, text = on_pty(['copy', '--db', db, '--yes', '--workers', '2'])
        ctx['text'] = text
        expect_eq('copy exit code', 0, rc)
        segs = [s.rstrip('\n') for s in re.split(r'[\r\n]', text)]
        live = [s.rstrip() for s in segs if s.startswith('copying:')]
        if len(live) < 2:
            fail('fewer than two live lines: %r' % text[:600])
        pat = re.compile(r'^copying: (depth \d+|folder attributes): \d+ of %d nodes, '
                         r'%s of %s, %s/s, \d+ failed, %s$' % (total, SIZE, SIZE,
                                                               SIZE, ETA))
        bad = [s for s in live if not pat.match(s)]
        expect_eq('live lines not in the format', [], bad)
        if 'ETA \u2014' not in live[0]:
            fail('the first live line (after about a second) has an ETA: %r' % live[0])
        if not any(re.search(r'ETA \d+:\d\d:\d\d$', s) for s in live):
            fail('no live line gives an ETA: %r' % live)
        if 'round' in ' '.join(live):
            fail('the copy speaks of rounds: %r' % live)
        # the last line is the final count, and it ends its line before
        # the summary
        i = text.index('\rcopied: ')
        j = text.index('phase        copied')
        final = text[i + 1:j]
        if not re.match(r'^copied: %d of %d nodes, %s of %s, %s/s, 0 failed *\r?\n'
                        % (total, total, SIZE, SIZE, SIZE), final):
            fail('the final line is not the whole count ending its line: %r' % final)
    R.check('copy on a terminal: depth, sizes for people, ETA "—" then H:MM:SS, '
            'the final count on its own line before the summary', check_live)

    def check_status():
        st = tmtest.status_json(db)
        out = tmtest.run(['status', '--db', db]).stdout.decode()
        mib = '%.1f MiB' % (st['src']['bytes'] / 1048576.0)
        if ('files, 0 symlinks, 0 other, %s;' % mib) not in out:
            fail('status does not give the source size for people (%s): %r' % (mib, out))
        expect_eq('status --json: exact source bytes', total_bytes, st['src']['bytes'])
        if not re.search(r'^queue copy +\S+: depth \d+,', out, re.M):
            fail('status does not say depth for the copy: %r' % out)
    R.check('status: sizes for people, exact bytes in --json, "depth" for the copy',
            check_status)

    def check_status_during():
        # a second copy, from a fresh destination, watched by status while
        # it runs: the ETA line has the live line's format
        dst2 = os.path.join(base, 'dst2')
        os.mkdir(dst2)
        db2 = os.path.join(base, 's2.db')
        expect_rc(tmtest.run(['discover', '--db', db2, '--quiet', SRC, dst2]), 0,
                  'discover 2')
        p = subprocess.Popen([tmtest.TREEMIG, 'copy', '--db', db2, '--yes', '--quiet',
                              '--workers', '2'], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = []
        try:
            while p.poll() is None:
                out = tmtest.run(['status', '--db', db2]).stdout.decode()
                seen += re.findall(r'^copy +(ETA .*)$', out, re.M)
        finally:
            p.wait(timeout=120)
        expect_eq('copy exit code', 0, p.returncode)
        if not seen:
            raise tmtest.Skip('status never caught the copy running')
        bad = [s for s in seen if not re.match('^%s$' % ETA, s)]
        expect_eq('status ETA lines not in the live format', [], bad)
    R.check('status during a copy: its ETA in the live line\'s format',
            check_status_during)

    def check_verify():
        rc, text = on_pty(['verify', '--db', db, '--checksum', '--workers', '2'])
        expect_eq('verify exit code', 0, rc)
        checked = total  # every copied node is checked
        i = text.index('\rverified: ') if '\rverified: ' in text else text.index('verified: ')
        final = text[i:].lstrip('\r').split('\n', 1)[0].rstrip('\r ')
        size = '%.1f MiB' % (total_bytes / 1048576.0)
        want = (r'^verified: %d of %d nodes checked, %s of %s hashed, %s/s, '
                r'0 mismatches$' % (checked, checked, re.escape(size), re.escape(size),
                                    SIZE))
        if not re.match(want, final):
            fail('the last verify line is not the final count: %r' % final)
        live = [s.rstrip() for s in re.split(r'[\r\n]', text) if s.startswith('verifying:')]
        bad = [s for s in live if not re.match(
            r'^verifying: \d+ of %d nodes checked, %s of %s hashed, %s/s, '
            r'\d+ mismatches, %s$' % (checked, SIZE, re.escape(size), SIZE, ETA), s)]
        expect_eq('verify live lines not in the format', [], bad)
    R.check('verify --checksum: total nodes and bytes, ETA, final count',
            check_verify)


if __name__ == '__main__':
    main()
