"""Checks of an installed treemig, shared by test_install.py (make install
into a DESTDIR) and test_deb.py (the Debian packages installed into a
private dpkg root). Standard library only; the assertions come from
tests/integration/tmtest.py.

An installed tree is described by an Installed: the root it was staged or
unpacked into (what pkg-config calls the sysroot) and the paths inside it.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, fail  # noqa: E402,F401

SOURCE_DIR = os.path.abspath(os.environ.get('TREEMIG_SOURCE_DIR') or
                             os.path.join(HERE, '..', '..'))
TIMEOUT = 900


def clean_env(extra=None):
    """The environment for a child: without the make variables of a ctest
    run under make (a jobserver of another make), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES',
                        'PKG_CONFIG_PATH', 'PKG_CONFIG_SYSROOT_DIR',
                        'PKG_CONFIG_LIBDIR', 'LD_LIBRARY_PATH', 'DESTDIR')}
    env['LC_ALL'] = 'C.UTF-8'
    if extra:
        env.update(extra)
    return env


def sh(cmd, env=None, cwd=None, input=None, prefix=()):
    """Runs cmd (a list); returns CompletedProcess with text output."""
    try:
        return subprocess.run(list(prefix) + list(cmd), env=clean_env(env), cwd=cwd,
                              input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, errors='replace',
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        fail('timed out after %ss: %s' % (e.timeout, ' '.join(cmd)))


def show(cp):
    return 'exit %d\n    stdout: %s\n    stderr: %s' % (
        cp.returncode, cp.stdout[-3000:].strip(), cp.stderr[-3000:].strip())


def expect_ok(cp, what):
    if cp.returncode != 0:
        fail('%s failed: %s' % (what, show(cp)))
    return cp


def project_version(src=SOURCE_DIR):
    """The version in CMakeLists.txt's project(): the one place it is written."""
    with open(os.path.join(src, 'CMakeLists.txt')) as f:
        m = re.search(r'project\(\s*treemig\s+VERSION\s+(\d+)\.(\d+)\.(\d+)', f.read())
    if not m:
        fail('no project(treemig VERSION x.y.z) in CMakeLists.txt')
    return tuple(int(x) for x in m.groups())


def copy_sources(dst, src=SOURCE_DIR):
    """A copy of the source tree without build folders, git or state files:
    what a fresh checkout holds."""
    def ignore(d, names):
        return [n for n in names
                if n.startswith('build') or n in ('.git', '__pycache__')
                or n.endswith(('.db', '.db-wal', '.db-shm', '.db.lock'))]
    shutil.copytree(src, dst, ignore=ignore, symlinks=True)


class Installed:
    """A treemig installed below root (a DESTDIR, or a dpkg --root) with
    the prefix prefix and the library folder libdir (relative to prefix)."""

    def __init__(self, root, prefix, libdir):
        self.root = root
        self.prefix = prefix
        self.top = root + prefix
        self.bin = os.path.join(self.top, 'bin', 'treemig')
        self.libdir = os.path.join(self.top, libdir)
        self.pcdir = os.path.join(self.libdir, 'pkgconfig')
        self.include = os.path.join(self.top, 'include')
        self.mandir = os.path.join(self.top, 'share', 'man')
        self.completion = os.path.join(self.top, 'share', 'bash-completion',
                                       'completions', 'treemig')

    def pc_env(self):
        """pkg-config finds treemig.pc in the staged tree, and prefixes its
        paths with the root (the sysroot): what a packager does."""
        return {'PKG_CONFIG_PATH': self.pcdir, 'PKG_CONFIG_SYSROOT_DIR': self.root}

    def run_env(self):
        return {'LD_LIBRARY_PATH': self.libdir}

    def treemig(self, args):
        return sh([self.bin] + list(args))


# ---------------------------------------------------------------------------
# the library

def check_library_files(inst, version):
    """libtreemig.so.MAJOR.MINOR.PATCH, the SONAME link and the dev link,
    and the SONAME written in the library."""
    major, minor, patch = version
    real = 'libtreemig.so.%d.%d.%d' % version
    so = os.path.join(inst.libdir, real)
    if not os.path.isfile(so) or os.path.islink(so):
        fail('%s is not a regular file' % so)
    for link, target in (('libtreemig.so.%d' % major, real),
                         ('libtreemig.so', 'libtreemig.so.%d' % major)):
        p = os.path.join(inst.libdir, link)
        if not os.path.islink(p):
            fail('%s is not a symlink' % p)
        expect_eq('target of %s' % link, target, os.readlink(p))
    if not os.path.isfile(os.path.join(inst.libdir, 'libtreemig.a')):
        fail('no static library in %s' % inst.libdir)
    cp = expect_ok(sh(['objdump', '-p', so]), 'objdump -p')
    m = re.search(r'^\s*SONAME\s+(\S+)', cp.stdout, re.M)
    expect_eq('SONAME of %s' % real, 'libtreemig.so.%d' % major, m.group(1) if m else None)
    return so


def declared_functions(header):
    """The functions treemig.h declares: each top-level declaration (not a
    typedef, a macro or a comment) of a tm_ name followed by '('."""
    names = set()
    with open(header) as f:
        for line in f:
            m = re.match(r'^(?!typedef\b|#|/\*|\s)[^(;=]*\b(tm_[a-z]\w*)\s*\(', line)
            if m:
                names.add(m.group(1))
    if len(names) < 10:
        fail('found only %d function declarations in %s' % (len(names), header))
    return names


def check_exports(so, header):
    """nm -D --defined-only: every exported name starts with tm_ (never
    tm__), and they are exactly the functions the header declares (one
    without TM_EXTERN would be hidden)."""
    cp = expect_ok(sh(['nm', '-D', '--defined-only', so]), 'nm -D')
    names = set()
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            names.add(parts[2].split('@')[0])
    bad = sorted(n for n in names if not n.startswith('tm_') or n.startswith('tm__'))
    if bad:
        fail('%s exports %d names that are not public tm_ functions: %s'
             % (so, len(bad), ' '.join(bad[:20])))
    declared = declared_functions(header)
    if names != declared:
        fail('exports of %s differ from the functions %s declares: not '
             'exported %s, exported but not declared %s'
             % (so, header, sorted(declared - names), sorted(names - declared)))


def check_pc(inst, version, source_dirs):
    """treemig.pc: the version, -ltreemig, Requires.private naming every
    module, and no path into the source or build tree."""
    env = inst.pc_env()
    cp = expect_ok(sh(['pkg-config', '--modversion', 'treemig'], env=env),
                   'pkg-config --modversion treemig')
    expect_eq('pkg-config --modversion', '%d.%d.%d' % version, cp.stdout.strip())
    cp = expect_ok(sh(['pkg-config', '--print-requires-private', 'treemig'], env=env),
                   'pkg-config --print-requires-private')
    req = {line.split()[0] for line in cp.stdout.splitlines() if line.strip()}
    expect_eq('Requires.private of treemig.pc', {'sqlite3', 'libpq', 'yaml-0.1', 'libxxhash', 'libssh2', 'libcurl', 'libcrypto', 'expat', 'libmicrohttpd'}, req)
    flags = expect_ok(sh(['pkg-config', '--cflags', '--libs', 'treemig'], env=env),
                      'pkg-config --cflags --libs').stdout
    for d in source_dirs:
        if d and d in flags:
            fail('pkg-config points into %s: %s' % (d, flags))
    if '-I' + inst.include not in flags.split() or '-ltreemig' not in flags.split():
        fail('pkg-config --cflags --libs treemig: want -I%s and -ltreemig, got %s'
             % (inst.include, flags))


# ---------------------------------------------------------------------------
# the examples, against the installed library

def example_sources(inst, docdir):
    srcs = {}
    for name in ('discover_progress', 'to_copy'):
        p = os.path.join(docdir, 'examples', name + '.c')
        if not os.path.isfile(p):
            fail('the example %s is not installed (%s)' % (name, p))
        srcs[name] = p
    return srcs


def build_examples(inst, srcs, outdir):
    """Builds each example with `cc $(pkg-config --cflags --libs treemig)`
    and nothing else, warnings as errors, plus to_copy linked with the
    static library and the shared libraries of its Requires.private;
    returns {name: path}."""
    env = inst.pc_env()
    cflags = shlex.split(expect_ok(sh(['pkg-config', '--cflags', 'treemig'], env=env),
                                   'pkg-config --cflags').stdout)
    libs = shlex.split(expect_ok(sh(['pkg-config', '--libs', 'treemig'], env=env),
                                 'pkg-config --libs').stdout)
    # libtreemig.a with the shared system libraries it needs: the modules of
    # Requires.private, linked as shared libraries (pkg-config --static would
    # also ask for the static archives of their own dependencies, which
    # Debian does not ship for libcurl's)
    mods = expect_ok(sh(['pkg-config', '--print-requires-private', 'treemig'], env=env),
                     'pkg-config --print-requires-private').stdout.split()
    mods = [m for m in mods if re.match(r'^[A-Za-z0-9_.+-]+$', m)]
    deps = shlex.split(expect_ok(sh(['pkg-config', '--libs'] + mods, env=env),
                                 'pkg-config --libs ' + ' '.join(mods)).stdout)
    static = ['-l:libtreemig.a' if a == '-ltreemig' else a for a in libs] + deps + ['-pthread']
    warn = ['-std=c11', '-Wall', '-Wextra', '-Wpedantic', '-Werror']
    out = {}
    for name, src in sorted(srcs.items()):
        exe = os.path.join(outdir, name)
        expect_ok(sh(['cc'] + warn + [src, '-o', exe] + cflags + libs), 'cc ' + name)
        out[name] = exe
    exe = os.path.join(outdir, 'to_copy_static')
    expect_ok(sh(['cc'] + warn + [srcs['to_copy'], '-o', exe] + cflags + static),
              'cc to_copy against libtreemig.a and the shared libraries of Requires.private')
    out['to_copy_static'] = exe
    cp = expect_ok(sh(['ldd', out['to_copy']], env=inst.run_env()), 'ldd to_copy')
    m = re.search(r'libtreemig\.so\.\d+ => (\S+)', cp.stdout)
    if not m or not m.group(1).startswith(inst.libdir + '/'):
        fail('to_copy does not load libtreemig from %s: %s' % (inst.libdir, cp.stdout))
    cp = expect_ok(sh(['ldd', out['to_copy_static']]), 'ldd to_copy_static')
    if 'libtreemig' in cp.stdout:
        fail('to_copy_static loads a shared libtreemig: %s' % cp.stdout)
    return out


def check_header_cxx(inst):
    """The installed header compiles as C++ too (extern "C")."""
    cxx = shutil.which('c++') or shutil.which('g++')
    if not cxx:
        raise Skip('no C++ compiler')
    cflags = shlex.split(sh(['pkg-config', '--cflags', 'treemig'], env=inst.pc_env()).stdout)
    cp = sh([cxx, '-x', 'c++', '-fsyntax-only', '-Wall', '-Wextra', '-Werror', '-']
            + cflags, input='#include <treemig.h>\nint main() { return TM_OK; }\n')
    expect_ok(cp, 'c++ -fsyntax-only on treemig.h')


def make_pair(base):
    """A small source and destination: a missing folder with files, a
    missing file, a size conflict, an mtime conflict, a file/folder clash,
    files already there, destination-only items, a symlink."""
    src = os.path.join(base, 'src')
    dst = os.path.join(base, 'dst')
    t = 1700000000

    def put(path, data, mtime):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(data)
        os.utime(path, (mtime, mtime))

    for root in (src, dst):
        os.makedirs(root)
        put(os.path.join(root, 'same', 'a.txt'), 'alpha\n', t)
        put(os.path.join(root, 'same', 'b.txt'), 'bravo bravo\n', t)
    put(os.path.join(src, 'new', 'one.txt'), 'one\n', t)
    put(os.path.join(src, 'new', 'deep', 'two.txt'), 'two two\n', t)
    put(os.path.join(src, 'lone.bin'), 'x' * 1000, t)
    put(os.path.join(src, 'size.txt'), 'longer on the source\n', t)
    put(os.path.join(dst, 'size.txt'), 'short\n', t)
    put(os.path.join(src, 'mtime.txt'), 'same size\n', t + 100)
    put(os.path.join(dst, 'mtime.txt'), 'same size\n', t)
    put(os.path.join(src, 'clash'), 'a file here\n', t)
    os.makedirs(os.path.join(dst, 'clash'))
    put(os.path.join(dst, 'only-here.txt'), 'dst only\n', t)
    os.makedirs(os.path.join(dst, 'only-folder'))
    os.symlink('same/a.txt', os.path.join(src, 'link'))
    return src, dst


JSON_KEYS = ('src.folders', 'src.files', 'src.symlinks', 'src.bytes', 'src.failed',
             'dst.folders', 'dst.files', 'dst.symlinks', 'dst.bytes', 'dst.failed',
             'dst.not_on_src', 'copy.pending', 'copy.already_existed',
             'copy.conflicts', 'copy.bytes_pending')


def check_examples(inst, exes, base, version):
    """Runs discover_progress on a pair and compares its counts with
    `treemig status --json`; runs to_copy (shared and static) and compares
    it with status --json and `treemig review --list`."""
    src, dst = make_pair(os.path.join(base, 'pair'))
    db = os.path.join(base, 'state.db')
    env = inst.run_env()
    cp = expect_ok(sh([exes['discover_progress'], src, dst, db], env=env),
                   'discover_progress')
    lines = cp.stdout.splitlines()
    expect_eq('first line of discover_progress (TM_VERSION_STRING)',
              'treemig %d.%d.%d' % version, lines[0] if lines else None)
    if not re.search(r'^progress: discovered: ', cp.stderr, re.M):
        fail('discover_progress printed no final progress line: %s' % show(cp))
    got = dict(line.split(' ', 1) for line in lines[1:])
    st = json.loads(expect_ok(inst.treemig(['status', '--db', db, '--json']),
                              'treemig status --json').stdout)
    expect_eq('phase', st['phase'], got.get('phase'))
    for key in JSON_KEYS:
        side, field = key.split('.')
        expect_eq('discover_progress %s against status --json' % key,
                  str(st[side][field]), got.get(key))
    # the pair has something of each kind: a comparison of zeros proves nothing
    for key in ('copy.pending', 'copy.conflicts', 'dst.not_on_src',
                'copy.already_existed', 'src.symlinks'):
        side, field = key.split('.')
        if st[side][field] == 0:
            fail('status --json: %s is 0 for a pair made to have some' % key)

    outs = []
    for name in ('to_copy', 'to_copy_static'):
        cp = expect_ok(sh([exes[name], db], env=env), name)
        outs.append(cp.stdout)
    expect_eq('to_copy: the static build prints what the shared one does', outs[0], outs[1])
    lines = outs[0].splitlines()
    expect_eq('to_copy: phase', 'phase ' + st['phase'], lines[0])
    expect_eq('to_copy: totals against status --json',
              'to copy: %d items, %d bytes' % (st['copy']['pending'],
                                               st['copy']['bytes_pending']), lines[1])
    items = lines[2:-1]
    expect_eq('to_copy: last line', 'listed %d items' % len(items), lines[-1])
    expect_eq('to_copy: items listed against copy.pending', st['copy']['pending'],
              len(items))
    want = []
    for kind in ('missing', 'conflict'):
        cp = expect_ok(inst.treemig(['review', '--db', db, '--list', kind]),
                       'treemig review --list ' + kind)
        want += [x for x in cp.stdout.splitlines() if x.split('\t')[4:5] != ['type']]
    expect_eq('to_copy: items against treemig review --list missing/conflict',
              want, items)
    files = sum(int(x.split('\t')[2]) for x in items if x.split('\t')[1] == 'file')
    expect_eq('to_copy: sizes of the files listed against copy.bytes_pending',
              st['copy']['bytes_pending'], files)


# ---------------------------------------------------------------------------
# the command: --version, man pages, completion

def check_version(inst, version):
    """treemig --version: the project version, then the versions of SQLite,
    libyaml and xxHash, as the system's libraries report them."""
    cp = expect_ok(inst.treemig(['--version']), 'treemig --version')
    lines = cp.stdout.splitlines()
    expect_eq('first line of --version', 'treemig %d.%d.%d' % version,
              lines[0] if lines else None)
    got = {}
    for line in lines[1:]:
        parts = line.split()
        got[parts[0]] = parts[1]
    import sqlite3
    want = {'SQLite': sqlite3.sqlite_version}
    for name, module in (('libyaml', 'yaml-0.1'), ('xxHash', 'libxxhash')):
        want[name] = expect_ok(sh(['pkg-config', '--modversion', module]),
                               'pkg-config --modversion ' + module).stdout.strip()
    expect_eq('library versions in treemig --version', want, got)


def help_commands(inst):
    """The commands `treemig --help` lists."""
    out = expect_ok(inst.treemig(['--help']), 'treemig --help').stdout
    block = out.split('commands:\n', 1)[1].split('\n\n', 1)[0]
    cmds = [line.split()[0] for line in block.splitlines() if line.startswith('  ')]
    if len(cmds) < 8:
        fail('found only %d commands in treemig --help' % len(cmds))
    return cmds


def help_options(inst, cmd):
    """The long options of `treemig CMD --help` (its options: section)."""
    out = expect_ok(inst.treemig([cmd, '--help']), 'treemig %s --help' % cmd).stdout
    if 'options:\n' not in out:
        fail('no options: section in treemig %s --help' % cmd)
    block = out.split('options:\n', 1)[1]
    opts = set()
    for line in block.splitlines():
        m = re.match(r'^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)', line)
        if m:
            opts.add(m.group(1))
    if '--help' not in opts:
        fail('treemig %s --help: no --help among %s' % (cmd, sorted(opts)))
    return opts


def option_accepted(inst, cmd, opt):
    """Whether `treemig CMD` knows the long option opt: getopt says
    "unrecognized option" of one it does not (`OPT=1` never runs anything:
    a value is refused or --help prints the help)."""
    cp = inst.treemig([cmd, opt + '=1', '--help'])
    return 'unrecognized option' not in cp.stderr


def review_kinds(inst):
    out = expect_ok(inst.treemig(['review', '--help']), 'review --help').stdout
    block = out.split('KIND is one of\n', 1)[1]
    kinds = []
    for line in block.splitlines():
        m = re.match(r'^  ([a-z]+)\s{2,}', line)
        if m:
            kinds.append(m.group(1))
        elif not line.startswith('    '):
            break
    if 'missing' not in kinds or 'all' not in kinds:
        fail('cannot read the kinds of review --help: %r' % kinds)
    return kinds


def render_man(page):
    """man -l PAGE: the text, with groff's warnings on (they fail)."""
    cp = sh(['man', '--warnings', '-l', page], env={'MANWIDTH': '100', 'MAN_DISABLE_SECCOMP': '1'})
    expect_ok(cp, 'man -l ' + page)
    if cp.stderr.strip():
        fail('man -l %s: warnings: %s' % (page, cp.stderr.strip()[:2000]))
    # join words groff hyphenated at a line's end
    return re.sub(r'[\u2010-]\n\s+', '', cp.stdout)


def man_option_entries(text, page):
    """The options a rendered page documents: those named on the tag lines
    of the entries of its OPTIONS section (indented 7 columns, such as
    "       --db FILE" or "       -q, --quiet"), not merely in the prose."""
    m = re.search(r'^OPTIONS\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)', text, re.M | re.S)
    if not m:
        fail('%s has no OPTIONS section' % page)
    opts = set()
    for line in m.group(1).splitlines():
        if re.match(r'^ {7}-', line):
            opts.update(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)(?![\w-])', line))
    return opts


def check_man(inst, suffix=''):
    """A page for treemig and for each command of --help (help aside): each
    renders without a warning, names itself, and has an entry in its
    OPTIONS for every option of the command's --help; `man -M MANDIR
    treemig` finds the main page."""
    man1 = os.path.join(inst.mandir, 'man1')
    pages = {}
    for cmd in [None] + [c for c in help_commands(inst) if c != 'help']:
        name = 'treemig' + ('-' + cmd if cmd else '')
        page = os.path.join(man1, name + '.1' + suffix)
        if not os.path.isfile(page):
            fail('no man page %s' % page)
        text = render_man(page)
        if not re.search(r'^NAME\n\s+%s - ' % re.escape(name), text, re.M):
            fail('%s: no NAME section naming %s:\n%s' % (page, name, text[:500]))
        pages[name] = text
        if cmd:
            entries = man_option_entries(text, page)
            missing = sorted(help_options(inst, cmd) - entries)
            if missing:
                fail('%s does not document %s (from treemig %s --help)'
                     % (page, ', '.join(missing), cmd))
    extra = sorted(set(os.listdir(man1)) -
                   {n + '.1' + suffix for n in pages})
    if extra:
        fail('man pages of no command in %s: %s' % (man1, extra))
    cp = expect_ok(sh(['man', '-M', inst.mandir, 'treemig'],
                      env={'MANWIDTH': '100', 'MAN_DISABLE_SECCOMP': '1'}),
                   'man -M %s treemig' % inst.mandir)
    if 'treemig - migrate a tree' not in cp.stdout:
        fail('man -M %s treemig shows another page: %s' % (inst.mandir, cp.stdout[:300]))


def complete(script, words, cword=None, cwd=None):
    """What _treemig completes for COMP_WORDS=words (the cursor on the last
    word unless cword), in a bash without the user's startup files."""
    if cword is None:
        cword = len(words) - 1
    prog = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=%d; '
            'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; _treemig; '
            'printf "%%s\\n" "${COMPREPLY[@]}"' % cword)
    cp = sh(['bash', '--norc', '--noprofile', '-c', prog, 'bash', script] + list(words),
            cwd=cwd)
    expect_ok(cp, 'bash completion of %r' % (words,))
    if cp.stderr.strip():
        fail('bash completion of %r wrote to stderr: %s' % (words, cp.stderr))
    return [x for x in cp.stdout.split('\n') if x]


def check_completion(inst, workdir):
    """The installed completion: commands, each command's options (every
    one of its --help, and only options it takes), review kinds, log
    levels, files."""
    script = inst.completion
    if not os.path.isfile(script):
        fail('no bash completion at %s' % script)
    with open(script) as f:
        if f.read(2) == '#!':
            fail('%s starts with #!: a completion is sourced, not run' % script)
    cmds = help_commands(inst)
    expect_eq('treemig <TAB>', sorted(cmds), sorted(complete(script, ['treemig', ''])))
    expect_eq('treemig di<TAB>', ['discover'], complete(script, ['treemig', 'di']))
    expect_eq('treemig help st<TAB>', ['state-copy', 'status'],
              complete(script, ['treemig', 'help', 'st']))
    expect_eq('treemig --<TAB>', ['--help', '--version'],
              sorted(complete(script, ['treemig', '--'])))
    for cmd in cmds:
        if cmd == 'help':
            continue
        got = set(complete(script, ['treemig', cmd, '--']))
        missing = sorted(help_options(inst, cmd) - got)
        if missing:
            fail('treemig %s --<TAB> does not complete %s (from its --help)'
                 % (cmd, ', '.join(missing)))
        refused = sorted(o for o in got if not option_accepted(inst, cmd, o))
        if refused:
            fail('treemig %s --<TAB> completes %s, which treemig %s refuses'
                 % (cmd, ', '.join(refused), cmd))
    kinds = review_kinds(inst)
    expect_eq('treemig review --list <TAB> against review --help', sorted(kinds),
              sorted(complete(script, ['treemig', 'review', '--list', ''])))
    expect_eq('treemig review --list=con<TAB>', ['conflict'],
              complete(script, ['treemig', 'review', '--list', '=', 'con']))
    expect_eq('treemig copy --log-level w<TAB>', ['warning'],
              complete(script, ['treemig', 'copy', '--log-level', 'w']))
    d = os.path.join(workdir, 'completion')
    os.makedirs(os.path.join(d, 'folder'))
    for n in ('state.db', 'stuff.txt'):
        open(os.path.join(d, n), 'w').close()
    expect_eq('treemig status --db st<TAB> (files)', ['state.db', 'stuff.txt'],
              sorted(complete(script, ['treemig', 'status', '--db', 'st'], cwd=d)))
    expect_eq('treemig discover f<TAB> (folders)', ['folder'],
              complete(script, ['treemig', 'discover', 'f'], cwd=d))
