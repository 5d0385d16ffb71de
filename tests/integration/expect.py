"""Independent computation of what `treemig discover` must record.

Walks both trees breadth-first with os.scandir/os.lstat on bytes paths and
applies the rules of docs/state-file.md. Nothing here uses treemig.

expected(src, dst, excludes=(), specials=True) returns a dict (specials:
special files are copied, as without discover --no-specials):
  'src': {path: row}   path is the root-relative bytes path ('/' for the root)
  'dst': {path: row}
  'status': the expected `treemig status --json` object
with row = dict(type, size, mtime, mode, depth, traversal_status,
copy_status (source only), conflict, src_path (destination only)).
"""

import os
import re
import stat
from collections import Counter

FOLDER, FILE, SYMLINK, OTHER = 'folder', 'file', 'symlink', 'other'


# --------------------------------------------------------------------------
# fnmatch(3) with FNM_PATHNAME on bytes ('*', '?' and brackets never match
# '/'; backslash escapes the next character).

def _glob_regex(glob):
    i, n, out = 0, len(glob), []
    while i < n:
        c = glob[i:i + 1]
        i += 1
        if c == b'*':
            out.append(b'[^/]*')
        elif c == b'?':
            out.append(b'[^/]')
        elif c == b'\\' and i < n:
            out.append(re.escape(glob[i:i + 1]))
            i += 1
        elif c == b'[':
            j = i
            neg = False
            if j < n and glob[j:j + 1] in (b'!', b'^'):
                neg = True
                j += 1
            k = j
            if k < n and glob[k:k + 1] == b']':   # ']' first is literal
                k += 1
            while k < n and glob[k:k + 1] != b']':
                k += 1
            if k >= n:                 # no closing bracket: literal '['
                out.append(re.escape(b'['))
                continue
            body = glob[j:k]
            i = k + 1
            items, m = [], 0
            while m < len(body):
                ch = body[m:m + 1]
                if ch == b'\\' and m + 1 < len(body):
                    ch = body[m + 1:m + 2]
                    m += 1
                if m + 2 < len(body) and body[m + 1:m + 2] == b'-':
                    hi = body[m + 2:m + 3]
                    items.append(re.escape(ch) + b'-' + re.escape(hi))
                    m += 3
                else:
                    items.append(re.escape(ch))
                    m += 1
            cls = b''.join(items)
            if neg:
                out.append(b'(?!/)[^' + cls + b']')
            else:
                out.append(b'(?!/)[' + cls + b']')
        else:
            out.append(re.escape(c))
    return re.compile(b'\\A' + b''.join(out) + b'\\Z', re.DOTALL)


def excluded(path, name, excludes):
    """True when a node (root-relative bytes path, bytes name) matches one of
    the exclude globs (str or bytes)."""
    for g in excludes:
        g = os.fsencode(g) if isinstance(g, str) else g
        subject = path if b'/' in g else name
        if _glob_regex(g).match(subject):
            return True
    return False


# --------------------------------------------------------------------------

def node_type(st):
    m = st.st_mode
    if stat.S_ISDIR(m):
        return FOLDER
    if stat.S_ISREG(m):
        return FILE
    if stat.S_ISLNK(m):
        return SYMLINK
    return OTHER


def node_size(st, abspath):
    t = node_type(st)
    if t == FILE:
        return st.st_size
    if t == SYMLINK:
        return len(os.readlink(abspath))
    return 0


def copy_mode(abspath, mode):
    """The mode treemig's copy (without --owner) gives the file at abspath
    whose mode is mode: a set-user-ID (set-group-ID) bit is dropped when
    the file's owner (group) is not the user (group) running treemig."""
    st = os.lstat(abspath)
    if st.st_uid != os.geteuid():
        mode &= ~0o4000
    if st.st_gid != os.getegid():
        mode &= ~0o2000
    return mode


def special_copied(st, specials):
    """The copy makes the special file of stat st again: not --no-specials,
    and a FIFO or socket, or a device as root."""
    m = st.st_mode
    if not specials:
        return False
    if stat.S_ISFIFO(m) or stat.S_ISSOCK(m):
        return True
    return (stat.S_ISCHR(m) or stat.S_ISBLK(m)) and os.geteuid() == 0


def _row(abspath, depth):
    st = os.lstat(abspath)
    t = node_type(st)
    return {
        'type': t,
        'size': node_size(st, abspath),
        'mtime': st.st_mtime_ns,
        # a special file's mode holds its kind too
        'mode': st.st_mode & (0o177777 if t == OTHER else 0o7777),
        'depth': depth,
        'traversal_status': None,
        'conflict': None,
    }


def _list(abspath):
    """Names in a folder, or None when it cannot be listed."""
    try:
        with os.scandir(abspath) as it:
            return sorted(e.name for e in it)
    except OSError:
        return None


def _join(rel, name):
    return (rel if rel != b'/' else b'') + b'/' + name


def expected(src, dst, excludes=(), specials=True):
    src = os.fsencode(src)
    dst = os.fsencode(dst)
    S, D = {}, {}

    sroot = _row(src, 0)
    droot = _row(dst, 0)
    sroot.update(copy_status='already_existed')
    droot.update(src_path=b'/')
    S[b'/'] = sroot
    D[b'/'] = droot

    # Work list of (rel path, dst twin listable?, below a type clash?) for
    # source folders, BFS. Below a folder whose twin is a file, what would
    # be copied is skipped when discovery completes.
    level = [(b'/', True, False)]
    src_listed_depths = set()
    dst_listed_depths = set()
    while level:
        nxt = []
        for rel, dst_twin, blocked in level:
            sabs = src + (rel if rel != b'/' else b'')
            dabs = dst + (rel if rel != b'/' else b'')
            srow = S[rel]
            depth = srow['depth']
            src_listed_depths.add(depth)
            snames = _list(sabs)
            if snames is None:
                srow['traversal_status'] = 'failed'
                if dst_twin:
                    # not compared: children never listed
                    D[rel]['traversal_status'] = 'failed'
                continue
            srow['traversal_status'] = 'successful'
            dnames = None
            if dst_twin:
                dst_listed_depths.add(depth)
                dnames = _list(dabs)
                if dnames is None:
                    D[rel]['traversal_status'] = 'failed'
                else:
                    D[rel]['traversal_status'] = 'successful'
            dset = set(dnames or ())
            for name in snames:
                p = _join(rel, name)
                r = _row(sabs + b'/' + name, depth + 1)
                r['copy_status'] = None
                S[p] = r
                have_dst = dnames is not None and name in dset
                d = _row(dabs + b'/' + name, depth + 1) if have_dst else None
                if d is not None:
                    d['src_path'] = p
                    D[p] = d
                if excluded(p, name, excludes):
                    r['traversal_status'] = 'excluded'
                    r['copy_status'] = 'excluded'
                    if d is not None:
                        d['traversal_status'] = 'excluded'
                    continue
                r['traversal_status'] = None if r['type'] == FOLDER else 'successful'
                other_copied = r['type'] == OTHER and special_copied(
                    os.lstat(sabs + b'/' + name), specials)
                if d is None:
                    r['copy_status'] = ('skipped' if r['type'] == OTHER and
                                        not other_copied else 'pending')
                    if blocked and r['copy_status'] == 'pending':
                        r['copy_status'] = 'skipped'
                        r['error'] = b'its folder is a file on the destination'
                    if r['type'] == FOLDER:
                        nxt.append((p, False, blocked))
                    continue
                if d['type'] != r['type']:
                    r['conflict'] = d['conflict'] = 'type'
                    r['copy_status'] = 'skipped'
                    d['traversal_status'] = 'successful'
                    if r['type'] == FOLDER:
                        nxt.append((p, False, True))
                    continue
                t = r['type']
                if t == FOLDER:
                    # another mode: conflict attrs, the copy sets it
                    c = 'attrs' if r['mode'] != d['mode'] else None
                    r['conflict'] = d['conflict'] = c
                    r['copy_status'] = 'pending' if c else 'already_existed'
                    d['traversal_status'] = None   # set when listed
                    nxt.append((p, True, False))
                elif t == OTHER and not other_copied:
                    r['copy_status'] = 'skipped'
                    d['traversal_status'] = 'successful'
                elif t == OTHER:
                    d['traversal_status'] = 'successful'
                    if stat.S_IFMT(r['mode']) != stat.S_IFMT(d['mode']):
                        r['conflict'] = d['conflict'] = 'type'
                        r['copy_status'] = 'skipped'
                        continue
                    c = ('dst_newer' if d['mtime'] > r['mtime'] else
                         'mtime' if d['mtime'] < r['mtime'] else
                         'attrs' if r['mode'] != d['mode'] else None)
                    r['conflict'] = d['conflict'] = c
                    r['copy_status'] = 'pending' if c else 'already_existed'
                else:
                    d['traversal_status'] = 'successful'
                    if r['size'] != d['size']:
                        c = 'size'
                    elif d['mtime'] > r['mtime']:
                        c = 'dst_newer'
                    elif d['mtime'] < r['mtime']:
                        c = 'mtime'
                    elif t == FILE and copy_mode(sabs + b'/' + name,
                                                 r['mode']) != d['mode']:
                        c = 'attrs'   # same content, another mode
                    else:
                        c = None
                    r['conflict'] = d['conflict'] = c
                    r['copy_status'] = 'pending' if c else 'already_existed'
            if dnames is not None:
                sset = set(snames)
                for name in dnames:
                    if name in sset:
                        continue
                    p = _join(rel, name)
                    d = _row(dabs + b'/' + name, depth + 1)
                    d['traversal_status'] = 'not_on_src'
                    d['src_path'] = None
                    D[p] = d
        level = nxt

    for rows in (S, D):
        for p, r in rows.items():
            assert r['traversal_status'] is not None, (p, r)

    # Fields that `status --json` may carry beyond the documented ones; when
    # present they must have these values.
    optional = {
        ('roots',): {'src': os.fsdecode(src), 'dst': os.fsdecode(dst)},
        ('copy', 'excluded'): sum(1 for r in S.values()
                                  if r['depth'] > 0 and r['copy_status'] == 'excluded'),
    }

    return {
        'src': S,
        'dst': D,
        'status_optional': optional,
        # Rounds are numbered from 0: round n lists the folders at depth n,
        # so the last round started is the deepest listed depth.
        'status': status_of(S, D, max(src_listed_depths),
                            max(dst_listed_depths) if dst_listed_depths else 0),
    }


def status_of(S, D, src_rounds, dst_rounds):
    """The `status --json` object expected for these rows."""
    def tree(rows, last_key):
        c = {'folders': 0, 'files': 0, 'symlinks': 0, 'other': 0, 'bytes': 0,
             'pending': 0, 'failed': 0, last_key: 0}
        key = {FOLDER: 'folders', FILE: 'files', SYMLINK: 'symlinks', OTHER: 'other'}
        for r in rows.values():
            if r['depth'] == 0:
                continue
            c[key[r['type']]] += 1
            if r['type'] == FILE:
                c['bytes'] += r['size']
            ts = r['traversal_status']
            if ts == 'pending':
                c['pending'] += 1
            elif ts == 'failed':
                c['failed'] += 1
            elif ts == last_key:
                c[last_key] += 1
        return c

    copy = {'pending': 0, 'in_progress': 0, 'successful': 0, 'already_existed': 0,
            'failed': 0, 'skipped': 0, 'conflicts': 0, 'bytes_pending': 0}
    for r in S.values():
        if r['depth'] == 0:
            continue
        cs = r['copy_status']
        if cs in copy:
            copy[cs] += 1
        if r['conflict'] is not None:
            copy['conflicts'] += 1
        if cs == 'pending' and r['type'] == FILE:
            copy['bytes_pending'] += r['size']
    return {
        'phase': 'discovered',
        'rounds': {'src': src_rounds, 'dst': dst_rounds},
        'src': tree(S, 'excluded'),
        'dst': tree(D, 'not_on_src'),
        'copy': copy,
    }


def stats_of(rows, table):
    """Expected content (depth > 0) of src_stats, copy_stats or dst_stats as
    a dict key -> (count, bytes); rows are the source rows for src_stats and
    copy_stats, the destination rows for dst_stats."""
    c = Counter()
    b = Counter()
    for r in rows.values():
        if r['depth'] == 0:
            continue
        k = stats_key(r, table)
        c[k] += 1
        b[k] += r['size']
    return {k: (c[k], b[k]) for k in c}


def stats_key(r, table):
    if table == 'copy_stats':
        return (r['depth'], r['type'], r['copy_status'], 0 if r['conflict'] is None else 1)
    return (r['depth'], r['type'], r['traversal_status'])


if __name__ == '__main__':
    # Self-check of the glob matcher and of the expectation on the test tree.
    import shutil
    import sys
    import tempfile
    import treegen

    G = [
        (b'/a/b*', b'/a/b', True), (b'/a/b*', b'/a/bc', True),
        (b'/a/b*', b'/a/b/c', False), (b'/a/*/c', b'/a/x/c', True),
        (b'/a/*/c', b'/a/x/y/c', False), (b'/a/?', b'/a/x', True),
        (b'/a/?', b'/a//', False), (b'/a[/]b', b'/a/b', False),
        (b'/x/[a-c]z', b'/x/bz', True), (b'/x/[!a-c]z', b'/x/bz', False),
        (b'/x/[!a-c]z', b'/x/dz', True), (b'/x/\\*', b'/x/*', True),
        (b'/x/\\*', b'/x/a', False), (b'/x/[ab', b'/x/[ab', True),
        (b'/x/[]]', b'/x/]', True), (b'*.tmp', b'a.tmp', True),
        (b'*.tmp', b'a.tmpx', False), (b'*', b'new\nline', True),
    ]
    bad = 0
    for g, s, want in G:
        got = bool(_glob_regex(g).match(s))
        if got != want:
            print('glob %r on %r: expected %s, got %s' % (g, s, want, got))
            bad += 1
    base = tempfile.mkdtemp(prefix='expect-', dir='/tmp')
    try:
        s, d = treegen.build_pair(base)
        e = expected(s, d)
        import json
        print(json.dumps(e['status'], indent=1))
        for side in ('src', 'dst'):
            for p in sorted(e[side]):
                if p.startswith(b'/big/'):
                    continue
                r = e[side][p]
                print(side, p, r['type'], r['size'], r['traversal_status'],
                      r.get('copy_status'), r['conflict'], r.get('src_path'))
        s2, d2 = treegen.build_exclude_pair(os.path.join(base, 'ex'))
        e2 = expected(s2, d2, ['*.tmp', 'node_modules', '/docs/draft*', '/a/b/skip'])
        print(json.dumps(e2['status']))
        for side in ('src', 'dst'):
            for p in sorted(e2[side]):
                r = e2[side][p]
                print(side, p, r['type'], r['traversal_status'], r.get('copy_status'),
                      r['conflict'])
    finally:
        shutil.rmtree(base)
    sys.exit(1 if bad else 0)
