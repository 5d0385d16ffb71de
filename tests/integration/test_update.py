#!/usr/bin/env python3
"""copy --update (issue 19, "Protection"), local to local: a file or
symlink that is newer on the destination is kept, whatever its size.

- a destination file edited on the new share with another size and a
  later mtime (discovery calls it a `size` conflict) is kept with
  --update, replaced without it (the control);
- a destination file of the same size and a later mtime (`dst_newer`) is
  kept; one older than the source's (`size`, `mtime`) is replaced;
- a destination file that was older at discovery and edited (made newer)
  before the copy is kept: the copy looks at the destination as it is;
- a destination symlink newer than the source's is kept;
- verify says each kept node was not checked, with --update as the reason.
The oracle is the files' bytes and os.lstat, not treemig's verify.
Stdlib only; TREEMIG names the binary."""

import os
import shutil
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


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_update')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-update-', dir=base)
    os.chmod(work, 0o755)
    try:
        run_update(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
