#!/usr/bin/env python3
"""PostgreSQL as the state store (--db postgresql://...), against a real
throwaway server (tests/servers/pgserver.py: initdb + pg_ctl on 127.0.0.1 at a free
port, run as nobody through setpriv when the test runs as root).

- a sim pair and a local pair discovered, copied and verified through
  PostgreSQL leave the same node rows as through SQLite (both read with a
  query: psql on one side, Python's sqlite3 on the other), and the local
  destination matches its source by rsync -n --itemize-changes;
- kill -9 during discovery and during copy, then resume on PostgreSQL:
  the end state equals the uninterrupted SQLite run's;
- the server restarted (immediate shutdown: every connection cut) in the
  middle of a discovery and of a copy: the same process reconnects with
  backoff and finishes, the same end state; a server that stays down: a
  clear error after the retries, and resume finishes once it is back;
- the answer to a COMMIT the server made lost with the connection
  (tests/servers/pg_cut_proxy.py): the process asks the server what
  became of it and goes on, the same end state;
- a wrong password, a missing database and a database holding another
  program's tables: exit 2, a clear message, nothing touched;
- state-copy from SQLite to PostgreSQL and back (a discovery on SQLite,
  copy and verify on PostgreSQL): every table equal after each copy, the
  copies usable, a target that holds a migration refused untouched;
- review --list and copy --dry-run with 150,000 more rows to list grow by
  far less than the rows' size (single-row mode, not a whole result);
- a page that lists a name twice (tests/tools/pgwriter.c): one row, one
  count, on SQLite and on PostgreSQL (where the pipelined batch is redone);
- values at their limits land as bound whichever way their rows go
  (COPY, arrays, multi-row VALUES, one statement; pgwriter --values);
- names that are not UTF-8: refused by a UTF8 database with a message
  that names one and says what holds them (exit 1), kept byte for byte by
  a SQL_ASCII database;
- an eager autovacuum does not ANALYZE node tables of fewer than 10,000
  rows (their statistics would make the server's kept plans scan them
  whole as they grow);
- a password given in the URI never appears in the YAML file, the
  database's contents (pg_dump) or treemig's output.
"""
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'servers'))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run, show  # noqa: E402
import pgserver  # noqa: E402
import pg_cut_proxy  # noqa: E402
import statecheck  # noqa: E402

SHAPE = 'seed=11,depth=4,folders=5,files=6,size=4000'
DKEYS = 'world=dst,keep=0.8,extra=0.05,extra_folders=0.3,csize=0.05,cmtime=0.05,ctype=0.03'
SRC_Q = ("SELECT path, type, size, mtime, traversal_status, copy_status,"
         " coalesce(conflict, ''), coalesce(error, '') FROM src_nodes ORDER BY path")
DST_Q = ("SELECT path, type, size, mtime, traversal_status, coalesce(conflict, '')"
         " FROM dst_nodes ORDER BY path")
STATS_Q = [
    "SELECT 'copy', depth, type, copy_status, conflict, count, bytes FROM copy_stats"
    " WHERE count != 0 ORDER BY 2, 3, 4, 5",
    "SELECT 'src', depth, type, traversal_status, count, bytes FROM src_stats"
    " WHERE count != 0 ORDER BY 2, 3, 4",
    "SELECT 'dst', depth, type, traversal_status, count, bytes FROM dst_stats"
    " WHERE count != 0 ORDER BY 2, 3, 4",
]

PG = None


def env():
    return PG.env()


def new_db():
    return PG.new_db('mig')


def same_rows(what, a, b):
    msg = pgserver.rows_differ(what, a, b)
    if msg:
        fail(msg)


def same_stats(lite, name):
    for q in STATS_Q:
        same_rows(q.split(' FROM ')[1].split()[0], pgserver.lite_rows(lite, q), PG.rows(name, q))


def full_run(db, src, dst, work, tag, exclude=None):
    if not dst.startswith('sim:'):
        os.makedirs(dst)
    cfg = os.path.join(work, tag + '.yaml')
    steps = [['discover', '--db', db, '--quiet', '--config', cfg, src, dst]]
    if exclude:  # exclude, unexclude and exclude again: review's tables
        steps += [['exclude', '--db', db, '--quiet', exclude],
                  ['unexclude', '--db', db, '--quiet', exclude],
                  ['exclude', '--db', db, '--quiet', exclude]]
    for args in steps + [['copy', '--db', db, '--yes', '--quiet'],
                         ['verify', '--db', db, '--quiet']]:
        expect_rc(run(args, env=env()), 0, '%s %s' % (tag, args[0]))
    return cfg


def sim_pair(work, tag):
    ovl = os.path.join(work, tag + '.ovl')
    return 'sim:' + SHAPE, 'sim:%s,%s,overlay=%s' % (SHAPE, DKEYS, ovl)


CLAIM_INDEXES_Q = ("SELECT indexname FROM pg_indexes WHERE tablename IN ('src_nodes',"
                   " 'dst_nodes') AND indexdef LIKE '%traversal_status%' ORDER BY 1")


def check_sim_pair(work):
    name, uri = new_db()
    full_run(uri, *sim_pair(work, 'pg'), work=work, tag='pg')
    lite = os.path.join(work, 'sim.db')
    full_run(lite, *sim_pair(work, 'lite'), work=work, tag='lite')
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    same_rows('dst_nodes', pgserver.lite_rows(lite, DST_Q), PG.rows(name, DST_Q))
    same_stats(lite, name)
    if not PG.rows(name, "SELECT 1 FROM src_nodes WHERE conflict IS NOT NULL"):
        fail('the sim pair has no conflicts: a weak comparison')
    expect_eq('phase', ['verified'], PG.rows(name, "SELECT value FROM migration "
                                               "WHERE key = 'phase'"))
    # a folder's status update writes no index entry (HOT) only while no
    # index names the column: the claims' indexes are a shared discovery's
    expect_eq('indexes of the node tables that name traversal_status', [],
              PG.rows(name, CLAIM_INDEXES_Q))


def check_claim_indexes(work):
    """A shared discovery makes the claims' indexes over empty node tables.
    An index made over a table of a row or two gives the server the
    table's size (pg_class.reltuples), and the claims' plans, made once
    for any values, stayed sequential scans while the tables grew (a 300k
    shared discovery 13 -> 27 s, docs/BENCHMARKS.md)."""
    name, uri = new_db()
    shape = 'seed=3,depth=2,folders=3,files=2'
    expect_rc(run(['discover', '--db', uri, '--quiet', '--config',
                   os.path.join(work, 'claims.yaml'), 'sim:' + shape,
                   'sim:%s,world=dst,keep=0.5' % shape],
                  env=dict(env(), TREEMIG_SHARED_DISCOVERY='1')), 0, 'discover')
    expect_eq('the claims\' indexes', ['dst_nodes_frontier', 'dst_nodes_twin',
                                       'src_nodes_frontier'],
              PG.rows(name, CLAIM_INDEXES_Q))
    expect_eq('the node tables\' sizes, unknown to the server (never measured)',
              ['dst_nodes|-1', 'src_nodes|-1'],
              PG.rows(name, "SELECT relname, reltuples FROM pg_class WHERE relname "
                      "IN ('src_nodes', 'dst_nodes') ORDER BY 1"))


def make_tree(top, folders=6, files=5):
    os.makedirs(top)
    for i in range(folders):
        d = os.path.join(top, 'd%02d' % i, 'sub')
        os.makedirs(d)
        for j in range(files):
            with open(os.path.join(d if j % 2 else os.path.dirname(d),
                                   'f%d.bin' % j), 'wb') as f:
                f.write(os.urandom(100 * j + i))
    os.symlink('d00/f0.bin', os.path.join(top, 'link'))
    os.mkdir(os.path.join(top, 'empty'))


def rsync_diff(src, dst):
    cp = subprocess.run(['rsync', '-n', '-a', '-i', '--delete', '-c', '--exclude=/d01',
                         src + '/', dst + '/'],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if cp.returncode != 0:
        fail('rsync: %s' % cp.stderr.decode(errors='replace'))
    # the roots are left as they were (their mtimes differ): not compared
    return [ln for ln in cp.stdout.decode(errors='replace').splitlines()
            if ln.strip() and not ln.endswith(' ./')]


def check_local_pair(work):
    src = os.path.join(work, 'lsrc')
    make_tree(src)
    name, uri = new_db()
    full_run(uri, src, os.path.join(work, 'ldst_pg'), work, 'lpg', exclude='/d01')
    lite = os.path.join(work, 'local.db')
    full_run(lite, src, os.path.join(work, 'ldst_lite'), work, 'llite', exclude='/d01')
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    # the two destination roots are two folders: their own mtimes differ
    q = DST_Q.replace('ORDER BY', 'WHERE depth > 0 ORDER BY')
    same_rows('dst_nodes', pgserver.lite_rows(lite, q), PG.rows(name, q))
    if len(pgserver.lite_rows(lite, SRC_Q)) < 30:
        fail('the local pair is too small to compare')
    q = "SELECT path FROM src_nodes WHERE copy_status = 'excluded' ORDER BY path"
    same_rows('excluded nodes', pgserver.lite_rows(lite, q), PG.rows(name, q))
    if len(PG.rows(name, q)) < 4:
        fail('the exclusion excluded %r' % PG.rows(name, q))
    q = "SELECT kind, side, path, reason FROM review_items ORDER BY 1, 2, 3"
    same_rows('review_items', pgserver.lite_rows(lite, q), PG.rows(name, q))
    expect_eq('rsync -n --itemize-changes of the PostgreSQL run\'s destination', [],
              rsync_diff(src, os.path.join(work, 'ldst_pg')))
    if os.path.exists(os.path.join(work, 'ldst_pg', 'd01')):
        fail('the excluded folder was copied')


def check_pass(work):
    """A pass (rescan) on PostgreSQL after the source changed (a file
    rewritten, one deleted, one added, a folder removed): the same rows as
    the same pass on SQLite (the nodes, the previous pass's rows of what
    changed, the stats), the copy then leaves nothing to send, and
    `treemig delete` removes what the source lost, recording the
    destination-only folder's children on PostgreSQL (rsync -c --delete
    finds nothing after)."""
    src = os.path.join(work, 'pass_src')
    make_tree(src)
    name, uri = new_db()
    pg_dst, lite_dst = os.path.join(work, 'pass_dst_pg'), os.path.join(work, 'pass_dst_lite')
    lite = os.path.join(work, 'pass.db')
    full_run(uri, src, pg_dst, work, 'ppg')
    full_run(lite, src, lite_dst, work, 'plite')
    with open(os.path.join(src, 'd02', 'f0.bin'), 'wb') as f:
        f.write(b'rewritten for the pass')
    os.unlink(os.path.join(src, 'd03', 'sub', 'f1.bin'))
    with open(os.path.join(src, 'd04', 'new.bin'), 'wb') as f:
        f.write(b'new')
    subprocess.run(['rm', '-rf', os.path.join(src, 'd05')], check=True)
    for db in (uri, lite):
        expect_rc(run(['rescan', '--db', db, '--quiet'], env=env()), 0, 'rescan')
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    q = DST_Q.replace('ORDER BY', 'WHERE depth > 0 ORDER BY')
    same_rows('dst_nodes', pgserver.lite_rows(lite, q), PG.rows(name, q))
    same_stats(lite, name)
    q = "SELECT path, type, size, copy_status FROM prev_src_nodes ORDER BY path"
    same_rows('prev_src_nodes', pgserver.lite_rows(lite, q), PG.rows(name, q))
    got = [r.split('|')[0] for r in PG.rows(name, q)]
    for p in ('/d02/f0.bin', '/d03/sub/f1.bin', '/d05'):
        if p not in got:
            fail('prev_src_nodes lacks %s' % p, None, got)
    if len(got) > 15:
        fail('prev_src_nodes holds unchanged rows', None, got)
    expect_rc(run(['copy', '--db', uri, '--yes', '--quiet'], env=env()), 0,
              'copy after the pass')
    expect_rc(run(['delete', '--db', uri, '--yes', '--quiet'], env=env()), 0,
              'delete after the pass')
    cp = subprocess.run(['rsync', '-n', '-a', '-i', '-c', '--delete', src + '/',
                         pg_dst + '/'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    left = [ln for ln in cp.stdout.decode(errors='replace').splitlines()
            if ln.strip() and not ln.endswith(' ./')]
    expect_eq('rsync -n -c --delete --itemize-changes after the pass, the copy and '
              'the delete', [], left)


def phase_of(name):
    r = PG.rows(name, "SELECT value FROM migration WHERE key = 'phase'")
    return r[0] if r else ''


def kill_when(args, name, phase, settle):
    """Starts treemig with args, waits until the database's phase is
    phase and settle seconds more, then kill -9. Returns 1 when the kill
    landed before the run ended."""
    p = subprocess.Popen([tmtest.TREEMIG] + args, env=dict(os.environ, **env()),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if p.poll() is not None:
                break
            try:
                if phase_of(name) == phase:
                    break
            except RuntimeError:
                pass  # the schema is being made
            time.sleep(0.05)
        time.sleep(settle)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    return p.returncode == -signal.SIGKILL


EAGER_AUTOVACUUM = (('autovacuum_naptime', '1'), ('autovacuum_analyze_threshold', '0'),
                    ('autovacuum_analyze_scale_factor', '0'))


@tmtest.again_if_void
def check_early_autovacuum(work):
    """An autovacuum as eager as can be (a visit a second, an ANALYZE after
    any change) leaves the node tables of a discovery alone while they
    hold fewer than 10,000 rows, and ANALYZEs the others (it ran). The
    server keeps one plan of a prepared statement for any values (the
    writer's UPDATE ... FROM unnest of a batch, the frontier's reads),
    made again after an ANALYZE: statistics of a table of a page or two
    made it a sequential scan of the whole table, kept while the table
    grew (a 300k discovery: 5 s -> 50-70 s)."""
    name, uri = new_db()
    for k, v in EAGER_AUTOVACUUM:
        PG.psql('postgres', "ALTER SYSTEM SET %s = '%s'" % (k, v))
    PG.psql('postgres', 'SELECT pg_reload_conf()')
    try:
        shape = 'seed=5,depth=4,folders=6,files=8,decay=1,tail=100,size=100'
        expect_rc(run(['discover', '--db', uri, '--quiet', '--config',
                       os.path.join(work, 'av.yaml'), 'sim:' + shape,
                       'sim:%s,world=dst,keep=0.9,overlay=%s'
                       % (shape, os.path.join(work, 'av.ovl'))], env=env()), 0, 'discover')
        q = ("SELECT relname, n_live_tup, autoanalyze_count FROM pg_stat_user_tables "
             "WHERE relname IN ('src_nodes', 'dst_nodes', 'src_stats', 'dst_stats') "
             "ORDER BY relname")
        def counts():  # {table: [rows, autoanalyze_count]}
            return dict((r.split('|')[0], [int(x) for x in r.split('|')[1:]])
                        for r in PG.rows(name, q))
        for _ in range(100):
            got = counts()
            if got.get('src_stats', [0, 0])[1] and got.get('dst_stats', [0, 0])[1]:
                break
            time.sleep(0.1)
        else:
            tmtest.void('autovacuum did not ANALYZE the stats tables in 10 s')
        time.sleep(1.5)  # a visit more: the node tables' turn may come later
        got = counts()
        for t in ('src_nodes', 'dst_nodes'):
            rows, analyzed = got[t]
            if not 100 < rows < 10000:
                fail('%s holds %d rows: not the small table of this case' % (t, rows))
            if analyzed:
                fail('autovacuum ANALYZEd %s at %d rows' % (t, rows))
    finally:
        for k, _ in EAGER_AUTOVACUUM:
            PG.psql('postgres', 'ALTER SYSTEM RESET %s' % k)
        PG.psql('postgres', 'SELECT pg_reload_conf()')


def check_kill_resume(work):
    """Slow sides (latency) so that the kills land mid-phase."""
    shape = 'seed=21,depth=3,folders=6,files=8,size=3000'
    lite = os.path.join(work, 'ref.db')
    ref_src, ref_dst = 'sim:' + shape, 'sim:%s,%s,overlay=%s' % (
        shape, DKEYS, os.path.join(work, 'ref.ovl'))
    full_run(lite, ref_src, ref_dst, work, 'ref')
    name, uri = new_db()
    cfg = os.path.join(work, 'kill.yaml')
    src = 'sim:%s,latency=100' % shape
    dst = 'sim:%s,%s,latency=100,overlay=%s' % (shape, DKEYS, os.path.join(work, 'kill.ovl'))
    if not kill_when(['discover', '--db', uri, '--quiet', '--config', cfg, src, dst],
                     name, 'discovering', 0.3):
        fail('the discovery ended before the kill')
    expect_eq('phase after the kill in discovery', 'discovering', phase_of(name))
    expect_rc(run(['resume', '--config', cfg, '--quiet'], env=env()), 0, 'resume')
    expect_eq('phase after resume', 'discovered', phase_of(name))
    if not kill_when(['copy', '--db', uri, '--yes', '--quiet'], name, 'copying', 0.7):
        fail('the copy ended before the kill')
    left = PG.rows(name, "SELECT count(*) FROM src_nodes WHERE copy_status "
                         "IN ('pending', 'in_progress')")
    if left == ['0']:
        fail('the kill landed after the copy had copied everything')
    expect_rc(run(['copy', '--db', uri, '--yes', '--quiet'], env=env()), 0, 'copy again')
    expect_rc(run(['verify', '--db', uri, '--quiet'], env=env()), 0, 'verify')
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    same_rows('dst_nodes', pgserver.lite_rows(lite, DST_Q), PG.rows(name, DST_Q))
    same_stats(lite, name)


def wait_phase(p, name, phase):
    """Waits until the database's phase is phase or p has ended."""
    for _ in range(1200):
        if p.poll() is not None:
            return
        try:
            if phase_of(name) == phase:
                return
        except RuntimeError:
            pass  # the schema is being made
        time.sleep(0.05)


def run_through_restart(args, name, phase, left_q):
    """Starts treemig with args, restarts the server (immediate shutdown:
    every connection cut) once the database's phase is phase and left_q
    still counts work to do, and returns the process's exit code and
    stderr. The restart must land while the process runs and has work
    left: the same process must then reconnect to finish."""
    p = subprocess.Popen([tmtest.TREEMIG] + args, env=dict(os.environ, **env()),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    left = None
    try:
        wait_phase(p, name, phase)
        time.sleep(0.3)
        left = PG.rows(name, left_q)
        ended_before = p.poll() is not None
        PG.restart()
    finally:
        err = p.communicate()[1].decode(errors='replace')
    if ended_before:
        fail('%s ended before the restart' % args[0])
    if left == ['0']:
        fail('%s had nothing left to do at the restart' % args[0])
    return p.returncode, err


def check_restart(work):
    """The server restarted (every connection cut) in the middle of a
    discovery and of a copy: the same process reconnects with backoff and
    finishes, and the end state equals an uninterrupted SQLite run's."""
    shape = 'seed=31,depth=3,folders=5,files=6,size=2000'
    lite = os.path.join(work, 'rref.db')
    full_run(lite, 'sim:' + shape, 'sim:%s,%s,overlay=%s' % (
        shape, DKEYS, os.path.join(work, 'rref.ovl')), work, 'rref')
    name, uri = new_db()
    src = 'sim:%s,latency=60' % shape
    dst = 'sim:%s,%s,latency=60,overlay=%s' % (shape, DKEYS, os.path.join(work, 'r.ovl'))
    rc, err = run_through_restart(
        ['discover', '--db', uri, '--quiet', '--config', os.path.join(work, 'r.yaml'),
         src, dst], name, 'discovering',
        "SELECT count(*) FROM src_nodes WHERE traversal_status = 'pending'")
    if rc != 0:
        fail('the discovery did not finish through a server restart (exit %d): %s'
             % (rc, err))
    expect_eq('phase after the discovery', 'discovered', phase_of(name))
    rc, err = run_through_restart(
        ['copy', '--db', uri, '--yes', '--quiet'], name, 'copying',
        "SELECT count(*) FROM src_nodes WHERE copy_status IN ('pending', 'in_progress')")
    if rc != 0:
        fail('the copy did not finish through a server restart (exit %d): %s' % (rc, err))
    expect_rc(run(['verify', '--db', uri, '--quiet'], env=env()), 0, 'verify')
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    same_rows('dst_nodes', pgserver.lite_rows(lite, DST_Q), PG.rows(name, DST_Q))
    same_stats(lite, name)


def check_restart_down(work):
    """A server that stays down: the run gives up after its retries with a
    message that says what failed (exit 1), and the next run finishes."""
    shape = 'seed=32,depth=2,folders=4,files=4,size=500'
    name, uri = new_db()
    dst = 'sim:%s,%s,latency=50,overlay=%s' % (shape, DKEYS, os.path.join(work, 'd.ovl'))
    p = subprocess.Popen([tmtest.TREEMIG, 'discover', '--db', uri, '--quiet', '--config',
                          os.path.join(work, 'd.yaml'), 'sim:%s,latency=50' % shape, dst],
                         env=dict(os.environ, **env()), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        wait_phase(p, name, 'discovering')
        PG.stop_server()
        err = p.communicate()[1].decode(errors='replace')
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if not PG.running:
            PG.start()
    if p.returncode == 0:
        fail('the discovery finished with its server down')
    if 'state' not in err or ('tries)' not in err and 'connection' not in err):
        fail('no clear message for a server that stays down: %r' % err)
    expect_rc(run(['resume', '--config', os.path.join(work, 'd.yaml'), '--quiet'],
                  env=env()), 0, 'resume once the server is back')
    expect_eq('phase after resume', 'discovered', phase_of(name))


def check_lost_commit(work):
    """The writer's COMMIT reaches the server and commits, and its answer
    is lost with the connection (a proxy cuts it then): the process must
    find out that it committed (the transaction's id, txid_status) and go
    on, not apply the batch again (which finds its folders no longer
    pending and fails). Then the COMMIT itself lost (the server rolls the
    transaction back): the batch must be applied again. Either way the
    end state equals an uninterrupted SQLite run's."""
    lite = os.path.join(work, 'lc.db')
    src = 'sim:' + SHAPE
    expect_rc(run(['discover', '--db', lite, '--quiet', '--config',
                   os.path.join(work, 'lcl.yaml'), src, 'sim:%s,%s,overlay=%s' % (
                       SHAPE, DKEYS, os.path.join(work, 'lcl.ovl'))], env=env()),
              0, 'the SQLite discovery')
    for lose in ('answer', 'commit'):  # then the COMMIT itself: rolled back
        name, _ = new_db()
        proxy = pg_cut_proxy.CommitCutProxy(PG.port, nth=3, lose=lose)
        tag = 'lc-' + lose
        try:
            uri = 'postgresql://%s@127.0.0.1:%d/%s?sslmode=disable&gssencmode=disable' % (
                PG.user, proxy.port, name)
            r = run(['discover', '--db', uri, '--quiet', '--config',
                     os.path.join(work, tag + '.yaml'), src, 'sim:%s,%s,overlay=%s' % (
                         SHAPE, DKEYS, os.path.join(work, tag + '.ovl'))], env=env())
        finally:
            proxy.close()
        if not proxy.fired:
            fail("the proxy cut no COMMIT: the writer's batches changed (nth=3)")
        expect_eq('what the server did with the cut COMMIT',
                  'COMMIT' if lose == 'answer' else None, proxy.tag)
        expect_rc(r, 0, 'the discovery through a lost COMMIT %s' % lose)
        expect_eq('phase', 'discovered', phase_of(name))
        same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
        same_rows('dst_nodes', pgserver.lite_rows(lite, DST_Q), PG.rows(name, DST_Q))
        same_stats(lite, name)


CHILDREN_Q = ("SELECT p.path, count(c.id) FROM %(t)s p LEFT JOIN %(t)s c"
              " ON c.parent_id = p.id WHERE p.type = 'folder' GROUP BY p.path")
STATS_ROWS = [  # each stats table against the rows it counts
    ("SELECT depth, type, traversal_status, count FROM src_stats WHERE count != 0"
     " ORDER BY 1, 2, 3",
     "SELECT depth, type, traversal_status, count(*) FROM src_nodes GROUP BY 1, 2, 3"
     " ORDER BY 1, 2, 3"),
    ("SELECT depth, type, traversal_status, count FROM dst_stats WHERE count != 0"
     " ORDER BY 1, 2, 3",
     "SELECT depth, type, traversal_status, count(*) FROM dst_nodes GROUP BY 1, 2, 3"
     " ORDER BY 1, 2, 3"),
    ("SELECT depth, type, copy_status, conflict, count FROM copy_stats"
     " WHERE count != 0 ORDER BY 1, 2, 3, 4",
     "SELECT depth, type, copy_status, CASE WHEN conflict IS NULL THEN 0 ELSE 1 END,"
     " count(*) FROM src_nodes GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"),
]


def durable_state_errors(name, ref_children):
    """What a state cut short by kill -9 must never show, each a sign that
    a batch's rows were not committed with the rest of it: a listed folder
    (successful) without all its children; a pending folder with children
    but no recorded listing position (its children were committed without
    the page that holds them); stats that do not count the rows there are
    (rows committed without their stats, or the other way)."""
    errs = []
    for t in ('src_nodes', 'dst_nodes'):
        q = (CHILDREN_Q % {'t': t}).replace(
            'WHERE', "WHERE p.traversal_status = 'successful' AND")
        have = dict(r.split('|') for r in PG.rows(name, q))
        for path, n in sorted(have.items()):
            if ref_children[t].get(path) != n:
                errs.append('%s: folder %s is listed with %s children, %s in truth'
                            % (t, path, n, ref_children[t].get(path)))
        side = 0 if t == 'src_nodes' else 1
        for r in PG.rows(name, "SELECT p.path FROM %s p WHERE p.type = 'folder' AND"
                               " p.traversal_status = 'pending' AND EXISTS (SELECT 1 FROM"
                               " %s c WHERE c.parent_id = p.id) AND NOT EXISTS (SELECT 1"
                               " FROM listing_pos l WHERE l.side = %d AND l.folder_id ="
                               " p.id)" % (t, t, side)):
            errs.append('%s: pending folder %s has children but no listing position'
                        % (t, r))
    for stats_q, rows_q in STATS_ROWS:
        a, b = PG.rows(name, stats_q), PG.rows(name, rows_q)
        if a != b:
            errs.append('%s counts %s, the rows are %s' % (stats_q.split(' FROM ')[1].split()[0],
                                                           sorted(set(a) - set(b))[:4],
                                                           sorted(set(b) - set(a))[:4]))
    return errs


def check_atomicity(work):
    """kill -9 of a discovery at many points (each run resumes the last):
    after each kill the durable state holds only whole batches
    (durable_state_errors); the run that ends leaves the reference's rows."""
    shape = 'seed=41,depth=3,folders=8,files=7,size=1000'
    lite = os.path.join(work, 'aref.db')
    ref_dst = 'sim:%s,%s,overlay=%s' % (shape, DKEYS, os.path.join(work, 'aref.ovl'))
    expect_rc(run(['discover', '--db', lite, '--quiet', '--config',
                   os.path.join(work, 'aref.yaml'), 'sim:' + shape, ref_dst]), 0,
              'the reference discovery')
    ref_children = {t: dict('|'.join(str(x) for x in r).rsplit('|', 1) for r in
                            sqlite3.connect(lite).execute(CHILDREN_Q % {'t': t}))
                    for t in ('src_nodes', 'dst_nodes')}
    name, uri = new_db()
    cfg = os.path.join(work, 'atom.yaml')
    dst = 'sim:%s,%s,latency=60,overlay=%s' % (shape, DKEYS, os.path.join(work, 'atom.ovl'))
    args = ['discover', '--db', uri, '--quiet', '--config', cfg,
            'sim:%s,latency=60' % shape, dst]
    kills = 0
    for i in range(13):  # 12 runs killed, unless one ends first; the 13th ends
        p = subprocess.Popen([tmtest.TREEMIG] + args, env=dict(os.environ, **env()),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_phase(p, name, 'discovering')
            time.sleep(0.1 + 0.07 * (i % 7))
            if p.poll() is None and i < 12:
                p.send_signal(signal.SIGKILL)
        finally:
            err = p.communicate()[1].decode(errors='replace')
        if p.returncode == 0:
            break
        if p.returncode != -signal.SIGKILL:
            fail('run %d failed (exit %d): %s' % (i, p.returncode, err))
        kills += 1
        errs = durable_state_errors(name, ref_children)
        if errs:
            fail('after kill %d:\n      %s' % (kills, '\n      '.join(errs[:8])))
        args = ['resume', '--config', cfg, '--quiet']
    if kills < 4:
        fail('only %d kills landed during the discovery' % kills)
    expect_eq('phase at the end', 'discovered', phase_of(name))
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    same_rows('dst_nodes', pgserver.lite_rows(lite, DST_Q), PG.rows(name, DST_Q))
    same_stats(lite, name)
    expect_eq('durable state at the end', [], durable_state_errors(name, ref_children))


def lite_dump(path):
    """Every row of every table of a state file, each as text the way psql
    -A prints it (NULL empty, an integral REAL without its .0, a blob as
    \\x and hex), sorted: a canonical dump to compare with pg_dump_rows."""
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE"
            " 'sqlite!_%' ESCAPE '!' ORDER BY name")]

        def txt(v):
            if v is None:
                return ''
            if isinstance(v, float) and v.is_integer():
                return str(int(v))
            if isinstance(v, bytes):
                return '\\x' + v.hex()
            return str(v)
        return {t: sorted('|'.join(txt(v) for v in r)
                          for r in con.execute('SELECT * FROM "%s"' % t)) for t in tables}
    finally:
        con.close()


def pg_dump_rows(name, tables):
    return {t: sorted(PG.psql(name, 'SELECT * FROM "%s"' % t).splitlines()) for t in tables}


def same_dump(what, a, b):
    """a and b equal, but for the setting config: each copy names its own
    YAML file."""
    a, b = dict(a), dict(b)
    for d in (a, b):
        d['migration'] = [r for r in d['migration'] if not r.startswith('config|')]
    for t in sorted(a):
        if a[t] != b[t]:
            fail('%s: table %s differs: %d rows and %d; first differences %s / %s'
                 % (what, t, len(a[t]), len(b[t]), sorted(set(a[t]) - set(b[t]))[:3],
                    sorted(set(b[t]) - set(a[t]))[:3]))
    if sum(len(v) for v in a.values()) < 100:
        fail('%s: too few rows to compare' % what)


def check_state_copy(work):
    """Discovery on SQLite, state-copy to PostgreSQL, copy and verify there,
    state-copy back to a new state file: every table equal after each copy
    (a canonical dump of both sides); the copies' YAML files name them; a
    target that holds a migration is refused and left as it was."""
    lite = os.path.join(work, 'sc1.db')
    src, dst = sim_pair(work, 'sc')
    expect_rc(run(['discover', '--db', lite, '--quiet', src, dst]), 0, 'discover')
    expect_rc(run(['exclude', '--db', lite, '--quiet', '/d1*']), 0, 'exclude')
    name, uri = new_db()
    pyaml = os.path.join(work, 'sc-pg.yaml')
    cp = run(['state-copy', '--config', pyaml, lite, uri], env=env())
    expect_rc(cp, 0, 'state-copy to PostgreSQL')
    d1 = lite_dump(lite)
    same_dump('SQLite -> PostgreSQL', d1, pg_dump_rows(name, d1))
    with open(pyaml) as f:
        y = f.read()
    if 'database: ' + PG.uri(name) not in y.replace("'", '').replace('"', ''):
        fail('the YAML file of the copy does not name its database: %r' % y)
    expect_rc(run(['copy', '--db', uri, '--yes', '--quiet'], env=env()), 0, 'copy on PG')
    expect_rc(run(['resume', '--config', pyaml, '--quiet'], env=env()), 0,
              'resume from the copy\'s YAML file')
    expect_rc(run(['verify', '--db', uri, '--quiet'], env=env()), 0, 'verify on PG')
    expect_eq('phase on PG', 'verified', phase_of(name))
    back = os.path.join(work, 'sc2.db')
    expect_rc(run(['state-copy', uri, back], env=env()), 0, 'state-copy back to SQLite')
    d2 = lite_dump(back)
    same_dump('PostgreSQL -> SQLite', pg_dump_rows(name, d2), d2)
    if d2['src_nodes'] == d1['src_nodes']:
        fail('the copy and verify on PostgreSQL changed no source row: a weak test')
    with open(back + '.yaml') as f:
        if 'database: ' + back not in f.read().replace("'", '').replace('"', ''):
            fail('the YAML file beside the copy does not name it')
    cp = run(['status', '--db', back])
    expect_rc(cp, 0, 'status of the copy')
    if b'verified' not in cp.stdout:
        fail('status of the copy: %s' % show(cp))
    # refusals: a database that holds a migration, a file that exists
    before = pg_dump_rows(name, d2)
    cp = run(['state-copy', '--config', os.path.join(work, 'sc-x.yaml'), lite, uri],
             env=env())
    expect_rc(cp, 2, 'state-copy into a database that holds a migration')
    if b'holds the state of migration' not in cp.stderr:
        fail('no clear message for a target that is not empty: %s' % show(cp))
    if before != pg_dump_rows(name, d2):
        fail('the refused target database changed')
    cp = run(['state-copy', uri, lite], env=env())
    expect_rc(cp, 2, 'state-copy onto a state file that exists')
    if d1 != lite_dump(lite):
        fail('the state file refused as a target changed')


def peak_rss(args):
    """Runs treemig with args; returns (exit code, output lines, peak RSS
    in KiB) of that process (wait4). A child's peak counts the RSS this
    process had when it forked (Linux keeps the high-water mark across
    exec): the output is counted in chunks, never held, so that this
    process stays as small as it was for every measure."""
    e = dict(os.environ, **env())
    if statecheck.sanitizer() == 'address':
        # ASan keeps what is freed in quarantine (256 MB): a row freed
        # would count as a row held
        e['ASAN_OPTIONS'] = ':'.join(x for x in (e.get('ASAN_OPTIONS'),
                                                  'quarantine_size_mb=0') if x)
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen([tmtest.TREEMIG] + args, env=e,
                             stdout=out, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = 0
        for chunk in iter(lambda: out.read(1 << 16), b''):
            lines += chunk.count(b'\n')
        return p.returncode, lines, ru.ru_maxrss


BULK = 150000


def check_bounded_memory(work):
    """The listings that grow with the tree (review --list, the copy's plan
    of copy --dry-run) read their rows as they come (single-row mode): with
    BULK more rows of 400-byte paths to list (60 MB of result if it were
    read whole), the process grows by far less."""
    name, uri = new_db()
    src, dst = os.path.join(work, 'msrc'), os.path.join(work, 'mdst')
    make_tree(src, 3, 3)
    os.mkdir(dst)
    expect_rc(run(['discover', '--db', uri, '--quiet', '--config',
                   os.path.join(work, 'mem.yaml'), src, dst], env=env()), 0, 'discover')
    cmds = (['review', '--db', uri, '--list', 'missing'], ['copy', '--db', uri, '--dry-run'])
    small = [peak_rss(a) for a in cmds]
    root = PG.rows(name, "SELECT id FROM src_nodes WHERE depth = 0")[0]
    PG.psql(name, "INSERT INTO src_nodes(id, parent_id, path, name, type, size, mtime,"
                  " mode, depth, traversal_status, copy_status) SELECT 10000000 + g, %s,"
                  " '/bulk-' || g || '-' || repeat('x', 400), 'bulk-' || g || '-' ||"
                  " repeat('x', 400), 'file', 1, 0, 420, 1, 'successful', 'pending'"
                  " FROM generate_series(1, %d) g" % (root, BULK))
    for args, (rc0, n0, rss0) in zip(cmds, small):
        rc, n, rss = peak_rss(args)
        expect_eq('%s: exit codes' % args[0], (0, 0), (rc0, rc))
        if args[0] == 'review' and n < n0 + BULK:
            fail('review --list missing listed %d lines, expected %d more than %d'
                 % (n, BULK, n0))
        if rss - rss0 > 20000:
            fail('%s grew by %d KiB with %d more rows to read (%d KiB -> %d KiB): the '
                 'result is held whole' % (' '.join(args[:1] + args[3:]), rss - rss0,
                                            BULK, rss0, rss))


def repeat_sql(folder, name):
    """A pending source folder at depth 1, counted in the stats."""
    return [
        "INSERT INTO src_nodes(id, parent_id, path, name, type, size, mtime, mode, depth,"
        " traversal_status, copy_status) SELECT %d, id, '/%s', '%s', 'folder',"
        " 0, 0, 493, 1, 'pending', 'pending' FROM src_nodes WHERE depth = 0" % (folder, name, name),
        "INSERT INTO src_stats VALUES(1, 'folder', 'pending', 1, 0) ON CONFLICT(depth, type,"
        " traversal_status) DO UPDATE SET count = src_stats.count + 1",
        "INSERT INTO copy_stats VALUES(1, 'folder', 'pending', 0, 1, 0) ON CONFLICT(depth,"
        " type, copy_status, conflict) DO UPDATE SET count = copy_stats.count + 1",
    ]


REPEAT_SQL = repeat_sql(1000, 'repeats')
# the same with 300 more children, so that the page goes as one COPY on
# PostgreSQL (db_pg.c): with the repeated name (the COPY fails, the batch
# is done again) and without (the COPY inserts them all)
MANY = ((1001, 'many', 1), (1002, 'many0', 0))


def check_repeated_name(work):
    """A storage that lists a name twice in the last page of a folder
    (tests/tools/pgwriter.c drives the writer): the name is inserted and
    counted once, the folder is listed, on SQLite and on PostgreSQL. On
    PostgreSQL the pipeline told the writer the second insert changed a
    row: the server's count makes COMMIT ask for the batch again, one
    statement at a time."""
    tool = pgwriter()
    src = os.path.join(work, 'rpsrc')
    make_tree(src, 1, 1)
    lite = os.path.join(work, 'rp.db')
    name, uri = new_db()
    for db, rows, exec_sql in (
            (lite, lambda q: pgserver.lite_rows(lite, q),
             lambda q: sqlite3.connect(lite, isolation_level=None).execute(q)),
            (uri, lambda q: PG.rows(name, q), lambda q: PG.psql(name, q))):
        dst = os.path.join(work, 'rpdst%d' % len(db))
        os.mkdir(dst)
        expect_rc(run(['discover', '--db', db, '--quiet', '--config',
                       os.path.join(work, 'rp%d.yaml' % len(db)), src, dst], env=env()),
                  0, 'discover')
        for q in REPEAT_SQL + [q for f, n, _ in MANY for q in repeat_sql(f, n)]:
            exec_sql(q)
        for args in [['1000']] + [[str(f), '300', str(rep)] for f, _, rep in MANY]:
            cp = subprocess.run([tool, db] + args, env=dict(os.environ, **env()),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if cp.returncode != 0:
                fail('pgwriter %s on %s: %s' % (args, db, cp.stderr.decode(errors='replace')))
        expect_eq('children of the folder that listed a twice (%s)' % db[:10],
                  ['/repeats/a|file', '/repeats/b|file'],
                  rows("SELECT path, type FROM src_nodes WHERE parent_id = 1000 ORDER BY path"))
        for f, _, rep in MANY:
            kids = rows("SELECT name, size, mtime, mode, depth, traversal_status, "
                        "copy_status, coalesce(conflict, '-'), coalesce(uid, -1) FROM src_nodes WHERE parent_id = %d "
                        "ORDER BY name" % f)
            expect_eq('children of folder %d (%s)' % (f, db[:10]),
                      ['a|7|1600000000000000000|420|2|successful|pending|-|-1',
                       'b|7|1600000000000000000|420|2|successful|pending|-|-1'] +
                      ['x%05d|%d|1600000000000000000|420|2|successful|pending|-|-1'
                       % (i, i * 1000003) for i in range(300)], kids)
        expect_eq('the folders (%s)' % db[:10], ['successful'] * 3,
                  rows("SELECT traversal_status FROM src_nodes WHERE id IN (1000, 1001, 1002)"))
        for stats_q, rows_q in STATS_ROWS[:1] + STATS_ROWS[2:]:
            expect_eq('stats against rows (%s)' % db[:10], rows(rows_q), rows(stats_q))


def pgwriter():
    """tests/tools/pgwriter.c's binary."""
    tool = os.environ.get('PGWRITER') or os.path.join(
        os.path.dirname(tmtest.TREEMIG), 'tests', 'pgwriter')
    if not os.path.exists(tool):
        fail('no pgwriter at %s (set PGWRITER)' % tool)
    return tool


def check_set_kept(work):
    """A SET of a session (a worker's lock_timeout, its idle transaction
    timeout) outlives a lost connection: made again on the new one
    (tests/tools/pgwriter.c --set)."""
    tool = pgwriter()
    _, uri = new_db()
    cp = subprocess.run([tool, '--set', uri], env=dict(os.environ, **env()),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if cp.returncode != 0:
        fail('pgwriter --set: %s' % cp.stderr.decode(errors='replace'))
    expect_eq('the connection ended, then its lock_timeout on the new one',
              ['1', '4321ms'], cp.stdout.decode().split())


def check_values(work):
    """Every value a statement binds lands as bound, whichever way db_pg.c
    sends the rows (COPY, arrays through unnest(), a multi-row VALUES, one
    statement in the pipeline or waited for, named or not, UPDATE and
    DELETE as arrays): integers at their limits, -0.0, infinities, NaN, an
    integer into a double column, texts cut at a NUL or by their length,
    empty texts and blobs, every byte value, NULLs
    (tests/tools/pgwriter.c --values reads them back)."""
    tool = pgwriter()
    _, uri = new_db()
    cp = subprocess.run([tool, '--values', uri], env=dict(os.environ, **env()),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if cp.returncode != 0:
        fail('pgwriter --values: %s%s' % (cp.stdout.decode(errors='replace'),
                                          cp.stderr.decode(errors='replace')))
    expect_eq('rows read back as bound', ['ok', '1297'], cp.stdout.decode().split())


@tmtest.again_if_void
def check_lock_wait(work):
    """A command started while the session of the one before still holds
    the migration's lock (the server ends it a little after its process)
    waits for it, then runs: a psql session holds the lock for 0.5 s."""
    src = os.path.join(work, 'lwsrc')
    make_tree(src, 1, 1)
    dst = os.path.join(work, 'lwdst')
    os.mkdir(dst)
    name, uri = new_db()
    holder = subprocess.Popen(
        [os.path.join(PG.bin, 'psql'), '-X', '-q', '-h', PG.sock, '-p', str(PG.port),
         '-U', PG.user, '-d', name, '-c', 'SELECT pg_advisory_lock(1953327463)',
         '-c', 'SELECT pg_sleep(0.5)'],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(400):
            if PG.rows(name, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                       " AND objid = 1953327463 AND granted") == ['1']:
                break
            if holder.poll() is not None:
                fail('the lock holder ended early: %r' % holder.stderr.read())
            time.sleep(0.01)
        else:
            fail('the lock holder never held the lock')
        if holder.poll() is not None:
            tmtest.void('the lock holder ended before the command started')
        expect_rc(run(['discover', '--db', uri, '--quiet', '--config',
                       os.path.join(work, 'lw.yaml'), src, dst], env=env()),
                  0, 'discover while the lock is held for 0.5 s')
    finally:
        holder.wait()


def check_refusals(work):
    src = os.path.join(work, 'rsrc')
    make_tree(src, 2, 2)
    dst = os.path.join(work, 'rdst')
    os.mkdir(dst)
    name, uri = new_db()
    # a wrong password
    cp = run(['discover', '--db', uri, '--config', os.path.join(work, 'w.yaml'), src, dst],
             env={'PGPASSWORD': 'not-the-password'})
    expect_rc(cp, 2, 'a wrong password')
    if b'password authentication failed' not in cp.stderr:
        fail('no clear message for a wrong password: %s' % show(cp))
    expect_eq('tables after a wrong password', [], PG.rows(
        name, "SELECT table_name FROM information_schema.tables "
              "WHERE table_schema = 'public'"))
    if os.listdir(dst) or os.path.exists(os.path.join(work, 'w.yaml')):
        fail('a refused run left the destination or the YAML file')
    # a database that does not exist
    cp = run(['discover', '--db', PG.uri('nosuchdb'), '--config',
              os.path.join(work, 'w.yaml'), src, dst], env=env())
    expect_rc(cp, 2, 'a missing database')
    if b'does not exist' not in cp.stderr:
        fail('no clear message for a missing database: %s' % show(cp))
    # a database of another program
    other, ouri = new_db()
    PG.psql(other, 'CREATE TABLE accounts(id int PRIMARY KEY, owner text);'
                   "INSERT INTO accounts VALUES (1, 'alice')")
    for args in (['discover', '--db', ouri, '--config', os.path.join(work, 'w.yaml'),
                  src, dst], ['status', '--db', ouri], ['copy', '--db', ouri, '--yes']):
        cp = run(args, env=env())
        expect_rc(cp, 2, '%s on a database of another program' % args[0])
        if b'another program' not in cp.stderr or b'accounts' not in cp.stderr:
            fail('no clear message for a foreign database: %s' % show(cp))
    expect_eq('the foreign database afterwards', ['accounts|1|alice'], PG.rows(
        other, "SELECT table_name, id, owner FROM information_schema.tables, accounts"
               " WHERE table_schema = 'public'"))
    # an empty database without SRC DST: nothing to resume
    cp = run(['status', '--db', uri], env=env())
    expect_rc(cp, 2, 'status of an empty database')
    expect_eq('tables after status of an empty database', [], PG.rows(
        name, "SELECT table_name FROM information_schema.tables "
              "WHERE table_schema = 'public'"))


def check_password(work):
    """The password inline in the URI, no PGPASSWORD: every connection of
    the run (the writer's and the readers') needs it, and it must not show
    anywhere."""
    src = os.path.join(work, 'psrc')
    make_tree(src, 3, 3)
    name, _ = new_db()
    uri = PG.uri(name, password=True)
    cfg = os.path.join(work, 'pw.yaml')
    outs = []
    os.mkdir(os.path.join(work, 'pdst'))
    for args in (['discover', '--db', uri, '--config', cfg, src, os.path.join(work, 'pdst')],
                 ['copy', '--db', uri, '--yes'], ['verify', '--db', uri],
                 ['status', '--db', uri], ['review', '--db', uri]):
        cp = run(args)
        expect_rc(cp, 0, args[0] + ' with the password in the URI')
        outs.append(cp.stdout + cp.stderr)
    pw = PG.password.encode()
    with open(cfg, 'rb') as f:
        yaml = f.read()
    if pw in yaml:
        fail('the password is in the YAML file')
    if PG.uri(name).encode() not in yaml:
        fail('the YAML file does not record the URI without password: %r' % yaml)
    for o in outs:
        if pw in o:
            fail('the password is in treemig\'s output: %r' % o)
    dump = subprocess.run([os.path.join(PG.bin, 'pg_dump'), '-h', PG.sock, '-p',
                           str(PG.port), '-U', PG.user, '-d', name],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if dump.returncode != 0 or b'src_nodes' not in dump.stdout:
        fail('pg_dump: %r' % dump.stderr)
    if pw in dump.stdout:
        fail('the password is in the database')


NU_Q = ("SELECT path, name, type, size, mtime, depth, traversal_status, copy_status, "
        "conflict FROM src_nodes ORDER BY path")


def file_rows(path, sql):
    """The rows of sql on a state file, names as bytes."""
    con = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
    con.text_factory = bytes
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def check_non_utf8(work):
    """Names that are not UTF-8: a UTF8 database (initdb's) refuses the
    discovery, exit 1, with a message that names the first such name and
    says what holds it, the same again on a second run; a database made
    with ENCODING 'SQL_ASCII' keeps them byte for byte (its rows, through
    state-copy, equal a SQLite state file's)."""
    top = os.path.join(work, 'nonutf8')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    make_tree(src)
    make_tree(dst)
    bad = os.path.join(os.fsencode(src), b'caf\xe9-dir')
    os.mkdir(bad)
    with open(os.path.join(bad, b'f\xff.txt'), 'wb') as f:
        f.write(b'x')
    name, uri = new_db()
    yml = os.path.join(work, 'nu-utf8.yaml')
    for attempt in (1, 2):
        cp = run(['discover', '--db', uri, '--config', yml, '--quiet', src, dst], env=env())
        expect_rc(cp, 1, 'discover into a UTF8 database (run %d)' % attempt)
        for want in (b'not UTF-8', b'/caf\\xe9-dir', b'SQL_ASCII', b'encoding UTF8'):
            if want not in cp.stderr:
                fail('run %d: the message lacks %r: %r' % (attempt, want, cp.stderr[-600:]))
    PG.psql('postgres', "CREATE DATABASE nu_ascii TEMPLATE template0 ENCODING 'SQL_ASCII' "
            "LC_COLLATE 'C' LC_CTYPE 'C'")
    cp = run(['discover', '--db', PG.uri('nu_ascii'), '--config',
              os.path.join(work, 'nu-ascii.yaml'), '--quiet', src, dst], env=env())
    expect_rc(cp, 0, 'discover into a SQL_ASCII database')
    lite = os.path.join(work, 'nu-lite.db')
    expect_rc(run(['discover', '--db', lite, '--quiet', src, dst]), 0, 'discover on SQLite')
    back = os.path.join(work, 'nu-back.db')
    cp = run(['state-copy', '--quiet', '--config', back + '.yaml', PG.uri('nu_ascii'), back],
             env=env())
    expect_rc(cp, 0, 'state-copy of the SQL_ASCII database')
    a, b = file_rows(lite, NU_Q), file_rows(back, NU_Q)
    expect_eq('source rows, SQLite against PostgreSQL (SQL_ASCII)', a, b)
    names = [r[1] for r in b]
    for want in (b'caf\xe9-dir', b'f\xff.txt'):
        if want not in names:
            fail('the name %r is not in the database byte for byte: %r' % (want, names))


def main():
    global PG
    tmtest.require_binary()
    R = tmtest.Runner('test_pg')
    try:
        PG = pgserver.PgServer()
    except (RuntimeError, OSError) as e:
        R.skip('every case', 'no PostgreSQL server: %s' % e)
        R.finish()
    work = tempfile.mkdtemp(prefix='tm-pgtest-', dir='/tmp')
    only = os.environ.get('TEST_PG_ONLY')  # development: the checks to run
    if only:
        check = R.check
        R.check = lambda label, *a: check(label, *a) if only in label else None
    try:
        R.check('sim pair: the same state as SQLite', check_sim_pair, work)
        R.check('local pair: the same state as SQLite, rsync agrees', check_local_pair, work)
        R.check('a shared discovery makes its claims\' indexes over empty tables',
                check_claim_indexes, work)
        R.check('a pass: the same rows as on SQLite, then the copy sends what '
                'changed and delete removes what the source lost', check_pass, work)
        R.check('wrong password, missing and foreign database: exit 2, untouched',
                check_refusals, work)
        R.check('a password in the URI is nowhere', check_password, work)
        R.check('autovacuum leaves node tables alone while they are small',
                check_early_autovacuum, work)
        R.check('kill -9 in discovery and in copy, resume: nothing lost',
                check_kill_resume, work)
        R.check('state-copy SQLite -> PostgreSQL -> SQLite: every row equal',
                check_state_copy, work)
        R.check('review --list and copy --dry-run read their rows as they come',
                check_bounded_memory, work)
        R.check('names that are not UTF-8: a UTF8 database refuses them clearly, a '
                'SQL_ASCII one keeps them byte for byte', check_non_utf8, work)
        R.check('a name listed twice: inserted and counted once (the redo)',
                check_repeated_name, work)
        R.check('a SET outlives a lost connection', check_set_kept, work)
        R.check('values land as bound, whichever way their rows are sent',
                check_values, work)
        R.check('a lock held a moment longer is waited for', check_lock_wait, work)
        R.check('kill -9 at many points: only whole batches are durable',
                check_atomicity, work)
        R.check('server restarted mid-discovery and mid-copy: the same process '
                'reconnects and finishes', check_restart, work)
        R.check('server down for good: a clear error, resume finishes',
                check_restart_down, work)
        R.check("a COMMIT's answer lost with its connection: the outcome asked, "
                'nothing applied twice', check_lost_commit, work)
    finally:
        PG.stop()
        subprocess.run(['rm', '-rf', work])
    R.finish()


if __name__ == '__main__':
    main()
