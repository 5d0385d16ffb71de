"""A throwaway PostgreSQL server for the integration tests (Debian's
postgresql package: initdb, pg_ctl of /usr/lib/postgresql/N/bin).

PgServer() makes a cluster in a new temporary folder, listening on
127.0.0.1 at a port picked free at run time and on a Unix socket in that
folder; password authentication (scram) for TCP, trust on the socket. As
root (CI) the server runs as nobody through setpriv: PostgreSQL refuses to
run as root. stop() (also registered with atexit) stops it and removes the
folder. No other process is left behind.
"""
import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

NOBODY = 65534


def bindir():
    """The newest /usr/lib/postgresql/N/bin holding initdb, or None."""
    cands = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'),
                   key=lambda p: int(p.split('/')[4]) if p.split('/')[4].isdigit() else 0)
    return os.path.dirname(cands[-1]) if cands else None


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self, password='s3cret-Pw'):
        self.bin = bindir()
        if not self.bin:
            raise RuntimeError('no PostgreSQL server here (apt-get install postgresql)')
        self.dir = tempfile.mkdtemp(prefix='tm-pg-', dir='/tmp')
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, 'data')
        self.sock = os.path.join(self.dir, 'sock')
        os.mkdir(self.sock)
        self.user = 'tm'
        self.password = password
        self.made = 0  # databases made by new_db()
        self.port = free_port()
        self.running = False
        self.root = os.geteuid() == 0
        if self.root:
            os.chown(self.dir, NOBODY, NOBODY)
            os.chown(self.sock, NOBODY, NOBODY)
        atexit.register(self.stop)
        # a SIGTERM (ctest's timeout) must still stop the server: atexit
        # runs on sys.exit, not on a signal's default action
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
        pwfile = os.path.join(self.dir, 'pw')
        with open(pwfile, 'w') as f:
            f.write(password + '\n')
        if self.root:
            os.chown(pwfile, NOBODY, NOBODY)
        self._run([os.path.join(self.bin, 'initdb'), '-D', self.data, '-U', self.user,
                   '--pwfile', pwfile, '-A', 'scram-sha-256', '--auth-local=trust',
                   '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
        os.unlink(pwfile)
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write("listen_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = off\n"
                    "max_connections = 60\n" % (self.port, self.sock))
        self.start()

    def _run(self, cmd, check=True):
        if self.root:
            cmd = ['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY,
                   '--clear-groups'] + cmd
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=self.dir)
        if check and cp.returncode != 0:
            raise RuntimeError('%s failed: %s' % (cmd, cp.stdout.decode(errors='replace')))
        return cp

    def start(self):
        self._run([os.path.join(self.bin, 'pg_ctl'), '-D', self.data, '-w', '-s',
                   '-l', os.path.join(self.dir, 'log'), 'start'])
        self.running = True

    def restart(self):
        # -l: the new server must not inherit our pipe (we would wait for it)
        self._run([os.path.join(self.bin, 'pg_ctl'), '-D', self.data, '-w', '-s',
                   '-l', os.path.join(self.dir, 'log'), '-m', 'immediate', 'restart'])

    def stop_server(self):
        """Stops the server (immediate: connections cut), keeps its files;
        start() starts it again."""
        self._run([os.path.join(self.bin, 'pg_ctl'), '-D', self.data, '-w', '-s',
                   '-m', 'immediate', 'stop'], check=False)
        self.running = False

    def stop(self):
        if self.running:
            self._run([os.path.join(self.bin, 'pg_ctl'), '-D', self.data, '-w', '-s',
                       '-m', 'immediate', 'stop'], check=False)
            self.running = False
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, True)

    def log(self):
        try:
            with open(os.path.join(self.dir, 'log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def psql(self, db, sql):
        """Runs sql through psql on the socket; returns its output (str)."""
        cp = subprocess.run([os.path.join(self.bin, 'psql'), '-X', '-q', '-A', '-t',
                             '-v', 'ON_ERROR_STOP=1', '-h', self.sock, '-p', str(self.port),
                             '-U', self.user, '-d', db, '-c', sql],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
        if cp.returncode != 0:
            raise RuntimeError('psql %r: %s' % (sql, cp.stderr.decode(errors='replace')))
        return cp.stdout.decode()

    def createdb(self, name):
        self.psql('postgres', 'CREATE DATABASE "%s"' % name)

    def new_db(self, prefix):
        """Creates the next empty database PREFIX<n>; returns (name, URI)."""
        self.made += 1
        name = '%s%d' % (prefix, self.made)
        self.createdb(name)
        return name, self.uri(name)

    def env(self):
        """What a treemig client needs in its environment (the password)."""
        return {'PGPASSWORD': self.password}

    def rows(self, db, sql):
        """The rows of sql, one '|'-joined line each."""
        return self.psql(db, sql).splitlines()

    def uri(self, db, password=False):
        """A TCP URI for db (with the password inline when password)."""
        auth = self.user + (':' + self.password if password else '')
        return 'postgresql://%s@127.0.0.1:%d/%s' % (auth, self.port, db)

    def socket_uri(self, db):
        return 'postgresql:///%s?host=%s&port=%d&user=%s' % (db, self.sock, self.port,
                                                             self.user)


def lite_rows(path, sql):
    """The rows of sql on the SQLite file path, joined as psql -A does."""
    import sqlite3
    con = sqlite3.connect(path)
    try:
        return ['|'.join(str(x) for x in r) for r in con.execute(sql)]
    finally:
        con.close()


def rows_differ(what, a, b):
    """None when the SQLite rows a equal the PostgreSQL rows b, else what
    differs first (a message)."""
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return ('%s: row %d differs:\n      sqlite     %s\n      postgresql %s'
                    % (what, i, x, y))
    return '%s: %d rows on SQLite, %d on PostgreSQL' % (what, len(a), len(b))
