"""Builders of source/destination tree pairs for the treemig integration tests.

Every path handled here is bytes so that names which are not valid UTF-8
survive. Every mtime is set explicitly (os.utime(ns=...)) so that the
comparisons made by `treemig discover` are deterministic; folder mtimes are
set last, deepest first, because creating a child changes its parent's mtime.

build_pair(base)          the main pair (see the layout in the docstring)
build_exclude_pair(base)  a small pair for the --exclude tests
build_wide_pair(base)     many folders over several rounds (interruptions)
build_unreadable_pair(base)  a small pair with folders to chmod 000
build_big_pair(base)      a large pair (crash and signal tests), made with cp -al
scratch_dir(prefix), remove_tree(path)   a fast place for large trees
count_find(root, types)   an independent count by find(1)
"""

import os

# A fixed base time with a non-zero sub-second part, so that nanosecond
# precision is exercised.
T0 = 1_600_000_000_123_456_789
SEC = 1_000_000_000


def _b(p):
    return p if isinstance(p, bytes) else os.fsencode(p)


class TreeBuilder:
    """Creates nodes under one root and remembers the mtimes to apply."""

    def __init__(self, root):
        self.root = _b(root)
        os.makedirs(self.root, exist_ok=True)
        self._dir_times = {}   # abs path -> ns (applied by finish())
        self._next = 0

    def _abs(self, rel):
        rel = _b(rel)
        assert not rel.startswith(b'/'), rel
        return os.path.join(self.root, rel) if rel else self.root

    def auto_time(self):
        """A distinct deterministic time for nodes whose mtime is irrelevant."""
        self._next += 1
        return T0 + self._next * 7 * SEC + self._next

    def dir(self, rel, mtime=None):
        p = self._abs(rel)
        os.makedirs(p, exist_ok=True)
        if mtime is not None:
            self._dir_times[p] = mtime
        else:
            self._dir_times.setdefault(p, self.auto_time())
        # also register intermediate folders so that every folder gets a time
        parent = os.path.dirname(p)
        while parent != self.root and len(parent) > len(self.root):
            self._dir_times.setdefault(parent, self.auto_time())
            parent = os.path.dirname(parent)
        return p

    def file(self, rel, data=b'', mtime=None, mode=None):
        p = self._abs(rel)
        parent = os.path.dirname(p)
        if parent != self.root:
            self.dir(os.path.relpath(parent, self.root))
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(p, mode)
        t = mtime if mtime is not None else self.auto_time()
        os.utime(p, ns=(t, t))
        return p

    def symlink(self, rel, target, mtime=None):
        p = self._abs(rel)
        parent = os.path.dirname(p)
        if parent != self.root:
            self.dir(os.path.relpath(parent, self.root))
        os.symlink(_b(target), p)
        t = mtime if mtime is not None else self.auto_time()
        os.utime(p, ns=(t, t), follow_symlinks=False)
        return p

    def fifo(self, rel, mtime=None):
        p = self._abs(rel)
        parent = os.path.dirname(p)
        if parent != self.root:
            self.dir(os.path.relpath(parent, self.root))
        os.mkfifo(p, 0o644)
        t = mtime if mtime is not None else self.auto_time()
        os.utime(p, ns=(t, t))
        return p

    def many_files(self, rel_dir, names, mtime, data=b''):
        """Fast creation of many files with the same content and mtime: the
        first is created, the others are hard links to it (creating inodes
        is ~20 times slower than linking on ext4; discovery records nothing
        that tells hard links apart)."""
        d = self.dir(rel_dir)
        first = None
        for n in names:
            p = os.path.join(d, n)
            if first is None:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                if data:
                    os.write(fd, data)
                os.close(fd)
                os.utime(p, ns=(mtime, mtime))
                first = p
            else:
                os.link(first, p)

    def finish(self, root_mtime=None):
        for p in sorted(self._dir_times, key=lambda x: -x.count(b'/')):
            t = self._dir_times[p]
            os.utime(p, ns=(t, t))
        t = root_mtime if root_mtime is not None else self.auto_time()
        os.utime(self.root, ns=(t, t))


def big_names(count):
    return [b'f%05d' % i for i in range(count)]


def build_pair(base, big_count=20000):
    """Builds base/src and base/dst; returns (src, dst) as bytes paths.

    Layout (S = source, D = destination):
      nested/l1/.../l7/deep.txt   7 levels, identical on both sides
      nested/l1/side.txt          identical
      nested/l1/l2/only_src.txt   missing on D
      empty_dir/                  empty on both sides
      empty_only_src/             empty, missing on D
      big/f00000..                big_count empty files; D has the first half
                                  (identical) plus 100 that differ in size,
                                  plus one D-only file
      with space/file with space.txt   identical
      with space/another one      missing on D
      with space/sub dir/x y      identical
      bad\\xff\\xfename            identical file with non-UTF-8 name
      bad\\xfe dir/x\\x80y          folder with non-UTF-8 names, missing on D
      new\\nline                   file whose name holds a newline, missing on D
      dir\\nwith newline/inner     folder with a newline in its name, identical
      links/to_file -> ../nested/l1/side.txt    identical symlink
      links/dangling -> does/not/exist          missing on D
      links/to_dir -> ../nested                  identical symlink to folder
      links/to_dir_src_only -> ../nested/l1      missing on D (never followed)
      links/size_diff -> abc      D: -> abcdef        conflict size
      links/mtime_diff -> xyz     D older mtime       conflict mtime
      fifo                        FIFO, missing on D (other, skipped)
      fifo_both                   FIFO on both sides
      missing_tree/a/b/c/file, missing_tree/a/x, missing_tree/e/   missing on D
      changes/size.txt            sizes differ                -> size
      changes/size_newer.txt      sizes differ, D newer       -> size
      changes/mtime.txt           same size, D older          -> mtime
      changes/mtime_1ns.txt       same size, D older by 1 ns  -> mtime
      changes/newer.txt           same size, D newer          -> dst_newer
      changes/newer_1ns.txt       same size, D newer by 1 ns  -> dst_newer
      changes/same.txt            identical                   -> already_existed
      changes/same_empty          identical empty file
      changes/same_mode_diff.txt  identical size/mtime, other permission bits
      changes/mode755.sh          identical, mode 0755
      clash/file_vs_dir           S file, D folder with content   -> type
      clash/dir_vs_file/...       S folder with children, D file  -> type
      clash/link_vs_file          S symlink, D file               -> type
      clash/file_vs_link          S file, D symlink               -> type
      clash/dir_vs_link/child     S folder, D symlink to a folder -> type
      clash/fifo_vs_file          S FIFO, D file                  -> type
      D only: only_dst_dir/ (with files and a subfolder), only_dst.txt,
              empty_only_dst/, only_dst_link, only_dst_fifo,
              changes/extra.txt, nested/l1/l2/l3/dst_extra_dir/inner/file
    """
    base = _b(base)
    src = os.path.join(base, b'src')
    dst = os.path.join(base, b'dst')
    S = TreeBuilder(src)
    D = TreeBuilder(dst)

    def both(fn, rel, *a, **kw):
        fn(S, rel, *a, **kw)
        fn(D, rel, *a, **kw)

    t = T0

    # nested, identical on both sides
    deep = b'nested/l1/l2/l3/l4/l5/l6/l7'
    for i, part in enumerate(deep.split(b'/')):
        rel = b'/'.join(deep.split(b'/')[:i + 1])
        both(TreeBuilder.dir, rel, mtime=t + 100 * SEC + i)
    both(TreeBuilder.file, deep + b'/deep.txt', data=b'deep\n', mtime=t + 1)
    both(TreeBuilder.file, b'nested/l1/side.txt', data=b'side file\n', mtime=t + 2)
    S.file(b'nested/l1/l2/only_src.txt', data=b'only on the source\n', mtime=t + 3)
    D.file(b'nested/l1/l2/l3/dst_extra_dir/inner/file', data=b'not recorded\n')

    # empty folders
    both(TreeBuilder.dir, b'empty_dir', mtime=t + 4)
    S.dir(b'empty_only_src', mtime=t + 5)
    D.dir(b'empty_only_dst', mtime=t + 6)

    # a large folder
    names = big_names(big_count)
    half = big_count // 2
    both(TreeBuilder.dir, b'big')
    S.many_files(b'big', names, mtime=t + 10)
    D.many_files(b'big', names[:half], mtime=t + 10)
    D.many_files(b'big', names[half:half + 100], mtime=t + 10, data=b'x')
    D.file(b'big/zzz_dst_only', data=b'dst only\n')

    # names with spaces, non-UTF-8 bytes, newlines
    both(TreeBuilder.file, b'with space/file with space.txt', data=b'spaces\n',
         mtime=t + 20)
    S.file(b'with space/another one', data=b'abc', mtime=t + 21)
    both(TreeBuilder.file, b'with space/sub dir/x y', data=b'xy', mtime=t + 22)
    both(TreeBuilder.file, b'bad\xff\xfename', data=b'non utf8\n', mtime=t + 23)
    S.file(b'bad\xfe dir/x\x80y', data=b'z' * 33, mtime=t + 24)
    S.file(b'new\nline', data=b'newline\n', mtime=t + 25)
    both(TreeBuilder.file, b'dir\nwith newline/inner', data=b'in\n', mtime=t + 26)

    # symlinks
    both(TreeBuilder.symlink, b'links/to_file', b'../nested/l1/side.txt', mtime=t + 30)
    S.symlink(b'links/dangling', b'does/not/exist', mtime=t + 31)
    both(TreeBuilder.symlink, b'links/to_dir', b'../nested', mtime=t + 32)
    S.symlink(b'links/to_dir_src_only', b'../nested/l1', mtime=t + 33)
    S.symlink(b'links/size_diff', b'abc', mtime=t + 34)
    D.symlink(b'links/size_diff', b'abcdef', mtime=t + 34)
    S.symlink(b'links/mtime_diff', b'xyz', mtime=t + 35)
    D.symlink(b'links/mtime_diff', b'xyz', mtime=t + 35 - SEC)

    # FIFOs
    S.fifo(b'fifo', mtime=t + 40)
    both(TreeBuilder.fifo, b'fifo_both', mtime=t + 41)

    # a subtree missing on the destination
    S.file(b'missing_tree/a/b/c/file', data=b'12345', mtime=t + 50)
    S.file(b'missing_tree/a/x', data=b'', mtime=t + 51)
    S.dir(b'missing_tree/e')

    # changed files
    S.file(b'changes/size.txt', data=b'0123456789', mtime=t + 60)
    D.file(b'changes/size.txt', data=b'01234567890123456789', mtime=t + 60)
    S.file(b'changes/size_newer.txt', data=b'0123456789', mtime=t + 61)
    D.file(b'changes/size_newer.txt', data=b'01234', mtime=t + 61 + SEC)
    S.file(b'changes/mtime.txt', data=b'same size', mtime=t + 62)
    D.file(b'changes/mtime.txt', data=b'SAME SIZE', mtime=t + 62 - 3600 * SEC)
    S.file(b'changes/mtime_1ns.txt', data=b'same size', mtime=t + 63)
    D.file(b'changes/mtime_1ns.txt', data=b'same size', mtime=t + 63 - 1)
    S.file(b'changes/newer.txt', data=b'same size', mtime=t + 64)
    D.file(b'changes/newer.txt', data=b'same size', mtime=t + 64 + 3600 * SEC)
    S.file(b'changes/newer_1ns.txt', data=b'same size', mtime=t + 65)
    D.file(b'changes/newer_1ns.txt', data=b'same size', mtime=t + 65 + 1)
    both(TreeBuilder.file, b'changes/same.txt', data=b'identical\n', mtime=t + 66)
    both(TreeBuilder.file, b'changes/same_empty', data=b'', mtime=t + 67)
    S.file(b'changes/same_mode_diff.txt', data=b'm', mtime=t + 68, mode=0o600)
    D.file(b'changes/same_mode_diff.txt', data=b'm', mtime=t + 68, mode=0o644)
    both(TreeBuilder.file, b'changes/mode755.sh', data=b'#!/bin/sh\n', mtime=t + 69,
         mode=0o755)
    D.file(b'changes/extra.txt', data=b'extra on the destination\n')

    # type clashes
    S.file(b'clash/file_vs_dir', data=b'I am a file', mtime=t + 70)
    D.file(b'clash/file_vs_dir/inner.txt', data=b'not recorded')
    D.file(b'clash/file_vs_dir/sub/deeper.txt', data=b'not recorded')
    S.file(b'clash/dir_vs_file/child.txt', data=b'child', mtime=t + 71)
    S.file(b'clash/dir_vs_file/sub/deeper.txt', data=b'deeper', mtime=t + 72)
    D.file(b'clash/dir_vs_file', data=b'I am a file on D', mtime=t + 73)
    S.symlink(b'clash/link_vs_file', b'target', mtime=t + 74)
    D.file(b'clash/link_vs_file', data=b'target', mtime=t + 74)
    S.file(b'clash/file_vs_link', data=b'target', mtime=t + 75)
    D.symlink(b'clash/file_vs_link', b'target', mtime=t + 75)
    S.file(b'clash/dir_vs_link/child', data=b'c', mtime=t + 76)
    D.dir(b'clash/real_dir_on_dst')
    D.file(b'clash/real_dir_on_dst/f', data=b'f')
    D.symlink(b'clash/dir_vs_link', b'real_dir_on_dst', mtime=t + 76)
    S.fifo(b'clash/fifo_vs_file', mtime=t + 77)
    D.file(b'clash/fifo_vs_file', data=b'', mtime=t + 77)

    # destination-only nodes
    D.file(b'only_dst_dir/a.txt', data=b'aaa')
    D.file(b'only_dst_dir/b.txt', data=b'bbbb')
    D.file(b'only_dst_dir/sub/c.txt', data=b'ccccc')
    D.symlink(b'only_dst_dir/sub/link', b'../a.txt')
    D.file(b'only_dst.txt', data=b'only on D\n')
    D.symlink(b'only_dst_link', b'only_dst.txt')
    D.fifo(b'only_dst_fifo')

    # edge cases: glob/LIKE metacharacters in names, hidden names, long
    # names, sparse files over 4 GiB, mtimes before 1970 and after 2038,
    # a unix socket
    for name in (b'star*name', b'q?mark', b'[br]acket', b'100%_like', b'back\\slash',
                 b'.hidden', b'..dotdot', b'-dash'):
        both(TreeBuilder.file, b'edge/' + name, data=name, mtime=t + 80)
        S.file(b'edge/only_src_' + name, data=name, mtime=t + 81)
    # folders with metacharacters, missing on D, with children (a prefix or
    # GLOB query on their paths would also catch their siblings)
    S.file(b'edge/meta*/child', data=b'c', mtime=t + 82)
    S.file(b'edge/meta[x]/child', data=b'c', mtime=t + 82)
    both(TreeBuilder.file, b'edge/metaXX/child', data=b'c', mtime=t + 82)
    both(TreeBuilder.file, b'edge/metax/child', data=b'c', mtime=t + 82)
    long = b'L' * 250
    both(TreeBuilder.file, b'edge/' + long + b'.file', data=b'long', mtime=t + 83)
    S.file(b'edge/' + long + b'.dir/' + long + b'.sub/' + long, data=b'deep long',
           mtime=t + 84)
    big = 5 * 1024 ** 3 + 7
    for B, m in ((S, t + 85), (D, t + 85)):
        p = B.file(b'edge/sparse_same', mtime=m)
        os.truncate(p, big)
        os.utime(p, ns=(m, m))
    p = S.file(b'edge/sparse_src_only', mtime=t + 86)
    os.truncate(p, big + 1)
    os.utime(p, ns=(t + 86, t + 86))
    old = -1_000_000_000 * 86400 * 365 - 123456789    # 1969
    future = 4_102_444_800 * SEC + 987654321            # 2100
    both(TreeBuilder.file, b'edge/old_same', data=b'old', mtime=old)
    S.file(b'edge/old_diff', data=b'old', mtime=old)
    D.file(b'edge/old_diff', data=b'old', mtime=old - 1)
    both(TreeBuilder.file, b'edge/future_same', data=b'future', mtime=future)
    S.file(b'edge/future_diff', data=b'future', mtime=future - 1)
    D.file(b'edge/future_diff', data=b'future', mtime=future)
    try:
        import socket
        sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sp = os.path.join(src, b'edge', b'sock')
        if len(sp) < 100:
            sk.bind(sp)
            os.utime(sp, ns=(t + 87, t + 87))
        sk.close()
    except OSError:
        pass

    S.finish(root_mtime=t + 1000)
    D.finish(root_mtime=t + 2000)
    return src, dst


def build_exclude_pair(base):
    """A small pair for the --exclude tests. Returns (src, dst).

    Intended globs: '*.tmp' (name), 'node_modules' (name), '/docs/draft*'
    (path), '/a/b/skip' (path).
    """
    base = _b(base)
    src = os.path.join(base, b'src')
    dst = os.path.join(base, b'dst')
    S = TreeBuilder(src)
    D = TreeBuilder(dst)
    t = T0 + 5000 * SEC

    for B in (S, D):
        B.file(b'keep.txt', data=b'keep', mtime=t + 1)
        B.file(b'a/b/c/keep2.txt', data=b'k2', mtime=t + 2)
        B.file(b'a/b/skip/inner/x', data=b'skipped', mtime=t + 3)
        B.file(b'a/b/skip/y', data=b'yy', mtime=t + 4)
        B.file(b'docs/draft1.md', data=b'd1', mtime=t + 5)
        B.file(b'docs/final.md', data=b'fin', mtime=t + 6)
        B.file(b'proj/node_modules/pkg/index.js', data=b'js', mtime=t + 7)
    # source-only excluded nodes
    S.file(b'cache.tmp', data=b'tmp!', mtime=t + 10)
    S.file(b'a/deep.tmp', data=b'deep', mtime=t + 11)
    S.dir(b'dir.tmp')                       # an excluded empty folder
    S.file(b'dir.tmp/child', data=b'c')     # ... that is not empty
    S.file(b'docs/draft2/sub/x.md', data=b'xx')  # folder matching a path glob
    S.file(b'node_modules/top.js', data=b'top')
    S.file(b'docs/sub/draft9.md', data=b'not excluded: path glob is /docs/draft*')
    # destination twins of excluded nodes with a different content
    D.file(b'cache.tmp', data=b'different size and mtime')
    D.file(b'docs/draft2/other', data=b'not recorded')
    # a destination twin that differs (it is excluded: no conflict)
    D.file(b'a/deep.tmp', data=b'other', mtime=t + 99)
    # a normal change and a dst-only node (not matching any glob)
    S.file(b'docs/final2.md', data=b'abc', mtime=t + 20)
    D.file(b'docs/final2.md', data=b'abcd', mtime=t + 20)
    D.file(b'dst_only.txt', data=b'only D')
    S.finish()
    D.finish()
    return src, dst


def build_wide_pair(base, fanout=6, levels=3, files=20):
    """A pair with many folders (fanout**1 + ... + fanout**levels) of `files`
    files each, so that discovery takes many rounds and tasks: for the
    interruption tests. The destination has the folders whose last name
    character is not '0' (so whole subtrees are missing), with every file
    of the first `files // 2` identical and the rest differing in size, plus
    one destination-only file per folder. Returns (src, dst)."""
    base = _b(base)
    src = os.path.join(base, b'src')
    dst = os.path.join(base, b'dst')
    S = TreeBuilder(src)
    D = TreeBuilder(dst)
    t = T0 + 20000 * SEC
    names = [b'file%03d' % i for i in range(files)]
    frontier = [b'']
    for lvl in range(levels):
        nxt = []
        for parent in frontier:
            for i in range(fanout):
                rel = (parent + b'/' if parent else b'') + b'd%d%d' % (lvl, i)
                nxt.append(rel)
                S.many_files(rel, names, mtime=t + lvl)
                on_dst = all(not c.endswith(b'0') for c in rel.split(b'/'))
                if on_dst:
                    D.many_files(rel, names[:files // 2], mtime=t + lvl)
                    D.many_files(rel, names[files // 2:], mtime=t + lvl, data=b'q')
                    D.file(rel + b'/dst_only', data=b'dst')
        frontier = nxt
    S.finish()
    D.finish()
    return src, dst


def scratch_dir(prefix):
    """A new temporary folder for large generated trees: under /dev/shm when
    it is a writable tmpfs with room (creating and removing hundreds of
    thousands of nodes is several times faster there), else under /tmp.
    Remove it with remove_tree()."""
    import tempfile
    shm = '/dev/shm'
    try:
        st = os.statvfs(shm)
        room = st.f_bavail * st.f_frsize >= (2 << 30) and st.f_favail >= 2_000_000
        if room and os.access(shm, os.W_OK):
            return tempfile.mkdtemp(prefix=prefix, dir=shm)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix=prefix, dir='/tmp')


def remove_tree(path):
    """Removes a large tree (rm -rf is several times faster than
    shutil.rmtree); never raises."""
    import shutil
    import subprocess
    path = _b(path)
    try:
        subprocess.run([b'rm', b'-rf', b'--one-file-system', path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


def build_big_pair(base, copies=150, groups=10):
    """A large pair for the crash and signal tests: src/gNN/cNNN/... holds
    `copies` copies (spread over `groups` folders) of a template subtree of
    84 folders over 3 levels with 16 files each (1,428 nodes per copy), made
    with `cp -al` (hard links, fast). The destination has the same layout
    except: in each group the copies whose number is 2 mod 5 are missing
    (whole subtrees missing), the template's folders named c0 at the third
    level are missing, per folder files f00-f07 are identical, f08-f11
    differ in size, f12-f13 have an older mtime, f14-f15 are missing and
    z_dst exists only on the destination; each copy has a destination-only
    folder only_dst/ and each group a destination-only folder extra_dst/.
    Every folder of both trees has a distinct path. Depth: root 0, groups 1,
    copies 2, template levels 3-5, files down to 6.

    Returns (src, dst) as bytes paths. With the defaults: about 214,000
    source and 145,000 destination nodes."""
    import subprocess
    base = _b(base)
    src = os.path.join(base, b'src')
    dst = os.path.join(base, b'dst')
    tpl = os.path.join(base, b'template')
    S = TreeBuilder(os.path.join(tpl, b'src'))
    D = TreeBuilder(os.path.join(tpl, b'dst'))
    t = T0 + 30000 * SEC
    names = [b'f%02d' % i for i in range(16)]
    frontier = [b'']
    for lvl, letter in enumerate((b'a', b'b', b'c')):
        nxt = []
        for parent in frontier:
            for i in range(4):
                rel = (parent + b'/' if parent else b'') + letter + b'%d' % i
                nxt.append(rel)
                S.dir(rel, mtime=t + 100 * SEC + lvl * 4 + i)
                S.many_files(rel, names[:8], mtime=t + lvl)
                S.many_files(rel, names[8:12], mtime=t + lvl)
                S.many_files(rel, names[12:14], mtime=t + lvl, data=b'mt')
                S.many_files(rel, names[14:], mtime=t + lvl)
                if rel.rsplit(b'/', 1)[-1] == b'c0':
                    continue
                D.dir(rel, mtime=t + 100 * SEC + lvl * 4 + i)
                D.many_files(rel, names[:8], mtime=t + lvl)
                D.many_files(rel, names[8:12], mtime=t + lvl, data=b'sz')
                D.many_files(rel, names[12:14], mtime=t + lvl - SEC, data=b'mt')
                D.many_files(rel, [b'z_dst'], mtime=t + lvl, data=b'dst')
        frontier = nxt
    D.file(b'only_dst/x', data=b'x', mtime=t + 50)
    D.file(b'only_dst/y', data=b'yy', mtime=t + 51)
    S.finish(root_mtime=t + 200 * SEC)
    D.finish(root_mtime=t + 200 * SEC)

    per_group = max(1, (copies + groups - 1) // groups)
    n_groups = max(1, (copies + per_group - 1) // per_group)
    for side, root in ((b'src', src), (b'dst', dst)):
        os.makedirs(root)
        g0 = os.path.join(root, b'g00')
        os.mkdir(g0)
        for c in range(per_group):
            if side == b'dst' and c % 5 == 2:
                continue
            subprocess.run([b'cp', b'-al', os.path.join(tpl, side),
                            os.path.join(g0, b'c%03d' % c)], check=True)
        if side == b'dst':
            os.mkdir(os.path.join(g0, b'extra_dst'))
            with open(os.path.join(g0, b'extra_dst', b'e'), 'wb') as f:
                f.write(b'e')
            os.utime(os.path.join(g0, b'extra_dst', b'e'), ns=(t + 60, t + 60))
            os.utime(os.path.join(g0, b'extra_dst'), ns=(t + 61, t + 61))
        os.utime(g0, ns=(t + 300 * SEC, t + 300 * SEC))
        for g in range(1, n_groups):
            gd = os.path.join(root, b'g%02d' % g)
            subprocess.run([b'cp', b'-al', g0, gd], check=True)
            os.utime(gd, ns=(t + 300 * SEC + g, t + 300 * SEC + g))
        os.utime(root, ns=(t + 400 * SEC, t + 400 * SEC))
    remove_tree(tpl)
    return src, dst


def build_unreadable_pair(base):
    """A pair with src/locked (to be chmod 000 by the test) that exists on
    both sides; the destination twin holds children (which must not be
    recorded). Also dst/dlocked (to be chmod 000 too), whose source twin
    has children (never compared: they stay pending). Returns (src, dst,
    locked_src_path, locked_dst_path)."""
    base = _b(base)
    src = os.path.join(base, b'src')
    dst = os.path.join(base, b'dst')
    S = TreeBuilder(src)
    D = TreeBuilder(dst)
    t = T0 + 9000 * SEC
    for B in (S, D):
        B.file(b'ok/file.txt', data=b'ok', mtime=t + 1)
        B.file(b'locked/inside.txt', data=b'inside', mtime=t + 2)
        B.file(b'locked/sub/deeper.txt', data=b'deeper', mtime=t + 3)
    D.file(b'locked/dst_only_in_locked.txt', data=b'only D, inside locked')
    S.file(b'after.txt', data=b'after', mtime=t + 4)
    for B in (S, D):
        B.file(b'dlocked/same.txt', data=b'same', mtime=t + 5)
    S.file(b'dlocked/sub/x', data=b'x', mtime=t + 6)
    D.file(b'dlocked/dst_only', data=b'not recorded', mtime=t + 7)
    S.finish()
    D.finish()
    return src, dst, os.path.join(src, b'locked'), os.path.join(dst, b'dlocked')


def count_find(root, ftype):
    """Independent count of nodes below root (depth >= 1) of the given
    `find -type` letter, using the find(1) program."""
    import subprocess
    out = subprocess.run([b'find', _b(root), b'-mindepth', b'1', b'-type', ftype.encode(),
                          b'-printf', b'.'], stdout=subprocess.PIPE, check=True).stdout
    return len(out)


if __name__ == '__main__':
    # Self-check: build the pair in a temp dir and print a summary.
    import sys
    import tempfile
    import time
    import shutil
    base = tempfile.mkdtemp(prefix='treegen-', dir='/tmp')
    try:
        t = time.time()
        s, d = build_pair(base)
        print('built in %.2fs' % (time.time() - t))
        for r in (s, d):
            print(r, {k: count_find(r, k) for k in 'fdlp'})
    finally:
        shutil.rmtree(base)
    sys.exit(0)
