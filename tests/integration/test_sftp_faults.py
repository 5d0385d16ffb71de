#!/usr/bin/env python3
"""Faults of an SFTP storage, through the treemig CLI, against OpenSSH's
sshd on 127.0.0.1 (tests/servers/sshd.py):

- host keys: an unknown host (exit 2, its fingerprint shown, nothing
  written: no state file, known_hosts untouched), --ssh-accept-new
  (recorded as OpenSSH writes it, and the migration goes on), a changed key
  (exit 2, refused loudly, also with --ssh-accept-new);
- logins: a rejected key (exit 2, the key named);
- a refused port, an unknown name and an unreachable address (exit 2, a
  clear message, nothing written);
- a connection cut in the middle of the copy, through a proxy that resets
  it (the copy reconnects and completes; nothing partial under a real
  name; no temporary left);
- a full server (a 2 MiB tmpfs mounted under the served folder, as root):
  the copy suspends as for a full local disk (exit 1, phase suspended),
  nothing partial; with room again the copy completes;
- permission denied on a folder, on the source (discovery fails the
  folder, exit 3; retry after a chmod lists it) and on the destination
  (the copy fails its nodes, exit 3; retry after a chown copies them);
- source files on the server changed since discovery (a size, a content
  with a new mtime, an mtime): failed as changed, retry copies them;
- a server that closes each session after N requests (a wrapper between
  sshd and sftp-server counts them): the copy completes;
- the destination root replaced between discover and copy by a symlink
  to another folder, or by a file system mounted over it (as root), or
  removed: the copy is refused (exit 2), nothing is written;
- a root URL through a symlink, or with "/./" and a trailing "/": the
  folder it leads to gets the copy;
- secrets: a passphrase-protected key (TREEMIG_SSH_PASSPHRASE) and a
  password variable (--ssh-password-env) never appear in the state file,
  its WAL, the YAML file, the logs table or any output; `resume --config`
  works again from the same files.

Exit 77 (skipped) when sshd or ssh-keygen is missing.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'servers'))

import sshd  # noqa: E402
import tmtest  # noqa: E402
from test_sftp_migrate import (Site, T0, SEC, clean_env, compare, snapshot,  # noqa: E402
                               tm, tmps_under, write, set_dir_times)
from tmtest import Runner, Skip, expect_eq, expect_rc, fail, show  # noqa: E402

SECRETS = ['pp-Sekr1t-e2e-7f3a9', 'pw-Sekr1t-e2e-c41d2']
outputs = []


def run(args, rc=None, what=None, env=None):
    cp = tmtest.run(args, env=env)
    outputs.append(cp.stdout + cp.stderr)
    if rc is not None:
        expect_rc(cp, rc, what or args[0])
    return cp


def small_tree(src, n=6, size=3000):
    for i in range(n):
        write(os.path.join(src, 'd%d' % (i % 3), 'f%d' % i), os.urandom(size + i),
              T0 + i * SEC, 0o640 if i % 2 else 0o600)
    write(os.path.join(src, 'top.txt'), b'top', T0)
    set_dir_times(src, T0)


def nothing_written(work, db, dst):
    if os.path.exists(db):
        fail('a state file was made: %s' % db)
    if os.listdir(dst):
        fail('something was written to the destination: %r' % os.listdir(dst))


# ---- host keys, logins, connections ----

def check_unknown_host(site, work):
    src = os.path.join(work, 'hk-src')
    small_tree(src)
    dst = site.mkdir('hk')
    kh = os.path.join(work, 'kh-empty')
    open(kh, 'w').close()
    db = os.path.join(work, 'hk.db')
    opts = ['--ssh-identity', site.srv.client_key, '--ssh-known-hosts', kh]
    for args in ([src, site.url('/hk')], [site.url('/hk'), src]):
        cp = run(['discover', '--db', db, '--quiet'] + opts + args, 2, 'unknown host')
        err = cp.stderr.decode()
        fp = site.srv.host_fingerprint()
        if fp not in err or 'ED25519' not in err or 'not known' not in err:
            fail('the refusal must show the ED25519 fingerprint %s' % fp, None, err)
        if 'nothing was read or written' not in err:
            fail('the message should say nothing was written', None, err)
        nothing_written(work, db, dst)
        expect_eq('known_hosts untouched', '', open(kh).read())


def check_accept_new(site, work):
    src = os.path.join(work, 'an-src')
    small_tree(src)
    site.mkdir('an')
    kh = os.path.join(work, 'kh-new')
    db = os.path.join(work, 'an.db')
    run(['discover', '--db', db, '--quiet', '--ssh-accept-new', '--ssh-identity',
         site.srv.client_key, '--ssh-known-hosts', kh, src, site.url('/an')], 0,
        'discover --ssh-accept-new')
    lines = open(kh).read().splitlines()
    expect_eq('the key recorded, as OpenSSH writes it', [site.srv.host_key_line().strip()],
              lines)
    expect_eq('mode of the new known_hosts', 0o600, os.stat(kh).st_mode & 0o777)
    opts = tmtest.migration(db).get('storage_options', '')
    if 'ssh-accept-new' not in opts or 'ssh-known-hosts=' + kh not in opts:
        fail('the options are recorded with the migration', None, opts)
    run(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy with the recorded options')
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
    expect_eq('nothing appended by the later commands', 1, len(open(kh).read().splitlines()))


def check_changed_key(site, work):
    src = os.path.join(work, 'ck-src')
    small_tree(src)
    dst = site.mkdir('ck')
    kh = os.path.join(work, 'kh-other')
    # another ed25519 key listed for the server's name and port
    other = sshd.keygen(os.path.join(work, 'other_host_key'))
    kind, b64 = open(other + '.pub').read().split()[:2]
    with open(kh, 'w') as f:
        f.write('[127.0.0.1]:%d %s %s\n' % (site.srv.port, kind, b64))
    before = open(kh).read()
    db = os.path.join(work, 'ck.db')
    for extra in ([], ['--ssh-accept-new']):
        cp = run(['discover', '--db', db, '--quiet', '--ssh-identity', site.srv.client_key,
                  '--ssh-known-hosts', kh] + extra + [src, site.url('/ck')], 2,
                 'changed key %s' % extra)
        err = cp.stderr.decode()
        if 'HAS CHANGED' not in err or site.srv.host_fingerprint() not in err:
            fail('a changed key must be refused loudly, with the new fingerprint', None, err)
        nothing_written(work, db, dst)
        expect_eq('known_hosts untouched', before, open(kh).read())


def check_rejected_key(site, work):
    src = os.path.join(work, 'rk-src')
    small_tree(src)
    dst = site.mkdir('rk')
    key = sshd.keygen(os.path.join(work, 'stranger'))
    db = os.path.join(work, 'rk.db')
    cp = run(['discover', '--db', db, '--quiet', '--ssh-identity', key,
              '--ssh-known-hosts', site.srv.known_hosts, src, site.url('/rk')], 2,
             'rejected key')
    err = cp.stderr.decode()
    if key not in err or 'rejected' not in err:
        fail('the message should name the key and say it was rejected', None, err)
    nothing_written(work, db, dst)


def check_unreachable(site, work):
    src = os.path.join(work, 'ur-src')
    small_tree(src)
    db = os.path.join(work, 'ur.db')
    port, holder = sshd.refused_port()
    try:
        cases = [('sftp://%s@127.0.0.1:%d%s' % (site.srv.user, port, site.path('')),
                  ['refused', '127.0.0.1:%d' % port]),
                 ('sftp://nosuchhost.invalid%s' % site.path(''),
                  ['nosuchhost.invalid', 'cannot resolve']),
                 ('sftp://192.0.2.1:22%s' % site.path(''), ['192.0.2.1:22'])]
        for url, words in cases:
            for args in ([src, url], [url, src]):
                cp = run(['discover', '--db', db, '--quiet', '-o', 'sftp-timeout=2'] +
                         site.opts() + args, 2, 'unreachable %s' % url)
                err = cp.stderr.decode()
                for w in words:
                    if w not in err:
                        fail('the message should say %r' % w, None, err)
                if os.path.exists(db):
                    fail('a state file was made')
    finally:
        holder.close()


# ---- a connection cut mid-copy ----

def check_cut_mid_copy(site, work):
    src = os.path.join(work, 'cut-src')
    for i in range(6):
        write(os.path.join(src, 'big%d.bin' % i), os.urandom(3 << 20), T0 + i * SEC)
    small_tree(src, 20)
    site.mkdir('cut')
    with sshd.CutProxy(site.srv.port, cut_bytes=1 << 40, cut_conns=0) as px:
        kh = os.path.join(work, 'kh-proxy')
        with open(kh, 'w') as f:
            f.write(site.srv.host_key_line('[127.0.0.1]:%d' % px.port))
        url = site.url('/cut').replace(':%d/' % site.srv.port, ':%d/' % px.port)
        db = os.path.join(work, 'cut.db')
        opts = ['--ssh-identity', site.srv.client_key, '--ssh-known-hosts', kh]
        run(['discover', '--db', db, '--quiet'] + opts + [src, url], 0, 'discover')
        # the next three connections are reset after 2 MiB each way
        px.cut_next(3, 2 << 20)
        run(['copy', '--db', db, '--yes', '--quiet', '--workers', '2'], 0,
            'copy through cut connections')
        if px.cuts < 1:
            fail('no connection was cut (the proxy saw %d)' % px.conns)
        run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify --checksum')
    compare(snapshot(src), snapshot(site.path('cut')), 'after the cuts')
    expect_eq('temporaries left by the cut sessions', [], tmps_under(site.path('cut')))
    st = tmtest.status_json(db)
    expect_eq('failed', 0, st['copy']['failed'])
    print('     %d connections, %d cut' % (px.conns, px.cuts))


# ---- a full server ----

def check_full(site, work):
    if os.geteuid() != 0:
        raise Skip('mounting a small tmpfs needs root')
    src = os.path.join(work, 'full-src')
    for i in range(3):
        write(os.path.join(src, 'big%d.bin' % i), os.urandom(1536 << 10), T0 + i * SEC)
    small_tree(src)
    d = site.mkdir('full')
    cp = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m,mode=0755,uid=%d,gid=%d'
                         % (site.srv.uid, site.srv.gid), 'tmpfs', d], stderr=subprocess.PIPE)
    if cp.returncode != 0:
        raise Skip('cannot mount a tmpfs here: ' + cp.stderr.decode().strip())
    try:
        db = os.path.join(work, 'full.db')
        run(['discover', '--db', db, '--quiet'] + site.opts() + [src, site.url('/full')], 0,
            'discover')
        cp = run(['copy', '--db', db, '--yes', '--quiet', '--workers', '2'], 1,
                 'copy to a full server')
        err = cp.stderr.decode()
        if 'full' not in err and 'no space' not in err:
            fail('the message should say the destination is full', None, err)
        expect_eq('phase', 'suspended', tmtest.status_json(db)['phase'])
        got = snapshot(d)
        want = snapshot(src)
        for p, n in got.items():
            if n[0] == 'file' and want.get(p) != n:
                fail('a partial file under a real name: %r %r' % (p, n))
        expect_eq('temporaries left on the full server', [], tmps_under(d))
        subprocess.run(['mount', '-o', 'remount,size=16m', d], check=True)
        run(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy with room again')
        run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
        compare(want, snapshot(d), 'after the full server got room')
    finally:
        subprocess.run(['umount', '-l', d])


# ---- permission denied ----

def check_denied_source(site, work):
    sd = site.mkdir('psrc')
    small_tree(sd)
    write(os.path.join(sd, 'locked', 'a'), b'in a locked folder', T0)
    write(os.path.join(sd, 'locked', 'sub', 'b'), b'deeper', T0)
    site.srv.chown(sd)
    os.chmod(os.path.join(sd, 'locked'), 0)
    dst = os.path.join(work, 'pdst')
    os.makedirs(dst)
    db = os.path.join(work, 'psrc.db')
    try:
        run(['discover', '--db', db, '--quiet'] + site.opts() + [site.url('/psrc'), dst], 3,
            'discover with a folder of mode 000')
        cp = run(['review', '--db', db, '--list', 'failed'], 0, 'review --list failed')
        line = [ln for ln in cp.stdout.decode().splitlines() if '\t/locked\t' in ln]
        if not line or 'permission denied' not in line[0]:
            fail('review --list failed should name /locked and why', None, cp.stdout)
    finally:
        os.chmod(os.path.join(sd, 'locked'), 0o755)
    run(['retry', '--db', db, '--quiet'], 0, 'retry after the chmod')
    run(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy')
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
    compare(snapshot(sd), snapshot(dst), 'after the retry')


def check_denied_destination(site, work):
    if os.geteuid() != 0:
        raise Skip('a destination folder of another owner needs root')
    src = os.path.join(work, 'pd-src')
    small_tree(src)
    write(os.path.join(src, 'theirs', 'x'), b'x' * 100, T0)
    write(os.path.join(src, 'theirs', 'y'), b'y' * 100, T0)
    set_dir_times(src, T0)
    dst = site.mkdir('pd')
    os.makedirs(os.path.join(dst, 'theirs'))   # root's: the server may not write
    os.utime(os.path.join(dst, 'theirs'), (T0 // SEC, T0 // SEC))
    db = os.path.join(work, 'pd.db')
    run(['discover', '--db', db, '--quiet'] + site.opts() + [src, site.url('/pd')], 0,
        'discover')
    run(['copy', '--db', db, '--yes', '--quiet'], 3, 'copy into a folder it may not write')
    cp = run(['review', '--db', db, '--list', 'failed'], 0, 'review --list failed')
    failed = [ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()]
    for p in ('/theirs/x', '/theirs/y'):
        if p not in failed:
            fail('%s should be a failed copy' % p, None, cp.stdout)
    site.srv.chown(os.path.join(dst, 'theirs'))
    run(['retry', '--db', db, '--quiet'], 0, 'retry after the chown')
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
    compare(snapshot(src), snapshot(dst), 'after the retry')


# ---- the root replaced between discover and copy ----

def check_root_replaced(site, work):
    src = os.path.join(work, 'rr-src')
    small_tree(src)
    root = site.mkdir('rr')
    db = os.path.join(work, 'rr.db')
    run(['discover', '--db', db, '--quiet'] + site.opts() + [src, site.url('/rr')], 0,
        'discover')
    # a symlink put at the root's path, to another folder of the server
    os.rename(root, root + '-old')
    elsewhere = site.mkdir('elsewhere')
    os.symlink(elsewhere, root)
    cp = run(['copy', '--db', db, '--yes', '--quiet'], 2, 'copy into a replaced root')
    if b'not the folder discovery recorded' not in cp.stderr:
        fail('the refusal should say the root was replaced', None, cp.stderr)
    expect_eq('nothing written where the symlink leads', [], os.listdir(elsewhere))
    os.unlink(root)
    os.rename(root + '-old', root)
    # another file system mounted at the root's path
    if os.geteuid() == 0:
        cp = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0755,uid=%d,gid=%d'
                             % (site.srv.uid, site.srv.gid), 'tmpfs', root],
                            stderr=subprocess.PIPE)
        if cp.returncode == 0:
            try:
                cp = run(['copy', '--db', db, '--yes', '--quiet'], 2,
                         'copy into a volume mounted over the root')
                if b'not the folder discovery recorded' not in cp.stderr:
                    fail('the refusal should say the root was replaced', None, cp.stderr)
                expect_eq('nothing written on the mounted volume', [], os.listdir(root))
            finally:
                subprocess.run(['umount', '-l', root])
    # the root removed: refused at the start, nothing made
    os.rename(root, root + '-away')
    cp = run(['copy', '--db', db, '--yes', '--quiet'], 2, 'copy into a removed root')
    if b'does not exist' not in cp.stderr:
        fail('the refusal should say the root does not exist', None, cp.stderr)
    expect_eq('the root was not made again', False, os.path.lexists(root))
    os.rename(root + '-away', root)
    run(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy into the root put back')
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
    compare(snapshot(src), snapshot(root), 'the copy')


# ---- a root reached through a symlink ----

def check_root_through_symlink(site, work):
    """A URL whose path is not the server's canonical one (a symlink on the
    way; "/./" and a trailing "/"): the root is the folder it leads to (its
    attributes and file system asked again at the canonical path, not taken
    from the one round trip that asks them at the given path), and the
    copy lands there, then verifies."""
    src = os.path.join(work, 'rl-src')
    small_tree(src)
    real = site.mkdir('rl-real')
    os.symlink(real, site.path('rl-link'))
    for i, rel in enumerate(['/rl-link', '/./rl-real/']):
        shutil.rmtree(real)
        site.mkdir('rl-real')
        db = os.path.join(work, 'rl%d.db' % i)
        run(['discover', '--db', db, '--quiet'] + site.opts() + [src, site.url(rel)], 0,
            'discover into %s' % rel)
        run(['copy', '--db', db, '--yes', '--quiet'], 0, 'copy into %s' % rel)
        run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify of %s' % rel)
        compare(snapshot(src), snapshot(real), 'the copy into %s' % rel)
        expect_eq('the symlink is left as it was (%s)' % rel, real,
                  os.readlink(site.path('rl-link')))
    os.unlink(site.path('rl-link'))


# ---- a source file on the server changed since discovery ----

def check_source_changed(site, work):
    sd = site.mkdir('chg')
    small_tree(sd, 6)
    write(os.path.join(sd, 'grows.bin'), b'a' * 5000, T0)
    write(os.path.join(sd, 'same_size.bin'), b'b' * 5000, T0)
    big = write(os.path.join(sd, 'big.bin'), os.urandom(3 << 20), T0)
    site.srv.chown(sd)
    dst = os.path.join(work, 'chg-dst')
    os.makedirs(dst)
    db = os.path.join(work, 'chg.db')
    run(['discover', '--db', db, '--quiet'] + site.opts() + [site.url('/chg'), dst], 0,
        'discover')
    write(os.path.join(sd, 'grows.bin'), b'a' * 6000, T0)
    write(os.path.join(sd, 'same_size.bin'), b'c' * 5000, T0 + 7 * SEC)
    os.utime(big, ns=(T0 + 9 * SEC, T0 + 9 * SEC))
    run(['copy', '--db', db, '--yes', '--quiet'], 3, 'copy of changed files')
    cp = run(['review', '--db', db, '--list', 'failed'], 0, 'review --list failed')
    got = {ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()
           if 'changed since discovery' in ln}
    expect_eq('failed as changed since discovery',
              {'/grows.bin', '/same_size.bin', '/big.bin'}, got)
    for n in ('grows.bin', 'same_size.bin', 'big.bin'):
        if os.path.lexists(os.path.join(dst, n)):
            fail('%s was copied although it changed' % n)
    run(['retry', '--db', db, '--quiet'], 0, 'retry copies the new versions')
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
    compare(snapshot(sd), snapshot(dst), 'after the retry')


# ---- a local source file cut short while it is uploaded ----

def check_source_cut_short(site, work):
    """Over the openssh transport a local file's bytes go to ssh's socket
    by sendfile, each WRITE's length sent before its data: a file cut
    short under the copy leaves a WRITE that zeros complete (the session
    stays in step). The file fails as changed since discovery, nothing is
    left under its name or as a temporary, the session serves the other
    files, and retry copies the file as it is then."""
    src = os.path.join(work, 'cut-short-src')
    path = write(os.path.join(src, 'shrinks.bin'), os.urandom(8 << 20), T0)
    small_tree(src, 6)
    site.mkdir('cutshort')
    dst = site.path('cutshort')
    db = os.path.join(work, 'cutshort.db')
    # no timeout of our own: a session out of step (a WRITE short of its
    # length) would wait for the server for good, not be retried
    run(['discover', '--db', db, '--quiet', '-o', 'sftp-timeout=86400'] + site.opts() +
        [src, site.url('/cutshort')], 0, 'discover')

    def cut():
        time.sleep(1.5)  # 8 MiB at 2 MiB/s: the copy is under way
        os.truncate(path, 1 << 20)
    t = threading.Thread(target=cut)
    t.start()
    try:
        run(['copy', '--db', db, '--yes', '--quiet', '--workers', '1', '--bwlimit', '2M'], 3,
            'copy of a file cut short meanwhile')
    finally:
        t.join()
    cp = run(['review', '--db', db, '--list', 'failed'], 0, 'review --list failed')
    got = {ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()
           if 'changed since discovery' in ln}
    expect_eq('failed as changed since discovery', {'/shrinks.bin'}, got)
    expect_eq('nothing under the name', False, os.path.lexists(os.path.join(dst, 'shrinks.bin')))
    expect_eq('temporaries left', [], tmps_under(dst))
    st = tmtest.status_json(db)
    expect_eq('failed', 1, st['copy']['failed'])
    os.utime(path, ns=(T0, T0))
    run(['retry', '--db', db, '--quiet'], 0, 'retry copies the file as it is')
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
    compare(snapshot(src), snapshot(dst), 'after the retry')


# ---- a server that closes each session after N requests ----

def check_close_after(site, work):
    limited = Site(close_after=40)
    try:
        limited.start()
        src = os.path.join(work, 'ca-src')
        small_tree(src, 60, 20000)
        write(os.path.join(src, 'one.bin'), os.urandom(400 << 10), T0)
        set_dir_times(src, T0)
        limited.mkdir('ca')
        db = os.path.join(work, 'ca.db')
        run(['discover', '--db', db, '--quiet'] + limited.opts() + [src, limited.url('/ca')],
            0, 'discover')
        run(['copy', '--db', db, '--yes', '--quiet', '--retries', '6'], 0, 'copy')
        run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify')
        back = os.path.join(work, 'ca-back')
        os.makedirs(back)
        db2 = os.path.join(work, 'ca2.db')
        run(['discover', '--db', db2, '--quiet', '--retries', '6'] + limited.opts() +
            [limited.url('/ca'), back], 0, 'discover back')
        run(['copy', '--db', db2, '--yes', '--quiet', '--retries', '6'], 0, 'copy back')
        run(['verify', '--db', db2, '--checksum', '--quiet'], 0, 'verify back')
        if limited.srv.closes() < 3:
            fail('the server closed only %d sessions' % limited.srv.closes())
        compare(snapshot(src), snapshot(limited.path('ca')), 'the copy')
        compare(snapshot(src), snapshot(back), 'the copy back')
        expect_eq('temporaries left', [], tmps_under(limited.path('ca')))
        print('     the server closed %d sessions' % limited.srv.closes())
    finally:
        limited.stop()


# ---- secrets ----

def grep_secrets(paths, extra=()):
    found = []
    for p in paths:
        if os.path.exists(p):
            data = open(p, 'rb').read()
            for s in SECRETS:
                if s.encode() in data:
                    found.append('%s in %s' % (s, p))
    for blob in extra:
        for s in SECRETS:
            if s.encode() in blob:
                found.append('%s in an output' % s)
    return found


def check_secrets(site, work):
    key = sshd.keygen(os.path.join(work, 'enc_key'), passphrase=SECRETS[0])
    with open(site.srv.authorized, 'a') as f:
        f.write(open(key + '.pub').read())
    src = os.path.join(work, 'sec-src')
    small_tree(src, 30)
    site.mkdir('sec')
    db = os.path.join(work, 'sec.db')
    env = {'TREEMIG_SSH_PASSPHRASE': SECRETS[0], 'TM_TEST_PW': SECRETS[1]}
    opts = ['--ssh-identity', key, '--ssh-known-hosts', site.srv.known_hosts,
            '--ssh-password-env', 'TM_TEST_PW', '--log-level', 'trace']
    run(['discover', '--db', db, '--quiet'] + opts + [src, site.url('/sec')], 0,
        'discover with an encrypted key', env=env)
    # without the passphrase: refused, and said why
    cp = run(['copy', '--db', db, '--yes', '--quiet'], 2, 'copy without the passphrase',
             env={'TM_TEST_PW': SECRETS[1]})
    if b'TREEMIG_SSH_PASSPHRASE' not in cp.stderr:
        fail('the message should name TREEMIG_SSH_PASSPHRASE', None, cp.stderr)
    # a key the server rejects: the password variable is offered (the
    # server takes no password: refused)
    stranger = sshd.keygen(os.path.join(work, 'sec_stranger'))
    cp = run(['verify', '--db', db, '--quiet', '--ssh-identity', stranger,
              '--ssh-known-hosts', site.srv.known_hosts, '--ssh-password-env',
              'TM_TEST_PW'], 2, 'a rejected key, then the password', env=env)
    # the copy, interrupted at once by a fault, then resumed from the YAML
    # file alone with the same key file and variables
    run(['copy', '--db', db, '--yes', '--quiet', '--log-level', 'trace'], 1,
        'a copy stopped by a fault', env=dict(env, TREEMIG_FAULT_DST='write@3=enospc+'))
    run(['resume', '--config', db + '.yaml', '--quiet'], 0, 'resume --config', env=env)
    run(['verify', '--db', db, '--checksum', '--quiet'], 0, 'verify', env=env)
    compare(snapshot(src), snapshot(site.path('sec')), 'the copy')
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute('SELECT * FROM logs').fetchall()
        logs = repr(rows).encode()
        if not rows:
            fail('the logs table is empty: the grep would prove nothing')
        settings = repr(conn.execute('SELECT * FROM migration').fetchall()).encode()
        errors = repr(conn.execute('SELECT * FROM task_errors').fetchall()).encode()
    finally:
        conn.close()
    found = grep_secrets([db, db + '-wal', db + '.yaml'], [logs, settings, errors] + outputs)
    if found:
        fail('secrets found: ' + ', '.join(found))
    if b'TM_TEST_PW' not in settings:
        fail('the name of the variable (not its value) is recorded', None, settings)


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
    work = tempfile.mkdtemp(prefix='tm-sftp-faults-', dir='/tmp')
    os.chmod(work, 0o755)
    R = Runner('test_sftp_faults')
    site = Site()
    try:
        site.start()
        for label, fn in [
                ('unknown host: exit 2, the fingerprint, nothing written', check_unknown_host),
                ('--ssh-accept-new records the key; options recorded', check_accept_new),
                ('changed host key: refused loudly, also with --ssh-accept-new',
                 check_changed_key),
                ('rejected key: exit 2, the key named', check_rejected_key),
                ('refused port, unknown name, unreachable address: exit 2',
                 check_unreachable),
                ('connections cut mid-copy: reconnects, completes, nothing partial',
                 check_cut_mid_copy),
                ('full server: the copy suspends, then completes', check_full),
                ('permission denied on a source folder: failed, then retry',
                 check_denied_source),
                ('permission denied on a destination folder: failed, then retry',
                 check_denied_destination),
                ('a source file on the server changed since discovery: failed, then retry',
                 check_source_changed),
                ('a local source file cut short while it is uploaded: failed, then retry',
                 check_source_cut_short),
                ('a server that closes each session after 40 requests', check_close_after),
                ('the root replaced by a symlink or a mount, or removed: refused',
                 check_root_replaced),
                ('a root through a symlink or a path not canonical: the folder it leads to',
                 check_root_through_symlink),
                ('secrets in no state, YAML, log or output; resume --config', check_secrets)]:
            if ONLY and not any(w in label for w in ONLY.split(',')):
                continue
            R.check(label, fn, site, work)
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
