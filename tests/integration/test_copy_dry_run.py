#!/usr/bin/env python3
"""Integration test of `treemig copy --dry-run` and `review --list copied`
(issue 20).

A local pair holds each case the copy handles: a missing file and folder
(create), files that differ in size, in mtime and newer on the
destination (replace, with the reason), a file that differs only in its
mode (set-attrs), a type clash (skipped: not listed) and a file already
there (not listed). `copy --dry-run` must print exactly those lines in
the format of `review --list`, and change nothing: the destination's tree
(names, types, sizes, modes, mtimes, inodes, contents) and the state file's
bytes are compared before and after. Then the real copy runs and
`review --list copied` says what it did, which must be the plan.

Run:  python3 tests/integration/test_copy_dry_run.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

T0 = 1600000000


def write(path, data, mtime, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def snapshot(top):
    """Everything the copy could change below top (the root included)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [''] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            h = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, 'rb') as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            snap[os.path.relpath(p, top)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                             st.st_ino, h)
    return snap


def file_hash(p):
    with open(p, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def lines(cp):
    return sorted(cp.stdout.decode('utf-8', 'replace').splitlines())


def make_pair(base):
    src = os.path.join(base, 'src')
    dst = os.path.join(base, 'dst')
    write(os.path.join(src, 'new', 'n1'), b'n1', T0)
    write(os.path.join(src, 'top'), b'abc', T0)
    write(os.path.join(src, 'same'), b'same', T0)
    write(os.path.join(dst, 'same'), b'same', T0)
    write(os.path.join(src, 'sz'), b'12345', T0)
    write(os.path.join(dst, 'sz'), b'1', T0)
    write(os.path.join(src, 'mt'), b'mt', T0 + 100)
    write(os.path.join(dst, 'mt'), b'MT', T0)
    write(os.path.join(src, 'nw'), b'nw', T0)
    write(os.path.join(dst, 'nw'), b'NW', T0 + 100)
    write(os.path.join(src, 'md'), b'md', T0, 0o644)
    write(os.path.join(dst, 'md'), b'md', T0, 0o600)
    write(os.path.join(src, 'clash'), b'file', T0)
    os.makedirs(os.path.join(dst, 'clash'))
    return src, dst


PLAN = sorted([
    'create\tfolder\t0\t/new',
    'create\tfile\t2\t/new/n1',
    'create\tfile\t3\t/top',
    'replace\tfile\t5\t/sz\tsize',
    'replace\tfile\t2\t/mt\tmtime',
    'replace\tfile\t2\t/nw\tdst_newer',
    'set-attrs\tfile\t2\t/md\tattrs',
])


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy_dry_run')
    base = tempfile.mkdtemp(prefix='treemig-dryrun-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    src, dst = make_pair(base)
    db = os.path.join(base, 's.db')
    ctx = {}

    def check_plan():
        expect_rc(tmtest.run(['discover', '--db', db, '--quiet', src, dst]), 0,
                  'discover')
        before, db_before = snapshot(dst), file_hash(db)
        cp = tmtest.run(['copy', '--db', db, '--dry-run'])
        expect_eq('the destination after copy --dry-run (names, modes, sizes, '
                  'mtimes, inodes, contents)', before, snapshot(dst))
        expect_eq('the state file after copy --dry-run (its bytes)', db_before,
                  file_hash(db))
        expect_rc(cp, 0, 'copy --dry-run')
        expect_eq('the plan of copy --dry-run', PLAN, lines(cp))
        err = cp.stderr.decode()
        if 'would create 3, replace 3 and set the attributes of 1 nodes (14 B' not in err:
            fail('the dry run summary: %r' % err)
        expect_eq('phase after copy --dry-run', 'discovered',
                  tmtest.migration(db)['phase'])
        cp = tmtest.run(['copy', '--db', db, '--dry-run', '--no-overwrite'])
        expect_rc(cp, 0, 'copy --dry-run --no-overwrite')
        expect_eq('the plan with --no-overwrite',
                  [ln for ln in PLAN if ln.startswith('create')], lines(cp))
        expect_eq('the destination after copy --dry-run --no-overwrite', before,
                  snapshot(dst))
        ctx['planned'] = True
    R.check('copy --dry-run prints create/replace/set-attrs as review --list and '
            'changes neither the destination nor the state file', check_plan)

    def check_refused():
        cp = tmtest.run(['verify', '--db', db, '--dry-run'])
        expect_rc(cp, 2, 'verify --dry-run')
        if b"unrecognized option '--dry-run'" not in cp.stderr:
            fail('verify --dry-run: %s' % tmtest.show(cp))
        cp = tmtest.run(['copy', '--db', db, '--dry-run=yes'])
        expect_rc(cp, 2, 'copy --dry-run=yes')
        cp = tmtest.run(['copy', '--db', os.path.join(base, 'none.db'), '--dry-run'])
        expect_rc(cp, 2, 'copy --dry-run without a state file')
        if os.path.exists(os.path.join(base, 'none.db')):
            fail('copy --dry-run made a state file')
        # a discovery that is not complete (its phase set so in a copy of
        # the state file): the plan would be partial
        db2 = os.path.join(base, 'part.db')
        shutil.copyfile(db, db2)
        con = sqlite3.connect(db2)
        con.execute("UPDATE migration SET value = 'discovering' WHERE key = 'phase'")
        con.commit()
        con.close()
        cp = tmtest.run(['copy', '--db', db2, '--dry-run'])
        expect_rc(cp, 2, 'copy --dry-run before discovery is complete')
        if b'complete discovery' not in cp.stderr:
            fail('copy --dry-run during discovery: %s' % tmtest.show(cp))
    R.check('--dry-run refused by verify, with a value, without a state file',
            check_refused)

    def check_copied():
        if 'planned' not in ctx:
            raise tmtest.Skip('the plan check did not pass')
        expect_rc(tmtest.run(['copy', '--db', db, '--quiet', '--yes']), 0, 'copy')
        cp = tmtest.run(['review', '--db', db, '--list', 'copied'])
        expect_rc(cp, 0, 'review --list copied')
        want = sorted(ln.replace('create\t', 'copied\t', 1)
                        .replace('replace\t', 'copied\t', 1)
                        .replace('set-attrs\t', 'copied\t', 1)
                        .rsplit('\t', 1)[0] + '\t' +
                      {'create': 'created', 'replace': 'replaced',
                       'set-attrs': 'attrs'}[ln.split('\t', 1)[0]]
                      if ln.count('\t') == 4 else
                      ln.replace('create\t', 'copied\t', 1) + '\tcreated'
                      for ln in PLAN)
        expect_eq('review --list copied after the copy', want, lines(cp))
        cp = tmtest.run(['copy', '--db', db, '--dry-run'])
        expect_rc(cp, 0, 'copy --dry-run after the copy')
        expect_eq('the plan once copied', [], lines(cp))
        cp = tmtest.run(['review', '--db', db, '--list', 'create'])
        expect_rc(cp, 2, 'review --list create (a plan kind, not a review kind)')
    R.check('review --list copied says what the copy did: the plan, with '
            'created/replaced/attrs', check_copied)


if __name__ == '__main__':
    main()
