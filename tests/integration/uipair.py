"""Helpers of the `treemig ui` tests (test_ui.py and tests/ui/test_ui_browser.py):
a small tree pair with one item of each kind and hostile names, and a
running `treemig ui` with an HTTP client that controls every header.

build(base) -> (src, dst)   the pair, every mtime set (see the layout below)
Server(db, *args)           `treemig ui --db db --listen 127.0.0.1:0 --no-open`
                            (stopped by stop(), or at exit if a test forgets)
"""

import atexit
import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse

import tmtest
import treegen

T = treegen.T0
SEC = treegen.SEC

# The names a page must show as text, never as markup.
SCRIPT_DIR = b'<script>alert(1)<'           # with its file 'script>': the path
SCRIPT_PATH = b'/<script>alert(1)</script>'  # is exactly the classic payload
IMG_NAME = b'<img src=x onerror=alert(1)>'
BAD_NAME = b'bad\xffname'                    # not UTF-8


def build(base):
    """The pair:

    source                          destination
    /docs/a.txt  (same)             /docs/a.txt
    /docs/b.txt  (size differs)     /docs/b.txt (conflict: size)
    /docs/c.txt  (missing)
    /photos/2019/img1.jpg (same)    /photos/2019/img1.jpg
    /photos/2019/img2.jpg (missing)
    /photos/2020/img3.jpg (missing folder)
    /scratch/f01 .. f30 (missing folder)
    /clash (file)                   /clash/ (folder: type clash)
    /<script>alert(1)</script>      (a folder '<script>alert(1)<' and its file 'script>')
    /<img src=x onerror=alert(1)>
    /bad\\xffname
                                    /only_dst (file), /only_dir/x (folder)
    """
    src = os.path.join(os.fsencode(base), b'src')
    dst = os.path.join(os.fsencode(base), b'dst')
    s = treegen.TreeBuilder(src)
    d = treegen.TreeBuilder(dst)
    s.file(b'docs/a.txt', b'same\n', mtime=T + 1 * SEC)
    d.file(b'docs/a.txt', b'same\n', mtime=T + 1 * SEC)
    s.file(b'docs/b.txt', b'source\n', mtime=T + 2 * SEC)
    d.file(b'docs/b.txt', b'the destination\n', mtime=T + 2 * SEC)
    s.file(b'docs/c.txt', b'new\n', mtime=T + 3 * SEC)
    s.file(b'photos/2019/img1.jpg', b'jpeg1', mtime=T + 4 * SEC)
    d.file(b'photos/2019/img1.jpg', b'jpeg1', mtime=T + 4 * SEC)
    s.file(b'photos/2019/img2.jpg', b'jpeg22', mtime=T + 5 * SEC)
    s.file(b'photos/2020/img3.jpg', b'jpeg333', mtime=T + 6 * SEC)
    for i in range(1, 31):
        s.file(b'scratch/f%02d' % i, b'x' * i, mtime=T + (10 + i) * SEC)
    s.file(b'clash', b'a file here', mtime=T + 7 * SEC)
    d.dir(b'clash', mtime=T + 7 * SEC)
    d.file(b'clash/inside', b'i', mtime=T + 7 * SEC)
    s.file(SCRIPT_DIR + b'/script>', b'<b>', mtime=T + 8 * SEC)
    s.file(IMG_NAME, b'img', mtime=T + 9 * SEC)
    s.file(BAD_NAME, b'bad', mtime=T + 9 * SEC)
    d.file(b'only_dst', b'only', mtime=T + 9 * SEC)
    d.file(b'only_dir/x', b'x', mtime=T + 9 * SEC)
    s.finish()
    d.finish()
    return src, dst


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers   # {lower-case name: [values]}
        self.body = body

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            tmtest.fail('not JSON (%s): %r' % (e, self.body[:500]))


_running = set()
finished = []   # (command, exit code, stderr) of every server stopped


def check_exits():
    """Every server stopped by SIGTERM exited 0 and reported nothing from a
    sanitizer (a server killed on purpose, -9, is left out)."""
    bad = [(c, rc, err[-1500:]) for c, rc, err in finished
           if rc != -9 and (rc != 0 or b'Sanitizer' in err or b'runtime error' in err)]
    if bad:
        tmtest.fail('servers that did not stop cleanly: %r' % bad)


def _stop_all():
    for s in list(_running):
        s.stop()


atexit.register(_stop_all)


class Server:
    """A running `treemig ui`. args are added to its command line."""

    def __init__(self, db, *args, listen='127.0.0.1:0', env=None):
        cmd = [tmtest.TREEMIG, 'ui', '--db', db, '--no-open']
        if listen is not None:
            cmd += ['--listen', listen]
        cmd += list(args)
        env = dict(os.environ, **(env or {}))
        env.pop('DISPLAY', None)
        env.pop('WAYLAND_DISPLAY', None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        _running.add(self)
        line = self.proc.stdout.readline().decode('ascii', 'replace').strip()
        m = re.match(r'^http://(127\.0\.0\.1|\[::1\]|[0-9.]+):(\d+)/\?token=([0-9a-f]{64})$', line)
        if not m:
            err = self.stop()
            tmtest.fail('treemig ui printed %r, not its URL; stderr: %r' % (line, err))
        self.url = line
        self.host = m.group(1)
        self.port = int(m.group(2))
        self.token = m.group(3)

    def stop(self):
        """Stops it with SIGTERM; returns its stderr. Exit code in .rc."""
        _running.discard(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.rc = self.proc.returncode
        finished.append((self.proc.args[1:], self.rc, err))
        return err

    def request(self, method, path, headers=None, body=None, host=True, token=True):
        """One request. host: True for the right Host header, a string for
        another, None for none; token: True adds the X-Treemig-Token header."""
        c = http.client.HTTPConnection(self.host.strip('[]'), self.port, timeout=120)
        try:
            c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host is True:
                c.putheader('Host', '%s:%d' % (self.host, self.port))
            elif host is not None:
                c.putheader('Host', host)
            if token is True:
                c.putheader('X-Treemig-Token', self.token)
            for k, v in (headers or {}).items():
                c.putheader(k, v)
            if body is not None:
                c.putheader('Content-Length', str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            hs = {}
            for k, v in r.getheaders():
                hs.setdefault(k.lower(), []).append(v)
            return Response(r.status, hs, r.read())
        finally:
            c.close()

    def get(self, api, params=None, **kw):
        """GET /api/<api> with params (bytes values are sent as they are)."""
        q = urllib.parse.urlencode(params or {}, quote_via=urllib.parse.quote)
        return self.request('GET', '/api/' + api + ('?' + q if q else ''), **kw)

    def get_json(self, api, params=None, status=200):
        r = self.get(api, params)
        if r.status != status:
            tmtest.fail('GET /api/%s %r: status %d, expected %d: %r'
                        % (api, params, r.status, status, r.body[:500]))
        return r.json()

    def post(self, api, params, **kw):
        body = urllib.parse.urlencode(params, quote_via=urllib.parse.quote).encode()
        headers = {'Content-Type': 'application/x-www-form-urlencoded'}
        headers.update(kw.pop('headers', {}))
        return self.request('POST', '/api/' + api, headers=headers, body=body, **kw)

    def wait_index(self):
        """Waits until the folder index is built (a hang guard, not a timer)."""
        end = time.monotonic() + 120
        while True:
            j = self.get_json('summary')
            if j['index']['state'] == 'ready' and not j['index']['building']:
                return j
            if j['index']['state'] == 'failed':
                tmtest.fail('the folder index failed: %r' % j['index'])
            if time.monotonic() > end:
                tmtest.fail('the folder index is not ready after 120 s: %r' % j['index'])
            time.sleep(0.1)
