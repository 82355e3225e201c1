// DMS dashboard: reads the HTTP API (DESIGN §4) from the browser and renders it.
//
// Rules this file keeps:
// - Text from the API (symbols are user data, messages quote it) only ever reaches the page
//   through textContent / createTextNode / attribute values (never innerHTML), via `h()`.
// - A panel whose endpoint answers 404 says "not available" quietly; other errors show in
//   that panel only. A 401/403 asks for a token once (one dialog for every request waiting on
//   it), stores it in localStorage and retries.
// - Polling: jobs every 1.5 s while one is queued or running, otherwise every 10 s; the rest
//   every 15-30 s; nothing while the tab is hidden.
(() => {
  'use strict';

  const INTERVALS = ['1m', '2m', '5m', '15m', '30m', '1h', '1d', '1wk', '1mo'];
  const INTRADAY = new Set(['1m', '2m', '5m', '15m', '30m', '1h']);
  const PAGE_SIZE = 25;
  const MAX_CHART_BARS = 250000;
  const TOKEN_KEY = 'dms.token';

  // ---------------------------------------------------------------- DOM helpers
  const $ = (id) => document.getElementById(id);

  /** Builds an element. Strings and numbers become text nodes; null/false are skipped. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'style') Object.assign(el.style, v);
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function fill(el, ...children) {
    el.replaceChildren();
    append(el, children);
  }

  // ---------------------------------------------------------------- formatting
  const nf = new Intl.NumberFormat('en-US');
  const cf = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
  const num = (n) => (n == null ? '—' : nf.format(n));
  const compact = (n) => (n == null ? '—' : n < 10000 ? nf.format(n) : cf.format(n));
  /** An RFC 3339 string, or epoch seconds (job params store times that way), as RFC 3339. */
  const iso8601 = (v) => (typeof v === 'number' ? new Date(v * 1000).toISOString()
    : typeof v === 'string' ? v : null);
  const day = (v) => (iso8601(v) ? iso8601(v).slice(0, 10) : '—');
  function stamp(v, interval) {
    const iso = iso8601(v);
    if (!iso) return '—';
    if (interval && !INTRADAY.has(interval)) return iso.slice(0, 10);
    return iso.slice(0, 16).replace('T', ' ');
  }
  function ago(v, now = Date.now()) {
    const iso = iso8601(v);
    if (!iso) return '—';
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '—';
    const s = Math.round((now - t) / 1000);
    const abs = Math.abs(s);
    const txt = abs < 45 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m`
      : abs < 86400 ? `${Math.round(abs / 3600)}h` : abs < 86400 * 60 ? `${Math.round(abs / 86400)}d`
      : abs < 86400 * 730 ? `${Math.round(abs / 86400 / 30)}mo` : `${Math.round(abs / 86400 / 365)}y`;
    return s >= 0 ? `${txt} ago` : `in ${txt}`;
  }
  function duration(s) {
    if (s == null || !Number.isFinite(s)) return '—';
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }
  const price = (v) => (v == null || !Number.isFinite(v) ? '—'
    : v >= 1000 ? v.toFixed(2) : v >= 1 ? v.toFixed(2) : v.toPrecision(4));
  const pick = (o, ...keys) => {
    for (const k of keys) {
      const v = k.split('.').reduce((x, p) => (x == null ? undefined : x[p]), o);
      if (v !== undefined && v !== null) return v;
    }
    return null;
  };

  // ---------------------------------------------------------------- API client
  class HttpError extends Error {
    constructor(status, code, message) {
      super(message || `HTTP ${status}`);
      this.status = status;
      this.code = code;
    }
  }

  let token = localStorage.getItem(TOKEN_KEY) || '';
  /** After the user dismissed the token dialog: reads stop asking until a token is given. */
  let authDeclined = false;
  let tokenPrompt = null;
  /** What the token form held when it was submitted. */
  let savedValue = null;
  const NO_TOKEN_HELPS = /^host .* is not allowed|none is configured/;

  async function errorOf(r) {
    try {
      const b = await r.json();
      if (b && b.error) return { code: b.error.code, message: b.error.message };
    } catch (_) { /* not our error shape */ }
    return { code: null, message: `HTTP ${r.status}` };
  }

  /** Fetches JSON from the API, asking for a token on 401/403 and retrying with it. */
  async function api(path, { method = 'GET', body } = {}) {
    const mutating = method !== 'GET';
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: 'application/json' };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const sent = token;
      if (sent) headers.Authorization = `Bearer ${sent}`;
      let r;
      try {
        r = await fetch(path, {
          method, headers, cache: 'no-store',
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        throw new HttpError(0, 'unreachable', 'the server does not answer');
      }
      if ((r.status === 401 || r.status === 403) && attempt < 3 && (mutating || !authDeclined)) {
        // Sent before the token changed (a request in flight while the dialog was open):
        // try again with the current token instead of asking once more.
        if (sent !== token) continue;
        const e = await errorOf(r);
        // Refusals no token can lift (a Host the server does not allow, no admin token
        // configured) are shown, not asked about.
        if (!NO_TOKEN_HELPS.test(e.message) && await askToken(r.status, e.message, mutating)) continue;
        throw new HttpError(r.status, e.code, e.message);
      }
      if (!r.ok) {
        const e = await errorOf(r);
        throw new HttpError(r.status, e.code, e.message);
      }
      return r.status === 204 ? null : r.json();
    }
  }

  /** One token dialog for every request that needs it; resolves true once a token is saved. */
  function askToken(status, message, mutating) {
    if (tokenPrompt) return tokenPrompt;
    const dlg = $('token-dialog');
    const reason = status === 401
      ? (mutating ? 'This action needs the admin token.' : 'This server needs a token to show its data.')
      : (mutating ? `The token was not accepted for this action (${message}). Enter the admin token.`
        : `The token was not accepted (${message}).`);
    $('token-reason').textContent = reason;
    $('token-input').value = '';
    tokenPrompt = new Promise((resolve) => {
      const done = (ok) => {
        dlg.removeEventListener('close', onClose);
        tokenPrompt = null;
        resolve(ok);
      };
      const onClose = () => {
        // The value saved with the form (the close event comes later, when the input may
        // have been cleared by another prompt).
        const v = (savedValue ?? $('token-input').value).trim();
        savedValue = null;
        if (dlg.returnValue === 'save' && v) {
          setToken(v);
          done(true);
        } else {
          if (!mutating) authDeclined = true;
          done(false);
        }
      };
      dlg.addEventListener('close', onClose);
      dlg.returnValue = '';
      dlg.showModal();
      $('token-input').focus();
    });
    return tokenPrompt;
  }

  function setToken(v) {
    token = v;
    authDeclined = false;
    if (v) localStorage.setItem(TOKEN_KEY, v); else localStorage.removeItem(TOKEN_KEY);
    $('btn-token').classList.toggle('has-token', !!v);
    $('btn-token').title = v ? 'API token (set)' : 'API token';
  }

  function wireTokenDialog() {
    const dlg = $('token-dialog');
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!$('token-input').value.trim()) return;
      savedValue = $('token-input').value;
      dlg.close('save');
    });
    $('token-cancel').addEventListener('click', () => dlg.close('cancel'));
    $('token-forget').addEventListener('click', () => {
      setToken('');
      dlg.close('cancel');
      toast('Token forgotten');
    });
    $('btn-token').addEventListener('click', () => {
      if (tokenPrompt) return;
      askToken(0, '', false).then((ok) => { if (ok) refreshAll(); });
      $('token-reason').textContent = token
        ? 'A token is set. Enter another to replace it, or forget it.'
        : 'Enter the read or admin token of this server.';
    });
    setToken(token);
  }

  // ---------------------------------------------------------------- panel states
  /** Renders an error into a panel body: 404 → quiet "not available", auth → a button. */
  function panelError(body, err, what) {
    if (err.status === 404) {
      fill(body, h('div', { class: 'empty empty-na' }, `${what} is not available on this server version.`));
    } else if (err.status === 401 || err.status === 403) {
      fill(body, h('div', { class: 'empty' }, 'Needs a token. ',
        h('button', { type: 'button', class: 'btn btn-sm', onclick: () => askToken(err.status, err.message, false).then((ok) => ok && refreshAll()) }, 'Enter token')));
    } else {
      fill(body, h('div', { class: 'empty' }, `Could not load: ${err.message}`));
    }
  }
  function setMeta(id, text) { $(id).textContent = text || ''; }

  // ---------------------------------------------------------------- toasts
  function toast(message, kind = '') {
    const el = h('div', { class: `toast ${kind ? `toast-${kind}` : ''}`, role: 'status' }, message);
    $('toasts').appendChild(el);
    setTimeout(() => el.remove(), kind === 'bad' ? 9000 : 5000);
  }

  // ---------------------------------------------------------------- health (header)
  const state = {
    health: null,
    seriesTotal: null,
    barsTotal: null,
    staleTotal: null,
    gaps: null,
    quality: null,
    jobs: [],
    selected: null, // { symbol, interval }
  };

  async function loadHealth() {
    let hl;
    try {
      const r = await fetch('/health', { cache: 'no-store', headers: { Accept: 'application/json' } });
      hl = await r.json();
    } catch (e) {
      fill($('health'), h('span', { class: 'pill pill-bad' }, h('span', { class: 'dot' }), 'server unreachable'));
      return;
    }
    state.health = hl;
    const ok = hl.status === 'ok';
    const p = hl.primary || {};
    const backups = Array.isArray(hl.backups) ? hl.backups : [];
    const upBackups = backups.filter((b) => b.reachable !== false && b.status !== 'down').length;
    const sources = Array.isArray(hl.sources) ? hl.sources : [];
    const pills = [
      h('span', { class: `pill ${ok ? 'pill-ok' : p.reachable === false ? 'pill-bad' : 'pill-warn'}`, id: 'health-status' },
        h('span', { class: 'dot' }), ok ? 'Healthy' : p.reachable === false ? 'Primary down' : 'Degraded'),
      h('span', { class: 'pill', title: [p.location, p.version, p.error].filter(Boolean).join(' · ') },
        h('span', { class: `dot ${p.reachable ? 'dot-ok' : 'dot-bad'}` }), 'Primary ', h('b', null, p.kind || '?')),
      h('span', { class: 'pill' },
        h('span', { class: `dot ${backups.length === 0 ? '' : upBackups === backups.length ? 'dot-ok' : 'dot-warn'}` }),
        'Backups ', h('b', null, backups.length ? `${upBackups}/${backups.length}` : 'none')),
      h('span', { class: 'pill' }, 'Sources ',
        sources.map((s) => h('span', { class: 'src-pill', title: s.paused ? `paused until ${s.paused_until || '?'}` : 'ok', style: { display: 'inline-flex', alignItems: 'center', gap: '4px', marginLeft: '4px' } },
          h('span', { class: `dot ${s.paused ? 'dot-warn' : 'dot-ok'}` }), h('b', null, s.name)))),
      h('span', { class: 'pill' }, 'Up ', h('b', null, duration(hl.uptime_s))),
    ];
    fill($('health'), pills);
    $('footer-version').textContent = hl.version ? `DMS ${hl.version}` : 'DMS';
    renderKpis();
  }

  // ---------------------------------------------------------------- KPIs
  function kpi(label, value, sub, cls) {
    return h('div', { class: 'kpi' },
      h('div', { class: 'kpi-label' }, label),
      h('div', { class: `kpi-value ${cls || ''}` }, value),
      h('div', { class: 'kpi-sub' }, sub || '\u00a0'));
  }
  function renderKpis() {
    const p = (state.health && state.health.primary) || {};
    const running = state.jobs.filter((j) => j.status === 'running' || j.status === 'queued');
    const gaps = state.gaps;
    const q = state.quality;
    // The table's own total is fresher than /health's (which reuses its counts for 30 s).
    const seriesN = state.seriesTotal != null ? state.seriesTotal : p.series;
    const bars = state.barsTotal != null ? state.barsTotal : p.bars;
    fill($('kpis'),
      kpi('Series', num(seriesN), p.kind ? `in the ${p.kind} primary` : ''),
      kpi('Bars stored', compact(bars), bars != null ? `${num(bars)} bars` : ''),
      kpi('Stale', state.staleTotal == null ? '—' : num(state.staleTotal),
        state.staleTotal == null ? 'freshness not reported' : state.staleTotal ? 'older than the calendar expects' : 'all series current',
        state.staleTotal == null ? 'na' : state.staleTotal ? 'warn' : 'ok'),
      kpi('Open gaps', gaps == null ? '—' : num(gaps.length),
        gaps == null ? 'gap detection not available' : gaps.length ? `${num(gaps.reduce((a, g) => a + (g.sessions || 0), 0))} missing sessions` : 'no missing sessions',
        gaps == null ? 'na' : gaps.length ? 'bad' : 'ok'),
      kpi('Quarantined', q == null ? '—' : q.length >= 1000 ? '1,000+' : num(q.length),
        q == null ? '' : q.length ? `latest ${ago(q[0].created_at)}` : 'nothing rejected',
        q == null ? 'na' : q.length ? 'warn' : 'ok'),
      kpi('Jobs running', num(running.length),
        running.length ? running.map((j) => `#${j.id} ${j.task}`).join(', ') : lastFinishedText(),
        running.length ? '' : 'na'));
  }
  function lastFinishedText() {
    const j = state.jobs.find((x) => x.finished_at);
    return j ? `last: #${j.id} ${j.task} ${j.status} ${ago(j.finished_at)}` : 'no jobs yet';
  }

  // ---------------------------------------------------------------- series table
  const table = { q: '', interval: '', stale: false, sort: 'symbol', desc: false, page: 1, total: 0 };

  function seriesQuery() {
    const p = new URLSearchParams({ page: String(table.page), page_size: String(PAGE_SIZE), sort: (table.desc ? '-' : '') + table.sort });
    if (table.q) p.set('q', table.q);
    if (table.interval) p.set('interval', table.interval);
    if (table.stale) p.set('stale', 'true');
    return `/api/v1/series?${p}`;
  }

  let seriesSeq = 0;
  async function loadSeries() {
    const seq = ++seriesSeq;
    let res;
    try {
      res = await api(seriesQuery());
    } catch (e) {
      if (seq !== seriesSeq) return;
      const body = $('series-rows');
      fill(body, h('tr', null, h('td', { colspan: 9 }, h('div', { class: 'empty' }))));
      panelError(body.querySelector('.empty').parentElement, e, 'The series list');
      setMeta('series-meta', '');
      fill($('series-pager'));
      return;
    }
    if (seq !== seriesSeq) return; // a newer request is on its way
    const rows = res.series || [];
    const total = res.total != null ? res.total : rows.length;
    table.total = total;
    if (!table.q && !table.interval && !table.stale) {
      state.seriesTotal = total;
      if (res.total_bars != null) state.barsTotal = res.total_bars;
    }
    renderSeries(rows, total, res);
    if (!state.selected && rows.length) select(rows[0].symbol, rows[0].interval, false);
  }

  const barsOf = (res) => (res && res.total_bars != null ? ` · ${compact(res.total_bars)} bars` : '');
  function renderSeries(rows, total, res) {
    const body = $('series-rows');
    if (!rows.length) {
      fill(body, h('tr', null, h('td', { colspan: 9 },
        h('div', { class: 'empty' }, table.q || table.interval || table.stale ? 'No series match the filter.' : 'No series stored yet. Start a backfill to fetch some.'))));
    } else {
      let lo = Infinity; let hi = -Infinity;
      for (const s of rows) {
        lo = Math.min(lo, Date.parse(s.first));
        hi = Math.max(hi, Date.parse(s.last));
      }
      const span = Math.max(1, hi - lo);
      const now = Date.now();
      fill(body, rows.map((s) => {
        const a = ((Date.parse(s.first) - lo) / span) * 100;
        const b = ((Date.parse(s.last) - lo) / span) * 100;
        const sel = state.selected && state.selected.symbol === s.symbol && state.selected.interval === s.interval;
        const fresh = s.stale === true ? h('span', { class: 'badge badge-warn' }, 'stale')
          : s.stale === false ? h('span', { class: 'badge badge-ok' }, 'fresh')
            : h('span', { class: 'badge badge-muted', title: 'freshness needs the trading calendars' }, 'n/a');
        return h('tr', {
          class: sel ? 'selected' : '', tabindex: 0,
          dataset: { symbol: s.symbol, interval: s.interval },
          onclick: () => select(s.symbol, s.interval, true),
          onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(s.symbol, s.interval, true); } },
        },
        h('td', { class: 'sym' }, s.symbol),
        h('td', null, h('span', { class: 'chip' }, s.interval)),
        h('td', { class: 'dim hide-sm' }, stamp(s.first, s.interval)),
        h('td', { class: 'dim' }, stamp(s.last, s.interval)),
        h('td', { class: 'col-coverage' }, h('div', { class: 'coverage', title: `${day(s.first)} → ${day(s.last)}` },
          h('span', { class: s.stale ? 'stale' : '', style: { left: `${a}%`, width: `${Math.max(1.5, b - a)}%` } }))),
        h('td', { class: 'num' }, num(s.count)),
        h('td', { class: 'num' }, s.gaps == null ? h('span', { class: 'mut' }, '—') : s.gaps > 0 ? h('span', { class: 'gapcount' }, num(s.gaps)) : h('span', { class: 'mut' }, '0')),
        h('td', { class: 'dim hide-sm', title: s.last_update || '' }, s.last_update ? ago(s.last_update, now) : '—'),
        h('td', null, fresh));
      }));
    }
    const from = total ? (table.page - 1) * PAGE_SIZE + 1 : 0;
    const to = Math.min(total, table.page * PAGE_SIZE);
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const filtered = table.q || table.interval || table.stale;
    setMeta('series-meta', `${num(total)} series${filtered ? ' match' : ''}${barsOf(res)}`);
    fill($('series-pager'),
      h('span', null, total ? `${num(from)}–${num(to)} of ${num(total)}` : ''),
      h('div', { class: 'pager-btns' },
        h('button', { type: 'button', class: 'btn btn-sm', disabled: table.page <= 1, onclick: () => { table.page = 1; loadSeries(); }, 'aria-label': 'First page' }, '«'),
        h('button', { type: 'button', class: 'btn btn-sm', disabled: table.page <= 1, onclick: () => { table.page--; loadSeries(); } }, '‹ Prev'),
        h('span', null, `Page ${num(table.page)} of ${num(pages)}`),
        h('button', { type: 'button', class: 'btn btn-sm', disabled: table.page >= pages, onclick: () => { table.page++; loadSeries(); } }, 'Next ›'),
        h('button', { type: 'button', class: 'btn btn-sm', disabled: table.page >= pages, onclick: () => { table.page = pages; loadSeries(); }, 'aria-label': 'Last page' }, '»')));
    for (const th of document.querySelectorAll('#series-table th[data-sort]')) {
      th.classList.toggle('sorted', th.dataset.sort === table.sort);
      th.classList.toggle('desc', th.dataset.sort === table.sort && table.desc);
    }
  }

  function wireSeriesTable() {
    fill($('series-interval'), h('option', { value: '' }, 'All intervals'), INTERVALS.map((i) => h('option', { value: i }, i)));
    let timer = null;
    $('series-q').addEventListener('input', (ev) => {
      clearTimeout(timer);
      timer = setTimeout(() => { table.q = ev.target.value.trim(); table.page = 1; loadSeries(); }, 200);
    });
    $('series-interval').addEventListener('change', (ev) => { table.interval = ev.target.value; table.page = 1; loadSeries(); });
    $('series-stale').addEventListener('change', (ev) => { table.stale = ev.target.checked; table.page = 1; loadSeries(); });
    for (const th of document.querySelectorAll('#series-table th[data-sort]')) {
      th.addEventListener('click', () => {
        const key = th.dataset.sort;
        if (table.sort === key) table.desc = !table.desc;
        else { table.sort = key; table.desc = ['count', 'gaps', 'last_update', 'last'].includes(key); }
        table.page = 1;
        loadSeries();
      });
    }
  }

  // ---------------------------------------------------------------- chart
  const chart = { api: null, candles: null, volume: null, range: null, intervals: [], info: null, bars: null, seq: 0 };

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function chartTheme() {
    const LC = window.LightweightCharts;
    return {
      layout: {
        background: { type: LC.ColorType.Solid, color: cssVar('--panel') },
        textColor: cssVar('--text-2'),
        fontFamily: cssVar('--sans'),
        fontSize: 11,
        attributionLogo: true,
      },
      grid: {
        vertLines: { color: cssVar('--border') },
        horzLines: { color: cssVar('--border') },
      },
      rightPriceScale: { borderColor: cssVar('--border') },
      timeScale: { borderColor: cssVar('--border') },
      crosshair: {
        vertLine: { color: cssVar('--muted'), labelBackgroundColor: cssVar('--border-strong') },
        horzLine: { color: cssVar('--muted'), labelBackgroundColor: cssVar('--border-strong') },
      },
    };
  }

  function ensureChart() {
    if (chart.api) return true;
    const LC = window.LightweightCharts;
    if (!LC) return false;
    chart.api = LC.createChart($('chart'), {
      autoSize: true,
      ...chartTheme(),
      crosshair: { ...chartTheme().crosshair, mode: LC.CrosshairMode.Normal },
      rightPriceScale: { ...chartTheme().rightPriceScale, scaleMargins: { top: 0.1, bottom: 0.26 } },
      localization: { locale: 'en-US' },
    });
    chart.candles = chart.api.addSeries(LC.CandlestickSeries, {
      upColor: cssVar('--up'), downColor: cssVar('--down'), borderVisible: false,
      wickUpColor: cssVar('--up'), wickDownColor: cssVar('--down'),
    });
    chart.volume = chart.api.addSeries(LC.HistogramSeries, {
      priceFormat: { type: 'volume' }, priceScaleId: 'vol', lastValueVisible: false, priceLineVisible: false,
    });
    chart.api.priceScale('vol').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    chart.api.subscribeCrosshairMove((p) => {
      const bar = p && p.time != null && chart.bars ? chart.bars.byTime.get(p.time) : null;
      renderLegend(bar);
    });
    window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
      chart.api.applyOptions(chartTheme());
      chart.candles.applyOptions({ upColor: cssVar('--up'), downColor: cssVar('--down'), wickUpColor: cssVar('--up'), wickDownColor: cssVar('--down') });
      if (chart.bars) chart.volume.setData(volumeData(chart.bars));
    });
    return true;
  }

  function volumeData(b) {
    const up = `${cssVar('--up')}66`; const down = `${cssVar('--down')}66`;
    return b.candles.map((c, i) => ({ time: c.time, value: b.volume[i], color: c.close >= c.open ? up : down }));
  }

  function renderLegend(bar) {
    const sel = state.selected;
    const b = chart.bars;
    const el = $('chart-legend');
    if (!sel) { fill(el); return; }
    const last = bar || (b && b.candles.length ? b.byTime.get(b.candles[b.candles.length - 1].time) : null);
    const parts = [];
    if (last) {
      const prev = b.candles[last.i - 1];
      const chg = prev ? (last.c.close - prev.close) / prev.close * 100 : null;
      const dir = last.c.close >= last.c.open ? 'up' : 'down';
      parts.push(
        h('span', { class: 'when' }, stamp(new Date(last.c.time * 1000).toISOString(), sel.interval)),
        h('span', null, h('span', { class: 'k' }, 'O'), h('span', { class: dir }, price(last.c.open))),
        h('span', null, h('span', { class: 'k' }, 'H'), h('span', { class: dir }, price(last.c.high))),
        h('span', null, h('span', { class: 'k' }, 'L'), h('span', { class: dir }, price(last.c.low))),
        h('span', null, h('span', { class: 'k' }, 'C'), h('span', { class: dir }, price(last.c.close))),
        chg == null ? null : h('span', { class: chg >= 0 ? 'up' : 'down' }, `${chg >= 0 ? '+' : ''}${chg.toFixed(2)}%`),
        h('span', null, h('span', { class: 'k' }, 'V'), compact(b.volume[last.i])));
    }
    if (b && b.note) parts.push(h('span', { class: 'note' }, b.note));
    fill(el, parts);
  }

  function rangeStart(preset, lastIso) {
    if (preset === 'All' || !lastIso) return null;
    const d = new Date(lastIso);
    const months = { '1M': 1, '6M': 6, '1Y': 12, '5Y': 60 }[preset];
    d.setUTCMonth(d.getUTCMonth() - months);
    return d;
  }

  async function select(symbol, interval, userChose) {
    state.selected = { symbol, interval };
    writeHash();
    for (const tr of document.querySelectorAll('#series-rows tr')) {
      tr.classList.toggle('selected', tr.dataset.symbol === symbol && tr.dataset.interval === interval);
    }
    if (!chart.range) chart.range = INTRADAY.has(interval) ? '1M' : '1Y';
    if (userChose && INTRADAY.has(interval) && (chart.range === '5Y' || chart.range === 'All')) chart.range = '1M';
    await loadChart();
  }

  async function loadChart() {
    const sel = state.selected;
    if (!sel) return;
    const seq = ++chart.seq;
    $('chart-title').textContent = sel.symbol;
    for (const b of document.querySelectorAll('#chart-ranges button')) b.classList.toggle('active', b.dataset.range === chart.range);
    let info;
    try {
      info = await api(`/api/v1/series?symbols=${encodeURIComponent(sel.symbol)}`);
    } catch (e) {
      if (seq === chart.seq) chartMessage(`Could not load ${sel.symbol}: ${e.message}`);
      return;
    }
    if (seq !== chart.seq) return;
    const mine = (info.series || []).filter((s) => s.symbol === sel.symbol);
    chart.intervals = mine.map((s) => s.interval).sort((a, b) => INTERVALS.indexOf(a) - INTERVALS.indexOf(b));
    fill($('chart-interval'), chart.intervals.map((i) => h('option', { value: i, selected: i === sel.interval }, i)));
    const s = mine.find((x) => x.interval === sel.interval);
    if (!s) { chartMessage(`${sel.symbol} has no ${sel.interval} bars.`); return; }
    chart.info = s;
    let start = rangeStart(chart.range, s.last);
    const first = Date.parse(s.first); const last = Date.parse(s.last);
    let note = '';
    // Estimate the bars of the range from the series' density; clip a huge range.
    const from = start ? Math.max(first, start.getTime()) : first;
    const est = s.count * ((last - from) / Math.max(1, last - first));
    if (est > MAX_CHART_BARS) {
      start = new Date(last - (last - first) * (MAX_CHART_BARS / s.count));
      note = `showing the last ~${compact(MAX_CHART_BARS)} bars`;
    }
    const p = new URLSearchParams({ symbols: sel.symbol, interval: sel.interval, format: 'json' });
    if (start && start.getTime() > first) p.set('start', start.toISOString().replace('.000Z', 'Z'));
    let res;
    try {
      res = await api(`/api/v1/bars?${p}`);
    } catch (e) {
      if (seq === chart.seq) chartMessage(`Could not load bars: ${e.message}`);
      return;
    }
    if (seq !== chart.seq) return;
    const col = (res.series || {})[sel.symbol];
    if (!col || !col.ts || !col.ts.length) { chartMessage('No bars in this range.'); return; }
    if (!ensureChart()) { chartMessage('The chart library did not load.'); return; }
    const candles = new Array(col.ts.length);
    const byTime = new Map();
    for (let i = 0; i < col.ts.length; i++) {
      const t = Math.floor(Date.parse(col.ts[i]) / 1000);
      candles[i] = { time: t, open: col.open[i], high: col.high[i], low: col.low[i], close: col.close[i] };
      byTime.set(t, { c: candles[i], i });
    }
    chart.bars = { candles, volume: col.volume, byTime, note };
    chart.api.applyOptions({ timeScale: { timeVisible: INTRADAY.has(sel.interval), secondsVisible: false } });
    chart.candles.setData(candles);
    chart.volume.setData(volumeData(chart.bars));
    chart.api.timeScale().fitContent();
    $('chart-empty').hidden = true;
    $('chart').dataset.bars = String(candles.length);
    $('chart').dataset.series = `${sel.symbol} ${sel.interval}`;
    setMeta('chart-meta', `${sel.interval} · ${num(candles.length)} bars · ${stamp(col.ts[0], sel.interval)} → ${stamp(col.ts[col.ts.length - 1], sel.interval)}`);
    renderLegend(null);
  }

  function chartMessage(text) {
    if (chart.candles) { chart.candles.setData([]); chart.volume.setData([]); }
    chart.bars = null;
    $('chart').dataset.bars = '0';
    const e = $('chart-empty');
    e.textContent = text;
    e.hidden = false;
    setMeta('chart-meta', '');
    renderLegend(null);
  }

  function wireChart() {
    for (const b of document.querySelectorAll('#chart-ranges button')) {
      b.addEventListener('click', () => { chart.range = b.dataset.range; writeHash(); loadChart(); });
    }
    $('chart-interval').addEventListener('change', (ev) => {
      if (state.selected) select(state.selected.symbol, ev.target.value, true);
    });
  }

  // ---------------------------------------------------------------- jobs
  function jobDesc(j) {
    const p = j.params || {};
    const syms = Array.isArray(p.symbols) ? p.symbols : [];
    const parts = [];
    if (syms.length) parts.push(syms.length <= 3 ? syms.join(', ') : `${syms.slice(0, 3).join(', ')} +${syms.length - 3}`);
    if (p.interval) parts.push(p.interval);
    if (p.start) parts.push(`from ${day(p.start)}`);
    if (p.end) parts.push(`to ${day(p.end)}`);
    if (p.source) parts.push(`via ${p.source}`);
    if (p.node) parts.push(`node ${p.node}`);
    return parts.join(' · ');
  }
  const STATUS_BADGE = { running: 'badge-run', queued: 'badge-muted', succeeded: 'badge-ok', failed: 'badge-bad', cancelled: 'badge-warn' };

  function jobCounters(c) {
    if (!c || typeof c !== 'object') return [];
    const out = [];
    const names = { bars_fetched: 'fetched', bars_written: 'written', bars_rejected: 'rejected' };
    for (const [k, label] of Object.entries(names)) if (typeof c[k] === 'number') out.push(`${compact(c[k])} ${label}`);
    return out;
  }

  let prevStatus = new Map();
  /** Jobs started from this page: their end is announced even if never seen running. */
  const submitted = new Set();
  /** The newest `finished_at` seen: a newer one means data changed, so panels reload. */
  let finishedMark = null;
  async function loadJobs() {
    let res;
    try {
      res = await api('/api/v1/jobs?page_size=15');
    } catch (e) {
      panelError($('jobs-body'), e, 'The job list');
      return false;
    }
    const jobs = res.jobs || [];
    state.jobs = jobs;
    const terminal = (st) => st !== 'running' && st !== 'queued';
    for (const j of jobs) {
      const was = prevStatus.get(j.id);
      if (terminal(j.status) && (submitted.has(j.id) || (was && !terminal(was)))) {
        submitted.delete(j.id);
        toast(`Job #${j.id} ${j.task} ${j.status}`, j.status === 'succeeded' ? 'ok' : 'bad');
      }
    }
    prevStatus = new Map(jobs.map((j) => [j.id, j.status]));
    const newest = jobs.reduce((m, j) => (j.finished_at && (!m || j.finished_at > m) ? j.finished_at : m), null);
    const finished = finishedMark !== null && newest !== null && newest > finishedMark;
    if (newest !== null && (finishedMark === null || newest > finishedMark)) finishedMark = newest;
    if (finishedMark === null) finishedMark = '';
    renderJobs(jobs);
    renderKpis();
    if (finished) { loadSeries(); loadGaps(); loadQuality(); loadHealth(); if (state.selected) loadChart(); }
    return jobs.some((j) => j.status === 'running' || j.status === 'queued');
  }

  function renderJobs(jobs) {
    const active = jobs.filter((j) => j.status === 'running' || j.status === 'queued');
    const recent = jobs.filter((j) => !(j.status === 'running' || j.status === 'queued'));
    setMeta('jobs-meta', active.length ? `${active.length} running` : jobs.length ? 'idle' : '');
    if (!jobs.length) { fill($('jobs-body'), h('div', { class: 'empty' }, 'No jobs yet. Use Update, Backfill or Verify above.')); return; }
    const now = Date.now();
    const card = (j) => {
      const run = j.status === 'running' || j.status === 'queued';
      const done = pick(j, 'progress.done') || 0; const total = pick(j, 'progress.total') || 0;
      const pct = total ? Math.min(100, (done / total) * 100) : 0;
      const started = j.started_at ? Date.parse(j.started_at) : null;
      const end = j.finished_at ? Date.parse(j.finished_at) : now;
      const errs = Array.isArray(j.errors) ? j.errors : [];
      return h('div', { class: `job ${run ? 'running' : ''}`, dataset: { jobId: j.id, status: j.status }, onclick: () => openLog(j.id), tabindex: 0,
        onkeydown: (ev) => { if (ev.key === 'Enter') openLog(j.id); } },
      h('div', { class: 'job-top' },
        h('span', { class: `badge ${STATUS_BADGE[j.status] || 'badge-muted'}` }, run && j.status === 'running' ? h('span', { class: 'dot dot-run' }) : null, j.status),
        h('span', { class: 'job-title' }, `#${j.id} ${j.task}`),
        h('span', { class: 'job-desc', title: jobDesc(j) }, jobDesc(j)),
        h('span', { class: 'job-when', title: j.finished_at || j.started_at || j.created_at || '' },
          run ? (started ? duration((now - started) / 1000) : 'queued') : ago(j.finished_at || j.created_at, now))),
      run ? h('div', { class: `progress ${total ? '' : 'indeterminate'}`, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total || 100, 'aria-valuenow': total ? done : 0 },
        h('span', { style: { width: `${pct}%` } })) : null,
      h('div', { class: 'job-sub' },
        total ? h('span', { class: 'job-progress' }, `${num(done)}/${num(total)} ${run ? `(${pct.toFixed(0)}%)` : ''}`) : null,
        jobCounters(j.counters).map((t) => h('span', null, t)),
        started ? h('span', null, `took ${duration((end - started) / 1000)}`) : null,
        run && j.status === 'running' ? h('button', { type: 'button', class: 'btn btn-sm', onclick: (ev) => { ev.stopPropagation(); cancelJob(j.id); } }, 'Cancel') : null),
      errs.length ? h('div', { class: 'job-err', title: errs.map(String).join('\n') }, `${errs.length} error${errs.length > 1 ? 's' : ''}: ${String(errs[0])}`) : null);
    };
    fill($('jobs-body'),
      active.length ? [h('div', { class: 'section-label' }, 'Running'), active.map(card)] : null,
      recent.length ? [h('div', { class: 'section-label' }, 'Recent'), recent.map(card)] : null);
  }

  async function cancelJob(id) {
    try {
      await api(`/api/v1/jobs/${id}/cancel`, { method: 'POST' });
      toast(`Cancelling job #${id}`);
      pollJobsSoon();
    } catch (e) {
      toast(`Cancel failed: ${e.message}`, 'bad');
    }
  }

  let logTimer = null;
  async function openLog(id) {
    const dlg = $('log-dialog');
    $('log-title').textContent = `Job #${id}`;
    fill($('log-summary'));
    fill($('log-lines'), 'loading…');
    if (!dlg.open) dlg.showModal();
    const refresh = async () => {
      let job; let log;
      try {
        [job, log] = await Promise.all([api(`/api/v1/jobs/${id}`), api(`/api/v1/jobs/${id}/log`)]);
      } catch (e) {
        fill($('log-lines'), `Could not load: ${e.message}`);
        return;
      }
      if (!dlg.open) return;
      $('log-title').textContent = `Job #${id} · ${job.task}`;
      const item = (k, v) => h('span', null, `${k} `, h('b', null, v));
      fill($('log-summary'),
        h('span', { class: `badge ${STATUS_BADGE[job.status] || 'badge-muted'}` }, job.status),
        item('progress', `${num(pick(job, 'progress.done'))}/${num(pick(job, 'progress.total'))}`),
        jobDesc(job) ? item('params', jobDesc(job)) : null,
        jobCounters(job.counters).length ? item('bars', jobCounters(job.counters).join(', ')) : null,
        item('created', stamp(job.created_at, '1m')),
        job.finished_at ? item('finished', stamp(job.finished_at, '1m')) : null);
      const lines = log.lines || [];
      const pre = $('log-lines');
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      fill(pre, lines.length ? lines.map((l) => h('div', { class: `lv-${String(l.level || '').toLowerCase()}` },
        h('span', { class: 'ts' }, `${String(l.ts || '').replace('T', ' ').replace('Z', '')} `),
        `${String(l.level || '').toUpperCase().padEnd(5)} ${l.message}`)) : 'No log lines.');
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      clearTimeout(logTimer);
      if (job.status === 'running' || job.status === 'queued') logTimer = setTimeout(refresh, 1500);
    };
    refresh();
  }

  // ---------------------------------------------------------------- actions
  async function submitJob(spec) {
    const res = await api('/api/v1/jobs', { method: 'POST', body: spec });
    submitted.add(res.id);
    toast(`Started job #${res.id} (${spec.task})`, 'ok');
    pollJobsSoon();
    return res;
  }
  function wireActions() {
    const simple = (task) => async () => {
      try { await submitJob({ task }); } catch (e) { toast(`${task}: ${e.message}`, 'bad'); }
    };
    $('btn-update').addEventListener('click', simple('update'));
    $('btn-verify').addEventListener('click', simple('verify'));
    fill($('bf-interval'), INTERVALS.map((i) => h('option', { value: i, selected: i === '1d' }, i)));
    $('btn-backfill').addEventListener('click', () => openBackfill());
    $('bf-cancel').addEventListener('click', () => $('backfill-dialog').close());
    $('backfill-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const symbols = $('bf-symbols').value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
      const spec = { task: 'backfill', symbols, interval: $('bf-interval').value, start: $('bf-start').value };
      if ($('bf-end').value) spec.end = $('bf-end').value;
      if ($('bf-source').value) spec.source = $('bf-source').value;
      $('bf-error').textContent = '';
      $('bf-submit').disabled = true;
      try {
        await submitJob(spec);
        $('backfill-dialog').close();
      } catch (e) {
        $('bf-error').textContent = e.message;
      } finally {
        $('bf-submit').disabled = false;
      }
    });
    $('log-close').addEventListener('click', () => $('log-dialog').close());
    $('log-dialog').addEventListener('close', () => clearTimeout(logTimer));
  }

  function openBackfill(prefill = {}) {
    const sel = state.selected;
    $('bf-symbols').value = prefill.symbol || (sel ? sel.symbol : '');
    $('bf-interval').value = prefill.interval || (sel ? sel.interval : '1d');
    const d = new Date(); d.setUTCFullYear(d.getUTCFullYear() - 5);
    $('bf-start').value = prefill.start || d.toISOString().slice(0, 10);
    $('bf-end').value = prefill.end || '';
    $('bf-error').textContent = '';
    $('backfill-dialog').showModal();
    $('bf-symbols').focus();
  }

  // ---------------------------------------------------------------- gaps
  async function loadGaps() {
    let res;
    try {
      res = await api('/api/v1/gaps');
    } catch (e) {
      state.gaps = null;
      panelError($('gaps-body'), e, 'Gap detection');
      setMeta('gaps-meta', '');
      renderKpis();
      return;
    }
    const gaps = (res.gaps || []).slice().sort((a, b) => (b.sessions || 0) - (a.sessions || 0));
    state.gaps = gaps;
    renderKpis();
    setMeta('gaps-meta', gaps.length ? `${num(gaps.length)} ranges` : '');
    if (!gaps.length) { fill($('gaps-body'), h('div', { class: 'empty' }, 'No open gaps: every stored range is complete.')); return; }
    const shown = gaps.slice(0, 100);
    fill($('gaps-body'), h('table', { class: 'mini' },
      h('thead', null, h('tr', null, h('th', null, 'Series'), h('th', null, 'Missing range'), h('th', { class: 'num' }, 'Sessions'), h('th', null, ''))),
      h('tbody', null, shown.map((g) => h('tr', { class: 'link', onclick: () => select(g.symbol, g.interval, true) },
        h('td', null, h('b', null, g.symbol), ' ', h('span', { class: 'chip' }, g.interval)),
        h('td', { class: 'dim' }, `${stamp(g.start, g.interval)} → ${stamp(g.end, g.interval)}`),
        h('td', { class: 'num' }, h('span', { class: 'gapcount' }, num(g.sessions))),
        h('td', { class: 'num' }, h('button', { type: 'button', class: 'btn btn-sm', title: 'Backfill this range',
          onclick: (ev) => { ev.stopPropagation(); openBackfill({ symbol: g.symbol, interval: g.interval, start: day(g.start), end: day(g.end) }); } }, 'Fill')))))),
    gaps.length > shown.length ? h('div', { class: 'empty' }, `and ${num(gaps.length - shown.length)} more`) : null);
  }

  // ---------------------------------------------------------------- quality
  async function loadQuality() {
    let res;
    try {
      res = await api('/api/v1/quality?limit=1000');
    } catch (e) {
      state.quality = null;
      panelError($('quality-body'), e, 'Quality');
      renderKpis();
      return;
    }
    const items = res.quality || [];
    state.quality = items;
    renderKpis();
    const flags = Array.isArray(res.flags) ? res.flags : [];
    setMeta('quality-meta', items.length ? `${items.length >= 1000 ? '1,000+' : num(items.length)} quarantined` : '');
    if (!items.length && !flags.length) { fill($('quality-body'), h('div', { class: 'empty' }, 'Nothing quarantined: every bar passed validation.')); return; }
    const byRule = new Map();
    for (const q of items) byRule.set(q.rule, (byRule.get(q.rule) || 0) + 1);
    fill($('quality-body'),
      h('div', { class: 'rules' }, [...byRule.entries()].sort((a, b) => b[1] - a[1]).map(([r, n]) => h('span', { class: 'rule' }, r, h('b', null, num(n))))),
      flags.length ? [h('div', { class: 'section-label' }, 'Flags'), h('table', { class: 'mini' }, h('tbody', null, flags.slice(0, 30).map((f) => h('tr', null,
        h('td', null, h('b', null, String(f.symbol || '')), ' ', f.interval ? h('span', { class: 'chip' }, f.interval) : null),
        h('td', { class: 'dim' }, stamp(f.ts, f.interval)),
        h('td', { class: 'wrap' }, String(f.rule || f.kind || ''), f.reason ? ` — ${f.reason}` : '')))))] : null,
      items.length ? [h('div', { class: 'section-label' }, 'Latest rejections'), h('table', { class: 'mini' },
        h('tbody', null, items.slice(0, 40).map((q) => h('tr', { class: 'link', title: q.reason, onclick: () => select(q.symbol, q.interval, true) },
          h('td', null, h('b', null, q.symbol), ' ', h('span', { class: 'chip' }, q.interval)),
          h('td', { class: 'dim' }, stamp(q.ts, q.interval)),
          h('td', { class: 'wrap' }, h('span', { class: 'mono' }, q.rule), ' ', h('span', { class: 'mut' }, q.reason))))))] : null);
  }

  // ---------------------------------------------------------------- sources
  async function loadSources() {
    let res;
    try { res = await api('/api/v1/sources'); } catch (e) { panelError($('sources-body'), e, 'Source status'); return; }
    const list = res.sources || [];
    setMeta('sources-meta', list.some((s) => s.paused) ? `${list.filter((s) => s.paused).length} paused` : `${list.length} configured`);
    if (!list.length) { fill($('sources-body'), h('div', { class: 'empty' }, 'No sources configured.')); return; }
    fill($('sources-body'), list.map((s) => {
      const rl = s.rate_limit || {};
      const pct = rl.max ? Math.min(100, (rl.used / rl.max) * 100) : 0;
      return h('div', { class: 'src', dataset: { source: s.name } },
        h('div', { class: 'src-name' }, h('span', { class: `dot ${s.paused ? 'dot-warn' : 'dot-ok'}` }), s.name,
          s.paused ? h('span', { class: 'badge badge-warn', title: s.paused_until || '' }, `paused ${s.paused_until ? `until ${stamp(s.paused_until, '1m')}` : ''}`) : null),
        h('div', { class: 'dim', title: rl.max ? `${rl.used} of ${rl.max} requests in the last ${rl.window_s}s` : 'no limit' },
          rl.max ? [h('span', { class: `meter ${pct > 80 ? 'hot' : ''}` }, h('span', { style: { width: `${pct}%` } })), ` ${num(rl.used)}/${num(rl.max)} per ${rl.window_s}s`] : 'unlimited'),
        h('div', { class: 'src-meta' },
          h('span', null, `${num(s.requests_ok)} ok`),
          h('span', null, `${num(s.requests_failed)} failed`),
          s.consecutive_refusals ? h('span', null, `${num(s.consecutive_refusals)} refusals in a row`) : null),
        s.last_error ? h('div', { class: 'src-err', title: s.last_error }, s.last_error) : null);
    }));
  }

  // ---------------------------------------------------------------- nodes
  async function loadNodes() {
    let res;
    try { res = await api('/api/v1/nodes'); } catch (e) { panelError($('nodes-body'), e, 'Replication status'); setMeta('nodes-meta', ''); return; }
    const list = Array.isArray(res) ? res : res.nodes || [];
    setMeta('nodes-meta', list.length ? `${list.filter((n) => n.reachable).length}/${list.length} reachable` : '');
    if (!list.length) { fill($('nodes-body'), h('div', { class: 'empty' }, 'No backup nodes configured.')); return; }
    fill($('nodes-body'), h('table', { class: 'mini' },
      h('thead', null, h('tr', null, h('th', null, 'Node'), h('th', { class: 'num' }, 'Acked'), h('th', { class: 'num' }, 'Lag'), h('th', null, 'Verified'))),
      h('tbody', null, list.map((n) => {
        const lagC = pick(n, 'lag.changes', 'lag_changes');
        const lagS = pick(n, 'lag.seconds', 'lag_seconds');
        const verify = pick(n, 'last_verify.finished_at', 'last_verify.at', 'last_verify');
        const verifyOk = pick(n, 'last_verify.ok', 'last_verify.status');
        const diffs = pick(n, 'last_verify.differences');
        const err = pick(n, 'last_error', 'error');
        // `reachable` is null until the first ping or shipping round.
        const dot = n.reachable === true ? 'dot-ok' : n.reachable === false ? 'dot-bad' : 'dot-warn';
        const state = n.reachable === true ? 'reachable' : n.reachable === false ? 'unreachable' : 'not contacted yet';
        return h('tr', { title: err || state },
          h('td', null, h('span', { style: { display: 'inline-flex', alignItems: 'center', gap: '6px' } },
            h('span', { class: `dot ${dot}`, title: state }), h('b', null, String(n.name || '?')),
            n.kind ? h('span', { class: 'chip' }, String(n.kind)) : null),
          err ? h('div', { class: 'src-err' }, String(err)) : null),
          h('td', { class: 'num dim' }, num(pick(n, 'acked_seq', 'acked_sequence', 'acked'))),
          h('td', { class: 'num' }, lagC == null ? '—' : h('span', { class: lagC > 0 ? 'gapcount' : 'mut' }, `${num(lagC)} ch`),
            lagS == null ? null : h('span', { class: 'mut' }, ` · ${duration(lagS)}`)),
          h('td', { class: 'dim' }, typeof verify === 'string' ? ago(verify) : '—',
            verifyOk === true || verifyOk === 'ok' ? ' ✓' : verifyOk === false ? ' ✗' : '',
            typeof diffs === 'number' && diffs > 0 ? h('span', { class: 'gapcount' }, ` ${num(diffs)} diff${diffs > 1 ? 's' : ''}`) : null));
      }))));
  }

  // ---------------------------------------------------------------- schedules
  async function loadSchedules() {
    let res;
    try { res = await api('/api/v1/schedules'); } catch (e) { panelError($('schedules-body'), e, 'The scheduler'); setMeta('schedules-meta', ''); return; }
    const list = (res.schedules || []).slice().sort((a, b) => String(a.next_run || '~').localeCompare(String(b.next_run || '~')));
    setMeta('schedules-meta', list.length && list[0].next_run ? `next ${ago(list[0].next_run)}` : '');
    if (!list.length) { fill($('schedules-body'), h('div', { class: 'empty' }, 'No schedules configured.')); return; }
    fill($('schedules-body'), h('table', { class: 'mini' },
      h('thead', null, h('tr', null, h('th', null, 'Schedule'), h('th', null, 'When'), h('th', null, 'Next'), h('th', null, 'Last'))),
      h('tbody', null, list.map((s) => h('tr', { class: s.last_job ? 'link' : '', onclick: s.last_job ? () => openLog(s.last_job) : null },
        h('td', null, h('b', null, s.name), ' ', h('span', { class: 'chip' }, s.task)),
        h('td', { title: s.timezone }, h('div', { class: 'mono dim' }, s.cron), h('div', { class: 'mut small' }, s.timezone || '')),
        h('td', { title: s.next_run || '' }, s.next_run ? ago(s.next_run) : '—'),
        h('td', { class: 'dim', title: s.last_run || '' }, s.last_run ? ago(s.last_run) : 'never', s.last_job ? h('span', { class: 'mut' }, ` #${s.last_job}`) : null))))));
  }

  // ---------------------------------------------------------------- stale count
  async function loadStale() {
    try {
      const res = await api('/api/v1/series?stale=true&page_size=1');
      // Servers without freshness report `stale: null` everywhere, so every count would be 0:
      // tell "none stale" from "not known" by asking whether any series is known fresh.
      if (res.total > 0) state.staleTotal = res.total;
      else {
        const fresh = await api('/api/v1/series?stale=false&page_size=1');
        state.staleTotal = fresh.total > 0 ? 0 : null;
      }
    } catch (_) {
      state.staleTotal = null;
    }
    renderKpis();
  }

  // ---------------------------------------------------------------- the URL
  // `#AAPL/1d/1Y`: the chosen series and range, so a view can be bookmarked or shared.
  function writeHash() {
    const sel = state.selected;
    if (!sel) return;
    const hash = `#${encodeURIComponent(sel.symbol)}/${sel.interval}${chart.range ? `/${chart.range}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }
  function readHash() {
    const [sym, interval, range] = location.hash.slice(1).split('/');
    if (!sym || !INTERVALS.includes(interval)) return;
    let symbol;
    try { symbol = decodeURIComponent(sym); } catch (_) { return; }
    state.selected = { symbol, interval };
    if (['1M', '6M', '1Y', '5Y', 'All'].includes(range)) chart.range = range;
  }

  // ---------------------------------------------------------------- polling
  const timers = {};
  /** Runs `fn` now (or after `delay` ms) and then every `ms` ms while the tab is visible. */
  function every(name, ms, fn, delay = 0) {
    const run = async () => {
      if (!document.hidden) {
        try { await fn(); } catch (e) { console.warn(name, e); }
      }
      timers[name] = setTimeout(run, ms);
    };
    timers[name] = setTimeout(run, delay);
  }
  let jobsActive = false;
  function pollJobsSoon() {
    clearTimeout(timers.jobs);
    timers.jobs = setTimeout(async function tick() {
      jobsActive = await loadJobs();
      timers.jobs = setTimeout(tick, jobsActive ? 1500 : 10000);
    }, 300);
  }
  function refreshAll() {
    loadHealth(); loadSeries(); loadStale(); loadGaps(); loadQuality(); loadSources(); loadNodes(); loadSchedules();
    pollJobsSoon();
    if (state.selected) loadChart();
  }

  async function start() {
    wireTokenDialog();
    wireSeriesTable();
    wireChart();
    wireActions();
    readHash();
    renderKpis();
    every('health', 5000, loadHealth);
    // The table and the chart first: on a big universe every listing costs the server a scan
    // of all series, so the other panels start once the table is on screen.
    if (state.selected) select(state.selected.symbol, state.selected.interval, false);
    await loadSeries();
    every('series', 15000, loadSeries, 15000);
    pollJobsSoon();
    every('sources', 5000, loadSources);
    every('nodes', 5000, loadNodes);
    every('quality', 30000, loadQuality);
    every('gaps', 30000, loadGaps);
    every('schedules', 30000, loadSchedules);
    every('stale', 30000, loadStale, 300);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshAll(); });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
