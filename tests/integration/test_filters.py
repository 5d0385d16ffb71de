#!/usr/bin/env python3
"""Integration test of discovery's filters and comparison through the CLI
(docs/filters.md, docs/review.md): --include/--exclude (first match wins),
--exclude-from/--include-from, '**', trailing '/', 'dir/***', --min-size/
--max-size, --min-age/--max-age, --size-only, --checksum, --modify-window,
what review shows of them, the conflict rows with both sides and --reason,
exclude --list and --from, and the bad values of each (exit 2, no state
file left).

The oracle is rsync itself, run on the same trees: what `rsync -an
--include/--exclude` would transfer is what treemig must leave included;
the files `rsync -an --checksum` (or --size-only, --modify-window) would
send are what treemig must count as to replace. A destination seeded with
`cp -r` (mtimes not kept) is the case of the issue.

Run:  python3 tests/integration/test_filters.py
      (TREEMIG=/path/to/treemig to test another binary)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

RSYNC = shutil.which('rsync')


def write(path, data=b'x'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def make_tree(root):
    """A tree with names that tell the glob rules apart."""
    files = ['top.txt', 'top.c', 'a/f.txt', 'a/b/g.txt', 'a/b/c/h.txt', 'a/b/c/k.o',
             'x/a/b/i.txt', 'x/a/j.c', 'b/k', 'q/r/a', 'src/main.c', 'src/lib/u.c',
             'src/lib/u.o', 'src/build/out.o', 'logs/2024/app.log', 'logs/old.log',
             'cache/tmp/z.bin', 'deep/cache/y.bin', 'notcache/w', '#hash', 'sp ace/f.txt',
             'br[ack]et/f', 'keep/logs/l.log']
    for f in files:
        write(os.path.join(root, f), f.encode())
    os.makedirs(os.path.join(root, 'emptydir/inner'))


def rsync_set(src, args):
    """The root-relative paths rsync -an would transfer into an empty
    destination with args."""
    dst = tempfile.mkdtemp(prefix='tmf-rs-', dir='/tmp')
    try:
        cp = subprocess.run([RSYNC, '-an', '--out-format=%n'] + args +
                            [src + '/', dst + '/'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, check=True)
    finally:
        shutil.rmtree(dst)
    out = set()
    for line in cp.stdout.split(b'\n'):
        line = line.rstrip(b'/')
        if line and line != b'.':
            out.add(b'/' + line)
    return out


def discover(db, src, dst, args, rc=0):
    cp = tmtest.run(['discover', '-q', '--db', db] + args + [src, dst])
    expect_rc(cp, rc, 'discover %s' % ' '.join(args))
    return cp


def included(db):
    """The source paths that are not excluded (the root left out)."""
    conn = tmtest.connect(db)
    try:
        rows = conn.execute("SELECT path FROM src_nodes WHERE depth > 0 AND "
                            "copy_status <> 'excluded'").fetchall()
    finally:
        conn.close()
    return {r[0] for r in rows}


def pending_files(db):
    """{path: conflict} of the source files still to copy."""
    conn = tmtest.connect(db)
    try:
        rows = conn.execute("SELECT path, conflict FROM src_nodes WHERE type = "
                            "'file' AND copy_status = 'pending'").fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1].decode() if r[1] else None) for r in rows}


def rsync_sends(src, dst, args):
    """The files rsync -an with args would send from src to dst."""
    cp = subprocess.run([RSYNC, '-an', '--out-format=%n'] + args +
                        [src + '/', dst + '/'], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, check=True)
    return {b'/' + ln for ln in cp.stdout.split(b'\n')
            if ln and not ln.endswith(b'/') and ln != b'.'}


# Rule sets: each is checked against rsync on the same tree. They cover
# first-match-wins, '**' across folders (and its '**' + '/' at the start,
# which rsync lets match at the root too), '*' stopping at '/', anchored
# patterns, patterns with an inner '/' matched at the end of the path, a
# trailing '/' (folders only), 'dir/***', classes and escapes.
RULES = [
    ['--exclude', '*.o'],
    ['--exclude', '**/b'],
    ['--exclude', '/**/b'],
    ['--exclude', 'a/**'],
    ['--exclude', '/a/**'],
    ['--exclude', 'b/*.txt'],
    ['--exclude', 'a/*'],
    ['--exclude', '**.txt'],
    ['--exclude', 'a/**/g.txt'],
    ['--exclude', 'cache/'],
    ['--exclude', 'cache/***'],
    ['--exclude', '/src/**.o'],
    ['--exclude', '[ab]'],
    ['--exclude', 'br\\[ack\\]et'],
    ['--exclude', '\\#hash'],
    ['--exclude', 'sp ace'],
    ['--exclude', '*/a'],
    ['--exclude', 'r/a'],
    ['--include', '*/', '--include', '*.txt', '--exclude', '*'],
    ['--include', '/a/***', '--exclude', '*'],
    ['--include', 'keep/**', '--include', 'keep/', '--exclude', '*.log'],
    ['--exclude', '*.log', '--include', 'keep/**'],
    ['--include', 'u.o', '--exclude', '*.o'],
    ['--exclude', '*.o', '--include', 'u.o'],
    ['--include', '/src/', '--include', '/src/lib/', '--include', '*.c', '--exclude', '*'],
]


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_filters')
    if not RSYNC:
        # rsync is a test dependency (scripts/deps.sh): without it, the oracle
        # is missing, and the checks that need it are skipped, not passed
        R.skip('every check', 'rsync is not installed (scripts/deps.sh test)')
        R.finish()
    base = tempfile.mkdtemp(prefix='treemig-filters-', dir='/tmp')
    try:
        run_checks(R, base)
    finally:
        shutil.rmtree(base, True)
    R.finish()


def run_checks(R, base):
    src = os.path.join(base, 'src')
    empty = os.path.join(base, 'empty')
    os.makedirs(empty)
    make_tree(src)
    n = [0]

    def newdb():
        n[0] += 1
        return os.path.join(base, 'm%d.db' % n[0])

    def check_rules(args):
        db = newdb()
        discover(db, src, empty, args)
        expect_eq('included by treemig vs transferred by rsync %s' % args,
                  sorted(rsync_set(src, args)), sorted(included(db)))
    for args in RULES:
        R.check('rules agree with rsync: %s' % ' '.join(args), check_rules, args)

    def check_from_files():
        rules = os.path.join(base, 'rules.txt')
        with open(rules, 'w') as f:
            f.write('# a comment\n; another\n\n+ keep/\n+ keep/**\n- *.log\n*.o\n')
        inc = os.path.join(base, 'inc.txt')
        with open(inc, 'w') as f:
            f.write('*/\n*.c\n')
        args = ['--exclude-from', rules, '--include-from', inc, '--exclude', '*']
        db = newdb()
        discover(db, src, empty, args)
        expect_eq('--exclude-from/--include-from vs rsync',
                  sorted(rsync_set(src, args)), sorted(included(db)))
        # the rules are recorded in order and listed by exclude --list
        cp = tmtest.run(['exclude', '--db', db, '--list'])
        expect_rc(cp, 0, 'exclude --list')
        lines = [ln for ln in cp.stdout.decode().split('\n') if ln.startswith('#   ')]
        expect_eq('the recorded rules, in order',
                  ['#   + keep/', '#   + keep/**', '#   - *.log', '#   *.o',
                   '#   + */', '#   + *.c', '#   *'], lines)
    R.check('--exclude-from and --include-from: rules in order, as rsync',
            check_from_files)

    def check_size_filters():
        t = os.path.join(base, 'sizes')
        for name, size in (('zero', 0), ('k1', 1023), ('k2', 1024), ('k3', 1025),
                           ('m1', 1000 * 1000), ('m2', 1024 * 1024 + 1)):
            write(os.path.join(t, 'd', name), b'y' * size)
        for args in (['--min-size', '1K'], ['--max-size', '1K'],
                     ['--min-size', '1024', '--max-size', '1MB'],
                     ['--max-size', '1M'], ['--min-size', '1kb']):
            db = newdb()
            discover(db, t, empty, args)
            expect_eq('sizes %s vs rsync' % args, sorted(rsync_set(t, args)),
                      sorted(included(db)))
    R.check('--min-size/--max-size with units, as rsync', check_size_filters)

    def check_age_filters():
        t = os.path.join(base, 'ages')
        now = time.time()
        ages = {'new': 60, 'hour': 2 * 3600, 'day': 2 * 86400, 'old': 30 * 86400}
        for name, age in ages.items():
            p = os.path.join(t, name)
            write(p)
            os.utime(p, (now - age, now - age))
        os.utime(t, (now, now))
        for args, keep in ((['--max-age', '1d'], {'new', 'hour'}),
                           (['--min-age', '1h'], {'hour', 'day', 'old'}),
                           (['--min-age', '90m', '--max-age', '1w'], {'hour', 'day'}),
                           (['--max-age', '600'], {'new'})):
            db = newdb()
            discover(db, t, empty, args)
            expect_eq('ages %s' % args, sorted(b'/' + k.encode() for k in keep),
                      sorted(included(db)))
    R.check('--min-age/--max-age with units (files by mtime)', check_age_filters)

    def check_bad_values():
        bad = [['--exclude', 'a[b'], ['--include', 'x/***/y'], ['--exclude', '***'],
               ['--exclude', 'ab\\'], ['--exclude', ''], ['--include', '/'],
               ['--exclude-from', os.path.join(base, 'no-such-file')],
               ['--min-size', '1X'], ['--min-size', '-1'], ['--max-size', '0'],
               ['--max-size', '1.5M'], ['--max-age', '0'], ['--min-age', '3y'],
               ['--max-age', 'd'], ['--modify-window', '-1'],
               ['--modify-window', '86401'], ['--modify-window', 'x'],
               ['--size-only', '--checksum'],
               ['--min-size', '2M', '--max-size', '1M'],
               ['--min-age', '2d', '--max-age', '1d']]
        clear = os.path.join(base, 'clear.txt')
        with open(clear, 'w') as f:
            f.write('*.o\n!\n')
        bad.append(['--exclude-from', clear])
        for args in bad:
            db = newdb()
            cp = discover(db, src, empty, args, rc=2)
            err = cp.stderr.decode()
            if not err.startswith('treemig discover: ') or len(err) < 30:
                fail('no clear message for %s: %r' % (args, err))
            if os.path.exists(db):
                fail('a refused discover left a state file: %s' % args)
    R.check('bad filter and comparison values: exit 2, a message, no state file',
            check_bad_values)

    # ---------------------------------------------------------------- compare
    csrc = os.path.join(base, 'csrc')
    for i in range(12):
        write(os.path.join(csrc, 'd%d' % (i % 3), 'f%d' % i), b'content %d\n' % i * (i + 1))
    write(os.path.join(csrc, 'same-size'), b'AAAA')
    write(os.path.join(csrc, 'other-size'), b'AAAA')
    old = time.time() - 3 * 86400
    for dp, dn, fn in os.walk(csrc):
        for x in fn + dn:
            os.utime(os.path.join(dp, x), (old, old))
    cdst = os.path.join(base, 'cdst')
    subprocess.run(['cp', '-r', csrc, cdst], check=True)   # mtimes not kept
    with open(os.path.join(cdst, 'same-size'), 'wb') as f:
        f.write(b'BBBB')          # same size, other content
    with open(os.path.join(cdst, 'other-size'), 'wb') as f:
        f.write(b'AAAAA')

    def check_compare(args, rsync_args):
        db = newdb()
        discover(db, csrc, cdst, args)
        got = pending_files(db)
        expect_eq('files to replace with %s vs rsync %s' % (args, rsync_args),
                  sorted(rsync_sends(csrc, cdst, rsync_args)), sorted(got))
        return db, got

    def check_default():
        db, got = check_compare([], [])
        expect_eq('a cp -r copy is all dst_newer by default', 13,
                  sum(1 for v in got.values() if v == 'dst_newer'))
    R.check('default: a cp -r destination is all to replace (as rsync)', check_default)

    def check_size_only():
        db, got = check_compare(['--size-only'], ['--size-only'])
        expect_eq('--size-only: only the size differs', {b'/other-size': 'size'}, got)
        cp = tmtest.run(['review', '--db', db])
        if b'compare           size only' not in cp.stdout:
            fail('review does not show --size-only', actual=cp.stdout[:400])
    R.check('--size-only: 0 to replace where sizes match (as rsync --size-only)',
            check_size_only)

    def check_checksum():
        db, got = check_compare(['--checksum'], ['--checksum'])
        expect_eq('--checksum: content differs, or size',
                  {b'/same-size': 'content', b'/other-size': 'size'}, got)
        cp = tmtest.run(['review', '--db', db, '--list', 'conflict', '--reason',
                         'content', '--json'])
        expect_rc(cp, 0, 'review --list conflict --reason content')
        rows = [json.loads(ln) for ln in cp.stdout.split(b'\n') if ln]
        expect_eq('the content conflict, both sides',
                  [('/same-size', 4, 'content', {'type': 'file', 'size': 4})],
                  [(r['path'], r['size'], r['reason'],
                    {k: r['dst'][k] for k in ('type', 'size')}) for r in rows])
        st = os.stat(os.path.join(cdst, 'same-size'))
        expect_eq('the destination mtime in the row', st.st_mtime_ns, rows[0]['dst']['mtime'])
        cp = tmtest.run(['review', '--db', db])
        if b'--checksum' not in cp.stdout:
            fail('review does not show --checksum', actual=cp.stdout[:400])
        # recorded: given again differently on this state file, refused
        cp = tmtest.run(['discover', '--db', db, '--size-only'])
        expect_rc(cp, 2, 'discover --size-only on a --checksum migration')
        yaml = open(db + '.yaml').read()
        if 'compare: "checksum"' not in yaml:
            fail('the YAML file lacks the comparison', actual=yaml)
    R.check('--checksum: same size, other content is a conflict content (as rsync '
            '--checksum); recorded and shown', check_checksum)

    def check_window():
        wdst = os.path.join(base, 'wdst')
        subprocess.run(['cp', '-rp', csrc, wdst], check=True)   # mtimes kept
        for dp, dn, fn in os.walk(wdst):
            for x in fn:
                p = os.path.join(dp, x)
                st = os.stat(p)
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1500000000))
        with open(os.path.join(wdst, 'other-size'), 'wb') as f:
            f.write(b'AAAAA')
        os.utime(os.path.join(wdst, 'other-size'), (old + 1.5, old + 1.5))
        for args in ([], ['--modify-window', '1'], ['--modify-window', '2']):
            db = newdb()
            discover(db, csrc, wdst, args)
            got = pending_files(db)
            expect_eq('--modify-window %s vs rsync' % args,
                      sorted(rsync_sends(csrc, wdst, args)), sorted(got))
        expect_eq('--modify-window 2: only the size differs', {b'/other-size': 'size'},
                  got)
    R.check('--modify-window N: mtimes within N s are equal (as rsync)', check_window)

    def check_copy_verify():
        # what discovery found equal stays equal for verify; what differs
        # is replaced: afterwards every file has the source's content
        for args in (['--checksum'], ['--size-only'], ['--modify-window', '2']):
            d = os.path.join(base, 'cv%d' % n[0])
            subprocess.run(['cp', '-r' if args[0] != '--modify-window' else '-rp',
                            csrc, d], check=True)
            with open(os.path.join(d, 'other-size'), 'wb') as f:
                f.write(b'AAAAA')
            if args[0] == '--modify-window':
                p = os.path.join(d, 'd0', 'f0')
                st = os.stat(p)
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1000000000))
            else:
                with open(os.path.join(d, 'same-size'), 'wb') as f:
                    f.write(b'BBBB')
            db = newdb()
            discover(db, csrc, d, args)
            expect_rc(tmtest.run(['copy', '--db', db, '--yes', '-q']), 0, 'copy %s' % args)
            expect_rc(tmtest.run(['verify', '--db', db, '-q']), 0,
                      'verify after discover %s' % args)
            cp = tmtest.run(['verify', '--db', db, '--checksum', '-q'])
            if args[0] == '--size-only':
                # the file --size-only took as equal is not: verify --checksum
                # says so, and only it
                expect_rc(cp, 3, 'verify --checksum after discover --size-only')
                if b'/same-size: verify: content differs' not in cp.stderr:
                    fail('verify --checksum did not name /same-size', actual=cp.stderr)
            else:
                expect_rc(cp, 0, 'verify --checksum after discover %s' % args)
            for dp, dn, fn in os.walk(csrc):
                for x in fn:
                    a = os.path.join(dp, x)
                    b = os.path.join(d, os.path.relpath(a, csrc))
                    if x == 'same-size' and args[0] == '--size-only':
                        continue  # same size: --size-only keeps it, as rsync
                    if open(a, 'rb').read() != open(b, 'rb').read():
                        fail('%s differs after copy with %s' % (b, args))
            if args[0] == '--size-only' and open(os.path.join(d, 'same-size'),
                                                  'rb').read() != b'BBBB':
                fail('--size-only replaced a file of the same size')
    R.check('copy and verify after --checksum, --size-only, --modify-window: '
            'what was equal passes verify, what differed is replaced', check_copy_verify)

    def check_hash_reuse():
        # discover --checksum records the source's content hash of a file
        # found equal; verify --checksum then reads only the destination
        # while the source is as discovered (size, mtime), and reads the
        # source again once it is not
        d = os.path.join(base, 'hr')
        s2 = os.path.join(base, 'hrsrc')
        subprocess.run(['cp', '-rp', csrc, s2], check=True)
        subprocess.run(['cp', '-r', s2, d], check=True)
        db = newdb()
        discover(db, s2, d, ['--checksum'])
        conn = tmtest.connect(db)
        try:
            rows = conn.execute("SELECT path, hash FROM src_nodes WHERE type = 'file' "
                                "AND copy_status = 'already_existed'").fetchall()
        finally:
            conn.close()
        expect_eq('files found equal by content', 14, len(rows))
        if any(h is None for p, h in rows):
            fail('a file found equal by content has no hash', actual=rows)
        expect_rc(tmtest.run(['copy', '--db', db, '--yes', '-q']), 0, 'copy')
        f0 = os.path.join(s2, 'd0', 'f0')
        st = os.stat(f0)
        data = open(f0, 'rb').read()
        with open(f0, 'wb') as f:
            f.write(bytes(reversed(data)) if data != bytes(reversed(data)) else b'Z' * len(data))
        os.utime(f0, ns=(st.st_atime_ns, st.st_mtime_ns))
        cp = tmtest.run(['verify', '--db', db, '--checksum', '-q'])
        expect_rc(cp, 0, 'verify --checksum with the source as discovered (hash reused)')
        os.utime(f0, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
        cp = tmtest.run(['verify', '--db', db, '--checksum', '-q'])
        expect_rc(cp, 3, 'verify --checksum once the source changed')
        if b'/d0/f0: verify: content differs' not in cp.stderr:
            fail('verify --checksum did not read the changed source', actual=cp.stderr)
    R.check('--checksum records the hash; verify --checksum reuses it while the '
            'source is as discovered', check_hash_reuse)

    def check_conflict_rows():
        db, got = check_compare([], [])
        cp = tmtest.run(['review', '--db', db, '--list', 'conflict', '--reason', 'size'])
        expect_rc(cp, 0, 'review --list conflict --reason size')
        lines = [ln.split(b'\t') for ln in cp.stdout.split(b'\n') if ln]
        expect_eq('plain conflict rows of reason size: one, 9 fields',
                  [(b'conflict', b'file', b'4', b'/other-size', b'size', b'file', b'5')],
                  [tuple(f[:5]) + (f[6], f[7]) for f in lines])
        st = os.stat(os.path.join(cdst, 'other-size'))
        iso = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(st.st_mtime_ns // 10**9))
        expect_eq('the destination mtime (ISO 8601, ns)',
                  '%s.%09dZ' % (iso, st.st_mtime_ns % 10**9), lines[0][8].decode())
        cp = tmtest.run(['review', '--db', db, '--list', 'conflict', '--reason',
                         'dst_newer', '--json'])
        rows = [json.loads(ln) for ln in cp.stdout.split(b'\n') if ln]
        expect_eq('dst_newer rows (the 13 same-size files)', 13, len(rows))
        for r in rows:
            if r['dst']['mtime'] <= r['mtime'] or r['dst']['size'] != r['size']:
                fail('a dst_newer row without a newer destination', actual=r)
        cp = tmtest.run(['review', '--db', db, '--list', 'conflict', '--reason', 'size',
                         '--path', '/d0'])
        expect_eq('--reason size below /d0: none', b'', cp.stdout)
        cp = tmtest.run(['review', '--db', db, '--list', 'conflict', '--reason',
                         'dst_newer', '--path', '/d0', '--json'])
        expect_eq('--reason dst_newer below /d0',
                  ['/d0/f0', '/d0/f3', '/d0/f6', '/d0/f9'],
                  sorted(json.loads(ln)['path'] for ln in cp.stdout.split(b'\n') if ln))
        for args in (['--reason', 'bogus'], ['--reason', 'size'],
                     ['--list', 'missing', '--reason', 'size'],
                     ['--list', 'all', '--reason', 'mtime']):
            full = ['review', '--db', db] + args
            if args[0] == '--reason' and args[1] == 'bogus':
                full += ['--list', 'conflict']
            cp = tmtest.run(full)
            expect_rc(cp, 2, 'review %s' % args)
    R.check('conflict rows give both sides; --reason filters; bad reasons refused',
            check_conflict_rows)

    def check_export_import():
        a, b = newdb(), newdb()
        discover(a, src, empty, [])
        discover(b, src, empty, [])
        cp = tmtest.run(['exclude', '--db', a, '-q', '/logs', '*.o', '#hash'])
        expect_rc(cp, 0, 'exclude')
        cp = tmtest.run(['exclude', '--db', a, '--list'])
        expect_rc(cp, 0, 'exclude --list')
        listing = os.path.join(base, 'exported.txt')
        with open(listing, 'wb') as f:
            f.write(cp.stdout)
        cp = tmtest.run(['exclude', '--db', b, '--from', listing])
        expect_rc(cp, 0, 'exclude --from')
        expect_eq('the same exclusions in both state files', sorted(included(a)),
                  sorted(included(b)))
        if b'/#hash' in included(b) or b'/logs' in included(b):
            fail('exclude --from missed a pattern')
        # a file written by hand: comments, blank lines, a "- " rule
        c = newdb()
        discover(c, src, empty, [])
        hand = os.path.join(base, 'hand.txt')
        with open(hand, 'w') as f:
            f.write('# mine\n\n; old style\n- /logs\n*.o\n\\#hash\n')
        cp = tmtest.run(['exclude', '--db', c, '--from', hand])
        expect_rc(cp, 0, 'exclude --from a hand-written file')
        expect_eq('the hand-written file excludes as the patterns given',
                  sorted(included(a)), sorted(included(c)))
        bad = os.path.join(base, 'bad.txt')
        with open(bad, 'w') as f:
            f.write('+ keep\n')
        for args in (['--from', bad], ['--from', os.path.join(base, 'nope')],
                     ['--list', '/x']):
            cp = tmtest.run(['exclude', '--db', b] + args)
            expect_rc(cp, 2, 'exclude %s' % args)
    R.check('exclude --list exports, exclude --from imports into another state file',
            check_export_import)

    def check_sim_checksum():
        # a remote-like storage: both sides read through the adapter
        s = 'sim:seed=5,depth=3'
        d = 'sim:seed=5,depth=3,world=dst,keep=1,extra=0,csize=0,cmtime=0.3,ctype=0,cmode=0'
        cp = tmtest.run(['sim-stats', d])
        truth = json.loads(cp.stdout)
        expect_eq('the sim world has mtime conflicts', True,
                  truth['conflicts']['mtime'] + truth['conflicts']['dst_newer'] > 0)
        db = newdb()
        discover(db, s, d, [])
        expect_eq('without --checksum: the mtime conflicts of the ground truth',
                  truth['copy']['pending'], len(pending_files(db)))
        db = newdb()
        discover(db, s, d, ['--checksum', '--workers', '4'])
        expect_eq('with --checksum: twins share their content, nothing to copy', {},
                  pending_files(db))
    R.check('--checksum through the sim adapter (open_read, pool workers)',
            check_sim_checksum)

    def check_sftp_checksum():
        # an SFTP destination (OpenSSH's sshd on 127.0.0.1, a free port,
        # stopped by the with): its files are read through the adapter
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        '..', 'servers'))
        import sshd
        why = sshd.available()
        if why:
            raise tmtest.Skip(why)
        with sshd.Sshd() as srv:
            srv.write_known_hosts()
            served = srv.path('dst')
            subprocess.run(['cp', '-r', csrc, served], check=True)
            with open(os.path.join(served, 'same-size'), 'wb') as f:
                f.write(b'BBBB')
            with open(os.path.join(served, 'other-size'), 'wb') as f:
                f.write(b'AAAAA')
            srv.chown(served)
            db = newdb()
            discover(db, csrc, srv.url('/dst'),
                     ['--checksum', '--ssh-identity', srv.client_key,
                      '--ssh-known-hosts', srv.known_hosts])
            expect_eq('--checksum against SFTP: content differs, or size',
                      {b'/same-size': 'content', b'/other-size': 'size'},
                      pending_files(db))
    R.check('--checksum with an SFTP destination (sshd on 127.0.0.1)',
            check_sftp_checksum)

    def check_resume():
        # interrupted (SIGINT) then resumed with no option: the recorded
        # filters and comparison apply to what the resume discovers, and the
        # result is the one of an uninterrupted run
        s = 'sim:seed=11,depth=4,latency=30'
        d = 'sim:seed=11,depth=4,world=dst,keep=0.8,cmtime=0.3,csize=0.1,latency=30'
        args = ['--checksum', '--max-size', '40K', '--exclude', 'd1/', '--workers', '2']
        whole = newdb()
        discover(whole, s, d, args)
        db = newdb()
        p = subprocess.Popen([tmtest.TREEMIG, 'discover', '-q', '--db', db] + args + [s, d],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # SIGINT once discovery runs (its handler is set, its rounds
            # started: the YAML file says so), not while the process starts
            yaml = db + '.yaml'
            while p.poll() is None:
                try:
                    with open(yaml) as f:
                        if 'phase: "discovering"' in f.read():
                            break
                except FileNotFoundError:
                    pass
                time.sleep(0.05)
            time.sleep(0.3)
            p.send_signal(2)
            p.communicate(timeout=tmtest.TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if p.returncode != 4:
            raise tmtest.Skip('discover ended (exit %r) before the SIGINT' % p.returncode)
        cp = tmtest.run(['resume', '--config', db + '.yaml'])
        expect_rc(cp, 0, 'resume')
        expect_eq('the pending files after the resume, as uninterrupted',
                  pending_files(whole), pending_files(db))
        expect_eq('the included nodes after the resume, as uninterrupted',
                  sorted(included(whole)), sorted(included(db)))
        if not any(v == 'size' for v in pending_files(db).values()):
            fail('the sim world has no size conflict: the check says little')
    R.check('interrupted and resumed: the recorded filters and --checksum apply',
            check_resume)


if __name__ == '__main__':
    main()
