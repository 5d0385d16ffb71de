#!/usr/bin/env python3
"""treemig worker: several processes (standing for several hosts) run one
copy together through a real throwaway PostgreSQL (tests/servers/
pgserver.py), each claiming batches of nodes under leases.

- a sim pair (20 ms latency, so that every process gets work) and a local
  pair copied by `copy` and three `worker` processes give the same node
  rows and copy_stats as one SQLite run; at least three processes held
  leases; no worker dropped an outcome (nobody killed or frozen, so no
  task was claimed twice); queue_stats rows carry each worker's pid;
  rsync -n -i --delete finds nothing to change between the local source
  and destination (no temporary file left, nothing missing);
- kill -9 of two random workers during the copy: the others finish, the
  same end state (nothing lost, nothing counted twice), rsync agrees, the
  killed workers' temporaries are gone;
- a worker frozen with SIGSTOP while it holds leases, until the others
  took its nodes over, then SIGCONT: its late outcomes are dropped (it
  says how many), nobody fails, the same end state;
- a worker frozen inside a transaction: the server ends its session once
  the lease is over (idle_in_transaction_session_timeout), it fails on
  waking, the others finish with the same state;
- a verify with workers of a local pair with four damaged files: each
  mismatch found and counted once, the verify exits 3, the phase stays
  copied;
- worker on an SQLite state file, and with no copy in progress: exit 2
  with a message; status of a copy that nobody works on says so;
- a worker started between a discovery's phase and its word on sharing
  (shared_discovery) waits for the word and joins.

Discovery by workers (folders to list leased, a batch per claim):
- a sim pair (50 ms latency) and a local pair discovered by `discover`
  and three `worker` processes give the same node rows (state-copy to
  SQLite, compared with one SQLite run's), the stats agree with a
  recount, at least three processes listed folders (their queue_stats),
  no worker dropped a page (no folder was claimed twice);
- kill -9 of two random workers holding leased folders: the rest finish,
  the same rows (nothing lost, nothing twice);
- a worker frozen with SIGSTOP while it holds folders, until the others
  listed them, then SIGCONT: its late pages are dropped (it says how
  many), it exits 0, the same rows.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'servers'))
import tmtest  # noqa: E402
from tmtest import expect_eq, expect_rc, fail, run, show  # noqa: E402
import pgserver  # noqa: E402

SHAPE = 'seed=5,depth=4,folders=5,files=8,size=3000'
BIG = 'seed=5,depth=3,folders=4,files=60,size=3000'
DSHAPE = 'seed=5,depth=5,folders=8,files=4,size=3000'  # 341 source folders, 94 dst
DKEYS = 'world=dst,keep=0.7,extra=0.05,extra_folders=0.3,csize=0.05,cmtime=0.05,ctype=0.03'
SRC_Q = ("SELECT path, type, size, mtime, traversal_status, copy_status,"
         " coalesce(conflict, ''), coalesce(error, '') FROM src_nodes ORDER BY path")
STATS_Q = ("SELECT depth, type, copy_status, conflict, count, bytes FROM copy_stats"
           " WHERE count != 0 ORDER BY 1, 2, 3, 4")

PG = None
WORK = [None]


def env():
    return PG.env()


def new_db():
    return PG.new_db('w')


def same_rows(what, a, b):
    msg = pgserver.rows_differ(what, a, b)
    if msg:
        fail(msg)


def popen(args, extra_env=None):
    return subprocess.Popen([tmtest.TREEMIG] + args,
                            env=dict(os.environ, **env(), **(extra_env or {})),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_all(procs, what):
    """Waits for every process (killing them all if one hangs); returns
    {proc: (rc, stderr)}."""
    out = {}
    deadline = time.monotonic() + tmtest.TIMEOUT
    try:
        for p in procs:
            left = max(1, deadline - time.monotonic())
            try:
                _, err = p.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                fail('%s: a process did not end' % what)
            out[p] = (p.returncode, err.decode(errors='replace'))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def lite_reference(work, tag, src, dst):
    """discover + copy of the pair through SQLite: the state to match."""
    lite = os.path.join(work, tag + '.db')
    for args in (['discover', '--db', lite, '--quiet', src, dst],
                 ['copy', '--db', lite, '--yes', '--quiet']):
        expect_rc(run(args), 0, '%s (SQLite) %s' % (tag, args[0]))
    return lite


def copy_together(name, uri, n_workers=3, lease=30, copy_args=(), worker_args=(),
                  during=None, victim_env=None, victim_args=None):
    """Starts `copy` on uri, then n_workers `worker` processes once the copy
    is in progress; during(coord, workers) runs while they work. Returns
    (coord, workers, results)."""
    coord = popen(['copy', '--db', uri, '--yes', '--quiet'] + list(copy_args))
    procs = [coord]
    try:
        for _ in range(2400):
            if coord.poll() is not None:
                break
            r = PG.rows(name, "SELECT count(*) FROM migration WHERE key = 'worker_run'"
                        " AND (SELECT value FROM migration WHERE key = 'phase')"
                        " = 'copying'")
            if r == ['1']:
                break
            time.sleep(0.025)
        if coord.poll() is not None:
            fail('the copy ended before any worker could join: %s'
                 % coord.stderr.read().decode(errors='replace'))
        workers = [popen(['worker', '--db', uri, '--lease', str(lease)] +
                         list(victim_args if i == 0 and victim_args else worker_args),
                         victim_env if i == 0 else None)
                   for i in range(n_workers)]
        procs += workers
        if during:
            during(coord, workers)
        res = wait_all(procs, 'copy with workers')
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return coord, workers, res


def expect_all_ok(res, skip=()):
    for p, (rc, err) in res.items():
        if p in skip:
            continue
        if rc != 0:
            fail('a process exited %d: %s' % (rc, err[-2000:]))


def expect_none_dropped(workers, res):
    """Nobody killed or frozen, leases of 30 s: no worker's outcome was
    dropped for a lost lease (each task claimed by one process only)."""
    for w in workers:
        said = [ln for ln in res[w][1].splitlines() if 'outcomes dropped' in ln]
        if not said or ' 0 outcomes dropped' not in said[-1]:
            fail('a task was claimed by two processes (a worker dropped '
                 'outcomes with no lease expired): %r' % res[w][1][-1000:])


def lease_pids(name):
    return set(PG.rows(name, "SELECT DISTINCT pid FROM leases"))


def held_pending(name, procs):
    """Pending nodes whose lease is one of procs'."""
    return int(PG.rows(name, "SELECT count(*) FROM src_nodes s JOIN leases l ON "
                       "l.id = s.lease_id WHERE s.copy_status = 'pending' AND "
                       "l.pid IN (%s)" % ','.join(str(p.pid) for p in procs))[0])


def kill_two_holding(held_by, victims, held):
    """A during= of copy_together or discover_together: two random workers
    among those that hold work (held_by(procs): how many pending nodes or
    folders procs hold) die; a lease row alone may be a finished batch's,
    and killing its holder would test nothing. victims gets them, held
    what they held."""
    def kill_two(coord, workers):
        holding = []
        for _ in range(2400):
            holding = [w for w in workers if held_by([w])]
            if len(holding) >= 2 or coord.poll() is not None:
                break
            time.sleep(0.01)
        if len(holding) >= 2:
            for w in random.sample(holding, 2):
                w.send_signal(signal.SIGKILL)
                victims.append(w)
            held.append(held_by(victims))
    return kill_two


def expect_same_state(lite, name):
    same_rows('src_nodes', pgserver.lite_rows(lite, SRC_Q), PG.rows(name, SRC_Q))
    same_rows('copy_stats', pgserver.lite_rows(lite, STATS_Q), PG.rows(name, STATS_Q))
    expect_eq('phase', ['copied'], PG.rows(name, "SELECT value FROM migration "
                                             "WHERE key = 'phase'"))
    # copy_stats agree with the rows they count (nothing counted twice)
    q = ("SELECT depth, type, copy_status, count(*) FROM src_nodes WHERE depth > 0"
         " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    q2 = ("SELECT depth, type, copy_status, sum(count) FROM copy_stats WHERE depth > 0"
          " GROUP BY 1, 2, 3 HAVING sum(count) != 0 ORDER BY 1, 2, 3")
    expect_eq('copy_stats against a recount of src_nodes', PG.rows(name, q),
              PG.rows(name, q2))


def sim_pair(work, tag, latency, shape=SHAPE):
    ovl = os.path.join(work, tag + '.ovl')
    lat = ',latency=%d' % latency if latency else ''
    return ('sim:' + shape + lat,
            'sim:%s,%s,overlay=%s%s' % (shape, DKEYS, ovl, lat))


def discover_pg(uri, src, dst, tag):
    cfg = os.path.join(WORK[0], 'pg%d.yaml' % PG.made)
    expect_rc(run(['discover', '--db', uri, '--quiet', '--config', cfg, src, dst],
                  env=env()), 0, '%s discover (PostgreSQL)' % tag)


# check_sim's pair: twice SHAPE's files, so that the copy outlasts the
# start of the third worker on a loaded machine (with SHAPE's, 1 in 3
# runs ended void there)
SIM_COPY_SHAPE = 'seed=5,depth=4,folders=5,files=16,size=3000'


@tmtest.again_if_void
def check_sim(work):
    lite = lite_reference(work, 'simlite', *sim_pair(work, 'simlite', 0, SIM_COPY_SHAPE))
    name, uri = new_db()
    discover_pg(uri, *sim_pair(work, 'simpg', 20, SIM_COPY_SHAPE), tag='sim')
    _, workers, res = copy_together(name, uri, worker_args=['--workers', '8'])
    expect_all_ok(res)
    expect_none_dropped(workers, res)
    expect_same_state(lite, name)
    if len(lease_pids(name)) < 3:
        # the copy ended before a third process got work (a loaded
        # machine: ctest runs another test beside it): nothing shared
        tmtest.void('fewer than 3 processes held leases: %r' % lease_pids(name))
    qpids = set(PG.rows(name, "SELECT DISTINCT pid FROM queue_stats WHERE queue = 'copy'"))
    wpids = set(str(w.pid) for w in workers)
    if not wpids & qpids:
        fail('no worker wrote queue_stats of its own: %r, workers %r' % (qpids, wpids))
    # status sums the last snapshots of the four processes
    cp = run(['status', '--db', uri, '--json'], env=env())
    expect_rc(cp, 0, 'status --json')
    st = json.loads(cp.stdout)
    copyq = [q for q in st.get('queues', []) if q.get('queue') == 'copy']
    ok = int(PG.rows(name, "SELECT sum(count) FROM copy_stats WHERE copy_status ="
                     " 'successful'")[0])
    if not copyq or copyq[0].get('done') != ok:
        fail('status does not sum the workers\' copy snapshots: %r, %d copied'
             % (copyq, ok))
    # the sim destination written by four processes checks as a whole
    expect_rc(run(['verify', '--db', uri, '--quiet'], env=env()), 0, 'verify after')


def make_tree(top, folders=8, files=40):
    os.makedirs(top)
    for i in range(folders):
        d = os.path.join(top, 'd%02d' % i, 'sub')
        os.makedirs(d)
        for j in range(files):
            with open(os.path.join(d if j % 2 else os.path.dirname(d),
                                   'f%d.bin' % j), 'wb') as f:
                f.write(os.urandom(37 * j + i))
    os.symlink('d00/f0.bin', os.path.join(top, 'link'))
    os.mkdir(os.path.join(top, 'empty'))


def rsync_diff(src, dst):
    cp = subprocess.run(['rsync', '-n', '-a', '-i', '--delete', '-c', src + '/', dst + '/'],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if cp.returncode != 0:
        fail('rsync: %s' % cp.stderr.decode(errors='replace'))
    return [ln for ln in cp.stdout.decode(errors='replace').splitlines()
            if ln.strip() and not ln.endswith(' ./')]


@tmtest.again_if_void
def check_local(work):
    src = os.path.join(work, 'lsrc')
    make_tree(src)
    os.mkdir(os.path.join(work, 'ldst_lite'))
    lite = lite_reference(work, 'llite', src, os.path.join(work, 'ldst_lite'))
    name, uri = new_db()
    dst = os.path.join(work, 'ldst_pg')
    os.mkdir(dst)
    discover_pg(uri, src, dst, 'local')
    # the copy's own process paced (--tps-limit): the workers do most of it
    _, workers, res = copy_together(name, uri, copy_args=['--tps-limit', '100',
                                                          '--workers', '2'],
                                    worker_args=['--workers', '4'])
    expect_all_ok(res)
    expect_none_dropped(workers, res)
    expect_same_state(lite, name)
    if len(lease_pids(name)) < 3:
        tmtest.void('fewer than 3 processes held leases: %r' % lease_pids(name))
    expect_eq('rsync -n -i --delete -c of the destination', [], rsync_diff(src, dst))


@tmtest.again_if_void
def check_kill(work):
    lite = lite_reference(work, 'klite', *sim_pair(work, 'klite', 0, BIG))
    name, uri = new_db()
    discover_pg(uri, *sim_pair(work, 'kpg', 50, BIG), tag='kill')
    victims, pending_held = [], []

    kill_two = kill_two_holding(lambda ps: held_pending(name, ps), victims,
                                pending_held)

    _, workers, res = copy_together(name, uri, n_workers=4, lease=2,
                                    worker_args=['--workers', '8'], during=kill_two)
    if not pending_held or not pending_held[0]:
        tmtest.void('the killed workers held no pending node')
    for v in victims:
        if res[v][0] != -signal.SIGKILL:
            tmtest.void('a worker was not killed (exit %d)' % res[v][0])
    expect_all_ok(res, skip=victims)
    expect_eq('nodes still held by the killed workers', 0, held_pending(name, victims))
    expect_same_state(lite, name)
    expect_rc(run(['verify', '--db', uri, '--quiet'], env=env()), 0, 'verify after')
    print('    killed %r holding %d pending nodes' % ([v.pid for v in victims],
                                                     pending_held[0]))


# the local copy is quick: on a loaded machine two workers holding pending
# nodes at once are seen less often (3 voids in a row once, beside a bench)
@(lambda fn: tmtest.again_if_void(fn, tries=6))
def check_kill_local(work):
    src = os.path.join(work, 'ksrc')
    make_tree(src, folders=6, files=400)
    os.mkdir(os.path.join(work, 'kdst_lite'))
    lite = lite_reference(work, 'kllite', src, os.path.join(work, 'kdst_lite'))
    name, uri = new_db()
    dst = os.path.join(work, 'kdst_pg')
    os.mkdir(dst)
    discover_pg(uri, src, dst, 'kill local')
    victims, pending_held = [], []

    kill_two = kill_two_holding(lambda ps: held_pending(name, ps), victims,
                                pending_held)

    _, _, res = copy_together(name, uri, n_workers=4, lease=2,
                              copy_args=['--tps-limit', '50', '--workers', '2'],
                              worker_args=['--workers', '2'], during=kill_two)
    if not pending_held or not pending_held[0]:
        tmtest.void('no killed worker held a pending node')
    expect_all_ok(res, skip=victims)
    expect_eq('nodes still held by the killed workers', 0, held_pending(name, victims))
    expect_same_state(lite, name)
    expect_eq('rsync -n -i --delete -c of the destination (no temporary left)', [],
              rsync_diff(src, dst))


@tmtest.again_if_void
def check_freeze(work, inside=False):
    """inside: frozen inside a transaction (its row locks would stop the
    others: the server ends its session once the lease is over)."""
    tag = 'fi' if inside else 'f'
    lite = lite_reference(work, tag + 'lite', *sim_pair(work, tag + 'lite', 0, BIG))
    name, uri = new_db()
    # slow storages: the workers that take the frozen one's nodes over are
    # still copying them when it wakes up and commits what it had
    discover_pg(uri, *sim_pair(work, tag + 'pg', 150, BIG), tag='freeze')
    state = {}

    def freeze(coord, workers):
        victim = workers[0]
        mine = ("SELECT s.id FROM src_nodes s JOIN leases l ON l.id = s.lease_id"
                " WHERE l.pid = %d AND s.copy_status = 'pending' ORDER BY 1" % victim.pid)
        busy = ("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                " 'tm-victim' AND state %s" % ("= 'idle in transaction'" if inside
                                                 else "!= 'idle'"))
        # frozen between two transactions (one frozen inside a transaction
        # holds row locks: the server ends its session after the lease,
        # idle_in_transaction_session_timeout, and on waking it reconnects or fails), while
        # it holds pending nodes (a COMMIT it sent before the stop lands:
        # what it holds is read after a while)
        held = []
        for _ in range(400):
            if coord.poll() is not None:
                return
            time.sleep(0.05)
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.3)
            if (PG.rows(name, busy) == ['0']) != inside:
                held = PG.rows(name, mine)
                if held:
                    break
            victim.send_signal(signal.SIGCONT)
        state['held'] = len(held)
        if not held:
            return
        # until the others took every node it held (its leases expired)
        still = ("SELECT count(*) FROM src_nodes s JOIN leases l ON l.id = s.lease_id"
                 " WHERE l.pid = %d AND s.id IN (%s)" % (victim.pid, ','.join(held)))
        for _ in range(4000):
            if PG.rows(name, still) == ['0']:
                break
            time.sleep(0.01)
        state['taken'] = PG.rows(name, still) == ['0']
        victim.send_signal(signal.SIGCONT)
        state['victim'] = victim

    def during(coord, workers):
        try:
            freeze(coord, workers)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGCONT)

    _, _, res = copy_together(name, uri, n_workers=3, lease=2,
                              worker_args=['--workers', '8'], during=during,
                              victim_env={'PGAPPNAME': 'tm-victim'},
                              victim_args=['--workers', '8' if inside else '1'])
    if not state.get('held'):
        tmtest.void('the frozen worker held no pending node')
    if not state.get('taken'):
        fail('the others did not take the frozen worker\'s nodes')
    if inside:
        # its session was ended: on waking it connects again (db_pg.c),
        # does its cut transaction again and drops the outcomes of the
        # leases it lost, or fails if it cannot; the others finish
        expect_all_ok(res, skip=[state['victim']])
        rc, err = res[state['victim']][0], res[state['victim']][1]
        dropped = [ln for ln in err.splitlines() if 'outcomes dropped' in ln]
        if rc == 0 and (not dropped or ' 0 outcomes dropped' in dropped[-1]):
            fail('the worker frozen in a transaction went on as if its session '
                 'had not ended: %r' % err[-1000:])
        expect_same_state(lite, name)
        return
    expect_all_ok(res)
    err = res[state['victim']][1]
    dropped = [ln for ln in err.splitlines() if 'outcomes dropped' in ln]
    if not dropped or ' 0 outcomes dropped' in dropped[-1]:
        fail('the frozen worker dropped none of its late outcomes: %r' % err[-1000:])
    print('    frozen worker held %d nodes; %s' % (state['held'], dropped[-1]))
    expect_same_state(lite, name)
    expect_rc(run(['verify', '--db', uri, '--quiet'], env=env()), 0, 'verify after')


def check_verify(work):
    src = os.path.join(work, 'vsrc')
    make_tree(src, folders=100, files=4)
    name, uri = new_db()
    dst = os.path.join(work, 'vdst')
    os.mkdir(dst)
    discover_pg(uri, src, dst, 'verify')
    expect_rc(run(['copy', '--db', uri, '--yes', '--quiet'], env=env()), 0, 'copy')
    bad = sorted(['/d%02d/sub/f1.bin' % i for i in (3, 17, 81)] + ['/d52/f2.bin'])
    for p in bad:
        with open(dst + p, 'ab') as f:
            f.write(b'x')
    coord = popen(['verify', '--db', uri, '--quiet', '--tps-limit', '40', '--workers', '2'])
    procs = [coord]
    try:
        for _ in range(2400):
            if coord.poll() is not None or PG.rows(
                    name, "SELECT value FROM migration WHERE key = 'verify_run'") not in ([], ['']):
                break
            time.sleep(0.01)
        procs += [popen(['worker', '--db', uri, '--lease', '5', '--workers', '2'])
                  for _ in range(3)]
        res = wait_all(procs, 'verify with workers')
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if res[coord][0] != 3:
        fail('verify: expected exit 3 (mismatches), got %d: %s' % res[coord])
    for p in procs[1:]:
        if res[p][0] != 0:
            fail('a worker exited %d: %s' % res[p])
    found = PG.rows(name, "SELECT path FROM task_errors WHERE phase = 'verify' ORDER BY path")
    expect_eq('what verify found, each once', bad, found)
    expect_eq('nodes marked failed', bad, PG.rows(
        name, "SELECT path FROM src_nodes WHERE copy_status = 'failed' ORDER BY path"))
    pids = set(PG.rows(name, "SELECT DISTINCT pid FROM leases WHERE stage LIKE 'verify:%'"))
    if len(pids) < 2:  # the local folders go fast: the first worker may take them all
        fail('no worker checked a folder: %r' % pids)
    expect_eq('phase', ['copied'], PG.rows(name, "SELECT value FROM migration WHERE "
                                                 "key = 'phase'"))


DSRC_Q = ("SELECT path, type, size, mtime, traversal_status, copy_status,"
          " coalesce(conflict, ''), coalesce(error, ''), attempts FROM src_nodes"
          " ORDER BY path")
DDST_Q = ("SELECT d.path, d.type, d.size, d.mtime, d.traversal_status,"
          " coalesce(d.conflict, ''), coalesce(d.error, ''),"
          " coalesce(s.path, '') FROM dst_nodes d LEFT JOIN src_nodes s ON"
          " s.id = d.src_id ORDER BY d.path")
STATS_QS = [("SELECT depth, type, traversal_status, count, bytes FROM %s WHERE"
             " count != 0 ORDER BY 1, 2, 3" % t) for t in ('src_stats', 'dst_stats')]
RECOUNT_Q = [("SELECT depth, type, traversal_status, count(*) FROM %s GROUP BY 1, 2, 3"
              " ORDER BY 1, 2, 3" % t) for t in ('src_nodes', 'dst_nodes')]
STATSUM_Q = [("SELECT depth, type, traversal_status, sum(count) FROM %s GROUP BY"
              " 1, 2, 3 HAVING sum(count) != 0 ORDER BY 1, 2, 3" % t)
             for t in ('src_stats', 'dst_stats')]


def discover_together(name, uri, src, dst, n_workers=3, lease=30, disc_args=(),
                      worker_args=(), during=None, victim_args=None):
    """Starts `discover` on uri, then n_workers `worker` processes once the
    discovery is in progress; during(coord, workers) runs while they work.
    Returns (coord, workers, results)."""
    cfg = os.path.join(WORK[0], 'pg%d.yaml' % PG.made)
    # discovery by workers is asked for (--shared)
    coord = popen(['discover', '--db', uri, '--quiet', '--shared', '--config', cfg] +
                  list(disc_args) + [src, dst])
    procs = [coord]
    try:
        for _ in range(2400):
            if coord.poll() is not None:
                break
            try:
                if PG.rows(name, "SELECT count(*) FROM src_nodes WHERE depth > 0 AND"
                           " (SELECT value FROM migration WHERE key = 'phase') ="
                           " 'discovering'") not in ([], ['0']):
                    break
            except RuntimeError:
                pass  # the schema is not made yet
            time.sleep(0.01)
        if coord.poll() is not None:
            fail('the discovery ended before any worker could join: %s'
                 % coord.stderr.read().decode(errors='replace'))
        workers = [popen(['worker', '--db', uri, '--lease', str(lease)] +
                         list(victim_args if i == 0 and victim_args else worker_args))
                   for i in range(n_workers)]
        procs += workers
        if during:
            during(coord, workers)
        res = wait_all(procs, 'discovery with workers')
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return coord, workers, res


def expect_same_discovery(lite, name, uri, tag):
    """The PostgreSQL discovery, copied to SQLite by state-copy, has the
    node rows of the SQLite run; its stats agree with a recount."""
    # a name of its own: a void case run again (tmtest.again_if_void)
    # copies its state once more, and state-copy overwrites nothing
    back = os.path.join(tempfile.mkdtemp(prefix=tag + '-back.', dir=WORK[0]), 'back.db')
    expect_rc(run(['state-copy', uri, back], env=env()), 0, 'state-copy to SQLite')
    for what, q in (('src_nodes', DSRC_Q), ('dst_nodes', DDST_Q)):
        same_rows(what, pgserver.lite_rows(lite, q), pgserver.lite_rows(back, q))
    for q in STATS_QS + [STATS_Q, "SELECT count(*) FROM listing_pos"]:
        same_rows(q, pgserver.lite_rows(lite, q), pgserver.lite_rows(back, q))
    for q, q2 in zip(RECOUNT_Q, STATSUM_Q):
        expect_eq('stats against a recount (%s)' % q.split()[-9],
                  pgserver.lite_rows(back, q), pgserver.lite_rows(back, q2))
    expect_eq('phase', ['discovered'], PG.rows(name, "SELECT value FROM migration "
                                                 "WHERE key = 'phase'"))


def listers(name):
    """The processes that listed folders (their last snapshots' done)."""
    return set(PG.rows(name, "SELECT DISTINCT pid FROM queue_stats WHERE queue IN"
                       " ('src', 'dst') AND done > 0"))


@tmtest.again_if_void
def check_disc_sim(work):
    lite = os.path.join(work, 'dslite.db')
    expect_rc(run(['discover', '--db', lite, '--quiet'] +
                  list(sim_pair(work, 'dslite', 0, DSHAPE))), 0, 'discover (SQLite)')
    name, uri = new_db()
    # few listings in flight each, so that the workers, which start while
    # the discovery runs, find work on a loaded machine too
    src, dst = sim_pair(work, 'dspg', 50, DSHAPE)
    _, workers, res = discover_together(name, uri, src, dst, disc_args=['--workers', '1'],
                                        worker_args=['--workers', '2'])
    expect_all_ok(res)
    expect_none_dropped(workers, res)
    expect_same_discovery(lite, name, uri, 'ds')
    # made when the shared discovery started (store.c, CLAIM_INDEXES_SQL)
    expect_eq('the claims\' indexes', ['dst_nodes_frontier', 'dst_nodes_twin',
                                       'src_nodes_frontier'],
              PG.rows(name, "SELECT indexname FROM pg_indexes WHERE tablename IN "
                      "('src_nodes', 'dst_nodes') AND indexdef LIKE "
                      "'%traversal_status%' ORDER BY 1"))
    if len(listers(name)) < 3:
        tmtest.void('fewer than 3 processes listed folders: %r' % listers(name))


def make_deep(top, fan=6, depth=3, files=5):
    """A tree of fan ** depth folders at the bottom, files in each."""
    os.makedirs(top)
    level = [top]
    for _ in range(depth):
        nxt = []
        for d in level:
            for i in range(fan):
                c = os.path.join(d, 'd%d' % i)
                os.mkdir(c)
                nxt.append(c)
            for j in range(files):
                with open(os.path.join(d, 'f%d' % j), 'wb') as f:
                    f.write(os.urandom(11 * j + len(d)))
        level = nxt


@tmtest.again_if_void
def check_disc_local(work):
    src = os.path.join(work, 'dlsrc')
    make_deep(src, fan=7, depth=4, files=3)
    dst_lite, dst_pg = os.path.join(work, 'dldst_lite'), os.path.join(work, 'dldst_pg')
    # a destination half there: some files changed, some folders missing,
    # some extra; the same for both runs
    subprocess.run(['cp', '-a', src, dst_lite], check=True)
    rnd = random.Random(17)
    for root, dirs, fnames in os.walk(dst_lite):
        for fn in fnames:
            if rnd.random() < 0.2:
                with open(os.path.join(root, fn), 'ab') as f:
                    f.write(b'changed')
        if rnd.random() < 0.1:
            os.mkdir(os.path.join(root, 'extra'))
        for d in list(dirs):
            if rnd.random() < 0.1 and d != 'extra':
                subprocess.run(['rm', '-rf', os.path.join(root, d)], check=True)
                dirs.remove(d)
    subprocess.run(['cp', '-a', dst_lite, dst_pg], check=True)
    lite = os.path.join(work, 'dllite.db')
    expect_rc(run(['discover', '--db', lite, '--quiet', src, dst_lite]), 0,
              'discover (SQLite)')
    name, uri = new_db()
    _, workers, res = discover_together(name, uri, src, dst_pg, disc_args=['--workers', '1'],
                                        worker_args=['--workers', '2'])
    expect_all_ok(res)
    expect_none_dropped(workers, res)
    expect_same_discovery(lite, name, uri, 'dl')
    if len(listers(name)) < 3:
        tmtest.void('fewer than 3 processes listed folders: %r' % listers(name))


HELD_Q = ("SELECT '%s' || n.id FROM %s n JOIN leases l ON l.id = n.lease_id WHERE"
          " l.pid IN (%s) AND l.stage LIKE 'list:%%' AND n.traversal_status = 'pending'")


def held_folders(name, procs):
    pids = ','.join(str(p.pid) for p in procs)
    return (PG.rows(name, HELD_Q % ('s', 'src_nodes', pids)) +
            PG.rows(name, HELD_Q % ('d', 'dst_nodes', pids)))


@tmtest.again_if_void
def check_disc_kill(work):
    lite = os.path.join(work, 'dklite.db')
    expect_rc(run(['discover', '--db', lite, '--quiet'] +
                  list(sim_pair(work, 'dklite', 0, DSHAPE))), 0, 'discover (SQLite)')
    name, uri = new_db()
    src, dst = sim_pair(work, 'dkpg', 50, DSHAPE)
    victims, held = [], []

    kill_two = kill_two_holding(lambda ps: len(held_folders(name, ps)), victims, held)

    _, _, res = discover_together(name, uri, src, dst, n_workers=4, lease=2,
                                  disc_args=['--workers', '1'],
                                  worker_args=['--workers', '2'], during=kill_two)
    if not held or not held[0]:
        tmtest.void('the killed workers held no pending folder')
    for v in victims:
        if res[v][0] != -signal.SIGKILL:
            tmtest.void('a worker was not killed (exit %d)' % res[v][0])
    expect_all_ok(res, skip=victims)
    expect_eq('folders still pending', [], held_folders(name, victims))
    expect_same_discovery(lite, name, uri, 'dk')
    print('    killed %r holding %d pending folders' % ([v.pid for v in victims],
                                                       held[0]))


@tmtest.again_if_void
def check_disc_freeze(work):
    lite = os.path.join(work, 'dflite.db')
    # folders listed in pages of 4: the frozen worker wakes in the middle
    # of a listing, and its next pages are of folders the others finished
    shape = DSHAPE + ',page=4'
    expect_rc(run(['discover', '--db', lite, '--quiet'] +
                  list(sim_pair(work, 'dflite', 0, shape))), 0, 'discover (SQLite)')
    name, uri = new_db()
    src, dst = sim_pair(work, 'dfpg', 100, shape)
    state = {}

    def freeze(coord, workers):
        victim = workers[0]
        held = []
        for _ in range(400):
            if coord.poll() is not None:
                return
            time.sleep(0.05)
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.2)
            held = held_folders(name, [victim])
            if held:
                break
            victim.send_signal(signal.SIGCONT)
        state['held'] = len(held)
        state['victim'] = victim
        if not held:
            return
        # until the others listed every folder it held (its lease expired)
        ids = {'s': [h[1:] for h in held if h[0] == 's'] or ['0'],
               'd': [h[1:] for h in held if h[0] == 'd'] or ['0']}
        left = ("SELECT (SELECT count(*) FROM src_nodes WHERE traversal_status ="
                " 'pending' AND id IN (%s)) + (SELECT count(*) FROM dst_nodes WHERE"
                " traversal_status = 'pending' AND id IN (%s))"
                % (','.join(ids['s']), ','.join(ids['d'])))
        for _ in range(4000):
            if PG.rows(name, left) == ['0']:
                break
            time.sleep(0.01)
        state['taken'] = PG.rows(name, left) == ['0']

    def during(coord, workers):
        try:
            freeze(coord, workers)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGCONT)

    _, _, res = discover_together(name, uri, src, dst, n_workers=3, lease=2,
                                  disc_args=['--workers', '1'],
                                  worker_args=['--workers', '2'], during=during,
                                  victim_args=['--workers', '1'])
    if not state.get('held'):
        tmtest.void('the frozen worker held no pending folder')
    if not state.get('taken'):
        fail('the others did not list the frozen worker\'s folders')
    expect_all_ok(res)
    err = res[state['victim']][1]
    dropped = [ln for ln in err.splitlines() if 'outcomes dropped' in ln]
    if not dropped or ' 0 outcomes dropped' in dropped[-1]:
        fail('the frozen worker dropped none of its late pages: %r' % err[-1000:])
    print('    frozen worker held %d folders; %s' % (state['held'], dropped[-1]))
    expect_same_discovery(lite, name, uri, 'df')


def check_join_early(work):
    """A worker started as a discovery begins: the phase is set before the
    discovery says whether it is shared; the worker waits for that word
    instead of failing ('no copy or verify in progress')."""
    name, uri = new_db()
    src = os.path.join(work, 'jsrc')
    make_tree(src, folders=1, files=2)
    os.mkdir(os.path.join(work, 'jdst'))
    discover_pg(uri, src, os.path.join(work, 'jdst'), 'join early')
    # the moment between the two writes, held: a finished discovery's
    # phase set back, its word taken away
    PG.psql(name, "UPDATE migration SET value = 'discovering' WHERE key = 'phase';"
                  " DELETE FROM migration WHERE key = 'shared_discovery'")
    w = popen(['worker', '--db', uri])
    try:
        time.sleep(0.5)
        PG.psql(name, "INSERT INTO migration(key, value) VALUES ('shared_discovery', '1')")
        res = wait_all([w], 'a worker joining early')
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    expect_all_ok(res)
    expect_eq('phase', ['discovered'], PG.rows(name, "SELECT value FROM migration "
                                                 "WHERE key = 'phase'"))


def check_refusals(work):
    lite = os.path.join(work, 'r.db')
    cp = run(['worker', '--db', lite])
    expect_rc(cp, 2, 'worker on an SQLite file')
    if b'PostgreSQL' not in cp.stderr:
        fail('no word of PostgreSQL: ' + show(cp))
    name, uri = new_db()
    src = os.path.join(work, 'rsrc')
    make_tree(src, folders=1, files=2)
    os.mkdir(os.path.join(work, 'rdst'))
    discover_pg(uri, src, os.path.join(work, 'rdst'), 'refusal')
    cp = run(['worker', '--db', uri], env=env())
    expect_rc(cp, 2, 'worker with no copy in progress')
    if b'no copy or verify in progress' not in cp.stderr:
        fail('unclear message: ' + show(cp))
    # a phase left in progress by killed processes: status says that nobody
    # works on it (no live lease, no snapshot in the last 10 s) ...
    PG.psql(name, "UPDATE migration SET value = 'copying' WHERE key = 'phase';"
                  " DELETE FROM queue_stats")
    cp = run(['status', '--db', uri], env=env())
    expect_rc(cp, 0, 'status of an abandoned copy')
    if b'workers      none' not in cp.stdout:
        fail('status does not say that nobody works on the copy: ' + show(cp))
    # ... and does not while a lease is live
    PG.psql(name, "INSERT INTO leases(stage, worker, host, pid, expires) VALUES"
                  " ('copy:x', 'h:1:0', 'h', 1, 9000000000000)")
    cp = run(['status', '--db', uri], env=env())
    if b'workers      none' in cp.stdout:
        fail('status says nobody works while a lease is live: ' + show(cp))


def main():
    global PG
    tmtest.require_binary()
    R = tmtest.Runner('test_worker')
    try:
        PG = pgserver.PgServer()
    except (RuntimeError, OSError) as e:
        R.skip('every case', 'no PostgreSQL server: %s' % e)
        R.finish()
    work = tempfile.mkdtemp(prefix='tm-wtest-', dir='/tmp')
    os.chmod(work, 0o755)
    WORK[0] = work
    only = os.environ.get('TEST_WORKER_ONLY')  # development: the checks to run
    if only:
        check = R.check
        R.check = lambda label, *a: check(label, *a) if only in label else None
    try:
        R.check('sim pair, copy + 3 workers: the same state as SQLite', check_sim, work)
        R.check('local pair, copy + 3 workers: the same state, rsync agrees',
                check_local, work)
        R.check('kill -9 of two workers (sim): the rest finish, nothing lost',
                check_kill, work)
        R.check('kill -9 of two workers (local): no temporary left, rsync agrees',
                check_kill_local, work)
        R.check('a frozen worker\'s late outcomes are dropped', check_freeze, work)
        R.check('a worker frozen inside a transaction: the others finish',
                check_freeze, work, True)
        R.check('verify with workers: each mismatch found once', check_verify, work)
        R.check('discovery of a sim pair, discover + 3 workers: the same rows as SQLite',
                check_disc_sim, work)
        R.check('discovery of a local pair, discover + 3 workers: the same rows',
                check_disc_local, work)
        R.check('kill -9 of two workers during discovery: the rest finish, the same rows',
                check_disc_kill, work)
        R.check('a worker frozen during discovery past its lease changes nothing',
                check_disc_freeze, work)
        R.check('a worker started as the discovery begins waits for its word',
                check_join_early, work)
        R.check('worker on SQLite, and with nothing to join: exit 2', check_refusals,
                work)
    finally:
        PG.stop()
        subprocess.run(['rm', '-rf', work])
    R.finish()


if __name__ == '__main__':
    main()
