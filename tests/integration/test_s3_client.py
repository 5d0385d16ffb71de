#!/usr/bin/env python3
"""The S3 client (src/adapter/s3/) against tests/servers/fake_s3.py, a
fault-injecting S3 endpoint that checks signatures, with Debian's awscli
as an independent second client. test_s3_s3rver.py runs the cases that
s3rver supports against s3rver.

Needs S3TOOL (the driver, tests/tools/s3tool.c), set by ctest.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, fail  # noqa: E402
import s3servers  # noqa: E402
from s3servers import aws, s3tool  # noqa: E402

MiB = 1024 * 1024
AK = 'AKIATREEMIGTEST01'
SECRET = 'SeCrEt-' + os.urandom(12).hex()
TOKEN = 'ToKeN-' + os.urandom(16).hex()


class Ctx:
    """One server and how to reach it."""

    def __init__(self, srv, env, bucket, tmp):
        self.srv, self.env, self.bucket, self.tmp = srv, env, bucket, tmp

    def tool(self, *args, **kw):
        return s3tool(self.env, self.srv.endpoint, *args, **kw)

    def ok(self, *args, **kw):
        rc, out, err, ej = self.tool(*args, **kw)
        if rc != 0:
            fail('s3tool %s: exit %d: %s' % (' '.join(map(str, args)), rc, err.strip()[-800:]))
        return out

    def aws(self, *args):
        rc, res, err = aws(self.env, self.srv.endpoint, *args)
        if rc != 0:
            fail('aws s3api %s: exit %d: %s' % (' '.join(args), rc, err.strip()[-800:]))
        return res

    def file(self, name, data):
        p = os.path.join(self.tmp, name)
        with open(p, 'wb') as f:
            f.write(data)
        return p

    def read(self, name):
        with open(os.path.join(self.tmp, name), 'rb') as f:
            return f.read()


def data_of(n, seed):
    out, block, i = [], hashlib.sha256(seed.encode()).digest(), 0
    while len(out) * 32 < n:
        out.append(hashlib.sha256(block + i.to_bytes(8, 'little')).digest())
        i += 1
    return b''.join(out)[:n]


def all_pages(lines):
    return [l for l in lines if isinstance(l, dict) and 'page' in l]


# ---------------------------------------------------------------- cases

def case_roundtrip_metadata(c):
    """PUT with rclone's metadata, HEAD and GET through the client; awscli
    sees rclone's exact texts."""
    body = data_of(1000, 'rt')
    src = c.file('rt', body)
    c.ok('put', c.bucket, 'meta/one file', src, '--mtime', '1700000000500000000',
         '--mode', '100644', '--uid', '1000', '--gid', '100')
    st = c.ok('head', c.bucket, 'meta/one file')[0]
    expect_eq('size', 1000, st['size'])
    expect_eq('mtime from x-amz-meta-mtime', 1700000000500000000, st['meta']['mtime_ns'])
    expect_eq('mode', 0o100644, st['meta']['mode'])
    expect_eq('uid, gid', (1000, 100), (st['meta']['uid'], st['meta']['gid']))
    expect_eq('etag is the md5', hashlib.md5(body).hexdigest(), st['etag'])
    h = c.aws('head-object', '--bucket', c.bucket, '--key', 'meta/one file')
    expect_eq('rclone metadata texts', {'mtime': '1700000000.5', 'mode': '100644',
                                        'uid': '1000', 'gid': '100'}, h['Metadata'])
    c.ok('get', c.bucket, 'meta/one file', '--out', os.path.join(c.tmp, 'rt.out'))
    expect_eq('bytes read back', body, c.read('rt.out'))
    # a byte range, and the pull reader in odd chunks
    c.ok('get', c.bucket, 'meta/one file', '--range', '10', '20', '--out',
         os.path.join(c.tmp, 'rt.range'))
    expect_eq('range', body[10:30], c.read('rt.range'))
    out = c.ok('get', c.bucket, 'meta/one file', '--reader', '--chunk', '7', '--out',
               os.path.join(c.tmp, 'rt.reader'))
    expect_eq('reader bytes', body, c.read('rt.reader'))
    expect_eq('reader stat size', 1000, out[0]['stat']['size'])
    # mtime with 9 digits, and before the epoch
    c.ok('put', c.bucket, 'meta/ns', src, '--mtime', '1354040105123456789')
    c.ok('put', c.bucket, 'meta/neg', src, '--mtime', '-1500000000')
    h = c.aws('head-object', '--bucket', c.bucket, '--key', 'meta/ns')
    expect_eq('ns mtime text', '1354040105.123456789', h['Metadata']['mtime'])
    h = c.aws('head-object', '--bucket', c.bucket, '--key', 'meta/neg')
    expect_eq('negative mtime text', '-1.5', h['Metadata']['mtime'])


def case_awscli_cross(c):
    """What awscli writes lists and reads through the client, odd keys
    included; what the client writes (single and multipart) reads back
    identically with awscli."""
    keys = ['x/plain', 'x/with space', 'x/plus+sign', 'x/caf\u00e9 \u4e2d\u6587',
            'x/tab\there', 'x/amp&lt;<>"\'', 'x/pct%2F']
    if c.srv.kind == 'fake':
        # s3rver ignores encoding-type=url (a CR comes back as LF) and
        # drops "/./" from keys; the client's side is checked here
        keys += ['x/cr\rlf\nkey', 'x/dot/./seg', 'x/ctl\x01\x1f']
    want = {}
    for i, k in enumerate(keys):
        body = data_of(100 + i, k)
        p = c.file('aw%d' % i, body)
        c.aws('put-object', '--bucket', c.bucket, '--key', k, '--body', p)
        want[k] = body
    pages = all_pages(c.ok('ls', c.bucket, '--prefix', 'x/', '--max-keys', '3'))
    got = [o['key'] for p in pages for o in p['objects']]
    expect_eq('keys listed, in byte order', sorted(keys, key=lambda s: s.encode()), got)
    expect_eq('pages of 3', [3] * (len(keys) // 3) + ([len(keys) % 3] if len(keys) % 3 else []),
              [len(p['objects']) for p in pages])
    for i, k in enumerate(keys):
        c.ok('get', c.bucket, k, '--out', os.path.join(c.tmp, 'awo'))
        if c.read('awo') != want[k]:
            fail('object %r read through the client differs' % k)
    # the client writes, awscli reads
    big = data_of(20 * MiB + 123, 'cross-big')
    p = c.file('cross-big', big)
    c.ok('--part-size', str(5 * MiB), 'put', c.bucket, 'y/big multipart', p)
    c.ok('put', c.bucket, 'y/small', c.file('cross-small', b'small'))
    for k, body in (('y/big multipart', big), ('y/small', b'small')):
        c.aws('get-object', '--bucket', c.bucket, '--key', k, os.path.join(c.tmp, 'awr'))
        if c.read('awr') != body:
            fail('awscli reads %r differently' % k)


def case_listing_resume(c):
    """3,100 keys page by page; a listing stopped after 2 pages resumes
    from the stored cursor (start-after) and redoes nothing."""
    c.ok('fill', c.bucket, 'many/k', '3100')
    cursor = os.path.join(c.tmp, 'cursor')
    first = all_pages(c.ok('ls', c.bucket, '--prefix', 'many/', '--max-keys', '1000',
                           '--pages', '2', '--cursor', cursor))
    expect_eq('two pages before the stop', 2, len(first))
    with open(cursor) as f:
        expect_eq('stored cursor is the last key of page 2', 'many/k01999', f.read())
    rest = all_pages(c.ok('ls', c.bucket, '--prefix', 'many/', '--max-keys', '1000',
                          '--cursor', cursor))
    expect_eq('pages after the resume', [1000, 100], [len(p['objects']) for p in rest])
    expect_eq('requests of the resumed listing', 2, rest[-1]['requests'])
    keys = [o['key'] for p in first + rest for o in p['objects']]
    expect_eq('every key once, in order', ['many/k%05d' % i for i in range(3100)], keys)
    if rest[-1]['truncated']:
        fail('last page truncated')
    # folders: a stored cursor that is a common prefix is not listed again
    for k in ('tree/a/1', 'tree/a/2', 'tree/b/1', 'tree/c', 'tree/d/1', 'tree/e'):
        c.ok('put', c.bucket, k, c.file('t', b't'))
    cur2 = os.path.join(c.tmp, 'cursor2')
    p1 = all_pages(c.ok('ls', c.bucket, '--prefix', 'tree/', '--delimiter', '/',
                        '--max-keys', '2', '--pages', '1', '--cursor', cur2))
    if c.srv.kind == 'fake':
        # (s3rver does not count common prefixes in max-keys)
        expect_eq('first page: two folders', ['tree/a/', 'tree/b/'], p1[0]['prefixes'])
    p2 = all_pages(c.ok('ls', c.bucket, '--prefix', 'tree/', '--delimiter', '/',
                        '--max-keys', '2', '--cursor', cur2))
    names = [x for p in p1 + p2 for x in p['prefixes']] + \
        [o['key'] for p in p1 + p2 for o in p['objects']]
    expect_eq('every folder and file once across the resume',
              ['tree/a/', 'tree/b/', 'tree/c', 'tree/d/', 'tree/e'], sorted(names))


def case_multipart_inflight(c):
    """40 MiB in 8 MiB parts: several parts in flight (fake_s3 holds the
    first part until a second one is being sent), Content-MD5 on every
    part, the MD5 of the whole object reported, awscli reads it back."""
    big = data_of(40 * MiB, 'mp40')
    p = c.file('mp40', big)
    if c.srv.has_faults:
        c.srv.ctl('reset_stats')
        c.srv.ctl('hold', parts=2, timeout=20)
    out = c.ok('put', c.bucket, 'mp/forty', p, '--journal', os.path.join(c.tmp, 'mp40.j'))
    expect_eq('md5 of the whole object', hashlib.md5(big).hexdigest(), out[-1]['md5'])
    if c.srv.has_faults:
        st = c.srv.stats()['stats']
        c.srv.ctl('hold', parts=0)
        if st['max_parts_in_flight'] < 2:
            fail('parts were sent one at a time', '>= 2', st['max_parts_in_flight'])
        expect_eq('parts sent', 5, st['requests'].get('part'))
        expect_eq('puts and parts without Content-MD5', 0, st['puts_without_md5'])
    with open(os.path.join(c.tmp, 'mp40.j')) as f:
        lines = f.read().split('\n')
    expect_eq('journal: one upload line and 5 parts', 6, len([l for l in lines if l]))
    c.aws('get-object', '--bucket', c.bucket, '--key', 'mp/forty', os.path.join(c.tmp, 'mp40.o'))
    if c.read('mp40.o') != big:
        fail('awscli reads the multipart object differently')


def case_resume_after_kill(c):
    """kill -9 of the driver mid-upload, from a pipe: the resume keeps the
    parts on the server (ListParts, or the journal where the server has no
    ListParts), sends the rest, and the object is whole."""
    big = data_of(40 * MiB, 'kill40')
    p = c.file('kill40', big)
    j = os.path.join(c.tmp, 'kill.j')
    if c.srv.has_faults:
        c.srv.ctl('reset_stats')
    exe = os.environ['S3TOOL']
    proc = subprocess.Popen([exe, '--endpoint', c.srv.endpoint, 'put', c.bucket, 'kill/forty',
                             '-', '--size', str(len(big)), '--journal', j],
                            env=c.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(big[:26 * MiB])   # three parts and a bit
        proc.stdin.flush()
        deadline = time.time() + 120
        while time.time() < deadline:
            with open(j) as f:
                if sum(1 for l in f if l.startswith('part ')) >= 2:
                    break
            time.sleep(0.05)
        else:
            fail('no part recorded before the kill')
    finally:
        s3servers.kill9(proc)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
    with open(j) as f:
        recorded = [l for l in f if l.startswith('part ')]
    if c.srv.has_faults:
        c.srv.ctl('reset_stats')
    rc, out, err, ej = c.tool('resume', c.bucket, 'kill/forty', p, '--journal', j)
    if rc != 0:
        fail('resume failed: %s' % err[-800:])
    at = [l for l in err.splitlines() if 'resuming' in l]
    offset = int(at[0].rsplit(' ', 1)[1])
    kept = offset // (8 * MiB)
    if kept < len(recorded) or offset % (8 * MiB):
        fail('resumed at %d with %d parts recorded' % (offset, len(recorded)))
    if c.srv.has_faults:
        st = c.srv.stats()['stats']
        expect_eq('parts sent by the resume', 5 - kept, st['requests'].get('part'))
        expect_eq('ListParts asked', 1, st['requests'].get('listparts'))
    c.aws('get-object', '--bucket', c.bucket, '--key', 'kill/forty', os.path.join(c.tmp, 'kill.o'))
    if c.read('kill.o') != big:
        fail('the resumed object differs from its source')


def case_abort(c):
    """An upload given up is aborted: nothing is left (awscli's
    ListMultipartUploads is empty)."""
    big = data_of(20 * MiB, 'ab')
    # a source that ends early: the commit fails and aborts the upload
    rc, out, err, ej = c.tool('--part-size', str(5 * MiB), 'put', c.bucket, 'ab/short', '-',
                              '--size', str(30 * MiB), input=big)
    if rc == 0:
        fail('a short source committed')
    # and an explicit abort
    up = c.ok('mp-create', c.bucket, 'ab/explicit')[0]['upload_id']
    c.ok('mp-abort', c.bucket, 'ab/explicit', up)
    res = c.aws('list-multipart-uploads', '--bucket', c.bucket) or {}
    expect_eq('uploads left', [], res.get('Uploads', []))
    expect_eq('server uploads', 0, c.srv.stats()['uploads'])
    rc, out, err, ej = c.tool('head', c.bucket, 'ab/short')
    expect_eq('nothing visible under the key', 'ENOENT', (ej or {}).get('error'))


def case_copy(c):
    """CopyObject keeps the metadata; UploadPartCopy above the copy part
    size; both read back identically with awscli."""
    body = data_of(3000, 'cp')
    c.ok('put', c.bucket, 'cp/src', c.file('cp', body), '--mtime', '1600000000000000000')
    c.ok('cp', c.bucket, 'cp/src', c.bucket, 'cp/dst')
    h = c.aws('head-object', '--bucket', c.bucket, '--key', 'cp/dst')
    expect_eq('metadata copied', '1600000000', h['Metadata'].get('mtime'))
    big = data_of(20 * MiB + 5, 'cpbig')
    c.ok('--part-size', str(5 * MiB), 'put', c.bucket, 'cp/big', c.file('cpb', big),
         '--mtime', '1500000000000000000')
    if c.srv.has_part_copy:
        c.srv.ctl('reset_stats')
        c.ok('--copy-part-size', str(8 * MiB), 'cp', c.bucket, 'cp/big', c.bucket, 'cp/big2')
        expect_eq('part copies', 3, c.srv.stats()['stats']['requests'].get('partcopy'))
        c.aws('get-object', '--bucket', c.bucket, '--key', 'cp/big2', os.path.join(c.tmp, 'cpo'))
        if c.read('cpo') != big:
            fail('UploadPartCopy result differs')
        h = c.aws('head-object', '--bucket', c.bucket, '--key', 'cp/big2')
        expect_eq('metadata carried over a part copy', '1500000000', h['Metadata'].get('mtime'))
    else:
        c.ok('cp', c.bucket, 'cp/big', c.bucket, 'cp/big2')


def case_markers(c):
    """An empty folder is a zero-byte "name/" marker: listed as a folder
    from its parent, as its own object from inside; DELETE removes it."""
    c.ok('mkdir', c.bucket, 'mk/empty/')
    p = all_pages(c.ok('ls', c.bucket, '--prefix', 'mk/', '--delimiter', '/'))
    expect_eq('marker seen as a folder', ['mk/empty/'], p[0]['prefixes'])
    p = all_pages(c.ok('ls', c.bucket, '--prefix', 'mk/empty/', '--delimiter', '/'))
    expect_eq('the marker itself', [('mk/empty/', 0)],
              [(o['key'], o['size']) for o in p[0]['objects']])
    c.ok('rm', c.bucket, 'mk/empty/')
    p = all_pages(c.ok('ls', c.bucket, '--prefix', 'mk/'))
    expect_eq('marker removed', [], p[0]['objects'])
    c.ok('rm', c.bucket, 'mk/never-there')   # S3: deleting nothing is success


def expect_err(c, what, err, name, cls, s3code=None):
    if not err:
        fail('%s: no error reported' % what)
    expect_eq('%s: error' % what, name, err['error'])
    expect_eq('%s: class' % what, cls, err['class'])
    if s3code is not None:
        expect_eq('%s: server code' % what, s3code, err['s3code'])


def case_faults(c):
    """Each fault class, from fake_s3."""
    s = c.srv
    c.ok('put', c.bucket, 'f/obj', c.file('f', data_of(5000, 'f')))
    s.ctl('clear')
    s.fault('list', 'slowdown', retry_after=2)
    rc, out, e, ej = c.tool('ls', c.bucket)
    expect_err(c, '503 SlowDown', ej, 'ETHROTTLED', 'throttle', 'SlowDown')
    expect_eq('retry-after honoured as given', 2000, ej['retry_after_ms'])
    s.fault('head', 'throttle429', retry_after=3)
    rc, out, e, ej = c.tool('head', c.bucket, 'f/obj')
    expect_err(c, '429', ej, 'ETHROTTLED', 'throttle')
    expect_eq('429 retry-after', 3000, ej['retry_after_ms'])
    s.fault('get', 'error500')
    rc, out, e, ej = c.tool('get', c.bucket, 'f/obj', '--out', os.path.join(c.tmp, 'fo'))
    expect_err(c, '500', ej, 'EIO', 'retry', 'InternalError')
    s.fault('put', 'reset')
    rc, out, e, ej = c.tool('put', c.bucket, 'f/obj2', c.file('f2', b'abc'))
    expect_err(c, 'connection reset', ej, 'EIO', 'retry')
    s.fault('get', 'truncate')
    rc, out, e, ej = c.tool('get', c.bucket, 'f/obj', '--out', os.path.join(c.tmp, 'fo'))
    expect_err(c, 'truncated body', ej, 'EIO', 'retry')
    s.fault('get', 'truncate')
    rc, out, e, ej = c.tool('get', c.bucket, 'f/obj', '--reader', '--out', os.path.join(c.tmp, 'fo'))
    expect_err(c, 'truncated body (reader)', ej, 'EIO', 'retry')
    s.fault('list', 'truncate')
    rc, out, e, ej = c.tool('ls', c.bucket)
    expect_err(c, 'truncated listing', ej, 'EIO', 'retry')
    s.ctl('reset_stats')
    s.fault('list', 'truncated_page')
    rc, out, e, ej = c.tool('ls', c.bucket, '--max-keys', '1')
    expect_err(c, 'truncated page without a token', ej, 'EIO', 'node')
    if 'continuation token' not in ej['message']:
        fail('message does not say why: %s' % ej['message'])
    expect_eq('listing requests (no loop)', 1, s.stats()['stats']['requests'].get('list'))
    s.fault('head', 'badsig')
    rc, out, e, ej = c.tool('head', c.bucket, 'f/obj')
    expect_eq('403 on HEAD has no body: access denied', ('EACCES', 403),
              (ej['error'], ej['http']))
    s.fault('list', 'badsig')
    rc, out, e, ej = c.tool('ls', c.bucket)
    expect_err(c, 'SignatureDoesNotMatch', ej, 'EACCES', 'fatal', 'SignatureDoesNotMatch')
    env = dict(c.env, AWS_SECRET_ACCESS_KEY='wrong' + SECRET)
    rc, out, e, ej = s3servers.s3tool(env, s.endpoint, 'ls', c.bucket)
    expect_err(c, 'wrong secret', ej, 'EACCES', 'fatal', 'SignatureDoesNotMatch')
    env = dict(c.env, AWS_ACCESS_KEY_ID='AKIAWRONG')
    rc, out, e, ej = s3servers.s3tool(env, s.endpoint, 'ls', c.bucket)
    expect_err(c, 'unknown key id', ej, 'EACCES', 'fatal', 'InvalidAccessKeyId')
    rc, out, e, ej = c.tool('ls', 'no-such-bucket')
    expect_err(c, 'missing bucket', ej, 'EROOT', 'fatal', 'NoSuchBucket')
    rc, out, e, ej = c.tool('get', c.bucket, 'f/none', '--out', os.path.join(c.tmp, 'fo'))
    expect_err(c, 'missing key', ej, 'ENOENT', 'node', 'NoSuchKey')
    rc, out, e, ej = c.tool('head', c.bucket, 'f/none')
    expect_err(c, 'missing key (head)', ej, 'ENOENT', 'node')
    s.fault('copy', 'error200')
    rc, out, e, ej = c.tool('cp', c.bucket, 'f/obj', c.bucket, 'f/copy')
    expect_err(c, 'copy: 200 with an error body', ej, 'EIO', 'retry', 'InternalError')
    # parts: a 500 and a SlowDown are sent again; the object is whole
    big = data_of(12 * MiB, 'fparts')
    s.ctl('reset_stats')
    s.fault('part', 'error500', after=1)
    s.fault('part', 'slowdown', retry_after=1, after=1)
    out = c.ok('--part-size', str(5 * MiB), 'put', c.bucket, 'f/parts', c.file('fp', big))
    expect_eq('md5', hashlib.md5(big).hexdigest(), out[-1]['md5'])
    expect_eq('parts sent (3 + 2 again)', 5, s.stats()['stats']['requests'].get('part'))
    # a Complete that fails for a transient reason is sent again (the
    # parts are not lost), up to the part retries
    s.ctl('reset_stats')
    s.fault('complete', 'error200')
    c.ok('--part-size', str(5 * MiB), 'put', c.bucket, 'f/parts2', c.file('fp', big))
    expect_eq('complete sent again', 2, s.stats()['stats']['requests'].get('complete'))
    s.fault('complete', 'error200')
    rc, out, e, ej = c.tool('--part-size', str(5 * MiB), '--part-retries', '0', 'put',
                            c.bucket, 'f/parts2', c.file('fp', big))
    expect_err(c, 'complete: 200 with an error body', ej, 'EIO', 'retry', 'InternalError')
    # parts that keep failing: the write fails, the upload is aborted
    s.fault('part', 'reset', count=50)
    rc, out, e, ej = c.tool('--part-size', str(5 * MiB), '--part-retries', '1', 'put',
                            c.bucket, 'f/parts3', c.file('fp', big))
    expect_err(c, 'parts keep failing', ej, 'EIO', 'retry')
    s.ctl('clear')
    # a server echoing the session token: the message is scrubbed
    s.fault('list', 'echo_token')
    rc, out, e, ej = c.tool('ls', c.bucket)
    expect_err(c, 'echoed token', ej, 'EINVAL', 'node', 'InvalidArgument')
    if '***' not in ej['message']:
        fail('the echoed token was not scrubbed: %s' % ej['message'])
    s.ctl('clear')


def case_session_token(c):
    """With a session token the server demands it; without it, refused."""
    env = dict(c.env)
    del env['AWS_SESSION_TOKEN']
    rc, out, e, ej = s3servers.s3tool(env, c.srv.endpoint, 'ls', c.bucket)
    expect_err(c, 'no session token', ej, 'EACCES', 'fatal', 'InvalidToken')
    c.ok('ls', c.bucket, '--max-keys', '1', '--pages', '1')


def case_sign_payload(c):
    """Signed payloads: the server checks each body's SHA-256."""
    c.srv.ctl('reset_stats')
    c.ok('--sign-payload', 'put', c.bucket, 'sp/a', c.file('sp', data_of(70000, 'sp')))
    c.ok('--sign-payload', '--part-size', str(5 * MiB), 'put', c.bucket, 'sp/b',
         c.file('spb', data_of(11 * MiB, 'spb')))
    st = c.srv.stats()['stats']
    expect_eq('bodies signed (1 put, 3 parts, 1 complete)', 5, st['bodies_signed'])


def case_config(c):
    """Settings and credentials resolved as the AWS tools do."""
    home = s3servers.tmpdir('s3home-')
    aws_dir = os.path.join(home, '.aws')
    os.makedirs(aws_dir)
    with open(os.path.join(aws_dir, 'credentials'), 'w') as f:
        f.write('[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = x\n'
                '[work]\naws_access_key_id = %s\naws_secret_access_key = %s\n'
                'aws_session_token = %s\n' % (AK, SECRET, TOKEN))
    with open(os.path.join(aws_dir, 'config'), 'w') as f:
        f.write('[default]\nregion = eu-west-3\n'
                '[profile work]\nregion = us-east-1\nca_bundle = /etc/profile-ca.pem\nendpoint_url = http://unused.invalid:1\n'
                's3 =\n  endpoint_url = %s\n  addressing_style = path\n' % c.srv.endpoint)
    base = s3servers.clean_env(home)

    def cfg(env, *opts):
        rc, out, e, ej = s3servers.s3tool(env, None, *opts, 'config')
        if rc:
            fail('config: %s' % e)
        return out[0]
    expect_eq('CA bundle: none by default', None, cfg(base)['ca_bundle'])
    expect_eq('CA bundle: the profile\'s', '/etc/profile-ca.pem',
              cfg(dict(base, AWS_PROFILE='work'))['ca_bundle'])
    expect_eq('CA bundle: AWS_CA_BUNDLE wins', '/etc/env-ca.pem',
              cfg(dict(base, AWS_PROFILE='work', AWS_CA_BUNDLE='/etc/env-ca.pem'))['ca_bundle'])
    d = cfg(base)
    expect_eq('default profile region, AWS endpoint, virtual-hosted',
              ('eu-west-3', 'https://s3.eu-west-3.amazonaws.com', 0, 0),
              (d['region'], d['endpoint'], d['path_style'], d['custom']))
    d = cfg(dict(base, AWS_PROFILE='work'))
    expect_eq('profile: the s3 block endpoint, path style for a custom one',
              (c.srv.endpoint, 1, 'us-east-1'), (d['endpoint'], d['path_style'], d['region']))
    if 'profile work' not in d['credentials']:
        fail('credential source: %s' % d['credentials'])
    # the profile's credentials and token work against the server
    rc, out, e, ej = s3servers.s3tool(dict(base, AWS_PROFILE='work'), None, 'ls', c.bucket,
                                      '--max-keys', '1', '--pages', '1')
    if rc:
        fail('listing with the profile: %s' % e)
    d = cfg(dict(base, AWS_REGION='ap-south-1', AWS_DEFAULT_REGION='x',
                 AWS_ENDPOINT_URL='http://127.0.0.9:9/'))
    expect_eq('environment wins over the profile',
              ('ap-south-1', 'http://127.0.0.9:9'), (d['region'], d['endpoint']))
    d = cfg(dict(base, AWS_ENDPOINT_URL='http://a.invalid'), '--endpoint', 'http://b.invalid:7',
            '--region', 'r-1', '--virtual')
    expect_eq('explicit settings win', ('http://b.invalid:7', 'r-1', 0),
              (d['endpoint'], d['region'], d['path_style']))
    d = cfg(dict(base, AWS_ACCESS_KEY_ID='AKENV', AWS_SECRET_ACCESS_KEY='s', AWS_PROFILE='work'))
    expect_eq('environment credentials win over AWS_PROFILE', 'environment', d['credentials'])
    d = cfg(dict(base, AWS_ACCESS_KEY_ID='AKENV', AWS_SECRET_ACCESS_KEY='s'), '--profile', 'work')
    if 'profile work' not in d['credentials']:
        fail('a profile named by the user wins over the environment: %s' % d['credentials'])
    rc, out, e, ej = s3servers.s3tool(dict(base, AWS_PROFILE='nope'), None, 'config')
    expect_err(c, 'missing profile', ej, 'EINVAL', 'fatal')
    empty = s3servers.tmpdir('s3empty-')
    rc, out, e, ej = s3servers.s3tool(s3servers.clean_env(empty), None, 'config')
    expect_err(c, 'no credentials anywhere', ej, 'EINVAL', 'fatal')


def case_virtual_hosted(c, vsrv):
    """Virtual-hosted addressing: the bucket in the host name, signed."""
    host = 's3.test'
    opts = ['--virtual', '--resolve', 'vbk.%s:%d:127.0.0.1' % (host, vsrv.port)]
    env = c.env
    ep = 'http://%s:%d' % (host, vsrv.port)
    rc, out, e, ej = s3servers.s3tool(env, ep, *opts, 'put', 'vbk', 'v/k', c.file('v', b'vhost'))
    if rc:
        fail('virtual-hosted put: %s' % e)
    rc, out, e, ej = s3servers.s3tool(env, ep, *opts, 'ls', 'vbk')
    expect_eq('virtual-hosted listing', ['v/k'], [o['key'] for o in out[0]['objects']])
    rc, out, e, ej = s3servers.s3tool(env, ep, *opts, 'get', 'vbk', 'v/k')
    expect_eq('virtual-hosted get', [b'vhost'], out)


def check_no_secret():
    blob = b''.join(o or b'' for o in s3servers.OUTPUT)
    for name, s in (('secret key', SECRET), ('session token', TOKEN)):
        if s.encode() in blob:
            fail('the %s appears in the output' % name)
    if not blob:
        fail('no output recorded')


def main():
    if not os.environ.get('S3TOOL'):
        print('S3TOOL is not set (run through ctest)')
        print('0 passed, 1 failed')
        sys.exit(1)
    r = tmtest.Runner('test_s3_client')
    tmp = s3servers.tmpdir('s3client-')
    home = s3servers.tmpdir('s3home-')
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_SESSION_TOKEN=TOKEN, AWS_DEFAULT_REGION='us-east-1')
    r.check('fake_s3 signs as the published vectors',
            lambda: expect_eq('selftest', 0, subprocess.run(
                [sys.executable, s3servers.FAKE, '--selftest'],
                stdout=subprocess.DEVNULL).returncode))
    srv = s3servers.FakeS3(AK, SECRET, ['bkt'], token=TOKEN)
    vsrv = s3servers.FakeS3(AK, SECRET, ['vbk'], token=TOKEN, vhost='s3.test')
    c = Ctx(srv, env, 'bkt', tmp)
    try:
        for name, fn in (('roundtrip with rclone metadata', case_roundtrip_metadata),
                         ('awscli cross-check', case_awscli_cross),
                         ('listing 3,100 keys, resumed from a stored cursor',
                          case_listing_resume),
                         ('multipart 40 MiB, parts in flight', case_multipart_inflight),
                         ('resume after kill -9 mid-upload', case_resume_after_kill),
                         ('abort leaves no upload', case_abort),
                         ('CopyObject and UploadPartCopy', case_copy),
                         ('empty-folder markers', case_markers),
                         ('every fault class', case_faults),
                         ('session token', case_session_token),
                         ('signed payloads', case_sign_payload),
                         ('configuration as the AWS tools', case_config)):
            t0 = time.time()
            r.check(name, fn, c)
            print('     (%.1f s)' % (time.time() - t0))
        r.check('virtual-hosted addressing', case_virtual_hosted, c, vsrv)
        r.check('no secret in any output', check_no_secret)
    finally:
        srv.stop()
        vsrv.stop()
    r.finish()


if __name__ == '__main__':
    main()
