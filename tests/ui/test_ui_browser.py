#!/usr/bin/env python3
"""The page of `treemig ui` in a real browser: headless Chromium driven
through the DevTools protocol (tests/ui/cdp.py, a small client of our own
over a WebSocket), over a generated migration (tests/integration/uipair.py).

It opens the URL `treemig ui` printed, checks that the summary shows the
counts of `treemig status --json`, walks into a folder and finds its
conflict, checks that hostile names are shown as text and run nothing,
excludes a folder from the page (preview, confirm) and sees the counts
change in the page and in `treemig status`, includes it again, and checks
that the page made no request anywhere but to the server and threw no
error. Screenshots go to $TREEMIG_UI_ARTIFACTS (ctest: build/ui-screenshots).

Exits 77 (a skip) only when Chromium cannot start at all; it runs as root
too (--no-sandbox).
"""

import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))

import cdp       # noqa: E402
import tmtest    # noqa: E402
import uipair    # noqa: E402
from tmtest import expect_eq, expect_rc, fail  # noqa: E402

ARTIFACTS = os.environ.get('TREEMIG_UI_ARTIFACTS') or os.path.join(
    os.path.dirname(os.path.abspath(tmtest.TREEMIG)), 'ui-screenshots')


def js(s):
    return json.dumps(s)


def page_counts(p):
    """{data-key: number} of the summary's numbers as the page shows them."""
    return p.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll("
        "'#summary [data-key]')).map(e => [e.dataset.key, Number(e.dataset.value)]))")


def status_value(st, key):
    if key == 'failed':
        return st['src']['failed'] + st['dst']['failed'] + st['copy']['failed']
    a, b = key.split('.')
    return st[a][b]


def check_counts(p, st, what):
    counts = page_counts(p)
    if len(counts) < 20:
        fail('%s: the summary shows only %r' % (what, counts))
    for k, v in sorted(counts.items()):
        expect_eq('%s: %s' % (what, k), status_value(st, k), v)


def rows(p, table='children'):
    return p.evaluate(
        "Array.from(document.querySelectorAll('#%s tbody tr')).map(r => "
        "({name: r.dataset.name, state: r.dataset.state, text: r.innerText}))" % table)


def wait_rows(p, names, what):
    """Waits until the listing holds exactly these names (in order)."""
    p.wait_for("(() => { const n = Array.from(document.querySelectorAll("
               "'#children tbody tr')).map(r => r.dataset.name); return "
               "JSON.stringify(n) === %s; })()" % js(json.dumps(names, separators=(',', ':'))),
               what)


def main():
    tmtest.require_binary()
    uipair.tmtest.TREEMIG = tmtest.TREEMIG
    R = tmtest.Runner('test_ui_browser')
    try:
        browser = cdp.Browser()
    except cdp.BrowserUnavailable as e:
        print('SKIP chromium cannot start here: %s' % e)
        sys.exit(77)
    base = tempfile.mkdtemp(prefix='treemig-ui-browser-', dir='/tmp')
    os.makedirs(ARTIFACTS, exist_ok=True)
    server = None
    try:
        src, dst = uipair.build(os.path.join(base, 'trees'))
        db = os.path.join(base, 'ui.db')
        cp = tmtest.run(['discover', '--db', db, '--quiet', src, dst])
        expect_rc(cp, 0, 'discover')
        server = uipair.Server(db)
        server.wait_index()
        p = browser.page()
        p.call('Network.enable')
        # what the page's Content-Security-Policy blocked never reaches the
        # network: count it too (this script is the test's, not the page's)
        p.call('Page.addScriptToEvaluateOnNewDocument', source=(
            "window.__blocked = []; document.addEventListener("
            "'securitypolicyviolation', e => window.__blocked.push("
            "e.violatedDirective + ' ' + e.blockedURI));"))
        origin = 'http://127.0.0.1:%d/' % server.port

        def shot(name):
            p.screenshot(os.path.join(ARTIFACTS, name))

        def summary():
            p.navigate(server.url)
            p.wait_for("document.querySelector('#cards [data-key]') !== null", 'the summary')
            expect_eq('the token left the address bar', origin, p.evaluate('location.href'))
            st = tmtest.status_json(db)
            check_counts(p, st, 'summary')
            expect_eq('phase', st['phase'], p.evaluate("document.getElementById('phase').textContent"))
            wait_rows(p, ['<script>alert(1)<', 'clash', 'docs', 'only_dir', 'photos', 'scratch',
                          '<img src=x onerror=alert(1)>', 'bad\\xffname', 'only_dst'],
                      'the root listing, folders first')
            shot('1-summary.png')
        R.check('the summary shows the counts of status --json', summary)

        def walk_and_conflict():
            p.click('#children tr[data-name="docs"] a.folder')
            wait_rows(p, ['a.txt', 'b.txt', 'c.txt'], 'the listing of /docs')
            crumbs = p.evaluate("document.getElementById('crumbs').innerText")
            if 'docs' not in crumbs:
                fail('the breadcrumbs do not show docs: %r' % crumbs)
            got = {r['name']: (r['state'], r['text']) for r in rows(p)}
            expect_eq('b.txt is a conflict', 'conflict', got['b.txt'][0])
            if 'conflict: size' not in got['b.txt'][1]:
                fail('the row of b.txt does not say why: %r' % got['b.txt'][1])
            expect_eq('a.txt is already there', 'same', got['a.txt'][0])
            expect_eq('c.txt is missing', 'missing', got['c.txt'][0])
            shot('2-folder-conflict.png')
            # the filter by kind, and back up with the breadcrumbs
            p.evaluate("(() => { const s = document.getElementById('kind'); s.value = 'conflict';"
                       " s.dispatchEvent(new Event('change')); })()")
            wait_rows(p, ['b.txt'], 'only the conflict')
            p.evaluate("(() => { const s = document.getElementById('kind'); s.value = 'all';"
                       " s.dispatchEvent(new Event('change')); })()")
            p.click('#crumbs a')
            wait_rows(p, ['<script>alert(1)<', 'clash', 'docs', 'only_dir', 'photos', 'scratch',
                          '<img src=x onerror=alert(1)>', 'bad\\xffname', 'only_dst'],
                      'the root again')
        R.check('walk into a folder and find its conflict', walk_and_conflict)

        def hostile():
            texts = p.evaluate("Array.from(document.querySelectorAll('#children tbody tr td:first-child'))"
                               ".map(td => td.textContent)")
            for want in ('<script>alert(1)</', '<img src=x onerror=alert(1)>', 'bad\\xffname'):
                if want not in texts:
                    fail('%r is not shown as text: %r' % (want, texts))
            expect_eq('no img element came from a name', 0,
                      p.evaluate("document.querySelectorAll('img').length"))
            expect_eq('the only script is the page\'s', ['/app.js'],
                      p.evaluate("Array.from(document.scripts).map(s => s.getAttribute('src'))"))
            p.click('#children tr[data-name="<script>alert(1)<"] a.folder')
            wait_rows(p, ['script>'], 'the folder of the script path')
            crumbs = p.evaluate("document.getElementById('crumbs').textContent")
            expect_eq('the breadcrumbs spell the path', '/<script>alert(1)<', crumbs)
            p.click('#tabs button[data-tab="search"]')
            p.type_text('#glob', '*script*')
            p.click('#searchform button[type="submit"]')
            p.wait_for("document.querySelectorAll('#results tbody tr').length === 2", 'the search')
            found = p.evaluate("Array.from(document.querySelectorAll('#results tbody tr td:first-child'))"
                               ".map(td => td.textContent)")
            expect_eq('the search shows the path as text',
                      ['/<script>alert(1)<', '/<script>alert(1)</script>'], found)
            shot('3-hostile-names.png')
            p.drain()
            dialogs = [e for e in p.events if e['method'] == 'Page.javascriptDialogOpening']
            expect_eq('no alert ran', [], dialogs)
            p.click('#tabs button[data-tab="tree"]')
            p.click('#crumbs a')
        R.check('hostile names render as text and run nothing', hostile)

        def exclude():
            before = tmtest.status_json(db)
            wait_rows(p, ['<script>alert(1)<', 'clash', 'docs', 'only_dir', 'photos', 'scratch',
                          '<img src=x onerror=alert(1)>', 'bad\\xffname', 'only_dst'], 'the root')
            p.click('#children tr[data-name="scratch"] button.exclude')
            p.wait_for("!document.getElementById('dialog').hidden", 'the preview')
            effect = p.evaluate(
                "Object.fromEntries(Array.from(document.querySelectorAll('#dbody [data-key]'))"
                ".map(e => [e.dataset.key, Number(e.dataset.value)]))")
            expect_eq('the counts shown before confirming',
                      {'src.excluded': 31, 'copy.pending': -31,
                       'copy.bytes_pending': -sum(range(1, 31))},
                      {k: effect.get(k) for k in ('src.excluded', 'copy.pending',
                                                  'copy.bytes_pending')})
            expect_eq('nothing changed before confirming', before, tmtest.status_json(db))
            shot('4-exclude-preview.png')
            p.click('#dok')
            want_pending = before['copy']['pending'] - 31
            p.wait_for("Number(document.querySelector('#cards [data-key=\"copy.pending\"]')"
                       ".dataset.value) === %d" % want_pending, 'the new count in the page')
            after = tmtest.status_json(db)
            expect_eq('treemig status: to copy', want_pending, after['copy']['pending'])
            expect_eq('treemig status: excluded', before['src']['excluded'] + 31,
                      after['src']['excluded'])
            p.wait_for("document.querySelector('#children tr[data-name=\"scratch\"]') && "
                       "document.querySelector('#children tr[data-name=\"scratch\"]')"
                       ".dataset.state === 'excluded'", 'scratch shown excluded')
            check_counts(p, after, 'after the exclusion')
            shot('5-excluded.png')
            # and back, from the list of exclusions
            p.click('#tabs button[data-tab="exclusions"]')
            p.wait_for("document.querySelector('#exclusions tbody button') !== null", 'the list')
            p.click('#exclusions tbody button')
            p.wait_for("!document.getElementById('dialog').hidden", 'the preview')
            p.click('#dok')
            p.wait_for("Number(document.querySelector('#cards [data-key=\"copy.pending\"]')"
                       ".dataset.value) === %d" % before['copy']['pending'], 'the count back')
            expect_eq('treemig status as before', before, tmtest.status_json(db))
        R.check('exclude a folder from the page: counts change in the page and in status',
                exclude)

        def problems():
            p.click('#tabs button[data-tab="problems"]')
            p.wait_for("document.querySelector('#logs tbody tr') !== null", 'the logs')
            shot('6-problems.png')
        R.check('the problems tab loads', problems)

        def clean():
            p.drain()
            errors = [e['params'] for e in p.events if e['method'] == 'Runtime.exceptionThrown']
            expect_eq('no script error', [], errors)
            urls = [e['params']['request']['url'] for e in p.events
                    if e['method'] == 'Network.requestWillBeSent']
            if not urls:
                fail('no request seen')
            outside = [u for u in urls if not u.startswith(origin) and not u.startswith('data:')]
            expect_eq('no request outside the server', [], outside)
            expect_eq('nothing blocked by the Content-Security-Policy', [],
                      p.evaluate('window.__blocked'))
        R.check('no script error, no request to anything but the server', clean)
    finally:
        browser.close()
        if server:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    R.check('the server stopped cleanly (exit 0, no sanitizer report)', uipair.check_exits)
    print('screenshots in %s' % ARTIFACTS)
    R.finish()


if __name__ == '__main__':
    main()
