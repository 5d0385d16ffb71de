/*
 * app.js - the page of `treemig ui`. Plain JavaScript, no library, no
 * request to anything but this server. Everything comes from the JSON API
 * of docs/ui.md; every name is put in the page as text (textContent,
 * never innerHTML), and names that are not UTF-8 are shown with \xHH.
 */
'use strict';

(function () {
  const KINDS = ['missing', 'conflict', 'extra', 'failed', 'excluded', 'skipped',
                 'copied', 'same'];
  const KIND_LABEL = {
    all: 'everything', missing: 'missing (to copy)', conflict: 'conflicts',
    extra: 'destination only', failed: 'failed', excluded: 'excluded',
    skipped: 'skipped', copied: 'copied', same: 'already there'
  };
  const STATE_LABEL = {
    missing: 'missing', conflict: 'conflict', type: 'type clash', extra: 'destination only',
    failed: 'failed', excluded: 'excluded', skipped: 'skipped', copied: 'copied',
    same: 'already there', copying: 'copying', unknown: '?'
  };
  const PAGE = 100;

  let session = { token: '', read_only: true };
  const $ = (id) => document.getElementById(id);

  /* ------------------------------------------------------------------ DOM */

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === 'class') e.className = attrs[k];
      else if (k === 'text') e.textContent = attrs[k];
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), attrs[k]);
      else if (k.startsWith('data-')) e.setAttribute(k, attrs[k]);
      else e[k] = attrs[k];
    }
    for (const c of kids) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  function fmt(n) { return n === null || n === undefined ? '' : Number(n).toLocaleString('en-US'); }

  function bytes(n) {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = Number(n), i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(v)) + ' ' + u[i];
  }

  function when(ns) {
    if (!ns) return '';
    const d = new Date(Number(ns) / 1e6);
    const p = (x) => String(x).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function toast(msg) {
    const t = $('toast');
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  /* --------------------------------------------------------- names, hex */

  function hexBytes(hex) {
    const b = new Uint8Array(hex.length / 2);
    for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.substr(2 * i, 2), 16);
    return b;
  }

  function bytesHex(b) {
    let s = '';
    for (const x of b) s += x.toString(16).padStart(2, '0');
    return s;
  }

  /* Splits bytes into pieces of text and escapes: valid UTF-8 as text,
   * control characters and bytes that are not UTF-8 as \xHH (\n, \t). */
  function pieces(b) {
    const out = [];
    let text = '', i = 0;
    const esc = (s) => { if (text) out.push([0, text]); text = ''; out.push([1, s]); };
    while (i < b.length) {
      const c = b[i];
      let n = 0, cp = 0;
      if (c < 0x80) { n = 1; cp = c; }
      else if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
      else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
      else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
      let ok = n > 0 && i + n <= b.length;
      for (let k = 1; ok && k < n; k++) {
        if ((b[i + k] & 0xc0) !== 0x80) ok = false;
        else cp = (cp << 6) | (b[i + k] & 0x3f);
      }
      if (ok && ((n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                 (n === 4 && (cp < 0x10000 || cp > 0x10ffff)))) ok = false;
      if (!ok) { esc('\\x' + c.toString(16).padStart(2, '0')); i++; continue; }
      if (cp === 10) esc('\\n');
      else if (cp === 9) esc('\\t');
      else if (cp < 0x20 || cp === 0x7f || (cp >= 0x80 && cp < 0xa0) ||
               cp === 0x2028 || cp === 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
               (cp >= 0x2066 && cp <= 0x2069) || cp === 0x200e || cp === 0x200f ||
               cp === 0x61c) esc('\\u' + cp.toString(16).padStart(4, '0'));
      else if (cp === 0x5c) { text += '\\'; }
      else text += String.fromCodePoint(cp);
      i += n;
    }
    if (text) out.push([0, text]);
    return out;
  }

  /* A span showing the bytes of hex as text (escapes marked). */
  function nameNode(hex, cls) {
    const s = el('span', { class: 'name' + (cls ? ' ' + cls : '') });
    for (const [isEsc, t] of pieces(hexBytes(hex))) {
      s.appendChild(isEsc ? el('span', { class: 'esc', text: t }) : document.createTextNode(t));
    }
    return s;
  }

  function plainName(hex) {
    return pieces(hexBytes(hex)).map((p) => p[1]).join('');
  }

  /* The last component of a path (hex). */
  function baseHex(pathHex) {
    for (let k = pathHex.length - 2; k >= 0; k -= 2) {
      if (pathHex.substr(k, 2) === '2f') return pathHex.substr(k + 2);
    }
    return pathHex;
  }

  function parentHex(pathHex) {
    for (let k = pathHex.length - 2; k >= 0; k -= 2) {
      if (pathHex.substr(k, 2) === '2f') return k === 0 ? '2f' : pathHex.substr(0, k);
    }
    return '2f';
  }

  /* ------------------------------------------------------------------ API */

  async function api(name, params) {
    const q = new URLSearchParams();
    for (const k in params || {}) if (params[k] !== undefined && params[k] !== null && params[k] !== '') q.set(k, params[k]);
    const qs = q.toString().replace(/\+/g, '%20');
    const r = await fetch('/api/' + name + (qs ? '?' + qs : ''), { credentials: 'same-origin' });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status));
    return j;
  }

  async function post(name, params) {
    const parts = [];
    for (const k in params) parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(params[k]));
    const r = await fetch('/api/' + name, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Treemig-Token': session.token },
      body: parts.join('&')
    });
    const j = await r.json();
    if (!r.ok) { const e = new Error(j.error || ('HTTP ' + r.status)); e.code = j.code; throw e; }
    return j;
  }

  /* -------------------------------------------------------------- summary */

  const CARDS = [
    ['copy.pending', 'to copy', 'copy.bytes_pending'],
    ['copy.already_existed', 'already there'],
    ['copy.conflicts', 'conflicts'],
    ['dst.not_on_src', 'destination only'],
    ['failed', 'failed'],
    ['src.excluded', 'excluded'],
    ['copy.skipped', 'skipped'],
    ['copy.successful', 'copied'],
    ['copy.in_progress', 'in progress']
  ];

  function get(o, path) {
    if (path === 'failed') return o.src.failed + o.dst.failed + o.copy.failed;
    return path.split('.').reduce((x, k) => x[k], o);
  }

  function numEl(tag, key, v, text) {
    return el(tag, { class: 'n num', 'data-key': key, 'data-value': String(v), text: text === undefined ? fmt(v) : text });
  }

  let lastStatus = null;

  function renderSummary(s) {
    const st = s.status;
    lastStatus = st;
    $('phase').textContent = st.phase;
    $('phase').setAttribute('data-value', st.phase);
    clear($('roots')).append(el('span', { class: 'mono', text: st.roots.src }), ' → ',
                             el('span', { class: 'mono', text: st.roots.dst }));
    $('mode').hidden = !s.read_only;
    const cards = clear($('cards'));
    for (const [key, label, bkey] of CARDS) {
      const v = get(st, key);
      const c = el('div', { class: 'card' }, numEl('div', key, v), el('div', { class: 'l', text: label }));
      if (bkey) {
        const b = get(st, bkey);
        c.appendChild(el('div', { class: 'b', 'data-key': bkey, 'data-value': String(b), text: bytes(b) }));
      }
      cards.appendChild(c);
    }
    const tb = clear($('trees').tBodies[0]);
    for (const side of ['src', 'dst']) {
      const t = st[side];
      const last = side === 'src' ? 'excluded' : 'not_on_src';
      tb.appendChild(el('tr', {}, el('th', { text: side === 'src' ? 'source' : 'destination' }),
        ...['folders', 'files', 'symlinks', 'other'].map((k) => numEl('td', side + '.' + k, t[k])),
        numEl('td', side + '.bytes', t.bytes, bytes(t.bytes)),
        numEl('td', side + '.pending', t.pending), numEl('td', side + '.failed', t.failed),
        numEl('td', side + '.' + last, t[last])));
    }
    const qb = clear($('queues').tBodies[0]);
    for (const q of st.queues) {
      const rate = fmt(Math.round(q.items_per_s)) + '/s' +
        (q.bytes_per_s > 0 ? ', ' + bytes(q.bytes_per_s) + '/s' : '');
      qb.appendChild(el('tr', {}, el('td', { text: q.queue }), el('td', { class: 'num', text: fmt(q.round) }),
        el('td', { class: 'num', text: fmt(q.pending) }), el('td', { class: 'num', text: fmt(q.in_flight) }),
        el('td', { class: 'num', text: fmt(q.done) }), el('td', { class: 'num', text: fmt(q.failed) }),
        el('td', { class: 'num', text: rate }), el('td', { text: when(q.time).slice(11) })));
    }
    const eta = st.eta_seconds;
    $('eta').textContent = eta === null ? '' : 'copy: about ' + Math.floor(eta / 3600) + 'h ' +
      String(Math.floor(eta / 60) % 60).padStart(2, '0') + 'm left at the current rate';
    const ix = s.index;
    $('conn').textContent = ix.state === 'ready'
      ? 'totals as of ' + when(ix.built).slice(11) + (ix.building ? ' · updating ' + Math.round(ix.progress * 100) + '%' : '')
      : ix.state === 'failed' ? 'folder index: ' + ix.error
      : 'indexing folders ' + Math.round(ix.progress * 100) + '%';
  }

  /* The throughput plot, from the observer's snapshots. */
  const plot = { since: null, rows: [] };

  function drawPlot() {
    const cv = $('plot'), g = cv.getContext('2d');
    const W = cv.width, H = cv.height, L = 48, B = 18;
    g.clearRect(0, 0, W, H);
    const byQ = {};
    for (const r of plot.rows) (byQ[r.queue] = byQ[r.queue] || []).push(r);
    const series = [];
    let tmin = Infinity, tmax = -Infinity, vmax = 0;
    for (const q in byQ) {
      const pts = [], rs = byQ[q];
      for (let i = 1; i < rs.length; i++) {
        const dt = (rs[i].time - rs[i - 1].time) / 1e9, dd = rs[i].done - rs[i - 1].done;
        if (dt <= 0 || dd < 0) continue;
        const v = dd / dt;
        pts.push([rs[i].time, v]);
        tmin = Math.min(tmin, rs[i].time); tmax = Math.max(tmax, rs[i].time);
        vmax = Math.max(vmax, v);
      }
      if (pts.length) series.push([q, pts]);
    }
    g.strokeStyle = '#e2e5eb'; g.fillStyle = '#6b7385'; g.font = '11px sans-serif';
    g.beginPath(); g.moveTo(L, 4); g.lineTo(L, H - B); g.lineTo(W - 4, H - B); g.stroke();
    if (!series.length) {
      g.fillText('no throughput recorded yet (discover or copy running)', L + 8, H / 2);
      $('plotlegend').textContent = '';
      return;
    }
    if (tmax === tmin) tmin = tmax - 1e9;
    g.fillText(fmt(Math.round(vmax)) + '/s', 2, 12);
    g.fillText('0', L - 10, H - B);
    g.fillText(when(tmin).slice(11), L, H - 4);
    g.fillText(when(tmax).slice(11), W - 56, H - 4);
    const colors = { src: '#2f6fde', dst: '#7b4fbf', copy: '#2e7d32', verify: '#c77700' };
    const legend = [];
    for (const [q, pts] of series) {
      g.strokeStyle = colors[q] || '#333';
      g.beginPath();
      pts.forEach(([t, v], i) => {
        const x = L + (W - L - 8) * (t - tmin) / (tmax - tmin);
        const y = (H - B) - (H - B - 8) * (vmax ? v / vmax : 0);
        if (i) g.lineTo(x, y); else g.moveTo(x, y);
      });
      g.stroke();
      legend.push(q + ': ' + fmt(Math.round(pts[pts.length - 1][1])) + ' items/s');
    }
    $('plotlegend').textContent = 'throughput (items per second): ' + legend.join(', ');
  }

  async function pollProgress() {
    const j = await api('progress', plot.since === null ? {} : { since: plot.since });
    if (j.rows.length) {
      plot.rows = plot.rows.concat(j.rows).slice(-7200);
      drawPlot();
    } else if (plot.since === null) {
      drawPlot();
    }
    plot.since = j.last;
  }

  async function refreshSummary() {
    try {
      renderSummary(await api('summary'));
      await pollProgress();
    } catch (e) {
      $('conn').textContent = 'cannot reach treemig ui: ' + e.message;
    }
  }

  function loop() {
    refreshSummary().finally(() => setTimeout(loop, 1000));
  }

  /* ----------------------------------------------------------------- tree */

  const tree = { pathHex: '2f', next: null, busy: false, gen: 0, rows: 0, last: null };

  function sideCell(n, other) {
    if (!n) return el('td', { class: 'side muted', text: other ? '—' : '' });
    const bits = [n.type];
    if (n.type !== 'folder') bits.push(bytes(n.size));
    bits.push(when(n.mtime));
    const td = el('td', { class: 'side' }, el('div', { text: bits.join(' · ') }));
    if (n.conflict) td.appendChild(el('div', { class: 'why', text: 'conflict: ' + n.conflict }));
    if (n.error) td.appendChild(el('div', { class: 'why', text: n.error }));
    if (n.excluded) {
      const x = n.excluded;
      const d = el('div', { class: 'muted' });
      if (x.how === 'exclude') d.append('excluded by pattern ', el('code', { text: x.pattern }));
      else if (x.how === 'inherited') d.append('excluded with ', nameNode(x.root_hex));
      else d.append('excluded by discover --exclude');
      td.appendChild(d);
    }
    return td;
  }

  function totalsCell(t) {
    if (!t) return el('td', { class: 'num muted' });
    const td = el('td', { class: 'num' }, el('div', { text: fmt(t.todo) + ' items, ' + bytes(t.todo_bytes) }));
    const extra = [];
    if (t.conflict) extra.push(fmt(t.conflict) + ' conflicts');
    if (t.failed) extra.push(fmt(t.failed) + ' failed');
    if (t.extra) extra.push(fmt(t.extra) + ' destination only');
    if (t.excluded) extra.push(fmt(t.excluded) + ' excluded');
    if (extra.length) td.appendChild(el('div', { class: 'muted', text: extra.join(', ') }));
    td.title = fmt(t.items) + ' items below';
    return td;
  }

  function actionCell(r) {
    const td = el('td');
    if (session.read_only || !r.src) return td;
    if (r.src.excluded) {
      if (r.src.excluded.how === 'exclude')
        td.appendChild(el('button', { class: 'small', text: 'include', onclick: () => change({ path_hex: r.path_hex }, true, plainName(r.path_hex)) }));
      return td;
    }
    td.appendChild(el('button', { class: 'small exclude', text: 'exclude', onclick: () => change({ path_hex: r.path_hex }, false, plainName(r.path_hex)) }));
    return td;
  }

  function childRow(r) {
    const name = nameNode(baseHex(r.path_hex));
    const cell = r.folder
      ? el('td', {}, el('a', { class: 'nav folder', onclick: () => go(r.path_hex) }, name, '/'))
      : el('td', {}, name);
    const tr = el('tr', { 'data-name': plainName(baseHex(r.path_hex)), 'data-state': r.state,
                          'data-path-hex': r.path_hex },
      cell,
      el('td', {}, el('span', { class: 'st ' + r.state, title: r.kinds.join(', '), text: STATE_LABEL[r.state] || r.state })),
      sideCell(r.src, true), sideCell(r.dst, true), totalsCell(r.totals), actionCell(r));
    return tr;
  }

  function renderFolder(f) {
    const c = clear($('crumbs'));
    f.crumbs.forEach((k, i) => {
      if (i > 1) c.appendChild(el('span', { class: 'sep', text: '/' }));
      const a = el('a', { onclick: () => go(k.path_hex) });
      if (i === 0) a.textContent = '/'; else a.appendChild(nameNode(baseHex(k.path_hex)));
      c.appendChild(a);
    });
    const info = clear($('folderinfo'));
    const t = f.totals;
    if (t) info.append('below this folder: ' + fmt(t.items) + ' items; to copy ' + fmt(t.todo) +
                       ' items, ' + bytes(t.todo_bytes) + (t.conflict ? '; ' + fmt(t.conflict) + ' conflicts' : '') +
                       (t.extra ? '; ' + fmt(t.extra) + ' destination only' : ''));
    if (!f.src) info.append(' (only on the destination)');
    else if (!f.dst) info.append(' (missing on the destination)');
    if (!f.folders_first) info.append(' · names in order; folders come first (and "most to copy" sorts them) once the folder index is built');
  }

  async function loadTree(reset) {
    if (tree.busy && !reset) return;
    const gen = ++tree.gen;
    tree.busy = true;
    const body = $('children').tBodies[0];
    if (reset) { clear(body); tree.next = null; tree.rows = 0; }
    $('more').hidden = true;
    try {
      let want = PAGE;
      do {
        const j = await api('children', { path_hex: tree.pathHex, sort: $('sort').value,
                                          kind: $('kind').value, after: tree.next, limit: want });
        if (gen !== tree.gen) return;
        if (reset && !tree.rows) renderFolder(j.folder);
        for (const r of j.items) body.appendChild(childRow(r));
        tree.rows += j.items.length;
        want -= j.items.length;
        tree.next = j.next;
        $('morenote').textContent = j.partial ? 'looking through a large folder…' : '';
        if (!j.partial) break;
      } while (tree.next && want > 0);
      $('more').hidden = !tree.next;
      $('morenote').textContent = tree.rows ? '' : 'nothing here' + ($('kind').value !== 'all' ? ' of this kind' : '');
    } catch (e) {
      $('morenote').textContent = e.message;
      if (reset) clear($('folderinfo')).append(e.message);
    } finally {
      if (gen === tree.gen) tree.busy = false;
    }
  }

  function go(pathHex) {
    tree.pathHex = pathHex;
    if (location.hash !== '#p=' + pathHex) history.pushState(null, '', '#p=' + pathHex);
    showTab('tree');
    loadTree(true);
  }

  /* --------------------------------------------------- exclude, include */

  const EFFECT = [
    ['src', 'excluded', 'source items excluded'],
    ['dst', 'excluded', 'destination items excluded'],
    ['copy', 'pending', 'items to copy'],
    ['copy', 'bytes_pending', 'bytes to copy'],
    ['copy', 'conflicts', 'conflicts'],
    ['copy', 'already_existed', 'already there'],
    ['copy', 'skipped', 'skipped']
  ];

  function effectTable(eff) {
    const t = el('table', { class: 'effect' });
    for (const [a, b, label] of EFFECT) {
      const v = eff[a][b];
      if (!v) continue;
      t.appendChild(el('tr', { 'data-key': a + '.' + b, 'data-value': String(v) },
        el('td', { text: label }),
        el('td', { class: 'num', text: (v > 0 ? '+' : '') + (b === 'bytes_pending' ? bytes(v) : fmt(v)) })));
    }
    return t;
  }

  function dialog(title, body, ok) {
    $('dtitle').textContent = title;
    clear($('dbody')).append(...body);
    $('dok').hidden = !ok;
    $('dialog').hidden = false;
    return new Promise((resolve) => {
      const done = (v) => { $('dialog').hidden = true; $('dok').onclick = $('dcancel').onclick = null; resolve(v); };
      $('dok').onclick = () => done(true);
      $('dcancel').onclick = () => done(false);
    });
  }

  /* what: {path_hex} or {pattern}; label: shown to the user */
  async function change(what, unexclude, label) {
    const verb = unexclude ? 'Unexclude' : 'Exclude';
    let pre;
    try {
      pre = await post('exclude', Object.assign({ dry_run: 1, unexclude: unexclude ? 1 : 0 }, what));
    } catch (e) {
      await dialog(verb + ' ' + label, [el('p', { class: 'err', text: 'refused: ' + e.message })], false);
      return;
    }
    const body = [];
    if (!pre.changed) body.push(el('p', { text: 'Nothing to change: everything that matches is ' + (unexclude ? 'included' : 'excluded') + ' already.' }));
    else body.push(el('p', { text: 'This changes ' + fmt(pre.changed) + ' source items:' }), effectTable(pre.effect));
    if (!await dialog(verb + ' ' + label, body, pre.changed > 0)) return;
    try {
      const done = await post('exclude', Object.assign({ dry_run: 0, unexclude: unexclude ? 1 : 0 }, what));
      toast((unexclude ? 'included again: ' : 'excluded: ') + fmt(done.changed) + ' items (' + label + ')');
    } catch (e) {
      await dialog(verb + ' ' + label, [el('p', { class: 'err', text: 'refused: ' + e.message })], false);
    }
    await refreshSummary();
    loadTree(true);
    loadExclusions();
  }

  async function loadExclusions() {
    const body = clear($('exclusions').tBodies[0]);
    try {
      const j = await api('exclusions', { limit: 1000 });
      for (const x of j.items) {
        body.appendChild(el('tr', {},
          el('td', {}, el('a', { class: 'nav', onclick: () => go(parentHex(x.path_hex)) }, nameNode(x.path_hex))),
          el('td', {}, el('code', { text: x.pattern })), el('td', { text: x.time }),
          el('td', {}, session.read_only ? null : el('button', { class: 'small', text: 'unexclude',
            onclick: () => change({ path_hex: x.path_hex }, true, plainName(x.path_hex)) }))));
      }
      if (!j.items.length) body.appendChild(el('tr', {}, el('td', { class: 'muted', colSpan: 4, text: 'nothing excluded with treemig exclude' })));
    } catch (e) {
      body.appendChild(el('tr', {}, el('td', { colSpan: 4, text: e.message })));
    }
  }

  /* --------------------------------------------------------------- search */

  const search = { next: null, gen: 0, stop: false, rows: 0 };

  function resultRow(r) {
    return el('tr', { 'data-state': r.state, 'data-path-hex': r.path_hex },
      el('td', {}, el('a', { class: 'nav', onclick: () => go(parentHex(r.path_hex)) }, nameNode(r.path_hex))),
      el('td', { text: r.side }), el('td', { text: r.type }),
      el('td', { class: 'num', text: r.type === 'file' ? bytes(r.size) : '' }),
      el('td', {}, el('span', { class: 'st ' + r.state, text: STATE_LABEL[r.state] || r.state })),
      el('td', { text: r.reason || '' }), el('td'));
  }

  /* Fills table from /api/search until a page is full; returns next. */
  async function runSearch(params, body, note, g, isCurrent, none) {
    let want = PAGE, next = params.after || null, n = 0;
    do {
      const j = await api('search', Object.assign({}, params, { after: next, limit: want }));
      if (!isCurrent(g)) return null;
      for (const r of j.items) body.appendChild(resultRow(r));
      n += j.items.length;
      want -= j.items.length;
      next = j.next;
      const pct = j.scanned.max ? Math.round(100 * j.scanned.id / j.scanned.max) : 100;
      note.textContent = j.partial ? 'searching the ' + (j.scanned.side === 'src' ? 'source' : 'destination') + ': ' + pct + '%' : '';
      if (!j.partial) break;
    } while (next && want > 0 && !search.stop);
    if (!n && !body.rows.length) note.textContent = none || 'no match';
    return next;
  }

  async function doSearch(more) {
    const g = ++search.gen;
    search.stop = false;
    const body = $('results').tBodies[0];
    if (!more) { clear(body); search.next = null; }
    $('searchmore').hidden = true;
    $('searchstop').hidden = false;
    try {
      search.next = await runSearch({ glob: $('glob').value, kind: $('skind').value, after: search.next },
                                    body, $('searchnote'), g, (x) => x === search.gen);
      $('searchmore').hidden = !search.next;
    } catch (e) {
      $('searchnote').textContent = e.message;
    } finally {
      $('searchstop').hidden = true;
    }
  }

  /* ------------------------------------------------------------- problems */

  const failed = { next: null, gen: 0 };
  const taskErr = { next: null };
  const logs = { next: null };

  async function loadFailed(more) {
    const body = $('failed').tBodies[0];
    if (!more) { clear(body); failed.next = null; }
    const g = ++failed.gen;
    try {
      const rows = document.createElement('tbody');
      failed.next = await runSearch({ kind: 'failed', after: failed.next }, rows, $('failednote'), g,
                                    (x) => x === failed.gen, 'nothing failed');
      for (const tr of Array.from(rows.rows)) {
        const c = Array.from(tr.cells);
        body.appendChild(el('tr', { 'data-path-hex': tr.getAttribute('data-path-hex') },
                            c[0], c[1], c[2], c[5]));
      }
      $('failedmore').hidden = !failed.next;
    } catch (e) {
      $('failednote').textContent = e.message;
    }
  }

  async function loadTaskErrors(more) {
    const body = $('taskerrors').tBodies[0];
    if (!more) { clear(body); taskErr.next = null; }
    const j = await api('task_errors', { before: taskErr.next, limit: PAGE });
    for (const r of j.items) {
      body.appendChild(el('tr', {}, el('td', { text: when(r.time) }), el('td', { text: r.phase || '' }),
        el('td', { text: r.queue || '' }), el('td', {}, r.path_hex ? nameNode(r.path_hex) : ''),
        el('td', { class: 'num', text: fmt(r.attempts) }), el('td', { text: r.message || '' })));
    }
    if (!body.rows.length) body.appendChild(el('tr', {}, el('td', { class: 'muted', colSpan: 6, text: 'no task errors' })));
    taskErr.next = j.next;
    $('taskmore').hidden = !j.next;
  }

  async function loadLogs(more) {
    const body = $('logs').tBodies[0];
    if (!more) { clear(body); logs.next = null; }
    let want = PAGE;
    do {
      const j = await api('logs', { level: $('level').value, before: logs.next, limit: want });
      for (const r of j.items) {
        body.appendChild(el('tr', {}, el('td', { text: when(r.time) }), el('td', { text: r.level }),
          el('td', { text: r.queue || '' }), el('td', { class: 'name', text: r.path || '' }),
          el('td', { text: r.message || '' })));
      }
      want -= j.items.length;
      logs.next = j.next;
      if (!j.partial) break;
    } while (logs.next && want > 0);
    $('logmore').hidden = !logs.next;
  }

  function loadProblems() {
    loadFailed(false);
    loadTaskErrors(false).catch((e) => toast(e.message));
    loadLogs(false).catch((e) => toast(e.message));
  }

  /* ----------------------------------------------------------------- tabs */

  function showTab(name) {
    for (const b of document.querySelectorAll('#tabs button'))
      b.classList.toggle('active', b.dataset.tab === name);
    for (const s of document.querySelectorAll('section.tab'))
      s.hidden = s.id !== 'tab-' + name;
  }

  function fromHash() {
    const m = /^#p=((?:[0-9a-f]{2})+)$/.exec(location.hash);
    tree.pathHex = m ? m[1] : '2f';
    loadTree(true);
  }

  async function start() {
    for (const sel of document.querySelectorAll('select.kinds')) {
      for (const k of ['all'].concat(KINDS)) sel.appendChild(el('option', { value: k, text: KIND_LABEL[k] }));
    }
    try {
      session = await api('session');
    } catch (e) {
      $('conn').textContent = e.message;
      return;
    }
    $('mode').hidden = !session.read_only;
    if (session.read_only) $('exclform').hidden = true;
    for (const b of document.querySelectorAll('#tabs button')) {
      b.addEventListener('click', () => {
        showTab(b.dataset.tab);
        if (b.dataset.tab === 'problems') loadProblems();
        if (b.dataset.tab === 'exclusions') loadExclusions();
      });
    }
    $('sort').addEventListener('change', () => loadTree(true));
    $('kind').addEventListener('change', () => loadTree(true));
    $('more').addEventListener('click', () => loadTree(false));
    $('searchform').addEventListener('submit', (ev) => { ev.preventDefault(); doSearch(false); });
    $('searchmore').addEventListener('click', () => doSearch(true));
    $('searchstop').addEventListener('click', () => { search.stop = true; });
    $('failedmore').addEventListener('click', () => loadFailed(true));
    $('taskmore').addEventListener('click', () => loadTaskErrors(true).catch((e) => toast(e.message)));
    $('logmore').addEventListener('click', () => loadLogs(true).catch((e) => toast(e.message)));
    $('level').addEventListener('change', () => loadLogs(false).catch((e) => toast(e.message)));
    $('exclform').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const p = $('pattern').value;
      if (p) change({ pattern: p }, false, p);
    });
    $('inclpattern').addEventListener('click', () => {
      const p = $('pattern').value;
      if (p) change({ pattern: p }, true, p);
    });
    window.addEventListener('popstate', fromHash);
    fromHash();
    loop();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
