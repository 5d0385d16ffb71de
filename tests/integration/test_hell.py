#!/usr/bin/env python3
"""Integration test of trees and sources that are hard on a migration.

1. deep: a chain of 100 nested folders (names of 45 bytes, so the deepest
   paths are longer than PATH_MAX) with files at several depths, an empty
   folder and a symlink at the bottom: discover, copy, verify --checksum
   exit 0; the counts of status --json are exact; the destination equals
   the source (type, bytes, mtime ns, mode), read through directory
   descriptors since the paths are too long for one system call.
2. wide: one folder of 200,000 empty files: discover counts exactly,
   copy and verify exit 0, the destination holds exactly the same names.
   The wall time and the peak RSS (getrusage of each treemig process) of
   each command are printed; the peak RSS is asserted under a generous
   bound (256 MiB; not under a sanitizer, whose shadow memory and
   quarantine make it meaningless). Never a bound on the wall time.
3. special files: a FIFO (no writer: opening it would block), a unix
   socket, and, as root, a character and a block device, discovered with
   --no-specials: recorded as `other`, `copy_status` `skipped`, counted
   by review's summary and listed by `review --list skipped`, not created
   on the destination by copy, and, when strace(1) is there, never opened
   by discover, copy or verify (test_copy.py and test_fidelity.py check
   that without --no-specials the copy makes them again).
4. a source folder made unreadable (chmod 000) between discover and copy,
   with files directly inside and deeper down: copy exits 3, each of them
   failed with "permission denied" and its path (review --list failed,
   task_errors), the rest copied; once the mode is back, retry exits 0,
   verify exits 0, the destination equals the source. treemig runs as uid
   65534 through setpriv when run as root (permissions do not stop root).
5. roots that are not folders any more when the copy starts (the source
   or the destination root replaced by a file after discovery): exit 2, a
   message naming the root, the file untouched, nothing written
   (test_discover_errors.py covers file roots, same folders and nested
   roots at discovery).

Run:  python3 tests/integration/test_hell.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statecheck  # noqa: E402
import test_copy   # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from test_copy import fail_list, task_errors, phase  # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

SEC = treegen.SEC
T0 = treegen.T0 + 90000 * SEC
RSS_LIMIT_KB = 256 * 1024
WIDE = 200_000
DEPTH = 100


# --------------------------------------------------------------------------
# helpers

def run_measured(args, prefix=()):
    """Runs treemig (optionally behind prefix, e.g. setpriv) and returns
    (returncode, stdout bytes, stderr bytes, peak RSS in KiB, seconds).
    The RSS is that of the process itself, from wait4()."""
    cmd = [os.fsencode(x) for x in prefix] + [os.fsencode(tmtest.TREEMIG)] + \
          [os.fsencode(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.monotonic() - t
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), ru.ru_maxrss, secs


def tree_of(root, contents=True):
    """{root-relative bytes path: (type, mode, mtime ns, size, sha256 or
    link target)} of every node below root (not root itself), walked with
    directory descriptors so that paths longer than PATH_MAX work."""
    out = {}
    root = os.fsencode(root)
    for dirpath, dirnames, filenames, dfd in os.fwalk(root, follow_symlinks=False):
        rel = dirpath[len(root):]
        for name in dirnames + filenames:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            m = st.st_mode
            data = None
            if stat.S_ISREG(m):
                kind = 'file'
                if contents:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                    h = hashlib.sha256()
                    try:
                        while True:
                            b = os.read(fd, 1 << 20)
                            if not b:
                                break
                            h.update(b)
                    finally:
                        os.close(fd)
                    data = h.hexdigest()
            elif stat.S_ISDIR(m):
                kind = 'folder'
            elif stat.S_ISLNK(m):
                kind = 'symlink'
                data = os.readlink(name, dir_fd=dfd)
            else:
                kind = 'other'
            size = st.st_size if kind in ('file', 'symlink') else 0
            out[rel + b'/' + name] = (kind, stat.S_IMODE(m), st.st_mtime_ns, size, data)
    return out


def short(p, n=60):
    return p if len(p) <= n else p[:n // 2] + b'...' + p[-n // 2:]


def compare_trees(want, got, what):
    errs = []
    for p in sorted(set(want) | set(got)):
        if want.get(p) != got.get(p):
            errs.append('%r: %s has %r, expected %r' % (short(p), what, got.get(p),
                                                        want.get(p)))
    fail_list('%s differs from the source' % what, errs)


def count_rows(db, sql):
    conn = tmtest.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def first_line(b):
    s = b.decode('utf-8', 'replace').strip()
    return s.splitlines()[-1][:200] if s else ''


# --------------------------------------------------------------------------

def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_hell')
    base = tempfile.mkdtemp(prefix='treemig-hell-', dir='/tmp')
    test_copy.open_up(base)
    trees = treegen.scratch_dir('treemig-hell-trees-')
    print('large trees under %s, small ones under %s' % (trees, base))
    try:
        for fn, where in ((run_deep, trees), (run_wide, trees), (run_specials, base),
                          (run_unreadable_midrun, base), (run_roots_replaced, base)):
            test_copy.guard(R, fn.__name__, fn, R, where)
    finally:
        for d in (base, trees):
            test_copy.restore_modes(d)
            treegen.remove_tree(d)
    R.finish()


# --------------------------------------------------------------------------
# 1. 100 levels

def build_deep(top):
    """src: d000/d001/.../d099 (names 'dNNN-' + 40 x 'n'), files at depths
    1, 2, 10, 25, 50, 75, 99 and 101 (in the deepest folder), an empty
    folder and a symlink in the deepest folder. Returns (src, dst, folders,
    files, bytes)."""
    src = os.path.join(os.fsencode(top), b'src')
    dst = os.path.join(os.fsencode(top), b'dst')
    os.makedirs(src)
    os.makedirs(dst)
    names = [b'd%03d-' % i + b'n' * 40 for i in range(DEPTH)]
    file_depths = {1, 2, 10, 25, 50, 75, 99, 101}
    files = nbytes = 0
    fds = [os.open(src, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        # depth of a file made in fds[-1]: len(fds)
        for i in range(DEPTH + 1):
            d = len(fds)
            if d in file_depths:
                data = (b'depth %d\n' % d) * (d + 1)
                fd = os.open(b'file-at-%d.txt' % d, os.O_WRONLY | os.O_CREAT, 0o640,
                             dir_fd=fds[-1])
                os.write(fd, data)
                os.close(fd)
                os.utime(b'file-at-%d.txt' % d, ns=(T0 + d, T0 + d), dir_fd=fds[-1])
                files += 1
                nbytes += len(data)
            if i == DEPTH:
                break
            os.mkdir(names[i], 0o750 if i % 7 == 3 else 0o755, dir_fd=fds[-1])
            fds.append(os.open(names[i], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        os.mkdir(b'empty', dir_fd=fds[-1])
        os.symlink(b'../' + names[DEPTH - 2], b'up', dir_fd=fds[-1])
        os.utime(b'up', ns=(T0 + 5, T0 + 5), dir_fd=fds[-1], follow_symlinks=False)
        os.utime(b'empty', ns=(T0 + 6, T0 + 6), dir_fd=fds[-1])
        # folder mtimes, deepest first (a child's creation changed them)
        for i in range(len(fds) - 1, 0, -1):
            os.utime(fds[i], ns=(T0 + 1000 * SEC + i, T0 + 1000 * SEC + i))
    finally:
        for fd in fds:
            os.close(fd)
    return src, dst, DEPTH + 1, files, nbytes


def run_deep(R, base):
    top = os.path.join(base, 'deep')
    src, dst, folders, files, nbytes = build_deep(top)
    db = os.path.join(top, 'state.db')
    src_tree = tree_of(src)
    longest = max(len(p) for p in src_tree)
    print('     deep: %d folders, %d files, 1 symlink; deepest path %d bytes'
          % (folders, files, longest))
    state = {}

    def check_discover():
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover of 100 nested folders')
        st = tmtest.status_json(db)
        expect_eq('src counts', {'folders': folders, 'files': files, 'symlinks': 1,
                                 'other': 0, 'bytes': nbytes, 'pending': 0, 'failed': 0,
                                 'excluded': 0}, st['src'])
        expect_eq('copy.pending (everything is missing)', folders + files + 1,
                  st['copy']['pending'])
        expect_eq('rounds', {'src': DEPTH + 1, 'dst': 0}, st['rounds'])
        expect_eq('deepest row depth', DEPTH + 1,
                  count_rows(db, 'SELECT max(depth) FROM src_nodes'))
        expect_eq('source rows (with the root)', folders + files + 2,
                  count_rows(db, 'SELECT count(*) FROM src_nodes'))
        state['ok'] = True
    R.check('deep: discover exits 0; counts, rounds and depths exact', check_discover)
    if not state:
        return

    def check_copy_verify():
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy of 100 nested folders')
        st = tmtest.status_json(db)
        expect_eq('phase', 'copied', st['phase'])
        expect_eq('copy counts', (0, 0, folders + files + 1),
                  (st['copy']['pending'], st['copy']['failed'], st['copy']['successful']))
        for args in (['verify'], ['verify', '--checksum']):
            cp = tmtest.run(args + ['--db', db, '--quiet'])
            expect_rc(cp, 0, ' '.join(args))
        expect_eq('phase', 'verified', phase(db))
        compare_trees(src_tree, tree_of(dst), 'the destination')
        test_copy.check_no_tmp(dst)
        tmtest.check_all_stats(db)
    R.check('deep: copy, verify, verify --checksum exit 0; the destination equals the '
            'source (bytes, mtime, mode, paths > PATH_MAX)', check_copy_verify)


# --------------------------------------------------------------------------
# 2. 200,000 entries in one folder

def build_wide(top, n):
    src = os.path.join(os.fsencode(top), b'src')
    dst = os.path.join(os.fsencode(top), b'dst')
    wide = os.path.join(src, b'wide')
    os.makedirs(wide)
    os.makedirs(dst)
    t = time.monotonic()
    dfd = os.open(wide, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for i in range(n):
            os.close(os.open(b'e%06d' % i, flags, 0o644, dir_fd=dfd))
    finally:
        os.close(dfd)
    with open(os.path.join(src, b'side.txt'), 'wb') as f:
        f.write(b'beside the wide folder\n')
    return src, dst, time.monotonic() - t


def run_wide(R, base):
    top = os.path.join(base, 'wide')
    src, dst, secs = build_wide(top, WIDE)
    db = os.path.join(top, 'state.db')
    print('     wide: %d empty files created in %.1f s under %s' % (WIDE, secs, top))
    measured = []
    state = {}

    def step(args, rc, what):
        code, out, err, rss, t = run_measured(args)
        measured.append((what, rss, t))
        print('     %-8s exit %d, %.1f s, peak RSS %.1f MiB' % (what, code, t, rss / 1024))
        if code != rc:
            fail('%s: expected exit %d, got %d: %s' % (what, rc, code, first_line(err)))
        if rss > RSS_LIMIT_KB and statecheck.sanitizer():
            print('     (built with the %s sanitizer: the RSS bound is not checked)'
                  % statecheck.sanitizer())
        elif rss > RSS_LIMIT_KB:
            fail('%s: peak RSS %.1f MiB over the bound of %d MiB'
                 % (what, rss / 1024, RSS_LIMIT_KB // 1024))

    def check_discover():
        step(['discover', '--db', db, '--quiet', src, dst], 0, 'discover')
        st = tmtest.status_json(db)
        expect_eq('src counts', {'folders': 1, 'files': WIDE + 1, 'symlinks': 0,
                                 'other': 0, 'bytes': 23, 'pending': 0, 'failed': 0,
                                 'excluded': 0}, st['src'])
        expect_eq('copy.pending', WIDE + 2, st['copy']['pending'])
        expect_eq('rows directly in /wide', WIDE,
                  count_rows(db, "SELECT count(*) FROM src_nodes WHERE parent_id = "
                                 "(SELECT id FROM src_nodes WHERE path = '/wide')"))
        state['ok'] = True
    R.check('wide: discover of a folder of %d entries exits 0, counts exact, peak RSS '
            'under %d MiB' % (WIDE, RSS_LIMIT_KB // 1024), check_discover)
    if not state:
        return

    def check_copy():
        step(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy')
        st = tmtest.status_json(db)
        expect_eq('copy counts (pending, failed, successful)', (0, 0, WIDE + 2),
                  (st['copy']['pending'], st['copy']['failed'], st['copy']['successful']))
        state['copied'] = True
    R.check('wide: copy exits 0, every node copied, peak RSS under %d MiB'
            % (RSS_LIMIT_KB // 1024), check_copy)

    def check_verify():
        if 'copied' not in state:
            raise tmtest.Skip('the copy failed')
        step(['verify', '--db', db, '--quiet'], 0, 'verify')
        expect_eq('phase', 'verified', phase(db))
        # the destination holds exactly the source's names, types, sizes,
        # modes and mtimes (no contents to compare: the files are empty)
        compare_trees(tree_of(src, contents=False), tree_of(dst, contents=False),
                      'the destination')
        test_copy.check_no_tmp(dst)
    R.check('wide: verify exits 0, peak RSS under %d MiB; the destination holds '
            'exactly the source\'s entries' % (RSS_LIMIT_KB // 1024), check_verify)
    if measured:
        print('     wide summary: %s' % ', '.join('%s %.1f s / %.1f MiB' % (w, t, r / 1024)
                                                  for w, r, t in measured))


# --------------------------------------------------------------------------
# 3. FIFOs, sockets, devices

def run_specials(R, base):
    top = os.path.join(base, 'specials')
    src = os.path.join(top, 'src')
    dst = os.path.join(top, 'dst')
    os.makedirs(os.path.join(src, 'sub'))
    os.makedirs(dst)
    specials = ['/fifo', '/sub/fifo2', '/sock']
    os.mkfifo(os.path.join(src, 'fifo'))
    os.mkfifo(os.path.join(src, 'sub', 'fifo2'))
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.bind(os.path.join(src, 'sock'))
    sk.close()
    devices = os.geteuid() == 0
    if devices:
        # /dev/null's and /dev/loop0's numbers: harmless if ever opened,
        # but they must not be
        os.mknod(os.path.join(src, 'chardev'), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(src, 'sub', 'blockdev'), 0o600 | stat.S_IFBLK,
                 os.makedev(7, 0))
        specials += ['/chardev', '/sub/blockdev']
    else:
        R.skip('specials: device nodes', 'not root: mknod needs CAP_MKNOD; the FIFOs '
               'and the socket are still checked')
    with open(os.path.join(src, 'plain.txt'), 'wb') as f:
        f.write(b'plain\n')
    db = os.path.join(top, 'state.db')
    strace = shutil.which('strace')
    trace = os.path.join(top, 'trace')
    if strace:
        cp = subprocess.run([strace, '-f', '-o', '/dev/null', 'true'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode != 0:
            strace = None
            print('     note: strace does not work here: %r' % cp.stderr[-200:])
    traced = []

    def run(args, rc, what):
        if strace:
            out = '%s.%d' % (trace, len(traced))
            traced.append(out)
            cmd = [strace, '-f', '-qq', '-o', out, '-e', 'trace=open,openat,openat2,creat',
                   tmtest.TREEMIG] + args
            # LeakSanitizer cannot work under ptrace
            env = dict(os.environ)
            env['ASAN_OPTIONS'] = ':'.join(x for x in (env.get('ASAN_OPTIONS'),
                                                       'detect_leaks=0') if x)
            cp = subprocess.run([os.fsencode(c) for c in cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=tmtest.TIMEOUT, env=env)
        else:
            cp = tmtest.run(args)
        expect_rc(cp, rc, what)
        return cp

    state = {}

    def check_discover():
        # --no-specials: left out of the copy, never opened (test_fidelity.py
        # checks that the copy makes them again without it)
        run(['discover', '--db', db, '--quiet', '--no-specials', src, dst], 0,
            'discover')
        st = tmtest.status_json(db)
        expect_eq('src counts (folders, files, other)', (1, 1, len(specials)),
                  (st['src']['folders'], st['src']['files'], st['src']['other']))
        expect_eq('copy.skipped (the special files)', len(specials), st['copy']['skipped'])
        rows = {r['path'].decode(): r for r in tmtest.read_nodes(db, 'src_nodes')}
        errs = ['%s: type %r, copy_status %r' % (p, rows.get(p, {}).get('type'),
                                                 rows.get(p, {}).get('copy_status'))
                for p in specials
                if (rows.get(p, {}).get('type'), rows.get(p, {}).get('copy_status'))
                != ('other', 'skipped')]
        fail_list('special files', errs)
        state['ok'] = True
    R.check('specials: discover exits 0 (a FIFO with no writer does not hang it); each '
            'is recorded as other, copy_status skipped', check_discover)
    if not state:
        return

    def check_review():
        cp = tmtest.run(['review', '--db', db])
        expect_rc(cp, 0, 'review')
        line = [ln for ln in cp.stdout.decode().splitlines() if ln.startswith('skipped')]
        want = 'skipped           %d (%d other)' % (len(specials), len(specials))
        if not line or not line[0].startswith(want):
            fail('review summary: expected a line starting with %r, got %r'
                 % (want, line))
        cp = tmtest.run(['review', '--db', db, '--list', 'skipped'])
        expect_rc(cp, 0, 'review --list skipped')
        got = sorted(ln.split('\t')[3] for ln in cp.stdout.decode().splitlines())
        expect_eq('paths of review --list skipped', sorted(specials), got)
        kinds = {ln.split('\t')[0] + ' ' + ln.split('\t')[1]
                 for ln in cp.stdout.decode().splitlines()}
        expect_eq('kind and type of each line', {'skipped other'}, kinds)
        cp = tmtest.run(['review', '--db', db, '--list', 'all'])
        expect_rc(cp, 0, 'review --list all')
        listed = {ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()}
        missing = [p for p in specials if p not in listed]
        if missing:
            fail('review --list all does not name the special files %r' % missing)
    R.check('specials: review counts them (skipped, other) and review --list skipped '
            'names each', check_review)

    def check_copy():
        run(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy')
        run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify --checksum')
        got = sorted(os.listdir(dst))
        expect_eq('destination after the copy (no special file created)',
                  ['plain.txt', 'sub'], got)
        expect_eq('destination /sub', [], os.listdir(os.path.join(dst, 'sub')))
        st = tmtest.status_json(db)
        expect_eq('copy counts (successful, skipped, failed)', (2, len(specials), 0),
                  (st['copy']['successful'], st['copy']['skipped'], st['copy']['failed']))
    R.check('specials: copy and verify --checksum exit 0; nothing created for them',
            check_copy)

    def check_never_opened():
        if not strace:
            raise tmtest.Skip('strace(1) is not installed: cannot watch the open calls')
        names = [p.rsplit('/', 1)[1].encode() for p in specials]
        bad = []
        control = 0
        for t in traced:
            with open(t, 'rb') as f:
                for ln in f:
                    control += b'"plain.txt"' in ln
                    if b'= -1 ENOENT' in ln:
                        continue
                    for n in names:
                        if (b'"' + n + b'"') in ln or (b'/' + n + b'"') in ln:
                            bad.append(ln.strip()[:200])
        if not control:
            fail('the trace shows no open of plain.txt either: the trace does not '
                 'catch opens relative to a folder descriptor')
        if bad:
            fail('special files were opened:\n    %s' % '\n    '.join(
                b.decode('utf-8', 'replace') for b in bad[:10]))
        print('     %d traced runs, no open call on %s' % (len(traced), ', '.join(specials)))
    R.check('specials: never opened by discover, copy or verify (strace)', check_never_opened)


# --------------------------------------------------------------------------
# 4. a source folder made unreadable between discover and copy

def build_locked(top):
    """src: ok/a.txt, locked/{x.txt, y.txt, sub/z.txt, sub/deeper/w.txt},
    after.txt; dst empty. Returns (src, dst)."""
    src = os.path.join(os.fsencode(top), b'src')
    dst = os.path.join(os.fsencode(top), b'dst')
    S = treegen.TreeBuilder(src)
    t = T0 + 500 * SEC
    S.file(b'ok/a.txt', data=b'ok', mtime=t + 1)
    S.file(b'locked/x.txt', data=b'xx', mtime=t + 2)
    S.file(b'locked/y.txt', data=b'yyy', mtime=t + 3, mode=0o600)
    S.file(b'locked/sub/z.txt', data=b'zzzz', mtime=t + 4)
    S.file(b'locked/sub/deeper/w.txt', data=b'wwwww', mtime=t + 5)
    S.file(b'after.txt', data=b'after', mtime=t + 6)
    S.finish()
    os.makedirs(dst)
    return src, dst


def run_unreadable_midrun(R, base):
    U = test_copy.Unpriv()
    top = os.path.join(base, 'locked')
    src, dst = build_locked(top)
    dbdir = os.path.join(top, 'db')
    os.mkdir(dbdir)
    db = os.path.join(dbdir, 'state.db')
    locked = os.path.join(src, b'locked')
    failing = [b'/locked/sub/deeper/w.txt', b'/locked/sub/z.txt', b'/locked/x.txt',
               b'/locked/y.txt']
    state = {}

    def check_copy():
        U.require()
        U.give(src, dst, dbdir)
        cp = U.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        src_tree = tree_of(src)
        os.chmod(locked, 0)
        state['tree'] = src_tree
        cp = U.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 3, 'copy with a source folder made unreadable after discovery')
        err = cp.stderr.decode('utf-8', 'replace')
        if '%d nodes failed' % len(failing) not in err:
            fail('copy: stderr does not say that %d nodes failed: %r'
                 % (len(failing), err[-500:]))
        print('     copy: %s' % first_line(cp.stderr))
        st = tmtest.status_json(db)
        expect_eq('phase', 'copied', st['phase'])
        expect_eq('copy.failed', len(failing), st['copy']['failed'])
        rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
        errs = []
        for p in failing:
            e = (rows[p]['error'] or b'').decode('utf-8', 'replace')
            if rows[p]['copy_status'] != 'failed' or 'permission denied' not in e.lower() \
                    or p.decode() not in e:
                errs.append('%r: copy_status %r, error %r' % (p, rows[p]['copy_status'], e))
        others = [(p, r['copy_status']) for p, r in rows.items()
                  if p not in failing and p != b'/' and r['copy_status'] != 'successful']
        if others:
            errs.append('nodes not copied that should be: %r' % others)
        fail_list('copy_status after the copy', errs)
        te = {p for _, p, _ in task_errors(db, 'copy')}
        expect_eq('task_errors paths (phase copy)', sorted(failing),
                  sorted(p for p in te if p in failing))
        cp = tmtest.run(['review', '--db', db, '--list', 'failed'])
        expect_rc(cp, 0, 'review --list failed')
        lines = cp.stdout.decode('utf-8', 'replace').splitlines()
        listed = sorted(ln.split('\t')[3].encode() for ln in lines)
        expect_eq('review --list failed', sorted(failing), listed)
        if not all('permission denied' in ln for ln in lines):
            fail('review --list failed without the reason: %r' % lines)
        # nothing partial under a real name, no temporary left
        for p in failing:
            if os.path.lexists(dst + p):
                fail('%r exists on the destination although its copy failed' % p)
        test_copy.check_no_tmp(dst)
        tmtest.check_all_stats(db)
        state['ok'] = True
    R.check('unreadable mid-run: copy exits 3; each file below the folder failed with '
            '"permission denied" and its path; the rest copied', check_copy)

    def check_retry():
        if 'ok' not in state:
            raise tmtest.Skip('the copy check did not pass')
        os.chmod(locked, 0o755)
        cp = U.run(['retry', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'retry once the folder is readable again')
        st = tmtest.status_json(db)
        expect_eq('copy counts (failed, pending)', (0, 0),
                  (st['copy']['failed'], st['copy']['pending']))
        for args in (['verify'], ['verify', '--checksum']):
            cp = U.run(args + ['--db', db, '--quiet'])
            expect_rc(cp, 0, ' '.join(args))
        expect_eq('phase', 'verified', phase(db))
        # the folder's mode was 0 when the copy set it; the retry's copy
        # sets the mode discovery recorded (0755 then)
        compare_trees(state['tree'], tree_of(dst), 'the destination')
        test_copy.check_no_tmp(dst)
        tmtest.check_all_stats(db)
    R.check('unreadable mid-run: once readable, retry exits 0, verify exits 0, the '
            'destination equals the source', check_retry)
    if os.path.exists(locked):
        os.chmod(locked, 0o755)


# --------------------------------------------------------------------------
# 5. roots replaced by files after discovery

def run_roots_replaced(R, base):
    for side in ('source', 'destination'):
        R.check('root replaced: the %s root is a file when the copy starts: exit 2, '
                'the root named, nothing written' % side, check_root_replaced, base, side)


def check_root_replaced(base, side):
    top = os.path.join(base, 'replaced-' + side)
    src = os.path.join(top, 'src')
    dst = os.path.join(top, 'dst')
    os.makedirs(os.path.join(src, 'a'))
    with open(os.path.join(src, 'a', 'f.txt'), 'wb') as f:
        f.write(b'f')
    os.makedirs(dst)
    db = os.path.join(top, 'state.db')
    cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
    expect_rc(cp, 0, 'discover')
    root = src if side == 'source' else dst
    os.rename(root, root + '.moved')
    with open(root, 'wb') as f:
        f.write(b'a file now')
    before = test_copy.snapshot(top)
    cp = tmtest.run(['copy', '--db', db, '--yes'])
    expect_rc(cp, 2, 'copy with the %s root replaced by a file' % side)
    err = cp.stderr.decode('utf-8', 'replace')
    if root not in err or 'not a folder' not in err:
        fail('copy: the message does not name the %s root %s as not a folder: %r'
             % (side, root, err))
    print('     %s' % first_line(cp.stderr))
    after = test_copy.snapshot(top)
    ignore = {p for p in set(before) | set(after)
              if p.startswith(b'/state.db') or p == b'/'}
    fail_list('the trees', test_copy.diff_snapshots(
        {p: n for p, n in before.items() if p not in ignore},
        {p: n for p, n in after.items() if p not in ignore}, 'the trees'))
    expect_eq('phase (the copy did not start)', 'discovered', phase(db))


if __name__ == '__main__':
    main()
