"""bench/latency_proxy: it adds the delay each way (round trips through it
take at least the sum of both delays), keeps the order and every byte of
each connection, passes EOF on, serves several connections at once, and
is not bound by the delay: 256 MiB through it with 20 ms each way (the
throughput is printed, not asserted: no wall-clock bound in a test)."""

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tmtest import Runner, expect_eq, fail  # noqa: E402

PROXY = os.environ.get('LATENCY_PROXY', os.path.join(HERE, '..', '..', 'build',
                                                     'latency_proxy'))
procs = []


class Server:
    """A TCP server on 127.0.0.1: 'echo' echoes, 'sink' hashes what arrives
    until EOF, then answers the length and hash."""

    def __init__(self, mode):
        self.mode = mode
        self.ls = socket.socket()
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 20)
        h = hashlib.sha256()
        total = 0
        try:
            while True:
                n = c.recv_into(buf)
                if not n:
                    break
                if self.mode == 'echo':
                    c.sendall(buf[:n])
                else:
                    h.update(memoryview(buf)[:n])
                    total += n
            if self.mode == 'sink':
                c.sendall(b'%d %s\n' % (total, h.hexdigest().encode()))
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.closed = True
        self.ls.close()


def start_proxy(target_port, delay, extra=()):
    p = subprocess.Popen([PROXY, '-p'] + list(extra) +
                         ['0', '127.0.0.1:%d' % target_port, str(delay)],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    procs.append(p)
    line = p.stdout.readline()
    if not line.strip().isdigit():
        fail('the proxy did not print its port', None, line)
    return p, int(line)


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait()
    procs.clear()


def rtts(port, n=5):
    out = []
    with socket.create_connection(('127.0.0.1', port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n):
            t0 = time.monotonic()
            s.sendall(bytes([i]))
            got = s.recv(1)
            out.append((time.monotonic() - t0) * 1000)
            expect_eq('echo', bytes([i]), got)
    return out


def t_delay():
    echo = Server('echo')
    try:
        base = rtts(echo.port)
        for args, total in (((), 2 * 50), (('--up', '10', '--down', '60'), 70)):
            p, port = start_proxy(echo.port, 50, args)
            got = rtts(port)
            print('   round trips with %s: %s ms (without the proxy %s ms)' % (
                ' '.join(args) or '50 ms each way', ', '.join('%.1f' % x for x in got),
                ', '.join('%.2f' % x for x in base)))
            if min(got) < total:
                fail('a round trip took less than %d ms' % total, None, got)
    finally:
        echo.close()
        stop_all()


def send_and_check(port, data, result):
    """Sends data through port to a sink and checks the sink's answer."""
    with socket.create_connection(('127.0.0.1', port)) as s:
        t0 = time.monotonic()
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            s.sendall(view[i:i + (1 << 20)])
        s.shutdown(socket.SHUT_WR)
        answer = b''
        while not answer.endswith(b'\n'):
            chunk = s.recv(256)
            if not chunk:
                break
            answer += chunk
        result.append((answer, time.monotonic() - t0))


def t_throughput():
    sink = Server('sink')
    try:
        p, port = start_proxy(sink.port, 20)
        data = os.urandom(256 << 20)
        want = b'%d %s\n' % (len(data), hashlib.sha256(data).hexdigest().encode())
        res = []
        send_and_check(port, data, res)
        expect_eq('length and sha256 of what passed through', want, res[0][0])
        print('   256 MiB through 20 ms each way: %.0f MB/s (goal >= 200 MB/s)' % (
            len(data) / res[0][1] / 1e6))
    finally:
        sink.close()
        stop_all()


def t_parallel():
    sink = Server('sink')
    try:
        p, port = start_proxy(sink.port, 30)
        blobs = [os.urandom((8 << 20) + i) for i in range(4)]
        results = [[] for _ in blobs]
        ths = [threading.Thread(target=send_and_check, args=(port, b, r))
               for b, r in zip(blobs, results)]
        t0 = time.monotonic()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        print('   4 connections of 8 MiB at once, 30 ms each way: %.2f s' % (
            time.monotonic() - t0))
        for b, r in zip(blobs, results):
            want = b'%d %s\n' % (len(b), hashlib.sha256(b).hexdigest().encode())
            expect_eq('bytes of one connection', want, r[0][0] if r else None)
    finally:
        sink.close()
        stop_all()


def main():
    if not os.access(PROXY, os.X_OK):
        print('latency_proxy not found at %s (set LATENCY_PROXY or build)' % PROXY)
        sys.exit(1)
    r = Runner('test_latency_proxy')
    try:
        r.check('adds the delay each way', t_delay)
        r.check('256 MiB through it, every byte in order', t_throughput)
        r.check('several connections at once', t_parallel)
    finally:
        stop_all()
    r.finish()


if __name__ == '__main__':
    main()
