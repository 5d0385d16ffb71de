#!/usr/bin/env python3
"""kill -9 loops with an s3:// side, against tests/servers/fake_s3.py:

- discovery of a prefix of 6,000 keys killed after each durable page: each
  run resumes inside the prefix, with start-after the position stored in
  listing_pos (the server's log of listing requests says so), and the
  state file ends with each key once;
- a copy killed in the middle of a 40 MiB multipart upload (2 MiB parts,
  their state in the uploads table), three times: each run sends only the
  parts the server lacks (fake_s3 counts the part PUTs), the object ends
  whole, and no incomplete upload is left (ListMultipartUploads, through
  awscli);
- a copy killed mid-upload whose source then changes: the next copy
  fails the file ("changed since discovery") and gives the recorded
  upload up (forget_write: AbortMultipartUpload), nothing left;
- a copy killed mid-upload whose source then changes in its first part
  with the same size and mtime: the resumed upload finds a part's MD5
  differs from its ETag, and starts the upload again; the object is the
  new content.

Needs TREEMIG (ctest sets it). Label s3.
"""

import hashlib
import os
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import tmtest  # noqa: E402
from tmtest import expect_eq, fail  # noqa: E402
import s3servers  # noqa: E402

MiB = 1024 * 1024
AK = 'AKIATREEMIGCRASH'
SECRET = 'SeCrEt-' + os.urandom(12).hex()
NKEYS = 6000
PART = 1 * MiB
BIG = 40 * MiB


def data_of(n, seed):
    h = hashlib.sha256(seed.encode()).digest()
    block = b''.join(hashlib.sha256(h + i.to_bytes(4, 'little')).digest() for i in range(2048))
    return (block * (n // len(block) + 1))[:n]


def sql(db, q, *a):
    """Rows of q, or [] while the state file or its table is not there."""
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []
    try:
        return conn.execute(q, a).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


class Ctx:
    def __init__(self, srv, env, tmp):
        self.srv, self.env, self.tmp = srv, env, tmp

    def cmd(self, *args):
        return [tmtest.TREEMIG] + list(args)

    def tm(self, *args, rc=0):
        cp = s3servers.treemig(tmtest.TREEMIG, self.env, *args)
        if rc is not None and cp.returncode != rc:
            fail('treemig %s: expected exit %d, %s' % (' '.join(args), rc, tmtest.show(cp)))
        return cp

    def start(self, *args):
        return subprocess.Popen(self.cmd(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def aws(self, *args):
        rc, res, err = s3servers.aws(self.env, self.srv.endpoint, *args)
        if rc != 0:
            fail('aws s3api %s: exit %d: %s' % (' '.join(args), rc, err.strip()[-800:]))
        return res

    def uploads(self, bucket, prefix):
        res = self.aws('list-multipart-uploads', '--bucket', bucket, '--prefix', prefix) or {}
        return [u for u in res.get('Uploads') or [] if u['Key'].startswith(prefix)]

    def stats(self):
        return self.srv.stats()['stats']


def wait_for(p, cond, what, limit=300):
    """Polls cond() until it holds (then returns its value) or p ended."""
    t0 = time.time()
    while time.time() - t0 < limit:
        v = cond()
        if v:
            return v
        if p.poll() is not None:
            fail('treemig ended (exit %s) before %s: %s' % (
                p.returncode, what, p.stderr.read().decode(errors='replace')[-1500:]))
        time.sleep(0.02)
    fail('%s did not happen' % what)


def pages_of(c, prefix):
    """The listing requests of prefix for pages (not the probe of one key
    each run makes at the start)."""
    return [e for e in c.stats().get('list_log', [])
            if e['prefix'] == prefix and e['max_keys'] > 1]


def case_discovery_loop(c):
    c.srv.ctl('fill', bucket='big-bkt', prefix='flat/f', n=NKEYS, size=20,
              meta={'mtime': '1600000000.5', 'mode': '100644'})
    dst = os.path.join(c.tmp, 'flatdst')
    os.makedirs(dst)
    db = os.path.join(c.tmp, 'flat.db')
    args = ('discover', '--db', db, '-q', 's3://big-bkt/flat', dst,
            '--s3-endpoint', c.srv.endpoint)
    kills, runs_pages = 0, []
    while kills < 3:
        c.srv.ctl('clear')
        c.srv.ctl('reset_stats')
        c.srv.fault('list', 'delay', count=1000, ms=300)
        before = sql(db, 'SELECT pos, pages FROM listing_pos WHERE side = 0') if kills else []
        p = c.start(*args)
        want = (before[0][1] if before else 0) + 1
        row = wait_for(p, lambda: [r for r in sql(db, 'SELECT pos, pages FROM listing_pos '
                                                  'WHERE side = 0') if r[1] >= want],
                       'a new page of the prefix was recorded')
        s3servers.kill9(p)
        kills += 1
        log = pages_of(c, 'flat/')
        if before:
            # this run resumed inside the prefix, after the stored key
            expect_eq('run %d: its first listing starts after the stored position' % kills,
                      before[0][0].decode(), log[0]['start_after'] if log else None)
        runs_pages.append(row[0][1])
    c.srv.ctl('clear')
    c.srv.ctl('reset_stats')
    stored = sql(db, 'SELECT pos, pages FROM listing_pos WHERE side = 0')
    c.tm(*args)
    log = pages_of(c, 'flat/')
    expect_eq('the last run resumes after the stored key', stored[0][0].decode(),
              log[0]['start_after'])
    pages_left = (NKEYS + 999) // 1000 - stored[0][1]
    if len(log) > pages_left + 1:
        fail('the last run listed %d pages of the prefix, %d were left' % (len(log), pages_left))
    rows = sql(db, "SELECT count(*), count(DISTINCT name) FROM src_nodes WHERE type = 'file'")
    expect_eq('each key once in the state file', (NKEYS, NKEYS), rows[0])
    expect_eq('no listing position left', [], sql(db, 'SELECT * FROM listing_pos'))
    print('     pages recorded at each kill: %s' % runs_pages)


def run_len(parts):
    nums = sorted(int(p['PartNumber']) for p in parts)
    k = 0
    while k < len(nums) and nums[k] == k + 1:
        k += 1
    return k


def start_copy_src(c, name, data):
    src = os.path.join(c.tmp, name)
    os.makedirs(src)
    with open(os.path.join(src, 'big.bin'), 'wb') as f:
        f.write(data)
    with open(os.path.join(src, 'small.txt'), 'wb') as f:
        f.write(b'small')
    db = os.path.join(c.tmp, name + '.db')
    c.tm('discover', '--db', db, '-q', src, 's3://up-bkt/' + name, '--s3-endpoint',
         c.srv.endpoint, '-o', 's3-part-size=%d' % PART)
    return src, db


def kill_mid_upload(c, db, parts_before=0):
    """Starts a copy with slow parts, kills it once the uploads table
    records more parts than parts_before; returns (upload id, parts
    recorded)."""
    c.srv.ctl('clear')
    c.srv.fault('part', 'delay', count=10000, ms=250)
    p = c.start('copy', '--db', db, '-y', '-q')

    def recorded():
        rows = sql(db, 'SELECT state FROM uploads')
        if not rows:
            return None
        text = rows[0][0].decode() if isinstance(rows[0][0], bytes) else rows[0][0]
        n = text.count('\npart ')
        return (text, n) if n > parts_before else None
    text, n = wait_for(p, recorded, 'a part was recorded in the uploads table')
    s3servers.kill9(p)
    c.srv.ctl('clear')
    uid = [l[3:] for l in text.splitlines() if l.startswith('id ')][0]
    return uid, n


def case_copy_loop(c):
    data = data_of(BIG, 'big')
    src, db = start_copy_src(c, 'mp', data)
    nparts = BIG // PART
    recorded, ids = 0, set()
    for kill in range(3):
        c.srv.ctl('reset_stats')
        uid, recorded = kill_mid_upload(c, db, recorded)
        ids.add(uid)
        req = c.stats()['requests']
        if kill and (req.get('create') or req.get('listparts') != 1):
            fail('run %d did not resume the upload: %r' % (kill + 1, req))
        on_server = (c.aws('list-parts', '--bucket', 'up-bkt', '--key', 'mp/big.bin',
                           '--upload-id=' + uid) or {}).get('Parts') or []
        k = run_len(on_server)
        if not 1 <= k < nparts:
            fail('kill %d: %d parts on the server, expected a kill mid-upload' % (kill + 1, k))
        print('     kill %d: %d parts recorded, %d on the server' % (kill + 1, recorded, k))
    expect_eq('one upload through the kills', 1, len(ids))
    c.srv.ctl('reset_stats')
    c.tm('copy', '--db', db, '-y', '-q')
    req = c.stats()['requests']
    expect_eq('parts sent by the last run (%d were on the server)' % k, nparts - k,
              req.get('part'))
    expect_eq('the last run resumed (no create, one ListParts)', (None, 1),
              (req.get('create'), req.get('listparts')))
    got = c.aws('head-object', '--bucket', 'up-bkt', '--key', 'mp/big.bin')
    if not got['ETag'].strip('"').endswith('-%d' % nparts):
        fail('not a %d-part object: %s' % (nparts, got['ETag']))
    out = os.path.join(c.tmp, 'mp.out')
    c.aws('get-object', '--bucket', 'up-bkt', '--key', 'mp/big.bin', out)
    with open(out, 'rb') as f:
        if f.read() != data:
            fail('the object is not the source')
    expect_eq('incomplete uploads left', [], c.uploads('up-bkt', 'mp/'))
    expect_eq('uploads rows left', [], sql(db, 'SELECT node_id FROM uploads'))
    c.tm('verify', '--db', db, '--checksum', '-q')


def case_give_up(c):
    data = data_of(BIG, 'giveup')
    src, db = start_copy_src(c, 'gu', data)
    uid, n = kill_mid_upload(c, db)
    if not [u for u in c.uploads('up-bkt', 'gu/') if u['UploadId'] == uid]:
        fail('the upload is not there after the kill')
    with open(os.path.join(src, 'big.bin'), 'ab') as f:
        f.write(b'grown')
    c.srv.ctl('reset_stats')
    cp = c.tm('copy', '--db', db, '-y', '-q', rc=3)
    if b'changed since discovery' not in cp.stderr + cp.stdout and \
            not sql(db, "SELECT 1 FROM src_nodes WHERE error LIKE '%changed since discovery%'"):
        fail('the file did not fail as changed: %s' % tmtest.show(cp))
    expect_eq('AbortMultipartUpload sent', 1, c.stats()['requests'].get('abort'))
    expect_eq('incomplete uploads left', [], c.uploads('up-bkt', 'gu/'))
    expect_eq('uploads rows left', [], sql(db, 'SELECT node_id FROM uploads'))


def case_changed_part(c):
    data = data_of(BIG, 'samesize')
    src, db = start_copy_src(c, 'cp', data)
    path = os.path.join(src, 'big.bin')
    st = os.stat(path)
    uid, n = kill_mid_upload(c, db)
    new = b'X' * 100 + data[100:]
    with open(path, 'r+b') as f:
        f.write(new[:100])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    c.srv.ctl('reset_stats')
    c.tm('copy', '--db', db, '-y', '-q')
    req = c.stats()['requests']
    expect_eq('the stale upload was aborted and a new one made', (1, 1),
              (req.get('abort'), req.get('create')))
    out = os.path.join(c.tmp, 'cp.out')
    c.aws('get-object', '--bucket', 'up-bkt', '--key', 'cp/big.bin', out)
    with open(out, 'rb') as f:
        if f.read() != new:
            fail('the object is not the new content')
    expect_eq('incomplete uploads left', [], c.uploads('up-bkt', 'cp/'))


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_s3_crash')
    tmp = s3servers.tmpdir('s3crash-')
    home = s3servers.tmpdir('s3home-')
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_DEFAULT_REGION='us-east-1', PATH=os.environ.get('PATH'))
    srv = s3servers.FakeS3(AK, SECRET, ['big-bkt', 'up-bkt'], min_part_size=0)
    c = Ctx(srv, env, tmp)
    try:
        for name, fn in (('discovery of 6,000 keys killed 3 times resumes inside the prefix',
                          case_discovery_loop),
                         ('copy killed 3 times mid-multipart sends only missing parts',
                          case_copy_loop),
                         ('an upload given up is aborted (forget_write)', case_give_up),
                         ('a part that differs from the source restarts the upload',
                          case_changed_part)):
            t0 = time.time()
            r.check(name, fn, c)
            print('     (%.1f s)' % (time.time() - t0))
    finally:
        srv.stop()
    r.finish()


if __name__ == '__main__':
    main()
