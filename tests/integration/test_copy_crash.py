#!/usr/bin/env python3
"""Crash tests of `treemig copy`: kill -9 at random moments, run copy again
until it exits 0, and get exactly what an uninterrupted copy gets.

Builds, on a tmpfs when there is one (treegen.scratch_dir), a source tree
of about 30,000 nodes and 140 MiB (24 files of 1-8 MiB, 30,000 files of
0-4 KiB with distinct contents, symlinks, a read-only folder, deep and empty
folders) and a destination template holding part of it (identical files,
older conflicting versions of small and large files, destination-only
files). The reference: the template copied (cp -a) to DST, discover, one
uninterrupted `copy --yes`, DST renamed aside. Then, in cycles, the
template is copied to DST again, discovered into a fresh state file, and
`copy --yes` is started and SIGKILLed at random moments (seeded; the seed
is printed) and started again until a run exits 0.

After every kill: the state file passes integrity_check, holds no node
twice and its stats tables equal counts made from the rows; every node
under DST that is not a `.treemig.*.tmp` temporary is either the source's
node (bytes, and then also its mtime and mode) or the destination's
original one: never a partial file under a real name; every node the state
file records as copied is on DST as on the source.
At the end of a cycle: DST equals the reference destination (bytes, mtime
ns, mode, symlink targets), no temporary is left, the state file equals
the reference's (statecheck.compare_with_reference) and verify --checksum
exits 0.

Run:  python3 tests/integration/test_copy_crash.py
      TREEMIG=/path/to/treemig        another binary
      TREEMIG_CRASH_KILLS=25          the long version (default 4 kills)
      TREEMIG_CRASH_SEED=1234         replay a seed
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statecheck  # noqa: E402
import test_copy   # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from test_copy import fail_list, fmt_node, snapshot, TMP_RE  # noqa: E402
from tmtest import expect_rc, fail  # noqa: E402

SEC = treegen.SEC
MiB = 1024 * 1024
WORKERS = 4
MAX_RUNS = 60          # copy runs per cycle before giving up
FOLDERS, FILES_PER_FOLDER = 150, 200     # small files
LARGE = 24                               # files of 1-8 MiB


def build_crash_pair(top, rng):
    """Returns (src, dst_template) as bytes paths."""
    top = os.fsencode(top)
    src, dst = os.path.join(top, b'src'), os.path.join(top, b'dst0')
    S, D = treegen.TreeBuilder(src), treegen.TreeBuilder(dst)
    t = treegen.T0 + 100000 * SEC
    block = rng.randbytes(9 * MiB)

    def content(path, size):
        head = b'%s\n' % path
        off = rng.randrange(0, MiB)
        return (head + block[off:off + size])[:size]

    # large files: some identical on the destination, some older versions
    for i in range(LARGE):
        rel = b'big/large%02d.bin' % i
        size = rng.randint(MiB, 8 * MiB)
        data = content(rel, size)
        S.file(rel, data=data, mtime=t + i)
        if i % 6 == 0:
            D.file(rel, data=data, mtime=t + i)                      # already there
        elif i % 6 in (1, 2):
            D.file(rel, data=content(b'old ' + rel, size // 2), mtime=t + i - SEC)
        elif i % 6 == 3:
            D.file(rel, data=data[:-1] + b'?', mtime=t + i - SEC)    # same size, older
    # many small files in FOLDERS folders; every 4th folder exists on the
    # destination with identical, conflicting and destination-only files
    # (written with plain system calls: TreeBuilder.file is slower)
    for d in range(FOLDERS):
        folder = b'small/d%03d' % d
        on_dst = d % 4 == 0
        sdir = os.path.join(src, folder)
        os.makedirs(sdir)
        if on_dst:
            D.dir(folder, mtime=t + 1000 + d)
            D.file(folder + b'/zz_dst_only', data=b'destination only %d' % d, mtime=t)
        for i in range(FILES_PER_FOLDER):
            name = b'f%03d.txt' % i
            rel = folder + b'/' + name
            size = rng.randint(0, 4096)
            data = ((rel + b'\n') * (size // (len(rel) + 1) + 1))[:size]
            m = t + 2000 + i
            p = os.path.join(sdir, name)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.utime(fd, ns=(m, m))
            os.close(fd)
            if on_dst and i % 5 == 0:
                D.file(rel, data=data, mtime=m)
            elif on_dst and i % 5 == 1:
                D.file(rel, data=b'old ' + data[:size // 3], mtime=m - 500)
        S.dir(folder, mtime=t + 1000 + d)
    # symlinks, one replacing a destination symlink, one dangling
    for i in range(20):
        S.symlink(b'links/l%02d' % i, b'../small/d%03d/f%03d.txt' % (i, i), mtime=t + 3000 + i)
    S.symlink(b'links/dangling', b'nowhere/at/all', mtime=t + 3100)
    D.symlink(b'links/l00', b'an older target', mtime=t + 2900)
    # deep folders with a file at each level, empty folders
    deep = b''
    for lvl in range(10):
        deep += (b'/' if deep else b'') + b'deep%d' % lvl
        S.file(deep + b'/at_level', data=b'level %d\n' % lvl, mtime=t + 4000 + lvl)
    S.dir(b'empty/a/b/c', mtime=t + 4100)
    D.dir(b'only_dst/x', mtime=t + 4200)
    D.file(b'only_dst/x/y', data=b'y', mtime=t + 4201)
    S.finish(root_mtime=t + 5000)
    D.finish(root_mtime=t + 5001)
    # a read-only folder with contents (created writable, mode set last)
    ro = os.path.join(src, b'readonly')
    os.mkdir(ro)
    for i in range(20):
        p = os.path.join(ro, b'r%02d' % i)
        with open(p, 'wb') as f:
            f.write(b'r' * (i * 100))
        os.chmod(p, 0o444)
        os.utime(p, ns=(t + 6000 + i, t + 6000 + i))
    os.chmod(ro, 0o555)
    os.utime(ro, ns=(t + 6100, t + 6100))
    os.utime(src, ns=(t + 5000, t + 5000))
    return src, dst


def cp_a(frm, to):
    subprocess.run([b'cp', b'-a', frm, to], check=True)


def pending_left(db):
    """Source rows still to copy, from copy_stats (0 when unreadable)."""
    try:
        conn = statecheck._ro(db)
        try:
            r = conn.execute("SELECT coalesce(sum(count), 0) FROM copy_stats "
                             "WHERE copy_status = 'pending'").fetchone()
            return r[0]
        finally:
            conn.close()
    except Exception:
        return 0


def check_after_kill(db, dst, src_snap, dst0_snap, cache):
    """What a killed copy may leave (see the module docstring). Returns the
    number of temporaries found."""
    statecheck.integrity(db)
    test_copy.no_duplicates(db)
    statecheck.check_stats_sql(db)
    snap = snapshot(dst, cache=cache)
    errs = []
    tmps = 0
    for p, n in sorted(snap.items()):
        name = p.rsplit(b'/', 1)[-1]
        if TMP_RE.match(name):
            tmps += 1
            if n.type != 'file' and n.type != 'symlink':
                errs.append('%r: a temporary that is a %s' % (p, n.type))
            continue
        if p == b'/':
            continue
        s, o = src_snap.get(p), dst0_snap.get(p)
        if n.type == 'folder':
            if not ((s and s.type == 'folder') or (o and o.type == 'folder')):
                errs.append('%r: a folder neither tree has' % p)
            continue
        if o is not None and n == o:
            continue                      # the destination's original node
        if s is None or s.type != n.type or s.data != n.data or s.size != n.size:
            errs.append('%r: neither the source\'s nor the original destination\'s node: '
                        '%s (source %s, original %s)' % (p, fmt_node(n), fmt_node(s),
                                                         fmt_node(o)))
        elif n.mtime != s.mtime or n.mode != s.mode:
            errs.append('%r: the source\'s bytes under the real name without its mtime/mode: '
                        '%s, source %s' % (p, fmt_node(n), fmt_node(s)))
    rows = tmtest.read_nodes(db, 'src_nodes')
    for r in rows:
        if r['copy_status'] != 'successful':
            continue
        p, n, s = r['path'], snap.get(r['path']), src_snap.get(r['path'])
        if r['type'] == 'folder':
            if n is None or n.type != 'folder':
                errs.append('%r: recorded copied, but the destination has %s' % (p, fmt_node(n)))
        elif n != s:
            errs.append('%r: recorded copied, but the destination has %s, source %s'
                        % (p, fmt_node(n), fmt_node(s)))
    fail_list('state after a kill', errs)
    return tmps


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_copy_crash')
    seed = os.environ.get('TREEMIG_CRASH_SEED')
    seed = int(seed) if seed else random.SystemRandom().randrange(1 << 31)
    kills = int(os.environ.get('TREEMIG_CRASH_KILLS') or 4)
    print('seed %d, %d kills (replay with TREEMIG_CRASH_SEED=%d TREEMIG_CRASH_KILLS=%d)'
          % (seed, kills, seed, kills))
    base = tempfile.mkdtemp(prefix='treemig-copycrash-', dir='/tmp')
    trees = treegen.scratch_dir('treemig-copycrash-trees-')
    try:
        print('trees under %s' % trees)
        test_copy.guard(R, 'run_all', run_all, R, base, trees, random.Random(seed), kills)
    finally:
        for d in (base, trees):
            test_copy.restore_modes(d)
            treegen.remove_tree(d)
    R.finish()


def run_all(R, base, trees, rng, kills):
    t = time.time()
    src, dst0 = build_crash_pair(trees, rng)
    dst = os.path.join(os.fsencode(trees), b'dst')
    ref_dst = os.path.join(os.fsencode(trees), b'dst_ref')
    src_snap, dst0_snap = snapshot(src), snapshot(dst0)
    nbytes = sum(n.size for n in src_snap.values() if n.type == 'file')
    print('built the trees in %.1fs: %d source nodes (%.0f MiB), %d destination nodes'
          % (time.time() - t, len(src_snap), nbytes / MiB, len(dst0_snap)))
    ctx = {}

    def check_reference():
        cp_a(dst0, dst)
        db = os.path.join(base, 'ref.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', '--workers', str(WORKERS), src, dst])
        expect_rc(cp, 0, 'discover')
        rows = tmtest.read_nodes(db, 'src_nodes')
        final = test_copy.final_copy_status({r['path']: r for r in rows})
        t0 = time.monotonic()
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
        ctx['t_copy'] = time.monotonic() - t0
        expect_rc(cp, 0, 'uninterrupted copy')
        snap = snapshot(dst)
        want, ignore = test_copy.expected_dst(src_snap, dst0_snap, final)
        fail_list('the reference destination differs from the expectation',
                  test_copy.diff_snapshots(want, snap, 'the destination', ignore))
        test_copy.check_no_tmp(dst)
        os.rename(dst, ref_dst)
        ctx['ref'] = statecheck.Ref(db)
        ctx['ref_snap'] = snap
        ctx['pending'] = sum(1 for p, cs in final.items() if cs == 'successful')
        print('     reference copy: %d nodes copied in %.2fs' % (ctx['pending'], ctx['t_copy']))
    R.check('reference: an uninterrupted copy gives the expected destination', check_reference)
    if 'ref' not in ctx:
        return

    total = {'kills': 0, 'cycles': 0, 'tmps': 0}
    cycle = 0
    # kills that come after the copy completed do not count: under load
    # a cycle may end with none, so a few more cycles are allowed
    while total['kills'] < kills and cycle < 2 * max(3, kills):
        cycle += 1
        n_before = total['kills']
        R.check('cycle %d: kill -9 during copy, run again until exit 0, the destination '
                'equals the reference' % cycle, run_cycle, base, src, dst0, dst, ref_dst,
                src_snap, dst0_snap, ctx, rng, kills, total, cycle)
        if total['kills'] == n_before and total.get('failed_cycle'):
            break
    print('     %d kills in %d cycles; %d temporaries seen after kills'
          % (total['kills'], cycle, total['tmps']))

    def check_enough():
        if total['kills'] < kills:
            fail('only %d of %d kills landed while copy ran' % (total['kills'], kills))
    R.check('%d kills landed while copy ran' % kills, check_enough)


def run_cycle(base, src, dst0, dst, ref_dst, src_snap, dst0_snap, ctx, rng, kills, total,
              cycle):
    total['failed_cycle'] = True
    treegen.remove_tree(dst)
    cp_a(dst0, dst)
    db = os.path.join(base, 'crash%d.db' % cycle)
    cp = tmtest.run(['discover', '--db', db, '--quiet', '--workers', str(WORKERS), src, dst])
    expect_rc(cp, 0, 'discover')
    initial = max(1, pending_left(db))
    cache = {}
    done = False
    runs = 0
    while not done:
        runs += 1
        if runs > MAX_RUNS:
            fail('copy did not complete in %d runs' % MAX_RUNS)
        left = pending_left(db)
        want_kill = total['kills'] < kills and statecheck.phase_of(db) != 'copied'
        # a random moment within the time the rest should take; one run in
        # four is killed in its last stages (folder modes and mtimes, sync)
        at_end = want_kill and left > 0 and rng.random() < 0.25
        est = ctx['t_copy'] * max(0.1, left / initial)
        delay = rng.uniform(0.0, 0.6 * est) if not at_end else rng.uniform(0.0, 0.003)
        p = statecheck.Proc(['copy', '--db', db, '--yes', '--quiet'])
        try:
            sent = False
            if want_kill:
                t0 = p.started
                if at_end and statecheck.wait_until(p, lambda: pending_left(db) == 0,
                                                    step=0.002):
                    t0 = time.monotonic()
                while time.monotonic() < t0 + delay and p.poll() is None:
                    time.sleep(0.001)
                sent = p.signal(signal.SIGKILL)
            rc = p.wait()
            err = p.stderr()
        finally:
            p.close()
        if rc == -signal.SIGKILL and sent:
            ph = statecheck.phase_of(db)
            if ph != 'copied':
                total['kills'] += 1      # else it had finished but for its exit
            tmps = check_after_kill(db, dst, src_snap, dst0_snap, cache)
            total['tmps'] += tmps
            print('     cycle %d run %d: killed %.3fs after %s with %d of %d nodes left to '
                  'copy, phase %s, %d temporaries' % (
                      cycle, runs, delay, 'the last node was copied' if at_end else 'its start',
                      pending_left(db), initial, ph, tmps) +
                  ('' if ph != 'copied' else ' (the copy was complete: not counted)'))
            continue
        if rc != 0:
            fail('cycle %d run %d: copy exited %r: %s' % (cycle, runs, rc, err[-800:]))
        print('     cycle %d run %d: completed (exit 0)%s' % (
            cycle, runs, '' if not want_kill else ' before the kill at %.3fs' % delay))
        done = True
    # the result
    snap = snapshot(dst, cache=cache)
    fail_list('the destination after the kills differs from the uninterrupted copy',
              test_copy.diff_snapshots(ctx['ref_snap'], snap, 'the destination',
                                       {(b'/', 'mtime')}))
    test_copy.check_no_tmp(dst)
    statecheck.compare_with_reference(db, ctx['ref'])
    cp = tmtest.run(['verify', '--db', db, '--checksum', '--quiet'])
    expect_rc(cp, 0, 'verify --checksum after the kills')
    cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet'])
    expect_rc(cp, 0, 'copy once more')
    total['failed_cycle'] = False


if __name__ == '__main__':
    main()
