#!/usr/bin/env python3
"""Pair listings (docs/internals.md, "Pair listings"): on two local trees a
destination folder and its source twin are listed by one job, merged in
memory and recorded in one transaction, the verdicts in the source rows'
inserts. The state file must be the one the listings of one side at a
time make (TREEMIG_PAIR=0): every node's path, type, size, mtime, mode,
depth, statuses, conflict, error, owner, attributes' digest and attempts,
each destination row's twin (by path) and both sides' stats.

- treegen.build_pair (conflicts of every kind, type clashes, symlinks,
  special files, non-UTF-8 names, a folder of 3,000 files: more than one
  page on each side, which falls back to one side at a time) under several
  options (--workers 1, --lead 1, --size-only, --owner, --no-xattrs);
- treegen.build_exclude_pair with its excludes (excluded folders and
  files, their twins);
- treegen.build_wide_pair killed (SIGKILL) at random moments and resumed
  until done: the same state file again;
- the same on PostgreSQL (a throwaway server, tests/servers/pgserver.py):
  build_pair and the killed build_wide_pair discovered with pairs into a
  database, copied to a state file by state-copy, equal the SQLite
  reference of one side at a time (skipped without a server).

Each run must have listed pairs (its log says how many), and the first
one must have fallen back for the large folder.
Stdlib only; TREEMIG names the binary.
"""

import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'servers'))
import pgserver  # noqa: E402
import statecheck  # noqa: E402
import tmtest  # noqa: E402
import treegen  # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

SRC_Q = ("SELECT n.path, n.type, n.size, n.mtime, n.mode, n.depth, n.traversal_status, "
         "n.copy_status, n.conflict, n.error, n.uid, n.gid, n.xattrs, n.hash, n.attempts, "
         "n.dev IS NOT NULL, p.path FROM src_nodes n LEFT JOIN src_nodes p "
         "ON p.id = n.parent_id ORDER BY n.path")
DST_Q = ("SELECT d.path, d.type, d.size, d.mtime, d.mode, d.depth, d.traversal_status, "
         "d.conflict, d.error, d.uid, d.gid, d.attempts, s.path, p.path FROM dst_nodes d "
         "LEFT JOIN src_nodes s ON s.id = d.src_id LEFT JOIN dst_nodes p "
         "ON p.id = d.parent_id ORDER BY d.path")
# rows of count 0 are what a verdict's -1 / +1 leaves behind: no difference
STATS_Q = ["SELECT * FROM %s WHERE count <> 0 OR bytes <> 0 ORDER BY 1, 2, 3, 4" % t
           for t in ('src_stats', 'dst_stats')] + [
    "SELECT * FROM copy_stats WHERE count <> 0 OR bytes <> 0 ORDER BY 1, 2, 3, 4, 5"]
PAIR_LOG = re.compile(rb'pair listings: (\d+) folders listed with their destination twin in '
                      rb'one job, (\d+) listed one side at a time')


def state(db):
    conn = tmtest.connect(db)
    try:
        out = {'src': conn.execute(SRC_Q).fetchall(), 'dst': conn.execute(DST_Q).fetchall()}
        for i, q in enumerate(STATS_Q):
            out['stats%d' % i] = conn.execute(q).fetchall()
        out['listing_pos'] = conn.execute('SELECT side, folder_id FROM listing_pos').fetchall()
        out['task_errors'] = conn.execute(
            'SELECT phase, queue, path, attempts, message FROM task_errors ORDER BY path, '
            'queue').fetchall()
        return out
    finally:
        conn.close()


def pair_counts(db):
    """(pairs, fallbacks) the run's log says, or None without the line."""
    conn = tmtest.connect(db)
    try:
        msgs = [m for (m,) in conn.execute(
            "SELECT message FROM logs WHERE message LIKE 'pair listings:%' ORDER BY id")]
    finally:
        conn.close()
    if not msgs:
        return None
    m = PAIR_LOG.search(msgs[-1])
    return (int(m.group(1)), int(m.group(2))) if m else None


def expect_same(what, ref, got):
    for k in ref:
        if ref[k] == got[k]:
            continue
        a, b = set(ref[k]), set(got[k])
        only_ref = sorted(a - b, key=repr)[:6]
        only_got = sorted(b - a, key=repr)[:6]
        fail('%s: %s differ (%d rows against %d)\n    one side at a time only: %r\n'
             '    pair listings only: %r' % (what, k, len(ref[k]), len(got[k]), only_ref,
                                              only_got))


PG = None  # the PostgreSQL server of the last cases, or None
WORK = None  # the test's folder (a database's YAML file goes there)


def pg_env():
    return PG.env() if PG else {}


def db_args(db):
    """--db db, and for a database the YAML file in the test's folder."""
    if '://' not in db:
        return ['--db', db]
    name = db.split('///', 1)[1].split('?', 1)[0]  # the database's
    return ['--db', db, '--config', os.path.join(WORK, name + '.yaml')]


def discover(db, args, pair):
    env = dict(pg_env(), **({} if pair else {'TREEMIG_PAIR': '0'}))
    cp = tmtest.run(['discover'] + db_args(db) + ['--quiet'] + args, env=env or None)
    expect_rc(cp, 0, 'discover %s (%s)' % (' '.join(map(os.fsdecode, args)),
                                            'pairs' if pair else 'one side at a time'))
    return cp


def as_file(db, work, tag):
    """db itself, or for a PostgreSQL URI a state file state-copy made of
    it (the rows compared are those of the file)."""
    if '://' not in db:
        return db
    path = os.path.join(work, tag + '-from-pg.db')
    fresh(path)
    cp = tmtest.run(['state-copy', '--quiet', '--config', path + '.yaml', db, path],
                    env=pg_env())
    expect_rc(cp, 0, 'state-copy of %s to a state file' % tag)
    return path


def new_pg_db(tag):
    """A new database's URI on the server's socket (trusted: no password),
    in SQL_ASCII: the trees hold names that are not UTF-8 (a UTF8 database
    refuses them: test_pg)."""
    PG.made += 1
    name = '%s%d' % (re.sub(r'\W+', '_', tag), PG.made)
    PG.psql('postgres', "CREATE DATABASE %s TEMPLATE template0 ENCODING 'SQL_ASCII' "
            "LC_COLLATE 'C' LC_CTYPE 'C'" % name)
    return PG.socket_uri(name)


def fresh(db):
    for ext in ('', '-wal', '-shm', '.yaml', '.lock'):
        if os.path.exists(db + ext):
            os.unlink(db + ext)


def compare_runs(work, name, src, dst, opts, want_fallback=False, pg=False):
    ref_db = os.path.join(work, name + '-sides.db')
    db = new_pg_db(name) if pg else os.path.join(work, name + '-pairs.db')
    fresh(ref_db)
    fresh(db)
    discover(ref_db, opts + [src, dst], False)
    expect_eq('%s: pair listings with TREEMIG_PAIR=0' % name, None, pair_counts(ref_db))
    discover(db, opts + [src, dst], True)
    db = as_file(db, work, name)
    pc = pair_counts(db)
    if not pc or pc[0] == 0:
        fail('%s: no pair listed (log: %r): the pair path went untested' % (name, pc))
    if want_fallback and pc[1] == 0:
        fail('%s: no pair fell back for the folder of more than one page' % name)
    expect_same(name, state(ref_db), state(db))
    print('     %s: %d pairs, %d fell back; %d source and %d destination rows equal'
          % (name, pc[0], pc[1], len(state(db)['src']), len(state(db)['dst'])))


def check_crash(work, src, dst, rng, pg=False):
    ref_db = os.path.join(work, 'wide-sides.db')
    db = new_pg_db('wide_crash') if pg else os.path.join(work, 'wide-crash.db')
    fresh(ref_db)
    fresh(db)
    args = ['--workers', '2', src, dst]
    discover(ref_db, args, False)
    ref = state(ref_db)
    # the kills fall within a run in pairs (quicker than the reference)
    time_db = new_pg_db('wide_time') if pg else os.path.join(work, 'wide-time.db')
    fresh(time_db)
    t0 = time.monotonic()
    discover(time_db, args, True)
    t_ref = time.monotonic() - t0
    kills = mid = 0
    for k in range(12):
        p = statecheck.Proc(['discover'] + db_args(db) + ['--quiet'] + args)
        try:
            delay = rng.uniform(0.1, 0.5) * t_ref * (1.0 if k < 6 else 0.5)
            while time.monotonic() < p.started + delay and p.poll() is None:
                time.sleep(0.001)
            sent = p.signal(signal.SIGKILL)
            rc = p.wait()
        finally:
            p.close()
        kills += 1
        if rc == 0:
            break
        if rc != -signal.SIGKILL or not sent:
            fail('run %d: exit %r: %s' % (k + 1, rc, p.stderr()[-500:]))
        mid += 1
    cp = tmtest.run(['discover'] + db_args(db) + ['--quiet'] + args, env=pg_env() or None)
    expect_rc(cp, 0, 'the last resume')
    if not pg:
        statecheck.integrity(db)
    db = as_file(db, work, 'wide-crash')
    if pair_counts(db) is None:
        fail('the last resume logged no pair listing')
    expect_same('killed %d times (%d mid-run) and resumed' % (kills, mid), ref, state(db))
    print('     %d runs, %d killed mid-run (a run in pairs takes %.2fs); the state file '
          'equals the reference' % (kills, mid, t_ref))
    if not mid:
        raise tmtest.Skip('no kill landed mid-run (the machine is too fast for the tree)')


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_pair')
    seed = int(os.environ.get('TREEMIG_PAIR_SEED') or random.randrange(1 << 30))
    print('seed %d (replay with TREEMIG_PAIR_SEED=%d)' % (seed, seed))
    global WORK, PG
    work = WORK = tempfile.mkdtemp(prefix='treemig-pair-')
    try:
        src, dst = treegen.build_pair(os.path.join(work, 'pair'), big_count=3000)
        for name, opts in (('defaults', []), ('--workers 1', ['--workers', '1']),
                           ('--lead 1 --workers 8', ['--lead', '1', '--workers', '8']),
                           ('--size-only', ['--size-only']), ('--owner', ['--owner']),
                           ('--no-xattrs', ['--no-xattrs'])):
            R.check('build_pair, %s: the pairs record what one side at a time does' % name,
                    compare_runs, work, 'pair' + re.sub(r'\W+', '_', name), src, dst, opts,
                    want_fallback=True)
        xsrc, xdst = treegen.build_exclude_pair(os.path.join(work, 'excl'))
        excl = []
        for g in ('*.tmp', 'node_modules', '/docs/draft*', '/a/b/skip'):
            excl += ['--exclude', g]
        R.check('build_exclude_pair with its excludes: the same state file',
                compare_runs, work, 'excl', xsrc, xdst, excl)
        wsrc, wdst = treegen.build_wide_pair(os.path.join(work, 'wide'), fanout=7, levels=4,
                                             files=24)
        R.check('build_wide_pair, --workers 2: the same state file',
                compare_runs, work, 'wide', wsrc, wdst, ['--workers', '2'])
        R.check('build_wide_pair killed (SIGKILL) at random moments and resumed: the same '
                'state file', check_crash, work, wsrc, wdst, random.Random(seed))
        try:
            PG = pgserver.PgServer()
        except (RuntimeError, OSError) as e:
            for label in ('PostgreSQL: build_pair', 'PostgreSQL: build_wide_pair killed'):
                R.skip(label, 'no PostgreSQL server: %s' % e)
        else:
            R.check('PostgreSQL: build_pair with pairs, the state of one side at a time',
                    compare_runs, work, 'pgpair', src, dst, [], want_fallback=True, pg=True)
            R.check('PostgreSQL: build_wide_pair killed (SIGKILL) at random moments and '
                    'resumed: the same state', check_crash, work, wsrc, wdst,
                    random.Random(seed + 1), pg=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    R.finish()


if __name__ == '__main__':
    main()
