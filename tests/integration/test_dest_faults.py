#!/usr/bin/env python3
"""Integration test of a destination that fails as a whole during `copy`.

1. disk full: the destination is a 2 MiB tmpfs, the source holds about
   4.5 MiB. The copy stops cleanly: exit 1, phase `suspended`, a message
   that says the destination is full and names it; every file under a real
   name on the destination is complete (the source's bytes), no
   `.treemig.*.tmp` file is left, the stats agree with the rows. Once the
   tmpfs is remounted with 64 MiB, `copy` resumes and exits 0, `verify
   --checksum` exits 0, the destination equals the source.
   The same with a tmpfs out of inodes (nr_inodes=40, 105 nodes to copy),
   and over quota (EDQUOT, injected by the fault layer at the fourth
   commit: tmpfs has no quotas here).
2. read-only destination: the tmpfs is remounted read-only between
   discover and copy: exit 1, phase `suspended`, a message that says
   read-only and names the destination, nothing written, nothing recorded
   as copied or failed; remounted read-write, `copy` completes and verify
   exits 0.
3. the destination root removed between discover and copy: exit 2 (a root
   that does not exist, docs/exit-codes.md), the message names the root,
   the phase stays `discovered`, nothing is created anywhere (the root is
   not made again).
4. the destination root removed during the copy (the copy is stopped with
   SIGSTOP once it has copied some nodes, the root removed, the copy
   continued): exit 1, phase `suspended`, a message that names the root as
   gone, no node recorded as failed for it, nothing created at the root's
   path or beside it.
5. the destination root renamed during the copy (same way): exit 1, phase
   `suspended`, the message names the root; nothing is written at the old
   path, the renamed folder holds no partial or temporary file; once the
   folder is renamed back, `copy` resumes and completes, verify --checksum
   exits 0, the destination equals the source.
6. the source root removed during the copy (same way): exit 1, phase
   `suspended`, the message names the source root, no node failed.
7. the destination root removed during discovery (stopped the same way
   once some destination folders are recorded): exit 1, phase `suspended`,
   the message names the root, no folder recorded as failed.
8. the destination's file system unmounted (umount -l) during the copy:
   the root path now leads to the folder below the mount point; the copy
   stops (exit 1, phase `suspended`, the root named) and writes nothing
   into that folder (without the check, the copy would go on into the
   detached file system, whose files vanish when treemig exits).

The mounts need root (CAP_SYS_ADMIN); each case that needs one is skipped,
with the reason printed, when mount(8) is refused.

Run:  python3 tests/integration/test_dest_faults.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_copy   # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from test_copy import fail_list, snapshot, diff_snapshots, phase, task_errors  # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

SEC = treegen.SEC
T0 = treegen.T0 + 70000 * SEC


# --------------------------------------------------------------------------
# helpers

class Mounts:
    """tmpfs mounts made by this test, unmounted at the end."""

    def __init__(self):
        self.points = []

    def tmpfs(self, path, size):
        os.makedirs(path, exist_ok=True)
        cp = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size,
                             'tmpfs', path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode != 0:
            raise tmtest.Skip('cannot mount a tmpfs (%s): %s' % (
                'not root' if os.geteuid() else 'mount refused',
                cp.stderr.decode('utf-8', 'replace').strip()[:200]))
        self.points.append(path)

    def remount(self, path, opts):
        cp = subprocess.run(['mount', '-o', 'remount,' + opts, path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode != 0:
            fail('mount -o remount,%s %s failed: %s' % (opts, path, cp.stderr[-300:]))

    def release(self):
        for p in reversed(self.points):
            if subprocess.run(['umount', p], stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(['umount', '-l', p], stderr=subprocess.DEVNULL)
        self.points = []


def build_src(src, big_files=6, big_size=700_000, small=50):
    """src: big/fN (incompressible, big_size bytes each), small/sN, a nested
    folder and a symlink. Returns the total bytes."""
    S = treegen.TreeBuilder(src)
    total = 0
    rnd = os.urandom(big_size * 2)
    for i in range(big_files):
        data = rnd[i * 1000:i * 1000 + big_size]
        S.file(b'big/f%d' % i, data=data, mtime=T0 + i)
        total += len(data)
    for i in range(small):
        data = b's%d\n' % i
        S.file(b'small/s%03d' % i, data=data, mtime=T0 + 100 + i)
        total += len(data)
    S.file(b'nested/a/b/c.txt', data=b'nested\n', mtime=T0 + 200)
    S.symlink(b'nested/link', b'a/b/c.txt', mtime=T0 + 201)
    S.finish(root_mtime=T0 + 300)
    return total + 7


def build_many(src, folders=40, files=1000):
    """Many small files, for a copy slow enough to be caught running."""
    os.makedirs(src)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for d in range(folders):
        p = os.path.join(src, b'd%02d' % d)
        os.mkdir(p)
        dfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(files):
                fd = os.open(b'f%04d' % i, flags, 0o644, dir_fd=dfd)
                os.write(fd, b'%d/%d\n' % (d, i))
                os.close(fd)
        finally:
            os.close(dfd)


def without_root(snap):
    """A snapshot without the root itself (a copy leaves the destination
    root's own mode and mtime alone; a tmpfs root is 0755 here)."""
    return {p: n for p, n in snap.items() if p != b'/'}


def real_files_complete(src, dst):
    """Every file under a real name on the destination has the source's
    bytes: a failed copy never leaves a partial file under a real name."""
    s, d = snapshot(src), snapshot(dst)
    errs = []
    for p, n in d.items():
        if n.type == 'file' and (p not in s or s[p].data != n.data or s[p].size != n.size):
            errs.append('%r: %s, source %s' % (p, test_copy.fmt_node(n),
                                               test_copy.fmt_node(s.get(p))))
    fail_list('files on the destination', errs)
    test_copy.check_no_tmp(dst)


def expect_dst_equals_src(src, dst):
    fail_list('the destination', diff_snapshots(without_root(snapshot(src)),
                                                without_root(snapshot(dst)),
                                                'the destination'))


def message(cp):
    return cp.stderr.decode('utf-8', 'replace').strip()


def copied_count(db):
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=0.05)
        try:
            return conn.execute("SELECT coalesce(sum(count), 0) FROM copy_stats WHERE "
                                "copy_status = 'successful' AND depth > 1").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def dst_rows(db):
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=0.05)
        try:
            return conn.execute('SELECT count(*) FROM dst_nodes').fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def stop_mid_copy(db, then, min_copied=500, cmd=None, progress=copied_count):
    """Runs `copy` with one worker (or cmd), stops it (SIGSTOP) once
    progress(db) >= min_copied, calls then(), continues it and returns
    (returncode, stderr). Skips when the run ended before it could be
    caught."""
    cmd = cmd or [os.fsencode(tmtest.TREEMIG), b'copy', b'--db', os.fsencode(db),
                  b'--yes', b'--quiet', b'--workers', b'1']
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        t = time.monotonic()
        caught = False
        while time.monotonic() - t < 60 and p.poll() is None:
            if progress(db) >= min_copied:
                p.send_signal(signal.SIGSTOP)
                caught = True
                break
            time.sleep(0.002)
        if not caught:
            p.communicate(timeout=tmtest.TIMEOUT)
            raise tmtest.Skip('the run ended (exit %r) before it could be stopped'
                              % p.returncode)
        try:
            then()
        finally:
            p.send_signal(signal.SIGCONT)
        out, err = p.communicate(timeout=tmtest.TIMEOUT)
        return p.returncode, err
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()


# --------------------------------------------------------------------------

def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_dest_faults')
    base = tempfile.mkdtemp(prefix='treemig-dstfaults-', dir='/tmp')
    trees = treegen.scratch_dir('treemig-dstfaults-trees-')
    M = Mounts()
    try:
        for fn, where in ((run_disk_full, base), (run_no_inodes, base),
                          (run_quota, base), (run_read_only, base),
                          (run_root_removed_before, base), (run_root_removed_during, trees),
                          (run_root_renamed_during, trees),
                          (run_src_removed_during, trees),
                          (run_dst_removed_discovering, trees),
                          (run_unmounted_during, trees)):
            test_copy.guard(R, fn.__name__, fn, R, M, where)
    finally:
        M.release()
        treegen.remove_tree(base)
        treegen.remove_tree(trees)
    R.finish()


def run_disk_full(R, M, base):
    top = os.path.join(base, 'full')
    src = os.path.join(os.fsencode(top), b'src')
    dst = os.path.join(os.fsencode(top), b'dst')
    db = os.path.join(top, 'state.db')
    state = {}

    def check_full():
        total = build_src(src)
        M.tmpfs(dst, '2m')
        print('     source %d bytes, destination a 2 MiB tmpfs' % total)
        st = copy_until_full(src, dst, db, 'a full destination')
        if st['copy']['pending'] == 0:
            fail('nothing left pending after the disk filled up: %r' % st['copy'])
        real_files_complete(src, dst)
        tmtest.check_all_stats(db)
        test_copy.no_duplicates(db)
        state['ok'] = True
    R.check('disk full: copy exits 1, phase suspended, the message names the full '
            'destination; no partial or temporary file', check_full)

    def check_resume():
        if 'ok' not in state:
            raise tmtest.Skip('the disk-full check did not pass')
        M.remount(dst, 'size=64m')
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy once there is room')
        st = tmtest.status_json(db)
        expect_eq('phase', 'copied', st['phase'])
        expect_eq('copy counts (pending, failed)', (0, 0),
                  (st['copy']['pending'], st['copy']['failed']))
        cp = tmtest.run(['verify', '--db', db, '--checksum', '--quiet'])
        expect_rc(cp, 0, 'verify --checksum')
        expect_dst_equals_src(src, dst)
        test_copy.check_no_tmp(dst)
        tmtest.check_all_stats(db)
    R.check('disk full: once there is room, copy resumes and exits 0, verify --checksum '
            'exits 0, the destination equals the source', check_resume)


def copy_resumes(src, dst, db, once):
    """Once the cause is gone: copy exits 0, verify --checksum exits 0, the
    destination equals the source and holds no temporary file."""
    expect_rc(tmtest.run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy once ' + once)
    expect_rc(tmtest.run(['verify', '--db', db, '--checksum', '--quiet']), 0,
              'verify --checksum')
    expect_dst_equals_src(src, dst)
    test_copy.check_no_tmp(dst)


def copy_until_full(src, dst, db, what, word='full', env=None):
    """Discovers, then copies onto a destination that fills up: exit 1, a
    message that names the destination and says word, phase suspended,
    nothing failed. Returns the status."""
    cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
    expect_rc(cp, 0, 'discover')
    cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'], env=env)
    expect_rc(cp, 1, 'copy onto ' + what)
    msg = message(cp)
    print('     %s' % msg.splitlines()[-1][:200])
    if word not in msg or dst.decode() not in msg:
        fail('the message does not say that the destination %s is %s: %r'
             % (dst.decode(), word, msg))
    st = tmtest.status_json(db)
    expect_eq('phase', 'suspended', st['phase'])
    expect_eq('copy.failed', 0, st['copy']['failed'])
    return st


def run_no_inodes(R, M, base):
    def check():
        top = os.path.join(base, 'inodes')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        db = os.path.join(top, 'state.db')
        S = treegen.TreeBuilder(src)
        for d in range(5):
            for i in range(20):
                S.file(b'd%d/f%02d' % (d, i), data=b'x' * i, mtime=T0 + d * 100 + i)
        S.finish()
        M.tmpfs(dst, '8m,nr_inodes=40')
        copy_until_full(src, dst, db, 'a destination out of inodes')
        real_files_complete(src, dst)
        tmtest.check_all_stats(db)
        M.remount(dst, 'nr_inodes=1000')
        copy_resumes(src, dst, db, 'there are inodes')
    R.check('out of inodes: copy exits 1, phase suspended, the message says full; '
            'with more inodes copy and verify exit 0', check)


def run_quota(R, M, base):
    """A destination over its quota. Real quotas need a file system mounted
    with them (tmpfs here has none), so the fault layer answers the fourth
    commit with EDQUOT, as the kernel would."""
    def check():
        top = os.path.join(base, 'quota')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        db = os.path.join(top, 'state.db')
        build_src(src, big_files=2, big_size=1000, small=20)
        os.mkdir(dst)
        copy_until_full(src, dst, db, 'a destination over its quota', 'quota',
                        {'TREEMIG_FAULT_DST': 'commit@4=edquot'})
        real_files_complete(src, dst)
        copy_resumes(src, dst, db, 'the quota allows')
    R.check('over quota (EDQUOT): copy exits 1, phase suspended, the message names the '
            'destination and the quota; then copy and verify exit 0', check)


def run_read_only(R, M, base):
    top = os.path.join(base, 'ro')
    src = os.path.join(os.fsencode(top), b'src')
    dst = os.path.join(os.fsencode(top), b'dst')
    db = os.path.join(top, 'state.db')
    state = {}

    def check_ro():
        build_src(src, big_files=2)
        M.tmpfs(dst, '16m')
        os.mkdir(os.path.join(dst, b'small'))   # one folder already there
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        before = tmtest.status_json(db)
        M.remount(dst, 'ro')
        dst_before = snapshot(dst)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 1, 'copy onto a read-only destination')
        msg = message(cp)
        print('     %s' % msg.splitlines()[-1][:200])
        if 'read-only' not in msg or dst.decode() not in msg:
            fail('the message does not say that the destination %s is read-only: %r'
                 % (dst.decode(), msg))
        st = tmtest.status_json(db)
        expect_eq('phase', 'suspended', st['phase'])
        expect_eq('copy counts unchanged', before['copy'], st['copy'])
        expect_eq('the destination is unchanged', dst_before, snapshot(dst))
        tmtest.check_all_stats(db)
        test_copy.no_duplicates(db)
        state['ok'] = True
    R.check('read-only destination: copy exits 1, phase suspended, the message names '
            'the destination; nothing written or recorded', check_ro)

    def check_resume():
        if 'ok' not in state:
            raise tmtest.Skip('the read-only check did not pass')
        M.remount(dst, 'rw')
        copy_resumes(src, dst, db, 'the destination is writable')
        tmtest.check_all_stats(db)
    R.check('read-only destination: once writable, copy and verify exit 0, the '
            'destination equals the source', check_resume)


def run_root_removed_before(R, M, base):
    def check():
        top = os.path.join(base, 'gone-before')
        src = os.path.join(top, 'src')
        dst = os.path.join(top, 'dst')
        db = os.path.join(top, 'state.db')
        build_src(os.fsencode(src), big_files=1)
        os.makedirs(dst)
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        os.rmdir(dst)
        ours = lambda: sorted(n for n in os.listdir(top)   # noqa: E731
                              if not n.startswith('state.db'))
        before = ours()
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 2, 'copy to a destination root removed after discovery')
        msg = message(cp)
        print('     %s' % msg.splitlines()[-1][:200])
        if dst not in msg:
            fail('the message does not name the destination root %s: %r' % (dst, msg))
        expect_eq('phase', 'discovered', phase(db))
        expect_eq('nothing created beside the state file (the root is not made again)',
                  before, ours())
    R.check('destination root removed before the copy: exit 2, the root named, '
            'nothing created', check)


def run_root_removed_during(R, M, base):
    def check():
        top = os.path.join(base, 'gone-during')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        db = os.path.join(top, 'state.db')
        build_many(src)
        os.makedirs(dst)
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        listing = {}
        ours = lambda: sorted(n for n in os.listdir(top)   # noqa: E731
                              if not n.startswith('state.db'))

        def remove():
            treegen.remove_tree(dst)
            listing['before'] = ours()
        rc, err = stop_mid_copy(db, remove)
        msg = err.decode('utf-8', 'replace').strip()
        print('     exit %d: %s' % (rc, msg.splitlines()[-1][:200] if msg else ''))
        if rc != 1:
            fail('copy after its destination root was removed: expected exit 1, got %d: %r'
                 % (rc, msg[-500:]))
        if dst.decode() not in msg or 'destination root' not in msg:
            fail('the message does not name the destination root %s: %r' % (dst, msg))
        st = tmtest.status_json(db)
        expect_eq('phase', 'suspended', st['phase'])
        if st['copy']['failed']:
            fail('nodes blamed for the vanished root: %r' % task_errors(db))
        if os.path.lexists(dst):
            fail('%r was created again' % dst)
        expect_eq('nothing created beside it', listing['before'], ours())
        tmtest.check_all_stats(db)
        # run again: the root does not exist (exit 2), nothing made
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 2, 'copy again while the destination root is missing')
        if os.path.lexists(dst):
            fail('%r was created again by the second copy' % dst)
    R.check('destination root removed during the copy: exit 1, phase suspended, the '
            'root named, no node failed, nothing recreated', check)


def run_root_renamed_during(R, M, base):
    def check():
        top = os.path.join(base, 'moved-during')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        moved = dst + b'.moved'
        db = os.path.join(top, 'state.db')
        build_many(src)
        os.makedirs(dst)
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        rc, err = stop_mid_copy(db, lambda: os.rename(dst, moved))
        msg = err.decode('utf-8', 'replace').strip()
        print('     exit %d: %s' % (rc, msg.splitlines()[-1][:200] if msg else ''))
        if rc != 1:
            fail('copy after its destination root was renamed: expected exit 1, got %d: %r'
                 % (rc, msg[-500:]))
        if dst.decode() not in msg:
            fail('the message does not name the destination root %s: %r' % (dst, msg))
        expect_eq('phase', 'suspended', phase(db))
        if os.path.lexists(dst):
            fail('%r was created again' % dst)
        real_files_complete(src, moved)
        st = tmtest.status_json(db)
        expect_eq('copy.failed', 0, st['copy']['failed'])
        copied = st['copy']['successful']
        n = len(snapshot(moved)) - 1
        print('     %d nodes recorded as copied, %d in the renamed folder' % (copied, n))
        # back in place, the copy goes on from where it stopped
        os.rename(moved, dst)
        copy_resumes(src, dst, db, 'the root is back')
        tmtest.check_all_stats(db)
    R.check('destination root renamed during the copy: exit 1, phase suspended, the root '
            'named, nothing at the old path; renamed back, copy and verify exit 0',
            check)


def run_src_removed_during(R, M, base):
    def check():
        top = os.path.join(base, 'src-gone')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        db = os.path.join(top, 'state.db')
        build_many(src)
        os.makedirs(dst)
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        rc, err = stop_mid_copy(db, lambda: treegen.remove_tree(src))
        msg = err.decode('utf-8', 'replace').strip()
        print('     exit %d: %s' % (rc, msg.splitlines()[-1][:200] if msg else ''))
        if rc != 1:
            fail('copy after its source root was removed: expected exit 1, got %d: %r'
                 % (rc, msg[-500:]))
        if src.decode() not in msg or 'source root' not in msg:
            fail('the message does not name the source root %s: %r' % (src, msg))
        st = tmtest.status_json(db)
        expect_eq('phase', 'suspended', st['phase'])
        expect_eq('copy.failed (nothing blamed on the nodes)', 0, st['copy']['failed'])
        test_copy.check_no_tmp(dst)
        tmtest.check_all_stats(db)
    R.check('source root removed during the copy: exit 1, phase suspended, the root '
            'named, no node failed', check)


def run_dst_removed_discovering(R, M, base):
    def check():
        top = os.path.join(base, 'dst-gone-discovering')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        db = os.path.join(top, 'state.db')
        build_many(src, folders=400, files=50)
        for d in range(400):
            os.makedirs(os.path.join(dst, b'd%02d' % d))
        cmd = [os.fsencode(tmtest.TREEMIG), b'discover', b'--db', os.fsencode(db),
               b'--quiet', b'--workers', b'1', b'--lead', b'1', src, dst]
        rc, err = stop_mid_copy(db, lambda: treegen.remove_tree(dst), min_copied=20,
                                cmd=cmd, progress=dst_rows)
        msg = err.decode('utf-8', 'replace').strip()
        print('     exit %d: %s' % (rc, msg.splitlines()[-1][:200] if msg else ''))
        if rc != 1:
            fail('discover after its destination root was removed: expected exit 1, '
                 'got %d: %r' % (rc, msg[-500:]))
        if dst.decode() not in msg or 'destination root' not in msg:
            fail('the message does not name the destination root %s: %r' % (dst, msg))
        st = tmtest.status_json(db)
        expect_eq('phase', 'suspended', st['phase'])
        expect_eq('failed folders (src, dst)', (0, 0),
                  (st['src']['failed'], st['dst']['failed']))
        if os.path.lexists(dst):
            fail('%r was created again' % dst)
        tmtest.check_all_stats(db)
    R.check('destination root removed during discovery: exit 1, phase suspended, the '
            'root named, no folder failed', check)


def run_unmounted_during(R, M, base):
    def check():
        top = os.path.join(base, 'unmounted')
        src = os.path.join(os.fsencode(top), b'src')
        dst = os.path.join(os.fsencode(top), b'dst')
        db = os.path.join(top, 'state.db')
        build_many(src, folders=10, files=1000)
        M.tmpfs(dst, '512m')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')

        def unmount():
            cp = subprocess.run(['umount', '-l', dst], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
            if cp.returncode != 0:
                fail('umount -l failed: %r' % cp.stderr[-300:])
            M.points.remove(dst)
        rc, err = stop_mid_copy(db, unmount)
        msg = err.decode('utf-8', 'replace').strip()
        print('     exit %d: %s' % (rc, msg.splitlines()[-1][:200] if msg else ''))
        if rc != 1:
            fail('copy after its destination was unmounted: expected exit 1, got %d: %r'
                 % (rc, msg[-500:]))
        if dst.decode() not in msg:
            fail('the message does not name the destination root %s: %r' % (dst, msg))
        expect_eq('phase', 'suspended', phase(db))
        expect_eq('the folder below the mount point (nothing written into it)', [],
                  os.listdir(dst))
    R.check('destination unmounted during the copy: exit 1, phase suspended, the root '
            'named, nothing written below the mount point', check)


if __name__ == '__main__':
    main()
