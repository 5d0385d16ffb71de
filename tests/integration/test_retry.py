#!/usr/bin/env python3
"""Integration test of `treemig retry` after failures of discovery and copy.

treemig runs as uid/gid 65534 (setpriv, when run as root; as the invoking
user otherwise), so that permissions apply to it.

1. unreadable source folder: a source folder is chmod 000 during discovery
   (exit 3); `copy --yes --force` copies the rest (exit 3: partial); the folder is
   chmod 755 again; `retry` exits 0, `verify` and `verify --checksum` exit
   0, and the destination equals the source (bytes, mtime, mode; the
   destination-only nodes untouched). Twice: with the folder missing on
   the destination, and with a destination twin holding some of its
   contents.
2. failed copies: a destination folder the user may not write into (owned
   by root) and a source file it may not read, inside a read-only (0555)
   folder that the copy creates: copy exits 3 with the nodes failed; once
   fixed (chown), `retry` redoes them (exit 0) and verify exits 0.
Every time: no node twice in src_nodes/dst_nodes, the stats tables equal
counts made from the rows, status --json has no failure left.

Run:  python3 tests/integration/test_retry.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import expect      # noqa: E402
import test_copy   # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from test_copy import (fail_list, snapshot, diff_snapshots, final_copy_status,  # noqa: E402
                       expected_dst, task_errors, phase, no_duplicates, fmt_node)
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

SEC = treegen.SEC


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_retry')
    U = test_copy.Unpriv()
    base = tempfile.mkdtemp(prefix='treemig-retry-', dir='/tmp')
    test_copy.open_up(base)
    try:
        if U.why_not:
            R.skip('every case', U.why_not)
        else:
            print('treemig runs as uid %d' % U.uid)
            test_copy.guard(R, 'unreadable source', run_unreadable_source, R, U, base, False)
            test_copy.guard(R, 'unreadable source, twin', run_unreadable_source, R, U, base,
                            True)
            test_copy.guard(R, 'failed copies', run_failed_copies, R, U, base)
    finally:
        test_copy.restore_modes(base)
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def common_pair(top, twin):
    """src: ok/, a/b/c/, locked/ (with a subfolder, a 0555 subfolder, a
    symlink), top-level files; dst: part of ok/, a destination-only file,
    and with twin=True a locked/ twin holding an identical file, an older
    conflicting one and a destination-only one."""
    top = os.fsencode(top)
    src, dst = os.path.join(top, b'src'), os.path.join(top, b'dst')
    S, D = treegen.TreeBuilder(src), treegen.TreeBuilder(dst)
    t = treegen.T0 + 200000 * SEC
    for B in (S, D):
        B.file(b'ok/same.txt', data=b'same', mtime=t + 1)
    S.file(b'ok/new.txt', data=b'new on the source', mtime=t + 2)
    S.file(b'ok/conf.txt', data=b'the source version', mtime=t + 3)
    D.file(b'ok/conf.txt', data=b'old', mtime=t + 3 - SEC)
    S.file(b'a/b/c/deep.txt', data=b'deep' * 100, mtime=t + 4)
    S.file(b'top.txt', data=b'top', mtime=t + 5)
    S.file(b'locked/inside.txt', data=b'inside the locked folder', mtime=t + 6)
    S.file(b'locked/sub/deeper.txt', data=b'deeper', mtime=t + 7)
    S.file(b'locked/sub/more/x', data=b'x' * 3000, mtime=t + 8)
    S.file(b'locked/exec.sh', data=b'#!/bin/sh\n', mtime=t + 9, mode=0o755)
    S.symlink(b'locked/link', b'sub/deeper.txt', mtime=t + 10)
    S.file(b'locked/ro/r.txt', data=b'in a read-only folder', mtime=t + 11)
    if twin:
        D.file(b'locked/inside.txt', data=b'inside the locked folder', mtime=t + 6)
        D.file(b'locked/exec.sh', data=b'old', mtime=t + 9 - SEC, mode=0o644)
        D.file(b'locked/dst_only.txt', data=b'only on the destination', mtime=t + 12)
        D.dir(b'locked/sub', mtime=t + 13)
    D.file(b'dst_only.txt', data=b'only here', mtime=t + 14)
    S.finish(root_mtime=t + 100)
    D.finish(root_mtime=t + 101)
    ro = os.path.join(src, b'locked', b'ro')
    st = os.lstat(ro)
    os.chmod(ro, 0o555)
    os.utime(ro, ns=(st.st_mtime_ns, st.st_mtime_ns))
    return src, dst


def final_checks(db, src, dst, exp, src_snap, dst_before, label):
    """The destination equals the expectation; the state file has no
    duplicate, exact stats, no failure left."""
    final = final_copy_status(exp['src'])
    want, ignore = expected_dst(src_snap, dst_before, final)
    after = snapshot(dst)
    fail_list('%s: the destination differs from the expectation' % label,
              diff_snapshots(want, after, 'the destination', ignore))
    errs = test_copy.compare_like_diff_r(src_snap, after, final, dst_before)
    fail_list('%s: diff -r of source and destination' % label, errs)
    test_copy.check_no_tmp(dst)
    no_duplicates(db)
    tmtest.check_all_stats(db)
    st = tmtest.status_json(db)
    got = {'src.failed': st['src']['failed'], 'dst.failed': st['dst']['failed'],
           'src.pending': st['src']['pending'], 'dst.pending': st['dst']['pending'],
           'copy.failed': st['copy']['failed'], 'copy.pending': st['copy']['pending']}
    expect_eq('%s: status --json failures and pending work' % label,
              {k: 0 for k in got}, got)
    rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
    errs = []
    for p, cs in final.items():
        r = rows.get(p)
        if r is None:
            errs.append('%r: no source row' % p)
        elif r['copy_status'] != cs:
            errs.append('%r: copy_status %r, expected %r (error %r)'
                        % (p, r['copy_status'], cs, r['error']))
    extra = set(rows) - set(final)
    if extra:
        errs.append('source rows for nodes that do not exist: %r' % sorted(extra)[:5])
    fail_list('%s: source rows' % label, errs)
    # the rows against the independent expectation of a discovery of the
    # readable trees (ids are not in BFS order after a retry: not compared)
    errs = []
    for side in ('src', 'dst'):
        got = {r['path']: r for r in tmtest.read_nodes(db, side + '_nodes')}
        want = exp[side]
        for p in sorted(set(got) ^ set(want)):
            errs.append('%s %r: %s' % (side, p, 'not recorded' if p in want
                                       else 'recorded, but no such node'))
        fields = ('type', 'size', 'mtime', 'mode', 'depth', 'traversal_status', 'conflict')
        if side == 'dst':
            fields = ('type', 'size', 'depth', 'traversal_status', 'conflict')
        for p in sorted(set(got) & set(want)):
            for f in fields:
                if got[p][f] != want[p][f]:
                    errs.append('%s %r: %s %r, expected %r' % (side, p, f, got[p][f],
                                                              want[p][f]))
    fail_list('%s: rows against the expectation' % label, errs)


def run_unreadable_source(R, U, base, twin):
    label = 'unreadable source folder%s' % (', with a destination twin' if twin
                                            else ', missing on the destination')
    top = os.path.join(base, 'unr-twin' if twin else 'unr')
    src, dst = common_pair(top, twin)
    exp = expect.expected(src, dst)           # what a discovery sees when all is readable
    src_snap, dst_before = snapshot(src), snapshot(dst)
    dbdir = os.path.join(top, 'db')
    os.mkdir(dbdir)
    U.give(dst, dbdir)
    db = os.path.join(dbdir, 'state.db')
    locked = os.path.join(src, b'locked')
    ctx = {}

    def check_discover_copy():
        os.chmod(locked, 0)
        try:
            cp = U.run(['discover', '--db', db, '--quiet', src, dst])
            expect_rc(cp, 3, 'discover with an unreadable source folder')
            st = tmtest.status_json(db)
            expect_eq('src.failed after discover', 1, st['src']['failed'])
            cp = U.run(['copy', '--db', db, '--yes', '--quiet'])
            expect_rc(cp, 2, 'copy without --force')
            cp = U.run(['copy', '--db', db, '--yes', '--force'])
            # partial: the folder that could not be listed is left out
            expect_rc(cp, 3, 'copy --yes --force')
            ctx['copied'] = True
            after = snapshot(dst)
            # everything outside the locked folder is there
            errs = []
            for p, n in src_snap.items():
                if p == b'/' or p == b'/locked' or p.startswith(b'/locked/'):
                    continue
                d = after.get(p)
                if d != n and not (d and n.type == 'file' and d._replace(mode=n.mode) == n
                                   and exp['src'][p]['copy_status'] == 'already_existed'):
                    errs.append('%r: %s, source %s' % (p, fmt_node(d), fmt_node(n)))
            fail_list('the nodes outside the unreadable folder after copy --force', errs)
            no_duplicates(db)
            tmtest.check_all_stats(db)
            d = after.get(b'/locked')
            print('     after copy --force: destination /locked is %s' % fmt_node(d))
        finally:
            os.chmod(locked, 0o755)
    R.check('%s: discover exits 3, copy needs --force, copy --force exits 3 and copies '
            'the rest' % label, check_discover_copy)
    if 'copied' not in ctx:
        return

    def check_retry():
        cp = U.run(['retry', '--db', db])
        if cp.returncode != 0:
            after = snapshot(dst)
            fail('retry after the folder was made readable: expected exit 0, got %s\n'
                 '    task_errors: %r\n    destination /locked: %s' % (
                     tmtest.show(cp), task_errors(db)[-8:], fmt_node(after.get(b'/locked'))))
        ctx['retried'] = True
    R.check('%s: retry exits 0 once the folder is readable' % label, check_retry)

    def check_verify():
        if twin:
            # discovery saw the source folder with mode 0 (unreadable) and
            # its destination twin with 0755: a conflict attrs, which the
            # copy settles by setting the folder's attributes (successful)
            exp['src'][b'/locked'].update(conflict='attrs', copy_status='pending')
            exp['dst'][b'/locked'].update(conflict='attrs')
        if 'retried' not in ctx:
            # a second retry, to see whether the rest is right
            cp = U.run(['retry', '--db', db, '--quiet'])
            print('     (the first retry failed; a second retry exits %d)' % cp.returncode)
        cp = U.run(['verify', '--db', db])
        expect_rc(cp, 0, 'verify')
        cp = U.run(['verify', '--db', db, '--checksum', '--quiet'])
        expect_rc(cp, 0, 'verify --checksum')
        expect_eq('phase', 'verified', phase(db))
        final_checks(db, src, dst, exp, src_snap, dst_before, label)
    R.check('%s: verify exits 0; the destination equals the source; no duplicate rows; '
            'stats agree with the rows' % label, check_verify)


def run_failed_copies(R, U, base):
    label = 'failed copies'
    top = os.fsencode(os.path.join(base, 'failcopy'))
    src, dst = os.path.join(top, b'src'), os.path.join(top, b'dst')
    S, D = treegen.TreeBuilder(src), treegen.TreeBuilder(dst)
    t = treegen.T0 + 210000 * SEC
    S.file(b'w/new.txt', data=b'new', mtime=t + 1)
    S.file(b'w/sub/deep.txt', data=b'deep', mtime=t + 2)
    S.symlink(b'w/link', b'new.txt', mtime=t + 3)
    S.file(b'w/conf.txt', data=b'source version', mtime=t + 4)
    D.file(b'w/conf.txt', data=b'destination version', mtime=t + 4 - SEC)
    D.file(b'w/dst_only.txt', data=b'only here', mtime=t + 5)
    S.file(b'fine/a.txt', data=b'a', mtime=t + 6)
    S.file(b'r555/ok.txt', data=b'readable', mtime=t + 7)
    S.file(b'r555/secret.txt', data=b'readable by root only', mtime=t + 8, mode=0o600)
    S.finish(root_mtime=t + 100)
    D.finish(root_mtime=t + 101)
    r555 = os.path.join(src, b'r555')
    st = os.lstat(r555)
    os.chmod(r555, 0o555)
    os.utime(r555, ns=(st.st_mtime_ns, st.st_mtime_ns))
    exp = expect.expected(src, dst)
    src_snap, dst_before = snapshot(src), snapshot(dst)
    dbdir = os.path.join(top, b'db')
    os.mkdir(dbdir)
    U.give(dst, dbdir)
    w = os.path.join(dst, b'w')
    secret = os.path.join(r555, b'secret.txt')
    if U.root:
        os.chown(w, 0, 0)        # not the user's: it may not write into it
    else:
        os.chmod(w, 0o555)
        os.chmod(secret, 0)
    db = os.path.join(dbdir, b'state.db')
    ctx = {}
    failing = [b'/w/new.txt', b'/w/sub', b'/w/sub/deep.txt', b'/w/link', b'/w/conf.txt',
               b'/r555/secret.txt']

    def check_copy():
        cp = U.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        cp = U.run(['copy', '--db', db, '--yes'])
        expect_rc(cp, 3, 'copy with unwritable/unreadable nodes')
        cs = test_copy.db_copy_status(db)
        expect_eq('copy_status of the nodes that cannot be copied',
                  ['failed'] * len(failing), [cs.get(p) for p in failing])
        errs = [(p, m) for ph, p, m in task_errors(db, 'copy')]
        for p in (b'/w/new.txt', b'/r555/secret.txt'):
            if not any(x == p and 'permission denied' in m.lower() for x, m in errs):
                fail('no "permission denied" task error for %r: %r' % (p, errs))
        after = snapshot(dst)
        expect_eq('the destination folder it may not write into', dst_before[b'/w'],
                  after[b'/w'])
        expect_eq('its conflicting file, intact', dst_before[b'/w/conf.txt'],
                  after.get(b'/w/conf.txt'))
        expect_eq('/r555 on the destination (created, mode set last)',
                  src_snap[b'/r555'], after.get(b'/r555'))
        no_duplicates(db)
        tmtest.check_all_stats(db)
        test_copy.check_no_tmp(dst)
        st = tmtest.status_json(db)
        expect_eq('copy.failed', len(failing), st['copy']['failed'])
        ctx['copied'] = True
    R.check('%s: copy exits 3, the nodes it may not write or read failed ("permission '
            'denied"), the rest copied' % label, check_copy)
    if 'copied' not in ctx:
        return

    def check_retry():
        U.give(w, secret)         # fixed: the user owns them now (modes unchanged)
        if not U.root:
            os.chmod(w, 0o755)
            os.chmod(secret, 0o600)
        cp = U.run(['retry', '--db', db])
        if cp.returncode != 0:
            fail('retry: expected exit 0, got %s\n    task_errors: %r'
                 % (tmtest.show(cp), task_errors(db)[-8:]))
        cp = U.run(['verify', '--db', db, '--checksum'])
        expect_rc(cp, 0, 'verify --checksum after retry')
        # the folder's mode and mtime: set by the retry (it belongs to the
        # user now)
        final_checks(db, src, dst, exp, src_snap, dst_before, label)
        cp = U.run(['retry', '--db', db, '--quiet'])
        print('     a retry with nothing left to retry exits %d' % cp.returncode)
        if cp.returncode not in (0, 2):
            fail('a retry with nothing to retry: ' + tmtest.show(cp))
        no_duplicates(db)
        tmtest.check_all_stats(db)
    R.check('%s: once fixed, retry exits 0 and redoes them (also into the 0555 folder '
            'the copy created); verify --checksum exits 0; the destination equals the '
            'source' % label, check_retry)


if __name__ == '__main__':
    main()
