#!/usr/bin/env python3
"""Attributes that rsync agrees with (issue 11, section 2).

A destination that is an older copy of the source ("aged": made with
cp -a, then damaged) is migrated with discover, copy and verify; then
rsync's own itemized comparison, `rsync -rlptDn --itemize-changes SRC/
DST/`, with and without --checksum, must list nothing. rsync is the
independent oracle: it compares types, sizes, contents (-c), mtimes,
modes and symlinks itself. The damage: removed files, appended files,
files and symlinks with old mtimes, files of mode 0600 and folders of mode
0700 (same content: discovery calls them conflict 'attrs', the copy sets
their mode in place), a file of another mode and size, and a folder
replaced by a file (a type clash: it stays a conflict, is reported, and is
left out of the comparison, whose lines about it are checked apart).
Nothing is damaged in the root folder itself: treemig leaves the roots'
own mode and mtime alone (docs/internals.md).

- on a small tree built here, with the exact review (conflicts by reason,
  `review --list attrs`), then: verify finds a mode, a folder's mode and a
  folder's mtime changed afterwards, retry fixes them, rsync agrees again;
- on a real tree no one here wrote: a copy of /usr/share/man (tens of
  thousands of entries, thousands of symlinks; TREEMIG_ATTRS_TREE names
  another), damaged at seeded random places;
- copy --no-overwrite keeps what differs in attributes only (skipped, with
  the reason; rsync lists exactly those nodes), and still copies what a
  kept folder lacks;
- discover --owner (as root): owners are compared, set by the copy and
  checked by verify, and `rsync -rlptgoDn` lists nothing; without it an
  owner-only difference is no conflict; copy --owner on a migration
  discovered without it says what it does;
- a file of another user that the user running treemig (65534) may not
  chmod is copied whole instead, and rsync agrees;
- the simulated storage's cmode=: sim-stats counts the conflicts attrs,
  the copy sets them, and a new discovery finds nothing left.
Stdlib only; TREEMIG names the binary."""

import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, expect_rc, fail, run, show  # noqa: E402

T0 = 1600000000 * 10**9
OLD = 978307200 * 10**9          # 2001-01-01: an "old" mtime


def rsync_lines(src, dst, *extra, checksum=True, owners=False):
    """The lines of rsync's itemized dry run from src to dst (the source
    into the destination), as rsync prints them."""
    if not shutil.which('rsync'):
        fail('rsync is not installed (scripts/deps.sh test installs it)')
    opts = '-rlptgoDn' if owners else '-rlptDn'
    cmd = ['rsync', opts, '--itemize-changes'] + (['--checksum'] if checksum else [])
    cmd += list(extra) + [os.fsencode(src) + b'/', os.fsencode(dst) + b'/']
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=tmtest.TIMEOUT)
    if cp.returncode != 0:
        fail('%s exited %d: %r' % (cmd, cp.returncode, cp.stderr[-500:]))
    # The destination root's own mode and mtime are the operator's (a new
    # share's root is made for it): treemig leaves them as they are
    # (README, copy), so rsync's line for the root itself is not a
    # difference. Only that exact line is dropped.
    return [x for x in cp.stdout.decode('utf-8', 'replace').split('\n')
            if x and not (x.startswith('.d') and x.endswith(' ./'))]


def rsync_agrees(src, dst, *extra, owners=False):
    """rsync lists nothing, with and without --checksum."""
    for checksum in (False, True):
        lines = rsync_lines(src, dst, *extra, checksum=checksum, owners=owners)
        if lines:
            fail('rsync %s%s lists %d differences, e.g.:\n      %s' % (
                '-c ' if checksum else '', ' '.join(extra), len(lines),
                '\n      '.join(lines[:15])))


def cp_a(src, dst):
    cp = subprocess.run(['cp', '-a', src, dst], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=tmtest.TIMEOUT)
    if cp.returncode != 0:
        fail('cp -a %s %s: %r' % (src, dst, cp.stderr[-500:]))


def put(root, rel, data, mode=0o644, mtime=None):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
    os.chmod(p, mode)
    t = mtime if mtime is not None else T0 + len(rel) * 1000003 + sum(data[:64])
    os.utime(p, ns=(t, t))


def set_mtime(p, t):
    os.utime(p, ns=(t, t), follow_symlinks=False)


def discover(db, src, dst, *opts):
    cp = run(['discover', '--db', db, '--quiet'] + list(opts) + [src, dst])
    expect_rc(cp, 0, 'discover %s' % ' '.join(opts))


def review_list(db, kind):
    """{path: reason} of review --list KIND (plain format)."""
    cp = run(['review', '--db', db, '--list', kind])
    expect_rc(cp, 0, 'review --list %s' % kind)
    out = {}
    for line in cp.stdout.split(b'\n'):
        if not line:
            continue
        f = line.split(b'\t')
        expect_eq('kind of a line of --list %s' % kind, kind.encode(), f[0])
        out[f[3]] = f[4].decode('utf-8', 'replace') if len(f) > 4 else None
    return out


def conflicts_by_reason(db):
    conn = tmtest.connect(db)
    try:
        return {cf.decode(): n for cf, n in conn.execute(
            'SELECT conflict, count(*) FROM src_nodes WHERE depth > 0 AND '
            'conflict IS NOT NULL GROUP BY conflict')}
    finally:
        conn.close()


def rel_of(root, p):
    return b'/' + os.path.relpath(p, root).encode()


def root_attrs(p):
    st = os.lstat(p)
    return (stat.S_IMODE(st.st_mode), st.st_mtime_ns)


# --------------------------------------------------------------------------
# a small tree, every damage named

def small_pair(top):
    src = os.path.join(top, 'src')
    os.makedirs(src)
    for d in ('docs', 'docs/sub', 'bin', 'data', 'data/deep', 'data/deep/er',
              'data/gone', 'data/gone/in', 'empty'):
        os.makedirs(os.path.join(src, d), exist_ok=True)
    for i in range(8):
        put(src, 'docs/f%d.txt' % i, b'doc %d\n' % i * (i + 1))
        put(src, 'docs/sub/s%d.txt' % i, b'sub %d\n' % i)
        put(src, 'data/deep/er/e%d' % i, b'e' * (100 * i))
    put(src, 'bin/run.sh', b'#!/bin/sh\necho run\n', 0o755)
    put(src, 'bin/tool', b'\x7fELF' + bytes(range(200)), 0o750)
    put(src, 'data/gone/a.txt', b'a\n')
    put(src, 'data/gone/in/b.txt', b'b\n')
    put(src, 'data/six', b'six\n' * 6)
    os.symlink('../docs/f1.txt', os.path.join(src, 'bin', 'doc-link'))
    os.symlink('no/such/target', os.path.join(src, 'data', 'dangling'))
    set_mtime(os.path.join(src, 'bin', 'doc-link'), T0 + 5)
    set_mtime(os.path.join(src, 'data', 'dangling'), T0 + 6)
    os.chmod(os.path.join(src, 'bin'), 0o750)
    for k, d in enumerate(('data/gone/in', 'data/gone', 'data/deep/er', 'data/deep',
                           'data', 'docs/sub', 'docs', 'bin', 'empty', '')):
        set_mtime(os.path.join(src, d), T0 + 777 * (k + 1))
    dst = os.path.join(top, 'dst')
    cp_a(src, dst)
    j = lambda *a: os.path.join(dst, *a)  # noqa: E731
    os.unlink(j('docs', 'f1.txt'))                       # removed
    os.unlink(j('data', 'deep', 'er', 'e2'))
    os.unlink(j('docs', 'sub', 's7.txt'))                # (in a folder of mode 0700)
    with open(j('docs', 'f3.txt'), 'ab') as f:           # appended
        f.write(b'more\n')
    set_mtime(j('docs', 'sub', 's4.txt'), OLD)           # old mtimes
    set_mtime(j('bin', 'doc-link'), OLD)
    os.chmod(j('docs', 'f5.txt'), 0o600)                  # another mode only
    os.chmod(j('bin', 'run.sh'), 0o600)
    os.chmod(j('data', 'deep', 'er', 'e6'), 0o600)
    os.chmod(j('docs', 'sub'), 0o700)
    os.chmod(j('data', 'deep'), 0o700)
    os.chmod(j('empty'), 0o700)
    os.chmod(j('data', 'six'), 0o600)                     # another mode and size
    with open(j('data', 'six'), 'ab') as f:
        f.write(b'!')
    shutil.rmtree(j('data', 'gone'))                      # a folder replaced by a file
    put(dst, 'data/gone', b'i was a folder\n')
    # the damage changed the mtimes of the folders it touched (not the
    # root's, which nothing here changes)
    attrs = {b'/docs/f5.txt', b'/bin/run.sh', b'/data/deep/er/e6', b'/docs/sub',
             b'/data/deep', b'/empty'}
    return src, dst, attrs


def run_small(R, work):
    top = os.path.join(work, 'small')
    src, dst, attrs = small_pair(top)
    db = os.path.join(top, 'state.db')
    root_before = root_attrs(dst)

    def check_discover():
        discover(db, src, dst)
        expect_eq('conflicts by reason', {'attrs': 6, 'size': 2, 'mtime': 2, 'type': 1},
                  conflicts_by_reason(db))
        expect_eq('review --list attrs', {p: 'attrs' for p in attrs},
                  review_list(db, 'attrs'))
        got = review_list(db, 'conflict')
        expect_eq('review --list conflict: the reasons',
                  {b'/docs/f5.txt': 'attrs', b'/bin/run.sh': 'attrs',
                   b'/data/deep/er/e6': 'attrs', b'/docs/sub': 'attrs',
                   b'/data/deep': 'attrs', b'/empty': 'attrs', b'/docs/f3.txt': 'size',
                   b'/data/six': 'size', b'/docs/sub/s4.txt': 'mtime',
                   b'/bin/doc-link': 'mtime', b'/data/gone': 'type'}, got)
        expect_eq('review --list missing', {b'/docs/f1.txt': None,
                                            b'/data/deep/er/e2': None,
                                            b'/docs/sub/s7.txt': None},
                  review_list(db, 'missing'))
        cp = run(['review', '--db', db, '--top', '0'])
        expect_rc(cp, 0, 'review')
        if b'  attributes      6 (3 files, 3 folders), same content' not in cp.stdout:
            fail('the summary does not count the 6 attributes-only nodes:\n%s'
                 % cp.stdout.decode())
        st = tmtest.status_json(db)
        expect_eq('already there is not what differs in attributes',
                  False, any(r['path'] in attrs and r['copy_status'] == 'already_existed'
                             for r in tmtest.read_nodes(db, 'src_nodes')))
        expect_eq('copy.conflicts', 11, st['copy']['conflicts'])
    R.check('small tree: discovery calls mode-only differences conflict attrs, '
            'listed by review', check_discover)

    def check_copy():
        inodes = {p: os.lstat(dst.encode() + p).st_ino for p in attrs}
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy')
        # what differed only in its mode kept its content: the same inode
        # (set in place, as rsync does), the source's mode
        for p, ino in sorted(inodes.items()):
            st = os.lstat(dst.encode() + p)
            expect_eq('%r: changed in place (inode)' % p, ino, st.st_ino)
            expect_eq('%r: mode' % p, oct(stat.S_IMODE(os.lstat(src.encode() + p).st_mode)),
                      oct(stat.S_IMODE(st.st_mode)))
        cp = run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify')
        expect_eq('the type clash is still reported', {b'/data/gone': 'type'},
                  {p: r for p, r in review_list(db, 'conflict').items() if r == 'type'})
        expect_eq('the destination root is left alone', root_before, root_attrs(dst))
        rsync_agrees(src, dst, '--exclude=/data/gone')
        lines = rsync_lines(src, dst)
        if not lines or any(not x.split(' ', 1)[1].startswith('data/gone') for x in lines):
            fail('rsync without the exclude should list the type clash alone: %r' % lines)
    R.check('small tree: copy sets the attributes in place, verify passes, rsync '
            '(-c too) lists nothing but the type clash', check_copy)

    def check_verify_catches():
        f = os.path.join(dst, 'docs', 'f6.txt')
        d = os.path.join(dst, 'docs')
        d2 = os.path.join(dst, 'data', 'deep', 'er')
        os.chmod(f, 0o640)
        os.chmod(d, 0o711)
        st = os.lstat(d2)
        set_mtime(d2, st.st_mtime_ns + 1)
        cp = run(['verify', '--db', db])
        expect_rc(cp, 3, 'verify after a mode, a folder mode and a folder mtime changed')
        out = cp.stderr.decode('utf-8', 'replace')
        for want in ('/docs/f6.txt: verify: mode 0640 on the destination, 0644 on the '
                     'source', '/docs: verify: mode 0711 on the destination, 0755',
                     '/data/deep/er: verify: mtime '):
            if want not in out:
                fail('verify does not say %r:\n%s' % (want, out))
        expect_eq('failed after verify', {b'/docs/f6.txt', b'/docs', b'/data/deep/er'},
                  set(review_list(db, 'failed')))
        cp = run(['retry', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'retry')
        cp = run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify after retry')
        rsync_agrees(src, dst, '--exclude=/data/gone')
    R.check('small tree: verify finds a file mode, a folder mode and a folder mtime '
            'changed afterwards; retry sets them; rsync agrees again',
            check_verify_catches)


# --------------------------------------------------------------------------
# a real tree

def walk(root):
    """(files, folders, symlinks) below root, bytes relative paths, sorted;
    the root itself and its own entries left out of files (damage there
    would change the root's mtime)."""
    files, folders, links = [], [], []
    broot = os.fsencode(root)
    for dirpath, dirs, names in os.walk(broot):
        for n in dirs + names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, broot)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                (links if b'/' in rel else []).append(rel)
            elif stat.S_ISDIR(st.st_mode):
                folders.append(rel)
            elif stat.S_ISREG(st.st_mode) and b'/' in rel:
                files.append(rel)
    return sorted(files), sorted(folders), sorted(links)


def run_real(R, work):
    tree = os.environ.get('TREEMIG_ATTRS_TREE', '/usr/share/man')
    top = os.path.join(work, 'real')
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    db = os.path.join(top, 'state.db')
    ctx = {}

    def check_build():
        if not os.path.isdir(tree):
            fail('%s is not there: TREEMIG_ATTRS_TREE names a tree to use' % tree)
        os.makedirs(top)
        cp_a(tree, src)          # the tree as it is now: it must not change under us
        cp_a(src, dst)           # the aged destination, then damaged
        files, folders, links = walk(src)
        if len(files) + len(folders) + len(links) < 2000:
            fail('%s is too small to tell anything (%d entries)' % (
                tree, len(files) + len(folders) + len(links)))
        rng = random.Random(11)
        # a folder below the first level that holds files
        deep = sorted({f.rsplit(b'/', 1)[0] for f in files if f.count(b'/') >= 2})
        if not deep:
            fail('%s has no folder below its first level to replace by a file' % tree)
        clash = rng.choice(deep)
        inside = lambda p: p == clash or p.startswith(clash + b'/')  # noqa: E731
        files = [f for f in files if not inside(f)]
        folders = [d for d in folders if not inside(d)]
        links = [x for x in links if not inside(x)]
        rng.shuffle(files)
        k = max(5, len(files) // 200)
        removed, appended, old = files[:k], files[k:2 * k], files[2 * k:3 * k]
        modes = files[3 * k:5 * k]
        fmodes = rng.sample(folders, min(len(folders), max(3, len(folders) // 10)))
        oldlinks = rng.sample(links, min(len(links), k))
        b = lambda rel: os.path.join(os.fsencode(dst), rel)  # noqa: E731
        for rel in removed:
            os.unlink(b(rel))
        for rel in appended:
            with open(b(rel), 'ab') as f:
                f.write(b'appended\n')
        for rel in old:
            set_mtime(b(rel), OLD)
        for rel in oldlinks:
            set_mtime(b(rel), OLD)
        for rel in modes:
            os.chmod(b(rel), 0o600)
        for rel in fmodes:
            os.chmod(b(rel), 0o700)
        shutil.rmtree(b(clash))
        with open(b(clash), 'wb') as f:
            f.write(b'a folder here before\n')
        ctx.update(files=len(files), folders=len(folders), links=len(links),
                   removed=removed, appended=appended, old=old + oldlinks,
                   attrs={b'/' + p for p in modes + fmodes}, clash=b'/' + clash)
        print('     %s: %d files, %d folders, %d symlinks; damaged: %d removed, %d '
              'appended, %d files and %d symlinks with old mtimes, %d files of mode '
              '0600, %d folders of mode 0700, %r replaced by a file' % (
                  tree, len(files), len(folders), len(links), len(removed),
                  len(appended), len(old), len(oldlinks), len(modes), len(fmodes),
                  clash))
    R.check('real tree: a copy of %s and an aged destination of it (cp -a, damaged)'
            % tree, check_build)
    if 'attrs' not in ctx:
        return
    root_before = root_attrs(dst)

    def check_discover():
        discover(db, src, dst, '--workers', '4')
        got = conflicts_by_reason(db)
        expect_eq('conflicts by reason', {
            'attrs': len(ctx['attrs']), 'size': len(ctx['appended']),
            'mtime': len(ctx['old']), 'type': 1}, got)
        expect_eq('review --list attrs: exactly the nodes of another mode',
                  sorted(ctx['attrs']), sorted(review_list(db, 'attrs')))
        missing = review_list(db, 'missing')
        expect_eq('missing', sorted(b'/' + p for p in ctx['removed']), sorted(missing))
    R.check('real tree: discovery finds each damage, the mode-only ones as attrs',
            check_discover)

    def check_copy():
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy')
        cp = run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify')
        expect_eq('the destination root is left alone', root_before, root_attrs(dst))
        clash = ctx['clash'].decode()
        rsync_agrees(src, dst, '--exclude=%s' % clash)
        lines = rsync_lines(src, dst, checksum=False)
        if not lines or any(not x.split(' ', 1)[1].startswith(clash[1:]) for x in lines):
            fail('rsync without the exclude should list the type clash %s alone: %r'
                 % (clash, lines[:10]))
    R.check('real tree: copy and verify; rsync (-c too) lists nothing but the type '
            'clash', check_copy)


# --------------------------------------------------------------------------

def run_no_overwrite(R, work):
    top = os.path.join(work, 'noov')
    src, dst, attrs = small_pair(top)
    db = os.path.join(top, 'state.db')

    def check():
        discover(db, src, dst)
        cp = run(['copy', '--db', db, '--yes', '--quiet', '--no-overwrite'])
        expect_rc(cp, 0, 'copy --no-overwrite')
        skipped = review_list(db, 'skipped')
        for p in attrs:
            why = skipped.get(p) or ''
            if not why.startswith("kept the destination's attributes") or \
                    '(--no-overwrite)' not in why:
                fail('%r: not skipped with the reason: %r' % (p, skipped.get(p)))
        for p in attrs:
            s, d = os.lstat(src.encode() + p), os.lstat(dst.encode() + p)
            if stat.S_IMODE(s.st_mode) == stat.S_IMODE(d.st_mode):
                fail('%r: --no-overwrite changed its mode' % p)
        # what a kept folder lacked is copied all the same
        if not os.path.exists(os.path.join(dst, 'docs', 'sub', 's7.txt')):
            fail('the file missing in a kept folder (mode 0700) was not copied')
        cp = run(['verify', '--db', db])
        expect_rc(cp, 3, 'verify: the kept nodes are not checked')
        for p in attrs:
            if p.decode() + ': not checked' not in cp.stderr.decode():
                fail('verify does not name %r as not checked:\n%s' % (p, show(cp)))
        # rsync sees exactly what was kept: the mode ('p') of each node kept
        # for its attributes (and the mtime of a kept folder, which the copy
        # did not set), the nodes kept for their content
        lines = rsync_lines(src, dst, '--exclude=/data/gone', checksum=False)
        names = {b'/' + x.split(' ', 1)[1].split(' -> ')[0].rstrip('/').encode():
                 x.split(' ', 1)[0] for x in lines}
        content = {b'/docs/f3.txt', b'/data/six', b'/docs/sub/s4.txt', b'/bin/doc-link'}
        expect_eq('what rsync lists after copy --no-overwrite', attrs | content,
                  set(names))
        for p in attrs:
            if names[p][5] != 'p':
                fail('rsync line of %r does not say the mode differs: %s' % (p, names[p]))
    R.check('copy --no-overwrite keeps attributes-only differences (skipped, with the '
            'reason; rsync lists exactly them) and copies into a kept folder', check)


def run_owner(R, work):
    def check():
        if os.geteuid() != 0:
            raise Skip('needs root: chown to other users')
        top = os.path.join(work, 'owner')
        src, dst, attrs = small_pair(top)
        os.chown(os.path.join(src, 'docs', 'f2.txt'), 1234, 5678)
        os.lchown(os.path.join(src, 'bin', 'doc-link'), 4321, 8765)
        # the destination: owner-only differences on a file, a folder, a
        # symlink (and one that is right)
        shutil.rmtree(dst)
        cp_a(src, dst)
        os.chown(os.path.join(dst, 'docs', 'f0.txt'), 1000, 1000)
        os.chown(os.path.join(dst, 'data', 'deep'), 2000, 2000)
        os.lchown(os.path.join(dst, 'bin', 'doc-link'), 0, 0)
        owned = {b'/docs/f0.txt', b'/data/deep', b'/bin/doc-link'}
        dst0 = os.path.join(top, 'dst0')
        cp_a(dst, dst0)
        db0 = os.path.join(top, 'plain.db')
        discover(db0, src, dst0)
        expect_eq('without --owner, owners are not compared', {}, conflicts_by_reason(db0))
        cp = run(['copy', '--db', db0, '--yes', '--owner'])
        expect_rc(cp, 0, 'copy --owner after a discovery without it')
        if b'discovered without --owner' not in cp.stderr:
            fail('copy --owner does not say what it does for a migration discovered '
                 'without it: ' + show(cp))
        db = os.path.join(top, 'owner.db')
        discover(db, src, dst, '--owner')
        expect_eq('review --list attrs with --owner', {p: 'attrs' for p in owned},
                  review_list(db, 'attrs'))
        cp = run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy of a migration discovered with --owner')
        cp = run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify')
        rsync_agrees(src, dst, owners=True)
        os.chown(os.path.join(dst, 'docs', 'f0.txt'), 7, 7)
        cp = run(['verify', '--db', db])
        expect_rc(cp, 3, 'verify after an owner changed')
        if b'/docs/f0.txt: verify: owner 7:7 on the destination, 0:0 on the source' \
                not in cp.stderr:
            fail('verify does not name the owner: ' + show(cp))
        cp = run(['discover', '--db', db0, '--owner'])
        expect_rc(cp, 2, 'discover --owner on a migration discovered without it')
    R.check('discover --owner: owners compared, set and verified; rsync -rlptgoDn '
            'lists nothing', check)


def run_not_owner(R, work):
    def check():
        # a file of another user, mode 0600 where the source has 0644: the
        # user treemig runs as may not chmod it, but may replace it (the
        # folder is theirs): it is copied whole instead
        if os.geteuid() != 0:
            raise Skip('needs root: a file of another user, and setpriv to 65534')
        sp = shutil.which('setpriv')
        if not sp:
            fail('setpriv is not installed (util-linux)')
        top = os.path.join(work, 'notowner')
        src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
        put(src, 'f.txt', b'the same bytes\n')
        put(src, 'g.txt', b'another\n', 0o640)
        cp_a(src, dst)
        os.chmod(os.path.join(dst, 'f.txt'), 0o600)
        os.chmod(os.path.join(dst, 'g.txt'), 0o600)
        os.chmod(work, 0o755)
        for root, dirs, files in os.walk(top):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.lchown(n, 65534, 65534)
        os.chown(os.path.join(dst, 'f.txt'), 0, 0)     # not theirs
        db = os.path.join(top, 'state.db')
        nobody = [sp, '--reuid=65534', '--regid=65534', '--clear-groups', tmtest.TREEMIG]
        for args in (['discover', '--db', db, '--quiet', src, dst],
                     ['copy', '--db', db, '--yes', '--quiet'],
                     ['verify', '--db', db, '--quiet']):
            cp = subprocess.run(nobody + args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=tmtest.TIMEOUT)
            expect_eq('exit code of %s as uid 65534 (%r)' % (args[0], cp.stderr[-300:]),
                      0, cp.returncode)
            if args[0] == 'discover':
                expect_eq('conflicts', {'attrs': 2}, conflicts_by_reason(db))
        st = os.lstat(os.path.join(dst, 'f.txt'))
        expect_eq('f.txt: copied whole, now the user\'s, of the source\'s mode',
                  (65534, 0o644), (st.st_uid, stat.S_IMODE(st.st_mode)))
        st = os.lstat(os.path.join(dst, 'g.txt'))
        expect_eq('g.txt: its own, set in place', (65534, 0o640),
                  (st.st_uid, stat.S_IMODE(st.st_mode)))
        rsync_agrees(src, dst)
    R.check('a file the user may not chmod is copied whole instead (as uid 65534)',
            check)


def run_sim(R, work):
    def check():
        shape = 'seed=21,depth=4,folders=6,files=5'
        ovl = os.path.join(work, 'sim.overlay')
        dst = 'sim:%s,world=dst,keep=0.9,csize=0.02,cmode=0.2,overlay=%s' % (shape, ovl)
        cp = run(['sim-stats', dst])
        expect_rc(cp, 0, 'sim-stats')
        import json
        truth = json.loads(cp.stdout)
        if truth['conflicts']['attrs'] < 10:
            fail('the sim world has too few attrs conflicts: %r' % truth['conflicts'])
        db = os.path.join(work, 'sim.db')
        discover(db, 'sim:' + shape, dst)
        expect_eq('conflicts attrs: discovery and sim-stats', truth['conflicts']['attrs'],
                  conflicts_by_reason(db).get('attrs', 0))
        expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
        expect_rc(run(['verify', '--db', db, '--quiet']), 0, 'verify')
        db2 = os.path.join(work, 'sim2.db')
        discover(db2, 'sim:' + shape, dst)
        expect_eq('conflicts after the copy', {}, conflicts_by_reason(db2))
    R.check('sim cmode=: sim-stats counts the conflicts attrs, the copy sets them, '
            'nothing is left', check)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_attrs')
    base = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
    work = tempfile.mkdtemp(prefix='treemig-attrs-', dir=base)
    try:
        run_small(R, work)
        run_real(R, work)
        run_no_overwrite(R, work)
        run_owner(R, work)
        run_not_owner(R, work)
        run_sim(R, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
