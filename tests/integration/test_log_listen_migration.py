#!/usr/bin/env python3
"""Integration test (issue 20): every log datagram names its migration,
host and pid, and `treemig log-listen --migration ID` prints only the
records of that migration when two migrations log to the same listener.

Both migrations are discoveries of small simulated pairs sending their
records from level info to one `log-listen --json` on 127.0.0.1, on a
port the listener picks (port 0); the listener is stopped by the test.

Run:  python3 tests/integration/test_log_listen_migration.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402


def start_listener(args):
    p = subprocess.Popen([tmtest.TREEMIG, 'log-listen', '--json'] + args +
                         ['127.0.0.1:0'], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stderr.readline().decode()
    m = re.search(r'listening on 127\.0\.0\.1:(\d+)$', line.strip())
    if not m:
        p.kill()
        p.wait()
        fail('log-listen did not say where it listens: %r' % line)
    return p, int(m.group(1))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    return [json.loads(ln) for ln in out.decode().splitlines() if ln.strip()]


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_log_listen_migration')
    base = tempfile.mkdtemp(prefix='treemig-llmig-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    def check_bad():
        cp = tmtest.run(['log-listen', '--migration', 'XYZ', '127.0.0.1:0'])
        expect_rc(cp, 2, 'log-listen --migration XYZ')
        cp = tmtest.run(['log-listen', '--migration', '', '127.0.0.1:0'])
        expect_rc(cp, 2, "log-listen --migration ''")
    R.check('--migration: a value that is not an id is refused', check_bad)

    def check_filter():
        dbs = [os.path.join(base, 'a.db'), os.path.join(base, 'b.db')]
        # the id is made when the migration is: make them first, quietly
        pairs = [('sim:seed=1,depth=2', os.path.join(base, 'dst1')),
                 ('sim:seed=2,depth=2', os.path.join(base, 'dst2'))]
        all_p, port_all = start_listener([])
        try:
            ids = []
            for db, (s, d) in zip(dbs, pairs):
                expect_rc(tmtest.run(['discover', '--db', db, '--quiet', '--udp-level',
                                      'off', s, d]), 0, 'discover')
                expect_rc(tmtest.run(['copy', '--db', db, '--quiet', '--yes',
                                      '--udp-level', 'off']), 0, 'copy')
                ids.append(tmtest.migration(db)['id'])
            only_p, port_only = start_listener(['--migration', ids[0][:12]])
            try:
                for db in dbs:
                    for port in (port_all, port_only):
                        # verify logs its start and end at info
                        cp = tmtest.run(['verify', '--db', db, '--quiet',
                                         '--udp-level', 'info', '--log-udp',
                                         '127.0.0.1:%d' % port])
                        expect_rc(cp, 0, 'verify')
            finally:
                only = stop(only_p)
        finally:
            every = stop(all_p)
        got_ids = {d['migration'] for d in every}
        expect_eq('migrations seen by the listener of all', set(ids), got_ids)
        host = socket.gethostname()
        bad = [d for d in every if d['host'] != host or not isinstance(d['pid'], int)
               or d['pid'] <= 0]
        expect_eq('datagrams without this host and a pid', [], bad[:3])
        if len({d['pid'] for d in every}) < 2:
            fail('the two runs were sent with one pid: %r' % every[:2])
        if not only:
            fail('log-listen --migration printed nothing')
        expect_eq('migrations printed by log-listen --migration', {ids[0]},
                  {d['migration'] for d in only})
    R.check('datagrams carry migration, host and pid; --migration ID keeps '
            'only that migration\'s', check_filter)


if __name__ == '__main__':
    main()
