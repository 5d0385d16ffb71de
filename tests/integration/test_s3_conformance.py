#!/usr/bin/env python3
"""The adapter conformance checks, on the s3 storage and, as the reference,
on the local one: the same calls through the adapter interface
(src/adapter/adapter.h, by tests/tools/s3tool.c's "adapter" commands) must
give the same results on both, against tests/servers/fake_s3.py. It was
written before the C conformance suite (tests/unit/
test_adapter_conformance.c), which test_remote_conformance.py now runs
on s3:// too; these checks stay as a second, independent reading of the
same contract through s3tool.

The checks: an empty root; a file written (open_write, write, commit) is
stat'ed, listed and read back with its size, mtime and mode; commit with
TM_NOREPLACE refuses a taken name (EEXIST) and without it replaces; a
write aborted leaves nothing; a folder made and given its attributes is
listed as a folder (on S3: its marker); a missing node is ENOENT; a
folder of 2,500 children is listed in several pages, and a listing
reopened at the position after its first page gives exactly the rest;
names with spaces and accents; what each storage cannot hold.

Needs S3TOOL (ctest sets it). Label s3.
"""

import os
import subprocess
import sys
import json
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import tmtest  # noqa: E402
from tmtest import expect_eq, fail  # noqa: E402
import s3servers  # noqa: E402

AK = 'AKIATREEMIGCONFORM'
SECRET = 'SeCrEt-' + os.urandom(12).hex()
MTIME = 1600000000123456789
MANY = 2500


class Storage:
    def __init__(self, name, spec, env, tmp, fill, opts=()):
        self.name, self.spec, self.env, self.tmp, self.fill = name, spec, env, tmp, fill
        self.opts = list(opts)

    def call(self, *args):
        cmd = [os.environ['S3TOOL'], 'adapter', self.spec] + self.opts + list(args)
        cp = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        out = [json.loads(l) for l in cp.stdout.splitlines() if l.startswith(b'{')]
        err = [json.loads(l) for l in cp.stderr.splitlines() if l.startswith(b'{')]
        return cp.returncode, out, err[0] if err else None

    def ok(self, *args):
        rc, out, err = self.call(*args)
        if rc:
            fail('%s: adapter %s: exit %d: %r' % (self.name, ' '.join(args), rc, err))
        return out

    def err(self, *args):
        rc, out, err = self.call(*args)
        if not rc or not err:
            fail('%s: adapter %s: expected a failure, got %r' % (self.name, ' '.join(args), out))
        return err['error']

    def file(self, data):
        p = os.path.join(self.tmp, 'data')
        with open(p, 'wb') as f:
            f.write(data)
        return p

    def listing(self, path, *more):
        return [e for page in self.ok('ls', path, *more) for e in page['entries']]


def names(entries):
    return sorted((e['name'], e['type']) for e in entries)


def conformance(st):
    """The checks; each storage must pass them all the same way."""
    expect_eq('%s: an empty root' % st.name, [], st.listing('/'))
    st.ok('mkdir', '/a')
    data = b'conformance\n' * 1000
    st.ok('put', '/a/f1', st.file(data), str(MTIME), '640')
    s = st.ok('stat', '/a/f1')[0]
    expect_eq('%s: stat of a file written' % st.name, ('file', len(data), MTIME, 0o640),
              (s['type'], s['size'], s['mtime'], s['mode']))
    out = os.path.join(st.tmp, 'out')
    g = st.ok('get', '/a/f1', out)[0]
    with open(out, 'rb') as f:
        expect_eq('%s: the bytes read back' % st.name, data, f.read())
    expect_eq('%s: open_read and fstat agree' % st.name, g['st'], g['fstat'])
    expect_eq('%s: open_read sees size and mtime' % st.name, (len(data), MTIME),
              (g['st']['size'], g['st']['mtime']))
    expect_eq('%s: commit TM_NOREPLACE on a taken name' % st.name, 'EEXIST',
              st.err('put', '/a/f1', st.file(b'other'), str(MTIME), '644', '--noreplace'))
    st.ok('put', '/a/f1', st.file(b'replaced'), str(MTIME + 1), '600')
    s = st.ok('stat', '/a/f1')[0]
    expect_eq('%s: a commit replaces' % st.name, (8, MTIME + 1, 0o600),
              (s['size'], s['mtime'], s['mode']))
    expect_eq('%s: the root lists the folder' % st.name, [('a', 'folder')], names(st.listing('/')))
    expect_eq('%s: the folder lists the file' % st.name, [('f1', 'file')],
              names(st.listing('/a')))
    f1 = st.listing('/a')[0]
    expect_eq('%s: a listed file has its attributes' % st.name, (8, MTIME + 1, 0o600),
              (f1['size'], f1['mtime'], f1['mode']))
    # a write aborted leaves nothing
    st.ok('mkdir', '/b')
    st.ok('abort', '/b/half', st.file(b'h' * 300000))
    expect_eq('%s: nothing at an aborted write' % st.name, 'ENOENT', st.err('stat', '/b/half'))
    # a folder made and given its attributes
    st.ok('mkdir', '/e')
    st.ok('setattr', '/e', str(MTIME), '750')
    expect_eq('%s: a folder made' % st.name, 'folder', st.ok('stat', '/e')[0]['type'])
    if ('e', 'folder') not in names(st.listing('/')):
        fail('%s: the folder made is not listed: %r' % (st.name, st.listing('/')))
    expect_eq('%s: stat of nothing' % st.name, 'ENOENT', st.err('stat', '/nope'))
    # names
    uname = '/a/espace \u00e9 \u00fc'
    st.ok('put', uname, st.file(b'u'), str(MTIME), '644')
    if ('espace \u00e9 \u00fc', 'file') not in names(st.listing('/a')):
        fail('%s: the accented name is not listed' % st.name)
    # a folder of MANY children, in pages, resumed at a position
    st.fill('/many')
    pages = st.ok('ls', '/many')
    got = [e['name'] for p in pages for e in p['entries']]
    expect_eq('%s: children of a big folder' % st.name, MANY, len(set(got)))
    expect_eq('%s: each child once' % st.name, len(got), len(set(got)))
    if len(pages) < 2:
        fail('%s: %d children in one page' % (st.name, MANY))
    first = st.ok('ls', '/many', '--pages', '1')[0]
    rest = st.listing('/many', '--from', first['pos'])
    expect_eq('%s: first page + the rest from its position' % st.name, sorted(got),
              sorted([e['name'] for e in first['entries']] + [e['name'] for e in rest]))
    return True


def local_fill(root):
    def fill(path):
        d = os.path.join(root, path.lstrip('/'))
        os.makedirs(d)
        for i in range(MANY):
            with open(os.path.join(d, 'f%05d' % i), 'wb') as f:
                f.write(b'x')
    return fill


def main():
    if not os.environ.get('S3TOOL'):
        print('S3TOOL is not set (run through ctest)')
        print('0 passed, 1 failed')
        sys.exit(1)
    r = tmtest.Runner('test_s3_conformance')
    tmp = s3servers.tmpdir('s3conf-')
    home = s3servers.tmpdir('s3home-')
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_DEFAULT_REGION='us-east-1')
    srv = s3servers.FakeS3(AK, SECRET, ['conf-bkt'])
    root = os.path.join(tmp, 'local')
    os.makedirs(root)
    local = Storage('local', root, env, tmp, local_fill(root))
    s3 = Storage('s3', 's3://conf-bkt/root', env, tmp,
                 lambda p: srv.ctl('fill', bucket='conf-bkt', prefix='root' + p + '/f', n=MANY,
                                   size=1), ['-o', 's3-endpoint=' + srv.endpoint])
    try:
        for st in (local, s3):
            t0 = time.time()
            r.check('conformance: %s' % st.name, conformance, st)
            print('     (%.1f s)' % (time.time() - t0))

        def holds():
            for path, typ, want_local, want_s3 in (
                    ('/a/link', 'symlink', 0, 1), ('/a/x', 'file', 0, 0),
                    ('/a/fifo', 'other', 0, 1), ('/a/bad\udcff', 'file', 0, 1),
                    ('/' + 'k' * 1100, 'file', 0, 1)):
                for st, want in ((local, want_local), (s3, want_s3)):
                    got = st.ok('cannot', path, typ)[0]
                    expect_eq('%s cannot hold %s %s' % (st.name, typ, path[:20]), want,
                              got['cannot'])
                    if want and not got['why']:
                        fail('%s: no reason for %s' % (st.name, path[:20]))
        r.check('what each storage cannot hold', holds)

        def bad_position():
            rc, out, err = s3.call('ls', '/a', '--from', b'other/key'.hex())
            if not rc or 'position' not in (err or {}).get('message', ''):
                fail('a position of another folder was taken: %r %r' % (out, err))
        r.check('s3: a stored position of another folder is refused', bad_position)
    finally:
        srv.stop()
    r.finish()


if __name__ == '__main__':
    main()
