#!/usr/bin/env python3
"""A large SFTP file read through several sessions at once (stripes), against
OpenSSH's sshd on 127.0.0.1 (tests/servers/sshd.py). The threshold is
lowered by option (4 MiB) and the round-trip rule turned off, so that the
files stay small and loopback stripes:

- the client layer (tests/tools/sftptool get): files one byte under the
  threshold (one session), exactly at it, one byte over, of a size that is
  no multiple of a stripe, and large enough to reuse every stripe buffer
  several times (read slowly: the streams wait for free buffers), each
  byte for byte, read in stripes, the large one with extra sessions;
  a pool of one session (no session to spare: the file's own session reads
  every stripe, nothing waits for a session); stripes off (--stripe 1);
- the CLI: SFTP -> local copies of such files, byte for byte, mode and
  mtime (-o sftp-stripe-min, -o sftp-stripe-rtt=0);
- connections cut in the middle of the stripes (tests/servers/sshd.py's
  CutProxy): the copy reconnects and completes, nothing partial under a
  real name, no temporary left;
- a source file cut short, and one that grows, while its stripes are read
  (the copy slowed by --bwlimit): failed as changed since discovery,
  nothing under the name; retry copies it.

TREEMIG_SFTP_ONLY=WORDS[,WORDS] runs the checks whose label contains one.
Exit 77 (skipped) when sshd or ssh-keygen is missing.
"""

import hashlib
import json
import os
import shutil
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
                               tmps_under, write)
from tmtest import Runner, expect_eq, expect_rc, fail  # noqa: E402

SFTPTOOL = os.environ.get('SFTPTOOL', os.path.join(HERE, '..', '..', 'build', 'tests',
                                                   'sftptool'))
MIN = 4 << 20  # the threshold the checks set
# what striping needs on loopback: the threshold lowered, any round trip
STRIPE_OPTS = ['-o', 'sftp-stripe-min=%d' % MIN, '-o', 'sftp-stripe-rtt=0']
ONLY = os.environ.get('TREEMIG_SFTP_ONLY')


def digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def tool(site, args, opts=()):
    cmd = [SFTPTOOL, '--identity', site.srv.client_key, '--known-hosts',
           site.srv.known_hosts] + list(opts) + [site.url('/')] + list(args)
    cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=300, start_new_session=True)
    if cp.returncode != 0:
        fail('sftptool %s: exit %d' % (' '.join(args), cp.returncode), None,
             cp.stderr.decode('utf-8', 'replace'))
    return [json.loads(ln) for ln in cp.stdout.decode().splitlines() if ln.strip()]


# sizes around the threshold and the stripes (about 1 MiB: 4 READs of 255
# KiB over ssh, 8 of 128 KiB with libssh2), and one that reuses every
# buffer of 4 streams (16 stripes) several times
SIZES = [('under', MIN - 1), ('at', MIN), ('over', MIN + 1),
         ('odd', 5 * 1044480 + 12345), ('large', (40 << 20) + 777)]


def make_files(site, rel, sizes):
    d = site.mkdir(rel)
    for name, n in sizes:
        write(os.path.join(d, name + '.bin'), os.urandom(n), T0)
    site.srv.chown(d)
    return d


def check_client_sizes(site, work):
    d = make_files(site, 'sizes', SIZES)
    for label, opts in [('4 streams', ['--stripe', '4']),
                        ('one session in the pool', ['--stripe', '4', '--sessions', '1']),
                        ('stripes off', ['--stripe', '1'])]:
        for name, n in SIZES:
            local = os.path.join(work, 'got-' + name)
            # the large file read slowly: extra sessions have the time to
            # open (and the streams wait for free buffers)
            slow = ['--pause-ms', '20'] if name == 'large' else []
            out = tool(site, ['get', d + '/' + name + '.bin', local],
                       ['--stripe-min', str(MIN), '--stripe-rtt', '-1'] + opts + slow)[-1]
            expect_eq('%s, %s: bytes' % (label, name), n, out['bytes'])
            if digest(local) != digest(os.path.join(d, name + '.bin')):
                fail('%s, %s: the bytes read differ from the file' % (label, name))
            striped = int(n >= MIN and label != 'stripes off')
            expect_eq('%s, %s: read in stripes' % (label, name), striped, out['striped'])
            if label == '4 streams' and name == 'large' and out['extra_streams'] < 1:
                fail('%s, %s: no extra session read a stripe' % (label, name), '>= 1',
                     out['extra_streams'])
            if label == 'one session in the pool':
                expect_eq('%s, %s: extra sessions' % (label, name), 0, out['extra_streams'])
            os.unlink(local)


def check_round_trip_rule(site, work):
    """Without the rule turned off, loopback (a round trip well under 5 ms)
    reads a large file through its one session."""
    d = make_files(site, 'rule', [('big', MIN + 5)])
    local = os.path.join(work, 'got-rule')
    out = tool(site, ['get', d + '/big.bin', local], ['--stripe-min', str(MIN)])[-1]
    expect_eq('read in stripes on loopback', 0, out['striped'])
    if digest(local) != digest(os.path.join(d, 'big.bin')):
        fail('the bytes read differ from the file')


def check_copy_down(site, work):
    sd = make_files(site, 'down', SIZES)
    os.chmod(os.path.join(sd, 'odd.bin'), 0o640)
    site.srv.chown(sd)
    dst = os.path.join(work, 'down-dst')
    os.makedirs(dst)
    db = os.path.join(work, 'down.db')
    expect_rc(tmtest.run(['discover', '--db', db, '--quiet'] + STRIPE_OPTS + site.opts() +
                         [site.url('/down'), dst]), 0, 'discover')
    expect_rc(tmtest.run(['copy', '--db', db, '--yes', '--quiet']), 0, 'copy')
    compare(snapshot(sd), snapshot(dst), 'after the copy')
    expect_rc(tmtest.run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify')


def check_cut(site, work):
    sd = site.mkdir('cut')
    for i in range(3):
        write(os.path.join(sd, 'big%d.bin' % i), os.urandom((12 << 20) + i * 4099), T0 + i * SEC)
    site.srv.chown(sd)
    dst = os.path.join(work, 'cut-dst')
    os.makedirs(dst)
    with sshd.CutProxy(site.srv.port, cut_bytes=1 << 40, cut_conns=0) as px:
        kh = os.path.join(work, 'kh-cut')
        with open(kh, 'w') as f:
            f.write(site.srv.host_key_line('[127.0.0.1]:%d' % px.port))
        url = site.url('/cut').replace(':%d/' % site.srv.port, ':%d/' % px.port)
        db = os.path.join(work, 'cut.db')
        opts = STRIPE_OPTS + ['--ssh-identity', site.srv.client_key, '--ssh-known-hosts', kh]
        expect_rc(tmtest.run(['discover', '--db', db, '--quiet'] + opts + [url, dst]), 0,
                  'discover')
        # the next two connections are reset after 6 MiB each: in the middle
        # of the files' stripes (a file's streams may use both: each cut
        # can fail both files once; the copy retries 3 times)
        px.cut_next(2, 6 << 20)
        cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--workers', '2'])
        if os.environ.get('DEBUG_LOGS'):
            import sqlite3
            for row in sqlite3.connect(db).execute('SELECT * FROM logs'):
                print(row)
        expect_rc(cp, 0, 'copy through cut connections')
        if px.cuts < 1:
            fail('no connection was cut (the proxy saw %d)' % px.conns)
        expect_rc(tmtest.run(['verify', '--db', db, '--checksum', '--quiet']), 0, 'verify')
    compare(snapshot(sd), snapshot(dst), 'after the cuts')
    expect_eq('temporaries left', [], tmps_under(dst))
    expect_eq('failed', 0, tmtest.status_json(db)['copy']['failed'])
    print('     %d connections, %d cut' % (px.conns, px.cuts))


def check_changed_while_read(site, work):
    for name, change in [('shrinks', lambda p: os.truncate(p, 1 << 20)),
                         ('grows', lambda p: open(p, 'ab').write(b'more'))]:
        sd = site.mkdir('chg-' + name)
        path = write(os.path.join(sd, name + '.bin'), os.urandom(64 << 20), T0)
        site.srv.chown(sd)
        dst = os.path.join(work, 'chg-dst-' + name)
        os.makedirs(dst)
        db = os.path.join(work, 'chg-%s.db' % name)
        expect_rc(tmtest.run(['discover', '--db', db, '--quiet'] + STRIPE_OPTS + site.opts() +
                             [site.url('/chg-' + name), dst]), 0, 'discover')

        def act():
            time.sleep(1.5)  # 64 MiB at 16 MiB/s: the stripes are under way
            change(path)
        t = threading.Thread(target=act)
        t.start()
        try:
            cp = tmtest.run(['copy', '--db', db, '--yes', '--quiet', '--bwlimit', '16M'])
        finally:
            t.join()
        expect_rc(cp, 3, 'copy of a file that %s meanwhile' % name.rstrip('s'))
        cp = tmtest.run(['review', '--db', db, '--list', 'failed'])
        got = {ln.split('\t')[3] for ln in cp.stdout.decode().splitlines()
               if 'changed since discovery' in ln}
        expect_eq('%s: failed as changed since discovery' % name, {'/%s.bin' % name}, got)
        expect_eq('%s: nothing under the name' % name, False,
                  os.path.lexists(os.path.join(dst, name + '.bin')))
        expect_eq('%s: temporaries left' % name, [], tmps_under(dst))
        os.utime(path, ns=(T0, T0))
        expect_rc(tmtest.run(['retry', '--db', db, '--quiet']), 0, 'retry')
        compare(snapshot(sd), snapshot(dst), '%s: after the retry' % name)


def main():
    why = sshd.available()
    if why:
        print('SKIP: ' + why)
        sys.exit(77)
    tmtest.require_binary()
    sshd.install_signal_handlers()
    home = clean_env()
    work = tempfile.mkdtemp(prefix='tm-sftp-stripe-', dir='/tmp')
    os.chmod(work, 0o755)
    R = Runner('test_sftp_stripe')
    site = Site()
    try:
        site.start()
        for label, fn in [
                ('client: sizes around the threshold, byte for byte', check_client_sizes),
                ('client: loopback reads a large file through one session',
                 check_round_trip_rule),
                ('copy down in stripes: byte for byte, mode, mtime', check_copy_down),
                ('connections cut mid-stripe: reconnects, completes, nothing partial',
                 check_cut),
                ('a file cut short or grown while its stripes are read: failed, retry',
                 check_changed_while_read)]:
            if ONLY and not any(w in label for w in ONLY.split(',')):
                continue
            R.check(label, fn, site, work)
    finally:
        site.stop()
        shutil.rmtree(work, True)
        shutil.rmtree(home, True)
    R.finish()


if __name__ == '__main__':
    main()
