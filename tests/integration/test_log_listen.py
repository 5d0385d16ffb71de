#!/usr/bin/env python3
"""`treemig log-listen` and the log service end to end (docs/logging.md).

- the listener prints each datagram (--json: as it came; otherwise one line
  a record, time, level, queue, path and message, control characters
  escaped, coloured by level only on a terminal), exits after --count N,
  exits 0 on SIGINT and SIGTERM, refuses a non-loopback address without
  --public (exit 2) and says when it cannot bind (exit 1);
- a discovery of simulated storages with injected failures, with
  --log-udp pointing at a listener: the datagrams have the levels asked for
  (--udp-level), one error per failed listing (queue, node id and path as in
  task_errors), one warning per retried listing, and the same records are in
  the logs table (--log-level).
Stdlib only; TREEMIG names the binary."""

import json
import os
import pty
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmtest  # noqa: E402
from tmtest import Skip, expect_eq, expect_rc, fail, run, show  # noqa: E402

WAIT = 15  # seconds to wait for a line that must come
LEVELS = ('trace', 'debug', 'info', 'warning', 'error', 'critical')
KEYS = {'time', 'level', 'queue', 'node_id', 'path', 'message', 'migration',
        'host', 'pid'}
SHAPE = 'seed=5,depth=5,folders=4,files=3,permanent=0.08,transient=0.2'
SRC = 'sim:' + SHAPE
DST = 'sim:' + SHAPE + ',world=dst'


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def send(port, data, host='127.0.0.1'):
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.sendto(data if isinstance(data, bytes) else data.encode(), (host, port))
    finally:
        s.close()


def record(level='info', queue='src', node_id=1, path='/a', message='m',
           t=1700000000123456789, migration='mig'):
    return json.dumps({'time': t, 'level': level, 'queue': queue,
                       'node_id': node_id, 'path': path, 'message': message,
                       'migration': migration}, separators=(',', ':'))


def _pump(stream, q):
    for line in iter(stream.readline, b''):
        q.put(line.rstrip(b'\n').decode('utf-8', 'surrogateescape'))
    q.put(None)


class Listener:
    """A running `treemig log-listen ARGS`; waits for its 'listening on'."""

    def __init__(self, args):
        self.cmd = [tmtest.TREEMIG, 'log-listen'] + list(args)
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = queue.Queue(), queue.Queue()
        self.stderr_lines = []
        for stream, q in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, q), daemon=True).start()
        line = self._get(self.err, 'the "listening on" line on stderr')
        self.stderr_lines.append(line)
        m = re.search(r'listening on (\S+)$', line)
        if not m:
            self.kill()
            fail('first stderr line of %r is not "... listening on ADDR": %r'
                 % (self.cmd, line))
        self.addr = m.group(1)
        self.port = int(self.addr.rsplit(':', 1)[1])

    def _get(self, q, what):
        try:
            line = q.get(timeout=WAIT)
        except queue.Empty:
            self.kill()
            fail('%r: no %s within %ds' % (self.cmd, what, WAIT))
        if line is None:
            rc = self.p.wait(WAIT)
            rest = []
            while not self.err.empty():
                x = self.err.get()
                if x is not None:
                    rest.append(x)
            fail('%r exited (%s) before printing %s; stderr: %r'
                 % (self.cmd, rc, what, self.stderr_lines + rest))
        return line

    def line(self):
        return self._get(self.out, 'line on stdout')

    def until(self, marker):
        """Lines up to (without) the one holding marker."""
        lines = []
        while True:
            line = self.line()
            if marker in line:
                return lines
            lines.append(line)

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        try:
            return self.p.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.kill()
            fail('%r did not exit within %ds of signal %d' % (self.cmd, WAIT, sig))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def listener_available():
    cp = run(['log-listen', '--help'])
    if cp.returncode != 0:
        fail('`treemig log-listen --help` fails (%s)' % show(cp).replace('\n', ' '))
    return cp


# ---- the listener alone ----

def check_help():
    cp = listener_available()
    text = cp.stdout.decode()
    for word in ('--public', '--json', '--count', '127.0.0.1:8081'):
        if word not in text:
            fail('log-listen --help does not mention %s:\n%s' % (word, text))


def check_json_passthrough():
    listener_available()
    for attempt in range(5):
        port = free_port()
        try:
            lst = Listener(['127.0.0.1:%d' % port, '--json'])
            break
        except tmtest.CheckFailed:
            if attempt == 4:
                raise
    try:
        expect_eq('listening address', '127.0.0.1:%d' % port, lst.addr)
        sent = [record(level='warning', path='/d1/f\\u00ff', message='caf\u00e9 \u2603'),
                record(level='error', queue=None, node_id=None, path=None,
                       message='no node', migration=None),
                record(level='critical', message='x' * 3000)]
        for d in sent:
            send(port, d)
        send(port, b'{"a":\n1}')  # a raw newline: still one line
        got = [lst.line() for _ in range(4)]
        expect_eq('--json lines', sent + ['{"a": 1}'], got)
        expect_eq('exit code on SIGTERM', 0, lst.stop(signal.SIGTERM))
    finally:
        lst.kill()


HUMAN = re.compile(r'^\d\d:\d\d:\d\d\.\d{3} (\S+) +(\S+) +(\S+) +(.*)$')


def check_human_lines():
    listener_available()
    lst = Listener(['127.0.0.1:0'])
    try:
        port = lst.port
        if port == 0:
            fail('port 0 must be reported as the port actually bound')
        send(port, record(level='warning', queue='src', path='/a/b',
                          message='retry 2 of 3'))
        send(port, record(level='info', queue=None, path=None, node_id=None,
                          message='discovery started',
                          migration='0123abcd-4567-89ab'))
        # json.dumps writes the byte 0xff as \u00ff, as treemig does for a
        # byte that is not UTF-8
        send(port, record(level='error', queue='dst', path='/x\x1b[2J\xff',
                          message='line\nbreak', migration=None))
        send(port, b'not json \x1b[31m at all')
        lines = [lst.line() for _ in range(4)]
        for ln in lines:
            if '\x1b' in ln:
                fail('escape character printed (stdout is not a terminal, and '
                     'control characters must be escaped): %r' % ln)
        m = [HUMAN.match(x) for x in lines[:3]]
        if not all(m):
            fail('lines are not "HH:MM:SS.mmm MIGRATION LEVEL QUEUE ...": %r' % lines)
        expect_eq('line 1', ('mig', 'warning', 'src', '/a/b: retry 2 of 3'),
                  m[0].groups())
        expect_eq('line 2', ('0123abcd', 'info', '-', 'discovery started'),
                  m[1].groups())
        expect_eq('line 3', ('-', 'error', 'dst', '/x\\x1b[2J\\xff: line\\nbreak'),
                  m[2].groups())
        if '(not a log record)' not in lines[3] or '\\x1b[31m' not in lines[3]:
            fail('a datagram that is not a record: %r' % lines[3])
        expect_eq('exit code on SIGINT', 0, lst.stop(signal.SIGINT))
    finally:
        lst.kill()


def check_colours_on_a_terminal():
    listener_available()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.pop('NO_COLOR', None)
        try:
            os.execv(tmtest.TREEMIG, [tmtest.TREEMIG, 'log-listen', '127.0.0.1:0',
                                      '--count', '6'])
        finally:
            os._exit(127)
    buf = b''
    try:
        deadline = time.time() + WAIT
        while b'listening on' not in buf or not buf.endswith(b'\n'):
            r, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
            if not r:
                fail('no "listening on" line on the terminal: %r' % buf)
            buf += os.read(fd, 4096)
        port = int(re.search(rb'listening on 127\.0\.0\.1:(\d+)', buf).group(1))
        for lv in LEVELS:
            send(port, record(level=lv, message='colour ' + lv))
        out = b''
        while out.count(b'\n') < 6 and time.time() < deadline:
            r, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
            if not r:
                break
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
        lines = out.replace(b'\r', b'').split(b'\n')[:6]
        if len(lines) < 6:
            fail('expected 6 lines on the terminal, got %r' % out)
        starts = set()
        for lv, ln in zip(LEVELS, lines):
            m = re.match(rb'^(\x1b\[[0-9;]+m)', ln)
            if not m or not ln.endswith(b'\x1b[0m') or lv.encode() not in ln:
                fail('%s line is not coloured: %r' % (lv, ln))
            starts.add(m.group(1))
        if len(starts) != 6:
            fail('levels share colours: %r' % lines)
    finally:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = None
        os.close(fd)
    if status is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        fail('log-listen --count 6 on a terminal: status %r' % status)


def check_count():
    listener_available()
    lst = Listener(['--count', '2', '127.0.0.1:0', '--json'])
    try:
        send(lst.port, record(message='one'))
        send(lst.port, record(message='two'))
        expect_eq('first', record(message='one'), lst.line())
        expect_eq('second', record(message='two'), lst.line())
        try:
            rc = lst.p.wait(WAIT)
        except subprocess.TimeoutExpired:
            fail('--count 2 did not exit after 2 datagrams')
        expect_eq('exit code after --count', 0, rc)
    finally:
        lst.kill()


def check_refusals():
    listener_available()
    cp = run(['log-listen', '10.1.2.3:8081'])
    expect_rc(cp, 2, 'log-listen on a non-loopback address')
    if b'--public' not in cp.stderr:
        fail('the refusal does not name --public: ' + show(cp))
    for bad in ('example.com:8081', '127.0.0.1', '127.0.0.1:65536', '::1:8081',
                '[::1]'):
        expect_rc(run(['log-listen', bad]), 2, 'log-listen %r' % bad)
    expect_rc(run(['log-listen', '--count', '0']), 2, '--count 0')
    expect_rc(run(['log-listen', '--bogus']), 2, 'unknown option')
    expect_rc(run(['log-listen', '127.0.0.1:1', '127.0.0.1:2']), 2, 'two addresses')

    # --public: every interface
    lst = Listener(['--public', '0.0.0.0:0', '--json'])
    try:
        if not lst.addr.startswith('0.0.0.0:'):
            fail('--public 0.0.0.0:0 listens on %s' % lst.addr)
        send(lst.port, record(message='public'))
        expect_eq('datagram on 0.0.0.0', record(message='public'), lst.line())
        expect_eq('exit code on SIGINT', 0, lst.stop(signal.SIGINT))
    finally:
        lst.kill()

    # a port in use
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('127.0.0.1', 0))
    try:
        cp = run(['log-listen', '127.0.0.1:%d' % s.getsockname()[1]])
        expect_rc(cp, 1, 'log-listen on a port in use')
        if b'cannot listen on' not in cp.stderr:
            fail('no "cannot listen on" message: ' + show(cp))
    finally:
        s.close()


def check_ipv6():
    listener_available()
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(('::1', 0))
        s.close()
    except OSError as e:
        raise Skip('no IPv6 loopback here (%s)' % e)
    lst = Listener(['[::1]:0', '--json'])
    try:
        if not lst.addr.startswith('[::1]:'):
            fail('[::1]:0 listens on %s' % lst.addr)
        send(lst.port, record(message='six'), host='::1')
        expect_eq('datagram over IPv6', record(message='six'), lst.line())
        expect_eq('exit code', 0, lst.stop())
    finally:
        lst.kill()


# ---- a discovery that logs to the listener and to the logs table ----

def discover_flags():
    listener_available()
    cp = run(['discover', '--help'])
    text = cp.stdout.decode()
    missing = [f for f in ('--log-udp', '--udp-level', '--log-level') if f not in text]
    if missing:
        fail('`treemig discover --help` does not mention %s' % ', '.join(missing))
    return text


def db_rows(db, q, *args):
    conn = tmtest.connect(db)
    try:
        return conn.execute(q, args).fetchall()
    finally:
        conn.close()


def _s(v):
    return v.decode('utf-8', 'surrogateescape') if isinstance(v, bytes) else v


def logs_table(db):
    return [tuple(_s(x) for x in r) for r in
            db_rows(db, 'SELECT time, level, queue, node_id, path, message '
                        'FROM logs ORDER BY id')]


def as_row(d):
    return (d['time'], d['level'], d['queue'], d['node_id'], d['path'], d['message'])


def logged_discovery(work, name, udp_level, log_level, retries=3):
    """Runs a discovery with faults logging to a fresh listener; returns the
    state file, the datagrams (parsed) and discover's result."""
    db = os.path.join(work, name + '.db')
    lst = Listener(['127.0.0.1:0', '--json'])
    try:
        cp = run(['discover', '--db', db, '--quiet', '--workers', '4',
                  '--retries', str(retries), '--log-udp', lst.addr,
                  '--udp-level', udp_level, '--log-level', log_level, SRC, DST])
        if cp.returncode not in (0, 3):
            fail('discover with logging: ' + show(cp))
        # discover has exited: its datagrams are all in the socket's queue,
        # ahead of this one
        marker = 'end-of-run-' + uuid.uuid4().hex
        send(lst.port, record(level='critical', message=marker))
        lines = lst.until(marker)
        expect_eq('listener exit code', 0, lst.stop())
    finally:
        lst.kill()
    grams = []
    for ln in lines:
        try:
            d = json.loads(ln)
        except ValueError as e:
            fail('datagram is not JSON (%s): %r' % (e, ln))
        if not isinstance(d, dict) or set(d) != KEYS:
            fail('datagram keys are %r, expected %r: %r'
                 % (sorted(d) if isinstance(d, dict) else d, sorted(KEYS), ln))
        if d['level'] not in LEVELS or not isinstance(d['time'], int):
            fail('bad level or time in %r' % ln)
        grams.append(d)
    return db, grams, cp


def failed_listings(db):
    """(queue, node_id, path) of every listing that failed, from task_errors."""
    return sorted((_s(q), n, _s(p)) for q, n, p in db_rows(
        db, "SELECT queue, node_id, path FROM task_errors WHERE phase = 'discover'"))


def retried_listings(db):
    n = 0
    for t in ('src_nodes', 'dst_nodes'):
        n += db_rows(db, 'SELECT coalesce(sum(attempts - 1), 0) FROM %s '
                         'WHERE attempts > 1' % t)[0][0]
    return n


def at_least(rows, level, key=lambda r: r[1]):
    lo = LEVELS.index(level)
    return [r for r in rows if LEVELS.index(key(r)) >= lo]


def check_discovery_default_levels(work):
    discover_flags()
    db, grams, cp = logged_discovery(work, 'defaults', 'warning', 'info')
    mig = tmtest.migration(db)
    # below --udp-level only the milestones go out: when discovery
    # started and when it ended (issue 20)
    milestones = [d for d in grams if d['level'] == 'info']
    expect_eq('info datagrams at --udp-level warning (the milestones)',
              [('engine', 'discovery started'), ('engine', 'discovery complete')],
              [(d['queue'], d['message'].split(':')[0]) for d in milestones])
    grams = [d for d in grams if d['level'] != 'info']
    levels = sorted({d['level'] for d in grams})
    if not set(levels) <= {'warning', 'error', 'critical'}:
        fail('--udp-level warning sent levels %r' % levels)
    for d in grams:
        if d['migration'] != mig.get('id'):
            fail('datagram migration %r, state file id %r' % (d['migration'], mig.get('id')))

    # one error per failed listing, naming the queue, the node and the path
    errors = sorted((d['queue'], d['node_id'], d['path'])
                    for d in grams if d['level'] == 'error')
    failed = failed_listings(db)
    if not failed:
        fail('the faults did not make any listing fail (%s): change SHAPE' % show(cp))
    expect_eq('error datagrams (queue, node_id, path) vs task_errors', failed, errors)
    for q, n, p in errors:
        if q not in ('src', 'dst') or not isinstance(n, int) or n <= 0 or not p:
            fail('error datagram without queue, node id or path: %r' % ((q, n, p),))
    # one warning per retried listing
    warnings = [d for d in grams if d['level'] == 'warning']
    expect_eq('warning datagrams vs retried listings (sum of attempts - 1)',
              retried_listings(db), len(warnings))
    for d in warnings:
        if d['queue'] not in ('src', 'dst') or not d['path']:
            fail('retry warning without queue or path: %r' % d)

    # the same records in the logs table, which also has the info ones
    table = logs_table(db)
    expect_eq('logs rows >= warning vs the datagrams',
              sorted(as_row(d) for d in grams), sorted(at_least(table, 'warning')))
    info = [r for r in table if r[1] == 'info']
    if len(info) < 2 or not any('start' in r[5] for r in info) or \
            not any('complete' in r[5] for r in info):
        fail('logs has no info records for the start and the end: %r' % info)
    if any(r[1] in ('trace', 'debug') for r in table):
        fail('--log-level info stored debug or trace records')
    times = [r[0] for r in table]
    t0 = int(time.time() * 1e9) - 600 * 10**9
    if not all(isinstance(t, int) and t > t0 for t in times):
        fail('logs times are not ns since the epoch of this run: %r' % times[:5])


def check_discovery_other_levels(work):
    help_text = discover_flags()
    db, grams, cp = logged_discovery(work, 'info-error', 'info', 'error')
    table = logs_table(db)
    if {r[1] for r in table} - {'error', 'critical'}:
        fail('--log-level error stored %r' % sorted({r[1] for r in table}))
    expect_eq('logs rows vs datagrams >= error',
              sorted(at_least([as_row(d) for d in grams], 'error')), sorted(table))
    if not any(d['level'] == 'info' for d in grams):
        fail('--udp-level info sent no info record (start, end): %r' % grams)
    if at_least([as_row(d) for d in grams], 'info') != [as_row(d) for d in grams]:
        fail('--udp-level info sent debug or trace records')
    expect_eq('error datagrams vs task_errors', failed_listings(db),
              sorted((d['queue'], d['node_id'], d['path'])
                     for d in grams if d['level'] == 'error'))

    if "off" in help_text:
        db, grams, cp = logged_discovery(work, 'udp-off', 'off', 'warning')
        expect_eq('datagrams with --udp-level off', [], grams)
        table = logs_table(db)
        if not table or at_least(table, 'warning') != table:
            fail('--log-level warning stored %r' % sorted({r[1] for r in table}))


def main():
    tmtest.require_binary()
    r = tmtest.Runner('test_log_listen')
    work = tempfile.mkdtemp(prefix='treemig-loglisten-')
    try:
        r.check('log-listen --help', check_help)
        r.check('--json prints each datagram as it came', check_json_passthrough)
        r.check('one line a record, control characters escaped', check_human_lines)
        r.check('colours by level on a terminal only', check_colours_on_a_terminal)
        r.check('--count N exits after N datagrams', check_count)
        r.check('non-loopback refused without --public; port in use',
                check_refusals)
        r.check('IPv6 loopback', check_ipv6)
        r.check('discovery with faults: datagrams and logs rows (warning/info)',
                check_discovery_default_levels, work)
        r.check('discovery with faults: other thresholds',
                check_discovery_other_levels, work)
    finally:
        shutil.rmtree(work, True)
    r.finish()


if __name__ == '__main__':
    main()
