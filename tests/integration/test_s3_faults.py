#!/usr/bin/env python3
"""Faults of an s3:// side through the treemig CLI, injected by
tests/servers/fake_s3.py:

- wrong credentials (a wrong secret, an unknown key id): exit 2, a clear
  message, nothing written (no state file, no object);
- a bucket that does not exist: exit 2, the message says so;
- 503 SlowDown and 429 with Retry-After on listings and PUTs: waited as
  the server asked (the logs say "throttled, waiting N ms"), the migration
  completes;
- 500 and connection resets (listings, GETs, PUTs): retried (the logs say
  "retry"), the migration completes;
- a listing page cut short, and a truncated page without a continuation
  token: the first is retried, the second is a protocol error that fails
  the folder (exit 3, the reason in review) after one request, not a
  loop;
- a new file is written by one create-only PUT (If-None-Match: *), with
  no HEAD first in a folder the copy made; an object that appeared after
  discovery is kept (412), and so it is with a server that refuses the
  header (501, 400) or ignores it: a probe at the first create finds it
  out, then a HEAD before each create;
- discovery of a bucket HEADs (rclone's mtime and mode) only the objects
  whose size equals their source twin's, and none under --size-only.

Needs TREEMIG (ctest sets it). Label s3.
"""

import hashlib
import os
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import tmtest  # noqa: E402
from tmtest import expect_eq, fail  # noqa: E402
import s3servers  # noqa: E402

AK = 'AKIATREEMIGFAULTS'
SECRET = 'SeCrEt-' + os.urandom(12).hex()


def sql(db, q, *a):
    conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True)
    try:
        return conn.execute(q, a).fetchall()
    finally:
        conn.close()


class Ctx:
    def __init__(self, srv, env, tmp):
        self.srv, self.env, self.tmp = srv, env, tmp
        self.n = 0

    def tm(self, *args, rc=0, env=None):
        cp = s3servers.treemig(tmtest.TREEMIG, env or self.env, *args)
        if rc is not None and cp.returncode != rc:
            fail('treemig %s: expected exit %d, %s' % (' '.join(args), rc, tmtest.show(cp)))
        return cp

    def src(self, n=6):
        """A small local tree."""
        self.n += 1
        d = os.path.join(self.tmp, 'src%d' % self.n)
        for i in range(n):
            os.makedirs(os.path.join(d, 'd%d' % (i % 2)), exist_ok=True)
            with open(os.path.join(d, 'd%d' % (i % 2), 'f%d' % i), 'wb') as f:
                f.write(b'x' * (100 + i))
        return d

    def db(self):
        self.n += 1
        return os.path.join(self.tmp, 'f%d.db' % self.n)

    def keys(self, bucket, prefix):
        rc, res, err = s3servers.aws(self.env, self.srv.endpoint, 'list-objects-v2',
                                     '--bucket', bucket, '--prefix', prefix)
        if rc:
            fail('aws list-objects-v2: %s' % err)
        return sorted(o['Key'] for o in (res or {}).get('Contents', []))

    def logs(self, db):
        return [r[0] if isinstance(r[0], bytes) else (r[0] or '').encode()
                for r in sql(db, 'SELECT message FROM logs')]


def case_credentials(c):
    src = c.src()
    for name, env, code in (('a wrong secret', dict(c.env, AWS_SECRET_ACCESS_KEY='wrong'),
                             b'SignatureDoesNotMatch'),
                            ('an unknown key id', dict(c.env, AWS_ACCESS_KEY_ID='AKIANOBODY'),
                             b'InvalidAccessKeyId')):
        for args in ((src, 's3://bkt/cred'), ('s3://bkt/cred', os.path.join(c.tmp))):
            db = c.db()
            c.srv.ctl('reset_stats')
            cp = c.tm('discover', '--db', db, '-q', *args, '--s3-endpoint', c.srv.endpoint,
                      rc=2, env=env)
            err = cp.stderr
            if b'refused the credentials' not in err or code not in err:
                fail('%s: the message does not say so: %s' % (name, err))
            if os.path.exists(db) or os.path.exists(db + '.yaml'):
                fail('%s: a state file or YAML file was written' % name)
            req = c.srv.stats()['stats']['requests']
            if set(req) - {'list'}:
                fail('%s: requests other than the check: %r' % (name, req))
    expect_eq('objects written', [], c.keys('bkt', 'cred/'))
    # no credentials at all
    env = {k: v for k, v in c.env.items() if not k.startswith('AWS_')}
    cp = c.tm('discover', '--db', c.db(), '-q', src, 's3://bkt/cred', '--s3-endpoint',
              c.srv.endpoint, rc=2, env=env)
    if b'no credentials' not in cp.stderr:
        fail('no credentials: %s' % cp.stderr)


def case_missing_bucket(c):
    db = c.db()
    cp = c.tm('discover', '--db', db, '-q', c.src(), 's3://no-such-bucket/x', '--s3-endpoint',
              c.srv.endpoint, rc=2)
    if b'no such bucket' not in cp.stderr or b'NoSuchBucket' not in cp.stderr:
        fail('the message does not say so: %s' % cp.stderr)
    if os.path.exists(db):
        fail('a state file was written')


def case_throttles(c):
    """SlowDown and 429 with Retry-After on listings and PUTs: waited."""
    src = c.src(8)
    db = c.db()
    c.srv.ctl('clear')
    # the destination's listings (after the one-key check of each open)
    c.srv.fault('list', 'slowdown', count=1, retry_after=1, pages=True)
    c.srv.fault('put', 'throttle429', count=1, retry_after=2)
    c.srv.fault('put', 'slowdown', count=1, retry_after=1)
    c.tm('discover', '--db', db, '-q', '--log-level', 'debug', src, 's3://bkt/thr',
         '--s3-endpoint', c.srv.endpoint)
    # some of the destination's folders exist: their listings page
    c.tm('copy', '--db', db, '-y', '-q', '--log-level', 'debug')
    logs = c.logs(db)
    for ms in (1000, 2000):
        if not [m for m in logs if b'throttled, waiting %d ms' % ms in m]:
            fail('no log of a throttle waited %d ms: %r' % (ms, [m for m in logs if b'thrott' in m]))
    expect_eq('faults left', 0, c.srv.stats()['faults_left'])
    keys = c.keys('bkt', 'thr/')
    expect_eq('objects', 8, len([k for k in keys if not k.endswith('/')]))
    expect_eq('folder markers', ['thr/d0/', 'thr/d1/'], [k for k in keys if k.endswith('/')])
    # listings of an S3 source: throttled, then waited
    db2 = c.db()
    c.srv.fault('list', 'throttle429', count=2, retry_after=1, pages=True)
    out = os.path.join(c.tmp, 'thrdown')
    os.makedirs(out)
    c.tm('discover', '--db', db2, '-q', '--log-level', 'debug', 's3://bkt/thr', out,
         '--s3-endpoint', c.srv.endpoint)
    expect_eq('faults left', 0, c.srv.stats()['faults_left'])
    if len([m for m in c.logs(db2) if b'throttled, waiting 1000 ms' in m]) != 2:
        fail('the listing throttles were not waited: %r' % c.logs(db2))


def case_retried(c):
    """500 and connection resets: retried."""
    src = c.src(8)
    db = c.db()
    c.srv.ctl('clear')
    c.srv.fault('put', 'error500', count=2)
    c.srv.fault('put', 'reset', count=1, after=2)
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/ret', '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    expect_eq('faults left', 0, c.srv.stats()['faults_left'])
    # (a reset on a kept-alive connection is sent again by curl itself)
    # (the two 500s may hit one request twice: retries 1 and 2 of it)
    if len([m for m in c.logs(db) if b'; retry ' in m]) < 2:
        fail('the failures were not retried: %r' % c.logs(db))
    keys = c.keys('bkt', 'ret/')
    expect_eq('objects', 8, len([k for k in keys if not k.endswith('/')]))
    expect_eq('folder markers', ['ret/d0/', 'ret/d1/'], [k for k in keys if k.endswith('/')])
    # an S3 source: a reset listing page, a 500 and a cut GET
    out = os.path.join(c.tmp, 'retdown')
    os.makedirs(out)
    db2 = c.db()
    c.srv.fault('list', 'reset', count=1, pages=True)
    c.srv.fault('list', 'truncate', count=1, pages=True)
    c.srv.fault('get', 'error500', count=1)
    c.srv.fault('get', 'truncate', count=1)
    c.tm('discover', '--db', db2, '-q', 's3://bkt/ret', out, '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db2, '-y', '-q')
    c.tm('verify', '--db', db2, '--checksum', '-q')
    expect_eq('faults left', 0, c.srv.stats()['faults_left'])
    expect_eq('files copied', 8, sum(len(f) for _, _, f in os.walk(out)))


def case_truncated_page(c):
    """IsTruncated without a continuation token: a protocol error, once."""
    src = c.src(4)
    db = c.db()
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/tp', '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    out = os.path.join(c.tmp, 'tpdown')
    os.makedirs(out)
    db2 = c.db()
    c.srv.ctl('clear')
    c.srv.ctl('reset_stats')
    # the root's page is whole; the next folder's page is not
    c.srv.fault('list', 'truncated_page', count=1, after=1, pages=True)
    c.tm('discover', '--db', db2, '-q', 's3://bkt/tp', out, '--s3-endpoint',
         c.srv.endpoint, rc=3)
    failed = sql(db2, "SELECT path, error FROM src_nodes WHERE traversal_status = 'failed'")
    if len(failed) != 1 or b'continuation token' not in failed[0][1].encode():
        fail('one folder should fail with the reason: %r' % failed)
    prefix = 'tp' + failed[0][0] + '/'
    pages = [e for e in c.srv.stats()['stats']['list_log'] if e['max_keys'] > 1]
    expect_eq('listing requests of the failed folder (no loop, no retry)', 1,
              len([e for e in pages if e['prefix'] == prefix]))
    expect_eq('faults left', 0, c.srv.stats()['faults_left'])
    cp = c.tm('review', '--db', db2, '--list', 'failed')
    if b'continuation token' not in cp.stdout:
        fail('review does not give the reason: %s' % cp.stdout)


def _etags(c, prefix):
    """{key: ETag} under prefix, listed by awscli (a single PUT's ETag is
    the MD5 of the content)."""
    rc, res, err = s3servers.aws(c.env, c.srv.endpoint, 'list-objects-v2',
                                 '--bucket', 'bkt', '--prefix', prefix)
    if rc:
        fail('aws list-objects-v2: %s' % err)
    return {o['Key']: o['ETag'].strip('"') for o in (res or {}).get('Contents', [])}


def _intruder_run(c, prefix, n, answer):
    """discover a tree of n files to s3://bkt/PREFIX, an object written by
    someone else at d0/f0 after discovery, copy; returns (copy's exit,
    requests during the copy, stats)."""
    src = c.src(n)
    db = c.db()
    c.srv.ctl('conditional', answer=answer)
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/' + prefix, '--s3-endpoint',
         c.srv.endpoint)
    c.srv.ctl('put', bucket='bkt', key=prefix + '/d0/f0', data='theirs')
    c.srv.ctl('reset_stats')
    cp = c.tm('copy', '--db', db, '-y', '-q', '--workers', '4', rc=None)
    st = c.srv.stats()['stats']
    c.srv.ctl('conditional', answer='ok')
    got = {k: v for k, v in _etags(c, prefix + '/').items() if not k.endswith('/')}
    want = {'%s/d%d/f%d' % (prefix, i % 2, i): hashlib.md5(b'x' * (100 + i)).hexdigest()
            for i in range(1, n)}
    want[prefix + '/d0/f0'] = hashlib.md5(b'theirs').hexdigest()
    expect_eq('the objects (the one written after discovery kept)', want, got)
    return cp, st


def case_create_only(c):
    """A new file is one create-only PUT (If-None-Match: *), no HEAD first:
    an object that appeared after discovery is kept (412), not replaced."""
    cp, st = _intruder_run(c, 'co', 12, 'ok')
    req = st['requests']
    if cp.returncode == 0:
        fail('the copy says nothing of the object in its way: %s' % tmtest.show(cp))
    # two for the probe of the server (the second one refused), one per file
    expect_eq('conditional PUTs', 2 + 12, st.get('conditional_puts', 0))
    # the folders were made by this copy: no HEAD of a folder marker nor
    # of the object before a PUT (after the 412 the engine may look)
    if req.get('head', 0) > 2:
        fail('HEADs before the PUTs: %r' % req)


def case_many_folders(c):
    """A copy into 600 new folders, a file in each: no HEAD at all (each
    file's folder is in the adapter's table of folders it made; with one
    slot per hash in 4,096, collisions evicted some 40 of them, and each
    of their files cost a HEAD of the folder's marker)."""
    src = os.path.join(c.tmp, 'mfsrc')
    for i in range(600):
        os.makedirs(os.path.join(src, 'd%03d' % i))
        with open(os.path.join(src, 'd%03d' % i, 'f'), 'wb') as f:
            f.write(b'x' * (i + 1))
    db = c.db()
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/mf', '--s3-endpoint', c.srv.endpoint)
    c.srv.ctl('reset_stats')
    c.tm('copy', '--db', db, '-y', '-q')
    st = c.srv.stats()['stats']
    expect_eq('HEADs of the copy', [], st['head_log'])
    expect_eq('objects', 1200, len(c.keys('bkt', 'mf/')))


def case_create_only_refused(c):
    """A server that refuses If-None-Match (501, 400) or ignores it: the
    probe at the first create finds it, then a HEAD before each create;
    the object in the way is still kept."""
    for answer, puts in ((501, 1), (400, 1), ('ignore', 2)):
        n = 24
        cp, st = _intruder_run(c, 'cr%s' % answer, n, answer)
        if cp.returncode == 0:
            fail('%s: the copy says nothing of the object in its way' % answer)
        # the probe's only: the answer is known for the rest of the run
        expect_eq('%s: create-only PUTs' % answer, puts, st.get('conditional_puts', 0))
        if st['requests'].get('head', 0) < n:
            fail('%s: fewer HEADs than files: %r' % (answer, st['requests']))
        if [k for k in _etags(c, 'cr%s/' % answer) if 'probe' in k]:
            fail('%s: the probe object was left' % answer)


def case_meta_later(c):
    """Discovery of a bucket HEADs (for rclone's mtime and mode) only the
    files whose size equals their source twin's; their metadata decides
    (same: already there; another mtime: a conflict), the others are
    conflict size without a request of their own."""
    src = c.src(10)
    db = c.db()
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/lz', '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    # f1, f3: another size; f2: same size, another mtime (an hour back,
    # also a whole second, so that S3's LastModified cannot decide)
    for i in (1, 3):
        with open(os.path.join(src, 'd%d' % (i % 2), 'f%d' % i), 'ab') as f:
            f.write(b'more')
    p2 = os.path.join(src, 'd0', 'f2')
    st = os.stat(p2)
    os.utime(p2, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))
    # not on the source: HEADed too (treemig delete checks its mtime)
    c.srv.ctl('put', bucket='bkt', key='lz/d0/extra', data='x',
              meta={'mtime': '1500000000.25'})
    c.srv.ctl('reset_stats')
    db2 = c.db()
    c.tm('discover', '--db', db2, '-q', src, 's3://bkt/lz', '--s3-endpoint', c.srv.endpoint)
    got = dict(sql(db2, "SELECT path, coalesce(conflict, copy_status) FROM src_nodes "
                        "WHERE type = 'file'"))
    want = {'/d%d/f%d' % (i % 2, i): 'already_existed' for i in range(10)}
    want.update({'/d1/f1': 'size', '/d1/f3': 'size', '/d0/f2': 'dst_newer'})
    expect_eq('files compared', want, got)
    heads = c.srv.stats()['stats']['head_log']
    files = sorted(k for k in heads if not k.endswith('/'))
    expect_eq('objects HEADed', sorted(['lz/d0/extra'] + ['lz/d%d/f%d' % (i % 2, i)
                                                          for i in range(10)
                                                          if i not in (1, 3)]), files)
    expect_eq('the mtime recorded of the object not on the source',
              [(1500000000250000000,)],
              sql(db2, "SELECT mtime FROM dst_nodes WHERE path = '/d0/extra'"))


def case_size_only(c):
    """discover --size-only of a bucket makes no HEAD at all (rclone check
    --size-only's work: sizes from the listing, no mode nor mtime read
    from the metadata, neither of files nor of folders); a file of
    another size is still found, one of another mtime or mode is not
    (the default compare finds both, with its HEADs)."""
    src = c.src(10)
    db = c.db()
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/so', '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    with open(os.path.join(src, 'd1', 'f1'), 'ab') as f:
        f.write(b'more')  # another size
    p2 = os.path.join(src, 'd0', 'f2')
    st = os.stat(p2)
    os.utime(p2, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))  # another mtime
    os.chmod(os.path.join(src, 'd0', 'f4'), 0o600)  # another mode
    os.chmod(os.path.join(src, 'd1'), 0o700)  # a folder of another mode
    q = ("SELECT path, coalesce(conflict, copy_status) FROM src_nodes "
         "WHERE path IN ('/d1/f1', '/d0/f2', '/d0/f4', '/d0/f6', '/d1')")
    c.srv.ctl('reset_stats')
    db2 = c.db()
    c.tm('discover', '--db', db2, '-q', '--size-only', src, 's3://bkt/so',
         '--s3-endpoint', c.srv.endpoint)
    stats = c.srv.stats()['stats']
    expect_eq('HEADs under --size-only', [], stats['head_log'])
    expect_eq('requests under --size-only: the listings only', ['list'],
              sorted(stats['requests']))
    want = {'/d1/f1': 'size', '/d0/f2': 'already_existed', '/d0/f4': 'already_existed',
            '/d0/f6': 'already_existed', '/d1': 'already_existed'}
    expect_eq('files compared by size only', want, dict(sql(db2, q)))
    # the same through the fault layer (which passes stat_many on)
    c.srv.ctl('reset_stats')
    db4 = c.db()
    c.tm('discover', '--db', db4, '-q', '--size-only', src, 'fault::s3://bkt/so',
         '--s3-endpoint', c.srv.endpoint)
    expect_eq('HEADs under --size-only, fault layer', [], c.srv.stats()['stats']['head_log'])
    expect_eq('files compared by size only, fault layer', want, dict(sql(db4, q)))
    # the default compare reads the metadata and finds mtime and modes
    c.srv.ctl('reset_stats')
    db3 = c.db()
    c.tm('discover', '--db', db3, '-q', src, 's3://bkt/so', '--s3-endpoint', c.srv.endpoint)
    expect_eq('files compared by size, mtime and mode',
              {'/d1/f1': 'size', '/d0/f2': 'dst_newer', '/d0/f4': 'attrs',
               '/d0/f6': 'already_existed', '/d1': 'attrs'},
              dict(sql(db3, q)))
    if not c.srv.stats()['stats']['head_log']:
        fail('the default compare made no HEAD')


def case_meta_later_fails(c):
    """The HEADs discovery asks for after a listing fail (500s past the
    client's own three rounds): the page is listed again under the retry
    policy, and discovery ends as if nothing had failed."""
    src = os.path.join(c.tmp, 'lzfsrc')
    os.makedirs(os.path.join(src, 'd0'))
    for i in range(4):
        with open(os.path.join(src, 'd0', 'f%d' % i), 'wb') as f:
            f.write(b'x' * (100 + i))
    db = c.db()
    c.tm('discover', '--db', db, '-q', src, 's3://bkt/lzf', '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    c.srv.ctl('clear')
    # after the HEAD of the marker d0/ (the root's listing), the three
    # rounds of the 4 HEADs of d0's files fail: one stat_many
    c.srv.fault('head', 'error500', count=12, after=1)
    db2 = c.db()
    c.tm('discover', '--db', db2, '-q', src, 's3://bkt/lzf', '--s3-endpoint', c.srv.endpoint)
    expect_eq('faults left', 0, c.srv.stats()['faults_left'])
    if not [m for m in c.logs(db2) if b'; retry 1 of' in m and b'head' in m]:
        fail('no page was listed again: %r' % c.logs(db2))
    got = dict(sql(db2, "SELECT path, coalesce(conflict, copy_status) FROM src_nodes "
                        "WHERE type = 'file'"))
    expect_eq('files compared', {'/d0/f%d' % i: 'already_existed' for i in range(4)}, got)


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_s3_faults')
    tmp = s3servers.tmpdir('s3faults-')
    home = s3servers.tmpdir('s3home-')
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_DEFAULT_REGION='us-east-1', PATH=os.environ.get('PATH'))
    srv = s3servers.FakeS3(AK, SECRET, ['bkt'])
    c = Ctx(srv, env, tmp)
    try:
        for name, fn in (('wrong credentials: exit 2, nothing written', case_credentials),
                         ('a missing bucket: exit 2', case_missing_bucket),
                         ('503 SlowDown and 429 Retry-After: waited', case_throttles),
                         ('500 and connection resets: retried', case_retried),
                         ('a truncated page without a token: an error, not a loop',
                          case_truncated_page),
                         ('a new file: a create-only PUT, an object in its way kept',
                          case_create_only),
                         ('600 new folders: no HEAD of their markers', case_many_folders),
                         ('If-None-Match refused (501, 400) or ignored: a HEAD first',
                          case_create_only_refused),
                         ('discovery HEADs only the objects of the same size',
                          case_meta_later),
                         ('discover --size-only: no HEAD at all', case_size_only),
                         ('those HEADs failing: the page is listed again',
                          case_meta_later_fails)):
            t0 = time.time()
            r.check(name, fn, c)
            print('     (%.1f s)' % (time.time() - t0))
    finally:
        srv.stop()
    r.finish()


if __name__ == '__main__':
    main()
