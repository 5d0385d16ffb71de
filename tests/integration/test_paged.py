"""Paged listings and per-folder coordination (docs/internals.md):

- a sim pair listed a few children per page (page=1, page=3), with
  latency and jitter so that the folders of the two sides complete in
  every order, gives exactly the ground truth (sim-stats) and the same
  rows as the same pair listed in whole pages;
- a folder of 60,000 children killed (SIGKILL, crash_after=) in the middle
  of its listing, on the source and on the destination, resumes inside
  it: each resumed run lists only the pages after the last committed one
  (the kill loses at most the writer's queued and open batches), and the
  result is the ground truth;
- a listing position survives in listing_pos only while its folder is
  pending; none is left once discovery completes.
Stdlib only; TREEMIG names the binary."""

import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run, show  # noqa: E402

SHAPE = 'seed=5,depth=5,folders=6,files=5'
DST = SHAPE + ',world=dst,keep=0.85,extra=0.05,csize=0.03,cmtime=0.04,ctype=0.03'
SECTIONS = ('src', 'dst', 'copy')
COLS = ('path', 'type', 'size', 'mtime', 'mode', 'depth', 'traversal_status',
        'conflict', 'error')
# The writer's batches (src/store/writer.h, discover.c): what a kill loses
# is at most the rows of the writer's open transaction (a batch, plus the
# page that filled it), what it took from its queue and has not applied
# yet, the queue (refilled meanwhile), and the pages being listed.
QUEUED_ROWS = 4096
BATCH_ROWS = 4096


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


def expect_truth(db, truth, what):
    st = tmtest.status_json(db)
    for k in SECTIONS:
        expect_eq('%s: status.%s vs sim-stats' % (what, k), truth[k], st[k])
    expect_eq('%s: listing positions left' % what, [],
              sql(db, 'SELECT side, folder_id FROM listing_pos'))


def rows(db):
    out = {}
    for side in ('src', 'dst'):
        out[side] = sql(db, 'SELECT %s FROM %s_nodes ORDER BY path' %
                        (', '.join(COLS), side))
    return out


def check_small_pages(work):
    ref_db = os.path.join(work, 'whole.db')
    cp = run(['discover', '--db', ref_db, '--quiet', 'sim:' + SHAPE, 'sim:' + DST])
    expect_rc(cp, 0, 'discover in whole pages')
    truth = sim_stats('sim:' + DST)
    expect_truth(ref_db, truth, 'whole pages')
    ref = rows(ref_db)
    for page in (1, 3):
        faults = 'page=%d,latency=1,jitter=1' % page
        db = os.path.join(work, 'page%d.db' % page)
        cp = run(['discover', '--db', db, '--quiet', '--workers', '16',
                  'sim:%s,%s' % (SHAPE, faults), 'sim:%s,%s' % (DST, faults)])
        expect_rc(cp, 0, 'discover with page=%d' % page)
        expect_truth(db, truth, 'page=%d' % page)
        got = rows(db)
        for side in ('src', 'dst'):
            if got[side] != ref[side]:
                diff = [a for a, b in zip(got[side], ref[side]) if a != b][:5]
                fail('page=%d: %s rows differ from the whole-page run, e.g. %r'
                     % (page, side, diff))


FLAT = 'depth=1,root_folders=0,root_files=60000,page=500'
PAGES = 60000 // 500


def list_counts(stderr):
    """The fault layer's counts at exit (TREEMIG_FAULT_REPORT=1): list calls
    per side, the source's report first (it is opened first)."""
    found = re.findall(r'treemig fault counts (\S+): list=(\d+)',
                       stderr.decode('utf-8', 'replace'))
    if len(found) != 2:
        fail('expected two fault-count lines on stderr, got %r' % stderr[-500:])
    return {('dst' if 'world=dst' in spec else 'src'): int(n) for spec, n in found}


def kill_inside(work, name, crash_side):
    """Lists the flat folder pair, the crash_side's adapter killing the
    process after K pages, again and again; checks that every resumed run
    goes on where the last committed page left off."""
    k = 37
    src = 'sim:' + FLAT + (',crash_after=%d' % k if crash_side == 'src' else '')
    dst = 'sim:' + FLAT + ',world=dst,keep=0.9,csize=0.01' + (
        ',crash_after=%d' % k if crash_side == 'dst' else '')
    db = os.path.join(work, name + '.db')
    env = dict(os.environ, TREEMIG_FAULT_REPORT='1')
    kills = 0
    pages_done = []  # pages recorded after each kill
    for i in range(40):
        cp = run(['discover', '--db', db, '--quiet', '--workers', '2'] +
                 ([src, dst] if i == 0 else []), env=env)
        if cp.returncode == 0:
            break
        if cp.returncode != -9:
            fail('run %d: expected SIGKILL (-9) or success, got %s' % (i, show(cp)))
        kills += 1
        pos = sql(db, 'SELECT pages FROM listing_pos WHERE side = ?',
                  0 if crash_side == 'src' else 1)
        pages_done.append(pos[0][0] if pos else None)
    else:
        fail('discovery did not complete after 40 runs')
    if kills < 2:
        fail('crash_after=%d killed %d runs; the test needs a kill in the middle of '
             'the folder' % (k, kills))
    counts = list_counts(cp.stderr)
    # every run lists k pages of the crashing side then dies: all its pages
    # but the last run's are k each
    listed = kills * k + counts[crash_side]
    # the pages of the crashing side's folder: the destination's world
    # holds fewer children than the source's (keep=0.9)
    world = sim_stats(dst.replace(',crash_after=%d' % k, ''))['worlds'][crash_side]
    needed = -(-(world['folders'] + world['files']) // 500)
    if crash_side == 'src' and needed != PAGES:
        fail('the source folder has %d pages, not %d' % (needed, PAGES))
    redone = listed - needed
    per_kill = (2 * QUEUED_ROWS + BATCH_ROWS) // 500 + 3
    print('     %s: %d kills, %d pages listed for %d, %d redone (at most %d per kill); '
          'pages recorded after each kill: %s'
          % (crash_side, kills, listed, needed, redone, per_kill, pages_done))
    if redone < 0:
        fail('fewer pages listed (%d) than the folder has (%d): pages skipped'
             % (listed, needed))
    if redone > kills * per_kill:
        fail('%d pages listed again after %d kills: more than the %d per kill the '
             'batches allow (did a resume start the folder over?)'
             % (redone, kills, per_kill))
    if any(p is None for p in pages_done[:-1]):
        fail('a kill in the middle of the folder left no listing position: %r'
             % pages_done)
    grew = [b for a, b in zip(pages_done, pages_done[1:]) if a is not None and b is not None
            and b <= a]
    if grew:
        fail('the recorded position did not move forward between kills: %r' % pages_done)
    expect_truth(db, sim_stats(dst.replace(',crash_after=%d' % k, '')),
                 '%s killed %d times' % (crash_side, kills))


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_paged')
    work = tempfile.mkdtemp(prefix='treemig-paged-')
    try:
        r.check('page=1 and page=3 with latency and jitter: the ground truth, the same '
                'rows as whole pages', check_small_pages, work)
        r.check('SIGKILL inside a 60,000-child source folder: each resume goes on after '
                'the last committed page; the ground truth', kill_inside, work,
                'kill_src', 'src')
        r.check('SIGKILL inside the destination twin: the same', kill_inside, work,
                'kill_dst', 'dst')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    r.finish()


if __name__ == '__main__':
    main()
