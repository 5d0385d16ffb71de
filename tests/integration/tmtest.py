"""Shared helpers of the treemig integration tests (stdlib only)."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import traceback

TREEMIG = os.environ.get('TREEMIG', '/work/main/build/treemig')
TIMEOUT = int(os.environ.get('TREEMIG_TIMEOUT', '120'))

NODE_TEXT_COLS = ('type', 'traversal_status', 'copy_status', 'conflict', 'error')


class CheckFailed(Exception):
    pass


class Void(CheckFailed):
    """Raised by a check whose precondition did not come about (a worker
    killed before it held any work, say): no verdict either way. Runner
    runs such a check again (see again_if_void)."""


class Skip(Exception):
    """Raised by a check that cannot run here; the reason is printed."""


def fail(msg, expected=None, actual=None):
    if expected is not None or actual is not None:
        msg = '%s\n    expected: %r\n    actual:   %r' % (msg, expected, actual)
    raise CheckFailed(msg)


def void(msg):
    raise Void(msg + ': the case is void')


def again_if_void(fn, tries=3):
    """fn(work, ...) run again in a fresh sub-folder of work while it ends
    void (timing on a loaded machine), at most tries times; the last void
    is a failure."""
    def run_case(work, *a, **kw):
        for i in range(tries):
            sub = tempfile.mkdtemp(prefix='%s.try%d.' % (fn.__name__, i), dir=work)
            os.chmod(sub, os.stat(work).st_mode & 0o7777)
            try:
                return fn(sub, *a, **kw)
            except Void as e:
                if i == tries - 1:
                    raise
                print('     void (%s): again in a fresh folder' % e)
                sys.stdout.flush()
    return run_case


def expect_eq(what, expected, actual):
    if expected != actual:
        fail(what, expected, actual)


SKIP_EXIT = 77   # ctest's SKIP_RETURN_CODE (tests/CMakeLists.txt)


class Runner:
    """Counts check functions; prints `N passed, M failed` at the end and
    exits 1 when a check failed, SKIP_EXIT (77: ctest shows "Skipped")
    when none failed but one or more were skipped, else 0. A skip is never
    a pass: the skipped checks and their reasons are listed again at the
    end (SKIPPED lines, which .ci/run collects)."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.skips = []

    def check(self, label, fn, *a, **kw):
        try:
            fn(*a, **kw)
        except Skip as e:
            self.skip(label, str(e))
        except CheckFailed as e:
            self.failed += 1
            print('FAIL %s: %s' % (label, e))
        except Exception:
            self.failed += 1
            print('FAIL %s: exception\n%s' % (label, traceback.format_exc()))
        else:
            self.passed += 1
            print('ok   %s' % label)
        sys.stdout.flush()

    def skip(self, label, reason):
        self.skipped += 1
        self.skips.append((label, reason))
        print('SKIP %s: %s' % (label, reason))

    def finish(self):
        for label, reason in self.skips:
            print('SKIPPED %s: %s: %s' % (self.name, label, reason))
        print('%d passed, %d failed, %d skipped' % (self.passed, self.failed, self.skipped))
        sys.stdout.flush()
        if self.failed:
            sys.exit(1)
        sys.exit(SKIP_EXIT if self.skipped else 0)


def require_binary():
    """Checks that the binary exists, then runs a private copy of it, so that
    a rebuild during the test run (make relinks the file in place) does not
    break the run halfway."""
    global TREEMIG
    if not (os.path.isfile(TREEMIG) and os.access(TREEMIG, os.X_OK)):
        print('treemig binary not found at %s (set TREEMIG or run make)' % TREEMIG)
        print('0 passed, 1 failed')
        sys.exit(1)
    import atexit
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix='treemig-bin-', dir='/tmp')
    copy = os.path.join(d, 'treemig')
    shutil.copy2(TREEMIG, copy)
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    print('testing %s (a copy of %s)' % (copy, TREEMIG))
    TREEMIG = copy


def run(args, cwd=None, timeout=None, env=None):
    """Runs treemig with args (str or bytes items); env: variables added to
    the environment (e.g. TREEMIG_FAULT_DST). Returns CompletedProcess with
    bytes stdout/stderr."""
    cmd = [os.fsencode(TREEMIG)] + [os.fsencode(a) for a in args]
    try:
        return subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, **env) if env else None,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout or TIMEOUT)
    except subprocess.TimeoutExpired as e:
        fail('treemig timed out after %ss: %r' % (e.timeout, cmd))


def show(cp):
    out = cp.stdout.decode('utf-8', 'replace')
    err = cp.stderr.decode('utf-8', 'replace')
    return 'exit %d\n    stdout: %s\n    stderr: %s' % (
        cp.returncode, out[-2000:].strip(), err[-2000:].strip())


def expect_rc(cp, rc, what='exit code'):
    if cp.returncode != rc:
        fail('%s: expected %d, got %s' % (what, rc, show(cp)))


def status_json(db):
    cp = run(['status', '--db', db, '--json'])
    if cp.returncode != 0:
        fail('status --json failed: ' + show(cp))
    try:
        return json.loads(cp.stdout)
    except ValueError as e:
        fail('status --json output is not JSON (%s): %r' % (e, cp.stdout[:2000]))


_noted = set()


def compare_status(expected, actual, optional=None):
    """Every documented field must be equal. optional: {key path tuple:
    value} of undocumented fields that must have that value when present;
    other undocumented fields are failures."""
    diffs = []
    optional = optional or {}
    # The observer's fields depend on timing: check their shape here, then
    # compare the rest exactly.
    actual = dict(actual)
    queues = actual.pop('queues', [])
    eta = actual.pop('eta_seconds', None)
    if not isinstance(queues, list) or any(
            not isinstance(q, dict) or q.get('queue') not in ('src', 'dst', 'copy', 'verify')
            or not isinstance(q.get('done'), int) for q in queues):
        diffs.append('status.queues: not a list of queue snapshots: %r' % (queues,))
    if eta is not None and not isinstance(eta, int):
        diffs.append('status.eta_seconds: expected null or a number, actual %r' % (eta,))

    def walk(e, a, path):
        if isinstance(e, dict):
            if not isinstance(a, dict):
                diffs.append('%s: expected an object, got %r' % (path, a))
                return
            for k in e:
                if k not in a:
                    diffs.append('%s.%s: missing (expected %r)' % (path, k, e[k]))
                else:
                    walk(e[k], a[k], path + '.' + k)
            for k in a:
                if k not in e:
                    kp = tuple(path.split('.')[1:]) + (k,)
                    if kp in optional:
                        if a[k] != optional[kp]:
                            diffs.append('%s.%s (undocumented): expected %r, actual %r'
                                         % (path, k, optional[kp], a[k]))
                        elif kp not in _noted:
                            _noted.add(kp)
                            print('     note: status --json has the undocumented key %s.%s'
                                  % (path, k))
                    else:
                        diffs.append('%s.%s: unexpected key (value %r)' % (path, k, a[k]))
        else:
            if e != a or type(e) != type(a):
                diffs.append('%s: expected %r, actual %r' % (path, e, a))
    walk(expected, actual, 'status')
    if diffs:
        fail('status --json differs:\n    ' + '\n    '.join(diffs) +
             '\n    expected: %s\n    actual:   %s' % (json.dumps(expected), json.dumps(actual)))


def connect(db):
    conn = sqlite3.connect('file:%s?mode=ro' % os.fsdecode(db), uri=True)
    conn.text_factory = bytes
    return conn


def _dec(v):
    return v.decode('ascii') if isinstance(v, bytes) else v


def read_nodes(db, table):
    """Returns list of dict rows of src_nodes/dst_nodes (path/name bytes,
    enumerations decoded to str)."""
    conn = connect(db)
    try:
        cur = conn.execute('SELECT * FROM %s ORDER BY id' % table)
        cols = [d[0] for d in cur.description]
        rows = []
        for t in cur.fetchall():
            r = dict(zip(cols, t))
            for c in NODE_TEXT_COLS:
                if c in r and c != 'error':
                    r[c] = _dec(r[c])
            rows.append(r)
        return rows
    finally:
        conn.close()


def table_dump(db, table):
    conn = connect(db)
    try:
        return sorted(conn.execute('SELECT * FROM %s' % table).fetchall(),
                      key=repr)
    finally:
        conn.close()


def migration(db):
    conn = connect(db)
    try:
        return {_dec(k): (v.decode('utf-8', 'surrogateescape') if isinstance(v, bytes) else v)
                for k, v in conn.execute('SELECT key, value FROM migration')}
    finally:
        conn.close()


def node_row_count(db):
    """Number of rows in src_nodes+dst_nodes; None when the file or the tables
    do not exist."""
    if not os.path.exists(db):
        return None
    try:
        conn = connect(db)
    except sqlite3.Error:
        return None
    try:
        n = 0
        for t in ('src_nodes', 'dst_nodes'):
            try:
                n += conn.execute('SELECT count(*) FROM %s' % t).fetchone()[0]
            except sqlite3.Error:
                pass
        return n
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _dirname(p):
    if p == b'/':
        return None
    d = p.rsplit(b'/', 1)[0]
    return d or b'/'


def _basename(p):
    return b'' if p == b'/' else p.rsplit(b'/', 1)[1]


FIELDS = ('type', 'size', 'mtime', 'mode', 'depth', 'traversal_status', 'conflict')


def compare_nodes(side, expected, rows, src_rows=None, max_report=25):
    """expected: {path: row} from expect.py; rows: read_nodes() of the table.
    src_rows: the actual source rows (for the destination's src_id)."""
    errs = []
    by_path = {}
    by_id = {}
    for r in rows:
        if r['path'] in by_path:
            errs.append('duplicate path %r (ids %s and %s)' %
                        (r['path'], by_path[r['path']]['id'], r['id']))
        by_path[r['path']] = r
        by_id[r['id']] = r
    missing = sorted(set(expected) - set(by_path))
    extra = sorted(set(by_path) - set(expected))
    if missing:
        errs.append('%d expected paths not recorded, e.g. %r' % (len(missing), missing[:10]))
    if extra:
        errs.append('%d unexpected paths recorded, e.g. %r' % (
            len(extra), [(p, by_path[p]['type'], by_path[p]['traversal_status'])
                         for p in extra[:10]]))
    src_by_id = {r['id']: r for r in (src_rows or [])}
    fields = FIELDS + (('copy_status',) if side == 'src' else ())
    for r in rows:
        p = r['path']
        # structure
        if r['name'] != _basename(p):
            errs.append('%r: name %r is not the last component' % (p, r['name']))
        parent = by_id.get(r['parent_id']) if r['parent_id'] is not None else None
        if p == b'/':
            if r['parent_id'] is not None:
                errs.append('root has parent_id %r' % r['parent_id'])
        elif parent is None:
            errs.append('%r: parent_id %r is not a row' % (p, r['parent_id']))
        else:
            if parent['path'] != _dirname(p):
                errs.append('%r: parent_id points at %r' % (p, parent['path']))
            if not parent['id'] < r['id']:
                errs.append('%r: parent id %d not below id %d (insertion order)' %
                            (p, parent['id'], r['id']))
        ts = r['traversal_status']
        if ts == 'failed':
            if not r['error']:
                errs.append('%r: failed without an error message' % p)
        elif (ts in ('successful', 'not_on_src', 'excluded') and r['error'] is not None
              and r.get('copy_status') not in ('skipped', 'failed')):  # the copy's reason
            errs.append('%r: %s with error %r' % (p, ts, r['error']))
        if (r['type'] == 'folder' and ts == 'successful' and r['conflict'] is None
                and (r['attempts'] or 0) < 1):
            errs.append('%r: listed folder with attempts %r' % (p, r['attempts']))
        e = expected.get(p)
        if e is None:
            continue
        for f in fields:
            if r[f] != e[f]:
                errs.append('%r: %s expected %r, actual %r' % (p, f, e[f], r[f]))
        if side == 'dst':
            if e['src_path'] is None:
                if r['src_id'] is not None:
                    errs.append('%r: src_id expected NULL, actual %r' % (p, r['src_id']))
            else:
                s = src_by_id.get(r['src_id'])
                if s is None or s['path'] != e['src_path']:
                    errs.append('%r: src_id %r points at %r, expected the source row %r' %
                                (p, r['src_id'], s and s['path'], e['src_path']))
    if errs:
        more = '' if len(errs) <= max_report else '\n    ... and %d more' % (len(errs) - max_report)
        fail('%s_nodes differ from the expectation (%d rows expected, %d recorded):\n    %s%s'
             % (side, len(expected), len(rows), '\n    '.join(errs[:max_report]), more))


STATS_TABLES = (('src_stats', 'src_nodes'), ('copy_stats', 'src_nodes'),
                ('dst_stats', 'dst_nodes'))


def stats_from_rows(rows, table):
    """What table (src_stats, copy_stats, dst_stats) must hold (depth > 0),
    computed from the actual node rows: key -> (count, bytes)."""
    import expect
    return expect.stats_of({i: r for i, r in enumerate(rows)}, table)


def read_stats(db, table):
    conn = connect(db)
    try:
        if table == 'copy_stats':
            q = ('SELECT depth, type, copy_status, conflict, count, bytes '
                 'FROM copy_stats WHERE depth > 0')
        else:
            q = 'SELECT depth, type, traversal_status, count, bytes FROM %s WHERE depth > 0' % table
        out = {}
        for t in conn.execute(q):
            k = tuple(_dec(x) for x in t[:-2])
            if table == 'copy_stats':
                k = k[:-1] + (int(k[-1]),)
            cnt, byt = t[-2], t[-1]
            if cnt == 0 and (byt or 0) == 0:
                continue
            if k in out:
                fail('%s holds the key %r twice' % (table, k))
            out[k] = (cnt, byt)
        return out
    finally:
        conn.close()


def check_all_stats(db, expected=None):
    """Every stats table agrees with the node rows (and, when expected is the
    expect.expected() result, with the expectation)."""
    rows = {'src_nodes': read_nodes(db, 'src_nodes'), 'dst_nodes': read_nodes(db, 'dst_nodes')}
    for table, nodes in STATS_TABLES:
        from_rows = stats_from_rows(rows[nodes], table)
        compare_stats(table, from_rows, read_stats(db, table))
        if expected is not None:
            import expect
            side = 'src' if nodes == 'src_nodes' else 'dst'
            compare_stats(table, expect.stats_of(expected[side], table), from_rows,
                          'the expectation', 'the rows')


def compare_stats(table, expected, actual, ename='the rows', aname=None):
    aname = aname or table
    if expected != actual:
        lines = []
        for k in sorted(set(expected) | set(actual), key=repr):
            if expected.get(k) != actual.get(k):
                lines.append('%r: %s say (count, bytes) = %r, %s says %r' %
                             (k, ename, expected.get(k), aname, actual.get(k)))
        fail('%s: %s disagrees with %s:\n    %s' % (table, aname, ename,
                                                   '\n    '.join(lines[:30])))


OLD_MTIME = 978307200 * 10**9  # 2001-01-01: an "old" mtime, in ns


def put_file(root, rel, data=b'x', mtime=OLD_MTIME):
    """Writes root/rel (its folders made) with data and mtime (ns)."""
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
    os.utime(p, ns=(mtime, mtime))
    return p


def rsync_delete_lines(src, dst, extra=()):
    """What `rsync -aHAXn --itemize-changes --delete` would change to make
    dst equal to src (the root's own line left out): the independent
    oracle of the cutover tests."""
    if not shutil.which('rsync'):
        fail('rsync is not installed (scripts/deps.sh test installs it)')
    cmd = ['rsync', '-aHAXn', '--itemize-changes', '--delete'] + list(extra) + [
        os.fsencode(src) + b'/', os.fsencode(dst) + b'/']
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=TIMEOUT)
    if cp.returncode != 0:
        fail('%s exited %d: %r' % (cmd, cp.returncode, cp.stderr[-500:]))
    return [x for x in cp.stdout.decode('utf-8', 'replace').split('\n')
            if x and x != '.d..t...... ./']
