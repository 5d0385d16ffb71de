#!/usr/bin/env python3
"""Discovery of simulated storages that misbehave (docs/sim.md, faults).

- 5% transient errors on both sides: the final state file equals the
  fault-free one row for row (attempts aside) and status equals sim-stats;
- permanently failing folders (permanent=, deny=) end `failed`, their
  destination twins `failed` "not compared", nothing below them is ever
  called not_on_src, and status equals sim-stats given src_permanent= /
  src_deny=;
- throttling (throttle=) happens (each throttled listing is logged at
  debug level) and is waited out without counting as an attempt;
- crash_after= kills the process with SIGKILL; running discover again until
  it completes yields the ground truth.
Stdlib only; TREEMIG names the binary."""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run, show  # noqa: E402

SHAPE = 'seed=21,depth=5,folders=8,files=6'
DST = SHAPE + ',world=dst,keep=0.85,extra=0.05,csize=0.03,cmtime=0.04,ctype=0.02'
SECTIONS = ('src', 'dst', 'copy')
COLS = ('path', 'type', 'size', 'mtime', 'mode', 'depth', 'traversal_status',
        'conflict', 'error')


def sim_stats(dst):
    cp = run(['sim-stats', dst])
    expect_rc(cp, 0, 'sim-stats ' + dst)
    return json.loads(cp.stdout)


def sql(db, q, *args):
    conn = tmtest.connect(db)
    try:
        return conn.execute(q, args).fetchall()
    finally:
        conn.close()


def discover(work, name, src, dst, *opts, rc=0):
    db = os.path.join(work, name + '.db')
    cp = run(['discover', '--db', db, '--quiet'] + list(opts) + [src, dst])
    if rc is not None:
        expect_rc(cp, rc, 'discover %s %s' % (src, dst))
    return db, cp


def expect_truth(db, truth, what):
    st = tmtest.status_json(db)
    expect_eq('%s: phase' % what, 'discovered', st['phase'])
    for k in SECTIONS:
        expect_eq('%s: status --json %s vs sim-stats' % (what, k), truth[k], st[k])


def rows(db):
    out = {}
    for table in ('src_nodes', 'dst_nodes'):
        extra = ', copy_status' if table == 'src_nodes' else ''
        out[table] = sql(db, 'SELECT %s%s FROM %s ORDER BY path'
                         % (', '.join(COLS), extra, table))
    return out


def check_transient(work):
    clean, _ = discover(work, 'clean', 'sim:' + SHAPE, 'sim:' + DST, '--workers', '8')
    faulty, _ = discover(work, 'transient', 'sim:%s,transient=0.05' % SHAPE,
                         'sim:%s,transient=0.05' % DST, '--workers', '8',
                         '--retries', '10')
    a, b = rows(clean), rows(faulty)
    for t in a:
        if a[t] != b[t]:
            diff = [(x, y) for x, y in zip(a[t], b[t]) if x != y][:5]
            fail('%s: the run with transient errors differs from the clean one '
                 '(%d vs %d rows), e.g. %r' % (t, len(a[t]), len(b[t]), diff))
    expect_truth(faulty, sim_stats('sim:' + DST), 'transient')
    retried = sql(faulty, "SELECT count(*) FROM src_nodes WHERE attempts > 1")[0][0]
    retried += sql(faulty, "SELECT count(*) FROM dst_nodes WHERE attempts > 1")[0][0]
    if retried == 0:
        fail('no folder needed a retry: were the transient errors injected?')
    print('     %d + %d rows equal; %d folders needed retries' % (
        len(a['src_nodes']), len(a['dst_nodes']), retried))


def check_failed_subtrees(db, truth, reason):
    failed = sql(db, "SELECT path, error FROM src_nodes WHERE traversal_status='failed' "
                     "AND depth > 0")
    expect_eq('failed source folders', truth['src']['failed'], len(failed))
    if not failed:
        fail('no source folder failed: the fault was not injected')
    for path, err in failed:
        if reason not in err:
            fail('%r: error %r does not say %r' % (path, err, reason))
        below = path + b'/%'
        n = sql(db, "SELECT count(*) FROM src_nodes WHERE path LIKE ?", below)[0][0]
        expect_eq('source rows below the failed %r' % path, 0, n)
        twin = sql(db, "SELECT traversal_status, error FROM dst_nodes WHERE path=?", path)
        if twin and twin[0][0] is not None and twin[0][0] != b'failed' and \
                twin[0][0] != b'successful':
            fail('%r: destination twin is %r' % (path, twin[0]))
        if twin and twin[0][0] == b'failed' and b'not compared' not in (twin[0][1] or b''):
            fail('%r: destination twin failed without "not compared": %r' % (path, twin[0]))
        nos = sql(db, "SELECT count(*) FROM dst_nodes WHERE path LIKE ? AND "
                      "traversal_status='not_on_src'", below)[0][0]
        expect_eq('not_on_src rows below the failed %r' % path, 0, nos)
        n = sql(db, "SELECT count(*) FROM dst_nodes WHERE path LIKE ?", below)[0][0]
        expect_eq('destination rows below the failed %r' % path, 0, n)


def check_permanent(work):
    src = 'sim:%s,permanent=0.08' % SHAPE
    dst = 'sim:%s,permanent=0.05' % DST
    db, cp = discover(work, 'permanent', src, dst, '--workers', '8', rc=3)
    truth = sim_stats(dst + ',src_permanent=0.08')
    expect_truth(db, truth, 'permanent')
    check_failed_subtrees(db, truth, b'injected permanent error')
    dfail = sql(db, "SELECT count(*) FROM dst_nodes WHERE traversal_status='failed' "
                    "AND error LIKE '%injected permanent error%'")[0][0]
    if dfail == 0:
        fail('no destination folder failed on its own')
    # the same spec fails the same folders in another run
    db2, _ = discover(work, 'permanent2', src, dst, '--workers', '3', rc=3)
    q = "SELECT path FROM src_nodes WHERE traversal_status='failed' ORDER BY path"
    expect_eq('failed folders of two runs', sql(db, q), sql(db2, q))


def check_deny(work):
    src = 'sim:%s,deny=/d1:/d3/d0' % SHAPE
    dst = 'sim:%s,deny=/d2' % DST
    db, _ = discover(work, 'deny', src, dst, '--workers', '4', rc=3)
    truth = sim_stats('sim:%s,deny=/d2,src_deny=/d1:/d3/d0' % DST)
    expect_truth(db, truth, 'deny')
    check_failed_subtrees(db, truth, b'permission denied')
    row = sql(db, "SELECT traversal_status, error FROM dst_nodes WHERE path='/d2'")
    if row and not (row[0][0] == b'failed' and b'permission denied' in row[0][1]):
        fail('/d2 on the destination: %r' % row)


def check_throttle(work):
    src = 'sim:' + SHAPE
    dst = 'sim:%s,throttle=400,burst=4' % DST
    # --log-level debug: each throttled listing is logged ("list P:
    # throttled, waiting N ms"), which proves the storage throttled and the
    # engine waited (16 workers against 4 listings at once cannot all pass)
    db, _ = discover(work, 'throttle', src, dst, '--workers', '16', '--log-level', 'debug')
    expect_truth(db, sim_stats(dst), 'throttle')
    n = sql(db, "SELECT count(*) FROM dst_nodes WHERE attempts > 1")[0][0]
    expect_eq('destination folders with attempts > 1 (throttling is no attempt)', 0, n)
    waits = sql(db, "SELECT queue, count(*) FROM logs WHERE message LIKE '%: throttled, "
                    "waiting % ms' GROUP BY queue")
    waits = {q.decode() if isinstance(q, bytes) else q: c for q, c in waits}
    if not waits.get('dst'):
        fail('no destination listing was throttled: is throttle= ignored? (log rows: %r)'
             % waits)
    expect_eq('throttled listings on the source (no throttle= there)', None, waits.get('src'))
    print('     %d throttled destination listings waited' % waits['dst'])


def check_crash(work):
    # latency=5 makes 150 listings take longer than the writer's commit
    # interval (100 ms), so that every run keeps some progress: with
    # instant listings the whole run fits in one uncommitted batch
    src = 'sim:%s,crash_after=150,latency=5' % SHAPE
    dst = 'sim:%s,crash_after=200,latency=5' % DST
    db = os.path.join(work, 'crash.db')
    crashes = 0
    for i in range(60):
        args = ['discover', '--db', db, '--quiet', '--workers', '4']
        cp = run(args + ([src, dst] if i == 0 else []))
        if cp.returncode == 0:
            break
        if cp.returncode != -9:
            fail('run %d: expected SIGKILL (-9) or success, got %s' % (i, show(cp)))
        crashes += 1
    else:
        fail('discovery did not complete after 60 runs of crash_after')
    if crashes == 0:
        fail('crash_after never fired')
    expect_truth(db, sim_stats(dst), 'after %d crashes' % crashes)
    print('     completed after %d crashes' % crashes)


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_sim_faults')
    work = tempfile.mkdtemp(prefix='treemig-simfaults-')
    try:
        r.check('5% transient errors: state equals the fault-free one',
                check_transient, work)
        r.check('permanent errors: failed folders, no not_on_src below',
                check_permanent, work)
        r.check('deny: permission denied subtrees', check_deny, work)
        r.check('throttle: waited out, not counted as attempts', check_throttle, work)
        r.check('crash_after: SIGKILL, then resume to the ground truth',
                check_crash, work)
    finally:
        shutil.rmtree(work, True)
    r.finish()


if __name__ == '__main__':
    main()
