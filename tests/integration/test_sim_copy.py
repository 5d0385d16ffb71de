#!/usr/bin/env python3
"""Copies into and out of simulated storage, checked against the ground truth.

- A sim pair with conflicts of every kind, destination-only extras and 5%
  transient faults on both sides (listings, reads and writes): discover,
  copy, verify --checksum; then a fresh discovery of the same pair (the
  destination's overlay file holds what the copy wrote) must find exactly
  what `sim-stats` predicts for a finished copy: every source node already
  there except the type clashes and the nodes below a folder that clashes
  (`blocked`, skipped), the destination-only nodes untouched.
- kill -9 during a copy into a sim, 3 times, each when the overlay file
  has grown by a random (seeded: TREEMIG_CRASH_SEED replays) amount, each
  shown to land mid-copy: the overlay file keeps what was committed, the
  copy resumes, and the end is the same.
- sim -> local: the bytes on disk are the documented content stream.
- local -> sim: any bytes, symlinks and empty files round-trip through the
  overlay, also across processes.
- badname=: a listing that returns '..', '/', NUL or empty names fails
  that folder with a message; the rest is discovered (counts = sim-stats).
Stdlib only; TREEMIG names the binary."""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run, show  # noqa: E402

DKEYS = 'world=dst,keep=0.8,extra=0.05,extra_folders=0.3,csize=0.05,cmtime=0.05,ctype=0.03'

SHAPES = [
    'seed=11,depth=4,folders=5,files=6,size=4000',
    'seed=14,depth=5,folders=3,files=4,size=9000,names=mixed,empty=0.2',
    'seed=13,depth=3,folders=12,files=10,size=1000,max_size=200k,tail=1.2',
]

M = (1 << 64) - 1


def mix64(z):
    z = (z + 0x9e3779b97f4a7c15) & M
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)


def content(cid, size):
    """The sim's content stream (docs/sim.md), written independently."""
    words = [cid] + [mix64((cid + w * 0x9e3779b97f4a7c15) & M)
                     for w in range(1, (size + 7) // 8)]
    return struct.pack('<%dQ' % len(words), *words)[:size]


def sim_stats(spec):
    cp = run(['sim-stats', spec])
    expect_rc(cp, 0, 'sim-stats')
    return json.loads(cp.stdout)


def status(db):
    return tmtest.status_json(db)


def total(c):
    return c['folders'] + c['files']


def check_finished(work, name, src, dst, truth):
    """A fresh discovery after a copy finds what sim-stats predicts."""
    db = os.path.join(work, name + '-after.db')
    cp = run(['discover', '--db', db, '--quiet', src, dst])
    expect_rc(cp, 0, 'discovery after the copy')
    st = status(db)
    blocked = truth['blocked']
    ntype = truth['conflicts']['type']
    rows = truth['src']['folders'] + truth['src']['files']
    for k in ('folders', 'files', 'bytes', 'failed'):
        expect_eq('source %s' % k, truth['src'][k], st['src'][k])
    got = {k: st['copy'][k] for k in ('pending', 'bytes_pending', 'conflicts',
                                      'skipped', 'already_existed', 'failed')}
    want = {'pending': 0, 'bytes_pending': 0,
            'conflicts': ntype, 'skipped': ntype + total(blocked),
            'already_existed': rows - total(blocked) - ntype, 'failed': 0}
    expect_eq('copy counts of a fresh discovery after the copy', want, got)
    expect_eq('destination-only nodes', total(truth['dst_only']),
              st['dst']['not_on_src'])


def discover_copy_verify(work, name, src, dst, truth, copy_opts=()):
    db = os.path.join(work, name + '.db')
    # 5% faults on every operation: a file's verify reads both sides, so an
    # attempt fails 1 - 0.95^2 of the time; with 3 retries one file in
    # ~10^4 would still fail. 10 retries (stored, used by copy and verify
    # too) make that ~10^-11 (docs/sim.md says the same for listings).
    cp = run(['discover', '--db', db, '--quiet', '--retries', '10', src, dst])
    expect_rc(cp, 0, 'discover')
    st = status(db)
    for sec in ('src', 'dst', 'copy'):
        tmtest.compare_status({sec: truth[sec]}, {sec: st[sec]})
    cp = run(['copy', '--db', db, '--yes', '--quiet'] + list(copy_opts))
    expect_rc(cp, 0, 'copy (10 retries: a node fails ~10^-11 of the time)')
    st = status(db)
    expect_eq('copied', truth['copy']['pending'], st['copy']['successful'])
    expect_eq('failed', 0, st['copy']['failed'])
    expect_eq('skipped', truth['copy']['skipped'], st['copy']['skipped'])
    cp = run(['verify', '--db', db, '--checksum', '--quiet'])
    expect_rc(cp, 0, 'verify --checksum')
    expect_eq('phase', 'verified', status(db)['phase'])
    return db


SEEN = {}


def check_coverage():
    """Together the shapes exercise every case."""
    for k in ('type clashes', 'blocked', 'other conflicts', 'destination-only'):
        if not SEEN.get(k):
            fail('no shape has %s: %r' % (k, SEEN))
    print('     exercised: %r' % SEEN)


def check_pair(work, i, shape):
    ovl = os.path.join(work, 'pair%d.ovl' % i)
    src = 'sim:%s,transient=0.05' % shape
    dst = 'sim:%s,%s,transient=0.05,overlay=%s' % (shape, DKEYS, ovl)
    truth = sim_stats(dst)
    if not truth['copy']['pending']:
        fail('the shape has nothing to copy: %r' % truth)
    for k, v in (('type clashes', truth['conflicts']['type']),
                 ('blocked', total(truth['blocked'])),
                 ('other conflicts', truth['copy']['conflicts'] - truth['conflicts']['type']),
                 ('destination-only', total(truth['dst_only']))):
        SEEN[k] = SEEN.get(k, 0) + v
    discover_copy_verify(work, 'pair%d' % i, src, dst, truth)
    expect_eq('overlay file mode', 0o600, os.stat(ovl).st_mode & 0o777)
    # the same pair, without faults, read by a new process
    check_finished(work, 'pair%d' % i, 'sim:' + shape,
                   'sim:%s,%s,overlay=%s' % (shape, DKEYS, ovl), truth)


def check_crash(work, rng):
    """kill -9 while the copy writes into the sim, 3 times: each kill waits
    until the overlay file has grown by a random (seeded) number of records'
    worth of bytes, and must land mid-copy: the run had written into the
    overlay and the state file still has nodes to copy after the kill. The
    last run completes and the end equals sim-stats' prediction."""
    shape = 'seed=21,depth=4,folders=8,files=10,decay=1,tail=3,size=3000'
    ovl = os.path.join(work, 'crash.ovl')
    src = 'sim:' + shape
    dst = 'sim:%s,%s,latency=1,overlay=%s' % (shape, DKEYS, ovl)
    truth = sim_stats(dst)
    to_copy = truth['copy']['pending']
    db = os.path.join(work, 'crash.db')
    expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
    kills, landed, done_before = 0, [], 0
    for attempt in range(20):
        size0 = os.path.getsize(ovl) if os.path.exists(ovl) else 0
        left = to_copy - done_before
        # a record is ~60-100 bytes; 40 a node keeps the target inside the run
        target = size0 + 40 * rng.randint(1, max(1, left // 2))
        p = subprocess.Popen([tmtest.TREEMIG, 'copy', '--db', db, '--yes', '--quiet'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if kills < 3:
                while p.poll() is None and (not os.path.exists(ovl) or
                                            os.path.getsize(ovl) < target):
                    time.sleep(0.001)
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
            _, err = p.communicate(timeout=tmtest.TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if p.returncode == -signal.SIGKILL:
            kills += 1
            grown = os.path.getsize(ovl) - size0
            done = status(db)['copy']['successful']
            if grown > 0 and done < to_copy:
                landed.append((grown, done))
            print('     kill %d: the overlay grew %d bytes in this run; %d of %d nodes '
                  'copied%s' % (kills, grown, done, to_copy,
                                '' if grown > 0 and done < to_copy else ' (not mid-copy)'))
            done_before = done
            continue
        if p.returncode != 0:
            fail('copy after %d kills: exit %d: %s' % (kills, p.returncode, err[-2000:]))
        break
    else:
        fail('the copy did not finish')
    if len(landed) < 3:
        fail('only %d of %d kills landed mid-copy' % (len(landed), kills))
    print('     %d kills mid-copy, overlay file %d bytes' % (len(landed), os.path.getsize(ovl)))
    expect_rc(run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify')
    check_finished(work, 'crash', src, dst, truth)


def check_sim_to_local(work):
    shape = 'seed=31,depth=3,folders=4,files=5,size=20000,empty=0.1'
    dst = os.path.join(work, 'local-dst')
    os.mkdir(dst)
    db = os.path.join(work, 's2l.db')
    expect_rc(run(['discover', '--db', db, '--quiet', 'sim:' + shape, dst]), 0, 'discover')
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
    expect_rc(run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify')
    conn = tmtest.connect(db)
    rows = conn.execute("SELECT path, size, mtime FROM src_nodes WHERE type='file'").fetchall()
    conn.close()
    checked = 0
    for path, size, mtime in rows:
        p = os.path.join(dst, os.fsdecode(path).lstrip('/'))
        with open(p, 'rb') as f:
            data = f.read()
        expect_eq('size of %s' % p, size, len(data))
        if size >= 8:
            cid = struct.unpack('<Q', data[:8])[0]
            if data != content(cid, size):
                fail('%s is not the documented content stream of id %x' % (p, cid))
            checked += 1
        expect_eq('mtime of %s' % p, mtime, os.lstat(p).st_mtime_ns)
    if checked < 10:
        fail('only %d files checked' % checked)


def check_local_to_sim(work):
    src = os.path.join(work, 'local-src')
    os.makedirs(os.path.join(src, 'a', 'b'))
    blobs = {'empty': b'', 'seven': b'1234567', 'a/text': b'hello\n' * 1000,
             'a/b/bin': bytes(random.Random(5).getrandbits(8) for _ in range(70000))}
    for rel, data in blobs.items():
        with open(os.path.join(src, rel), 'wb') as f:
            f.write(data)
    os.symlink('../seven', os.path.join(src, 'a', 'link'))
    ovl = os.path.join(work, 'l2s.ovl')
    dst = 'sim:seed=2,depth=2,folders=2,files=2,world=dst,overlay=' + ovl
    db = os.path.join(work, 'l2s.db')
    expect_rc(run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
    expect_rc(run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
    expect_rc(run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify')
    # a fresh discovery, another process: everything is there
    db2 = os.path.join(work, 'l2s-after.db')
    expect_rc(run(['discover', '--db', db2, '--quiet', src, dst]), 0, 'discover again')
    st = status(db2)
    expect_eq('pending after the copy', 0, st['copy']['pending'])
    expect_eq('already there', 7, st['copy']['already_existed'])
    conn = tmtest.connect(db2)
    link = conn.execute("SELECT size FROM dst_nodes WHERE path = CAST('/a/link' AS BLOB) "
                        "OR path = '/a/link'").fetchall()
    conn.close()
    expect_eq('symlink on the sim', [(8,)], link)


def check_badname(work):
    shape = 'seed=41,depth=3,folders=4,files=3'
    db = os.path.join(work, 'bad.db')
    cp = run(['discover', '--db', db, '--quiet', 'sim:%s,badname=/d1:/d2/d0' % shape,
              'sim:%s,world=dst,badname=/d3' % shape])
    expect_rc(cp, 3, 'discover with invalid names (partial)')
    truth = sim_stats('sim:%s,world=dst,badname=/d3,src_badname=/d1:/d2/d0' % shape)
    st = status(db)
    for sec in ('src', 'dst', 'copy'):
        tmtest.compare_status({sec: truth[sec]}, {sec: st[sec]})
    conn = tmtest.connect(db)
    errs = conn.execute('SELECT path, message FROM task_errors').fetchall()
    conn.close()
    why = {}
    for p, msg in errs:
        m = msg.decode() if isinstance(msg, bytes) else msg
        why.setdefault(os.fsdecode(p), []).append(m)
    expect_eq('failed folders', ['/d1', '/d2/d0', '/d3'], sorted(why))
    for p, msgs in why.items():
        if not any('invalid name' in m for m in msgs):
            fail('no message of %s says why: %r' % (p, msgs))


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_sim_copy')
    work = tempfile.mkdtemp(prefix='treemig-simcopy-')
    seed = os.environ.get('TREEMIG_CRASH_SEED')
    seed = int(seed) if seed else random.SystemRandom().randrange(1 << 31)
    print('seed %d (replay the kills with TREEMIG_CRASH_SEED=%d)' % (seed, seed))
    rng = random.Random(seed)
    try:
        for i, shape in enumerate(SHAPES):
            R.check('sim pair %d with faults: copy + verify, then equal to sim-stats' % i,
                    check_pair, work, i, shape)
        R.check('the shapes cover clashes, blocked nodes, conflicts and extras',
                check_coverage)
        R.check('kill -9 during a copy into a sim: resumes from the overlay file',
                check_crash, work, rng)
        R.check('sim -> local: the bytes are the documented stream', check_sim_to_local, work)
        R.check('local -> sim: bytes, symlinks, empty files round-trip', check_local_to_sim, work)
        R.check('badname=: invalid names fail their folder with a message', check_badname, work)
    finally:
        shutil.rmtree(work, True)
    R.finish()


if __name__ == '__main__':
    main()
