#!/usr/bin/env python3
"""Crash tests of `treemig discover`: kill -9 at random moments, resume,
and get exactly what an uninterrupted run gets.

Builds a large local tree pair (treegen.build_big_pair: about 230,000
nodes, made with hard links on a tmpfs when there is one), runs one
uninterrupted discovery as the reference, then, in a fresh state file,
starts discover and SIGKILLs it at random moments (seeded; the seed is
printed), resuming each time by running discover again (once through
`treemig resume --config FILE.yaml`), until a run exits 0. After every kill
the state must be consistent (statecheck.check_partial); at the end it must
equal the reference (statecheck.compare_with_reference).

The work redone after the kills is measured from the folders' access times
(statecheck.ListingProbe): the folders a run listed, against the listings
it committed. A last check kills discover in its first milliseconds (while
it creates the state file) and runs the same command again.

Run:  python3 tests/integration/test_crash_resume.py
      TREEMIG=/path/to/treemig        another binary
      TREEMIG_CRASH_KILLS=25          the long version (default 5 kills)
      TREEMIG_CRASH_SEED=1234         replay a seed
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import random
import shutil
import signal
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import expect      # noqa: E402
import statecheck  # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from test_pair import pair_counts  # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

WORKERS = 4
# What a killed run can lose (docs/internals.md "Durability"): the writer
# (src/store/writer.c) takes its whole queue, at most WRITER_QUEUE rows
# (WRITER_MAX_ROWS of src/engine/discover.c: submit waits above it), into
# its open transaction, which it commits once it holds TXN_ROWS rows
# (TM_WRITER_BATCH_ROWS of src/store/writer.h) or is 50 ms old. At a kill
# the open transaction holds at most TXN_ROWS - 1 + WRITER_QUEUE rows, a new
# queue of at most WRITER_QUEUE rows waits behind it, and each worker (2 x
# WORKERS) holds the folders it lists: two when it lists a pair (a folder
# and its destination twin, local trees); the template's folders hold <= 17.
WRITER_QUEUE, TXN_ROWS, FOLDER_MAX = 4096, 4096, 17
LOST_ROWS_MAX = (TXN_ROWS - 1) + 2 * WRITER_QUEUE + 2 * WORKERS * 2 * FOLDER_MAX


def engine_batch_sizes():
    """The engine's constants, read from its source: the bound above is only
    as good as their agreement (a change there must change docs/internals.md
    and this bound)."""
    import re
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
    out = {}
    for rel, name in (('src/store/writer.h', 'TM_WRITER_BATCH_ROWS'),
                      ('src/engine/discover.c', 'WRITER_MAX_ROWS')):
        with open(os.path.join(top, rel)) as f:
            m = re.search(r'#define\s+%s\s+(\d+)' % name, f.read())
        if not m:
            fail('%s: no #define %s' % (rel, name))
        out[name] = int(m.group(1))
    return out


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_crash_resume')
    R.check('the bound on lost rows uses the engine\'s batch sizes (%d-row transactions, '
            'a %d-row queue)' % (TXN_ROWS, WRITER_QUEUE),
            lambda: expect_eq('the engine\'s batch sizes',
                              {'TM_WRITER_BATCH_ROWS': TXN_ROWS, 'WRITER_MAX_ROWS': WRITER_QUEUE},
                              engine_batch_sizes()))
    seed = os.environ.get('TREEMIG_CRASH_SEED')
    seed = int(seed) if seed else random.SystemRandom().randrange(1 << 31)
    kills = int(os.environ.get('TREEMIG_CRASH_KILLS') or 5)
    print('seed %d, %d kills (replay with TREEMIG_CRASH_SEED=%d TREEMIG_CRASH_KILLS=%d)'
          % (seed, kills, seed, kills))
    if statecheck.sanitizer():
        print('binary built with the %s sanitizer: smaller tree' % statecheck.sanitizer())
    base = tempfile.mkdtemp(prefix='treemig-crash-', dir='/tmp')
    trees = treegen.scratch_dir('treemig-crash-trees-')
    try:
        run_all(R, base, trees, random.Random(seed), kills)
    finally:
        treegen.remove_tree(trees)
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def run_all(R, base, trees, rng, kills):
    copies = 100 if statecheck.slowdown() == 1 else 30
    t = time.time()
    src, dst = treegen.build_big_pair(os.path.join(trees, 'big'), copies=copies)
    print('built the tree pair in %.1fs under %s' % (time.time() - t, trees))
    ctx = {}
    probe = statecheck.ListingProbe(src, dst)

    def check_reference():
        # the access-time probe is armed: the run must list exactly the
        # folders it records as listed (never a destination-only folder)
        db = os.path.join(base, 'ref.db')
        probe.reset()
        t0 = time.monotonic()
        cp = tmtest.run(['discover', '--db', db, '--quiet', '--workers', str(WORKERS), src, dst])
        ctx['t_ref'] = time.monotonic() - t0
        expect_rc(cp, 0, 'uninterrupted discover')
        seen = probe.listed()
        ref = statecheck.Ref(db)
        ctx['ref'] = ref
        print('     reference: %d source and %d destination rows, %d folders listed, '
              'discover took %.2fs' % (len(ref.rows['src']), len(ref.rows['dst']),
                                       ref.n_listed, ctx['t_ref']))
        st = ref.status
        expect_eq('reference phase', 'discovered', st['phase'])
        # the local pair is listed in pairs (docs/internals.md): the kills
        # below land in pair listings
        pairs = pair_counts(db)
        if not pairs or pairs[0] == 0:
            fail('the reference listed no pair (pairs, fallbacks: %r): the kills would '
                 'miss them' % (pairs,))
        print('     pair listings: %d folders with their twin, %d one side at a time' % pairs)
        want = {'files': treegen.count_find(src, 'f'), 'folders': treegen.count_find(src, 'd')}
        expect_eq('source counts against find(1)', want, {k: st['src'][k] for k in want})
        # the destination-only folders are recorded, their contents are not
        want = {'files': count_dst_files(dst), 'folders': treegen.count_find(dst, 'd')}
        expect_eq('destination counts against find(1)', want, {k: st['dst'][k] for k in want})
        if not seen['src'] and not seen['dst']:
            print('     note: no folder access time changed (a noatime mount?): the redone '
                  'work cannot be measured here')
            return
        for side in ('src', 'dst'):
            extra = seen[side] - ref.listed[side]
            missing = ref.listed[side] - seen[side]
            if extra or missing:
                fail('%s: %d folders read that the state file does not record as listed '
                     '(e.g. %r), %d recorded as listed but not read (e.g. %r)'
                     % (side, len(extra), sorted(extra)[:5], len(missing), sorted(missing)[:5]))
        ctx['probe'] = True
        print('     the access-time probe saw exactly these %d listings' % ref.n_listed)
    R.check('reference: an uninterrupted discovery reads exactly the folders it records as '
            'listed (never a destination-only one)', check_reference)
    if 'ref' not in ctx:
        return
    ref = ctx['ref']
    use_probe = ctx.get('probe', False)

    def check_crashes():
        db = os.path.join(base, 'crash.db')
        yaml = db + '.yaml'
        runs = []
        resume_pending = True
        done = False
        for k in range(kills):
            if k == 0:
                args, how = ['discover', '--db', db, '--quiet', src, dst], 'discover SRC DST'
            elif resume_pending and os.path.exists(yaml):
                args, how = ['resume', '--config', yaml, '--quiet'], 'resume --config'
                resume_pending = False
            elif k % 2:
                args, how = ['discover', '--db', db, '--quiet'], 'discover'
            else:
                args, how = ['discover', '--db', db, '--quiet', src, dst], 'discover SRC DST'
            before = {s: statecheck.listed_folders(db, s) for s in ('src', 'dst')} \
                if os.path.exists(db) else {'src': set(), 'dst': set()}
            rows_before = statecheck.row_count(db)
            # a random moment within the first 60% of what is left (the
            # committed rows lag behind the listing, and a resume is quicker
            # than its share of a full run)
            remaining = ctx['t_ref'] * max(0.05, 1 - rows_before / ref.total_rows)
            delay = rng.uniform(0, 0.6 * remaining)
            if use_probe:
                probe.reset()
            p = statecheck.Proc(args)
            try:
                t0 = p.started
                if k == 0:
                    # not before the migration is recorded: a kill in the first
                    # milliseconds is the last check's business
                    if statecheck.wait_until(p, lambda: statecheck.phase_of(db) is not None,
                                             step=0.001):
                        t0 = time.monotonic()
                while time.monotonic() < t0 + delay and p.poll() is None:
                    time.sleep(0.001)
                sent = p.signal(signal.SIGKILL)
                rc = p.wait()
            finally:
                p.close()
            run = {'how': how, 'delay': delay, 'rc': rc, 'rows': (rows_before,
                                                                  statecheck.row_count(db))}
            if rc not in (0, -signal.SIGKILL) or (rc == -signal.SIGKILL and not sent):
                fail('run %d (%s): exit %r: %s' % (k + 1, how, rc, p.stderr()[-500:]))
            run['mid'] = rc == -signal.SIGKILL
            after = {s: statecheck.listed_folders(db, s) for s in ('src', 'dst')}
            run['committed'] = sum(len(after[s] - before[s]) for s in after)
            if use_probe:
                seen = probe.listed()
                again = {s: seen[s] & before[s] for s in seen}
                if again['src'] or again['dst']:
                    fail('run %d (%s) listed again %d folders whose listing an earlier run '
                         'committed, e.g. %r' % (k + 1, how, len(again['src']) + len(again['dst']),
                                                 sorted(again['src'] | again['dst'])[:5]))
                lost = {s: seen[s] - after[s] for s in seen}
                run['listed'] = len(seen['src']) + len(seen['dst'])
                run['lost'] = len(lost['src']) + len(lost['dst'])
                run['lost_rows'] = sum(ref.nkids[s].get(p_, 0) for s in lost for p_ in lost[s])
            runs.append(run)
            print('     run %d (%s): %s after %.3fs; rows %d -> %d of %d; folder listings '
                  'committed %d%s' % (
                      k + 1, how, 'killed' if run['mid'] else 'had ended (exit 0)', delay,
                      run['rows'][0], run['rows'][1], ref.total_rows, run['committed'],
                      '' if not use_probe else ', listed %d, lost %d (%d rows)'
                      % (run['listed'], run['lost'], run['lost_rows'])))
            if run['mid']:
                statecheck.check_partial(db, ref)
            else:
                done = True
                break
        if not done:
            args = ['discover', '--db', db, '--quiet']
            how = 'discover'
            if resume_pending and os.path.exists(yaml):
                args, how = ['resume', '--config', yaml, '--quiet'], 'resume --config'
                resume_pending = False
            before = {s: statecheck.listed_folders(db, s) for s in ('src', 'dst')}
            if use_probe:
                probe.reset()
            cp = tmtest.run(args)
            expect_rc(cp, 0, 'the last resume (%s)' % how)
            after = {s: statecheck.listed_folders(db, s) for s in ('src', 'dst')}
            run = {'how': how, 'mid': False, 'rc': 0,
                   'committed': sum(len(after[s] - before[s]) for s in after)}
            if use_probe:
                seen = probe.listed()
                run['listed'] = len(seen['src']) + len(seen['dst'])
                run['lost'] = run['lost_rows'] = 0
                extra = {s: seen[s] - (after[s] - before[s]) for s in seen}
                if extra['src'] or extra['dst']:
                    fail('the last run (%s) listed %d folders it did not commit or that were '
                         'committed before, e.g. %r' % (how, len(extra['src']) + len(extra['dst']),
                                                        sorted(extra['src'] | extra['dst'])[:5]))
            runs.append(run)
            print('     run %d (%s): completed; folder listings committed %d'
                  % (len(runs), how, run['committed']))
        if resume_pending:
            cp = tmtest.run(['resume', '--config', yaml, '--quiet'])
            expect_rc(cp, 0, 'resume --config on the complete migration')
        statecheck.compare_with_reference(db, ref)
        statecheck.integrity(db)
        statecheck.yaml_vs_db(yaml, db)
        expect_eq('phase in the YAML file', 'discovered', statecheck.read_yaml(yaml)['phase'])
        expect_eq('folder listings committed over all runs', ref.n_listed,
                  sum(r['committed'] for r in runs))
        mid = sum(1 for r in runs if r['mid'])
        print('     %d runs, %d kills, %d landed mid-run; %d folders to list (%d rows)'
              % (len(runs), min(kills, len(runs)), mid, ref.n_listed, ref.total_rows))
        if use_probe:
            listings = sum(r['listed'] for r in runs)
            redo = sum(r['lost'] for r in runs)
            redo_rows = sum(r['lost_rows'] for r in runs)
            print('     redone work: %d folder listings in all for %d folders: %d redone '
                  '(%.2f%%), %d rows; per kill: %s'
                  % (listings, ref.n_listed, redo, 100.0 * redo / ref.n_listed, redo_rows,
                     ', '.join('%d' % r['lost'] for r in runs if r['mid']) or '-'))
            expect_eq('listings over all runs - redone listings', ref.n_listed, listings - redo)
            worst = max([r['lost_rows'] for r in runs] or [0])
            print('     most rows a kill lost: %d (bound: %d)' % (worst, LOST_ROWS_MAX))
            if worst > LOST_ROWS_MAX:
                fail('a kill lost %d listed rows, more than the writer may hold (%d: '
                     'transactions of %d rows, a queue of %d)'
                     % (worst, LOST_ROWS_MAX, TXN_ROWS, WRITER_QUEUE))
        left = statecheck.temp_leftovers(base)
        if left:
            print('     note: temporary YAML files left by killed runs: %r' % left)
        if mid == 0:
            raise tmtest.Skip('no kill landed mid-run (the machine is too fast for the tree)')
    R.check('crash: SIGKILL at random moments, resume each time; the result equals the '
            'reference', check_crashes)

    run_early_kills(R, base)


def count_dst_files(dst):
    """Files of the destination outside its destination-only folders (which
    discovery records but never lists)."""
    import subprocess
    out = subprocess.run([b'find', os.fsencode(dst), b'-mindepth', b'1', b'(', b'-name',
                          b'only_dst', b'-o', b'-name', b'extra_dst', b')', b'-prune', b'-o',
                          b'-type', b'f', b'-printf', b'.'], stdout=subprocess.PIPE,
                         check=True).stdout
    return len(out)


def run_early_kills(R, base):
    """SIGKILL in the first milliseconds, when the state file is being
    created, then the same command again: it must complete."""
    src, dst = treegen.build_exclude_pair(os.path.join(base, 'small'))
    exp = expect.expected(src, dst)

    def check_early():
        work = os.path.join(base, 'early')
        os.makedirs(work)
        t0 = time.monotonic()
        cp = tmtest.run(['discover', '--db', os.path.join(work, 'timing.db'), '--quiet', src, dst])
        full = time.monotonic() - t0
        expect_rc(cp, 0, 'discover of the small pair')
        steps = 48
        outcomes = {}
        bad = []
        for i in range(steps):
            d = os.path.join(work, 'k%02d' % i)
            os.mkdir(d)
            db = os.path.join(d, 'state.db')
            args = ['discover', '--db', db, '--quiet', src, dst]
            delay = full * i / steps
            p = statecheck.Proc(args)
            try:
                while time.monotonic() < p.started + delay and p.poll() is None:
                    time.sleep(0.0002)
                p.signal(signal.SIGKILL)
                rc = p.wait()
            finally:
                p.close()
            if not os.path.exists(db):
                state = 'no state file'
            elif os.path.getsize(db) == 0:
                state = 'empty state file'
            elif statecheck.phase_of(db) is None:
                state = 'state file without a migration'
            elif rc == 0:
                state = 'complete'
            else:
                state = 'migration recorded, ' + statecheck.phase_of(db)
            outcomes[state] = outcomes.get(state, 0) + 1
            cp = tmtest.run(args)
            msg = cp.stderr.decode('utf-8', 'replace').strip().splitlines()
            if cp.returncode != 0:
                bad.append('killed after %.1f ms (%s): the same command then exits %d: %s'
                           % (delay * 1000, state, cp.returncode, msg[0] if msg else ''))
                continue
            try:
                tmtest.compare_status(exp['status'], statecheck.status_counts(db),
                                      exp['status_optional'])
            except tmtest.CheckFailed as e:
                bad.append('killed after %.1f ms (%s): wrong result: %s'
                           % (delay * 1000, state, str(e)[:300]))
        print('     %d kills over the first %.0f ms of a %.0f ms run: %s' % (
            steps, full * 1000, full * 1000,
            ', '.join('%s: %d' % kv for kv in sorted(outcomes.items()))))
        left = [n for i in range(steps) for n in statecheck.temp_leftovers(
            os.path.join(work, 'k%02d' % i))]
        if left:
            print('     note: %d temporary YAML files left behind by killed runs, never '
                  'removed, e.g. %r' % (len(left), left[:3]))
        if bad:
            fail('%d of %d early kills left a state file the same command cannot resume:\n    %s'
                 % (len(bad), steps, '\n    '.join(bad[:12])))
    R.check('crash: SIGKILL while the state file is created; the same command resumes',
            check_early)


if __name__ == '__main__':
    main()
