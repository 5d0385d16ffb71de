#!/usr/bin/env python3
"""The mirror, `treemig delete` (issue 19, "The cutover"), local to local.

- discover, copy, then delete --yes: afterwards the destination holds what
  the source holds and nothing else; the oracle is rsync's itemized dry
  run with --delete (`rsync -aHAXn --itemize-changes --delete`), given the
  same exclusions, which must list nothing; what matches an exclusion is
  kept and said (exit 3);
- delete --plan records what destination-only folders hold (discovery
  does not enter them): review --list extra lists every item, and nothing
  is removed; without --yes and not on a terminal nothing is removed
  (exit 2);
- the mirror never removes what discovery (and the plan) did not record:
  between the plan and the removals a destination-only file is replaced
  by another (other size), one by a folder, a new file appears in a
  destination-only folder, and a destination-only folder is replaced by a
  symlink to a folder outside the destination holding a file of the name
  the plan recorded: all of them, and the folder outside, survive, and
  each is listed as kept with its reason;
- kill -9 in the middle of the removals (12,000 destination-only files),
  inside a batch (more files gone than recorded): every node the state
  file records as removed is gone, what is still there is still planned,
  and delete run again finishes, exit 0 (rsync agrees).
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


def rsync_agrees(src, dst, extra=()):
    lines = rsync_lines(src, dst, extra)
    if lines:
        fail('rsync --delete lists %d differences, e.g.:\n      %s' % (
            len(lines), '\n      '.join(lines[:15])))


def fresh(work, name):
    top = os.path.join(work, name)
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    os.makedirs(src)
    os.makedirs(dst)
    return top, src, dst, os.path.join(top, 'state.db')


def migrate(db, src, dst, *opts):
    expect_rc(run(['discover', '--db', db, '--quiet'] + list(opts) + [src, dst]),
              0, 'discover')
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')


def review_extra(db):
    cp = run(['review', '--db', db, '--list', 'extra'])
    expect_rc(cp, 0, 'review --list extra')
    return sorted(x.split(b'\t')[3].decode() for x in cp.stdout.split(b'\n') if x)


def kept(db):
    c = sqlite3.connect(db)
    try:
        return {p: e for p, e in c.execute(
            "SELECT path, error FROM mirror WHERE state = 'kept'")}
    finally:
        c.close()


def make_extras(src, dst):
    put(src, 'a/f', b'same')
    put(dst, 'a/f', b'same')
    put(dst, 'a/only', b'destination only')
    put(dst, 'a/deep/er/most', b'1')
    put(dst, 'a/deep/file', b'22')
    os.symlink('/etc', os.path.join(dst, 'a/deep/link-out'))
    os.mkdir(os.path.join(dst, 'empty'))
    os.mkfifo(os.path.join(dst, 'a/fifo'))
    put(dst, 'keepme.txt', b'excluded')
    put(dst, 'a/keepdir/inside', b'excluded folder')


def run_basic(R, work):
    def check():
        top, src, dst, db = fresh(work, 'basic')
        make_extras(src, dst)
        migrate(db, src, dst, '--exclude', 'keep*')
        before = sorted(os.listdir(dst))
        cp = run(['delete', '--db', db])
        expect_rc(cp, 2, 'delete without --yes, not on a terminal')
        expect_eq('nothing removed without --yes', before, sorted(os.listdir(dst)))
        expect_eq('the plan: review --list extra', [
            '/a/deep', '/a/deep/er', '/a/deep/er/most', '/a/deep/file',
            '/a/deep/link-out', '/a/fifo', '/a/keepdir', '/a/only', '/empty',
            '/keepme.txt'], review_extra(db))
        cp = run(['delete', '--db', db, '--yes'])
        expect_rc(cp, 3, 'delete --yes (excluded items kept)')
        rsync_agrees(src, dst, ['--exclude', 'keep*'])
        if not os.path.exists(os.path.join(dst, 'a/keepdir/inside')):
            fail('an excluded destination-only folder lost its contents')
        if not os.path.exists('/etc/passwd'):
            fail('/etc/passwd is gone')
        expect_eq('the kept items', {
            '/a/keepdir': 'kept: excluded (the mirror does not enter it)',
            '/keepme.txt': 'kept: excluded'}, kept(db))
        expect_eq('review --list extra after the mirror', ['/a/keepdir', '/keepme.txt'],
                  review_extra(db))
        cp = run(['delete', '--db', db, '--yes'])
        expect_rc(cp, 3, 'delete again: nothing more to do, the kept items said')
        rsync_agrees(src, dst, ['--exclude', 'keep*'])
    R.check('delete --yes removes what exists only on the destination, deepest '
            'first; exclusions are kept; rsync --delete agrees', check)


def run_swap(R, work):
    def check():
        top, src, dst, db = fresh(work, 'swap')
        outside = os.path.join(top, 'outside')
        put(outside, 'precious', b'not in the destination')
        put(src, 'f', b'same')
        put(dst, 'f', b'same')
        put(dst, 'swapped', b'abc')
        put(dst, 'became-dir', b'abc')
        put(dst, 'x/gone-later', b'1')
        put(dst, 'x/stays', b'2')
        put(dst, 'ln/precious', b'not in the destination')
        migrate(db, src, dst)
        cp = run(['delete', '--db', db, '--plan'])
        expect_rc(cp, 0, 'delete --plan')
        expect_eq('the plan', ['/became-dir', '/ln', '/ln/precious', '/swapped',
                               '/x', '/x/gone-later', '/x/stays'], review_extra(db))
        # between the plan and the removals
        put(dst, 'swapped', b'another file, another size')
        os.unlink(os.path.join(dst, 'became-dir'))
        put(dst, 'became-dir/new', b'new')
        put(dst, 'x/arrived', b'new')
        shutil.rmtree(os.path.join(dst, 'ln'))
        os.symlink(outside, os.path.join(dst, 'ln'))
        cp = run(['delete', '--db', db, '--yes'])
        expect_rc(cp, 3, 'delete --yes (some items kept)')
        for rel in ('swapped', 'became-dir/new', 'x/arrived', 'ln'):
            if not os.path.lexists(os.path.join(dst, rel)):
                fail('%s was removed, but the plan did not record it' % rel)
        if not os.path.exists(os.path.join(outside, 'precious')):
            fail('a file outside the destination was removed through a symlink')
        for rel in ('x/gone-later', 'x/stays'):
            if os.path.lexists(os.path.join(dst, rel)):
                fail('%s (recorded, unchanged) was not removed' % rel)
        k = kept(db)
        expect_eq('the kept items', ['/became-dir', '/ln', '/ln/precious', '/swapped',
                                     '/x'], sorted(k))
        for p, want in (('/swapped', 'changed since discovery'),
                        ('/became-dir', 'is now a folder'),
                        ('/x', 'not empty'),
                        ('/ln/precious', 'no longer a folder')):
            if want not in k[p]:
                fail('the reason %s is kept' % p, want, k[p])
    R.check('the mirror removes nothing the plan did not record: swapped, '
            'changed, new items and a symlinked folder are kept', check)


def count_files(top):
    n = 0
    for e in os.scandir(top):
        try:
            n += sum(1 for _ in os.scandir(e.path))
        except FileNotFoundError:
            pass
    return n


def planned_files(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT count(*) FROM dst_nodes WHERE traversal_status = "
                         "'not_on_src' AND type = 'file'").fetchone()[0]
    finally:
        c.close()


def kill_once(db, files, n):
    """Starts delete --yes and SIGKILLs it once the files gone are in the
    middle of a batch of 256 (files go first, in batches of 256); None
    when it ended before."""
    p = subprocess.Popen([os.fsencode(tmtest.TREEMIG), b'delete', b'--db',
                          os.fsencode(db), b'--yes', b'--quiet'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    base = count_files(files)
    try:
        while p.poll() is None:
            gone = base - count_files(files)
            if gone >= 300 and 20 < gone % 256 < 150:
                p.send_signal(signal.SIGKILL)
                p.wait()
                return p.returncode
        return None
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def check_after_kill(db, dst, files):
    c = sqlite3.connect(db)
    try:
        removed = [r[0] for r in c.execute(
            "SELECT path FROM mirror WHERE state = 'removed'")]
    finally:
        c.close()
    for path in removed:
        if os.path.lexists(dst + path):
            fail('%s is recorded removed but is still there' % path)


def run_kill(R, work):
    def check():
        top, src, dst, db = fresh(work, 'kill')
        put(src, 'keep', b'k')
        put(dst, 'keep', b'k')
        n = 0
        for i in range(40):
            d = os.path.join(dst, 'extra', 'd%02d' % i)
            os.makedirs(d)
            for j in range(300):
                with open(os.path.join(d, 'f%03d' % j), 'wb') as f:
                    f.write(b'x' * (j % 7))
                n += 1
        migrate(db, src, dst)
        expect_rc(run(['delete', '--db', db, '--plan']), 0, 'delete --plan')
        files = os.path.join(dst, 'extra')
        mid = 0
        for attempt in range(30):
            if kill_once(db, files, n) is None:
                break
            check_after_kill(db, dst, files)
            planned = planned_files(db)
            on_disk = count_files(files)
            if on_disk > planned:
                fail('files on the destination that the state file no longer plans '
                     'to remove', planned, on_disk)
            if on_disk < planned:
                mid += 1     # removed but not recorded yet: the next run's ENOENT
                break
        if not mid:
            fail('no kill came inside a batch (more files gone than recorded)')
        cp = run(['delete', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'delete again after kill -9')
        rsync_agrees(src, dst)
        expect_eq('the kept file', b'k', open(os.path.join(dst, 'keep'), 'rb').read())
    R.check('kill -9 in the middle of the removals: the state file and the '
            'destination agree, and delete again finishes', check)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_mirror')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-mirror-', dir=base)
    os.chmod(work, 0o755)
    try:
        run_basic(R, work)
        run_swap(R, work)
        run_kill(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
