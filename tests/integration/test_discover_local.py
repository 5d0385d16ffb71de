#!/usr/bin/env python3
"""Integration test of `treemig discover` on a local tree pair.

Builds the pair of treegen.build_pair() (about 30,000 nodes, including a
folder of 20,000 files), runs discover with several option sets, and checks
the state file and `status --json` against expect.py, which computes the
result independently of treemig.

Run:  python3 tests/integration/test_discover_local.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import re
import shutil
import stat
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import expect    # noqa: E402
import tmtest    # noqa: E402
import treegen   # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

CONFIGS = [
    ('workers1', ['--workers', '1'], {'workers': '1'}),
    ('workers4', ['--workers', '4'], {'workers': '4'}),
    ('lead1', ['--lead', '1'], {'lead': '1'}),
]


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_discover_local')
    base = tempfile.mkdtemp(prefix='treemig-local-', dir='/tmp')
    try:
        t = time.time()
        src, dst = treegen.build_pair(os.path.join(base, 'trees'))
        exp = expect.expected(src, dst)
        print('built the tree pair and the expectation in %.1fs: %d source rows, '
              '%d destination rows' % (time.time() - t, len(exp['src']), len(exp['dst'])))

        def check_find_counts():
            # the expectation's type counts against find(1)
            s = exp['status']['src']
            got = {'files': s['files'], 'folders': s['folders'],
                   'symlinks': s['symlinks'], 'other': s['other']}
            want = {'files': treegen.count_find(src, 'f'),
                    'folders': treegen.count_find(src, 'd'),
                    'symlinks': treegen.count_find(src, 'l'),
                    'other': treegen.count_find(src, 'p,s,b,c')}
            expect_eq('expected source counts vs find(1)', want, got)
        R.check('expectation agrees with find(1)', check_find_counts)

        for label, opts, stored in CONFIGS:
            run_config(R, base, src, dst, exp, label, opts, stored)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def run_config(R, base, src, dst, exp, label, opts, stored):
    db = os.path.join(base, 'state-%s.db' % label)
    state = {}

    def check_exit():
        t = time.time()
        cp = tmtest.run(['discover', '--db', db, '--quiet'] + opts + [src, dst])
        state['secs'] = time.time() - t
        state['cp'] = cp
        expect_rc(cp, 0, 'discover %s' % ' '.join(opts))
        print('     (discover took %.1fs)' % state['secs'])

    R.check('%s: discover exits 0' % label, check_exit)
    if 'cp' not in state or not os.path.exists(db):
        R.check('%s: state file exists' % label,
                lambda: fail('no state file %s' % db))
        return

    def check_file():
        st = os.stat(db)
        expect_eq('state file mode', 0o600, stat.S_IMODE(st.st_mode))
        conn = tmtest.connect(db)
        try:
            expect_eq('PRAGMA application_id', 1953327463,
                      conn.execute('PRAGMA application_id').fetchone()[0])
            expect_eq("PRAGMA user_version", 14,
                      conn.execute('PRAGMA user_version').fetchone()[0])
            expect_eq('PRAGMA journal_mode', b'wal',
                      conn.execute('PRAGMA journal_mode').fetchone()[0])
        finally:
            conn.close()

    def check_status():
        tmtest.compare_status(exp['status'], tmtest.status_json(db), exp['status_optional'])

    def check_migration():
        m = tmtest.migration(db)
        want = {'schema_version': '1', 'phase': 'discovered',
                'src': os.fsdecode(src), 'dst': os.fsdecode(dst),
                'src_round': str(exp['status']['rounds']['src']),
                'dst_round': str(exp['status']['rounds']['dst'])}
        want.update(stored)
        got = {k: m.get(k) for k in want}
        expect_eq('migration table values', want, got)
        if not re.fullmatch(r'[0-9a-f]{32}', m.get('id') or ''):
            fail('migration id is not 32 hex digits: %r' % m.get('id'))
        for k in ('created', 'updated', 'workers', 'lead', 'retries', 'excludes'):
            if k not in m:
                fail('migration key %r missing; keys: %r' % (k, sorted(m)))
        if m['excludes'] not in ('', None):
            fail('excludes should be empty', '', m['excludes'])

    src_rows = {}

    def check_src_rows():
        rows = tmtest.read_nodes(db, 'src_nodes')
        src_rows['rows'] = rows
        tmtest.compare_nodes('src', exp['src'], rows)

    def check_dst_rows():
        srows = src_rows.get('rows') or tmtest.read_nodes(db, 'src_nodes')
        rows = tmtest.read_nodes(db, 'dst_nodes')
        tmtest.compare_nodes('dst', exp['dst'], rows, srows)

    def check_stats():
        tmtest.check_all_stats(db, exp)

    def check_find():
        st = tmtest.status_json(db)['src']
        want = {'files': treegen.count_find(src, 'f'), 'folders': treegen.count_find(src, 'd'),
                'symlinks': treegen.count_find(src, 'l'), 'other': treegen.count_find(src, 'p,s,b,c')}
        expect_eq('status --json source counts vs find(1)', want,
                  {k: st.get(k) for k in want})

    def snapshot():
        return {t: tmtest.table_dump(db, t) for t in
                ('src_nodes', 'dst_nodes', 'src_stats', 'copy_stats', 'dst_stats',
                 'migration')}

    def check_rerun():
        before = snapshot()
        runs = [('no roots', ['discover', '--db', db]),
                ('same roots', ['discover', '--db', db, src, dst])]
        for what, args in runs:
            cp = tmtest.run(args)
            expect_rc(cp, 0, 'second discover (%s)' % what)
            text = (cp.stdout + cp.stderr).lower()
            if b'complete' not in text:
                fail('second discover (%s) does not say discovery is complete: %s'
                     % (what, tmtest.show(cp)))
        after = snapshot()
        for t in before:
            if before[t] != after[t]:
                b, a = set(before[t]), set(after[t])
                fail('second discover changed table %s: removed %r, added %r'
                     % (t, sorted(b - a, key=repr)[:5], sorted(a - b, key=repr)[:5]))
        tmtest.compare_status(exp['status'], tmtest.status_json(db), exp['status_optional'])

    def check_no_lock():
        if os.path.exists(db + '.lock'):
            with open(db + '.lock', 'rb') as f:
                pid = f.read().strip()
            # a stale lock file is allowed only if no process holds it
            try:
                p = int(pid)
                os.kill(p, 0)
                fail('lock file %s.lock names a live process %d after discover ended'
                     % (db, p))
            except (ValueError, ProcessLookupError):
                pass

    R.check('%s: state file mode and pragmas' % label, check_file)
    R.check('%s: status --json equals the expectation' % label, check_status)
    R.check('%s: migration table' % label, check_migration)
    R.check('%s: src_nodes rows' % label, check_src_rows)
    R.check('%s: dst_nodes rows' % label, check_dst_rows)
    R.check('%s: src_stats/copy_stats/dst_stats agree with the rows' % label, check_stats)
    R.check('%s: status counts agree with find(1)' % label, check_find)
    R.check('%s: no live lock after the run' % label, check_no_lock)
    R.check('%s: second discover exits 0 and changes nothing' % label, check_rerun)


if __name__ == '__main__':
    main()
