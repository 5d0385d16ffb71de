#!/usr/bin/env python3
"""Integration test of `treemig copy --log-file FILE` (issue 20): the
itemized log of a copy, one line per node (docs/logging.md).

A local pair holds a missing file (created), a file of another size
(replaced), one that differs only in its mode (attrs), a hard link
(created, then linked) and a file that changes after discovery (failed,
with the reason). The log must hold exactly those lines, in the escapes
of `review --list`, agree with `review --list copied` and `--list failed`,
be made 0600, be appended to by a later run, and never be written
through a symlink. Bad values are refused.

Run:  python3 tests/integration/test_copy_log_file.py
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

T0 = 1600000000


def write(path, data, mtime=T0, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def items(path):
    with open(path, 'rb') as f:
        text = f.read().decode('utf-8')
    return [ln for ln in text.splitlines() if not ln.startswith('#')], text


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy_log_file')
    base = tempfile.mkdtemp(prefix='treemig-itemlog-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    src = os.path.join(base, 'src')
    dst = os.path.join(base, 'dst')
    write(os.path.join(src, 'd', 'new'), b'new')
    write(os.path.join(src, 'tab\there'), b'tab')
    write(os.path.join(src, 'sz'), b'12345')
    write(os.path.join(dst, 'sz'), b'1')
    write(os.path.join(src, 'md'), b'md', mode=0o644)
    write(os.path.join(dst, 'md'), b'md', mode=0o600)
    write(os.path.join(src, 'h1'), b'hard')
    os.link(os.path.join(src, 'h1'), os.path.join(src, 'h2'))
    write(os.path.join(src, 'chg'), b'before')
    db = os.path.join(base, 's.db')
    log = os.path.join(base, 'items.log')
    expect_rc(tmtest.run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
    write(os.path.join(src, 'chg'), b'after, longer')   # changed since discovery

    def check_bad():
        for args, what in ((['copy', '--log-file', ''], 'an empty name'),
                           (['copy', '--log-file'], 'no value'),
                           (['verify', '--log-file', log], 'verify')):
            cp = tmtest.run(args + ['--db', db])
            expect_rc(cp, 2, '--log-file: %s' % what)
        # a symlink at the name: refused, its target untouched
        target = os.path.join(base, 'target')
        write(target, b'keep')
        link = os.path.join(base, 'link.log')
        os.symlink(target, link)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--log-file', link])
        expect_rc(cp, 1, 'copy --log-file through a symlink')
        if b'log file' not in cp.stderr:
            fail('the refusal does not name the log file: %s' % tmtest.show(cp))
        with open(target, 'rb') as f:
            expect_eq('the symlink target', b'keep', f.read())
        expect_eq('phase after a refused log file', 'discovered',
                  tmtest.migration(db)['phase'])
    R.check('--log-file: bad values and a symlink are refused, nothing written',
            check_bad)

    def check_log():
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--log-file', log])
        expect_rc(cp, 3, 'copy (one file changed since discovery)')
        got, text = items(log)
        if not text.startswith('# treemig copy '):
            fail('no header line: %r' % text[:100])
        expect_eq('mode of the log file', 0o600, stat.S_IMODE(os.stat(log).st_mode))
        failed = [ln for ln in got if ln.startswith('failed\t')]
        rest = sorted(ln for ln in got if not ln.startswith('failed\t'))
        expect_eq('the lines of the copy (failed aside)', sorted([
            'created\tfolder\t0\t/d',
            'created\tfile\t3\t/d/new',
            'created\tfile\t3\t/tab\\there',
            'replaced\tfile\t5\t/sz',
            'attrs\tfile\t2\t/md',
            'created\tfile\t4\t/h1',
            'linked\tfile\t4\t/h2',
        ]), rest)
        if len(failed) != 1 or not failed[0].startswith('failed\tfile\t6\t/chg\t') or \
                'changed since discovery' not in failed[0]:
            fail('the failed line: %r' % failed)
        # the same nodes as the state file says
        cp = tmtest.run(['review', '--db', db, '--list', 'copied'])
        copied = {ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()}
        expect_eq('paths of review --list copied', {ln.split('\t')[3] for ln in rest},
                  copied)
        cp = tmtest.run(['review', '--db', db, '--list', 'failed'])
        expect_eq('paths of review --list failed', {'/chg'},
                  {ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()})
        # retry copies the changed file in its new version: appended
        expect_rc(tmtest.run(['retry', '--db', db, '--quiet', '--log-file', log]), 0,
                  'retry --log-file')
        got2, text2 = items(log)
        if not text2.startswith(text) or text2.count('# treemig copy ') != 2:
            fail('retry does not append its run: %r' % text2[len(text):])
        expect_eq('the lines retry added', ['created\tfile\t13\t/chg'],
                  got2[len(got):])
    R.check('--log-file: one line per node, what it did and why it failed, in '
            'the escapes of review --list, 0600, appended to', check_log)


if __name__ == '__main__':
    main()
