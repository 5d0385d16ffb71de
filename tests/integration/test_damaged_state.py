#!/usr/bin/env python3
"""Integration tests of damaged, foreign, unwritable and locked state files.

For each bad state file, `discover` (with and without SRC DST), `resume
--config` (a valid YAML file naming it) and `status` (plain and --json)
must fail with exit code 1 (docs/exit-codes.md: a damaged, truncated or
foreign state file, or one from a newer treemig) and a message naming the
file, and leave the file byte for byte unchanged (sha256). Cases that
test_discover_errors.py already covers for discover (a text file, a
foreign SQLite database, user_version 99) are repeated here for status and
resume only as part of the same loop.

A read-only state file (chmod 0400) is tested as the user nobody when the
test runs as root (root ignores permission bits), and an immutable one
(chattr +i) as root. The lock: a second discover, resume or discover with
roots while a first discover runs gets exit 5 naming the first one's pid;
status may read; the first finishes with the result of an undisturbed run.

Run:  python3 tests/integration/test_damaged_state.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statecheck  # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

NOBODY = 65534


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_damaged_state')
    base = tempfile.mkdtemp(prefix='treemig-damaged-', dir='/tmp')
    trees = treegen.scratch_dir('treemig-damaged-trees-')
    try:
        run_all(R, base, trees)
    finally:
        for dp, dn, fn in os.walk(base):
            if 'immutable.db' in fn:      # a failed check may leave it immutable
                subprocess.run(['chattr', '-i', os.path.join(dp, 'immutable.db')],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        treegen.remove_tree(trees)
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def first_line(cp):
    lines = cp.stderr.decode('utf-8', 'replace').strip().splitlines()
    return lines[0][:170] if lines else ''


def siblings(db):
    d = os.path.dirname(db)
    n = os.path.basename(db)
    return sorted(x for x in os.listdir(d) if x.startswith(n) and x != n)


def run_all(R, base, trees):
    j = os.path.join
    src, dst = (os.fsdecode(p) for p in treegen.build_wide_pair(j(base, 'wide'), fanout=6,
                                                                levels=3))
    real_dir = j(base, 'real')
    os.mkdir(real_dir)
    real = j(real_dir, 'state.db')
    cp = tmtest.run(['discover', '--db', real, '--quiet', src, dst])
    expect_rc(cp, 0, 'discover of the small pair')
    with open(real, 'rb') as f:
        data = f.read()
    with open(real + '.yaml', 'rb') as f:
        real_yaml = f.read()
    if os.path.exists(real + '-wal') and os.path.getsize(real + '-wal'):
        print('note: the closed state file has a non-empty -wal file')
    print('a real state file: %d bytes' % len(data))
    rng = random.Random(1234)

    def foreign_sqlite(p, app_id):
        c = sqlite3.connect(p)
        if app_id is not None:
            c.execute('PRAGMA application_id = %d' % app_id)
        c.execute('CREATE TABLE t(x)')
        c.execute("INSERT INTO t VALUES ('keep me')")
        c.commit()
        c.close()

    def newer(p):
        with open(p, 'wb') as f:
            f.write(data)
        c = sqlite3.connect(p)
        c.execute('PRAGMA user_version = 99')
        c.commit()
        c.close()

    def header_then_garbage(p):
        with open(p, 'wb') as f:
            f.write(data[:100] + bytes(rng.randrange(256) for _ in range(len(data) - 100)))

    def raw(content):
        def make(p):
            with open(p, 'wb') as f:
                f.write(content)
        return make

    cases = [
        ('truncated to its first 1000 bytes', raw(data[:1000])),
        ('truncated to half', raw(data[:len(data) // 2])),
        ('random bytes', raw(bytes(rng.randrange(256) for _ in range(65536)))),
        ('zero bytes', raw(b'')),
        ('an SQLite header followed by random bytes', header_then_garbage),
        ('an SQLite database of another program (application_id 12345)',
         lambda p: foreign_sqlite(p, 12345)),
        ('an SQLite database without an application_id', lambda p: foreign_sqlite(p, None)),
        ('a treemig state file with user_version 99', newer),
    ]
    for what, make in cases:
        R.check('damaged: ' + what, check_bad_file, base, what, make, src, dst, real_yaml,
                (1,))

    def check_folder():
        d = j(base, 'folder_case')
        os.mkdir(d)
        db = j(d, 'state.db')
        os.mkdir(db)
        with open(j(db, 'inside'), 'w') as f:
            f.write('keep')
        for args in (['discover', '--db', db], ['discover', '--db', db, src, dst],
                     ['status', '--db', db], ['status', '--db', db, '--json']):
            cp = tmtest.run(args)
            if cp.returncode == 0 or db not in cp.stderr.decode('utf-8', 'replace'):
                fail('%s: expected a failure naming %s, got %s' % (args[0], db, tmtest.show(cp)))
            print('     %s -> exit %d: %s' % (' '.join(args[:1] + args[3:4]), cp.returncode,
                                             first_line(cp)))
        expect_eq('the folder is untouched', ['inside'], os.listdir(db))
    R.check('a folder given as --db', check_folder)

    R.check('stats that count no pending folder: the resumed discovery lists them all',
            check_stats_drift, base)
    R.check('damaged pages inside a suspended state file', check_damaged_pages, base, trees)
    R.check('read-only state file (chmod 0400)', check_read_only, base)
    R.check('immutable state file (chattr +i, as root)', check_immutable, base, src, dst)
    run_lock(R, base, trees)


def check_stats_drift(base):
    """A discovery killed with folders pending, whose stats are then made
    to count none of them (the stats say which depth the discovery reads
    next, src/store/frontier.c): the resumed discovery must read the rows
    before it ends, warn, and list every folder, as an uninterrupted one."""
    d = tempfile.mkdtemp(prefix='drift-', dir=base)
    src = 'sim:seed=7,depth=4,folders=4,files=3,latency=4'
    dst = 'sim:seed=7,depth=4,folders=4,files=3,world=dst,keep=0.7,latency=4'
    ref = os.path.join(d, 'ref.db')
    expect_rc(tmtest.run(['discover', '--db', ref, '--quiet', src, dst]), 0,
              'the reference discovery')
    db = os.path.join(d, 'state.db')

    def pending():
        try:
            c = statecheck._ro(db)
            try:
                return c.execute("SELECT count(*) FROM src_nodes WHERE type = 'folder' "
                                 "AND traversal_status = 'pending' AND depth >= 2"
                                 ).fetchone()[0] > 0
            finally:
                c.close()
        except sqlite3.Error:
            return False
    p = statecheck.Proc(['discover', '--db', db, '--quiet', src, dst])
    try:
        if not statecheck.wait_until(p, pending):
            fail('the discovery ended before folders of depth 2 were pending: %s'
                 % p.stderr())
        p.signal(signal.SIGKILL)
        p.wait()
    finally:
        p.close()
    c = sqlite3.connect(db)
    try:
        n = c.execute("SELECT count(*) FROM src_nodes WHERE type = 'folder' AND "
                      "traversal_status = 'pending'").fetchone()[0]
        for t in ('src_stats', 'dst_stats'):
            c.execute("UPDATE %s SET count = 0 WHERE type = 'folder' AND "
                      "traversal_status = 'pending'" % t)
        c.commit()
    finally:
        c.close()
    print('     killed with %d source folders pending; the stats count none' % n)
    cp = tmtest.run(['discover', '--db', db, '--quiet'])
    expect_rc(cp, 0, 'the resumed discovery')
    expect_eq('phase', 'discovered', statecheck.phase_of(db))
    for side in ('src', 'dst'):
        want = {r[:statecheck.KEY] for r in statecheck.fetch_rows(ref, side)}
        got = {r[:statecheck.KEY] for r in statecheck.fetch_rows(db, side)}
        if want != got:
            fail('%s_nodes: %d rows (%d folders pending) where the reference has %d; '
                 'first differences: %r' % (
                     side, len(got), sum(1 for r in got if r[2] == b'folder' and
                                         r[7] == b'pending'), len(want),
                     sorted(want ^ got, key=repr)[:4]))
    c = statecheck._ro(db, timeout=5)
    try:
        warned = c.execute("SELECT count(*) FROM logs WHERE level = 'warning' AND "
                           "message LIKE '%stats count no pending folder%'").fetchone()[0]
    finally:
        c.close()
    if not warned:
        fail('no warning in the logs table that the stats disagreed with the rows')


def check_bad_file(base, what, make, src, dst, real_yaml, codes):
    """Runs every command on a bad state file; each must fail with one of
    codes and a message naming the file, and leave it unchanged."""
    d = tempfile.mkdtemp(prefix='case-', dir=base)
    db = os.path.join(d, 'state.db')
    make(db)
    yaml = os.path.join(d, 'm.yaml')
    text = []
    for line in real_yaml.split(b'\n'):
        if line.startswith(b'database:'):
            line = b'database: "%s"' % os.fsencode(db)
        text.append(line)
    with open(yaml, 'wb') as f:
        f.write(b'\n'.join(text))
    before = statecheck.file_hash(db)
    ybefore = statecheck.file_hash(yaml)
    errs = []
    for args in (['discover', '--db', db], ['discover', '--db', db, src, dst],
                 ['resume', '--config', yaml], ['status', '--db', db],
                 ['status', '--db', db, '--json']):
        cp = tmtest.run(args)
        err = cp.stderr.decode('utf-8', 'replace')
        label = ' '.join(a for a in args[:1] + args[3:] if not a.startswith('/'))
        if cp.returncode not in codes:
            errs.append('%s: exit %d, expected %s: %s' % (label, cp.returncode,
                                                        ' or '.join(map(str, codes)),
                                                        err.strip()[:300]))
        elif db not in err:
            errs.append('%s: the message does not name the state file: %r' % (label, err[:300]))
        if cp.stdout.strip() and args[0] == 'status':
            errs.append('%s: printed a status for a bad state file: %r' % (label, cp.stdout[:200]))
        if statecheck.file_hash(db) != before:
            errs.append('%s changed the state file' % label)
            before = statecheck.file_hash(db)
        if statecheck.file_hash(yaml) != ybefore:
            errs.append('%s changed the YAML file' % label)
            ybefore = statecheck.file_hash(yaml)
        print('     %-16s -> exit %d: %s' % (label, cp.returncode, first_line(cp)))
    left = siblings(db)
    if left and left != ['state.db.lock']:
        print('     note: files left beside it: %r' % left)
    if errs:
        fail('%s:\n    %s' % (what, '\n    '.join(errs)))


def interrupted_state(db, src, dst, fraction):
    """A suspended migration in db (SIGINT once a fraction of the rows is
    committed); None when the run ended first."""
    p = statecheck.Proc(['discover', '--db', db, '--quiet', src, dst])
    try:
        statecheck.wait_until(p, lambda: statecheck.row_count(db) >= fraction, timeout=120)
        p.signal(signal.SIGINT)
        rc = p.wait()
    finally:
        p.close()
    return rc == 4


def check_damaged_pages(base, trees):
    # random bytes over three pages inside a suspended migration: the
    # identity checks pass; the damage shows only when the pages are read
    j = os.path.join
    d = j(base, 'pages')
    os.mkdir(d)
    src, dst = treegen.build_big_pair(j(trees, 'pages'), copies=10)
    db = j(d, 'state.db')
    if not interrupted_state(db, src, dst, 8000):
        raise tmtest.Skip('the discovery ended before it could be interrupted')
    with open(db, 'rb') as f:
        data = bytearray(f.read())
    # the page size from the file's header (bytes 16-17, big-endian; 1: 64 KiB)
    size = int.from_bytes(data[16:18], 'big')
    size = 65536 if size == 1 else size
    pages = len(data) // size
    rng = random.Random(99)
    for pg in (pages // 3, pages // 2, pages - 2):
        data[pg * size:(pg + 1) * size] = bytes(rng.randrange(256) for _ in range(size))
    with open(db, 'wb') as f:
        f.write(data)
    before = statecheck.file_hash(db)
    cp = tmtest.run(['discover', '--db', db, '--quiet'])
    print('     discover -> exit %d: %s' % (cp.returncode, first_line(cp)))
    problems = []
    if cp.returncode == 0:
        try:
            statecheck.integrity(db)
            raise tmtest.Skip('the damaged pages were not in use (integrity_check passes)')
        except tmtest.CheckFailed as e:
            problems.append('discover exits 0 on a damaged state file (%s)'
                            % str(e).split(': ', 1)[-1][:200])
    elif os.fsdecode(db) not in cp.stderr.decode('utf-8', 'replace'):
        problems.append('the message does not name the state file')
    if statecheck.file_hash(db) != before:
        problems.append('the damaged state file was written to (docs/exit-codes.md: treemig '
                        'never overwrites it)')
    if problems:
        fail('; '.join(problems))


def run_as_nobody(args):
    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    cmd = [os.fsencode(tmtest.TREEMIG)] + [os.fsencode(a) for a in args]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, preexec_fn=drop, timeout=tmtest.TIMEOUT)


def check_read_only(base):
    j = os.path.join
    as_root = os.geteuid() == 0
    d = tempfile.mkdtemp(prefix='ro-', dir='/tmp')
    try:
        os.chmod(d, 0o755)
        src, dst = treegen.build_wide_pair(j(d, 'trees'), fanout=3, levels=2, files=3)
        st = j(d, 'st')
        os.mkdir(st)
        db = j(st, 'state.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        # a suspended migration: a resume would have to write
        c = sqlite3.connect(db)
        c.execute("UPDATE migration SET value='suspended' WHERE key='phase'")
        c.commit()
        c.close()
        if as_root:
            for dp, dn, fn in os.walk(st):
                for n in dn + fn + ['.']:
                    os.chown(j(dp, n), NOBODY, NOBODY)
            runner = run_as_nobody
            who = 'as the user nobody (the test runs as root)'
        else:
            runner = tmtest.run
            who = 'as uid %d' % os.geteuid()
        os.chmod(db, 0o400)
        before = statecheck.file_hash(db)
        cp = runner(['discover', '--db', db, '--quiet'])
        print('     %s: discover -> exit %d: %s' % (who, cp.returncode, first_line(cp)))
        problems = []
        if cp.returncode == 0:
            problems.append('discover exits 0 on a read-only state file it must write')
        elif db not in cp.stderr.decode('utf-8', 'replace'):
            problems.append('the message does not name the state file: %r' % first_line(cp))
        if statecheck.file_hash(db) != before:
            problems.append('the read-only state file changed')
        cp = runner(['status', '--db', db, '--json'])
        print('     %s: status --json -> exit %d' % (who, cp.returncode))
        if cp.returncode != 0:
            problems.append('status (which only reads) fails on a read-only state file: %s'
                            % first_line(cp))
        expect_eq('phase', 'suspended', statecheck.phase_of(db))
        if problems:
            fail('; '.join(problems))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def check_immutable(base, src, dst):
    if os.geteuid() != 0:
        raise tmtest.Skip('chattr +i needs root')
    j = os.path.join
    d = j(base, 'imm')
    os.mkdir(d)
    db = j(d, 'immutable.db')
    cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
    expect_rc(cp, 0, 'discover')
    c = sqlite3.connect(db)
    c.execute("UPDATE migration SET value='suspended' WHERE key='phase'")
    c.commit()
    c.close()
    r = subprocess.run(['chattr', '+i', db], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise tmtest.Skip('chattr +i is not supported here: %s' % r.stdout.decode().strip())
    try:
        before = statecheck.file_hash(db)
        problems = []
        for args in (['discover', '--db', db, '--quiet'], ['resume', '--config', db + '.yaml']):
            cp = tmtest.run(args)
            print('     %s -> exit %d: %s' % (args[0], cp.returncode, first_line(cp)))
            if cp.returncode == 0:
                problems.append('%s exits 0 on a state file it cannot write' % args[0])
            elif db not in cp.stderr.decode('utf-8', 'replace'):
                problems.append('%s: the message does not name the state file: %r'
                                % (args[0], first_line(cp)))
        cp = tmtest.run(['status', '--db', db, '--json'])
        if cp.returncode != 0:
            problems.append('status (which only reads) fails: %s' % first_line(cp))
        if statecheck.file_hash(db) != before:
            problems.append('the state file changed')
        if problems:
            fail('; '.join(problems))
    finally:
        subprocess.run(['chattr', '-i', db])


def run_lock(R, base, trees):
    j = os.path.join
    slow = statecheck.slowdown()
    src, dst = (os.fsdecode(p) for p in treegen.build_big_pair(
        j(trees, 'lock'), copies=60 if slow == 1 else 15))
    ctx = {}

    def check_reference():
        db = j(base, 'lock_ref.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'uninterrupted discover')
        ctx['ref'] = statecheck.Ref(db)
    R.check('lock: reference run', check_reference)
    if 'ref' not in ctx:
        return
    ref = ctx['ref']

    def check_lock():
        d = j(base, 'lock')
        os.mkdir(d)
        db = j(d, 'state.db')
        p = statecheck.Proc(['discover', '--db', db, '--quiet', src, dst])
        try:
            if not statecheck.wait_until(p, lambda: statecheck.row_count(db) >= ref.total_rows
                                         // 20 and os.path.exists(db + '.yaml'), timeout=120):
                p.wait()
                raise tmtest.Skip('the first discover ended (exit %r) before it could be '
                                  'caught running' % p.rc)
            with open(db + '.lock', 'rb') as f:
                expect_eq('the lock file names the running process', str(p.pid),
                          f.read().decode().strip())
            seen = []
            for args in (['discover', '--db', db], ['discover', '--db', db, src, dst],
                         ['resume', '--config', db + '.yaml']):
                cp = tmtest.run(args, timeout=30)
                still = p.poll() is None
                if cp.returncode != 5 and not still:
                    raise tmtest.Skip('the first discover ended before %s was refused (exit '
                                      '%d): the tree is too small for this machine'
                                      % (args[0], cp.returncode))
                expect_rc(cp, 5, '%s while another process writes the state file' % args[0])
                err = cp.stderr.decode('utf-8', 'replace')
                if str(p.pid) not in err:
                    fail('the message does not name the holder\'s pid %d: %r' % (p.pid, err))
                seen.append((' '.join(args[:1] + args[3:4]), still, first_line(cp)))
            cp = tmtest.run(['status', '--db', db, '--json'], timeout=30)
            expect_rc(cp, 0, 'status while discover runs')
            running = p.poll() is None
            with open(db + '.lock', 'rb') as f:
                expect_eq('the lock file still names the running process', str(p.pid),
                          f.read().decode().strip())
            rc = p.wait()
            err = p.stderr()
        finally:
            p.close()
        for what, still, line in seen:
            print('     %s -> exit 5 (first discover %s): %s'
                  % (what, 'still running' if still else 'had ended', line))
        if not running:
            print('     note: the first discover ended while the others were refused')
        if rc != 0:
            fail('the first discover ended with %r: %s' % (rc, err[-500:]))
        statecheck.compare_with_reference(db, ref)
        statecheck.yaml_vs_db(db + '.yaml', db)
    R.check('lock: a second discover/resume gets exit 5 naming the holder\'s pid; the first '
            'finishes with the reference result', check_lock)

    def hold_lock(lock, pid, seconds):
        """A process that holds lock (flock) with pid written in it (its own
        when None) for seconds; returned once it holds it."""
        holder = subprocess.Popen(
            [sys.executable, '-c',
             'import fcntl, os, sys, time\n'
             'f = open(sys.argv[1], "r+b")\n'
             'fcntl.flock(f, fcntl.LOCK_EX)\n'
             'f.truncate(0)\n'
             'f.write((sys.argv[2] or str(os.getpid())).encode() + b"\\n"); f.flush()\n'
             'print("held", flush=True)\n'
             'time.sleep(float(sys.argv[3]))\n',
             lock, '' if pid is None else str(pid), str(seconds)], stdout=subprocess.PIPE)
        expect_eq('the holder took the lock', b'held\n', holder.stdout.readline())
        return holder

    def check_orphaned_lock():
        # a treemig killed a moment ago: the lock file names it, and a child
        # it forked (not yet exec'd or ended) still shares its lock; the
        # next command waits for that child instead of refusing (exit 5)
        d = j(base, 'orphan')
        os.mkdir(d)
        db = j(d, 'state.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        dead = subprocess.Popen(['true'])
        dead.wait()  # its pid names a process that has ended
        holder = hold_lock(db + '.lock', dead.pid, 0.8)
        try:
            cp = tmtest.run(['discover', '--db', db, '--quiet'], timeout=60)
            expect_rc(cp, 0, 'discover while the lock of an ended process is held a moment')
        finally:
            holder.kill()
            holder.wait()
        # a holder that runs is refused at once, named
        holder = hold_lock(db + '.lock', None, 60)
        try:
            cp = tmtest.run(['discover', '--db', db, '--quiet'], timeout=60)
            expect_rc(cp, 5, 'discover while a running process holds the lock')
            if str(holder.pid).encode() not in cp.stderr:
                fail('the message should name the holder %d' % holder.pid, None, cp.stderr)
        finally:
            holder.kill()
            holder.wait()
    R.check('lock: the lock of a process that has ended, still held a moment by its child, '
            'is waited for; a running holder is refused at once', check_orphaned_lock)


if __name__ == '__main__':
    main()
