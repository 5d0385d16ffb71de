#!/usr/bin/env python3
"""The adapter conformance suite (tests/unit/test_adapter_conformance.c,
docs/testing.md) against the remote storages, through real servers on
127.0.0.1: OpenSSH's sshd (tests/servers/sshd.py) for sftp://, and the
fault-injecting S3 endpoint (tests/servers/fake_s3.py, which checks
signatures) for s3://. The binary runs every case it runs on the local
and simulated storages (listing order and pages, names, types, sizes,
mtime precision, writes and their atomicity, errors and their classes),
each in a fresh folder below the spec it is given; a case that does not
apply to a storage is skipped by its capability bits and shown so. A
non-zero exit is the number of failed cases.

Needs TREEMIG_CONFORMANCE (ctest sets it for every integration script).
Exit 77 (skipped) when sshd is missing; the S3 half needs nothing more.
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import s3servers  # noqa: E402
import sshd  # noqa: E402
import tmtest  # noqa: E402
from tmtest import Skip, fail  # noqa: E402

AK = 'AKIATREEMIGREMOTECONF'
SECRET = 'SeCrEt-' + os.urandom(12).hex()


def run_suite(label, env, spec, opts):
    """Runs the C suite against spec; fails with its output unless every
    case passed (cmocka's summary is printed either way)."""
    exe = os.environ.get('TREEMIG_CONFORMANCE')
    if not exe or not os.path.exists(exe):
        raise Skip('TREEMIG_CONFORMANCE does not name the conformance binary')
    env = dict(env, TREEMIG_CONFORMANCE_SPECS=spec,
               TREEMIG_CONFORMANCE_OPTS=';'.join(opts))
    cp = subprocess.run([exe], env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        timeout=900)
    out = cp.stdout.decode('utf-8', 'replace')
    lines = out.splitlines()
    ran = [l for l in lines if l.startswith('[       OK ]') or l.startswith('[  FAILED  ]')
           or l.startswith('[  SKIPPED ]') or l.startswith('[  ERROR   ]')]
    passed = sum(1 for l in lines if l.startswith('[       OK ]'))
    # cmocka names each skipped case twice (as it ends, and in the summary)
    skipped = sorted(set(l for l in lines if l.startswith('[  SKIPPED ]') and '@' in l))
    print('     %s: %d cases passed, %d skipped, exit %d' % (label, passed, len(skipped),
                                                           cp.returncode))
    for l in skipped:
        print('     ' + l)
    if cp.returncode != 0:
        fail('%s: the conformance suite failed (exit %d):\n%s' % (label, cp.returncode, out[-6000:]))
    # the cases ran against the storage named, not the built-in ones
    if not any(l.startswith('[       OK ]') and '@' in l for l in ran) or passed < 10:
        fail('%s: too few cases ran against %s:\n%s' % (label, spec, out[-3000:]))


def case_sftp(tmp):
    why = sshd.available()
    if why:
        raise Skip(why)
    home = tempfile.mkdtemp(prefix='tm-home-', dir=tmp)
    srv = sshd.Sshd()
    try:
        srv.start()
        srv.write_known_hosts()
        root = srv.path('conf')
        os.makedirs(root, exist_ok=True)
        srv.chown(root)
        env = {k: v for k, v in os.environ.items()
               if k not in ('SSH_AUTH_SOCK', 'TREEMIG_SSH_PASSPHRASE')}
        env['HOME'] = home
        run_suite('sftp', env, srv.url('conf'),
                  ['ssh-identity=' + srv.client_key,
                   'ssh-known-hosts=' + srv.known_hosts, 'ssh-config=none'])
        left = [n for n in os.listdir(root) if n.startswith('tmconf-')]
        if not left:
            fail('sftp: the suite wrote nothing on the server (%s)' % root)
    finally:
        srv.stop()


def case_s3(tmp):
    home = tempfile.mkdtemp(prefix='tm-home-', dir=tmp)
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SECRET,
                              AWS_DEFAULT_REGION='us-east-1')
    srv = s3servers.FakeS3(AK, SECRET, ['conf-bkt'])
    try:
        run_suite('s3', env, 's3://conf-bkt/conf', ['s3-endpoint=' + srv.endpoint])
        st = srv.stats()
        if not st:
            fail('s3: the server saw no request')
    finally:
        srv.stop()


def main():
    sshd.install_signal_handlers()
    r = tmtest.Runner('test_remote_conformance')
    tmp = tempfile.mkdtemp(prefix='tm-rconf-')
    r.check('conformance suite on sftp:// (OpenSSH sshd)', case_sftp, tmp)
    r.check('conformance suite on s3:// (fake_s3, signatures checked)', case_s3, tmp)
    r.finish()


if __name__ == '__main__':
    main()
