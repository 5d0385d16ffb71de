"""A TCP proxy in front of a real PostgreSQL server that loses one COMMIT's
answer: a fault the server cannot make by itself (tests/integration/
test_pg.py, "a COMMIT whose answer is lost").

Connections pass through unchanged, except one: on the connection that
has sent source node rows (an INSERT INTO src_nodes or a COPY: treemig's
writer), its nth COMMIT (a simple query) is
forwarded, the server's answers are read up to its ReadyForQuery (the
transaction is over on the server: committed, or rolled back), and then
both sockets are closed without a byte of that answer reaching the
client. `tag` is the command tag the server sent ('COMMIT', or
'ROLLBACK' for a transaction that had failed), `fired` whether it
happened. With lose='commit' the COMMIT itself is not forwarded: the
connection is closed, and the server rolls the transaction back. Clients must connect without TLS (sslmode=disable and
gssencmode=disable in the URI): the messages are read in the clear.
Listens on 127.0.0.1 only.
"""
import select
import socket
import struct
import threading

SSL_CODES = (80877103, 80877104)  # SSLRequest, GSSENCRequest


class CommitCutProxy:
    def __init__(self, target_port, nth=3, lose='answer'):
        self.target = ('127.0.0.1', target_port)
        self.nth = nth
        self.lose = lose  # 'answer', or 'commit': the COMMIT itself dropped
        self.fired = False
        self.tag = None
        self.lock = threading.Lock()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closing = True
        self.ls.close()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            s = socket.create_connection(self.target)
        except OSError:
            c.close()
            return
        buf = b''           # client bytes not yet forwarded (a partial message)
        started = False     # past the startup message: typed messages follow
        opaque = False      # TLS asked for: no more reading of messages
        copied = False      # this connection sent node rows
        commits = 0
        try:
            while True:
                r, _, _ = select.select([c, s], [], [])
                if s in r:
                    d = s.recv(65536)
                    if not d:
                        return
                    c.sendall(d)
                if c not in r:
                    continue
                d = c.recv(65536)
                if not d:
                    return
                if opaque:
                    s.sendall(d)
                    continue
                buf += d
                while True:
                    if not started:
                        if len(buf) < 8:
                            break
                        n, code = struct.unpack('!ii', buf[:8])
                        if len(buf) < n:
                            break
                        s.sendall(buf[:n])
                        buf = buf[n:]
                        if code in SSL_CODES:
                            opaque = True
                            s.sendall(buf)
                            buf = b''
                            break
                        started = True
                        continue
                    if len(buf) < 5:
                        break
                    kind = buf[:1]
                    n = struct.unpack('!i', buf[1:5])[0]
                    if len(buf) < 1 + n:
                        break
                    msg, buf = buf[:1 + n], buf[1 + n:]
                    text = b''
                    if kind == b'Q':  # a simple query: its text
                        text = msg[5:].rstrip(b'\0').strip().upper()
                    elif kind == b'P':  # Parse: a name, then the text
                        text = msg[5:].split(b'\0')[1].strip().upper()
                    if text.startswith(b'COPY') or b'INTO SRC_NODES' in text:
                        copied = True  # node rows: the writer's connection
                    if kind == b'Q' and copied and text.startswith(b'COMMIT'):
                        commits += 1
                        with self.lock:
                            fire = commits == self.nth and not self.fired
                            if fire:
                                self.fired = True
                        if fire and self.lose == 'commit':
                            return  # not sent: the server rolls it back
                        if fire:
                            s.sendall(msg)
                            self.tag = self._until_ready(s)
                            return  # both closed below: the answer is lost
                    s.sendall(msg)
        except OSError:
            return
        finally:
            c.close()
            s.close()

    @staticmethod
    def _until_ready(s):
        """Reads the server's messages up to ReadyForQuery; returns the
        last CommandComplete's tag."""
        data, tag = b'', None
        while True:
            while len(data) >= 5:
                kind = data[:1]
                n = struct.unpack('!i', data[1:5])[0]
                if len(data) < 1 + n:
                    break
                body, data = data[5:1 + n], data[1 + n:]
                if kind == b'C':
                    tag = body.rstrip(b'\0').decode(errors='replace')
                if kind == b'Z':
                    return tag
            d = s.recv(65536)
            if not d:
                return tag
            data += d
