// The dashboard in headless Chromium against a live `dms serve` (scripts/dashboard_check.sh
// starts the server with sample data, a read token and an admin token, and sets the env below).
//
// One browser, one page, steps in order, as a person would use it: the page asks for a token,
// lists the series, charts one, starts a backfill (asking for the admin token), follows its
// progress to the end, and is photographed. Every request the page makes is recorded: none may
// leave this server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set (run scripts/dashboard_check.sh)`);
  return v;
};
const BASE = env('DMS_URL');
const READ = env('DMS_READ_TOKEN');
const ADMIN = env('DMS_ADMIN_TOKEN');
const EXPECT = env('DMS_EXPECT_SYMBOLS').split(',');
const BACKFILL = env('DMS_BACKFILL_SYMBOLS').split(',');
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

const WAIT = { timeout: 15000 };
let context;
let page;
let profile;
const foreign = [];
const pageErrors = [];
const failedRequests = [];

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'dms-dashboard-chromium-'));
  // launchPersistentContext owns --user-data-dir: a fresh one per run, removed after.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 1000 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    timezoneId: 'UTC',
    locale: 'en-US',
  });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${BASE}/`) || url === BASE || url.startsWith('data:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('response', (r) => {
    // 404s of endpoints a server version may not have yet are expected; nothing else is.
    const path = new URL(r.url()).pathname;
    const optional = ['/api/v1/gaps', '/api/v1/nodes', '/api/v1/schedules'].includes(path);
    if (r.status() >= 500 || (r.status() === 404 && !optional)) failedRequests.push(`${r.status()} ${r.url()}`);
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the page loads without a token and asks for one when the API needs it', async () => {
  const resp = await page.goto(`${BASE}/`);
  assert.equal(resp.status(), 200);
  assert.match(resp.headers()['content-type'], /^text\/html/);
  const dialog = page.locator('#token-dialog');
  await dialog.waitFor({ state: 'visible', ...WAIT });
  assert.match(await page.locator('#token-reason').textContent(), /needs a token/i);

  // A wrong token is refused (403) and the dialog comes back saying so.
  await page.fill('#token-input', 'not-the-token');
  await page.click('#token-save');
  await page.waitForFunction(() => document.querySelector('#token-dialog').open
    && /not accepted/i.test(document.querySelector('#token-reason').textContent), null, WAIT);

  await page.fill('#token-input', READ);
  await page.click('#token-save');
  // Saved, and no request still in flight with the wrong token brings the dialog back.
  await page.waitForFunction((t) => localStorage.getItem('dms.token') === t
    && !document.querySelector('#token-dialog').open, READ, WAIT);
});

test('the series table lists every imported series with its coverage', async () => {
  await page.waitForSelector('#series-rows tr[data-symbol]', WAIT);
  const rows = await page.$$eval('#series-rows tr[data-symbol]', (trs) => trs.map((tr) => ({
    symbol: tr.dataset.symbol,
    interval: tr.dataset.interval,
    cells: [...tr.cells].map((td) => td.textContent.trim()),
  })));
  const symbols = rows.map((r) => r.symbol).sort();
  assert.deepEqual(symbols, [...EXPECT].sort());
  const aapl = rows.find((r) => r.symbol === 'AAPL');
  assert.equal(aapl.interval, '1d');
  assert.deepEqual(aapl.cells.slice(2, 4), ['2019-01-02', '2023-12-29']);
  // Five years of weekdays, less the US holidays validation rejects as closed days.
  assert.match(aapl.cells[5], /^1,2\d\d$/, 'bar count');
  assert.match(await page.textContent('#series-meta'), new RegExp(`^${EXPECT.length} series`));

  // Server-side filtering: the filter box narrows the table to matching symbols.
  await page.fill('#series-q', '.hk');
  await page.waitForFunction(() => [...document.querySelectorAll('#series-rows tr[data-symbol]')]
    .every((tr) => tr.dataset.symbol.endsWith('.HK')) && document.querySelectorAll('#series-rows tr[data-symbol]').length === 2, null, WAIT);
  await page.fill('#series-q', '');
  await page.waitForFunction((n) => document.querySelectorAll('#series-rows tr[data-symbol]').length === n, EXPECT.length, WAIT);
});

test('clicking a series draws its candles and volume on the chart canvas', async () => {
  await page.click('#series-rows tr[data-symbol="NVDA"]');
  await page.waitForFunction(() => document.querySelector('#chart').dataset.series === 'NVDA 1d'
    && Number(document.querySelector('#chart').dataset.bars) > 200, null, WAIT);
  assert.equal(await page.textContent('#chart-title'), 'NVDA');
  assert.ok(await page.locator('#series-rows tr.selected[data-symbol="NVDA"]').count() === 1);
  // The canvas is there, has a size, and holds a picture (up and down candles, not one colour).
  await page.waitForTimeout(300); // the library draws on the next animation frames
  const canvas = await page.evaluate(() => {
    const all = [...document.querySelectorAll('#chart canvas')];
    const c = all.sort((a, b) => b.width * b.height - a.width * a.height)[0];
    if (!c) return null;
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4 * 7) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return { count: all.length, width: c.width, height: c.height, colours: colours.size };
  });
  assert.ok(canvas, 'no canvas in #chart');
  assert.ok(canvas.width > 300 && canvas.height > 200, `canvas is ${canvas.width}x${canvas.height}`);
  assert.ok(canvas.colours > 8, `the canvas has only ${canvas.colours} colours`);
  // The legend shows the last bar's OHLC.
  assert.match(await page.textContent('#chart-legend'), /O\s*[\d.]+.*H\s*[\d.]+.*L\s*[\d.]+.*C\s*[\d.]+/);

  // A range preset reloads fewer bars.
  const all = Number(await page.getAttribute('#chart', 'data-bars'));
  await page.click('#chart-ranges button[data-range="1M"]');
  await page.waitForFunction((n) => Number(document.querySelector('#chart').dataset.bars) < n
    && Number(document.querySelector('#chart').dataset.bars) > 10, all, WAIT);
});

test('the quality panel shows the quarantined bars', async () => {
  await page.waitForFunction(() => /high_below/.test(document.querySelector('#quality-body').textContent), null, WAIT);
  // NVDA's two impossible bars, counted under their rule (the latest-rejections list below is
  // full of the generator's bars on exchange holidays, rejected as closed days).
  assert.match(await page.textContent('#quality-body'), /high_below_open_close\s*2/);
  assert.match(await page.textContent('#quality-body'), /closed_day/);
});

test('a backfill started from the page asks for the admin token, shows its progress and succeeds', async () => {
  // Watch the job list as the page renders it, so progress seen while running is recorded.
  await page.evaluate(() => {
    window.__jobStates = [];
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('#jobs-body [data-job-id]')) {
        window.__jobStates.push({ id: el.dataset.jobId, status: el.dataset.status, progress: el.querySelector('.job-progress')?.textContent ?? null, bar: !!el.querySelector('[role=progressbar]') });
      }
    }).observe(document.querySelector('#jobs-body'), { childList: true, subtree: true });
  });
  await page.click('#btn-backfill');
  await page.locator('#backfill-dialog').waitFor({ state: 'visible', ...WAIT });
  await page.fill('#bf-symbols', BACKFILL.join(', '));
  await page.selectOption('#bf-interval', '1d');
  await page.fill('#bf-start', '2004-01-01');
  await page.selectOption('#bf-source', 'files');
  await page.click('#bf-submit');

  // The read token may not change anything: the page asks for the admin token and retries.
  await page.waitForFunction(() => document.querySelector('#token-dialog').open, null, WAIT);
  assert.match(await page.textContent('#token-reason'), /admin token/i);
  await page.fill('#token-input', ADMIN);
  await page.click('#token-save');

  const job = page.locator('#jobs-body [data-job-id]').first();
  await job.waitFor(WAIT);
  const id = await job.getAttribute('data-job-id');
  await page.locator('#backfill-dialog').waitFor({ state: 'hidden', ...WAIT });
  await page.waitForSelector(`#jobs-body [data-job-id="${id}"][data-status="succeeded"]`, WAIT);
  const card = page.locator(`#jobs-body [data-job-id="${id}"]`);
  assert.match(await card.textContent(), new RegExp(`#${id} backfill.*${BACKFILL[0]}, ${BACKFILL[1]}`));
  assert.equal((await card.locator('.job-progress').textContent()).trim(), `${BACKFILL.length}/${BACKFILL.length}`);
  assert.match(await card.textContent(), /written/);
  const seen = (await page.evaluate(() => window.__jobStates)).filter((s) => s.id === id);
  assert.ok(seen.length > 0, 'the job was never rendered');
  const running = seen.filter((s) => s.status === 'running' || s.status === 'queued');
  assert.ok(running.every((s) => s.bar), 'a running job is shown without a progress bar');
  const progress = [...new Set(seen.map((s) => s.progress))];
  console.log(`job ${id}: rendered ${seen.length} times, ${running.length} while running; progress shown: ${progress.join(' → ')}`);

  // The new series appears in the table once the job is done, and its log opens.
  await page.waitForSelector(`#series-rows tr[data-symbol="${BACKFILL[0]}"]`, WAIT);
  assert.match(await page.textContent('#series-meta'), new RegExp(`^${EXPECT.length + BACKFILL.length} series`));
  await card.click();
  await page.waitForFunction(() => document.querySelector('#log-dialog').open
    && /succeeded/.test(document.querySelector('#log-summary').textContent), null, WAIT);
  assert.ok((await page.textContent('#log-lines')).length > 0);
  await page.click('#log-close');
});

test('a column header sorts the table on the server', async () => {
  const sorted = page.waitForResponse((r) => r.url().includes('/api/v1/series?') && r.url().includes('sort=-count'));
  await page.click('#series-table th[data-sort="count"]');
  await sorted;
  await page.waitForSelector('#series-table th.sorted.desc[data-sort="count"]', WAIT);
  const counts = await page.$$eval('#series-rows tr[data-symbol] td:nth-child(6)', (tds) => tds.map((td) => Number(td.textContent.replace(/,/g, ''))));
  assert.ok(counts.length > 1);
  assert.deepEqual(counts, [...counts].sort((a, b) => b - a));
  assert.ok(counts[0] > counts[counts.length - 1], `${counts}`);
  await page.click('#series-table th[data-sort="symbol"]');
  await page.waitForSelector('#series-table th.sorted:not(.desc)[data-sort="symbol"]', WAIT);
});

test('an action the server refuses shows its reason, not an error wall', async () => {
  const answered = page.waitForResponse((r) => r.url().endsWith('/api/v1/jobs') && r.request().method() === 'POST');
  await page.click('#btn-verify');
  const r = await answered;
  if (r.status() === 202) return; // verify is available on this server: nothing to refuse
  await page.waitForFunction(() => /verify/.test(document.querySelector('#toasts').textContent), null, WAIT);
  assert.equal(await page.locator('#token-dialog[open]').count(), 0);
});

test('a job that fails shows as failed with its error', async () => {
  await page.click('#btn-backfill');
  await page.locator('#backfill-dialog').waitFor({ state: 'visible', ...WAIT });
  await page.fill('#bf-symbols', 'NOFILE');
  await page.fill('#bf-start', '2020-01-01');
  await page.selectOption('#bf-source', 'files');
  await page.click('#bf-submit');
  await page.locator('#backfill-dialog').waitFor({ state: 'hidden', ...WAIT });
  const failed = page.locator('#jobs-body [data-status="failed"]').first();
  await failed.waitFor(WAIT);
  assert.match(await failed.textContent(), /NOFILE/);
  assert.match(await failed.locator('.job-err').textContent(), /1 error: .*NOFILE/);
  await page.waitForFunction(() => /failed/.test(document.querySelector('#toasts').textContent), null, WAIT);
});

test('screenshots: the whole page in light, the first screen in dark and on a phone', async () => {
  await page.click('#series-rows tr[data-symbol="AAPL"]');
  await page.click('#chart-ranges button[data-range="1Y"]');
  await page.waitForFunction(() => document.querySelector('#chart').dataset.series === 'AAPL 1d', null, WAIT);
  await page.evaluate(() => document.querySelectorAll('#toasts > *').forEach((t) => t.remove()));
  await page.mouse.move(700, 330); // a crosshair and its legend, as a user sees it
  await page.waitForTimeout(400);
  await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.waitForTimeout(400);
  await page.screenshot({ path: join(SHOTS, 'dashboard-dark.png') });
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(SHOTS, 'dashboard-narrow.png') });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the narrow page scrolls sideways by ${overflow}px`);
});

test('nothing went wrong on the way: no script error, no 5xx, no request outside the server', () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(failedRequests, []);
  assert.deepEqual(foreign, []);
});
