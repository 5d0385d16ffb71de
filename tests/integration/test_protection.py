#!/usr/bin/env python3
"""copy --update and --backup-dir, delete --backup-dir (issue 19,
"Protection"), local to local.

copy --update: a file or symlink that is newer on the destination is kept,
whatever its size:

- a destination file edited on the new share with another size and a
  later mtime (discovery calls it a `size` conflict) is kept with
  --update, replaced without it (the control);
- a destination file of the same size and a later mtime (`dst_newer`) is
  kept; one older than the source's (`size`, `mtime`) is replaced;
- a destination file that was older at discovery and edited (made newer)
  before the copy is kept: the copy looks at the destination as it is;
- a destination symlink newer than the source's is kept;
- verify says each kept node was not checked, with --update as the reason.

--backup-dir DIR:
- copy moves each file and symlink it replaces into DIR with its path
  kept (the old bytes and symlink target there), nothing else; the
  destination then equals the source but for DIR (rsync -aHAXn --delete
  --exclude /DIR lists nothing);
- a DIR outside the destination (an absolute path elsewhere, a '..'), or
  inside the tree the copy makes, is refused (exit 2) and nothing is
  written there;
- delete --backup-dir moves the destination-only files into DIR instead of
  removing them; a DIR that discovery recorded as destination-only is
  never removed by the mirror, nor what it holds.
The oracle is the files' bytes, os.lstat and rsync, not treemig's verify.
Stdlib only; TREEMIG names the binary."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, run  # noqa: E402

OLD = 978307200 * 10**9          # 2001-01-01
HOUR = 3600 * 10**9


def put(root, rel, data, mtime):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
    os.utime(p, ns=(mtime, mtime))
    return p


def link(root, rel, target, mtime):
    p = os.path.join(root, rel)
    os.symlink(target, p)
    os.utime(p, ns=(mtime, mtime), follow_symlinks=False)


def read(root, rel):
    with open(os.path.join(root, rel), 'rb') as f:
        return f.read()


def make_pair(work, name):
    top = os.path.join(work, name)
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    os.makedirs(src)
    os.makedirs(dst)
    db = os.path.join(top, 'state.db')
    # newer on the destination, another size: discovery says `size`
    put(src, 'd/grown', b'src', OLD)
    put(dst, 'd/grown', b'edited on the new share', OLD + HOUR)
    # newer on the destination, same size: `dst_newer`
    put(src, 'd/same', b'aaaa', OLD)
    put(dst, 'd/same', b'bbbb', OLD + HOUR)
    # older on the destination, another size: replaced
    put(src, 'd/stale', b'new version', OLD + HOUR)
    put(dst, 'd/stale', b'old', OLD)
    # older at discovery, edited on the destination before the copy
    put(src, 'late', b'source', OLD + HOUR)
    put(dst, 'late', b'dst', OLD)
    # a symlink newer on the destination
    link(src, 'ln', 'target-one', OLD)
    link(dst, 'ln', 'target-two-longer', OLD + HOUR)
    # missing on the destination: copied as always
    put(src, 'new', b'fresh', OLD)
    cp = run(['discover', '--db', db, '--quiet', src, dst])
    expect_rc(cp, 0, 'discover')
    return src, dst, db


def run_update(R, work):
    def check():
        src, dst, db = make_pair(work, 'update')
        put(dst, 'late', b'edited after discovery', OLD + 2 * HOUR)
        cp = run(['copy', '--db', db, '--yes', '--quiet', '--update'])
        expect_rc(cp, 0, 'copy --update')
        expect_eq('d/grown (newer, other size) kept', b'edited on the new share',
                  read(dst, 'd/grown'))
        expect_eq('d/same (newer, same size) kept', b'bbbb', read(dst, 'd/same'))
        expect_eq('d/stale (older) replaced', b'new version', read(dst, 'd/stale'))
        expect_eq('late (made newer after discovery) kept',
                  b'edited after discovery', read(dst, 'late'))
        expect_eq('ln (newer symlink) kept', 'target-two-longer',
                  os.readlink(os.path.join(dst, 'ln')))
        expect_eq('new copied', b'fresh', read(dst, 'new'))
        expect_eq('the mtime of the replaced file', OLD + HOUR,
                  os.lstat(os.path.join(dst, 'd/stale')).st_mtime_ns)
        conn = tmtest.connect(db)
        try:
            rows = {p.decode(): (cs.decode(), e and e.decode())
                    for p, cs, e in conn.execute(
                "SELECT path, copy_status, error FROM src_nodes WHERE type != "
                "'folder'")}
        finally:
            conn.close()
        kept = ("skipped", "kept the destination's newer version (--update)")
        expect_eq('the copy statuses', {
            '/d/grown': kept, '/d/same': kept, '/ln': kept, '/late': kept,
            '/d/stale': ('successful', None), '/new': ('successful', None)},
            rows)
        cp = run(['verify', '--db', db])
        out = cp.stdout.decode() + cp.stderr.decode()
        for p in ('/d/grown', '/d/same', '/ln', '/late'):
            if p + '\t' not in out and p + ':' not in out and p + ' ' not in out:
                tmtest.fail('verify does not say %s was not checked' % p, None,
                            out[-1500:])
        if '(--update)' not in out:
            tmtest.fail('verify does not give --update as the reason', None,
                        out[-1500:])
    R.check('copy --update keeps what is newer on the destination, whatever '
            'its size, as it is at the copy', check)

    def control():
        src, dst, db = make_pair(work, 'control')
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy')
        expect_eq('d/grown replaced', b'src', read(dst, 'd/grown'))
        expect_eq('d/same replaced', b'aaaa', read(dst, 'd/same'))
        expect_eq('ln replaced', 'target-one', os.readlink(os.path.join(dst, 'ln')))
        expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')
    R.check('without --update the source wins (the control)', control)


rsync_lines = tmtest.rsync_delete_lines


def run_backup(R, work):
    def copy_backup():
        src, dst, db = make_pair(work, 'backup')
        cp = run(['copy', '--db', db, '--yes', '--quiet', '--backup-dir', '.bak'])
        expect_rc(cp, 0, 'copy --backup-dir .bak')
        bak = os.path.join(dst, '.bak')
        expect_eq('what went to the backup folder', sorted(
            ['d/grown', 'd/same', 'd/stale', 'late', 'ln']), sorted(
            os.path.relpath(os.path.join(d, f), bak)
            for d, _, fs in os.walk(bak) for f in fs))
        expect_eq('the old d/grown', b'edited on the new share', read(bak, 'd/grown'))
        expect_eq('the old d/stale', b'old', read(bak, 'd/stale'))
        expect_eq('the old symlink', 'target-two-longer',
                  os.readlink(os.path.join(bak, 'ln')))
        expect_eq('the old mtime kept', OLD + HOUR,
                  os.lstat(os.path.join(bak, 'd/grown')).st_mtime_ns)
        lines = rsync_lines(src, dst, ['--exclude', '/.bak'])
        expect_eq('rsync --delete --exclude /.bak', [], lines)
    R.check('copy --backup-dir moves what it replaces there, paths kept', copy_backup)

    def refused():
        src, dst, db = make_pair(work, 'refused')
        outside = os.path.join(work, 'refused', 'outside')
        for d in (outside, '../up', 'd/inside-the-tree', '.'):
            cp = run(['copy', '--db', db, '--yes', '--quiet', '--backup-dir', d])
            expect_rc(cp, 2, 'copy --backup-dir %s' % d)
        if os.path.exists(outside) or os.path.exists(os.path.join(work, 'refused',
                                                                  'up')):
            tmtest.fail('a refused backup folder was made')
        expect_eq('nothing copied', b'old', read(dst, 'd/stale'))
    R.check('a backup folder outside the destination or inside the tree is '
            'refused', refused)

    def mirror_backup():
        top = os.path.join(work, 'mirror')
        src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
        db = os.path.join(top, 'state.db')
        put(src, 'a/f', b'same', OLD)
        put(dst, 'a/f', b'same', OLD)
        put(dst, 'a/only', b'destination only', OLD)
        put(dst, 'x/y/z', b'deep', OLD)
        put(dst, 'old-bak/earlier/file', b'an earlier backup', OLD)
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        cp = run(['delete', '--db', db, '--yes', '--quiet', '--backup-dir',
                  'old-bak'])
        expect_rc(cp, 3, 'delete --backup-dir old-bak (the folder kept)')
        expect_eq('an earlier backup is kept', b'an earlier backup',
                  read(dst, 'old-bak/earlier/file'))
        expect_eq('a/only moved', b'destination only', read(dst, 'old-bak/a/only'))
        expect_eq('x/y/z moved', b'deep', read(dst, 'old-bak/x/y/z'))
        for rel in ('a/only', 'x'):
            if os.path.lexists(os.path.join(dst, rel)):
                tmtest.fail('%s is still on the destination' % rel)
        expect_eq('rsync --delete --exclude /old-bak', [],
                  rsync_lines(src, dst, ['--exclude', '/old-bak']))
    R.check('delete --backup-dir moves what it removes there and never '
            'removes the backup folder', mirror_backup)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_protection')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-update-', dir=base)
    os.chmod(work, 0o755)
    try:
        run_update(R, work)
        run_backup(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
