#!/usr/bin/env python3
"""Integration test of the command line's one voice (issue 20): every
command's `--help`, `treemig help CMD`, the README's command list and
docs/review.md say the same options; option and command errors name what
was wrong once, with a suggestion; and `retry` keeps its promises (exit 2
with nothing to retry, the phase kept; what still fails is named).

The man pages and the bash completion are checked against --help by
tests/install; this test covers the README and the behaviour.

Run:  python3 tests/integration/test_cli_voice.py
      (TREEMIG=/path/to/treemig to test another binary)
Prints one line per check and `N passed, M failed`; exits 0 when all pass.
"""

import os
import re
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True   # keep tests/integration clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def out(cp):
    return cp.stdout.decode('utf-8', 'replace')


def err(cp):
    return cp.stderr.decode('utf-8', 'replace')


def commands():
    """The commands `treemig --help` lists."""
    cp = tmtest.run(['--help'])
    expect_rc(cp, 0, 'treemig --help')
    block = out(cp).split('commands:\n', 1)[1].split('\n\n', 1)[0]
    cmds = [line.split()[0] for line in block.splitlines() if line.startswith('  ')]
    if len(cmds) < 10:
        fail('found only %d commands in treemig --help' % len(cmds))
    return cmds


def help_options(cmd):
    """The long options of the options: section of `treemig CMD --help`."""
    cp = tmtest.run([cmd, '--help'])
    expect_rc(cp, 0, 'treemig %s --help' % cmd)
    text = out(cp)
    if 'options:\n' not in text:
        fail('no options: section in treemig %s --help' % cmd)
    opts = set()
    for line in text.split('options:\n', 1)[1].splitlines():
        m = re.match(r'^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)', line)
        if m:
            opts.add(m.group(1))
    return opts


def readme_synopsis():
    """{command: set of long options} from the README's block under
    '## Commands', with [STORAGE OPTIONS] and [LOG OPTIONS] expanded from
    the groups the block defines after it."""
    text = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    block = text.split('## Commands\n', 1)[1].split('```\n', 2)[1]
    groups = {}
    syn = {}
    cur = None
    group = None
    for line in block.splitlines():
        m = re.match(r'^([A-Z ]+OPTIONS) \(', line)
        if m:
            group = m.group(1)
            groups[group] = set()
            cur = None
            continue
        if group:
            groups[group] |= set(re.findall(r'--[a-z][a-z0-9-]*', line))
            continue
        if line.startswith('treemig '):
            # a line may hold several synopses ("treemig a ...   treemig b")
            parts = re.split(r'\s{2,}(?=treemig )', line)
            for part in parts:
                words = part.split()
                cur = words[1] if len(words) > 1 else None
                if cur and not cur.startswith('-') and cur != 'COMMAND':
                    syn.setdefault(cur, set())
                    syn[cur] |= set(re.findall(r'--[a-z][a-z0-9-]*', part))
                    syn[cur] |= {'[%s]' % g for g in ('STORAGE OPTIONS', 'LOG OPTIONS')
                                 if '[%s]' % g in part}
        elif line.startswith(' ') and cur:
            syn[cur] |= set(re.findall(r'--[a-z][a-z0-9-]*', line))
            syn[cur] |= {'[%s]' % g for g in ('STORAGE OPTIONS', 'LOG OPTIONS')
                         if '[%s]' % g in line}
    if 'STORAGE OPTIONS' not in groups or 'LOG OPTIONS' not in groups:
        fail('the README defines no STORAGE OPTIONS or LOG OPTIONS group: %r'
             % sorted(groups))
    res = {}
    for cmd, items in syn.items():
        s = set()
        for i in items:
            if i.startswith('['):
                s |= groups[i[1:-1]]
            else:
                s.add(i)
        res[cmd] = s
    return res


def option_accepted(cmd, opt):
    """Whether `treemig CMD` knows the long option opt (OPT=1 with --help
    never runs anything: a value is refused or the help is printed)."""
    cp = tmtest.run([cmd, opt + '=1', '--help'])
    return 'unrecognized option' not in err(cp)


def main():
    tmtest.require_binary()
    R = tmtest.Runner('test_cli_voice')
    base = tempfile.mkdtemp(prefix='treemig-voice-')
    try:
        checks(R, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


def checks(R, base):
    cmds = commands()

    def check_help_same():
        for cmd in cmds:
            a = tmtest.run(['help', cmd])
            b = tmtest.run([cmd, '--help'])
            expect_rc(a, 0, 'treemig help %s' % cmd)
            expect_rc(b, 0, 'treemig %s --help' % cmd)
            expect_eq('treemig help %s is treemig %s --help' % (cmd, cmd),
                      out(b), out(a))
            if not out(a).startswith('usage: treemig %s' % cmd):
                fail('treemig help %s does not start with its usage: %r'
                     % (cmd, out(a)[:80]))
    R.check('treemig help CMD prints CMD --help for every command (help help '
            'included)', check_help_same)

    def check_exit_codes():
        missing = [c for c in cmds if 'exit codes:' not in out(tmtest.run([c, '--help']))]
        expect_eq('commands whose --help has no exit codes', [], missing)
    R.check('every --help says its exit codes', check_exit_codes)

    def check_readme():
        syn = readme_synopsis()
        problems = []
        for cmd in cmds:
            if cmd == 'help':
                continue
            if cmd not in syn:
                problems.append('%s: not in the README command list' % cmd)
                continue
            have = help_options(cmd) - {'--help'}
            if have - syn[cmd]:
                problems.append('%s: in --help, not in the README: %s'
                                % (cmd, sorted(have - syn[cmd])))
            if syn[cmd] - have:
                problems.append('%s: in the README, not in --help: %s'
                                % (cmd, sorted(syn[cmd] - have)))
        for cmd in syn:
            if cmd not in cmds:
                problems.append('%s: in the README, not a command' % cmd)
        if problems:
            fail('the README command list and --help differ:\n    '
                 + '\n    '.join(problems))
    R.check("README's command list names exactly each command's --help options",
            check_readme)

    def check_accepted():
        refused = []
        for cmd in cmds:
            if cmd == 'help':
                continue
            for opt in sorted(help_options(cmd)):
                if not option_accepted(cmd, opt):
                    refused.append('%s %s' % (cmd, opt))
        expect_eq('options a --help documents but its command refuses', [], refused)
        # each option the README speaks of is taken by some command
        text = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
        mentioned = set(re.findall(r'`(--[a-z][a-z0-9-]*)', text))
        known = set()
        for cmd in cmds:
            known |= help_options(cmd)
        expect_eq('options the README speaks of that no command documents', [],
                  sorted(mentioned - known - {'--version'}))
    R.check('every option a --help or the README documents is accepted',
            check_accepted)

    def check_review_kinds():
        text = out(tmtest.run(['review', '--help']))
        block = text.split('KIND is one of\n', 1)[1]
        kinds = []
        for line in block.splitlines():
            m = re.match(r'^  ([a-z]+)\s{2,}', line)
            if m:
                kinds.append(m.group(1))
            elif not line.startswith('    '):
                break
        if 'skipped' not in kinds or 'all' not in kinds:
            fail('cannot read the kinds of review --help: %r' % kinds)
        doc = open(os.path.join(ROOT, 'docs', 'review.md'), encoding='utf-8').read()
        if '| KIND |' not in doc:
            fail('docs/review.md has no table of the KINDs')
        kt = doc.split('| KIND |', 1)[1].split('\n\n', 1)[0]
        table = set(re.findall(r'^\| `([a-z]+)` \|', kt, re.M))
        expect_eq('kinds of review --help missing from the table of docs/review.md',
                  [], [k for k in kinds if k not in table])
        expect_eq('kinds of docs/review.md that review --help does not list', [],
                  sorted(table - set(kinds)))
    R.check('docs/review.md documents exactly the kinds of review --help',
            check_review_kinds)

    def one_error(cp, what, want):
        """cp refused with exit 2, one message line naming want, and the
        hint."""
        expect_rc(cp, 2, what)
        lines = err(cp).splitlines()
        if len(lines) != 2 or not lines[1].startswith('Try '):
            fail('%s: expected one message and the hint, got %r' % (what, lines))
        if lines[0] != want:
            fail('%s: message' % what, want, lines[0])

    def check_option_errors():
        one_error(tmtest.run(['copy', '--bogus']), 'copy --bogus',
                  "treemig copy: unrecognized option '--bogus'")
        one_error(tmtest.run(['copy', '--reties', '3']), 'copy --reties',
                  "treemig copy: unrecognized option '--reties'; did you mean "
                  "'--retries'?")
        one_error(tmtest.run(['review', '--lsit', 'missing']), 'review --lsit',
                  "treemig review: unrecognized option '--lsit'; did you mean "
                  "'--list'?")
        one_error(tmtest.run(['status', '--db']), 'status --db',
                  "treemig status: option '--db' needs a value")
        one_error(tmtest.run(['copy', '--quiet=yes']), 'copy --quiet=yes',
                  "treemig copy: option '--quiet' takes no value")
        one_error(tmtest.run(['copy', '-Z']), 'copy -Z',
                  "treemig copy: unrecognized option '-Z'")
        one_error(tmtest.run(['discover', '-o']), 'discover -o',
                  "treemig discover: option '-o' needs a value")
        one_error(tmtest.run(['verify', '--yes']), 'verify --yes',
                  "treemig verify: unrecognized option '--yes'")
        one_error(tmtest.run(['copy', '--checksum']), 'copy --checksum',
                  "treemig copy: unrecognized option '--checksum'")
        one_error(tmtest.run(['reveiw']), 'reveiw',
                  "treemig: no such command 'reveiw'; did you mean 'review'?")
        one_error(tmtest.run(['help', 'stauts']), 'help stauts',
                  "treemig: no such command 'stauts'; did you mean 'status'?")
        one_error(tmtest.run(['frobnicate']), 'frobnicate',
                  "treemig: no such command 'frobnicate'")
    R.check('a bad option or command: one line naming it, one prefix, a '
            'suggestion for a misspelling', check_option_errors)

    def check_no_state_file():
        d = os.path.join(base, 'empty')
        os.mkdir(d)
        for cmd in ('status', 'review', 'copy', 'verify', 'retry'):
            cp = tmtest.run([cmd], cwd=d)
            expect_rc(cp, 2, '%s without a state file' % cmd)
            e = err(cp)
            if os.path.join(d, 'treemig.db') not in e or '--db' not in e:
                fail('%s: the message does not say where it looked and --db: %r'
                     % (cmd, e))
    R.check('no state file: the message says the full path and --db',
            check_no_state_file)

    def check_verify_retries():
        src = os.path.join(base, 'src')
        dst = os.path.join(base, 'dst')
        db = os.path.join(base, 'v.db')
        os.makedirs(os.path.join(src, 'a'))
        os.mkdir(dst)
        for i in range(5):
            with open(os.path.join(src, 'a', 'f%d' % i), 'w') as f:
                f.write('x' * i)
        expect_rc(tmtest.run(['discover', '--db', db, '--quiet', src, dst]), 0, 'discover')
        expect_rc(tmtest.run(['copy', '--db', db, '--quiet', '--yes']), 0, 'copy')
        one_error(tmtest.run(['verify', '--db', db, '--retries', 'x']),
                  'verify --retries x',
                  "treemig verify: --retries takes a whole number from 0 to 100, "
                  "not 'x'")
        expect_rc(tmtest.run(['verify', '--db', db, '--quiet', '--retries', '0']),
                  0, 'verify --retries 0')
        expect_eq('phase after verify', 'verified', tmtest.migration(db)['phase'])
        # nothing failed: retry refuses (exit 2) and the phase stays verified
        cp = tmtest.run(['retry', '--db', db, '--quiet'])
        expect_rc(cp, 2, 'retry with nothing to retry')
        if 'nothing to retry' not in err(cp):
            fail('retry with nothing to retry does not say so: %r' % err(cp))
        expect_eq('phase after a retry of nothing', 'verified',
                  tmtest.migration(db)['phase'])
    R.check('verify --retries N works (and refuses a bad N); retry with nothing '
            'to retry exits 2 and keeps the phase verified', check_verify_retries)

    def check_retry_names_failures():
        s = 'sim:seed=5,depth=3,root_folders=3,deny=/d1'
        d = 'sim:seed=5,depth=3,root_folders=3,world=dst'
        db = os.path.join(base, 'sim.db')
        expect_rc(tmtest.run(['discover', '--db', db, '--quiet', '--retries', '0', s, d]),
                  3, 'discover with a denied folder')
        cp = tmtest.run(['retry', '--db', db, '--quiet', '--retries', '0'])
        expect_rc(cp, 3, 'retry while the folder is still denied')
        lines = err(cp).splitlines()
        if not any(re.match(r'^  failed\t.*\t/d1\t', ln) for ln in lines):
            fail('retry does not name the folder that still fails: %r' % lines)
        if not any('still fail' in ln for ln in lines):
            fail('retry does not say that items still fail: %r' % lines)
    R.check('retry names what still fails (as copy does)', check_retry_names_failures)


if __name__ == '__main__':
    main()
