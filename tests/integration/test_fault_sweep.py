#!/usr/bin/env python3
"""The fault sweep: every adapter operation fails in turn, then a run
without the fault must finish the migration correctly.

On a small local pair (about 30 nodes: nested folders, an empty folder, a
symlink and a dangling one, files of several modes, a file that conflicts
with the destination's, one the destination already has, a folder the
destination already has with another mtime), a clean run first learns how
often each operation is called (TREEMIG_FAULT_REPORT=1 prints the counts of
the fault layer, docs/adapters.md); an operation of the lists below that a
clean run never calls is a failure (its faults would go untested). Then,
for every operation on the side where it is called (source: list, stat,
open_read, read, fstat, readlink; destination: list, stat, open_read,
read, readlink (verify reads the destination), open_write, write,
copy_from, commit, mkdir, symlink, set_attr, sync) and N = 1 .. min(K,
calls), with the error chosen
by N (eio, eagain: retried, eacces, enospc: fatal, ethrottled: waited
for), plus one sticky run
(op@1=eio+) per operation, it runs discover, copy and verify with the fault
(TREEMIG_FAULT_SRC / TREEMIG_FAULT_DST, so every process of the run gets
it) until one exits non-zero. Each must

  - exit 0 (the fault was retried or did not matter), 3 with the failure
    recorded (status --json counts or task_errors, with the injected
    error's text), or 1 with a message on stderr; never a signal or a
    sanitizer report;
  - have injected the fault: every process of the run prints the counts of
    its fault layer (TREEMIG_FAULT_REPORT=1), and their fired= must add up
    to 1 or more (N is at most the calls of a clean run);

and then the resume without the fault (discover if the discovery stopped,
retry, copy, verify) must end with verify exit 0 and the destination equal
to the source, diff -r style: types, sizes, contents, mtimes (ns), modes,
symlink targets (the root's own mtime and mode are not the copy's to set).

read and write are swept with the rule no_copy_from on the destination
(the engine then reads and writes instead of calling copy_from).

Also: `discover fault:list@2=eacces:SRC fault::DST` stores the roots
without the prefix, records the injected fault, is resumed without it,
and a malformed rule is refused (exit 2) even on a complete migration.

Env: TREEMIG_FAULT_K (default 5) caps N; TREEMIG_FAULT_OPS restricts the
operations (comma-separated, e.g. "dst:set_attr,src:list").

Run:  python3 tests/integration/test_fault_sweep.py
Prints one line per operation and `N passed, M failed`.
"""

import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest  # noqa: E402
from tmtest import fail  # noqa: E402

SRC_OPS = ['list', 'stat', 'open_read', 'read', 'fstat', 'readlink']
DST_OPS = ['list', 'stat', 'open_read', 'read', 'readlink', 'open_write', 'write',
           'copy_from', 'commit', 'mkdir', 'symlink', 'set_attr', 'sync']
NEEDS_RW = {'read', 'write'}          # swept with no_copy_from
ERRORS = ['eio', 'eagain', 'eacces', 'enospc', 'ethrottled']
T0 = 1600000000 * 10**9
COMMON = ['--quiet', '--log-level', 'off', '--udp-level', 'off']


def build_pair(top):
    src = os.path.join(top, 'src')
    dst0 = os.path.join(top, 'dst0')
    os.makedirs(src)
    os.makedirs(dst0)
    n = [0]

    def f(root, rel, data, mode=0o644, mtime=None):
        p = os.path.join(root, rel)
        with open(p, 'wb') as fh:
            fh.write(data)
        os.chmod(p, mode)
        n[0] += 1
        t = mtime if mtime is not None else T0 + n[0] * 1000003
        os.utime(p, ns=(t, t))

    for d in ('a', 'a/b', 'a/b/c', 'a/b/c/d', 'e', 'priv', 'wide'):
        os.makedirs(os.path.join(src, d))
    f(src, 'top.txt', b'top\n')
    f(src, 'exec.sh', b'#!/bin/sh\necho hi\n', 0o755)
    f(src, 'big.bin', bytes(range(256)) * 700)         # 175 KiB
    f(src, 'a/one.txt', b'one\n' * 10)
    f(src, 'a/two.txt', b'two\n' * 1000)
    f(src, 'a/b/three.txt', b'three\n')
    f(src, 'a/b/c/four.txt', b'four\n')
    f(src, 'a/b/c/d/five.txt', b'five\n', 0o600)
    f(src, 'priv/secret', b'secret\n', 0o600)
    for i in range(8):
        f(src, 'wide/w%02d' % i, b'w' * (i * 37))
    os.symlink('a/one.txt', os.path.join(src, 'link'))
    os.symlink('no/such/target', os.path.join(src, 'a/dangling'))
    os.utime(os.path.join(src, 'link'), ns=(T0 + 5, T0 + 5), follow_symlinks=False)
    os.utime(os.path.join(src, 'a/dangling'), ns=(T0 + 6, T0 + 6),
             follow_symlinks=False)
    # a file the destination has in another version, one it already has
    f(src, 'conflict.txt', b'the source version\n', mtime=T0 + 77)
    f(dst0, 'conflict.txt', b'old\n', mtime=T0 + 66)
    f(src, 'same.txt', b'same\n', mtime=T0 + 88)
    f(dst0, 'same.txt', b'same\n', mtime=T0 + 88)
    # one it has with another mode only (set in place: set_attr), and a
    # folder it has with another mode
    f(src, 'mode.txt', b'mode\n', 0o640, mtime=T0 + 99)
    f(dst0, 'mode.txt', b'mode\n', 0o600, mtime=T0 + 99)
    os.makedirs(os.path.join(dst0, 'e'))
    os.chmod(os.path.join(dst0, 'e'), 0o700)
    # a folder the destination already has, with another mtime
    os.makedirs(os.path.join(dst0, 'a', 'b'))
    os.utime(os.path.join(dst0, 'a', 'b'), ns=(T0 + 11, T0 + 11))
    os.utime(os.path.join(dst0, 'a'), ns=(T0 + 12, T0 + 12))
    os.chmod(os.path.join(src, 'priv'), 0o700)
    os.chmod(os.path.join(src, 'wide'), 0o750)
    for d, k in (('a/b/c/d', 1), ('a/b/c', 2), ('a/b', 3), ('a', 4), ('e', 5),
                 ('priv', 6), ('wide', 7)):
        os.utime(os.path.join(src, d), ns=(T0 + k * 999, T0 + k * 999))
    return src, dst0


def snapshot(root):
    """{relpath: (type, size, mtime_ns, mode, content or target)}"""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                v = ('symlink', None, st.st_mtime_ns, None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                v = ('folder', None, st.st_mtime_ns, stat.S_IMODE(st.st_mode), None)
            elif stat.S_ISREG(st.st_mode):
                with open(p, 'rb') as fh:
                    data = fh.read()
                v = ('file', st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), data)
            else:
                v = ('other', None, None, None, None)
            out[rel] = v
    return out


def diff(want, got):
    errs = []
    for p in sorted(set(want) | set(got)):
        w, g = want.get(p), got.get(p)
        if w is None:
            errs.append('%s: only on the destination (%s)' % (p, g[0]))
        elif g is None:
            errs.append('%s: missing on the destination' % p)
        elif w != g:
            names = ('type', 'size', 'mtime', 'mode', 'content')
            what = [names[i] for i in range(5) if w[i] != g[i]]
            errs.append('%s: %s differ (source %r, destination %r)' % (
                p, '/'.join(what), w[:4], g[:4]))
    return errs


def run(args, env_extra=None):
    env = dict(os.environ)
    for k in ('TREEMIG_FAULT_SRC', 'TREEMIG_FAULT_DST', 'TREEMIG_FAULT_REPORT'):
        env.pop(k, None)
    env.update(env_extra or {})
    import subprocess
    cmd = [tmtest.TREEMIG] + args
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        fail('timed out: %r (env %r)' % (cmd, env_extra))


def text(cp):
    return (cp.stdout + cp.stderr).decode('utf-8', 'replace')


def no_crash(cp, what):
    t = text(cp)
    if cp.returncode < 0 or cp.returncode > 5:
        fail('%s: killed or crashed (exit %d): %s' % (what, cp.returncode, t[-1500:]))
    if 'Sanitizer' in t or 'runtime error:' in t:
        fail('%s: sanitizer report: %s' % (what, t[-3000:]))


COUNT_RE = re.compile(r'treemig fault counts (\S+): (.*)')


def counts_of(cp):
    out = {}
    for m in COUNT_RE.finditer(cp.stderr.decode('utf-8', 'replace')):
        c = dict(kv.split('=') for kv in m.group(2).split())
        out.setdefault(m.group(1), []).append({k: int(v) for k, v in c.items()})
    return out


def fresh_dst(dst0, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(dst0, dst, symlinks=True)
    for dirpath, dirs, _ in os.walk(dst0):
        for d in dirs:
            p = os.path.join(dirpath, d)
            st = os.lstat(p)
            os.utime(os.path.join(dst, os.path.relpath(p, dst0)),
                     ns=(st.st_atime_ns, st.st_mtime_ns))


def task_errors(db):
    conn = tmtest.connect(db)
    try:
        return [(r[0].decode('utf-8', 'replace'), (r[1] or b'').decode('utf-8', 'replace'))
                for r in conn.execute('SELECT phase, message FROM task_errors')]
    finally:
        conn.close()


def phase_of(db):
    m = tmtest.migration(db)
    return m.get('phase'), m.get('suspended_from') or ''


def learn_counts(src, dst0, dst, db):
    """A clean run with counting layers: calls per (side, op), the max over
    discover, copy and verify, with and without copy_from."""
    total = {}
    for rules in ('', 'no_copy_from'):
        fresh_dst(dst0, dst)
        for ext in ('', '-wal', '-shm', '.yaml', '.lock'):
            if os.path.exists(db + ext):
                os.unlink(db + ext)
        env = {'TREEMIG_FAULT_REPORT': '1'}
        if rules:
            env['TREEMIG_FAULT_DST'] = rules
        for args in (['discover', '--db', db, '--workers', '2', '--retries', '2'] +
                     COMMON + [src, dst],
                     ['copy', '--db', db, '--yes'] + COMMON,
                     ['verify', '--db', db, '--checksum'] + COMMON):
            cp = run(args, env)
            if cp.returncode != 0:
                fail('clean run: %s exited %d: %s' % (args[0], cp.returncode,
                                                      text(cp)[-1500:]))
            for label, lst in counts_of(cp).items():
                side = 'src' if label == src else 'dst'
                for c in lst:
                    for op, v in c.items():
                        k = (side, op, bool(rules))
                        total[k] = max(total.get(k, 0), v)
        errs = diff(snapshot(src), snapshot(dst))
        errs = [e for e in errs if not e.startswith('.:')]
        if errs:
            fail('clean run: the destination differs:\n    ' + '\n    '.join(errs))
    return total


def one_case(src, dst0, dst, db, side, op, rule, stats):
    fresh_dst(dst0, dst)
    for ext in ('', '-wal', '-shm', '.yaml', '.lock'):
        if os.path.exists(db + ext):
            os.unlink(db + ext)
    key = 'TREEMIG_FAULT_SRC' if side == 'src' else 'TREEMIG_FAULT_DST'
    env = {key: rule + (',no_copy_from' if op in NEEDS_RW and side == 'dst' else ''),
           'TREEMIG_FAULT_REPORT': '1'}
    if op in NEEDS_RW and side == 'src':
        env['TREEMIG_FAULT_DST'] = 'no_copy_from'
    label = '%s %s' % (side, env[key])
    root = src if side == 'src' else dst
    outcome = 'ok'
    fired = 0
    ran = []
    for args in (['discover', '--db', db, '--workers', '2', '--retries', '2'] +
                 COMMON + [src, dst],
                 ['copy', '--db', db, '--yes'] + COMMON,
                 ['verify', '--db', db, '--checksum'] + COMMON):
        cp = run(args, env)
        no_crash(cp, '%s: %s' % (label, args[0]))
        ran.append(args[0])
        # every process that ran wrapped the faulted side in a fault layer,
        # which prints its counts when it is closed (fired= injected faults)
        layers = counts_of(cp).get(root)
        if not layers:
            fail('%s: %s printed no fault counts for %s (was the fault layer installed?): %s'
                 % (label, args[0], root, text(cp)[-800:]))
        fired += sum(c.get('fired', 0) for c in layers)
        rc = cp.returncode
        if rc == 0:
            continue
        t = text(cp)
        if rc == 3:
            errs = task_errors(db) if os.path.exists(db) else []
            st = json.loads(run(['status', '--db', db, '--json']).stdout)
            failed = (st['src']['failed'] + st['dst']['failed'] + st['copy']['failed'])
            if not errs and not failed:
                fail('%s: %s exit 3 but nothing recorded: %s' % (label, args[0], t[-800:]))
            if args[0] != 'verify' and not any('fault injected' in m or
                                               'changed since' in m or
                                               'could not' in m or
                                               'not copied' in m for _, m in errs):
                fail('%s: %s exit 3, but no task error names the fault: %r'
                     % (label, args[0], errs[:5]))
            outcome = '%s=3' % args[0]
        elif rc == 1:
            msg = cp.stderr.decode('utf-8', 'replace').strip().splitlines()
            msg = [m for m in msg if m.startswith('treemig ')]
            if not msg or len(msg[-1].split(': ', 1)) < 2 or not msg[-1].split(': ', 1)[1]:
                fail('%s: %s exit %d without a message: %s' % (label, args[0], rc, t[-800:]))
            if not re.search(r' /|fault injected|\b%s\b' % op, msg[-1]):
                fail('%s: %s exit %d, the message names neither a path nor the '
                     'operation: %r' % (label, args[0], rc, msg[-1]))
            outcome = '%s=%d' % (args[0], rc)
        else:
            fail('%s: %s exit %d: %s' % (label, args[0], rc, t[-800:]))
        break
    # the rule's call number is at most the calls of a clean run, so the
    # fault must have been injected in one of the processes
    if fired < 1:
        fail('%s: the fault never fired (%s ran; outcome %s)' % (label, ', '.join(ran), outcome))
    stats['fired'] = stats.get('fired', 0) + fired
    if os.environ.get('TREEMIG_FAULT_VERBOSE'):
        print('     %s: %s %s' % (label, outcome, ' | '.join(
            l for l in cp.stderr.decode('utf-8', 'replace').splitlines()
            if l.startswith('treemig ') and 'fault counts' not in l)))
    exit_code = outcome.split('=')[-1] if outcome != 'ok' else '0'
    stats['exit ' + exit_code] = stats.get('exit ' + exit_code, 0) + 1
    resume(src, dst, db, label, outcome)


def resume(src, dst, db, label, outcome):
    """Finishes the migration without the fault: discover when the
    discovery stopped (or never recorded anything), retry, copy, verify."""
    steps = []

    def step(args, ok=(0,)):
        cp = run(args)
        no_crash(cp, '%s: resume %s' % (label, args[0]))
        steps.append('%s=%d' % (args[0], cp.returncode))
        if cp.returncode not in ok:
            fail('%s (%s): resume: %s exited %d: %s' % (
                label, outcome, args[0], cp.returncode, text(cp)[-1200:]))
        return cp

    if not os.path.exists(db) or not tmtest.migration(db).get('phase'):
        step(['discover', '--db', db, '--workers', '2'] + COMMON + [src, dst])
    ph, frm = phase_of(db)
    if ph in ('roots-set', 'discovering') or (ph == 'suspended' and frm == 'discovering'):
        step(['discover', '--db', db] + COMMON, ok=(0, 3))
    # exit 2: nothing failed, nothing to retry (the phase stays)
    step(['retry', '--db', db] + COMMON, ok=(0, 2))
    ph, frm = phase_of(db)
    if ph != 'copied' and ph != 'verified':
        step(['copy', '--db', db, '--yes'] + COMMON)
    step(['verify', '--db', db, '--checksum'] + COMMON)
    errs = [e for e in diff(snapshot(src), snapshot(dst)) if not e.startswith('.:')]
    if errs:
        fail('%s (%s; resume %s): the destination differs from the source:\n    %s'
             % (label, outcome, ' '.join(steps), '\n    '.join(errs[:20])))
    if any(n.startswith('.treemig.') for _, _, fs in os.walk(dst) for n in fs):
        fail('%s: a temporary file is left on the destination' % label)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_fault_sweep')
    K = int(os.environ.get('TREEMIG_FAULT_K') or 5)
    only = os.environ.get('TREEMIG_FAULT_OPS')
    only = set(only.split(',')) if only else None
    top = tempfile.mkdtemp(prefix='treemig-faults-', dir='/tmp')
    t_start = time.monotonic()
    runs = [0]
    try:
        src, dst0 = build_pair(top)
        dst = os.path.join(top, 'dst')
        db = os.path.join(top, 'state.db')
        counts = {}

        def learn():
            counts.update(learn_counts(src, dst0, dst, db))
            print('     calls in a clean run: ' + ', '.join(
                '%s:%s%s=%d' % (s, o, '(rw)' if rw else '', n)
                for (s, o, rw), n in sorted(counts.items()) if n))
        R.check('a clean run through counting fault layers copies the tree', learn)
        if not counts:
            R.finish()
        def spec_prefix():
            fresh_dst(dst0, dst)
            for ext in ('', '-wal', '-shm', '.yaml', '.lock'):
                if os.path.exists(db + ext):
                    os.unlink(db + ext)
            cp = run(['discover', '--db', db, '--workers', '2'] + COMMON +
                     ['fault:list@2=eacces:' + src, 'fault::' + dst])
            no_crash(cp, 'discover fault:...')
            tmtest.expect_rc(cp, 3, 'discover with a fault: prefix')
            m = tmtest.migration(db)
            tmtest.expect_eq('the stored source root', src, m.get('src'))
            tmtest.expect_eq('the stored destination root', dst, m.get('dst'))
            if not any('fault injected into list call 2' in msg for _, msg in task_errors(db)):
                fail('no task error names the injected fault: %r' % task_errors(db))
            # the same roots with or without the prefix belong to it
            cp = run(['discover', '--db', db] + COMMON + ['fault::' + src, dst])
            tmtest.expect_rc(cp, 3, 'discover again with a counting prefix (complete, 1 failed)')
            cp = run(['discover', '--db', db] + COMMON + ['fault:list@1:/nonexistent', dst])
            tmtest.expect_rc(cp, 2, 'discover with another root behind the prefix')
            cp = run(['discover', '--db', db] + COMMON + ['fault:bogus@1:' + src, dst])
            tmtest.expect_rc(cp, 2, 'a malformed fault spec')
            if b'unknown operation' not in cp.stderr:
                fail('a malformed fault spec: no reason given: ' + text(cp))
            resume(src, dst, db, 'fault: prefix', 'discover=3')
        R.check('discover fault:list@2=eacces:SRC DST stores SRC, records the fault, '
                'and a run without it completes', spec_prefix)
        for side, ops in (('src', SRC_OPS), ('dst', DST_OPS)):
            for op in ops:
                if only and '%s:%s' % (side, op) not in only:
                    continue
                calls = counts.get((side, op, op in NEEDS_RW), 0)
                rules = ['%s@%d=%s' % (op, n, ERRORS[(n - 1) % len(ERRORS)])
                         for n in range(1, min(K, calls) + 1)]
                if calls:
                    rules.append('%s@1=eio+' % op)
                stats = {}

                def sweep(side=side, op=op, rules=rules, stats=stats):
                    if not rules:
                        fail('%s:%s is never called in a clean run: the pair no longer '
                             'exercises it, so its faults would go untested' % (side, op))
                    for rule in rules:
                        runs[0] += 1
                        one_case(src, dst0, dst, db, side, op, rule, stats)
                R.check('%s:%s fails at calls 1..%d (of %d) and sticky; every run ends '
                        'cleanly and a resume completes' % (side, op, max(0, len(rules) - 1),
                                                            calls), sweep)
                if stats:
                    print('     first non-zero exit per run, and faults fired: %s' % ', '.join(
                        '%s: %d' % kv for kv in sorted(stats.items())))
        print('     %d faulty runs in %.1fs' % (runs[0], time.monotonic() - t_start))
    finally:
        for dirpath, dirs, _ in os.walk(top):
            for d in dirs:
                try:
                    os.chmod(os.path.join(dirpath, d), 0o755)
                except OSError:
                    pass
        shutil.rmtree(top, ignore_errors=True)
    R.finish()


if __name__ == '__main__':
    main()
