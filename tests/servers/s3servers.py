"""Starting and stopping the S3 servers of the tests, and running the
client's driver (tests/tools/s3tool.c) and Debian's awscli against them.

Every server listens on 127.0.0.1 on a port picked at run time and is
stopped at exit even when the test fails (atexit). Standard library only.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, 'fake_s3.py')
S3RVER_VERSION = '3.7.1'
AWS = '/usr/bin/aws'   # Debian's awscli, not one a Python tool manager put first

_procs = []
OUTPUT = []            # everything the driver and awscli printed (secret checks)


def _stop_all():
    for p in _procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


atexit.register(_stop_all)


def clean_env(home, **extra):
    """The environment without any AWS setting of the user, HOME in a temp
    folder (so that no real ~/.aws is read), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
    env['HOME'] = home
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


class FakeS3:
    """tests/servers/fake_s3.py in a child process."""
    kind = 'fake'
    checks_signatures = True
    has_faults = True
    has_list_parts = True
    has_abort = True
    has_part_copy = True

    def __init__(self, access_key, secret_key, buckets, token=None, vhost=None,
                 min_part_size=0, max_parts_page=1000):
        cmd = [sys.executable, FAKE, '--port', '0', '--access-key', access_key,
               '--secret-key', secret_key, '--min-part-size', str(min_part_size),
               '--max-parts-page', str(max_parts_page)]
        for b in buckets:
            cmd += ['--bucket', b]
        if token:
            cmd += ['--token', token]
        if vhost:
            cmd += ['--vhost-domain', vhost]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        _procs.append(self.p)
        line = self.p.stdout.readline().decode()
        if not line.startswith('PORT '):
            raise RuntimeError('fake_s3 did not start: %r' % line)
        self.port = int(line.split()[1])
        self.endpoint = 'http://127.0.0.1:%d' % self.port

    def ctl(self, what, **kw):
        req = urllib.request.Request('%s/__ctl/%s' % (self.endpoint, what),
                                     data=json.dumps(kw).encode(), method='POST')
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stats(self):
        return self.ctl('stats')

    def fault(self, op, kind, count=1, after=0, retry_after=1, ms=100, pages=False):
        """pages: a listing fault only for pages of more than one key (not
        the probe of one key that opening an s3:// storage makes)."""
        return self.ctl('fault', op=op, kind=kind, count=count, after=after,
                        retry_after=retry_after, ms=ms, pages=pages)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(10)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NpmUnreachable(Exception):
    pass


def install_s3rver(cache):
    """npm install s3rver into cache (once); returns the path of its
    executable. Raises NpmUnreachable when npm or its registry cannot be
    had."""
    exe = os.path.join(cache, 'node_modules', '.bin', 's3rver')
    stamp = os.path.join(cache, 'node_modules', 's3rver', 'package.json')
    if os.path.exists(exe) and os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f).get('version') == S3RVER_VERSION:
                return exe
    if not shutil.which('npm') or not shutil.which('node'):
        raise NpmUnreachable('npm or node is not installed')
    os.makedirs(cache, exist_ok=True)
    try:
        cp = subprocess.run(['npm', 'install', '--prefix', cache, '--no-audit', '--no-fund',
                             '--no-save', 's3rver@' + S3RVER_VERSION],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=300)
    except subprocess.TimeoutExpired:
        raise NpmUnreachable('npm install timed out')
    if cp.returncode != 0 or not os.path.exists(exe):
        out = cp.stdout.decode('utf-8', 'replace')
        if any(w in out for w in ('ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ETIMEDOUT',
                                  'ECONNRESET', 'network', 'registry')):
            raise NpmUnreachable('npm registry unreachable: ' + out.strip()[-300:])
        raise RuntimeError('npm install s3rver failed:\n' + out[-2000:])
    return exe


class S3rver:
    """s3rver (npm) in a child process: one key pair (S3RVER / S3RVER), no
    ListParts, no AbortMultipartUpload, no UploadPartCopy (issue 14)."""
    kind = 's3rver'
    checks_signatures = False
    has_faults = False
    has_list_parts = False
    has_abort = False
    has_part_copy = False

    def __init__(self, cache, data_dir, buckets):
        exe = install_s3rver(cache)
        env = dict(os.environ)
        # on Node 20 every truncated listing fails with 500 without it
        env['NODE_OPTIONS'] = (env.get('NODE_OPTIONS', '') + ' --openssl-legacy-provider').strip()
        for attempt in range(5):
            self.port = free_port()
            cmd = [exe, '-d', data_dir, '-a', '127.0.0.1', '-p', str(self.port), '--silent']
            for b in buckets:
                cmd += ['--configure-bucket', b]
            self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _procs.append(self.p)
            deadline = time.time() + 30
            while time.time() < deadline and self.p.poll() is None:
                try:
                    socket.create_connection(('127.0.0.1', self.port), 0.5).close()
                    self.endpoint = 'http://127.0.0.1:%d' % self.port
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError('s3rver did not start')

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(10)


def s3tool(env, endpoint, *args, opts=(), input=None, check=None, timeout=300):
    """Runs the driver; returns (rc, list of JSON lines of stdout, stderr
    text, the error JSON or None). Records the output for the secret
    checks."""
    exe = os.environ.get('S3TOOL')
    cmd = [exe] + list(opts) + (['--endpoint', endpoint] if endpoint else []) + \
        [os.fsencode(a) if isinstance(a, bytes) else a for a in args]
    cp = subprocess.run(cmd, env=env, input=input, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=timeout)
    OUTPUT.append(cp.stdout)
    OUTPUT.append(cp.stderr)
    out = []
    for line in cp.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(line)
    err = None
    for line in cp.stderr.splitlines():
        if line.startswith(b'{'):
            try:
                err = json.loads(line)
            except ValueError:
                pass
    return cp.returncode, out, cp.stderr.decode('utf-8', 'replace'), err


def aws(env, endpoint, *args, timeout=300):
    """Runs Debian's awscli s3api; returns (rc, parsed JSON or text,
    stderr)."""
    cmd = [AWS, '--endpoint-url', endpoint, '--output', 'json', 's3api'] + list(args)
    e = dict(env)
    e.setdefault('AWS_DEFAULT_REGION', 'us-east-1')
    e['AWS_PAGER'] = ''
    cp = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, timeout=timeout)
    OUTPUT.append(cp.stdout)
    OUTPUT.append(cp.stderr)
    try:
        res = json.loads(cp.stdout) if cp.stdout.strip() else None
    except ValueError:
        res = cp.stdout.decode('utf-8', 'replace')
    return cp.returncode, res, cp.stderr.decode('utf-8', 'replace')


def tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir='/tmp')
    atexit.register(shutil.rmtree, d, True)
    return d


def kill9(p):
    os.kill(p.pid, signal.SIGKILL)
    p.wait()


def treemig(exe, env, *args, timeout=600):
    """Runs treemig (exe) with args in env alone (no variable of the
    caller's); returns the CompletedProcess. Records the output for the
    secret checks."""
    cmd = [exe] + [os.fsencode(a) if isinstance(a, bytes) else a for a in args]
    cp = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=timeout)
    OUTPUT.append(cp.stdout)
    OUTPUT.append(cp.stderr)
    return cp


def rclone_mtime(ns):
    """rclone's x-amz-meta-mtime text of ns (treemig writes it exactly)."""
    s = '%s%d' % ('-' if ns < 0 else '', abs(ns) // 10**9)
    frac = ('%09d' % (abs(ns) % 10**9)).rstrip('0')
    return s + ('.' + frac if frac else '')
