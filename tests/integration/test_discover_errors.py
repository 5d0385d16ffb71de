#!/usr/bin/env python3
"""Integration tests of `treemig discover` errors, excludes, unreadable
folders, the state file lock and interruption.

Run:  python3 tests/integration/test_discover_errors.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
Permission cases are skipped (with the reason printed) when run as root.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import expect    # noqa: E402
import tmtest    # noqa: E402
import treegen   # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

EXCLUDES = ['*.tmp', 'node_modules', '/docs/draft*', '/a/b/skip']


def file_bytes(p):
    try:
        with open(p, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return None


class Env:
    def __init__(self, base):
        self.base = base
        self.n = 0
        j = lambda *a: os.path.join(base, *a)   # noqa: E731
        self.src = j('src')
        self.dst = j('dst')
        self.afile = j('afile.txt')
        os.makedirs(j('src', 'sub', 'deeper'))
        with open(j('src', 'sub', 'f.txt'), 'w') as f:
            f.write('x')
        os.makedirs(j('dst', 'inner'))
        with open(self.afile, 'w') as f:
            f.write('a file, not a folder')
        os.makedirs(j('pre'))
        os.makedirs(j('prefix'))          # 'pre' is a string prefix of 'prefix'
        with open(j('pre', 'p.txt'), 'w') as f:
            f.write('p')
        os.symlink(self.src, j('src_link'))
        os.symlink(j('src', 'sub'), j('sub_link'))

    def fresh(self):
        """A fresh working directory and state file path."""
        self.n += 1
        cwd = os.path.join(self.base, 'cwd%d' % self.n)
        os.makedirs(cwd)
        return cwd, os.path.join(cwd, 'state.db')


def no_state_created(db, cwd):
    """No state file (or no node rows in it), and no default ./treemig.db."""
    n = tmtest.node_row_count(db)
    if n:
        fail('the failed command recorded %d node rows in %s' % (n, db))
    if n == 0:
        print('     note: an empty state file %s was left behind' % db)
    d = os.path.join(cwd, 'treemig.db')
    if os.path.exists(d):
        n = tmtest.node_row_count(d)
        if n:
            fail('the failed command recorded %d node rows in %s' % (n, d))
        print('     note: a default state file %s was created' % d)


def expect_error(env, args, codes, what, use_db=True):
    """Runs discover with args; expects an exit code in codes, a message on
    stderr and no state created."""
    cwd, db = env.fresh()
    full = ['discover'] + (['--db', db] if use_db else []) + args
    cp = tmtest.run(full, cwd=cwd)
    if cp.returncode not in codes:
        fail('%s: expected exit code %s, got %s' % (
            what, ' or '.join(map(str, codes)), tmtest.show(cp)))
    if not cp.stderr.strip():
        fail('%s: no message on stderr (%s)' % (what, tmtest.show(cp)))
    no_state_created(db, cwd)
    print('     %s -> exit %d: %s' % (what, cp.returncode,
                                      cp.stderr.decode('utf-8', 'replace').strip()
                                      .splitlines()[0][:150]))


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_discover_errors')
    base = tempfile.mkdtemp(prefix='treemig-errors-', dir='/tmp')
    try:
        run_all(R, base)
    finally:
        for dp, dn, fn in os.walk(base):
            for d in dn:
                try:
                    os.chmod(os.path.join(dp, d), 0o755)
                except OSError:
                    pass
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def run_all(R, base):
    env = Env(os.path.join(base, 'env'))
    j = os.path.join
    ROOT_ERR = (1, 2)

    # ---- bad roots -------------------------------------------------------
    cases = [
        ('missing source root', [j(env.base, 'nope'), env.dst]),
        # (a missing root whose parent exists is made: test_dst_root_create)
        ('missing destination root and parent', [env.src, j(env.base, 'nope', 'dst')]),
        ('file as source root', [env.afile, env.dst]),
        ('file as destination root', [env.src, env.afile]),
        ('destination inside source', [env.src, j(env.src, 'sub')]),
        ('destination deep inside source', [env.src, j(env.src, 'sub', 'deeper')]),
        ('source inside destination', [j(env.dst, 'inner'), env.dst]),
        ('same folder', [env.src, env.src]),
        ('same folder, trailing slash and dot', [env.src, env.src + '/.']),
        ('same folder through a symlink', [env.src, j(env.base, 'src_link')]),
        ('destination inside source through a symlink', [env.src, j(env.base, 'sub_link')]),
        ('source inside destination, relative ..', [j(env.src, 'sub', '..', 'sub'), env.src]),
    ]
    for what, args in cases:
        R.check('error: ' + what, expect_error, env, args, ROOT_ERR, what)

    def check_prefix_sibling():
        # 'pre' and 'prefix' share a string prefix but do not overlap
        cwd, db = env.fresh()
        cp = tmtest.run(['discover', '--db', db, '--quiet',
                         j(env.base, 'pre'), j(env.base, 'prefix')], cwd=cwd)
        expect_rc(cp, 0, 'discover pre prefix (siblings sharing a string prefix)')
        st = tmtest.status_json(db)
        expect_eq('source files', 1, st['src']['files'])
    R.check('siblings sharing a name prefix are accepted', check_prefix_sibling)

    def check_relative_roots():
        # relative roots are stored made absolute
        cwd, db = env.fresh()
        cp = tmtest.run(['discover', '--db', db, '--quiet', '../pre', '../prefix'], cwd=cwd)
        expect_rc(cp, 0, 'discover with relative roots')
        m = tmtest.migration(db)
        expect_eq('stored roots', (j(env.base, 'pre'), j(env.base, 'prefix')),
                  (os.path.normpath(m.get('src') or ''), os.path.normpath(m.get('dst') or '')))
        if not (m.get('src') or '').startswith('/'):
            fail('stored src is not absolute: %r' % m.get('src'))
    R.check('relative roots are stored absolute', check_relative_roots)

    def check_equivalent_roots():
        # roots spelled with a trailing slash or '.'/'..' components name the
        # same folders: stored clean, and accepted on a re-run in any spelling
        cwd, db = env.fresh()
        pre, prefix = j(env.base, 'pre'), j(env.base, 'prefix')
        cp = tmtest.run(['discover', '--db', db, '--quiet', pre + '/', prefix + '/.'], cwd=cwd)
        expect_rc(cp, 0, 'discover with a trailing slash and a trailing /.')
        m = tmtest.migration(db)
        expect_eq('stored roots', (pre, prefix), (m.get('src'), m.get('dst')))
        for args in ([pre, prefix], [j(env.base, '.', 'pre'), j(env.base, 'pre', '..', 'prefix')]):
            cp = tmtest.run(['discover', '--db', db] + args, cwd=cwd)
            expect_rc(cp, 0, 're-run with roots spelled %r' % args)
    R.check('equivalent spellings of the roots', check_equivalent_roots)

    # ---- usage errors: exit 2 --------------------------------------------
    usage = [
        ('--workers 0', ['--workers', '0', env.src, env.dst]),
        ('--workers -1', ['--workers', '-1', env.src, env.dst]),
        ('--workers abc', ['--workers', 'abc', env.src, env.dst]),
        ('--workers 4x', ['--workers', '4x', env.src, env.dst]),
        ('--workers empty', ['--workers', '', env.src, env.dst]),
        ('--workers 99999999999999999999', ['--workers', '99999999999999999999',
                                            env.src, env.dst]),
        ('--lead 0', ['--lead', '0', env.src, env.dst]),
        ('--lead abc', ['--lead', 'abc', env.src, env.dst]),
        ('--workers without a value', [env.src, env.dst, '--workers']),
        ('--exclude without a value', [env.src, env.dst, '--exclude']),
        ('unknown option', ['--bogus', env.src, env.dst]),
        ('missing arguments (none)', []),
        ('missing arguments (source only)', [env.src]),
        ('too many arguments', [env.src, env.dst, j(env.base, 'pre')]),
    ]
    for what, args in usage:
        R.check('usage: ' + what, expect_error, env, args, (2,), what)

    def check_shared_sqlite():
        # --shared needs PostgreSQL: refused before the destination root
        # (missing, its parent there) or the state file is made
        dst = j(env.base, 'shared-dst')
        expect_error(env, ['--shared', env.src, dst], (2,), '--shared with a state file')
        if os.path.lexists(dst):
            fail('--shared refused, but the destination root %s was made' % dst)
    R.check('usage: --shared with a state file (not PostgreSQL)', check_shared_sqlite)

    def check_option_refused_root():
        # an option refused by the library (after the CLI made the missing
        # destination root): the root goes again with the state file
        dst = j(env.base, 'minmax-dst')
        expect_error(env, ['--min-size', '10', '--max-size', '5', env.src, dst], (2,),
                     '--min-size above --max-size, the destination root missing')
        if os.path.lexists(dst):
            fail('the discovery was refused, but the destination root %s stays' % dst)
    R.check('usage: a refused option leaves no destination root made for it',
            check_option_refused_root)

    def check_no_db_option():
        # without --db the default ./treemig.db must not be created on error
        cwd, db = env.fresh()
        cp = tmtest.run(['discover', '--workers', '0', env.src, env.dst], cwd=cwd)
        expect_rc(cp, 2, 'discover --workers 0 (default state file)')
        no_state_created(db, cwd)
    R.check('usage: default state file not created on error', check_no_db_option)

    def check_top_level_usage():
        for what, args in [('no command', []), ('unknown command', ['frobnicate']),
                           ('status unknown option', ['status', '--bogus'])]:
            cwd, db = env.fresh()
            cp = tmtest.run(args, cwd=cwd)
            expect_rc(cp, 2, what)
            if not cp.stderr.strip():
                fail('%s: no message on stderr' % what)
            no_state_created(db, cwd)
    R.check('usage: no command / unknown command', check_top_level_usage)

    def check_status_missing_db():
        cwd, db = env.fresh()
        cp = tmtest.run(['status', '--db', db, '--json'], cwd=cwd)
        if cp.returncode == 0:
            fail('status on a missing state file exits 0: ' + tmtest.show(cp))
        if not cp.stderr.strip():
            fail('status on a missing state file: no message on stderr')
        if os.path.exists(db):
            fail('status created the state file %s' % db)
    R.check('status on a missing state file fails and creates nothing',
            check_status_missing_db)

    def check_long_paths():
        # paths longer than PATH_MAX (4096): 20 levels of 242-byte names
        top = j(env.base, 'long')
        os.makedirs(j(top, 's'))
        os.makedirs(j(top, 'd'))
        fd = os.open(j(top, 's'), os.O_RDONLY)
        try:
            for i in range(20):
                n = ('%02d' % i) + 'x' * 240
                os.mkdir(n, dir_fd=fd)
                nfd = os.open(n, os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = nfd
            os.close(os.open('leaf', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        finally:
            os.close(fd)
        cwd, db = env.fresh()
        cp = tmtest.run(['discover', '--db', db, '--quiet', j(top, 's'), j(top, 'd')], cwd=cwd)
        expect_rc(cp, 0, 'discover of a tree with paths longer than PATH_MAX')
        rows = tmtest.read_nodes(db, 'src_nodes')
        expect_eq('source rows', 22, len(rows))
        leaf = [r for r in rows if r['name'] == b'leaf']
        expect_eq('leaf depth and path length', [(21, 20 * 243 + 5)],
                  [(r['depth'], len(r['path'])) for r in leaf])
        bad = [(r['path'][-20:], r['traversal_status'], r['copy_status']) for r in rows
               if r['traversal_status'] != 'successful' or
               (r['depth'] > 0 and r['copy_status'] != 'pending')]
        if bad:
            fail('rows not successful/pending: %r' % bad)
    R.check('paths longer than PATH_MAX', check_long_paths)

    # ---- foreign / mismatching state files ---------------------------------
    def check_foreign_text_file():
        cwd, db = env.fresh()
        with open(db, 'wb') as f:
            f.write(b'this is not a database\n' * 10)
        before = file_bytes(db)
        cp = tmtest.run(['discover', '--db', db, env.src, env.dst], cwd=cwd)
        if cp.returncode == 0 or not cp.stderr.strip():
            fail('discover on a text file: expected failure with a message, got '
                 + tmtest.show(cp))
        expect_eq('the foreign file is unchanged', before, file_bytes(db))
    R.check('a non-database state file is refused and untouched', check_foreign_text_file)

    def check_foreign_sqlite():
        cwd, db = env.fresh()
        c = sqlite3.connect(db)
        c.execute('PRAGMA application_id = 12345')
        c.execute('CREATE TABLE t(x)')
        c.execute("INSERT INTO t VALUES ('keep me')")
        c.commit()
        c.close()
        before = file_bytes(db)
        cp = tmtest.run(['discover', '--db', db, env.src, env.dst], cwd=cwd)
        if cp.returncode == 0 or not cp.stderr.strip():
            fail('discover on a foreign SQLite file: expected failure with a message, got '
                 + tmtest.show(cp))
        expect_eq('the foreign database is unchanged', before, file_bytes(db))
    R.check('a foreign SQLite file is refused and untouched', check_foreign_sqlite)

    def check_newer_schema():
        cwd, db = env.fresh()
        cp = tmtest.run(['discover', '--db', db, '--quiet', j(env.base, 'pre'),
                         j(env.base, 'prefix')], cwd=cwd)
        expect_rc(cp, 0, 'discover')
        c = sqlite3.connect(db)
        c.execute('PRAGMA user_version = 99')
        c.commit()
        c.close()
        before = file_bytes(db)
        cp = tmtest.run(['discover', '--db', db], cwd=cwd)
        if cp.returncode == 0 or not cp.stderr.strip():
            fail('discover on a newer schema: expected failure with a message, got '
                 + tmtest.show(cp))
        expect_eq('the newer state file is unchanged', before, file_bytes(db))
    R.check('a state file with a newer schema is refused and untouched', check_newer_schema)

    def check_other_roots_on_complete():
        cwd, db = env.fresh()
        cp = tmtest.run(['discover', '--db', db, '--quiet', j(env.base, 'pre'),
                         j(env.base, 'prefix')], cwd=cwd)
        expect_rc(cp, 0, 'discover')
        snap = {t: tmtest.table_dump(db, t) for t in ('src_nodes', 'dst_nodes', 'migration')}
        cp = tmtest.run(['discover', '--db', db, env.src, env.dst], cwd=cwd)
        if cp.returncode == 0 or not cp.stderr.strip():
            fail('discover with other roots on a complete state file: expected failure '
                 'with a message, got ' + tmtest.show(cp))
        for t in snap:
            expect_eq('table %s unchanged' % t, snap[t], tmtest.table_dump(db, t))
    R.check('other roots on a complete state file are refused', check_other_roots_on_complete)

    # ---- excludes ----------------------------------------------------------
    run_excludes(R, base)

    # ---- unreadable folder -------------------------------------------------
    run_unreadable(R, base)

    # ---- lock and interruption --------------------------------------------
    run_lock_and_interrupt(R, base)


def run_excludes(R, base):
    src, dst = treegen.build_exclude_pair(os.path.join(base, 'ex'))
    exp = expect.expected(src, dst, EXCLUDES)
    db = os.path.join(base, 'ex', 'state.db')
    args = ['discover', '--db', db, '--quiet']
    for g in EXCLUDES:
        args += ['--exclude', g]
    done = {}

    def check_run():
        cp = tmtest.run(args + [src, dst])
        expect_rc(cp, 0, 'discover with excludes')
        done['ok'] = True
    R.check('excludes: discover exits 0', check_run)
    if not done:
        return

    def check_status():
        st = tmtest.status_json(db)
        tmtest.compare_status(exp['status'], st, exp['status_optional'])

    def check_counts():
        st = tmtest.status_json(db)
        # hand-counted: cache.tmp, a/deep.tmp, dir.tmp, docs/draft1.md,
        # docs/draft2, a/b/skip, node_modules, proj/node_modules
        expect_eq('src.excluded', 8, st['src']['excluded'])
        expect_eq('copy.excluded rows (source rows with copy_status excluded)', 8,
                  sum(1 for r in tmtest.read_nodes(db, 'src_nodes')
                      if r['copy_status'] == 'excluded'))
        expect_eq('destination rows excluded', 6,
                  sum(1 for r in tmtest.read_nodes(db, 'dst_nodes')
                      if r['traversal_status'] == 'excluded'))

    def check_children_absent():
        bad = []
        prefixes = [b'/dir.tmp/', b'/docs/draft2/', b'/a/b/skip/', b'/node_modules/',
                    b'/proj/node_modules/']
        for table in ('src_nodes', 'dst_nodes'):
            for r in tmtest.read_nodes(db, table):
                if any(r['path'].startswith(p) for p in prefixes):
                    bad.append((table, r['path']))
        if bad:
            fail('children of excluded folders were recorded: %r' % bad)
        # a path glob matches only at its place: /docs/sub/draft9.md is kept
        rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
        r = rows.get(b'/docs/sub/draft9.md')
        if r is None or r['traversal_status'] != 'successful':
            fail('/docs/sub/draft9.md should be recorded normally', 'successful',
                 r and r['traversal_status'])

    def check_rows():
        srows = tmtest.read_nodes(db, 'src_nodes')
        tmtest.compare_nodes('src', exp['src'], srows)
        tmtest.compare_nodes('dst', exp['dst'], tmtest.read_nodes(db, 'dst_nodes'), srows)

    def check_stats():
        tmtest.check_all_stats(db, exp)

    def check_stored():
        m = tmtest.migration(db)
        expect_eq('stored excludes', '\n'.join(EXCLUDES), (m.get('excludes') or '').rstrip('\n'))

    def check_rerun():
        snap = {t: tmtest.table_dump(db, t) for t in ('src_nodes', 'dst_nodes')}
        cp = tmtest.run(['discover', '--db', db])
        expect_rc(cp, 0, 'second discover without excludes')
        cp = tmtest.run(args)
        expect_rc(cp, 0, 'second discover with the same excludes')
        cp = tmtest.run(['discover', '--db', db, '--exclude', '*.other'])
        if cp.returncode == 0 or not cp.stderr.strip():
            fail('second discover with different excludes: expected failure with a '
                 'message, got ' + tmtest.show(cp))
        for t in snap:
            expect_eq('table %s unchanged' % t, snap[t], tmtest.table_dump(db, t))

    R.check('excludes: status --json equals the expectation', check_status)
    R.check('excludes: excluded counts', check_counts)
    R.check('excludes: excluded folders have no recorded children', check_children_absent)
    R.check('excludes: rows equal the expectation', check_rows)
    R.check('excludes: stats agree with the rows', check_stats)
    R.check('excludes: stored in the migration table', check_stored)
    R.check('excludes: re-run keeps the state; other excludes refused', check_rerun)

    def check_star():
        # '*' (a name glob) excludes every node below the root, never the root
        db2 = os.path.join(base, 'ex', 'star.db')
        cp = tmtest.run(['discover', '--db', db2, '--quiet', '--exclude', '*', src, dst])
        expect_rc(cp, 0, "discover --exclude '*'")
        e2 = expect.expected(src, dst, ['*'])
        tmtest.compare_status(e2['status'], tmtest.status_json(db2), e2['status_optional'])
        srows = tmtest.read_nodes(db2, 'src_nodes')
        tmtest.compare_nodes('src', e2['src'], srows)
        tmtest.compare_nodes('dst', e2['dst'], tmtest.read_nodes(db2, 'dst_nodes'), srows)
        root = [r for r in srows if r['path'] == b'/']
        expect_eq('root traversal_status', ['successful'], [r['traversal_status'] for r in root])
    R.check("excludes: '*' excludes everything but the root", check_star)


def as_user(U, fn, *a):
    """fn(*a) with the access rights of the user treemig runs as: when root,
    with the effective uid and gid of that user (as setpriv gives
    treemig), so that an unreadable folder is unreadable to fn too."""
    if not U.root:
        return fn(*a)
    os.setegid(U.gid)
    os.seteuid(U.uid)
    try:
        return fn(*a)
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_unreadable(R, base):
    """Folders of mode 000 on both sides. Root reads everything, so as root
    (how CI runs) treemig runs as uid/gid 65534 through setpriv
    (test_copy.Unpriv), on trees and a state file that belong to it."""
    import test_copy
    U = test_copy.Unpriv()
    if U.why_not:
        R.skip('unreadable source folder', U.why_not)
        return
    test_copy.open_up(base)
    unr = os.path.join(base, 'unr')
    src, dst, locked, dlocked = treegen.build_unreadable_pair(unr)
    U.give(unr)
    os.chmod(locked, 0)
    os.chmod(dlocked, 0)
    try:
        exp = as_user(U, expect.expected, src, dst)
        db = os.path.join(base, 'unr', 'state.db')
        done = {}
        print('     treemig runs as uid %d%s' % (U.uid, ' (setpriv)' if U.root else ''))

        def check_run():
            cp = U.run(['discover', '--db', db, '--quiet', src, dst])
            expect_rc(cp, 3, 'discover with an unreadable source folder')
            done['ok'] = True
        R.check('unreadable: discover exits 3', check_run)
        if not done:
            return

        def check_rows():
            srows = tmtest.read_nodes(db, 'src_nodes')
            drows = tmtest.read_nodes(db, 'dst_nodes')
            s = {r['path']: r for r in srows}
            d = {r['path']: r for r in drows}
            expect_eq('source /locked traversal_status', 'failed',
                      s.get(b'/locked', {}).get('traversal_status'))
            expect_eq('destination /locked traversal_status', 'failed',
                      d.get(b'/locked', {}).get('traversal_status'))
            if not s[b'/locked']['error'] or not d[b'/locked']['error']:
                fail('failed rows without an error message: src %r, dst %r'
                     % (s[b'/locked']['error'], d[b'/locked']['error']))
            inside = [p for p in d if p.startswith(b'/locked/')]
            if inside:
                fail('destination children of the failed folder were recorded: %r' % inside)
            # an unreadable destination folder: failed, its children unknown;
            # the source children were not compared (no conflict, pending)
            expect_eq('destination /dlocked traversal_status', 'failed',
                      d.get(b'/dlocked', {}).get('traversal_status'))
            inside = [p for p in d if p.startswith(b'/dlocked/')]
            if inside:
                fail('children of the unreadable destination folder recorded: %r' % inside)
            tmtest.compare_nodes('src', exp['src'], srows)
            tmtest.compare_nodes('dst', exp['dst'], drows, srows)

        def check_status():
            st = tmtest.status_json(db)
            tmtest.compare_status(exp['status'], st, exp['status_optional'])
            expect_eq('src.failed', 1, st['src']['failed'])
            expect_eq('dst.failed (/locked, /dlocked)', 2, st['dst']['failed'])

        def check_task_errors():
            conn = tmtest.connect(db)
            try:
                n = conn.execute("SELECT count(*) FROM task_errors WHERE path = '/locked'"
                                 ).fetchone()[0]
            finally:
                conn.close()
            if n < 1:
                fail('no task_errors row for /locked')

        def check_rerun():
            U.give(unr)  # what the checks above read as root (-shm, -wal)
            cp = U.run(['discover', '--db', db])
            expect_rc(cp, 3, 'second discover on a state file with failures')

        R.check('unreadable: failed rows, destination children not recorded', check_rows)
        R.check('unreadable: status --json', check_status)
        R.check('unreadable: task_errors row', check_task_errors)
        R.check('unreadable: second discover exits 3', check_rerun)
    finally:
        os.chmod(locked, 0o755)
        os.chmod(dlocked, 0o755)


def _wait_running(proc, db, min_rows=2, timeout=60):
    """Waits until the process holds the lock and has recorded some rows.
    Returns True when caught running, False when it already ended."""
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            return False
        if os.path.exists(db + '.lock') and os.path.exists(db):
            try:
                conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=0.05)
                try:
                    n = conn.execute('SELECT count(*) FROM src_nodes').fetchone()[0]
                finally:
                    conn.close()
                if n >= min_rows:
                    return True
            except sqlite3.Error:
                pass
        time.sleep(0.002)
    return False


def run_lock_and_interrupt(R, base):
    src, dst = treegen.build_pair(os.path.join(base, 'big'), big_count=20000)
    exp = expect.expected(src, dst)
    cmd = [os.fsencode(tmtest.TREEMIG), b'discover', b'--quiet', b'--workers', b'1']

    def check_lock():
        db = os.path.join(base, 'big', 'lock.db')
        p = subprocess.Popen(cmd + [b'--db', os.fsencode(db), src, dst],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            if not _wait_running(p, db):
                p.wait()
                raise tmtest.Skip('the first discover ended before it could be caught running')
            p.send_signal(signal.SIGSTOP)
            try:
                for args in (['discover', '--db', db], ['discover', '--db', db, src, dst]):
                    cp = tmtest.run(args, timeout=30)
                    expect_rc(cp, 5, 'discover while another process writes the state file')
                    if not cp.stderr.strip():
                        fail('exit 5 without a message on stderr')
                # readers are allowed while a writer runs
                cp = tmtest.run(['status', '--db', db, '--json'], timeout=30)
                expect_rc(cp, 0, 'status while another process writes the state file')
            finally:
                p.send_signal(signal.SIGCONT)
            out, err = p.communicate(timeout=tmtest.TIMEOUT)
            if p.returncode != 0:
                fail('the first discover ended with %d: %r' % (p.returncode, err[-500:]))
            tmtest.compare_status(exp['status'], tmtest.status_json(db), exp['status_optional'])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    R.check('lock: a second writer gets exit 5; status may read', check_lock)

    wsrc, wdst = treegen.build_wide_pair(os.path.join(base, 'wide'))
    wexp = expect.expected(wsrc, wdst)

    def check_partial(db):
        """A suspended state: no duplicates, only real paths with their real
        types, exact stats."""
        for side in ('src', 'dst'):
            rows = tmtest.read_nodes(db, side + '_nodes')
            seen = set()
            for r in rows:
                if r['path'] in seen:
                    fail('%s_nodes: duplicate path %r after interruption' % (side, r['path']))
                seen.add(r['path'])
                e = wexp[side].get(r['path'])
                if e is None:
                    fail('%s_nodes: unexpected path %r after interruption' % (side, r['path']))
                if e['type'] != r['type']:
                    fail('%s_nodes %r: type' % (side, r['path']), e['type'], r['type'])
        tmtest.check_all_stats(db)

    def count_rows(db):
        conn = tmtest.connect(db)
        try:
            return sum(conn.execute('SELECT count(*) FROM %s' % t).fetchone()[0]
                       for t in ('src_nodes', 'dst_nodes'))
        finally:
            conn.close()

    def check_interrupt():
        db = os.path.join(base, 'wide', 'intr.db')
        interrupts = 0
        prev = 0
        for attempt in range(3):
            args = cmd + [b'--db', os.fsencode(db)] + ([wsrc, wdst] if attempt == 0 else [])
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                caught = _wait_running(p, db, min_rows=prev + 1)
                if caught:
                    p.send_signal(signal.SIGINT)
                out, err = p.communicate(timeout=60)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if not caught or p.returncode == 0:
                if p.returncode != 0:
                    fail('discover (run %d) ended with %r: %r' % (attempt + 1, p.returncode,
                                                                  err[-500:]))
                break
            if p.returncode != 4:
                fail('interrupted discover (run %d): expected exit 4, got %r (stderr %r)'
                     % (attempt + 1, p.returncode, err[-500:]))
            interrupts += 1
            m = tmtest.migration(db)
            expect_eq('phase after interruption', 'suspended', m.get('phase'))
            st = tmtest.status_json(db)
            expect_eq('status phase after interruption', 'suspended', st.get('phase'))
            prev = count_rows(db)
            print('     interrupt %d: %d of %d rows recorded, rounds %r'
                  % (interrupts, prev, len(wexp['src']) + len(wexp['dst']), st.get('rounds')))
            check_partial(db)
        if interrupts == 0:
            raise tmtest.Skip('discover ended before it could be interrupted')
        # resume (or, when the last run completed, a no-op re-run)
        cp = tmtest.run(['discover', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'resumed discover')
        tmtest.compare_status(wexp['status'], tmtest.status_json(db), wexp['status_optional'])
        srows = tmtest.read_nodes(db, 'src_nodes')
        tmtest.compare_nodes('src', wexp['src'], srows)
        tmtest.compare_nodes('dst', wexp['dst'], tmtest.read_nodes(db, 'dst_nodes'), srows)
        tmtest.check_all_stats(db, wexp)
    R.check('interrupt: SIGINT gives exit 4 (repeatedly), resume completes correctly',
            check_interrupt)

    def check_kill():
        # a crash (SIGKILL) mid-run: the stale lock must not block the
        # resume, which must complete with the exact result
        db = os.path.join(base, 'wide', 'kill.db')
        p = subprocess.Popen(cmd + [b'--db', os.fsencode(db), wsrc, wdst],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            caught = _wait_running(p, db, min_rows=100)
            if caught:
                p.kill()
            p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if not caught:
            raise tmtest.Skip('discover ended before it could be killed')
        print('     killed with %d rows recorded' % count_rows(db))
        check_partial(db)
        cp = tmtest.run(['discover', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'discover resumed after a crash')
        tmtest.compare_status(wexp['status'], tmtest.status_json(db), wexp['status_optional'])
        srows = tmtest.read_nodes(db, 'src_nodes')
        tmtest.compare_nodes('src', wexp['src'], srows)
        tmtest.compare_nodes('dst', wexp['dst'], tmtest.read_nodes(db, 'dst_nodes'), srows)
        tmtest.check_all_stats(db, wexp)
    R.check('crash: SIGKILL mid-run, resume completes correctly', check_kill)


if __name__ == '__main__':
    main()
