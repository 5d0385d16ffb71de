#!/usr/bin/env python3
"""End-to-end migrations with an SFTP side, through the treemig CLI, against
OpenSSH's sshd on 127.0.0.1 (tests/servers/sshd.py: unprivileged, a free
port, a key pair made per run). The served folder is on local disk, so
every result is checked byte for byte, mode and mtime (to the second, what
SFTP version 3 keeps), and with rsync's itemized comparison
(`rsync -rlptDn --itemize-changes --checksum`) between the source and the
destination where both are local paths underneath.

1. local -> SFTP: a tree with files of several sizes and modes, symlinks,
   empty and nested folders, names with spaces, UTF-8, bytes that are not
   UTF-8 and a newline, exclusions (a glob and a folder), a FIFO, and a
   destination with an identical file, files that differ, and
   destination-only nodes: discover, review, copy, verify --checksum.
2. SFTP -> local: the served tree back to a local folder.
3. SFTP -> SFTP, and roots on one server that overlap (refused).
4. hostile names: every byte but NUL and '/' in a name, 255-byte names,
   names like escapes and temporaries: local -> SFTP -> local, byte for
   byte.
5. temporaries and destination-only names (issue 18 for SFTP): nodes that
   look like temporaries on both sides, hard links and symlinks to a file
   outside both trees, a FIFO, a folder; and a copy killed with -9, after
   which things are put at the names of its temporaries: the next copy
   removes only the run's own kind of leftover, never follows, opens or
   renames over anything, and leaves nothing of its own.

Exit 77 (skipped) when sshd or ssh-keygen is missing.
"""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
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
from tmtest import Runner, Skip, expect_eq, expect_rc, fail, show  # noqa: E402

SEC = 1_000_000_000
T0 = 1_600_000_000 * SEC + 123_456_789
SFTPTOOL = os.environ.get('SFTPTOOL', os.path.join(HERE, '..', '..', 'build', 'tests',
                                                   'sftptool'))
TMP_PREFIX = b'.treemig.'


# ---- the server and the command line ----

class Site:
    """One sshd and the options that log in to it."""

    def __init__(self, **kw):
        self.srv = sshd.Sshd(**kw)

    def start(self):
        self.srv.start()
        self.srv.write_known_hosts()
        return self

    def stop(self):
        self.srv.stop()

    def opts(self):
        return ['--ssh-identity', self.srv.client_key,
                '--ssh-known-hosts', self.srv.known_hosts]

    def url(self, rel=''):
        return self.srv.url(rel)

    def path(self, rel=''):
        return self.srv.path(rel)

    def mkdir(self, rel):
        p = self.path(rel)
        os.makedirs(p, exist_ok=True)
        self.srv.chown(p)
        return p


# TREEMIG_SFTP_TRANSPORT=openssh (ctest's *.openssh case): every session
# runs OpenSSH's ssh, which knows other ciphers than libssh2.
OPENSSH = os.environ.get('TREEMIG_SFTP_TRANSPORT') == 'openssh'


def tm(args, rc=None, what=None, env=None, timeout=None):
    cp = tmtest.run(args, env=env, timeout=timeout)
    if rc is not None:
        expect_rc(cp, rc, what or ' '.join(str(a) for a in args[:1]))
    return cp


def clean_env():
    """No agent, no passphrase, a HOME with no ~/.ssh: the tests say
    everything on the command line."""
    home = tempfile.mkdtemp(prefix='tm-home-')
    os.environ.pop('SSH_AUTH_SOCK', None)
    os.environ.pop('TREEMIG_SSH_PASSPHRASE', None)
    os.environ['HOME'] = home
    return home


# ---- trees ----

def write(path, data=b'', mtime=None, mode=None):
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


def symlink(path, target, mtime):
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def set_dir_times(root, t):
    """Folder mtimes, deepest first (a child's creation changes them)."""
    root = os.fsencode(root)
    dirs = [d for d, _, _ in os.walk(root)]
    for i, d in enumerate(sorted(dirs, key=lambda x: -x.count(b'/'))):
        os.utime(d, ns=(t + i * SEC + 7, t + i * SEC + 7))


def snapshot(root, skip=()):
    """{relative path (bytes): (type, mode, size, mtime in s, content digest or
    link target)} of every node below root (root itself left out); paths
    in skip and below them are left out."""
    root = os.fsencode(root)
    out = {}

    def walk(d, rel):
        with os.scandir(d) as it:
            for e in it:
                r = rel + b'/' + e.name if rel else e.name
                if any(r == s or r.startswith(s + b'/') for s in skip):
                    continue
                st = os.lstat(e.path)
                sec = st.st_mtime_ns // SEC
                if stat.S_ISLNK(st.st_mode):
                    out[r] = ('symlink', None, st.st_size, sec, os.readlink(e.path))
                elif stat.S_ISDIR(st.st_mode):
                    out[r] = ('folder', stat.S_IMODE(st.st_mode), 0, sec, None)
                    walk(e.path, r)
                elif stat.S_ISREG(st.st_mode):
                    h = hashlib.sha256()
                    with open(e.path, 'rb') as f:
                        for b in iter(lambda: f.read(1 << 20), b''):
                            h.update(b)
                    out[r] = ('file', stat.S_IMODE(st.st_mode), st.st_size, sec,
                              h.hexdigest())
                else:
                    out[r] = ('other', stat.S_IMODE(st.st_mode), 0, sec, None)
    walk(root, b'')
    return out


def compare(want, got, what, ignore_mode=()):
    errs = []
    for p in sorted(set(want) | set(got)):
        a, b = want.get(p), got.get(p)
        if a is None:
            errs.append('%r: on the destination only: %r' % (p, b))
        elif b is None:
            errs.append('%r: missing on the destination (source %r)' % (p, a))
        elif a != b:
            if p in ignore_mode and a[:1] + a[2:] == b[:1] + b[2:]:
                continue
            errs.append('%r: source %r, destination %r' % (p, a, b))
    if errs:
        fail('%s: %d differences:\n    %s' % (what, len(errs), '\n    '.join(errs[:25])))


def rsync_diff(src, dst, excludes=()):
    """rsync's itemized list of what differs (checksums, modes, times,
    links), apart from the roots themselves; [] when the trees are equal."""
    if not shutil.which('rsync'):
        raise Skip('rsync is not installed')
    cmd = ['rsync', '-rlptDn', '--itemize-changes', '--checksum']
    for e in excludes:
        cmd += ['--exclude', e]
    cp = subprocess.run(cmd + [os.fsencode(src) + b'/', os.fsencode(dst) + b'/'],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if cp.returncode != 0:
        fail('rsync failed: %r' % cp.stderr[-500:])
    return [ln for ln in cp.stdout.split(b'\n') if ln and not ln.endswith(b' ./')]


def tmps_under(root):
    found = []
    for d, dirs, files in os.walk(os.fsencode(root)):
        for n in dirs + files:
            if n.startswith(TMP_PREFIX) and n.endswith(b'.tmp'):
                found.append(os.path.join(d, n))
    return found


def counts(db):
    return tmtest.status_json(db)


# ---- 1. local -> SFTP ----

def build_source(src):
    """The main source tree; returns (excluded paths, special paths)."""
    t = T0
    write(os.path.join(src, 'empty.txt'), b'', t + 1)
    write(os.path.join(src, 'one'), b'1', t + 2, 0o600)
    write(os.path.join(src, 'page.bin'), os.urandom(4096), t + 3, 0o640)
    write(os.path.join(src, 'big.bin'), os.urandom(3 * 1024 * 1024 + 17), t + 4)
    write(os.path.join(src, 'run.sh'), b'#!/bin/sh\necho hi\n', t + 5, 0o755)
    write(os.path.join(src, 'same.txt'), b'identical on both sides\n', t + 6)
    write(os.path.join(src, 'diff.txt'), b'the source version\n', t + 7)
    write(os.path.join(src, 'newer.txt'), b'same size!', t + 8)
    for i in range(4):
        write(os.path.join(src, 'deep', 'l1', 'l2', 'l3', 'f%d' % i),
              os.urandom(100 * i + 1), t + 10 + i, 0o644 if i % 2 else 0o600)
    os.makedirs(os.path.join(src, 'empty_dir'))
    os.makedirs(os.path.join(src, 'locked_mode'))
    write(os.path.join(src, 'with space', 'a file.txt'), b'spaces', t + 20)
    write(os.path.join(src, 'caf\u00e9', '\u00fcml\u00e4ut'), b'utf-8', t + 21)
    write(os.path.join(os.fsencode(src), b'bad\xff\xfe', b'x\x80y'), b'not utf-8', t + 22)
    write(os.path.join(os.fsencode(src), b'new\nline'), b'newline', t + 23)
    symlink(os.path.join(src, 'links', 'to_file'), '../same.txt', t + 30)
    symlink(os.path.join(src, 'links', 'dangling'), 'does/not/exist', t + 31)
    symlink(os.path.join(src, 'links', 'to_dir'), '../deep', t + 32)
    # excluded: a glob and a folder
    write(os.path.join(src, 'scratch.tmp'), b'excluded by *.tmp', t + 40)
    write(os.path.join(src, 'deep', 'l1', 'x.tmp'), b'excluded too', t + 41)
    write(os.path.join(src, 'cache', 'c1'), b'excluded folder', t + 42)
    write(os.path.join(src, 'cache', 'sub', 'c2'), b'excluded folder', t + 43)
    os.mkfifo(os.path.join(src, 'fifo'))
    os.chmod(os.path.join(src, 'deep', 'l1'), 0o750)
    set_dir_times(src, t + 100 * SEC)
    os.chmod(os.path.join(src, 'locked_mode'), 0o500)
    return [b'scratch.tmp', b'deep/l1/x.tmp', b'cache'], [b'fifo']


def build_destination(site, dst_rel, src):
    dst = site.mkdir(dst_rel)
    shutil.copy2(os.path.join(src, 'same.txt'), os.path.join(dst, 'same.txt'))
    write(os.path.join(dst, 'diff.txt'), b'the destination version, longer\n', T0)
    write(os.path.join(dst, 'newer.txt'), b'SAME SIZE!', T0 + 3600 * SEC)
    write(os.path.join(dst, 'dst_only.txt'), b'destination only', T0)
    write(os.path.join(dst, 'dst_only_dir', 'x'), b'destination only', T0)
    site.srv.chown(dst)
    return dst


def check_local_to_sftp(site, work, state):
    src = os.path.join(work, 'src')
    excluded, special = build_source(src)
    dst = build_destination(site, 'dst', src)
    dst_only = {p: os.lstat(os.path.join(dst, p.decode())).st_ino
                for p in (b'dst_only.txt', b'dst_only_dir/x')}
    db = os.path.join(work, 'l2s.db')
    tm(['discover', '--db', db, '--quiet', '--exclude', '*.tmp', '--exclude', '/cache'] +
       site.opts() + [src, site.url('/dst')], 0, 'discover local -> sftp')
    expect_eq('recorded destination root', site.url('/dst'), tmtest.migration(db)['dst'])
    # review: what is missing, differs, only on the destination, excluded
    cp = tm(['review', '--db', db, '--list', 'all'], 0, 'review --list all')
    listing = {}
    for ln in cp.stdout.split(b'\n'):
        if ln:
            f = ln.split(b'\t')
            listing[f[3]] = f[0].decode()
    want = {b'/diff.txt': 'conflict', b'/newer.txt': 'conflict', b'/dst_only.txt': 'extra',
            b'/dst_only_dir': 'extra', b'/cache': 'excluded', b'/scratch.tmp': 'excluded',
            b'/fifo': 'skipped', b'/big.bin': 'missing',
            b'/bad\\xff\\xfe': 'missing', b'/new\\nline': 'missing'}  # escaped
    got = {p: listing.get(p) for p in want}
    expect_eq('review --list all (kind of some paths)', want, got)
    if b'/same.txt' in listing:
        fail('an identical file (same size, same second) is listed: %r'
             % listing[b'/same.txt'])
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy local -> sftp')
    tm(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify --checksum')
    skip = excluded + special
    want = snapshot(src, skip)
    got = snapshot(dst, [b'dst_only.txt', b'dst_only_dir'])
    compare(want, got, 'the served destination against the source')
    for p, ino in dst_only.items():
        expect_eq('destination-only %r untouched' % p, ino,
                  os.lstat(os.path.join(dst, p.decode())).st_ino)
    diff = rsync_diff(src, dst, ['*.tmp', '/cache', '/fifo', '/dst_only*'])
    expect_eq("rsync -rlptDn --itemize-changes --checksum (source -> served)", [], diff)
    expect_eq('temporaries left', [], tmps_under(dst))
    st = counts(db)
    expect_eq('phase', 'verified', st['phase'])
    expect_eq('copy failed', 0, st['copy']['failed'])
    state['src'], state['dst'] = src, dst
    state['skip'] = skip


# ---- 2. SFTP -> local ----

def check_sftp_to_local(site, work, state):
    if 'dst' not in state:
        raise Skip('needs the served tree of the local -> SFTP check')
    back = os.path.join(work, 'back')
    os.makedirs(back)
    db = os.path.join(work, 's2l.db')
    tm(['discover', '--db', db, '--quiet'] + site.opts() + [site.url('/dst'), back], 0,
       'discover sftp -> local')
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy sftp -> local')
    tm(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify --checksum')
    compare(snapshot(state['dst']), snapshot(back), 'the local copy against the served tree')
    expect_eq('rsync (served -> local copy)', [], rsync_diff(state['dst'], back))
    # and against the very first source (the destination-only nodes aside)
    compare(snapshot(state['src'], state['skip']),
            snapshot(back, [b'dst_only.txt', b'dst_only_dir']),
            'the round trip local -> SFTP -> local')


def check_algorithms(site, work, state):
    """sftp-ciphers and sftp-macs: a list libssh2 knows none of is exit 2
    before anything is written; another order is recorded with the
    migration and used by the copy."""
    if 'dst' not in state:
        raise Skip('needs the served tree of the local -> SFTP check')
    back = os.path.join(work, 'algs')
    db = os.path.join(work, 'algs.db')
    cp = tm(['discover', '--db', db, '--quiet', '-o',
             'sftp-ciphers=' + ('no-such-cipher' if OPENSSH
                                else 'chacha20-poly1305@openssh.com')] + site.opts() +
            [site.url('/dst'), back], 2, 'discover with a cipher the client lacks')
    if (b'Bad SSH2 cipher' if OPENSSH else b'knows none of the ciphers') not in cp.stderr:
        fail('the message says why', None, cp.stderr)
    expect_eq('nothing written (state file, destination)', (False, False),
              (os.path.exists(db), os.path.exists(back)))
    tm(['discover', '--db', db, '--quiet', '-o', 'sftp-ciphers=aes256-ctr,aes128-ctr',
        '-o', 'sftp-macs=hmac-sha1,hmac-sha2-256'] + site.opts() + [site.url('/dst'), back],
       0, 'discover with sftp-ciphers, sftp-macs')
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy with the recorded lists')
    compare(snapshot(state['dst']), snapshot(back), 'the copy made with aes256-ctr, hmac-sha1')


def check_transport(site, work, state):
    """sftp-transport: a wrong value is exit 2 before anything is written;
    openssh (whatever TREEMIG_SFTP_TRANSPORT says) is recorded with the
    migration and the copy runs over it; no secret reaches ssh's command
    line (the password variable's name only, through the askpass)."""
    if 'dst' not in state:
        raise Skip('needs the served tree of the local -> SFTP check')
    back = os.path.join(work, 'transport')
    db = os.path.join(work, 'transport.db')
    cp = tm(['discover', '--db', db, '--quiet', '-o', 'sftp-transport=putty'] +
            site.opts() + [site.url('/dst'), back], 2, 'discover with a bad transport')
    if b'sftp-transport' not in cp.stderr:
        fail('the message names the option', None, cp.stderr)
    expect_eq('nothing written (state file, destination)', (False, False),
              (os.path.exists(db), os.path.exists(back)))
    env = dict(os.environ, TREEMIG_SFTP_TRANSPORT='libssh2')
    tm(['discover', '--db', db, '--quiet', '-o', 'sftp-transport=openssh'] + site.opts() +
       [site.url('/dst'), back], 0, 'discover with sftp-transport=openssh', env=env)
    rec = open(db + '.yaml').read()
    if 'sftp-transport' not in rec or 'openssh' not in rec:
        fail('the option is recorded in the YAML file', None, rec)
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy over the recorded transport',
       env=env)
    compare(snapshot(state['dst']), snapshot(back), 'the copy made through ssh')


# ---- 3. SFTP -> SFTP ----

def check_sftp_to_sftp(site, work, state):
    if 'dst' not in state:
        raise Skip('needs the served tree of the local -> SFTP check')
    site.mkdir('copy2')
    db = os.path.join(work, 's2s.db')
    for a, b in ((site.url('/dst'), site.url('/dst/links')),
                 (site.url('/dst/links'), site.url('/dst')),
                 (site.url('/dst'), site.url('/./dst//'))):
        cp = tm(['discover', '--db', db + '.refused', '--quiet'] + site.opts() + [a, b], 2,
                'overlapping roots on one server')
        if b'same server' not in cp.stderr:
            fail('the refusal should say why: ' + show(cp))
        if os.path.exists(db + '.refused'):
            fail('a state file was made for refused roots')
    tm(['discover', '--db', db, '--quiet'] + site.opts() +
       [site.url('/dst'), site.url('/copy2')], 0, 'discover sftp -> sftp')
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy sftp -> sftp')
    tm(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify --checksum')
    compare(snapshot(state['dst']), snapshot(site.path('copy2')),
            'the second served folder against the first')
    expect_eq('rsync (served -> served)', [], rsync_diff(state['dst'], site.path('copy2')))


# ---- 4. hostile names ----

def hostile_names():
    names = [bytes([b]) for b in range(1, 256) if b not in (0x2f, 0x2e)]
    names += [b'..x', b'.x.', b'...', b'-rf', b'--help', b'a%20b', b'x%', b'%00',
              b'sftp:', b'a@b:c', b'[::1]', b'*?[]', b'\\', b'\r\n', b'\xc3\x28',
              b'\xf0\x9f\x98\x80 emoji', b'\xed\xa0\x80surrogate', b'L' * 255,
              b'\xe9' * 255, b'.treemig.0123456789abcdef.tmp',
              b'.treemig.0123456789abcdef0123456789abcdef.tmp']
    return names


def check_hostile_names(site, work, state):
    src = os.path.join(os.fsencode(work), b'hsrc')
    for i, n in enumerate(hostile_names()):
        d = os.path.join(src, b'd%d' % (i % 7))
        if i % 3 == 0:
            os.makedirs(os.path.join(d, n, n[:50] or b'x'), exist_ok=True)
            write(os.path.join(d, n, n[:50] or b'x', n), n, T0 + i * SEC)
        elif i % 3 == 1:
            write(os.path.join(d, n), n * 3, T0 + i * SEC, 0o600 + (i % 8))
        else:
            os.makedirs(d, exist_ok=True)
            symlink(os.path.join(d, n), n, T0 + i * SEC)
    set_dir_times(src, T0)
    site.mkdir('hostile')
    db = os.path.join(work, 'h1.db')
    tm(['discover', '--db', db, '--quiet'] + site.opts() + [src, site.url('/hostile')], 0,
       'discover hostile names')
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy hostile names')
    tm(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify hostile names')
    want = snapshot(src)
    compare(want, snapshot(site.path('hostile')), 'hostile names on the server')
    back = os.path.join(os.fsencode(work), b'hback')
    os.makedirs(back)
    db = os.path.join(work, 'h2.db')
    tm(['discover', '--db', db, '--quiet'] + site.opts() + [site.url('/hostile'), back], 0,
       'discover hostile names back')
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy hostile names back')
    tm(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify hostile names back')
    compare(want, snapshot(back), 'hostile names, local -> SFTP -> local')
    expect_eq('rsync (source -> round trip)', [], rsync_diff(src, back))


# ---- 5. temporaries and destination-only names ----

def tmp_names(key, path):
    cp = subprocess.run([SFTPTOOL, '--tmp-names', key, path], stdout=subprocess.PIPE,
                        check=True)
    return cp.stdout.decode().split()


def node(p):
    st = os.lstat(p)
    data = None
    if stat.S_ISREG(st.st_mode):
        with open(p, 'rb') as f:
            data = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        data = os.readlink(p)
    return (stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns,
            stat.S_IMODE(st.st_mode), data)


def check_temporaries(site, work, state):
    top = os.path.join(work, 'tmps')
    src = os.path.join(top, 'src')
    outside = os.path.join(top, 'outside')
    victim = write(os.path.join(outside, 'victim'), b'outside both trees\n', T0, 0o666)
    # source: files, a big one (for the kill), names like temporaries
    for n in ('a', 'b', 'c'):
        write(os.path.join(src, 's1', n), n.encode() * 5000, T0 + SEC)
    look = ['.treemig.%032x.tmp' % (0xabc + i) for i in range(2)] + \
           ['.treemig.%016x.tmp' % 0xdef]
    for n in look:
        write(os.path.join(src, 's1', n), b'an ordinary source file', T0 + 2 * SEC)
    write(os.path.join(src, 's2', 'big.bin'), os.urandom(64 << 20), T0 + 3 * SEC)
    for i in range(40):
        write(os.path.join(src, 's2', 'f%02d' % i), os.urandom(1 << 16), T0 + 4 * SEC)
    set_dir_times(src, T0)
    # destination: destination-only nodes at temporary-like names
    dst = site.mkdir('tdst')
    d1 = os.path.join(dst, 's1')
    kinds = {}
    for i, kind in enumerate(['file', 'hardlink', 'symlink', 'folder', 'fifo']):
        n = '.treemig.%032x.tmp' % (0xfeed0 + i)
        p = os.path.join(d1, n)
        os.makedirs(d1, exist_ok=True)
        if kind == 'file':
            write(p, b'destination only', T0)
        elif kind == 'hardlink':
            os.link(victim, p)
        elif kind == 'symlink':
            os.symlink(victim, p)
        elif kind == 'folder':
            write(os.path.join(p, 'inside'), b'inside', T0)
        else:
            os.mkfifo(p)
        kinds[p] = kind
    site.srv.chown(dst)
    os.chmod(victim, 0o666)
    before = {p: node(p) for p in kinds}
    out_before = node(victim)
    db = os.path.join(top, 'state.db')
    tm(['discover', '--db', db, '--quiet'] + site.opts() + [src, site.url('/tdst')], 0,
       'discover')
    # a copy killed while it writes the big file
    p = subprocess.Popen([tmtest.TREEMIG, 'copy', '--db', db, '--yes', '--quiet',
                          '--workers', '2'], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    seen = []
    try:
        while p.poll() is None and not seen:
            seen = [t for t in tmps_under(os.path.join(dst, 's2'))]
            time.sleep(0.002)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    if not seen:
        raise Skip('the copy ended before a temporary was seen')
    conn = sqlite3.connect(db)
    try:
        key, = conn.execute('SELECT key FROM copy_runs WHERE ended IS NULL').fetchone()
        pending = [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in conn.execute(
            "SELECT path FROM src_nodes WHERE copy_status = 'pending' AND type = 'file' "
            "AND path LIKE '/s2/%' ORDER BY path")]
    finally:
        conn.close()
    if '/s2/big.bin' not in pending:
        raise Skip('the big file was copied before the kill')
    names = tmp_names(key, '/s2/big.bin')
    leftover = os.path.join(dst, 's2', names[0])
    if not os.path.exists(leftover):
        fail('the killed run left no temporary at its first name %s (seen %r)'
             % (names[0], seen))
    expect_eq('nothing at the real name after kill -9', False,
              os.path.lexists(os.path.join(dst, 's2', 'big.bin')))
    # at the killed run's other names of a pending node: a symlink to the
    # file outside, a FIFO, a folder; at a name of another pending file, a
    # hard link to it: none of them is the run's own kind of leftover
    planted = {}
    if len(pending) > 1:
        other = [x for x in pending if x != '/s2/big.bin'][0]
        hl = os.path.join(dst, other.lstrip('/').rsplit('/', 1)[0],
                          tmp_names(key, other)[1])
        if not os.path.exists(hl):
            os.link(victim, hl)
            planted[hl] = 'hardlink'
    for n, kind in zip(names[1:], ('symlink', 'fifo', 'folder')):
        q = os.path.join(dst, 's2', n)
        if os.path.lexists(q):
            continue
        if kind == 'symlink':
            os.symlink(victim, q)
        elif kind == 'fifo':
            os.mkfifo(q)
        else:
            write(os.path.join(q, 'inside'), b'inside', T0)
        planted[q] = kind
    site.srv.chown(os.path.join(dst, 's2'))
    os.chmod(victim, 0o666)
    planted_before = {q: node(q) for q in planted}
    tm(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy after the kill')
    tm(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify --checksum')
    errs = []
    for q, n in list(before.items()) + list(planted_before.items()):
        now = node(q) if os.path.lexists(q) else None
        kind = kinds.get(q) or planted.get(q)
        if kind == 'hardlink' and q in planted:
            # a regular file at a name of the killed run: removed as its
            # leftover (by name: the file outside keeps its bytes)
            if now is not None:
                errs.append('%s (%s) at a name of the killed run was not removed'
                            % (q, kind))
            continue
        if now != n:
            errs.append('%s (%s) changed: %r -> %r' % (q, kind, n, now))
    if os.path.exists(leftover):
        errs.append('the killed run\'s temporary %s is still there' % leftover)
    out_now = node(victim)
    if out_now[:1] + out_now[2:] != out_before[:1] + out_before[2:]:
        errs.append('the file outside both trees changed: %r -> %r' % (out_before, out_now))
    for q in planted:
        if planted[q] == 'folder':
            if os.listdir(q) != ['inside']:
                errs.append('the folder planted at %s changed' % q)
    want = snapshot(src)
    got = snapshot(dst, [os.fsencode(os.path.relpath(q, dst)) for q in
                         list(kinds) + list(planted)])
    compare(want, got, 'the destination against the source')
    left = set(tmps_under(dst)) - {os.fsencode(q) for q in kinds} - \
        {os.fsencode(q) for q in planted} - \
        {os.fsencode(os.path.join(q, 'inside')) for q in list(kinds) + list(planted)}
    left -= {os.path.join(os.fsencode(dst), b's1', n.encode()) for n in look}
    if left:
        errs.append('temporaries left: %r' % sorted(left))
    if errs:
        fail('\n    '.join(errs))


# TREEMIG_SFTP_ONLY=WORDS[,WORDS] runs the checks whose label contains one.
ONLY = os.environ.get('TREEMIG_SFTP_ONLY')


def main():
    why = sshd.available()
    if why:
        print('SKIP: ' + why)
        sys.exit(77)
    tmtest.require_binary()
    sshd.install_signal_handlers()
    home = clean_env()
    work = tempfile.mkdtemp(prefix='tm-sftp-mig-', dir='/tmp')
    os.chmod(work, 0o755)
    R = Runner('test_sftp_migrate')
    site = Site()
    state = {}
    try:
        site.start()
        for label, fn in [
                ('local -> SFTP: discover, review, copy, verify --checksum; byte for '
                 'byte, modes, mtimes, symlinks, exclusions, rsync', check_local_to_sftp),
                ('SFTP -> local: the served tree back, equal to it and to the source',
                 check_sftp_to_local),
                ('sftp-ciphers, sftp-macs: refused before anything is written, '
                 'or recorded and used', check_algorithms),
                ('sftp-transport: refused when wrong, else recorded and used',
                 check_transport),
                ('SFTP -> SFTP, and overlapping roots on one server refused',
                 check_sftp_to_sftp),
                ('hostile names (every byte, 255-byte names) local -> SFTP -> local',
                 check_hostile_names),
                ('temporaries: destination-only look-alikes, links and FIFOs untouched; '
                 'a killed run\'s leftovers removed, nothing else', check_temporaries)]:
            if ONLY and not any(w in label for w in ONLY.split(',')):
                continue
            R.check(label, fn, site, work, state)
    finally:
        site.stop()
        for d, _, _ in os.walk(work):
            try:
                os.chmod(d, 0o755)
            except OSError:
                pass
        shutil.rmtree(work, True)
        shutil.rmtree(home, True)
    R.finish()


if __name__ == '__main__':
    main()
