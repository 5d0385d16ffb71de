#!/usr/bin/env python3
"""Discovery of simulated storage pairs against their ground truth.

For several seeds and shapes, `treemig status --json` after a discovery of a
sim pair must equal `treemig sim-stats DST` exactly (src, dst, copy), and
the state file's rows must agree with its extra numbers (conflicts by kind,
missing, destination-only). The same spec must give the same rows with 1 and
with 16 workers. Bad specs are refused with exit 2 and a message naming the
parameter. Stdlib only; TREEMIG names the binary."""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run, show  # noqa: E402

DST_KEYS = 'world=dst,keep=0.85,extra=0.05,csize=0.03,cmtime=0.04,ctype=0.02,cmode=0.03'

SHAPES = [
    ('seed=1,depth=5,folders=8', DST_KEYS),
    ('seed=7,depth=6,folders=6,files=5,decay=0.9,names=mixed', DST_KEYS),
    ('seed=42,depth=3,folders=40,files=30,tail=1.2,max_files=5000',
     'world=dst,keep=0.5,extra=0.5,extra_folders=0.5,ctype=0.1'),
    ('seed=3,depth=7,folders=3,files=2,decay=1.1,tail=3',
     'world=dst,keep=1,extra=0,csize=0.2,cmtime=0.3,ctype=0.1,cmode=0.2,dst_seed=9'),
    ('seed=5,depth=4,folders=10,files=10', 'world=dst,keep=0,extra=1'),
    ('seed=5,depth=4,folders=10,files=10', 'world=dst,keep=1,extra=0,csize=0,'
     'cmtime=0,ctype=0'),
]

SECTIONS = ('src', 'dst', 'copy')


def sim_stats(dst):
    cp = run(['sim-stats', dst])
    expect_rc(cp, 0, 'sim-stats %s' % dst)
    try:
        return json.loads(cp.stdout)
    except ValueError:
        fail('sim-stats output is not JSON: %r' % cp.stdout[:500])


def discover(work, name, src, dst, *opts):
    db = os.path.join(work, name + '.db')
    cp = run(['discover', '--db', db, '--quiet'] + list(opts) + [src, dst])
    return db, cp


def sql(db, q):
    conn = tmtest.connect(db)
    try:
        return conn.execute(q).fetchall()
    finally:
        conn.close()


def check_rows_against_truth(db, truth):
    """The extras of sim-stats, recomputed from the rows."""
    got = {k: 0 for k in ('size', 'mtime', 'dst_newer', 'type', 'attrs')}
    for cf, n in sql(db, 'SELECT conflict, count(*) FROM src_nodes WHERE depth>0 '
                         'AND conflict IS NOT NULL GROUP BY conflict'):
        got[cf.decode()] = n
    expect_eq('conflicts by kind', truth['conflicts'], got)
    for what, q in (('missing', "src_nodes WHERE copy_status='pending' AND "
                                "conflict IS NULL AND depth>0"),
                    ('dst_only', "dst_nodes WHERE traversal_status='not_on_src'")):
        f, fi, b = sql(db, "SELECT count(*) FILTER (WHERE type='folder'), "
                           "count(*) FILTER (WHERE type='file'), "
                           "coalesce(sum(size) FILTER (WHERE type='file'), 0) FROM " + q)[0]
        expect_eq(what, truth[what], {'folders': f, 'files': fi, 'bytes': b})
    # the destination twin of a listed source folder is listed once
    n = sql(db, "SELECT count(*) FROM dst_nodes WHERE type='folder' AND "
                "attempts > 0")[0][0]
    expect_eq('destination listings', truth['listings']['dst'], n)


def check_shape(work, i, shape, dst_keys):
    src = 'sim:' + shape
    dst = 'sim:%s,%s' % (shape, dst_keys)
    truth = sim_stats(dst)
    if truth['worlds']['src']['folders'] + truth['worlds']['src']['files'] < 50:
        fail('shape %r is too small to test anything: %r' % (shape, truth['worlds']))
    db, cp = discover(work, 'shape%d' % i, src, dst, '--workers', '8')
    expect_rc(cp, 0, 'discover %s %s' % (src, dst))
    st = tmtest.status_json(db)
    expect_eq('phase', 'discovered', st['phase'])
    for k in SECTIONS:
        expect_eq('status --json %s vs sim-stats (%s)' % (k, shape), truth[k], st[k])
    check_rows_against_truth(db, truth)
    print('     %s: %d src + %d dst rows, %d conflicts, %d not_on_src' % (
        shape, truth['src']['folders'] + truth['src']['files'],
        truth['dst']['folders'] + truth['dst']['files'], truth['copy']['conflicts'],
        truth['dst']['not_on_src']))


NODE_COLS = ('path', 'type', 'size', 'mtime', 'mode', 'depth', 'traversal_status',
             'copy_status', 'conflict', 'error')


def rows_by_path(db, table):
    cols = ', '.join(c for c in NODE_COLS if table == 'src_nodes' or c != 'copy_status')
    if table == 'dst_nodes':
        q = ('SELECT %s, (SELECT s.path FROM src_nodes s WHERE s.id = d.src_id) '
             'FROM dst_nodes d ORDER BY path' % ', '.join('d.' + c for c in cols.split(', ')))
    else:
        q = 'SELECT %s FROM src_nodes ORDER BY path' % cols
    return sql(db, q)


def check_workers(work):
    shape = 'seed=11,depth=5,folders=7,files=6,names=mixed'
    src, dst = 'sim:' + shape, 'sim:%s,%s' % (shape, DST_KEYS)
    dbs = []
    for w in (1, 16):
        db, cp = discover(work, 'w%d' % w, src, dst, '--workers', str(w))
        expect_rc(cp, 0, 'discover with %d workers' % w)
        dbs.append(db)
    for table in ('src_nodes', 'dst_nodes'):
        a, b = rows_by_path(dbs[0], table), rows_by_path(dbs[1], table)
        if a != b:
            diff = [(x, y) for x, y in zip(a, b) if x != y][:5]
            fail('%s differ between 1 and 16 workers (%d vs %d rows), e.g. %r'
                 % (table, len(a), len(b), diff))
    print('     %d + %d rows identical' % (len(a), len(b)))


def check_bad_specs(work):
    """Malformed specs: sim-stats and discover exit 2 (usage) naming the key."""
    cases = [
        ('sim:seed=1,depth=99', 'depth'),
        ('sim:seed=1,frobnicate=2', 'frobnicate'),
        ('sim:seed=1,keep=2', 'keep'),
        ('sim:seed=1,deny=nope', 'deny'),
    ]
    for spec, key in cases:
        for args in (['sim-stats', spec + ',world=dst'],
                     ['discover', '--db', os.path.join(work, 'bad.db'), '-q', spec,
                      'sim:seed=1,world=dst']):
            cp = run(args)
            if cp.returncode != 2 or key.encode() not in cp.stderr:
                fail('%r: expected exit 2 and a message naming %r, got %s'
                     % (args, key, show(cp)))
    cp = run(['sim-stats', 'sim:seed=1'])
    if cp.returncode != 2 or b'world=dst' not in cp.stderr:
        fail('sim-stats of a source spec: expected exit 2 naming world=dst, got '
             + show(cp))


def check_stats_deterministic(work):
    spec = 'sim:seed=77,depth=6,folders=9,world=dst'
    a, b = run(['sim-stats', spec]), run(['sim-stats', spec])
    expect_rc(a, 0)
    expect_eq('sim-stats twice', a.stdout, b.stdout)


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_sim_truth')
    work = tempfile.mkdtemp(prefix='treemig-simtruth-')
    try:
        for i, (shape, keys) in enumerate(SHAPES):
            r.check('status equals sim-stats: %s | %s' % (shape, keys),
                    check_shape, work, i, shape, keys)
        r.check('1 and 16 workers record the same rows', check_workers, work)
        r.check('bad specs are refused, naming the parameter', check_bad_specs, work)
        r.check('sim-stats is deterministic', check_stats_deterministic, work)
    finally:
        shutil.rmtree(work, True)
    r.finish()


if __name__ == '__main__':
    main()
