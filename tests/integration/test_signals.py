#!/usr/bin/env python3
"""Signal tests of `treemig discover`: SIGINT and SIGTERM stop it cleanly
(exit 4, phase suspended, everything listed is committed) within the 2
seconds the issue asks for; two SIGINTs in quick succession quit at once
and leave a consistent state file; each time a resume reaches exactly the
result of an uninterrupted run.

The time from the signal to the exit is printed; it is asserted loosely
(<= 5 s, scaled for sanitizer builds) so that a loaded CI machine does not
fail the test. Signals go to the treemig process alone (it runs in its own
session), never to the test's process group.

Run:  python3 tests/integration/test_signals.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import shutil
import signal
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statecheck  # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

STOP_BOUND = 5.0       # seconds; the issue asks for 2
QUIT_BOUND = 2.0       # seconds after a second SIGINT


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_signals')
    base = tempfile.mkdtemp(prefix='treemig-signals-', dir='/tmp')
    trees = treegen.scratch_dir('treemig-signals-trees-')
    try:
        run_all(R, base, trees)
    finally:
        treegen.remove_tree(trees)
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def lock_holder_alive(db):
    try:
        with open(db + '.lock', 'rb') as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def run_all(R, base, trees):
    slow = statecheck.slowdown()
    copies = 80 if slow == 1 else 20
    t = time.time()
    src, dst = treegen.build_big_pair(os.path.join(trees, 'big'), copies=copies)
    print('built the tree pair in %.1fs under %s' % (time.time() - t, trees))
    if slow > 1:
        print('binary built with the %s sanitizer: time bounds x%d'
              % (statecheck.sanitizer(), slow))
    probe = statecheck.ListingProbe(src, dst)
    ctx = {}

    def check_reference():
        db = os.path.join(base, 'ref.db')
        probe.reset()
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'uninterrupted discover')
        ref = statecheck.Ref(db)
        seen = probe.listed()
        ctx['probe'] = all(seen[s] == ref.listed[s] for s in seen)
        ctx['ref'] = ref
        print('     reference: %d rows, %d folder listings; access-time probe %s'
              % (ref.total_rows, ref.n_listed, 'usable' if ctx['probe'] else
                 'not usable here (listed sets differ: %d/%d read)'
                 % (len(seen['src']) + len(seen['dst']), ref.n_listed)))
    R.check('reference: an uninterrupted discovery', check_reference)
    if 'ref' not in ctx:
        return
    ref = ctx['ref']

    def interrupt(name, sigs, gap=0.0, fraction=0.25, resume_with='discover'):
        """Starts a discovery, sends sigs (gap seconds apart) once a fraction
        of the rows is committed; returns (exit code, seconds from the first
        signal to the exit, seconds from the last one, db, stderr, probe)."""
        db = os.path.join(base, name + '.db')
        if ctx['probe']:
            probe.reset()
        p = statecheck.Proc(['discover', '--db', db, src, dst])
        try:
            want = int(ref.total_rows * fraction)
            caught = statecheck.wait_until(
                p, lambda: statecheck.row_count(db) >= want, timeout=120 * slow)
            if not caught:
                p.wait()
                raise tmtest.Skip('discover ended (exit %r) before %d rows were committed'
                                  % (p.rc, want))
            t0 = time.monotonic()
            for i, s in enumerate(sigs):
                if i:
                    time.sleep(gap)
                t_last = time.monotonic()
                if not p.signal(s):
                    if not i:
                        p.wait()
                        raise tmtest.Skip('discover ended (exit %r) just before the signal'
                                          % p.rc)
                    break
            rc = p.wait(timeout=60 * slow)
            t_end = time.monotonic()
            err = p.stderr()
        finally:
            p.close()
        seen = probe.listed() if ctx['probe'] else None
        return rc, t_end - t0, t_end - t_last, db, err, seen

    def lost_listings(db, seen):
        after = {s: statecheck.listed_folders(db, s) for s in ('src', 'dst')}
        return {s: seen[s] - after[s] for s in seen}

    def resume_and_compare(db, how):
        if how == 'resume':
            cp = tmtest.run(['resume', '--config', db + '.yaml', '--quiet'])
        else:
            cp = tmtest.run(['discover', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'resume after the interruption (%s)' % how)
        statecheck.compare_with_reference(db, ref)
        statecheck.yaml_vs_db(db + '.yaml', db)

    def graceful(sig, how):
        name = signal.Signals(sig).name
        rc, secs, _, db, err, seen = interrupt(name.lower(), [sig])
        print('     %s: exit %d, %.3fs after the signal (the issue asks for <= 2 s)'
              % (name, rc, secs))
        if rc != 4:
            fail('%s: expected exit 4, got %r; stderr: %s' % (name, rc, err[-800:]))
        if secs > STOP_BOUND * slow:
            fail('%s: exit took %.2fs after the signal (bound %.0fs)'
                 % (name, secs, STOP_BOUND * slow))
        if 'interrupted' not in err:
            fail('%s: stderr does not say it was interrupted: %r' % (name, err[-500:]))
        expect_eq('phase in the state file after %s' % name, 'suspended', statecheck.phase_of(db))
        expect_eq('status --json phase', 'suspended', tmtest.status_json(db)['phase'])
        y = statecheck.yaml_vs_db(db + '.yaml', db)
        expect_eq('YAML phase and suspended_from', ('suspended', 'discovering'),
                  (y.get('phase'), y.get('suspended_from')))
        expect_eq('YAML temporary files left', [], statecheck.temp_leftovers(base))
        holder = lock_holder_alive(db)
        if holder:
            fail('the lock file names the live process %d after the exit' % holder)
        n = statecheck.check_partial(db, ref)
        print('     %s: %d of %d rows committed, rounds %r' % (
            name, n, ref.total_rows, tmtest.status_json(db)['rounds']))
        if seen is not None:
            lost = lost_listings(db, seen)
            k = len(lost['src']) + len(lost['dst'])
            print('     %s: %d folders listed, %d of them not committed'
                  % (name, len(seen['src']) + len(seen['dst']), k))
            if k:
                fail('%s: %d folder listings were done but not committed (the stop must '
                     'commit everything done), e.g. %r'
                     % (name, k, sorted(lost['src'] | lost['dst'])[:5]))
        resume_and_compare(db, how)

    R.check('SIGINT: exit 4 soon after, phase suspended (state file and YAML), everything '
            'listed committed, resume gives the reference result',
            graceful, signal.SIGINT, 'discover')
    R.check('SIGTERM: the same; resumed with treemig resume --config',
            graceful, signal.SIGTERM, 'resume')

    def check_double():
        rc, secs, after_second, db, err, seen = interrupt(
            'double', [signal.SIGINT, signal.SIGINT], gap=0.02)
        print('     two SIGINTs 20 ms apart: exit %r, %.3fs after the first, %.3fs after the '
              'second' % (rc, secs, after_second))
        if rc != 4:
            fail('expected exit 4 after two SIGINTs, got %r; stderr: %s' % (rc, err[-800:]))
        if after_second > QUIT_BOUND * slow:
            fail('the second SIGINT did not quit at once: %.2fs' % after_second)
        statecheck.integrity(db)
        phase = statecheck.phase_of(db)
        print('     phase left: %s' % phase)
        if phase not in ('discovering', 'suspended'):
            fail('phase after two SIGINTs: %r' % phase)
        statecheck.read_yaml(db + '.yaml')
        n = statecheck.check_partial(db, ref)
        msg = '     %d of %d rows committed' % (n, ref.total_rows)
        if seen is not None:
            lost = lost_listings(db, seen)
            msg += '; %d folder listings lost (redone by the resume)' % (
                len(lost['src']) + len(lost['dst']))
        print(msg)
        resume_and_compare(db, 'discover')
    R.check('two SIGINTs: exit 4 at once, integrity_check ok, consistent, resume gives the '
            'reference result', check_double)


if __name__ == '__main__':
    main()
