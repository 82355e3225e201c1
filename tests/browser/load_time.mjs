// Page-load figures for benches/dashboard.rs: loads the dashboard in headless Chromium five
// times, each in a fresh context (cold browser cache), and prints a Markdown table of the
// median time from navigation to the first series row and to the chart drawn for a series.
// Usage: node tests/browser/load_time.mjs BASE_URL SYMBOL   (a server without tokens)
import { chromium } from 'playwright-core';

const [base, symbol] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const rows = [];
const charts = [];
for (let i = 0; i < 5; i++) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  const t0 = Date.now();
  await page.goto(`${base}/#${encodeURIComponent(symbol)}/1d/All`);
  await page.waitForSelector('#series-rows tr[data-symbol]', { timeout: 30000 });
  rows.push(Date.now() - t0);
  await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.bars) > 0, null, { timeout: 30000 });
  charts.push(Date.now() - t0);
  await context.close();
}
await browser.close();
const median = (v) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log('| headless Chromium, fresh context, median of 5 | time |');
console.log('|---|---|');
console.log(`| navigation → first series row | ${median(rows)} ms |`);
console.log(`| navigation → chart drawn (${symbol}, all bars) | ${median(charts)} ms |`);
