#!/usr/bin/env python3
"""Integration test of `treemig copy` and `treemig verify` on local trees.

The main case runs discover, copy --yes, verify and verify --checksum on the
pair of treegen.build_pair() (nested folders, empty folders, a folder of
20,000 files, names with spaces, newlines and non-UTF-8 bytes, symlinks
(one dangling), FIFOs and a socket, files missing on the destination,
destination-only nodes, size/mtime conflicts and file/folder clashes; its
two 5 GiB sparse files are shrunk to 64 MiB so that a copy takes seconds;
plus modes/: setuid, setgid, sticky, 0000 and read-only folders)
and checks the destination against an expectation computed here from the
two trees, independently of treemig: every node that is copied or already
there has the source's bytes, mtime (ns) and mode (folders too; files that
already existed keep their own mode), symlinks are symlinks with the same
target, destination-only nodes and clashes are untouched, FIFOs and
sockets (type `other`) are made again with their kind, mode and mtime
(test_fidelity.py checks devices and --no-specials), no `.treemig.*.tmp`
file is left; status --json
and the stats tables agree with the rows.

Then, each on its own small tree: --no-overwrite; copy refused before
discovery completes, without a state file, and after a discovery with
failures unless --force; a second copy; files changed between discover and
copy (size, mtime) fail with 'changed since discovery' and nothing torn
appears, verify counts them as mismatches, retry copies them in their new
version; verify finds a destination changed afterwards (size, mtime,
contents with --checksum, a missing file, a symlink target of the same
length with --checksum); a destination folder the copy may not write into
gives failed nodes with 'permission denied'; trees that change between
discover and copy: --no-overwrite and a destination file made meanwhile,
a destination or source folder swapped for a symlink (nothing may be
written or read through it).

The permission cases run treemig as uid/gid 65534 through
`setpriv --reuid=65534 --regid=65534 --clear-groups` when run as root (as
the invoking user otherwise); they are skipped when neither works.

Also a library for test_copy_crash.py and test_retry.py (importing it runs
nothing): snapshot(), diff_snapshots(), check_no_tmp(), final_copy_status(),
expected_dst(), compare_like_diff_r(), Unpriv (treemig as uid 65534),
guard().

Run:  python3 tests/integration/test_copy.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import collections
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import expect      # noqa: E402
import statecheck  # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

SEC = treegen.SEC
UNPRIV = 65534
SPARSE = 64 * 1024 * 1024        # the size the pair's sparse files are shrunk to
TMP_RE = re.compile(rb'\A\.treemig\..*\.tmp\Z', re.DOTALL)

# --------------------------------------------------------------------------
# trees as snapshots: {root-relative bytes path ('/' for the root): Node}

Node = collections.namedtuple('Node', 'type mode mtime size data')
# data: sha256 of a file's bytes, a symlink's target, None otherwise


def file_digest(path):
    h = hashlib.sha256()
    with open(path, 'rb', buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def node_of(abspath, digests=True, cache=None):
    """cache: a dict of digests by (device, inode, ctime, mtime, size), for
    trees that are snapshot again and again (a write changes the ctime)."""
    st = os.lstat(abspath)
    m = st.st_mode
    if stat.S_ISDIR(m):
        return Node('folder', stat.S_IMODE(m), st.st_mtime_ns, 0, None)
    if stat.S_ISREG(m):
        d = None
        if digests:
            key = (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)
            d = cache.get(key) if cache is not None else None
            if d is None:
                if st.st_mode & 0o444 == 0 and os.geteuid() != 0:
                    d = 'unreadable'
                else:
                    d = file_digest(abspath)
                if cache is not None:
                    cache[key] = d
        return Node('file', stat.S_IMODE(m), st.st_mtime_ns, st.st_size, d)
    if stat.S_ISLNK(m):
        t = os.readlink(abspath)
        return Node('symlink', stat.S_IMODE(m), st.st_mtime_ns, len(t), t)
    return Node('other', stat.S_IMODE(m), st.st_mtime_ns, 0, None)


def _join(rel, name):
    return (rel if rel != b'/' else b'') + b'/' + name


def snapshot(root, digests=True, cache=None):
    """Every node below root (and root itself as b'/'), never following a
    symlink; folders that cannot be listed are recorded without children."""
    root = os.fsencode(root)
    out = {b'/': node_of(root, digests, cache)}
    todo = [b'/']
    while todo:
        rel = todo.pop()
        base = root + (rel if rel != b'/' else b'')
        try:
            it = os.scandir(base)
        except PermissionError:
            continue
        with it:
            for e in it:
                p = _join(rel, e.name)
                n = node_of(e.path, digests, cache)
                out[p] = n
                if n.type == 'folder':
                    todo.append(p)
    return out


def fmt_node(n):
    if n is None:
        return 'nothing'
    d = n.data
    if n.type == 'file':
        d = (d or '')[:12]
    return '%s mode %o mtime %d size %d %r' % (n.type, n.mode, n.mtime, n.size, d)


def diff_snapshots(expected, actual, what, ignore=(), max_report=25):
    """Differences between two snapshots as a list of lines. ignore: a set
    of (path, field) pairs not compared (field: 'mtime', 'mode', ... or '*'
    for the whole node)."""
    errs = []
    for p in sorted(set(expected) | set(actual)):
        if (p, '*') in ignore:
            continue
        e, a = expected.get(p), actual.get(p)
        if e == a:
            continue
        if e is None or a is None or e.type != a.type:
            errs.append('%r: %s has %s, expected %s' % (p, what, fmt_node(a), fmt_node(e)))
            continue
        fields = [f for f in Node._fields if getattr(e, f) != getattr(a, f) and
                  (p, f) not in ignore]
        if fields:
            errs.append('%r: %s differs in %s: %s, expected %s' % (
                p, what, '/'.join(fields), fmt_node(a), fmt_node(e)))
    return errs


def fail_list(what, errs, max_report=25):
    if errs:
        fail('%s (%d differences):\n    %s%s' % (
            what, len(errs), '\n    '.join(errs[:max_report]),
            '' if len(errs) <= max_report else '\n    ... and %d more' % (len(errs) - max_report)))


def tmp_leftovers(*roots):
    """Paths of every `.treemig.*.tmp` node below the roots."""
    out = []
    for root in roots:
        root = os.fsencode(root)
        for dp, dn, fn in os.walk(root):
            for n in dn + fn:
                if TMP_RE.match(n) or n.startswith(b'.treemig.'):
                    out.append(os.path.join(dp, n))
    return out


def check_no_tmp(*roots):
    left = tmp_leftovers(*roots)
    if left:
        fail('%d temporary files left behind, e.g. %r' % (len(left), left[:5]))


# --------------------------------------------------------------------------
# what the copy must do, from the discovery's rows (docs/internals.md)

def depth_of(p):
    return 0 if p == b'/' else p.count(b'/')


def parent_of(p):
    if p == b'/':
        return None
    d = p.rsplit(b'/', 1)[0]
    return d or b'/'


def final_copy_status(src_rows, no_overwrite=False, failing=()):
    """{path: copy_status} the source rows must have after a complete copy.
    src_rows: {path: row} with 'type', 'copy_status', 'conflict' (from
    expect.expected() or the state file before the copy). failing: paths
    whose copy is expected to fail."""
    out, kept = {}, set()
    for p in sorted(src_rows, key=depth_of):
        r = src_rows[p]
        cs = r['copy_status']
        if p == b'/' or cs != 'pending':
            out[p] = cs
            continue
        pc = out[parent_of(p)]
        if pc in ('skipped', 'excluded') and parent_of(p) not in kept:
            out[p] = 'skipped'
        elif pc == 'failed':
            out[p] = 'failed'
        elif no_overwrite and r['conflict'] == 'attrs':
            # the destination's mode kept; a folder's contents are copied
            out[p] = 'skipped'
            kept.add(p)
        elif no_overwrite and r['conflict'] is not None and r['type'] != 'folder':
            out[p] = 'skipped'
        elif p in failing:
            out[p] = 'failed'
        else:
            out[p] = 'successful'
    return out


def expected_dst(src_snap, dst_before, final):
    """The destination snapshot a copy must leave: the destination as it
    was, plus every node copied (the source's node), with the folders that
    already existed taking the source folder's mode and mtime. Returns
    (snapshot, ignore) where ignore holds the root's mtime (the copy does
    not set the roots' attributes; creating children changes it)."""
    exp = dict(dst_before)
    for p, cs in final.items():
        if p == b'/':
            continue
        s = src_snap[p]
        if cs == 'successful':
            exp[p] = s
        elif cs == 'already_existed' and s.type == 'folder':
            exp[p] = dst_before[p]._replace(mode=s.mode, mtime=s.mtime)
    return exp, {(b'/', 'mtime')}


def compare_like_diff_r(src_snap, dst_snap, final, dst_before):
    """The `diff -r` view: every source node that is neither skipped nor
    excluded (nor below such a folder) exists on the destination with the
    same type, bytes (symlinks: target) and mtime, and the same mode unless
    it is a file or symlink that already existed (the destination's own
    mode is kept: it must be the one it had); a destination node that is
    not such a source node is exactly what it was before the copy."""
    errs = []
    for p, s in sorted(src_snap.items()):
        if p == b'/':
            continue
        cs = final.get(p)
        d = dst_snap.get(p)
        if cs in ('skipped', 'excluded', None, 'failed'):
            if d != dst_before.get(p):
                errs.append('%r (%s, not copied) changed on the destination: %s, before %s'
                            % (p, cs, fmt_node(d), fmt_node(dst_before.get(p))))
            continue
        if d is None:
            errs.append('Only in source: %r (%s)' % (p, cs))
            continue
        keep_mode = cs == 'already_existed' and s.type != 'folder'
        want = s._replace(mode=dst_before[p].mode) if keep_mode else s
        if d != want:
            errs.append('%r differs: destination %s, source %s' % (p, fmt_node(d), fmt_node(s)))
    for p, d in sorted(dst_snap.items()):
        if p not in src_snap and d != dst_before.get(p):
            errs.append('Only in destination: %r, %s (before the copy: %s)'
                        % (p, fmt_node(d), fmt_node(dst_before.get(p))))
    return errs


def db_copy_status(db):
    return {r['path']: r['copy_status'] for r in tmtest.read_nodes(db, 'src_nodes')}


def expected_copy_counts(final, rows):
    """The `copy` object of status --json once the copy is done (conflicts:
    from the rows, whatever the copy does with them)."""
    c = {k: 0 for k in ('pending', 'in_progress', 'successful', 'already_existed',
                        'failed', 'skipped', 'excluded', 'conflicts', 'bytes_pending')}
    for p, cs in final.items():
        if p != b'/':
            c[cs] += 1
    c['conflicts'] = sum(1 for r in rows if r['depth'] > 0 and r['conflict'] is not None)
    return c


def check_rows_after_copy(db, rows_before, final):
    """Every source row has its expected copy_status; nothing else of the
    rows changed; no path twice."""
    rows = tmtest.read_nodes(db, 'src_nodes')
    errs = []
    seen = set()
    before = {r['path']: r for r in rows_before}
    for r in rows:
        p = r['path']
        if p in seen:
            errs.append('duplicate path %r' % p)
        seen.add(p)
        if final.get(p) != r['copy_status']:
            errs.append('%r: copy_status %r, expected %r (error %r)'
                        % (p, r['copy_status'], final.get(p), r['error']))
        b = before.get(p)
        if b is None:
            errs.append('%r: a source row that discovery did not record' % p)
            continue
        for f in ('id', 'parent_id', 'type', 'size', 'mtime', 'mode', 'depth',
                  'traversal_status'):
            if r[f] != b[f]:
                errs.append('%r: %s changed by the copy: %r -> %r' % (p, f, b[f], r[f]))
    missing = set(before) - seen
    if missing:
        errs.append('%d source rows gone, e.g. %r' % (len(missing), sorted(missing)[:5]))
    fail_list('src_nodes after the copy', errs)
    return rows


def no_duplicates(db):
    for t in ('src_nodes', 'dst_nodes'):
        conn = tmtest.connect(db)
        try:
            d = conn.execute('SELECT path, count(*) FROM %s GROUP BY path HAVING count(*) > 1 '
                             'LIMIT 5' % t).fetchall()
            d2 = conn.execute('SELECT parent_id, name, count(*) FROM %s GROUP BY 1, 2 '
                              'HAVING count(*) > 1 LIMIT 5' % t).fetchall()
        finally:
            conn.close()
        if d or d2:
            fail('%s holds a node twice: %r %r' % (t, d, d2))


def task_errors(db, phase=None):
    conn = tmtest.connect(db)
    try:
        q = 'SELECT phase, path, message FROM task_errors'
        if phase:
            return [(a.decode(), b, c.decode('utf-8', 'replace')) for a, b, c in
                    conn.execute(q + ' WHERE phase = ?', (phase,))]
        return [(a.decode(), b, c.decode('utf-8', 'replace')) for a, b, c in conn.execute(q)]
    finally:
        conn.close()


def phase(db):
    return tmtest.migration(db).get('phase')


def text_of(cp):
    return cp.stdout + cp.stderr


# --------------------------------------------------------------------------
# running treemig as an unprivileged user

class Unpriv:
    """How to run treemig without the right to override permissions: as
    uid/gid 65534 through setpriv when root, else as the invoking user."""

    def __init__(self):
        self.root = os.geteuid() == 0
        self.prefix = []
        self.uid = os.geteuid()
        self.gid = os.getegid()
        self.why_not = None
        if self.root:
            sp = shutil.which('setpriv')
            if not sp:
                self.why_not = 'running as root and setpriv(1) is not installed'
                return
            self.prefix = [sp, '--reuid=%d' % UNPRIV, '--regid=%d' % UNPRIV, '--clear-groups']
            self.uid = self.gid = UNPRIV
            cp = subprocess.run(self.prefix + ['true'], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
            if cp.returncode != 0:
                self.why_not = 'setpriv does not work here: %r' % cp.stderr[-300:]

    def require(self):
        if self.why_not:
            raise tmtest.Skip(self.why_not)

    def give(self, *paths):
        """Makes the paths (recursively) belong to the user treemig runs as."""
        if not self.root:
            return
        for p in paths:
            p = os.fsencode(p)
            os.lchown(p, self.uid, self.gid)
            for dp, dn, fn in os.walk(p):
                for n in dn + fn:
                    os.lchown(os.path.join(dp, n), self.uid, self.gid)

    def run(self, args, cwd=None, timeout=None):
        cmd = [os.fsencode(x) for x in self.prefix] + [os.fsencode(tmtest.TREEMIG)] + \
              [os.fsencode(a) for a in args]
        try:
            return subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout or tmtest.TIMEOUT)
        except subprocess.TimeoutExpired as e:
            fail('treemig timed out after %ss: %r' % (e.timeout, cmd))


def open_up(base):
    """Lets everyone reach base (mkdtemp makes it 0700)."""
    os.chmod(base, 0o755)


def restore_modes(base):
    """Makes every folder below base writable again so it can be removed."""
    base = os.fsencode(base)
    for dp, dn, fn in os.walk(base):
        for d in dn:
            p = os.path.join(dp, d)
            try:
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
            except OSError:
                pass


# --------------------------------------------------------------------------

def shrink_sparse(src, dst):
    """The pair's sparse files are 5 GiB, slow to build and remove. Shrunk
    to 64 MiB, holes kept (the main case checks the copy keeps them), with
    a few bytes of data inside; mtimes kept, so discovery finds the same."""
    for root, rel, size in ((src, b'edge/sparse_same', SPARSE + 7),
                            (dst, b'edge/sparse_same', SPARSE + 7),
                            (src, b'edge/sparse_src_only', SPARSE + 8)):
        p = os.path.join(os.fsencode(root), rel)
        st = os.lstat(p)
        os.truncate(p, size)
        fd = os.open(p, os.O_WRONLY)
        try:
            os.pwrite(fd, b'some data in the middle of holes', SPARSE // 2)
        finally:
            os.close(fd)
        os.utime(p, ns=(st.st_mtime_ns, st.st_mtime_ns))


def add_modes(src):
    """Adds src/modes/: files and folders with unusual permission bits
    (setuid, setgid, sticky, 0000, read-only folders with contents)."""
    t = treegen.T0 + 80000 * SEC
    m = os.path.join(os.fsencode(src), b'modes')
    files = [(b'suid', 0o4755), (b'sgid', 0o2755), (b'none', 0o000), (b'ro', 0o444),
             (b'exec', 0o711), (b'ro_dir/inner', 0o644), (b'ro_dir/deeper/x', 0o400),
             (b'sticky/y', 0o666), (b'private/z', 0o600)]
    dirs = [(b'ro_dir/deeper', 0o500), (b'ro_dir', 0o555), (b'sticky', 0o1777),
            (b'private', 0o700), (b'', 0o755)]
    for i, (rel, mode) in enumerate(files):
        p = os.path.join(m, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(rel * (i + 1))
        os.chmod(p, mode)
        os.utime(p, ns=(t + i, t + i))
    for i, (rel, mode) in enumerate(dirs):
        p = os.path.join(m, rel) if rel else m
        os.chmod(p, mode)
        os.utime(p, ns=(t + 100 + i, t + 100 + i))


def discover(db, src, dst, runner=None, rc=0, extra=()):
    run = runner.run if runner else tmtest.run
    cp = run(['discover', '--db', db, '--quiet'] + list(extra) + [src, dst])
    expect_rc(cp, rc, 'discover')
    return cp


def guard(R, name, fn, *a):
    """Runs a group of checks; an error outside its checks (building a
    tree, say) counts as one failure instead of ending the script."""
    try:
        fn(*a)
    except Exception:
        import traceback
        R.failed += 1
        print('FAIL %s: exception outside the checks\n%s' % (name, traceback.format_exc()))
        sys.stdout.flush()


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy')
    base = tempfile.mkdtemp(prefix='treemig-copy-', dir='/tmp')
    open_up(base)
    # the two large pairs on a tmpfs when there is one (fast to build and
    # remove); the small cases on /tmp
    trees = treegen.scratch_dir('treemig-copy-trees-')
    print('large trees under %s, small ones under %s' % (trees, base))
    try:
        for fn, where in ((run_main_case, trees), (run_no_overwrite, trees),
                          (run_refusals, base), (run_changed, base),
                          (run_verify_tamper, base), (run_readonly_dst, base),
                          (run_races, base)):
            guard(R, fn.__name__, fn, R, where)
    finally:
        for d in (base, trees):
            restore_modes(d)
            treegen.remove_tree(d)
    R.finish()


# --------------------------------------------------------------------------

def run_main_case(R, base):
    t = time.time()
    src, dst = treegen.build_pair(os.path.join(base, 'main'))
    shrink_sparse(src, dst)
    add_modes(src)
    exp = expect.expected(src, dst)
    final = final_copy_status(exp['src'])
    src_snap = snapshot(src)
    dst_before = snapshot(dst)
    print('built the pair in %.1fs: %d source nodes, %d destination nodes; %d to copy, %d of '
          'them skipped by the copy' % (
              time.time() - t, len(src_snap), len(dst_before),
              sum(1 for r in exp['src'].values() if r['copy_status'] == 'pending'),
              sum(1 for p, r in exp['src'].items()
                  if r['copy_status'] == 'pending' and final[p] == 'skipped')))
    db = os.path.join(base, 'main', 'state.db')
    ctx = {}

    def check_refused_partial():
        # copy on a state file whose discovery did not complete: killed
        # (phase discovering) and interrupted (phase suspended)
        for how, sig in (('killed', signal.SIGKILL), ('interrupted', signal.SIGINT)):
            pdb = os.path.join(base, 'main', 'partial-%s.db' % how)
            p = statecheck.Proc(['discover', '--db', pdb, '--quiet', '--workers', '1', src, dst])
            try:
                caught = statecheck.wait_until(p, lambda: statecheck.row_count(pdb) >= 2)
                if caught:
                    p.signal(sig)
                p.wait()
            finally:
                p.close()
            if not caught or p.rc == 0:
                raise tmtest.Skip('discover ended before it could be %s' % how)
            ph = phase(pdb)
            snap = {tb: tmtest.table_dump(pdb, tb) for tb in ('src_nodes', 'migration')}
            cp = tmtest.run(['copy', '--db', pdb, '--yes'])
            expect_rc(cp, 2, 'copy on a discovery %s (phase %s)' % (how, ph))
            if not cp.stderr.strip():
                fail('copy refused without a message')
            print('     discovery %s (phase %s): copy exits 2: %s' % (
                how, ph, cp.stderr.decode('utf-8', 'replace').strip().splitlines()[-1][:150]))
            cp = tmtest.run(['verify', '--db', pdb])
            expect_rc(cp, 2, 'verify on a discovery %s' % how)
            for tb in snap:
                expect_eq('table %s unchanged by the refused copy' % tb, snap[tb],
                          tmtest.table_dump(pdb, tb))
        fail_list('the destination after refused copies',
                  diff_snapshots(dst_before, snapshot(dst), 'the destination'))
    R.check('main: copy and verify refused (exit 2) before discovery completes',
            check_refused_partial)

    def check_discover():
        discover(db, src, dst)
        st = tmtest.status_json(db)
        tmtest.compare_status(exp['status'], st, exp['status_optional'])
        ctx['rows'] = tmtest.read_nodes(db, 'src_nodes')
        ctx['status'] = st
        cp = tmtest.run(['verify', '--db', db])
        expect_rc(cp, 2, 'verify before copy')
    R.check('main: discover exits 0 with the expected plan; verify before copy exits 2',
            check_discover)
    if 'rows' not in ctx:
        return

    def check_copy():
        t0 = time.time()
        cp = tmtest.run(['copy', '--db', db, '--yes'])
        ctx['copy_secs'] = time.time() - t0
        expect_rc(cp, 0, 'copy --yes (clashes are skipped, not failed)')
        ctx['copied'] = True
        print('     (copy took %.1fs)' % ctx['copy_secs'])
    R.check('main: copy --yes exits 0', check_copy)
    if 'copied' not in ctx:
        return

    dst_after = snapshot(dst)
    ctx['dst_after'] = dst_after

    def check_phase_status():
        expect_eq('phase after copy', 'copied', phase(db))
        st = tmtest.status_json(db)
        expect_eq('status phase', 'copied', st['phase'])
        want = expected_copy_counts(final, ctx['rows'])
        pending_before = ctx['status']['copy']['pending']
        newly_skipped = sum(1 for p, r in exp['src'].items()
                            if r['copy_status'] == 'pending' and final[p] == 'skipped')
        expect_eq('copy.successful = pending before the copy - skipped by it',
                  pending_before - newly_skipped, st['copy']['successful'])
        got = {k: st['copy'].get(k) for k in want}
        expect_eq('status --json copy counts', want, got)
        expect_eq('status --json src counts unchanged by the copy', ctx['status']['src'],
                  st['src'])
        expect_eq('status --json rounds unchanged by the copy', ctx['status']['rounds'],
                  st['rounds'])
    R.check('main: phase copied; status --json copy counts (pending 0, failed 0, successful '
            '= pending - skipped)', check_phase_status)

    R.check('main: every source row has its expected copy_status, nothing else changed',
            check_rows_after_copy, db, ctx['rows'], final)
    R.check('main: src_stats/copy_stats/dst_stats agree with the rows',
            tmtest.check_all_stats, db)

    def check_tree():
        want, ignore = expected_dst(src_snap, dst_before, final)
        fail_list('the destination differs from the expectation',
                  diff_snapshots(want, dst_after, 'the destination', ignore))
    R.check('main: the destination is exactly the expected tree (bytes, mtime ns, mode, '
            'symlink targets; dst-only nodes and clashes untouched)', check_tree)

    def check_diff_r():
        errs = compare_like_diff_r(src_snap, dst_after, final, dst_before)
        skipped = sorted(p for p, cs in final.items() if cs in ('skipped', 'excluded'))
        print('     left out of the comparison (skipped): %s' % b', '.join(skipped).decode(
            'utf-8', 'backslashreplace'))
        fail_list('diff -r of source and destination', errs)
    R.check('main: diff -r of source and destination: no difference but the skipped nodes',
            check_diff_r)

    def check_specials():
        errs = []
        for p in (b'/fifo', b'/fifo_both', b'/edge/sock'):
            sk = stat.S_IFMT(os.lstat(os.path.join(os.fsencode(src), p[1:])).st_mode)
            try:
                dk = stat.S_IFMT(os.lstat(os.path.join(os.fsencode(dst), p[1:])).st_mode)
            except FileNotFoundError:
                dk = None
            if dst_after.get(p) != src_snap[p] or sk != dk:
                errs.append('%r: %s of kind %r on the destination, %s of kind %r on '
                            'the source' % (p, fmt_node(dst_after.get(p)), dk,
                                            fmt_node(src_snap[p]), sk))
        for p in (b'/clash/fifo_vs_file', b'/only_dst_fifo'):
            if dst_before.get(p) != dst_after.get(p):
                errs.append('%r (a type clash, or destination only) changed on the '
                            'destination: %s' % (p, fmt_node(dst_after.get(p))))
        for p in (b'/links/dangling', b'/links/to_dir_src_only', b'/links/size_diff'):
            d = dst_after.get(p)
            if d is None or d.type != 'symlink' or d.data != src_snap[p].data:
                errs.append('%r: expected a symlink to %r, found %s' % (
                    p, src_snap[p].data, fmt_node(d)))
        for p in (b'/bad\xfe dir/x\x80y', b'/new\nline', b'/with space/another one',
                  b'/empty_only_src', b'/missing_tree/e'):
            if dst_after.get(p) != src_snap[p]:
                errs.append('%r: %s, source %s' % (p, fmt_node(dst_after.get(p)),
                                                   fmt_node(src_snap[p])))
        fail_list('special nodes', errs)
    R.check('main: FIFOs/sockets made again, clashes untouched; symlinks (dangling '
            'too) and odd names copied',
            check_specials)

    R.check('main: no .treemig.*.tmp left under either root', check_no_tmp, src, dst)

    def check_src_untouched():
        fail_list('the source changed during the copy',
                  diff_snapshots(src_snap, snapshot(src), 'the source'))
    R.check('main: the source is unchanged', check_src_untouched)

    def check_sparse():
        # README: "A sparse file keeps its holes (local to local)"
        s = os.lstat(os.path.join(src, b'edge/sparse_src_only'))
        d = os.lstat(os.path.join(dst, b'edge/sparse_src_only'))
        print('     sparse file of %d bytes: %d KiB allocated on the source, %d KiB on '
              'the destination' % (s.st_size, s.st_blocks // 2, d.st_blocks // 2))
        if s.st_blocks * 512 >= s.st_size // 2:
            raise tmtest.Skip('the source\'s file system did not keep the holes '
                              '(%d KiB allocated for %d bytes)' % (s.st_blocks // 2, s.st_size))
        expect_eq('size of the sparse copy', s.st_size, d.st_size)
        if d.st_blocks > s.st_blocks + 256:   # 128 KiB of slack for block rounding
            fail('the holes were not kept: %d KiB allocated on the destination for %d KiB '
                 'on the source' % (d.st_blocks // 2, s.st_blocks // 2))
    R.check('main: a sparse file keeps its holes', check_sparse)

    def check_second_copy():
        tabs = ('src_nodes', 'dst_nodes', 'src_stats', 'copy_stats', 'dst_stats')
        before = {tb: tmtest.table_dump(db, tb) for tb in tabs}
        cp = tmtest.run(['copy', '--db', db, '--yes'])
        expect_rc(cp, 0, 'a second copy on a copied state file')
        txt = text_of(cp).lower()
        if b'complete' not in txt:
            if re.search(rb'phase\s+copied', txt):
                print('     note: the second copy does not say "complete"; it prints the '
                      'status (phase copied)')
            else:
                fail('the second copy does not say the copy is complete: ' + tmtest.show(cp))
        for tb in tabs:
            expect_eq('table %s unchanged by the second copy' % tb, before[tb],
                      tmtest.table_dump(db, tb))
        fail_list('the destination after the second copy',
                  diff_snapshots(dst_after, snapshot(dst), 'the destination'))
        expect_eq('phase', 'copied', phase(db))
    R.check('main: a second copy says complete, exits 0, changes nothing', check_second_copy)

    def check_verify():
        cp = tmtest.run(['verify', '--db', db])
        expect_rc(cp, 0, 'verify')
        expect_eq('phase after verify', 'verified', phase(db))
        cp = tmtest.run(['verify', '--db', db, '--checksum'])
        expect_rc(cp, 0, 'verify --checksum')
        expect_eq('phase after verify --checksum', 'verified', phase(db))
        expect_eq('verify task_errors', [], task_errors(db, 'verify'))
        fail_list('the destination after verify',
                  diff_snapshots(dst_after, snapshot(dst), 'the destination'))
    R.check('main: verify and verify --checksum exit 0, phase verified, nothing changed',
            check_verify)


# --------------------------------------------------------------------------

def run_no_overwrite(R, base):
    src, dst = treegen.build_pair(os.path.join(base, 'noov'), big_count=300)
    shrink_sparse(src, dst)
    exp = expect.expected(src, dst)
    final = final_copy_status(exp['src'], no_overwrite=True)
    src_snap, dst_before = snapshot(src), snapshot(dst)
    db = os.path.join(base, 'noov', 'state.db')
    kept = sorted(p for p, r in exp['src'].items()
                  if r['copy_status'] == 'pending' and r['conflict'] and r['type'] != 'folder')

    def check():
        discover(db, src, dst)
        rows = tmtest.read_nodes(db, 'src_nodes')
        cp = tmtest.run(['copy', '--db', db, '--yes', '--no-overwrite', '--quiet'])
        expect_rc(cp, 0, 'copy --no-overwrite')
        after = snapshot(dst)
        errs = []
        for p in kept:
            if after.get(p) != dst_before[p]:
                errs.append('%r: conflicting destination node replaced: %s, was %s'
                            % (p, fmt_node(after.get(p)), fmt_node(dst_before[p])))
        fail_list('--no-overwrite kept %d conflicting nodes' % len(kept), errs)
        check_rows_after_copy(db, rows, final)
        want, ignore = expected_dst(src_snap, dst_before, final)
        fail_list('the destination differs from the expectation',
                  diff_snapshots(want, after, 'the destination', ignore))
        st = tmtest.status_json(db)
        expect_eq('status --json copy counts', expected_copy_counts(final, rows),
                  {k: st['copy'][k] for k in expected_copy_counts(final, rows)})
        tmtest.check_all_stats(db)
        check_no_tmp(dst)
        print('     kept %d conflicting nodes: %s' % (len(kept), b', '.join(kept).decode()))
    R.check('--no-overwrite: exit 0, conflicting destination files kept byte for byte and '
            'marked skipped, the rest copied', check)


# --------------------------------------------------------------------------

def run_refusals(R, base):
    U = Unpriv()

    def check_no_state():
        cwd = os.path.join(base, 'nostate')
        os.makedirs(cwd)
        for args in (['copy', '--yes'], ['copy', '--yes', '--db', 'none.db'], ['verify'],
                     ['retry']):
            cp = tmtest.run(args, cwd=cwd)
            expect_rc(cp, 2, '%s without a state file' % ' '.join(args))
            if not cp.stderr.strip():
                fail('%s: no message' % args)
        left = [n for n in os.listdir(cwd) if not n.endswith('.lock')]
        if left:
            fail('files created without a state file: %r' % left)
        locks = [n for n in os.listdir(cwd) if n.endswith('.lock')]
        if locks:
            print('     note: lock files left behind although there is no state file: %r'
                  % locks)
    R.check('copy/verify/retry without a state file exit 2 and create no state file',
            check_no_state)

    def check_failures_need_force():
        U.require()
        top = os.path.join(base, 'unr')
        src, dst, locked, dlocked = treegen.build_unreadable_pair(top)
        dbdir = os.path.join(top, 'db')
        os.mkdir(dbdir)
        U.give(dst, dbdir)
        db = os.path.join(dbdir, 'state.db')
        os.chmod(locked, 0)
        try:
            dst_before = snapshot(dst)
            cp = U.run(['discover', '--db', db, '--quiet', src, dst])
            expect_rc(cp, 3, 'discover with an unreadable source folder (uid %d)' % U.uid)
            snap = {tb: tmtest.table_dump(db, tb) for tb in ('src_nodes', 'dst_nodes')}
            cp = U.run(['copy', '--db', db, '--yes'])
            expect_rc(cp, 2, 'copy after a discovery with failures, without --force')
            if b'--force' not in cp.stderr:
                fail('the refusal does not mention --force: ' + tmtest.show(cp))
            for tb in snap:
                expect_eq('%s unchanged' % tb, snap[tb], tmtest.table_dump(db, tb))
            fail_list('the destination after the refused copy',
                      diff_snapshots(dst_before, snapshot(dst), 'the destination'))
            expect_eq('phase', 'discovered', phase(db))
        finally:
            os.chmod(locked, 0o755)
    R.check('copy after a discovery with failures: exit 2 without --force, nothing written',
            check_failures_need_force)


# --------------------------------------------------------------------------

def small_pair(top):
    """A small pair: a few files and folders, some on the destination."""
    src = os.path.join(os.fsencode(top), b'src')
    dst = os.path.join(os.fsencode(top), b'dst')
    S, D = treegen.TreeBuilder(src), treegen.TreeBuilder(dst)
    t = treegen.T0 + 70000 * SEC
    for i in range(5):
        S.file(b'd/f%d.txt' % i, data=b'file %d\n' % i * (i + 1), mtime=t + i)
    S.file(b'new_size', data=b'0123456789', mtime=t + 10)
    S.file(b'new_mtime', data=b'abcdefghij', mtime=t + 11)
    S.file(b'conf_size', data=b'source version', mtime=t + 12)
    D.file(b'conf_size', data=b'destination version', mtime=t + 12 - SEC)
    S.file(b'conf_mtime', data=b'source version', mtime=t + 13)
    D.file(b'conf_mtime', data=b'older version!', mtime=t + 13 - SEC)
    S.file(b'sub dir/x y', data=b'xy' * 100, mtime=t + 14)
    S.file(b'sub dir/deeper/z', data=b'z' * 5000, mtime=t + 15, mode=0o600)
    S.symlink(b'sub dir/link', b'deeper/z', mtime=t + 16)
    S.file(b'ro/inside', data=b'inside', mtime=t + 17)
    S.file(b'ro/sub/deep', data=b'deep', mtime=t + 18)
    S.file(b'ro/same', data=b'same', mtime=t + 19)
    D.file(b'ro/same', data=b'same', mtime=t + 19)
    D.file(b'ro/dst_only', data=b'dst only', mtime=t + 20)
    D.file(b'dst_only.txt', data=b'only here')
    S.finish()
    D.finish()
    return src, dst


def run_changed(R, base):
    top = os.path.join(base, 'changed')
    src, dst = small_pair(top)
    db = os.path.join(top, 'state.db')
    changed = {b'/new_size': 'size', b'/new_mtime': 'mtime', b'/conf_size': 'size',
               b'/conf_mtime': 'mtime'}

    def check():
        discover(db, src, dst)
        exp_rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
        final = final_copy_status(exp_rows, failing=set(changed))
        for p, how in changed.items():
            a = src + p
            st = os.lstat(a)
            if how == 'size':
                with open(a, 'ab') as f:
                    f.write(b' and more')
                os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + SEC))
        src_snap, dst_before = snapshot(src), snapshot(dst)
        cp = tmtest.run(['copy', '--db', db, '--yes'])
        expect_rc(cp, 3, 'copy with files changed since discovery')
        rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
        errs = []
        for p in changed:
            r = rows[p]
            err = r['error'] or b''
            if r['copy_status'] != 'failed' or b'changed since discovery' not in err:
                errs.append('%r (%s changed): copy_status %r, error %r' % (
                    p, changed[p], r['copy_status'], r['error']))
        te = task_errors(db, 'copy')
        for p in changed:
            if not any(x[1] == p and 'changed since discovery' in x[2] for x in te):
                errs.append('%r: no task_errors row saying "changed since discovery": %r'
                            % (p, te))
        fail_list('files changed since discovery', errs)
        after = snapshot(dst)
        # nothing torn under a real name: the new files are absent, the old
        # destination versions intact
        for p in (b'/new_size', b'/new_mtime'):
            if p in after:
                fail('%r was written although it changed since discovery: %s'
                     % (p, fmt_node(after[p])))
        for p in (b'/conf_size', b'/conf_mtime'):
            expect_eq('%r: the old destination version' % p, dst_before[p], after.get(p))
        check_no_tmp(dst)
        check_rows_after_copy(db, list(exp_rows.values()), final)
        want, ignore = expected_dst(src_snap, dst_before, final)
        fail_list('the destination', diff_snapshots(want, after, 'the destination', ignore))
        st = tmtest.status_json(db)
        expect_eq('copy.failed', 4, st['copy']['failed'])
        tmtest.check_all_stats(db)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 3, 'a second copy while 4 nodes are failed')
        no_duplicates(db)
        tmtest.check_all_stats(db)
        check_no_tmp(dst)
    R.check('changed since discovery (size; mtime only): exit 3, failed "changed since '
            'discovery", nothing torn, old destination versions intact', check)

    def check_verify_counts_failed():
        # README: "nodes whose copy failed count as mismatches"; verify
        # points at `review --list failed` for them
        cp = tmtest.run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 3, 'verify with 4 failed copies')
        out = text_of(cp).decode('utf-8', 'replace')
        # (the count, as the progress line or the summary words it)
        if not re.search(r'\b4 (mismatches|nodes do not match)\b', out):
            fail('verify does not count the 4 failed copies as mismatches: %r' % out[-600:])
        # each is named with why it was not checked
        unsaid = [p for p in changed if '%s: not checked: its copy failed'
                  % p.decode('utf-8', 'replace') not in out]
        if unsaid:
            fail('verify does not say that %r were not copied: %r' % (unsaid, out[-600:]))
        expect_eq('phase after a verify with failed copies', 'copied', phase(db))
        cp = tmtest.run(['review', '--db', db, '--list', 'failed'])
        expect_rc(cp, 0, 'review --list failed')
        missing = [p for p in changed if p not in cp.stdout]
        if missing:
            fail('review --list failed does not list %r: %r' % (missing, cp.stdout[-600:]))
    R.check('changed since discovery: verify counts the 4 failed copies as mismatches '
            '(exit 3, phase stays copied; review --list failed names them)',
            check_verify_counts_failed)

    def check_retry_new_version():
        # README: "retry ... redoes failed copies (a file that changed since
        # discovery is copied in its new version)"
        cp = tmtest.run(['retry', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'retry after the 4 changed files')
        cs = db_copy_status(db)
        expect_eq('copy_status of the changed files after retry',
                  {p: 'successful' for p in changed}, {p: cs[p] for p in changed})
        now_src, after = snapshot(src), snapshot(dst)
        errs = []
        for p in changed:
            if after.get(p) != now_src[p]:
                errs.append('%r: destination %s, source now %s' % (
                    p, fmt_node(after[p]) if p in after else 'missing', fmt_node(now_src[p])))
        fail_list('the changed files on the destination after retry (their new version)', errs)
        rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
        for p in changed:
            st = os.lstat(src + p)
            expect_eq('%r: the recorded size and mtime are the new version\'s' % p,
                      (st.st_size, st.st_mtime_ns), (rows[p]['size'], rows[p]['mtime']))
        cp = tmtest.run(['verify', '--db', db, '--checksum', '--quiet'])
        expect_rc(cp, 0, 'verify --checksum after retry')
        expect_eq('phase', 'verified', phase(db))
        no_duplicates(db)
        tmtest.check_all_stats(db)
        check_no_tmp(dst)
    R.check('changed since discovery: retry copies each changed file in its new version; '
            'verify --checksum then passes', check_retry_new_version)


# --------------------------------------------------------------------------

def run_verify_tamper(R, base):
    top = os.path.join(base, 'tamper')
    src, dst = small_pair(top)
    db = os.path.join(top, 'state.db')
    ctx = {}

    def check_setup():
        discover(db, src, dst)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        expect_rc(cp, 0, 'copy')
        expect_eq('phase', 'copied', phase(db))
        ctx['ok'] = True
    R.check('verify: setup (discover, copy)', check_setup)
    if not ctx:
        return

    def keep(rel):
        p = os.path.join(dst, rel)
        with open(p, 'rb') as f:
            data = f.read()
        return p, data, os.lstat(p)

    def restore(saved):
        p, data, st = saved
        with open(p, 'wb') as f:
            f.write(data)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    def expect_mismatch(args, rel, what, phase_after='copied'):
        cp = tmtest.run(['verify', '--db', db] + args)
        expect_rc(cp, 3, 'verify %s after %s' % (' '.join(args), what))
        if b'/' + rel not in text_of(cp):
            fail('verify does not name %r: %s' % (b'/' + rel, tmtest.show(cp)))
        te = task_errors(db, 'verify')
        if not any(x[1] == b'/' + rel for x in te):
            fail('no task_errors row (phase verify) for %r: %r' % (rel, te))
        expect_eq('phase after a verify that found %s' % what, phase_after, phase(db))
        print('     %s: %s' % (what, cp.stderr.decode('utf-8', 'replace').strip()
                               .replace('\n', ' | ')[:200]))

    def check_size():
        s = keep(b'd/f3.txt')
        with open(s[0], 'ab') as f:
            f.write(b'!')
        os.utime(s[0], ns=(s[2].st_atime_ns, s[2].st_mtime_ns))
        expect_mismatch([], b'd/f3.txt', 'a size change')
        restore(s)
        cp = tmtest.run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify after the file is restored')
        expect_eq('phase', 'verified', phase(db))
    R.check('verify: a size change on the destination: exit 3, path printed, phase copied',
            check_size)

    def check_mtime():
        s = keep(b'sub dir/x y')
        os.utime(s[0], ns=(s[2].st_atime_ns, s[2].st_mtime_ns + 1))
        expect_mismatch([], b'sub dir/x y', 'an mtime change (1 ns)')
        restore(s)
        cp = tmtest.run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify after the mtime is restored')
    R.check('verify: an mtime change on the destination (after a verified state): exit 3, '
            'path printed, phase back to copied', check_mtime)

    def check_content():
        s = keep(b'sub dir/deeper/z')
        data = bytearray(s[1])
        data[2500] ^= 0x20
        with open(s[0], 'r+b') as f:
            f.write(bytes(data))
        os.utime(s[0], ns=(s[2].st_atime_ns, s[2].st_mtime_ns))
        expect_mismatch(['--checksum'], b'sub dir/deeper/z', 'a same-size same-mtime '
                        'content change (--checksum)')
        # a plain verify cannot see contents: what --checksum found wrong
        # stays unverified until a --checksum says otherwise (issue 18)
        cp = tmtest.run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 3, 'verify without --checksum after --checksum found a difference')
        if b'--checksum' not in cp.stderr:
            fail('verify does not say why it cannot clear it: ' + tmtest.show(cp))
        restore(s)
        cp = tmtest.run(['verify', '--db', db, '--checksum', '--quiet'])
        expect_rc(cp, 0, 'verify --checksum after the contents are restored')
        expect_eq('phase', 'verified', phase(db))
    R.check('verify --checksum: a content change with the same size and mtime: exit 3, path '
            'printed, phase copied', check_content)

    def check_missing():
        s = keep(b'd/f0.txt')
        os.unlink(s[0])
        expect_mismatch([], b'd/f0.txt', 'a missing file')
        restore(s)
        os.utime(os.path.dirname(s[0]), ns=(os.lstat(src + b'/d').st_mtime_ns,) * 2)
        cp = tmtest.run(['verify', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'verify after the file is restored')
    R.check('verify: a file missing on the destination: exit 3, path printed', check_missing)

    def check_symlink_target():
        p = os.path.join(dst, b'sub dir', b'link')
        st = os.lstat(p)
        old = os.readlink(p)
        new = old[:-1] + (b'Z' if old[-1:] != b'Z' else b'Y')   # same length
        os.unlink(p)
        os.symlink(new, p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        try:
            expect_mismatch(['--checksum'], b'sub dir/link',
                            'a symlink retargeted (same length and mtime; --checksum)')
        finally:
            os.unlink(p)
            os.symlink(old, p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            # its folder's mtime too, which verify compares
            os.utime(os.path.dirname(p), ns=(os.lstat(src + b'/sub dir').st_mtime_ns,) * 2)
        cp = tmtest.run(['verify', '--db', db, '--checksum', '--quiet'])
        expect_rc(cp, 0, 'verify --checksum after the symlink is restored')
    R.check('verify --checksum: a symlink whose target changed (same length, same mtime): '
            'exit 3, path printed', check_symlink_target)


# --------------------------------------------------------------------------

def run_readonly_dst(R, base):
    U = Unpriv()

    def check():
        U.require()
        top = os.path.join(base, 'ro')
        src, dst = small_pair(top)
        dbdir = os.path.join(top, 'db')
        os.mkdir(dbdir)
        U.give(src, dst, dbdir)       # the source's 0600 file must be readable
        ro = os.path.join(dst, b'ro')
        if U.root:
            os.chown(ro, 0, 0)           # another owner's folder, 0755
        else:
            os.chmod(ro, 0o555)
        db = os.path.join(dbdir, 'state.db')
        cp = U.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        rows_before = tmtest.read_nodes(db, 'src_nodes')
        exp_rows = {r['path']: r for r in rows_before}
        failing = {b'/ro/inside', b'/ro/sub'}
        final = final_copy_status(exp_rows, failing=failing)
        if U.root:
            # another user's folder: its mode and mtime cannot be set, so it
            # is not as the source's: a failed node (issue 18)
            final[b'/ro'] = 'failed'

        src_snap, dst_before = snapshot(src), snapshot(dst)
        cp = U.run(['copy', '--db', db, '--yes'])
        expect_rc(cp, 3, 'copy into a folder the user may not write (uid %d)' % U.uid)
        rows = {r['path']: r for r in tmtest.read_nodes(db, 'src_nodes')}
        errs = []
        for p in sorted(failing):
            e = (rows[p]['error'] or b'').decode('utf-8', 'replace')
            if rows[p]['copy_status'] != 'failed' or 'permission denied' not in e.lower():
                errs.append('%r: copy_status %r, error %r' % (p, rows[p]['copy_status'], e))
        fail_list('nodes in the read-only folder', errs)
        check_rows_after_copy(db, rows_before, final)
        after = snapshot(dst)
        want, ignore = expected_dst(src_snap, dst_before, final)
        # the folder belongs to another user: its mode and mtime cannot be set
        ignore = set(ignore) | {(b'/ro', 'mode'), (b'/ro', 'mtime')}
        fail_list('the destination', diff_snapshots(want, after, 'the destination', ignore))
        expect_eq('the read-only folder', dst_before[b'/ro'], after[b'/ro'])
        check_no_tmp(dst)
        st = tmtest.status_json(db)
        expect_eq('copy.failed', 4 if U.root else 3, st['copy']['failed'])
        if U.root:
            e = (rows[b'/ro']['error'] or b'').decode('utf-8', 'replace')
            if 'set mode and mtime of /ro' not in e:
                fail('/ro failed without its reason: %r' % e)
        tmtest.check_all_stats(db)
        print('     %s' % cp.stderr.decode('utf-8', 'replace').strip().replace('\n', ' | ')[:200])
        print('     copy task_errors: %r'
              % [(p.decode(), m) for _, p, m in task_errors(db, 'copy')])
    R.check('read-only destination folder (uid 65534): exit 3, failed nodes with '
            '"permission denied", nothing else changed', check)


# --------------------------------------------------------------------------

def run_races(R, base):
    """The trees change between discover and copy."""
    t = treegen.T0 + 90000 * SEC

    def check_no_overwrite_new_file():
        top = os.fsencode(os.path.join(base, 'race1'))
        src, dst = os.path.join(top, b'src'), os.path.join(top, b'dst')
        S, D = treegen.TreeBuilder(src), treegen.TreeBuilder(dst)
        S.file(b'a/f', data=b'source version', mtime=t)
        S.file(b'a/g', data=b'g', mtime=t + 1)
        D.dir(b'a')
        S.finish()
        D.finish()
        db = os.path.join(top, b'state.db')
        discover(db, src, dst)
        D.file(b'a/f', data=b'a destination file made after discovery', mtime=t + 5)
        before = snapshot(dst)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--no-overwrite'])
        if cp.returncode not in (0, 3):
            fail('copy --no-overwrite: ' + tmtest.show(cp))
        after = snapshot(dst)
        check_no_tmp(dst)
        expect_eq('/a/g copied', snapshot(src)[b'/a/g'], after.get(b'/a/g'))
        if after.get(b'/a/f') != before[b'/a/f']:
            fail('copy --no-overwrite replaced a destination file made after discovery '
                 '(copy --help: "--no-overwrite keep every file that exists on the '
                 'destination"): now %s, was %s; exit %d, /a/f is %r in the state file'
                 % (fmt_node(after.get(b'/a/f')), fmt_node(before[b'/a/f']), cp.returncode,
                    db_copy_status(db).get(b'/a/f')))
    R.check('race: --no-overwrite keeps a destination file made after discovery',
            check_no_overwrite_new_file)

    def check_dst_symlink_swap():
        top = os.fsencode(os.path.join(base, 'race2'))
        src, dst = os.path.join(top, b'src'), os.path.join(top, b'dst')
        outside = os.path.join(top, b'outside')
        S, D, O = (treegen.TreeBuilder(src), treegen.TreeBuilder(dst),
                   treegen.TreeBuilder(outside))
        S.file(b'x/file1', data=b'one', mtime=t)
        S.file(b'x/sub/file2', data=b'two', mtime=t + 1)
        S.symlink(b'x/link', b'file1', mtime=t + 2)
        S.file(b'other', data=b'other', mtime=t + 3)
        D.dir(b'x')
        O.file(b'keep', data=b'outside the destination', mtime=t + 4)
        for B in (S, D, O):
            B.finish()
        db = os.path.join(top, b'state.db')
        discover(db, src, dst)
        os.rmdir(os.path.join(dst, b'x'))
        os.symlink(outside, os.path.join(dst, b'x'))
        out_before = snapshot(outside)
        cp = tmtest.run(['copy', '--db', db, '--yes'])
        expect_rc(cp, 3, 'copy with a destination folder swapped for a symlink')
        fail_list('the folder the symlink points at',
                  diff_snapshots(out_before, snapshot(outside), 'the outside folder'))
        expect_eq('/x on the destination', 'symlink', node_of(os.path.join(dst, b'x')).type)
        expect_eq('/other copied', snapshot(src)[b'/other'], snapshot(dst).get(b'/other'))
        cs = db_copy_status(db)
        expect_eq('copy_status of the nodes below the swapped folder',
                  ['failed'] * 4, [cs[p] for p in (b'/x/file1', b'/x/sub', b'/x/link',
                                                   b'/x/sub/file2')])
    R.check('race: a destination folder swapped for a symlink after discovery: nothing '
            'written through it, its nodes failed, exit 3', check_dst_symlink_swap)

    def check_src_symlink_swap():
        top = os.fsencode(os.path.join(base, 'race3'))
        src, dst = os.path.join(top, b'src'), os.path.join(top, b'dst')
        decoy = os.path.join(top, b'decoy')
        S, D, O = (treegen.TreeBuilder(src), treegen.TreeBuilder(dst),
                   treegen.TreeBuilder(decoy))
        S.file(b'y/secret', data=b'public!', mtime=t)
        O.file(b'secret', data=b'SECRET!', mtime=t)     # same size and mtime
        D.dir(b'.')
        for B in (S, D, O):
            B.finish()
        db = os.path.join(top, b'state.db')
        discover(db, src, dst)
        os.rename(os.path.join(src, b'y'), os.path.join(top, b'y_moved'))
        os.symlink(decoy, os.path.join(src, b'y'))
        cp = tmtest.run(['copy', '--db', db, '--yes'])
        if cp.returncode == 0:
            fail('copy exits 0 although the source folder became a symlink: ' + tmtest.show(cp))
        d = os.path.join(dst, b'y', b'secret')
        if os.path.lexists(d):
            with open(d, 'rb') as f:
                got = f.read()
            fail('a file was read through a source symlink: %r' % got)
        check_no_tmp(dst)
    R.check('race: a source folder swapped for a symlink after discovery: nothing read '
            'through it', check_src_symlink_swap)


if __name__ == '__main__':
    main()
