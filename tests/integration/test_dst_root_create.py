#!/usr/bin/env python3
"""Integration test: `treemig discover SRC DST` makes a local destination
root that does not exist when its parent folder does (issue 20), says so,
and otherwise makes nothing: not when the parent is missing, not inside the
source, not through a dangling symlink, and a root made for a migration
that is then refused is removed again.

Run:  python3 tests/integration/test_dst_root_create.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import os
import shutil
import stat
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402


def listing(top):
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), top))
    return sorted(out)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_dst_root_create')
    base = tempfile.mkdtemp(prefix='treemig-mkroot-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    src = os.path.join(base, 'src')
    os.makedirs(os.path.join(src, 'a'))
    with open(os.path.join(src, 'a', 'f'), 'w') as f:
        f.write('hello')

    def check_created():
        dst = os.path.join(base, 'out', 'dst')
        os.mkdir(os.path.join(base, 'out'))
        db = os.path.join(base, 'm.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover into a destination root that does not exist')
        if b'did not exist: created it' not in cp.stderr:
            fail('discover does not say that it made the root: %s' % tmtest.show(cp))
        st = os.lstat(dst)
        if not stat.S_ISDIR(st.st_mode):
            fail('the destination root is not a folder')
        expect_rc(tmtest.run(['copy', '--db', db, '--quiet', '--yes']), 0, 'copy')
        expect_rc(tmtest.run(['verify', '--db', db, '--quiet']), 0, 'verify')
        expect_eq('the destination after the copy', ['a', 'a/f'], listing(dst))
        # a second discover on the same state file makes nothing new
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        if b'created it' in cp.stderr:
            fail('a second discover says it made the root again')
    R.check('a missing destination root whose parent exists is made, said, and '
            'the migration runs', check_created)

    def check_not_created():
        before = listing(base)
        cases = [
            ('parent missing', os.path.join(base, 'nope', 'dst'), 'nor its parent'),
            ('inside the source', os.path.join(src, 'a', 'dst'),
             'would be inside the source root'),
        ]
        link = os.path.join(base, 'dangling')
        os.symlink(os.path.join(base, 'target'), link)
        before = listing(base)
        cases.append(('a dangling symlink', link, 'destination'))
        for label, dst, msg in cases:
            db = os.path.join(base, 'x.db')
            cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
            expect_rc(cp, 2, 'discover: %s' % label)
            if msg.encode() not in cp.stderr:
                fail('discover (%s) does not say %r: %s' % (label, msg, tmtest.show(cp)))
            if b'created it' in cp.stderr:
                fail('discover (%s) made the root: %s' % (label, tmtest.show(cp)))
            expect_eq('files below the test folder after discover (%s)' % label,
                      before, listing(base))
        # refused after it was made (the state file would be inside it):
        # the folder made goes again
        dst = os.path.join(base, 'dst2')
        cp = tmtest.run(['discover', '--db', os.path.join(dst, 's.db'), '--quiet',
                         src, dst])
        expect_rc(cp, 2, 'discover with the state file inside the new root')
        if b'removed' not in cp.stderr:
            fail('discover does not say it removed the root again: %s'
                 % tmtest.show(cp))
        expect_eq('files below the test folder after a refused discover', before,
                  listing(base))
    R.check('nothing is made: parent missing, inside the source, a dangling '
            'symlink, a refused migration (the root made is removed)',
            check_not_created)


if __name__ == '__main__':
    main()
