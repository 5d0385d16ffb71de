"""The SFTP client layer (src/adapter/sftp/) against OpenSSH's sshd on
127.0.0.1, through tests/tools/sftptool: host keys, logins, ssh_config,
listing, reads and writes checked byte for byte with mode and mtime on the
served folder, atomic writes under kill -9, reconnects after a cut
connection, permission and space errors, and no secret in any message.

The server is tests/servers/sshd.py (unprivileged sshd; as root through
setpriv). Exit 77 (skipped) when sshd or ssh-keygen is missing.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'servers'))

import sshd  # noqa: E402
from tmtest import Runner, Skip, expect_eq, fail  # noqa: E402

SFTPTOOL = os.environ.get('SFTPTOOL', os.path.join(HERE, '..', '..', 'build', 'tests',
                                                   'sftptool'))
SECRETS = ['pp-Sekr1t-7f3a9', 'pw-Sekr1t-c41d2']
# TREEMIG_SFTP_TRANSPORT=openssh (ctest's *.openssh cases): the sessions run
# OpenSSH's ssh, which logs in and picks ciphers itself: info says "ssh"
# for the login and no cipher.
OPENSSH = os.environ.get('TREEMIG_SFTP_TRANSPORT') == 'openssh'
outputs = []  # every stdout+stderr of the driver, scanned for secrets at the end


def tool(srv, args, opts=None, env=None, url=None, timeout=120, known_hosts=True,
         identity=True):
    """Runs sftptool; returns (exit code, stdout lines as JSON, stderr)."""
    cmd = [SFTPTOOL]
    if identity:
        cmd += ['--identity', srv.client_key]
    if known_hosts:
        cmd += ['--known-hosts', known_hosts if isinstance(known_hosts, str)
                else srv.known_hosts]
    cmd += list(opts or []) + [url or srv.url('/')] + list(args)
    e = dict(os.environ)
    e.pop('SSH_AUTH_SOCK', None)
    e.pop('TREEMIG_SSH_PASSPHRASE', None)
    e['HOME'] = EMPTY_HOME
    for k, v in (env or {}).items():  # None: not set
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    cp = subprocess.run([os.fsencode(c) for c in cmd], stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                        timeout=timeout, start_new_session=True)
    out = cp.stdout.decode('utf-8', 'replace')
    err = cp.stderr.decode('utf-8', 'replace')
    outputs.append(out + err)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith('{')]
    return cp.returncode, lines, err


def ok(srv, args, **kw):
    rc, lines, err = tool(srv, args, **kw)
    if rc != 0:
        fail('sftptool %s: exit %d: %s' % (' '.join(map(str, args)), rc, err.strip()))
    return lines


def expect_err(rc, err, code, name, cls, what):
    if rc != code or ('error %s ' % name) not in err or ('class=%s' % cls) not in err:
        fail('%s: expected exit %d, error %s class=%s' % (what, code, name, cls),
             None, (rc, err.strip()))


def expect_auth(what, expected, actual):
    """info's auth: what libssh2 logged in with; "ssh" with openssh."""
    expect_eq(what, 'ssh' if OPENSSH else expected, actual)


def rpath(srv, rel):
    """The server path of a served node."""
    return srv.root + '/' + rel.lstrip('/')


# ---- host keys ----

def t_known_plain(srv):
    srv.write_known_hosts()
    info = ok(srv, ['info'])[0]
    expect_eq('host', '127.0.0.1', info['host'])
    expect_eq('port', srv.port, info['port'])
    expect_eq('user', srv.user, info['user'])
    expect_auth('auth', 'publickey ' + srv.client_key, info['auth'])
    expect_eq('transport', 'openssh' if OPENSSH else 'libssh2', info['transport'])
    # WRITEs: 64 KiB; over ssh as large as the server's limits@openssh.com
    # allows (OpenSSH: 256 KiB less 1 KiB), fewer requests for its sftp-server
    expect_eq('bytes per WRITE', 261120 if OPENSSH else 65536, info['chunk_write'])
    # READs: 128 KiB; over ssh 255 KiB too (half the requests, 8 % less
    # CPU on each side in a download of 8 x 64 MiB)
    expect_eq('bytes per READ', 261120 if OPENSSH else 131072, info['chunk_read'])
    expect_eq('extensions (posix-rename, statvfs, fsync, lsetstat, limits)', 31,
              info['ext'])


def t_known_odd_lines(srv):
    """Lines libssh2 cannot parse are skipped, not fatal."""
    kh = os.path.join(srv.dir, 'kh_odd')
    with open(kh, 'w') as f:
        f.write('# a comment\n'
                '@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n'
                'other.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5\n'
                'garbage\n\n' + srv.host_key_line())
    ok(srv, ['info'], known_hosts=kh)


def t_known_hashed(srv):
    kh = srv.write_known_hosts(os.path.join(srv.dir, 'kh_hashed'), hashed=True)
    text = open(kh).read()
    if not text.startswith('|1|') or '127.0.0.1' in text:
        fail('ssh-keygen -H did not hash the entry', None, text)
    ok(srv, ['info'], known_hosts=kh)


def t_unknown_refused(srv):
    kh = os.path.join(srv.dir, 'kh_empty')
    open(kh, 'w').close()
    rc, _, err = tool(srv, ['info'], known_hosts=kh)
    expect_err(rc, err, 1, 'EHOSTUNKNOWN', 'fatal', 'unknown host')
    fp = srv.host_fingerprint()
    if fp not in err or 'ED25519' not in err:
        fail('the refusal must show the ED25519 fingerprint ' + fp, None, err)
    expect_eq('known_hosts untouched', '', open(kh).read())


def t_accept_new(srv):
    kh = os.path.join(srv.dir, 'kh_new')
    if os.path.exists(kh):
        os.unlink(kh)
    ok(srv, ['info'], opts=['--accept-new'], known_hosts=kh)
    lines = open(kh).read().splitlines()
    expect_eq('one line recorded', 1, len(lines))
    expect_eq('the line, as OpenSSH writes it', srv.host_key_line().strip(), lines[0])
    expect_eq('mode of a new known_hosts', 0o600, os.stat(kh).st_mode & 0o777)
    cp = subprocess.run(['ssh-keygen', '-F', '[127.0.0.1]:%d' % srv.port, '-f', kh],
                        stdout=subprocess.PIPE)
    if cp.returncode != 0:
        fail('ssh-keygen -F does not find the recorded key')
    ok(srv, ['info'], known_hosts=kh)  # known now, without accept-new
    expect_eq('nothing appended the second time', 1, len(open(kh).read().splitlines()))


def t_changed_key(srv):
    kh = srv.write_known_hosts(os.path.join(srv.dir, 'kh_old'))
    hashed = srv.write_known_hosts(os.path.join(srv.dir, 'kh_old_hashed'), hashed=True)
    before = open(kh).read()
    srv.rotate_host_key()
    try:
        for opts in ([], ['--accept-new']):
            for f in (kh, hashed):
                rc, _, err = tool(srv, ['info'], opts=opts, known_hosts=f)
                expect_err(rc, err, 1, 'EHOSTKEY', 'fatal', 'changed key %s' % opts)
                if 'HAS CHANGED' not in err or srv.host_fingerprint() not in err:
                    fail('a changed key must be refused loudly with the new fingerprint',
                         None, err)
        expect_eq('known_hosts untouched', before, open(kh).read())
    finally:
        srv.write_known_hosts()


# ---- logins ----

def t_agent(srv):
    sock = os.path.join(tempfile.mkdtemp(prefix='tm-agent-'), 'agent.sock')
    agent = subprocess.Popen(['ssh-agent', '-D', '-a', sock], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        env = {'SSH_AUTH_SOCK': sock}
        # A key the server does not accept first, then the right one.
        other = sshd.keygen(os.path.join(srv.dir, 'agent_other'))
        for k in (other, srv.client_key):
            subprocess.run(['ssh-add', '-q', k], env=dict(os.environ, **env), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        info = ok(srv, ['info'], env=env, identity=False)[0]
        expect_auth('logged in through the agent', 'agent', info['auth'])
        # The agent comes first: with an identity file too, the agent logs in.
        info = ok(srv, ['info'], env=env)[0]
        expect_auth('agent before files', 'agent', info['auth'])
        subprocess.run(['ssh-add', '-q', '-D'], env=dict(os.environ, **env),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(['ssh-add', '-q', other], env=dict(os.environ, **env), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rc, _, err = tool(srv, ['info'], env=env, identity=False)
        expect_err(rc, err, 1, 'EAUTH', 'fatal', 'agent with a rejected key only')
        if ('agent' if OPENSSH else 'agent (1 key)') not in err:
            fail('the message should say the agent was tried', None, err)
    finally:
        agent.kill()
        agent.wait()
        shutil.rmtree(os.path.dirname(sock), True)


def t_default_identity(srv):
    """No identity given: ~/.ssh/id_ed25519 is tried."""
    home = tempfile.mkdtemp(prefix='tm-home-')
    try:
        os.mkdir(os.path.join(home, '.ssh'), 0o700)
        shutil.copy(srv.client_key, os.path.join(home, '.ssh', 'id_ed25519'))
        info = ok(srv, ['info'], env={'HOME': home}, identity=False)[0]
        expect_auth('default key', 'publickey %s/.ssh/id_ed25519' % home, info['auth'])
    finally:
        shutil.rmtree(home, True)


def t_encrypted_key(srv):
    key = sshd.keygen(os.path.join(srv.dir, 'enc_key'), passphrase=SECRETS[0])
    with open(srv.authorized, 'a') as f:
        f.write(open(key + '.pub').read())
    info = ok(srv, ['info'], opts=['--identity', key], identity=False,
              env={'TREEMIG_SSH_PASSPHRASE': SECRETS[0]})[0]
    expect_auth('encrypted key opened', 'publickey ' + key, info['auth'])
    rc, _, err = tool(srv, ['info'], opts=['--identity', key], identity=False,
                      env={'TREEMIG_SSH_PASSPHRASE': SECRETS[0] + 'x'})
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'wrong passphrase')
    if 'passphrase' not in err:
        fail('the message should say the passphrase may be wrong', None, err)
    # No variable and no terminal (the driver has no controlling tty).
    rc, _, err = tool(srv, ['info'], opts=['--identity', key], identity=False)
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'no passphrase')
    if 'TREEMIG_SSH_PASSPHRASE' not in err:
        fail('the message should name TREEMIG_SSH_PASSPHRASE', None, err)


def t_default_transport(srv):
    """Without TREEMIG_SFTP_TRANSPORT (or the option): openssh; libssh2 when
    ssh is not found, or when an identity is encrypted and
    TREEMIG_SSH_PASSPHRASE is not set (only libssh2 asks on a terminal)."""
    unset = {'TREEMIG_SFTP_TRANSPORT': None}
    info = ok(srv, ['info'], env=unset)[0]
    expect_eq('default transport', 'openssh', info['transport'])
    expect_eq('ssh logged in', 'ssh', info['auth'])
    info = ok(srv, ['info'], env=dict(unset, TREEMIG_SSH='/nonexistent/ssh'))[0]
    expect_eq('no ssh: libssh2', 'libssh2', info['transport'])
    expect_eq('libssh2 logged in', 'publickey ' + srv.client_key, info['auth'])
    # asked for: no fallback, the failure says why
    rc, _, err = tool(srv, ['info'], env={'TREEMIG_SFTP_TRANSPORT': 'openssh',
                                          'TREEMIG_SSH': '/nonexistent/ssh'})
    if rc == 0 or '/nonexistent/ssh' not in err:
        fail('openssh asked for, no ssh: an error naming it', None, (rc, err))
    key = os.path.join(srv.dir, 'enc_key')
    if not os.path.exists(key):
        key = sshd.keygen(key, passphrase=SECRETS[0])
        with open(srv.authorized, 'a') as f:
            f.write(open(key + '.pub').read())
    info = ok(srv, ['info'], opts=['--identity', key], identity=False,
              env=dict(unset, TREEMIG_SSH_PASSPHRASE=SECRETS[0]))[0]
    expect_eq('encrypted key, passphrase in the variable', 'openssh', info['transport'])
    rc, _, err = tool(srv, ['info'], opts=['--identity', key], identity=False, env=unset)
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'encrypted key, no variable')
    if 'nor terminal' not in err:  # libssh2's words: it would have asked on one
        fail('encrypted key, no variable: libssh2, which asks on a terminal', None, err)


def t_rejected_key(srv):
    key = sshd.keygen(os.path.join(srv.dir, 'stranger'))
    rc, _, err = tool(srv, ['info'], opts=['--identity', key], identity=False)
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'rejected key')
    if key not in err or 'rejected' not in err:
        fail('the message should name the key and say it was rejected', None, err)


def t_password_env(srv):
    key = os.path.join(srv.dir, 'stranger')
    rc, _, err = tool(srv, ['info'], opts=['--identity', key, '--password-env', 'TM_PW'],
                      identity=False, env={'TM_PW': SECRETS[1]})
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'password not offered')
    if '$TM_PW' not in err:
        fail('the message should name the variable', None, err)
    rc, _, err = tool(srv, ['info'], opts=['--identity', key, '--password-env', 'TM_UNSET'],
                      identity=False)
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'password variable unset')
    if 'TM_UNSET' not in err or 'not set' not in err:
        fail('the message should say the variable is not set', None, err)


def t_refused_port(srv):
    port, holder = sshd.refused_port()
    try:
        rc, _, err = tool(srv, ['info'], url=srv.url('/', port=port))
        expect_err(rc, err, 1, 'ECONNREFUSED', 'fatal', 'refused port')
        if '127.0.0.1:%d' % port not in err:
            fail('the message should name host and port', None, err)
    finally:
        holder.close()


# ---- ssh_config ----

def t_config_alias(srv):
    d = os.path.join(srv.dir, 'cfg')
    os.makedirs(d, exist_ok=True)
    kh = os.path.join(d, 'kh_%d' % srv.port)
    srv.write_known_hosts(kh)
    inc = os.path.join(d, 'inc.conf')
    with open(inc, 'w') as f:
        f.write('Host tm-alias-*\n'
                '    HostName 127.0.0.1\n'
                '    Port %d\n'
                '    User %s\n'
                '    IdentityFile %s\n'
                '    UserKnownHostsFile %s/kh_%%p\n' % (srv.port, srv.user, srv.client_key, d))
    cfg = os.path.join(d, 'config')
    with open(cfg, 'w') as f:
        f.write('# first match wins\n'
                'Include %s\n'
                'Host tm-other !tm-alias-1 *.example\n'
                '    Port 1\n'
                '    User wrong\n'
                'Host *\n'
                '    Port 2\n'
                '    User=also-wrong\n'
                '    HostName 192.0.2.1\n' % inc)
    url = 'sftp://tm-alias-1%s/' % srv.root
    info = ok(srv, ['info'], opts=['--config', cfg], url=url, identity=False,
              known_hosts=False)[0]
    expect_eq('resolved host', '127.0.0.1', info['host'])
    expect_eq('resolved port', srv.port, info['port'])
    expect_eq('resolved user', srv.user, info['user'])
    expect_auth('IdentityFile from the config', 'publickey ' + srv.client_key, info['auth'])
    # The URL's user and port win over the config's.
    url = 'sftp://nosuchuser@tm-alias-2:%d%s/' % (srv.port, srv.root)
    rc, _, err = tool(srv, ['info'], opts=['--config', cfg], url=url, identity=False,
                      known_hosts=False)
    expect_err(rc, err, 1, 'EAUTH', 'fatal', 'user from the URL')
    if 'nosuchuser@127.0.0.1' not in err:
        fail('the URL user must win over User', None, err)
    # Percent-escapes in the URL path.
    os.mkdir(srv.path('a b'))
    srv.chown(srv.path('a b'))
    lines = ok(srv, ['lstat', rpath(srv, 'a%20b').replace('%20', ' ')])
    expect_eq('folder', 'folder', lines[0]['type'])
    lines = ok(srv, ['info'], url='sftp://%s@127.0.0.1:%d%s/a%%20b' % (
        srv.user, srv.port, srv.root))
    expect_eq('decoded root', srv.root + '/a b', lines[0]['root'])


# ---- listing, reading, writing ----

def t_list_5000(srv):
    d = srv.path('many')
    os.mkdir(d)
    names = []
    for i in range(5000):
        if i % 5 == 0:
            n = b'n\xff\xfe-%04d' % i          # not UTF-8
        elif i % 5 == 1:
            n = ('caf\u00e9 %04d' % i).encode()  # UTF-8 with a space
        elif i % 5 == 2:
            n = b'nl\n%04d' % i                 # a newline
        else:
            n = b'f%04d' % i
        names.append(n)
        p = os.path.join(os.fsencode(d), n)
        if i % 100 == 7:
            os.mkdir(p, 0o750)
        elif i % 100 == 9:
            os.symlink(b'target-' + n, p)
        else:
            with open(p, 'wb') as f:
                f.write(b'x' * (i % 37))
            os.chmod(p, 0o600 + (i % 2) * 0o44)
            os.utime(p, (1500000000 + i, 1500000000 + i * 7))
    srv.chown(d)
    lines = ok(srv, ['ls', rpath(srv, 'many')])
    summary = lines[-1]
    ents = lines[:-1]
    expect_eq('count', 5000, summary['count'])
    if summary['batches'] < 50:
        fail('OpenSSH sends at most 100 names per READDIR', '>= 50', summary['batches'])
    got = {bytes.fromhex(e['name']): e for e in ents}
    expect_eq('names, byte for byte', sorted(names), sorted(got))
    for n in names:
        st = os.lstat(os.path.join(os.fsencode(d), n))
        e = got[n]
        want = {'type': 'folder' if os.path.isdir(os.path.join(os.fsencode(d), n))
                and not os.path.islink(os.path.join(os.fsencode(d), n))
                else 'symlink' if os.path.islink(os.path.join(os.fsencode(d), n))
                else 'file',
                'size': st.st_size, 'mtime': int(st.st_mtime), 'mode': st.st_mode,
                'uid': st.st_uid, 'gid': st.st_gid}
        have = {k: e[k] for k in want}
        if have != want:
            fail('attributes of %r' % n, want, have)
    # A resumed listing skips what was taken.
    lines2 = ok(srv, ['ls', rpath(srv, 'many'), '1234'])
    expect_eq('skip 1234', 5000 - 1234, lines2[-1]['count'])
    expect_eq('position', 5000, lines2[-1]['pos'])
    expect_eq('same order after the skip', [e['name'] for e in ents[1234:]],
              [e['name'] for e in lines2[:-1]])


def t_read_bytes(srv):
    data = {'empty': b'', 'one': b'\x00', 'odd': os.urandom(65536 * 3 + 17),
            'big': os.urandom(9 * 1024 * 1024 + 5)}
    for n, b in data.items():
        with open(srv.path(n), 'wb') as f:
            f.write(b)
    out = os.path.join(srv.dir, 'got')
    for opts in ([], ['--chunk', '4096', '--ahead', '3']):
        for n, b in data.items():
            ok(srv, ['get', rpath(srv, n), out], opts=opts)
            if open(out, 'rb').read() != b:
                fail('get %s %s: bytes differ' % (n, opts))


def t_write(srv):
    src = os.path.join(srv.dir, 'src.bin')
    payload = os.urandom(5 * 1024 * 1024 + 3)
    with open(src, 'wb') as f:
        f.write(payload)
    for mode, mtime in ((0o640, 1000000000), (0o755, 4000000000)):
        out = ok(srv, ['put', src, rpath(srv, 'w.bin'), '--mode', '%o' % mode,
                       '--mtime', str(mtime), '--fsync'])
        # libssh2: a file's WRITEs (64 KiB) go out 8 at a time (512 KiB,
        # full SSH packets), its replies are taken 8 at a time: 81 WRITEs in
        # about 11 batches, plus OPEN, the commit's and the rename's (one
        # each sent alone would be 81 and more). openssh: each WRITE of
        # 255 KiB is one sendmsg, its header and the caller's data together
        # (20 of them), the tail queued with the commit's requests
        batch = 261120 if OPENSSH else 512 * 1024
        if out[-1]['sends'] > len(payload) // batch + 6:
            fail('put of %d bytes: WRITEs sent in %d batches, not %d bytes a batch' % (
                len(payload), out[-1]['sends'], batch))
        st = os.stat(srv.path('w.bin'))
        expect_eq('mode', 0o100000 | mode, st.st_mode)
        expect_eq('mtime', mtime, int(st.st_mtime))
        if open(srv.path('w.bin'), 'rb').read() != payload:
            fail('put: bytes differ')
    # A small file costs three round trips and three batches of requests:
    # OPEN; WRITE, FSETSTAT and CLOSE sent together; the rename (client.c
    # queues requests until a reply is needed).
    small = os.path.join(srv.dir, 'small.bin')
    with open(small, 'wb') as f:
        f.write(payload[:3000])
    out = ok(srv, ['put', small, rpath(srv, 's.bin'), '--mode', '600', '--mtime', '1000'])
    expect_eq('batches of requests of a small put', 3, out[-1]['sends'])
    expect_eq('small put bytes', payload[:3000], open(srv.path('s.bin'), 'rb').read())
    expect_eq('small put mode, mtime', (0o100600, 1000),
              (os.stat(srv.path('s.bin')).st_mode, int(os.stat(srv.path('s.bin')).st_mtime)))
    out = ok(srv, ['get', rpath(srv, 's.bin'), os.path.join(srv.dir, 's.back')])
    expect_eq('small get bytes', payload[:3000],
              open(os.path.join(srv.dir, 's.back'), 'rb').read())
    # OPEN; FSTAT, READ and the FSTAT behind it (which says the file ends
    # there: no READ to find the end); the CLOSE waits for the next batch
    expect_eq('batches of requests of a small get', 2, out[-1]['sends'])
    rc, _, err = tool(srv, ['put', src, rpath(srv, 'w.bin'), '--noreplace'])
    expect_err(rc, err, 3, 'EEXIST', 'node', 'no-replace commit over a file')
    leftovers = [n for n in os.listdir(srv.root) if n.startswith('.treemig.')]
    expect_eq('no temporary left', [], leftovers)
    # The other operations.
    ok(srv, ['mkdir', rpath(srv, 'nd'), '750'])
    expect_eq('mkdir mode', 0o40750, os.stat(srv.path('nd')).st_mode)
    rc, _, err = tool(srv, ['mkdir', rpath(srv, 'nd'), '750'])
    expect_err(rc, err, 3, 'EEXIST', 'node', 'mkdir over a folder')
    ok(srv, ['symlink', rpath(srv, 'nd/ln'), '../w.bin'])
    expect_eq('symlink target (argument order)', '../w.bin', os.readlink(srv.path('nd/ln')))
    expect_eq('readlink', b'../w.bin'.hex(), ok(srv, ['readlink', rpath(srv, 'nd/ln')])[0]['target'])
    before = os.stat(srv.path('w.bin')).st_mtime
    ok(srv, ['setstat', rpath(srv, 'nd/ln'), '--mtime', '1234567', '--nofollow'])
    expect_eq('lsetstat sets the link', 1234567, int(os.lstat(srv.path('nd/ln')).st_mtime))
    expect_eq('... not its target', before, os.stat(srv.path('w.bin')).st_mtime)
    ok(srv, ['setstat', rpath(srv, 'nd'), '--mode', '705', '--mtime', '7654321'])
    st = os.stat(srv.path('nd'))
    expect_eq('setstat folder', (0o40705, 7654321), (st.st_mode, int(st.st_mtime)))
    ok(srv, ['rename', rpath(srv, 'w.bin'), rpath(srv, 'w2.bin')])
    with open(srv.path('w.bin'), 'wb') as f:
        f.write(b'old')
    srv.chown(srv.path('w.bin'))
    rc, _, err = tool(srv, ['rename', rpath(srv, 'w2.bin'), rpath(srv, 'w.bin')])
    expect_err(rc, err, 3, 'EEXIST', 'node', 'rename over a file')
    ok(srv, ['rename', rpath(srv, 'w2.bin'), rpath(srv, 'w.bin'), '--replace'])
    if open(srv.path('w.bin'), 'rb').read() != payload:
        fail('posix-rename did not replace')
    vfs = ok(srv, ['statvfs', srv.root])[0]
    st = os.statvfs(srv.root)
    expect_eq('statvfs', (st.f_frsize, st.f_blocks), (vfs['frsize'], vfs['blocks']))


def t_ciphers(srv):
    """The ciphers and MACs offered are the pool's list, preferred first
    (default aes128-ctr and hmac-sha2-256), as the server's own log says;
    a list libssh2 knows nothing of, or one the server refuses, is fatal.
    openssh: aes128-gcm first unless the config names its own ciphers; the
    key exchange is ssh's own."""
    dbg = sshd.Sshd(log_level='DEBUG1')
    try:
        dbg.start()
        dbg.write_known_hosts()

        def kex(cipher, mac):
            log = dbg.log_text()
            for way in ('client->server', 'server->client'):
                line = 'kex: %s cipher: %s MAC: %s ' % (way, cipher, mac)
                if line not in log:
                    fail('the server negotiated no %s' % line.strip(), None,
                         [x for x in log.splitlines() if 'kex: ' in x][-4:])

        def kex_algo(name):
            if 'kex: algorithm: %s ' % name not in dbg.log_text():
                fail('the server negotiated no key exchange %s' % name, None,
                     [x for x in dbg.log_text().splitlines() if 'kex: algorithm' in x][-4:])

        info = ok(dbg, ['info'])[0]
        if OPENSSH:  # ssh's, put first by treemig; info cannot tell them
            kex('aes128-gcm@openssh.com', '<implicit>')
            # the key exchange is ssh's own first choice (OpenSSH 9: the
            # post-quantum hybrid), not one treemig prefers
            g = subprocess.run(['ssh', '-G', '-F', 'none', '127.0.0.1'],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            own = [x.split()[1] for x in g.stdout.decode().splitlines()
                   if x.startswith('kexalgorithms ')]
            if not own:
                fail('ssh -G printed no kexalgorithms', None, g.stdout[-500:])
            kex_algo(own[0].split(',')[0])
            # an ssh config that names Ciphers or KexAlgorithms keeps them
            cfg = os.path.join(dbg.dir, 'algo.conf')
            with open(cfg, 'w') as f:
                f.write('Host *\n    Ciphers chacha20-poly1305@openssh.com\n'
                        '    KexAlgorithms diffie-hellman-group14-sha256\n')
            ok(dbg, ['info'], opts=['--config', cfg])
            kex('chacha20-poly1305@openssh.com', '<implicit>')
            kex_algo('diffie-hellman-group14-sha256')
        else:
            expect_eq('default cipher, MAC', ('aes128-ctr', 'hmac-sha2-256'),
                      (info['cipher'], info['mac']))
            kex('aes128-ctr', 'hmac-sha2-256')
        opts = ['--ciphers', 'aes256-ctr,aes128-ctr', '--macs', 'hmac-sha1,hmac-sha2-256']
        info = ok(dbg, ['info'], opts=opts)[0]
        if not OPENSSH:
            expect_eq('chosen cipher, MAC', ('aes256-ctr', 'hmac-sha1'),
                      (info['cipher'], info['mac']))
        kex('aes256-ctr', 'hmac-sha1')
        payload = os.urandom(300 * 1024 + 7)
        src = os.path.join(dbg.dir, 'c.src')
        with open(src, 'wb') as f:
            f.write(payload)
        ok(dbg, ['put', src, rpath(dbg, 'c.bin')], opts=opts)
        ok(dbg, ['get', rpath(dbg, 'c.bin'), os.path.join(dbg.dir, 'c.back')], opts=opts)
        expect_eq('bytes up and down with aes256-ctr, hmac-sha1', payload,
                  open(os.path.join(dbg.dir, 'c.back'), 'rb').read())
        if OPENSSH:  # (chacha20-poly1305 would need no MAC)
            rc, _, err = tool(dbg, ['info'], opts=['--ciphers', 'aes128-ctr', '--macs',
                                                   'hmac-md5'])
            if rc != 1 or 'class=fatal' not in err or 'no matching MAC' not in err:
                fail('a MAC the server refuses: fatal, ssh says why', None, (rc, err))
            return
        rc, _, err = tool(dbg, ['info'], opts=['--ciphers', 'chacha20-poly1305@openssh.com'])
        expect_err(rc, err, 1, 'EINVAL', 'fatal', 'a cipher libssh2 lacks')
        if 'knows none of the ciphers' not in err or 'aes128-ctr' not in err:
            fail('the message names what libssh2 has', None, err)
        rc, _, err = tool(dbg, ['info'], opts=['--macs', 'hmac-md5'])
        if rc != 1 or 'class=fatal' not in err or 'handshake' not in err:
            fail('a MAC the server refuses: fatal, at the handshake', None, (rc, err))
    finally:
        dbg.stop()


def t_without_extensions(srv):
    """A server without posix-rename, lsetstat and statvfs: replacing is
    remove + rename, a symlink's attributes are refused, statvfs too."""
    bare = sshd.Sshd(sftp_deny='posix-rename,lsetstat,statvfs')
    try:
        bare.start()
        bare.write_known_hosts()
        expect_eq('extensions (fsync, limits)', 4 | 16, ok(bare, ['info'])[0]['ext'])
        src = os.path.join(bare.dir, 'x.bin')
        payload = os.urandom(300000)
        with open(src, 'wb') as f:
            f.write(payload)
        with open(bare.path('x'), 'w') as f:
            f.write('old')
        os.symlink('x', bare.path('ln'))
        bare.chown(bare.root)
        rc, _, err = tool(bare, ['put', src, rpath(bare, 'x'), '--noreplace'])
        expect_err(rc, err, 3, 'EEXIST', 'node', 'no-replace commit, no posix-rename')
        ok(bare, ['put', src, rpath(bare, 'x'), '--mode', '600', '--mtime', '1300000000'])
        if open(bare.path('x'), 'rb').read() != payload:
            fail('replace without posix-rename: bytes differ')
        expect_eq('mtime', 1300000000, int(os.stat(bare.path('x')).st_mtime))
        rc, _, err = tool(bare, ['setstat', rpath(bare, 'ln'), '--mtime', '5', '--nofollow'])
        expect_err(rc, err, 3, 'ENOTSUP', 'node', 'no-follow setstat of a symlink, no lsetstat')
        expect_eq('the target was not touched', 1300000000, int(os.stat(bare.path('x')).st_mtime))
        ok(bare, ['setstat', rpath(bare, 'x'), '--mtime', '7', '--nofollow'])
        expect_eq('no-follow setstat of a file', 7, int(os.stat(bare.path('x')).st_mtime))
        rc, _, err = tool(bare, ['statvfs', bare.root])
        expect_err(rc, err, 3, 'ENOTSUP', 'node', 'statvfs without the extension')
        expect_eq('no temporary left', [],
                  [n for n in os.listdir(bare.root) if n.startswith('.treemig.')])
    finally:
        bare.stop()


KEY = '00112233445566778899aabbccddeeff'


def settled(path, quiet=1.0, limit=60.0):
    """The stat of path once it has stopped changing for `quiet` seconds:
    after the client is killed, the server's sftp-server still writes the
    requests it had received (pipelined) before it sees the end of the
    connection. Not a time bound: a file that never settles fails."""
    end = time.monotonic() + limit
    last = os.stat(path)
    calm = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.1)
        now = os.stat(path)
        if (now.st_size, now.st_mtime_ns) != (last.st_size, last.st_mtime_ns):
            last, calm = now, time.monotonic()
        elif time.monotonic() - calm >= quiet:
            return now
    fail('%s still changes %.0f s after its writer was killed' % (path, limit))


def t_kill_mid_write(srv):
    """kill -9 in the middle of a write: nothing under the real name, a
    temporary of mode 0600 left; the same write again (same run key) never
    opens or removes that leftover: it takes the next name."""
    src = os.path.join(srv.dir, 'k.bin')
    payload = os.urandom(48 * 1024 * 1024)
    with open(src, 'wb') as f:
        f.write(payload)
    with open(srv.path('old.bin'), 'wb') as f:
        f.write(b'the old contents')
    srv.chown(srv.path('old.bin'))
    for name, existed in (('old.bin', True), ('new.bin', False)):
        cmd = [SFTPTOOL, '--identity', srv.client_key, '--known-hosts', srv.known_hosts,
               srv.url('/'), 'put', src, rpath(srv, name), '--key', KEY, '--pause-after',
               str(16 * 1024 * 1024)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            tmp = json.loads(p.stdout.readline())['tmp']
            line = p.stdout.readline()
            if b'paused' not in line:
                fail('the driver did not pause', None, line + p.stderr.read())
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        if existed:
            expect_eq('the old file is intact', b'the old contents',
                      open(srv.path(name), 'rb').read())
        elif os.path.lexists(srv.path(name)):
            fail('something under the real name after kill -9')
        tmps = [n for n in os.listdir(srv.root) if n.startswith('.treemig.')]
        expect_eq('the temporary left', [os.path.basename(tmp)], tmps)
        left = settled(tmp)
        expect_eq('a temporary is 0600', 0o600, left.st_mode & 0o777)
        # Again, to the end, with the same key: another name; the leftover
        # is neither opened nor removed.
        lines = ok(srv, ['put', src, rpath(srv, name), '--mode', '644', '--mtime',
                         '1600000000', '--key', KEY])
        if lines[0]['tmp'] == tmp:
            fail('the redone put took the leftover name ' + tmp)
        if open(srv.path(name), 'rb').read() != payload:
            fail('the redone put differs')
        now = os.stat(tmp)
        expect_eq('the leftover untouched (inode, size, mtime)',
                  (left.st_ino, left.st_size, left.st_mtime_ns),
                  (now.st_ino, now.st_size, now.st_mtime_ns))
        os.unlink(tmp)


def t_tmp_names_taken(srv):
    """Every name a temporary may take is held by something else (a file, a
    hard link and a symlink to a file outside, a FIFO): none is opened,
    truncated, removed or followed; the write fails with EEXIST; with one
    name free it takes that one."""
    outside = os.path.join(srv.dir, 'outside')
    with open(outside, 'wb') as f:
        f.write(b'outside the served tree')
    os.chmod(outside, 0o666)
    src = os.path.join(srv.dir, 'payload')
    with open(src, 'wb') as f:
        f.write(b'payload' * 1000)
    # the names of KEY for /t/x: learn them from a put into an empty folder
    os.makedirs(srv.path('t'), exist_ok=True)
    srv.chown(srv.path('t'))
    names = []
    for i in range(4):
        lines = ok(srv, ['put', src, rpath(srv, 't/x'), '--key', KEY])
        names.append(lines[0]['tmp'])
        # hold the name just used so that the next put takes the next one
        os.unlink(srv.path('t/x'))
        if i == 0:
            with open(names[-1], 'wb') as f:
                f.write(b'destination only')
        elif i == 1:
            os.link(outside, names[-1])
        elif i == 2:
            os.symlink(outside, names[-1])
        else:
            os.mkfifo(names[-1])
    expect_eq('four distinct names', 4, len(set(names)))
    srv.chown(srv.path('t'))
    before = {n: os.lstat(n) for n in names}
    rc, _, err = tool(srv, ['put', src, rpath(srv, 't/x'), '--key', KEY], timeout=60)
    expect_err(rc, err, 3, 'EEXIST', 'node', 'every temporary name taken')
    expect_eq('nothing at the real name', False, os.path.lexists(srv.path('t/x')))
    for n in names:
        a, b = before[n], os.lstat(n)
        expect_eq('%s untouched' % os.path.basename(n), (a.st_ino, a.st_size, a.st_mtime_ns),
                  (b.st_ino, b.st_size, b.st_mtime_ns))
    expect_eq('the file outside', b'outside the served tree', open(outside, 'rb').read())
    os.unlink(names[3])
    lines = ok(srv, ['put', src, rpath(srv, 't/x'), '--key', KEY])
    expect_eq('the free name taken', names[3], lines[0]['tmp'])
    expect_eq('the file outside', b'outside the served tree', open(outside, 'rb').read())


def proxy_kh(srv, px):
    """A known_hosts file listing the server under the proxy's port."""
    kh = os.path.join(srv.dir, 'kh_proxy')
    with open(kh, 'w') as f:
        f.write(srv.host_key_line('[127.0.0.1]:%d' % px.port))
    return kh


def t_reconnect(srv):
    src = srv.path('r.bin')
    payload = os.urandom(16 * 1024 * 1024)
    with open(src, 'wb') as f:
        f.write(payload)
    srv.chown(src)
    out = os.path.join(srv.dir, 'r.out')
    # The first connection is cut after 4 MiB: the read fails, retry class.
    with sshd.CutProxy(srv.port, cut_bytes=4 << 20, cut_conns=1) as px:
        rc, _, err = tool(srv, ['get', rpath(srv, 'r.bin'), out],
                          opts=['--timeout', '10000'], url=srv.url('/', port=px.port), known_hosts=proxy_kh(srv, px))
        expect_err(rc, err, 75, 'ECONNRESET', 'retry', 'a cut connection')
        expect_eq('cuts', 1, px.cuts)
    # With retries, the next call opens a new session and completes.
    with sshd.CutProxy(srv.port, cut_bytes=4 << 20, cut_conns=1) as px:
        lines = ok(srv, ['get', rpath(srv, 'r.bin'), out],
                   opts=['--retries', '3', '--timeout', '10000'],
                   url=srv.url('/', port=px.port), known_hosts=proxy_kh(srv, px))
        expect_eq('one retry, two sessions', {'retries': 1, 'connects': 2}, lines[-1])
        if open(out, 'rb').read() != payload:
            fail('bytes differ after the reconnect')
    # A write cut in the middle: nothing under the real name, then done.
    with sshd.CutProxy(srv.port, cut_bytes=6 << 20, cut_conns=1) as px:
        rc, _, err = tool(srv, ['put', src, rpath(srv, 'rw.bin')],
                          url=srv.url('/', port=px.port), known_hosts=proxy_kh(srv, px))
        expect_err(rc, err, 75, 'ECONNRESET', 'retry', 'a cut write')
        if os.path.lexists(srv.path('rw.bin')):
            fail('a cut write left something under the real name')
    with sshd.CutProxy(srv.port, cut_bytes=6 << 20, cut_conns=2) as px:
        ok(srv, ['put', src, rpath(srv, 'rw.bin'), '--mtime', '1700000000'],
           opts=['--retries', '5'], url=srv.url('/', port=px.port), known_hosts=proxy_kh(srv, px))
        expect_eq('connections', 3, px.conns)
    if open(srv.path('rw.bin'), 'rb').read() != payload:
        fail('bytes differ after a cut write was redone')
    expect_eq('no temporary left', [],
              [n for n in os.listdir(srv.root) if n.startswith('.treemig.')])
    # Every connection cut: the pool gives up after the retries, retry class.
    with sshd.CutProxy(srv.port, cut_bytes=64 << 10, cut_conns=None) as px:
        rc, _, err = tool(srv, ['get', rpath(srv, 'r.bin'), out], opts=['--retries', '2'],
                          url=srv.url('/', port=px.port), known_hosts=proxy_kh(srv, px))
        if rc not in (1, 75):
            fail('every connection cut', '1 or 75', (rc, err))


def t_permission_denied(srv):
    d = srv.path('locked')
    os.mkdir(d)
    with open(os.path.join(d, 'f'), 'w') as f:
        f.write('x')
    srv.chown(d)
    os.chmod(d, 0)
    try:
        rc, _, err = tool(srv, ['ls', rpath(srv, 'locked')])
        expect_err(rc, err, 3, 'EACCES', 'node', 'listing a folder of mode 000')
        rc, _, err = tool(srv, ['get', rpath(srv, 'locked/f'), os.path.join(srv.dir, 'x')])
        expect_err(rc, err, 3, 'EACCES', 'node', 'reading below it')
        os.chmod(d, 0o555)
        rc, _, err = tool(srv, ['put', srv.client_key + '.pub', rpath(srv, 'locked/g')])
        expect_err(rc, err, 3, 'EACCES', 'node', 'writing into a read-only folder')
        rc, _, err = tool(srv, ['lstat', rpath(srv, 'no/such')])
        expect_err(rc, err, 3, 'ENOENT', 'node', 'lstat of a missing node')
    finally:
        os.chmod(d, 0o755)


def t_full_disk(srv):
    if os.geteuid() != 0:
        raise Skip('mounting a small tmpfs needs root')
    d = srv.path('small')
    os.mkdir(d)
    cp = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0755,uid=%d,gid=%d'
                         % (srv.uid, srv.gid), 'tmpfs', d], stderr=subprocess.PIPE)
    if cp.returncode != 0:
        raise Skip('cannot mount a tmpfs here: ' + cp.stderr.decode().strip())
    try:
        src = os.path.join(srv.dir, 'f.bin')
        with open(src, 'wb') as f:
            f.write(os.urandom(3 << 20))
        rc, _, err = tool(srv, ['put', src, rpath(srv, 'small/f.bin')])
        expect_err(rc, err, 1, 'ENOSPC', 'fatal', 'a write to a full file system')
        expect_eq('nothing left on the full file system', [], os.listdir(d))
    finally:
        subprocess.run(['umount', d])


def t_pool_threads(srv):
    """Eight threads share three sessions: no more connects than sessions."""
    os.makedirs(srv.path('pool'), exist_ok=True)
    for i in range(150):
        open(srv.path('pool/f%d' % i), 'w').close()
    srv.chown(srv.path('pool'))
    lines = ok(srv, ['stress', rpath(srv, 'pool/f3'), '30'],
               opts=['--threads', '8', '--sessions', '3'])
    if not 1 <= lines[0]['connects'] <= 3:
        fail('sessions opened', '1..3', lines[0]['connects'])


def t_no_secret(srv):
    for out in outputs:
        for s in SECRETS:
            if s in out:
                fail('a secret appears in the output', None, out)
    log = srv.log_text()
    for s in SECRETS:
        if s in log:
            fail('a secret appears in the server log')


EMPTY_HOME = None
# TREEMIG_SFTP_ONLY=WORDS[,WORDS] runs the checks whose name contains one.
ONLY = os.environ.get('TREEMIG_SFTP_ONLY')


def main():
    global EMPTY_HOME
    why = sshd.available()
    if why:
        print('SKIP: ' + why)
        sys.exit(77)
    if not os.access(SFTPTOOL, os.X_OK):
        print('sftptool not found at %s (set SFTPTOOL or build)' % SFTPTOOL)
        sys.exit(1)
    sshd.install_signal_handlers()
    EMPTY_HOME = tempfile.mkdtemp(prefix='tm-home-')
    r = Runner('test_sftp_client')
    srv = sshd.Sshd()
    try:
        srv.start()
        srv.write_known_hosts()
        for name, fn in [
                ('known host', t_known_plain),
                ('known host, hashed entry', t_known_hashed),
                ('known host among lines libssh2 cannot parse', t_known_odd_lines),
                ('unknown host refused with its fingerprint', t_unknown_refused),
                ('accept-new records the key', t_accept_new),
                ('changed key always refused', t_changed_key),
                ('agent', t_agent),
                ('default identity file', t_default_identity),
                ('encrypted key with TREEMIG_SSH_PASSPHRASE', t_encrypted_key),
                ('default transport: openssh, else libssh2', t_default_transport),
                ('rejected key', t_rejected_key),
                ('password only from the named variable', t_password_env),
                ('refused port', t_refused_port),
                ('ssh_config alias, Include, first match wins', t_config_alias),
                ('listing 5000 entries, names as bytes', t_list_5000),
                ('reads byte for byte', t_read_bytes),
                ('writes, modes, mtimes, symlinks, renames', t_write),
                ('ciphers and MACs as configured', t_ciphers),
                ('a server without posix-rename, lsetstat, statvfs', t_without_extensions),
                ('kill -9 mid-write leaves nothing under the real name', t_kill_mid_write),
                ('temporary names taken by others are never touched', t_tmp_names_taken),
                ('reconnect after a cut connection', t_reconnect),
                ('permission denied and missing nodes', t_permission_denied),
                ('full file system is ENOSPC', t_full_disk),
                ('threads share the pool', t_pool_threads),
                ('no secret in any message or log', t_no_secret)]:
            if ONLY and not any(w in name for w in ONLY.split(',')):
                continue
            r.check(name, fn, srv)
    finally:
        srv.stop()
        shutil.rmtree(EMPTY_HOME, True)
    r.finish()


if __name__ == '__main__':
    main()
