#!/usr/bin/env python3
"""Passes, `treemig rescan` (issue 19, "The cutover"), local to local.

- pass 1: discover, exclude a folder with `treemig exclude`, copy, verify;
  then the source changes (a file added, one grown, one touched, one
  deleted, a folder renamed, a file added below the excluded folder) and a
  destination file is edited; `rescan` starts pass 2 in the same state
  file and says what changed (new, changed, deleted on the source; changed
  on the destination since copied; review --list new, changed and edited
  list them; what is excluded is not new: the file below the excluded
  folder is listed as excluded only), the exclusion carries over, `copy`
  copies only that: the unchanged destination files keep their inode
  numbers; after `delete --yes` the destination equals the source (the
  oracle is `rsync -aHAXn --itemize-changes --delete`, with the excluded
  folder excluded), and verify passes; status and the YAML file give the
  pass number and its start;
- rescan on a migration whose discovery is not complete is refused;
- kill -9 during the discovery of a pass (10,000 files) at several points
  (just after it started, while the source is listed, while the
  destination is listed): rescan again resumes it (no third pass) and
  leaves the state file as an uninterrupted pass over a copy of the same
  state file does (every node row, the previous pass's rows, the stats),
  and the copy then makes the destination equal to the source; the kills
  land by the pass's watermarks (settings pass_src_frontier and
  pass_dst_frontier), a file is touched in every folder (a folder a
  resume skipped would keep its old row), and the resume lists again at
  most 8 folders the killed run had listed above its watermark;
- a folder whose listing fails in a pass: its subtree is not listed (the
  fault layer counts the listings), the next pass lists it all;
- schema 11 to 14: rescan upgrades a state file (the folder indexes a
  pass reads its frontier by; the indexes that name traversal_status
  dropped) and finds what changed;
- a pass over a folder of 6,000 files listed in many pages, with names
  added, removed, grown and turned folders between the old ones, leaves
  the rows (path, type, size, mtime, mode) a new discovery of the same
  pair makes, says what changed, and the stats count the rows;
- a pass over an uneven tree of 5 levels (folders listed again in
  another order than their ids) ends, and finds nothing changed;
- a pass after 1% of the source changed (rewritten, touched, added,
  deleted) keeps the files copied before and unchanged `successful`, leaves to copy exactly what `rsync -ani --delete` lists, keeps
  in prev_src_nodes only the rows that changed, writes few rows, and the
  copy copies only that (the other files keep their inode numbers).
Stdlib only; TREEMIG names the binary."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run  # noqa: E402

OLD = 978307200 * 10**9


put = tmtest.put_file


rsync_lines = tmtest.rsync_delete_lines


def inodes(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = os.lstat(p).st_ino
    return out


def rows_of(db, sql):
    """The rows of one query on the state file db."""
    c = sqlite3.connect(db)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def passes(db):
    return [r[0] for r in rows_of(db, 'SELECT n FROM passes ORDER BY n')]


def case_dirs(work, name):
    """A case's folder under work: (it, its src and dst paths, its state
    file's path); dst is made empty, src is left to the case."""
    top = os.path.join(work, name)
    dst = os.path.join(top, 'dst')
    os.makedirs(dst)
    return top, os.path.join(top, 'src'), dst, os.path.join(top, 'state.db')


def run_pass(R, work):
    def check():
        top, src, dst, db = case_dirs(work, 'pass')
        for i in range(20):
            put(src, 'keep/f%02d' % i, b'k' * i)
        put(src, 'a/grows', b'small')
        put(src, 'a/touched', b'same size')
        put(src, 'a/goes', b'deleted later')
        put(src, 'old-name/x', b'in a folder renamed later')
        put(src, 'old-name/sub/y', b'deeper')
        put(src, 'skip/s1', b'excluded')
        put(src, 'edited-on-dst', b'source version')
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['exclude', '--db', db, '--quiet', '/skip']), 0, 'exclude /skip')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')
        before = inodes(dst)
        cp = run(['rescan', '--db', db])
        expect_rc(cp, 0, 'rescan with nothing changed')
        if b'0 new, 0 changed, 0 deleted' not in cp.stderr:
            fail('rescan with nothing changed', '0 new, 0 changed, 0 deleted',
                 cp.stderr.decode())
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy (nothing)')
        expect_eq('inodes after a pass that found nothing', before, inodes(dst))
        # the source changes, and one destination file
        put(src, 'a/new', b'added')
        put(src, 'a/grows', b'grown bigger now')
        put(src, 'a/touched', b'same size', OLD + 10**9)
        os.unlink(os.path.join(src, 'a/goes'))
        os.rename(os.path.join(src, 'old-name'), os.path.join(src, 'new-name'))
        put(src, 'skip/s2', b'excluded too')
        put(dst, 'edited-on-dst', b'edited on the destination', OLD + 5 * 10**9)
        cp = run(['rescan', '--db', db])
        expect_rc(cp, 0, 'rescan')
        # new: a/new, new-name, new-name/x, new-name/sub, new-name/sub/y
        # (skip/s2 is excluded, not new); changed: a/grows, a/touched;
        # deleted: a/goes, old-name
        # and its 3 nodes; on the destination: edited-on-dst
        want = (b'3 passes' if False else
                b'on the source 5 new, 2 changed, 5 deleted; on the destination '
                b'1 changed since copied')
        if want not in cp.stderr:
            fail('what rescan says changed', want.decode(), cp.stderr.decode())
        expect_eq('the passes', [1, 2, 3], passes(db))
        with open(db + '.yaml') as f:
            yml = f.read()
        if '\npass: 3\n' not in yml or '\npass_started: "' not in yml:
            fail('the YAML file does not say pass 3 and when it started', None, yml)
        cp = run(['status', '--db', db])
        if b'pass         3, started ' not in cp.stdout:
            fail('status does not show pass 3', None, cp.stdout.decode())
        for kind, want in (
                ('new', [b'/a/new', b'/new-name', b'/new-name/sub', b'/new-name/sub/y',
                         b'/new-name/x']),
                ('changed', [b'/a/grows', b'/a/touched']),
                ('edited', [b'/edited-on-dst'])):
            cp = run(['review', '--db', db, '--list', kind])
            expect_rc(cp, 0, 'review --list %s' % kind)
            expect_eq('review --list %s' % kind, want,
                      sorted(x.split(b'\t')[3] for x in cp.stdout.split(b'\n') if x))
        cp = run(['review', '--db', db, '--list', 'excluded'])
        expect_rc(cp, 0, 'review --list excluded')
        exc = sorted(x.split(b'\t')[3] for x in cp.stdout.split(b'\n') if x)
        expect_eq('the exclusion carried over', [b'/skip', b'/skip/s1', b'/skip/s2'],
                  exc)
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy pass 3')
        after = inodes(dst)
        for rel, ino in before.items():
            if rel.startswith('keep/') and after.get(rel) != ino:
                fail('%s was copied again although it did not change' % rel,
                     ino, after.get(rel))
        if after.get('a/grows') == before.get('a/grows'):
            fail('a/grows changed but was not copied')
        expect_eq('edited-on-dst copied again', b'source version',
                  open(os.path.join(dst, 'edited-on-dst'), 'rb').read())
        if os.path.exists(os.path.join(dst, 'skip')):
            fail('the excluded folder was copied in the new pass')
        expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify pass 3')
        expect_rc(run(['delete', '--db', db, '--yes', '--quiet']), 0, 'delete')
        expect_eq('rsync --delete --exclude /skip', [],
                  rsync_lines(src, dst, ['--exclude', '/skip']))
    R.check('a new pass finds what changed, copies only that, and with delete '
            'makes the destination equal the source', check)

    def refused():
        top = os.path.join(work, 'refused')
        src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
        os.makedirs(src)
        os.makedirs(dst)
        db = os.path.join(top, 'state.db')
        cp = run(['rescan', '--db', db])
        expect_rc(cp, 2, 'rescan without a state file')
        put(src, 'f', b'1')
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        c = sqlite3.connect(db)
        try:
            c.execute("UPDATE migration SET value = 'copying' WHERE key = 'phase'")
            c.commit()
        finally:
            c.close()
        expect_rc(run(['rescan', '--db', db]), 2, 'rescan while a copy is under way')
    R.check('rescan is refused without a finished discovery', refused)


def copy_state(db, to):
    """A copy of the state file db (SQLite's backup) at to, its YAML file
    beside it: the same migration, at the same point."""
    for x in (to, to + '-wal', to + '-shm', to + '.yaml', to + '.lock'):
        if os.path.exists(x):
            os.unlink(x)
    a, b = sqlite3.connect(db), sqlite3.connect(to)
    try:
        a.backup(b)
        b.execute("UPDATE migration SET value = ? WHERE key = 'config'",
                  (to + '.yaml',))
        b.commit()
    finally:
        a.close()
        b.close()
    shutil.copyfile(db + '.yaml', to + '.yaml')


def state_of(db):
    """What a pass leaves in the state file, by path (ids may differ): the
    node rows, the previous pass's rows, the stats, the passes, and whether
    the stats count the rows exactly."""
    c = sqlite3.connect(db)
    try:
        q = lambda sql: sorted(tuple(r) for r in c.execute(sql))
        out = {
            'src': q("SELECT path, type, size, mtime, mode, traversal_status, "
                     "copy_status, coalesce(conflict, ''), coalesce(error, '') "
                     "FROM src_nodes"),
            'dst': q("SELECT d.path, d.type, d.size, d.mtime, d.traversal_status, "
                     "coalesce(d.conflict, ''), coalesce(s.path, '') FROM dst_nodes d "
                     "LEFT JOIN src_nodes s ON s.id = d.src_id"),
            'prev': q("SELECT path, type, size, mtime, copy_status, "
                      "coalesce(conflict, '') FROM prev_src_nodes"),
            'src_stats': q("SELECT depth, type, traversal_status, sum(count), "
                           "sum(bytes) FROM src_stats GROUP BY 1, 2, 3 "
                           "HAVING sum(count) != 0"),
            'copy_stats': q("SELECT depth, type, copy_status, conflict, sum(count), "
                            "sum(bytes) FROM copy_stats GROUP BY 1, 2, 3, 4 "
                            "HAVING sum(count) != 0"),
            'dst_stats': q("SELECT depth, type, traversal_status, sum(count), "
                           "sum(bytes) FROM dst_stats GROUP BY 1, 2, 3 "
                           "HAVING sum(count) != 0"),
            'passes': q("SELECT n FROM passes WHERE ended IS NOT NULL"),
            'running': q("SELECT value FROM migration WHERE key = 'pass_running'"),
        }
        exact = q("SELECT depth, type, traversal_status, count(*), sum(size) FROM "
                  "src_nodes GROUP BY 1, 2, 3")
        if exact != out['src_stats']:
            fail('src_stats does not count src_nodes', exact, out['src_stats'])
        exact = q("SELECT depth, type, copy_status, conflict IS NOT NULL, count(*), "
                  "sum(size) FROM src_nodes GROUP BY 1, 2, 3, 4")
        if exact != out['copy_stats']:
            fail('copy_stats does not count src_nodes', exact, out['copy_stats'])
        exact = q("SELECT depth, type, traversal_status, count(*), sum(size) FROM "
                  "dst_nodes GROUP BY 1, 2, 3")
        if exact != out['dst_stats']:
            fail('dst_stats does not count dst_nodes', exact, out['dst_stats'])
        return out
    finally:
        c.close()


def scalar(db, sql):
    c = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=5)
    try:
        r = c.execute(sql).fetchone()
        return r[0] if r else None
    finally:
        c.close()


# A pass's watermark of a side (discover.c): "DEPTH BELOW", recorded with
# the listings it covers: every folder of DEPTH below the id BELOW, and
# every folder above DEPTH, is listed in this pass.
def frontier_sql(side):
    return "(SELECT value FROM migration WHERE key = 'pass_%s_frontier')" % side


def inside_depth1(side):
    """True while the watermark of side is inside depth 1: some of its
    folders listed (durably), not all."""
    v = frontier_sql(side)
    below = "CAST(substr(%s, 3) AS INTEGER)" % v
    return ("SELECT %s LIKE '1 %%' AND %s > (SELECT min(id) FROM %s_nodes WHERE "
            "depth = 1 AND type = 'folder') AND %s <= (SELECT max(id) FROM %s_nodes "
            "WHERE depth = 1 AND type = 'folder')" % (v, below, side, below, side))


# Where a pass is killed: a query of the state file, true at that point.
KILL_POINTS = (
    ('just after the pass started',
     "SELECT (SELECT value FROM migration WHERE key = 'pass_running') != '0' AND "
     "coalesce(%s, '0 0') LIKE '0 %%'" % frontier_sql('src')),
    ('while the source is listed', inside_depth1('src')),
    ('while the destination is listed', inside_depth1('dst')),
)


def listed_at_kill(db, side):
    """The folders of side a pass killed on db listed durably by its
    watermark: those of the depths above it, and of its depth below it."""
    v = scalar(db, "SELECT value FROM migration WHERE key = 'pass_%s_frontier'" % side)
    depth, below = (int(x) for x in (v or '0 0').split())
    if depth < 0:
        return None  # the side was done
    return scalar(db, "SELECT count(*) FROM %s_nodes WHERE type = 'folder' AND "
                  "traversal_status IN ('pending', 'successful', 'failed') AND "
                  "(depth < %d OR (depth = %d AND id < %d))"
                  % (side, depth, depth, below))


def listed_by_last_run(db, side):
    """The folders of side the last discovery run on db listed (its last
    queue snapshot)."""
    return scalar(db, "SELECT done FROM queue_stats WHERE queue = '%s' ORDER BY id "
                  "DESC LIMIT 1" % side)


def kill_rescan(db, when):
    """Runs rescan on db and kills it (-9) once the query when is true;
    returns whether it was killed (else it ended first)."""
    p = subprocess.Popen([os.fsencode(tmtest.TREEMIG), b'rescan', b'--db',
                          os.fsencode(db), b'--quiet'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        while p.poll() is None:
            try:
                hit = scalar(db, when)
            except sqlite3.OperationalError:
                continue
            if hit:
                p.send_signal(signal.SIGKILL)
                break
    finally:
        if p.poll() is None:
            p.wait()
    return p.returncode == -signal.SIGKILL


def run_kill(R, work):
    top = os.path.join(work, 'kill')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    base = os.path.join(top, 'base.db')

    def setup():
        os.makedirs(dst)
        for i in range(200):
            for j in range(50):
                put(src, 'd%03d/f%02d' % (i, j), b'v1')
        expect_rc(run(['discover', '--db', base, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['copy', '--db', base, '--yes', '--quiet']), 0, 'copy')
        for i in range(0, 200, 7):
            put(src, 'd%03d/f00' % i, b'version 2')
        for i in range(3, 200, 50):
            os.unlink(os.path.join(src, 'd%03d/f01' % i))
        shutil.rmtree(os.path.join(src, 'd150'))
        put(src, 'd199/new', b'new')
        put(src, 'd200/new', b'new folder')
        put(dst, 'd100/f05', b'edited on the destination', OLD + 7 * 10**9)
        # a file touched in every folder: a folder a resume skips (the
        # watermark past it) leaves its old row, which the comparison
        # with an uninterrupted pass finds
        for i in range(200):
            if i != 150:
                os.utime(os.path.join(src, 'd%03d/f49' % i), ns=(OLD, OLD + (i + 1) * 10**9))
    R.check('a pair for the kills', setup)

    ref = os.path.join(top, 'ref.db')

    def reference():
        copy_state(base, ref)
        expect_rc(run(['rescan', '--db', ref, '--quiet']), 0, 'rescan uninterrupted')
        st = state_of(ref)
        expect_eq('the passes ended (the first has no end time)', [(2,)], st['passes'])
        # the previous pass's rows: only what changed (29 files rewritten,
        # 199 touched, 4 deleted, d150 and its 50 files, the 33 folders
        # whose mtime changed; d100/f05 changed on the destination), not
        # every row
        prev = [r[0] for r in st['prev']]
        if '/d000/f00' not in prev or '/d150' not in prev or '/d100/f05' not in prev:
            fail('prev_src_nodes lacks a changed row', None, prev)
        if '/d000/f02' in prev or len(prev) > 400:
            fail('prev_src_nodes holds unchanged rows (%d rows)' % len(prev), None,
                 prev[:20])
    R.check('an uninterrupted pass over a copy of the state file', reference)

    for name, when in KILL_POINTS:
        def check(name=name, when=when):
            db = os.path.join(top, 'killed.db')
            killed = False
            for attempt in range(20):
                copy_state(base, db)
                if kill_rescan(db, when):
                    killed = True
                    break
            if not killed:
                fail('rescan always ended before it could be killed %s' % name)
            cp = run(['status', '--db', db])
            expect_rc(cp, 0, 'status after the kill')
            done = {side: listed_at_kill(db, side) for side in ('src', 'dst')}
            expect_rc(run(['rescan', '--db', db, '--quiet']), 0, 'rescan again')
            # listed again: what was listed before the kill above the
            # watermark (out of id order: at most the listings in flight
            # beside the one it stops at)
            for side in ('src', 'dst'):
                if done[side] is None:
                    continue
                left = listed_by_last_run(ref, side) - done[side]
                redo = listed_by_last_run(db, side) - left
                print('     %s: %d folders left by the watermark, %d listed again'
                      % (side, left, redo))
                if redo < 0 or redo > 8:
                    fail('the resume of the %s side listed %d folders for %d left '
                         'by the watermark' % (side, redo + left, left))
            got, want = state_of(db), state_of(ref)
            for k in sorted(want):
                if got[k] != want[k]:
                    a, b = set(got[k]), set(want[k])
                    fail('%s after a kill %s and a resume, against an '
                         'uninterrupted pass' % (k, name),
                         sorted(b - a)[:10], sorted(a - b)[:10])
        R.check('kill -9 %s: rescan again resumes the pass, and leaves what an '
                'uninterrupted one does' % name, check)

    def finish():
        db = os.path.join(top, 'killed.db')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')
        expect_rc(run(['delete', '--db', db, '--yes', '--quiet']), 0, 'delete')
        expect_eq('rsync --delete', [], rsync_lines(src, dst))
    R.check('after a killed pass, the copy and the mirror make the destination '
            'equal the source', finish)


def rsync_items(src, dst):
    """rsync's itemized list of what differs (-ani --delete): the files it
    would send, the names it would delete."""
    cp = subprocess.run(['rsync', '-ani', '--delete', os.fsencode(src) + b'/',
                         os.fsencode(dst) + b'/'], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=tmtest.TIMEOUT)
    if cp.returncode != 0:
        fail('rsync -ani --delete exited %d' % cp.returncode, None, cp.stderr[-300:])
    send, gone = set(), set()
    for x in cp.stdout.decode('utf-8', 'replace').split('\n'):
        if x.startswith('>f'):
            send.add('/' + x[12:])
        elif x.startswith('*deleting'):
            gone.add('/' + x[12:].strip().rstrip('/'))
    return send, gone


def run_upgrade(R, work):
    def check():
        # a state file of schema version 11 (no index of the folders by
        # depth and id, which a pass reads its frontier by, nor of the
        # pending destination folders by their twins) is brought to
        # version 13 by rescan, and the pass finds what changed
        top, src, dst, db = case_dirs(work, 'v11')
        for i in range(20):
            put(src, 'd%02d/e/f' % i, b'v1')
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        c = sqlite3.connect(db)
        try:
            c.execute('DROP INDEX src_nodes_folders')
            c.execute('DROP INDEX dst_nodes_folders')
            # what version 11 had and version 14 drops: the indexes that
            # name traversal_status
            c.execute("CREATE INDEX src_nodes_frontier ON src_nodes(depth, id) "
                      "WHERE traversal_status = 'pending' AND type = 'folder'")
            c.execute("CREATE INDEX dst_nodes_frontier ON dst_nodes(depth, id) "
                      "WHERE traversal_status = 'pending' AND type = 'folder'")
            c.execute("CREATE INDEX dst_nodes_extra ON dst_nodes(depth, id) "
                      "WHERE traversal_status = 'not_on_src'")
            c.execute('PRAGMA user_version = 11')
            c.commit()
        finally:
            c.close()
        put(src, 'd07/e/f', b'version 2')
        cp = run(['rescan', '--db', db])
        expect_rc(cp, 0, 'rescan of a version 11 state file')
        if b'0 new, 1 changed, 0 deleted' not in cp.stderr:
            fail('rescan after the upgrade', '0 new, 1 changed, 0 deleted',
                 cp.stderr.decode())
        expect_eq('schema version after the rescan', 14,
                  scalar(db, 'PRAGMA user_version'))
        expect_eq('the folder indexes (none names traversal_status)',
                  ['dst_nodes_folders', 'src_nodes_folders'],
                  [r[0] for r in rows_of(db, "SELECT name FROM sqlite_master WHERE "
                                         "name LIKE '%_nodes_folders' OR name "
                                         "LIKE '%_nodes_frontier' OR name IN "
                                         "('dst_nodes_twin', 'dst_nodes_extra') "
                                         "ORDER BY 1")])
        state_of(db)  # the stats count the rows
    R.check('schema 11 to 14: rescan upgrades a state file and finds what changed',
            check)


def fault_lists(stderr, root):
    """The list calls the fault layer counted on root (TREEMIG_FAULT_REPORT:
    a line per storage opened; the discovery's is the one that lists)."""
    n = [int(line.split('list=')[1].split()[0])
         for line in stderr.decode('utf-8', 'replace').splitlines()
         if line.startswith('treemig fault counts %s: list=' % root)]
    if not n:
        fail('no fault counts of %s' % root, None, stderr.decode()[-500:])
    return max(n)


def run_failed(R, work):
    def check():
        # a folder whose listing fails in a pass: its subtree is not
        # listed (its child folders listed before become pending, so the
        # frontier, folders under a parent listed in this pass, does not
        # take their children for listable); the next pass lists it all
        top, src, dst, db = case_dirs(work, 'failed')
        put(src, 'a/b/c/d/f', b'v1')
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        expect_rc(run(['rescan', '--db', db, '--quiet']), 0, 'rescan')
        cp = run(['rescan', '--db', db, '--quiet'],
                 env={'TREEMIG_FAULT_SRC': 'list@2=eacces', 'TREEMIG_FAULT_REPORT': '1'})
        expect_rc(cp, 3, 'rescan with the listing of /a failing')
        expect_eq('source listings of the pass (the root, /a)', 2,
                  fault_lists(cp.stderr, src))
        expect_eq('the source folders after it',
                  [('/', 'successful'), ('/a', 'failed'), ('/a/b', 'pending'),
                   ('/a/b/c', 'successful'), ('/a/b/c/d', 'successful')],
                  rows_of(db, "SELECT path, traversal_status FROM src_nodes WHERE "
                          "type = 'folder' ORDER BY path"))
        state_of(db)  # the stats count the rows
        cp = run(['rescan', '--db', db], env={'TREEMIG_FAULT_SRC': '',
                                              'TREEMIG_FAULT_REPORT': '1'})
        expect_rc(cp, 0, 'rescan without the fault')
        expect_eq('source listings of the next pass', 5, fault_lists(cp.stderr, src))
        expect_eq('source folders not listed after it', [],
                  rows_of(db, "SELECT path FROM src_nodes WHERE type = 'folder' AND "
                          "traversal_status != 'successful'"))
        state_of(db)
    R.check('a folder whose listing fails in a pass: its subtree is not listed, '
            'the next pass lists it', check)


def run_uneven(R, work):
    def check():
        import random
        top, src, dst, db = case_dirs(work, 'uneven')
        rnd = random.Random(19)
        folders = ['']
        for depth in range(1, 6):
            kids = []
            for f in folders:
                for k in range(rnd.choice((0, 0, 1, 2, 3, 5))):
                    kids.append('%s/d%d_%d' % (f, depth, k))
            folders = kids or folders
            for f in kids:
                os.makedirs(src + f, exist_ok=True)
                for j in range(int(rnd.paretovariate(1.2)) % 400):
                    put(src, '%s/f%d' % (f[1:], j), b'u')
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        # new files in a few folders: their listings take longer now, and
        # the folders below them turn pending after later ids did
        for f in folders[:40:3]:
            for j in range(300):
                put(src, '%s/late%03d' % (f[1:], j), b'late')
        expect_rc(run(['rescan', '--db', db, '--quiet', '--workers', '8']), 0,
                  'rescan of an uneven tree')
        cp = run(['rescan', '--db', db, '--workers', '8'])
        expect_rc(cp, 0, 'rescan of an uneven tree, nothing changed')
        if b'0 new, 0 changed, 0 deleted' not in cp.stderr:
            fail('rescan with nothing changed', '0 new, 0 changed, 0 deleted',
                 cp.stderr.decode())
        state_of(db)  # the stats count the rows
    R.check('a pass over an uneven tree ends (folders turn pending behind '
            'their depth\'s cursor) and then finds nothing changed', check)


def run_one_percent(R, work):
    def check():
        top, src, dst, db = case_dirs(work, 'onepct')
        for i in range(20):
            for j in range(100):
                put(src, 'd%02d/f%03d' % (i, j), b'one %d %d' % (i, j))
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        first = int(scalar(db, "SELECT value FROM migration WHERE key = 'rows_written'"))
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        # the pass after the copy records the destination's new files
        expect_rc(run(['rescan', '--db', db, '--quiet']), 0, 'rescan after the copy')
        before = inodes(dst)
        # 1% of the 2,000 files: 8 rewritten, 6 touched, 4 added, 2 deleted
        rewritten = ['/d%02d/f%03d' % (i, 7) for i in range(0, 16, 2)]
        touched = ['/d%02d/f%03d' % (i, 9) for i in range(1, 13, 2)]
        added = ['/d%02d/new' % i for i in (3, 5, 7, 19)]
        deleted = ['/d04/f050', '/d11/f099']
        for p in rewritten:
            put(src, p[1:], b'rewritten, longer than before')
        for p in touched:
            os.utime(os.path.join(src, p[1:]), ns=(OLD + 10**9, OLD + 10**9))
        for p in added:
            put(src, p[1:], b'added')
        for p in deleted:
            os.unlink(os.path.join(src, p[1:]))
        send, gone = rsync_items(src, dst)
        expect_eq('what rsync -ani --delete finds (the oracle)',
                  sorted(rewritten + touched + added), sorted(send))
        expect_eq('what rsync -ani --delete would delete', sorted(deleted),
                  sorted(gone))
        expect_rc(run(['rescan', '--db', db, '--quiet']), 0, 'rescan after 1% changed')
        plan = scalar(db, "SELECT group_concat(path, '|') FROM (SELECT path FROM "
                      "src_nodes WHERE copy_status = 'pending' AND type = 'file' "
                      "ORDER BY path)")
        expect_eq('what the pass leaves to copy, against rsync', sorted(send),
                  sorted(plan.split('|')) if plan else [])
        extra = scalar(db, "SELECT group_concat(path, '|') FROM (SELECT path FROM "
                       "dst_nodes WHERE traversal_status = 'not_on_src' ORDER BY path)")
        expect_eq('what the mirror would delete, against rsync', sorted(gone),
                  sorted(extra.split('|')) if extra else [])
        prev = scalar(db, "SELECT group_concat(path, '|') FROM (SELECT path FROM "
                      "prev_src_nodes WHERE type = 'file' ORDER BY path)")
        expect_eq('the previous pass rows kept: only the files that changed',
                  sorted(rewritten + touched + deleted),
                  sorted(prev.split('|')) if prev else [])
        # copied in pass 1 and unchanged since: still successful (not
        # already_existed, which says the destination had them before)
        unchanged = scalar(db, "SELECT count(*) FROM src_nodes WHERE type = 'file' "
                           "AND copy_status = 'successful'")
        expect_eq('files copied by pass 1 and unchanged, still successful',
                  2000 - len(rewritten) - len(touched) - len(deleted), unchanged)
        rows = int(scalar(db, "SELECT value FROM migration WHERE key = 'rows_written'"))
        sys.stderr.write('rows written: discover %d, pass with 1%% changed %d\n'
                         % (first, rows))
        if rows * 5 > first:
            fail('a pass over 1%% changed wrote %d rows, the discovery %d' %
                 (rows, first))
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        after = inodes(dst)
        for rel, ino in before.items():
            if '/' + rel in send and after.get(rel) == ino:
                fail('/%s changed but was not copied' % rel)
            if '/' + rel not in send and '/' + rel not in gone and after.get(rel) != ino:
                fail('/%s was copied again although it did not change' % rel)
        expect_rc(run(['delete', '--db', db, '--yes', '--quiet']), 0, 'delete')
        expect_eq('rsync --delete after the copy and the mirror', [],
                  rsync_lines(src, dst))
    R.check('a pass after 1% of the source changed leaves to copy exactly what '
            'rsync finds, and the copy copies only that', check)


def rows_by_path(db):
    """The node rows of db by path, as the listing gave them (facts only);
    the roots left out (a pass does not stat them again: the destination
    root's mtime moved with the copy)."""
    return {side: sorted(tuple(r) for r in rows_of(
        db, "SELECT path, type, size, mtime, mode FROM %s_nodes WHERE depth > 0" % side))
        for side in ('src', 'dst')}


def run_big_folder(R, work):
    def check():
        import random
        top = os.path.join(work, 'big')
        src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
        db, fresh = os.path.join(top, 'state.db'), os.path.join(top, 'fresh.db')
        os.makedirs(dst)
        # 6,000 names created in a random order: the listing comes in many
        # pages (getdents), each sorted on its own, their names far apart
        # and the pages not in name order, which the pass's merge with
        # the rows of the folder must follow (seeks, steps)
        rnd = random.Random(1919)
        names = ['f%05d' % i for i in range(0, 12000, 2)]
        for n in rnd.sample(names, len(names)):
            put(src, 'big/' + n, b'b')
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        expect_rc(run(['rescan', '--db', db, '--quiet']), 0, 'rescan after the copy')
        # between the names: new ones; some gone, grown, or another kind
        new = ['f%05d' % i for i in range(1, 12000, 98)]  # odd: not there
        for n in rnd.sample(new, len(new)):
            put(src, 'big/' + n, b'new')
        gone = set(names[3::89])
        grown = set(names[5::101]) - gone
        kind = set(names[7::211]) - gone - grown
        for n in gone:
            os.unlink(os.path.join(src, 'big', n))
        for n in grown:
            put(src, 'big/' + n, b'grown')
        for n in kind:
            os.unlink(os.path.join(src, 'big', n))
            put(src, 'big/%s/inside' % n, b'i')
        cp = run(['rescan', '--db', db])
        expect_rc(cp, 0, 'rescan of the changed big folder')
        # the oracle: a first discovery of the same pair, in a state file
        # of its own (pages inserted, not merged)
        expect_rc(run(['discover', '--db', fresh, '--quiet', src, dst]), 0,
                  'discover into a new state file')
        want, got = rows_by_path(fresh), rows_by_path(db)
        for side in ('src', 'dst'):
            a, b = set(want[side]), set(got[side])
            if a != b:
                fail('the %s rows after the pass, against a new discovery' % side,
                     sorted(a - b)[:10], sorted(b - a)[:10])
        # a file turned folder is changed (its kind), the file in it new
        said = '%d new, %d changed, %d deleted' % (
            len(new) + len(kind), len(grown) + len(kind), len(gone))
        if said.encode() not in cp.stderr:
            fail('what the pass says changed', said, cp.stderr.decode()[-600:])
        state_of(db)  # the stats count the rows
        cp = run(['rescan', '--db', db])
        expect_rc(cp, 0, 'rescan again')
        if b'0 new, 0 changed, 0 deleted' not in cp.stderr:
            fail('rescan with nothing changed', '0 new, 0 changed, 0 deleted',
                 cp.stderr.decode())
    R.check('a pass over a folder of 6,000 files listed in many pages (names '
            'added, removed, grown, turned folders between them) leaves the '
            'rows a new discovery makes', check)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_passes')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-passes-', dir=base)
    os.chmod(work, 0o755)
    try:
        run_pass(R, work)
        run_kill(R, work)
        run_upgrade(R, work)
        run_failed(R, work)
        run_uneven(R, work)
        run_one_percent(R, work)
        run_big_folder(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
