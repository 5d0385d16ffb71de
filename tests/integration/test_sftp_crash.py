#!/usr/bin/env python3
"""kill -9 loops with an SFTP side, against OpenSSH's sshd on 127.0.0.1
(tests/servers/sshd.py), through bench's latency proxy (5 ms each way, so
that a listing or a copy lasts long enough to be killed in its middle):

1. discovery of an SFTP source with a folder of 20,000 entries, killed
   while that folder's listing is recorded page by page (a row in
   listing_pos), resumed inside it, again and again: every node recorded
   once, the stats exact. SFTP cannot reopen a listing at a position: the
   resume reads the folder again and skips the children recorded, which
   is right only while the folder is unchanged; so a second loop removes
   recorded children and adds new ones between a kill and its resume:
   every child there now is recorded (none missed).
2. a copy local -> SFTP killed at random moments (and at moments when a
   temporary is on the server): after every kill, each file under a real
   name on the server is complete (its source's bytes); the next copy
   removes the killed run's temporaries; at the end verify --checksum
   passes and no temporary is left.

Exit 77 (skipped) when sshd or ssh-keygen is missing, or the latency proxy
is not built.
"""

import os
import random
import shutil
import signal
import sqlite3
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
from test_sftp_migrate import (Site, T0, SEC, clean_env, compare, snapshot,  # noqa: E402
                               tmps_under, write, set_dir_times)
from tmtest import Runner, Skip, expect_eq, expect_rc, fail, show  # noqa: E402

PROXY = os.environ.get('LATENCY_PROXY', os.path.join(HERE, '..', '..', 'build',
                                                     'latency_proxy'))
WIDE = 20000
KILLS = int(os.environ.get('TREEMIG_SFTP_KILLS', '4'))


class Proxy:
    """bench/latency_proxy in front of the server: (port, process)."""

    def __init__(self, target_port, delay_ms):
        self.p = subprocess.Popen([PROXY, '-p', '0', '127.0.0.1:%d' % target_port,
                                   str(delay_ms)], stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        self.port = int(self.p.stdout.readline())

    def close(self):
        self.p.terminate()
        self.p.wait()


def via_proxy(site, px, work, rel):
    """The URL of rel through the proxy and the options with a known_hosts
    file that lists the server under the proxy's port."""
    kh = os.path.join(work, 'kh-%d' % px.port)
    with open(kh, 'w') as f:
        f.write(site.srv.host_key_line('[127.0.0.1]:%d' % px.port))
    url = site.url(rel).replace(':%d/' % site.srv.port, ':%d/' % px.port)
    return url, ['--ssh-identity', site.srv.client_key, '--ssh-known-hosts', kh]


def start(args):
    return subprocess.Popen([tmtest.TREEMIG] + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def listing_rows(db):
    """Rows of listing_pos (a folder listed in part), or -1 when unreadable."""
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=0.05)
        try:
            return conn.execute('SELECT count(*) FROM listing_pos WHERE side = 0').fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


def kill_inside(args, db):
    """Runs treemig with args and kills it with -9 once a source folder is
    recorded in part. Returns (1 if killed inside, else 0, exit code)."""
    p = start(args)
    inside = 0
    try:
        while p.poll() is None:
            if listing_rows(db) > 0:
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
    if p.returncode == -signal.SIGKILL and listing_rows(db) > 0:
        inside = 1
    return inside, p.returncode


def children(db, parent):
    conn = tmtest.connect(db)
    try:
        return [r[0] for r in conn.execute(
            'SELECT n.name FROM src_nodes n JOIN src_nodes p ON n.parent_id = p.id '
            'WHERE p.path = ?', (parent,))]
    finally:
        conn.close()


def build_wide(site):
    root = site.mkdir('wide')
    big = os.path.join(root, 'big')
    os.makedirs(big)
    for i in range(WIDE):
        open(os.path.join(big, 'f%05d' % i), 'wb').close()
    for i in range(5):
        write(os.path.join(root, 'small%d' % i, 'x'), b'x', T0)
    site.srv.chown(root)
    return root


def check_names(db, root, what):
    """Every node under root is recorded, exactly once."""
    rows = tmtest.read_nodes(db, 'src_nodes')
    paths = [r['path'] for r in rows]
    if len(paths) != len(set(paths)):
        fail('%s: a path recorded twice' % what)
    want = {b'/'}
    for d, dirs, files in os.walk(os.fsencode(root)):
        rel = os.path.relpath(d, os.fsencode(root))
        for n in dirs + files:
            want.add(b'/' + n if rel == b'.' else b'/' + rel + b'/' + n)
    missing = sorted(want - set(paths))
    if missing:
        fail('%s: %d nodes there now are not recorded, e.g. %r'
             % (what, len(missing), missing[:5]))
    tmtest.check_all_stats(db)
    return set(paths)


def check_discover_kills(site, work, px):
    root = build_wide(site)
    dst = os.path.join(work, 'wide-dst')
    os.makedirs(dst)
    url, opts = via_proxy(site, px, work, '/wide')
    db = os.path.join(work, 'wide.db')
    args = ['discover', '--db', db, '--quiet', '--workers', '2'] + opts
    inside = 0
    first = True
    for _ in range(40):
        k, rc = kill_inside(args + ([url, dst] if first else []), db)
        if os.path.exists(db):
            first = False
        inside += k
        if rc == 0 or inside >= KILLS:
            break
    if inside < 1:
        raise Skip('no kill landed inside the listing of the wide folder')
    expect_rc(tmtest.run(args), 0, 'discover resumed to the end')
    got = check_names(db, root, 'after %d kills inside the listing' % inside)
    expect_eq('nodes', WIDE + 2 + 5 * 2, len(got))
    expect_eq('listing positions left', 0, listing_rows(db))
    print('     %d kills inside the listing of a folder of %d entries' % (inside, WIDE))


def check_discover_kills_changed(site, work, px):
    root = os.path.join(site.path('wide'))
    if not os.path.isdir(root):
        root = build_wide(site)
    dst = os.path.join(work, 'wide2-dst')
    os.makedirs(dst)
    url, opts = via_proxy(site, px, work, '/wide')
    db = os.path.join(work, 'wide2.db')
    args = ['discover', '--db', db, '--quiet', '--workers', '2'] + opts
    big = os.path.join(root, 'big')
    changed = 0
    first = True
    for n in range(40):
        k, rc = kill_inside(args + ([url, dst] if first else []), db)
        if os.path.exists(db):
            first = False
        if rc == 0:
            break
        if not k:
            continue
        # between the kill and the resume: recorded children go, new come
        rec = sorted(x for x in children(db, '/big') if x.startswith(b'f') and
                     os.path.exists(os.path.join(os.fsencode(big), x)))
        if not rec:
            continue
        for name in rec[:: max(1, len(rec) // 40)][:40]:
            os.unlink(os.path.join(os.fsencode(big), name))
        for i in range(40):
            open(os.path.join(big, 'n%d-%02d' % (n, i)), 'wb').close()
        site.srv.chown(big)
        changed += 1
        if changed >= 2:
            break
    if not changed:
        raise Skip('no kill landed inside the listing of the wide folder')
    expect_rc(tmtest.run(args), 0, 'discover resumed to the end')
    check_names(db, root, 'after the folder changed between kills and resumes')
    print('     the folder changed %d times between a kill and its resume' % changed)


def build_copy_source(src):
    rnd = random.Random(7)
    for i in range(24):
        write(os.path.join(src, 'big', 'b%02d' % i), os.urandom(rnd.randint(1, 8) << 18),
              T0 + i * SEC)
    for d in range(12):
        for i in range(15):
            write(os.path.join(src, 'd%02d' % d, 'f%02d' % i), os.urandom(rnd.randint(0, 9000)),
                  T0 + i * SEC, 0o600 | (0o44 if i % 2 else 0))
        os.symlink('f00', os.path.join(src, 'd%02d' % d, 'link'))
    set_dir_times(src, T0)


def check_complete(src_snap, dst):
    """Every file under a real name on the server is its source's, whole.
    After a kill -9 the server still ends what the copy had sent (the
    removal of a temporary, a rename): a name gone between the walk's
    listing and its lstat, and the walk is made again."""
    for _ in range(100):
        try:
            got = snapshot(dst)
            break
        except FileNotFoundError:
            time.sleep(0.05)
    else:
        fail('the destination still changed 5 s after the copy was killed')
    bad = []
    for p, n in got.items():
        if os.path.basename(p).startswith(b'.treemig.'):
            continue
        w = src_snap.get(p)
        if n[0] == 'file' and (w is None or w[4] != n[4] or w[2] != n[2]):
            bad.append(p)
    if bad:
        fail('partial or wrong files under real names after kill -9: %r' % bad[:10])


def check_copy_kills(site, work, px):
    src = os.path.join(work, 'csrc')
    build_copy_source(src)
    site.mkdir('cdst')
    url, opts = via_proxy(site, px, work, '/cdst')
    db = os.path.join(work, 'copy.db')
    expect_rc(tmtest.run(['discover', '--db', db, '--quiet'] + opts + [src, url]), 0,
              'discover')
    src_snap = snapshot(src)
    dst = site.path('cdst')
    rnd = random.Random(11)
    kills = leftovers = 0
    for n in range(30):
        p = start(['copy', '--db', db, '--yes', '--quiet', '--workers', '4'])
        if n % 2:
            deadline = time.monotonic() + rnd.uniform(0.05, 1.0)
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            while p.poll() is None and not tmps_under(dst):
                time.sleep(0.001)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        if p.returncode == 0:
            break
        if p.returncode != -signal.SIGKILL:
            fail('copy exited %d: %s' % (p.returncode, p.stderr.read()[-1000:]))
        kills += 1
        leftovers += bool(tmps_under(dst))
        check_complete(src_snap, dst)
        if kills >= 2 * KILLS:
            break
    if leftovers < 1:
        raise Skip('no kill left a temporary on the server')
    expect_rc(tmtest.run(['copy', '--db', db, '--yes', '--quiet']), 0, 'the last copy')
    expect_rc(tmtest.run(['verify', '--db', db, '--checksum', '--quiet']), 0,
              'verify --checksum')
    compare(src_snap, snapshot(dst), 'after %d kills' % kills)
    expect_eq('temporaries left', [], tmps_under(dst))
    print('     %d kills, %d of them with a temporary on the server' % (kills, leftovers))


# TREEMIG_SFTP_ONLY=WORDS[,WORDS] runs the checks whose label contains one.
ONLY = os.environ.get('TREEMIG_SFTP_ONLY')


def main():
    why = sshd.available()
    if why:
        print('SKIP: ' + why)
        sys.exit(77)
    if not os.access(PROXY, os.X_OK):
        print('SKIP: the latency proxy is not built (%s)' % PROXY)
        sys.exit(77)
    tmtest.require_binary()
    sshd.install_signal_handlers()
    home = clean_env()
    work = tempfile.mkdtemp(prefix='tm-sftp-crash-', dir='/tmp')
    os.chmod(work, 0o755)
    R = Runner('test_sftp_crash')
    site = Site()
    px = None
    try:
        site.start()
        px = Proxy(site.srv.port, 5)
        for label, fn in [
                ('discover killed inside a folder of %d entries, resumed inside' % WIDE,
                 check_discover_kills),
                ('... and the folder changed between a kill and the resume: none missed',
                 check_discover_kills_changed),
                ('copy local -> SFTP killed: nothing partial under a real name, '
                 'leftovers removed by the next copy', check_copy_kills)]:
            if ONLY and not any(w in label for w in ONLY.split(',')):
                continue
            R.check(label, fn, site, work, px)
    finally:
        if px:
            px.close()
        site.stop()
        shutil.rmtree(work, True)
        shutil.rmtree(home, True)
    R.finish()


if __name__ == '__main__':
    main()
