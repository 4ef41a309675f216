// Drives the fleet page in headless Chromium (playwright-core) for crates/edge/tests/fleet_page.rs.
// Protocol with the Rust test: this script prints `step NAME` lines on stdout and waits for a
// line on stdin before going on where the test must publish more telemetry. Any failure exits
// non-zero with the reason on stderr. Env: VIGIL_URL, VIGIL_TOKEN, VIGIL_SCREENSHOT, PLAYWRIGHT_CORE.
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const base = process.env.VIGIL_URL;
const token = process.env.VIGIL_TOKEN;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const step = async (name, waitForGo = false) => {
  console.log('step ' + name);
  if (waitForGo) await lines.next();
};
const check = (ok, what) => { if (!ok) throw new Error(what); };
const T = { timeout: 20000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    // playwright gives the browser a fresh, temporary profile of its own.
    '--disable-component-update', '--disable-sync'],
});
try {
  // Without a token: the page asks for one, and the API refuses.
  const anon = await browser.newPage();
  await anon.goto(base + '/');
  await anon.waitForSelector('#login:not([hidden])', T);
  const refused = await anon.evaluate(async () => (await fetch('/api/fleet')).status);
  check(refused === 401, 'the API without a token answered ' + refused);
  await anon.close();

  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  page.on('pageerror', e => console.error('page error: ' + e.message));
  await page.goto(base + '/?token=' + encodeURIComponent(token));
  check(!page.url().includes('token='), 'the token stays in the address bar: ' + page.url());
  // The fleet during the replay: both devices listed.
  await page.waitForSelector('tr[data-device="pg-001"]', T);
  await page.waitForSelector('tr[data-device="pg-002"]', T);
  await page.waitForSelector('#live.on', T);
  const row = 'tr[data-device="pg-002"]';
  const before = await page.getAttribute(row, 'data-window');
  await step('listed window ' + before, true);

  // More telemetry arrives: the new verdict shows without a reload (the live stream).
  await page.waitForFunction(([r, b]) => document.querySelector(r)?.dataset.window !== b, [row, before], T);
  const after = (await page.getAttribute(row, 'data-window')) + ' ' + (await page.textContent(row + ' .verdict'));
  const navigations = await page.evaluate(() => performance.getEntriesByType('navigation').length);
  check(navigations === 1, 'the page was reloaded');
  await step('verdict ' + before + ' -> ' + after);

  // pg-001 has an alarm raised: acknowledge it from the page.
  await page.waitForSelector('tr[data-device="pg-001"] .alarm-state.active_unacknowledged', T);
  await page.click('tr[data-device="pg-001"]');
  const badge = '.alarm[data-condition="20"] .alarm-state';
  await page.waitForSelector(badge + '.active_unacknowledged', T);
  await page.click('.alarm[data-condition="20"] button.ack');
  await page.waitForSelector(badge + '.active_acknowledged', T);
  await page.waitForSelector('tr[data-device="pg-001"] .alarm-state.active_acknowledged', T);
  await page.waitForSelector('.alarm[data-condition="20"] .history li', T);
  if (process.env.VIGIL_SCREENSHOT) await page.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  await step('acknowledged');
} finally {
  await browser.close();
}
process.exit(0);
