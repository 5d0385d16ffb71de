#!/usr/bin/env python3
"""The promises treemig exists for (issue 18), one check per broken one:
nothing outside the destination is written, nothing destination-only is
destroyed, no false success, and messages that name the right culprit.

 1  temporaries: a hostile destination holds regular files, hard links to
    a file outside, symlinks, folders and a FIFO under every name a copy
    may use for a temporary (the names of earlier versions, and names that
    look like this version's), and the source holds such names as
    ordinary files: the copy ends (no hang), exit 0, every destination-only
    node is untouched, nothing outside changes, the copy equals the source
 2  a root replaced after discovery (by a symlink to elsewhere, or by
    another folder) is refused by copy, verify and retry with exit 2, and
    nothing is written elsewhere
 4  roots that overlap through a bind mount (either way), and a state
    file or YAML file inside a tree (also through a bind mount), are
    refused with exit 2 and nothing is written into the source
 5  a --db that is a symlink takes the lock of the file it leads to
 6  mtimes before 1970, after 2038, at the last nanosecond of 2262, after
    2262 and the largest the file system takes: kept exactly, or the node
    fails with the reason (never another time), also where the destination
    file system cannot hold the time
 7  verify is not "verified" while a source folder could not be listed or
    --no-overwrite kept a differing file: exit 3, each named with why
 8  a folder whose mode cannot be set (immutable) is a failed node: copy
    exit 3, listed, verify exit 3
 9  copy --force does not make an unlistable source folder as an empty
    one: it stays failed with its reason, exit 3; retry then copies it
10  a verify mismatch becomes a failed node that retry copies again
11  a temporary left by a kill -9 is removed by the next copy even when its
    node is not copied again; verify reports one an older treemig left
12  a full disk under the state file is named as such (not the source's
    or the destination's), and the copy completes once there is room
13  resume --config refuses a YAML file whose roots were edited by hand
14  roots on pseudo file systems (/proc, /sys) are refused unless
    --allow-pseudo-fs

Needs root for the mounts, chattr and setpriv (CI runs as root): the checks
that cannot run say SKIP. The symlink-swap race is tests/integration/
test_race.py. Stdlib only; TREEMIG names the binary.
"""

import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, expect_rc, fail, run, show  # noqa: E402

T0 = 1_600_000_000_123_456_789
SEC = 1_000_000_000
TMP_RE = re.compile(r'\A\.treemig\..*\.tmp\Z', re.DOTALL)
NOBODY = 65534


def need_root(what):
    if os.geteuid() != 0:
        raise Skip('needs root (%s)' % what)


def fnv_tmp(name):
    """The temporary name earlier versions used for name (FNV-1a-64)."""
    h = 1469598103934665603
    for c in os.fsencode(name):
        h = ((h ^ c) * 1099511628211) & 0xffffffffffffffff
    return '.treemig.%016x.tmp' % h


def write(path, data, mtime=None, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    t = T0 if mtime is None else mtime
    os.utime(path, ns=(t, t))


def node(path):
    """What a test compares of a node: type, mode, size, mtime, inode, links,
    and its bytes (a hash) or symlink target."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        data = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        with open(path, 'rb') as f:
            data = hashlib.sha256(f.read()).hexdigest()
    else:
        data = None
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
            st.st_mtime_ns, st.st_ino, st.st_nlink, data)


def snapshot(root):
    """{relative path: node()} of everything under root (root itself too,
    without following symlinks)."""
    out = {'.': node(root)}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = node(p)
    return out


def same_tree(src, dst, skip_root=True):
    """Differences between the files of two trees (type, bytes, mtime, mode),
    as a list of strings."""
    a, b = snapshot(src), snapshot(dst)
    errs = []
    for p in sorted(set(a) | set(b)):
        if p == '.' and skip_root:
            continue
        x, y = a.get(p), b.get(p)
        if x is None or y is None:
            errs.append('%s: %s' % (p, 'missing on the destination' if y is None
                                    else 'only on the destination'))
        elif (x[0], x[6]) != (y[0], y[6]) or (x[0] != stat.S_IFLNK and
                                              (x[1], x[3]) != (y[1], y[3])):
            errs.append('%s: source %r, destination %r' % (p, x, y))
    return errs


def tmps_under(root):
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(root)
                  for n in dirs + files if TMP_RE.match(n))


def discover(db, src, dst, rc=0, extra=()):
    cp = run(['discover', '--db', db, '--quiet'] + list(extra) + [src, dst])
    expect_rc(cp, rc, 'discover')
    return cp


def status(db):
    return tmtest.status_json(db)


def failed_list(db):
    cp = run(['review', '--db', db, '--list', 'failed'])
    expect_rc(cp, 0, 'review --list failed')
    return cp.stdout.decode('utf-8', 'replace')


class Mounts:
    """Mounts made by a check, undone (lazily) whatever happens."""

    def __init__(self):
        self.points = []

    def tmpfs(self, where, size):
        os.makedirs(where, exist_ok=True)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size, 'tmpfs', where],
                       check=True)
        self.points.append(where)

    def bind(self, what, where):
        os.makedirs(where, exist_ok=True)
        subprocess.run(['mount', '--bind', what, where], check=True)
        self.points.append(where)

    def loop_ext4(self, where, size_mb, *mkfs_opts):
        img = where + '.img'
        with open(img, 'wb') as f:
            f.truncate(size_mb << 20)
        subprocess.run(['mkfs.ext4', '-q', '-F'] + list(mkfs_opts) + [img], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.makedirs(where, exist_ok=True)
        subprocess.run(['mount', '-o', 'loop', img, where], check=True)
        self.points.append(where)

    def release(self):
        for p in reversed(self.points):
            subprocess.run(['umount', '-l', p], stderr=subprocess.DEVNULL)
        self.points = []


def as_nobody(args, cwd, timeout=None):
    """treemig as user nobody (root can list anything: an unreadable folder
    needs another user)."""
    cmd = ['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups',
           tmtest.TREEMIG] + list(args)
    try:
        return subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout or tmtest.TIMEOUT)
    except subprocess.TimeoutExpired:
        fail('treemig as nobody timed out: %r' % (args,))


def chown_tree(root, uid):
    os.chown(root, uid, uid)
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            os.lchown(os.path.join(d, n), uid, uid)


def open_up(work):
    """Lets nobody reach work (its folders up to /tmp)."""
    p = work
    while p.startswith('/tmp/') and p != '/tmp':
        os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) | 0o755)
        p = os.path.dirname(p)


# ---- 1: temporaries ----

def hostile_pair(top, fifo):
    """src/s1 (files a, b, c, d, a symlink l, and names that look like this
    version's temporaries), src/s2 (a, and a file under a's old temporary
    name); dst/s1 with destination-only nodes under every temporary name of
    src/s1's nodes: a regular file, a hard link and a symlink to a file
    outside both trees, a folder, and (fifo) a FIFO. Returns (src, dst,
    outside, {dst-only relative path: kind})."""
    src, dst, out = (os.path.join(top, n) for n in ('src', 'dst', 'outside'))
    for n in ('a', 'b', 'c', 'd', 'e'):
        write(os.path.join(src, 's1', n), b'source file %s\n' % n.encode() * 50,
              T0 + ord(n) * SEC)
    look = ['.treemig.%032x.tmp' % (0x1234 + i) for i in range(3)]
    for i, n in enumerate(look):
        write(os.path.join(src, 's1', n), b'an ordinary source file %d' % i, T0 + i)
    os.symlink('a', os.path.join(src, 's1', 'l'))
    os.utime(os.path.join(src, 's1', 'l'), ns=(T0, T0), follow_symlinks=False)
    # s2: a file named like its sibling's temporary (a tree that was once a
    # destination, with a leftover of a crash)
    write(os.path.join(src, 's2', 'a'), b'the real a\n' * 100, T0 + 5 * SEC)
    write(os.path.join(src, 's2', fnv_tmp('a')), b'the leftover, not a\n' * 7, T0 + 6 * SEC)
    write(os.path.join(out, 'victim'), b'outside both trees: must never change\n',
          T0 + 9 * SEC, 0o644)
    write(os.path.join(out, 'victim2'), b'outside too\n', T0 + 9 * SEC, 0o600)
    os.makedirs(os.path.join(dst, 's1'))
    os.makedirs(os.path.join(dst, 's2'))
    d1 = os.path.join(dst, 's1')
    kinds = {}

    def put(name, kind):
        p = os.path.join(d1, name)
        if kind == 'file':
            write(p, b'destination only: ' + name.encode(), T0 + 7 * SEC)
        elif kind == 'hardlink':
            os.link(os.path.join(out, 'victim' if name.endswith('.tmp') else 'victim2'), p)
        elif kind == 'symlink':
            os.symlink(os.path.join(out, 'victim'), p)
        elif kind == 'folder':
            write(os.path.join(p, 'inside'), b'a destination-only folder', T0)
        elif kind == 'fifo':
            os.mkfifo(p)
        kinds[os.path.join('s1', name)] = kind

    kinds_cycle = ['file', 'hardlink', 'symlink', 'folder'] + (['fifo'] if fifo else [])
    for i, n in enumerate(['a', 'b', 'c', 'd', 'e', 'l'] + look):
        put(fnv_tmp(n), kinds_cycle[i % len(kinds_cycle)])
    for i, kind in enumerate(kinds_cycle):
        put('.treemig.%032x.tmp' % (0xfeed0000 + i), kind)    # this version's shape
    return src, dst, out, kinds


def check_tmp_hostile(work, fifo):
    top = os.path.join(work, 'hostile-fifo' if fifo else 'hostile')
    src, dst, out, kinds = hostile_pair(top, fifo)
    db = os.path.join(top, 'state.db')
    before = {p: node(os.path.join(dst, p)) for p in kinds}
    inside = {p: snapshot(os.path.join(dst, p)) for p, k in kinds.items() if k == 'folder'}
    out_before = snapshot(out)
    discover(db, src, dst)
    extra = run(['review', '--db', db, '--list', 'extra'])
    for p in kinds:
        if os.fsencode('/' + p) not in extra.stdout:
            fail('%s is not listed as destination-only: %s' % (p, show(extra)))
    cp = run(['copy', '--db', db, '--yes', '--quiet', '--workers', '4'], timeout=60)
    expect_rc(cp, 0, 'copy into the hostile destination')
    vf = run(['verify', '--db', db, '--checksum', '--quiet'], timeout=60)
    expect_rc(vf, 0, 'verify --checksum')
    errs = []
    for p, n in before.items():
        now = node(os.path.join(dst, p)) if os.path.lexists(os.path.join(dst, p)) else None
        if now != n:
            errs.append('destination-only %s (%s) changed: %r -> %r' % (p, kinds[p], n, now))
    for p, snap in inside.items():
        if snapshot(os.path.join(dst, p)) != snap:
            errs.append('the destination-only folder %s changed' % p)
    if snapshot(out) != out_before:
        errs.append('a file outside both trees changed: %r -> %r' % (out_before, snapshot(out)))
    got = snapshot(dst)
    for p, n in snapshot(src).items():
        if p == '.':
            continue
        d = got.get(p)
        if d is None or (d[0], d[6], d[3]) != (n[0], n[6], n[3]):
            errs.append('%s: source %r, destination %r' % (p, n, d))
    left = set(tmps_under(dst)) - {os.path.join(dst, p) for p in kinds} - \
        {os.path.join(dst, p) for p in snapshot(src) if TMP_RE.match(os.path.basename(p))} - \
        {os.path.join(dst, p, 'inside') for p in inside}
    if left:
        errs.append('temporaries left: %r' % sorted(left))
    if errs:
        fail('\n    '.join(errs))


# ---- 2: roots replaced between discover and copy ----

def small_tree(src, n=3):
    for i in range(n):
        write(os.path.join(src, 'dir%d' % i, 'file%d' % i), b'data %d\n' % i * 10,
              T0 + i * SEC)
    write(os.path.join(src, 'top'), b'top file', T0)


def check_root_replaced(work):
    top = os.path.join(work, 'roots')
    src, dst, elsewhere = (os.path.join(top, n) for n in ('src', 'dst', 'elsewhere'))
    small_tree(src)
    os.makedirs(dst)
    os.makedirs(elsewhere)
    write(os.path.join(elsewhere, 'keep'), b'not the destination', T0)
    db = os.path.join(top, 'a.db')
    discover(db, src, dst)
    dst_ino = os.stat(dst).st_ino
    # the destination root becomes a symlink to elsewhere
    os.rmdir(dst)
    os.symlink(elsewhere, dst)
    before = snapshot(elsewhere)
    cp = run(['copy', '--db', db, '--yes', '--quiet'])
    expect_rc(cp, 2, 'copy with the destination root replaced by a symlink')
    if b'symlink' not in cp.stderr and b'not the folder' not in cp.stderr:
        fail('the message does not say why: ' + show(cp))
    expect_eq('the folder the symlink leads to', before, snapshot(elsewhere))
    # ... and by another folder of the same name, with the old folder's
    # inode number when the file system gives it again (ext4 does)
    os.unlink(dst)
    os.makedirs(dst)
    for _ in range(200):
        if os.stat(dst).st_ino == dst_ino:
            break
        os.rmdir(dst)
        os.makedirs(dst)
    print('     the new destination folder %s the old one\'s inode number'
          % ('has' if os.stat(dst).st_ino == dst_ino else 'does not have'))
    cp = run(['copy', '--db', db, '--yes', '--quiet'])
    expect_rc(cp, 2, 'copy with the destination root replaced by another folder')
    if b'not the folder discovery recorded' not in cp.stderr:
        fail('the message does not say the root was replaced: ' + show(cp))
    expect_eq('the new folder', [], os.listdir(dst))
    # the source root replaced by a symlink to a decoy of the same shape
    top2 = os.path.join(work, 'roots2')
    src2, dst2, decoy = (os.path.join(top2, n) for n in ('src', 'dst', 'decoy'))
    small_tree(src2)
    small_tree(decoy)
    write(os.path.join(decoy, 'top'), b'DECOY!!!', T0)   # same size and mtime
    os.makedirs(dst2)
    db2 = os.path.join(top2, 'b.db')
    discover(db2, src2, dst2)
    os.rename(src2, src2 + '.moved')
    os.symlink(decoy, src2)
    cp = run(['copy', '--db', db2, '--yes', '--quiet'])
    expect_rc(cp, 2, 'copy with the source root replaced by a symlink')
    expect_eq('nothing copied', [], os.listdir(dst2))
    # verify and retry refuse too
    os.unlink(src2)
    os.rename(src2 + '.moved', src2)
    expect_rc(run(['copy', '--db', db2, '--yes', '--quiet']), 0, 'copy with the roots back')
    os.rename(dst2, dst2 + '.moved')
    os.symlink(dst2 + '.moved', dst2)
    for cmd in (['verify'], ['retry']):
        cp = run(cmd + ['--db', db2, '--quiet'])
        expect_rc(cp, 2, '%s with the destination root replaced by a symlink' % cmd[0])


# ---- 4: overlaps by any route, the state file inside a tree ----

def check_bind_overlap(work):
    need_root('mount --bind')
    top = os.path.join(work, 'bind')
    src, mnt = os.path.join(top, 'src'), os.path.join(top, 'mnt')
    small_tree(src)
    os.makedirs(os.path.join(src, 'sub'))
    write(os.path.join(src, 'sub', 'mine'), b'belongs to the source', T0)
    M = Mounts()
    try:
        # the destination is a folder of the source, mounted elsewhere
        M.bind(os.path.join(src, 'sub'), os.path.join(mnt, 'dst'))
        before = snapshot(src)
        db = os.path.join(top, 'a.db')
        cp = run(['discover', '--db', db, '--quiet', src, os.path.join(mnt, 'dst')])
        if cp.returncode == 0:
            run(['copy', '--db', db, '--yes', '--quiet'])
        expect_eq('the source after discover (and copy) into a bind mount of its '
                  'own folder', before, snapshot(src))
        expect_rc(cp, 2, 'discover into a bind mount of a source folder')
        if b'overlap' not in cp.stderr and b'the same folder by another route' not in cp.stderr:
            fail('the message does not say they overlap: ' + show(cp))
        # the source mounted elsewhere, the destination below that mount
        M.bind(src, os.path.join(mnt, 'srcb'))
        db = os.path.join(top, 'b.db')
        cp = run(['discover', '--db', db, '--quiet', src, os.path.join(mnt, 'srcb', 'sub')])
        if cp.returncode == 0:
            run(['copy', '--db', db, '--yes', '--quiet'])
        expect_eq('the source after discover (and copy) into itself by a bind mount',
                  before, snapshot(src))
        expect_rc(cp, 2, 'discover into a folder of the source through a bind mount')
        expect_eq('state file left', False, os.path.exists(db))
        # the state file in a folder that is a source folder by a bind mount
        os.makedirs(os.path.join(src, 'dbdir'))
        before = snapshot(src)
        M.bind(os.path.join(src, 'dbdir'), os.path.join(mnt, 'dbdir'))
        dst = os.path.join(top, 'dst3')
        os.makedirs(dst)
        db = os.path.join(mnt, 'dbdir', 'c.db')
        cp = run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 2, 'discover with the state file in a source folder (bind mount)')
        if b'the folder of the state file' not in cp.stderr:
            fail('the message does not name the state file: ' + show(cp))
    finally:
        M.release()


def check_state_inside(work):
    top = os.path.join(work, 'inside')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src)
    os.makedirs(dst)
    for where, what in ((src, 'source'), (dst, 'destination')):
        before = snapshot(where)
        db = os.path.join(where, 'state.db')
        cp = run(['discover', '--db', db, '--quiet', src, dst])
        if cp.returncode == 0:
            run(['copy', '--db', db, '--yes', '--quiet'])
            run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 2, 'discover with the state file inside the %s' % what)
        if b'inside the ' + what.encode() not in cp.stderr:
            fail('the message does not say where: ' + show(cp))
        if where == src:
            expect_eq('the source', before, snapshot(src))
        for ext in ('', '-wal', '-shm', '.yaml'):
            if os.path.exists(db + ext):
                fail('%s%s left inside the %s' % (db, ext, what))
    db = os.path.join(top, 'ok.db')
    cp = run(['discover', '--db', db, '--quiet', '--config', os.path.join(src, 'x.yaml'),
              src, dst])
    expect_rc(cp, 2, 'discover with the YAML file inside the source')
    expect_eq('YAML file left in the source', False, os.path.exists(os.path.join(src, 'x.yaml')))


# ---- 5: the lock through a symlinked --db ----

def check_lock_symlink(work):
    top = os.path.join(work, 'lock')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src)
    os.makedirs(dst)
    real = os.path.join(top, 'real.db')
    link = os.path.join(top, 'link.db')
    discover(real, src, dst)
    os.symlink('real.db', link)
    # another treemig holds the state file: its lock is real.db.lock
    fd = os.open(real + '.lock', os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, b'424242\n')
        cp = run(['copy', '--db', link, '--yes', '--quiet'])
        expect_rc(cp, 5, 'copy --db LINK while the state file it leads to is locked')
        if b'424242' not in cp.stderr:
            fail('the message does not name the holder: ' + show(cp))
        expect_eq('files written by the second copy', [], os.listdir(dst))
    finally:
        os.close(fd)
    expect_eq('a lock file beside the link', False, os.path.exists(link + '.lock'))
    expect_rc(run(['copy', '--db', link, '--yes', '--quiet']), 0, 'copy --db LINK, unlocked')


# ---- 6: times ----

def probe_max_time(d):
    """The largest mtime (s) the file system under d keeps exactly, or None."""
    p = os.path.join(d, '.probe')
    open(p, 'wb').close()
    try:
        for s in ((1 << 63) - 1, (1 << 62), 1 << 40, 15032385535):
            try:
                os.utime(p, ns=(0, s * SEC))
            except (OverflowError, OSError):
                continue
            if os.stat(p).st_mtime_ns == s * SEC:
                return s
        return None
    finally:
        os.unlink(p)


def check_mtimes(work):
    need_root('mount -t tmpfs')
    top = os.path.join(work, 'times')
    M = Mounts()
    try:
        M.tmpfs(top, '64m')
        src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
        os.makedirs(src)
        os.makedirs(dst)
        fsmax = probe_max_time(src)
        last_ns = (1 << 63) - 2          # 2262-04-11T23:47:16.854775806Z
        fit = {'before1970': -123456789 * SEC - 987654321,
               'y2038': ((1 << 31) + 5) * SEC + 123,
               'last_ns_2262': last_ns,
               'y1700': -8_520_336_000 * SEC + 7}
        out = {'after2262': 9223372037 * SEC,
               'y2400': 13569465600 * SEC + 1,
               'before1677': -10_000_000_000 * SEC}
        if fsmax:
            out['fs_max'] = fsmax * SEC
        for n, t in list(fit.items()) + list(out.items()):
            write(os.path.join(src, 'f', n), n.encode() * 3, t)
        os.makedirs(os.path.join(src, 'dir2400'))
        write(os.path.join(src, 'dir2400', 'x'), b'x', T0)
        os.utime(os.path.join(src, 'dir2400'), ns=(0, 13569465600 * SEC))
        os.utime(os.path.join(src, 'f'), ns=(0, T0))
        db = os.path.join(work, 'times.db')
        discover(db, src, dst)
        conn = tmtest.connect(db)
        rows = dict(conn.execute("SELECT name, mtime FROM src_nodes WHERE depth = 2"))
        conn.close()
        for n in fit:
            expect_eq('recorded mtime of %s' % n, fit[n], rows[n.encode()])
        for n, t in out.items():
            want = (1 << 63) - 1 if t > 0 else -(1 << 63) + 1
            expect_eq('recorded mtime of %s (out of range: the mark, never a wrapped '
                      'value)' % n, want, rows[n.encode()])
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 3, 'copy of files whose mtimes do not fit')
        errs = []
        for n, t in fit.items():
            p = os.path.join(dst, 'f', n)
            if not os.path.exists(p) or os.stat(p).st_mtime_ns != t:
                errs.append('%s: mtime %r, source %r' % (
                    n, os.path.exists(p) and os.stat(p).st_mtime_ns, t))
        for n in out:
            if os.path.lexists(os.path.join(dst, 'f', n)):
                errs.append('%s was copied with mtime %d (source %d)' % (
                    n, os.stat(os.path.join(dst, 'f', n)).st_mtime_ns, out[n]))
        listed = failed_list(db)
        for n in list(out) + ['dir2400']:
            if n not in listed or 'range' not in listed.split(n, 1)[1].split('\n')[0]:
                errs.append('%s not listed failed with the reason: %r' % (n, listed))
        if os.stat(os.path.join(dst, 'dir2400')).st_mtime_ns == 13569465600 * SEC:
            errs.append('dir2400 has an mtime the state file cannot hold')
        if errs:
            fail('\n    '.join(errs))
        vf = run(['verify', '--db', db, '--quiet'])
        expect_rc(vf, 3, 'verify with nodes that could not be copied')
    finally:
        M.release()


def check_mtime_dst_cannot_hold(work):
    need_root('a loop-mounted ext4')
    if not shutil.which('mkfs.ext4'):
        raise Skip('no mkfs.ext4')
    top = os.path.join(work, 'times2')
    M = Mounts()
    try:
        M.tmpfs(os.path.join(top, 'src'), '16m')
        try:
            # 128-byte inodes: 32-bit seconds, 1901-12-13 .. 2038-01-19
            M.loop_ext4(os.path.join(top, 'dst'), 8, '-I', '128')
        except subprocess.CalledProcessError as e:
            raise Skip('cannot mount an ext4 image: %s' % e)
        src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
        write(os.path.join(src, 'y2100'), b'2100', 4102444800 * SEC)
        write(os.path.join(src, 'y1960'), b'1960', -315619200 * SEC)
        write(os.path.join(src, 'y1850'), b'1850', -3786825600 * SEC)
        write(os.path.join(src, 'y2038max'), b'the largest it holds', ((1 << 31) - 1) * SEC)
        os.rmdir(os.path.join(dst, 'lost+found'))
        db = os.path.join(work, 'times2.db')
        discover(db, src, dst)
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 3, 'copy onto a file system that cannot hold some mtimes')
        expect_eq('1960 copied with its mtime', -315619200 * SEC,
                  os.stat(os.path.join(dst, 'y1960')).st_mtime_ns)
        expect_eq('the largest time this file system holds, copied exactly',
                  ((1 << 31) - 1) * SEC, os.stat(os.path.join(dst, 'y2038max')).st_mtime_ns)
        for n in ('y2100', 'y1850'):
            if os.path.lexists(os.path.join(dst, n)):
                fail('%s is on the destination with mtime %d' % (
                    n, os.stat(os.path.join(dst, n)).st_mtime_ns))
        listed = failed_list(db)
        if 'cannot hold the mtime' not in listed:
            fail('the reason is not given: %r' % listed)
        expect_eq('temporaries left', [], tmps_under(dst))
    finally:
        M.release()


# ---- 7, 9: what could not be listed is neither copied empty nor verified ----

def unlistable_pair(work, name):
    top = os.path.join(work, name)
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src)
    write(os.path.join(src, 'locked', 'secret'), b'inside a folder nobody can list', T0)
    write(os.path.join(src, 'locked', 'deeper', 'more'), b'more', T0)
    os.makedirs(dst)
    open_up(work)
    os.chmod(top, 0o755)
    chown_tree(top, NOBODY)
    os.chmod(os.path.join(src, 'locked'), 0)
    return top, src, dst


def check_force_unlisted(work):
    need_root('setpriv to another user')
    top, src, dst = unlistable_pair(work, 'force')
    db = os.path.join(top, 'state.db')
    expect_rc(as_nobody(['discover', '--db', db, '--quiet', src, dst], top), 3,
              'discover with an unreadable folder')
    cp = as_nobody(['copy', '--db', db, '--yes', '--quiet', '--force'], top)
    if os.path.lexists(os.path.join(dst, 'locked')):
        fail('copy --force made the folder it could not list: %r'
             % os.listdir(os.path.join(dst, 'locked')))
    expect_rc(cp, 3, 'copy --force with a source folder that could not be listed')
    listed = as_nobody(['review', '--db', db, '--list', 'failed'], top).stdout
    line = [x for x in listed.split(b'\n') if b'\t/locked\t' in x]
    if not line or b'permission denied' not in line[0]:
        fail('/locked is not failed with its reason: %r' % listed)
    # once it can be read, retry copies it
    os.chmod(os.path.join(src, 'locked'), 0o755)
    rt = as_nobody(['retry', '--db', db, '--quiet'], top)
    expect_rc(rt, 0, 'retry once the folder can be read')
    errs = same_tree(src, dst)
    if errs:
        fail('after retry: ' + '\n    '.join(errs))
    expect_rc(as_nobody(['verify', '--db', db, '--quiet', '--checksum'], top), 0,
              'verify after retry')


def check_verify_unlisted(work):
    need_root('setpriv to another user')
    top, src, dst = unlistable_pair(work, 'vunlisted')
    db = os.path.join(top, 'state.db')
    expect_rc(as_nobody(['discover', '--db', db, '--quiet', src, dst], top), 3,
              'discover with an unreadable folder')
    as_nobody(['copy', '--db', db, '--yes', '--quiet', '--force'], top)
    vf = as_nobody(['verify', '--db', db, '--checksum'], top)
    expect_rc(vf, 3, 'verify after copy --force left out a folder')
    if b'/locked' not in vf.stderr or b'could not be listed' not in vf.stderr:
        fail('verify does not say what it did not check and why: ' + show(vf))
    expect_eq('phase', 'copied', status(db)['phase'])


def check_verify_no_overwrite(work):
    top = os.path.join(work, 'noover')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src)
    write(os.path.join(src, 'conf'), b'the new version', T0 + 100 * SEC)
    write(os.path.join(dst, 'conf'), b'the old one', T0)
    db = os.path.join(top, 'state.db')
    discover(db, src, dst)
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet', '--no-overwrite']), 0,
              'copy --no-overwrite')
    vf = run(['verify', '--db', db])
    expect_rc(vf, 3, 'verify after --no-overwrite kept a differing file')
    if b'/conf' not in vf.stderr or b'--no-overwrite' not in vf.stderr:
        fail('verify does not name the file it did not check: ' + show(vf))
    with open(os.path.join(dst, 'conf'), 'rb') as f:
        expect_eq('the kept destination file', b'the old one', f.read())


# ---- 8: a folder whose mode cannot be set ----

def check_immutable_folder(work):
    need_root('chattr +i')
    top = os.path.join(work, 'immutable')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    write(os.path.join(src, 'keep', 'x'), b'same on both', T0)
    write(os.path.join(dst, 'keep', 'x'), b'same on both', T0)
    write(os.path.join(src, 'other'), b'other', T0)
    os.chmod(os.path.join(src, 'keep'), 0o750)
    os.chmod(os.path.join(dst, 'keep'), 0o755)
    for r in (src, dst):
        os.utime(os.path.join(r, 'keep'), ns=(T0, T0))
    if subprocess.run(['chattr', '+i', os.path.join(dst, 'keep')],
                      stderr=subprocess.DEVNULL).returncode != 0:
        raise Skip('chattr +i is refused on %s' % dst)
    try:
        db = os.path.join(top, 'state.db')
        discover(db, src, dst)
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 3, 'copy with a destination folder whose mode cannot be set')
        listed = failed_list(db)
        if '/keep' not in listed:
            fail('/keep is not listed as failed: %r' % listed)
        expect_eq('failed count', 1, status(db)['copy']['failed'])
        expect_rc(run(['verify', '--db', db, '--quiet']), 3, 'verify')
    finally:
        subprocess.run(['chattr', '-i', os.path.join(dst, 'keep')])


# ---- 10: verify mismatches are redone ----

def check_mismatch_redo(work):
    top = os.path.join(work, 'redo')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src, 4)
    write(os.path.join(src, 'sub', 'deep', 'd1'), b'deep one', T0)
    write(os.path.join(src, 'sub', 'd2'), b'deep two', T0)
    write(os.path.join(src, 'same'), b'0123456789', T0 + 3)
    write(os.path.join(src, 'grow'), b'small', T0 + 4)
    os.makedirs(dst)
    db = os.path.join(top, 'state.db')
    discover(db, src, dst)
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
    # the destination is damaged after the copy
    write(os.path.join(dst, 'same'), b'9876543210', T0 + 3)       # same size, same mtime
    write(os.path.join(dst, 'grow'), b'much larger now', T0 + 4)
    os.unlink(os.path.join(dst, 'dir1', 'file1'))
    shutil.rmtree(os.path.join(dst, 'sub'))
    vf = run(['verify', '--db', db, '--checksum'])
    expect_rc(vf, 3, 'verify of a damaged destination')
    listed = failed_list(db)
    for p in ('/same', '/grow', '/dir1/file1', '/sub'):
        if p not in listed:
            fail('%s is not a failed node after verify: %r' % (p, listed))
    if b'retry' not in vf.stderr:
        fail('verify does not say what to do: ' + show(vf))
    rt = run(['retry', '--db', db])
    expect_rc(rt, 0, 'retry')
    if re.search(rb'\b0 items retried', rt.stderr):
        fail('retry retried nothing: ' + show(rt))
    expect_rc(run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify again')
    errs = same_tree(src, dst)
    if errs:
        fail('after retry: ' + '\n    '.join(errs))


# ---- 11: leftovers of a kill -9 ----

def check_crash_leftover(work):
    top = os.path.join(work, 'crash')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src)
    os.makedirs(dst)
    block = os.urandom(1 << 20)
    size = 256
    for attempt in range(4):
        big = os.path.join(src, 'big.bin')
        with open(big, 'wb') as f:
            for _ in range(size):
                f.write(block)
        os.utime(big, ns=(T0, T0))
        db = os.path.join(top, 'state%d.db' % attempt)
        shutil.rmtree(dst)
        os.makedirs(dst)
        discover(db, src, dst)
        p = subprocess.Popen([tmtest.TREEMIG, 'copy', '--db', db, '--yes', '--quiet',
                              '--workers', '1'], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             env=dict(os.environ, TREEMIG_FAULT_DST='no_copy_from'))
        seen = []
        while p.poll() is None and not seen:
            seen = tmps_under(dst)
        if seen:
            p.send_signal(signal.SIGKILL)
        p.wait()
        if seen and p.returncode == -signal.SIGKILL:
            break
        size *= 2
    else:
        raise Skip('the copy always finished before a temporary was seen')
    if not tmps_under(dst):
        fail('no temporary after the kill (it was seen: %r)' % seen)
    # the node is not copied again: its source file is gone
    os.unlink(big)
    cp = run(['copy', '--db', db, '--yes', '--quiet'])
    if cp.returncode not in (0, 3):
        fail('copy after the kill: ' + show(cp))
    expect_eq('temporaries after the next copy', [], tmps_under(dst))


def check_verify_reports_leftover(work):
    top = os.path.join(work, 'leftover')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    small_tree(src)
    os.makedirs(dst)
    db = os.path.join(top, 'state.db')
    discover(db, src, dst)
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
    # what an older treemig killed in the middle of dir1/file1 left
    left = os.path.join(dst, 'dir1', fnv_tmp('file1'))
    before = os.lstat(os.path.dirname(left)).st_mtime_ns
    write(left, b'half a file', T0)
    # left before the copy set the folder's mtime (which verify compares)
    os.utime(os.path.dirname(left), ns=(before, before))
    vf = run(['verify', '--db', db])
    expect_rc(vf, 0, 'verify (the source nodes all match)')
    if os.fsencode(fnv_tmp('file1')) not in vf.stderr or b'temporary' not in vf.stderr:
        fail('verify does not report the leftover temporary: ' + show(vf))
    expect_eq('the leftover is reported, not removed', True, os.path.exists(left))


# ---- 12: a full disk under the state file ----

def fill(folder, leave):
    """Fills the file system of folder but for about leave bytes."""
    p = os.path.join(folder, 'filler')
    st = os.statvfs(folder)
    n = st.f_bavail * st.f_frsize - leave
    with open(p, 'wb') as f:
        chunk = b'\0' * (1 << 16)
        while n > 0:
            try:
                f.write(chunk[:min(n, len(chunk))])
                f.flush()
            except OSError:
                break
            n -= len(chunk)
    return p


def check_state_disk_full(work):
    need_root('mount -t tmpfs')
    top = os.path.join(work, 'full')
    src, dst, dbdir = (os.path.join(top, n) for n in ('src', 'dst', 'db'))
    for i in range(40):
        for j in range(100):
            write(os.path.join(src, 'd%02d' % i, 'file-with-a-long-name-%03d' % j),
                  b'x' * (j % 7), T0 + j)
    os.makedirs(dst)
    M = Mounts()
    try:
        # discovery: the state file's disk fills while the nodes are recorded
        # (not before: an empty state file of 8 KiB pages takes 200 KiB)
        M.tmpfs(dbdir, '640k')
        db = os.path.join(dbdir, 'state.db')
        cp = run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 1, 'discover with the state file on a full disk')
        err = cp.stderr.decode('utf-8', 'replace')
        if 'state file' not in err or 'full' not in err or 'source' in err or \
                'destination' in err:
            fail('the message does not name the state file\'s disk: ' + show(cp))
        M.release()
        # the copy: discovered with room, then the disk fills
        M.tmpfs(dbdir, '16m')
        discover(db, src, dst)
        filler = fill(dbdir, 96 << 10)
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 1, 'copy with the state file on a full disk')
        err = cp.stderr.decode('utf-8', 'replace')
        if 'state file' not in err or 'full' not in err or 'destination' in err:
            fail('the message does not name the state file\'s disk: ' + show(cp))
        os.unlink(filler)
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy once there is room')
        expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')
        expect_eq('copied', 4040, status(db)['copy']['successful'])
    finally:
        M.release()


# ---- 13: resume --config with roots edited by hand ----

def check_resume_edited_roots(work):
    top = os.path.join(work, 'resume')
    src, dst, other = (os.path.join(top, n) for n in ('src', 'dst', 'other'))
    small_tree(src)
    small_tree(other)
    os.makedirs(dst)
    db = os.path.join(top, 'state.db')
    discover(db, src, dst)
    yaml = db + '.yaml'
    with open(yaml, 'rb') as f:
        text = f.read()
    edited = text.replace(os.fsencode('source: "%s"' % src), os.fsencode('source: "%s"' % other))
    if edited == text:
        fail('the YAML file does not hold the source as expected: %r' % text)
    with open(yaml, 'wb') as f:
        f.write(edited)
    cp = run(['resume', '--config', yaml, '--quiet'])
    expect_rc(cp, 2, 'resume with the source edited in the YAML file')
    if os.fsencode(other) not in cp.stderr or os.fsencode(src) not in cp.stderr:
        fail('the message does not name both roots: ' + show(cp))
    with open(yaml, 'rb') as f:
        expect_eq('the YAML file', edited, f.read())
    expect_eq('the source recorded', src, status(db)['roots']['src'])


# ---- 14: pseudo file systems ----

def check_pseudo_roots(work):
    top = os.path.join(work, 'pseudo')
    dst = os.path.join(top, 'dst')
    os.makedirs(dst)
    tried = 0
    for root in ('/proc/self', '/proc/sys/kernel', '/sys/kernel'):
        if not os.path.isdir(root):
            continue
        tried += 1
        db = os.path.join(top, 'p%d.db' % tried)
        cp = run(['discover', '--db', db, '--quiet', root, dst], timeout=60)
        expect_rc(cp, 2, 'discover %s' % root)
        if b'pseudo file system' not in cp.stderr:
            fail('the message does not say why: ' + show(cp))
        expect_eq('state file left', False, os.path.exists(db))
    if not tried:
        raise Skip('no /proc or /sys here')
    db = os.path.join(top, 'allowed.db')
    cp = run(['discover', '--db', db, '--quiet', '--allow-pseudo-fs',
              '/proc/sys/kernel/random', dst], timeout=60)
    if cp.returncode not in (0, 3):
        fail('discover --allow-pseudo-fs: ' + show(cp))
    expect_eq('status of an allowed pseudo root', 'discovered', status(db)['phase'])


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_safety')
    work = tempfile.mkdtemp(prefix='treemig-safety-', dir='/tmp')
    checks = [
        ('1 temporaries: a hostile destination (files, hard links, symlinks, folders '
         'under every temporary name), and such names on the source', check_tmp_hostile,
         False),
        ('1 temporaries: a FIFO under a temporary name does not hang the copy',
         check_tmp_hostile, True),
        ('2 a root replaced after discovery is refused (copy, verify, retry), '
         'nothing written elsewhere', check_root_replaced),
        ('4 roots that overlap through a bind mount, and a state file in a source '
         'folder through one, are refused', check_bind_overlap),
        ('4 a state file or YAML file inside a tree is refused', check_state_inside),
        ('5 a --db that is a symlink takes the lock of its target', check_lock_symlink),
        ('6 mtimes before 1970, 2038, 2262, after 2262, the file system\'s largest: '
         'exact, or the node fails with the reason', check_mtimes),
        ('6 a destination that cannot hold an mtime: the node fails, never another '
         'time', check_mtime_dst_cannot_hold),
        ('7 verify is not "verified" while a source folder could not be listed',
         check_verify_unlisted),
        ('7 verify is not "verified" while --no-overwrite kept a differing file',
         check_verify_no_overwrite),
        ('8 a folder whose mode cannot be set is a failed node', check_immutable_folder),
        ('9 copy --force does not make an unlistable folder empty; it stays failed',
         check_force_unlisted),
        ('10 verify mismatches become failed nodes that retry copies again',
         check_mismatch_redo),
        ('11 a temporary left by kill -9 is removed by the next copy',
         check_crash_leftover),
        ('11 verify reports a leftover temporary', check_verify_reports_leftover),
        ('12 a full disk under the state file is named as such', check_state_disk_full),
        ('13 resume --config refuses roots edited by hand', check_resume_edited_roots),
        ('14 roots on pseudo file systems are refused unless --allow-pseudo-fs',
         check_pseudo_roots),
    ]
    only = os.environ.get('TREEMIG_SAFETY_ONLY')
    try:
        for i, (label, fn, *a) in enumerate(checks):
            if only and not any(label.startswith(x + ' ') for x in only.split(',')):
                continue
            sub = os.path.join(work, 'c%02d' % i)
            os.makedirs(sub)
            R.check(label, fn, sub, *a)
    finally:
        subprocess.run(['chmod', '-R', 'u+rwX', work], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    if R.skipped and not R.passed and not R.failed:
        sys.exit(77)
    R.finish()


if __name__ == '__main__':
    main()
