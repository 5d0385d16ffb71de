"""Helpers of the crash, signal, YAML and damaged-state tests (stdlib only).

Not a test itself (ctest runs only test_*.py). Builds on tmtest.py:

  Ref(db)                     an uninterrupted run's state file, read once
  compare_with_reference(db, ref)   the same nodes, statuses, stats, status
  check_partial(db, ref)      what an interrupted or killed run may leave:
                              consistent, exact stats, every listed folder
                              with all its children, nothing else
  ListingProbe(src, dst)      counts the folders a run really listed, from
                              the folders' access times (getdents updates
                              them; stat and open do not)
  parse_yaml(text)            the subset of YAML that treemig writes
  yaml_vs_db(yaml, db)        the YAML file against the migration table
  status_counts(db)           status --json without the per-run fields
  Proc                        a treemig child in its own session
  row_count, phase_of, wait_until, integrity, listed_folders, file_hash,
  temp_leftovers              small probes of a state file and its folder
  sanitizer(), slowdown()     how much slower the binary under test is
"""

import base64
import functools
import gc
import hashlib
import os
import re
import sqlite3
import subprocess
import tempfile
import time

import tmtest
from tmtest import expect_eq, fail

# --------------------------------------------------------------------------
# the binary under test

_san = []


def sanitizer():
    """'thread', 'address' or None: the sanitizer the binary was built with
    (found from its symbols), so that time bounds can be scaled."""
    if not _san:
        kind = None
        try:
            with open(tmtest.TREEMIG, 'rb') as f:
                data = f.read()
            if b'__tsan_init' in data:
                kind = 'thread'
            elif b'__asan_init' in data:
                kind = 'address'
        except OSError:
            pass
        _san.append(kind)
    return _san[0]


def slowdown():
    """Factor for time bounds: 1 for a normal build, more under sanitizers."""
    return {'thread': 10, 'address': 4}.get(sanitizer(), 1)


def file_hash(path):
    """sha256 of a file's bytes, or None when it does not exist."""
    try:
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


class Proc:
    """A treemig process in its own session (signals go to it alone), with
    stdout and stderr in temporary files (no pipe to fill up)."""

    def __init__(self, args, cwd=None):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        cmd = [os.fsencode(tmtest.TREEMIG)] + [os.fsencode(a) for a in args]
        self.args = args
        self.started = time.monotonic()
        self.p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self.out,
                                  stderr=self.err, start_new_session=True)
        self.pid = self.p.pid
        self.rc = None
        self.ended = None

    def poll(self):
        if self.rc is None:
            rc = self.p.poll()
            if rc is not None:
                self.rc = rc
                self.ended = time.monotonic()
        return self.rc

    def signal(self, sig):
        """Sends sig to the process alone; False when it already ended."""
        if self.poll() is not None:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout=None):
        try:
            self.rc = self.p.wait(timeout=timeout or tmtest.TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            fail('treemig %r did not end within %ss' % (self.args, timeout or tmtest.TIMEOUT))
        if self.ended is None:
            self.ended = time.monotonic()
        return self.rc

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode('utf-8', 'replace')

    def stdout(self):
        self.out.seek(0)
        return self.out.read().decode('utf-8', 'replace')

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.out.close()
        self.err.close()


# status --json fields that describe a run rather than the state (the last
# queue snapshots with their rates and times, the copy's estimate): left out
# when two state files are compared
VOLATILE_STATUS = ('queues', 'eta_seconds')


def status_counts(db):
    """status --json of db without the VOLATILE_STATUS fields."""
    st = tmtest.status_json(db)
    for k in VOLATILE_STATUS:
        st.pop(k, None)
    return st


def _ro(db, timeout=0.2):
    conn = sqlite3.connect('file:%s?mode=ro' % os.fsdecode(db), uri=True, timeout=timeout)
    conn.text_factory = bytes
    return conn


def row_count(db):
    """src_nodes + dst_nodes rows committed so far; 0 when not readable."""
    if not os.path.exists(db):
        return 0
    try:
        conn = _ro(db)
        try:
            return sum(conn.execute('SELECT count(*) FROM %s' % t).fetchone()[0]
                       for t in ('src_nodes', 'dst_nodes'))
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def phase_of(db):
    """The phase in the migration table, or None."""
    if not os.path.exists(db):
        return None
    try:
        conn = _ro(db)
        try:
            r = conn.execute("SELECT value FROM migration WHERE key='phase'").fetchone()
            return r[0].decode() if r else None
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def wait_until(proc, cond, timeout=60, step=0.002):
    """Polls cond() while proc runs. True when cond() held while it ran,
    False when it ended first."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if proc.poll() is not None:
            return False
        if cond():
            return proc.poll() is None
        time.sleep(step)
    return False


def integrity(db):
    try:
        conn = _ro(db, timeout=5)
        try:
            r = [x[0] for x in conn.execute('PRAGMA integrity_check').fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as e:
        fail('PRAGMA integrity_check of %s: %s' % (db, e))
    if r != [b'ok']:
        fail('PRAGMA integrity_check of %s: %r' % (db, r[:10]))


# --------------------------------------------------------------------------
# the reference: an uninterrupted run
#
# Rows are read as tuples (fast enough for a few hundred thousand rows):
# (path, name, type, size, mtime, mode, depth, traversal_status,
#  copy_status, conflict, parent's path, path of the source twin, id,
#  attempts, error); text columns as bytes.

PATH, NAME, TYPE, SIZE, MTIME, MODE, DEPTH, TS, CS, CONFLICT, PPATH, SPATH, ID, ATT, ERR = \
    range(15)
KEY = 12          # the fields compared with the reference: r[:KEY]
KEY_NAMES = ('path', 'name', 'type', 'size', 'mtime', 'mode', 'depth', 'traversal_status',
             'copy_status', 'conflict', 'parent path', 'src_id path')
FOLDER, PENDING, SUCCESSFUL = b'folder', b'pending', b'successful'


def no_gc(fn):
    """Runs fn with the cyclic garbage collector off: it would walk the
    hundreds of thousands of row tuples over and over (they hold no
    cycles), doubling the time of the checks."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*a, **kw)
        finally:
            if was:
                gc.enable()
    return wrapper


def fetch_rows(db, side):
    """The rows of src_nodes or dst_nodes as tuples (see above), by id."""
    conn = _ro(db, timeout=5)
    try:
        if side == 'src':
            q = ('SELECT n.path, n.name, n.type, n.size, n.mtime, n.mode, n.depth, '
                 'n.traversal_status, n.copy_status, n.conflict, p.path, NULL, n.id, '
                 'n.attempts, n.error FROM src_nodes n '
                 'LEFT JOIN src_nodes p ON p.id = n.parent_id ORDER BY n.id')
        else:
            q = ('SELECT n.path, n.name, n.type, n.size, n.mtime, n.mode, n.depth, '
                 'n.traversal_status, NULL, n.conflict, p.path, s.path, n.id, '
                 'n.attempts, n.error FROM dst_nodes n '
                 'LEFT JOIN dst_nodes p ON p.id = n.parent_id '
                 'LEFT JOIN src_nodes s ON s.id = n.src_id ORDER BY n.id')
        rows = conn.execute(q).fetchall()
        if side == 'dst':
            bad = conn.execute('SELECT n.path, n.src_id FROM dst_nodes n LEFT JOIN src_nodes s '
                               'ON s.id = n.src_id WHERE n.src_id IS NOT NULL AND s.id IS NULL '
                               'LIMIT 5').fetchall()
            if bad:
                fail('dst_nodes rows whose src_id is no source row: %r' % bad)
        return rows
    finally:
        conn.close()


def _dirname(p):
    if p == b'/':
        return None
    d = p.rsplit(b'/', 1)[0]
    return d or b'/'


def _basename(p):
    return b'' if p == b'/' else p.rsplit(b'/', 1)[1]


def _listed(r):
    return r[TYPE] == FOLDER and r[TS] == SUCCESSFUL and r[CONFLICT] is None


def _dups(rows):
    seen, dup = set(), []
    for r in rows:
        if r[PATH] in seen:
            dup.append(r[PATH])
        seen.add(r[PATH])
    return dup


def _row_problems(side, rows):
    """Problems of a table on its own: the order of ids (a parent's id is
    below its child's: ids grow as rows are inserted; the depths of rows
    inserted at one time may interleave, as the rounds overlap), names,
    parents, attempts and error messages."""
    errs = []
    ids = {}
    for r in rows:
        ids[r[PATH]] = r[ID]
    for r in rows:
        p = r[PATH]
        if r[NAME] != _basename(p):
            errs.append('%s %r: name %r' % (side, p, r[NAME]))
        if r[PPATH] != _dirname(p):
            errs.append('%s %r: parent_id points at %r' % (side, p, r[PPATH]))
        elif p != b'/' and not ids.get(r[PPATH], 1 << 62) < r[ID]:
            errs.append('%s %r: parent id not below id %d' % (side, p, r[ID]))
        if r[TS] == b'failed' and not r[ERR]:
            errs.append('%s %r: failed without an error message' % (side, p))
        elif (r[TS] in (SUCCESSFUL, b'not_on_src', b'excluded') and r[ERR] is not None
              and r[CS] not in (b'skipped', b'failed')):  # the copy's reason
            errs.append('%s %r: %s with the error %r' % (side, p, r[TS].decode(), r[ERR]))
        if _listed(r) and (r[ATT] or 0) < 1:
            errs.append('%s %r: listed folder with attempts %r' % (side, p, r[ATT]))
    return errs


def _fail_list(what, errs, max_report=20):
    if errs:
        fail('%s (%d problems):\n    %s%s' % (
            what, len(errs), '\n    '.join(errs[:max_report]),
            '' if len(errs) <= max_report else '\n    ... and %d more' % (len(errs) - max_report)))


def check_stats_sql(db):
    """src_stats, copy_stats and dst_stats equal counts made from the rows
    (depth > 0; zero entries ignored), computed by SQL here."""
    q = {
        'src_stats': ('SELECT depth, type, traversal_status, count(*), sum(size) FROM src_nodes '
                      'WHERE depth > 0 GROUP BY 1, 2, 3',
                      'SELECT depth, type, traversal_status, count, bytes FROM src_stats '
                      'WHERE depth > 0 AND (count != 0 OR bytes != 0)'),
        'copy_stats': ('SELECT depth, type, copy_status, conflict IS NOT NULL, count(*), sum(size) '
                       'FROM src_nodes WHERE depth > 0 GROUP BY 1, 2, 3, 4',
                       'SELECT depth, type, copy_status, conflict != 0, count, bytes FROM '
                       'copy_stats WHERE depth > 0 AND (count != 0 OR bytes != 0)'),
        'dst_stats': ('SELECT depth, type, traversal_status, count(*), sum(size) FROM dst_nodes '
                      'WHERE depth > 0 GROUP BY 1, 2, 3',
                      'SELECT depth, type, traversal_status, count, bytes FROM dst_stats '
                      'WHERE depth > 0 AND (count != 0 OR bytes != 0)'),
    }
    conn = _ro(db, timeout=5)
    out = {}
    try:
        for table, (from_rows, stored) in q.items():
            a = {t[:-2]: t[-2:] for t in conn.execute(from_rows)}
            rows = conn.execute(stored).fetchall()
            b = {t[:-2]: t[-2:] for t in rows}
            if len(b) != len(rows):
                fail('%s holds a key twice' % table)
            if a != b:
                lines = ['%r: the rows say (count, bytes) = %r, %s says %r'
                         % (k, a.get(k), table, b.get(k))
                         for k in sorted(set(a) | set(b), key=repr) if a.get(k) != b.get(k)]
                fail('%s disagrees with the rows of %s:\n    %s'
                     % (table, db, '\n    '.join(lines[:20])))
            out[table] = b
    finally:
        conn.close()
    return out


class Ref:
    """The state file of an uninterrupted discovery, as expectations."""

    @no_gc
    def __init__(self, db):
        self.db = db
        self.rows = {}
        self.by_path = {}
        self.keys = {}
        self.nkids = {}
        self.listed = {}
        errs = []
        for side in ('src', 'dst'):
            rows = fetch_rows(db, side)
            errs += ['duplicate path %r' % p for p in _dups(rows)]
            errs += _row_problems(side, rows)
            self.rows[side] = rows
            self.by_path[side] = {r[PATH]: r for r in rows}
            self.keys[side] = {r[:KEY] for r in rows}
            kids = {}
            for r in rows:
                if r[PPATH] is not None:
                    kids[r[PPATH]] = kids.get(r[PPATH], 0) + 1
            self.nkids[side] = kids
            self.listed[side] = {r[PATH] for r in rows if _listed(r)}
        _fail_list('the reference state file %s is wrong' % db, errs)
        self.stats = check_stats_sql(db)
        self.status = status_counts(db)
        self.migration = tmtest.migration(db)
        self.total_rows = len(self.rows['src']) + len(self.rows['dst'])
        self.n_listed = len(self.listed['src']) + len(self.listed['dst'])


MIGRATION_KEYS = ('phase', 'src', 'dst', 'src_round', 'dst_round', 'excludes', 'workers',
                  'lead', 'retries')


@no_gc
def compare_with_reference(db, ref, keys=MIGRATION_KEYS):
    """The nodes (by path: name, type, size, mtime, mode, depth, statuses,
    conflict, parent, and the source row the destination's src_id points
    at), ids in BFS order, the stats tables (equal to counts made from the
    rows and to the reference's), status --json and the migration table
    equal the reference's. Ids may differ."""
    errs = []
    for side in ('src', 'dst'):
        rows = fetch_rows(db, side)
        errs += ['%s: duplicate path %r' % (side, p) for p in _dups(rows)[:10]]
        errs += _row_problems(side, rows)
        got = {r[:KEY] for r in rows}
        missing = ref.keys[side] - got
        extra = got - ref.keys[side]
        if missing or extra:
            mine = {r[PATH]: r for r in rows}
            errs.append('%s_nodes: %d rows differ from the reference (%d rows, reference %d)'
                        % (side, len(missing) + len(extra), len(rows), len(ref.rows[side])))
            for k in sorted(missing | extra)[:15]:
                a, b = mine.get(k[PATH]), ref.by_path[side].get(k[PATH])
                if a is None or b is None:
                    errs.append('  %r: %s' % (k[PATH], 'not recorded' if a is None
                                              else 'not in the reference'))
                else:
                    errs.append('  %r: %s' % (k[PATH], ', '.join(
                        '%s %r (reference %r)' % (KEY_NAMES[i], a[i], b[i])
                        for i in range(KEY) if a[i] != b[i])))
    _fail_list('%s differs from the reference' % db, errs)
    stats = check_stats_sql(db)
    for table in stats:
        expect_eq('%s equal to the reference\'s' % table, ref.stats[table], stats[table])
    tmtest.compare_status(ref.status, status_counts(db))
    m = tmtest.migration(db)
    expect_eq('migration table (%s)' % ', '.join(keys),
              {k: ref.migration.get(k) for k in keys}, {k: m.get(k) for k in keys})


def _initial_copy_status(r):
    """copy_status of a source row before its parent's destination twin is
    compared."""
    if r[TS] == b'excluded':
        return b'excluded'
    if r[TYPE] == b'other':
        return b'skipped'
    return b'pending'


def _status_from_rows(srows, drows, phase, rounds):
    """The status --json object the rows call for (docs/state-file.md)."""
    def tree(rows, last, last_key):
        c = {'folders': 0, 'files': 0, 'symlinks': 0, 'other': 0, 'bytes': 0,
             'pending': 0, 'failed': 0, last_key: 0}
        key = {b'folder': 'folders', b'file': 'files', b'symlink': 'symlinks', b'other': 'other'}
        for r in rows:
            if r[DEPTH] == 0:
                continue
            c[key[r[TYPE]]] += 1
            if r[TYPE] == b'file':
                c['bytes'] += r[SIZE]
            if r[TS] == PENDING:
                c['pending'] += 1
            elif r[TS] == b'failed':
                c['failed'] += 1
            elif r[TS] == last:
                c[last_key] += 1
        return c
    copy = {k: 0 for k in ('pending', 'in_progress', 'successful', 'already_existed', 'failed',
                           'skipped', 'excluded', 'conflicts', 'bytes_pending')}
    for r in srows:
        if r[DEPTH] == 0:
            continue
        copy[r[CS].decode()] += 1
        if r[CONFLICT] is not None:
            copy['conflicts'] += 1
        if r[CS] == PENDING and r[TYPE] == b'file':
            copy['bytes_pending'] += r[SIZE]
    return {'phase': phase, 'rounds': {'src': rounds[0], 'dst': rounds[1]},
            'src': tree(srows, b'excluded', 'excluded'),
            'dst': tree(drows, b'not_on_src', 'not_on_src'), 'copy': copy}


@no_gc
def check_partial(db, ref):
    """What a stopped or killed discovery leaves must be consistent:
    integrity_check passes; no duplicate path; every row is a node of the
    reference with the same name, type, size, mtime, mode, depth and parent
    and a status equal to the reference's (or pending for a folder not
    listed yet); every listed folder has all its children recorded, a
    pending one none; a source row whose parent's destination twin is
    listed has its final copy_status and conflict, other source rows their
    initial ones; a pending folder with children has a listing position
    (listing_pos: its listing stopped after a page) and fewer children than
    the reference; a destination row's src_id points at the source row the
    reference says; the stats tables equal counts made from the rows;
    status --json agrees with the rows. Returns the number of rows."""
    integrity(db)
    errs = []
    rows = {}
    for side in ('src', 'dst'):
        rs = fetch_rows(db, side)
        rows[side] = rs
        errs += ['%s: duplicate path %r' % (side, p) for p in _dups(rs)[:10]]
        kids = {}
        refp = ref.by_path[side]
        for r in rs:
            p = r[PATH]
            e = refp.get(p)
            if e is None:
                errs.append('%s: path %r is not a node of the tree' % (side, p))
                continue
            if r[NAME:TS] != e[NAME:TS] or r[PPATH] != e[PPATH]:
                errs.append('%s %r: (name, type, size, mtime, mode, depth, parent) %r, the '
                            'reference %r' % (side, p, r[NAME:TS] + (r[PPATH],),
                                              e[NAME:TS] + (e[PPATH],)))
            if r[TS] != e[TS] and not (r[TS] == PENDING and e[TYPE] == FOLDER):
                errs.append('%s %r: traversal_status %r, expected %r or pending'
                            % (side, p, r[TS], e[TS]))
            if side == 'dst' and r[SPATH] != e[SPATH]:
                errs.append('dst %r: src_id points at %r, expected %r' % (p, r[SPATH], e[SPATH]))
            if r[PPATH] is not None:
                kids[r[PPATH]] = kids.get(r[PPATH], 0) + 1
        with sqlite3.connect('file:%s?mode=ro' % db, uri=True) as c:
            paged = {row[0] for row in c.execute(
                'SELECT n.path FROM listing_pos p JOIN %s_nodes n ON n.id = p.folder_id '
                'WHERE p.side = ?' % side, (0 if side == 'src' else 1,))}
        for r in rs:
            if r[TYPE] != FOLDER or r[PATH] not in refp:
                continue
            n = kids.get(r[PATH], 0)
            if r[TS] == PENDING and n and (r[PATH] not in paged or
                                           n >= ref.nkids[side].get(r[PATH], 0)):
                errs.append('%s %r: pending folder with %d children recorded%s'
                            % (side, r[PATH], n, '' if r[PATH] in paged else
                               ' and no listing position'))
            elif _listed(r) and n != ref.nkids[side].get(r[PATH], 0):
                errs.append('%s %r: listed folder with %d of its %d children recorded'
                            % (side, r[PATH], n, ref.nkids[side].get(r[PATH], 0)))
    dst_listed = {r[PATH] for r in rows['dst'] if _listed(r)}
    refs = ref.by_path['src']
    for r in rows['src']:
        e = refs.get(r[PATH])
        if e is None or r[PPATH] is None:
            continue
        if r[PPATH] in ref.listed['dst'] and r[PPATH] not in dst_listed:
            want = (_initial_copy_status(e), None)   # not compared yet
        else:
            want = (e[CS], e[CONFLICT])
        if (r[CS], r[CONFLICT]) != want:
            errs.append('src %r: (copy_status, conflict) %r, expected %r (parent %s on the '
                        'destination)' % (r[PATH], (r[CS], r[CONFLICT]), want,
                                          'listed' if r[PPATH] in dst_listed else 'not listed'))
    _fail_list('inconsistent partial state in %s' % db, errs)
    check_stats_sql(db)
    m = tmtest.migration(db)
    want = _status_from_rows(rows['src'], rows['dst'], m.get('phase'),
                             (int(m.get('src_round') or 0), int(m.get('dst_round') or 0)))
    st = status_counts(db)
    st.pop('roots', None)
    tmtest.compare_status(want, st)
    return len(rows['src']) + len(rows['dst'])


def listed_folders(db, side):
    """Paths of the folders of a side whose listing is committed."""
    conn = _ro(db, timeout=5)
    try:
        return {r[0] for r in conn.execute(
            "SELECT path FROM %s_nodes WHERE type='folder' AND traversal_status='successful' "
            "AND conflict IS NULL" % side)}
    finally:
        conn.close()


# --------------------------------------------------------------------------
# which folders a run listed

class ListingProbe:
    """Tells which folders a process listed, from their access times: the
    probe sets every folder's atime to 1 ns after the epoch (mtime kept);
    reading a folder (getdents) then moves its atime to now under relatime
    or strictatime, while stat() and open() leave it alone. Needs a mount
    without noatime/nodiratime: valid() checks that on a reference run."""

    def __init__(self, src, dst):
        """Probes every folder below (and including) the roots src and dst,
        found with find(1)."""
        self.paths = {}
        for side, root in (('src', os.fsencode(src)), ('dst', os.fsencode(dst))):
            out = subprocess.run([b'find', root, b'-type', b'd', b'-print0'],
                                 stdout=subprocess.PIPE, check=True).stdout
            m = {}
            for a in out.split(b'\0'):
                if a:
                    m[a[len(root):] or b'/'] = a
            self.paths[side] = m

    def reset(self):
        for side in self.paths:
            for a in self.paths[side].values():
                st = os.lstat(a)
                os.utime(a, ns=(1, st.st_mtime_ns), follow_symlinks=False)

    def listed(self):
        out = {}
        for side in self.paths:
            out[side] = {p for p, a in self.paths[side].items()
                         if os.lstat(a).st_atime_ns != 1}
        return out


# --------------------------------------------------------------------------
# the YAML file

_KEY = re.compile(r'([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$')
_INT = re.compile(r'-?[0-9]+$')


def _dq(s, lineno):
    """A double-quoted YAML scalar (with its quotes) -> str."""
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise ValueError('line %d: unterminated double-quoted string %r' % (lineno, s))
    body = s[1:-1]
    out = []
    i = 0
    simple = {'"': '"', '\\': '\\', '/': '/', 'n': '\n', 't': '\t', 'r': '\r',
              '0': '\0', 'a': '\a', 'b': '\b', 'e': '\x1b', 'f': '\f', 'v': '\v', ' ': ' '}
    while i < len(body):
        c = body[i]
        if c == '"':
            raise ValueError('line %d: unescaped quote inside %r' % (lineno, s))
        if c != '\\':
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError('line %d: dangling backslash in %r' % (lineno, s))
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in 'xuU':
            n = {'x': 2, 'u': 4, 'U': 8}[e]
            h = body[i + 2:i + 2 + n]
            if len(h) != n or not re.fullmatch('[0-9A-Fa-f]+', h):
                raise ValueError('line %d: bad escape in %r' % (lineno, s))
            out.append(chr(int(h, 16)))
            i += 2 + n
        else:
            raise ValueError('line %d: unknown escape \\%s in %r' % (lineno, e, s))
    return ''.join(out)


def _scalar(s, lineno):
    s = s.strip()
    if s == '[]':
        return []
    if s in ('null', '~', ''):
        return None
    if _INT.match(s):
        return int(s)
    if s.startswith('!!binary '):
        return base64.b64decode(_dq(s[len('!!binary '):].strip(), lineno), validate=True)
    if s.startswith('"'):
        return _dq(s, lineno)
    if s[0] in '\'[{&*!|>%@`#':
        raise ValueError('line %d: unsupported scalar %r' % (lineno, s))
    return s


def parse_yaml(text):
    """Parses the YAML that treemig writes: comments, block mappings by
    indentation, block sequences of scalars ('- x'), '[]', null, integers,
    double-quoted strings and !!binary "base64" (returned as bytes).
    Raises ValueError on anything else."""
    if isinstance(text, bytes):
        text = text.decode('utf-8')
    lines = []
    for n, raw in enumerate(text.split('\n'), 1):
        if not raw.strip() or raw.lstrip().startswith('#'):
            continue
        if '\t' in raw[:len(raw) - len(raw.lstrip())]:
            raise ValueError('line %d: tab in indentation' % n)
        lines.append((len(raw) - len(raw.lstrip(' ')), raw.strip(), n))

    def block(i, indent):
        if lines[i][1].startswith('- ') or lines[i][1] == '-':
            seq = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith('-'):
                seq.append(_scalar(lines[i][1][1:], lines[i][2]))
                i += 1
            return seq, i
        mp = {}
        while i < len(lines) and lines[i][0] == indent:
            ind, content, n = lines[i]
            m = _KEY.match(content)
            if not m:
                raise ValueError('line %d: not a "key: value" line: %r' % (n, content))
            k, v = m.group(1), m.group(2)
            if k in mp:
                raise ValueError('line %d: duplicate key %r' % (n, k))
            i += 1
            if v is not None and v.strip():
                mp[k] = _scalar(v, n)
            elif i < len(lines) and lines[i][0] > ind:
                mp[k], i = block(i, lines[i][0])
            elif i < len(lines) and lines[i][0] == ind and lines[i][1].startswith('-'):
                mp[k], i = block(i, ind)      # a sequence at the key's indentation
            else:
                mp[k] = None
        if i < len(lines) and lines[i][0] > indent:
            raise ValueError('line %d: unexpected indentation' % lines[i][2])
        return mp, i

    if not lines:
        raise ValueError('empty document')
    doc, i = block(0, lines[0][0])
    if i != len(lines) or lines[0][0] != 0:
        raise ValueError('line %d: unexpected content' % lines[min(i, len(lines) - 1)][2])
    return doc


def read_yaml(path):
    with open(path, 'rb') as f:
        data = f.read()
    try:
        return parse_yaml(data)
    except (ValueError, UnicodeDecodeError) as e:
        fail('%s does not parse: %s\n%s' % (path, e, data.decode('utf-8', 'replace')))


def _str(v):
    return os.fsdecode(v) if isinstance(v, bytes) else v


def yaml_vs_db(yaml_path, db):
    """The YAML file's content equals the state file's migration table:
    format version, id, created, phase (and suspended_from), database (the
    state file, absolute), source, destination, rounds, options and
    excludes. Returns the parsed document."""
    y = read_yaml(yaml_path)
    m = tmtest.migration(db)
    mig = y.get('migration') or {}
    rounds = y.get('rounds') or {}
    opts = y.get('options') or {}
    stored_ex = m.get('excludes') or ''
    got = {
        'treemig': y.get('treemig'),
        'id': mig.get('id'),
        'created': mig.get('created'),
        'phase': y.get('phase'),
        'suspended_from': y.get('suspended_from'),
        'database': _str(y.get('database')),
        'source': _str(y.get('source')),
        'destination': _str(y.get('destination')),
        'rounds': (rounds.get('src'), rounds.get('dst')),
        'options': (opts.get('workers'), opts.get('lead'), opts.get('retries')),
        'excludes': [_str(x) for x in (opts.get('excludes') or [])],
    }
    want = {
        'treemig': 1,
        'id': m.get('id'),
        'created': m.get('created'),
        'phase': m.get('phase'),
        'suspended_from': m.get('suspended_from') or None,
        'database': os.fsdecode(os.path.join(
            os.path.realpath(os.path.dirname(os.path.abspath(db))), os.path.basename(db))),
        'source': m.get('src'),
        'destination': m.get('dst'),
        'rounds': (int(m.get('src_round')), int(m.get('dst_round'))),
        'options': (int(m.get('workers')), int(m.get('lead')), int(m.get('retries'))),
        'excludes': stored_ex.split('\n') if stored_ex else [],
    }
    diffs = ['%s: YAML %r, state file %r' % (k, got[k], want[k]) for k in want if got[k] != want[k]]
    if diffs:
        fail('%s does not match the migration table of %s:\n    %s'
             % (yaml_path, db, '\n    '.join(diffs)))
    return y


def temp_leftovers(folder):
    """Names of YAML temporary files (*.tmp.*) in folder."""
    return sorted(n for n in os.listdir(folder) if '.tmp.' in n)
