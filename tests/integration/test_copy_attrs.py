#!/usr/bin/env python3
"""What a copy keeps besides the bytes: owners, special mode bits, holes.

- copy --owner (as root): every file, folder and symlink gets its source's
  uid and gid; set-user-ID and set-group-ID bits survive (chown clears
  them, so the owner must be set first); verify passes.
- copy without --owner: the copying user owns everything, and a file owned
  by someone else loses its set-user-ID/set-group-ID bits (a setuid file of
  user 1234 must not become a setuid-root file).
- --owner as another user is refused with exit 2 and a message, nothing
  written; --owner with a simulated source is refused (no owners there).
- a sparse file (64 MiB with two 4 KiB extents) is copied with its holes:
  same bytes, a few blocks on disk.
- a copy whose nodes fail names the first ten on stderr (path and
  reason), then how many more.
Stdlib only; TREEMIG names the binary."""

import os
import shutil
import stat
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, expect_rc, fail, run, show  # noqa: E402


def need_root():
    if os.geteuid() != 0:
        raise Skip('needs root (chown to other users)')


def make_owned_tree(src):
    """A small tree of nodes owned by several users, with special bits."""
    os.makedirs(os.path.join(src, 'team', 'deep'))
    files = {'plain': (1234, 5678, 0o644), 'team/suid': (1234, 1234, 0o4755),
             'team/sgid': (1234, 2000, 0o2755), 'team/deep/nobody': (65534, 65534, 0o600),
             'mine': (0, 0, 0o4711)}
    for rel, (uid, gid, mode) in files.items():
        p = os.path.join(src, rel)
        with open(p, 'wb') as f:
            f.write(b'x' * 100)
        os.chown(p, uid, gid)
        os.chmod(p, mode)
    os.chown(os.path.join(src, 'team'), 2000, 3000)
    os.chmod(os.path.join(src, 'team'), 0o2775)
    os.chown(os.path.join(src, 'team', 'deep'), 4000, 4001)
    os.symlink('../plain', os.path.join(src, 'team', 'link'))
    os.lchown(os.path.join(src, 'team', 'link'), 5000, 5001)
    return ['plain', 'team', 'team/suid', 'team/sgid', 'team/deep',
            'team/deep/nobody', 'team/link', 'mine']


def copy_tree(work, name, src, *opts, rc=0):
    dst = os.path.join(work, name)
    os.mkdir(dst)
    db = os.path.join(work, name + '.db')
    expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
    cp = run(['copy', '--db', db, '--yes', '--quiet'] + list(opts))
    expect_rc(cp, rc, 'copy %s' % ' '.join(opts))
    return db, dst, cp


def check_owner(work):
    need_root()
    src = os.path.join(work, 'owned')
    nodes = make_owned_tree(src)
    db, dst, _ = copy_tree(work, 'with-owner', src, '--owner')
    expect_rc(run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify')
    for rel in nodes:
        s = os.lstat(os.path.join(src, rel))
        d = os.lstat(os.path.join(dst, rel))
        expect_eq('owner of %s' % rel, (s.st_uid, s.st_gid), (d.st_uid, d.st_gid))
        if not stat.S_ISLNK(s.st_mode):
            expect_eq('mode of %s' % rel, oct(stat.S_IMODE(s.st_mode)),
                      oct(stat.S_IMODE(d.st_mode)))
        expect_eq('mtime of %s' % rel, s.st_mtime_ns, d.st_mtime_ns)


def check_no_owner(work):
    need_root()
    src = os.path.join(work, 'owned2')
    make_owned_tree(src)
    db, dst, _ = copy_tree(work, 'without-owner', src)
    expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')
    want = {'plain': 0o644, 'team/suid': 0o755, 'team/sgid': 0o755,
            'team/deep/nobody': 0o600, 'mine': 0o4711, 'team': 0o2775}
    for rel, mode in want.items():
        d = os.lstat(os.path.join(dst, rel))
        expect_eq('owner of %s' % rel, (0, 0), (d.st_uid, d.st_gid))
        expect_eq('mode of %s' % rel, oct(mode), oct(stat.S_IMODE(d.st_mode)))


def check_owner_refused(work):
    src = os.path.join(work, 'plain-src')
    os.makedirs(os.path.join(src, 'a'))
    with open(os.path.join(src, 'a', 'f'), 'w') as f:
        f.write('data')
    # a simulated source has no owners
    sdst = os.path.join(work, 'from-sim')
    os.mkdir(sdst)
    db = os.path.join(work, 'from-sim.db')
    expect_rc(run(['discover', '--db', db, '--quiet', 'sim:seed=1,depth=2', sdst]), 0,
              'discover sim')
    cp = run(['copy', '--db', db, '--yes', '--quiet', '--owner'])
    expect_rc(cp, 2, 'copy --owner from a sim')
    if b'does not report owners' not in cp.stderr:
        fail('no reason given: ' + show(cp))
    expect_eq('nothing written', [], os.listdir(sdst))
    if os.geteuid() != 0:
        raise Skip('the non-root refusal needs root to drop to nobody')
    dst = os.path.join(work, 'as-nobody')
    home = os.path.join(work, 'nobody-home')
    os.mkdir(dst)
    os.mkdir(home)
    os.chmod(work, 0o755)
    os.chmod(os.path.dirname(work), 0o755)
    for d in (src, os.path.join(src, 'a'), dst, home):
        os.chown(d, 65534, 65534)
    db = os.path.join(home, 'nobody.db')
    as_nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
    import subprocess
    env = dict(os.environ)
    cmd = as_nobody + [tmtest.TREEMIG, 'discover', '--db', db, '--quiet', src, dst]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, cwd=home, timeout=tmtest.TIMEOUT)
    if p.returncode != 0:
        fail('discover as nobody: %d %s' % (p.returncode, p.stderr))
    cmd = as_nobody + [tmtest.TREEMIG, 'copy', '--db', db, '--yes', '--quiet', '--owner']
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, cwd=home, timeout=tmtest.TIMEOUT)
    expect_eq('exit code of copy --owner as nobody', 2, p.returncode)
    if b'--owner needs root' not in p.stderr:
        fail('no reason given: %r' % p.stderr)
    expect_eq('nothing written', [], os.listdir(dst))


def check_sparse(work):
    src = os.path.join(work, 'sparse-src')
    os.mkdir(src)
    p = os.path.join(src, 'disk.img')
    size = 64 << 20
    with open(p, 'wb') as f:
        f.write(b'head' * 1024)
        f.seek(10 << 20)
        f.write(b'mid!' * 1024)
        f.truncate(size)
    with open(os.path.join(src, 'hole-only'), 'wb') as f:
        f.truncate(8 << 20)
    if os.stat(p).st_blocks * 512 >= 1 << 20:
        raise Skip('this file system does not keep holes')
    db, dst, _ = copy_tree(work, 'sparse-dst', src)
    expect_rc(run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify --checksum')
    for name, want in (('disk.img', size), ('hole-only', 8 << 20)):
        d = os.stat(os.path.join(dst, name))
        expect_eq('size of %s' % name, want, d.st_size)
        if d.st_blocks * 512 > 1 << 20:
            fail('%s was written in full: %d bytes allocated for %d' %
                 (name, d.st_blocks * 512, d.st_size))
    with open(os.path.join(src, 'disk.img'), 'rb') as a, \
            open(os.path.join(dst, 'disk.img'), 'rb') as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            if x != y:
                fail('contents differ')
            if not x:
                break


def check_failed_named(work):
    """A copy with failures names the first ten on stderr, then how many more."""
    src = os.path.join(work, 'src')
    os.mkdir(src)
    for i in range(15):
        with open(os.path.join(src, 'f%02d' % i), 'w') as f:
            f.write('x' * i)
    dst = os.path.join(work, 'dst')
    os.mkdir(dst)
    db = os.path.join(work, 'failing.db')
    expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
    cp = run(['copy', '--db', db, '--yes', '--quiet'],
             env={'TREEMIG_FAULT_DST': 'commit@1=eio+'})
    expect_eq('exit code', 3, cp.returncode)
    err = cp.stderr.decode()
    if '15 nodes failed' not in err or '... and 5 more' not in err:
        fail('stderr does not count the failures: %r' % err)
    named = [l for l in err.splitlines() if l.startswith('  failed\tfile\t')]
    expect_eq('failures named', 10, len(named))
    for l in named:
        if 'i/o error' not in l or '/f' not in l:
            fail('a failure without its path or reason: %r' % l)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy_attrs')
    work = tempfile.mkdtemp(prefix='treemig-attrs-')
    try:
        for label, fn in (
                ('copy --owner keeps owners, setuid and setgid bits', check_owner),
                ('copy without --owner: ours, and no setuid of others', check_no_owner),
                ('--owner refused without root or without owners', check_owner_refused),
                ('sparse files keep their holes', check_sparse),
                ('a failed copy names its first failures', check_failed_named)):
            sub = os.path.join(work, fn.__name__)
            os.mkdir(sub)
            R.check(label, fn, sub)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
