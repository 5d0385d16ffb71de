#!/usr/bin/env python3
"""The mirror (`treemig delete`, `--backup-dir`) and a new pass (`treemig
rescan`) with the destination on another storage than a local folder:

1. SFTP, OpenSSH's sshd on 127.0.0.1 (tests/servers/sshd.py, a free
   port): local -> sftp:// with destination-only files, a nested
   destination-only folder and a symlink. discover, copy, delete --yes;
   the oracle is the served folder itself (os.walk and lstat, not
   treemig): the destination-only nodes are gone, the copied ones are
   there. Then a file is added on the destination only, `treemig rescan`
   runs with no storage option (the recorded ones: the YAML file, the
   state file) and `delete --backup-dir .bk` moves it into .bk with its
   path kept, content and all. A rescan with the storage options given
   again works too.
2. S3, tests/servers/fake_s3.py (signatures checked, a free port): the
   same with objects, the oracle awscli's list-objects-v2 and get-object;
   the backup is a server-side copy then a delete.
3. sim: a generated destination with generated destination-only files
   and folders (whole subtrees), its overlay in a file: delete removes
   them (whiteouts in the overlay), then a fresh discovery into another
   state file (another process replaying the overlay) finds nothing
   destination-only and nothing missing; with --backup-dir only the
   backup folder is destination-only.

Exit 77 (skipped) when sshd is missing (the S3 part needs only python).
"""

import os
import stat
import subprocess
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'servers'))

import s3servers  # noqa: E402
import sshd  # noqa: E402
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, fail, put_file, show  # noqa: E402

T0 = 1_600_000_000 * 1_000_000_000


def tm(args, env=None, rc=0):
    cp = subprocess.run([tmtest.TREEMIG] + args, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        env=env, timeout=tmtest.TIMEOUT)
    if rc is not None and cp.returncode != rc:
        fail('treemig %s: expected exit %d, %s' % (' '.join(args), rc, show(cp)))
    return cp


def source(tmp):
    src = os.path.join(tmp, 'src')
    put_file(src, 'a.txt', b'alpha', T0)
    put_file(src, 'd/b.txt', b'bravo', T0)
    return src


def served_tree(root):
    """{relative path: 'd' | 'l' | file bytes} below root (the oracle)."""
    out = {}
    for top, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(top, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = 'd'
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = 'l'
            else:
                with open(p, 'rb') as f:
                    out[rel] = f.read()
    return out


def case_sftp(tmp):
    why = sshd.available()
    if why:
        raise Skip(why)
    srv = sshd.Sshd()
    try:
        srv.start()
        srv.write_known_hosts()
        opts = ['--ssh-identity', srv.client_key, '--ssh-known-hosts', srv.known_hosts]
        src = source(tmp)
        dst = srv.path('m')
        # on the destination only: a file, a nested folder, a symlink
        put_file(dst, 'old.txt', b'old', T0)
        put_file(dst, 'gone/deep/x.txt', b'x', T0)
        put_file(dst, 'd/extra.txt', b'extra', T0)
        os.symlink('a.txt', os.path.join(dst, 'link'))
        srv.chown(dst)
        db = os.path.join(tmp, 'sftp.db')
        tm(['discover', '--db', db, '-q', src, srv.url('/m')] + opts)
        tm(['copy', '--db', db, '-y', '-q'])
        tm(['delete', '--db', db, '-y', '-q'])
        expect_eq('the served folder after delete (os.walk)',
                  {'a.txt': b'alpha', 'd': 'd', 'd/b.txt': b'bravo'}, served_tree(dst))
        # a new pass from what was recorded, no option given again
        put_file(dst, 'd/new.txt', b'made on the destination', T0)
        srv.chown(dst)
        tm(['rescan', '--db', db, '-q'])
        tm(['delete', '--db', db, '-y', '-q', '--backup-dir', '.bk'])
        expect_eq('the served folder after delete --backup-dir (os.walk)',
                  {'a.txt': b'alpha', 'd': 'd', 'd/b.txt': b'bravo', '.bk': 'd',
                   '.bk/d': 'd', '.bk/d/new.txt': b'made on the destination'},
                  served_tree(dst))
        # and with the storage options given to rescan again
        tm(['rescan', '--db', db, '-q'] + opts)
        tm(['copy', '--db', db, '-y', '-q'])
        tm(['verify', '--db', db, '-q'])
    finally:
        srv.stop()


AK = 'AKIATREEMIGMIRROR'
SECRET = 'SeCrEt-' + os.urandom(12).hex()


def case_s3(tmp):
    home = s3servers.tmpdir('s3mirror-home-')
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_DEFAULT_REGION='us-east-1', PATH=os.environ.get('PATH'))
    srv = s3servers.FakeS3(AK, SECRET, ['mir-bkt'])

    def aws(*args):
        rc, res, err = s3servers.aws(env, srv.endpoint, *args)
        if rc != 0:
            fail('aws s3api %s: exit %d: %s' % (' '.join(args), rc, err.strip()[-800:]))
        return res

    def keys():
        res = aws('list-objects-v2', '--bucket', 'mir-bkt', '--prefix', 'm/') or {}
        return sorted(o['Key'] for o in res.get('Contents', []))

    def put(key, body):
        p = os.path.join(tmp, 'body')
        with open(p, 'wb') as f:
            f.write(body)
        aws('put-object', '--bucket', 'mir-bkt', '--key', key, '--body', p)

    try:
        src = os.path.join(tmp, 's3src')
        put_file(src, 'a.txt', b'alpha', T0)
        put_file(src, 'd/b.txt', b'bravo', T0)
        put('m/old.txt', b'old')
        put('m/gone/deep/x.txt', b'x')
        put('m/d/extra.txt', b'extra')
        db = os.path.join(tmp, 's3.db')
        tm(['discover', '--db', db, '-q', src, 's3://mir-bkt/m',
            '--s3-endpoint', srv.endpoint], env=env)
        tm(['copy', '--db', db, '-y', '-q'], env=env)
        tm(['delete', '--db', db, '-y', '-q'], env=env)
        left = [k for k in keys() if not k.endswith('/')]   # folder markers aside
        expect_eq('objects after delete (awscli list-objects-v2)',
                  ['m/a.txt', 'm/d/b.txt'], left)
        put('m/d/new.txt', b'made on the destination')
        tm(['rescan', '--db', db, '-q'], env=env)
        tm(['delete', '--db', db, '-y', '-q', '--backup-dir', '.bk'], env=env)
        left = [k for k in keys() if not k.endswith('/')]
        expect_eq('objects after delete --backup-dir (awscli list-objects-v2)',
                  ['m/.bk/d/new.txt', 'm/a.txt', 'm/d/b.txt'], left)
        out = os.path.join(tmp, 'got')
        aws('get-object', '--bucket', 'mir-bkt', '--key', 'm/.bk/d/new.txt', out)
        with open(out, 'rb') as f:
            expect_eq('the backup copy (awscli get-object)', b'made on the destination',
                      f.read())
        tm(['rescan', '--db', db, '-q', '--s3-endpoint', srv.endpoint], env=env)
        tm(['copy', '--db', db, '-y', '-q'], env=env)
        tm(['verify', '--db', db, '-q'], env=env)
    finally:
        srv.stop()


def review_paths(db, kind):
    cp = tm(['review', '--db', db, '--list', kind])
    return sorted(l.split(b'\t')[3].decode() for l in cp.stdout.split(b'\n') if l)


def case_sim(tmp):
    shape = 'seed=5,depth=3,folders=3,files=4'
    src = 'sim:' + shape
    for name, backup in (('plain', None), ('backup', '.bk')):
        dst = ('sim:%s,world=dst,extra=0.3,extra_folders=0.3,keep=1,csize=0,cmtime=0,'
               'ctype=0,overlay=%s' % (shape, os.path.join(tmp, name + '.ovl')))
        db = os.path.join(tmp, 'sim-%s.db' % name)
        tm(['discover', '--db', db, '-q', src, dst])
        extras = review_paths(db, 'extra')
        if not any(p.count('/') > 1 for p in extras) or len(extras) < 4:
            fail('the generated destination has too few extras to test: %r' % extras)
        tm(['copy', '--db', db, '-y', '-q'])
        tm(['delete', '--db', db, '-y', '-q'] + (['--backup-dir', backup] if backup else []))
        fresh = os.path.join(tmp, 'sim-%s-after.db' % name)
        tm(['discover', '--db', fresh, '-q', src, dst])
        expect_eq('destination-only after delete%s (a fresh discovery)' % (
            ' --backup-dir' if backup else ''), ['/' + backup] if backup else [],
            review_paths(fresh, 'extra'))
        expect_eq('missing after delete (a fresh discovery)', [],
                  review_paths(fresh, 'missing'))


def main():
    tmtest.require_binary()
    sshd.install_signal_handlers()
    r = tmtest.Runner('test_mirror_remote')
    tmp = s3servers.tmpdir('tm-mirror-remote-')
    os.chmod(tmp, 0o755)
    r.check('sftp://: delete removes the destination-only nodes, rescan from '
            'the recorded options, delete --backup-dir moves (served folder)',
            case_sftp, tmp)
    r.check('s3://: delete removes the destination-only objects, rescan from the '
            'recorded options, delete --backup-dir copies then deletes (awscli)',
            case_s3, tmp)
    r.check('sim: delete removes generated destination-only files and folders '
            '(overlay whiteouts), --backup-dir moves them (a fresh discovery)',
            case_sim, tmp)
    r.finish()


if __name__ == '__main__':
    main()
