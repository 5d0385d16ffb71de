#!/usr/bin/env python3
"""Integration test of `treemig ui` (docs/ui.md): the server and its JSON
API over a real state file, through real HTTP on 127.0.0.1.

Security, one check each: loopback by default and a warning otherwise, the
access token on every request (cookie from the first URL, or the header),
POSTs only with the token in a header and never with --read-only, the Host
header against DNS rebinding, nothing served outside the embedded assets,
every query parameter validated, every name escaped. Then the API: the
summary equals `status --json`, a folder's children from both trees in
keyset pages (folders first, both sort orders, kind filters, the totals
below each folder), searches, problems, exclude/unexclude through the code
of `treemig exclude` with a dry run that predicts the change exactly, its
refusals, and the server beside a running discovery.

Run:  python3 tests/integration/test_ui.py   (TREEMIG=... for another binary)
"""

import fcntl
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tmtest    # noqa: E402
import uipair    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'src',
                      'ui', 'assets')


def listen_addrs(port):
    """The local addresses with a listening TCP socket on port (from
    /proc/net/tcp and tcp6), as hex strings."""
    out = []
    for f in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    addr, p = parts[1].split(':')
                    if int(p, 16) == port and parts[3] == '0A':
                        out.append(addr)
        except OSError:
            pass
    return out


def expected_children(src, dst, rel):
    """The names under rel (bytes, '' for the root) in both trees, folders
    first, each group by bytes: what the page must list."""
    names = set()
    for root in (src, dst):
        p = os.path.join(root, rel) if rel else root
        if os.path.isdir(p) and not os.path.islink(p):
            names.update(os.listdir(p))
    folders, rest = [], []
    for n in sorted(names):
        isdir = any(os.path.isdir(os.path.join(r, rel, n)) and
                    not os.path.islink(os.path.join(r, rel, n)) for r in (src, dst))
        (folders if isdir else rest).append(n)
    return folders, rest


def list_all(s, params, limit):
    """Follows next until the end; returns the items and the pages."""
    items, pages, after = [], 0, None
    while True:
        p = dict(params, limit=limit)
        if after:
            p['after'] = after
        j = s.get_json('children', p)
        items += j['items']
        pages += 1
        if pages > 1000:
            fail('more than 1000 pages')
        after = j['next']
        if after is None:
            return items, pages
        if not j['partial'] and len(j['items']) != limit:
            fail('a page that is not the last has %d items (limit %d) and is not '
                 'partial' % (len(j['items']), limit))


def hexname(item):
    return bytes.fromhex(item['path_hex']).rsplit(b'/', 1)[1]


def pending_below(db, path):
    """Source rows strictly below path with copy_status pending, and the
    bytes of the files among them (an independent count in SQL)."""
    conn = tmtest.connect(db)
    try:
        prefix = path.rstrip(b'/') + b'/'
        n, b = conn.execute("SELECT count(*), coalesce(sum(CASE WHEN type = 'file' THEN"
                            " size END), 0) FROM src_nodes WHERE copy_status = 'pending'"
                            " AND substr(path, 1, ?) = CAST(? AS TEXT)", (len(prefix), prefix)).fetchone()
        return n, b
    finally:
        conn.close()


def rw(db):
    conn = sqlite3.connect(os.fsdecode(db), timeout=30)
    conn.text_factory = bytes
    return conn


def dump_nodes(db):
    """Both trees and the stats (rows of a count of zero left out: a change
    and its undoing may leave such rows behind)."""
    def stats(t):
        return [r for r in tmtest.table_dump(db, t) if r[-2] != 0 or r[-1] != 0]
    return (tmtest.table_dump(db, 'src_nodes'), tmtest.table_dump(db, 'dst_nodes'),
            stats('src_stats'), stats('dst_stats'), stats('copy_stats'))


# --------------------------------------------------------------------------

def check_security(R, db):
    s = uipair.Server(db)
    try:
        def url_and_loopback():
            expect_eq('the URL names 127.0.0.1', '127.0.0.1', s.host)
            addrs = listen_addrs(s.port)
            expect_eq('it listens on 127.0.0.1 only', ['0100007F'], addrs)
        R.check('listens on loopback, prints the URL with a 64-digit token',
                url_and_loopback)

        def default_port():
            d = uipair.Server(db, listen=None)
            try:
                if not 8080 <= d.port < 8180:
                    fail('default port %d is not 8080 or one of the next' % d.port)
                expect_eq('default address is loopback', ['0100007F'],
                          listen_addrs(d.port))
            finally:
                d.stop()
            expect_eq('exit code after SIGTERM', 0, d.rc)
        R.check('without --listen: 127.0.0.1, port 8080 or the next free one',
                default_port)

        def warning():
            cp = tmtest.run(['ui', '--db', db, '--no-open', '--listen', '192.0.2.1:0'])
            if b'warning' not in cp.stderr or b'not a loopback address' not in cp.stderr:
                fail('no warning for a public address: ' + tmtest.show(cp))
            expect_rc(cp, 1, 'listening on an address this machine does not have')
            t = uipair.Server(db, listen='127.0.0.2:0')
            try:
                err_ok = t.get('summary').status == 200
            finally:
                err = t.stop()
            if b'warning' in err:
                fail('a warning for 127.0.0.2 (loopback): %r' % err)
            if not err_ok:
                fail('127.0.0.2 does not answer')
            for bad in ('127.0.0.1', 'example.com:80', '1.2.3.4:99999', '[::1:80'):
                cp = tmtest.run(['ui', '--db', db, '--no-open', '--listen', bad])
                expect_rc(cp, 2, '--listen %s' % bad)
            cp = tmtest.run(['ui', '--db', db + '.none', '--no-open', '--listen',
                             '127.0.0.1:0'])
            expect_rc(cp, 2, 'no state file')
            if b'no state file' not in cp.stderr:
                fail('no state file: ' + tmtest.show(cp))
        R.check('another address: a warning first; malformed ones refused', warning)

        def token():
            for hdrs, what in (({}, 'no token'),
                               ({'X-Treemig-Token': '0' * 64}, 'a wrong token'),
                               ({'X-Treemig-Token': s.token[:63]}, 'a prefix'),
                               ({'X-Treemig-Token': s.token + '0'}, 'one digit more'),
                               ({'Cookie': 'treemig_%d=%s' % (s.port, '1' * 64)},
                                'a wrong cookie'),
                               ({'Cookie': 'treemig_%d=%s' % (s.port + 1, s.token)},
                                'the token under another cookie name')):
                for path in ('/api/summary', '/', '/app.js'):
                    r = s.request('GET', path, headers=hdrs, token=False)
                    expect_eq('%s %s' % (what, path), 401, r.status)
                    if s.token.encode() in r.body:
                        fail('the token leaks in a refusal')
            r = s.request('GET', '/?token=' + '0' * 64, token=False)
            expect_eq('/?token=wrong', 403, r.status)
            r = s.request('GET', '/?token=' + s.token, token=False)
            expect_eq('/?token=right redirects', 303, r.status)
            expect_eq('to /', '/', r.header('Location'))
            cookie = r.header('Set-Cookie') or ''
            want = 'treemig_%d=%s; Path=/; HttpOnly; SameSite=Strict' % (s.port, s.token)
            expect_eq('the cookie', want, cookie)
            jar = {'Cookie': 'treemig_%d=%s' % (s.port, s.token)}
            r = s.request('GET', '/', headers=jar, token=False)
            expect_eq('/ with the cookie', 200, r.status)
            if b'<script src="/app.js"' not in r.body:
                fail('/ is not the page: %r' % r.body[:200])
            r = s.request('GET', '/api/summary', headers=jar, token=False)
            expect_eq('the API with the cookie', 200, r.status)
        R.check('every request needs the token (cookie from the first URL, or header)',
                token)

        def posts():
            jar = {'Cookie': 'treemig_%d=%s' % (s.port, s.token)}
            before = dump_nodes(db)
            params = {'path': '/scratch', 'dry_run': '0'}
            r = s.post('exclude', params, headers=jar, token=False)
            expect_eq('POST with the cookie only', 403, r.status)
            expect_eq('code', 'ETOKEN', r.json()['code'])
            r = s.post('exclude', params, headers={'Origin': 'http://evil.example'})
            expect_eq('POST from another origin', 403, r.status)
            r = s.request('POST', '/api/exclude', body=b'{"path":"/scratch"}',
                          headers={'Content-Type': 'text/plain'})
            expect_eq('POST that is not a form', 415, r.status)
            r = s.get('exclude', params)
            expect_eq('GET of exclude', 405, r.status)
            r = s.post('summary', {})
            expect_eq('POST of a GET API', 405, r.status)
            r = s.request('POST', '/', body=b'')
            expect_eq('POST of the page', 405, r.status)
            r = s.request('PUT', '/api/summary', body=b'')
            expect_eq('PUT', 405, r.status)
            r = s.request('POST', '/api/exclude', body=b'x' * 70000,
                          headers={'Content-Type': 'application/x-www-form-urlencoded'})
            expect_eq('a body over 64 KiB', 413, r.status)
            expect_eq('nothing changed', before, dump_nodes(db))
            r = s.post('exclude', dict(params, dry_run='1'),
                       headers={'Origin': 'http://127.0.0.1:%d' % s.port})
            expect_eq('POST with the header (dry run)', 200, r.status)
            expect_eq('a dry run changes nothing', before, dump_nodes(db))
        R.check('changes are POSTs with the token in a header, a form, same origin',
                posts)

        def host():
            for h in ('evil.example:%d' % s.port, 'evil.example',
                      '127.0.0.1.evil.example:%d' % s.port, 'localhost.evil:%d' % s.port,
                      '127.0.0.1:%d' % (s.port + 1), '127.0.0.1', '127.0.0.1:',
                      '127.0.0.1:%dx' % s.port, '[::1', ''):
                r = s.request('GET', '/api/summary', host=h)
                expect_eq('Host %r' % h, 403, r.status)
            r = s.request('GET', '/api/summary', host=None)
            if r.status == 200:
                fail('a request without Host is answered')
            for h in ('127.0.0.1:%d' % s.port, 'localhost:%d' % s.port,
                      'LOCALHOST:%d' % s.port, '[::1]:%d' % s.port):
                r = s.request('GET', '/api/summary', host=h)
                expect_eq('Host %r' % h, 200, r.status)
        R.check('the Host header must be this server (no DNS rebinding)', host)

        def assets():
            for name, path in (('app.js', '/app.js'), ('app.css', '/app.css'),
                               ('index.html', '/')):
                with open(os.path.join(ASSETS, name), 'rb') as f:
                    want = f.read()
                r = s.request('GET', path)
                expect_eq('%s served' % path, 200, r.status)
                expect_eq('%s is the embedded file' % path, want, r.body)
            for path in ('/../../../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd',
                         '/app.js/../../../etc/passwd', '//etc/passwd', '/etc/passwd',
                         '/index.html', '/assets/app.js', '/src/ui/assets/app.js',
                         '/app.js%00', '/app.js/', '/APP.JS', '/api/../app.js',
                         '/api/children/../../../etc/passwd', '/%2fetc%2fpasswd',
                         '/./app.js', '/app.js?x=/../../etc/passwd'.split('?')[0] + 'x',
                         '/proc/self/environ', '/' + os.path.abspath(db)):
                r = s.request('GET', path)
                if r.status != 404 or b'root:' in r.body or b'SQLite' in r.body:
                    fail('%s: status %d, body %r' % (path, r.status, r.body[:200]))
        R.check('only the embedded assets are served', assets)

        def headers():
            for path in ('/', '/api/summary', '/app.js'):
                r = s.request('GET', path)
                csp = r.header('Content-Security-Policy') or ''
                for part in ("default-src 'none'", "script-src 'self'",
                             "connect-src 'self'", "frame-ancestors 'none'"):
                    if part not in csp:
                        fail('%s: CSP %r lacks %r' % (path, csp, part))
                expect_eq('%s nosniff' % path, 'nosniff', r.header('X-Content-Type-Options'))
                expect_eq('%s no-store' % path, 'no-store', r.header('Cache-Control'))
            expect_eq('JSON type', 'application/json', s.get('summary').header('Content-Type'))
        R.check('responses forbid other scripts, sniffing, framing, caching', headers)

        def params():
            bad = [
                ('children', {'path': b'/bad\xffname'}, 'path_hex'),
                ('children', {'path_hex': 'zz'}, 'hex'),
                ('children', {'path_hex': '2f6'}, 'hex'),
                ('children', {'path': '/docs/..'}, "'..'"),
                ('children', {'path': '/./docs'}, "'.'"),
                ('children', {'path_hex': '2f00'}, 'NUL'),
                ('children', {'path': '/a', 'path_hex': '2f'}, 'not both'),
                ('children', {'path': '/' + 'x' * 70000}, 'path'),
                ('children', {'limit': '0'}, '1 to 1000'),
                ('children', {'limit': '1001'}, '1 to 1000'),
                ('children', {'limit': '99999999999999999999999'}, '1 to 1000'),
                ('children', {'limit': '-1'}, '1 to 1000'),
                ('children', {'limit': '1e3'}, '1 to 1000'),
                ('children', {'limit': ''}, '1 to 1000'),
                ('children', {'after': 'Q2f'}, 'cursor'),
                ('children', {'after': 'Fzz'}, 'cursor'),
                ('children', {'after': 'T12'}, 'cursor'),
                ('children', {'after': 'Tx:2f'}, 'cursor'),
                ('children', {'after': 'T1:2'}, 'cursor'),
                ('children', {'after': ''}, 'cursor'),
                ('children', {'sort': 'size'}, 'sort'),
                ('children', {'kind': 'evil'}, 'kind'),
                ('children', {'bogus': '1'}, 'unknown parameter'),
                ('search', {'glob': 'x' * 4097}, 'glob'),
                ('search', {'glob': 'a/b'}, 'glob'),
                ('search', {'glob': 'a\nb'}, 'glob'),
                ('search', {}, 'glob, a kind'),
                ('search', {'glob': '*', 'after': 'x:1'}, 'cursor'),
                ('search', {'glob': '*', 'after': 's:-1'}, 'cursor'),
                ('search', {'glob': '*', 'after': 's:99999999999999999999999'}, 'cursor'),
                ('search', {'glob': '*', 'after': 's:99999999999999999999'}, 'cursor'),
                ('search', {'glob': '*', 'limit': '5000'}, '1 to 1000'),
                ('logs', {'level': 'loud'}, 'level'),
                ('logs', {'before': '0'}, 'before'),
                ('task_errors', {'limit': '100000'}, '1 to 1000'),
                ('progress', {'limit': '0'}, 'limit'),
                ('summary', {'x': '1'}, 'unknown parameter'),
            ]
            for api, p, why in bad:
                r = s.get(api, p)
                if r.status != 400:
                    fail('/api/%s %r: status %d, expected 400: %r'
                         % (api, p, r.status, r.body[:300]))
                msg = r.json().get('error', '')
                if why.encode() not in msg.encode():
                    fail('/api/%s %r: the message %r does not say %r' % (api, p, msg, why))
            r = s.request('GET', '/api/children?limit=5&limit=6')
            expect_eq('a parameter given twice', 400, r.status)
            r = s.get('nonexistent')
            expect_eq('unknown API', 404, r.status)
            r = s.post('exclude', {'pattern': '/scratch', 'dry_run': '1', 'extra': '1'})
            expect_eq('unknown POST parameter', 400, r.status)
            r = s.request('POST', '/api/exclude', body=b'pattern=%zz',
                          headers={'Content-Type': 'application/x-www-form-urlencoded'})
            expect_eq('malformed %-escape in a form', 400, r.status)
            r = s.get('children', {'path': '/no/such/folder'})
            expect_eq('a path in neither tree', 404, r.status)
            # %00 is never decoded: no NUL reaches a path or a glob
            r = s.request('GET', '/api/children?path=/docs%00/x')
            expect_eq('a %00 in a path is three characters: no such path', 404, r.status)
            r = s.request('GET', '/api/search?glob=/docs%00*')
            expect_eq('a %00 in a glob is three characters', ([], 200),
                      (r.json()['items'], r.status))
        R.check('query parameters are validated (paths, hex, sizes, globs, cursors)',
                params)

        def escaping():
            r = s.get('children', {})
            expect_eq('root listing', 200, r.status)
            for ch in (b'<', b'>', b'&', b"'"):
                if ch in r.body:
                    fail('a raw %r in the JSON of the listing' % ch)
            j = r.json()
            names = {hexname(i): i['name'] for i in j['items']}
            expect_eq('the script folder, as text', '<script>alert(1)<',
                      names.get(uipair.SCRIPT_DIR))
            expect_eq('the img name, as text', uipair.IMG_NAME.decode(),
                      names.get(uipair.IMG_NAME))
            expect_eq('a byte that is not UTF-8', 'bad\u00ffname', names.get(uipair.BAD_NAME))
            j = s.get_json('search', {'glob': '*script*'})
            paths = [bytes.fromhex(i['path_hex']) for i in j['items']]
            expect_eq('search finds the script path', [b'/' + uipair.SCRIPT_DIR,
                                                       uipair.SCRIPT_PATH], paths)
            expect_eq('as text', '/<script>alert(1)</script>', j['items'][1]['path'])
            r = s.get('search', {'glob': '*script*'})
            if b'<' in r.body:
                fail('a raw < in the search answer')
            r = s.get('children', {'path': '/<script>alert(1)</script>'})
            expect_eq('a path that is the payload', 200, r.status)
            if b'<' in r.body:
                fail('a raw < in the folder answer')
        R.check('every name is escaped in the JSON (< > & \' as \\u00XX)', escaping)
    finally:
        s.stop()
    R.check('SIGTERM stops it with exit code 0', expect_eq, 'exit code', 0, s.rc)


def check_api(R, db, src, dst):
    s = uipair.Server(db)
    try:
        s.wait_index()

        def summary():
            j = s.get_json('summary')
            expect_eq('the summary', tmtest.status_json(db), j['status'])
            expect_eq('read_only', False, j['read_only'])
        R.check('the summary is the object of status --json', summary)

        def children():
            # (destination-only folders and type clashes are never listed:
            # their contents are not in the state file, by design)
            for rel in (b'', b'docs', b'photos', b'photos/2019', b'scratch',
                        uipair.SCRIPT_DIR):
                folders, rest = expected_children(src, dst, rel)
                params = {'path_hex': (b'/' + rel).hex()}
                for limit in (1, 2, 3, 100):
                    items, pages = list_all(s, params, limit)
                    expect_eq('/%r limit %d: folders first, then the rest, by bytes'
                              % (rel, limit), folders + rest, [hexname(i) for i in items])
                    expect_eq('/%r: the folder flags' % rel,
                              [True] * len(folders) + [False] * len(rest),
                              [i['folder'] for i in items])
                items, _ = list_all(s, dict(params, sort='name_desc'), 2)
                expect_eq('/%r descending' % rel, folders[::-1] + rest[::-1],
                          [hexname(i) for i in items])
                # without the index (cursor 'A'): one list by name
                items, _ = list_all(s, dict(params, after='A'), 2)
                expect_eq('/%r by name only' % rel, sorted(folders + rest),
                          [hexname(i) for i in items])
                # most to copy first: the source's folders by the bytes to
                # copy below them, then the destination's other folders
                base_path = b'/' + rel if rel else b''
                srcdirs = [n for n in folders if os.path.isdir(os.path.join(src, rel, n))]
                dstonly = [n for n in folders if n not in srcdirs]
                by_bytes = sorted(srcdirs, key=lambda n: (
                    -pending_below(db, base_path + b'/' + n)[1], n))
                for limit in (1, 2, 100):
                    items, _ = list_all(s, dict(params, sort='todo'), limit)
                    expect_eq('/%r by bytes to copy, limit %d' % (rel, limit),
                              by_bytes + dstonly + rest, [hexname(i) for i in items])
            for rel in (b'only_dir', b'clash'):
                j = s.get_json('children', {'path_hex': (b'/' + rel).hex()})
                expect_eq('/%r is not listed' % rel, [], j['items'])
        R.check('children of both trees, folders first, in keyset pages of any size',
                children)

        def states():
            want = {
                b'': {b'docs': 'same', b'photos': 'same', b'scratch': 'missing',
                      b'clash': 'type', b'only_dir': 'extra', b'only_dst': 'extra',
                      uipair.SCRIPT_DIR: 'missing', uipair.IMG_NAME: 'missing',
                      uipair.BAD_NAME: 'missing'},
                b'docs': {b'a.txt': 'same', b'b.txt': 'conflict', b'c.txt': 'missing'},
                b'photos/2019': {b'img1.jpg': 'same', b'img2.jpg': 'missing'},
            }
            for rel, w in want.items():
                items, _ = list_all(s, {'path_hex': (b'/' + rel).hex()}, 100)
                got = {hexname(i): i['state'] for i in items}
                expect_eq('states in /%r' % rel, w, got)
            items, _ = list_all(s, {'path': '/docs'}, 100)
            b = [i for i in items if hexname(i) == b'b.txt'][0]
            expect_eq('b.txt on both sides', ('file', 'file', 'size', 'size'),
                      (b['src']['type'], b['dst']['type'], b['src']['conflict'],
                       b['dst']['conflict']))
            expect_eq('b.txt sizes', (7, 16), (b['src']['size'], b['dst']['size']))
            c = [i for i in items if hexname(i) == b'c.txt'][0]
            expect_eq('c.txt has no destination side', None, c['dst'])
            items, _ = list_all(s, {}, 100)
            od = [i for i in items if hexname(i) == b'only_dst'][0]
            expect_eq('only_dst has no source side', (None, 'not_on_src'),
                      (od['src'], od['dst']['traversal']))
        R.check('each child with its status on both sides', states)

        def totals():
            st = tmtest.status_json(db)
            j = s.get_json('children', {})
            t = j['folder']['totals']
            expect_eq('root totals = status', (st['copy']['pending'],
                                               st['copy']['bytes_pending'],
                                               st['copy']['conflicts'],
                                               st['dst']['not_on_src']),
                      (t['todo'], t['todo_bytes'], t['conflict'], t['extra']))
            for i in j['items']:
                if not i['folder'] or i['src'] is None:
                    continue
                path = bytes.fromhex(i['path_hex'])
                expect_eq('to copy below %r' % path, pending_below(db, path),
                          (i['totals']['todo'], i['totals']['todo_bytes']))
        R.check('per-folder totals: what is to copy below, in items and bytes', totals)

        def kinds():
            items, _ = list_all(s, {'kind': 'conflict'}, 100)
            expect_eq('conflicts at the root: the folders holding one, the clash',
                      [b'clash', b'docs'], [hexname(i) for i in items])
            items, _ = list_all(s, {'path': '/docs', 'kind': 'conflict'}, 100)
            expect_eq('conflicts in /docs', [b'b.txt'], [hexname(i) for i in items])
            items, _ = list_all(s, {'kind': 'extra'}, 1)
            expect_eq('destination only at the root', [b'only_dir', b'only_dst'],
                      [hexname(i) for i in items])
            items, _ = list_all(s, {'kind': 'same', 'path': '/photos'}, 100)
            expect_eq('already there in /photos', [b'2019'], [hexname(i) for i in items])
        R.check('filter by kind (a folder stays when it holds that kind)', kinds)

        def search():
            def all_of(params, limit):
                out, after = [], None
                for _ in range(1000):
                    p = dict(params, limit=limit)
                    if after:
                        p['after'] = after
                    j = s.get_json('search', p)
                    out += [(i['side'], bytes.fromhex(i['path_hex'])) for i in j['items']]
                    after = j['next']
                    if after is None:
                        return out
                fail('search does not end')
            expect_eq('*.txt', [('src', b'/docs/a.txt'), ('src', b'/docs/b.txt'),
                                ('src', b'/docs/c.txt')],
                      sorted(all_of({'glob': '*.txt'}, 2)))
            expect_eq('/scratch/f1?', [('src', b'/scratch/f%02d' % i) for i in range(10, 20)],
                      sorted(all_of({'glob': '/scratch/f1?'}, 3)))
            expect_eq('kind extra', [('dst', b'/only_dir'), ('dst', b'/only_dst')],
                      sorted(all_of({'kind': 'extra'}, 1)))
            expect_eq('a glob finds destination-only items too',
                      [('dst', b'/only_dir'), ('dst', b'/only_dst')],
                      sorted(all_of({'glob': 'only_*'}, 1)))
            expect_eq('kind conflict', [('src', b'/clash'), ('src', b'/docs/b.txt')],
                      sorted(all_of({'kind': 'conflict'}, 1)))
            expect_eq('glob and kind', [('src', b'/docs/c.txt')],
                      all_of({'glob': '*.txt', 'kind': 'missing'}, 100))
            missing = all_of({'kind': 'missing'}, 7)
            conn = tmtest.connect(db)
            try:
                want = [r[0] for r in conn.execute(
                    "SELECT path FROM src_nodes WHERE copy_status = 'pending' AND "
                    "conflict IS NULL AND depth > 0 ORDER BY id")]
            finally:
                conn.close()
            expect_eq('kind missing, in pages of 7', [('src', p) for p in want], missing)
        R.check('search by glob and kind over both trees, paged', search)

        def exclude():
            def dst_excluded():
                conn = tmtest.connect(db)
                try:
                    return conn.execute("SELECT coalesce(sum(count), 0) FROM dst_stats "
                                        "WHERE traversal_status = 'excluded' AND depth > 0"
                                        ).fetchone()[0]
                finally:
                    conn.close()
            before = tmtest.status_json(db)
            before_dx = dst_excluded()
            nodes = dump_nodes(db)
            pre = s.post('exclude', {'path': '/scratch', 'dry_run': '1'})
            expect_eq('dry run', 200, pre.status)
            pre = pre.json()
            expect_eq('dry run: rows changed', 31, pre['changed'])
            expect_eq('dry run changes nothing', nodes, dump_nodes(db))
            done = s.post('exclude', {'path': '/scratch', 'dry_run': '0'})
            expect_eq('exclude', 200, done.status)
            done = done.json()
            expect_eq('the same effect as announced', pre['effect'], done['effect'])
            after = tmtest.status_json(db)
            expect_eq('dst.excluded moved as announced', pre['effect']['dst']['excluded'],
                      dst_excluded() - before_dx)
            for side, key in (('src', 'excluded'), ('copy', 'pending'),
                              ('copy', 'bytes_pending'), ('copy', 'conflicts'),
                              ('copy', 'already_existed'), ('copy', 'skipped'),
                              ('copy', 'excluded')):
                expect_eq('%s.%s moved as announced' % (side, key),
                          pre['effect'][side][key], after[side][key] - before[side][key])
            expect_eq('31 excluded', 31, after['src']['excluded'] - before['src']['excluded'])
            tmtest.check_all_stats(db)
            cp = tmtest.run(['review', '--db', db, '--list', 'excluded'])
            expect_rc(cp, 0, 'review --list excluded')
            expect_eq('review lists them as by treemig exclude', 31,
                      cp.stdout.count(b'\treview\n'))
            items, _ = list_all(s, {}, 100)
            sc = [i for i in items if hexname(i) == b'scratch'][0]
            expect_eq('/scratch shown excluded', ('excluded', 'exclude', '/scratch'),
                      (sc['state'], sc['src']['excluded']['how'],
                       sc['src']['excluded']['pattern']))
            inner, _ = list_all(s, {'path': '/scratch'}, 100)
            expect_eq('below it: inherited', {('excluded', 'inherited')},
                      {(i['state'], i['src']['excluded']['how']) for i in inner})
            ex = s.get_json('exclusions')
            expect_eq('the exclusions list', [b'/scratch'],
                      [bytes.fromhex(x['path_hex']) for x in ex['items']])
            # the same refusals as the CLI, with the same message
            r = s.post('exclude', {'path': '/scratch/f01', 'unexclude': '1'})
            cp = tmtest.run(['unexclude', '--db', db, '/scratch/f01'])
            expect_eq('unexclude below an exclusion refused', 409, r.status)
            expect_eq('the message of the CLI', cp.stderr.decode().split(': ', 1)[1].strip(),
                      r.json()['error'])
            r = s.post('exclude', {'path': '/scratch', 'unexclude': '1'})
            expect_eq('unexclude', 200, r.status)
            expect_eq('everything back', nodes, dump_nodes(db))
            expect_eq('status as before', before, tmtest.status_json(db))
            # a glob, and names that need escaping
            r = s.post('exclude', {'pattern': '*.jpg', 'dry_run': '1'})
            expect_eq('a glob (dry run)', (200, 3), (r.status, r.json()['changed']))
            r = s.post('exclude', {'path_hex': (b'/' + uipair.IMG_NAME).hex(), 'dry_run': '1'})
            expect_eq('a name with markup (dry run)', (200, 1), (r.status, r.json()['changed']))
            r = s.post('exclude', {'path_hex': (b'/' + uipair.BAD_NAME).hex(), 'dry_run': '1'})
            expect_eq('a name that is not UTF-8 (dry run)', (200, 1),
                      (r.status, r.json()['changed']))
            for p, code in (({'path': '/'}, 400), ({'pattern': '/nothing/here'}, 400),
                            ({'pattern': 'a/b'}, 400), ({}, 400),
                            ({'path': '/a', 'pattern': '/a'}, 400)):
                r = s.post('exclude', p)
                expect_eq('refused: %r' % p, code, r.status)
            expect_eq('nothing changed by the refusals', nodes, dump_nodes(db))
        R.check('exclude/unexclude through the code of treemig exclude, dry run first',
                exclude)

        def refused_after_copy():
            nodes = dump_nodes(db)
            conn = rw(db)
            try:
                cur = conn.execute("UPDATE src_nodes SET copy_status = 'successful' "
                                   "WHERE path = '/docs/c.txt'")
                expect_eq('the row marked copied', 1, cur.rowcount)
                conn.commit()
                state = dump_nodes(db)
                r = s.post('exclude', {'path': '/docs', 'dry_run': '1'})
                expect_eq('preview where the copy started', 409, r.status)
                if '/docs/c.txt' not in r.json()['error']:
                    fail('the message does not name the copied item: %r' % r.json())
                r = s.post('exclude', {'path': '/docs'})
                expect_eq('exclude where the copy started', 409, r.status)
                cp = tmtest.run(['exclude', '--db', db, '/docs'])
                expect_rc(cp, 2, 'the CLI refuses too')
                expect_eq('with the same message', cp.stderr.decode().split(': ', 1)[1].strip(),
                          r.json()['error'])
                expect_eq('rows unchanged', state, dump_nodes(db))
                r = s.post('exclude', {'path': '/photos', 'dry_run': '1'})
                expect_eq('elsewhere allowed', 200, r.status)
            finally:
                conn.execute("UPDATE src_nodes SET copy_status = 'pending' "
                             "WHERE path = '/docs/c.txt'")
                conn.commit()
                conn.close()
            expect_eq('as before', nodes, dump_nodes(db))
        R.check('refused, with the reason, after the copy touched that part',
                refused_after_copy)

        def locked():
            fd = os.open(db + b'.lock' if isinstance(db, bytes) else db + '.lock',
                         os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                r = s.post('exclude', {'path': '/scratch', 'dry_run': '1'})
                expect_eq('exclude while another process writes', (409, 'ELOCKED'),
                          (r.status, r.json()['code']))
                expect_eq('reading goes on', 200, s.get('children', {}).status)
            finally:
                os.close(fd)
        R.check('a change needs the lock; reading does not', locked)
    finally:
        s.stop()

    ro = uipair.Server(db, '--read-only')
    try:
        def read_only():
            nodes = dump_nodes(db)
            for dry in ('0', '1'):
                r = ro.post('exclude', {'path': '/scratch', 'dry_run': dry})
                expect_eq('--read-only refuses (dry_run=%s)' % dry, (403, 'EREADONLY'),
                          (r.status, r.json()['code']))
            expect_eq('nothing changed', nodes, dump_nodes(db))
            expect_eq('it still reads', True, ro.get_json('summary')['read_only'])
        R.check('--read-only refuses every POST', read_only)
    finally:
        ro.stop()


def check_problems(R, base):
    """Failures from the simulated storage (deny=): task errors, failed items, logs."""
    db = os.path.join(base, 'sim.db')
    spec = 'sim:seed=5,depth=3,folders=4,files=3'
    cp = tmtest.run(['discover', '--db', db, '--quiet', '--retries', '0',
                     spec + ',deny=/d1', spec + ',world=dst,keep=0.8'])
    if cp.returncode not in (0, 3):
        R.check('discover a failing sim pair', expect_rc, cp, 3)
        return
    s = uipair.Server(db)
    try:
        def problems():
            te = s.get_json('task_errors', {'limit': 1000})
            conn = tmtest.connect(db)
            try:
                want = conn.execute('SELECT count(*) FROM task_errors').fetchone()[0]
                failed = [r[0] for r in conn.execute(
                    "SELECT path FROM src_nodes WHERE traversal_status = 'failed' "
                    "OR copy_status = 'failed'")]
                dfailed = [r[0] for r in conn.execute(
                    "SELECT path FROM dst_nodes WHERE traversal_status = 'failed'")]
                warnings = conn.execute("SELECT count(*) FROM logs WHERE level IN "
                                        "('warning', 'error', 'critical')").fetchone()[0]
            finally:
                conn.close()
            if not want or not failed:
                fail('the pair made no failure (task_errors %d, failed %r)' % (want, failed))
            expect_eq('task errors', want, len(te['items']))
            if not any(b'permission denied' in (i['message'] or '').encode() for i in te['items']):
                fail('no "permission denied" among %r' % te['items'][:3])
            out, after = [], None
            while True:
                j = s.get_json('search', dict({'kind': 'failed', 'limit': 2},
                                              **({'after': after} if after else {})))
                out += [(i['side'], bytes.fromhex(i['path_hex'])) for i in j['items']]
                after = j['next']
                if not after:
                    break
            expect_eq('failed items of both sides',
                      sorted([('src', p) for p in failed] + [('dst', p) for p in dfailed]),
                      sorted(out))
            lg = s.get_json('logs', {'level': 'warning', 'limit': 1000})
            expect_eq('warnings and above', warnings, len(lg['items']))
            allg = s.get_json('logs', {'level': 'trace', 'limit': 2})
            expect_eq('a page of logs', 2, len(allg['items']))
            nxt = s.get_json('logs', {'level': 'trace', 'limit': 2, 'before': allg['next']})
            if nxt['items'] and nxt['items'][0]['id'] >= allg['items'][-1]['id']:
                fail('the next page of logs is not older: %r %r' % (allg, nxt))
        R.check('problems: task errors, failed items of both sides, logs by level',
                problems)
    finally:
        s.stop()


def check_beside_discover(R, base):
    """The page reads while discovery writes the same state file."""
    db = os.path.join(base, 'live.db')
    # about 3 s: 100 ms per listing, 2 workers per side
    spec = 'sim:seed=11,depth=5,folders=5,files=6,latency=100'
    disc = subprocess.Popen([tmtest.TREEMIG, 'discover', '--db', db, '--quiet',
                             '--workers', '2', spec,
                             spec + ',world=dst'], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    servers = []
    try:
        end = time.monotonic() + 60
        while not os.path.exists(db + '.yaml') and time.monotonic() < end:
            time.sleep(0.05)

        def live():
            s = uipair.Server(db)
            servers.append(s)
            seen = []
            while disc.poll() is None:
                j = s.get_json('summary')
                seen.append((j['status']['phase'], j['status']['src']['files']))
                r = s.get('children', {})
                if r.status != 200:
                    fail('children during discovery: %d %r' % (r.status, r.body[:300]))
                if len(seen) > 100000:
                    break
                time.sleep(0.05)
            out, err = disc.communicate()
            expect_eq('discover exit code (not locked out by the page)', 0, disc.returncode)
            if not any(p == 'discovering' for p, _ in seen):
                fail('never saw the phase discovering: %r' % seen[:5])
            files = [f for _, f in seen]
            if files != sorted(files):
                fail('the counts went backwards: %r' % files)
            if len(set(files)) < 2:
                fail('the counts never moved during the discovery: %r' % seen[:5])
            expect_eq('the summary at the end', tmtest.status_json(db),
                      s.get_json('summary')['status'])
            rows = s.get_json('progress', {'limit': 10000})['rows']
            if not {'src', 'dst'} <= {r['queue'] for r in rows}:
                fail('the progress has no src and dst snapshots: %r' % rows[:3])
        R.check('serves beside a running discovery of the same state file', live)
    finally:
        if disc.poll() is None:
            disc.kill()
            disc.communicate()
        for s in servers:
            s.stop()


def check_temp_files(R, db, base):
    """The folder index's file is removed at exit, and after a kill -9 by
    the next server; files of running processes stay."""
    tmp = os.path.join(base, 'tmpdir')
    os.makedirs(tmp, exist_ok=True)
    env = {'TMPDIR': tmp}

    def files():
        return sorted(f for f in os.listdir(tmp) if f.startswith('treemig-ui-'))

    def temp_files():
        live = 'treemig-ui-%d-abcdef' % os.getpid()   # a running process's
        open(os.path.join(tmp, live), 'w').close()
        s = uipair.Server(db, env=env)
        s.wait_index()
        mine = [f for f in files() if f.startswith('treemig-ui-%d-' % s.proc.pid)]
        expect_eq('one index file, named for its server', 1, len(mine))
        s.proc.kill()
        s.stop()
        expect_eq('left behind by kill -9', sorted([live] + mine), files())
        t = uipair.Server(db, env=env)
        try:
            t.wait_index()
            rest = [f for f in files() if not f.startswith('treemig-ui-%d-' % t.proc.pid)]
            expect_eq('the next server removed it, not the live one', [live], rest)
        finally:
            t.stop()
        expect_eq('removed at exit', [live], files())
    R.check('the index file goes at exit, and after kill -9 with the next start',
            temp_files)


def main():
    tmtest.require_binary()
    uipair.tmtest.TREEMIG = tmtest.TREEMIG
    R = tmtest.Runner('test_ui')
    base = tempfile.mkdtemp(prefix='treemig-ui-', dir='/tmp')
    try:
        src, dst = uipair.build(os.path.join(base, 'trees'))
        db = os.path.join(base, 'ui.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        if cp.returncode != 0:
            R.check('discover the pair', expect_rc, cp, 0)
        else:
            check_security(R, db)
            check_api(R, db, src, dst)
            check_temp_files(R, db, base)
        check_problems(R, base)
        check_beside_discover(R, base)
    finally:
        uipair._stop_all()
        R.check('every server stopped cleanly (exit 0, no sanitizer report)',
                uipair.check_exits)
        shutil.rmtree(base, ignore_errors=True)
    R.finish()


if __name__ == '__main__':
    main()
