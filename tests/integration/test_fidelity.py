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
  reason; without -x both are walked and copied;
- hard links: groups of 2 and 1000 across folders, one split by an
  exclusion; `rsync -aHn` given the same exclusions and an inode walk
  agree, verify finds a link broken on the destination and retry makes
  it again; kill -9 while the copy links a group of 10,000, then the next
  copy finishes it; a schema v4 state file is upgraded;
- extended attributes (user.*, trusted.* as root) and POSIX ACLs (access,
  default): `rsync -aHAXn`, `getfacl -R` and os.listxattr agree;
  --no-xattrs copies none; a destination that refuses them (ramfs) gets
  the files, and each refusal is said on its node.
Stdlib only; TREEMIG names the binary."""

import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, expect_rc, fail, run, show  # noqa: E402

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
    """rsync lists nothing but the root folder's mtime (treemig leaves the
    roots' own attributes alone: docs/internals.md)."""
    lines = [x for x in rsync_lines(src, dst, opts) if x != '.d..t...... ./']
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


# --------------------------------------------------------------------------
# special files

def make_specials(src):
    """FIFOs, a socket and (as root) a character device, some below a
    folder, with modes and old mtimes of their own. Returns their names."""
    names = []
    os.makedirs(os.path.join(src, 'dev'), exist_ok=True)
    for i, rel in enumerate(['fifo', 'dev/fifo2']):
        p = os.path.join(src, rel)
        os.mkfifo(p, 0o640 if i == 0 else 0o600)
        names.append(rel)
    p = os.path.join(src, 'dev/sock')
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(p)
    finally:
        s.close()
    os.chmod(p, 0o751)
    names.append('dev/sock')
    if os.geteuid() == 0:
        for rel, mj, mn in (('dev/null', 1, 3), ('dev/zero', 1, 5)):
            p = os.path.join(src, rel)
            os.mknod(p, 0o620 | stat.S_IFCHR, os.makedev(mj, mn))
            names.append(rel)
    for i, rel in enumerate(names):
        t = OLD + i * 3600 * 10**9 + 987654321
        os.utime(os.path.join(src, rel), ns=(t, t), follow_symlinks=False)
    put(src, 'dev/file', b'a plain file', mtime=OLD)
    os.utime(os.path.join(src, 'dev'), ns=(OLD, OLD))
    return names


def src_pending(db):
    conn = tmtest.connect(db)
    try:
        return sorted(r[0].decode() for r in conn.execute(
            "SELECT path FROM src_nodes WHERE depth > 0 AND copy_status = 'pending'"))
    finally:
        conn.close()


def run_specials(R, work):
    def check():
        top, src, dst, db = fresh(work, 'specials')
        names = make_specials(src)
        if os.geteuid() != 0:
            raise Skip('not root: no device to copy (CI runs as root)')
        discover(db, src, dst)
        copy(db)
        s, d = walk(src), walk(dst)
        for rel in names:
            if rel not in d:
                fail('%s was not made on the destination' % rel)
            for what, f in (('kind', lambda x: stat.S_IFMT(x.st_mode)),
                            ('mode', lambda x: stat.S_IMODE(x.st_mode)),
                            ('mtime', lambda x: x.st_mtime_ns),
                            ('device number', lambda x: x.st_rdev)):
                expect_eq('%s: %s' % (rel, what), f(s[rel]), f(d[rel]))
        rsync_agrees(src, dst)
        verify(db)
        # a new discovery finds them there already
        db2 = os.path.join(top, 'again.db')
        discover(db2, src, dst)
        expect_eq('pending after a new discovery', [], src_pending(db2))
        # one changed on the destination: made again
        os.unlink(os.path.join(dst, 'fifo'))
        os.mkfifo(os.path.join(dst, 'fifo'), 0o666)
        db3 = os.path.join(top, 'third.db')
        discover(db3, src, dst)
        expect_eq('pending after the destination changed', ['/fifo'],
                  src_pending(db3))
        copy(db3)
        rsync_agrees(src, dst)
        verify(db3)
        # verify compares a device's number (the state file does not hold it)
        p, st = os.path.join(dst, 'dev/null'), os.lstat(os.path.join(dst, 'dev/null'))
        os.unlink(p)
        os.mknod(p, st.st_mode, os.makedev(1, 7))
        os.utime(p, ns=(st.st_mtime_ns, st.st_mtime_ns))
        cp = run(['verify', '--db', db3, '--quiet'])
        expect_rc(cp, 3, 'verify of a device with another number')
        expect_eq('what verify found', True,
                  b'/dev/null: verify: device 1:7 on the destination, 1:3 on the '
                  b'source' in cp.stderr + cp.stdout)
    R.check('FIFOs, a socket and character devices are made again (rsync -aHn, '
            'lstat kind/mode/mtime/rdev agree)', check)

    def check_no_specials():
        top, src, dst, db = fresh(work, 'no-specials')
        names = make_specials(src)
        discover(db, src, dst, '--no-specials')
        copy(db)
        verify(db)
        d = walk(dst)
        made = [n for n in names if n in d]
        expect_eq('special files made with --no-specials', [], made)
        expect_eq('the plain file', True, 'dev/file' in d)
        skipped = review_list(db, 'skipped')
        expect_eq('review --list skipped', {'/' + n: 'special file' for n in names},
                  skipped)
    R.check('discover --no-specials: special files are skipped as before, none '
            'is made', check_no_specials)

    def check_not_root():
        if os.geteuid() != 0:
            raise Skip('not root: cannot make a device to test with')
        if not shutil.which('setpriv'):
            fail('setpriv is missing (util-linux)')
        top, src, dst, db = fresh(work, 'devices-not-root')
        os.mknod(os.path.join(src, 'null'), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mkfifo(os.path.join(src, 'fifo'))
        for p in (top, src, dst):
            os.chown(p, 65534, 65534)
        os.chown(os.path.join(src, 'fifo'), 65534, 65534)
        cmd = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
               tmtest.TREEMIG]
        for args in (['discover', '--db', db, '--quiet', src, dst],
                     ['copy', '--db', db, '--yes', '--quiet']):
            cp = subprocess.run(cmd + args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=tmtest.TIMEOUT)
            if cp.returncode != 0:
                fail('%s as 65534: %s' % (args[0], tmtest.show(cp)))
        d = walk(dst)
        expect_eq('made as another user than root', ['fifo'], sorted(d))
        skipped = review_list(db, 'skipped')
        expect_eq('review --list skipped', {'/null': 'a character device: only '
                                            'root can make one'}, skipped)
    R.check('not root (uid 65534): a device is skipped with the reason, a FIFO '
            'is made', check_not_root)


# --------------------------------------------------------------------------
# --one-file-system

MOUNT_WHY = ('a mount point (another file system, or another mount, than the '
             'source root\'s): not entered (--one-file-system)')


def in_namespace(script, *args):
    """Runs the shell script with args in a mount namespace of its own (so
    that its mounts vanish with it); Skip when none can be made here."""
    if os.geteuid() != 0:
        raise Skip('not root: cannot mount a file system inside the source '
                   '(CI runs as root)')
    if not shutil.which('unshare'):
        raise Skip('unshare(1) is missing (util-linux)')
    probe = subprocess.run(['unshare', '-m', 'sh', '-c', 'mount -t tmpfs t /mnt'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=tmtest.TIMEOUT)
    if probe.returncode != 0:
        raise Skip('no mount namespace here (unshare -m: %r)' % probe.stderr[-200:])
    cp = subprocess.run(['unshare', '-m', 'sh', '-ec', script, 'sh'] + list(args),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=tmtest.TIMEOUT)
    if cp.returncode != 0:
        fail('the script in the mount namespace exited %d: %r %r' % (
            cp.returncode, cp.stdout[-1000:], cp.stderr[-1000:]))


# In the namespace: a tmpfs on SRC/mnt with a file and a folder, and SRC/a
# mounted again (a bind mount: the same file system) on SRC/bind; then
# discover (with the options after the 4th argument), copy and verify.
NS_SCRIPT = """
T=$1 DB=$2 SRC=$3 DST=$4; shift 4
mount -t tmpfs tmpfs "$SRC/mnt"
echo on the tmpfs > "$SRC/mnt/onmnt"
mkdir "$SRC/mnt/deep"; echo deeper > "$SRC/mnt/deep/f"
mount --bind "$SRC/a" "$SRC/bind"
"$T" discover --db "$DB" --quiet "$@" "$SRC" "$DST"
"$T" copy --db "$DB" --yes --quiet
"$T" verify --db "$DB" --quiet
"""


def one_fs_pair(work, name):
    top, src, dst, db = fresh(work, name)
    put(src, 'a/f1', b'one', mtime=OLD)
    put(src, 'plain', b'plain', mtime=OLD)
    os.mkdir(os.path.join(src, 'mnt'))
    os.mkdir(os.path.join(src, 'bind'))
    # the destination twin of the mount point holds a file of its own: not
    # walked with -x, so not listed as destination only
    put(dst, 'mnt/old', b'already on the destination', mtime=OLD)
    return top, src, dst, db


def run_one_fs(R, work):
    def check():
        top, src, dst, db = one_fs_pair(work, 'one-fs')
        in_namespace(NS_SCRIPT, tmtest.TREEMIG, db, src, dst, '-x')
        d = walk(dst)
        expect_eq('the destination after the copy with -x',
                  ['a', 'a/f1', 'mnt', 'mnt/old', 'plain'], sorted(d))
        expect_eq('review --list skipped', {'/mnt': MOUNT_WHY, '/bind': MOUNT_WHY},
                  review_list(db, 'skipped'))
        expect_eq('review --list extra (the twin of a mount point is not '
                  'walked)', {}, review_list(db, 'extra'))
        conn = tmtest.connect(db)
        try:
            one = conn.execute("SELECT value FROM migration WHERE key = 'one_fs'"
                               ).fetchone()
        finally:
            conn.close()
        expect_eq('one_fs recorded', (b'1',), one and tuple(
            v if isinstance(v, bytes) else str(v).encode() for v in one))
    R.check('-x: a tmpfs and a bind mount inside the source are not entered, '
            'skipped with the reason', check)

    def check_without():
        top, src, dst, db = one_fs_pair(work, 'no-one-fs')
        in_namespace(NS_SCRIPT, tmtest.TREEMIG, db, src, dst)
        d = walk(dst)
        expect_eq('the destination after the copy without -x',
                  ['a', 'a/f1', 'bind', 'bind/f1', 'mnt', 'mnt/deep', 'mnt/deep/f',
                   'mnt/old', 'mnt/onmnt', 'plain'], sorted(d))
        expect_eq('review --list skipped', {}, review_list(db, 'skipped'))
    R.check('without -x: both mounts are walked and copied', check_without)


# --------------------------------------------------------------------------
# hard links

def link_tree(top, src):
    """Link groups: 2 files in two folders; 1000 files across 10 folders;
    3 files of which the shallowest is excluded by name (*.skip: the group
    is split by the exclusion, its two other files must still be linked);
    2 files beside a third in an excluded folder (/excl); a file whose only
    other link is outside the tree (copied on its own). Returns the
    expected review line."""
    put(src, 'two/a', b'group of two', mtime=OLD)
    os.makedirs(os.path.join(src, 'other/deeper'))
    os.link(os.path.join(src, 'two/a'), os.path.join(src, 'other/deeper/b'))
    first = put(src, 'big/d0/f0', b'one inode, a thousand names', mtime=OLD + 7)
    for i in range(1, 1000):
        d = os.path.join(src, 'big/d%d' % (i % 10))
        os.makedirs(d, exist_ok=True)
        os.link(first, os.path.join(d, 'f%d' % i))
    put(src, 'l3.skip', b'split by an exclusion', mtime=OLD + 9)
    os.makedirs(os.path.join(src, 'keep/sub'))
    os.link(os.path.join(src, 'l3.skip'), os.path.join(src, 'keep/l1'))
    os.link(os.path.join(src, 'l3.skip'), os.path.join(src, 'keep/sub/l2'))
    put(src, 'excl/m3', b'beside an excluded folder', mtime=OLD + 11)
    os.makedirs(os.path.join(src, 'keep2'))
    os.link(os.path.join(src, 'excl/m3'), os.path.join(src, 'keep2/m1'))
    os.link(os.path.join(src, 'excl/m3'), os.path.join(src, 'keep2/m2'))
    put(top, 'outside', b'its other link is outside the tree', mtime=OLD + 13)
    os.link(os.path.join(top, 'outside'), os.path.join(src, 'alone'))
    put(src, 'plain', b'one link', mtime=OLD)
    return ('hard links        4 groups of 1007 files: each group is written '
            'once, its other files linked; 1 split by an exclusion (what is '
            'excluded is not made, the others are still linked)')


LINK_EXCLUDES = ('*.skip', '/excl')


def inode_groups(root, skip=()):
    """{(dev, ino): sorted relative paths} of the files below root, but
    those under skip."""
    g = {}
    for rel, st in walk(root).items():
        if stat.S_ISREG(st.st_mode) and not any(
                rel == x or rel.startswith(x + '/') for x in skip):
            g.setdefault((st.st_dev, st.st_ino), []).append(rel)
    return sorted(sorted(v) for v in g.values())


def run_hardlinks(R, work):
    def check():
        top, src, dst, db = fresh(work, 'links')
        line = link_tree(top, src)
        discover(db, src, dst, *['--exclude=' + x for x in LINK_EXCLUDES])
        cp = run(['review', '--db', db])
        expect_rc(cp, 0, 'review')
        got = [x for x in cp.stdout.decode().splitlines() if x.startswith('hard links')]
        expect_eq('review: the link groups', [line], got)
        copy(db)
        # the oracle: the source's inode sharing, the excluded names left out
        want = inode_groups(src, skip=('l3.skip', 'excl'))
        expect_eq('names that share an inode on the destination, as on the source',
                  want, inode_groups(dst))
        nl = {rel: st.st_nlink for rel, st in walk(dst).items()
              if stat.S_ISREG(st.st_mode)}
        expect_eq('links of the 1000-file group', 1000, nl['big/d0/f0'])
        expect_eq('links of the split group', 2, nl['keep/l1'])
        expect_eq('links of a file linked only outside the tree', 1, nl['alone'])
        # rsync -H, given the same exclusions, finds nothing to do
        excl = ['--exclude=' + x for x in LINK_EXCLUDES]
        cmd = ['rsync', '-aHn', '--itemize-changes'] + excl + [src + '/', dst + '/']
        cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=tmtest.TIMEOUT)
        got = [x for x in cp.stdout.decode().splitlines() if x and x != '.d..t...... ./']
        expect_eq('rsync -aHn with the same exclusions', [], got)
        verify(db)
        # verify finds a file of a group that is no longer a link of it on
        # the destination (same bytes, mtime and mode); retry links it again
        p = os.path.join(dst, 'other/deeper/b')
        st = os.lstat(p)
        os.unlink(p)
        shutil.copy2(os.path.join(src, 'two/a'), p)
        os.chmod(p, stat.S_IMODE(st.st_mode))
        cp = run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 3, 'verify of a link broken on the destination')
        expect_eq('what verify found', True,
                  b'/other/deeper/b: verify: not a link of /two/a on the destination, '
                  b'as on the source' in cp.stdout + cp.stderr)
        expect_rc(run(['retry', '--db', db, '--quiet']), 0, 'retry')
        verify(db)
        expect_eq('names that share an inode after retry', want, inode_groups(dst))
    R.check('hard links: groups of 2 and 1000 across folders, one split by an '
            'exclusion, are linked as on the source (rsync -aHn, inode walk)', check)

    def check_kill():
        # kill -9 while the copy links a group of 10,000 files: the next copy
        # removes the temporaries of the killed one, links the rest, and
        # the group is one inode
        top, src, dst, db = fresh(work, 'links-kill')
        first = put(src, 'k/d0/f0', b'killed while linking', mtime=OLD)
        for i in range(1, 10000):
            d = os.path.join(src, 'k/d%d' % (i % 20))
            os.makedirs(d, exist_ok=True)
            os.link(first, os.path.join(d, 'f%d' % i))
        discover(db, src, dst)
        p = subprocess.Popen([tmtest.TREEMIG, 'copy', '--db', db, '--yes', '--quiet'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        made = os.path.join(dst, 'k/d0/f0')
        try:
            while p.poll() is None:
                try:
                    if os.lstat(made).st_nlink > 100:
                        break
                except FileNotFoundError:
                    pass
            killed = p.poll() is None
            p.kill()
        finally:
            p.wait()
        if not killed:
            fail('the copy ended before it could be killed while linking')
        links = os.lstat(made).st_nlink
        if links >= 10000:
            fail('the copy had linked all the files when it was killed')
        copy(db)
        verify(db)
        expect_eq('the group on the destination after the resumed copy',
                  inode_groups(src), inode_groups(dst))
        left = [rel for rel in walk(dst) if os.path.basename(rel).startswith('.treemig.')]
        expect_eq('temporaries left', [], left)
        print('     killed with %d of 10000 names linked' % links)
    R.check('hard links: kill -9 while linking, the next copy finishes the group',
            check_kill)

    def check_upgrade():
        # a state file of schema version 4 (no inode columns) is brought to
        # version 5 by the next command; its files are copied on their own
        top, src, dst, db = fresh(work, 'links-v4')
        put(src, 'a', b'x', mtime=OLD)
        os.link(os.path.join(src, 'a'), os.path.join(src, 'b'))
        discover(db, src, dst)
        import sqlite3
        c = sqlite3.connect(db)
        try:
            c.execute('DROP INDEX src_nodes_inode')
            c.execute('DROP INDEX src_nodes_folders')
            c.execute('DROP INDEX dst_nodes_folders')
            for col in ('dev', 'ino', 'nlink', 'hash', 'lease_id', 'xattrs'):
                c.execute('ALTER TABLE src_nodes DROP COLUMN %s' % col)
            for col in ('host', 'pid'):
                c.execute('ALTER TABLE queue_stats DROP COLUMN %s' % col)
            c.execute('DROP TABLE leases')
            c.execute('ALTER TABLE dst_nodes DROP COLUMN lease_id')
            c.execute('DROP TABLE id_blocks')
            c.execute('PRAGMA user_version = 4')
            c.commit()
        finally:
            c.close()
        copy(db)
        c = sqlite3.connect(db)
        try:
            expect_eq('schema version after the copy', 14,
                      c.execute('PRAGMA user_version').fetchone()[0])
            cols = [r[1] for r in c.execute('PRAGMA table_info(src_nodes)')]
            expect_eq('inode, hash, lease and xattrs columns added',
                      ['dev', 'ino', 'nlink', 'hash', 'lease_id', 'xattrs'],
                      cols[-6:])
            expect_eq('inode index added', 1, c.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'src_nodes_inode'"
            ).fetchone()[0])
        finally:
            c.close()
        rsync_agrees(src, dst, '-an')
        verify(db)
    R.check('schema 4 to 5: a state file without inodes is upgraded and copied',
            check_upgrade)


# --------------------------------------------------------------------------
# extended attributes and POSIX ACLs

KEPT_NS = ('user.', 'trusted.', 'system.posix_acl_access', 'system.posix_acl_default') + (
    ('security.',) if os.geteuid() == 0 else ())


def xattr_walk(root):
    """{relative path: {name: value}} of the attributes a copy keeps, for
    every file and folder below root (and root itself as '.')."""
    out = {}
    paths = ['.'] + [rel for rel, st in walk(root).items()
                     if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)]
    for rel in paths:
        p = os.path.join(root, rel)
        out[rel] = {n: os.getxattr(p, n, follow_symlinks=False)
                    for n in os.listxattr(p, follow_symlinks=False)
                    if n.startswith(KEPT_NS)}
    return out


def getfacl(root):
    """getfacl -R of the tree, paths relative to it (the oracle of ACLs)."""
    if not shutil.which('getfacl'):
        fail('getfacl is missing (the acl package: scripts/deps.sh test)')
    cp = subprocess.run(['getfacl', '-R', '-p', '-n', '.'], cwd=root,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=tmtest.TIMEOUT)
    if cp.returncode != 0:
        fail('getfacl -R: %r' % cp.stderr[-300:])
    # one block per node, in the order the folders list them: sorted
    return sorted(x for x in cp.stdout.decode().split('\n\n') if x)


def xattr_tree(src):
    """Attributes in every namespace the test can set: user.* (an empty
    value, a 4 KiB one, several on one file), trusted.* as root, an access
    ACL on a file, a default ACL and an attribute on a folder."""
    put(src, 'f', b'with attributes', mtime=OLD)
    put(src, 'd/g', b'in a folder with a default ACL', mtime=OLD)
    put(src, 'plain', b'none', mtime=OLD)
    f = os.path.join(src, 'f')
    try:
        os.setxattr(f, 'user.color', b'blue')
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise Skip('no user.* attributes on the file system of %s' % src)
        raise
    os.setxattr(f, 'user.empty', b'')
    os.setxattr(f, 'user.big', bytes(range(256)) * 16)
    os.setxattr(os.path.join(src, 'd'), 'user.folder', b'of a folder')
    if os.geteuid() == 0:
        os.setxattr(f, 'trusted.secret', b'root only')
        # security.* (as root: the destination here accepts it)
        os.setxattr(f, 'security.treemig', b'a label')
    if not shutil.which('setfacl'):
        fail('setfacl is missing (the acl package: scripts/deps.sh test)')
    for args in (['-m', 'u:65534:r,g:65534:rw', f],
                 ['-d', '-m', 'u:65534:rwx', os.path.join(src, 'd')],
                 ['-m', 'u:65534:rx', os.path.join(src, 'd')]):
        cp = subprocess.run(['setfacl'] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=tmtest.TIMEOUT)
        if cp.returncode != 0:
            raise Skip('setfacl %s: %r (no ACLs on this file system)' % (
                ' '.join(args[:-1]), cp.stderr[-200:]))
    for p in (f, os.path.join(src, 'd/g')):
        os.utime(p, ns=(OLD, OLD))
    os.utime(os.path.join(src, 'd'), ns=(OLD, OLD))


# syscall() with 464 (getxattrat) and 465 (listxattrat) failing as on a
# kernel before 6.13; each one counted as a byte appended to $SHIM_COUNT
SHIM_C = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

long syscall(long n, ...)
{
    static long (*real)(long, ...);
    va_list ap;
    long a[6];
    int i;
    va_start(ap, n);
    for (i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == 464 || n == 465) {
        const char *p = getenv("SHIM_COUNT");
        int fd = p ? open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
        if (fd >= 0) {
            (void)!write(fd, "x", 1);
            close(fd);
        }
        errno = ENOSYS;
        return -1;
    }
    if (!real)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
'''


def run_xattrs(R, work):
    def check():
        top, src, dst, db = fresh(work, 'xattrs')
        xattr_tree(src)
        discover(db, src, dst)
        copy(db)
        want = xattr_walk(src)
        want['.'] = xattr_walk(dst)['.']   # the roots' own are left alone
        expect_eq('attributes of each file and folder (os.listxattr)', want,
                  xattr_walk(dst))
        expect_eq('getfacl -R', getfacl(src), getfacl(dst))
        rsync_agrees(src, dst, '-aHAXn')
        verify(db)
    R.check('extended attributes (user.*, trusted.* and security.* as root) and '
            'ACLs (access, default) are copied (rsync -aHAXn, getfacl -R, listxattr agree)', check)

    def check_no_xattrs():
        top, src, dst, db = fresh(work, 'no-xattrs')
        xattr_tree(src)
        discover(db, src, dst, '--no-xattrs')
        copy(db)
        got = {rel: v for rel, v in xattr_walk(dst).items() if v and rel != '.'}
        expect_eq('attributes on the destination with --no-xattrs', {}, got)
        verify(db)
    R.check('discover --no-xattrs: none is copied', check_no_xattrs)

    def check_compared():
        # a destination with the same contents and mtimes but not the same
        # attributes: discovery finds each file and folder whose attributes
        # differ ('attrs'), the copy sets them in place (the files' inodes
        # stay), verify passes, and finds an attribute changed afterwards
        top, src, dst, db = fresh(work, 'xattrs-compared')
        xattr_tree(src)
        put(src, 'same', b'same attributes', mtime=OLD)
        os.setxattr(os.path.join(src, 'same'), 'user.k', b'v')
        if not shutil.which('rsync'):
            fail('rsync is not installed (scripts/deps.sh test installs it)')
        # rsync -a without -A -X: contents, modes and mtimes, no attribute
        cp = subprocess.run(['rsync', '-a', src + '/', dst + '/'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=tmtest.TIMEOUT)
        expect_eq('rsync -a exit', 0, cp.returncode)
        os.setxattr(os.path.join(dst, 'same'), 'user.k', b'v')
        os.setxattr(os.path.join(dst, 'plain'), 'user.stale', b'only here')
        ino = {rel: os.lstat(os.path.join(dst, rel)).st_ino
               for rel in ('f', 'plain', 'same', 'd/g')}
        discover(db, src, dst)
        expect_eq('review --list attrs', ['/d', '/f', '/plain'],
                  sorted(review_list(db, 'attrs')))
        copy(db)
        want = xattr_walk(src)
        want['.'] = xattr_walk(dst)['.']
        expect_eq('attributes after the copy (os.listxattr)', want, xattr_walk(dst))
        expect_eq('getfacl -R after the copy', getfacl(src), getfacl(dst))
        rsync_agrees(src, dst, '-aHAXn')
        expect_eq('inodes of the files (attributes set in place, not rewritten)',
                  ino, {rel: os.lstat(os.path.join(dst, rel)).st_ino for rel in ino})
        verify(db)
        # changed on the destination after the copy: verify says so
        os.setxattr(os.path.join(dst, 'f'), 'user.color', b'red')
        cp = run(['verify', '--db', db])
        if cp.returncode == 0:
            fail('verify passed with user.color changed on the destination')
        if b'/f' not in cp.stdout + cp.stderr or \
                b'extended attributes' not in cp.stdout + cp.stderr:
            fail('verify does not name /f and its attributes: %r' %
                 (cp.stdout + cp.stderr)[-600:])
        # and the copy puts it back (retry of what verify failed)
        expect_rc(run(['retry', '--db', db, '--quiet']), 0, 'retry')
        expect_eq('user.color after the retry', b'blue',
                  os.getxattr(os.path.join(dst, 'f'), 'user.color'))
        verify(db)
    R.check('extended attributes and ACLs compared: discovery lists those that '
            'differ as attrs, the copy sets them in place, verify finds one '
            'changed on the destination', check_compared)

    def check_security_own():
        # a destination's own security.* attribute (an SELinux label on
        # every new file) is neither a difference nor removed; the
        # source's security.* is still copied
        if os.geteuid() != 0:
            raise Skip('security.* attributes: root only')
        top, src, dst, db = fresh(work, 'xattrs-security')
        put(src, 'same', b'same', mtime=OLD)
        os.setxattr(os.path.join(src, 'same'), 'user.k', b'v')
        put(src, 'new', b'new', mtime=OLD)
        os.setxattr(os.path.join(src, 'new'), 'security.treemig', b'label')
        put(dst, 'same', b'same', mtime=OLD)
        os.setxattr(os.path.join(dst, 'same'), 'user.k', b'v')
        os.setxattr(os.path.join(dst, 'same'), 'security.dstonly', b'its own')
        os.utime(dst, ns=(OLD, OLD))
        discover(db, src, dst)
        expect_eq('review --list attrs', {}, review_list(db, 'attrs'))
        copy(db)
        expect_eq('the destination\'s own security.* after the copy', b'its own',
                  os.getxattr(os.path.join(dst, 'same'), 'security.dstonly'))
        expect_eq('the source\'s security.* copied', b'label',
                  os.getxattr(os.path.join(dst, 'new'), 'security.treemig'))
        verify(db)
    R.check('security.*: copied (root), a destination\'s own neither compared nor '
            'removed', check_security_own)

    def check_compared_fallback():
        # a kernel without listxattrat/getxattrat (before 6.13): the
        # listing reads the attributes through /proc/self/fd instead. An
        # LD_PRELOAD shim makes syscall(464/465) fail with ENOSYS (and
        # counts them), the rest as in check_compared
        cc = shutil.which('cc') or shutil.which('gcc')
        if not cc:
            fail('no C compiler for the ENOSYS shim (build-essential)')
        top, src, dst, db = fresh(work, 'xattrs-fallback')
        shim_c, shim = os.path.join(top, 'shim.c'), os.path.join(top, 'shim.so')
        count = os.path.join(top, 'count')
        with open(shim_c, 'w') as f:
            f.write(SHIM_C)
        cp = subprocess.run([cc, '-shared', '-fPIC', '-o', shim, shim_c, '-ldl'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=tmtest.TIMEOUT)
        if cp.returncode != 0:
            fail('cc of the shim: %r' % cp.stderr[-400:])
        xattr_tree(src)
        cp = subprocess.run(['rsync', '-a', src + '/', dst + '/'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=tmtest.TIMEOUT)
        expect_eq('rsync -a exit', 0, cp.returncode)
        os.setxattr(os.path.join(dst, 'plain'), 'user.stale', b'only here')
        env = {'LD_PRELOAD': shim, 'SHIM_COUNT': count,
               # make asan: the shim comes before the ASan runtime
               'ASAN_OPTIONS': ':'.join(x for x in (os.environ.get('ASAN_OPTIONS'),
                                                    'verify_asan_link_order=0') if x)}
        expect_rc(run(['discover', '--db', db, '--quiet', src, dst], env=env), 0,
                  'discover (no xattrat)')
        with open(count) as f:
            if not f.read():
                fail('the shim saw no listxattrat/getxattrat call')
        expect_eq('review --list attrs (no xattrat)', ['/d', '/f', '/plain'],
                  sorted(review_list(db, 'attrs')))
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet'], env=env), 0, 'copy')
        want = xattr_walk(src)
        want['.'] = xattr_walk(dst)['.']
        expect_eq('attributes after the copy (no xattrat)', want, xattr_walk(dst))
        expect_rc(run(['verify', '--db', db, '--quiet'], env=env), 0, 'verify')
        os.setxattr(os.path.join(dst, 'd/g'), 'user.late', b'x')
        cp = run(['verify', '--db', db], env=env)
        if cp.returncode == 0 or b'/d/g' not in cp.stdout + cp.stderr:
            fail('verify (no xattrat) missed an attribute added to /d/g: %s' % show(cp))
    R.check('without listxattrat/getxattrat (ENOSYS): compared through /proc/self/fd '
            'as well', check_compared_fallback)

    def check_compared_no_xattrs():
        top, src, dst, db = fresh(work, 'xattrs-not-compared')
        xattr_tree(src)
        cp = subprocess.run(['rsync', '-a', src + '/', dst + '/'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=tmtest.TIMEOUT)
        expect_eq('rsync -a exit', 0, cp.returncode)
        discover(db, src, dst, '--no-xattrs')
        expect_eq('review --list attrs with --no-xattrs', {},
                  review_list(db, 'attrs'))
        copy(db)
        os.setxattr(os.path.join(dst, 'f'), 'user.color', b'red')
        verify(db)
    R.check('discover --no-xattrs: attributes are not compared either (discovery, '
            'verify)', check_compared_no_xattrs)

    def check_refused():
        # a destination that keeps no extended attribute (ramfs): the files
        # are copied, and each refusal is said on its node
        top, src, dst, db = fresh(work, 'xattrs-refused')
        put(src, 'f', b'x', mtime=OLD)
        os.setxattr(os.path.join(src, 'f'), 'user.color', b'blue')
        put(src, 'plain', b'y', mtime=OLD)
        if os.geteuid() == 0:
            # security.* too (root): refused as well, said as well
            put(src, 'sec', b'z', mtime=OLD)
            os.setxattr(os.path.join(src, 'sec'), 'security.treemig', b'label')
        in_namespace('mount -t ramfs ramfs "$4"; "$1" discover --db "$2" --quiet '
                     '"$3" "$4"; "$1" copy --db "$2" --yes --quiet; '
                     'test "$(cat "$4/f")" = x', tmtest.TREEMIG, db, src, dst)
        conn = tmtest.connect(db)
        try:
            rows = {r[0].decode(): (r[1].decode(), r[2] and r[2].decode())
                    for r in conn.execute(
                        'SELECT path, copy_status, error FROM src_nodes WHERE depth = 1')}
        finally:
            conn.close()
        want = {'/f': ('successful', 'copied without the extended attributes the '
                       'destination refused: user.color: operation not supported'),
                '/plain': ('successful', None)}
        if os.geteuid() == 0:
            want['/sec'] = ('successful', 'copied without the extended attributes '
                            'the destination refused: security.treemig: operation '
                            'not supported')
        expect_eq('the nodes after the copy to ramfs', want, rows)
    R.check('a destination that refuses extended attributes: copied, the refusal '
            'said on the node', check_refused)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_fidelity')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-fidelity-', dir=base)
    os.chmod(work, 0o755)
    try:
        run_symlinks(R, work)
        run_specials(R, work)
        run_one_fs(R, work)
        run_hardlinks(R, work)
        run_xattrs(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
