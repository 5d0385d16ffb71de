#!/usr/bin/env python3
"""Integration tests of the migration's YAML file and `treemig resume`.

After a complete discovery and after an interrupted one (SIGINT: exit 4,
phase suspended) the YAML file parses (statecheck.parse_yaml, a parser of
the subset treemig writes), matches the state file's migration table, has
mode 0600, and no temporary file is left. `--config PATH` puts it
elsewhere. `treemig resume --config FILE` continues an interrupted
discovery from the YAML file alone, from another working directory, and
reaches the result of an uninterrupted run. Broken, foreign, newer or
mismatching YAML files are refused with a message, and neither the YAML
file nor the state file changes.

Run:  python3 tests/integration/test_yaml.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import shutil
import signal
import stat
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statecheck  # noqa: E402
import tmtest      # noqa: E402
import treegen     # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

# name globs, a path glob that excludes one copy, and globs that need
# escaping in YAML (they match nothing)
EXCLUDES = ['f15', '/g00/c001', 'we"ird\\name*', 'caf\u00e9 \u2603*', "it's: [x]#"]


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_yaml')
    base = tempfile.mkdtemp(prefix='treemig-yaml-', dir='/tmp')
    trees = treegen.scratch_dir('treemig-yaml-trees-')
    try:
        run_all(R, base, trees)
    finally:
        treegen.remove_tree(trees)
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def snapshot(paths):
    return {p: statecheck.file_hash(p) for p in paths}


def expect_unchanged(before, what):
    for p, h in before.items():
        now = statecheck.file_hash(p)
        if now != h:
            fail('%s: %s was %s' % (what, p, 'created' if h is None else
                                     'removed' if now is None else 'changed'))


def check_file_mode(path):
    m = stat.S_IMODE(os.stat(path).st_mode)
    if m != 0o600:
        fail('%s has mode %o, expected 600' % (path, m))


def run_all(R, base, trees):
    slow = statecheck.slowdown()
    src, dst = (os.fsdecode(p) for p in treegen.build_big_pair(
        os.path.join(trees, 'big'), copies=50 if slow == 1 else 15))
    ex_args = []
    for g in EXCLUDES:
        ex_args += ['--exclude', g]
    ctx = {}
    j = os.path.join

    # ---- a complete discovery: the reference ---------------------------
    def check_complete():
        d = j(base, 'complete')
        os.mkdir(d)
        db = j(d, 'state.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet'] + ex_args + [src, dst])
        expect_rc(cp, 0, 'discover with excludes')
        ctx['ref'] = statecheck.Ref(db)
        y = statecheck.yaml_vs_db(db + '.yaml', db)
        expect_eq('phase', 'discovered', y['phase'])
        expect_eq('excludes in the YAML file, as given', EXCLUDES, y['options']['excludes'])
        expect_eq('source', os.fsdecode(src), y['source'])
        if 'suspended_from' in y:
            fail('a complete discovery has suspended_from %r' % y['suspended_from'])
        if not isinstance(y['migration'].get('updated'), str):
            fail('migration.updated missing: %r' % y['migration'])
        check_file_mode(db + '.yaml')
        expect_eq('temporary files left', [], statecheck.temp_leftovers(d))
        m = tmtest.migration(db)
        expect_eq('the config key of the migration table', os.path.realpath(db + '.yaml'),
                  m.get('config'))
        st = ctx['ref'].status
        if not st['src']['excluded']:
            fail('the excludes excluded nothing: %r' % st['src'])
    R.check('complete: the YAML file matches the migration table, mode 0600, no temp files',
            check_complete)
    if 'ref' not in ctx:
        return
    ref = ctx['ref']

    # ---- an interrupted discovery, relative paths, resumed elsewhere -----
    def interrupted(name, cwd, rel_db, fraction=0.3):
        """discover from cwd with relative paths, SIGINT once a fraction of
        the rows is committed. Returns the absolute state file path."""
        os.makedirs(j(cwd, os.path.dirname(rel_db)), exist_ok=True)
        db = j(cwd, rel_db)
        args = (['discover', '--db', rel_db] + ex_args +
                [os.path.relpath(src, cwd), os.path.relpath(dst, cwd)])
        p = statecheck.Proc(args, cwd=cwd)
        try:
            want = int(ref.total_rows * fraction)
            if not statecheck.wait_until(p, lambda: statecheck.row_count(db) >= want,
                                         timeout=120 * slow):
                p.wait()
                raise tmtest.Skip('%s: discover ended (exit %r) before it could be '
                                  'interrupted' % (name, p.rc))
            if not p.signal(signal.SIGINT):
                p.wait()
                raise tmtest.Skip('%s: discover ended (exit %r) just before the SIGINT'
                                  % (name, p.rc))
            rc = p.wait()
            err = p.stderr()
        finally:
            p.close()
        if rc != 4:
            fail('%s: SIGINT: expected exit 4, got %r: %s' % (name, rc, err[-500:]))
        return db

    def check_interrupted():
        cwd = j(base, 'run_a')
        db = interrupted('interrupted', cwd, j('rel', 'state.db'))
        ctx['int_db'] = db
        y = statecheck.yaml_vs_db(db + '.yaml', db)
        expect_eq('phase, suspended_from', ('suspended', 'discovering'),
                  (y['phase'], y.get('suspended_from')))
        expect_eq('database in the YAML file (absolute)', os.path.realpath(db), y['database'])
        expect_eq('source in the YAML file (made absolute)', os.fsdecode(src), y['source'])
        check_file_mode(db + '.yaml')
        expect_eq('temporary files left', [], statecheck.temp_leftovers(os.path.dirname(db)))
        statecheck.check_partial(db, ref)
    R.check('interrupted (SIGINT): exit 4, the YAML file says suspended and matches the '
            'migration table', check_interrupted)

    def check_resume_elsewhere():
        if 'int_db' not in ctx:
            raise tmtest.Skip('no interrupted migration')
        db = ctx['int_db']
        other = j(base, 'elsewhere', 'deeper')
        os.makedirs(other)
        rel_yaml = os.path.relpath(db + '.yaml', other)
        cp = tmtest.run(['resume', '--config', rel_yaml, '--quiet'], cwd=other)
        expect_rc(cp, 0, 'resume --config %s from another folder' % rel_yaml)
        statecheck.compare_with_reference(db, ref)
        y = statecheck.yaml_vs_db(db + '.yaml', db)
        expect_eq('phase', 'discovered', y['phase'])
        leftovers = [n for n in os.listdir(other)]
        if leftovers:
            fail('resume created files in its working folder: %r' % leftovers)
        cp = tmtest.run(['resume', '--config', db + '.yaml'], cwd=other)
        expect_rc(cp, 0, 'resume on a complete migration')
        if b'complete' not in cp.stderr:
            fail('resume on a complete migration does not say so: ' + tmtest.show(cp))
    R.check('resume --config (relative, from another folder) completes it with the result of '
            'an uninterrupted run', check_resume_elsewhere)

    # ---- --config PATH ---------------------------------------------------
    def check_config_elsewhere():
        d = j(base, 'cfg')
        ydir = j(base, 'cfg_yaml', 'sub')
        os.makedirs(d)
        os.makedirs(ydir)
        db = j(d, 'state.db')
        yaml = j(ydir, 'migration.yaml')
        p = statecheck.Proc(['discover', '--db', db, '--config', yaml, '--quiet'] + ex_args +
                            [src, dst])
        try:
            caught = statecheck.wait_until(
                p, lambda: statecheck.row_count(db) >= ref.total_rows // 4, timeout=120 * slow)
            if caught:
                p.signal(signal.SIGINT)
            rc = p.wait()
        finally:
            p.close()
        if rc not in (0, 4):
            fail('discover --config: exit %r' % rc)
        if os.path.exists(db + '.yaml'):
            fail('--config given, yet %s.yaml was written' % db)
        statecheck.yaml_vs_db(yaml, db)
        check_file_mode(yaml)
        expect_eq('the config key of the migration table', os.path.realpath(yaml),
                  tmtest.migration(db).get('config'))
        # a resume without --config finds the YAML file through the state file
        cp = tmtest.run(['discover', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'discover --db (resume) without --config')
        if os.path.exists(db + '.yaml'):
            fail('the resume wrote %s.yaml instead of the stored --config path' % db)
        y = statecheck.yaml_vs_db(yaml, db)
        expect_eq('phase', 'discovered', y['phase'])
        statecheck.compare_with_reference(db, ref)
        expect_eq('temporary files left', [], statecheck.temp_leftovers(ydir) +
                  statecheck.temp_leftovers(d))
        cp = tmtest.run(['resume', '--config', yaml, '--quiet'])
        expect_rc(cp, 0, 'resume --config on the complete migration')
    R.check('--config PATH: the YAML file is written there (and kept there on resume)',
            check_config_elsewhere)

    def check_config_missing_dir():
        d = j(base, 'cfg_missing')
        os.mkdir(d)
        db = j(d, 'state.db')
        yaml = j(base, 'no', 'such', 'dir', 'm.yaml')
        cp = tmtest.run(['discover', '--db', db, '--config', yaml, '--quiet'] + ex_args +
                        [src, dst])
        if cp.returncode == 0:
            fail('discover --config in a missing folder exits 0')
        err = cp.stderr.decode('utf-8', 'replace')
        if os.path.dirname(yaml) not in err:
            fail('the message does not name the YAML file: %r' % err)
        print('     -> exit %d: %s' % (cp.returncode, err.strip().splitlines()[0][:160]))
        if os.path.exists(j(base, 'no')):
            fail('a folder was created for the YAML file')
        # the state file is usable: a resume with a writable --config completes
        if os.path.exists(db):
            print('     note: the state file was left in phase %r' % statecheck.phase_of(db))
            good = j(d, 'good.yaml')
            cp = tmtest.run(['discover', '--db', db, '--config', good, '--quiet'])
            expect_rc(cp, 0, 'discover --db --config (a writable path) after the failure')
            statecheck.compare_with_reference(db, ref, keys=('phase', 'src', 'dst'))
            statecheck.yaml_vs_db(good, db)
    R.check('--config in a missing folder: refused with a message naming it; recoverable',
            check_config_missing_dir)

    # ---- non-UTF-8 paths -------------------------------------------------
    def check_non_utf8():
        d = os.fsencode(j(base, 'bin')) + b'/st\xffate'
        os.makedirs(d)
        s, t = treegen.build_exclude_pair(os.fsencode(j(base, 'bin')) + b'/tr\xfeees')
        db = d + b'/state.db'
        cp = tmtest.run([b'discover', b'--db', db, b'--quiet', s, t])
        expect_rc(cp, 0, 'discover with non-UTF-8 roots and state file path')
        with open(db + b'.yaml', 'rb') as f:
            text = f.read()
        for key in (b'source', b'destination', b'database'):
            if not any(line.startswith(key + b': !!binary ') for line in text.split(b'\n')):
                fail('%s is not written as !!binary:\n%s' % (key.decode(), text.decode('utf-8',
                                                                                  'replace')))
        y = statecheck.yaml_vs_db(db + b'.yaml', db)
        expect_eq('source bytes', s, os.fsencode(y['source']))
        expect_eq('database bytes', db, os.fsencode(y['database']))
        cp = tmtest.run([b'resume', b'--config', db + b'.yaml', b'--quiet'])
        expect_rc(cp, 0, 'resume --config of the non-UTF-8 YAML file')
    R.check('non-UTF-8 roots and state file path: written as !!binary, read back by resume',
            check_non_utf8)

    def check_copied_state_file():
        # a copy of a suspended state file (a backup, a dry run) resumed in
        # another folder must not rewrite the original's YAML file, which
        # would then name the copy and make `resume --config` continue it
        db = interrupted('original', j(base, 'orig'), 'state.db', fraction=0.2)
        other = j(base, 'copy')
        os.mkdir(other)
        copy = j(other, 'copy.db')
        shutil.copy2(db, copy)
        before = snapshot([db, db + '.yaml'])
        cp = tmtest.run(['discover', '--db', copy, '--quiet'])
        print('     discover --db COPY -> exit %d; files beside the copy: %r'
              % (cp.returncode, sorted(os.listdir(other))))
        y = statecheck.read_yaml(db + '.yaml')
        expect_eq('the original YAML file still names the original state file and its '
                  'phase', (os.path.realpath(db), 'suspended'), (y['database'], y['phase']))
        expect_unchanged(before, 'resuming a copy of the state file')
    R.check('resuming a copy of a state file leaves the original\'s YAML file alone',
            check_copied_state_file)

    # ---- refused YAML files ---------------------------------------------
    run_refusals(R, base, ref, interrupted)


def run_refusals(R, base, ref, interrupted):
    j = os.path.join
    ctx = {}

    def setup():
        ctx['db'] = interrupted('refusals', j(base, 'ref_run'), 'state.db', fraction=0.2)
        with open(ctx['db'] + '.yaml', 'rb') as f:
            ctx['yaml'] = f.read()
    R.check('refusals: an interrupted migration to work on', setup)
    if 'db' not in ctx:
        return
    db = ctx['db']
    good = ctx['yaml']
    d = os.path.dirname(db)
    other_id = b'0123456789abcdef0123456789abcdef'

    def variant(name, content):
        p = j(d, name)
        if content is not None:
            with open(p, 'wb') as f:
                f.write(content)
            os.chmod(p, 0o600)
        return p

    def replace_line(key, value):
        out = []
        for line in good.split(b'\n'):
            s = line.lstrip()
            if s.startswith(key + b':'):
                line = line[:len(line) - len(s)] + key + b': ' + value
            out.append(line)
        return b'\n'.join(out)

    cases = [
        ('missing YAML file', None, ['no such file', 'missing.yaml']),
        ('not valid YAML', b'treemig: 1\nmigration: [unclosed\n  id: "x"\nphase: "a"\n',
         ['not valid YAML', 'line']),
        ('YAML of another program', b'foo: 1\nbar:\n  - baz\n', ['not a treemig']),
        ('a newer format (treemig: 99)', replace_line(b'treemig', b'99'), ['newer']),
        ('another migration id', replace_line(b'id', b'"' + other_id + b'"'),
         ['another migration']),
        ('a missing database', replace_line(b'database', b'"%s"' % os.fsencode(j(d, 'nope.db'))),
         ['nope.db']),
        ('a field missing (no source)', b'\n'.join(
            l for l in good.split(b'\n') if not l.startswith(b'source:')), ['source']),
        ('workers out of range', replace_line(b'workers', b'0'), ['workers']),
        ('an empty file', b'', ['empty']),
    ]
    for what, content, words in cases:
        def check(what=what, content=content, words=words):
            name = 'missing.yaml' if content is None else 'case.yaml'
            p = variant(name, content)
            watch = [p, db, db + '.yaml', j(d, 'nope.db')]
            before = snapshot(watch)
            phase = statecheck.phase_of(db)
            cp = tmtest.run(['resume', '--config', p, '--quiet'])
            err = cp.stderr.decode('utf-8', 'replace')
            if cp.returncode == 0:
                fail('resume with %s exits 0: %s' % (what, tmtest.show(cp)))
            missing = [w for w in words if w.lower() not in err.lower()]
            if missing:
                fail('the message does not say %r: %r' % (missing, err))
            print('     -> exit %d: %s' % (cp.returncode, err.strip().splitlines()[0][:170]))
            expect_unchanged(before, 'resume with ' + what)
            expect_eq('phase', phase, statecheck.phase_of(db))
            if os.path.exists(j(d, 'nope.db.lock')):
                print('     note: a lock file nope.db.lock was created beside the missing '
                      'database')
                os.unlink(j(d, 'nope.db.lock'))
            if content is not None:
                os.unlink(p)
        R.check('resume refuses %s; YAML and state file unchanged' % what, check)

    def check_damaged_beside():
        yaml = db + '.yaml'
        for what, content in [('not valid YAML', b'treemig: 1\n  phase: [\n'),
                              ('YAML of another program', b'foo: 1\n'),
                              ('another migration id', replace_line(b'id', b'"%s"' % other_id)),
                              ('a newer format', replace_line(b'treemig', b'7'))]:
            with open(yaml, 'wb') as f:
                f.write(content)
            for args in (['discover', '--db', db, '--quiet'],
                         ['discover', '--db', db, '--quiet'] + sum(
                             (['--exclude', g] for g in EXCLUDES), []) +
                         [ref.migration['src'], ref.migration['dst']]):
                before = snapshot([yaml, db])
                cp = tmtest.run(args)
                if cp.returncode == 0 or not cp.stderr.strip():
                    fail('discover beside a YAML file with %s: expected a refusal, got %s'
                         % (what, tmtest.show(cp)))
                expect_unchanged(before, 'discover beside a YAML file with ' + what)
                expect_eq('phase', 'suspended', statecheck.phase_of(db))
            print('     %s -> exit %d: %s' % (what, cp.returncode, cp.stderr.decode(
                'utf-8', 'replace').strip().splitlines()[0][:150]))
        with open(yaml, 'wb') as f:
            f.write(good)
        os.chmod(yaml, 0o600)
        cp = tmtest.run(['discover', '--db', db, '--quiet'])
        expect_rc(cp, 0, 'discover once the YAML file is restored')
        statecheck.compare_with_reference(db, ref)
        statecheck.yaml_vs_db(yaml, db)
    R.check('discover (resume) refuses a damaged or foreign YAML file beside the state file '
            'and leaves both unchanged', check_damaged_beside)

    def check_other_config():
        # a new migration pointed at the YAML file of another one
        yaml = db + '.yaml'
        before = snapshot([yaml])
        nd = j(base, 'newmig')
        os.mkdir(nd)
        cp = tmtest.run(['discover', '--db', j(nd, 'new.db'), '--config', yaml, '--quiet',
                         ref.migration['src'], ref.migration['dst']])
        if cp.returncode == 0:
            fail('a new migration overwrote the YAML file of another: ' + tmtest.show(cp))
        expect_unchanged(before, 'discover --config naming the YAML file of another migration')
        print('     -> exit %d: %s' % (cp.returncode, cp.stderr.decode(
            'utf-8', 'replace').strip().splitlines()[0][:150]))
    R.check('a new migration refuses --config naming the YAML file of another one',
            check_other_config)


if __name__ == '__main__':
    main()
