#!/usr/bin/env python3
"""The symlink-swap race (issue 18, item 3): while treemig runs, a helper
(tests/tools/swap_race.c) exchanges folders of the trees with symlinks to a
sentinel folder outside both trees, as fast as renameat2(RENAME_EXCHANGE)
goes. Whatever treemig does to such a name may find the symlink behind it.

1. attributes: discovery runs undisturbed, then the copy runs while a
   destination folder (already there, to be given the source's mode and
   mtime at the end) is swapped with a symlink to the sentinel: no mode,
   time or byte of the sentinel may change (a chmod by name follows the
   symlink: that is the bug this guards against). 60 short rounds
   (TREEMIG_RACE_ROUNDS).
2. everything: discover, copy and retry run while folders of both trees
   are swapped: the sentinel stays as it was, nothing of it is read into
   the destination, and every run ends with exit 0 or 3.

The sentinel (files of several modes, a subfolder, a symlink) is
checksummed and stat-ed (mode, size, mtime, inode, link count) before and
after. Stdlib only; TREEMIG names the binary, TREEMIG_SWAP_RACE the helper
(built by tests/CMakeLists.txt; compiled here with cc when unset).
"""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, fail, run, show  # noqa: E402

T0 = 1_600_000_000_123_456_789
SEC = 1_000_000_000
PAIRS = 100
ATTR_ROUNDS = int(os.environ.get('TREEMIG_RACE_ROUNDS') or 60)
SENTINEL_TEXT = b'SENTINEL: outside both trees, never to be read or changed\n'


def swap_helper(work):
    path = os.environ.get('TREEMIG_SWAP_RACE')
    if path and os.access(path, os.X_OK):
        return path
    cc = shutil.which('cc') or shutil.which('gcc')
    if not cc:
        raise Skip('no swap_race helper (TREEMIG_SWAP_RACE) and no C compiler')
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools',
                       'swap_race.c')
    out = os.path.join(work, 'swap_race')
    subprocess.run([cc, '-O2', '-o', out, src], check=True)
    return out


def write(path, data, mtime=T0, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))


def make_sentinel(root):
    write(os.path.join(root, 'plain'), SENTINEL_TEXT * 3, T0, 0o644)
    write(os.path.join(root, 'private'), SENTINEL_TEXT, T0 + 1, 0o600)
    write(os.path.join(root, 'tool'), SENTINEL_TEXT * 2, T0 + 2, 0o755)
    write(os.path.join(root, 'sub', 'deep'), SENTINEL_TEXT * 5, T0 + 3, 0o640)
    os.symlink('plain', os.path.join(root, 'link'))
    os.chmod(os.path.join(root, 'sub'), 0o750)
    os.utime(os.path.join(root, 'sub'), ns=(T0 + 4, T0 + 4))
    os.chmod(root, 0o755)
    os.utime(root, ns=(T0 + 5, T0 + 5))


def sentinel_state(root):
    """Every node under root (root too): type, mode, size, mtime, inode, link
    count, and its bytes (SHA-256) or link target."""
    paths = [root]
    for d, dirs, files in os.walk(root):
        paths += [os.path.join(d, n) for n in dirs + files]
    out = {}
    for p in paths:
        st = os.lstat(p)
        data = None
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            with open(p, 'rb') as f:
                data = hashlib.sha256(f.read()).hexdigest()
        out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                         st.st_size, st.st_mtime_ns, st.st_ino,
                                         st.st_nlink, data)
    return out


def sentinel_read_into(dst):
    """Files under dst that hold the sentinel's bytes (read through a
    symlink and copied)."""
    hits = []
    for d, dirs, files in os.walk(dst):
        for n in files:
            p = os.path.join(d, n)
            if os.path.islink(p):
                continue
            try:
                with open(p, 'rb') as f:
                    if SENTINEL_TEXT in f.read():
                        hits.append(p)
            except OSError:
                pass
    return hits


class Swapper:
    """The helper running on pairs (a folder, a symlink to the sentinel)."""

    def __init__(self, helper, work, pairs):
        self.stop = os.path.join(work, 'stop-%d' % id(self))
        args = [helper, self.stop]
        for a, b in pairs:
            args += [a, b]
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(self):
        """Stops it; returns the number of exchanges (fails on an error)."""
        open(self.stop, 'w').close()
        try:
            out, err = self.p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        os.unlink(self.stop)
        if self.p.returncode != 0:
            fail('swap_race failed (%s): %s' % (self.p.returncode, err.decode()))
        return int(out.split()[1])

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def build(top, sentinel, n):
    """src and dst with n folders f<i> on both sides (files to copy into
    them; the source's mode 0700, the destination's 0755) and symlinks
    l<i> -> sentinel beside them on both sides. Returns (src, dst, pairs of
    the destination, pairs of the source)."""
    src, dst = os.path.join(top, 'src'), os.path.join(top, 'dst')
    dpairs, spairs = [], []
    for i in range(n):
        for j in range(2):
            write(os.path.join(src, 'f%d' % i, 'file%d' % j), b'source %d %d\n' % (i, j),
                  T0 + i)
        write(os.path.join(src, 'f%d' % i, 'inner', 'x'), b'inner %d\n' % i, T0)
        os.chmod(os.path.join(src, 'f%d' % i), 0o700)
        os.utime(os.path.join(src, 'f%d' % i), ns=(T0 + i, T0 + i))
        os.makedirs(os.path.join(dst, 'f%d' % i))
        os.chmod(os.path.join(dst, 'f%d' % i), 0o755)
        for root, pairs in ((src, spairs), (dst, dpairs)):
            ln = os.path.join(root, 'l%d' % i)
            os.symlink(sentinel, ln)
            pairs.append((os.path.join(root, 'f%d' % i), ln))
    return src, dst, dpairs, spairs


def check_attrs(work, helper):
    """Many short rounds, one swapped folder each (one pair swaps fastest:
    its name flips at every exchange, so a check of the name and a change
    by the name a few microseconds later see different things)."""
    sentinel = os.path.join(work, 'sentinel')
    make_sentinel(sentinel)
    before = sentinel_state(sentinel)
    swaps = 0
    codes = {}
    for rnd in range(ATTR_ROUNDS):
        top = os.path.join(work, 'attrs%d' % rnd)
        src, dst, dpairs, _ = build(top, sentinel, 1)
        db = os.path.join(top, 'state.db')
        cp = run(['discover', '--db', db, '--quiet', src, dst])
        tmtest.expect_rc(cp, 0, 'discover')
        sw = Swapper(helper, work, dpairs)
        try:
            cp = run(['copy', '--db', db, '--yes', '--quiet'], timeout=300)
        finally:
            swaps += sw.finish()
        codes[cp.returncode] = codes.get(cp.returncode, 0) + 1
        if cp.returncode not in (0, 3):
            fail('copy while a folder is swapped: ' + show(cp))
        after = sentinel_state(sentinel)
        if after != before:
            changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                       if before.get(k) != after.get(k)}
            fail('round %d (%d swaps so far): the sentinel outside both trees changed: %r'
                 % (rnd, swaps, changed))
        shutil.rmtree(top)
    print('     %d rounds, %d swaps, copy exit codes %r, sentinel unchanged'
          % (ATTR_ROUNDS, swaps, codes))


def check_everything(work, helper):
    sentinel = os.path.join(work, 'sentinel2')
    make_sentinel(sentinel)
    before = sentinel_state(sentinel)
    top = os.path.join(work, 'all')
    src, dst, dpairs, spairs = build(top, sentinel, PAIRS // 2)
    db = os.path.join(top, 'state.db')
    sw = Swapper(helper, work, dpairs + spairs)
    codes = []
    try:
        for args in (['discover', '--db', db, '--quiet', src, dst],
                     ['copy', '--db', db, '--yes', '--quiet', '--force', '--workers', '8'],
                     ['retry', '--db', db, '--quiet', '--workers', '8'],
                     ['retry', '--db', db, '--quiet', '--workers', '8']):
            cp = run(args, timeout=300)
            codes.append(cp.returncode)
            # a retry with nothing failed is refused (exit 2)
            if cp.returncode not in ((0, 2, 3) if args[0] == 'retry' else (0, 3)):
                fail('%s while folders of both trees are swapped: %s' % (args[0], show(cp)))
    finally:
        swaps = sw.finish()
    after = sentinel_state(sentinel)
    if after != before:
        changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                   if before.get(k) != after.get(k)}
        fail('the sentinel outside both trees changed: %r' % changed)
    hits = sentinel_read_into(dst)
    if hits:
        fail('the sentinel was read through a swapped source folder into %r' % hits[:10])
    print('     %d swaps; exit codes %r' % (swaps, codes))


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_race')
    # a tmpfs where there is one: renames there take a microsecond or two,
    # so the names flip often enough to hit the narrow windows
    base = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else '/tmp'
    work = tempfile.mkdtemp(prefix='treemig-race-', dir=base)
    try:
        try:
            helper = swap_helper(work)
        except Skip as e:
            print('SKIP all: %s' % e)
            sys.exit(77)
        R.check('3 folder attributes set while destination folders are swapped with '
                'symlinks to a sentinel: the sentinel is untouched', check_attrs, work,
                helper)
        R.check('discover, copy and retry while folders of both trees are swapped: the '
                'sentinel is untouched and never read', check_everything, work, helper)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    R.finish()


if __name__ == '__main__':
    main()
