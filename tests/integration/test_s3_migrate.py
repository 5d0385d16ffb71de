#!/usr/bin/env python3
"""Migrations with an s3:// side through the treemig CLI, against
tests/servers/fake_s3.py (which checks every signature), each result
checked with an independent client (Debian's awscli) and, for S3 to
local, byte for byte with the mode and mtime against the source:

- local -> S3: exclusions, what S3 cannot hold (a symlink, a FIFO, a name
  that is not UTF-8, a key over 1024 bytes) skipped at discovery and
  listed by review before anything is written, rclone's metadata on every
  object, multipart above the part size, an empty folder's marker, verify
  --checksum, and a second discovery that finds everything there;
- S3 -> local: objects written by awscli (with rclone's metadata, without
  it, multipart), markers, byte for byte, mode and mtime;
- S3 -> S3 on one endpoint: server-side copies (counted by the server),
  metadata carried;
- -o s3-server-modtime: no HEAD per object;
- the storage options are recorded (later commands need none), and no
  secret (secret key, session token) is in the state file, the YAML file,
  the logs table or any output.

Needs TREEMIG (ctest sets it). Label s3.
"""

import hashlib
import os
import sqlite3
import stat
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import tmtest  # noqa: E402
from tmtest import expect_eq, fail  # noqa: E402
import s3servers  # noqa: E402

MiB = 1024 * 1024
AK = 'AKIATREEMIGMIGRATE'
SECRET = 'SeCrEt-' + os.urandom(12).hex()
TOKEN = 'ToKeN-' + os.urandom(16).hex()
T0 = 1577934245123456789          # 2020-01-02 03:04:05.123456789


def data_of(n, seed):
    out, block, i = [], hashlib.sha256(seed.encode()).digest(), 0
    while len(out) * 32 < n:
        out.append(hashlib.sha256(block + i.to_bytes(8, 'little')).digest())
        i += 1
    return b''.join(out)[:n]


class Ctx:
    def __init__(self, srv, env, tmp):
        self.srv, self.env, self.tmp = srv, env, tmp
        self.dbs = []

    def tm(self, *args, rc=0, env=None):
        cp = s3servers.treemig(tmtest.TREEMIG, env or self.env, *args)
        if rc is not None and cp.returncode != rc:
            fail('treemig %s: expected exit %d, %s' % (
                ' '.join(a if isinstance(a, str) else repr(a) for a in args), rc,
                tmtest.show(cp)))
        return cp

    def aws(self, *args, ok=True):
        rc, res, err = s3servers.aws(self.env, self.srv.endpoint, *args)
        if ok and rc != 0:
            fail('aws s3api %s: exit %d: %s' % (' '.join(args), rc, err.strip()[-800:]))
        return res if ok else (rc, res, err)

    def keys(self, bucket, prefix=''):
        out, token = {}, None
        while True:
            args = ['list-objects-v2', '--bucket', bucket, '--prefix', prefix]
            if token:
                args += ['--continuation-token', token]
            res = self.aws(*args) or {}
            for o in res.get('Contents', []):
                out[o['Key']] = o
            token = res.get('NextContinuationToken')
            if not token:
                return out

    def head(self, bucket, key):
        return self.aws('head-object', '--bucket', bucket, '--key', key)

    def get(self, bucket, key):
        p = os.path.join(self.tmp, 'got')
        self.aws('get-object', '--bucket', bucket, '--key', key, p)
        with open(p, 'rb') as f:
            return f.read()

    def db(self, name):
        p = os.path.join(self.tmp, name + '.db')
        self.dbs.append(p)
        return p

    def stats(self):
        return self.srv.stats()['stats']


def sql(db, q, *a):
    conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True)
    try:
        return conn.execute(q, a).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------- the local tree

def put_file(root, rel, data, mode, mtime):
    p = os.path.join(root, os.fsdecode(rel) if isinstance(rel, bytes) else rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
    os.chmod(p, mode)
    os.utime(p, ns=(mtime, mtime))


def make_local(root):
    """The source tree; returns {key relative to the root: (bytes, mode,
    mtime ns)} of what S3 must hold, and the skipped paths with why."""
    files = {
        'a/x.txt': (b'hello\n', 0o644, T0),
        'a/b/y.bin': (data_of(100000, 'y'), 0o600, T0 + 1),
        'a/b/c/deep.dat': (data_of(3000, 'deep'), 0o640, T0 - 10**9 * 86400 * 365),
        'zero': (b'', 0o644, 1000000000 * 10**9),
        'big/nine.bin': (data_of(9 * MiB + 7, 'nine'), 0o644, T0 + 5),
        'names/espace \u00e9 \u00fc.txt': (b'unicode', 0o644, T0 + 6),
        'names/plus+amp&q=1?.txt': (b'specials', 0o755, T0 + 7),
        'names/%41%2F.txt': (b'percent', 0o644, T0 + 8),
    }
    for rel, (d, m, t) in files.items():
        put_file(root, rel, d, m, t)
    put_file(root, 'skip/log.tmp', b'excluded', 0o644, T0)
    put_file(root, 'skip/keep.txt', b'kept', 0o644, T0)
    os.makedirs(os.path.join(root, 'empty/inner'))
    os.symlink('x.txt', os.path.join(root, 'a/link'))
    os.mkfifo(os.path.join(root, 'a/fifo'))
    with open(os.path.join(os.fsencode(root), b'a/bad\xff.txt'), 'wb') as f:
        f.write(b'not utf-8')
    deep = os.path.join(root, 'long', *(['d' * 200] * 5))
    os.makedirs(deep)
    with open(os.path.join(deep, 'f' * 30), 'wb') as f:
        f.write(b'too long a key')
    files['skip/keep.txt'] = (b'kept', 0o644, T0)
    skipped = {'/a/link': 'S3 cannot hold a symlink', '/a/bad\\xff.txt': 'UTF-8', '/long/' + '/'.join(['d' * 200] * 5) + '/' + 'f' * 30: '1024'}
    return files, skipped


# ---------------------------------------------------------------- checks

def case_local_to_s3(c):
    src = os.path.join(c.tmp, 'src')
    os.makedirs(src)
    files, skipped = make_local(src)
    c.files = files
    db = c.db('up')
    ep = c.srv.endpoint
    c.srv.ctl('reset_stats')
    c.tm('discover', '--db', db, '-q', '--exclude', '*.tmp', src, 's3://dst-bkt/mig',
         '--s3-endpoint', ep, '--s3-region', 'us-east-1', '--s3-storage-class', 'STANDARD_IA')
    st = c.stats()['requests']
    if st.get('put') or st.get('create') or st.get('part'):
        fail('discovery wrote to the bucket: %r' % st)
    # what S3 cannot hold is skipped, with why, before anything is written
    cp = c.tm('review', '--db', db, '--list', 'skipped')
    lines = cp.stdout.decode('utf-8', 'surrogateescape').splitlines()
    for path, word in skipped.items():
        hit = [l for l in lines if l.split('\t')[3:4] == [path]]
        if not hit or word not in hit[0].split('\t')[4]:
            fail('review --list skipped does not show %s with its reason (%s):\n%s'
                 % (path, word, '\n'.join(lines)))
    if not any('/a/fifo' in l for l in lines):
        fail('the FIFO is not listed as skipped:\n%s' % '\n'.join(lines))
    cp = c.tm('review', '--db', db, '--list', 'excluded')
    if '/skip/log.tmp' not in cp.stdout.decode():
        fail('the excluded file is not listed: %s' % cp.stdout)
    expect_eq('nothing in the bucket before the copy', {}, c.keys('dst-bkt'))

    c.srv.ctl('reset_stats')
    c.tm('copy', '--db', db, '-y', '-q')
    keys = c.keys('dst-bkt')
    # every folder made gets its "name/" marker (mkdir writes it, so that
    # an empty one stays: the deepest 'long' folder holds only what was
    # skipped), with the folder's mode and mtime (set_attr); the root none
    longest = 'mig/long/' + '/'.join(['d' * 200] * 5) + '/'
    folders = set(m[:i + 1] for m in ['mig/' + k for k in files] +
                  ['mig/empty/inner/', longest, 'mig/skip/log.tmp']
                  for i in range(4, len(m)) if m[i] == '/')
    want = set('mig/' + k for k in files) | folders
    expect_eq('the keys awscli lists', sorted(want), sorted(keys))
    for m in sorted(folders):
        meta = c.head('dst-bkt', m).get('Metadata', {})
        st_ = os.stat(os.path.join(src, m[4:]))
        expect_eq('mode of the marker %s' % m, '%o' % (stat.S_IFDIR | stat.S_IMODE(st_.st_mode)),
                  meta.get('mode'))
        expect_eq('mtime of the marker %s' % m, s3servers.rclone_mtime(st_.st_mtime_ns),
                  meta.get('mtime'))
    for rel, (data, mode, mtime) in files.items():
        h = c.head('dst-bkt', 'mig/' + rel)
        meta = h.get('Metadata', {})
        expect_eq('mtime of %s (rclone format)' % rel, s3servers.rclone_mtime(mtime),
                  meta.get('mtime'))
        expect_eq('mode of %s' % rel, '%o' % (stat.S_IFREG | mode), meta.get('mode'))
        expect_eq('uid of %s' % rel, str(os.getuid()), meta.get('uid'))
        expect_eq('size of %s' % rel, len(data), h['ContentLength'])
        expect_eq('storage class of %s' % rel, 'STANDARD_IA', h.get('StorageClass'))
        if c.get('dst-bkt', 'mig/' + rel) != data:
            fail('the bytes of %s differ' % rel)
    h = c.head('dst-bkt', 'mig/big/nine.bin')
    if not h['ETag'].strip('"').endswith('-2'):
        fail('a 9 MiB file was not a 2-part upload: ETag %s' % h['ETag'])
    if c.head('dst-bkt', 'mig/empty/inner/')['ContentLength'] != 0:
        fail('the empty folder marker is not empty')
    st = c.stats()
    expect_eq('no PUT without Content-MD5', 0, st['puts_without_md5'])
    ups = c.aws('list-multipart-uploads', '--bucket', 'dst-bkt') or {}
    expect_eq('no incomplete upload left', [], ups.get('Uploads') or [])
    c.tm('verify', '--db', db, '--checksum', '-q')
    # a new discovery finds everything there, equal (mtimes read back)
    db2 = c.db('up2')
    c.tm('discover', '--db', db2, '-q', '--exclude', '*.tmp', src, 's3://dst-bkt/mig',
         '--s3-endpoint', ep)
    rows = sql(db2, "SELECT path, copy_status, conflict FROM src_nodes WHERE type = 'file' "
                    "AND copy_status NOT IN ('already_existed', 'excluded', 'skipped')")
    expect_eq('files not found equal by a second discovery', [], rows)
    # the options are recorded: verify needs none
    opts = dict(r for r in sql(db, "SELECT key, value FROM migration WHERE key = "
                                   "'storage_options'"))
    if 's3-endpoint=' + ep not in (opts.get('storage_options') or ''):
        fail('storage options not recorded: %r' % opts)


def last_modified(h):
    """awscli's LastModified ('2026-12-06T09:26:04+00:00') in seconds."""
    import calendar
    return calendar.timegm(time.strptime(h['LastModified'][:19], '%Y-%m-%dT%H:%M:%S'))


def put_aws(c, bucket, key, data, meta=None):
    p = os.path.join(c.tmp, 'up')
    with open(p, 'wb') as f:
        f.write(data)
    args = ['put-object', '--bucket', bucket, '--key', key, '--body', p]
    if meta:
        args += ['--metadata', ','.join('%s=%s' % kv for kv in meta.items())]
    c.aws(*args)


def case_s3_to_local(c):
    objs = {
        'in/meta.txt': (b'with metadata\n', {'mtime': '1600000000.25', 'mode': '100600'}),
        'in/ns.bin': (data_of(5000, 'ns'), {'mtime': s3servers.rclone_mtime(T0), 'mode': '100755'}),
        'in/plain.txt': (b'no metadata at all', None),
        'in/sub/deeper/z.dat': (data_of(70000, 'z'), {'mtime': '1500000000', 'mode': '100644'}),
        'in/zero': (b'', {'mtime': '1400000000.5'}),
    }
    for k, (d, m) in objs.items():
        put_aws(c, 'src-bkt', k, d, m)
    # a multipart object from awscli (its threshold is 8 MiB)
    big = os.path.join(c.tmp, 'bigsrc')
    with open(big, 'wb') as f:
        f.write(data_of(10 * MiB, 'awsbig'))
    rc, res, err = s3servers.aws(c.env, c.srv.endpoint, 'put-object', '--bucket', 'src-bkt',
                                 '--key', 'in/sub/big.bin', '--body', big)
    if rc:
        fail('aws put-object: %s' % err)
    put_aws(c, 'src-bkt', 'in/emptydir/', b'')
    dst = os.path.join(c.tmp, 'down')
    os.makedirs(dst)
    db = c.db('down')
    c.tm('discover', '--db', db, '-q', 's3://src-bkt/in', dst, '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    c.tm('verify', '--db', db, '--checksum', '-q')
    for k, (d, m) in list(objs.items()) + [('in/sub/big.bin', (None, None))]:
        p = os.path.join(dst, k[3:])
        with open(p, 'rb') as f:
            got = f.read()
        h = c.head('src-bkt', k)
        want = d if d is not None else c.get('src-bkt', k)
        if got != want:
            fail('%s: bytes differ' % k)
        st = os.lstat(p)
        meta = (m or {})
        want_mode = int(meta['mode'], 8) & 0o7777 if 'mode' in meta else 0o644
        expect_eq('mode of %s' % k, oct(want_mode), oct(stat.S_IMODE(st.st_mode)))
        if 'mtime' in meta:
            whole, _, frac = meta['mtime'].partition('.')
            want_ns = int(whole) * 10**9 + int((frac + '000000000')[:9])
        else:
            # without metadata: S3's LastModified
            want_ns = last_modified(h) * 10**9
        expect_eq('mtime of %s' % k, want_ns, st.st_mtime_ns)
    if not os.path.isdir(os.path.join(dst, 'emptydir')) or os.listdir(os.path.join(dst, 'emptydir')):
        fail('the marker in/emptydir/ did not become an empty folder')
    expect_eq('the local tree', sorted(['emptydir', 'meta.txt', 'ns.bin', 'plain.txt', 'sub',
                                        'zero']), sorted(os.listdir(dst)))


def case_s3_to_s3(c):
    db = c.db('s2s')
    c.srv.ctl('reset_stats')
    c.tm('discover', '--db', db, '-q', 's3://dst-bkt/mig', 's3://other-bkt/mirror',
         '--s3-endpoint', c.srv.endpoint)
    c.tm('copy', '--db', db, '-y', '-q')
    st = c.stats()['requests']
    n = len(c.files)
    expect_eq('server-side copies (CopyObject, one per file)', n, st.get('copy'))
    src, dst = c.keys('dst-bkt', 'mig/'), c.keys('other-bkt', 'mirror/')
    markers = [k for k in dst if k.endswith('/')]
    # each folder's marker is PUT once, by mkdir_attr with its attributes
    # (the folder's attribute pass writes nothing again)
    if st.get('part') or st.get('create') or st.get('put', 0) != len(markers):
        fail('bytes went through treemig (PUTs other than once %d markers): %r'
             % (len(markers), st))
    expect_eq('the mirrored keys', sorted(k[4:] for k in src if not k.endswith('/')),
              sorted(k[7:] for k in dst if not k.endswith('/')))
    for rel in c.files:
        a, b = c.head('dst-bkt', 'mig/' + rel), c.head('other-bkt', 'mirror/' + rel)
        expect_eq('metadata of %s' % rel, a.get('Metadata'), b.get('Metadata'))
    # a marker written once still carries its folder's mode and mtime
    for k in markers:
        if k == 'mirror/' or 'mig/' + k[7:] not in src:
            continue
        a, b = c.head('dst-bkt', 'mig/' + k[7:]), c.head('other-bkt', k)
        for name in ('mtime', 'mode'):
            got = (b.get('Metadata') or {}).get(name)
            if got is None:
                fail('the marker %s has no %s: %r' % (k, name, b.get('Metadata')))
            expect_eq('%s of the marker %s' % (name, k), (a.get('Metadata') or {}).get(name), got)
    if 'mirror/empty/inner/' not in dst:
        fail('the empty folder was not carried: %r' % sorted(dst))
    c.tm('verify', '--db', db, '--checksum', '-q')
    # overlapping roots in one bucket are refused
    cp = c.tm('discover', '--db', c.db('over'), 's3://dst-bkt/mig', 's3://dst-bkt/mig/in',
              '--s3-endpoint', c.srv.endpoint, rc=2)
    if b'overlap' not in cp.stderr:
        fail('no overlap message: %s' % cp.stderr)


def case_server_modtime(c):
    """-o s3-server-modtime: listings take LastModified, no HEAD per object;
    sizes alone are compared."""
    dst = os.path.join(c.tmp, 'down2')
    os.makedirs(dst)
    db = c.db('smt')
    c.srv.ctl('reset_stats')
    c.tm('discover', '--db', db, '-q', '-o', 's3-server-modtime', 's3://dst-bkt/mig', dst,
         '--s3-endpoint', c.srv.endpoint)
    st = c.stats()['requests']
    expect_eq('HEAD requests while listing', 0, st.get('head', 0))
    c.tm('copy', '--db', db, '-y', '-q')
    c.tm('verify', '--db', db, '-q')
    want = last_modified(c.head('dst-bkt', 'mig/a/x.txt'))
    expect_eq('the mtime is LastModified', want, int(os.stat(os.path.join(dst, 'a/x.txt')).st_mtime))


def case_bad_specs(c):
    for spec, word in (('s3://AKIA:secret@dst-bkt/x', b'credentials'),
                       ('s3://ab', b'3 to 63'),
                       ('s3://dst-bkt/a/../b', b"'..'")):
        cp = c.tm('discover', '--db', c.db('bad'), os.path.join(c.tmp, 'src'), spec,
                  '--s3-endpoint', c.srv.endpoint, rc=2)
        if word not in cp.stderr:
            fail('%s: %s' % (spec, cp.stderr))
    cp = c.tm('discover', '--db', c.db('bad'), os.path.join(c.tmp, 'src'), 's3://dst-bkt/x',
              '--s3-endpoint', 'http://user:pw@127.0.0.1:1', rc=2)
    if b'credentials' not in cp.stderr:
        fail('an endpoint with credentials: %s' % cp.stderr)


def check_no_secret(c):
    blobs = [o or b'' for o in s3servers.OUTPUT]
    for p in c.dbs + [d + '.yaml' for d in c.dbs] + [d + '-wal' for d in c.dbs]:
        if os.path.exists(p):
            with open(p, 'rb') as f:
                blobs.append(f.read())
    n_logs = 0
    for d in c.dbs:
        if os.path.exists(d):
            rows = sql(d, 'SELECT message FROM logs')
            n_logs += len(rows)
            blobs += [r[0].encode() if isinstance(r[0], str) else (r[0] or b'') for r in rows]
    blob = b''.join(blobs)
    for name, s in (('secret key', SECRET), ('session token', TOKEN)):
        if s.encode() in blob:
            fail('the %s appears in a state file, a YAML file, the logs or an output' % name)
    if not n_logs or len(blob) < 10000:
        fail('nothing was searched (%d log rows, %d bytes)' % (n_logs, len(blob)))


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_s3_migrate')
    tmp = s3servers.tmpdir('s3mig-')
    home = s3servers.tmpdir('s3home-')
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_SESSION_TOKEN=TOKEN, AWS_DEFAULT_REGION='us-east-1',
                              PATH=os.environ.get('PATH'))
    srv = s3servers.FakeS3(AK, SECRET, ['src-bkt', 'dst-bkt', 'other-bkt'], token=TOKEN)
    c = Ctx(srv, env, tmp)
    try:
        for name, fn in (('local -> S3 (skipped, excluded, metadata, multipart, verify)',
                          case_local_to_s3),
                         ('S3 -> local (byte for byte, mode, mtime)', case_s3_to_local),
                         ('S3 -> S3 (server-side copy)', case_s3_to_s3),
                         ('-o s3-server-modtime (no HEAD)', case_server_modtime),
                         ('specs refused', case_bad_specs),
                         ('no secret anywhere', check_no_secret)):
            t0 = time.time()
            r.check(name, fn, c)
            print('     (%.1f s)' % (time.time() - t0))
    finally:
        srv.stop()
    r.finish()


if __name__ == '__main__':
    main()
