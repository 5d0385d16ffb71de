#!/usr/bin/env python3
"""Integration test of `treemig review`, `treemig exclude` and `treemig
unexclude` (docs/review.md).

After a discovery of generated tree pairs (treegen.py), checks that the
summary says what `status --json` says, that `review --list` of each kind
gives exactly the items expect.py computes from the trees (independently of
treemig), in the plain format (escapes undone) and in JSON Lines, that
--path keeps a subtree and nothing else, that the review_* views agree, and
that exclude/unexclude change exactly the rows of the subtrees, keep the
stats tables exact, restore every row byte for byte, and are refused when
they must be (copy started, discovery exclusions, phase, lock, bad
patterns). Failures of listings come from the simulated storage (`deny=`),
so they are real failures whatever the user running the test.

Run:  python3 tests/integration/test_review.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import fcntl
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import expect    # noqa: E402
import tmtest    # noqa: E402
import treegen   # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

KINDS = ('missing', 'conflict', 'extra', 'failed', 'excluded', 'skipped')


# --------------------------------------------------------------------------
# reading the output

def unescape(s):
    """Undoes the escapes of the plain listing (docs/review.md) on bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != 0x5c:
            out.append(c)
            i += 1
            continue
        n = s[i + 1:i + 2]
        if n in (b'\\', b't', b'n', b'r'):
            out += {b'\\': b'\\', b't': b'\t', b'n': b'\n', b'r': b'\r'}[n]
            i += 2
        elif n == b'x':
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif n == b'u':
            out += chr(int(s[i + 2:i + 6], 16)).encode('utf-8')
            i += 6
        else:
            fail('bad escape in %r at %d' % (s, i))
    return bytes(out)


def json_form(p):
    """The JSON string treemig must write for the bytes p: UTF-8 as is, each
    byte that is not UTF-8 as the code point of its value (\\u00XX)."""
    s = p.decode('utf-8', 'surrogateescape')
    return ''.join(chr(ord(ch) - 0xdc00) if 0xdc80 <= ord(ch) <= 0xdcff else ch
                   for ch in s)


def plain_items(out):
    """Parses a plain listing: list of (kind, type, size, path, reason)."""
    items = []
    if out and not out.endswith(b'\n'):
        fail('plain listing does not end with a newline: %r' % out[-200:])
    for line in out.split(b'\n')[:-1] if out else []:
        f = line.split(b'\t')
        if len(f) not in (4, 5) and not (len(f) == 9 and f[0] in (b'conflict', b'attrs')):
            fail('plain line has %d fields: %r' % (len(f), line))
        for ch in line:
            if ch < 0x20 and ch != 0x09:
                fail('plain line holds a control byte: %r' % line)
        try:
            f[2].decode('ascii')
            size = int(f[2])
        except ValueError:
            fail('plain line size is not a number: %r' % line)
        items.append((f[0].decode(), f[1].decode(), size, unescape(f[3]),
                      unescape(f[4]).decode('utf-8', 'replace') if len(f) >= 5 else None))
    return items


def json_items(out):
    """Parses JSON Lines: list of dicts with 'pathb' (the path's bytes)."""
    items = []
    for line in out.split(b'\n'):
        if not line:
            continue
        try:
            o = json.loads(line)
        except ValueError as e:
            fail('a JSON line does not parse (%s): %r' % (e, line))
        for k, t in (('path', str), ('type', str), ('size', int), ('mtime', int),
                     ('state', str), ('side', str)):
            if not isinstance(o.get(k), t):
                fail('JSON line: %s missing or not %s: %r' % (k, t.__name__, line))
        if 'reason' not in o or not (o['reason'] is None or isinstance(o['reason'], str)):
            fail('JSON line: reason missing or not a string/null: %r' % line)
        if 'path_hex' in o:
            o['pathb'] = bytes.fromhex(o['path_hex'])
            try:
                o['pathb'].decode('utf-8')
                fail('path_hex given for a UTF-8 path: %r' % line)
            except UnicodeDecodeError:
                pass
        else:
            o['pathb'] = o['path'].encode('utf-8')
        expect_eq('JSON path of %r' % o['pathb'], json_form(o['pathb']), o['path'])
        items.append(o)
    return items


def review_list(db, kind, path=None, json_out=False, rc=0):
    args = ['review', '--db', db, '--list', kind]
    if path is not None:
        args += ['--path', path]
    if json_out:
        args.append('--json')
    cp = tmtest.run(args)
    expect_rc(cp, rc, 'review %s' % ' '.join(map(repr, args[1:])))
    return cp.stdout


def listing(db, kind, path=None):
    """Both formats of a listing, checked against each other; returns the
    set of (kind, side, type, size, path) and {(kind, side, path): reason}."""
    plain = plain_items(review_list(db, kind, path))
    js = json_items(review_list(db, kind, path, json_out=True))
    expect_eq('plain and JSON listings of %s have the same length' % kind,
              len(plain), len(js))
    items, reasons = set(), {}
    for p, j in zip(plain, js):
        k, t, size, path_b, reason = p
        expect_eq('plain vs JSON line', (j['state'], j['type'], j['size'], j['pathb']),
                  (k, t, size, path_b))
        if kind != 'all':
            expect_eq('kind of a line of --list %s' % kind, kind, k)
        key = (k, j['side'], t, size, path_b)
        if key in items and not (k == 'failed'):
            fail('listed twice: %r' % (key,))
        items.add(key)
        reasons[(k, j['side'], path_b)] = j['reason']
        if j['side'] == 'dst' and k == 'failed':
            if not (reason or '').startswith('destination'):
                fail('plain reason of a destination failure: %r' % reason)
        elif (reason or None) != (j['reason'] or None) and j['reason'] is not None:
            if reason != j['reason']:
                fail('plain reason %r vs JSON %r' % (reason, j['reason']))
    return items, reasons


def expected_items(rows_src, rows_dst, excluded_by_review=()):
    """From node rows (expect.py rows or tmtest.read_nodes rows): the set of
    (kind, side, type, size, path) and the reasons of conflicts/excluded."""
    items, reasons = set(), {}
    for p, r in rows_src.items():
        if r['depth'] == 0:
            continue
        key = (r['type'], r['size'], p)
        if r['copy_status'] == 'pending' and r['conflict'] is None:
            items.add(('missing', 'src') + key)
        if r['conflict'] is not None:
            items.add(('conflict', 'src') + key)
            reasons[('conflict', 'src', p)] = r['conflict']
        if r['traversal_status'] == 'failed' or r['copy_status'] == 'failed':
            items.add(('failed', 'src') + key)
        if r['traversal_status'] == 'excluded':
            items.add(('excluded', 'src') + key)
            reasons[('excluded', 'src', p)] = ('review' if p in excluded_by_review
                                               else 'discover')
        if r['copy_status'] == 'skipped':
            items.add(('skipped', 'src') + key)
            err = r.get('error')
            reasons[('skipped', 'src', p)] = (
                err.decode('utf-8', 'replace') if isinstance(err, bytes) else err) or \
                r['conflict'] or ('special file' if r['type'] == 'other' else None)
    for p, r in rows_dst.items():
        if r['depth'] == 0:
            continue
        key = (r['type'], r['size'], p)
        if r['traversal_status'] == 'not_on_src':
            items.add(('extra', 'dst') + key)
        if r['traversal_status'] == 'failed':
            items.add(('failed', 'dst') + key)
    return items, reasons


def compare_items(what, expected, actual):
    if expected != actual:
        miss = sorted(expected - actual, key=repr)[:10]
        extra = sorted(actual - expected, key=repr)[:10]
        fail('%s: %d expected, %d listed\n    not listed: %r\n    unexpected: %r'
             % (what, len(expected), len(actual), miss, extra))


def by_path(rows):
    return {r['path']: r for r in rows}


def summary(db):
    cp = tmtest.run(['review', '--db', db])
    expect_rc(cp, 0, 'review')
    return cp.stdout.decode('utf-8', 'replace')


def parse_summary(text):
    """The numbers of the summary, by line label."""
    got = {}
    types = {}
    for line in text.split('\n'):
        m = re.match(r'^(to copy|  missing|  differing|  attributes|already there|'
                     r'conflicts|skipped|destination only|failed|excluded)\s+(\d+)(.*)$',
                     line)
        if not m:
            continue
        label, n, rest = m.group(1).strip(), int(m.group(2)), m.group(3)
        got[label] = n
        t = {}
        for c, name in re.findall(r'(\d+) (files?|folders?|symlinks?|other)\b', rest):
            t[name.rstrip('s') if name != 'other' else name] = int(c)
        types[label] = t
        b = re.search(r', (\d+) bytes \(', rest)
        if b:
            got[label + ' bytes'] = int(b.group(1))
        if label == 'conflicts':
            got['conflict kinds'] = {k: int(c) for c, k in
                                     re.findall(r'(\d+) (size|mtime|dst_newer|type|attrs)\b',
                                                rest)}
        if label == 'failed':
            f = re.match(r': (\d+) source and (\d+) destination folders not listed, '
                         r'(\d+) copies failed', rest)
            if not f:
                fail('failed line: %r' % line)
            got['failed parts'] = tuple(int(x) for x in f.groups())
    for k in ('to copy', 'missing', 'differing', 'already there', 'conflicts', 'skipped',
              'destination only', 'failed', 'excluded'):
        if k not in got:
            fail('the summary has no line %r:\n%s' % (k, text))
    return got, types


def check_summary_vs_status(db, src_rows=None):
    """The summary's numbers against status --json (and, given the source
    rows, the type breakdown and conflict kinds against the rows)."""
    st = tmtest.status_json(db)
    got, types = parse_summary(summary(db))
    c, s, d = st['copy'], st['src'], st['dst']
    expect_eq('to copy', c['pending'], got['to copy'])
    expect_eq('to copy bytes', c['bytes_pending'], got['to copy bytes'])
    # (the attributes line is there only when there are some)
    expect_eq('missing + differing + attributes', got['to copy'],
              got['missing'] + got['differing'] + got.get('attributes', 0))
    expect_eq('already there', c['already_existed'], got['already there'])
    expect_eq('conflicts', c['conflicts'], got['conflicts'])
    expect_eq('skipped', c['skipped'], got['skipped'])
    expect_eq('destination only', d['not_on_src'], got['destination only'])
    expect_eq('failed parts', (s['failed'], d['failed'], c['failed']), got['failed parts'])
    expect_eq('failed', s['failed'] + d['failed'] + c['failed'], got['failed'])
    expect_eq('excluded', s['excluded'], got['excluded'])
    if src_rows is not None:
        rows = [r for r in src_rows if r['depth'] > 0]
        kinds = {}
        for r in rows:
            if r['conflict'] is not None:
                kinds[r['conflict']] = kinds.get(r['conflict'], 0) + 1
        expect_eq('conflicts by kind', kinds, got['conflict kinds'])
        want = {}
        for r in rows:
            if r['copy_status'] == 'pending':
                want[r['type']] = want.get(r['type'], 0) + 1
        expect_eq('to copy by type', want, types['to copy'])
        missing = sum(1 for r in rows if r['copy_status'] == 'pending' and r['conflict'] is None)
        expect_eq('missing', missing, got['missing'])
        attrs = sum(1 for r in rows if r['copy_status'] == 'pending' and
                    r['conflict'] == 'attrs')
        expect_eq('attributes', attrs, got.get('attributes', 0))
    return st


def dump_nodes(db):
    return (tmtest.table_dump(db, 'src_nodes'), tmtest.table_dump(db, 'dst_nodes'))


def dump_stats(db):
    return {t: tmtest.read_stats(db, t) for t in ('src_stats', 'copy_stats', 'dst_stats')}


def rw(db):
    conn = sqlite3.connect(os.fsdecode(db), timeout=10)
    conn.text_factory = bytes
    return conn


def under(p, prefix):
    return p == prefix or p.startswith(prefix.rstrip(b'/') + b'/')


def apply_exclusion(before_src, before_dst, roots):
    """What exclude must do to the rows (docs/review.md): every row below a
    root that is not excluded yet becomes excluded (source: traversal and
    copy 'excluded', conflict and error NULL; destination: traversal
    'excluded', conflict and error NULL), the destination side by path."""
    src = {p: dict(r) for p, r in before_src.items()}
    dst = {p: dict(r) for p, r in before_dst.items()}

    def subtree(rows, root):
        # pruned at rows excluded already (their subtrees are excluded)
        out, stack = [], [root]
        children = {}
        for p in rows:
            if p != b'/':
                children.setdefault(p.rsplit(b'/', 1)[0] or b'/', []).append(p)
        while stack:
            p = stack.pop()
            if p not in rows or (p != root and rows[p]['traversal_status'] == 'excluded'):
                continue
            out.append(p)
            stack.extend(children.get(p, ()))
        return out

    changed = 0
    for root in roots:
        if src[root]['traversal_status'] == 'excluded':
            continue
        for p in subtree(src, root):
            src[p].update(traversal_status='excluded', copy_status='excluded',
                          conflict=None, error=None)
            changed += 1
        if root in dst and dst[root]['traversal_status'] != 'excluded':
            for p in subtree(dst, root):
                dst[p].update(traversal_status='excluded', conflict=None, error=None)
    return src, dst, changed


def compare_rows(what, expected, actual):
    errs = []
    for p in sorted(set(expected) | set(actual)):
        e, a = expected.get(p), actual.get(p)
        if e != a:
            diff = {k: (e.get(k), a.get(k)) for k in set(e or {}) | set(a or {})
                    if (e or {}).get(k) != (a or {}).get(k)} if e and a else (e, a)
            errs.append('%r: %r' % (p, diff))
    if errs:
        fail('%s: %d rows differ:\n    %s' % (what, len(errs), '\n    '.join(errs[:20])))


# --------------------------------------------------------------------------

def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_review')
    base = tempfile.mkdtemp(prefix='treemig-review-', dir='/tmp')
    try:
        run_pair(R, base)
        run_exclude_pair(R, base)
        run_sim_failures(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def run_pair(R, base):
    src, dst = treegen.build_pair(os.path.join(base, 'trees'), big_count=3000)
    exp = expect.expected(src, dst)
    db = os.path.join(base, 'pair.db')
    cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
    if cp.returncode != 0:
        R.check('discover the pair', expect_rc, cp, 0)
        return
    st = {}

    def check_discovery_as_expected():
        # the ground the rest stands on: the rows are the expected ones
        src_rows = tmtest.read_nodes(db, 'src_nodes')
        tmtest.compare_nodes('src', exp['src'], src_rows)
        tmtest.compare_nodes('dst', exp['dst'], tmtest.read_nodes(db, 'dst_nodes'), src_rows)
    R.check('discovery recorded the expected rows', check_discovery_as_expected)

    def check_summary():
        st['status'] = check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
        # and the expectation's own numbers
        e = exp['status']
        expect_eq('to copy (expectation)', e['copy']['pending'], st['status']['copy']['pending'])
    R.check('summary numbers equal status --json and the rows', check_summary)

    def check_summary_folders():
        text = summary(db)
        m = re.search(r'\nfolders with the most to copy directly inside[^\n]*\n[^\n]*\n'
                      r'((?:  [^\n]*\n)+)', text)
        if not m:
            fail('no folder list in the summary:\n' + text)
        lines = m.group(1).rstrip('\n').split('\n')
        # the expectation: pending rows by parent folder (but the conflicts
        # attrs: nothing of them is copied)
        agg = {}
        for p, r in exp['src'].items():
            if r['depth'] > 0 and r['copy_status'] == 'pending' and \
                    r['conflict'] != 'attrs':
                parent = p.rsplit(b'/', 1)[0] or b'/'
                a = agg.setdefault(parent, [0, 0])
                a[0] += 1
                a[1] += r['size'] if r['type'] == 'file' else 0
        items = {}
        for line in lines:
            f = re.match(r'^\s+\S+ \S+\s+(\d+)  (.*?)(  \(new folder\))?$', line)
            if not f:
                fail('folder line: %r' % line)
            items[unescape(f.group(2).encode())] = int(f.group(1))
        top5_items = sorted(agg, key=lambda p: (-agg[p][0], -agg[p][1]))[:5]
        top5_bytes = sorted(agg, key=lambda p: (-agg[p][1], -agg[p][0]))[:5]
        for p in top5_items:
            if agg[p][0] != agg[top5_items[-1]][0] and p not in items:
                fail('folder %r (%d items) not in the summary:\n%s' % (p, agg[p][0], text))
        for p in top5_bytes:
            if agg[p][1] != agg[top5_bytes[-1]][1] and p not in items:
                fail('folder %r (%d bytes) not in the summary:\n%s' % (p, agg[p][1], text))
        for p, n in items.items():
            if b'...' in p:  # a long path, shortened in the middle
                head, tail = p.split(b'...', 1)
                full = [k for k in agg if k.startswith(head) and k.endswith(tail)]
                if len(full) != 1:
                    fail('shortened path %r matches %r' % (p, full))
                p = full[0]
            if p not in agg:
                fail('summary names %r, which holds nothing to copy' % p)
            expect_eq('items to copy in %r' % p, agg[p][0], n)
        expect_eq('big folder items', 1500, items.get(b'/big'))
    R.check('summary lists the folders with the most to copy', check_summary_folders)

    want, want_reasons = expected_items(exp['src'], exp['dst'])

    for kind in KINDS:
        def check_kind(kind=kind):
            items, reasons = listing(db, kind)
            compare_items('--list %s' % kind, {w for w in want if w[0] == kind}, items)
            for k, v in want_reasons.items():
                if k[0] == kind:
                    expect_eq('reason of %r' % (k,), v, reasons.get(k))
        R.check('--list %s equals the expectation (plain and JSON)' % kind, check_kind)

    def check_attrs_kind():
        items, reasons = listing(db, 'attrs')
        wanted = {('attrs',) + w[1:] for w in want if w[0] == 'conflict' and
                  want_reasons[('conflict', 'src', w[4])] == 'attrs'}
        if not wanted:
            fail('the pair has no conflict attrs to list')
        compare_items('--list attrs', wanted, items)
        expect_eq('reasons of --list attrs', {'attrs'}, set(reasons.values()))
    R.check('--list attrs: the conflicts attrs alone (not in all)', check_attrs_kind)

    def check_all():
        items, _ = listing(db, 'all')
        compare_items('--list all', want, items)
        expect_eq('some of each kind listed', {'missing', 'conflict', 'extra', 'skipped'},
                  {i[0] for i in items})
        # the order: kind by kind, each in id (discovery) order
        kinds = [i[0] for i in plain_items(review_list(db, 'all'))]
        expect_eq('kinds in blocks', sorted(kinds, key=KINDS.index), kinds)
    R.check('--list all is the union, each line naming its kind', check_all)

    def check_escapes():
        out = review_list(db, 'missing')
        for needle in (b'/new\\nline\n', b'/bad\\xfe dir/x\\x80y\n',
                       b'/edge/only_src_back\\\\slash\n'):
            if needle not in out:
                fail('plain listing lacks %r' % needle)
        js = review_list(db, 'missing', json_out=True)
        lines = [json.loads(x) for x in js.split(b'\n') if x]
        bad = [o for o in lines if o['path'].startswith('/bad\u00fe dir')]
        expect_eq('non-UTF-8 paths in JSON', ['/bad\u00fe dir', '/bad\u00fe dir/x\u0080y'],
                  sorted(o['path'] for o in bad))
        expect_eq('path_hex', [b'/bad\xfe dir', b'/bad\xfe dir/x\x80y'],
                  sorted(bytes.fromhex(o['path_hex']) for o in bad))
    R.check('unsafe bytes are escaped (plain) and JSON stays valid', check_escapes)

    def check_prefix():
        all_items, _ = listing(db, 'all')
        for prefix, norm in ((b'/edge/meta*', b'/edge/meta*'), (b'/missing_tree', None),
                             (b'/missing_tree/', b'/missing_tree'),
                             (b'missing_tree', b'/missing_tree'),
                             (b'/changes', None), (b'/clash', None), (b'/nested/l1', None),
                             (b'/bad\xfe dir', None), (b'/dir\nwith newline', None),
                             (b'/only_dst_dir', None), (b'/big', None)):
            norm = norm or prefix
            items, _ = listing(db, 'all', prefix)
            compare_items('--list all --path %r' % prefix,
                          {i for i in all_items if under(i[4], norm)}, items)
        # '/edge/meta' exists on neither side: nothing, and no error
        expect_eq('--path of a missing path', b'', review_list(db, 'all', b'/edge/meta'))
        items, _ = listing(db, 'missing', b'/edge/meta*')
        expect_eq('meta* subtree', {b'/edge/meta*', b'/edge/meta*/child'},
                  {i[4] for i in items})
        items, _ = listing(db, 'all', b'/')
        compare_items('--path /', all_items, items)
    R.check('--path keeps a path and its subtree only', check_prefix)

    def check_views():
        conn = tmtest.connect(db)
        try:
            rows = conn.execute('SELECT kind, side, type, size, path, reason FROM '
                                'review_items').fetchall()
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'view'")}
            summ = conn.execute('SELECT what, status, type, count, bytes FROM '
                                'review_summary').fetchall()
            folders = conn.execute('SELECT path, items, bytes FROM review_folders '
                                   'ORDER BY items DESC LIMIT 1').fetchone()
        finally:
            conn.close()
        for v in ('review_missing', 'review_conflicts', 'review_extra', 'review_failed',
                  'review_excluded', 'review_skipped', 'review_items', 'review_folders', 'review_summary'):
            if v.encode() not in names:
                fail('no view %s' % v)
        got = {(k.decode(), s.decode(), t.decode(), size, p) for k, s, t, size, p, _ in rows}
        compare_items('review_items', want, got)
        st = tmtest.status_json(db)
        copy_pending = sum(r[3] for r in summ if r[0] == b'copy' and r[1] == b'pending')
        expect_eq('review_summary copy pending', st['copy']['pending'], copy_pending)
        expect_eq('review_folders top', (b'/big', 1500), folders[:2])
    R.check('the review_* views give the same items', check_views)

    run_exclusions(R, base, db, exp)
    run_old_state_file(R, base, db)
    run_usage(R, base, db)


def run_exclusions(R, base, db, exp):
    before_nodes = dump_nodes(db)
    before_stats = dump_stats(db)
    before_src = by_path(tmtest.read_nodes(db, 'src_nodes'))
    before_dst = by_path(tmtest.read_nodes(db, 'dst_nodes'))
    roots = [b'/changes', b'/clash', b'/missing_tree']

    def check_exclude():
        cp = tmtest.run(['exclude', '--db', db] + roots)
        expect_rc(cp, 0, 'exclude')
        want_src, want_dst, changed = apply_exclusion(before_src, before_dst, roots)
        if b'%d source items excluded' % changed not in cp.stdout:
            fail('exclude output does not say %d items: %r' % (changed, cp.stdout))
        compare_rows('src_nodes after exclude', want_src,
                     by_path(tmtest.read_nodes(db, 'src_nodes')))
        compare_rows('dst_nodes after exclude', want_dst,
                     by_path(tmtest.read_nodes(db, 'dst_nodes')))
        tmtest.check_all_stats(db)
        st = check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
        expect_eq('status src.excluded',
                  sum(1 for r in want_src.values() if r['depth'] > 0
                      and r['traversal_status'] == 'excluded'), st['src']['excluded'])
        # the listings follow
        want, reasons = expected_items(want_src, want_dst,
                                       {p for p in want_src if any(under(p, r) for r in roots)})
        for kind in KINDS:
            items, got_reasons = listing(db, kind)
            compare_items('--list %s after exclude' % kind,
                          {w for w in want if w[0] == kind}, items)
            for k, v in reasons.items():
                if k[0] == kind:
                    expect_eq('reason of %r' % (k,), v, got_reasons.get(k))
        m = tmtest.migration(db)
        expect_eq('review_excludes setting', '\n'.join(r.decode() for r in roots),
                  m.get('review_excludes'))
    R.check('exclude: subtrees excluded, both sides, stats exact', check_exclude)

    def check_exclude_again():
        state = dump_nodes(db)
        cp = tmtest.run(['exclude', '--db', db, '/changes', '/changes/size.txt'])
        expect_rc(cp, 0, 'exclude of what is excluded')
        if b'nothing changed' not in cp.stdout:
            fail('no "nothing changed": %r' % cp.stdout)
        expect_eq('rows unchanged', state, dump_nodes(db))
    R.check('exclude of excluded items changes nothing', check_exclude_again)

    def check_unexclude_inner_refused():
        state = dump_nodes(db)
        cp = tmtest.run(['unexclude', '--db', db, '/changes/size.txt'])
        expect_rc(cp, 2, 'unexclude inside an excluded folder')
        if b"'/changes'" not in cp.stderr:
            fail('the message does not name /changes: %r' % cp.stderr)
        expect_eq('rows unchanged', state, dump_nodes(db))
    R.check('unexclude inside an excluded folder is refused', check_unexclude_inner_refused)

    def check_unexclude():
        cp = tmtest.run(['unexclude', '--db', db] + roots)
        expect_rc(cp, 0, 'unexclude')
        expect_eq('nodes restored byte for byte', before_nodes, dump_nodes(db))
        expect_eq('stats restored', before_stats, dump_stats(db))
        tmtest.check_all_stats(db)
        conn = tmtest.connect(db)
        try:
            left = conn.execute('SELECT (SELECT count(*) FROM excluded_prev), '
                                '(SELECT count(*) FROM exclusions)').fetchone()
        finally:
            conn.close()
        expect_eq('bookkeeping emptied', (0, 0), left)
        expect_eq('review_excludes setting', '', tmtest.migration(db).get('review_excludes'))
    R.check('unexclude restores every row and stat exactly', check_unexclude)

    def check_nested():
        # /nested/l1 first, then /nested: unexclude /nested keeps /nested/l1
        # excluded (its own exclusion); then /nested/l1 can go too
        for args in (['/nested/l1/l2'], ['/nested']):
            expect_rc(tmtest.run(['exclude', '--db', db] + args), 0, 'exclude %r' % args)
        tmtest.check_all_stats(db)
        expect_rc(tmtest.run(['unexclude', '--db', db, '/nested/l1/l2']), 2,
                  'unexclude below an excluded folder')
        expect_rc(tmtest.run(['unexclude', '--db', db, '/nested']), 0, 'unexclude /nested')
        rows = by_path(tmtest.read_nodes(db, 'src_nodes'))
        expect_eq('/nested/l1 included', 'successful', rows[b'/nested/l1']['traversal_status'])
        expect_eq('/nested/l1/l2 still excluded', 'excluded',
                  rows[b'/nested/l1/l2']['traversal_status'])
        expect_eq('/nested/l1/l2/l3 still excluded', 'excluded',
                  rows[b'/nested/l1/l2/l3']['traversal_status'])
        tmtest.check_all_stats(db)
        expect_rc(tmtest.run(['unexclude', '--db', db, '/nested/l1/l2']), 0,
                  'unexclude /nested/l1/l2')
        expect_eq('nodes restored', before_nodes, dump_nodes(db))
        expect_eq('stats restored', before_stats, dump_stats(db))
    R.check('nested exclusions undo one at a time', check_nested)

    def check_glob():
        cp = tmtest.run(['exclude', '--db', db, '*.txt', '/edge/only_src_*'])
        expect_rc(cp, 0, 'exclude globs')
        roots = sorted((p for p, r in before_src.items() if r['depth'] > 0 and (
            expect.excluded(p, p.rsplit(b'/', 1)[1], ['*.txt', '/edge/only_src_*']))),
            key=lambda p: p.count(b'/'))
        want_src, want_dst, _ = apply_exclusion(before_src, before_dst, roots)
        compare_rows('src_nodes after glob exclude', want_src,
                     by_path(tmtest.read_nodes(db, 'src_nodes')))
        compare_rows('dst_nodes after glob exclude', want_dst,
                     by_path(tmtest.read_nodes(db, 'dst_nodes')))
        tmtest.check_all_stats(db)
        check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
        expect_rc(tmtest.run(['unexclude', '--db', db, '/edge/only_src_*', '*.txt']), 0,
                  'unexclude globs')
        expect_eq('nodes restored', before_nodes, dump_nodes(db))
        expect_eq('stats restored', before_stats, dump_stats(db))
    R.check('globs as for --exclude (name and path), undone exactly', check_glob)

    def check_nested_glob():
        # 'l?' matches /nested/l1 and every lN below it: the topmost wins
        expect_rc(tmtest.run(['exclude', '--db', db, 'l?']), 0, 'exclude l?')
        want_src, want_dst, _ = apply_exclusion(before_src, before_dst, [b'/nested/l1'])
        compare_rows('src_nodes after exclude l?', want_src,
                     by_path(tmtest.read_nodes(db, 'src_nodes')))
        compare_rows('dst_nodes after exclude l?', want_dst,
                     by_path(tmtest.read_nodes(db, 'dst_nodes')))
        items, reasons = listing(db, 'excluded')
        conn = tmtest.connect(db)
        try:
            roots = conn.execute('SELECT path, pattern FROM exclusions').fetchall()
        finally:
            conn.close()
        expect_eq('one exclusion root', [(b'/nested/l1', b'l?')], roots)
        tmtest.check_all_stats(db)
        expect_rc(tmtest.run(['unexclude', '--db', db, 'l?']), 0, 'unexclude l?')
        expect_eq('nodes restored', before_nodes, dump_nodes(db))
        expect_eq('stats restored', before_stats, dump_stats(db))
    R.check('a glob matching nested items excludes the topmost', check_nested_glob)

    def check_copy_started():
        conn = rw(db)
        try:
            conn.execute("UPDATE src_nodes SET copy_status = 'successful' "
                         "WHERE path = '/changes/same.txt'")
            conn.commit()
            state = dump_nodes(db)
            cp = tmtest.run(['exclude', '--db', db, '/changes'])
            expect_rc(cp, 2, 'exclude where the copy started')
            if b'/changes/same.txt' not in cp.stderr:
                fail('the message does not name the copied item: %r' % cp.stderr)
            expect_eq('rows unchanged', state, dump_nodes(db))
            # elsewhere it is allowed
            expect_rc(tmtest.run(['exclude', '--db', db, '/clash']), 0, 'exclude elsewhere')
            expect_rc(tmtest.run(['unexclude', '--db', db, '/clash']), 0, 'unexclude')
            expect_eq('rows restored', state, dump_nodes(db))
        finally:
            conn.execute("UPDATE src_nodes SET copy_status = 'already_existed' "
                         "WHERE path = '/changes/same.txt'")
            conn.commit()
            conn.close()
        expect_eq('nodes as before', before_nodes, dump_nodes(db))
    R.check('exclude refused where the copy started', check_copy_started)

    def check_phase():
        conn = rw(db)
        try:
            for phase, from_, rc in (('discovering', '', 2), ('suspended', 'discovering', 2),
                                     ('copied', '', 2), ('suspended', 'copying', 0)):
                conn.execute("UPDATE migration SET value = ? WHERE key = 'phase'", (phase,))
                conn.execute("INSERT OR REPLACE INTO migration VALUES('suspended_from', ?)",
                             (from_,))
                conn.commit()
                cp = tmtest.run(['exclude', '--db', db, '/clash'])
                expect_rc(cp, rc, 'exclude in phase %s (from %r)' % (phase, from_))
                if rc == 0:
                    expect_rc(tmtest.run(['unexclude', '--db', db, '/clash']), 0, 'unexclude')
                elif b'phase' not in cp.stderr:
                    fail('the message does not name the phase: %r' % cp.stderr)
        finally:
            conn.execute("UPDATE migration SET value = 'discovered' WHERE key = 'phase'")
            conn.execute("UPDATE migration SET value = '' WHERE key = 'suspended_from'")
            conn.commit()
            conn.close()
        expect_eq('nodes as before', before_nodes, dump_nodes(db))
    R.check('exclude only between discovery and the end of the copy', check_phase)

    def check_lock():
        fd = os.open(db + '.lock', os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            cp = tmtest.run(['exclude', '--db', db, '/clash'])
            expect_rc(cp, 5, 'exclude while the state file is locked')
            expect_rc(tmtest.run(['review', '--db', db]), 0, 'review while locked')
        finally:
            os.close(fd)
        expect_eq('nodes as before', before_nodes, dump_nodes(db))
    R.check('exclude takes the lock; review does not need it', check_lock)

    def check_errors():
        for args, what in ((['/does/not/exist'], 'a path that is not there'),
                           (['nomatch*'], 'a glob that matches nothing'),
                           (['changes/size.txt'], 'a relative path'),
                           (['/'], 'the root'), ([''], 'an empty pattern')):
            cp = tmtest.run(['exclude', '--db', db] + args)
            expect_rc(cp, 2, 'exclude %s' % what)
            if not cp.stderr.startswith(b'treemig exclude: '):
                fail('message: %r' % cp.stderr)
        # all or nothing: one bad pattern, nothing excluded
        expect_rc(tmtest.run(['exclude', '--db', db, '/clash', '/nope']), 2, 'one bad')
        expect_eq('nodes as before', before_nodes, dump_nodes(db))
    R.check('bad patterns are refused, all or nothing', check_errors)


def run_old_state_file(R, base, db):
    def check_old():
        old = os.path.join(base, 'old.db')
        shutil.copy(db, old)
        conn = rw(old)
        try:
            for (name, t) in conn.execute("SELECT name, type FROM sqlite_master WHERE "
                                          "name LIKE 'review_%' OR name IN "
                                          "('exclusions', 'excluded_prev')").fetchall():
                if t == b'view':
                    conn.execute('DROP VIEW %s' % name.decode())
                elif t == b'table':
                    conn.execute('DROP TABLE %s' % name.decode())
            conn.commit()
        finally:
            conn.close()
        items, _ = listing(old, 'all')
        items2, _ = listing(db, 'all')
        expect_eq('listing of a state file without the views', items2, items)
        check_summary_vs_status(old)
        expect_rc(tmtest.run(['exclude', '--db', old, '/clash']), 0, 'exclude (old file)')
        tmtest.check_all_stats(old)
        items, _ = listing(old, 'excluded')
        if not items:
            fail('nothing excluded in the old state file')
        expect_rc(tmtest.run(['unexclude', '--db', old, '/clash']), 0, 'unexclude (old)')
        expect_eq('nodes', dump_nodes(db), dump_nodes(old))
    R.check('a state file without the review objects works', check_old)


def run_usage(R, base, db):
    def check_usage():
        for args in (['review', '--db', db, '--list', 'bogus'],
                     ['review', '--db', db, '--json'],
                     ['review', '--db', db, '--path', '/a'],
                     ['review', '--db', db, 'extra'],
                     ['review', '--db', db, '--top', 'x'],
                     ['exclude', '--db', db],
                     ['unexclude', '--db', db],
                     ['exclude', '--db', db, '--bogus', '/a']):
            cp = tmtest.run(args)
            expect_rc(cp, 2, ' '.join(args))
        # a prefix with '.' or '..' would silently match nothing: refused
        for p in ('/a/../b', '/./a', '/a/.', '..'):
            cp = tmtest.run(['review', '--db', db, '--list', 'all', '--path', p])
            expect_rc(cp, 2, 'review --path %s' % p)
            if b"'.' and '..' are not allowed" not in cp.stderr:
                fail('review --path %s: no reason given: %r' % (p, cp.stderr))
        cp = tmtest.run(['review', '--db', db, '--list', 'all', '--path', '/a..b/.c'])
        expect_rc(cp, 0, "review --path with dots inside names")
        for cmd in ('review', 'exclude', 'unexclude'):
            cp = tmtest.run([cmd, '--help'])
            expect_rc(cp, 0, '%s --help' % cmd)
            if not cp.stdout.startswith(b'usage: treemig ' + cmd.encode()):
                fail('%s --help: %r' % (cmd, cp.stdout[:100]))
        cp = tmtest.run(['review', '--db', os.path.join(base, 'none.db')])
        expect_rc(cp, 2, 'review without a state file')
        cp = tmtest.run(['exclude', '--db', os.path.join(base, 'none.db'), '/a'])
        expect_rc(cp, 2, 'exclude without a state file')
        if os.path.exists(os.path.join(base, 'none.db')):
            fail('exclude created a state file')
    R.check('usage errors and --help', check_usage)


def run_exclude_pair(R, base):
    src, dst = treegen.build_exclude_pair(os.path.join(base, 'ex'))
    globs = ['*.tmp', 'node_modules', '/docs/draft*']
    exp = expect.expected(src, dst, globs)
    db = os.path.join(base, 'ex.db')
    cp = tmtest.run(['discover', '--db', db, '--quiet'] +
                    [a for g in globs for a in ('--exclude', g)] + [src, dst])
    if cp.returncode != 0:
        R.check('discover the exclude pair', expect_rc, cp, 0)
        return
    want, reasons = expected_items(exp['src'], exp['dst'])
    before = dump_nodes(db)

    def check_discovery_excluded():
        items, got = listing(db, 'excluded')
        compare_items('--list excluded', {w for w in want if w[0] == 'excluded'}, items)
        expect_eq('reasons', {k: v for k, v in reasons.items() if k[0] == 'excluded'},
                  {k: v for k, v in got.items()})
        check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
    R.check('--list excluded lists discovery exclusions', check_discovery_excluded)

    def check_refused():
        for pat in ('node_modules', '/dir.tmp', '*.tmp'):
            cp = tmtest.run(['unexclude', '--db', db, pat])
            expect_rc(cp, 2, 'unexclude %s (excluded by discovery)' % pat)
            if b'discover' not in cp.stderr:
                fail('the message does not point at discovery: %r' % cp.stderr)
        expect_eq('rows unchanged', before, dump_nodes(db))
    R.check('discovery exclusions cannot be undone by unexclude', check_refused)

    def check_mixed():
        # /a holds a discovery exclusion (/a/deep.tmp): excluding /a leaves
        # it as it is, and unexclude /a brings back all the rest
        expect_rc(tmtest.run(['exclude', '--db', db, '/a', '/proj']), 0, 'exclude /a /proj')
        items, got = listing(db, 'excluded')
        expect_eq('discovery exclusion keeps its reason', 'discover',
                  got.get(('excluded', 'src', b'/a/deep.tmp')))
        expect_eq('review exclusion', 'review', got.get(('excluded', 'src', b'/a/b/skip/y')))
        expect_eq('excluded twice inside', 'discover',
                  got.get(('excluded', 'src', b'/proj/node_modules')))
        tmtest.check_all_stats(db)
        check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
        expect_rc(tmtest.run(['unexclude', '--db', db, '/proj', '/a']), 0, 'unexclude')
        expect_eq('rows restored', before, dump_nodes(db))
        tmtest.check_all_stats(db, exp)
    R.check('review and discovery exclusions together', check_mixed)

    def check_everything():
        expect_rc(tmtest.run(['exclude', '--db', db, '*']), 0, "exclude '*'")
        st = tmtest.status_json(db)
        s = st['src']
        expect_eq('everything excluded', s['folders'] + s['files'] + s['symlinks'] +
                  s['other'], s['excluded'])
        expect_eq('nothing to copy', 0, st['copy']['pending'])
        tmtest.check_all_stats(db)
        check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
        expect_rc(tmtest.run(['unexclude', '--db', db, '*']), 2,
                  "unexclude '*' (holds discovery exclusions)")
        expect_rc(tmtest.run(['unexclude', '--db', db, '/a', '/docs', '/keep.txt',
                              '/proj']), 0, 'unexclude the roots')
        expect_eq('rows restored', before, dump_nodes(db))
        tmtest.check_all_stats(db, exp)
    R.check("exclude '*' and back", check_everything)


def run_sim_failures(R, base):
    # real listing failures: the simulated storage denies /d1 on the source
    # and /d2 on the destination
    s = 'sim:seed=5,depth=4,root_folders=4,deny=/d1'
    d = 'sim:seed=5,depth=4,root_folders=4,world=dst,deny=/d2'
    db = os.path.join(base, 'sim.db')
    cp = tmtest.run(['discover', '--db', db, '--quiet', '--retries', '0', s, d])

    def check_failed():
        expect_rc(cp, 3, 'discover with denied folders')
        st = check_summary_vs_status(db, tmtest.read_nodes(db, 'src_nodes'))
        src_rows = by_path(tmtest.read_nodes(db, 'src_nodes'))
        dst_rows = by_path(tmtest.read_nodes(db, 'dst_nodes'))
        want, _ = expected_items(src_rows, dst_rows)
        items, reasons = listing(db, 'failed')
        compare_items('--list failed', {w for w in want if w[0] == 'failed'}, items)
        expect_eq('failed source items', st['src']['failed'],
                  sum(1 for i in items if i[1] == 'src'))
        expect_eq('failed destination items', st['dst']['failed'],
                  sum(1 for i in items if i[1] == 'dst'))
        if (b'/d1' not in {i[4] for i in items if i[1] == 'src'} or
                b'/d2' not in {i[4] for i in items if i[1] == 'dst'}):
            fail('the denied folders are not listed: %r' % sorted(items))
        for k, v in reasons.items():
            if not v:
                fail('failed item without a reason: %r' % (k,))
        for kind in KINDS:
            items, _ = listing(db, kind)
            compare_items('--list %s (sim)' % kind, {w for w in want if w[0] == kind}, items)
        # excluding a failed folder makes it excluded, and back
        state = dump_nodes(db)
        expect_rc(tmtest.run(['exclude', '--db', db, '/d1']), 0, 'exclude a failed folder')
        items, _ = listing(db, 'failed', '/d1')
        expect_eq('nothing failed under /d1 once excluded', set(), items)
        tmtest.check_all_stats(db)
        check_summary_vs_status(db)
        expect_rc(tmtest.run(['unexclude', '--db', db, '/d1']), 0, 'unexclude')
        expect_eq('rows restored (errors too)', state, dump_nodes(db))
    R.check('--list failed: real listing failures, with their reasons', check_failed)


if __name__ == '__main__':
    main()
