// Launches Debian's Chromium through playwright-core (no browser download)
// and watches every request the pages make: anything not addressed to the
// Sightline server is recorded and aborted, and the test fails on it.
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
}

/**
 * A browser context whose requests are checked: `foreign` lists every request
 * (HTTP or WebSocket) to another origin than `origin`, `problems` every page
 * error, Content-Security-Policy violation and failed same-origin request.
 */
export async function watchedContext(browser, origin, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const allowed = new URL(origin);
  const foreign = [];
  const problems = [];
  const sameOrigin = (url) => {
    const u = new URL(url);
    if (u.protocol === 'data:' || u.protocol === 'blob:') return true;
    return u.hostname === allowed.hostname && u.port === allowed.port;
  };
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (sameOrigin(url)) return route.continue();
    foreign.push(url);
    return route.abort('blockedbyclient');
  });
  const watchPage = (page) => {
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      const text = m.text();
      if (/Content[- ]Security[- ]Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
    });
    page.on('websocket', (ws) => {
      if (!sameOrigin(ws.url().replace(/^ws/, 'http'))) foreign.push(ws.url());
    });
    page.on('requestfailed', (r) => {
      const failure = r.failure()?.errorText ?? '';
      // Requests cut short by a navigation or by the server restart test are not page faults.
      if (sameOrigin(r.url()) && !/ERR_ABORTED|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET/.test(failure)) {
        problems.push(`request failed: ${r.url()} ${failure}`);
      }
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && sameOrigin(r.url())) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
  };
  context.on('page', watchPage);
  return { context, foreign, problems };
}
