"""OpenSSH's own sshd on 127.0.0.1 for the SFTP tests (Python 3 stdlib).

    from sshd import Sshd, CutProxy, refused_port
    with Sshd() as srv:                  # started, stopped at exit even on failure
        srv.url('/a')                    # sftp://USER@127.0.0.1:PORT<root>/a
        srv.path('a')                    # the same node on local disk
        srv.client_key, srv.known_hosts  # an authorized key, a known_hosts file

How it runs. sshd runs unprivileged, as the user it serves: when the tests
run as root (CI), it is started through `setpriv` as uid/gid 65534
(`nobody`), otherwise as the current user. An unprivileged sshd can only
log in the user it runs as, needs neither /run/sshd nor privilege
separation, and makes permission tests meaningful (root would read a
folder of mode 000). So: `UsePAM yes` (without PAM an unprivileged sshd
cannot read the shadow file and takes the account for locked: "User nobody
not allowed because account is locked"), `StrictModes no` (the key files are
in a temporary folder), `Subsystem sftp internal-sftp` with `ForceCommand
internal-sftp`, password and keyboard-interactive logins off (an
unprivileged sshd cannot check passwords). The host key (ed25519, or
another type) and a client key are generated per run with ssh-keygen; the
served tree is a folder of the temporary directory owned by the server's
user, so tests can check every byte, mode and mtime there.

The port is picked free at run time (bind to port 0) and sshd is started on
it; if another process took it in between, another is picked. The server
and every process it forks run in their own process group, which stop()
kills; stop() runs at interpreter exit and on SIGTERM too.

Misbehaviour for tests: Sshd(sftp_deny='posix-rename,lsetstat') serves
SFTP without those extensions; rotate_host_key() restarts the server with a new
host key on the same port (a "changed" key); CutProxy forwards to the
server and cuts connections after N bytes; refused_port()
gives a port on which nothing listens. `sshd.py --serve ROOT INFO` serves
a given folder until SIGTERM (bench/sftp.sh).

Sshd(close_after=N) serves SFTP through a wrapper (this file, run as
`sshd.py --sftp-close-after N LOG`) that forwards the plain SFTP stream
between the channel and OpenSSH's sftp-server, counts the requests, and
ends the session (the server closes the channel) when request N+1
arrives, as a server with a per-session quota would; each close is a
line in srv.closes_log. sshd runs a command through the login user's
shell, and nobody's is nologin: as root such a server runs sshd as root
and logs in root (after mkdir -p /run/sshd, which privilege separation
needs); otherwise as the current user.
"""

import atexit
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SSHD = os.environ.get('TREEMIG_SSHD', '/usr/sbin/sshd')
NOBODY = 65534

_live = []


def _stop_all():
    for s in list(_live):
        s.stop()


atexit.register(_stop_all)


def _on_term(signum, frame):
    _stop_all()
    sys.exit(128 + signum)


def install_signal_handlers():
    """Makes SIGTERM and SIGINT stop the servers before the test dies."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)


def available():
    """None when the fixture can run here, else the reason."""
    for tool in (SSHD, shutil.which('ssh-keygen')):
        if not tool or not os.access(tool, os.X_OK):
            return 'not installed: %s (Debian openssh-server, openssh-client)' % (
                tool or 'ssh-keygen')
    if os.geteuid() == 0 and not shutil.which('setpriv'):
        return 'running as root without setpriv (util-linux) to drop privileges'
    return None


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def refused_port():
    """A port on 127.0.0.1 that refuses connections: a socket bound and never
    listening holds it. Returns (port, socket): keep the socket open."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1], s


def keygen(path, kind='ed25519', passphrase='', comment='treemig-test'):
    """Generates a key pair at path (private) and path.pub."""
    for p in (path, path + '.pub'):
        if os.path.exists(p):
            os.unlink(p)
    subprocess.run(['ssh-keygen', '-q', '-t', kind, '-N', passphrase, '-C', comment,
                    '-f', path], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return path


def fingerprint(pub_path):
    """OpenSSH's SHA256 fingerprint of a public key file ('SHA256:...')."""
    out = subprocess.run(['ssh-keygen', '-l', '-E', 'sha256', '-f', pub_path],
                         check=True, stdout=subprocess.PIPE).stdout.decode()
    return out.split()[1]


SFTP_SERVER = '/usr/lib/openssh/sftp-server'


class Sshd:
    def __init__(self, host_key_type='ed25519', log_level='ERROR', sftp_deny=None,
                 close_after=None, root=None, max_sessions=100):
        """sftp_deny: requests the SFTP server refuses, e.g.
        'posix-rename,lsetstat' (internal-sftp -P; a denied extension is
        not announced either, as on a server that lacks it). close_after:
        requests per session before the server closes it (see above).
        root: the folder served (default: srv/ in the server's temporary
        folder; a given one is kept at stop). max_sessions: sshd's
        MaxSessions (channels per connection). With log_level 'INFO' the
        log has a line per login (logins())."""
        self.host_key_type = host_key_type
        self.sftp_deny = sftp_deny
        self.close_after = close_after
        self.log_level = log_level
        self.max_sessions = max_sessions
        self.proc = None
        self.port = None
        self.dir = tempfile.mkdtemp(prefix='tm-sshd-', dir='/tmp')
        os.chmod(self.dir, 0o755)
        self.closes_log = os.path.join(self.dir, 'closes.log')
        self.as_root = os.geteuid() == 0 and close_after is not None
        if self.as_root:
            self.uid = self.gid = 0
        elif os.geteuid() == 0:
            self.uid = self.gid = NOBODY
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        try:
            self.user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            self.user = str(self.uid)
        self.root = root or os.path.join(self.dir, 'srv')
        os.makedirs(self.root, 0o755, exist_ok=True)
        self.host_key = os.path.join(self.dir, 'host_key')
        self.client_key = keygen(os.path.join(self.dir, 'client_key'))
        self.authorized = os.path.join(self.dir, 'authorized_keys')
        shutil.copyfile(self.client_key + '.pub', self.authorized)
        self.known_hosts = os.path.join(self.dir, 'known_hosts')
        self.log = os.path.join(self.dir, 'sshd.log')
        self._new_host_key()
        self.chown(self.root)

    # ---- files ----

    def chown(self, path):
        """Gives path (recursively) to the server's user."""
        if os.geteuid() != 0:
            return
        os.lchown(path, self.uid, self.gid)
        if os.path.isdir(path) and not os.path.islink(path):
            for top, dirs, files in os.walk(path):
                for n in dirs + files:
                    os.lchown(os.path.join(top, n), self.uid, self.gid)

    def path(self, rel=''):
        """The local path of a served node (rel: bytes or str, no leading /)."""
        if isinstance(rel, bytes):
            return os.path.join(os.fsencode(self.root), rel.lstrip(b'/'))
        return os.path.join(self.root, rel.lstrip('/'))

    def url(self, rel='', user=True, host='127.0.0.1', port=None):
        """sftp://user@127.0.0.1:port/<root>/rel."""
        rel = rel if rel.startswith('/') or not rel else '/' + rel
        who = self.user + '@' if user else ''
        return 'sftp://%s%s:%d%s%s' % (who, host, port or self.port, self.root, rel)

    def _new_host_key(self):
        keygen(self.host_key, self.host_key_type, comment='treemig-test-host')
        if os.geteuid() == 0:
            os.chown(self.host_key, self.uid, self.gid)

    def host_fingerprint(self):
        return fingerprint(self.host_key + '.pub')

    def host_key_line(self, name=None):
        """A known_hosts line for this server ([127.0.0.1]:port keytype b64)."""
        kind, b64 = open(self.host_key + '.pub').read().split()[:2]
        return '%s %s %s\n' % (name or '[127.0.0.1]:%d' % self.port, kind, b64)

    def write_known_hosts(self, path=None, hashed=False):
        """Writes a known_hosts file listing this server (hashed with
        ssh-keygen -H when asked); returns its path."""
        path = path or self.known_hosts
        with open(path, 'w') as f:
            f.write(self.host_key_line())
        if hashed:
            subprocess.run(['ssh-keygen', '-q', '-H', '-f', path], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if os.path.exists(path + '.old'):
                os.unlink(path + '.old')
        return path

    # ---- the server ----

    def _force_command(self):
        if self.close_after is not None:
            return 'ForceCommand exec %s %s --sftp-close-after %d %s' % (
                sys.executable, os.path.abspath(__file__), self.close_after,
                self.closes_log)
        return 'ForceCommand internal-sftp' + (' -P ' + self.sftp_deny
                                               if self.sftp_deny else '')

    def _config(self, port):
        cfg = os.path.join(self.dir, 'sshd_config')
        with open(cfg, 'w') as f:
            f.write('\n'.join([
                'ListenAddress 127.0.0.1:%d' % port,
                'HostKey %s' % self.host_key,
                'PidFile none',
                'AuthorizedKeysFile %s' % self.authorized,
                'StrictModes no',
                'UsePAM yes',
                'PubkeyAuthentication yes',
                'PasswordAuthentication no',
                'KbdInteractiveAuthentication no',
                'AllowTcpForwarding no',
                'X11Forwarding no',
                'PermitTTY no',
                'MaxSessions %d' % self.max_sessions,
                'MaxStartups 200',
                'MaxAuthTries 20',
                'Subsystem sftp internal-sftp',
                self._force_command(),
                'PermitRootLogin %s' % ('prohibit-password' if self.as_root else 'no'),
                'LogLevel %s' % self.log_level,
                '']))
        return cfg

    def start(self, port=None):
        last = ''
        for attempt in range(10):
            p = port or free_port()
            cmd = [SSHD, '-D', '-e', '-f', self._config(p)]
            if self.as_root:
                os.makedirs('/run/sshd', mode=0o755, exist_ok=True)
            elif os.geteuid() == 0:
                cmd = ['setpriv', '--reuid=%d' % self.uid, '--regid=%d' % self.gid,
                       '--clear-groups', '--'] + cmd
            logf = open(self.log, 'ab')
            env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': self.dir}
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, env=env, start_new_session=True)
            logf.close()
            if self not in _live:
                _live.append(self)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection(('127.0.0.1', p), timeout=1).close()
                    self.port = p
                    return self
                except OSError:
                    time.sleep(0.02)
            self._kill()
            last = open(self.log, errors='replace').read()[-2000:]
            if port:
                break
        raise RuntimeError('sshd did not start:\n' + last)

    def _kill(self):
        if not self.proc:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None

    def rotate_host_key(self):
        """Restarts the server on the same port with a new host key."""
        self._kill()
        self._new_host_key()
        self.start(self.port)

    def stop(self, keep=False):
        """Stops the server (and its children) and removes its folder."""
        self._kill()
        if self in _live:
            _live.remove(self)
        if not keep and self.dir and os.path.isdir(self.dir):
            for top, dirs, files in os.walk(self.dir):
                for d in dirs:
                    try:
                        os.chmod(os.path.join(top, d), 0o755)
                    except OSError:
                        pass
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_text(self):
        try:
            return open(self.log, errors='replace').read()
        except OSError:
            return ''

    def logins(self):
        """Logins so far (log_level 'INFO' or more: sshd's "Accepted
        publickey for ..." lines)."""
        return len(re.findall(r'^Accepted \S+ for ', self.log_text(), re.M))

    def sessions(self):
        """Sessions (channels) so far (log_level 'VERBOSE' or more)."""
        return len(re.findall(r'^Starting session: ', self.log_text(), re.M))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def closes(self):
        """Sessions the close_after wrapper ended so far."""
        try:
            with open(self.closes_log) as f:
                return len(f.read().splitlines())
        except OSError:
            return 0


class CutProxy:
    """A TCP forwarder on 127.0.0.1 to target_port that cuts connections, as
    a server that drops the session after N requests would: the first
    `cut_conns` connections (None: all) are reset once `cut_bytes` bytes
    have passed (both directions counted). `conns` counts connections,
    `cuts` the ones cut. Threads, one per direction per connection; close()
    stops everything."""

    def __init__(self, target_port, cut_bytes, cut_conns=1):
        self.target = target_port
        self.cut_bytes = cut_bytes
        self.cut_conns = cut_conns
        self.cut_from = 0   # connections before this index are never cut
        self.conns = 0
        self.cuts = 0
        self.lock = threading.Lock()
        self.socks = []
        self.threads = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.closed = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(('127.0.0.1', self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                idx = self.conns
                self.conns += 1
                self.socks += [c, u]
            with self.lock:
                cut = idx >= self.cut_from and (
                    self.cut_conns is None or idx < self.cut_from + self.cut_conns)
                state = {'bytes': 0, 'dead': False, 'limit': self.cut_bytes}
            for a, b in ((c, u), (u, c)):
                t = threading.Thread(target=self._pump, args=(a, b, cut, state, c, u),
                                     daemon=True)
                t.start()
                self.threads.append(t)

    def _reset(self, *socks):
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\1\0\0\0\0\0\0\0')
                s.close()
            except OSError:
                pass

    def _pump(self, src, dst, cut, state, c, u):
        while not state['dead'] and not self.closed:
            try:
                r, _, _ = select.select([src], [], [], 0.05)
            except (OSError, ValueError):
                break
            if not r:
                continue
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if cut:
                with self.lock:
                    room = state['limit'] - state['bytes']
                    state['bytes'] += len(data)
                if room <= 0:
                    state['cut'] = True
                    break
                if room < len(data):
                    state['cut'] = True
                    data = data[:room]
                    try:
                        dst.sendall(data)
                    except OSError:
                        pass
                    break
            try:
                dst.sendall(data)
            except OSError:
                break
        with self.lock:
            if not state['dead']:
                state['dead'] = True
                if state.get('cut'):
                    self.cuts += 1
        self._reset(c, u)

    def cut_next(self, conns, cut_bytes):
        """From now on: the next `conns` connections (None: all) are cut
        after cut_bytes; those open now are left alone."""
        with self.lock:
            self.cut_from = self.conns
            self.cut_conns = conns
            self.cut_bytes = cut_bytes

    def close(self):
        self.closed = True
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass
        for t in self.threads:
            t.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sftp_close_after(limit, log):
    """The wrapper of Sshd(close_after=N), run by sshd for a session: the
    SFTP stream of the channel (stdin, stdout) to and from sftp-server;
    ends the session when request N+1 arrives (the INIT is no request)."""
    child = subprocess.Popen([SFTP_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cin, cout = child.stdin.fileno(), child.stdout.fileno()

    def pump_out():
        while True:
            b = os.read(cout, 65536)
            if not b:
                os._exit(0)
            os.write(1, b)

    threading.Thread(target=pump_out, daemon=True).start()
    buf = b''
    seen = 0
    while True:
        b = os.read(0, 65536)
        if not b:
            break
        buf += b
        while len(buf) >= 5:
            n = int.from_bytes(buf[:4], 'big')
            if len(buf) < 4 + n:
                break
            pkt, buf = buf[:4 + n], buf[4 + n:]
            if pkt[4] != 1:  # SSH_FXP_INIT
                seen += 1
                if seen > limit:
                    with open(log, 'a') as f:
                        f.write('closed after %d requests\n' % limit)
                    # the session ends once sftp-server is gone, as with a
                    # real server: what it had received is done (or not)
                    # before the client sees the end of the channel
                    child.kill()
                    child.wait()
                    os._exit(0)
            os.write(cin, pkt)
    child.stdin.close()
    child.wait()


def _serve(root, info):
    """`sshd.py --serve ROOT INFO` (bench/sftp.sh): serves ROOT until SIGTERM;
    INFO gets one JSON object: port, user, client key, known_hosts file,
    host key line, the listening sshd's pid (setpriv execs it)."""
    import json
    install_signal_handlers()
    srv = Sshd(root=os.path.abspath(root))
    srv.start()
    srv.write_known_hosts()
    tmp = info + '.tmp'
    with open(tmp, 'w') as f:
        json.dump({'port': srv.port, 'user': srv.user, 'key': srv.client_key,
                   'known_hosts': srv.known_hosts, 'uid': srv.uid, 'gid': srv.gid,
                   'host_key_pub': srv.host_key + '.pub', 'dir': srv.dir,
                   'pid': srv.proc.pid}, f)
    os.rename(tmp, info)
    while srv.proc and srv.proc.poll() is None:
        time.sleep(0.5)
    srv.stop()


if __name__ == '__main__' and len(sys.argv) == 4 and sys.argv[1] == '--sftp-close-after':
    _sftp_close_after(int(sys.argv[2]), sys.argv[3])
elif __name__ == '__main__' and len(sys.argv) == 4 and sys.argv[1] == '--serve':
    _serve(sys.argv[2], sys.argv[3])
