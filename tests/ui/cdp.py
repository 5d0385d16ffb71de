"""A small client of the Chrome DevTools Protocol over a WebSocket, in the
standard library only, for the browser test of `treemig ui`.

    b = Browser()               # starts headless Chromium on a free port
    p = b.page()                # the first tab
    p.navigate(url)
    p.wait_for("document.title == 'treemig'")
    p.click('#tabs button[data-tab=search]')
    p.screenshot('out.png')
    b.close()

Browser() raises BrowserUnavailable when Chromium cannot start at all (the
test then exits 77, a skip); anything later is a failure. Waits have a
generous bound (they guard against a hang, they do not measure speed).
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

CHROMIUM = os.environ.get('TREEMIG_CHROMIUM', '/usr/bin/chromium')
HANG = 60  # seconds a wait may take before the test gives up


class BrowserUnavailable(Exception):
    """Chromium is missing or cannot start here."""


class CDPError(Exception):
    pass


class WebSocket:
    """A client WebSocket (RFC 6455): text frames, masked, no extensions."""

    GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=HANG)
        key = base64.b64encode(os.urandom(16))
        req = ('GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n'
               'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
               'Sec-WebSocket-Version: 13\r\n\r\n'
               % (u.path or '/', u.hostname, u.port, key.decode()))
        self.sock.sendall(req.encode())
        head = b''
        while b'\r\n\r\n' not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CDPError('websocket: connection closed during the handshake')
            head += chunk
        head, self.buf = head.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        if ' 101 ' not in lines[0] + ' ':
            raise CDPError('websocket: handshake refused: %s' % lines[0])
        want = base64.b64encode(hashlib.sha1(key + self.GUID).digest()).decode()
        got = [h.split(':', 1)[1].strip() for h in lines[1:]
               if h.lower().startswith('sec-websocket-accept:')]
        if got != [want]:
            raise CDPError('websocket: bad Sec-WebSocket-Accept %r' % got)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CDPError('websocket: connection closed')
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack('>H', n)
        else:
            head += bytes([0x80 | 127]) + struct.pack('>Q', n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send(self, text):
        self._send_frame(0x1, text.encode('utf-8'))

    def recv(self):
        """The next text message (pings answered, fragments joined)."""
        parts = []
        while True:
            b0, b1 = self._read(2)
            fin, opcode = b0 & 0x80, b0 & 0x0f
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack('>H', self._read(2))[0]
            elif n == 127:
                n = struct.unpack('>Q', self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x9:
                self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise CDPError('websocket: closed by the browser')
            if opcode in (0x1, 0x0, 0x2):
                parts.append(data)
                if fin:
                    return b''.join(parts).decode('utf-8')

    def close(self):
        try:
            self._send_frame(0x8, b'')
        except OSError:
            pass
        self.sock.close()


class Page:
    """One tab, through its DevTools WebSocket."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []
        self.call('Page.enable')
        self.call('Runtime.enable')

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({'id': mid, 'method': method, 'params': params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get('id') == mid:
                if 'error' in m:
                    raise CDPError('%s: %s' % (method, m['error']))
                return m.get('result', {})
            if 'method' in m:
                self.events.append(m)

    def drain(self):
        """Reads the events that arrived (without waiting long)."""
        self.ws.sock.settimeout(0.05)
        try:
            while True:
                m = json.loads(self.ws.recv())
                if 'method' in m:
                    self.events.append(m)
        except (socket.timeout, BlockingIOError):
            pass
        finally:
            self.ws.sock.settimeout(HANG)

    def evaluate(self, expr):
        r = self.call('Runtime.evaluate', expression=expr, returnByValue=True,
                      awaitPromise=True)
        if 'exceptionDetails' in r:
            raise CDPError('evaluate %s: %s' % (expr[:200], json.dumps(r['exceptionDetails'])[:1500]))
        return r['result'].get('value')

    def wait_for(self, expr, what=None):
        """Polls expr until it is truthy; returns its value."""
        end = time.monotonic() + HANG
        while True:
            v = self.evaluate(expr)
            if v:
                return v
            if time.monotonic() > end:
                raise CDPError('gave up waiting for %s' % (what or expr))
            time.sleep(0.1)

    def navigate(self, url):
        self.call('Page.navigate', url=url)

    def click(self, selector):
        """A real mouse click in the middle of the element."""
        rect = self.evaluate(
            '(() => { const e = document.querySelector(%s); if (!e) return null;'
            ' e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect();'
            ' return [r.left + r.width / 2, r.top + r.height / 2]; })()'
            % json.dumps(selector))
        if not rect:
            raise CDPError('no element %s to click' % selector)
        x, y = rect
        for t in ('mouseMoved', 'mousePressed', 'mouseReleased'):
            self.call('Input.dispatchMouseEvent', type=t, x=x, y=y, button='left',
                      clickCount=1)

    def type_text(self, selector, text):
        self.evaluate('document.querySelector(%s).focus()' % json.dumps(selector))
        self.call('Input.insertText', text=text)

    def screenshot(self, path):
        r = self.call('Page.captureScreenshot', format='png')
        with open(path, 'wb') as f:
            f.write(base64.b64decode(r['data']))

    def close(self):
        self.ws.close()


class Browser:
    """Headless Chromium with its own profile, on a port it picks itself."""

    def __init__(self, window='1280,1000'):
        if not os.access(CHROMIUM, os.X_OK):
            raise BrowserUnavailable('%s is not installed' % CHROMIUM)
        self.dir = tempfile.mkdtemp(prefix='treemig-chromium-')
        self.log = open(os.path.join(self.dir, 'chromium.log'), 'wb')
        args = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
                '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', '--no-default-browser-check',
                '--disable-dev-shm-usage', '--window-size=' + window,
                '--user-data-dir=' + os.path.join(self.dir, 'profile'),
                '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
                'about:blank']
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log)
        except OSError as e:
            self._cleanup()
            raise BrowserUnavailable('cannot run %s: %s' % (CHROMIUM, e))
        port_file = os.path.join(self.dir, 'profile', 'DevToolsActivePort')
        end = time.monotonic() + HANG
        while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
            if self.proc.poll() is not None or time.monotonic() > end:
                why = 'exited with %s' % self.proc.returncode if self.proc.poll() is not None \
                    else 'did not open its DevTools port in %d s' % HANG
                log = self._log_text()
                self.close()
                raise BrowserUnavailable('chromium %s; its log:\n%s' % (why, log))
            time.sleep(0.1)
        with open(port_file) as f:
            self.port = int(f.readline().strip())

    def _log_text(self):
        try:
            with open(os.path.join(self.dir, 'chromium.log'), 'rb') as f:
                return f.read()[-3000:].decode('utf-8', 'replace')
        except OSError:
            return ''

    def page(self):
        with urllib.request.urlopen('http://127.0.0.1:%d/json/list' % self.port,
                                    timeout=HANG) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get('type') == 'page']
        if not pages:
            raise CDPError('chromium has no page')
        return Page(pages[0]['webSocketDebuggerUrl'])

    def close(self):
        if getattr(self, 'proc', None) and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._cleanup()

    def _cleanup(self):
        if getattr(self, 'log', None):
            self.log.close()
            self.log = None
        if getattr(self, 'dir', None):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
