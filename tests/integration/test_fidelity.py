#!/usr/bin/env python3
"""What a file share holds besides files (issue 19, "Fidelity"), local to
local.

A source tree is migrated with discover, copy and verify; the oracle is
independent of treemig: rsync's itemized dry run (`rsync -aHn
--itemize-changes SRC/ DST/`, which compares types, sizes, mtimes, modes,
symlinks, devices and special files, and hard links with -H) must list
nothing, and a Python walk of both trees with os.lstat checks what rsync
does not say plainly (the kind and device number of each special file,
which names share an inode).

- symlinks (to a file, to a folder, dangling) with old mtimes keep them;
- special files: FIFOs, a socket and (as root) a character device are
  recreated; discover --no-specials keeps them skipped as 'other', and
  nothing is created;
- --one-file-system (-x): a tmpfs mounted inside the source (in a mount
  namespace of its own: `unshare -m`, as root) and a bind mount of a
  source folder are not entered; review lists them as skipped with the
  reason; without -x both are walked and copied.
Stdlib only; TREEMIG names the binary."""

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, expect_rc, fail, run  # noqa: E402

OLD = 978307200 * 10**9          # 2001-01-01: an "old" mtime


def rsync_lines(src, dst, opts='-aHn'):
    """The lines of rsync's itemized dry run from src into dst."""
    if not shutil.which('rsync'):
        fail('rsync is not installed (scripts/deps.sh test installs it)')
    cmd = ['rsync', opts, '--itemize-changes', os.fsencode(src) + b'/',
           os.fsencode(dst) + b'/']
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=tmtest.TIMEOUT)
    if cp.returncode != 0:
        fail('%s exited %d: %r' % (cmd, cp.returncode, cp.stderr[-500:]))
    return [x for x in cp.stdout.decode('utf-8', 'replace').split('\n') if x]


def rsync_agrees(src, dst, opts='-aHn'):
    lines = rsync_lines(src, dst, opts)
    if lines:
        fail('rsync %s lists %d differences, e.g.:\n      %s' % (
            opts, len(lines), '\n      '.join(lines[:15])))


def put(root, rel, data=b'x', mtime=None):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
    if mtime is not None:
        os.utime(p, ns=(mtime, mtime))
    return p


def discover(db, src, dst, *opts):
    cp = run(['discover', '--db', db, '--quiet'] + list(opts) + [src, dst])
    expect_rc(cp, 0, 'discover %s' % ' '.join(opts))


def copy(db):
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')


def verify(db):
    expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')


def review_list(db, kind):
    """{path: reason} of review --list KIND (plain format)."""
    cp = run(['review', '--db', db, '--list', kind])
    expect_rc(cp, 0, 'review --list %s' % kind)
    out = {}
    for line in cp.stdout.split(b'\n'):
        if not line:
            continue
        f = line.split(b'\t')
        out[f[3].decode()] = f[4].decode('utf-8', 'replace') if len(f) > 4 else None
    return out


def fresh(work, name):
    top = os.path.join(work, name)
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    os.makedirs(src)
    os.makedirs(dst)
    return top, src, dst, os.path.join(top, 'state.db')


def walk(root):
    """{relative path: os.lstat} of everything below root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


# --------------------------------------------------------------------------
# symlinks

def run_symlinks(R, work):
    def check():
        top, src, dst, db = fresh(work, 'symlinks')
        put(src, 'f', b'data', mtime=OLD + 5)
        os.mkdir(os.path.join(src, 'd'))
        links = {'to-file': 'f', 'to-dir': 'd', 'dangling': 'nowhere/at/all',
                 'd/up': '../f'}
        for i, (name, target) in enumerate(sorted(links.items())):
            p = os.path.join(src, name)
            os.symlink(target, p)
            t = OLD + i * 86400 * 10**9 + 123456789
            os.utime(p, ns=(t, t), follow_symlinks=False)
        os.utime(os.path.join(src, 'd'), ns=(OLD, OLD))
        discover(db, src, dst)
        copy(db)
        s, d = walk(src), walk(dst)
        for name in links:
            expect_eq('%s: symlink on the destination' % name, True,
                      stat.S_ISLNK(d[name].st_mode))
            expect_eq('%s: target' % name, os.readlink(os.path.join(src, name)),
                      os.readlink(os.path.join(dst, name)))
            expect_eq('%s: its own mtime' % name, s[name].st_mtime_ns,
                      d[name].st_mtime_ns)
        rsync_agrees(src, dst)
        verify(db)
    R.check('symlinks keep their own mtime (rsync -aHn and lstat agree)', check)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_fidelity')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-fidelity-', dir=base)
    os.chmod(work, 0o755)
    try:
        run_symlinks(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
