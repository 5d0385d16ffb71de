#!/usr/bin/env python3
"""make deb, from a copy of the sources, and the packages it builds
(docs/packaging.md; label deb):

1. `make deb` builds treemig, libtreemigMAJOR and libtreemig-dev with CPack
   and passes lintian (errors and warnings fail it; what is overridden is
   explained in packaging/deb/lintian-overrides.in).
2. The control data: names, versions, dependencies from dpkg-shlibdeps,
   the library's shlibs and ldconfig trigger, the -dev package depending
   on the exact library version.
3. apt-get --simulate installs the three on this machine (their
   dependencies are satisfiable here).
4. dpkg installs them into a private root (its own admin folder, so the
   machine's packages are never touched): then the checks of an install
   (installcheck.py) run on that tree: treemig --version, the exported
   symbols, treemig.pc, the examples built with pkg-config alone and
   compared with status --json, the gzipped man pages, the completion.
5. dpkg --purge removes every file again.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import installcheck as ic
from installcheck import expect_eq, fail


def main():
    top = tempfile.mkdtemp(prefix='treemig-deb-', dir='/tmp')
    try:
        run(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run(top):
    R = ic.tmtest.Runner('test_deb')
    for tool in ('cpack', 'dpkg-deb', 'dpkg-shlibdeps', 'lintian', 'apt-get'):
        if not shutil.which(tool):
            print('SKIP %s is not installed (scripts/deps.sh deb)' % tool)
            sys.exit(77)
    version = ic.project_version()
    vstr = '%d.%d.%d' % version
    major = version[0]
    arch = ic.sh(['dpkg', '--print-architecture']).stdout.strip()
    multiarch = ic.sh(['dpkg-architecture', '-qDEB_HOST_MULTIARCH']).stdout.strip()
    src = os.path.join(top, 'src')
    build = os.path.join(top, 'deb')
    ic.copy_sources(src)
    lib = 'libtreemig%d' % major
    names = {'treemig': None, lib: None, 'libtreemig-dev': None}
    for n in names:
        names[n] = os.path.join(build, '%s_%s_%s.deb' % (n, vstr, arch))

    def check_make_deb():
        cp = ic.sh(['make', '--no-print-directory', '-C', src, 'deb',
                    'DEB_BUILD=' + build, 'JOBS=2'])
        ic.expect_ok(cp, 'make deb')
        if '== lintian' not in cp.stdout:
            fail('make deb did not run lintian: %s' % ic.show(cp))
        tags = [x for x in (cp.stdout + cp.stderr).splitlines()
                if re.match(r'^[EW]: ', x)]
        if tags:
            fail('lintian: %s' % '\n'.join(tags))
        got = sorted(f for f in os.listdir(build) if f.endswith('.deb'))
        expect_eq('the packages', sorted(os.path.basename(p) for p in names.values()), got)
    R.check('make deb: three packages, lintian clean', check_make_deb)
    if R.failed:
        R.finish()

    def field(pkg, name):
        cp = ic.expect_ok(ic.sh(['dpkg-deb', '-f', names[pkg], name]), 'dpkg-deb -f')
        return cp.stdout.strip()

    def control_file(pkg, name):
        d = os.path.join(top, 'control-' + pkg)
        if not os.path.isdir(d):
            ic.expect_ok(ic.sh(['dpkg-deb', '-e', names[pkg], d]), 'dpkg-deb -e')
        p = os.path.join(d, name)
        if not os.path.isfile(p):
            return None
        with open(p) as f:
            return f.read()

    def check_control():
        for pkg in names:
            expect_eq('Version of %s' % pkg, vstr, field(pkg, 'Version'))
        for pkg in ('treemig', lib):
            deps = field(pkg, 'Depends')
            for want in ('libc6', 'libsqlite3-0', 'libyaml-0-2', 'libxxhash0'):
                if not re.search(r'(^|, )%s( |,|$)' % re.escape(want), deps):
                    fail('%s does not depend on %s: %s' % (pkg, want, deps))
        deps = field('libtreemig-dev', 'Depends')
        for want in ('%s (= %s)' % (lib, vstr), 'libsqlite3-dev', 'libyaml-dev',
                     'libxxhash-dev'):
            if want not in deps:
                fail('libtreemig-dev does not depend on %s: %s' % (want, deps))
        expect_eq('shlibs of %s' % lib, 'libtreemig %d %s (>= %s)' % (major, lib, vstr),
                  (control_file(lib, 'shlibs') or '').strip())
        expect_eq('triggers of %s' % lib, 'activate-noawait ldconfig',
                  (control_file(lib, 'triggers') or '').strip())
        for pkg in names:
            contents = ic.expect_ok(ic.sh(['dpkg-deb', '-c', names[pkg]]), 'dpkg-deb -c')
            for want in ('./usr/share/doc/%s/copyright' % pkg,
                         './usr/share/doc/%s/changelog.gz' % pkg):
                if want not in contents.stdout:
                    fail('%s holds no %s' % (pkg, want))
    R.check('control data: versions, shlibdeps, shlibs, ldconfig trigger, '
            'copyright and changelog', check_control)

    def check_apt():
        cp = ic.sh(['apt-get', 'install', '--simulate', '-q'] + sorted(names.values()))
        ic.expect_ok(cp, 'apt-get install --simulate')
        for pkg in names:
            if not re.search(r'^Conf %s ' % re.escape(pkg), cp.stdout, re.M):
                fail('apt-get --simulate would not configure %s: %s' % (pkg, ic.show(cp)))
    R.check('apt-get install --simulate: the dependencies are satisfiable here', check_apt)

    root = os.path.join(top, 'root')
    admin = os.path.join(root, 'var', 'lib', 'dpkg')
    for d in ('info', 'updates', 'triggers'):
        os.makedirs(os.path.join(admin, d))
    open(os.path.join(admin, 'status'), 'w').close()
    # the private root has no libc6 & co (apt-get checked them against this
    # machine); its maintainer scripts run without chroot (the root holds no
    # shell)
    dpkg = ['dpkg', '--root=' + root, '--force-depends', '--force-script-chrootless']
    if os.geteuid() != 0:
        dpkg.append('--force-not-root')
    inst = ic.Installed(root, '/usr', os.path.join('lib', multiarch))
    docdir = os.path.join(inst.top, 'share', 'doc', 'libtreemig-dev')
    state = {}

    def check_dpkg_install():
        ic.expect_ok(ic.sh(dpkg + ['-i'] + sorted(names.values())),
                     'dpkg --root -i (the three packages)')
        for pkg in names:
            cp = ic.sh(['dpkg', '--root=' + root, '-s', pkg])
            if 'Status: install ok installed' not in cp.stdout:
                fail('%s is not installed in %s: %s' % (pkg, root, ic.show(cp)))
        state['so'] = ic.check_library_files(inst, version)
    R.check('dpkg -i into a private root: installed', check_dpkg_install)
    if 'so' not in state:
        R.finish()

    R.check('treemig --version of the package',
            lambda: ic.check_version(inst, version))
    R.check('nm -D --defined-only: only the tm_ functions treemig.h declares',
            lambda: ic.check_exports(state['so'], os.path.join(inst.include, 'treemig.h')))
    R.check('treemig.pc of the package',
            lambda: ic.check_pc(inst, version, [src, build, ic.SOURCE_DIR]))

    def check_examples():
        out = os.path.join(top, 'examples')
        os.mkdir(out)
        exes = ic.build_examples(inst, ic.example_sources(inst, docdir), out)
        ic.check_examples(inst, exes, os.path.join(top, 'run'), version)
    R.check('the examples against the package, built with pkg-config alone',
            check_examples)
    R.check('man pages of the package (gzipped) render and document every option',
            lambda: ic.check_man(inst, suffix='.gz'))
    R.check('bash completion of the package', lambda: ic.check_completion(inst, top))

    def check_purge():
        ic.expect_ok(ic.sh(dpkg + ['--purge'] + sorted(names)), 'dpkg --root --purge')
        left = []
        for d, dirs, files in os.walk(os.path.join(root, 'usr')):
            left += [os.path.join(d, f) for f in files]
        if left:
            fail('dpkg --purge left %s' % left)
    R.check('dpkg --purge: every file removed', check_purge)
    R.finish()


if __name__ == '__main__':
    main()
