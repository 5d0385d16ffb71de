#!/usr/bin/env python3
"""The openssh transport's shared connections (issue 13): sessions are
channels of an ssh master's connection (one key exchange and login per 4
sessions), against OpenSSH's sshd on 127.0.0.1 (tests/servers/sshd.py,
LogLevel VERBOSE: a line per login and per session).

1. discover logs in once per 4 sessions (its check of the roots and its
   listing share a connection); a copy of 40 files with 16 workers: logins <=
   ceil(sessions / 4); the tree byte for byte (rsync); the private control
   folder gone after the command (TMPDIR is empty).
2. A server with MaxSessions 3: the refused channels ("no more sessions")
   go to a new master (not to a login of their own: ssh's fallback is
   off); the copy completes with more than 3 sessions and logins <=
   ceil(sessions / 3).
3. The master killed (SIGKILL) mid-copy: the sessions on it break and
   reconnect through a new master; the copy completes, byte for byte;
   nothing is left in TMPDIR.
4. treemig killed (SIGKILL) mid-copy: its masters end with it (the kernel's
   parent-death signal; a master reads nothing, so nothing else would end
   it: it stayed logged in); the copy run again completes, byte for byte.
5. Masters outlive the threads that asked for them: sftptool's stress,
   8 threads on 8 sessions (two masters), then 8 new threads on the same
   pooled sessions: no session breaks, none is replaced (the parent-death
   signal is a thread's: a master forked by a worker thread died with it,
   and a copy stopped by a fault lost the sessions its other workers were
   still removing their temporaries on).
6. The masters killed between two rounds of sftptool's stress (--wait-
   rounds): the sessions they left idle in the pool are replaced, not
   used: the second round succeeds without retries.

The libssh2 transport has no master: skipped (exit 77) there. Exit 77 too
when sshd or ssh-keygen is missing.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'servers'))

import sshd  # noqa: E402
import tmtest  # noqa: E402
from tmtest import Runner, expect_eq, expect_rc, fail, show  # noqa: E402

# the sessions one master carries (MUX_SESSIONS in openssh.c)
PER_MASTER = 4


class Case:
    """A server, a source tree of n files of size bytes, a private TMPDIR
    for treemig (where the control folder goes)."""

    def __init__(self, work, name, n, size, **kw):
        self.srv = sshd.Sshd(log_level='VERBOSE', **kw).start()
        self.srv.write_known_hosts()
        self.dst = self.srv.path(name)
        os.makedirs(self.dst)
        self.srv.chown(self.dst)
        self.src = os.path.join(work, name)
        os.makedirs(self.src)
        for i in range(n):
            with open(os.path.join(self.src, 'f%02d' % i), 'wb') as f:
                f.write(os.urandom(size))
        self.tmpdir = os.path.join(work, name + '.tmp')
        os.makedirs(self.tmpdir)
        self.env = {'TMPDIR': self.tmpdir}
        self.left = set()  # what a treemig killed left in TMPDIR
        self.db = os.path.join(work, name + '.db')
        cp = tmtest.run(['discover', '--db', self.db, '--quiet',
                         '--ssh-identity', self.srv.client_key,
                         '--ssh-known-hosts', self.srv.known_hosts,
                         self.src, self.srv.url('/' + name)], env=self.env)
        expect_rc(cp, 0, 'discover')
        self.logins0, self.sessions0 = self.srv.logins(), self.srv.sessions()

    def copy_args(self, workers):
        return ['copy', '--db', self.db, '--yes', '--quiet', '--workers', str(workers)]

    def counted(self):
        """(logins, sessions) since discover."""
        return self.srv.logins() - self.logins0, self.srv.sessions() - self.sessions0

    def check_tree(self):
        cp = subprocess.run(['rsync', '-rlptDn', '--itemize-changes', '--checksum',
                             self.src + '/', self.dst + '/'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode != 0:
            fail('rsync failed: %r' % cp.stderr[-500:])
        diff = [ln for ln in cp.stdout.split(b'\n') if ln and not ln.endswith(b' ./')]
        expect_eq('rsync -rlptDn --itemize-changes --checksum (source -> served)', [], diff)
        expect_eq('left in TMPDIR (the control folder is removed)', [],
                  [n for n in os.listdir(self.tmpdir) if n not in self.left])

    def stop(self):
        self.srv.stop()


def check_logins(work):
    c = Case(work, 'many', 40, 64 << 10)
    try:
        # discover opens the destination to check it before the state file
        # exists, then again to list it: the second open takes the pool the
        # first one left (sftp.c, spare_take)
        # (more sessions, on more masters, when its workers are slow)
        print('    discover: %d logins for %d sessions' % (c.logins0, c.sessions0))
        if c.logins0 > math.ceil(c.sessions0 / PER_MASTER):
            fail('discover: %d logins for %d sessions: its check and its listing '
                 'did not share a connection' % (c.logins0, c.sessions0))
        expect_rc(tmtest.run(c.copy_args(16), env=c.env), 0, 'copy --workers 16')
        logins, sessions = c.counted()
        print('    copy: %d logins for %d sessions' % (logins, sessions))
        if sessions < 2:
            fail('the copy opened %d sessions: nothing to share' % sessions)
        if logins > math.ceil(sessions / PER_MASTER):
            fail('%d logins for %d sessions: more than one per %d sessions'
                 % (logins, sessions, PER_MASTER))
        c.check_tree()
    finally:
        c.stop()


def check_max_sessions(work):
    c = Case(work, 'capped', 40, 64 << 10, max_sessions=3)
    try:
        expect_rc(tmtest.run(c.copy_args(16), env=c.env), 0,
                  'copy --workers 16 (server MaxSessions 3)')
        logins, sessions = c.counted()
        refused = c.srv.log_text().count('no more sessions')
        print('    copy: %d logins for %d sessions, %d channels refused'
              % (logins, sessions, refused))
        if sessions <= 3 or not refused:
            fail('%d sessions, %d channels refused: MaxSessions 3 not passed'
                 % (sessions, refused))
        if logins > math.ceil(sessions / 3):
            fail('%d logins for %d sessions: more than one per 3 sessions'
                 % (logins, sessions))
        c.check_tree()
    finally:
        c.stop()


def masters(tmpdir, sessions=False):
    """Pids of the ssh masters whose control socket is under tmpdir (with
    sessions: of every ssh of theirs, the sessions' too)."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if ((sessions or b'-M' in argv) and
                any(a.startswith(os.fsencode(tmpdir) + b'/') for a in argv)):
            found.append(int(pid))
    return found


def copied(c):
    """Bytes on the served side so far."""
    return sum(os.lstat(os.path.join(d, n)).st_size for d, _, ns in os.walk(c.dst)
               for n in ns)


def copy_until_master(c):
    """Starts `copy --workers 4` of case c; returns (the process, the pids
    of its masters) once a master runs and 4 MiB are copied, or (process,
    []) when it ended first (or after 300 s)."""
    p = subprocess.Popen([tmtest.TREEMIG] + c.copy_args(4),
                         env=dict(os.environ, **c.env), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while p.poll() is None and time.monotonic() < deadline:
        pids = masters(c.tmpdir)
        if pids and copied(c) >= 4 << 20:
            return p, pids
        time.sleep(0.005)
    return p, []


def check_master_killed(work):
    c = Case(work, 'killed', 8, 16 << 20)
    try:
        p, pids = copy_until_master(c)
        killed = None
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        if killed is None:
            fail('the copy ended before its master could be killed: %s'
                 % show(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
        expect_rc(subprocess.CompletedProcess(p.args, p.returncode, out, err), 0,
                  'copy with its master killed')
        logins, sessions = c.counted()
        print('    master %d killed; %d logins for %d sessions' % (killed, logins, sessions))
        if logins < 2:
            fail('%d logins: no new master after the kill' % logins)
        c.check_tree()
    finally:
        c.stop()


def check_treemig_killed(work):
    c = Case(work, 'orphans', 8, 16 << 20)
    try:
        p, pids = copy_until_master(c)
        if pids:
            p.kill()
        p.communicate()
        if p.returncode != -signal.SIGKILL or not pids:
            fail('the copy ended (exit %r) before it could be killed with its '
                 'masters running (%r)' % (p.returncode, pids))
        # the masters end once the kernel has signalled them (no speed
        # bound: a deadline for a process that would otherwise stay forever)
        deadline = time.monotonic() + 60
        while masters(c.tmpdir) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = masters(c.tmpdir)
        print('    treemig killed with %d master(s) running; left running: %d'
              % (len(pids), len(left)))
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        expect_eq('ssh masters left running by a treemig killed with SIGKILL', [], left)
        c.left = set(os.listdir(c.tmpdir))  # its (empty) control folder
        expect_rc(tmtest.run(c.copy_args(4), env=c.env), 0, 'copy again')
        c.check_tree()
    finally:
        c.stop()


def stress_site(name, files):
    """A server whose folder name holds that many empty files; sftptool's
    command line up to its options (8 threads on 8 sessions)."""
    sftptool = os.environ.get('SFTPTOOL')
    if not sftptool:
        fail('SFTPTOOL is not set (ctest sets it)')
    srv = sshd.Sshd(log_level='VERBOSE').start()
    srv.write_known_hosts()
    d = srv.path(name)
    os.makedirs(d)
    for i in range(files):
        open(os.path.join(d, 'f%d' % i), 'w').close()
    srv.chown(d)
    return srv, [sftptool, '--identity', srv.client_key, '--known-hosts', srv.known_hosts,
                 '--threads', '8', '--sessions', '8']


def check_threads_end(work):
    srv, tool = stress_site('threads', 20)
    try:
        cp = subprocess.run(tool + [srv.url('/'), 'stress', srv.root + '/threads/f3', '20', '3'],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=300,
                            env=dict(os.environ, TMPDIR=work))
        expect_rc(cp, 0, 'sftptool stress, 3 rounds of 8 threads')
        rounds = [json.loads(x) for x in cp.stdout.decode().splitlines()
                  if x.startswith('{')]
        connects = [r['connects'] for r in rounds]
        print('    sessions opened after each round: %r; logins %d'
              % (connects, srv.logins()))
        expect_eq('rounds', 3, len(rounds))
        if connects[0] < PER_MASTER + 1:
            fail('%d sessions in the first round: one master, nothing to lose'
                 % connects[0])
        # at most 8 sessions open at once: more connects than 8 means a
        # session broke and was replaced (a slow first round may open
        # fewer than 8; a later one then opens the rest)
        if connects[-1] > 8:
            fail('%d sessions opened for 8 at once: sessions broke between rounds'
                 % connects[-1])
    finally:
        srv.stop()


def check_idle_of_dead_master(work):
    """Sessions left idle in the pool when their master died (its
    connection cut): the next requests open new sessions instead of
    failing on those (each such failure cost a file one of its
    retries)."""
    tmpdir = os.path.join(work, 'idle.tmp')
    os.makedirs(tmpdir)
    srv, tool = stress_site('idle', 5)
    try:
        p = subprocess.Popen(tool + ['--wait-rounds', srv.url('/'), 'stress',
                                     srv.root + '/idle/f3', '5', '2'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=tmpdir))
        try:
            first = p.stdout.readline()
            if not first.startswith(b'{'):
                p.kill()
                out, err = p.communicate()
                fail('the first round failed', None, err)
            killed = masters(tmpdir)
            if len(killed) < 2:
                fail('%d masters for 8 sessions' % len(killed))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            # the sessions' ssh exit with their master: their sockets close
            deadline = time.monotonic() + 30
            while masters(tmpdir, sessions=True) and time.monotonic() < deadline:
                time.sleep(0.01)
            expect_eq('ssh processes left after the masters were killed', [],
                      masters(tmpdir, sessions=True))
            out, err = p.communicate(b'go\n', timeout=300)
        except BaseException:
            p.kill()
            raise
        expect_rc(subprocess.CompletedProcess(p.args, p.returncode, first + out, err), 0,
                  'the second round, on the pool of the dead masters (no --retries)')
        rounds = [json.loads(x) for x in (first + out).decode().splitlines()
                  if x.startswith('{')]
        expect_eq('rounds', 2, len(rounds))
        print('    masters %r killed; sessions opened: %r'
              % (killed, [r['connects'] for r in rounds]))
        if rounds[1]['connects'] <= rounds[0]['connects']:
            fail('no session was opened after the masters died')
    finally:
        srv.stop()


def main():
    if os.environ.get('TREEMIG_SFTP_TRANSPORT', 'openssh') != 'openssh':
        print('SKIP: the libssh2 transport has no ssh master')
        sys.exit(77)
    why = sshd.available() or (None if shutil.which('rsync') else 'no rsync')
    if why:
        print('SKIP: ' + why)
        sys.exit(77)
    tmtest.require_binary()
    sshd.install_signal_handlers()
    home = tempfile.mkdtemp(prefix='tm-home-')
    os.environ.pop('SSH_AUTH_SOCK', None)
    os.environ['HOME'] = home
    work = tempfile.mkdtemp(prefix='tm-sftp-mux-', dir='/tmp')
    os.chmod(work, 0o755)
    R = Runner('test_sftp_mux')
    try:
        R.check('16 workers: at most one login per %d sessions, the tree byte for byte, '
                'no control folder left' % PER_MASTER, check_logins, work)
        R.check('MaxSessions 3: refused channels go to a new master, the copy completes',
                check_max_sessions, work)
        R.check('the master killed mid-copy: a new one, the copy completes byte for byte',
                check_master_killed, work)
        R.check('treemig killed mid-copy: its masters end with it; the copy again '
                'completes byte for byte', check_treemig_killed, work)
        R.check('masters outlive the threads that started them: pooled sessions '
                'serve new threads', check_threads_end, work)
        R.check('idle sessions of a master that died are replaced, not used '
                '(no request fails on them)', check_idle_of_dead_master, work)
    finally:
        shutil.rmtree(work, True)
        shutil.rmtree(home, True)
    R.finish()


if __name__ == '__main__':
    main()
