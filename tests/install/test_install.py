#!/usr/bin/env python3
"""make install into a temporary DESTDIR, from a copy of the sources, and
what must hold of the installed tree (docs/testing.md, "Installing and
packaging"):

1. `make install PREFIX=/usr/local DESTDIR=D` creates D and installs
   bin/treemig, libtreemig.so.MAJOR.MINOR.PATCH with its SONAME and links,
   libtreemig.a, treemig.h, treemig.pc, the man pages and the completion.
2. `nm -D --defined-only` on the installed library: only tm_ names, and
   exactly the functions the installed treemig.h declares.
3. treemig.pc: version, Requires.private, no path into the sources.
4. The two examples, built with `pkg-config --cflags --libs treemig` only
   (and to_copy statically with --static), run on a pair; their output is
   compared with `treemig status --json` and `treemig review --list`.
5. `treemig --version`: the CMake project version and the versions of
   SQLite, libyaml and xxHash.
6. Each man page renders with `man -l` without a warning and documents
   every option of its command's --help.
7. The bash completion: commands, options (those of --help), review kinds.
8. Installing twice changes nothing; `make uninstall` removes every file.
9. A prefix that does not exist, and one the user may not write, fail with
   the path named and nothing written; a partial install (a folder it may
   not write halfway) fails, and `make uninstall` then removes what it
   installed.

As root, every make runs as uid/gid 65534 (setpriv), so that a folder
owned by root is one it may not write; without setpriv the checks of 9
are skipped.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import installcheck as ic
from installcheck import Skip, expect_eq, fail

UNPRIV = 65534


class User:
    """Who runs make: uid 65534 through setpriv when root, else the caller."""

    def __init__(self):
        self.root = os.geteuid() == 0
        self.prefix = []
        self.why_not = None
        if self.root:
            sp = shutil.which('setpriv')
            if not sp:
                self.why_not = 'running as root and setpriv(1) is not installed'
                return
            self.prefix = [sp, '--reuid=%d' % UNPRIV, '--regid=%d' % UNPRIV,
                           '--clear-groups']
            if subprocess.run(self.prefix + ['true']).returncode != 0:
                self.prefix = []
                self.why_not = 'setpriv does not work here'

    def give(self, path):
        """Makes path (recursively) belong to the user make runs as."""
        if not self.prefix:
            return
        for d, dirs, files in os.walk(path):
            for n in [d] + [os.path.join(d, x) for x in dirs + files]:
                os.lchown(n, UNPRIV, UNPRIV)

    def forbid(self, path):
        """Makes the folder path one the user may not write."""
        if self.prefix:
            os.chown(path, 0, 0)
            os.chmod(path, 0o755)
        elif self.root:
            raise Skip(self.why_not)
        else:
            os.chmod(path, 0o555)


def files_below(d):
    """{relative path: sha256 or link target} of the files and symlinks."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = '-> ' + os.readlink(p)
            else:
                with open(p, 'rb') as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
        for n in dirs:
            p = os.path.join(root, n)
            if os.path.islink(p):
                out[os.path.relpath(p, d)] = '-> ' + os.readlink(p)
    return out


def main():
    top = tempfile.mkdtemp(prefix='treemig-install-', dir='/tmp')
    try:
        run(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run(top):
    R = ic.tmtest.Runner('test_install')
    U = User()
    version = ic.project_version()
    os.chmod(top, 0o755)
    src = os.path.join(top, 'src')
    build = os.path.join(top, 'build')
    home = os.path.join(top, 'home')
    stage = os.path.join(top, 'stage')
    ic.copy_sources(src)
    os.mkdir(build)
    os.mkdir(home)
    U.give(top)
    print('sources copied to %s; make runs as %s' % (
        src, 'uid %d' % UNPRIV if U.prefix else 'uid %d' % os.geteuid()))

    def make(*args):
        return ic.sh(['make', '--no-print-directory', '-C', src, 'BUILD=' + build,
                      'JOBS=2', 'CMAKE_FLAGS=-DTREEMIG_TESTS=OFF'] + list(args),
                     env={'HOME': home}, prefix=U.prefix)

    inst = ic.Installed(stage, '/usr/local', 'lib')
    docdir = os.path.join(inst.top, 'share', 'doc', 'treemig')
    state = {}

    def check_install():
        if os.path.exists(stage):
            fail('%s exists before the install' % stage)
        cp = make('install', 'PREFIX=/usr/local', 'DESTDIR=' + stage)
        ic.expect_ok(cp, 'make install DESTDIR=%s' % stage)
        for p in (inst.bin, os.path.join(inst.include, 'treemig.h'),
                  os.path.join(inst.include, 'treemig_version.h'),
                  os.path.join(inst.pcdir, 'treemig.pc'), inst.completion,
                  os.path.join(inst.mandir, 'man1', 'treemig.1'),
                  os.path.join(docdir, 'api.md')):
            if not os.path.isfile(p):
                fail('make install did not install %s' % p)
        if not os.access(inst.bin, os.X_OK):
            fail('%s is not executable' % inst.bin)
        state['so'] = ic.check_library_files(inst, version)
        state['files'] = files_below(stage)
        with open(os.path.join(build, 'installed_files.txt')) as f:
            listed = sorted(os.path.relpath(x, stage) for x in f.read().split('\n') if x)
        expect_eq('installed_files.txt against the files installed',
                  sorted(state['files']), listed)
    R.check('make install DESTDIR=...: every file, the library with its SONAME and links',
            check_install)
    if 'files' not in state:
        R.finish()

    R.check('nm -D --defined-only: only the tm_ functions treemig.h declares',
            lambda: ic.check_exports(state['so'], os.path.join(inst.include, 'treemig.h')))
    R.check('treemig.pc: version, Requires.private, no path into the sources',
            lambda: ic.check_pc(inst, version, [src, build, ic.SOURCE_DIR]))

    def check_examples():
        out = os.path.join(top, 'examples')
        os.mkdir(out)
        exes = ic.build_examples(inst, ic.example_sources(inst, docdir), out)
        ic.check_examples(inst, exes, os.path.join(top, 'run'), version)
    R.check('the examples, built with pkg-config alone (shared and static), '
            'against status --json and review --list', check_examples)
    R.check('treemig.h compiles as C++', lambda: ic.check_header_cxx(inst))
    R.check('treemig --version: project version, SQLite, libyaml, xxHash',
            lambda: ic.check_version(inst, version))
    R.check('man pages: man -l renders each without a warning, every option documented',
            lambda: ic.check_man(inst))
    R.check('bash completion: commands, options, review kinds, files',
            lambda: ic.check_completion(inst, top))

    def check_twice():
        cp = make('install', 'PREFIX=/usr/local', 'DESTDIR=' + stage)
        ic.expect_ok(cp, 'a second make install')
        expect_eq('the tree after a second install', state['files'], files_below(stage))
    R.check('make install twice: the same tree', check_twice)

    def check_uninstall():
        cp = ic.expect_ok(make('uninstall'), 'make uninstall')
        left = files_below(stage)
        if left:
            fail('make uninstall left %s' % sorted(left))
        if os.path.exists(docdir):
            fail('make uninstall left the folder %s' % docdir)
        if 'removed %d of the %d files' % (len(state['files']), len(state['files'])) \
                not in cp.stdout:
            fail('make uninstall does not say what it removed: %s' % ic.show(cp))
        cp = ic.expect_ok(make('uninstall'), 'make uninstall again')
    R.check('make uninstall: every installed file removed (twice: harmless)',
            check_uninstall)

    def check_missing_prefix():
        prefix = os.path.join(top, 'no', 'such', 'prefix')
        cp = make('install', 'PREFIX=' + prefix)
        if cp.returncode == 0:
            fail('make install into a missing prefix succeeded: %s' % ic.show(cp))
        if not re.search(r'^make install: .*%s' % re.escape(prefix), cp.stderr, re.M):
            fail('no "make install: ..." error naming %s: %s' % (prefix, ic.show(cp)))
        if os.path.exists(os.path.join(top, 'no')):
            fail('make install created %s' % os.path.join(top, 'no'))
    R.check('make install PREFIX=<missing>: fails naming the path, creates nothing',
            check_missing_prefix)

    def check_readonly_prefix():
        prefix = os.path.join(top, 'ro')
        os.mkdir(prefix)
        U.forbid(prefix)
        try:
            cp = make('install', 'PREFIX=' + prefix)
            if cp.returncode == 0:
                fail('make install into a prefix it may not write succeeded: %s'
                     % ic.show(cp))
            if not re.search(r'^make install: .*%s' % re.escape(prefix), cp.stderr, re.M):
                fail('no "make install: ..." error naming %s: %s' % (prefix, ic.show(cp)))
            if os.listdir(prefix):
                fail('make install wrote into %s: %s' % (prefix, os.listdir(prefix)))
        finally:
            os.chmod(prefix, 0o755)
    R.check('make install PREFIX=<read-only>: fails naming the path, writes nothing',
            check_readonly_prefix)

    def check_partial():
        dest = os.path.join(top, 'partial')
        man = os.path.join(dest, 'usr', 'local', 'share', 'man')
        os.makedirs(man)
        U.give(dest)
        U.forbid(man)
        try:
            cp = make('install', 'PREFIX=/usr/local', 'DESTDIR=' + dest)
            if cp.returncode == 0:
                fail('make install with a man folder it may not write succeeded: %s'
                     % ic.show(cp))
            if man not in cp.stderr:
                fail('the error does not name %s: %s' % (man, ic.show(cp)))
            done = files_below(dest)
            if 'usr/local/bin/treemig' not in done or \
                    'usr/local/share/bash-completion/completions/treemig' in done:
                fail('not the partial install this test needs (bin/treemig '
                     'installed, the completion not): %s' % sorted(done))
            ic.expect_ok(make('uninstall'), 'make uninstall after a partial install')
            left = files_below(dest)
            if left:
                fail('make uninstall after a partial install left %s' % sorted(left))
        finally:
            os.chmod(man, 0o755)
    R.check('a partial install (man folder not writable) fails naming it; '
            'make uninstall removes what it installed', check_partial)

    if R.passed == 0 and R.failed == 0:
        sys.exit(77)
    R.finish()


if __name__ == '__main__':
    main()
